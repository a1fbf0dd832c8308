"""The Trace is the graph the network computed (PyTorch): every op between modules is a
stage, exact, with every source.

Each model below has a hand-written reference forward (``ref``) made of plain functional
calls on the modules' own weights: the stage names it lists are exactly the Trace's, in
order, and every value is equal to the bit.  Merges list all their sources; the last
stage is the model's output; the model comes back unchanged.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convlens

torch.manual_seed(0)


def _bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return bn.eval()


def _bnf(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


class Residual(nn.Module):
    """ResNet basic block written the way torchvision does (functional add + F.relu)."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), _bn(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), _bn(c)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(x + y)


class ResNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.layer1 = nn.Sequential(Residual(), Residual())
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.layer1(torch.relu(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def ref(self, x):
        r = {}
        r["stem"] = F.conv2d(x, self.stem.weight, self.stem.bias, 1, 1)
        r["relu"] = h = F.relu(r["stem"])
        for i, b in enumerate(self.layer1):
            p = f"layer1.{i}"
            r[f"{p}.conv1"] = F.conv2d(h, b.conv1.weight, None, 1, 1)
            r[f"{p}.bn1"] = _bnf(r[f"{p}.conv1"], b.bn1)
            r[f"{p}.relu"] = F.relu(r[f"{p}.bn1"])
            r[f"{p}.conv2"] = F.conv2d(r[f"{p}.relu"], b.conv2.weight, None, 1, 1)
            r[f"{p}.bn2"] = _bnf(r[f"{p}.conv2"], b.bn2)
            r[f"{p}.add"] = h + r[f"{p}.bn2"]
            r[f"{p}.relu_1"] = h = F.relu(r[f"{p}.add"])
        r["adaptive_avg_pool2d"] = F.adaptive_avg_pool2d(h, 1)
        r["flatten"] = torch.flatten(r["adaptive_avg_pool2d"], 1)
        r["fc"] = F.linear(r["flatten"], self.fc.weight, self.fc.bias)
        return r

    merges = {"layer1.0.add": ("relu", "layer1.0.bn2"),
              "layer1.1.add": ("layer1.0.relu_1", "layer1.1.bn2")}


class DenseBlock(nn.Module):
    """DenseNet: every layer reads the concatenation of all before it."""

    def __init__(self, c: int = 3, g: int = 2, n: int = 3):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(_bn(c + i * g), nn.ReLU(), nn.Conv2d(c + i * g, g, 3, padding=1))
            for i in range(n))

    def forward(self, x):
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)

    def ref(self, x):
        r, feats, names = {}, [x], ["input"]
        for i, layer in enumerate(self.layers):
            cat = "cat" if i == 0 else f"cat_{i}"
            r[cat] = torch.cat(feats, 1)
            r[f"layers.{i}.0"] = _bnf(r[cat], layer[0])
            r[f"layers.{i}.1"] = F.relu(r[f"layers.{i}.0"])
            r[f"layers.{i}.2"] = F.conv2d(r[f"layers.{i}.1"], layer[2].weight, layer[2].bias, 1, 1)
            feats.append(r[f"layers.{i}.2"])
        r[f"cat_{len(self.layers)}"] = torch.cat(feats, 1)
        return r

    merges = {"cat": ("input",), "cat_1": ("input", "layers.0.2"),
              "cat_2": ("input", "layers.0.2", "layers.1.2"),
              "cat_3": ("input", "layers.0.2", "layers.1.2", "layers.2.2")}


