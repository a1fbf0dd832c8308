"""Rendering speed (every channel of every stage; the journey; PNG encoding) and how
capture and render time scale with image size and batch size (table + PNG plot)."""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import perf_common as pc

GRID_CONFIGS = [  # tile, norm
    (None, "map"),    # the defaults of render.grid: tiles sized to a ~1200 px grid
    (None, "stage"),
    (16, "map"),      # an explicit small tile: every range written out in full
    (16, "stage"),
]


def _png(fig: Any) -> int:
    buf = io.BytesIO()
    fig.image.save(buf, format="PNG", optimize=False, compress_level=6)
    return len(buf.getvalue())


def _label(tile: int | None, norm: str) -> str:
    if tile is None and norm == "map":
        return "grid(s) (the defaults)"
    return f"grid(s, {'' if tile is None else f'tile={tile}, '}norm='{norm}')"


def render(quick: bool, children: bool) -> tuple[str, str, dict[str, Any]]:
    import convlens
    from convlens import render as rd
    from convlens.render.encode import png_bytes

    model, images, pp = pc.case("efficientnet-lite0")
    trace = convlens.capture(model, images, preprocess=pp)
    spatial = [s for s in trace if s.is_spatial]
    # another view of the cat for each configuration: "another image" renders new numbers
    # (new range labels to draw) in a process that has drawn grids before
    others = [[s for s in convlens.capture(model, view, preprocess=pp) if s.is_spatial]
              for view in pc.batch_of(len(GRID_CONFIGS) + 1)[1:]]
    for s in spatial + [s for o in others for s in o]:
        s.output  # noqa: B018 - outputs made NumPy before timing (a lazy capture may defer it)
    maps = sum(s.channels for s in spatial)
    n = len(spatial)
    rows, raw = [], {}
    reps = 3 if quick else 5
    for (tile, norm), other in zip(GRID_CONFIGS, others):
        times, pixels = [], 0
        for r in range(reps):
            t = time.perf_counter()
            figs = [rd.grid(s, tile=tile, norm=norm) for s in spatial]
            times.append(time.perf_counter() - t)
            pixels = sum(f.size[0] * f.size[1] for f in figs)
            widest = max(f.size[0] for f in figs)
            if r < reps - 1:
                del figs
        warm = pc.med(times[1:])  # the first round draws every label once (see "fresh process")
        t = time.perf_counter()
        sizes = [len(b) for b in png_bytes(figs, workers=1)]
        serial = time.perf_counter() - t
        t = time.perf_counter()
        png_bytes(figs, workers=pc.THREADS)
        threaded = time.perf_counter() - t
        del figs
        t = time.perf_counter()
        figs = [rd.grid(s, tile=tile, norm=norm) for s in other]
        another = time.perf_counter() - t
        del figs
        cold = pc.child({"kind": "render_cold", "tile": tile, "norm": norm}) if children else {}
        key = f"{'auto' if tile is None else tile}/{norm}"
        raw[key] = {"warm": warm, "best": min(times[1:]), "another": another, "cold": cold.get("grids"),
                    "pixels": pixels, "widest": widest, "png_serial": serial,
                    "png_threads": threaded, "png_bytes": sum(sizes), "grids": n, "maps": maps}
        rows.append([_label(tile, norm), f"{pixels / 1e6:.0f}", str(widest),
                     f"{warm:.2f}", f"{min(times[1:]):.2f}", f"{another:.2f}", f"{maps / warm:,.0f}",
                     f"{n / warm:,.0f}",
                     f"{cold['grids']:.2f}" if cold.get("grids") else "-",
                     f"{serial:.1f}", f"{threaded:.1f}", f"{n / (warm + threaded):,.0f}",
                     f"{sum(sizes) / 2**20:.0f}"])
    head = [f"EfficientNet-Lite0, cat: all {maps:,} channel maps of {n} stages, one grid each",
            "Mpx", "widest, px", "render, s (warm, median)", "render, s (best)",
            "render, s (another image)", "maps/s",
            "grids/s", "render, s (fresh process)", "PNG encode, s (1 thread)",
            f"PNG encode, s ({pc.THREADS} threads)", f"render + PNG ({pc.THREADS} threads), grids/s",
            "PNG MB"]
    grid_table = pc.table(head, rows)

    jt = []
    for _ in range(5 if quick else 15):
        t = time.perf_counter()
        fig = rd.journey(trace)
        jt.append(time.perf_counter() - t)
    t = time.perf_counter()
    nbytes = _png(fig)
    enc = time.perf_counter() - t
    panels = len(fig.meta["panels"])
    raw["journey"] = {"median": pc.med(jt[1:]), "min": min(jt), "png": enc, "panels": panels}
    journey_table = pc.table(
        ["journey (EfficientNet-Lite0, cat)", "panels", "size, px", "render, ms (median)",
         "render, ms (best)", "panels/s", "PNG encode, ms", "PNG KB"],
        [["render.journey(trace)", str(panels), f"{fig.size[0]}x{fig.size[1]}",
          pc.ms(pc.med(jt[1:])), pc.ms(min(jt)), f"{panels / pc.med(jt[1:]):,.0f}", pc.ms(enc),
          f"{nbytes / 1024:.0f}"]])
    return grid_table, journey_table, raw


