"""ONNX models: load a ``.onnx`` file safely and capture every value its graph computes.

**Loading** (:func:`load_onnx`) parses the protobuf, which runs no code from the file.
A file that is not a ``ModelProto`` (truncated, random bytes, a zip or HDF5 file named
``.onnx``) is one line, "not an ONNX model".  External data is read only from files in
the model's own folder: a tensor whose data lies elsewhere (an absolute path, ``..``, a
symlink leading out) is refused.  The model must pass ``onnx.checker`` and be stamped
with a default-domain opset from :data:`MIN_OPSET` (7, the oldest onnxruntime runs) to
:data:`MAX_OPSET` (the newest the installed ``onnx`` knows: 28 with the pinned onnx
1.23); an op that is not a standard ONNX op, or that onnxruntime has no kernel for, is a
one-line error naming the op and its node.  The onnxruntime session is built at load, so
every such error comes before the first capture.

**Capture** (:func:`capture_onnx`): every node output of the main graph is added as an
extra graph output (typed by ``onnx.shape_inference``) and the model runs once in one
onnxruntime ``InferenceSession`` (CPU), made once per :class:`OnnxModel`.  Then:

* a value computed from the model input with a batch axis is a stage, in node order,
  as float32 (comparisons and indices too, as PyTorch stages are);
* values computed from weights and constants alone, size computations (``Shape``,
  ``Gather`` on a shape...) and values without a batch axis are not stages, and are
  named in one notice;
* ``Identity``, ``Dropout`` (inference) and a same-type ``Cast`` are no-ops: not stages,
  their sources pass through;
* names come from the exporter's node names, read as module paths
  (``/layer1/layer1.0/conv1/Conv`` is ``layer1.0.conv1``; an op run by a module with
  children is ``layer1.0.add``, as PyTorch capture names it), else the node's name;
* the kind comes from the op type, the typed params (:mod:`convlens.params`) from the
  node's attributes, the weights from the initializers (PyTorch layout and names:
  ``weight``, ``bias``, ``running_mean``...), ``sources`` from the graph's edges
  (-1: the model input; initializers and constants are not sources);
* a stretch computed channels-last (after a ``Transpose`` to NHWC, as ConvNeXt does) is
  shown channels-first and tagged ``layout=channels_last``, as PyTorch capture does.

The values are onnxruntime's for the instrumented graph; the last stage is the graph's
output from that same run.
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from convlens.capture.onnx_model import OnnxModel
from convlens.capture.options import CaptureOptions, finish_stages
from convlens.errors import CaptureError, ModelError
from convlens.trace import Stage

__all__ = ["load_onnx", "capture_onnx", "expected_input", "MIN_OPSET", "MAX_OPSET",
           "supported_opsets"]

MIN_OPSET = 7
"""The oldest default-domain opset convlens runs (onnxruntime's oldest)."""


_ONNX: Any = None


def _onnx() -> Any:
    global _ONNX
    if _ONNX is not None:
        return _ONNX
    try:
        import onnx
        import onnx.checker  # noqa: F401
        import onnx.numpy_helper  # noqa: F401
        import onnx.shape_inference  # noqa: F401
    except ImportError:
        raise ModelError("reading .onnx files needs the onnx and onnxruntime packages; "
                         "install them with pip install 'convlens[onnx]'") from None
    _ONNX = onnx
    return onnx


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ModelError("running ONNX models needs onnxruntime; install it with "
                         "pip install 'convlens[onnx]'") from None
    return onnxruntime


def supported_opsets() -> tuple[int, int]:
    """``(oldest, newest)`` default-domain opset convlens runs with the installed onnx."""
    return MIN_OPSET, int(_onnx().defs.onnx_opset_version())


def __getattr__(name: str) -> Any:  # MAX_OPSET: known once onnx is imported
    if name == "MAX_OPSET":
        return supported_opsets()[1]
    raise AttributeError(name)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:240]


# -- loading -------------------------------------------------------------------------
_EXPECT = "expected a file written by torch.onnx.export or onnx.save"


def load_onnx(path: str | Path) -> OnnxModel:
    """Read ``path`` as an ONNX model (see the module docs); a one-line ModelError for
    anything that is not a valid, runnable ONNX model."""
    onnx = _onnx()
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read this file ({exc.strerror}); {_EXPECT}") from None
    what = ("a zip archive (a PyTorch or Keras file?)" if head.startswith(b"PK\x03\x04")
            else "an HDF5 file (a Keras .h5 file?)" if head.startswith(b"\x89HDF")
            else "an empty file" if not head else None)
    if what:
        raise ModelError(f"{path}: not an ONNX model ({what}); {_EXPECT}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{path}: not an ONNX model (the file is not an ONNX protobuf: "
                         f"{_short(exc)}); {_EXPECT}") from None
    if not isinstance(proto, onnx.ModelProto) or not proto.HasField("graph") \
            or not proto.graph.node or proto.ir_version <= 0:
        raise ModelError(f"{path}: not an ONNX model (no graph of nodes, or no IR version in "
                         f"it); {_EXPECT}")
    _read_external_data(proto, path)
    opset = _default_opset(proto, path)
    _check_ops(proto, path, opset)
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ModelError(f"{path}: not a valid ONNX model ({_short(exc)}); re-export it, "
                         "or check it with onnx.checker.check_model") from None
    if proto.functions:  # model-local functions: inline them, so their insides are stages
        import onnx.inliner
        proto = onnx.inliner.inline_local_functions(proto)
    model = _model(proto, path.name, path)
    model._plan = _Plan.build(model, proto)  # every error of the model before a capture
    return model


