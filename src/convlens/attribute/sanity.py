"""Model-randomisation sanity check (Adebayo et al., "Sanity Checks for Saliency Maps", 2018).

An attribution map that stays the same when the network's learned weights are replaced
by random ones is not explaining the network.  :func:`sanity` computes a map, then
re-computes it on a copy of the model whose layers are randomised one after another
*from the output back to the input* (cascading: each step keeps the earlier
randomisations), and reports after each step how much the map changed:

* **Spearman rank correlation** between the original and the new map (flattened):
  1 = same order of importance, 0 = unrelated.  Ties get their average rank; a map with
  a single value carries no ranking and scores 0 against anything.
* **SSIM** (structural similarity, Wang et al. 2004) of the two maps, each first scaled
  to [0, 1] by its own largest absolute value: the mean over 7x7 windows (smaller for
  smaller maps) of ``(2 mu_a mu_b + c1)(2 cov_ab + c2) / ((mu_a^2 + mu_b^2 + c1)
  (var_a + var_b + c2))`` with ``c1 = 0.01^2``, ``c2 = 0.03^2``: 1 = identical.

Randomising a layer redraws each of its trainable weight tensors from a normal
distribution with that tensor's own mean and standard deviation (same scale, learned
structure gone).  The user's model is never touched: the backend randomises a copy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convlens.errors import ModelError
from convlens.images import resize
from convlens.preprocess import Preprocess
from convlens.render.colorbar import legend
from convlens.render.figure import Figure
from convlens.render.layout import hstack, vstack
from convlens.render.panel import finish, header
from convlens.render.tiles import tile
from convlens.attribute.base import Attribution, Subject, TargetArg, subject
from convlens.attribute.gradcam import default_stage
from convlens.attribute.registry import method_named, methods
from convlens.attribute.overlay import _scale, blend

__all__ = ["SanityStep", "SanityReport", "sanity", "spearman", "ssim", "sanity_figure"]



def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a flat array, ties sharing their average rank."""
    order = np.argsort(a, kind="stable")
    s = a[order]
    first = np.r_[True, s[1:] != s[:-1]]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(a)]
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks = np.empty(len(a))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of one shape (0 when either is constant)."""
    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if x.shape != y.shape:
        raise ModelError(f"maps of shapes {np.shape(a)} and {np.shape(b)}; expected one shape")
    rx, ry = _ranks(x) - (len(x) + 1) / 2.0, _ranks(y) - (len(y) + 1) / 2.0
    den = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / den) if den > 0 else 0.0


def _box_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Means over every k x k window (valid positions only)."""
    c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def ssim(a: np.ndarray, b: np.ndarray, window: int = 7) -> float:
    """Mean SSIM of two 2-D maps, each scaled to [0, 1] by its largest absolute value."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ModelError(f"maps of shapes {x.shape} and {y.shape}; expected two 2-D maps of "
                         "one shape")
    x = x / (np.abs(x).max() or 1.0)
    y = y / (np.abs(y).max() or 1.0)
    k = max(1, min(window, *x.shape))
    mx, my = _box_mean(x, k), _box_mean(y, k)
    vx = _box_mean(x * x, k) - mx ** 2
    vy = _box_mean(y * y, k) - my ** 2
    cxy = _box_mean(x * y, k) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


@dataclass(frozen=True)
class SanityStep:
    """The map after randomising every layer from the output down to ``down_to``."""

    down_to: str
    layers: int
    spearman: float
    ssim: float
    map: np.ndarray


@dataclass(eq=False)
class SanityReport:
    method: str
    stage: str
    original: Attribution
    steps: list[SanityStep]
    image: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> SanityStep:
        """The fully randomised network's step."""
        return self.steps[-1]

    def summary(self) -> str:
        """A plain-text table: layers randomised, Spearman, SSIM."""
        rows = [("randomised down to", "layers", "spearman", "ssim")]
        rows += [(s.down_to, str(s.layers), f"{s.spearman:+.3f}", f"{s.ssim:.3f}")
                 for s in self.steps]
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join("  ".join(c.ljust(x) for c, x in zip(r, w)).rstrip() for r in rows)


def _compute(method: str, sub: Subject, images: Any, stage: str | None,
             target: TargetArg) -> Attribution:
    return method_named(method).function(sub, images, stage, target)