SIZES = [112, 224, 448, 672, 896]
BATCHES = [1, 2, 4, 8, 16, 32]


def scaling(quick: bool) -> tuple[str, dict[str, Any]]:
    """plain / capture / journey time at each image size (batch 1) and batch size (224)."""
    import convlens
    from convlens import render as rd

    raw: dict[str, Any] = {"size": {}, "batch": {}}
    rows = []
    points = [("size", s, 1) for s in (SIZES[:3] if quick else SIZES)]
    points += [("batch", 224, b) for b in (BATCHES[:3] if quick else BATCHES)]
    for axis, size, batch in points:
        model, images, pp = pc.case("efficientnet-lite0", size, batch)
        fns = pc.methods(model, images, pp)
        trace = convlens.capture(model, images, preprocess=pp)
        budget = 4 if quick else 15
        times = pc.interleaved({"plain": fns["plain"], "capture": fns["capture"],
                                "journey": lambda: rd.journey(trace)},
                               rounds=3 if quick else 9, warmup=1, budget_s=budget)
        key = size if axis == "size" else batch
        raw[axis][key] = {m: pc.med(t) for m, t in times.items()}
        raw[axis][key]["ratio"] = pc.ratio(times["capture"], times["plain"])
        raw[axis][key]["faults"] = pc.faults_per_call(fns["capture"], 3)
        r = raw[axis][key]
        rows.append([f"{size}x{size}", str(batch), pc.ms(r["plain"]), pc.ms(r["capture"]),
                     f"{r['ratio']:.2f}x", f"{r['faults']:,.0f}", pc.ms(r["journey"]),
                     str(len(times["plain"]))])
        print(f"  {axis} {key}: capture {r['ratio']:.2f}x", flush=True)
    head = ["image", "batch", "plain, ms", "capture, ms", "capture / plain",
            "capture: page faults / call", "journey render, ms", "rounds"]
    return pc.table(head, rows), raw


def plot(raw: dict[str, Any], path: Path) -> Path:
    """Two log-log panels (time vs image size, time vs batch), matplotlib Agg only here."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig = Figure(figsize=(10, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    styles = {"plain": ("plain forward", "o-"), "capture": ("convlens.capture", "s-"),
              "journey": ("render.journey", "^--")}
    for ax, axis, xlabel in ((fig.add_subplot(1, 2, 1), "size", "image size (px, square)"),
                             (fig.add_subplot(1, 2, 2), "batch", "batch size (224 px)")):
        xs = sorted(raw[axis])
        for key, (label, style) in styles.items():
            ax.plot(xs, [raw[axis][x][key] * 1e3 for x in xs], style, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("time, ms (median)")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"EfficientNet-Lite0 on the cat, {pc.THREADS} CPU threads")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path

