"""Capture a ``torch.export`` program (an ``ExportedProgram``, or a ``.pt2`` file written by
``torch.export.save``): every node of its graph is a stage.

The program's module (``ExportedProgram.module()``) runs once through a
``torch.fx.Interpreter`` that keeps each ``call_function`` node's output (a copy: the
graph may write in place).  Names come from each node's ``nn_module_stack`` (the module
path it ran in; the last node of a leaf module's call is named by the path itself, as in
the eager capture), kinds and typed params from the aten op and its arguments
(:mod:`~convlens.capture.torch_graph`), weights from the ``get_attr`` nodes it reads,
sources from the graph's edges.

Loading runs no code from the file.  ``torch.export.load`` would: it falls back to
``torch.load(weights_only=False)`` and ``pickle.loads`` for weights, constants and sample
inputs, evaluates the file's symbolic-shape strings with ``sympy.sympify`` (``eval``), and
resolves node targets by name from ``torch`` (``torch.os.system`` is such a name).  So
:func:`load_exported` reads the archive itself: the graph from its JSON schema, tensors
from raw bytes or with ``torch.load(weights_only=True)``, sample inputs likewise; it
refuses pickled objects (torchbind or opaque constants), shape expressions that are not
plain arithmetic on shape symbols, and, once the program is built, any node whose target
is not a PyTorch operator (``torch.ops.*``) or ``operator.getitem``.
"""
from __future__ import annotations

import io
import operator
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx

from convlens.capture.options import CaptureOptions, finish_stages
from convlens.capture.torch_pass import first_tensor
from convlens.capture.torch_graph import GraphStages, to_numpy
from convlens.errors import CaptureError, ConvlensError, ModelError

__all__ = ["capture_exported", "expected_input", "load_exported"]

_REDO = "re-export it with torch.export.save(torch.export.export(model, (x,)), 'model.pt2')"


# -- capture ---------------------------------------------------------------------------
def _path(stack: Any) -> tuple[str, str, str]:
    """(call key, module path, class name) of the innermost module in ``nn_module_stack``."""
    if not stack:
        return "", "", ""
    key, (path, cls) = list(stack.items())[-1]
    path = re.sub(r"\[(\d+)\]", r".\1", str(path)).replace("L['self'].", "")
    path = "" if path in ("L['self']", "L__self__") else path.strip(".")
    cls = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
    return str(key), path, cls.rsplit(".", 1)[-1]


class _Recorder(torch.fx.Interpreter):
    def __init__(self, gm: torch.fx.GraphModule):
        super().__init__(gm, garbage_collect_values=False)  # (env: every node's value)
        self.outputs: dict[str, Any] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        out = super().run_node(n)
        if n.op == "call_function":  # (copies: a later in-place op must not change them)
            self.outputs[n.name] = torch.utils._pytree.tree_map_only(
                torch.Tensor, lambda t: t.detach().clone(), out)
        return out


def _flat_nodes(a: Any) -> list[torch.fx.Node]:
    out: list[torch.fx.Node] = []
    torch.fx.node.map_arg(a, out.append)
    return out


