"""Models a user builds with their own code: ``MODULE:CALLABLE`` plus a weights file, and
(only with an explicit ``trust=True``) pickled full modules.

* ``--model mynet.py:ResCat --weights w.pt`` (or ``mypkg.models:resnet18``): the module is
  imported — your own code, named by you, as ``python mynet.py`` would run it — the
  callable is called with no arguments and must return a ``torch.nn.Module`` (or a
  ``keras.Model``); the weights load with ``torch.load(..., weights_only=True)`` (no code
  from the weights file runs) and ``load_state_dict(strict=True)``.  Checkpoints that wrap
  the state dict (``{"state_dict": ...}``, ``{"model": ...}``) and ``module.`` prefixes
  (``DataParallel``) are unwrapped; anything missing or unexpected is a one-line error
  naming the keys.
* A pickled ``torch.save(model)`` file can run any code when loaded: refused unless
  ``trust=True`` (``--trust-model-code``), and then loaded with a warning.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from convlens.errors import ModelError, nearest

__all__ = ["is_factory", "load_factory", "load_state_dict", "load_pickled"]

_FACTORY = re.compile(r"^(?P<module>[^:]+):(?P<name>[A-Za-z_][\w.]*)$")


def is_factory(text: str) -> bool:
    """Does ``text`` look like ``MODULE:CALLABLE`` (a dotted module or a ``.py`` path)?"""
    m = _FACTORY.match(text)
    if m is None or text.startswith("zoo:") or Path(text).exists():
        return False
    mod = m.group("module")
    return mod.endswith(".py") or re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*", mod) is not None


def _import(module: str) -> Any:
    if module.endswith(".py"):
        path = Path(module)
        if not path.is_file():
            raise ModelError(f"{module}: no such Python file; expected MODULE:CALLABLE with "
                             "MODULE a .py file or an importable dotted module name")
        name = "convlens_user_" + re.sub(r"\W", "_", path.stem)
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = mod  # dataclasses and pickling look modules up by name
        try:
            spec.loader.exec_module(mod)  # type: ignore[union-attr]
        except Exception as exc:
            sys.modules.pop(name, None)
            raise ModelError(f"{module}: importing it failed ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}); fix the file and retry") from None
        return mod
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(f"cannot import {module!r} ({exc}); expected MODULE:CALLABLE with "
                         "MODULE importable (installed, or run from its folder) or a .py "
                         "file path") from None


def load_factory(spec: str, weights: str | Path | None) -> tuple[Any, str]:
    """``(model, name)`` from ``MODULE:CALLABLE`` and, when given, a weights file."""
    m = _FACTORY.match(spec)
    if m is None:
        raise ModelError(f"{spec!r} is not MODULE:CALLABLE; expected e.g. mynet.py:ResCat "
                         "or mypkg.models:resnet18")
    obj: Any = _import(m.group("module"))
    for part in m.group("name").split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            near = nearest(part, names)
            raise ModelError(f"{m.group('module')} has no {part!r}; expected a callable that "
                             "builds the model" + (f"; did you mean {' or '.join(near)}?" if near else ""))
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"{spec}: {m.group('name')} is a {type(obj).__name__}, not callable; "
                         "expected a class or function that builds the model")
    try:
        model = obj()
    except Exception as exc:
        raise ModelError(f"{spec}: calling {m.group('name')}() failed ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}); expected it to build the model "
                         "with no arguments — wrap it in a function that passes them") from None
    if weights is not None:
        load_state_dict(model, weights)
    if hasattr(model, "eval") and callable(model.eval):
        model.eval()
    return model, m.group("name").split(".")[-1]


def _unwrap(sd: Any, path: Path) -> dict:
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict):
        raise ModelError(f"{path}: holds a {type(sd).__name__}, not a state dict; expected "
                         "the file torch.save(model.state_dict(), path) writes")
    return sd


def load_state_dict(model: Any, weights: str | Path) -> None:
    """Load a weights file into ``model`` strictly; a one-line error on any mismatch."""
    path = Path(weights)
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file; expected a state dict written by "
                         "torch.save(model.state_dict(), path)")
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(model, torch.nn.Module):
        keras = sys.modules.get("keras")
        if keras is not None and isinstance(model, keras.Layer):
            try:
                model.load_weights(str(path))
            except Exception as exc:
                raise ModelError(f"{path}: cannot load these Keras weights ({' '.join(str(exc).split())[:200]}); "
                                 "expected a .weights.h5 file written by model.save_weights") from None
            return
        raise ModelError(f"the factory built a {type(model).__name__}; expected a "
                         f"torch.nn.Module or keras.Model to load {path.name} into")
    try:
        with warnings.catch_warnings():  # torch's notes on old pickle protocols: our line says it
            warnings.simplefilter("ignore", UserWarning)
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = " ".join(str(exc).split())[:200]
        raise ModelError(f"{path}: cannot read it as a state dict with weights_only=True "
                         f"({msg}); expected torch.save(model.state_dict(), path) — a file "
                         "that needs code to unpickle is refused") from None
    sd = _unwrap(sd, path)
    own = model.state_dict()
    if sd and all(k.startswith("module.") for k in sd) and not any(k.startswith("module.") for k in own):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in sd and hasattr(sd[k], "shape") and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        parts = ([f"missing {len(missing)}: {few(missing)}"] if missing else []) + \
                ([f"unexpected {len(unexpected)}: {few(unexpected)}"] if unexpected else []) + \
                ([f"wrong shape {len(shapes)}: {few(shapes)}"] if shapes else [])
        raise ModelError(f"{path}: the weights do not fit {type(model).__name__} ("
                         + "; ".join(parts) + "); expected the state dict of this architecture "
                         "— check the factory builds the same model the weights were saved from")
    model.load_state_dict(sd, strict=True)


def load_pickled(path: Path) -> Any:
    """A pickled ``torch.save(model)`` file — runs code from the file; the caller checked
    that the user asked for it (``trust=True``)."""
    import torch

    warnings.warn(f"{path}: unpickling a full model runs code from the file "
                  "(--trust-model-code); only do this with files you trust", stacklevel=3)
    try:
        model = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelError(f"{path}: cannot unpickle it ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}); the classes it needs must be "
                         "importable") from None
    model = _unwrap_module(model, path)
    return model.eval()


def _unwrap_module(obj: Any, path: Path) -> Any:
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj
    if isinstance(obj, dict):
        for key in ("model", "module", "net"):
            if isinstance(obj.get(key), torch.nn.Module):
                return obj[key]
    raise ModelError(f"{path}: holds a {type(obj).__name__}, not a model; a state dict needs "
                     "its architecture: --model MODULE:CALLABLE --weights FILE")
