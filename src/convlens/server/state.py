"""What the explorer keeps between requests: images, loaded models and recent Traces.

Everything is looked up by an id the server made; nothing a request sends is ever
used as a file-system path: an uploaded model file is written to a folder the server
made, under a name the server made (``m3.onnx``), and removed when the model is
dropped or the server stops.  Traces live in a small least-recently-used cache
bounded by their size in bytes; images in one bounded by count.  Captures run one at
a time (``compute_lock``): capture hooks a model while it runs, so two captures of
the same model must not overlap.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from convlens.errors import ConvlensError, ModelError
from convlens.trace import Trace

__all__ = ["ImageEntry", "ModelEntry", "TraceEntry", "ExplorerState", "Missing", "ZOO_MODELS",
           "DIGIT_IDS", "UPLOAD_FORMATS", "MAX_UPLOADED_MODELS", "upload_format",
           "UnsupportedUpload"]

log = logging.getLogger("convlens.server")

ZOO_MODELS: dict[str, str] = {
    "zoo:lenet": "LeNet-5 (digits, trained)",
    "zoo:efficientnet-lite0": "EfficientNet-Lite0 (ImageNet, trained)",
}
DIGIT_IDS = tuple(f"digit-{d}" for d in range(10))

def _upload_formats() -> dict[str, str]:
    from convlens.capture.adapters import adapters

    found = {s: a.format or a.name for a in adapters() if a.load and not a.runs_file_code
             for s in a.suffixes}
    return dict(sorted(found.items()))


UPLOAD_FORMATS: dict[str, str] = _upload_formats()
"""Model files the page may upload, read from the adapter registry: the formats that load
and run without code from the file.  TorchScript (``.pt``) and pickles are for
``convlens serve --model`` only."""
MAX_UPLOADED_MODELS = 4
"""Uploaded models held at once; the oldest is dropped (and its file removed) first."""


def upload_format(filename: str) -> str:
    """The suffix of an uploaded model's name when it is one of :data:`UPLOAD_FORMATS`;
    a one-line :class:`~convlens.errors.ModelError` (HTTP 415) for anything else."""
    suffix = os.path.splitext(filename)[1].lower()
    if suffix in UPLOAD_FORMATS:
        return suffix
    why = ("a TorchScript archive or a torch.save pickle, which can run code when loaded"
           if suffix in (".pt", ".pth", ".ts", ".pkl", ".pickle", ".bin", ".ckpt")
           else f"a {suffix!r} file" if suffix else "a file without a suffix")
    raise UnsupportedUpload(
        f"{filename}: {why}; the page loads only {', '.join(UPLOAD_FORMATS)} files, which load "
        "without running code — export the model to ONNX or torch.export (.pt2), or start "
        "convlens serve --model FILE for a TorchScript file you trust")


class UnsupportedUpload(ModelError):
    """A model file of a format the page does not load (HTTP 415)."""


class Missing(ConvlensError, LookupError):
    """An id (image, trace) this server does not hold (HTTP 404)."""


@dataclass
class ImageEntry:
    id: str
    label: str
    pixels: np.ndarray
    """float32 RGB (H, W, 3) in [0, 1], read-only."""
    note: str = ""


@dataclass
class ModelEntry:
    id: str
    label: str
    model: Any
    name: str
    preprocess_for: Callable[[np.ndarray], Any]
    class_names: list[str] | None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    """An uploaded model's file (the server's own copy), removed when the entry is dropped."""


@dataclass
class TraceEntry:
    id: str
    trace: Trace
    image_id: str
    model_id: str
    spec: str | None
    seed: int
    display: np.ndarray
    """The input as the model saw it, as RGB float (h, w, 3) in [0, 1]: receptive fields
    are drawn on it."""
    nbytes: int
    cache: dict[str, Any] = field(default_factory=dict)
    preprocess: Any = None
    """The :class:`~convlens.preprocess.Preprocess` the capture used (None: the toy
    network's plain input), so Grad-CAM sees the same model input."""
    preset: str | None = None
    """The preset the request named (None: the model's own)."""


class _LRU:
    def __init__(self, max_items: int, max_bytes: int | None = None):
        self.items: OrderedDict[str, Any] = OrderedDict()
        self.max_items, self.max_bytes = max_items, max_bytes
        self.lock = threading.Lock()

    def put(self, key: str, value: Any, nbytes: int = 0) -> None:
        with self.lock:
            self.items[key] = (value, nbytes)
            self.items.move_to_end(key)
            while len(self.items) > 1 and (
                len(self.items) > self.max_items
                or (self.max_bytes is not None
                    and sum(n for _, n in self.items.values()) > self.max_bytes)):
                self.items.popitem(last=False)

    def get(self, key: str) -> Any:
        with self.lock:
            hit = self.items.get(key)
            if hit is None:
                return None
            self.items.move_to_end(key)
            return hit[0]


class ExplorerState:
    """The server's memory.  ``cli_model`` is the ``--model`` given on the command line."""

    def __init__(self, cli_model: str | None = None, max_trace_bytes: int = 768 << 20,
                 max_images: int = 32, torch_threads: int | None = None,
                 weights: str | None = None, trust_model_code: bool = False,
                 max_models: int = MAX_UPLOADED_MODELS):
        self.cli_model = cli_model
        self.cli_options = {"weights": weights, "trust_model_code": trust_model_code}
        """What :func:`convlens.capture.files.load_model` gets with ``cli_model``."""
        self.torch_threads = torch_threads
        self.max_models = max_models
        self.uploaded: list[str] = []
        """Ids of uploaded models, oldest first."""
        self._model_dir: str | None = None
        self._model_ids = itertools.count(1)
        self.images = _LRU(max_images)
        self.traces = _LRU(64, max_trace_bytes)
        self.models: dict[str, ModelEntry] = {}
        self.pinned: dict[str, TraceEntry] = {}
        """Traces handed to the server (``create_app(traces=...)``, ``serve --trace``):
        kept for the server's life, never evicted."""
        self.model_lock = threading.RLock()
        self.compute_lock = threading.Lock()
        self._ids = itertools.count(1)

    # -- images ----------------------------------------------------------------------
    def builtin_images(self) -> list[tuple[str, str]]:
        return [("cat", "Chelsea the cat (300x451)")] + [
            (d, f"handwritten digit {d[-1]} (8x8)") for d in DIGIT_IDS]

    def image(self, image_id: str) -> ImageEntry:
        hit = self.images.get(image_id)
        if hit is not None:
            return hit
        if image_id == "cat":
            from convlens.images import cat
            entry = ImageEntry("cat", "Chelsea the cat", _frozen(cat()))
        elif image_id in DIGIT_IDS:
            d = int(image_id[-1])
            entry = ImageEntry(image_id, f"digit {d}", _frozen(_digit(d)))
        else:
            raise Missing(f"no image {image_id!r} on this server (uploads are kept for a "
                             "while only); expected 'cat', 'digit-0'..'digit-9' or the id an "
                             "upload returned — upload the image again")
        self.images.put(image_id, entry)
        return entry

    def add_upload(self, data: bytes, filename: str, max_side: int) -> ImageEntry:
        """Decode an uploaded file with :func:`convlens.load_image`; large images are
        scaled down so the longer side is ``max_side``."""
        from convlens.images import load_image, resize
        pixels = load_image(data, name=filename)
        h, w = pixels.shape[:2]
        note = ""
        if max(h, w) > max_side:
            f = max_side / max(h, w)
            size = (max(1, round(h * f)), max(1, round(w * f)))
            pixels = np.clip(resize(pixels, size), 0.0, 1.0)
            note = f"scaled from {h}x{w} to {size[0]}x{size[1]}"
        digest = hashlib.sha256(data).hexdigest()[:12]
        entry = ImageEntry(f"upload-{digest}", filename, _frozen(pixels), note)
        self.images.put(entry.id, entry)
        return entry

    # -- models ----------------------------------------------------------------------
    def model_choices(self) -> list[tuple[str, str]]:
        out = [("toy", "Toy network (editor)")] + list(ZOO_MODELS.items())
        if self.cli_model and not self.cli_model.startswith("zoo:"):
            out.append(("cli", f"{os.path.basename(self.cli_model)} (command line)"))
        with self.model_lock:
            out += [(m, f"{self.models[m].label} (uploaded)") for m in self.uploaded]
        return out

    def default_model(self) -> str:
        if not self.cli_model:
            return "toy"
        return self.cli_model if self.cli_model.startswith("zoo:") else "cli"

    def model(self, model_id: str) -> ModelEntry:
        with self.model_lock:
            if model_id not in self.models:
                self.models[model_id] = self._load(model_id)
            return self.models[model_id]

    def model_dir(self) -> Path:
        """The server's own folder for uploaded model files (made on first use, removed
        with everything in it when the state is dropped or the process ends)."""
        with self.model_lock:
            if self._model_dir is None:
                self._model_dir = tempfile.mkdtemp(prefix="convlens-models-")
                weakref.finalize(self, shutil.rmtree, self._model_dir, True)
            return Path(self._model_dir)

    def close(self) -> None:
        """Drop the uploaded models and remove their folder (the server stops)."""
        with self.model_lock:
            for model_id in self.uploaded:
                self.models.pop(model_id, None)
            self.uploaded.clear()
            folder, self._model_dir = self._model_dir, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def add_model_file(self, source: BinaryIO, suffix: str, label: str) -> ModelEntry:
        """Copy an uploaded model file (``suffix`` from :func:`upload_format`) into the
        server's folder under a new id, load it with :func:`~convlens.capture.files.
        load_model` (archive checks first) and offer it; the oldest upload beyond
        ``max_models`` is dropped.  Any failure is a one-line ModelError naming ``label``
        (never the server's path), and the copy is removed."""
        from convlens.capture.files import load_model
        model_id = f"m{next(self._model_ids)}"
        path = self.model_dir() / f"{model_id}{suffix}"
        try:
            with open(path, "xb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            with self.compute_lock:  # loaders (Keras above all) take turns with captures
                self.set_threads()
                lm = load_model(path)
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise _as_model_error(exc, path, label) from None
        meta = {**lm.meta, "file": label}
        entry = ModelEntry(model_id, label, lm.model, label, lm.preprocess_for,
                           lm.class_names, meta, path)
        with self.model_lock:
            self.models[model_id] = entry
            self.uploaded.append(model_id)
            while len(self.uploaded) > self.max_models:
                old = self.models.pop(self.uploaded.pop(0), None)
                if old is not None and old.path is not None:
                    old.path.unlink(missing_ok=True)
        return entry

    def _load(self, model_id: str) -> ModelEntry:
        if model_id in ZOO_MODELS:
            from convlens.nets import zoo
            zm = zoo.load(model_id)
            return ModelEntry(model_id, ZOO_MODELS[model_id], zm.model, f"zoo:{zm.name}",
                              zm.preprocess_for, zm.class_names, {"zoo": zm.name})
        if model_id == "cli" and self.cli_model:
            from convlens.capture.files import load_model
            lm = load_model(self.cli_model, **self.cli_options)
            return ModelEntry("cli", lm.name, lm.model, lm.name, lm.preprocess_for,
                              lm.class_names, dict(lm.meta))
        if model_id.startswith("m") and model_id[1:].isdigit():
            raise Missing(f"model {model_id!r} is not held by this server any more (it keeps "
                          f"the {self.max_models} most recent uploads); expected a model from "
                          "the list — upload the file again")
        raise ModelError(f"unknown model {model_id!r}; expected one of "
                         f"{', '.join(m for m, _ in self.model_choices())}")

    def set_threads(self) -> None:
        """Apply ``torch_threads`` (call with ``compute_lock`` held, before a capture)."""
        if self.torch_threads:
            import torch
            if torch.get_num_threads() != self.torch_threads:
                torch.set_num_threads(self.torch_threads)

    # -- traces ----------------------------------------------------------------------
    def add_trace(self, trace: Trace, image_id: str, model_id: str, spec: str | None,
                  seed: int, display: np.ndarray, preprocess: Any = None,
                  preset: str | None = None) -> TraceEntry:
        tid = f"t{next(self._ids)}"
        nbytes = trace.input.nbytes + sum(
            s.output.nbytes + sum(w.nbytes for w in s.weights.values()) for s in trace.stages)
        entry = TraceEntry(tid, trace, image_id, model_id, spec, seed, display, nbytes,
                           preprocess=preprocess, preset=preset)
        self.traces.put(tid, entry, nbytes)
        return entry

    def pin(self, trace: Trace, display: np.ndarray, label: str) -> TraceEntry:
        """Hold a Trace made elsewhere for the server's life (model and image "held")."""
        tid = f"t{next(self._ids)}"
        entry = TraceEntry(tid, trace, "held", "held", None, 0, display, 0,
                           cache={"label": label})
        self.pinned[tid] = entry
        return entry

    def trace(self, trace_id: str) -> TraceEntry:
        if trace_id in self.pinned:
            return self.pinned[trace_id]
        hit = self.traces.get(trace_id)
        if hit is None:
            raise Missing(f"trace {trace_id!r} is not held by this server any more (it "
                             "keeps the most recent ones); expected the id of a recent trace "
                             "— compute it again")
        return hit


def _as_model_error(exc: Exception, path: Path, label: str) -> ConvlensError:
    """``exc`` as one line about ``label``: the server's path never reaches the client;
    an unexpected loader failure (a file that fools the loader) is a ModelError too."""
    text = " ".join(str(exc).split())
    for where in (str(path), path.name):
        text = text.replace(where, label)
    if isinstance(exc, ConvlensError):
        return exc if str(exc) == text else type(exc)(text)
    log.warning("loading an uploaded model failed", exc_info=exc)
    return ModelError(f"{label}: cannot load this model ({type(exc).__name__}: {text[:300]}); "
                      "expected a complete, valid file — save or export it again")


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    a.setflags(write=False)
    return a


def _digit(d: int) -> np.ndarray:
    """The first held-out test digit of class ``d``."""
    from convlens.digits import digits
    images, labels = digits()
    return images[int(np.flatnonzero(labels == d)[0])]