class Inception(nn.Module):
    """Four branches concatenated."""

    def __init__(self):
        super().__init__()
        self.b1 = nn.Conv2d(3, 2, 1)
        self.b2 = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.Conv2d(2, 3, 3, padding=1))
        self.b3 = nn.Sequential(nn.Conv2d(3, 1, 1), nn.ReLU(), nn.Conv2d(1, 2, 5, padding=2))
        self.b4 = nn.Conv2d(3, 1, 1)

    def forward(self, x):
        p = F.max_pool2d(x, 3, 1, 1)
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), F.relu(self.b4(p))], 1)

    def ref(self, x):
        r = {}
        r["max_pool2d"] = p = F.max_pool2d(x, 3, 1, 1)
        r["b1"] = F.conv2d(x, self.b1.weight, self.b1.bias)
        r["b2.0"] = F.conv2d(x, self.b2[0].weight, self.b2[0].bias)
        r["b2.1"] = F.relu(r["b2.0"])
        r["b2.2"] = F.conv2d(r["b2.1"], self.b2[2].weight, self.b2[2].bias, 1, 1)
        r["b3.0"] = F.conv2d(x, self.b3[0].weight, self.b3[0].bias)
        r["b3.1"] = F.relu(r["b3.0"])
        r["b3.2"] = F.conv2d(r["b3.1"], self.b3[2].weight, self.b3[2].bias, 1, 2)
        r["b4"] = F.conv2d(p, self.b4.weight, self.b4.bias)
        r["relu"] = F.relu(r["b4"])
        r["cat"] = torch.cat([r["b1"], r["b2.2"], r["b3.2"], r["relu"]], 1)
        return r

    merges = {"cat": ("b1", "b2.2", "b3.2", "relu")}


class SE(nn.Module):
    """Squeeze-excitation: mean, two 1x1 convs, sigmoid, multiply."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.reduce, self.expand = nn.Conv2d(c, 2, 1), nn.Conv2d(2, c, 1)

    def forward(self, x):
        x = self.conv(x)
        s = x.mean((2, 3), keepdim=True)
        s = torch.sigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s

    def ref(self, x):
        r = {}
        r["conv"] = x = F.conv2d(x, self.conv.weight, self.conv.bias, 1, 1)
        r["mean"] = x.mean((2, 3), keepdim=True)
        r["reduce"] = F.conv2d(r["mean"], self.reduce.weight, self.reduce.bias)
        r["relu"] = F.relu(r["reduce"])
        r["expand"] = F.conv2d(r["relu"], self.expand.weight, self.expand.bias)
        r["sigmoid"] = torch.sigmoid(r["expand"])
        r["mul"] = x * r["sigmoid"]
        return r

    merges = {"mul": ("conv", "sigmoid")}


class ConvNeXtBlock(nn.Module):
    """As the ConvNeXt authors write it: depthwise conv, permute to channels-last, layer
    norm, pointwise Linear, GELU, Linear, layer scale ``gamma * x``, permute back, add."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.pwconv1, self.act, self.pwconv2 = nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.linspace(0.5, 1.5, c))

    def forward(self, x):
        inp = x
        x = self.dwconv(x).permute(0, 2, 3, 1)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        x = self.gamma * x
        return inp + x.permute(0, 3, 1, 2)


class ConvNeXtish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 2, stride=2)
        self.block = ConvNeXtBlock()

    def forward(self, x):
        return self.block(self.stem(x))

    def ref(self, x):
        b, r = self.block, {}
        r["stem"] = x = F.conv2d(x, self.stem.weight, self.stem.bias, 2)
        r["block.dwconv"] = F.conv2d(x, b.dwconv.weight, b.dwconv.bias, 1, 3, 1, 4)
        r["block.permute"] = r["block.dwconv"].permute(0, 2, 3, 1)
        r["block.norm"] = F.layer_norm(r["block.permute"], (4,), b.norm.weight, b.norm.bias, 1e-6)
        r["block.pwconv1"] = F.linear(r["block.norm"], b.pwconv1.weight, b.pwconv1.bias)
        r["block.act"] = F.gelu(r["block.pwconv1"])
        r["block.pwconv2"] = F.linear(r["block.act"], b.pwconv2.weight, b.pwconv2.bias)
        r["block.mul"] = b.gamma * r["block.pwconv2"]
        r["block.permute_1"] = r["block.mul"].permute(0, 3, 1, 2)
        r["block.add"] = x + r["block.permute_1"]
        return r

    merges = {"block.mul": ("block.pwconv2",), "block.add": ("stem", "block.permute_1")}


