"""HTML tables of a Trace's numbers: layer statistics (``trace.stats()``) and the top
predictions (``trace.predictions()``), written with the values the Trace computes."""
from __future__ import annotations

from typing import Any, Sequence

from convlens.errors import TraceError
from convlens.render.text import fmt
from convlens.trace import Stage, Trace
from convlens.display.embed import escape

__all__ = ["stats_table", "stats_line", "predictions", "predictions_table", "STAT_HEAD"]

STAT_HEAD = ("#", "name", "kind", "op", "shape", "min", "max", "mean", "std", "zeros",
             "dead ch")


def _cells(row: dict[str, Any], anchor: str | None = None) -> str:
    name = escape(row["name"])
    if anchor is not None:
        name = f"<a href='#{escape(anchor)}'>{name}</a>"
    left = [str(row["index"]), name, escape(row["kind"]), escape(row["op"]), escape(row["shape"])]
    right = [fmt(row["min"]), fmt(row["max"]), fmt(row["mean"]), fmt(row["std"]),
             f"{100 * row['zeros']:.1f}%", f"{100 * row['dead_channels']:.1f}%"]
    return ("".join(f"<td class='cl-l'>{c}</td>" for c in left)
            + "".join(f"<td>{c}</td>" for c in right))


def stats_table(rows: Sequence[dict[str, Any]], anchors: dict[str, str] | None = None) -> str:
    """Rows of :func:`convlens.analysis.stats.stage_stats` as an HTML table; ``anchors`` maps a
    stage name to the id its name links to."""
    head = "".join(f"<th class='cl-l'>{h}</th>" if k < 5 else f"<th>{h}</th>"
                   for k, h in enumerate(STAT_HEAD))
    body = "".join(f"<tr>{_cells(r, (anchors or {}).get(r['name']))}</tr>" for r in rows)
    return f"<table class='cl-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def stats_line(stage: Stage, image: int | None = None) -> str:
    """One stage's statistics as a one-row table (``image=None``: the whole batch)."""
    from convlens.analysis.stats import stage_stats

    return stats_table([stage_stats(stage, image)])


def predictions(trace: Trace, k: int = 5) -> list[list[Any]] | None:
    """The top ``k`` per image when the trace is a classifier with class names in its
    meta; None otherwise."""
    if not trace.meta.get("class_names"):
        return None
    try:
        return trace.predictions(k)
    except TraceError:
        return None


def predictions_table(preds: Sequence[Any], source: str = "") -> str:
    """One image's top classes: rank, class (index), probability with a bar."""
    rows = []
    for r, p in enumerate(preds, 1):
        width = max(1, round(120 * p.probability))
        idx = "" if p.name == str(p.index) else f" <span class='cl-muted'>({p.index})</span>"
        rows.append(f"<tr><td>{r}</td><td class='cl-l'>{escape(p.name)}{idx}</td>"
                    f"<td>{100 * p.probability:.1f}%</td>"
                    f"<td class='cl-l'><span class='cl-pbar' style='width:{width}px'></span></td>"
                    "</tr>")
    cap = f"<caption class='cl-muted'>{escape(source)}</caption>" if source else ""
    return (f"<table class='cl-table'>{cap}<thead><tr><th>#</th><th class='cl-l'>class</th>"
            f"<th>probability</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
