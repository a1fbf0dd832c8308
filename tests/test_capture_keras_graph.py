"""Keras capture as a graph: every layer call and every ``keras.ops`` call is a stage with
its exact output and every source, in functional and subclassed models.

Each architecture is written once as a block function ``(layers, x, tap) -> y``; the same
code builds the functional model (on symbolic inputs), is the subclassed model's
``call()``, and is the hand-written reference forward (run eagerly, step by step, with the
model's own layers, ``tap`` noting every intermediate value and each merge's operands).
"""
import numpy as np
import pytest

import convlens

keras = pytest.importorskip("keras")
L, ops = keras.layers, keras.ops
TORCH = keras.backend.backend() == "torch"


def cf(t):
    """A tensor as convlens stores it: NumPy float32, channels-first."""
    a = np.asarray(ops.convert_to_numpy(t), dtype=np.float32)
    return np.moveaxis(a, -1, 1) if a.ndim in (3, 4, 5) else a


class Tap:
    """Notes every intermediate value of the reference forward (eager only)."""

    def __init__(self):
        self.values, self.merges = [], []

    def __call__(self, value, *operands):
        self.values.append(value)
        if operands:
            self.merges.append((value, operands))
        return value


def no_tap(value, *operands):
    return value


class LayerScale(L.Layer):
    """ConvNeXt's layer scale: a learned per-channel multiply (a leaf layer of our own)."""

    def build(self, shape):
        self.gamma = self.add_weight(shape=(shape[-1],), initializer="ones", name="gamma")
        self.gamma.assign(np.linspace(0.5, 1.5, shape[-1]).astype(np.float32))

    def call(self, x):
        return x * self.gamma


# -- the architectures: (layers, x, tap) -> y -------------------------------------------
def residual_layers():
    return dict(stem=L.Conv2D(6, 3, padding="same", name="stem"),
                c1=L.Conv2D(6, 3, padding="same", name="c1"),
                bn=L.BatchNormalization(name="bn"),
                c2=L.Conv2D(6, 3, padding="same", name="c2"),
                add=L.Add(name="add_layer"))


def residual(l, x, t):
    x = t(l["stem"](x))
    y = t(l["bn"](t(l["c1"](x))))
    y = t(ops.relu(y))
    y = t(l["c2"](y))
    s = t(ops.add(x, y), x, y)                   # functional add ...
    s = t(ops.relu(s))
    return t(l["add"]([s, x]), s, x)             # ... and an Add layer


def dense_layers():
    return dict(c0=L.Conv2D(4, 3, padding="same", name="c0"),
                c1=L.Conv2D(3, 3, padding="same", name="c1"),
                c2=L.Conv2D(3, 3, padding="same", name="c2"),
                cat=L.Concatenate(name="cat_layer"))


def dense(l, x, t):
    x = t(l["c0"](x))
    y = t(ops.relu(t(l["c1"](x))))
    x2 = t(ops.concatenate([x, y], axis=-1), x, y)
    z = t(ops.relu(t(l["c2"](x2))))
    return t(l["cat"]([x, y, z]), x, y, z)


def inception_layers():
    return dict(b1=L.Conv2D(2, 1, name="b1"),
                b3r=L.Conv2D(2, 1, name="b3r"), b3=L.Conv2D(3, 3, padding="same", name="b3"),
                b5r=L.Conv2D(2, 1, name="b5r"), b5=L.Conv2D(3, 5, padding="same", name="b5"),
                bp=L.MaxPooling2D(3, strides=1, padding="same", name="bp"),
                bpc=L.Conv2D(2, 1, name="bpc"), cat=L.Concatenate(name="mixed"))


def inception(l, x, t):
    a = t(l["b1"](x))
    b = t(l["b3"](t(l["b3r"](x))))
    c = t(l["b5"](t(l["b5r"](x))))
    d = t(l["bpc"](t(l["bp"](x))))
    return t(l["cat"]([a, b, c, d]), a, b, c, d)


def se_layers():
    return dict(c=L.Conv2D(8, 3, padding="same", name="c"),
                gap=L.GlobalAveragePooling2D(keepdims=True, name="gap"),
                fc1=L.Conv2D(2, 1, name="fc1"), fc2=L.Conv2D(8, 1, name="fc2"),
                mul=L.Multiply(name="scale"))