def _model(proto: Any, name: str, path: Path | None) -> OnnxModel:
    onnx = _onnx()
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    where = f"{path}" if path is not None else name
    if len(inputs) != 1:
        got = ", ".join(repr(i.name) for i in inputs) or "none"
        raise ModelError(f"{where}: the model has {len(inputs)} inputs ({got}); convlens "
                         "captures models with one image input")
    inp = inputs[0]
    if not inp.type.HasField("tensor_type"):
        raise ModelError(f"{where}: input {inp.name!r} is not a tensor; convlens captures "
                         "models with one image tensor input (N, C, H, W)")
    tt = inp.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                 for d in tt.shape.dim)
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name \
        if tt.elem_type else "float32"
    try:
        data = proto.SerializeToString()
    except Exception as exc:  # (over protobuf's 2 GB)
        raise ModelError(f"{where}: cannot hold this model ({_short(exc)}); convlens reads "
                         "ONNX models up to 2 GB") from None
    return OnnxModel(data=data, name=name, input_name=inp.name, input_shape=dims,
                     input_type=dtype, opset=_default_opset(proto, where), path=path)


def _default_opset(proto: Any, where: Any) -> int:
    lo, hi = supported_opsets()
    v = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if v is None:
        raise ModelError(f"{where}: not a valid ONNX model (it imports no default-domain "
                         f"opset); expected opset {lo} to {hi}")
    if v < lo or v > hi:
        raise ModelError(f"{where}: ONNX opset {v} is not supported; convlens runs opsets "
                         f"{lo} to {hi} (onnxruntime's range with the installed onnx) — "
                         f"re-export with torch.onnx.export(..., opset_version=17)")
    return int(v)


def _check_ops(proto: Any, path: Path, opset: int) -> None:
    """A default-domain op that is not an ONNX op (of this opset): named, one line."""
    onnx = _onnx()
    lo, hi = supported_opsets()
    for node in _all_nodes(proto.graph):
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type, opset, ""):
            raise ModelError(
                f"{path}: op {node.op_type!r} (node {node.name or '(unnamed)'!r}) is not an "
                f"ONNX op of opset {opset}; convlens runs the standard ONNX ops of opsets "
                f"{lo} to {hi} with onnxruntime")


def _all_nodes(graph: Any) -> Iterator[Any]:
    for node in graph.node:
        yield node
        for a in node.attribute:
            if a.HasField("g"):
                yield from _all_nodes(a.g)
            for g in a.graphs:
                yield from _all_nodes(g)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph, its nodes' attributes and subgraphs."""
    yield from graph.initializer
    for st in graph.sparse_initializer:
        yield st.values
        yield st.indices
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("sparse_tensor"):
                yield a.sparse_tensor.values
                yield a.sparse_tensor.indices
            if a.HasField("g"):
                yield from _tensors(a.g)
            for g in a.graphs:
                yield from _tensors(g)


