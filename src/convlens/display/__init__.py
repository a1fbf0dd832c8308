"""Convlens in Jupyter: rich inline views of a Trace, a Stage and a Figure.

``Trace``, ``Stage`` and ``render.Figure`` call these from their ``_repr_html_`` /
``_repr_png_`` methods, so evaluating one in a notebook cell shows it:

* a Trace — its journey (input, then every stage with its shape and colour range; the
  first 12 shown, the rest behind "show all"), a classifier's top predictions and the
  layer statistics;
* a Stage — its channels with the colour bar (the first 16, then "show all") and its
  statistics;
* a Figure — its picture at its own size and what it shows.

All pictures are embedded (``data:`` URIs): no server, no files, works in a saved
notebook.  :func:`explore` adds ipywidgets controls (stage, channel, normalisation,
colour map) when ``convlens[notebook]`` is installed.
"""
from __future__ import annotations

from convlens.display.embed import data_uri, heat_tile_png, png_bytes
from convlens.display.explorer import ALL_CHANNELS, Explorer, StaticView, explore
from convlens.display.gallery import channel_gallery
from convlens.display.style import CSS
from convlens.display.views import figure_html, journey_strip, stage_html, stage_png, trace_html, trace_png

__all__ = [
    "trace_html", "stage_html", "figure_html", "trace_png", "stage_png", "channel_gallery",
    "journey_strip", "explore", "Explorer", "StaticView", "ALL_CHANNELS", "data_uri",
    "png_bytes", "heat_tile_png", "CSS",
]

from convlens.trace import register_view as _register  # noqa: E402

for _name, _fn in (("stage_html", stage_html), ("stage_png", stage_png), ("figure_html", figure_html),
                   ("trace_html", trace_html), ("trace_png", trace_png)):
    _register(_name, _fn)