def se(l, x, t):
    x = t(l["c"](x))
    s = t(ops.mean(x, axis=(1, 2), keepdims=True))      # squeeze (keras.ops) ...
    s = t(ops.sigmoid(t(l["fc2"](t(ops.relu(t(l["fc1"](s))))))))
    y = t(ops.multiply(x, s), x, s)                      # ... excite (keras.ops)
    g = t(l["gap"](y))                                   # squeeze (layer) ...
    return t(l["mul"]([y, t(ops.sigmoid(g))]))           # ... excite (layer)


def convnext_layers():
    return dict(stem=L.Conv2D(8, 2, strides=2, name="stem"),
                dw=L.DepthwiseConv2D(7, padding="same", name="dw"),
                ln=L.LayerNormalization(epsilon=1e-6, name="ln"),
                pw1=L.Dense(32, name="pw1"), pw2=L.Dense(8, name="pw2"),
                ls=LayerScale(name="layer_scale"))


def convnext(l, x, t):
    x = t(l["stem"](x))
    y = t(l["ln"](t(l["dw"](x))))
    y = t(ops.gelu(t(l["pw1"](y))))
    y = t(l["ls"](t(l["pw2"](y))))
    return t(ops.add(x, y), x, y)


def mbv3_layers():
    return dict(stem=L.Conv2D(8, 3, padding="same", name="stem"),
                exp=L.Conv2D(16, 1, name="expand"),
                dw=L.DepthwiseConv2D(3, padding="same", name="dw"),
                gap=L.GlobalAveragePooling2D(keepdims=True, name="se_pool"),
                r=L.Conv2D(4, 1, activation="relu", name="se_reduce"),   # fused activation
                e=L.Conv2D(16, 1, name="se_expand"),
                proj=L.Conv2D(8, 1, name="project"))


def mbv3(l, x, t):
    x = t(ops.hard_swish(t(l["stem"](x))))
    y = t(ops.hard_swish(t(l["exp"](x))))
    y = t(ops.hard_swish(t(l["dw"](y))))
    s = t(ops.hard_sigmoid(t(l["e"](t(l["r"](t(l["gap"](y))))))))
    y = t(ops.multiply(y, s), y, s)
    y = t(l["proj"](y))
    return t(ops.add(x, y), x, y)


def twice_layers():
    return dict(c=L.Conv2D(3, 3, padding="same", name="shared"),
                d=L.Conv2D(3, 1, name="d"))


def twice(l, x, t):
    a = t(ops.relu(t(l["c"](x))))           # one conv, called twice
    b = t(l["c"](t(l["d"](a))))
    return t(ops.subtract(b, a), b, a)


ARCHS = {"residual": (residual_layers, residual), "dense": (dense_layers, dense),
         "inception": (inception_layers, inception), "se": (se_layers, se),
         "convnext": (convnext_layers, convnext), "mbv3": (mbv3_layers, mbv3),
         "twice": (twice_layers, twice)}
SIZE = 12


def functional(arch):
    make, block = ARCHS[arch]
    layers = make()
    inp = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inp, block(layers, inp, no_tap), name=f"{arch}_functional"), layers


def subclassed(arch):
    make, block = ARCHS[arch]

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name=f"{arch}_subclassed")
            self.parts = make()

        def call(self, x):
            return block(self.parts, x, no_tap)

    model = Net()
    model(np.zeros((1, SIZE, SIZE, 3), np.float32))  # built
    return model, model.parts


def _image():
    rng = np.random.default_rng(0)
    return rng.random((SIZE, SIZE, 3), dtype=np.float32)


