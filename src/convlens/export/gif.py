"""The journey as an animated GIF: the input, then one stage per frame, each frame
titled with the stage's name, kind and shape and its colour scale, and numbered."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image

from convlens.errors import RenderError
from convlens.render.colormaps import CmapName
from convlens.render.journeyview import global_range
from convlens.render.layout import pad, vstack
from convlens.render.panel import network_input_panel, stage_panel
from convlens.render.resolve import check_image, check_int, check_options
from convlens.render.scale import NORM_LABELS, Norm
from convlens.render.text import BACKGROUND, LABEL, MUTED, text_image
from convlens.trace import Trace

__all__ = ["journey_frames", "journey_gif"]


def journey_frames(trace: Trace, image: int = 0, norm: Norm = "stage", tile: int = 256,
                   max_channels: int = 16, layers: str | Sequence[str] | None = None,
                   cmap: CmapName | None = None) -> list[Image.Image]:
    """The frames of :func:`journey_gif` as RGB images, all the same size."""
    if not isinstance(trace, Trace):
        raise RenderError(f"journey_gif needs a convlens Trace; got {type(trace).__name__}")
    norm, cmap = check_options(norm, cmap)
    tile = check_int(tile, "tile", 64, 1024)
    max_channels = check_int(max_channels, "max_channels", 1)
    stages = trace.select(layers) if layers is not None else list(trace.stages)
    if not stages:
        raise RenderError("the trace has no stages to animate; capture a model first")
    i = check_image(stages[0], image)
    vrange = global_range(stages) if norm == "global" else None
    panels = [network_input_panel(trace, i, tile)]  # what the network saw, as the journey
    panels += [stage_panel(s, i, norm, tile, max_channels, cmap, vrange) for s in stages]
    n = len(panels)
    head = f"{trace.model_name} · {NORM_LABELS[norm]}"
    framed = []
    for k, p in enumerate(panels):
        step = "input" if k == 0 else f"step {k} of {n - 1}"
        framed.append(vstack([text_image(f"{step} · {head}", LABEL, MUTED), p], gap=6))
    w = max(f.width for f in framed) + 20
    h = max(f.height for f in framed) + 20
    frames = []
    for f in framed:
        canvas = Image.new("RGB", (w, h), BACKGROUND)
        canvas.paste(pad(f, 10, 10, 0, 0).image, (0, 0))
        frames.append(canvas)
    return frames


def journey_gif(trace: Trace, path: str | Path, image: int = 0, norm: Norm = "stage",
                tile: int = 256, max_channels: int = 16, duration: int = 900,
                layers: str | Sequence[str] | None = None, cmap: CmapName | None = None,
                loop: int = 0) -> Path:
    """Write the journey of batch item ``image`` as an animated GIF (``duration`` ms a
    frame, looping forever when ``loop=0``); returns the path.  The same inputs give
    the same bytes."""
    duration = check_int(duration, "duration", 20)
    loop = check_int(loop, "loop", 0)
    frames = journey_frames(trace, image, norm, tile, max_channels, layers, cmap)
    # each frame gets its own 256-colour palette (median cut, no dithering)
    pal = [f.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
           for f in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pal[0].save(path, format="GIF", save_all=True, append_images=pal[1:], duration=duration,
                loop=loop, optimize=False, disposal=1)
    return path
