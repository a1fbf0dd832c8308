"""Hand-built Traces shaped like real CNN graphs (no framework): residual, dense block,
inception, squeeze-excitation, and a long ResNet-like network.  Outputs are random but
of the right shapes; conv and pool stages carry their window parameters, merges list
every source."""
from __future__ import annotations

import numpy as np

from convlens.trace import Stage, Trace


class Builder:
    def __init__(self, c: int = 3, h: int = 16, w: int = 16, name: str = "g"):
        self.stages: list[Stage] = []
        self.shapes: dict[int, tuple[int, ...]] = {-1: (c, h, w)}
        self.hw = (h, w)
        self.name = name

    def add(self, name: str, kind: str, op: str, shape: tuple[int, ...], sources, **params) -> int:
        i = len(self.stages)
        rng = np.random.default_rng(i)
        out = rng.normal(size=(1, *shape)).astype(np.float32)
        self.stages.append(Stage(i, name, kind, op, out, params=params, sources=tuple(sources)))
        self.shapes[i] = shape
        return i

    def conv(self, name: str, src: int, cout: int, k: int = 3, stride: int = 1, pad: int | None = None,
             groups: int = 1) -> int:
        c, h, w = self.shapes[src]
        pad = k // 2 if pad is None else pad
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        return self.add(name, "conv", "Conv2d", (cout, oh, ow), [src], kernel_size=(k, k),
                        stride=(stride, stride), padding=(pad, pad), dilation=(1, 1), groups=groups,
                        in_channels=c, out_channels=cout)

    def pool(self, name: str, src: int, k: int = 2, stride: int | None = None, pad: int = 0,
             mode: str = "max") -> int:
        c, h, w = self.shapes[src]
        s = stride or k
        oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
        return self.add(name, "pool", f"{mode.title()}Pool2d", (c, oh, ow), [src], kernel_size=(k, k),
                        stride=(s, s), padding=(pad, pad), mode=mode)

    def same(self, name: str, kind: str, op: str, src: int, **params) -> int:
        return self.add(name, kind, op, self.shapes[src], [src], **params)

    def relu(self, name: str, src: int) -> int:
        return self.same(name, "activation", "relu", src, function="relu")

    def bn(self, name: str, src: int) -> int:
        return self.same(name, "norm", "BatchNorm2d", src)

    def addm(self, name: str, *srcs: int) -> int:
        return self.add(name, "merge", "add", self.shapes[srcs[0]], srcs, operation="add")

    def mul(self, name: str, a: int, b: int) -> int:
        return self.add(name, "merge", "mul", self.shapes[a], [a, b], operation="mul")

    def cat(self, name: str, *srcs: int) -> int:
        c = sum(self.shapes[s][0] for s in srcs)
        return self.add(name, "merge", "cat", (c, *self.shapes[srcs[0]][1:]), srcs, operation="cat", axis=1)

    def mean(self, name: str, src: int) -> int:
        c = self.shapes[src][0]
        return self.add(name, "pool", "mean", (c, 1, 1), [src], mode="avg", kernel_size=self.shapes[src][1:],
                        stride=self.shapes[src][1:], padding=(0, 0))

    def flatten(self, name: str, src: int) -> int:
        return self.add(name, "flatten", "flatten", (int(np.prod(self.shapes[src])),), [src])

    def dense(self, name: str, src: int, n: int) -> int:
        return self.add(name, "dense", "Linear", (n,), [src])

    def trace(self) -> Trace:
        c, h, w = self.shapes[-1]
        return Trace(self.stages, np.zeros((1, h, w, 3), np.float32), "torch", self.name,
                     model_input=np.zeros((1, c, h, w), np.float32))


