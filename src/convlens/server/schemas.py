"""Request and response models of the explorer's HTTP API (they make its OpenAPI schema)."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from convlens.preprocess import PRESETS

__all__ = ["IMAGE_ID", "MODEL_ID", "TraceRequest", "ImageInfo", "ModelInfo", "Info",
           "UploadResult", "ModelUploadResult", "ErrorBody", "ErrorResponse", "Explanation",
           "NormName", "PresetName"]

IMAGE_ID = r"^(cat|digit-[0-9]|upload-[0-9a-f]{12})$"
MODEL_ID = r"^(toy|cli|zoo:[a-z0-9-]{1,40}|m[0-9]{1,9})$"
NormName = Literal["map", "stage", "global", "standard"]
PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
"""The names of :data:`convlens.preprocess.PRESETS`."""


class TraceRequest(BaseModel):
    """Run a model on an image.  ``spec`` is the toy network (only with ``model="toy"``;
    default: the page's starting network)."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field("cat", pattern=IMAGE_ID, description="an image id from /api/info or "
                       "an upload")
    model: str = Field("toy", pattern=MODEL_ID, description="'toy', a zoo id, 'cli' or an "
                       "uploaded model's id (POST /api/models)")
    spec: Optional[str] = Field(
        None, max_length=2000,
        examples=["conv(3, 3x3) relu maxpool(3) conv(3, 3x3) relu maxpool(2)"])
    seed: int = Field(0, ge=0, le=2**31 - 1, description="weight seed of the toy network")
    preprocess: Optional[PresetName] = Field(
        None, description="a preprocessing preset instead of the model's own (null): the "
        "model input is then what convlens run --preprocess NAME gives")


class ImageInfo(BaseModel):
    id: str
    label: str


class ModelInfo(BaseModel):
    id: str
    label: str


class Info(BaseModel):
    version: str
    images: list[ImageInfo]
    models: list[ModelInfo]
    default_model: str
    default_spec: str
    colormaps: dict[str, list[int]] = Field(description="256 RGB triples, flattened, per map")
    sequential: list[str]
    diverging: list[str]
    default_sequential: str
    default_diverging: str
    limits: dict[str, int]
    features: dict[str, bool]
    atlases: list[ModelInfo] = Field(default_factory=list, description="Atlas folders "
                                     "(serve --atlas), pages under /atlas/<id>/")
    traces: list[ModelInfo] = Field(default_factory=list, description="Traces the server "
                                    "holds (create_app(traces=...), serve --trace): open "
                                    "one with GET /api/traces/{id}")
    presets: list[str] = Field(default_factory=list, description="preprocessing presets a "
                               "trace request may name")
    model_formats: dict[str, str] = Field(default_factory=dict, description="model-file "
                                          "suffixes POST /api/models accepts, and what they are")


class UploadResult(BaseModel):
    id: str
    label: str
    height: int
    width: int
    note: str = ""


class ModelUploadResult(BaseModel):
    id: str = Field(description="the model's id for POST /api/traces")
    label: str = Field(description="the file's name, cleaned (never used as a path)")
    format: str
    framework: str = ""


class ErrorBody(BaseModel):
    status: int
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Explanation(BaseModel):
    """One output value: where it looks on the input and how it is computed."""

    model_config = ConfigDict(extra="allow")
    stage: str
    position: int
    kind: str
    op: str
    channel: int
    row: int
    col: int
    captured: Any
    input_name: str
    receptive_field: Optional[dict[str, Any]]
    arithmetic: dict[str, Any]