def _stages(gm: torch.fx.GraphModule, outputs: dict[str, Any], env: dict[str, Any],
            keep, batch: int) -> GraphStages:
    nodes = list(gm.graph.nodes)
    calls = [n for n in nodes if n.op == "call_function"]
    info = {n.name: _path(n.meta.get("nn_module_stack")) for n in calls}
    paths = {p for _, p, _ in info.values() if p}
    leaves = {p for p in paths if not any(q.startswith(p + ".") for q in paths)}
    g = GraphStages(keep, paths, batch)
    multi: dict[str, tuple] = {}
    for n in nodes:
        if n.op == "placeholder":
            g.input(n.name)
    for i, n in enumerate(calls):
        key, path, cls = info[n.name]
        value = outputs.get(n.name)
        target = n.target
        name = getattr(target, "__name__", str(target))
        if target is operator.getitem and n.args and getattr(n.args[0], "name", None) in multi:
            if isinstance(value, torch.Tensor):  # (an element of a multi-output op)
                pop, pargs, pkw, pkeys, pw, pfirst = multi[n.args[0].name]
                g.op(n.name, pop, path, pargs, pkw, value, pkeys, pw, None, pfirst)
            continue
        op = getattr(getattr(target, "_schema", None), "name", name).split("::")[-1]
        args = torch.fx.node.map_arg(n.args, lambda a: env.get(a.name))
        kwargs = torch.fx.node.map_arg(dict(n.kwargs), lambda a: env.get(a.name))
        ins = _flat_nodes((n.args, n.kwargs))
        weights = {a.target.rsplit(".", 1)[-1]: env.get(a.name) for a in ins if a.op == "get_attr"}
        source_keys = [a.name for a in ins if a.op != "get_attr"]
        first = next((env.get(a.name) for a in ins if isinstance(env.get(a.name), torch.Tensor)
                      and a.op != "get_attr"), None)
        nxt = calls[i + 1] if i + 1 < len(calls) else None
        end_of_call = path in leaves and (nxt is None or info[nxt.name][0] != key)
        outs = value if isinstance(value, (tuple, list)) else [value]
        if not any(isinstance(o, torch.Tensor) for o in outs):
            if value is not None:
                g.skip(op)
            continue
        if isinstance(value, torch.Tensor):
            g.op(n.name, op, path, list(args), kwargs, value, source_keys, weights,
                 cls if end_of_call else None, first)
            if op.endswith("_") and not op.endswith("__") and source_keys and n.name in g.producer:
                g.producer[source_keys[0]] = g.producer[n.name]  # the tensor it overwrote
        else:  # (a tuple: its elements are taken by getitem nodes, each a stage)
            multi[n.name] = (op, list(args), kwargs, source_keys, weights, first)
    return g


def _placeholder(ep: Any) -> Any:
    gm = ep.module()
    ph = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(ph) != 1:
        raise ModelError(f"the exported program takes {len(ph)} inputs; expected one (the "
                         "image batch) — export a module whose forward takes one tensor")
    return gm, ph[0]


def capture_exported(ep: Any, x: np.ndarray, keep, options: CaptureOptions | None = None):
    """Run the program once on the channels-first batch ``x``; every node a stage.  A
    program exported for batch 1 runs a larger batch one image at a time."""
    opts = options or CaptureOptions()
    gm, ph = _placeholder(ep)
    val = ph.meta.get("val")
    floating = isinstance(val, torch.Tensor) and val.is_floating_point()
    dtype = val.dtype if floating else torch.float32
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dtype=dtype).clone()
    step = xt.shape[0]
    if isinstance(val, torch.Tensor) and val.dim() == xt.dim() and isinstance(val.shape[0], int):
        b = int(val.shape[0])
        if b != xt.shape[0] and b > 0 and xt.shape[0] % b == 0:
            step = b
    parts: list[GraphStages] = []
    result = []
    try:
        with torch.no_grad():
            for start in range(0, xt.shape[0], step):
                rec = _Recorder(gm)
                chunk = xt[start:start + step].clone()
                out = rec.run(chunk)
                result.append(first_tensor(out))
                env = {n.name: v for n, v in rec.env.items()}
                parts.append(_stages(gm, rec.outputs, {**env, ph.name: chunk}, keep, step))
    except ConvlensError:
        raise
    except Exception as exc:  # noqa: BLE001 - a guard, a shape check or a kernel's failure
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        want = f" (it was exported for {tuple(val.shape)})" if isinstance(val, torch.Tensor) else ""
        raise CaptureError(
            f"the exported program failed on an input of shape {tuple(x.shape)} (B, C, H, W)"
            f"{want}: {msg}; give it images of the size it was exported for, or export it "
            "with dynamic shapes") from None
    if any(r is None for r in result):
        raise ModelError("the exported program returned no tensor; expected a tensor")
    g = parts[0]
    stages = g.stages
    if len(parts) > 1:  # (one image at a time: the stages of each, joined on the batch axis)
        for k, s in enumerate(stages):
            s.output = np.concatenate([p.stages[k].output for p in parts], axis=0)
    output = torch.cat(result, 0) if len(result) > 1 else result[0]
    stages = finish_stages(stages, opts, opts.sink())
    return stages, to_numpy(output), _model_name(ep, gm), g.summary()


def _model_name(ep: Any, gm: Any) -> str:
    for n in gm.graph.nodes:
        stack = n.meta.get("nn_module_stack")
        if stack:
            _, (path, cls) = list(stack.items())[0]
            cls = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
            return cls.rsplit(".", 1)[-1]
    return "ExportedProgram"


