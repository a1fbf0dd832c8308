"""The explorer's work: run a model on an image, and pack what the page draws.

``make_entry`` captures a Trace (a toy network from its spec, a zoo network or the
command-line model); ``journey_frame`` packs every stage's preview and metadata into
one binary frame (see :mod:`.encode`); ``channels_frame`` packs a run of channels of one
stage.  Nothing here imports FastAPI.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from convlens.errors import SpecError
from convlens.preprocess import describe_steps
from convlens.trace import Stage, Trace
from convlens.server.graph import consumers, inputs_of, merge_operation, positions
from convlens.server.encode import encode_channels, finite_minmax, pack, quantize
from convlens.server.state import ExplorerState, TraceEntry

__all__ = ["DEFAULT_SPEC", "LIMITS", "check_spec", "make_entry", "journey_frame", "channels_frame",
           "predictions", "display_image", "stage_at", "pin_trace"]

DEFAULT_SPEC = "conv(3, 3x3) relu maxpool(3) conv(3, 3x3) relu maxpool(2)"
"""The toy network the page starts with (the 2017 tutorial's two-layer experiment)."""

LIMITS: dict[str, int] = {
    "spec_layers": 24,
    "filters": 4096,
    "kernel": 64,
    "values": 48_000_000,
    "upload_side": 640,
    "journey_channels": 16,
    "journey_side": 112,
    "flat_preview": 2048,
}
"""Bounds on what one request may ask for: layers and filters of a toy network, the
float values one trace may hold, the longer side of an uploaded image (larger ones are
scaled down), and the size of journey previews."""


def check_spec(spec: str, hw: tuple[int, int]):
    """Parse a toy-network spec and refuse one too large for an interactive explorer."""
    from convlens.nets import parse_spec
    from convlens.nets.spec import Conv, Pool

    net = parse_spec(spec)
    if len(net.layers) > LIMITS["spec_layers"]:
        raise SpecError(f"the network has {len(net.layers)} layers; the explorer takes at most "
                        f"{LIMITS['spec_layers']} — remove some steps")
    for layer in net.layers:
        if isinstance(layer, Conv) and layer.filters > LIMITS["filters"]:
            raise SpecError(f"{layer.name} has {layer.filters} filters; the explorer takes at "
                            f"most {LIMITS['filters']} — use fewer filters")
        k = layer.kernel if isinstance(layer, Conv) else layer.size if isinstance(layer, Pool) \
            else (1, 1)
        if max(k) > LIMITS["kernel"]:
            raise SpecError(f"{layer.name} has a {k[0]}x{k[1]} window; the explorer takes at "
                            f"most {LIMITS['kernel']}x{LIMITS['kernel']} — use a smaller one")
    total = sum(math.prod(shape) for _, shape in net.shapes((3, *hw)))
    if total > LIMITS["values"]:
        raise SpecError(f"on this {hw[0]}x{hw[1]} image the network makes {total:,} values; "
                        f"the explorer takes at most {LIMITS['values']:,} — use fewer filters, "
                        "a stride or pooling earlier")
    return net


def display_image(trace: Trace) -> np.ndarray:
    """The input as the model saw it, as RGB in [0, 1], at the model input's size."""
    x = trace.input[0]
    if trace.model_input is None:
        return x
    c, h, w = trace.model_input.shape[1:]
    if x.shape[:2] == (h, w) and c == 3:
        return x
    if c == 3:
        from convlens.images import resize
        return np.clip(resize(x, (h, w)), 0.0, 1.0)
    grey = trace.model_input[0, 0].astype(np.float64)
    span = float(np.ptp(grey)) or 1.0
    return np.repeat(((grey - grey.min()) / span)[..., None], 3, axis=-1).astype(np.float32)


def make_entry(state: ExplorerState, image_id: str, model_id: str, spec: str | None,
               seed: int, preset: str | None = None) -> tuple[TraceEntry, float]:
    """Capture one Trace and keep it; returns ``(entry, milliseconds)``.  ``preset`` (a
    name in :data:`convlens.preprocess.PRESETS`) replaces the model's own preprocessing,
    by :func:`convlens.pipeline.choose_preprocess` — the rule ``convlens run
    --preprocess`` follows, so the model input is the same."""
    from convlens.capture import capture
    from convlens.pipeline import choose_preprocess

    img = state.image(image_id)
    given = {"preset": preset} if preset is not None else None
    t0 = time.perf_counter()
    if model_id == "toy":
        from convlens.nets import build
        spec = DEFAULT_SPEC if spec is None else spec
        if not spec.strip():
            raise SpecError("the toy network is empty; expected a spec such as "
                            "'conv(3, 3x3) relu maxpool(5)' — add a step")
        net = check_spec(spec, img.pixels.shape[:2])
        pre = choose_preprocess(None, given)
        with state.compute_lock:
            state.set_threads()
            model = build(net, backend="torch", seed=seed, in_shape=(3, *img.pixels.shape[:2]))
            trace = capture(model, img.pixels, name=net.text(), preprocess=pre,
                            meta={"spec": net.text(), "seed": seed, "backend": "torch"})
        spec = net.text()
    else:
        m = state.model(model_id)
        meta: dict[str, Any] = dict(m.meta)
        if m.class_names is not None:
            meta["class_names"] = list(m.class_names)
        pre = choose_preprocess(m.preprocess_for(img.pixels), given)
        with state.compute_lock:
            state.set_threads()
            trace = capture(m.model, img.pixels, preprocess=pre, name=m.name, meta=meta)
        spec = None
    ms = (time.perf_counter() - t0) * 1000
    return state.add_trace(trace, image_id, model_id, spec, seed, display_image(trace), pre,
                           preset), ms


def pin_trace(state: ExplorerState, trace: Trace, label: str | None = None) -> TraceEntry:
    """Hold a Trace captured elsewhere (or loaded with ``Trace.load``) for the page."""
    label = label or f"{trace.model_name} ({len(trace)} stages, saved)"
    return state.pin(trace, display_image(trace), label)


def stage_at(entry: TraceEntry, position: int) -> Stage:
    from convlens.server.state import Missing
    stages = entry.trace.stages
    if not 0 <= position < len(stages):
        raise Missing(f"stage {position} does not exist; trace {entry.id} has stages "
                      f"0..{len(stages) - 1}")
    return stages[position]


def predictions(trace: Trace, k: int = 5) -> dict[str, Any] | None:
    """Top-``k`` classes when the last stage is a classifier's output, else None."""
    if not trace.stages:
        return None
    last = trace.stages[-1]
    names = trace.meta.get("class_names")
    softmax = last.kind == "activation" and last.params.get("function") == "softmax"
    if last.is_spatial or (names is None and not softmax):
        return None
    if names is not None and len(names) != last.output.shape[1]:
        names = None
    from convlens.nets.zoo import topk
    top = topk(last.output[:1], list(names) if names else None, k)[0]
    return {"stage": last.name, "probabilities": softmax,
            "top": [{"index": p.index, "name": p.name, "value": p.probability} for p in top]}


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        return v
    return conv(params)


def _stage_record(stage: Stage, position: int, inputs: list[int | None],
                  used_by: list[int]) -> dict[str, Any]:
    x = stage.output[0]
    r = finite_minmax(x)
    return {
        "position": position, "index": stage.index, "name": stage.name, "kind": stage.kind,
        "op": stage.op, "shape": list(stage.shape), "shape_str": stage.shape_str,
        "spatial": stage.is_spatial, "params": _jsonable(stage.params), "source": stage.source,
        "sources": list(stage.sources), "inputs": inputs, "consumers": used_by,
        "merge": merge_operation(stage) if stage.kind == "merge" else None,
        "min": r[0] if r else 0.0, "max": r[1] if r else 0.0,
        "has_weights": sorted(stage.weights),
    }


def _preview(stage: Stage) -> tuple[dict[str, Any], np.ndarray]:
    x = stage.output[0]
    if stage.is_spatial:
        n = min(x.shape[0], LIMITS["journey_channels"])
        cols = math.ceil(math.sqrt(n))
        desc, q = encode_channels(x[:n], max(8, LIMITS["journey_side"] // cols))
        desc["cols"] = cols
        return desc, q
    flat = x.reshape(-1)
    n = min(flat.size, LIMITS["flat_preview"])
    r = finite_minmax(flat) or (0.0, 0.0)
    q = quantize(flat[None, :n], np.array([r[0]]), np.array([r[1]]))
    return {"channels": 1, "n": int(flat.size), "sent": n, "lo": [r[0]], "hi": [r[1]]}, q


def journey_frame(entry: TraceEntry, features: dict[str, bool], capture_ms: float) -> bytes:
    """Every stage's record and preview, the input picture, predictions: one frame."""
    t0 = time.perf_counter()
    trace = entry.trace
    blobs: list[Any] = []
    disp = np.round(np.clip(entry.display, 0, 1) * 255).astype(np.uint8)
    blobs.append(np.ascontiguousarray(disp))
    stages = []
    where = positions(trace.stages)
    inputs = [inputs_of(trace, p, where) for p in range(len(trace.stages))]
    used_by = consumers(inputs)
    for pos, stage in enumerate(trace.stages):
        rec = _stage_record(stage, pos, inputs[pos], used_by[pos])
        desc, q = _preview(stage)
        desc["blob"] = len(blobs)
        blobs.append(q)
        rec["preview"] = desc
        stages.append(rec)
    lo = min((s["min"] for s in stages), default=0.0)
    hi = max((s["max"] for s in stages), default=0.0)
    header = {
        "trace": {
            "id": entry.id, "model": trace.model_name, "model_id": entry.model_id,
            "framework": trace.framework, "image": entry.image_id, "spec": entry.spec,
            "seed": entry.seed, "original": list(trace.input.shape[1:3]),
            "preprocessing": _jsonable({"steps": trace.preprocessing})["steps"],
            "preprocessing_text": describe_steps(trace.preprocessing),
            "preset": entry.preset,
        },
        "input": {"blob": 0, "h": int(disp.shape[0]), "w": int(disp.shape[1])},
        "stages": stages,
        "global": [lo, hi],
        "predictions": predictions(trace),
        "features": features,
        "timing": {"capture_ms": round(capture_ms, 2)},
    }
    header["timing"]["encode_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    return pack(header, blobs)


def channels_frame(entry: TraceEntry, position: int, start: int, count: int,
                   max_side: int) -> bytes:
    """Channels ``start .. start + count - 1`` of a stage (a flat stage: all its values)."""
    from convlens.server.state import Missing
    stage = stage_at(entry, position)
    x = stage.output[0]
    if not stage.is_spatial:
        flat = x.reshape(-1)
        r = finite_minmax(flat) or (0.0, 0.0)
        q = quantize(flat[None], np.array([r[0]]), np.array([r[1]]))
        desc = {"flat": True, "n": int(flat.size), "lo": [r[0]], "hi": [r[1]],
                "start": 0, "count": 1}
        return pack({"stage": stage.name, "position": position, **desc}, [q])
    c = x.shape[0]
    if not 0 <= start < c:
        raise Missing(f"channel {start} does not exist; stage {stage.name!r} has channels "
                      f"0..{c - 1}")
    stop = min(c, start + count)
    desc, q = encode_channels(x[start:stop], max_side)
    return pack({"stage": stage.name, "position": position, "flat": False, "start": start,
                 "count": stop - start, **desc}, [q])
