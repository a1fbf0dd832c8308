"""The atlas' work: a shard function over batches of image files, and the local engine.

* :func:`list_images` — every image file under a folder, recursively, sorted by path.
* :func:`calibrate` — the run's :class:`Plan`: the stages (default: a handful, see
  :func:`default_stages`), their shapes, the image size fed to the model and the
  histogram bins, all from the first 32 files (the first group with a readable image).
* :func:`run_shard` — the one function every engine runs: batches ``[start, stop)`` of
  the plan, each captured once and folded into a :class:`~convlens.atlas.state.State`.
* :func:`run_local` — the default engine: :func:`run_shard` over the whole run in this
  process, with a progress line (images/s, ETA) on stderr and a checkpoint of the running
  state every ``checkpoint_every`` batches (``OUT/atlas-state.npz``, written atomically);
  ``resume=True`` continues from it and ends with the same result as an uninterrupted
  run (same batches, merged in the same order).

Batches are fixed by the plan: batch ``i`` is ``paths[i*batch:(i+1)*batch]`` (files that
cannot be read are reported and skipped, so a batch may hold fewer images), so every
engine captures exactly the same batches.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from convlens.errors import ConvlensError, ImageError
from convlens.atlas.state import State, batch_state, empty_state, histogram_bins, load_state, merge, responses, save_state

__all__ = ["ModelSpec", "Plan", "list_images", "default_stages", "calibrate", "run_shard",
           "run_local", "CHECKPOINT", "load_spec", "Progress"]

CHECKPOINT = "atlas-state.npz"
MAX_DEFAULT_STAGES = 4
CALIBRATION = 32
"""Files the histogram bins are fixed from (the first ones with a readable image)."""


# -- the model ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """A model as text, so a worker process can load it itself: ``model`` (a model file
    or ``zoo:NAME``) or ``net`` (a toy-network spec built with ``seed``).  ``weights``:
    ``"trained"`` or ``"random"`` for zoo models.  ``in_shape`` is the toy net's input
    ``(C, H, W)`` (needed for its dense layers).  ``weights_file`` (a state dict for
    ``MODULE:CALLABLE``), ``trust_model_code`` and ``preprocess`` (the changes
    :func:`convlens.pipeline.choose_preprocess` takes, as sorted ``(key, value)`` pairs)
    go to :func:`convlens.load_model` and the preprocessing as in every command."""

    model: str | None = None
    net: str | None = None
    backend: str = "torch"
    seed: int = 0
    weights: str = "trained"
    in_shape: tuple[int, int, int] | None = None
    weights_file: str | None = None
    trust_model_code: bool = False
    preprocess: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if (self.model is None) == (self.net is None):
            raise ConvlensError("give exactly one of a model (--model FILE|zoo:NAME) or a "
                                "network spec (--net SPEC)")

    def describe(self) -> str:
        extra = "".join([f" (weights {Path(self.weights_file).name})" if self.weights_file else "",
                         f" (preprocess {dict(self.preprocess)})" if self.preprocess else ""])
        if self.model is not None:
            return self.model + (f" (random weights, seed {self.seed})"
                                 if self.weights == "random" else "") + extra
        return f"net {self.net!r} (seed {self.seed})" + extra

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "net": self.net, "backend": self.backend, "seed": self.seed,
                "weights": self.weights,
                "in_shape": list(self.in_shape) if self.in_shape else None,
                "weights_file": self.weights_file, "trust_model_code": self.trust_model_code,
                "preprocess": {k: list(v) if isinstance(v, tuple) else v
                               for k, v in self.preprocess}}


def load_spec(spec: ModelSpec) -> tuple[Any, Any]:
    """``(model, preprocess)`` for ``spec`` (preprocess ``None``: capture's default)."""
    from convlens.pipeline import choose_preprocess

    changes = dict(spec.preprocess) or None
    if spec.net is not None:
        from convlens.nets import build

        kw = {"in_shape": tuple(spec.in_shape)} if spec.in_shape else {}
        model = build(spec.net, backend=spec.backend, seed=spec.seed, **kw)  # type: ignore[arg-type]
        return model, choose_preprocess(None, changes)
    text = str(spec.model)
    if text.startswith("zoo:") and spec.weights != "trained":
        from convlens.nets import zoo

        zm = zoo.load(text, backend=spec.backend, weights=spec.weights, seed=spec.seed)  # type: ignore[arg-type]
        return zm.model, choose_preprocess(zm.preprocess, changes)
    from convlens.capture.files import load_model

    loaded = load_model(text, backend=spec.backend, weights=spec.weights_file,
                        trust_model_code=spec.trust_model_code)
    return loaded.model, choose_preprocess(loaded.preprocess, changes, loaded=loaded)


# -- the images ---------------------------------------------------------------------------
def image_suffixes() -> frozenset[str]:
    """File suffixes of every format Pillow (so :func:`convlens.load_image`) can read."""
    from PIL import Image

    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                     if fmt in Image.OPEN)


