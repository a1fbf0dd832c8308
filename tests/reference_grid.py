"""``render.grid`` the straightforward way, the reference the vectorised grid is checked
against: a Scale, a framed tile and text images per channel, stacked into cells, laid
out, headed, padded (what ``render.grid`` drew before it was vectorised)."""
from __future__ import annotations

from convlens import render
from convlens.render.colorbar import colorbar, legend
from convlens.render.layout import grid_layout, vstack
from convlens.render.panel import finish, header, stage_record, wrap
from convlens.render.scale import NORM_LABELS, count_nonfinite, nonfinite_note
from convlens.render.text import INK, MUTED, SMALL, text_image, text_width
from convlens.render.tiles import heat_pixels, tile as draw_tile
from convlens.trace import Stage


def grid_by_blocks(st: Stage, image: int, norm: str, chs: list[int], scales: list, zoom: int,
                   cols: int, labels: list[list[str]], note: str | None = None) -> render.Figure:
    """Channels ``chs`` of image ``image`` with their ``scales``, each tile ``zoom`` times
    its size, ``cols`` to a row, channel ``k`` labelled ``labels[k]`` (first line in ink)."""
    x = st.output[image]
    cells = []
    for c, s, labs in zip(chs, scales, labels):
        body = draw_tile(heat_pixels(x[c], s), {"channel": c, **s.as_meta(), "labels": labs},
                         zoom=zoom)
        width = max(body.width, *(text_width(t, SMALL) for t in labs))
        texts = [text_image(t, SMALL, INK if j == 0 else MUTED, width=width, align="center")
                 for j, t in enumerate(labs)]
        cells.append(vstack([texts[0], body, *texts[1:]], gap=1, align="center"))
    body = grid_layout(cells, cols, gap=6)
    rec = stage_record(st, image, norm, "grid")
    shown = (f"channels {len(chs)} of {st.channels}" if len(chs) < st.channels
             else f"{st.channels} channels")
    sub = f"{st.kind} · {st.op} · {st.shape_str} · {shown} · image {image} · {NORM_LABELS[norm]}"
    parts = [header(st.name, sub, max(body.width, 360)), body]
    bar_labels: list[str] = []
    if norm != "map":
        length = min(max(body.width, 160), 420)
        s = scales[0]
        if norm == "standard":
            bar, bar_labels = colorbar(s, length, sigma_units=True,
                                       caption=f"each map standardised: (x - mean) / sd · {s.cmap}")
        else:
            bar, bar_labels = colorbar(s, length, caption=f"{NORM_LABELS[norm]} · {s.cmap}")
            rec.update({k: v for k, v in s.as_meta().items()
                        if k in ("vmin", "vmax", "cmap", "signed", "constant", "empty")})
        parts.append(bar)
    rec.update(labels=bar_labels, channels=chs, zoom=zoom)
    if note is not None:
        parts.append(legend([note], max(body.width, 360)))
        rec["notes"] = [note]
    counts = count_nonfinite(x[chs])  # NaN and inf, counted and named under the grid
    rec.update(nan=counts["nan"], inf=counts["inf"])
    if nonfinite_note(counts):
        parts.append(legend([nonfinite_note(counts)], max(body.width, 360)))
        rec["nonfinite"] = nonfinite_note(counts)
    return finish(wrap(vstack(parts, gap=6), rec), {"view": "grid"})
