"""Capture a TorchScript module (``torch.jit.script`` or ``torch.jit.trace``, any module,
loaded from a ``.pt`` file or not): every op of its graph is a stage.

TorchScript runs ``forward`` outside Python, so no hook or function mode sees inside it.
Its graph does say everything: the adapter copies ``forward``'s graph and inlines every
method call itself, tagging each op with the path of the module it ran in (the
``prim::GetAttr`` chain that reached the module: ``layer1.0.conv1``).  Every tensor the
graph computes is then registered as an extra graph output (a copy of it where the graph
writes into tensors in place), a function is made from the graph and run once with the
module as ``self``: its outputs are the stages' exact values, from the very kernels the
file runs.  Sources are the graph's edges (lists built with ``append`` included);
kinds and typed params come from the aten op and its arguments
(:mod:`~convlens.capture.torch_graph`), weights from the parameters the op reads.

Not stages, named in one notice: constants, shape arithmetic (``aten::size``...),
non-float values, and the ops inside ``prim::If``/``prim::Loop`` blocks (the block's
results are stages; which branch ran is the runtime's).
"""
from __future__ import annotations

import re
import warnings
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convlens.capture.options import CaptureOptions, finish_stages, model_failed
from convlens.capture.torch_pass import device_dtype, first_tensor
from convlens.capture.torch_graph import GraphStages, to_numpy
from convlens.errors import ConvlensError, ModelError

__all__ = ["capture_torchscript", "expected_input", "load_torchscript", "instrumented"]

_PATH = "convlens_path"  # node attribute: the module path an op ran in
_CALL = "convlens_call"  # node attribute: this node's output is a leaf module call's output
_FORWARD = re.compile(r"forward\d*")
_VALUE_TYPES = (torch._C.IntType, torch._C.FloatType, torch._C.BoolType, torch._C.StringType,
                torch._C.NoneType)


# -- the graph, inlined and tagged ------------------------------------------------------
def _chain(value: Any, root: Any) -> list[str] | None:
    """The attribute names leading from ``root`` (a graph's ``self``) to ``value``."""
    names: list[str] = []
    while value is not root:
        node = value.node()
        if node.kind() != "prim::GetAttr":
            return None
        names.append(node.s("name"))
        value = node.input()
    return names[::-1]


def _walk(block: Any):
    for n in block.nodes():
        yield n
        for b in n.blocks():
            yield from _walk(b)


def _tag(graph: Any, path: str) -> None:
    for n in _walk(graph):
        if not n.hasAttribute(_PATH):
            n.s_(_PATH, path)


def _resolve(module: Any, names: list[str]) -> Any:
    for a in names:
        module = getattr(module, a)
    return module


def _inline(graph: Any, module: Any, path: str, leaves: set[str]) -> None:
    """Replace every ``prim::CallMethod`` on a submodule by the method's own graph, its
    nodes tagged with the submodule's path (calls of functions are inlined by TorchScript's
    own pass afterwards, in the module that calls them)."""
    root = graph.inputs().__next__()
    for n in list(graph.findAllNodes("prim::CallMethod", True)):
        inputs = list(n.inputs())
        names = _chain(inputs[0], root)
        if names is None:
            continue  # (a module passed around as a value: left to the pass, untagged)
        sub = _resolve(module, names)
        sub_path = ".".join(p for p in (path, *names) if p)
        method = n.s("name")
        callee = sub._c._get_method(method).graph.copy()
        _inline(callee, sub, sub_path, leaves)
        torch._C._jit_pass_inline(callee)
        _specialise(callee, sub)  # (before the call's output is marked: a folded branch)
        _tag(callee, sub_path)
        if _FORWARD.fullmatch(method) and sub_path in leaves:  # (a traced second call: forward1)
            for out in callee.outputs():
                producer = out.node()
                if producer.kind() != "prim::Param" and not producer.hasAttribute(_CALL):
                    producer.s_(_CALL, getattr(sub, "original_name", type(sub).__name__))
        graph.setInsertPoint(n)
        outs = graph.insertGraph(callee, inputs)
        for old, new in zip(n.outputs(), outs):
            old.replaceAllUsesWith(new)
        graph.setInsertPoint(graph.return_node())  # (not the node about to go)
        n.destroy()