def list_images(folder: str | os.PathLike[str]) -> list[str]:
    """Every image file under ``folder`` (recursively, hidden files and folders left out),
    as POSIX paths relative to it, sorted.  A file counts by its suffix; whether it really
    is an image is found out when it is read."""
    root = Path(folder)
    if not root.is_dir():
        raise ImageError(f"{root}: no such folder; expected a folder of images (searched "
                         "recursively)")
    suffixes = image_suffixes()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in suffixes:
                found.append(Path(dirpath, name).relative_to(root).as_posix())
    found.sort()
    if not found:
        raise ImageError(f"{root}: no image files found (searched recursively for "
                         "PNG, JPEG, BMP, GIF, TIFF, WebP...); expected a folder of images")
    return found


def read_images(root: str | os.PathLike[str], paths: Sequence[str], size: tuple[int, int]
                ) -> tuple[np.ndarray | None, list[str], list[tuple[str, str]]]:
    """``(batch (B, H, W, 3) or None, the paths read, [(path, reason)] not read)``; every
    image resized to ``size`` (bilinear, antialiased) when it is not that size already."""
    from convlens.images import load_image, resize

    ok, good, bad = [], [], []
    for p in paths:
        try:
            im = load_image(Path(root, p))
        except ImageError as exc:
            bad.append((p, str(exc)))
            continue
        ok.append(im if im.shape[:2] == tuple(size) else resize(im, size))
        good.append(p)
    batch = np.ascontiguousarray(np.stack(ok), dtype=np.float32) if ok else None
    return batch, good, bad


