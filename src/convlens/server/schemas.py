"""Request and response models of the explorer's HTTP API (they make its OpenAPI schema)."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["IMAGE_ID", "MODEL_ID", "TraceRequest", "ImageInfo", "ModelInfo", "Info",
           "UploadResult", "ErrorBody", "ErrorResponse", "Explanation", "NormName"]

IMAGE_ID = r"^(cat|digit-[0-9]|upload-[0-9a-f]{12})$"
MODEL_ID = r"^(toy|cli|zoo:[a-z0-9-]{1,40})$"
NormName = Literal["map", "stage", "global", "standard"]


class TraceRequest(BaseModel):
    """Run a model on an image.  ``spec`` is the toy network (only with ``model="toy"``;
    default: the page's starting network)."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field("cat", pattern=IMAGE_ID, description="an image id from /api/info or "
                       "an upload")
    model: str = Field("toy", pattern=MODEL_ID, description="'toy', a zoo id or 'cli'")
    spec: Optional[str] = Field(
        None, max_length=2000,
        examples=["conv(3, 3x3) relu maxpool(3) conv(3, 3x3) relu maxpool(2)"])
    seed: int = Field(0, ge=0, le=2**31 - 1, description="weight seed of the toy network")


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
    traces: list[ModelInfo] = Field(default_factory=list, description="Traces the server "
                                    "holds (create_app(traces=...), serve --trace): open "
                                    "one with GET /api/traces/{id}")


class UploadResult(BaseModel):
    id: str
    label: str
    height: int
    width: int
    note: str = ""


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
