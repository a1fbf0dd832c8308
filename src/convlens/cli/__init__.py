"""The ``convlens`` command line.  User errors exit 2 with one line, never a traceback.

Every command is one module of this package with ``add_parser(subparsers)`` (which adds
the command and returns its parser) and ``run(args) -> exit status``; the modules are
found here by name, so adding a command is adding its module.  ``ORDER`` (default 50)
places a command in ``convlens --help``.  Options every command shares are declared once,
in :mod:`convlens.cli.common`.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings
from typing import Sequence

from convlens.cli.common import FORMATTER, Parser
from convlens.errors import ConvlensError

__all__ = ["main", "command_modules"]

_EXAMPLES = """examples:
  convlens demo -o demo-out
  convlens run cat.jpg --net "conv(3, 3x3) relu maxpool(5)" -o out/
  convlens run photo.png --model my_model.keras -o out/
  convlens run a.png b.png --model zoo:lenet --layers conv,pool -o out/
  convlens models                      # the zoo and the model files convlens loads
"""


def command_modules() -> list:
    """Every command module of this package, in ``--help`` order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "add_parser"):
            found.append(module)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 50), m.__name__))


def _parser() -> argparse.ArgumentParser:
    from convlens import __version__

    p = Parser(prog="convlens", description="See what a convolutional network does to an "
               "image, stage by stage.", epilog=_EXAMPLES, formatter_class=FORMATTER)
    p.add_argument("--version", action="version", version=f"convlens {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in command_modules():
        cmd = module.add_parser(sub)
        if cmd.get_default("handler") is None:
            cmd.set_defaults(handler=module.run)
    return p


def _one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning on the command line: one line, no source location."""
    (file or sys.stderr).write(f"convlens: warning: {' '.join(str(message).split())}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():  # restored on the way out
            warnings.showwarning = _one_line
            return int(args.handler(args))
    except ConvlensError as exc:
        sys.stderr.write(f"convlens {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("convlens: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