def _bn_stats(layers):
    for layer in layers.values():  # BatchNorm with statistics that do something
        if isinstance(layer, L.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(np.linspace(-0.2, 0.3, c).astype(np.float32))
            layer.moving_variance.assign(np.linspace(0.5, 2.0, c).astype(np.float32))


def _check(model, layers, arch):
    _bn_stats(layers)
    before = [np.array(w) for w in model.get_weights()]
    trace = convlens.capture(model, _image())
    # the reference forward, by hand, with the model's own layers
    x = ops.convert_to_tensor(np.transpose(trace.model_input, (0, 2, 3, 1)))
    tap = Tap()
    expected = ARCHS[arch][1](layers, x, tap)
    outs = [s.output for s in trace]

    def find(value, kinds=None):
        v = cf(value) if not isinstance(value, np.ndarray) else value
        hits = [s for s, o in zip(trace, outs)
                if o.shape == v.shape and np.array_equal(o, v)
                and (kinds is None or s.kind in kinds)]
        assert hits, f"{arch}: no stage equals a reference value of shape {v.shape}"
        return hits

    for value in tap.values:                      # every intermediate value is a stage
        find(value)
    for value, operands in tap.merges:            # merges list every source, in order
        want = [cf(o) for o in operands]
        hits = [s for s in find(value, ("merge",)) if len(s.sources) == len(want)
                and all(np.array_equal(trace.model_input if i < 0 else outs[i], w)
                        for i, w in zip(s.sources, want))]
        assert hits, (f"{arch}: merge of {len(want)} inputs: sources "
                      f"{[s.sources for s in find(value)]} do not match its operands")
        assert hits[0].source == hits[0].sources[0]
    # the last stage is the model's output; the model is unchanged
    np.testing.assert_array_equal(trace.output, cf(model(x, training=False)))
    np.testing.assert_array_equal(trace.output, cf(expected))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    for layer in [model, *model._flatten_layers()]:
        assert not {"call", "_run_through_graph"} & layer.__dict__.keys()
    # sources only point backwards; names unique and stable
    assert all(-1 <= i < s.index for s in trace for i in s.sources)
    assert not trace.meta.get("notices"), trace.meta
    again = convlens.capture(model, _image())
    assert again.names == trace.names and [s.sources for s in again] == [s.sources for s in trace]
    return trace


@pytest.mark.parametrize("arch", list(ARCHS))
def test_functional_graph_every_value_and_source(arch):
    model, layers = functional(arch)
    trace = _check(model, layers, arch)
    op_stages = [s for s in trace if s.op in ("Add", "Relu", "Concatenate", "Mean", "Sigmoid",
                                              "Multiply", "Gelu", "HardSilu", "HardSigmoid",
                                              "Subtract")]
    assert op_stages  # keras.ops calls are stages


@pytest.mark.skipif(not TORCH, reason="ops in call() are recorded on the torch backend")
@pytest.mark.parametrize("arch", list(ARCHS))
def test_subclassed_every_value_and_source(arch):
    model, layers = subclassed(arch)
    _check(model, layers, arch)


def test_kinds_come_from_the_op():
    model, layers = functional("se")
    trace = convlens.capture(model, _image())
    kinds = {s.op: s.kind for s in trace}
    assert kinds["Mean"] == "pool" and kinds["Sigmoid"] == "activation"
    assert kinds["Multiply"] == "merge" and kinds["Conv2D"] == "conv"
    mean = next(s for s in trace if s.op == "Mean")
    assert mean.params["mode"] == "avg" and mean.shape == (8, 1, 1)
    assert trace["c"].params["in_channels"] == 3 and trace["fc1"].params["in_channels"] == 8
    mul = next(s for s in trace if s.op == "Multiply")
    assert mul.params["sources"] == mul.sources


def test_fused_activation_is_two_stages_in_a_graph():
    model, layers = functional("mbv3")
    trace = convlens.capture(model, _image())
    i = trace.names.index("se_reduce")
    assert trace.names[i + 1] == "se_reduce.relu"
    assert trace[i + 1].sources == (i,) and trace[i].kind == "conv"
    np.testing.assert_array_equal(trace[i + 1].output, np.maximum(trace[i].output, 0))


def test_layer_called_twice_gets_two_stages_with_their_own_sources():
    model, layers = functional("twice")
    trace = convlens.capture(model, _image())
    a, b = trace["shared"], trace["shared#2"]
    assert a.sources == (-1,) and trace[b.source].name == "d"


def test_selection_keeps_known_sources_only():
    model, layers = functional("residual")
    trace = convlens.capture(model, _image(), layers=["merge", "conv"])
    assert {s.kind for s in trace} <= {"merge", "conv", "output"}
    assert all(i < s.index for s in trace for i in s.sources)


@pytest.mark.skipif(not TORCH, reason="torch backend")
def test_subclassed_ops_named_after_the_custom_layer_and_inplace_kept_exact():
    import torch

    class Block(L.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.conv = L.Conv2D(3, 3, padding="same", name="inner_conv")

        def call(self, x):
            y = self.conv(x)
            z = ops.relu(y)
            z += x                     # an in-place add on torch tensors
            return z * 0.5

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.block = Block(name="block")

        def call(self, x):
            return ops.sigmoid(self.block(x))

    model = Net()
    model(np.zeros((1, SIZE, SIZE, 3), np.float32))
    trace = convlens.capture(model, _image())
    assert trace.names[0] == "inner_conv"
    assert any(n.startswith("block.") for n in trace.names), trace.names
    x = torch.from_numpy(np.transpose(trace.model_input, (0, 2, 3, 1)).copy())
    y = model.block.conv(x)
    relu = cf(ops.relu(y))
    find = [s for s in trace if s.output.shape == relu.shape and np.array_equal(s.output, relu)]
    assert find, "the relu before the in-place add keeps its own value"
    np.testing.assert_array_equal(trace.output, cf(model(x)))
    assert not trace.meta.get("notices")


def test_unrecordable_work_is_named_in_one_notice(monkeypatch):
    """Where ops in call() cannot be recorded, the custom layer's output is a stage and one
    notice names it (simulated on torch by switching the op recorder off)."""
    from convlens.capture import keras_pass

    class Block(L.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.conv = L.Conv2D(3, 3, padding="same", name="bconv")

        def call(self, x):
            return ops.relu(self.conv(x)) * 2.0

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net2")
            self.block = Block(name="blk")
            self.head = L.Conv2D(2, 1, name="head")

        def call(self, x):
            return self.head(self.block(x) - 1.0)

    model = Net()
    model(np.zeros((1, SIZE, SIZE, 3), np.float32))
    monkeypatch.setattr(keras_pass.KerasPass, "torch_mode",
                        lambda self: __import__("contextlib").nullcontext())
    trace = convlens.capture(model, _image())
    notices = trace.meta["notices"]
    assert len(notices) == 1 and "blk" in notices[0] and "net2" in notices[0]
    assert "blk" in trace.names and trace["blk"].kind == "other"
    assert trace["blk"].sources == (-1,)             # fed by what went into the block
    assert trace["head"].sources == ()  # its input came from net2's unrecorded "- 1.0"


def test_every_stage_fills_its_kinds_schema():
    from convlens.params import problems

    for arch in ARCHS:
        for make in (functional, subclassed) if TORCH else (functional,):
            model, _ = make(arch)
            for s in convlens.capture(model, _image()):
                assert problems(s.kind, s.params) == [], (arch, make.__name__, s.name, s.params)


@pytest.mark.parametrize("make", [functional, subclassed] if TORCH else [functional])
def test_merge_params_say_the_operation_and_channels_first_dim(make):
    model, _ = make("dense")
    trace = convlens.capture(model, _image())
    cats = [s for s in trace if s.kind == "merge"]
    assert [s.params["operation"] for s in cats] == ["cat", "cat"]
    assert all(s.params["dim"] == 1 for s in cats)          # channels, channels-first
    model, _ = make("mbv3")
    trace = convlens.capture(model, _image())
    ops_ = [s.params["operation"] for s in trace if s.kind == "merge"]
    assert ops_ == ["mul", "add"]
    acts = {s.params["function"] for s in trace if s.kind == "activation"}
    assert {"hardswish", "hardsigmoid", "relu"} <= acts


def test_a_failing_pass_leaves_nothing_on_the_model():
    from convlens.errors import CaptureError

    model, layers = functional("residual")
    with pytest.raises(CaptureError):
        convlens.capture(model, np.zeros((SIZE + 1, SIZE, 3), np.float32),
                         preprocess=convlens.Preprocess())
    for layer in [model, *model._flatten_layers()]:
        assert not {"call", "_run_through_graph"} & layer.__dict__.keys()
    assert len(convlens.capture(model, _image())) > 0
