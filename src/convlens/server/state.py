"""What the explorer keeps between requests: images, loaded models and recent Traces.

Everything is looked up by an id the server made; nothing a request sends is ever
used as a file-system path.  Traces live in a small least-recently-used cache
bounded by their size in bytes; images in one bounded by count.  Captures run one at
a time (``compute_lock``): capture hooks a model while it runs, so two captures of
the same model must not overlap.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from convlens.errors import ConvlensError, ModelError
from convlens.trace import Trace

__all__ = ["ImageEntry", "ModelEntry", "TraceEntry", "ExplorerState", "Missing", "ZOO_MODELS",
           "DIGIT_IDS"]

ZOO_MODELS: dict[str, str] = {
    "zoo:lenet": "LeNet-5 (digits, trained)",
    "zoo:efficientnet-lite0": "EfficientNet-Lite0 (ImageNet, trained)",
}
DIGIT_IDS = tuple(f"digit-{d}" for d in range(10))


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
                 max_images: int = 32, torch_threads: int | None = None):
        self.cli_model = cli_model
        self.torch_threads = torch_threads
        self.images = _LRU(max_images)
        self.traces = _LRU(64, max_trace_bytes)
        self.models: dict[str, ModelEntry] = {}
        self.pinned: dict[str, TraceEntry] = {}
        """Traces handed to the server (``create_app(traces=...)``, ``serve --trace``):
        kept for the server's life, never evicted."""
        self.model_lock = threading.Lock()
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

    def _load(self, model_id: str) -> ModelEntry:
        if model_id in ZOO_MODELS:
            from convlens.nets import zoo
            zm = zoo.load(model_id)
            return ModelEntry(model_id, ZOO_MODELS[model_id], zm.model, f"zoo:{zm.name}",
                              zm.preprocess_for, zm.class_names, {"zoo": zm.name})
        if model_id == "cli" and self.cli_model:
            from convlens.capture.files import load_model
            lm = load_model(self.cli_model)
            return ModelEntry("cli", lm.name, lm.model, lm.name, lambda _img: lm.preprocess,
                              lm.class_names, dict(lm.meta))
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
                  seed: int, display: np.ndarray) -> TraceEntry:
        tid = f"t{next(self._ids)}"
        nbytes = trace.input.nbytes + sum(
            s.output.nbytes + sum(w.nbytes for w in s.weights.values()) for s in trace.stages)
        entry = TraceEntry(tid, trace, image_id, model_id, spec, seed, display, nbytes)
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


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    a.setflags(write=False)
    return a


def _digit(d: int) -> np.ndarray:
    """The first held-out test digit of class ``d``."""
    from convlens.digits import digits
    images, labels = digits()
    return images[int(np.flatnonzero(labels == d)[0])]