def expected_input(ep: Any) -> tuple[int | None, tuple[int, int] | None]:
    """The channels and (height, width) the program was exported for, where static."""
    try:
        _, ph = _placeholder(ep)
    except ModelError:
        return None, None
    val = ph.meta.get("val")
    if not isinstance(val, torch.Tensor) or val.dim() != 4:
        return None, None
    dims = [d if isinstance(d, int) else None for d in val.shape]
    size = (dims[2], dims[3]) if dims[2] and dims[3] else None
    return dims[1], size


# -- files -------------------------------------------------------------------------------
_TOKEN = re.compile(r"\s+|\d+\.\d+(?:e[-+]?\d+)?|\d+|'[a-z]+\d+'|[A-Za-z][A-Za-z0-9_]*|\*\*|//"
                    r"|==|!=|<=|>=|[-+*/%(),<>&|~=]")
_SYMBOL = re.compile(r"'?[a-z]+\d+'?")
_LITERALS = {"oo", "zoo", "nan", "True", "False", "true", "false",
             # sympy's own spelling of a symbol: Symbol('s77', positive=True, integer=True)
             "Symbol", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "positive",
             "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "nonzero",
             "zero", "even", "odd", "rational", "commutative", "extended_real"}


def _plain_expression(expr: str, functions: set[str]) -> bool:
    """Is ``expr`` arithmetic on shape symbols (``s0``, ``u1``) and the sympy functions
    PyTorch's deserialiser names, with nothing ``eval`` could do harm with?"""
    pos = 0
    for m in _TOKEN.finditer(expr):
        if m.start() != pos:
            return False
        tok = m.group()
        if tok[0].isalpha() and not (_SYMBOL.fullmatch(tok) or tok in functions
                                     or tok in _LITERALS):
            return False
        pos = m.end()
    return pos == len(expr)


