"""One stage or one channel as a PNG file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from convlens.render.colormaps import CmapName
from convlens.render.figure import save_png
from convlens.render.layout import upscale
from convlens.render.resolve import as_stage, channel_scales, check_channel, check_image, check_int, \
    check_options, require_spatial
from convlens.render.scale import Norm
from convlens.render.views import heatmap, stage as stage_figure
from convlens.trace import Stage, Trace

__all__ = ["save_stage", "save_channel"]


def save_stage(stage: Stage | Trace, path: str | Path, *, layer: str | int | None = None,
               image: int = 0, norm: Norm = "stage", cmap: CmapName | None = None,
               max_channels: int | None = None) -> Path:
    """Write the natural view of a stage (:func:`convlens.render.stage`: RGB, heatmap,
    channel grid or bars, with its colour scale) as a PNG; returns the path."""
    st = as_stage(stage, layer)
    return stage_figure(st, image, norm, cmap, max_channels=max_channels).save(path)


def save_channel(stage: Stage | Trace, channel: int, path: str | Path, *,
                 layer: str | int | None = None, image: int = 0, norm: Norm = "stage",
                 cmap: CmapName | None = None, plain: bool = False, zoom: int = 1) -> Path:
    """Write one channel map as a PNG; returns the path.

    By default the map is drawn by :func:`convlens.render.heatmap` (titled, with a colour
    bar of the real values).  ``plain=True`` writes only the map's own pixels, one pixel
    per value (times ``zoom``, nearest neighbour), coloured through the same scale.
    """
    st = as_stage(stage, layer)
    require_spatial(st, "heatmap")
    c = check_channel(st, channel)
    if not plain:
        return heatmap(st, c, image, norm, cmap).save(path)
    i = check_image(st, image)
    norm, cmap = check_options(norm, cmap)
    zoom = check_int(zoom, "zoom", 1, 64)
    scale = channel_scales(st, i, norm, [c], cmap)[0]
    pixels = upscale(scale.colorize(st.output[i, c]), zoom)
    return save_png(Image.fromarray(np.ascontiguousarray(pixels)), path)
