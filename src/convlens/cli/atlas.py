"""``convlens atlas FOLDER``: what each channel responds to across a folder of images."""
from __future__ import annotations

import argparse

from convlens.cli.common import FORMATTER, add_network, add_out, parse_size, preprocess_from_args
from convlens.errors import ConvlensError

__all__ = ["add_parser", "run"]

ORDER = 60

_EXAMPLES = """examples:
  convlens atlas digits/ --model zoo:lenet -o lenet-atlas
  convlens atlas photos/ --model zoo:efficientnet-lite0 --stages "blocks.*.add" -k 16 -o atlas
  convlens atlas photos/ --model model.keras --engine dask --workers 4 -o atlas
  convlens atlas /shared/photos --model zoo:efficientnet-lite0 --engine dask \\
      --scheduler tcp://head:8786 -o atlas      # the workers must see /shared/photos
  convlens atlas photos/ --model zoo:lenet -o atlas --resume   # after an interruption
  convlens atlas digits/ --model zoo:lenet -o atlas --maximize  # + activation maximisation

OUT gets atlas.json (per stage and channel: the top-k images with the value and position
of the channel's maximum, mean, std, dead fraction, histogram; run facts under "run"),
crops/ (the receptive field of each maximum, outlined), index.html and one page per
stage, and with --maximize OUT/maximize/ (one synthesised image per shown channel).  The
running state is checkpointed to OUT/atlas-state.npz; --resume continues it.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "atlas", help="top-k images per channel over a whole folder (local or Dask)",
        description="For every channel of a few stages, the images of FOLDER (searched "
                    "recursively) that make it respond most, where, and how it responds "
                    "in general.", epilog=_EXAMPLES, formatter_class=FORMATTER)
    p.add_argument("folder", metavar="FOLDER", help="a folder of images (searched recursively; "
                   "files that cannot be read are reported and skipped)")
    add_network(p)
    p.add_argument("--random-weights", action="store_true",
                   help="a zoo model with random (untrained) weights from --seed")
    p.add_argument("--stages", metavar="SEL", help="stages: names, kinds or globs, comma-"
                   "separated (default: the last merge or conv stage at each of the 4 "
                   "deepest resolutions)")
    p.add_argument("-k", type=int, default=9, help="images kept per channel (default: %(default)s)")
    p.add_argument("--batch", type=int, default=32, help="images per batch (default: %(default)s)")
    # --size (and the rest of the preprocessing) comes with add_network
    p.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="local: this process (default); dask: Dask distributed")
    p.add_argument("--workers", type=int, default=2,
                   help="worker processes of the local Dask cluster (default: %(default)s)")
    p.add_argument("--scheduler", metavar="ADDR", help="a running Dask scheduler "
                   "(tcp://host:8786) instead of a local cluster; FOLDER must be a path the "
                   "workers see")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run whose checkpoint is in OUT")
    p.add_argument("--checkpoint-every", type=int, metavar="N", default=None,
                   help="checkpoint every N batches (local; default 20) or shards (dask; "
                        "default 4); 0: only at the end")
    p.add_argument("--page-channels", type=int, metavar="N", default=256,
                   help="channels shown per stage page (default: %(default)s; atlas.json "
                        "has them all); 0 for all")
    p.add_argument("--no-pages", action="store_true", help="write atlas.json only")
    p.add_argument("--maximize", action="store_true",
                   help="after the run, each shown channel's activation maximisation (an "
                        "input synthesised by gradient ascent) beside its crops, in "
                        "OUT/maximize/STAGE/C.png; needs a PyTorch or Keras model")
    p.add_argument("--maximize-steps", type=int, metavar="N", default=64,
                   help="gradient steps per channel for --maximize (default: %(default)s)")
    p.add_argument("--maximize-size", metavar="N|HxW", default=None,
                   help="side of the maximisation images (default: the size the model sees)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    add_out(p, folder=True, required=True)
    return p


def run(args: argparse.Namespace) -> int:
    from convlens.atlas import atlas
    from convlens.capture.allocator import ensure_tuned

    # a program of many captures: keep freed memory for the next batch (a process-wide
    # glibc setting, so made here by the command, never by the library)
    ensure_tuned()

    for name in ("k", "batch", "workers", "maximize_steps"):
        if getattr(args, name) < 1:
            raise ConvlensError(f"--{name.replace('_', '-')} {getattr(args, name)} is not "
                                "valid; expected a positive number")
    if args.scheduler and args.engine != "dask":
        raise ConvlensError("--scheduler goes with --engine dask")
    if args.random_weights and not (args.model or "").startswith("zoo:"):
        raise ConvlensError("--random-weights goes with --model zoo:NAME")
    mx_size = None
    if args.maximize_size:
        try:
            mx_size = parse_size(args.maximize_size)
        except ConvlensError:
            raise ConvlensError(f"--maximize-size must look like 64x64 (or 64 for a square); "
                                f"got {args.maximize_size!r}") from None
    result = atlas(
        args.folder, args.model, args.stages, args.k, net=args.net, backend=args.backend,
        seed=args.seed, weights="random" if args.random_weights else "trained",
        batch=args.batch, size=parse_size(args.size), engine=args.engine,
        workers=args.workers, scheduler=args.scheduler, out=args.out, resume=args.resume,
        checkpoint_every=args.checkpoint_every, pages=not args.no_pages,
        page_channels=args.page_channels or None, progress=not args.quiet,
        maximize=args.maximize, maximize_steps=args.maximize_steps,
        maximize_size=mx_size, preprocess=preprocess_from_args(args),
        weights_file=args.weights, trust_model_code=args.trust_model_code)
    data = result.data
    skipped = data["skipped"]
    for s in skipped[:20]:
        print(f"skipped {s['image']}: {s['reason']}")
    if len(skipped) > 20:
        print(f"... and {len(skipped) - 20} more files not read (see atlas.json)")
    stages = ", ".join(f"{s['name']} ({len(s['channels'])} channels)" for s in data["stages"])
    print(f"atlas of {data['images']} images, {stages}: {data['run']['images_per_s']} images/s; "
          f"wrote {result.out}/atlas.json" + ("" if args.no_pages else " and index.html"))
    note = (data.get("maximize") or {}).get("note")
    if note:
        print(f"no activation maximisation: {note}")
    return 0
