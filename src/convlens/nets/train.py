"""Train LeNet-5 on scikit-learn's real handwritten digits, reproducibly.

    python -m convlens.nets.train --out src/convlens/data/lenet.npz [--epochs N] [--seed S]

Data: the ``"train"`` split of :func:`convlens.digits` (1,438 digits; the 359 ``"test"``
digits are never seen), put through LeNet's own preprocessing
(:data:`convlens.nets.lenet.PREPROCESS`: 8 x 8 -> 32 x 32 bilinear, grey, [0, 1]) — the
very steps a Trace of ``zoo:lenet`` shows.  Training: Adam (lr 1e-3, cosine decay to 0),
cross-entropy on the logits (``fc3``), batches of 32 with small random rotations, scalings
and shifts; batch order and augmentation from a ``torch.Generator`` seeded with
``--seed``, weights initialised from ``--seed``
(:func:`convlens.nets.lenet.random_weights`), deterministic algorithms, a fixed number of
CPU threads (1 by default; about 10 s for 60 epochs on a laptop-class core): the same
command gives the same weights on the same machine and PyTorch build.  The weights are
written as a plain ``.npz`` of float32 arrays (no pickle), PyTorch layout.
A progress bar goes to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence, TextIO

import numpy as np

from convlens.digits import DigitSplit, digits, split_indices
from convlens.errors import ConvlensError, ModelError
from convlens.nets.lenet import PREPROCESS, lenet_torch, load_weights, random_weights

__all__ = ["TrainResult", "digit_tensors", "train_lenet", "evaluate", "save_weights", "main"]

DEFAULT_EPOCHS = 60
DEFAULT_SEED = 0
DEFAULT_THREADS = 1


@dataclass
class TrainResult:
    """What :func:`train_lenet` returns."""

    weights: dict[str, np.ndarray]
    """Trained weights, PyTorch layout, float32."""
    epochs: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    """Mean training loss of each epoch."""


def digit_tensors(split: DigitSplit = "test", n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """LeNet input ``(N, 1, 32, 32)`` float32 and labels ``(N,)`` for a digits split."""
    images, labels = digits(n, split)
    x, _ = PREPROCESS.apply(images)
    return x, labels


@contextlib.contextmanager
def _deterministic(threads: int) -> Iterator[None]:
    """Deterministic algorithms and a fixed thread count, restored afterwards."""
    import torch

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.set_num_threads(old_threads)


def _bar(out: TextIO, epoch: int, epochs: int, done: int, total: int, loss: float) -> None:
    width = 30
    frac = done / total
    filled = int(round(width * frac))
    out.write(f"\repoch {epoch:>3}/{epochs} [{'#' * filled}{'.' * (width - filled)}] "
              f"{100 * frac:5.1f}%  loss {loss:.4f}")
    out.flush()


def _augment(x, gen):
    """Random small affine changes (rotation up to 10 degrees, scale 0.9-1.1, shift up to
    2 pixels), drawn from ``gen``: the network learns digits, not their exact placement."""
    import math

    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    u = torch.rand(n, 4, generator=gen) * 2 - 1
    angle, scale = u[:, 0] * math.radians(10), 1 + 0.1 * u[:, 1]
    shift = u[:, 2:] * (2 * 2 / x.shape[-1])  # 2 pixels in [-1, 1] grid units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def train_lenet(
    epochs: int = DEFAULT_EPOCHS, seed: int = DEFAULT_SEED, *, batch_size: int = 32,
    lr: float = 1e-3, limit: int | None = None, threads: int = DEFAULT_THREADS,
    augment: bool = True, progress: TextIO | None = None,
) -> TrainResult:
    """Train LeNet from ``random_weights(seed)`` on the ``"train"`` digits split.

    ``limit`` trains on the first ``limit`` training digits only (quick checks);
    ``augment`` applies small random rotations, scalings and shifts to each batch;
    ``progress`` is a stream for the progress bar (``None``: silent).
    """
    import torch
    from torch import nn

    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"{name}={value!r} is not valid; expected a positive integer")
    x_np, y_np = digit_tensors("train", limit)
    start = time.perf_counter()
    with _deterministic(threads):
        torch.manual_seed(seed)
        model = lenet_torch(random_weights(seed)).train()
        logits_net = model[:-1]  # without the softmax: CrossEntropyLoss takes logits
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        loss_fn = nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(seed)
        x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
        losses = []
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(x), generator=gen)
            total, count = 0.0, 0
            shown = -1
            for i in range(0, len(x), batch_size):
                idx = order[i:i + batch_size]
                batch = _augment(x[idx], gen) if augment else x[idx]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(logits_net(batch), y[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                count += len(idx)
                step = 20 * count // len(x)
                if progress is not None and step != shown:
                    shown = step
                    _bar(progress, epoch, epochs, count, len(x), total / count)
            sched.step()
            losses.append(total / count)
        if progress is not None:
            progress.write("\n")
            progress.flush()
        weights = {k: v.detach().numpy().astype(np.float32).copy()
                   for k, v in model.state_dict().items()}
    return TrainResult(weights, epochs, time.perf_counter() - start, losses)


def evaluate(weights: Mapping[str, np.ndarray] | None = None, split: DigitSplit = "test") -> float:
    """Accuracy (0..1) of LeNet with ``weights`` (default: the shipped ones) on a split."""
    import torch

    model = lenet_torch(load_weights() if weights is None else weights)
    x, y = digit_tensors(split)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((pred == y).mean())


def save_weights(weights: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Write weights as an uncompressed ``.npz`` of float32 arrays (no pickled objects)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(weights.items())}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convlens.nets.train",
        description="Train LeNet-5 on scikit-learn's digits; write the weights as .npz.")
    p.add_argument("--out", required=True, help="where to write the .npz")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--limit", type=int, default=None,
                   help="train on the first N training digits only (quick checks)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help="CPU threads (fixed, so results repeat)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = train_lenet(args.epochs, args.seed, batch_size=args.batch_size, lr=args.lr,
                             limit=args.limit, threads=args.threads, progress=sys.stderr)
        path = save_weights(result.weights, args.out)
        acc = evaluate(result.weights, "test")
    except ConvlensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"trained {result.epochs} epochs in {result.seconds:.1f} s; held-out accuracy "
          f"{100 * acc:.2f}% on the {len(split_indices('test'))} held-out test digits; wrote {path} "
          f"({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
