"""Load a model from a file or the zoo, safely.

* ``.keras`` / ``.h5``: ``keras.models.load_model(..., safe_mode=True)``, which
  refuses to deserialise Python code (``Lambda`` layers) from the file.
* ``.pt`` / ``.pth`` / ``.ts``: TorchScript archives only (``torch.jit.load``).
  A pickled ``torch.save(model)`` file can run arbitrary code when loaded, so
  convlens refuses it and says how to export a TorchScript file instead.
* ``zoo:NAME``: a network convlens ships (see :mod:`convlens.nets.zoo`).
"""
from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError
from .preprocess import Preprocess

__all__ = ["LoadedModel", "load_model", "MODEL_SUFFIXES"]

MODEL_SUFFIXES = (".keras", ".h5", ".pt", ".pth", ".ts")


@dataclass
class LoadedModel:
    """A model ready for :func:`convlens.capture`, with what is known about its input."""

    model: Any
    name: str
    preprocess: Preprocess | None = None
    class_names: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def load_model(source: str | Path, backend: str = "torch") -> LoadedModel:
    """Load ``source``: a model file (see module docs) or ``zoo:NAME``."""
    text = str(source)
    if text.startswith("zoo:"):
        from .nets import zoo
        zm = zoo.load(text[4:], backend=backend)
        return LoadedModel(zm.model, f"zoo:{zm.name}", zm.preprocess, zm.class_names,
                           {"zoo": zm.name})
    path = Path(text)
    if not path.is_file():
        raise ModelError(
            f"{path}: no such model file; expected a .keras, .h5 or TorchScript .pt file, "
            "or zoo:NAME"
        )
    suffix = path.suffix.lower()
    if suffix in (".keras", ".h5"):
        return LoadedModel(_load_keras(path), path.name)
    if suffix in (".pt", ".pth", ".ts"):
        return LoadedModel(_load_torchscript(path), path.name)
    raise ModelError(
        f"{path}: unsupported model file type {suffix or '(none)'!r}; expected one of "
        f"{', '.join(MODEL_SUFFIXES)} or zoo:NAME"
    )


def _load_keras(path: Path) -> Any:
    from .nets.keras_backend import import_keras
    keras = import_keras()
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, OSError, TypeError... for bad files
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        hint = ("the file holds Python code (a Lambda layer), which convlens will not run; "
                "replace the Lambda with a registered layer") if "unsafe" in msg.lower() or \
            "lambda" in msg.lower() else "re-save it with model.save('model.keras')"
        raise ModelError(f"{path}: cannot load this Keras model ({msg}); {hint}") from None


def _load_torchscript(path: Path) -> Any:
    import torch
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        raise ModelError(
            f"{path}: not a TorchScript archive (not a zip file); expected a file written by "
            "torch.jit.script(model).save(path)"
        ) from None
    if not any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        raise ModelError(
            f"{path}: a pickled PyTorch file (torch.save), not TorchScript; convlens does not "
            "unpickle model files because that can run arbitrary code — export it with "
            "torch.jit.script(model).save(path), or pass the nn.Module in Python"
        )
    try:
        with warnings.catch_warnings():  # TorchScript's own deprecation notice
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ModelError(
            f"{path}: cannot load this TorchScript file ({msg}); re-export it with "
            "torch.jit.script(model).save(path)"
        ) from None
    return model.eval()