def _specialise(graph: Any, model: Any) -> None:
    """Fold what is fixed for this run: each module's ``training`` flag (the capture runs
    in eval mode) and every branch on a constant (``F.relu``'s ``if inplace``), so the ops
    of the branch that runs are top-level nodes, stages like any other."""
    root = next(graph.inputs())
    for n in list(graph.findAllNodes("prim::GetAttr", True)):
        if n.s("name") != "training":
            continue
        names = _chain(n.output(), root)
        if names is None:
            continue
        graph.setInsertPoint(n)
        const = graph.insertConstant(bool(_resolve(model, names)))
        n.output().replaceAllUsesWith(const)
    graph.setInsertPoint(graph.return_node())
    torch._C._jit_pass_constant_propagation(graph)


def inlined(model: torch.jit.ScriptModule) -> Any:
    """``model.forward``'s graph with every call inlined, every node tagged, and the
    branches fixed for this run folded (:func:`_specialise`)."""
    leaves = {name for name, m in model.named_modules()
              if name and not any(True for _ in m.children())}
    graph = model._c._get_method("forward").graph.copy()
    _inline(graph, model, "", leaves)
    torch._C._jit_pass_inline(graph)
    _tag(graph, "")
    _specialise(graph, model)
    return graph


# -- the graph, instrumented ------------------------------------------------------------
def _registrable(value: Any) -> bool:
    t = value.type()
    if isinstance(t, torch._C.TensorType) or isinstance(t, _VALUE_TYPES):
        return True
    if isinstance(t, torch._C.ListType):
        return isinstance(t.getElementType(), (torch._C.IntType, torch._C.FloatType,
                                               torch._C.BoolType))
    return False


def _mutates(node: Any) -> bool:
    k = node.kind()
    if k.startswith("aten::") and k.endswith("_") and not k.endswith("__"):
        return True
    try:
        return "(a!)" in str(node.schema())
    except RuntimeError:  # (nodes without a schema)
        return False


class Instrumented:
    """A TorchScript module's forward as one function returning every value of its
    graph: ``slots[value.unique()]`` is that value's position in the result."""

    def __init__(self, model: torch.jit.ScriptModule):
        graph = inlined(model)
        inputs = list(graph.inputs())
        if len(inputs) != 2:
            raise ModelError(
                f"TorchScript {_name(model)}.forward takes {len(inputs) - 1} inputs; expected "
                "one (the image batch)")
        self.graph, self.input = graph, inputs[1]
        self.nodes = list(graph.nodes())  # (the top-level ones: blocks run as one)
        self.n_outputs = len(list(graph.outputs()))
        copy = any(_mutates(n) for n in _walk(graph))
        none = None
        self.slots: dict[int, int] = {}
        for n in self.nodes:
            if n.kind() in ("prim::Constant", "prim::GetAttr", "prim::ListConstruct",
                            "prim::TupleConstruct"):
                continue
            for o in list(n.outputs()):
                if not _registrable(o):
                    continue
                if copy and isinstance(o.type(), torch._C.TensorType):
                    # the value as made, before a later in-place op overwrites it
                    if none is None:
                        none = graph.create("prim::Constant")
                        none.output().setType(torch._C.NoneType.get())
                        none.insertBefore(self.nodes[0])
                    clone = graph.create("aten::clone", [o, none.output()], 1)
                    clone.output().setType(o.type())
                    clone.insertAfter(n)
                    self.slots[o.unique()] = len(list(graph.outputs()))
                    graph.registerOutput(clone.output())
                else:
                    self.slots[o.unique()] = len(list(graph.outputs()))
                    graph.registerOutput(o)
        graph.makeMultiOutputIntoTuple()
        self.function = torch._C._create_function_from_graph("convlens_forward", graph)


def _name(model: Any) -> str:
    return getattr(model, "original_name", None) or type(model).__name__


