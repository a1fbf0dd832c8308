"""Benchmark: the atlas engines against plain batched inference (issue 16).

    python bench/atlas.py                  # 2,000 images at 224 px, EfficientNet-Lite0
    python bench/atlas.py --images 256     # a quick look
    python bench/atlas.py --skip-dask      # local engine and the merge table only

Prints, in one run:

1. images/s of plain batched inference of EfficientNet-Lite0 (batch 32): the same image
   files read, resized and preprocessed, then ``model(x)`` under ``no_grad`` — and of the
   forward pass alone; the local atlas engine (default stages, k=9) on the same files;
   the ratio local / plain (target >= 0.90);
2. Dask on a local 2-worker cluster (one torch thread each): its start-up cost and
   images/s;
3. how the merge and the per-shard cost grow with channels, k and shards;
4. what a 1M-image run would need, from those numbers.

The images are made here: 1,000 random square crops of ``convlens.cat()`` and 1,000
scikit-learn digits, enlarged to 224 x 224 (JPEG and PNG files in a temporary folder).
``zoo:efficientnet-lite0`` uses the ImageNet weights when installed, random ones otherwise
(the speed is the same).
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import convlens
from convlens.atlas import engine as E
from convlens.atlas.state import batch_state, histogram_bins, merge, responses


def make_images(folder: Path, n: int, size: int = 224, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    cat = convlens.cat()
    digits, _ = convlens.digits(split="all")
    h, w = cat.shape[:2]
    (folder / "cat").mkdir(parents=True, exist_ok=True)
    (folder / "digits").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        if i % 2 == 0:
            s = int(rng.integers(96, h + 1))
            r, c = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            im = convlens.resize(cat[r:r + s, c:c + s], (size, size))
            Image.fromarray((np.clip(im, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
                folder / "cat" / f"{i:05d}.jpg", quality=92)
        else:
            d = digits[int(rng.integers(0, len(digits)))]
            f = -(-size // d.shape[0])
            im = np.repeat(np.repeat(d, f, 0), f, 1)[:size, :size]
            Image.fromarray((im * 255 + 0.5).astype(np.uint8)).save(folder / "digits" / f"{i:05d}.png")


def load_model():
    from convlens.nets import zoo

    try:
        zm = zoo.load("efficientnet-lite0")
        return zm.model, zm.preprocess, "trained", E.ModelSpec(model="zoo:efficientnet-lite0")
    except convlens.ConvlensError:
        zm = zoo.load("efficientnet-lite0", weights="random")
        return zm.model, zm.preprocess, "random", E.ModelSpec(model="zoo:efficientnet-lite0",
                                                              weights="random")


def plain(model, preprocess, root: Path, paths: list[str], batch: int) -> tuple[float, int, float]:
    """Plain batched inference: (seconds, images, seconds of the forward passes alone)."""
    import torch

    t_fwd, n = 0.0, 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(paths), batch):
            images, good, _ = E.read_images(root, paths[i:i + batch], (224, 224))
            x, _ = preprocess.apply(images)
            t1 = time.perf_counter()
            model(torch.from_numpy(x))
            t_fwd += time.perf_counter() - t1
            n += len(good)
    return time.perf_counter() - t0, n, t_fwd


def merge_table(rows: list[str]) -> dict[tuple[int, int], float]:
    rng = np.random.default_rng(0)
    out = {}
    rows.append("| channels | k | merge (ms) | state per stage (kB, pickled) |")
    rows.append("|---:|---:|---:|---:|")
    for c in (64, 320, 1280):
        for k in (9, 32, 100):
            o = rng.standard_normal((32, c, 7, 7)).astype(np.float32)
            bins = {"s": histogram_bins(responses(o)[0])}
            b = batch_state({"s": rng.standard_normal((32, c, 7, 7)).astype(np.float32)},
                            [f"photos/x/{i:06d}.jpg" for i in range(32)], k, bins, 1)
            a = batch_state({"s": o}, [f"photos/y/{i:06d}.jpg" for i in range(32)], k, bins, 0)
            n = 20
            t0 = time.perf_counter()
            for _ in range(n):
                merge(a, b)
            ms = (time.perf_counter() - t0) / n * 1000
            kb = len(pickle.dumps(a.stages["s"])) / 1024
            out[(c, k)] = ms
            rows.append(f"| {c} | {k} | {ms:.2f} | {kb:.0f} |")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--skip-dask", action="store_true")
    p.add_argument("--folder", help="use (or make) the images here instead of a temp folder")
    args = p.parse_args()
    import torch

    from convlens.capture.allocator import allocator_status, ensure_tuned

    ensure_tuned()  # as `convlens atlas` does (Dask workers get the same through their env)

    rows: list[str] = []
    tmp = None
    if args.folder:
        root = Path(args.folder)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="convlens-atlas-bench-")
        root = Path(tmp.name)
    if not any(root.rglob("*.jpg")):
        t0 = time.perf_counter()
        make_images(root, args.images)
        print(f"made {args.images} images in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    paths = E.list_images(root)[:args.images]
    model, pre, weights, spec = load_model()
    rows.append(f"EfficientNet-Lite0 ({weights} weights), {len(paths)} images at 224 px, batch "
                f"{args.batch}, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
                f"{os.cpu_count()} cores, allocator: {allocator_status()['reason']}\n")

    # warm up (first-call costs are not what a long run pays)
    plain(model, pre, root, paths[:args.batch], args.batch)
    t0 = time.perf_counter()
    plan = E.calibrate(model, pre, root, paths, None, 9, args.batch, None, spec.describe())
    t_cal = time.perf_counter() - t0
    # plain and local in alternating rounds over the same batches, so a change in the
    # machine's load hits both alike; the ratio is of the summed times
    t_plain = t_fwd = t_local = 0.0
    n_plain = 0
    state = plan.empty()
    rounds = np.array_split(np.arange(plan.batches), 5)
    for r, chunk in enumerate(rounds):
        a, b = int(chunk[0]), int(chunk[-1]) + 1
        files = list(plan.paths[a * plan.batch:b * plan.batch])
        for which in (("plain", "local") if r % 2 == 0 else ("local", "plain")):
            t0 = time.perf_counter()
            if which == "plain":
                secs, n, fwd = plain(model, pre, root, files, args.batch)
                t_plain += secs
                t_fwd += fwd
                n_plain += n
            else:
                state = E.run_shard(model, pre, plan, a, b, state=state)
                t_local += time.perf_counter() - t0
    plain_rate, fwd_rate = n_plain / t_plain, n_plain / t_fwd
    local_rate = state.images / t_local
    # what the atlas adds to a batch besides the forward pass: capture's bookkeeping,
    # the responses, statistics and the merge
    images, good, _ = E.read_images(root, plan.batch_paths(1), plan.size)
    tr = convlens.capture(model, images, layers=list(plan.stages), preprocess=pre, weights="none")
    outs = {n: np.asarray(tr[n].output) for n in plan.stages}
    t0 = time.perf_counter()
    for _ in range(5):
        merge(state, batch_state(outs, good, plan.k, plan.bins, 10**6))
    t_state = (time.perf_counter() - t0) / 5
    rows.append("| what | images/s | vs plain |")
    rows.append("|---|---:|---:|")
    rows.append(f"| plain batched inference (read + preprocess + forward) | {plain_rate:.1f} | 1.00 |")
    rows.append(f"| forward passes alone | {fwd_rate:.1f} | {fwd_rate / plain_rate:.2f} |")
    rows.append(f"| atlas, local engine ({len(plan.stages)} stages: {', '.join(plan.stages)}) "
                f"| {local_rate:.1f} | **{local_rate / plain_rate:.2f}** |")
    rows.append(f"\nlocal engine: calibration (first batch, full capture) {t_cal:.2f} s; "
                f"statistics + merge per batch {t_state * 1000:.1f} ms "
                f"({100 * t_state / (t_local / plan.batches):.1f} % of a batch); plain and "
                "local timed in 5 alternating rounds over the same batches")

    dask_rate = None
    if not args.skip_dask:
        from convlens.atlas import dask_engine as D

        t0 = time.perf_counter()
        cluster = D.start_cluster(2)
        t_start = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            # warm: the workers import torch and load the model on their first task
            cluster.client.run(lambda: None)
            D.calibrate_on(cluster, spec, root, paths[:args.batch], None, 9, args.batch)
            t_warm = time.perf_counter() - t0
            t0 = time.perf_counter()
            dstate, info = D.run_dask(cluster, spec, plan, progress=False)
            t_dask = time.perf_counter() - t0
            # per-shard cost: LeNet (cheap) over 512 of the files, cut into more and more shards
            lenet = E.ModelSpec(model="zoo:lenet")
            lplan = D.calibrate_on(cluster, lenet, root, paths[:512], None, 9, args.batch)
            D.run_dask(cluster, lenet, lplan, progress=False, shard_batches=16)  # warm
            shard_rows = []
            for sb in (16, 4, 2, 1):
                t0 = time.perf_counter()
                _, inf = D.run_dask(cluster, lenet, lplan, progress=False, shard_batches=sb)
                shard_rows.append((inf["shards"], time.perf_counter() - t0))
        finally:
            cluster.close()
        dask_rate = dstate.images / t_dask
        rows.append(f"| atlas, Dask LocalCluster (2 workers x 1 thread, {info['shards']} shards) "
                    f"| {dask_rate:.1f} | {dask_rate / plain_rate:.2f} |")
        rows.append(f"\nDask start-up: cluster {t_start:.1f} s, first task (torch import, model "
                    f"load in each worker) {t_warm:.1f} s")
        same = all(np.array_equal(dstate.stages[n].top_path, state.stages[n].top_path)
                   for n in plan.stages)
        rows.append(f"Dask top-k identical to local: {same}")
        rows.append("\n### per-shard cost on Dask (LeNet, 512 files, 2 workers)\n")
        rows.append("| shards | seconds | ms per shard |")
        rows.append("|---:|---:|---:|")
        for n, t in shard_rows:
            rows.append(f"| {n} | {t:.2f} | {t / n * 1000:.0f} |")

    rows.append("\n### merge cost (one spatial stage, two states)\n")
    mt = merge_table(rows)

    # 1M images
    rate_w = (dask_rate / 2) if dask_rate else local_rate / max(1, torch.get_num_threads())
    shards = 1e6 / (args.batch * 64)
    merge_s = shards * sum(mt[(c, 9)] for c in (1280,)) * len(plan.stages) / 1000
    rows.append("\n### a 1M-image run on this evidence\n")
    rows.append(f"per worker process (1 core): {rate_w:.1f} images/s; shards of 64 batches: "
                f"{shards:.0f} merges, about {merge_s:.0f} s of merging in the client in all "
                "(at 1280 channels per stage, an upper bound)")
    rows.append("\n| workers (1 core each) | hours |")
    rows.append("|---:|---:|")
    for w in (2, 16, 64, 256):
        rows.append(f"| {w} | {1e6 / (w * rate_w) / 3600:.1f} |")
    print("\n".join(rows))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