class MobileV3(nn.Module):
    """MobileNetV3-style: hardswish, depthwise conv, SE with hardsigmoid, residual add."""

    def __init__(self):
        super().__init__()
        self.expand = nn.Conv2d(3, 6, 1)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.fc1, self.fc2 = nn.Conv2d(6, 2, 1), nn.Conv2d(2, 6, 1)
        self.project = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        y = F.hardswish(self.expand(x))
        y = F.hardswish(self.dw(y))
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(y, 1)))))
        return self.project(y * s) + x

    def ref(self, x):
        r = {}
        r["expand"] = F.conv2d(x, self.expand.weight, self.expand.bias)
        r["hardswish"] = F.hardswish(r["expand"])
        r["dw"] = F.conv2d(r["hardswish"], self.dw.weight, self.dw.bias, 1, 1, 1, 6)
        r["hardswish_1"] = F.hardswish(r["dw"])
        r["adaptive_avg_pool2d"] = F.adaptive_avg_pool2d(r["hardswish_1"], 1)
        r["fc1"] = F.conv2d(r["adaptive_avg_pool2d"], self.fc1.weight, self.fc1.bias)
        r["relu"] = F.relu(r["fc1"])
        r["fc2"] = F.conv2d(r["relu"], self.fc2.weight, self.fc2.bias)
        r["hardsigmoid"] = F.hardsigmoid(r["fc2"])
        r["mul"] = r["hardswish_1"] * r["hardsigmoid"]
        r["project"] = F.conv2d(r["mul"], self.project.weight, self.project.bias)
        r["add"] = r["project"] + x
        return r

    merges = {"mul": ("hardswish_1", "hardsigmoid"), "add": ("project", "input")}


