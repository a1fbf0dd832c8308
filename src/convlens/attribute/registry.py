"""The one registry of attribution methods.  Each method module registers its methods
here (:func:`register_method`); everything that lists methods — :func:`convlens.attribute.
attribute`, the CLI's ``--method`` choices, overlay titles, the sanity check — reads it.

Adding a method is one module that calls :func:`register_method` and one import line in
``attribute/__init__.py``.

Kinds:

* ``"cam"``: a map at a spatial stage, ``function(model, images, stage, target, *,
  preprocess=None, **options) -> Attribution``;
* ``"gradient"``: a map at the input (``stage`` is ignored), same signature;
* ``"channel"``: what one channel responds to (activation maximisation, top stimuli),
  with a signature of its own; not a class-explaining map.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from convlens.errors import ModelError, nearest

__all__ = ["Method", "register_method", "method_named", "methods", "map_method_names"]


@dataclass(frozen=True)
class Method:
    name: str
    """What users type: ``gradcam``, ``gxi``..."""
    title: str
    """What pictures say: ``Grad-CAM``, ``Gradient x input``."""
    kind: str
    """``cam``, ``gradient`` or ``channel`` (see the module docs)."""
    function: Callable[..., Any]
    deterministic: bool = True
    """The same inputs give the same map (so the sanity check can compare maps)."""
    options: tuple[str, ...] = ()
    """Keyword options beyond the common ones (``noise``, ``samples``, ``seed``)."""


_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    if method.kind not in ("cam", "gradient", "channel"):
        raise ValueError(f"method kind {method.kind!r}; expected cam, gradient or channel")
    if method.name in _METHODS:
        raise ValueError(f"an attribution method named {method.name!r} is already registered")
    _METHODS[method.name] = method
    return method


def methods(*kinds: str) -> tuple[Method, ...]:
    """The registered methods (of these kinds, when given), in registration order."""
    return tuple(m for m in _METHODS.values() if not kinds or m.kind in kinds)


def map_method_names() -> tuple[str, ...]:
    """The methods that explain a class with a map (``cam`` and ``gradient``)."""
    return tuple(m.name for m in methods("cam", "gradient"))


def method_named(name: str, *kinds: str) -> Method:
    """The method called ``name`` (of one of ``kinds``); a one-line error with the nearest
    names otherwise."""
    m = _METHODS.get(name)
    if m is not None and (not kinds or m.kind in kinds):
        return m
    names = [m.name for m in methods(*kinds)]
    near = nearest(name, names, cutoff=0.5)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    raise ModelError(f"unknown attribution method {name!r}; expected one of "
                     f"{', '.join(names)}{hint}")


def title(name: str) -> str:
    m = _METHODS.get(name)
    return m.title if m is not None else name
