"""The framework-neutral record of one forward pass: ``Trace`` and its ``Stage``s.

Everything downstream (rendering, explanations, the CLI) reads Traces and never
imports torch or keras.  Conventions:

* ``Stage.output`` is float32, channels-first: ``(B, C, H, W)`` for spatial
  stages, ``(B, N)`` for flat ones.
* ``Stage.weights`` use PyTorch's layout whatever the framework: a conv kernel
  is ``(out, in / groups, kh, kw)``, a dense matrix ``(out, in)``.
* ``Stage.params`` hold the op's parameters with tuples for pairs
  (``kernel_size=(3, 3)``), so a Trace saved and loaded compares equal.
"""
from __future__ import annotations

import fnmatch
import json
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence, get_args

import numpy as np

from convlens.errors import TraceError, nearest

LARGE_FILE_BYTES = 2 ** 30
"""Files larger than this (1 GiB) are not written without saying so."""

__all__ = ["Stage", "Trace", "StageKind", "STAGE_KINDS", "select_stages", "Deferred",
           "predecessors", "successors", "nearest_names"]

StageKind = Literal[
    "conv", "norm", "activation", "pool", "dense", "flatten", "dropout",
    "merge", "reshape", "output", "other",
]
STAGE_KINDS: tuple[str, ...] = get_args(StageKind)

_FORMAT = "convlens-trace"
_VERSION = 2
_READS = (1, 2)  # version 1: one "source" per stage (sources derived from it)


_PLAIN = frozenset({bool, int, float, str, type(None)})


