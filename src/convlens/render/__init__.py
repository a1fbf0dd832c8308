"""Pictures of a Trace: NumPy + Pillow only (matplotlib is read lazily for colour tables).

Every function returns a :class:`Figure` (a Pillow image plus ``meta`` recording, per
panel, the stage, shape, norm and the value range each colour scale maps); none shows
anything.  Same inputs give byte-identical PNGs (``Figure.save``).

* ``rgb``      a 3-channel stage as an RGB composite
* ``heatmap``  one channel with a colour bar of its real values
* ``grid``     every channel as a labelled tile
* ``bars``     a flat (B, N) stage as bars over a colour strip
* ``stage``    picks rgb / heatmap / grid / bars from the stage's shape
* ``journey``  the input and every stage in order, one band per image
* ``batch``    several images of a batch side by side through one stage
* ``filters``  the kernels of a conv stage on one symmetric scale
* ``predictions``  each image of a classifier trace beside its top classes
"""
from __future__ import annotations

from convlens.render.colormaps import CMAPS, DEFAULT_DIVERGING, DEFAULT_SEQUENTIAL, DIVERGING, SEQUENTIAL, CmapName, lut
from convlens.render.figure import Figure, save_png
from convlens.render.filtersview import filters
from convlens.render.gridview import grid
from convlens.render.journeyview import batch, global_range, journey
from convlens.render.layout import upscale
from convlens.render.predictionsview import predictions
from convlens.render.scale import NORMS, Norm, Scale
from convlens.render.views import bars, heatmap, rgb, stage

__all__ = [
    "Figure", "save_png",
    "rgb", "heatmap", "grid", "bars", "stage", "journey", "batch", "filters", "predictions",
    "Scale", "Norm", "NORMS", "CmapName", "CMAPS", "SEQUENTIAL", "DIVERGING",
    "DEFAULT_SEQUENTIAL", "DEFAULT_DIVERGING", "lut", "upscale", "global_range",
]
