"""``explore(trace)``: pick a stage, a channel, the normalisation and the colour map
with ipywidgets controls (the optional ``convlens[notebook]`` extra).

Without ipywidgets it degrades to the static view (:func:`~convlens.display.trace_html`)
with a line saying how to get the controls — nothing breaks and nothing is hidden.
The picture under the controls is exactly the Figure :attr:`Explorer.figure` returns
(:func:`convlens.render.heatmap` for one channel, :func:`~convlens.render.stage` for
all of them), drawn again on every change.
"""
from __future__ import annotations

from typing import Any

from convlens.errors import RenderError
from convlens.render.colormaps import CMAPS, CmapName
from convlens.render.figure import Figure
from convlens.render.scale import NORMS, Norm
from convlens.render.views import heatmap, stage as stage_figure
from convlens.trace import Trace
from convlens.display.embed import escape
from convlens.display.tables import stats_line
from convlens.display.views import trace_html

__all__ = ["explore", "Explorer", "StaticView", "ALL_CHANNELS"]

ALL_CHANNELS = -1
"""The channel value meaning "every channel" (the stage's natural view)."""
_AUTO = "auto"


class StaticView:
    """What :func:`explore` gives without ipywidgets: the static HTML and the reason."""

    def __init__(self, html: str, reason: str):
        self.html = html
        self.reason = reason

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"StaticView({self.reason})"


class Explorer:
    """The interactive view: ``controls`` (stage, channel, norm, cmap), ``image`` (the
    picture widget), ``stats`` (the stage's statistics) and ``widget`` (all of them)."""

    def __init__(self, trace: Trace, widgets: Any, image: int = 0, max_channels: int = 64):
        self.trace = trace
        self.image_index = image
        self.max_channels = max_channels
        first = trace.stages[0]
        self.controls = {
            "stage": widgets.Dropdown(options=[(f"{s.index}: {s.name} ({s.shape_str})", s.name)
                                               for s in trace.stages],
                                      value=first.name, description="stage"),
            "channel": widgets.IntSlider(value=ALL_CHANNELS, min=ALL_CHANNELS,
                                         max=first.channels - 1, description="channel",
                                         tooltip="-1: all channels"),
            "norm": widgets.Dropdown(options=list(NORMS), value="stage", description="norm"),
            "cmap": widgets.Dropdown(options=[_AUTO, *CMAPS], value=_AUTO, description="cmap"),
        }
        self.image = widgets.Image(format="png")
        self.stats = widgets.HTML()
        self.caption = widgets.HTML()
        for c in self.controls.values():
            c.observe(self._changed, names="value")
        self.widget = widgets.VBox([widgets.HBox(list(self.controls.values())[:2]),
                                    widgets.HBox(list(self.controls.values())[2:]),
                                    self.caption, self.image, self.stats])
        self._draw()

    # -- state -----------------------------------------------------------------
    def figure(self) -> Figure:
        """The Figure for the current control values."""
        st = self.trace[self.controls["stage"].value]
        norm: Norm = self.controls["norm"].value
        cmap: CmapName | None = None if self.controls["cmap"].value == _AUTO \
            else self.controls["cmap"].value
        ch = int(self.controls["channel"].value)
        if st.is_spatial and ch != ALL_CHANNELS:
            return heatmap(st, ch, self.image_index, norm, cmap)
        many = st.is_spatial and st.channels > self.max_channels
        return stage_figure(st, self.image_index, norm, cmap,
                            max_channels=self.max_channels if many else None)

    def _changed(self, change: dict) -> None:
        if change.get("owner") is self.controls["stage"]:
            st = self.trace[self.controls["stage"].value]
            slider = self.controls["channel"]
            slider.value = ALL_CHANNELS
            slider.max = max(st.channels - 1, 0) if st.is_spatial else ALL_CHANNELS
            slider.disabled = not st.is_spatial
        self._draw()

    def _draw(self) -> None:
        st = self.trace[self.controls["stage"].value]
        fig = self.figure()
        self.image.value = fig.to_png_bytes()
        ch = int(self.controls["channel"].value)
        which = "all channels" if ch == ALL_CHANNELS or not st.is_spatial else f"channel {ch}"
        self.caption.value = (f"<b>{escape(st.name)}</b> · {escape(st.kind)} · "
                              f"{escape(st.shape_str)} · {which}")
        self.stats.value = stats_line(st, self.image_index)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def explore(trace: Trace, image: int = 0, max_channels: int = 64) -> Explorer | StaticView:
    """Interactive controls over ``trace`` in a notebook (needs ipywidgets:
    ``pip install "convlens[notebook]"``); without it, the static view."""
    if not isinstance(trace, Trace):
        raise RenderError(f"explore needs a convlens Trace; got {type(trace).__name__}")
    if not trace.stages:
        raise RenderError("explore needs a trace with at least one stage; this one has none")
    b = trace.batch_size
    if isinstance(image, bool) or not isinstance(image, int) or not 0 <= image < b:
        raise RenderError(f"image index {image!r} is out of range; the trace holds {b} "
                          f"image{'s' if b != 1 else ''} (valid: 0..{b - 1})")
    try:
        import ipywidgets as widgets
    except ImportError:
        note = ("<div class='cl' style='color:#8a5a00'>interactive controls need ipywidgets: "
                "<code>pip install \"convlens[notebook]\"</code>; showing the static view</div>")
        return StaticView(note + trace_html(trace, image), "ipywidgets is not installed")
    return Explorer(trace, widgets, image, max_channels)