def basic_block(g: Builder, x: int, pre: str, cout: int, stride: int = 1) -> int:
    y = g.conv(f"{pre}.conv1", x, cout, 3, stride)
    y = g.relu(f"{pre}.relu", g.bn(f"{pre}.bn1", y))
    y = g.bn(f"{pre}.bn2", g.conv(f"{pre}.conv2", y, cout, 3))
    if stride != 1 or g.shapes[x][0] != cout:
        x = g.bn(f"{pre}.downsample.1", g.conv(f"{pre}.downsample.0", x, cout, 1, stride, 0))
    return g.relu(f"{pre}.relu_1", g.addm(f"{pre}.add", y, x))


def residual() -> Trace:
    """stem conv -> one block with an identity shortcut -> one with a 1x1 downsample."""
    g = Builder(3, 16, 16, "residual")
    x = g.relu("relu", g.conv("conv1", -1, 8))
    x = basic_block(g, x, "layer1.0", 8)
    x = basic_block(g, x, "layer2.0", 16, 2)
    x = g.flatten("flatten", g.mean("mean", x))
    g.dense("fc", x, 10)
    return g.trace()


def dense_block() -> Trace:
    """DenseNet-style: each layer reads the concat of all before it."""
    g = Builder(3, 12, 12, "dense")
    x = g.conv("conv0", -1, 8)
    feats = [x]
    for k in range(3):
        inp = feats[0] if len(feats) == 1 else g.cat(f"block.layer{k}.cat", *feats)
        y = g.conv(f"block.layer{k}.conv", g.relu(f"block.layer{k}.relu", inp), 4)
        feats.append(y)
    g.cat("block.cat", *feats)
    return g.trace()


def inception() -> Trace:
    """A 4-branch inception module concatenated: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | pool-1x1."""
    g = Builder(3, 12, 12, "inception")
    x = g.relu("stem.relu", g.conv("stem.conv", -1, 8))
    b1 = g.conv("mixed.b1x1", x, 4, 1)
    b2 = g.conv("mixed.b3x3", g.conv("mixed.b3x3_1", x, 4, 1), 6)
    b3 = g.conv("mixed.b3dbl_3", g.conv("mixed.b3dbl_2", g.conv("mixed.b3dbl_1", x, 2, 1), 4), 4)
    b4 = g.conv("mixed.bpool", g.pool("mixed.avg_pool", x, 3, 1, 1, "avg"), 2, 1)
    g.cat("mixed.cat", b1, b2, b3, b4)
    return g.trace()


def squeeze_excite() -> Trace:
    """conv -> SE (mean, 1x1 conv, relu, 1x1 conv, sigmoid) -> x * s."""
    g = Builder(3, 10, 10, "se")
    x = g.relu("conv.relu", g.conv("conv", -1, 8))
    s = g.mean("se.mean", x)
    s = g.relu("se.relu", g.conv("se.fc1", s, 2, 1))
    s = g.same("se.sigmoid", "activation", "sigmoid", g.conv("se.fc2", s, 8, 1), function="sigmoid")
    g.mul("se.mul", x, s)
    return g.trace()


def long_resnet(blocks=(3, 4, 6, 3)) -> Trace:
    """A ResNet-34-shaped trace (~150-200 stages) on a small input."""
    g = Builder(3, 32, 32, "long")
    x = g.pool("maxpool", g.relu("relu", g.bn("bn1", g.conv("conv1", -1, 8))), 2)
    c = 8
    for li, n in enumerate(blocks, 1):
        for b in range(n):
            stride = 2 if (b == 0 and li > 1) else 1
            x = basic_block(g, x, f"layer{li}.{b}", c * (2 ** (li - 1)), stride)
    x = g.flatten("flatten", g.mean("avgpool", x))
    g.dense("fc", x, 10)
    return g.trace()


def graph_edges(trace: Trace) -> list[tuple[str, str]]:
    """Every (source name, stage name) pair of the Trace's graph ("input": the model input)."""
    names = {s.index: s.name for s in trace.stages}
    return [("input" if i == -1 else names[i], s.name) for s in trace.stages for i in dict.fromkeys(s.sources)]


ALL = {"residual": residual, "dense": dense_block, "inception": inception, "se": squeeze_excite}
