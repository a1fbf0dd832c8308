"""Activation maximisation beside an atlas' crops: one synthesised image per shown channel.

The crops say which *real* images a channel answers to most; a maximisation image
(:func:`convlens.attribute.maximize`) says what *input* it would answer to most, made by
gradient ascent from noise.  It needs gradients, so a model with a gradient backend in
the adapter registry (PyTorch eager modules, Keras); for the others (ONNX, TorchScript,
``torch.export`` programs) the atlas says so once (:data:`NEEDS_GRADIENTS`), and writes
nothing.

All the channels of a stage that the pages show are optimised in batches of
:data:`CHUNK` (one :func:`~convlens.attribute.maximize` call each), with one progress
line for the whole job.  Seeded: the same run writes the same PNGs.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from convlens.errors import ConvlensError

__all__ = ["CHUNK", "NEEDS_GRADIENTS", "MaximizeSettings", "gradient_framework",
           "maximize_stages", "picture_path", "settings_for"]

CHUNK = 16
"""Channels optimised together in one batch."""
NEEDS_GRADIENTS = "activation maximisation needs a PyTorch or Keras model"


@dataclass(frozen=True)
class MaximizeSettings:
    """What the atlas passes to :func:`convlens.attribute.maximize`.

    The optimiser there is Adam, whose step is about ``lr`` per coefficient whatever the
    size of its gradient.  Hence two settings differ from ``maximize``'s defaults, so that
    the picture shows the colour a channel wants (tests/test_atlas.py checks it on a
    channel that sees red only):

    * ``decorrelate=False``: in the decorrelated colour basis every coefficient gets a
      gradient of one sign from a red-only channel, and equal steps on all of them move
      the three colours together: the image turns grey-ish (measured on that channel:
      means R 0.74, G 0.75, B 0.77 after 64 steps), not red (R 0.68, G and B 0.50 here);
    * ``penalty="none"``: the smoothness penalty's tiny gradient on a colour the channel
      ignores is also turned into full steps, and that colour drifts (G 0.38, B 0.62
      instead of 0.50).  On a real network the penalty's weight is negligible next to the
      channel's gradient (EfficientNet-Lite0 ``blocks.4.add``, 4 channels: the same final
      objective within 2 %).
    """

    steps: int = 64
    size: tuple[int, int] | None = None
    seed: int = 0
    decorrelate: bool = False
    penalty: str = "none"

    def describe(self) -> dict[str, Any]:
        return {"steps": self.steps, "size": list(self.size) if self.size else None,
                "seed": self.seed, "decorrelate": self.decorrelate, "penalty": self.penalty,
                "chunk": CHUNK,
                "objective": "the channel's mean over positions (spatial stages) or its "
                             "value (flat stages); a ReLU-family stage climbs its input"}


def gradient_framework(model: Any) -> str | None:
    """The adapter name of ``model`` when it has a gradient backend, else None."""
    from convlens.capture.adapters import adapter_for

    try:
        adapter = adapter_for(model)
    except ConvlensError:
        return None
    return adapter.name if adapter.backend is not None else None


def picture_path(stage: str, channel: int) -> str:
    """Where a channel's maximisation image lies, relative to OUT."""
    from convlens.atlas.pages import slug

    return f"maximize/{slug(stage)}/{int(channel)}.png"


@dataclass
class _Line:
    """One progress line on stderr for the whole job: channels done, ETA."""

    total: int
    enabled: bool
    stream: Any = None
    done: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def show(self, now: str) -> None:
        """``now``: what is being worked on (or "" when done)."""
        if not self.enabled:
            return
        out = self.stream if self.stream is not None else sys.stderr
        dt = time.perf_counter() - self.t0
        rate = self.done / dt if dt > 0 and self.done else 0.0
        eta = time.strftime("%H:%M:%S", time.gmtime((self.total - self.done) / rate)) \
            if rate > 0 else "--:--:--"
        out.write(f"\ractivation maximisation: {self.done}/{self.total} channels  "
                  f"{rate:.2f} channels/s  ETA {eta}  {now:<40}")
        if self.done == self.total:
            out.write("\n")
        out.flush()


def maximize_stages(model: Any, preprocess: Any, stages: Sequence[tuple[str, int]],
                    settings: MaximizeSettings, *, progress: bool = True,
                    save: Callable[[str, int, bytes], None]) -> dict[str, Any]:
    """Maximise channels ``0 .. n-1`` of every ``(stage, n)`` in ``stages`` and hand each
    picture to ``save(stage, channel, png)``; returns what goes into ``atlas.json``:
    ``{"seconds": s, "stages": {stage: {channel: {"start": objective, "final": objective}}},
    "notes": [...]}`` (the objective on the starting noise and on the picture) (a stage the maximisation cannot climb gets a note, not an error)."""
    from convlens.attribute.maximize import maximize
    from convlens.display.embed import png_bytes
    from PIL import Image

    line = _Line(sum(n for _, n in stages), progress)
    out: dict[str, Any] = {"stages": {}, "notes": []}
    t0 = time.perf_counter()
    for name, n in stages:
        done: dict[int, dict[str, Any]] = {}
        for a in range(0, n, CHUNK):
            chans = list(range(a, min(n, a + CHUNK)))
            line.show(f"(now {name} {chans[0]}..{chans[-1]})")
            try:
                m = maximize(model, name, chans, size=settings.size, steps=settings.steps,
                             seed=settings.seed, decorrelate=settings.decorrelate,
                             penalty=settings.penalty,  # type: ignore[arg-type]
                             preprocess=preprocess, progress=None)
            except ConvlensError as exc:  # e.g. a stage that does not depend on the input
                out["notes"].append({"stage": name, "note": str(exc)})
                line.done += n - a
                break
            for i, c in enumerate(chans):
                px = (np.clip(m.images[i], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
                save(name, c, png_bytes(Image.fromarray(px)))
                done[c] = {"start": float(m.start[i]), "final": float(m.final[i])}
            line.done += len(chans)
        out["stages"][name] = done
    line.show("")
    out["seconds"] = time.perf_counter() - t0
    return out


def settings_for(size: int | tuple[int, int] | None, steps: int, seed: int, preprocess: Any,
                 plan_size: tuple[int, int]) -> MaximizeSettings:
    """The settings of one run: ``size`` (default: the size the model sees, i.e. the
    preprocessing's resize, else the images' size in the plan)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ConvlensError(f"maximize_steps={steps!r} is not valid; expected a positive "
                            "number of steps, e.g. 64")
    if size is None:
        pre_size = getattr(preprocess, "size", None) if preprocess is not None else None
        hw = tuple(int(v) for v in (pre_size or plan_size))
    elif isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw = (int(size), int(size))
    else:
        hw = tuple(int(v) for v in size)  # type: ignore[union-attr]
    if len(hw) != 2 or min(hw) < 8:
        raise ConvlensError(f"maximize_size={size!r} is not valid; expected a side of at "
                            "least 8 pixels, e.g. 64 or (64, 64)")
    return MaximizeSettings(int(steps), hw, int(seed))  # type: ignore[arg-type]
