"""``convlens models``: the networks convlens ships and the model files it loads."""
from __future__ import annotations

import argparse
import importlib.util

from convlens.cli.common import FORMATTER

__all__ = ["add_parser", "run", "models_text"]

ORDER = 90


def add_parser(subparsers) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        "models", help="the zoo and the model files convlens loads, and how",
        description="List the trained networks convlens ships (zoo:NAME) and the model "
                    "file formats it loads.", formatter_class=FORMATTER)


def models_text() -> str:
    from convlens.capture.adapters import adapters
    from convlens.nets import zoo

    lines = ["zoo (use as --model zoo:NAME):"]
    for name in zoo.available():
        lines.append(f"  zoo:{name:<20} {zoo.describe(name)}")
    lines += ["", "model files (--model FILE):"]
    for a in adapters():
        if not a.suffixes:
            continue
        have = importlib.util.find_spec(a.extra or a.name) is not None  # (the package)
        lines.append(f"  {', '.join(a.suffixes):<20} {a.files}")
        if not have:
            lines.append(f"  {'':<20} ({a.name} is not installed: pip install 'convlens[{a.extra}]')")
    lines += ["", "your own code (--model MODULE:CALLABLE):",
              "  --model mynet.py:ResNet --weights w.pt   the callable builds the model; the state "
              "dict loads with weights_only=True, strictly (also pkg.module:factory)",
              "  --trust-model-code                        allow a pickled torch.save(model) file "
              "(runs code from the file)"]
    lines += ["", "in Python: convlens.load_model(PATH or 'zoo:NAME') -> LoadedModel; "
              "convlens.capture(loaded.model, images, preprocess=loaded.preprocess)",
              "a torch.nn.Module or keras.Model you built: convlens.capture(model, images)"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print(models_text())
    return 0