def instrumented(model: torch.jit.ScriptModule) -> Instrumented:
    """Made on every capture (a graph is cheap to copy): nothing can go stale."""
    return Instrumented(model)


# -- capture -----------------------------------------------------------------------------
def _value(v: Any, values: tuple, slots: dict[int, int], model: Any, root: Any) -> Any:
    """The value ``v`` had in the run (a constant, a list of them, an attribute...)."""
    node = v.node()
    k = node.kind()
    if k == "prim::Constant":
        return v.toIValue()
    if k == "prim::ListConstruct":
        return [_value(i, values, slots, model, root) for i in node.inputs()]
    slot = slots.get(v.unique())
    if slot is not None:
        return values[slot]
    if k == "prim::GetAttr":
        names = _chain(v, root)
        return _resolve(model, names) if names is not None else None
    return None


def _is_tensor(v: Any) -> bool:
    t = v.type()
    if isinstance(t, torch._C.OptionalType):
        t = t.getElementType()
    return isinstance(t, torch._C.TensorType)


def _stages(model: Any, inst: Instrumented, values: tuple, xt: torch.Tensor, keep) -> GraphStages:
    root = next(inst.graph.inputs())
    g = GraphStages(keep, [n for n, _ in model.named_modules() if n], int(xt.shape[0]))
    g.input(inst.input.unique())
    lists: dict[int, list[int]] = {}  # a list value -> the values in it (appends included)
    slots = inst.slots
    top = {o.unique() for n in inst.nodes for o in n.outputs()} | {inst.input.unique()}
    blocked: Counter[str] = Counter()  # module path -> ops inside control flow

    def elements(v: Any) -> list[int]:
        u = v.unique()
        return lists[u] if u in lists else [u]

    def runtime(v: Any) -> Any:
        return xt if v is inst.input else _value(v, values, slots, model, root)

    for n in inst.nodes:
        kind = n.kind()
        ins = list(n.inputs())
        if kind in ("prim::Constant", "prim::GetAttr"):
            continue
        if kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            lists[n.output().unique()] = [u for i in ins for u in elements(i)]
            continue
        if kind == "aten::append" and ins and ins[0].unique() in lists:
            lists[ins[0].unique()].extend(elements(ins[1]))
            lists[n.output().unique()] = lists[ins[0].unique()]
            continue
        if kind in ("prim::ListUnpack", "prim::TupleUnpack") and ins[0].unique() in lists:
            for o, u in zip(n.outputs(), lists[ins[0].unique()]):
                g.through(o.unique(), u)
            continue
        if kind in ("prim::TupleIndex", "aten::__getitem__") and ins[0].unique() in lists:
            i = runtime(ins[1])
            items = lists[ins[0].unique()]
            if isinstance(i, int) and -len(items) <= i < len(items):
                g.through(n.output().unique(), items[i])
                continue
        path = n.s(_PATH) if n.hasAttribute(_PATH) else ""
        outs = [o for o in n.outputs() if _is_tensor(o)]
        if not outs:
            if kind.startswith("aten::") or kind.startswith("prim::"):
                if any(True for _ in n.outputs()):
                    g.skip(kind)
            continue
        source_keys = [u for i in ins if _is_tensor(i) or i.unique() in lists
                       for u in elements(i)]
        if kind in ("prim::If", "prim::Loop"):  # (its results: stages fed by what it reads)
            inner = [m for b in n.blocks() for m in _walk(b)]
            blocked[path or "the model"] += sum(
                1 for m in inner if any(_is_tensor(o) for o in m.outputs()))
            source_keys += [u for m in inner for i in m.inputs() if i.unique() in top
                            and (_is_tensor(i) or i.unique() in lists) for u in elements(i)]
        args = [runtime(i) for i in ins]
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        weights: dict[str, Any] = {}
        for i in ins:
            if i.node().kind() == "prim::GetAttr" and _is_tensor(i):
                weights[i.node().s("name")] = runtime(i)
        call = n.s(_CALL) if n.hasAttribute(_CALL) else None
        op = kind.split("::", 1)[1] if kind.startswith("aten::") else kind.split("::")[-1].lower()
        for o in outs:
            value = runtime(o)
            if not isinstance(value, torch.Tensor):
                continue
            key = o.unique()
            g.op(key, op, path, args, {}, value, source_keys, weights,
                 call if len(outs) == 1 else None, first)
            if (kind.startswith("aten::") and op.endswith("_") and not op.endswith("__")
                    and ins and key in g.producer):
                g.producer[ins[0].unique()] = g.producer[key]  # the tensor it overwrote
    if blocked:
        where = ", ".join(f"{n} in {p}" for p, n in blocked.most_common(5))
        g.notices.append(f"{sum(blocked.values())} op(s) inside control flow (prim::If/"
                         f"prim::Loop) are not stages, their blocks' results are: {where}")
    return g


