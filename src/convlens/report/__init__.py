"""The self-contained HTML report: ``convlens report`` and ``Trace.to_html``.

One file holds everything — the input and predictions, the architecture diagram, the
journey, explanations that apply, the layer statistics and every stage with its
channels — with every picture embedded as a ``data:`` URI: it opens offline, from a
``file://`` path, and can be mailed or attached as it is.

    convlens.report.write_report(trace, "report.html", max_channels=32)
    trace.to_html("report.html")                 # the same, default options
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from convlens.errors import ConvlensError
from convlens.trace import Trace
from convlens.report.options import ReportOptions
from convlens.report.page import report_html

__all__ = ["ReportOptions", "report_html", "write_report"]


def write_report(trace: Trace, path: str | Path, options: ReportOptions | None = None,
                 **kwargs: Any) -> Path:
    """Write the report of ``trace`` to ``path``; returns the path.  Options are a
    :class:`ReportOptions` or its fields as keywords (``max_channels=32, thumb=48``)."""
    if not isinstance(trace, Trace):
        raise ConvlensError(f"a report needs a convlens Trace; got {type(trace).__name__}")
    if options is not None and kwargs:
        raise ConvlensError("give report options either as options=ReportOptions(...) or as "
                            "keywords, not both")
    if options is None:
        fields = set(ReportOptions.__dataclass_fields__)
        unknown = sorted(set(kwargs) - fields)
        if unknown:
            raise ConvlensError(f"unknown report option(s) {', '.join(unknown)}; expected "
                                f"some of {', '.join(sorted(fields))}")
        options = ReportOptions(**kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(trace, options), encoding="utf-8")
    return path


from convlens.trace import register_view as _register  # noqa: E402

_register("report", write_report)