def _expressions(obj: Any, out: list[str]) -> None:
    """Every ``expr_str`` in the deserialised schema dataclasses (sympy will ``eval`` them)."""
    from dataclasses import fields, is_dataclass

    from torch._export.serde.union import _Union
    if isinstance(obj, _Union):  # (one field set: reading another raises)
        _expressions(obj.value, out)
    elif is_dataclass(obj):
        for f in fields(obj):
            v = getattr(obj, f.name)
            if f.name == "expr_str" and isinstance(v, str):
                out.append(v)
            else:
                _expressions(v, out)
    elif isinstance(obj, dict):
        for v in obj.values():
            _expressions(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _expressions(v, out)


def _safe_load(data: bytes, what: str, path: Path) -> Any:
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - refused by the weights-only unpickler
        msg = " ".join(str(exc).split())[:160]
        raise ModelError(
            f"{path}: its {what} hold pickled Python objects ({msg}), which convlens does not "
            f"load because unpickling can run arbitrary code; {_REDO}") from None


def _tensors(reader: Any, model: str, config_format: str, base: str, path: Path,
             what: str) -> dict[str, Any]:
    """Weights or constants, as ``torch.export.load`` reads them but running no code: raw
    bytes, or ``torch.load(weights_only=True)``; pickled objects are refused."""
    from torch._export.serde.serialize import (deserialize_size, deserialize_storage_offset,
                                               deserialize_stride)
    from torch.export.pt2_archive import _package as pkg
    from torch.export.pt2_archive import constants as pc

    legacy = f"{base}{model}.pt"
    names = reader.get_file_names()
    if legacy in names:
        loaded = _safe_load(reader.read_bytes(legacy), what, path)
        if not isinstance(loaded, dict):
            raise ModelError(f"{path}: its {what} are not a dict of tensors; {_REDO}")
        return loaded
    config_file = config_format.format(model)
    if config_file not in names:
        raise ModelError(f"{path}: the archive lacks {config_file}; {_REDO}")
    config = pkg._load_payload_config(reader, config_file)
    files = pkg._build_file_map(reader, config, base)
    out: dict[str, Any] = {}
    for fqn, meta in config.config.items():
        name = meta.path_name
        if base == pc.CONSTANTS_DIR and not name.startswith(pc.TENSOR_CONSTANT_FILENAME_PREFIX):
            raise ModelError(
                f"{path}: constant {fqn!r} is a pickled Python object ({name}), which convlens "
                f"does not load because unpickling can run arbitrary code; {_REDO}")
        if meta.use_pickle:
            out[fqn] = _safe_load(reader.read_bytes(base + name), what, path)
            continue
        tm = meta.tensor_meta
        if tm is None:
            raise ModelError(f"{path}: {what} {fqn!r} has no tensor description; {_REDO}")
        t = torch.as_strided(files[name], size=deserialize_size(tm.sizes),
                             stride=deserialize_stride(tm.strides),
                             storage_offset=deserialize_storage_offset(tm.storage_offset))
        out[fqn] = torch.nn.Parameter(t, requires_grad=tm.requires_grad) if \
            getattr(meta, "is_param", False) else t
    return out


def _allowed_target(target: Any) -> bool:
    if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return True
    return target is operator.getitem


def load_exported(path: Path) -> Any:
    """A ``torch.export.save`` archive as an ``ExportedProgram``, running no code from it
    (see the module docs); sizes and member count checked first, as for every archive."""
    from convlens.capture.archive import check_archive

    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ModelError(
            f"{path}: not a torch.export archive (not a zip file, or a truncated one); "
            f"expected a file written by torch.export.save — {_REDO}")
    check_archive(path, "torch.export")  # (member count, sizes, zip bombs)
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{path}: cannot read this zip archive ({exc}); {_REDO}") from None
    try:
        from torch._export.serde import schema
        from torch._export.serde.serialize import ExportedProgramDeserializer, \
            _bytes_to_dataclass
        from torch.export.pt2_archive import _package as pkg
        from torch.export.pt2_archive import constants as pc
    except ImportError as exc:  # (an older torch)
        raise ModelError(f"{path}: this torch ({torch.__version__}) cannot read .pt2 archives "
                         f"({exc}); install torch >= 2.6") from None
    if not any(m.endswith("/" + pc.ARCHIVE_FORMAT_PATH) or m == pc.ARCHIVE_FORMAT_PATH
               for m in members):
        raise ModelError(
            f"{path}: a zip file, but not a torch.export archive (no {pc.ARCHIVE_FORMAT_PATH}); "
            "a torch.save pickle renamed .pt2 is refused unread, since unpickling can run "
            f"arbitrary code — {_REDO}")
    try:
        with pkg.PT2ArchiveReader(str(path)) as reader:
            names = reader.get_file_names()
            version = reader.read_string(pc.ARCHIVE_VERSION_PATH)
            if version != pc.ARCHIVE_VERSION_VALUE:
                raise ModelError(f"{path}: archive version {version!r}; this torch reads "
                                 f"{pc.ARCHIVE_VERSION_VALUE!r} — {_REDO}")
            model = pc.MODELS_FILENAME_FORMAT.format("model")
            if model not in names:
                raise ModelError(f"{path}: the archive holds no program ({model}); {_REDO}")
            program = _bytes_to_dataclass(schema.ExportedProgram, reader.read_bytes(model))
            exprs: list[str] = []
            _expressions(program, exprs)
            functions = {
                "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv",
                "CeilToInt", "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural",
                "FloatPow", "FloatTrueDiv", "IntTrueDiv", "TruncToFloat", "TruncToInt",
                "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "Max", "Min", "Abs",
                "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not"}
            bad = [e for e in exprs if not _plain_expression(e, functions)]
            if bad:
                raise ModelError(
                    f"{path}: a shape expression in the program is not plain arithmetic "
                    f"({bad[0][:60]!r}); convlens does not evaluate it because that can run "
                    f"arbitrary code — {_REDO}")
            state = _tensors(reader, "model", pc.WEIGHTS_CONFIG_FILENAME_FORMAT, pc.WEIGHTS_DIR,
                             path, "weights")
            consts = _tensors(reader, "model", pc.CONSTANTS_CONFIG_FILENAME_FORMAT,
                              pc.CONSTANTS_DIR, path, "constants")
            sample_file = pc.SAMPLE_INPUTS_FILENAME_FORMAT.format("model")
            sample = None
            if sample_file in names:
                data = reader.read_bytes(sample_file)
                sample = _safe_load(data, "sample inputs", path) if data else None
            ep = ExportedProgramDeserializer(None).deserialize(program, state, consts, sample)
    except ConvlensError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a bad file is the file's
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ModelError(f"{path}: cannot load this torch.export program ({msg}); "
                         f"{_REDO}") from None
    for n in ep.graph.nodes:
        if n.op == "call_function" and not _allowed_target(n.target):
            raise ModelError(
                f"{path}: node {n.name!r} calls {str(n.target)[:80]!r}, not a PyTorch operator; "
                "convlens runs only torch.ops operators from a file — " + _REDO)
        if n.op == "call_module":
            raise ModelError(f"{path}: node {n.name!r} calls a module; expected a program "
                             f"of operators only — {_REDO}")
    return ep
