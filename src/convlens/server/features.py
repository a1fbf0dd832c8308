"""Optional parts of the page, each backed by a convlens module that may be absent:
the architecture diagram (:mod:`convlens.explain.architecture`), Grad-CAM
(:mod:`convlens.attribute`) and the HTML report (:mod:`convlens.report`).
``available()`` says which the page may offer; a missing one is a clear error."""
from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from convlens.errors import ConvlensError
from convlens.trace import Trace

__all__ = ["available", "architecture_svg", "gradcam", "report_html"]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _gradcam_fn():
    try:
        from convlens.attribute import gradcam as fn
    except ImportError:
        return None
    return fn


def available(trace: Trace | None = None, model_id: str | None = None) -> dict[str, bool]:
    """Which optional features this installation supports; given a trace (and the id of
    the model that made it), which apply to it.  Grad-CAM needs a classifier the server
    keeps (a zoo model or the command-line model, not a toy network or a held Trace)."""
    classifier = trace is not None and model_id not in (None, "toy", "held") and bool(
        trace.stages and not trace.stages[-1].is_spatial and trace.meta.get("class_names"))
    return {
        "architecture": _has("convlens.explain.architecture"),
        "gradcam": (trace is None or classifier) and _has("convlens.attribute")
        and _gradcam_fn() is not None,
        "report": _has("convlens.report"),
    }


def architecture_svg(trace: Trace) -> str:
    if not _has("convlens.explain.architecture"):
        raise ConvlensError("the architecture diagram needs convlens.explain, which this "
                            "installation lacks; expected convlens with its explain package")
    from convlens.explain.architecture import architecture_svg as svg
    return svg(trace, title=trace.model_name)


def gradcam(state: Any, entry: Any, target: int | None) -> dict[str, Any]:
    """Grad-CAM of class ``target`` (default: the top class) at the model's last spatial
    stage, normalised to 0..255 at the stage's resolution (the page stretches it)."""
    fn = _gradcam_fn()
    if fn is None or not available(entry.trace, entry.model_id)["gradcam"]:
        raise ConvlensError("Grad-CAM is not available here; expected a classifier (a zoo "
                            "model or the --model given to convlens serve) and convlens."
                            "attribute installed")
    m = state.model(entry.model_id)
    pixels = state.image(entry.image_id).pixels
    with state.compute_lock:
        state.set_threads()
        pre = entry.preprocess if entry.preprocess is not None else m.preprocess_for(pixels)
        att = fn(m.model, pixels, target=target, preprocess=pre)
    cam = np.asarray(att.maps[0], dtype=np.float64)
    top = float(cam.max()) if cam.size else 0.0
    codes = np.round(cam / top * 255) if top > 0 else np.zeros_like(cam)
    t = int(att.targets[0])
    name = att.target_names[0] if att.target_names else (
        m.class_names[t] if m.class_names and t < len(m.class_names) else f"class {t}")
    return {"stage": att.stage, "class_index": t, "class_name": name,
            "h": int(cam.shape[0]), "w": int(cam.shape[1]), "max": top,
            "values": codes.astype(int).reshape(-1).tolist()}


def report_html(trace: Trace) -> str:
    if not _has("convlens.report"):
        raise ConvlensError("the HTML report needs convlens.report, which this installation "
                            "lacks; expected convlens with its report module")
    from convlens.report import report_html as html
    return html(trace)