class InplaceTwice(nn.Module):
    """An in-place ``+=`` and ``relu_`` on a module's output, and one module called twice."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.shared = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        y = self.conv(x)
        y += x
        y.relu_()
        return self.shared(self.shared(y))

    def ref(self, x):
        r = {}
        r["conv"] = F.conv2d(x, self.conv.weight, self.conv.bias, 1, 1)
        r["add"] = r["conv"] + x
        r["relu"] = F.relu(r["add"])
        r["shared"] = F.conv2d(r["relu"], self.shared.weight, self.shared.bias)
        r["shared#2"] = F.conv2d(r["shared"], self.shared.weight, self.shared.bias)
        return r

    merges = {"add": ("conv", "input")}


MODELS = [ResNetish, DenseBlock, Inception, SE, ConvNeXtish, MobileV3, InplaceTwice]


def _image(size: int = 12) -> np.ndarray:
    return np.random.default_rng(3).random((size, size, 3), dtype=np.float32)


@pytest.mark.parametrize("make", MODELS, ids=lambda m: m.__name__)
def test_every_value_of_a_hand_written_forward_is_a_stage(make):
    torch.manual_seed(1)
    model = make().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace = convlens.capture(model, _image())
    x = torch.from_numpy(trace.model_input)
    with torch.no_grad():
        ref = model.ref(x.clone())
        out = model(x.clone())
    assert trace.names == list(ref), trace.names
    for name, want in ref.items():
        got = trace[name].output
        if trace[name].params.get("layout") == "channels_last":  # shown channels-first
            got = np.moveaxis(got, 1, 3)
        np.testing.assert_array_equal(got, want.numpy(), err_msg=name)
    np.testing.assert_array_equal(trace.output, out.numpy())  # the last stage: the output
    index = {s.name: s.index for s in trace}
    index["input"] = -1
    for name, srcs in model.merges.items():
        assert trace[name].kind == "merge", name
        assert trace[name].sources == tuple(index[s] for s in srcs), name
    for s in trace:  # every stage but the first reads something earlier
        assert s.sources and all(-1 <= i < s.index for i in s.sources), s.name
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert torch._C._len_torch_function_stack() == 0


def test_kinds_come_from_the_op_and_params_are_typed():
    torch.manual_seed(1)
    t = convlens.capture(ResNetish().eval(), _image())
    assert t["layer1.0.add"].params == {"operation": "add"}
    assert t["layer1.0.relu_1"].kind == "activation"
    assert t["layer1.0.relu_1"].params == {"function": "relu"}
    assert t["adaptive_avg_pool2d"].params == {"mode": "avg", "adaptive": True,
                                               "output_size": (1, 1), "global": True}
    assert t["flatten"].kind == "flatten"
    c = convlens.capture(DenseBlock().eval(), _image())
    assert c["cat_2"].params == {"operation": "cat", "dim": 1}
    assert c["cat_2"].channels == 7
    n = convlens.capture(ConvNeXtish().eval(), _image())
    assert n["block.permute"].kind == "reshape" and n["block.norm"].kind == "norm"
    # the channels-last stretch (permute .. layer scale) is shown channels-first, and says so
    last = [s.name for s in n if s.params.get("layout") == "channels_last"]
    assert last == ["block.permute", "block.norm", "block.pwconv1", "block.act",
                    "block.pwconv2", "block.mul"]
    assert n["block.pwconv1"].shape == (16, 6, 6) and n["block.permute_1"].shape == (4, 6, 6)
    np.testing.assert_array_equal(n["block.permute"].output, n["block.dwconv"].output)
    # the layer scale is an operand that is not a stage: kept as the stage's weight
    np.testing.assert_array_equal(n["block.mul"].weights["operand0"],
                                  torch.linspace(0.5, 1.5, 4).numpy())


def test_graph_is_saved_and_loaded(tmp_path):
    torch.manual_seed(1)
    t = convlens.capture(Inception().eval(), _image())
    back = convlens.Trace.load(t.save(tmp_path / "t.npz"))
    assert back.equals(t)
    assert back["cat"].sources == t["cat"].sources and len(back["cat"].sources) == 4


class Functional(nn.Module):
    """Data-dependent control flow, a custom autograd Function, an op on weights only."""

    class Double(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        w = self.conv.weight * 1.0  # weights only: not a stage
        y = F.conv2d(x, w, self.conv.bias)
        if y.mean() > -100:  # data-dependent: taken
            y = self.Double.apply(y)
        return y.contiguous().clone()  # no-ops: not stages


def test_functional_ops_custom_functions_and_no_ops():
    torch.manual_seed(1)
    m = Functional().eval()
    t = convlens.capture(m, _image())
    assert t.names == ["conv2d", "mul"]
    assert t["conv2d"].kind == "conv" and t["conv2d"].params["in_channels"] == 3
    np.testing.assert_array_equal(t["conv2d"].weights["weight"], m.conv.weight.detach().numpy())
    np.testing.assert_array_equal(t["mul"].output, t["conv2d"].output * 2)
    assert t["mul"].sources == (0,)
    # y.mean() (no batch axis) was computed and is named in one notice, not dropped silently
    assert len(t.meta["notices"]) == 1 and "mean" in t.meta["notices"][0]


def test_names_are_stable_and_keep_filters_ops():
    torch.manual_seed(1)
    m = MobileV3().eval()
    a = convlens.capture(m, _image())
    b = convlens.capture(m, _image(16))
    assert a.names == b.names
    only = convlens.capture(m, _image(), layers="merge")
    assert only.names == ["mul", "add"]
    np.testing.assert_array_equal(only["add"].output, a["add"].output)


@pytest.mark.parametrize("make", MODELS, ids=lambda m: m.__name__)
def test_the_drawings_edges_are_the_graphs(make):
    from convlens.render.journeyview import journey_layout

    torch.manual_seed(1)
    trace = convlens.capture(make().eval(), _image())
    name = {s.index: s.name for s in trace}
    name[-1] = "input"
    graph = {(name[i], s.name) for s in trace for i in s.sources}
    layout, _ = journey_layout(trace, depth="full")
    assert set(layout.edges) == graph
    # every merge has an arrow from each of its sources
    for s in trace:
        if s.kind == "merge":
            assert {e for e in layout.edges if e[1] == s.name} == {(name[i], s.name) for i in s.sources}


def test_every_stage_fills_its_kinds_schema():
    from convlens.nets import zoo
    from convlens.params import problems

    torch.manual_seed(1)
    models = [m().eval() for m in MODELS] + [zoo.load("efficientnet-lite0").model]
    models.append(convlens.build("conv(3, 3x3) relu maxpool(2) conv(4, 3x3, stride=2) avgpool(2) "
                                 "flatten dense(5) softmax", backend="torch", seed=0,
                                 in_shape=(3, 32, 32)))
    for m in models:
        for s in convlens.capture(m, _image(32)):
            assert problems(s.kind, s.params) == [], (type(m).__name__, s.name)
    assert problems("conv", {"kernel_size": 3}) != []  # (the check can fail)


def test_ops_between_modules_are_not_held_but_computed_again_exactly():
    torch.manual_seed(1)
    m = InplaceTwice().eval()
    t = convlens.capture(m, _image())
    # `y += x` and `y.relu_()` overwrote the conv's output: nothing was held or copied,
    # each is computed again from the stages it read when first read
    assert [s.computed for s in t] == [False, False, False, False, True]
    with torch.no_grad():
        ref = m.ref(torch.from_numpy(t.model_input))
    for name in ("relu", "add", "conv"):  # (read newest first: each computes its sources)
        np.testing.assert_array_equal(t[name].output, ref[name].numpy())


def test_a_model_without_children_shows_the_ops_of_its_forward():
    class Bare(nn.Module):  # parameters only, every op functional
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.linspace(-0.5, 0.5, 4 * 3 * 9).view(4, 3, 3, 3))

        def forward(self, x):
            a, b = torch.split(F.conv2d(x, self.w, padding=1), 2, dim=1)
            return F.relu(a) * torch.sigmoid(b)

    m = Bare().eval()
    t = convlens.capture(m, _image(8))
    assert t.names == ["conv2d", "split", "split_1", "relu", "sigmoid", "mul"]
    assert [s.sources for s in t] == [(-1,), (0,), (0,), (1,), (2,), (3, 4)]
    x = torch.from_numpy(t.model_input)
    with torch.no_grad():
        c = F.conv2d(x, m.w, padding=1)
        np.testing.assert_array_equal(t["conv2d"].output, c.numpy())
        np.testing.assert_array_equal(t["relu"].output, F.relu(c[:, :2]).numpy())
        np.testing.assert_array_equal(t.output, m(x).numpy())
    assert convlens.capture(nn.Conv2d(3, 2, 3), _image(8)).names == ["conv2d"]  # a stock layer alone


def test_integer_indexing_and_comparisons_are_exact_stages():
    class Pick(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.register_buffer("order", torch.tensor([3, 1, 0, 2]))

        def forward(self, x):
            y = self.conv(x)[:, self.order]  # channels reordered by an integer buffer
            return y * (y > 0)

    torch.manual_seed(1)
    m = Pick().eval()
    t = convlens.capture(m, _image(6))
    assert t.names == ["conv", "getitem", "gt", "mul"]
    x = torch.from_numpy(t.model_input)
    with torch.no_grad():
        y = m.conv(x)[:, m.order]
        np.testing.assert_array_equal(t["getitem"].output, y.numpy())
        np.testing.assert_array_equal(t["gt"].output, (y > 0).float().numpy())
        np.testing.assert_array_equal(t.output, m(x).numpy())
    assert t["gt"].kind == "other" and t["getitem"].kind == "reshape"