def _freeze(value: Any) -> Any:
    """Make a params value JSON-round-trippable: lists -> tuples, numpy scalars -> Python."""
    t = type(value)
    if t in _PLAIN:  # fast paths (a capture freezes the params of every stage)
        return value
    if t is dict and all(type(k) is str for k in value):
        return {k: v if type(v) in _PLAIN else _freeze(v) for k, v in value.items()}
    if t is tuple and all(type(v) in _PLAIN for v in value):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _freeze(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TraceError(
        f"stage parameter value {value!r} of type {type(value).__name__} is not storable; "
        "expected numbers, strings, booleans, None, or lists/dicts of them"
    )


def nearest_names(word: str, names: Sequence[str], *, also: Sequence[str] = (),
                  what: str = "stages", n: int = 3) -> str:
    """The end of a "no such stage" message: ``"did you mean 'stem.conv'?"`` for the
    few names nearest ``word`` (glob characters ignored; ``also``: more candidates, such
    as the kinds), else a short look at ``names``
    (all of them when there are few) — never a list of 144 names."""
    names = list(dict.fromkeys(str(x) for x in names))
    probe = str(word).translate({ord(c): None for c in "*?[]"})
    near: list[str] = []
    if probe:
        pool = names + [str(x) for x in also if str(x) not in names]
        near = nearest(probe, pool, n=n, close=True)
    if near:
        return f"did you mean {' or '.join(repr(c) for c in near)}?"
    if not names:
        return f"there are no {what}"
    if len(names) <= 8:
        return f"{what} are: {', '.join(names)}"
    return (f"the {len(names)} {what} run {', '.join(names[:3])} ... {names[-1]} "
            "(all listed by trace.names or convlens stats)")


_FLOAT32 = np.dtype(np.float32)
_DTYPE_F32 = type(_FLOAT32)  # (np.dtype(np.float32) is not free: ~150 of these per capture)


class Deferred:
    """A stage output computed the first time it is read.

    ``capture()`` uses it for stages that are an exact function of an earlier stage's
    output (a convolution, a batch norm in eval mode, a ReLU...): the function is re-run
    on that output with the values the layer had, giving the very numbers the layer
    computed, without holding them during the forward pass.  ``shape`` and ``dtype`` are
    known up front, so asking for a stage's shape computes nothing.  ``after`` is the
    stage whose output ``compute`` reads, when that is a stage: a chain of deferred
    stages is computed oldest first, one level deep each, however long it is.
    """

    __slots__ = ("compute", "shape", "dtype", "after")

    def __init__(self, compute: Any, shape: tuple[int, ...], dtype: Any = _FLOAT32,
                 after: "Stage | None" = None):
        self.compute, self.shape = compute, tuple(shape)
        self.dtype = dtype if type(dtype) is _DTYPE_F32 else np.dtype(dtype)
        self.after = after

    def __repr__(self) -> str:
        return f"Deferred({self.shape}, {self.dtype})"


def _as_output(value: Any) -> np.ndarray:
    out = np.asarray(value)
    if out.dtype not in (np.float32, np.float16):
        out = out.astype(np.float32)
    return out


# What a Trace shows, reports and reads off itself is written by its consumers (display/,
# report/, analysis/), which register it here when ``convlens`` is imported: the core
# imports none of them (tests/test_layout.py checks it).
_VIEWS: dict[str, Callable[..., Any]] = {}


def register_view(name: str, function: Callable[..., Any]) -> None:
    """Make ``function`` what :class:`Trace`/:class:`Stage` call for ``name``
    (``stage_html``, ``stage_png``, ``trace_html``, ``trace_png``, ``figure_html``,
    ``report``, ``predictions``, ``stats``)."""
    _VIEWS[name] = function


def _view(name: str) -> Callable[..., Any]:
    try:
        return _VIEWS[name]
    except KeyError:
        raise TraceError(f"nothing provides {name!r} for a Trace; expected it registered by "
                         "convlens' display, report or analysis package — import convlens "
                         "first") from None


@dataclass(eq=False)
class Stage:
    """One step of the forward pass: what an op (conv, ReLU, pool...) produced."""

    index: int
    name: str
    kind: StageKind
    op: str
    output: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    source: int | None = None
    """Index of the stage whose output fed this one (its first input); -1 for the model
    input; None if unknown.  Always ``sources[0]`` when ``sources`` is not empty."""
    sources: tuple[int, ...] = ()
    """Every stage that fed this one, in argument order (-1 = the model input): the
    edges of the Trace's graph.  A merge (add, concat, multiply) lists all its inputs."""

    def __post_init__(self) -> None:
        self.sources = tuple(int(i) for i in self.sources)
        if not self.sources and self.source is not None:
            self.sources = (int(self.source),)
        elif self.sources and self.source is None:
            self.source = self.sources[0]
        if self.kind not in STAGE_KINDS:
            raise TraceError(
                f"unknown stage kind {self.kind!r}; expected one of {', '.join(STAGE_KINDS)}"
            )
        self.params = _freeze(dict(self.params))
        self.weights = {k: np.asarray(v, dtype=np.float32) for k, v in self.weights.items()}

    @classmethod
    def _trusted(cls, index: int, name: str, kind: str, op: str, output: Any,
                 params: dict[str, Any], weights: dict[str, np.ndarray],
                 source: int | None, sources: tuple[int, ...] | None = None) -> "Stage":
        """A Stage from values already in canonical form (params frozen, weights float32
        arrays, output a float32/float16 array or a :class:`Deferred`): the capture's
        fast path, skipping the checks and conversions of ``__init__``."""
        st = cls.__new__(cls)
        d = st.__dict__
        if sources is None:
            sources = () if source is None else (source,)
        d.update(index=index, name=name, kind=kind, op=op, params=params, weights=weights,
                 source=sources[0] if sources else source, sources=sources)
        if type(output) is Deferred:
            d["_output"], d["_deferred"] = None, output
        else:
            d["_output"], d["_deferred"] = output, None
        return st

    def __getstate__(self) -> dict[str, Any]:  # pickling (e.g. to another process): computed
        self.output  # noqa: B018 - computes a deferred output
        return dict(self.__dict__)

    @property
    def computed(self) -> bool:
        """False while the output is a :class:`Deferred` not yet read."""
        return self.__dict__.get("_deferred") is None

    @property
    def _array_shape(self) -> tuple[int, ...]:
        lazy = self.__dict__.get("_deferred")
        return lazy.shape if lazy is not None else self.output.shape

    # -- shape helpers ------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the output without the batch axis: ``(C, H, W)`` or ``(N,)``."""
        return tuple(self._array_shape[1:])

    @property
    def is_spatial(self) -> bool:
        return len(self._array_shape) == 4

    @property
    def channels(self) -> int:
        shape = self._array_shape
        return int(shape[1]) if len(shape) >= 2 else 1

    @property
    def shape_str(self) -> str:
        """The shape as people write it: ``148x224x3`` (H x W x C) or ``1000``."""
        if self.is_spatial:
            _, c, h, w = self._array_shape
            return f"{h}x{w}x{c}"
        return "x".join(str(s) for s in self.shape)

    def __repr__(self) -> str:
        return f"Stage({self.index}, {self.name!r}, {self.kind}, {self.op}, {self.shape_str})"

    def _repr_html_(self) -> str:  # Jupyter: channels, colour bar, statistics
        return _view("stage_html")(self)

    def _repr_png_(self) -> bytes:
        return _view("stage_png")(self)

    def equals(self, other: "Stage") -> bool:
        """Exact equality of every field, arrays compared element-wise and by dtype."""
        return (
            isinstance(other, Stage)
            and (self.index, self.name, self.kind, self.op, self.source, self.sources)
            == (other.index, other.name, other.kind, other.op, other.source, other.sources)
            and self.params == other.params
            and _arrays_equal(self.output, other.output)
            and self.weights.keys() == other.weights.keys()
            and all(_arrays_equal(self.weights[k], other.weights[k]) for k in self.weights)
        )


def _get_output(self: Stage) -> np.ndarray:
    d = self.__dict__
    out = d["_output"]
    if out is None:
        lazy = d["_deferred"]
        chain, before = [], lazy.after
        while before is not None and before.__dict__.get("_deferred") is not None:
            chain.append(before)  # deferred stages this one is computed from
            before = before.__dict__["_deferred"].after
        for stage in reversed(chain):
            _get_output(stage)
        out = _as_output(lazy.compute())
        if out.shape != lazy.shape:
            raise TraceError(
                f"stage {self.name!r}: the deferred output has shape {out.shape}, expected "
                f"{lazy.shape}; this is a convlens bug — capture with layers= to avoid it"
            )
        d["_output"], d["_deferred"] = out, None  # computed once; the recipe is let go
    return out


def _set_output(self: Stage, value: Any) -> None:
    d = self.__dict__
    if type(value) is Deferred:
        d["_output"], d["_deferred"] = None, value
    else:
        d["_output"], d["_deferred"] = _as_output(value), None


Stage.output = property(  # type: ignore[assignment,method-assign]
    _get_output, _set_output,
    doc="The stage's output, float32 (or float16), channels-first; computed on first "
        "read when the capture deferred it (see :class:`Deferred`).")


class LazyStages:
    """The stages of a :class:`Trace`, made the first time ``trace.stages`` is read.

    ``capture()`` hands these over: making ~150 ``Stage`` objects (names, parameters,
    weight dicts, NumPy views) is bookkeeping the capture itself need not wait for.
    Everything they are made from was fixed during the capture (outputs held or
    computable, weight copies taken), so when they are made changes nothing.
    """

    __slots__ = ("make", "count", "names", "last_shape", "last_is_output", "extra", "built")

    def __init__(self, make: Any, count: int, names: Any, last_shape: tuple[int, ...] | None,
                 last_is_output: bool):
        self.make, self.count = make, count
        self.names = names
        """A callable: the stage names, without making the stages."""
        self.last_shape, self.last_is_output = last_shape, last_is_output
        self.extra: list[Stage] = []
        self.built: list[Stage] | None = None

    def __len__(self) -> int:
        return self.count + len(self.extra)

    def append(self, stage: Stage) -> None:
        if stage.name in self.names():
            raise TraceError(f"two stages are named {stage.name!r}; stage names must be unique")
        if self.built is not None:
            self.built.append(stage)
        else:
            self.extra.append(stage)

    def ends_with(self, shape: tuple[int, ...]) -> bool | None:
        """Is the last stage's output the model's ``output`` of this shape?  None when
        only its values can tell."""
        if self.last_is_output:
            return True
        return None if self.last_shape == tuple(shape) else False

    def build(self) -> list[Stage]:
        if self.built is None:
            stages = self.make()
            stages.extend(self.extra)
            _check_names(stages)
            self.built, self.make, self.extra = stages, None, []
        return self.built


def _check_names(stages: list[Stage]) -> None:
    seen: set[str] = set()
    for stage in stages:
        if stage.name in seen:
            raise TraceError(f"two stages are named {stage.name!r}; stage names must be unique")
        seen.add(stage.name)


def _arrays_equal(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


@dataclass(eq=False)
class Trace:
    """Stages of one forward pass in execution order, with the input that made them.

    ``input`` is the batch of images as the user gave them, ``(B, H, W, 3)`` float32
    in [0, 1].  ``model_input`` is what the model really received, channels-first
    ``(B, C, H, W)``, after the ``preprocessing`` steps listed in order.
    """

    stages: list[Stage]
    input: np.ndarray
    framework: str
    model_name: str
    model_input: np.ndarray | None = None
    preprocessing: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input = np.asarray(self.input, dtype=np.float32)
        if self.model_input is not None:
            self.model_input = np.asarray(self.model_input, dtype=np.float32)
        self.preprocessing = [_freeze(dict(p)) for p in self.preprocessing]
        self.meta = _freeze(dict(self.meta))
        if type(self.stages) is LazyStages:  # made when first read (see __getattr__)
            self.__dict__["_lazy"] = self.__dict__.pop("stages")
        else:
            _check_names(self.stages)

    def __getattr__(self, name: str) -> Any:  # only for what is not set: lazy stages
        if name == "stages":
            lazy = self.__dict__.get("_lazy")
            if lazy is not None:
                stages = lazy.build()
                self.__dict__["stages"] = stages
                self.__dict__.pop("_lazy", None)
                return stages
        raise AttributeError(f"'Trace' object has no attribute {name!r}")

    def __getstate__(self) -> dict[str, Any]:  # pickling, copy: the stages made
        self.stages  # noqa: B018
        return dict(self.__dict__)

    # -- access -------------------------------------------------------------
    def __len__(self) -> int:
        lazy = self.__dict__.get("_lazy")
        return len(lazy) if lazy is not None else len(self.stages)

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages)

    def __getitem__(self, key: int | str) -> Stage:
        if isinstance(key, (int, np.integer)):
            try:
                return self.stages[int(key)]
            except IndexError:
                raise TraceError(
                    f"stage index {key} is out of range; this trace has {len(self)} stages "
                    f"(0..{len(self) - 1})"
                ) from None
        for stage in self.stages:
            if stage.name == key:
                return stage
        raise TraceError(
            f"no stage named {key!r}; expected one of this trace's stage names; "
            f"{nearest_names(key, self.names)}"
        )

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    @property
    def batch_size(self) -> int:
        return int(self.input.shape[0])

    @property
    def output(self) -> np.ndarray:
        """The output of the last stage (the model's output when every stage was kept)."""
        if not self.stages:
            raise TraceError("this trace has no stages")
        return self.stages[-1].output

    @property
    def nbytes(self) -> int:
        """Bytes the trace's arrays take (what :meth:`save` writes, before compression),
        known from the shapes: no stage output is computed to find it."""
        total = self.input.nbytes + (self.model_input.nbytes if self.model_input is not None else 0)
        for s in self.stages:
            d = s.__dict__
            dtype = (d["_deferred"] if d.get("_deferred") is not None else d["_output"]).dtype
            total += int(np.prod(s._array_shape)) * np.dtype(dtype).itemsize
            total += sum(int(w.nbytes) for w in s.weights.values())
        return int(total)

    def select(self, selectors: str | Sequence[str]) -> list[Stage]:
        """Stages matching names, kinds or glob patterns (see :func:`select_stages`)."""
        keep = select_stages([(s.name, s.kind) for s in self.stages], selectors)
        return [s for s in self.stages if s.name in keep]

    def summary(self) -> str:
        """A plain-text table: index, name, kind, op, output shape."""
        rows = [("#", "name", "kind", "op", "output (HxWxC)")]
        rows.append(("", "input", "", "", "x".join(str(s) for s in self.input.shape[1:])))
        for s in self.stages:
            rows.append((str(s.index), s.name, s.kind, s.op, s.shape_str))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def predictions(self, k: int = 5, class_names: Sequence[str] | None = None) -> list:
        """Per image, the ``k`` most probable classes (``Prediction(index, name,
        probability)``, most probable first), read from the last stage: a softmax's
        probabilities, or the softmax of a final dense stage's logits.  Class names come
        from ``meta["class_names"]`` unless given.  See :mod:`convlens.analysis.predictions`."""
        return _view("predictions")(self, k, class_names)

    def stats(self, image: int | None = None) -> Any:
        """A :class:`convlens.analysis.stats.StatsTable`: per stage mean, std, min, max, fraction of
        zeros and of all-zero channels, over the whole batch (``image=None``) or one image.
        See :mod:`convlens.analysis.stats`."""
        return _view("stats")(self, image)

    def __repr__(self) -> str:
        return (
            f"Trace({self.framework}, {self.model_name!r}, batch={self.batch_size}, "
            f"{len(self)} stages)"
        )

    def _repr_html_(self) -> str:  # Jupyter: journey, predictions, statistics
        return _view("trace_html")(self)

    def _repr_png_(self) -> bytes:
        return _view("trace_png")(self)

    def to_html(self, path: str | Path, **options: Any) -> Path:
        """Write one self-contained HTML report of this trace (pictures embedded, no
        external URLs); ``options`` as :func:`convlens.report.write_report`."""
        return _view("report")(self, path, **options)

    # -- persistence --------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the trace to one ``.npz`` file (arrays + a JSON header); returns the path."""
        path = Path(path)
        size = self.nbytes
        if size > LARGE_FILE_BYTES:
            warnings.warn(f"writing {path.name}: about {size / 2 ** 30:.1f} GiB (every stage at "
                          "full size); capture fewer stages (layers=) or smaller images to "
                          "make it smaller", stacklevel=2)
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "framework": self.framework,
            "model_name": self.model_name,
            "preprocessing": self.preprocessing,
            "meta": self.meta,
            "has_model_input": self.model_input is not None,
            "stages": [
                {
                    "index": s.index, "name": s.name, "kind": s.kind, "op": s.op,
                    "params": s.params, "source": s.source, "sources": list(s.sources),
                    "weights": list(s.weights),
                }
                for s in self.stages
            ],
        }
        arrays: dict[str, np.ndarray] = {"input": self.input}
        if self.model_input is not None:
            arrays["model_input"] = self.model_input
        for i, s in enumerate(self.stages):
            arrays[f"s{i}.output"] = s.output
            for k, w in s.weights.items():
                arrays[f"s{i}.w.{k}"] = w
        arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Trace":
        """Read a file written by :meth:`save` (never unpickles anything)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise TraceError(f"{path}: no such file; expected a trace written by Trace.save()") from None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise TraceError(
                f"{path}: not a convlens trace ({type(exc).__name__}: {exc}); "
                "expected a .npz file written by Trace.save()"
            ) from None
        try:
            header = json.loads(arrays.pop("header").tobytes().decode("utf-8"))
            if header.get("format") != _FORMAT:
                raise ValueError("missing format marker")
            if header.get("version") not in _READS:
                raise TraceError(
                    f"{path}: trace format version {header.get('version')} is not supported; "
                    f"this convlens reads versions {', '.join(map(str, _READS))}; "
                    "capture the model again with this convlens"
                )
            stages = [
                Stage(
                    index=h["index"], name=h["name"], kind=h["kind"], op=h["op"],
                    output=arrays[f"s{i}.output"], params=h["params"],
                    weights={k: arrays[f"s{i}.w.{k}"] for k in h["weights"]},
                    source=h["source"], sources=_loaded_sources(h),
                )
                for i, h in enumerate(header["stages"])
            ]
            return cls(
                stages=stages,
                input=arrays["input"],
                framework=header["framework"],
                model_name=header["model_name"],
                model_input=arrays["model_input"] if header["has_model_input"] else None,
                preprocessing=header["preprocessing"],
                meta=header["meta"],
            )
        except TraceError:
            raise
        except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise TraceError(
                f"{path}: damaged or foreign .npz ({type(exc).__name__}: {exc}); "
                "expected a file written by Trace.save()"
            ) from None

    def equals(self, other: "Trace") -> bool:
        """Exact equality of every field (used to check save/load round trips)."""
        return (
            isinstance(other, Trace)
            and (self.framework, self.model_name) == (other.framework, other.model_name)
            and self.preprocessing == other.preprocessing
            and self.meta == other.meta
            and _arrays_equal(self.input, other.input)
            and _arrays_equal(self.model_input, other.model_input)
            and len(self.stages) == len(other.stages)
            and all(a.equals(b) for a, b in zip(self.stages, other.stages))
        )


def _loaded_sources(h: dict[str, Any]) -> tuple[int, ...]:
    """A saved stage's sources (version 1 files kept merges' inputs in params)."""
    if "sources" in h:
        return tuple(h["sources"])
    merged = (h.get("params") or {}).get("sources")
    if merged and all(isinstance(i, int) for i in merged):
        return tuple(merged)
    return () if h["source"] is None else (h["source"],)


def predecessors(stages: Sequence[Stage]) -> dict[int, tuple[int, ...]]:
    """``stage index -> indices of the stages that fed it`` (-1 = the model input)."""
    return {s.index: s.sources for s in stages}


def successors(stages: Sequence[Stage]) -> dict[int, list[int]]:
    """``stage index (or -1, the model input) -> indices of the stages it fed``, in
    execution order: the graph walked forwards."""
    out: dict[int, list[int]] = {-1: []}
    for s in stages:
        out.setdefault(s.index, [])
    for s in stages:
        for src in dict.fromkeys(s.sources):
            out.setdefault(src, []).append(s.index)
    return out


def select_stages(
    stages: Sequence[tuple[str, str]], selectors: str | Sequence[str] | None,
    strict: bool = True,
) -> set[str]:
    """Names of the ``(name, kind)`` pairs matched by any selector.

    A selector is a stage name (``"conv1"``), a kind (``"conv"``, ``"pool"``...) or a
    glob pattern (``"block3*"``); a comma-separated string holds several.  With
    ``strict``, a selector that matches nothing is an error that lists the stages.
    """
    if selectors is None:
        return {name for name, _ in stages}
    if isinstance(selectors, str):
        selectors = [s.strip() for s in selectors.split(",")]
    selectors = [s for s in selectors if s]
    if not selectors:
        raise TraceError("empty layer selection; give stage names, kinds or glob patterns")
    keep: set[str] = set()
    for sel in selectors:
        hits = {
            name for name, kind in stages
            if name == sel or kind == sel or fnmatch.fnmatchcase(name, sel)
        }
        if not hits and strict:
            names = [n for n, _ in stages]
            raise TraceError(
                f"layer selector {sel!r} matches no stage; expected a name, a kind "
                f"({', '.join(STAGE_KINDS)}) or a glob; "
                f"{nearest_names(sel, names, also=STAGE_KINDS)}"
            )
        keep |= hits
    return keep
