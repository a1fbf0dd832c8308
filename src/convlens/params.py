"""One schema per stage kind: the typed parameters every adapter fills the same way.

``Stage.params`` is a plain dict (so a Trace saves as JSON), but what it holds is fixed per
kind here, and the PyTorch, Keras and toy-network adapters all fill it alike: a Keras
``Conv2D`` says ``in_channels`` as a PyTorch ``Conv2d`` does; a global pooling says
``global: True`` whether it was ``AdaptiveAvgPool2d(1)``, ``x.mean((2, 3))`` or
``GlobalAveragePooling2D``.  Consumers (narration, explanations, the explorer's
arithmetic, the diagrams) read these keys and nothing else.

:func:`problems` checks one stage's params against the schema (the tests run it over
every stage every adapter makes).
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["SCHEMA", "problems"]

_INT = (int,)
_NUM = (int, float)
_PAIR = (tuple,)
_STR = (str,)
_BOOL = (bool,)

# kind -> {key: (types, required)}
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "conv": {
        "kernel_size": (_PAIR, True), "stride": (_PAIR, True),
        "padding": (_PAIR + _STR, True), "dilation": (_PAIR, True), "groups": (_INT, True),
        "in_channels": (_INT, True), "out_channels": (_INT, True), "bias": (_BOOL, True),
        "transposed": (_BOOL, False), "output_padding": (_PAIR, False),
        "depth_multiplier": (_INT, False),
    },
    "pool": {
        "mode": (_STR, True),  # max | avg | lp | min | sum | resize
        "kernel_size": (_PAIR + _INT, False), "stride": (_PAIR + _INT, False),
        "padding": (_PAIR + _INT + _STR, False), "dilation": (_PAIR + _INT, False),
        "ceil_mode": (_BOOL, False), "count_include_pad": (_BOOL, False),
        "adaptive": (_BOOL, False), "output_size": (_PAIR + _INT, False),
        "global": (_BOOL, False), "dims": (_PAIR, False), "keepdim": (_BOOL, False),
        "method": (_STR, False), "size": (_PAIR + _INT, False),
        "scale_factor": (_PAIR + _NUM, False),
    },
    "norm": {
        "function": (_STR, False), "eps": (_NUM, False), "momentum": (_NUM, False),
        "num_groups": (_INT, False), "size": (_INT, False), "alpha": (_NUM, False),
        "beta": (_NUM, False), "k": (_NUM, False), "axis": (_INT + _PAIR, False),
    },
    "activation": {
        "function": (_STR, True), "alpha": (_NUM, False), "min": (_NUM, False),
        "max": (_NUM, False), "dim": (_INT, False), "approximate": (_STR + _BOOL, False),
        "beta": (_NUM, False), "threshold": (_NUM, False), "inplace": (_BOOL, False),
    },
    "dense": {
        "in_features": (_INT, False), "out_features": (_INT, False), "bias": (_BOOL, False),
        "operation": (_STR, False),
    },
    "merge": {
        "operation": (_STR, True),  # add | sub | mul | div | cat | stack | max | min | mean...
        "dim": (_INT, False), "scalar": (_NUM, False), "reflected": (_BOOL, False),
        "inplace": (_BOOL, False),
    },
    "reshape": {"operation": (_STR, False), "target_shape": (_PAIR, False)},
    "flatten": {"start_dim": (_INT, False), "end_dim": (_INT, False)},
}

_ANY_KIND = {"layout": (_STR, False), "inplace": (_BOOL, False), "sources": (_PAIR, False)}


def problems(kind: str, params: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``params`` for a stage of ``kind`` (empty: nothing).  Keys the
    schema does not know are allowed (an adapter may add detail); known keys must have
    their type, and required keys must be there."""
    schema = SCHEMA.get(kind)
    if schema is None:
        return []
    out = []
    for key, (types, required) in schema.items():
        if key not in params:
            if required:
                out.append(f"{kind} stage lacks {key!r}")
            continue
        v = params[key]
        if v is None and not required:
            continue
        if isinstance(v, bool) and bool not in types:
            out.append(f"{kind}.{key} is a bool, expected {'/'.join(t.__name__ for t in types)}")
        elif not isinstance(v, types):
            out.append(f"{kind}.{key} = {v!r} ({type(v).__name__}); expected "
                       f"{'/'.join(t.__name__ for t in types)}")
    for key, (types, _) in _ANY_KIND.items():
        if key in params and not isinstance(params[key], types):
            out.append(f"{key} = {params[key]!r}; expected {'/'.join(t.__name__ for t in types)}")
    return out
