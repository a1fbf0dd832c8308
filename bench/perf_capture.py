"""Capture speed and memory: convlens.capture against the plain forward pass, a naive
hooks-plus-copy baseline and torchlens; peak RSS; the memory options at 896 px."""
from __future__ import annotations

import importlib.util
from typing import Any

import perf_common as pc

CASES = [
    # label, case, size, batch, rounds
    ("EfficientNet-Lite0, batch 1", "efficientnet-lite0", None, 1, 40),
    ("EfficientNet-Lite0, batch 8", "efficientnet-lite0", None, 8, 16),
    ("ResNet-50 (random), batch 1", "resnet50", None, 1, 12),
    ("ResNet-50 (random), batch 8", "resnet50", None, 8, 4),
    ("LeNet (32x32)", "lenet", None, 1, 100),
    ("tutorial toy net, cat 300x451", "toy", None, 1, 40),
]
TIMED = ["plain", "capture", "capture, stages made", "capture, all read",
         "capture share", "capture fp16", "capture 1 stage", "hooks+copy"]
RSS_METHODS = ["plain", "capture", "capture fp16", "hooks+copy"]


def has_torchlens() -> bool:
    return importlib.util.find_spec("torchlens") is not None


def speed(quick: bool, children: bool) -> tuple[str, str, dict[str, Any]]:
    """The time table, the peak-RSS table and the raw numbers."""
    rows, rss_rows, raw = [], [], {}
    tl = children and has_torchlens()
    for label, name, size, batch, rounds in CASES:
        model, images, pp = pc.case(name, size, batch)
        fns = pc.methods(model, images, pp)
        n = max(3, rounds // 4) if quick else rounds
        # each method against the plain pass on its own (plain, method, plain, method...):
        # methods that hold or free a lot of memory would otherwise change each other's
        # allocator state (fresh pages, page faults) and blur the comparison
        base = pc.interleaved({"forward": fns["forward"], "plain": fns["plain"]}, n,
                              budget_s=8 if quick else 30)
        entry: dict[str, Any] = {"forward": pc.med(base["forward"]), "ratios": {}, "faults": {}}
        plains = list(base["plain"])  # every plain run of every pair: the plain column
        cells = []
        for m in TIMED[1:]:
            t = pc.interleaved({"plain": fns["plain"], m: fns[m]}, n, budget_s=8 if quick else 30)
            plains += t["plain"]
            entry[m], entry["ratios"][m] = pc.med(t[m]), pc.ratio(t[m], t["plain"])
            entry["faults"][m] = pc.faults_per_call(fns[m])
            cells.append(f"{pc.ms(entry[m])} ({entry['ratios'][m]:.2f}x)")
        entry["plain"] = pc.med(plains)
        row: list[Any] = [label, pc.ms(entry["forward"]), pc.ms(entry["plain"]), *cells]
        entry["rounds"] = len(base["plain"])
        if tl:
            r = pc.child({"kind": "torchlens", "case": name, "size": size, "batch": batch,
                          "rounds": 3 if quick else 10, "budget_s": 10 if quick else 40})
            entry["torchlens"] = r
            row.append("error: " + r["error"] if "error" in r else
                       f"{pc.ms(r['torchlens'])} ({r['ratio']:.1f}x)")
        else:
            row.append("not installed" if children else "skipped")
        row.append(f"{entry['faults']['capture']:,.0f}")
        rows.append(row)
        if children:
            peaks = [pc.child({"kind": "rss", "case": name, "size": size, "batch": batch,
                               "method": m}) for m in RSS_METHODS]
            entry["peak_bytes"] = {m: p.get("peak_bytes") for m, p in zip(RSS_METHODS, peaks)}
            rss_row = [label] + [pc.mb(p["peak_bytes"]) if "peak_bytes" in p else "?" for p in peaks]
            tlr = entry.get("torchlens", {})
            rss_row.append(pc.mb(tlr["peak_bytes"]) if "peak_bytes" in tlr else "-")
            rss_rows.append(rss_row)
        raw[label] = entry
        print(f"  {label}: capture {entry['ratios']['capture']:.2f}x of plain", flush=True)
    head = ["case", "forward only, ms", "plain: preprocess + forward, ms", "convlens.capture",
            "capture, then trace.stages read", "capture, then every stage output read",
            "capture weights=share", "capture dtype=float16", "capture layers=(last stage)",
            "hooks + copy to NumPy",
            "torchlens", "capture: page faults / call"]
    rss_head = ["case (peak RSS above the loaded model, MB)", "plain", "capture",
                "capture float16", "hooks + copy", "torchlens"]
    return pc.table(head, rows), pc.table(rss_head, rss_rows) if rss_rows else "", raw


MEMORY = [
    ("plain forward (nothing kept)", "plain"),
    ("capture, every stage in RAM", "capture"),
    ("capture, dtype=float16", "capture fp16"),
    ("capture, layers='head.conv'", "capture layers=head.conv"),
    ("capture, store='disk'", "capture disk"),
    ("capture, store='disk', dtype=float16", "capture disk fp16"),
]


def memory(size: int = 896) -> tuple[str, dict[str, Any]]:
    """Peak RSS of the memory options, EfficientNet-Lite0 at ``size`` px, batch 1."""
    rows, raw = [], {}
    for label, method in MEMORY:
        r = pc.child({"kind": "rss", "case": "efficientnet-lite0", "size": size, "method": method})
        raw[label] = r
        if "error" in r:
            rows.append([label, "error: " + r["error"], "", ""])
            continue
        rows.append([label, pc.mb(r["peak_bytes"]), pc.mb(r["held_bytes"]), pc.ms(r["seconds"])])
    head = [f"EfficientNet-Lite0 at {size}x{size}, batch 1", "peak RSS above the model, MB",
            "stage outputs in RAM, MB", "time (one cold call), ms"]
    return pc.table(head, rows), raw