def capture_torchscript(model: torch.jit.ScriptModule, x: np.ndarray, keep,
                        options: CaptureOptions | None = None):
    """Run ``model`` once on the channels-first batch ``x``; every op of its graph a stage."""
    opts = options or CaptureOptions()
    device, dtype = device_dtype(model)
    modes = [(m, m.training) for m in model.modules()]
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)
    if xt.data_ptr() == np.ascontiguousarray(x).ctypes.data:
        xt = xt.clone()
    try:
        if any(mode for _, mode in modes):
            model.eval()
        try:
            inst = instrumented(model)
            with torch.no_grad():
                values = inst.function(model._c, xt)
            if not isinstance(values, tuple):
                values = (values,)
            g = _stages(model, inst, values, xt, keep)
        except ConvlensError:
            raise
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise model_failed(_name(model), x.shape, exc) from None
    finally:
        for m, mode in modes:
            if m.training != mode:
                m.training = mode
    out = first_tensor(values[0] if inst.n_outputs == 1 else values[:inst.n_outputs])
    if out is None:
        raise ModelError(f"{_name(model)} returned {type(values[0]).__name__}; expected a tensor")
    stages = finish_stages(g.stages, opts, opts.sink())
    return stages, to_numpy(out), _name(model), g.summary()


def expected_input(model: torch.jit.ScriptModule) -> tuple[int | None, None]:
    """Input channels of the first convolution the graph runs on the input (no size)."""
    try:
        graph = inlined(model)
    except (RuntimeError, AttributeError):
        return None, None
    root = next(graph.inputs())
    convs = graph.findAllNodes("aten::conv2d", True) + \
        graph.findAllNodes("aten::_convolution", True)
    for n in convs:
        ins = list(n.inputs())
        names = _chain(ins[1], root)
        if names is None:
            continue
        w = _resolve(model, names)
        groups_v = ins[8] if n.kind() == "aten::_convolution" else ins[6]
        groups = groups_v.toIValue() if groups_v.node().kind() == "prim::Constant" else 1
        if isinstance(w, torch.Tensor) and w.dim() == 4 and isinstance(groups, int):
            return int(w.shape[1]) * groups, None
    return None, None


# -- files ---------------------------------------------------------------------------------
def load_torchscript(path: Path) -> Any:
    """A TorchScript archive (``torch.jit.save``); a ``torch.save`` pickle is refused
    before anything in it is read, since unpickling can run arbitrary code."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        raise ModelError(
            f"{path}: not a TorchScript archive (not a zip file); expected a file written by "
            "torch.jit.script(model).save(path) or torch.jit.trace(model, x).save(path)"
        ) from None
    if not any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        raise ModelError(
            f"{path}: a pickled PyTorch file (torch.save), not TorchScript; convlens does not "
            "unpickle model files because that can run arbitrary code — a state dict: "
            "--model MODULE:CALLABLE --weights FILE; a whole model: export it with "
            "torch.jit.script(model).save(path), or --trust-model-code if you trust the file"
        )
    try:
        with warnings.catch_warnings():  # TorchScript's own deprecation notice
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure of a bad file is the file's
        msg = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ModelError(
            f"{path}: cannot load this TorchScript file ({msg}); re-export it with "
            "torch.jit.script(model).save(path)"
        ) from None
    return model.eval()
