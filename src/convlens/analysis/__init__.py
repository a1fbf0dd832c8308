"""What convlens reads off a Trace: top-k predictions, per-stage statistics, one-sentence
narration of a stage, and two traces side by side.  Pure NumPy; no framework imports."""
from __future__ import annotations

from convlens.analysis.comparison import compare
from convlens.analysis.narrate import describe_stage
from convlens.analysis.predictions import trace_predictions, with_predictions
from convlens.analysis.stats import StatsTable, trace_stats

__all__ = ["compare", "describe_stage", "trace_predictions", "with_predictions",
           "StatsTable", "trace_stats"]

from convlens.trace import register_view as _register  # noqa: E402

_register("predictions", trace_predictions)
_register("stats", trace_stats)
