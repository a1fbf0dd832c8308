"""Load a model from a file or the zoo, safely.

* ``.keras`` / ``.h5``: ``keras.models.load_model(..., safe_mode=True)``, which
  refuses to deserialise Python code (``Lambda`` layers) from the file.
* ``.pt`` / ``.pth`` / ``.ts``: TorchScript archives only (``torch.jit.load``).
  A pickled ``torch.save(model)`` file can run arbitrary code when loaded, so
  convlens refuses it and says how to export a TorchScript file instead.
* ``zoo:NAME``: a network convlens ships (see :mod:`convlens.nets.zoo`).

Zip archives (``.keras``, ``.pt``) are checked first (:func:`~convlens.capture.archive.
check_archive`): truncated files, too many members and zip bombs are refused before a
loader opens them.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convlens.capture.adapters import adapters, for_file, resolve
from convlens.capture.archive import ZIP_SUFFIXES, check_archive
from convlens.errors import ModelError
from convlens.preprocess import Preprocess

__all__ = ["LoadedModel", "load_model", "model_suffixes", "load_keras"]


def model_suffixes() -> tuple[str, ...]:
    """Every model-file suffix some registered adapter loads."""
    return tuple(s for a in adapters() for s in a.suffixes)


@dataclass
class LoadedModel:
    """A model ready for :func:`convlens.capture`, with what is known about its input."""

    model: Any
    name: str
    preprocess: Preprocess | None = None
    class_names: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    auto_invert: bool = False
    """Invert images with a light background (LeNet reads light digits on black)."""

    def preprocess_for(self, images: Any) -> Preprocess | None:
        """The preprocessing for these images (one image or a batch; a batch is judged by
        its first image): :attr:`preprocess`, inverted when :attr:`auto_invert` and the
        image's border is light."""
        if not self.auto_invert:
            return self.preprocess
        import numpy as np

        from convlens.nets.lenet import light_background

        arr = np.asarray(images)
        first = arr[0] if arr.ndim == 4 else arr
        base = self.preprocess if self.preprocess is not None else Preprocess()
        return base.replace(invert=bool(light_background(first)))


def load_model(source: str | Path, backend: str = "torch", *,
               weights: str | Path | None = None,
               trust_model_code: bool = False) -> LoadedModel:
    """Load ``source``: a model file (see module docs), ``zoo:NAME``, or ``MODULE:CALLABLE``
    (your code builds the model; ``weights`` is its state dict, loaded with
    ``weights_only=True``; see :mod:`convlens.capture.factory`).  ``trust_model_code``
    allows a pickled ``torch.save(model)`` file, which runs code from the file."""
    from convlens.capture.factory import is_factory, load_factory, load_pickled

    text = str(source)
    if is_factory(text):
        model, name = load_factory(text, weights)
        return LoadedModel(model, name, meta={"factory": text, **(
            {"weights": Path(weights).name} if weights is not None else {})})
    if weights is not None:
        raise ModelError(f"--weights {weights} goes with --model MODULE:CALLABLE (the code that "
                         f"builds the model); got --model {text}")
    if trust_model_code and _is_pickled(Path(text)):
        if zipfile.is_zipfile(text):  # torch.save writes a zip: checked like the others
            check_archive(text, "PyTorch")
        return LoadedModel(load_pickled(Path(text)), Path(text).name)
    if text.startswith("zoo:"):
        from convlens.nets import zoo
        zm = zoo.load(text[4:], backend=backend)
        return LoadedModel(zm.model, f"zoo:{zm.name}", zm.preprocess, zm.class_names,
                           {"zoo": zm.name}, auto_invert=zm.auto_invert)
    path = Path(text)
    if not path.is_file():
        raise ModelError(
            f"{path}: no such model file; expected a file ending in "
            f"{', '.join(model_suffixes())}, or zoo:NAME (see convlens models)"
        )
    adapter = for_file(path.suffix)
    if adapter is None or adapter.load is None:
        raise ModelError(
            f"{path}: unsupported model file type {path.suffix.lower() or '(none)'!r}; expected "
            f"one of {', '.join(model_suffixes())} or zoo:NAME (see convlens models)"
        )
    if path.suffix.lower() in ZIP_SUFFIXES:  # sizes and member count, before any loader
        check_archive(path)
    return LoadedModel(resolve(adapter.load)(path), path.name)


def load_keras(path: Path) -> Any:
    from convlens.nets.keras_backend import import_keras
    keras = import_keras()
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError, OSError, TypeError... for bad files
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        hint = ("the file holds Python code (a Lambda layer), which convlens will not run; "
                "replace the Lambda with a registered layer") if "unsafe" in msg.lower() or \
            "lambda" in msg.lower() else "re-save it with model.save('model.keras')"
        raise ModelError(f"{path}: cannot load this Keras model ({msg}); {hint}") from None


def _is_pickled(path: Path) -> bool:
    """A ``torch.save`` pickle (zip with ``data.pkl`` and no TorchScript code, or the
    legacy raw pickle), not a TorchScript archive."""
    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        return any(n.endswith("data.pkl") for n in names) and not any(
            n.endswith("constants.pkl") or "/code/" in n for n in names)
    except (zipfile.BadZipFile, OSError):
        with open(path, "rb") as fh:
            return fh.read(1) == b"\x80"