def sanity_methods() -> tuple[str, ...]:
    """The methods the sanity check compares: deterministic class-explaining maps."""
    return tuple(m.name for m in methods("cam", "gradient") if m.deterministic)


def sanity(model: Any, images: Any, stage: str | None = None, target: TargetArg = None, *,
           method: str = "gradcam", steps: int = 6, seed: int = 0,
           preprocess: Preprocess | None = None) -> SanityReport:
    """Cascading model randomisation for one image (the first of ``images``).

    ``steps``: how many cut points along the cascade to report (evenly spread over the
    layers with weights, always ending with every layer randomised).  The class stays
    the one explained on the trained network.  Returns a :class:`SanityReport`.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ModelError(f"steps={steps!r} is not valid; expected a positive integer")
    sub = subject(model, preprocess)
    batch, x = sub.prepare(images)
    batch, x = batch[:1], x[:1]
    kind = method_named(method, "cam", "gradient").kind
    if method not in sanity_methods():
        raise ModelError(f"the sanity check compares maps that are the same on every run; "
                         f"{method!r} is random (use saliency), expected one of "
                         f"{', '.join(sanity_methods())}")
    if kind == "cam" and stage is None:
        stage = default_stage(sub, x)
    original = _compute(method, sub, batch, stage, target)
    order_seen = [s.name for s in sub.backend.stages(x)]
    params = set(sub.backend.parameter_stages())
    cascade = [n for n in reversed(order_seen) if n.split("#")[0] in params]
    cascade = list(dict.fromkeys(n.split("#")[0] for n in cascade))
    if not cascade:
        raise ModelError(f"{sub.name} has no layers with trainable weights to randomise")
    cuts = sorted({int(round(v)) for v in np.linspace(1, len(cascade), min(steps, len(cascade)))})
    copy = sub.backend.clone()
    copy_sub = Subject(copy, sub.preprocess, sub.class_names, sub.name, sub.preprocess_for)
    rng = np.random.default_rng(seed)
    done = 0
    out = []
    for cut in cuts:
        for name in cascade[done:cut]:
            copy.randomize(name, rng)
        done = cut
        new = _compute(method, copy_sub, batch, stage, original.targets)
        out.append(SanityStep(cascade[cut - 1], cut, spearman(original.maps[0], new.maps[0]),
                              ssim(original.maps[0], new.maps[0]), new.maps[0]))
    return SanityReport(method, original.stage, original, out,
                        meta={"seed": seed, "cascade": cascade})


def sanity_figure(report: SanityReport, size: int = 160) -> Figure:
    """The original map, then the map after each randomisation step, with its numbers."""
    img = report.original.images[0]
    h, w = img.shape[:2]
    maps = [report.original.maps[0]] + [s.map for s in report.steps]
    cells = []
    for k, m in enumerate(maps):
        sc = _scale(m.astype(np.float64), report.original.signed, None, None)
        big = resize(m.astype(np.float32), (h, w)) if m.shape != (h, w) else m
        body = tile(blend(img, big, sc, 0.6), {"step": k, **sc.as_meta()}, box=size)
        if k == 0:
            lines = ["trained network", f"max {sc.vmax:.3g}"]
        else:
            s = report.steps[k - 1]
            lines = [f"down to {s.down_to} ({s.layers})", f"spearman {s.spearman:+.2f}",
                     f"ssim {s.ssim:.2f} · max {sc.vmax:.3g}"]
        cells.append(vstack([body, legend(lines, body.width)], gap=2))
    body = hstack(cells, gap=8)
    rng = "RdBu_r, -max ... max" if report.original.signed else "viridis, 0 ... max"
    sub = (f"layers randomised from the output back (cascading); each map on its own range "
           f"({rng}), blended 60% over a grey copy; spearman / ssim 1 = unchanged")
    top = header(f"Sanity check: {report.method} at {report.stage} · "
                 f"{report.original.label(0)}", sub, body.width)
    return finish(vstack([top, body], gap=8), {
        "view": "sanity", "method": report.method, "stage": report.stage,
        "steps": [{"down_to": s.down_to, "layers": s.layers, "spearman": s.spearman,
                   "ssim": s.ssim} for s in report.steps]})