# -- the plan -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What a run computes; the same for every engine and every shard."""

    root: str
    paths: tuple[str, ...]
    stages: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    k: int
    batch: int
    size: tuple[int, int]
    """``(H, W)`` every image is resized to before the model's own preprocessing."""
    bins: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(repr=False, compare=False)
    model: str = ""

    @property
    def batches(self) -> int:
        return -(-len(self.paths) // self.batch)

    def batch_paths(self, i: int) -> tuple[str, ...]:
        return self.paths[i * self.batch:(i + 1) * self.batch]

    @functools.cached_property
    def run_id(self) -> str:
        return self.fingerprint()

    def fingerprint(self) -> str:
        """What must agree for a checkpoint to be resumed (and states to be merged)."""
        data = json.dumps([list(self.paths), list(self.stages), self.k, self.batch,
                           list(self.size), self.model])
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def meta(self) -> dict[str, Any]:
        return {"run": self.run_id}

    def empty(self) -> State:
        return empty_state(dict(zip(self.stages, self.shapes)), self.k, self.bins, self.meta())


def default_stages(trace: Any, limit: int = MAX_DEFAULT_STAGES) -> list[str]:
    """A handful of stages worth an atlas: at each spatial resolution the network works at,
    its last merge stage (a residual block's output) or, without one, its last
    convolution — for the deepest ``limit`` resolutions.  (The first, largest maps hold
    colour and edge detectors with fields of a few pixels, and cost the most to summarise:
    ask for them by name.)  A network with neither (an MLP) gets its last dense stage."""
    by_size: dict[tuple[int, int], dict[str, str]] = {}
    for s in trace.stages:
        if len(s.shape) == 3 and s.kind in ("conv", "merge"):
            by_size.setdefault(tuple(s.shape[1:]), {})[s.kind] = s.name
    picks = [d.get("merge", d.get("conv")) for d in by_size.values()]
    if not picks:
        flat = [s.name for s in trace.stages if s.kind in ("dense", "conv")]
        return flat[-1:] or [trace.stages[0].name]
    return [p for p in picks[-limit:] if p is not None]


def _resolve_stages(trace: Any, stages: str | Sequence[str] | None) -> list[str]:
    if stages is None:
        return default_stages(trace)
    selectors = [s.strip() for s in stages.split(",")] if isinstance(stages, str) else list(stages)
    chosen = {s.name for s in trace.select([s for s in selectors if s])}
    names = [s.name for s in trace.stages if s.name in chosen and s.kind != "output"]
    if not names:
        raise ConvlensError(f"--stages {stages!r} selects no stage; expected stage names, "
                            "kinds (conv, merge, activation...) or globs")
    bad = [s.name for s in trace.stages if s.name in names and len(s.shape) not in (1, 3)]
    if bad:
        raise ConvlensError(f"stage {bad[0]!r} is neither spatial (C, H, W) nor flat (N); "
                            "expected conv, merge, activation, pool or dense stages")
    return names


def calibrate(model: Any, preprocess: Any, root: str | os.PathLike[str], paths: Sequence[str],
              stages: str | Sequence[str] | None = None, k: int = 9, batch: int = 32,
              size: tuple[int, int] | None = None, description: str = "") -> Plan:
    """The run's :class:`Plan` from the first :data:`CALIBRATION` files (the first such
    group with a readable image): the stage names (``stages``:
    names, kinds or globs; ``None``: :func:`default_stages`), their shapes, the image size
    (``size``, else the preprocessing's, else the first image's) and the histogram bins."""
    from convlens.capture import capture

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConvlensError(f"k={k!r} is not valid; expected a positive number of images "
                            "per channel, e.g. 9")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ConvlensError(f"batch={batch!r} is not valid; expected a positive batch size, "
                            "e.g. 32")
    size = size or (getattr(preprocess, "size", None) if preprocess is not None else None)
    plan_size = tuple(int(v) for v in size) if size else None
    # the first CALIBRATION files with a readable one (not the first batch: the bins must
    # not depend on the batch size)
    for i in range(0, len(paths), CALIBRATION):
        chunk = paths[i:i + CALIBRATION]
        if plan_size is None:  # the first readable image's size
            from convlens.images import load_image

            for p in chunk:
                try:
                    plan_size = tuple(load_image(Path(root, p)).shape[:2])
                    break
                except ImageError:
                    continue
            if plan_size is None:
                continue
        images, good, _ = read_images(root, chunk, plan_size)  # type: ignore[arg-type]
        if images is None:
            continue
        trace = capture(model, images, preprocess=preprocess, weights="none")
        names = _resolve_stages(trace, stages)
        shapes = tuple(tuple(trace[n].shape) for n in names)
        bins = {n: histogram_bins(responses(trace[n].output)[0]) for n in names}
        return Plan(str(root), tuple(paths), tuple(names), shapes, int(k), int(batch),
                    plan_size, bins, description)  # type: ignore[arg-type]
    raise ImageError(f"{root}: none of the {len(paths)} image files could be read; expected "
                     "PNG, JPEG, BMP, GIF, TIFF or WebP images")


# -- the shard function -------------------------------------------------------------------
def run_shard(model: Any, preprocess: Any, plan: Plan, start: int, stop: int, *,
              state: State | None = None,
              on_batch: Callable[[int, State], None] | None = None) -> State:
    """Batches ``[start, stop)`` of ``plan`` through ``model``, folded into ``state`` (an
    empty one by default) with :func:`~convlens.atlas.state.merge`; ``on_batch(i,
    state)`` runs after each batch.  The one function every engine runs."""
    from convlens.capture import capture

    state = state if state is not None else plan.empty()
    names = list(plan.stages)
    for i in range(start, stop):
        images, good, bad = read_images(plan.root, plan.batch_paths(i), plan.size)
        if images is None:
            outputs: dict[str, np.ndarray] = {
                n: np.zeros((0, *s), np.float32) for n, s in zip(names, plan.shapes)}
        else:
            trace = capture(model, images, layers=names, preprocess=preprocess, weights="none")
            outputs = {n: trace[n].output for n in names}
            for n, s in zip(names, plan.shapes):
                if tuple(outputs[n].shape[1:]) != tuple(s):
                    raise ConvlensError(f"stage {n!r} gave {tuple(outputs[n].shape[1:])} for "
                                        f"batch {i}; expected {tuple(s)} as in the first images")
        state = merge(state, batch_state(outputs, good, plan.k, plan.bins, i, bad, plan.meta()))
        if on_batch is not None:
            on_batch(i, state)
    return state


# -- progress -----------------------------------------------------------------------------
class Progress:
    """One line on stderr, rewritten in place: images done, images/s, ETA."""

    def __init__(self, total: int, done: int = 0, enabled: bool = True, label: str = "atlas",
                 stream: Any = None) -> None:
        self.total, self.start_done, self.done = total, done, done
        self.enabled, self.label = enabled, label
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()
        self.last = 0.0

    def rate(self) -> float:
        dt = time.perf_counter() - self.t0
        return (self.done - self.start_done) / dt if dt > 0 else 0.0

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < 0.25:
            return
        self.last = now
        rate = self.rate()
        left = (self.total - done) / rate if rate > 0 else float("nan")
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if np.isfinite(left) else "--:--:--"
        pct = 100.0 * done / self.total if self.total else 100.0
        self.stream.write(f"\r{self.label}: {done}/{self.total} images ({pct:.0f}%)  "
                          f"{rate:.1f} images/s  ETA {eta} ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.update(self.done, force=True)
            self.stream.write("\n")
            self.stream.flush()


def _images_in(plan: Plan, state: State) -> int:
    """Files of the batches ``state`` covers (read or not): the progress count."""
    return sum(len(plan.paths[a * plan.batch:b * plan.batch]) for a, b in state.batches)


# -- the local engine ---------------------------------------------------------------------
def resume_state(plan: Plan, out: str | os.PathLike[str] | None, resume: bool) -> State | None:
    """The checkpoint under ``out`` when ``resume`` (checked to be this run's), else None."""
    if not resume:
        return None
    if out is None:
        raise ConvlensError("resume=True needs the output folder of the interrupted run "
                            "(out=..., -o OUT), where its checkpoint is")
    path = Path(out, CHECKPOINT)
    if not path.is_file():
        return None  # nothing to resume: start from the beginning
    state = load_state(path)
    if state.meta != plan.meta() or list(state.stages) != list(plan.stages) or state.k != plan.k:
        raise ConvlensError(f"{path} is the checkpoint of another run (different images, "
                            "model, stages, k or batch size); expected the same command as "
                            "the interrupted run — or start afresh without --resume")
    return state


def run_local(model: Any, preprocess: Any, plan: Plan, *, out: str | os.PathLike[str] | None = None,
              resume: bool = False, checkpoint_every: int = 20, progress: bool = True,
              on_batch: Callable[[int, State], None] | None = None) -> State:
    """The whole run in this process, batch after batch (see the module docs)."""
    state = resume_state(plan, out, resume) or plan.empty()
    todo = [i for i in range(plan.batches) if not state.covers(i)]
    bar = Progress(len(plan.paths), _images_in(plan, state), progress)
    ckpt = Path(out, CHECKPOINT) if out is not None else None
    since = 0

    def after(i: int, st: State) -> None:
        nonlocal since, state
        state = st
        since += 1
        bar.update(_images_in(plan, st))
        if ckpt is not None and checkpoint_every and since >= checkpoint_every:
            save_state(st, ckpt)
            since = 0
        if on_batch is not None:
            on_batch(i, st)

    try:
        # the batches left are one contiguous run after a checkpoint of this engine
        for a, b in _runs(todo):
            state = run_shard(model, preprocess, plan, a, b, state=state, on_batch=after)
    except KeyboardInterrupt:
        if ckpt is not None:
            save_state(state, ckpt)
        raise
    finally:
        bar.close()
    if ckpt is not None:
        save_state(state, ckpt)
    return state


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted indices as half-open runs of consecutive ones."""
    out: list[list[int]] = []
    for i in indices:
        if out and i == out[-1][1]:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return [(a, b) for a, b in out]