def _read_external_data(proto: Any, path: Path) -> None:
    """Read the tensors stored outside the ``.onnx`` file into it, from files in the
    model's own folder only."""
    onnx = _onnx()
    folder = path.parent.resolve()
    for t in _tensors(proto.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        rel = Path(loc)
        target = (folder / rel).resolve() if loc else None
        if not loc or rel.is_absolute() or ".." in rel.parts or "\\" in loc \
                or target is None or not target.is_relative_to(folder):
            raise ModelError(
                f"{path}: tensor {t.name!r} keeps its data in {loc!r}, outside the model's "
                "folder; convlens reads external data only from files beside the model — "
                "move the data file next to it, or save the model with its data inside")
        if not target.is_file():
            raise ModelError(f"{path}: tensor {t.name!r} keeps its data in {loc!r}, which is "
                             "missing; expected that file beside the model")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        except ValueError:
            raise ModelError(f"{path}: tensor {t.name!r} has a malformed external data "
                             "offset or length; re-save the model with onnx.save") from None
        size = target.stat().st_size
        want = math.prod(t.dims) * _itemsize(t.data_type)
        if length < 0:
            length = size - offset
        if offset < 0 or offset + length > size or (want is not None and want != length):
            raise ModelError(f"{path}: tensor {t.name!r} has external data that does not fit "
                             f"its file {loc!r} (offset {offset}, length {length}, file "
                             f"{size} bytes); re-save the model with onnx.save")
        with open(target, "rb") as fh:
            fh.seek(offset)
            t.raw_data = fh.read(length)
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT


def _itemsize(data_type: int) -> int | None:
    try:
        return np.dtype(_onnx().helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    except Exception:  # (strings, 4-bit types: not checked)
        return None


# -- what the input is ---------------------------------------------------------------
def expected_input(model: OnnxModel) -> tuple[int | None, tuple[int, int] | None]:
    """The input's channels and its fixed ``(h, w)`` (``None`` where not fixed)."""
    shape = model.input_shape
    if len(shape) != 4:
        raise ModelError(
            f"{model.name}: input {model.input_name!r} has shape "
            f"({', '.join(str(d) for d in shape)}); convlens captures image models whose "
            "input is (N, C, H, W)")
    _, c, h, w = (d if isinstance(d, int) else None for d in shape)
    if c is not None and c not in (1, 3) and w in (1, 3):
        raise ModelError(
            f"{model.name}: input {model.input_name!r} has shape "
            f"({', '.join(str(d) for d in shape)}), channels last (N, H, W, C); convlens "
            "captures channels-first (N, C, H, W) ONNX models — export channels-first")
    return c, (h, w) if h is not None and w is not None else None


# -- the instrumented session --------------------------------------------------------
_SHAPE_OPS = {"Shape", "Size"}
_NOOPS = {"Identity", "Dropout"}


@dataclass
class _Plan:
    """What one model's captures share: the session that returns every value, the
    graph's nodes and what each value is."""

    session: Any
    nodes: list[Any]
    outputs: list[str]
    graph_outputs: list[str]
    klass: dict[str, str]
    """value name -> "data" (computed from the input), "shape" (from sizes) or "const"."""
    consts: dict[str, np.ndarray]
    opset: int
    plain: Any = None
    """A session of the model as it is, as a user runs it: the graph's outputs."""
    scopes: dict[int, tuple[str, str, bool, tuple]] = field(default_factory=dict)
    """node index -> (module path, op part, path is a parent, call) for exporter names."""
    schemas: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, model: OnnxModel, proto: Any | None = None) -> "_Plan":
        onnx = _onnx()
        ort = _ort()
        proto = proto if proto is not None else onnx.load_from_string(model.data)
        g = proto.graph
        consts = {t.name: _readonly(onnx.numpy_helper.to_array(t)) for t in g.initializer}
        klass: dict[str, str] = {model.input_name: "data"}
        klass.update({n: "const" for n in consts})
        for node in g.node:
            ins = [klass.get(n, "data") for n in (*node.input, *_outer_names(node)) if n]
            if node.op_type in _SHAPE_OPS and ins and ins[0] != "const":
                k = "shape"
            else:
                k = "data" if "data" in ins else "shape" if "shape" in ins else "const"
            for o in node.output:
                if o:
                    klass[o] = k
        try:
            typed = onnx.shape_inference.infer_shapes(proto)
            types = {v.name: v for v in (*typed.graph.value_info, *typed.graph.output)}
        except Exception:  # (inference is only for the outputs' types)
            types = {}
        so = ort.SessionOptions()
        so.log_severity_level = 3
        # values of weights and constants alone: computed once, here (not copied out of
        # every pass); where that fails, every pass returns them
        folded = _fold_constants(ort, onnx, proto, klass, so)
        consts.update(folded)
        graph_outputs = [o.name for o in g.output]
        taken = set(graph_outputs)
        for node in g.node:
            for o in node.output:
                if klass.get(o) == "shape" or (klass.get(o) == "const" and folded):
                    continue  # (not stages: nothing to read)
                if o and o not in taken:
                    taken.add(o)
                    v = onnx.ValueInfoProto()
                    if o in types and types[o].type.HasField("tensor_type") \
                            and types[o].type.tensor_type.elem_type:
                        v.CopyFrom(types[o])
                    else:
                        v.name = o
                    g.output.append(v)
        try:
            plain = ort.InferenceSession(model.data, so, providers=["CPUExecutionProvider"])
            session = ort.InferenceSession(proto.SerializeToString(), so,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(_ort_error(model, exc)) from None
        outputs = [o.name for o in session.get_outputs()]
        nodes = list(g.node)
        plan = cls(session, nodes, outputs, graph_outputs, klass, consts, model.opset, plain)
        plan.scopes = _scopes(nodes)
        return plan


def _fold_constants(ort: Any, onnx: Any, proto: Any, klass: dict[str, str],
                    so: Any) -> dict[str, np.ndarray]:
    """Every value computed from weights and constants alone (an ``Identity`` of an
    initializer, a ``Constant``, a transposed weight), from one run of those nodes."""
    nodes = [n for n in proto.graph.node if any(klass.get(o) == "const" for o in n.output if o)]
    if not nodes:
        return {}
    names = [o for n in nodes for o in n.output if o]
    g = onnx.helper.make_graph(nodes, "constants", [], [onnx.ValueInfoProto(name=o) for o in names],
                               initializer=list(proto.graph.initializer))
    m = onnx.helper.make_model(g, opset_imports=list(proto.opset_import))
    m.ir_version = proto.ir_version
    try:
        s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return {k: _readonly(v) for k, v in zip(names, s.run(names, {}))}
    except Exception:
        return {}


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _outer_names(node: Any) -> list[str]:
    """Names a node's subgraphs (If, Loop, Scan) read from the enclosing graph."""
    out: list[str] = []
    for a in node.attribute:
        for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            defined = {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                out.extend(i for i in (*n.input, *_outer_names(n)) if i and i not in defined)
                defined.update(n.output)
    return out


def _ort_error(model: OnnxModel, exc: BaseException) -> str:
    text = _short(exc)
    m = re.search(r"implementation for (\w+)\((\d+)\) node with name '([^']*)'", text)
    if m:
        return (f"{model.name}: onnxruntime has no implementation of op {m[1]!r} (version "
                f"{m[2]}, node {m[3]!r}); convlens runs ONNX models with onnxruntime's CPU "
                "kernels — replace that op, or export with another opset")
    m = re.search(r"(?:Fatal error: )?([\w.]+:)?(\w+)\((-?\d+)\) is not a registered function/op",
                  text)
    if m:
        return (f"{model.name}: op {m[2]!r}{' of domain ' + m[1][:-1] if m[1] else ''} is "
                "not an op onnxruntime knows; convlens runs standard ONNX ops with "
                "onnxruntime")
    return (f"{model.name}: onnxruntime cannot run this model ({text}); check it with "
            "onnx.checker.check_model")


# -- names ---------------------------------------------------------------------------
def _snake(s: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", s).lower()


def _scopes(nodes: list[Any]) -> dict[int, tuple[str, str, bool, tuple]]:
    """Module path, op part, whether the path is a module with children, and the module
    call, of every node the PyTorch exporters named: the dynamo exporter's
    ``pkg.torch.onnx.name_scopes`` (``['', 'layer1', 'layer1.0', 'add']``), else the
    TorchScript exporter's node name (``/layer1/layer1.0/conv1/Conv``: each scope a
    module's name, a nested one sometimes its full dotted path)."""
    out: dict[int, tuple[str, str, tuple]] = {}
    parents: set[str] = set()
    for i, node in enumerate(nodes):
        meta = next((p.value for p in node.metadata_props
                     if p.key == "pkg.torch.onnx.name_scopes"), None)
        parts: list[str] = []
        if meta:
            try:
                parts = [str(p) for p in ast.literal_eval(meta) if p]
            except (ValueError, SyntaxError):
                parts = []
        dynamo = bool(parts)
        if not parts and node.name.startswith("/"):
            parts = [p for p in node.name.split("/") if p]
        if not parts:
            continue
        path = ""
        for part in parts[:-1]:
            if path:
                parents.add(path)
            path = part if (not path or part.startswith(path + ".")) else f"{path}.{part}"
        # one call of a leaf: the dynamo exporter names each torch op of it (a Linear's
        # MatMul and Add are both "linear"); the TorchScript one names each call's scope
        out[i] = (path, parts[-1], (path, parts[-1]) if dynamo else (path,))
    return {i: (p, op, p in parents, call) for i, (p, op, call) in out.items()}


def _names(plan: _Plan, stage_nodes: list[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """A unique readable name for each (node index, output index) that is a stage: a
    leaf module's output is the module's path (``layer1.0.conv1``; called again:
    ``shared#2``), an op run by a module with children is the path and the op numbered
    within it, as PyTorch capture names them (``layer1.0.relu``, ``layer1.0.relu_1``)."""
    calls: dict[tuple, list[tuple[int, int]]] = {}
    for key in stage_nodes:
        sc = plan.scopes.get(key[0])
        if sc and sc[0] and not sc[2]:
            calls.setdefault(sc[3], []).append(key)
    call_name: dict[tuple, str] = {}
    per_path: dict[str, int] = {}
    for call in calls:
        n = per_path.get(call[0], 0) + 1
        per_path[call[0]] = n
        call_name[call] = call[0] if n == 1 else f"{call[0]}#{n}"
    names: dict[tuple[int, int], str] = {}
    used: dict[str, int] = {}
    counters: dict[tuple[str, str], int] = {}
    for key in stage_nodes:
        i, k = key
        node = plan.nodes[i]
        sc = plan.scopes.get(i)
        if sc is None:
            base = node.name or _snake(node.op_type)
        else:
            path, op, parent, call = sc
            if path and not parent:
                base = call_name[call]
                if calls[call][-1] != key:  # (an earlier op of the same call)
                    base = f"{base}.{_snake(node.op_type)}"
            else:
                op = re.sub(r"_\d+$", "", _snake(op)) or _snake(node.op_type)
                n = counters.get((path, op), 0)
                counters[(path, op)] = n + 1
                op = op if n == 0 else f"{op}_{n}"
                base = f"{path}.{op}" if path else op
        if k:
            base = f"{base}:{k}"
        n = used.get(base, 0) + 1
        used[base] = n
        names[key] = base if n == 1 else f"{base}#{n}"
    return names


# -- kinds and params ----------------------------------------------------------------
_ACT = {
    "Relu": "relu", "LeakyRelu": "leaky_relu", "PRelu": "prelu", "Elu": "elu",
    "Selu": "selu", "Celu": "celu", "Gelu": "gelu", "Sigmoid": "sigmoid",
    "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish", "Tanh": "tanh",
    "Softplus": "softplus", "Softsign": "softsign", "Mish": "mish", "Clip": "clamp",
    "ThresholdedRelu": "thresholded_relu", "Softmax": "softmax",
    "LogSoftmax": "log_softmax", "Hardmax": "hardmax", "Swish": "silu",
}
_POOL = {"MaxPool": "max", "AveragePool": "avg", "LpPool": "lp",
         "GlobalAveragePool": "avg", "GlobalMaxPool": "max", "GlobalLpPool": "lp"}
_REDUCE = {"ReduceMean": "avg", "ReduceMax": "max", "ReduceMin": "min", "ReduceSum": "sum",
           "ReduceL1": "l1", "ReduceL2": "l2", "ReduceLogSumExp": "logsumexp",
           "ReduceSumSquare": "sum_square", "ReduceProd": "prod", "ReduceLogSum": "log_sum"}
_NORM = {"BatchNormalization": "batch_norm", "InstanceNormalization": "instance_norm",
         "LayerNormalization": "layer_norm", "GroupNormalization": "group_norm",
         "LRN": "local_response_norm", "LpNormalization": "normalize",
         "MeanVarianceNormalization": "mean_variance_norm", "RMSNormalization": "rms_norm"}
_MERGE = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Concat": "cat",
          "Sum": "add", "Max": "maximum", "Min": "minimum", "Mean": "mean", "Where": "where",
          "Mod": "remainder"}
_RESHAPE = {"Reshape": "reshape", "Transpose": "permute", "Squeeze": "squeeze",
            "Unsqueeze": "unsqueeze", "Slice": "slice", "Gather": "gather", "Split": "split",
            "Pad": "pad", "Expand": "expand", "Tile": "repeat", "DepthToSpace": "pixel_shuffle",
            "SpaceToDepth": "pixel_unshuffle", "GatherElements": "gather_elements",
            "GatherND": "gather_nd"}
_WEIGHT_NAMES = {
    "Conv": ("input", "weight", "bias"), "ConvTranspose": ("input", "weight", "bias"),
    "BatchNormalization": ("input", "weight", "bias", "running_mean", "running_var"),
    "InstanceNormalization": ("input", "weight", "bias"),
    "LayerNormalization": ("input", "weight", "bias"),
    "GroupNormalization": ("input", "weight", "bias"),
    "RMSNormalization": ("input", "weight"), "PRelu": ("input", "weight"),
    "Gemm": ("input", "weight", "bias"),
}
_KEEPS_LAYOUT = {
    "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid", "HardSwish",
    "Tanh", "Softplus", "Softsign", "Mish", "Clip", "Add", "Sub", "Mul", "Div", "Pow", "Erf",
    "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "LayerNormalization", "MatMul",
    "Softmax", "Where", "Max", "Min", "Sum", "Mean", "Swish",
}


def _attrs(node: Any) -> dict[str, Any]:
    onnx = _onnx()
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _ints(v: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in v)


def _num(a: np.ndarray | None) -> float | None:
    if a is None or a.size != 1 or not np.issubdtype(a.dtype, np.number):
        return None
    return _f(a.reshape(()))


def _f(v: Any) -> float:
    """A float32 attribute as the number it was written as (``1e-05``, not
    ``9.99999974e-06``)."""
    return float(str(np.float32(v))) if np.isfinite(v) else float(v)


def _padding(at: dict[str, Any], nd: int, k: tuple[int, ...], s: tuple[int, ...],
             d: tuple[int, ...], in_hw: tuple[int, ...], out_hw: tuple[int, ...]) -> Any:
    auto = at.get("auto_pad", "NOTSET")
    if auto == "VALID":
        return "valid"
    if auto == "SAME_UPPER":
        return "same"
    if auto == "SAME_LOWER":  # the extra pixel first: explicit
        pads = []
        for i in range(nd):
            total = max((out_hw[i] - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_hw[i], 0)
            pads.append((total - total // 2, total // 2))
        return tuple(pads)
    pads = _ints(at.get("pads", (0,) * (2 * nd)))
    begin, end = pads[:nd], pads[nd:]
    return begin if begin == end else tuple(zip(begin, end))


def _describe(plan: _Plan, node: Any, val: Any, in_shape: tuple[int, ...],
              out_shape: tuple[int, ...]) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """The stage kind, typed params and weights of one node."""
    op, at = node.op_type, _attrs(node)
    ins = list(node.input)

    def const(i: int) -> np.ndarray | None:
        if i < len(ins) and ins[i] and plan.klass.get(ins[i]) == "const":
            return val(ins[i])
        return None

    weights: dict[str, np.ndarray] = {}
    names = _WEIGHT_NAMES.get(op) or _schema_inputs(plan, node)
    for i, n in enumerate(ins):
        c = const(i)
        if c is not None and np.issubdtype(c.dtype, np.floating):
            weights[names[i] if i < len(names) else f"input{i}"] = c
    nd = max(len(out_shape) - 2, 1)
    if op in ("Conv", "ConvTranspose"):
        w = val(ins[1])
        k = _ints(at.get("kernel_shape", w.shape[2:]))
        s = _ints(at.get("strides", (1,) * len(k)))
        d = _ints(at.get("dilations", (1,) * len(k)))
        groups = int(at.get("group", 1))
        p: dict[str, Any] = dict(
            kernel_size=k, stride=s, dilation=d, groups=groups,
            padding=_padding(at, len(k), k, s, d, in_shape[2:], out_shape[2:]),
            in_channels=int(w.shape[1]) * groups, out_channels=int(w.shape[0]),
            bias=len(ins) > 2 and bool(ins[2]))
        if op == "ConvTranspose":
            p.update(transposed=True, in_channels=int(w.shape[0]),
                     out_channels=int(w.shape[1]) * groups,
                     output_padding=_ints(at.get("output_padding", (0,) * len(k))))
        return "conv", p, weights
    if op in _POOL:
        p = {"mode": _POOL[op]}
        if op.startswith("Global"):
            p.update({"global": True, "adaptive": True, "output_size": (1,) * nd})
        else:
            k = _ints(at["kernel_shape"])
            s = _ints(at.get("strides", (1,) * len(k)))
            d = _ints(at.get("dilations", (1,) * len(k)))
            p.update(kernel_size=k, stride=s,
                     padding=_padding(at, len(k), k, s, d, in_shape[2:], out_shape[2:]))
            if at.get("ceil_mode"):
                p["ceil_mode"] = True
            if op == "MaxPool":
                p["dilation"] = d
            elif op == "AveragePool":
                p["count_include_pad"] = bool(at.get("count_include_pad", 0))
            if op == "LpPool":
                p["p"] = int(at.get("p", 2))
        if op in ("LpPool", "GlobalLpPool"):
            p["p"] = int(at.get("p", 2))
        return "pool", p, weights
    if op in _REDUCE:
        axes = at.get("axes")
        if axes is None and const(1) is not None:
            axes = const(1).reshape(-1).tolist()
        rank = len(in_shape)
        dims = tuple(sorted(int(a) % rank for a in axes)) if axes else tuple(range(rank))
        keep = bool(at.get("keepdims", 1))
        if rank >= 3 and dims and all(a >= 2 for a in dims):
            return "pool", {"mode": _REDUCE[op], "global": True, "dims": dims,
                            "keepdim": keep}, weights
        return "other", {"operation": _snake(op), "dims": dims, "keepdim": keep}, weights
    if op in ("Resize", "Upsample"):
        p = {"mode": "resize", "method": str(at.get("mode", "nearest")),
             "size": tuple(int(v) for v in out_shape[2:])}
        scales = const(2 if op == "Resize" and len(ins) > 2 else 1)
        if scales is not None and scales.size == len(out_shape):
            p["scale_factor"] = tuple(float(v) for v in scales.reshape(-1)[2:])
        return "pool", p, {}
    if op in _NORM:
        p = {"function": _NORM[op]}
        if "epsilon" in at:
            p["eps"] = _f(at["epsilon"])
        elif op in ("BatchNormalization", "InstanceNormalization", "LayerNormalization",
                    "GroupNormalization", "RMSNormalization"):
            p["eps"] = 1e-5
        if op == "GroupNormalization":
            p["num_groups"] = int(at["num_groups"])
        if op in ("LayerNormalization", "RMSNormalization"):
            p["axis"] = int(at.get("axis", -1))
        if op == "LRN":
            p.update(size=int(at["size"]), alpha=_f(at.get("alpha", 1e-4)),
                     beta=_f(at.get("beta", 0.75)), k=_f(at.get("bias", 1.0)))
        return "norm", p, weights
    if op in _ACT:
        p = {"function": _ACT[op]}
        if op in ("LeakyRelu",):
            p["alpha"] = _f(at.get("alpha", 0.01))
        elif op in ("Elu", "Celu", "ThresholdedRelu"):
            p["alpha"] = _f(at.get("alpha", 1.0))
        elif op == "HardSigmoid":
            p["alpha"], p["beta"] = _f(at.get("alpha", 0.2)), _f(at.get("beta", 0.5))
        elif op == "Gelu":
            p["approximate"] = str(at.get("approximate", "none"))
        elif op in ("Softmax", "LogSoftmax", "Hardmax"):
            p["dim"] = int(at.get("axis", -1 if plan.opset >= 13 else 1))
        elif op == "Clip":
            lo = at.get("min", _num(const(1)))
            hi = at.get("max", _num(const(2)))
            if lo is not None:
                p["min"] = _f(lo)
            if hi is not None:
                p["max"] = _f(hi)
            if p.get("min") == 0.0 and p.get("max") == 6.0:
                p["function"] = "relu6"
        return "activation", p, weights
    if op in _MERGE:
        p = {"operation": _MERGE[op]}
        if op == "Concat":
            p["dim"] = int(at["axis"])
        else:
            scalars = [(i, _num(const(i))) for i in range(len(ins)) if const(i) is not None]
            scalars = [(i, v) for i, v in scalars if v is not None]
            if scalars:
                p["scalar"] = scalars[0][1]
                if scalars[0][0] == 0 and op in ("Sub", "Div", "Mod"):
                    p["reflected"] = True
        return "merge", p, weights
    if op == "Gemm":
        w = val(ins[1])
        w = w if at.get("transB", 0) else w.T
        if weights.get("weight") is not None:
            weights["weight"] = _readonly(w)
        p = {"in_features": int(w.shape[1]), "out_features": int(w.shape[0]),
             "bias": len(ins) > 2 and bool(ins[2]), "operation": "linear"}
        for key in ("alpha", "beta"):
            if _f(at.get(key, 1.0)) != 1.0:
                p[key] = _f(at[key])
        return "dense", p, weights
    if op in ("MatMul", "Einsum"):
        p = {"operation": _snake(op).replace("_", "")}
        b = const(1) if op == "MatMul" else None
        if b is not None and b.ndim == 2:
            p.update(in_features=int(b.shape[0]), out_features=int(b.shape[1]), bias=False)
            weights = {"weight": _readonly(b.T)}
        return "dense", p, weights
    if op == "Flatten":
        return "flatten", {"start_dim": int(at.get("axis", 1)), "end_dim": -1}, {}
    if op in _RESHAPE:
        p = {"operation": _RESHAPE[op]}
        if op == "Reshape":
            p["target_shape"] = tuple(int(v) for v in out_shape[1:])
        elif op == "Transpose" and "perm" in at:
            p["dims"] = _ints(at["perm"])
        return "reshape", p, {}
    return "other", {"operation": _snake(op)}, weights


def _schema_inputs(plan: _Plan, node: Any) -> tuple[str, ...]:
    key = (node.domain, node.op_type)
    if key not in plan.schemas:
        try:
            s = _onnx().defs.get_schema(node.op_type, plan.opset, node.domain)
            plan.schemas[key] = tuple(i.name for i in s.inputs)
        except Exception:
            plan.schemas[key] = ()
    return plan.schemas[key]


# -- capture -------------------------------------------------------------------------
def _plan_of(model: OnnxModel) -> _Plan:
    if model._plan is None:
        model._plan = _Plan.build(model)
    return model._plan


def _run(model: OnnxModel, plan: _Plan, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every value of one pass over the batch ``x`` (one image at a time when the
    model's batch is fixed at 1)."""
    xin = x.astype(model.input_type, copy=False)
    fixed = model.input_shape[0] if model.input_shape else None
    b = x.shape[0]
    if isinstance(fixed, int) and fixed != b:
        if fixed != 1:
            raise CaptureError(f"{model.name} takes batches of exactly {fixed} images; got "
                               f"{b} — capture {fixed} images at a time")
        runs = [_run_once(model, plan, xin[i:i + 1]) for i in range(b)]
        out = dict(runs[0])
        for name, v in out.items():
            if plan.klass.get(name) == "data" and v.ndim >= 1 and v.shape[0] == 1:
                out[name] = np.concatenate([r[name] for r in runs], axis=0)
        return out
    return _run_once(model, plan, xin)


def _run_once(model: OnnxModel, plan: _Plan, x: np.ndarray) -> dict[str, np.ndarray]:
    try:
        values = plan.session.run(plan.outputs, {model.input_name: x})
        final = plan.plain.run(plan.graph_outputs, {model.input_name: x})
    except Exception as exc:
        msg = _short(exc)
        msg = msg.split(" : ", 3)[-1] if "ONNXRuntimeError" in msg else msg
        raise CaptureError(
            f"{model.name} failed on an input of shape {tuple(x.shape)} (B, C, H, W): "
            f"{msg}; check the image size and channels the model expects "
            f"(input {model.input_name!r}: {tuple(model.input_shape)})") from None
    out = dict(zip(plan.outputs, values))
    # the graph's outputs as a plain session computes them (it may fuse ops, Conv + Add +
    # Relu, that the instrumented one cannot: a few ulps apart)
    out.update(zip(plan.graph_outputs, final))
    out[model.input_name] = x
    return out


def capture_onnx(model: OnnxModel, x: np.ndarray, keep, options: CaptureOptions | None = None
                 ) -> tuple[list[Stage], np.ndarray, str, list[str]]:
    """Run ``model`` once on the channels-first batch ``x``; every value computed from
    the input with a batch axis is a stage (see the module docs)."""
    opts = options or CaptureOptions()
    plan = _plan_of(model)
    values = _run(model, plan, np.ascontiguousarray(x, dtype=np.float32))
    b = x.shape[0]
    for name, v in values.items():  # constants computed by nodes: the same every time
        if plan.klass.get(name) == "const" and name not in plan.consts:
            plan.consts[name] = _readonly(v)

    def val(name: str) -> np.ndarray:
        v = plan.consts.get(name)
        return v if v is not None else values[name]

    # which node outputs are stages, which pass through, which are not stages
    stage_keys: list[tuple[int, int]] = []
    alias: dict[str, str] = {}  # a no-op's output -> the value it passes on
    skipped: dict[str, list[str]] = {"nobatch": [], "shape": [], "const": []}
    for i, node in enumerate(plan.nodes):
        for k, o in enumerate(node.output):
            if not o:
                continue
            cls = plan.klass.get(o)
            label = node.name or o
            if cls != "data":
                skipped[cls or "const"].append(label)
                continue
            v = values.get(o)
            if k == 0 and node.input and node.input[0] and _noop(node, values):
                alias[o] = node.input[0]
                continue
            if k > 0 and node.op_type in _NOOPS:
                continue  # (a dropout's mask)
            if v is None or v.ndim == 0 or v.shape[0] != b:
                skipped["nobatch"].append(label)
                continue
            stage_keys.append((i, k))
    names = _names(plan, stage_keys)

    index: dict[str, int] = {model.input_name: -1}
    producer = {o: j for j, n in enumerate(plan.nodes) for o in n.output if o}
    layout: dict[str, bool] = {}  # value -> computed channels-last
    stages: list[Stage] = []
    for i, k in stage_keys:
        node = plan.nodes[i]
        o = node.output[k]
        srcs = []
        for n in (*node.input, *_outer_names(node)):
            while n in alias:
                n = alias[n]
            if n and n in index:
                srcs.append(index[n])
        data_ins = [n for n in node.input if n and plan.klass.get(n) == "data"]
        data_ins = [_resolve(alias, n) for n in data_ins]
        v = values[o]
        in_shape = tuple(values[data_ins[0]].shape) if data_ins and data_ins[0] in values \
            else tuple(v.shape)
        kind, params, weights = _describe(plan, node, val, in_shape, tuple(v.shape))
        if kind == "merge" and node.op_type == "Add":  # a Linear's bias, after its MatMul
            kind, params, weights = _linear_bias(plan, i, data_ins, producer, val, kind,
                                                 params, weights)
        last = _channels_last(node, data_ins, layout, values, v)
        if last:
            layout[o] = True
        name = names[(i, k)]
        if keep is not None and not keep(name, kind):
            continue
        out = v if v.dtype == np.float32 else v.astype(np.float32)
        if last:
            out = np.ascontiguousarray(np.moveaxis(out, 3, 1))
            params = {**params, "layout": "channels_last"}
        index[o] = len(stages)
        stages.append(Stage(index=len(stages), name=name, kind=kind, op=node.op_type,
                            output=out, params=params, weights=weights,
                            source=srcs[0] if srcs else None, sources=tuple(srcs)))
    out_name = plan.graph_outputs[0] if plan.graph_outputs else None
    final = values.get(_resolve(alias, out_name)) if out_name else None
    if final is None:
        raise ModelError(f"{model.name}: the graph has no output convlens can read")
    final = final.astype(np.float32, copy=False)
    return finish_stages(stages, opts, opts.sink()), final, model.name, _notice(skipped)


def _linear_bias(plan: _Plan, i: int, data_ins: list[str], producer: dict[str, int], val: Any,
                 kind: str, params: dict, weights: dict) -> tuple[str, dict, dict]:
    """An ``Add`` of a constant bias to a ``MatMul`` of the same module call (how an
    ``nn.Linear`` on more than 2 axes is exported) is that Linear: kind dense."""
    sc = plan.scopes.get(i)
    j = producer.get(data_ins[0]) if len(data_ins) == 1 else None
    if sc is None or j is None or plan.nodes[j].op_type != "MatMul" \
            or plan.scopes.get(j, (None,) * 4)[3] != sc[3] or len(weights) != 1:
        return kind, params, weights
    mm = plan.nodes[j]
    b = plan.consts.get(mm.input[1]) if len(mm.input) > 1 else None
    if b is None or b.ndim != 2:
        return kind, params, weights
    bias = next(iter(weights.values()))
    return "dense", {"in_features": int(b.shape[0]), "out_features": int(b.shape[1]),
                     "bias": True, "operation": "linear"}, \
        {"weight": _readonly(b.T), "bias": bias}


def _resolve(alias: dict[str, str], n: str) -> str:
    while n in alias:
        n = alias[n]
    return n


def _noop(node: Any, values: dict[str, np.ndarray]) -> bool:
    """A node whose first output is its first input's values (not a stage)."""
    if node.op_type in _NOOPS:
        return node.op_type == "Identity" or len(node.input) < 3 or not node.input[2] \
            or not bool(np.asarray(values.get(node.input[2], False)).any())
    if node.op_type == "Cast":
        a, b = values.get(node.input[0]), values.get(node.output[0])
        return a is not None and b is not None and a.dtype == b.dtype
    return False


def _channels_last(node: Any, data_ins: list[str], layout: dict[str, bool],
                   values: dict[str, np.ndarray], v: np.ndarray) -> bool:
    """Is this 4-D value computed channels-last (N, H, W, C)?"""
    if v.ndim != 4 or not data_ins:
        return False
    if node.op_type == "Transpose":
        perm = next((tuple(a.ints) for a in node.attribute if a.name == "perm"), ())
        was = layout.get(data_ins[0], False)
        return (perm == (0, 2, 3, 1) and not was) or (was and perm == (0, 1, 2, 3))
    if node.op_type in _KEEPS_LAYOUT:
        four = [n for n in data_ins if values[n].ndim == 4]
        return bool(four) and all(layout.get(n, False) for n in four)
    return False


def _notice(skipped: dict[str, list[str]]) -> list[str]:
    """One line naming what the pass computed that is not a stage."""
    parts = []
    for key, what in (("nobatch", "without a batch axis"),
                      ("shape", "size computations (Shape and what is computed from it)"),
                      ("const", "from weights and constants alone")):
        names = skipped[key]
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            parts.append(f"{len(names)} {what}: {shown}")
    if not parts:
        return []
    total = sum(len(v) for v in skipped.values())
    return [f"{total} computed value(s) of the ONNX graph are not stages; " + "; ".join(parts)]
