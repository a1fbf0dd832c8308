"""``convlens run IMAGE... --net SPEC | --model M -o DIR``: capture every stage of a network
on your images and draw each one, the journey and a saved trace."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from convlens.trace import LARGE_FILE_BYTES
from convlens.cli.common import FORMATTER, add_images, add_layers, add_network, add_out, load_batch, trace_from_args

__all__ = ["add_parser", "run"]

ORDER = 10

_EXAMPLES = """examples:
  convlens run cat.jpg --net "conv(3, 3x3) relu maxpool(5)" -o out/
  convlens run cat.jpg --net "conv(8, 5x5, stride=2) relu avgpool(2)" --backend keras --seed 3 -o out/
  convlens run photo.png --model my_model.keras --layers "conv,block1*" --norm map -o out/
  convlens run digit.png --model model.pt -o out/      (TorchScript; pickles are refused)

spec language: conv(F, KxK[, stride=S, padding=valid|same|N, dilation=D, groups=G])
  maxpool(S[, stride=S]) avgpool(S) relu sigmoid tanh elu selu gelu silu softplus
  leakyrelu(alpha) flatten dense(N) softmax — layers separated by spaces
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    r = subparsers.add_parser("run", help="capture and draw every stage of a network on your images",
                              epilog=_EXAMPLES, formatter_class=FORMATTER)
    add_images(r)
    add_network(r)
    add_out(r, folder=True, required=True)
    add_layers(r)
    r.add_argument("--norm", choices=("map", "stage", "global", "standard"), default="stage",
                   help="colour scale: per map, per stage, global, or standardised")
    return r


def stage_file(index: int, count: int, name: str) -> str:
    """``007_blocks.1.conv`` — zero-padded to the number of stages, so files sort in stage
    order; characters a file name cannot hold become ``_``."""
    width = max(2, len(str(max(count - 1, 0))))
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return f"{index:0{width}d}_{safe}"


def run(args: argparse.Namespace) -> int:
    from convlens import render
    from convlens.analysis.narrate import describe_stage

    out = Path(args.out)
    trace = trace_from_args(args, load_batch(args))
    out.mkdir(parents=True, exist_ok=True)
    if trace.nbytes > LARGE_FILE_BYTES:
        sys.stderr.write(f"convlens run: writing trace.npz of about {trace.nbytes / 2 ** 30:.1f} GB "
                         "(every stage at full size); --max-size or --layers make it smaller\n")
    with warnings.catch_warnings():  # said just above, in one line
        warnings.simplefilter("ignore", UserWarning)
        trace.save(out / "trace.npz")
    render.journey(trace, norm=args.norm).save(out / "journey.png")
    n = len(trace.stages)
    for k, stage in enumerate(trace.stages, 1):
        sys.stderr.write(f"\rrendering stage {k}/{n}: {stage.name[:40]:<40}")
        stem = stage_file(stage.index, n, stage.name)
        for i in range(trace.batch_size):
            suffix = f"_img{i:0{len(str(trace.batch_size - 1))}d}" if trace.batch_size > 1 else ""
            render.stage(stage, image=i, norm=args.norm).save(out / f"{stem}{suffix}.png")
    sys.stderr.write("\n")
    print(trace.summary())
    for stage in trace.stages:
        print(f"  {stage.name}: {describe_stage(trace, stage)}")
    print(f"wrote {n} stage picture(s), journey.png and trace.npz to {out}/")
    return 0
