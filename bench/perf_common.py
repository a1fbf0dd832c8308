"""Shared helpers of the performance bench (bench/run.py): the networks and inputs of
each case, interleaved timing, peak-RSS measurement in a child process, Markdown tables.

Timing: the methods of one case run round-robin (plain, capture, baseline, plain,
capture, ...), so slow drift of a shared machine hits them alike; each figure is the
median over the rounds and each ratio the median of the per-round ratios.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

THREADS = 2
ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "perf_child.py"
TOY_SPEC = "conv(3, 3x3) relu maxpool(3) conv(1, 3x3) relu maxpool(2)"
"""The 2017 cat tutorial's last experiment."""


def setup() -> None:
    import torch

    torch.set_num_threads(THREADS)


# -- cases ---------------------------------------------------------------------------
def batch_of(n: int) -> list[np.ndarray]:
    """``n`` different views of the cat (shifted crops, mirrored), as float images."""
    import convlens

    cat = convlens.cat()
    out = []
    for k in range(n):
        dy, dx = (k % 4) * 6, (k // 4) % 4 * 8
        img = cat[dy:dy + 276, dx:dx + 420]
        out.append(np.ascontiguousarray(img[:, ::-1] if k // 16 % 2 else img))
    return out


def case(name: str, size: int | None = None, batch: int = 1) -> tuple[Any, Any, Any]:
    """``(model, images, preprocess)`` of a named case."""
    import convlens
    from convlens.nets import zoo

    if name == "efficientnet-lite0":
        zm = zoo.load("efficientnet-lite0")
        pp = zm.preprocess if size is None else convlens.Preprocess.imagenet(size)
        return zm.model, batch_of(batch) if batch > 1 else convlens.cat(), pp
    if name == "resnet50":
        from resnet import resnet50

        return (resnet50(), batch_of(batch) if batch > 1 else convlens.cat(),
                convlens.Preprocess.imagenet(size or 224))
    if name == "lenet":
        zm = zoo.load("lenet")
        return zm.model, convlens.cat(), zm.preprocess
    if name == "toy":
        cat = convlens.cat()
        model = convlens.build(TOY_SPEC, backend="torch", seed=0, in_shape=(3, *cat.shape[:2]))
        return model, cat, convlens.Preprocess()
    raise ValueError(f"unknown case {name!r}")


# -- the methods compared ----------------------------------------------------------------
def methods(model: Any, images: Any, pp: Any) -> dict[str, Callable[[], Any]]:
    """What each column of the capture table runs (all include the same preprocessing)."""
    import torch

    import convlens

    x, _ = pp.apply(convlens.as_batch(images))
    xt = torch.from_numpy(np.ascontiguousarray(x))

    def forward_only() -> Any:
        with torch.no_grad():
            return model(xt)

    def plain() -> Any:
        xb, _ = pp.apply(convlens.as_batch(images))
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(xb)))

    last: list[str] = []

    def one_stage() -> Any:  # the last stage: the hooks' cost without keeping anything big
        if not last:
            last.append(convlens.capture(model, images, preprocess=pp, weights="none").names[-1])
        return convlens.capture(model, images, last[0], preprocess=pp)

    return {
        "forward": forward_only,
        "plain": plain,
        "capture": lambda: convlens.capture(model, images, preprocess=pp),
        "capture, stages made": lambda: convlens.capture(model, images, preprocess=pp).stages,
        "capture, all read": lambda: [s.output for s in convlens.capture(model, images, preprocess=pp)],
        "capture share": lambda: convlens.capture(model, images, preprocess=pp, weights="share"),
        "capture fp16": lambda: convlens.capture(model, images, preprocess=pp, dtype="float16"),
        "capture 1 stage": one_stage,
        "hooks+copy": lambda: hooks_and_copy(model, images, pp),
    }


def hooks_and_copy(model: Any, images: Any, pp: Any) -> list[np.ndarray]:
    """The naive baseline: a forward hook on every leaf copying its output to NumPy."""
    import torch

    import convlens

    outs: list[np.ndarray] = []

    def hook(_m: Any, _a: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            outs.append(out.detach().cpu().numpy().copy())

    leaves = [m for _, m in model.named_modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        xb, _ = pp.apply(convlens.as_batch(images))
        with torch.no_grad():
            model(torch.from_numpy(np.ascontiguousarray(xb)))
    finally:
        for h in handles:
            h.remove()
    return outs


# -- timing ----------------------------------------------------------------------------
def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, warmup: int = 2,
                budget_s: float | None = None) -> dict[str, list[float]]:
    """Seconds per call of each function, measured round-robin."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    for r in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
        if budget_s is not None and r >= 2 and time.perf_counter() - start > budget_s:
            break
    return times


def faults_per_call(fn: Callable[[], Any], calls: int = 5) -> float:
    """Minor page faults (fresh memory from the OS) per call, median over ``calls``."""
    import resource

    out = []
    for _ in range(calls):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fn()
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return float(np.median(out))


def med(ts: list[float]) -> float:
    return float(np.median(ts))


def ratio(ts: list[float], base: list[float]) -> float:
    """Median over rounds of ``ts[i] / base[i]``."""
    return float(np.median(np.asarray(ts) / np.asarray(base)))


# -- memory ----------------------------------------------------------------------------
def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> int:
    """Resets the peak-RSS mark (Linux) and returns the RSS now, in bytes."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status("VmRSS:")


def peak() -> int:
    """The peak RSS since :func:`reset_peak`, in bytes."""
    import resource

    hwm = _status("VmHWM:")
    return hwm or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(task: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Run one task of perf_child.py in a fresh interpreter; its JSON answer."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS=str(THREADS))
    proc = subprocess.run([sys.executable, str(CHILD), json.dumps(task)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=str(ROOT))
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- output ----------------------------------------------------------------------------
def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return v if isinstance(v, str) else f"{v:g}"

    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def ms(s: float) -> str:
    return f"{s * 1e3:.1f}" if s < 10 else f"{s * 1e3:.0f}"


def mb(b: float) -> str:
    return f"{b / 2**20:.0f}"
