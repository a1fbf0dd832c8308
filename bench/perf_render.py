"""Rendering speed (every channel of every stage; the journey; PNG encoding) and how
capture and render time scale with image size and batch size (table + PNG plot)."""
from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import perf_common as pc

GRID_CONFIGS = [  # tile, norm
    (96, "map"),   # the defaults of render.grid
    (16, "map"),
    (16, "stage"),
]


def _png(fig: Any) -> int:
    buf = io.BytesIO()
    fig.image.save(buf, format="PNG", optimize=False, compress_level=6)
    return len(buf.getvalue())


def render(quick: bool, children: bool) -> tuple[str, str, dict[str, Any]]:
    import convlens
    from convlens import render as rd

    model, images, pp = pc.case("efficientnet-lite0")
    trace = convlens.capture(model, images, preprocess=pp)
    spatial = [s for s in trace if s.is_spatial]
    maps = sum(s.channels for s in spatial)
    rows, raw = [], {}
    reps = 2 if quick else 3
    for tile, norm in GRID_CONFIGS:
        times, pixels = [], 0
        for _ in range(reps):
            t = time.perf_counter()
            figs = [rd.grid(s, tile=tile, norm=norm) for s in spatial]
            times.append(time.perf_counter() - t)
            pixels = sum(f.size[0] * f.size[1] for f in figs)
            if _ < reps - 1:
                del figs
        warm = pc.med(times)
        t = time.perf_counter()
        sizes = [_png(f) for f in figs]
        serial = time.perf_counter() - t
        with ThreadPoolExecutor(pc.THREADS) as pool:
            t = time.perf_counter()
            list(pool.map(_png, figs))
            threaded = time.perf_counter() - t
        del figs
        cold = pc.child({"kind": "render_cold", "tile": tile, "norm": norm}) if children else {}
        raw[f"{tile}/{norm}"] = {"warm": warm, "cold": cold.get("grids"), "pixels": pixels,
                                 "png_serial": serial, "png_threads": threaded,
                                 "png_bytes": sum(sizes)}
        rows.append([f"grid(tile={tile}, norm='{norm}')", f"{pixels / 1e6:.0f}",
                     f"{warm:.2f}", f"{maps / warm:,.0f}",
                     f"{cold['grids']:.2f}" if cold.get("grids") else "-",
                     f"{serial:.1f}", f"{threaded:.1f}", f"{sum(sizes) / 2**20:.0f}"])
    head = [f"EfficientNet-Lite0, cat: all {maps:,} channel maps of {len(spatial)} stages",
            "Mpx", "render, s (warm)", "maps/s", "render, s (fresh process)",
            "PNG encode, s (1 thread)", f"PNG encode, s ({pc.THREADS} threads)", "PNG MB"]
    grid_table = pc.table(head, rows)

    jt = []
    for _ in range(3 if quick else 9):
        t = time.perf_counter()
        fig = rd.journey(trace)
        jt.append(time.perf_counter() - t)
    t = time.perf_counter()
    nbytes = _png(fig)
    enc = time.perf_counter() - t
    panels = len(fig.meta["panels"])
    raw["journey"] = {"median": pc.med(jt), "min": min(jt), "png": enc, "panels": panels}
    journey_table = pc.table(
        ["journey (EfficientNet-Lite0, cat)", "panels", "size, px", "render, ms (median)",
         "render, ms (best)", "panels/s", "PNG encode, ms", "PNG KB"],
        [["render.journey(trace)", str(panels), f"{fig.size[0]}x{fig.size[1]}",
          pc.ms(pc.med(jt)), pc.ms(min(jt)), f"{panels / pc.med(jt):,.0f}", pc.ms(enc),
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

