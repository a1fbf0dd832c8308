"""The fast capture paths give exactly what the straightforward path gives.

The reference here is the plainest possible capture: a forward hook on every leaf that
clones the output the moment the layer returns, and copies the weights.  Every fast
path (outputs held by reference, in-place copies on demand, the repeat-and-remember path
for in-place ops inside ``forward``, float16, the disk store, ``weights="share"``,
``layers=``) must agree with it exactly.  No timings here: speed is measured in bench/.
"""
import weakref

import numpy as np
import pytest
import torch
from torch import nn

import convlens
from convlens.capture import torch as capture_torch_module
from convlens.errors import CaptureError
from convlens.nets.efficientnet import EfficientNetLite0
from tests.reference_grid import grid_by_blocks as reference_grid


def reference(model: nn.Module, x: np.ndarray) -> list[tuple[str, np.ndarray, dict]]:
    """(name, output, weights) per leaf call: clone everything, as the layer returns.
    (A leaf returning its very input unchanged — an eval-mode dropout — is a
    pass-through, not a stage.  The ops between modules are checked against hand-written
    forwards in tests/test_capture_graph.py.)"""
    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    calls: dict[str, int] = {}
    out: list[tuple[str, np.ndarray, dict]] = []
    handles = []

    def make(name: str, m: nn.Module):
        def hook(_m, args, output):
            if args and output is args[0] and not getattr(_m, "inplace", False):
                return  # a pass-through
            calls[name] = calls.get(name, 0) + 1
            full = name if calls[name] == 1 else f"{name}#{calls[name]}"
            w = {k: v.detach().clone().numpy() for k, v in
                 list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
                 if v.is_floating_point()}
            out.append((full, output.detach().clone().numpy(), w))
        return hook

    for name, m in leaves:
        handles.append(m.register_forward_hook(make(name, m)))
    try:
        with torch.no_grad():
            model(torch.from_numpy(x))
    finally:
        for h in handles:
            h.remove()
    return out


def leaf_stages(trace: convlens.Trace, ref) -> list:
    """The trace's stages made by leaf modules (an op's stage name is never a module's)."""
    leaves = {r[0].split("#")[0] for r in ref}
    return [s for s in trace if s.name.split("#")[0] in leaves]


def assert_same(trace: convlens.Trace, ref, dtype=np.float32, weights=True) -> None:
    stages = leaf_stages(trace, ref)
    assert [s.name for s in stages] == [r[0] for r in ref]
    for s, (name, arr, w) in zip(stages, ref):
        assert s.output.dtype == dtype, name
        np.testing.assert_array_equal(s.output, arr.astype(dtype), err_msg=name)
        if weights:
            assert list(s.weights) == list(w), name
            for k in w:
                assert s.weights[k].dtype == np.float32
                np.testing.assert_array_equal(s.weights[k], w[k], err_msg=f"{name}.{k}")
        else:
            assert s.weights == {}


class Residual(nn.Module):
    """In-place ReLUs, a functional ``+=`` inside forward, a dropout (eval: returns its very
    input tensor) before an in-place ReLU, and a flatten view changed in place."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.relu2 = nn.ReLU(inplace=True)
        self.flat = nn.Flatten()
        self.act = nn.Hardtanh(-0.1, 0.1, inplace=True)
        with torch.no_grad():
            self.bn1.running_mean.uniform_(-0.2, 0.2)
            self.bn1.running_var.uniform_(0.5, 2.0)
            self.conv2.weight.mul_(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        z = self.conv2(y)
        z += y  # changes conv2's held output after it returned
        z = self.relu2(self.drop(z))
        return self.act(self.flat(z))


def small_cat(size: int = 24) -> np.ndarray:
    return convlens.resize(convlens.cat(), (size, size))


def test_efficientnet_fast_path_equals_clone_everything():
    torch.manual_seed(0)
    model = EfficientNetLite0(num_classes=10).eval()
    trace = convlens.capture(model, small_cat(48))
    assert len(trace) == 144  # every leaf call, no extra output stage
    assert_same(trace, reference(model, trace.model_input))


def test_inplace_ops_are_copied_exactly_on_the_first_and_the_next_capture():
    model = Residual().eval()
    img = small_cat(8)
    first = convlens.capture(model, img)
    ref = reference(model, first.model_input)
    assert_same(first, ref)
    # what the in-place ops overwrote really differs from what the model ended with
    assert first["conv2"].output.min() < 0 and first["add"].output.min() < 0
    np.testing.assert_array_equal(first["add"].output,
                                  first["conv2"].output + first["relu1"].output)
    assert first["relu2"].sources == (4,)  # (through the dropout, a pass-through)
    assert first["flat"].output.max() > 0.1
    # nothing had to be copied or run twice: conv2 (which `z += y` overwrites), the add
    # and the in-place relu2 are not held at all but computed again when read; only the
    # flatten view (which the in-place Hardtanh then overwrote) was copied, just before
    assert model not in capture_torch_module._INPLACE_HINT
    second = convlens.capture(model, img)
    assert second.equals(first)


def test_output_held_by_two_stages_is_copied_for_both():
    # eval-mode Dropout returns its very input: conv and dropout hold one tensor, which
    # the in-place ReLU then overwrites (this once left the conv stage showing the ReLU)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(), nn.ReLU(inplace=True)).eval()
    trace = convlens.capture(model, small_cat(10))
    assert_same(trace, reference(model, trace.model_input))
    assert trace.names == ["0", "2"] and trace["0"].output.min() < 0
    assert model not in capture_torch_module._INPLACE_HINT  # the pre-hook copied both


def test_inference_mode_and_training_mode_models_give_the_same_stages():
    model = Residual().eval()
    img = small_cat(8)
    ref = convlens.capture(model, img)
    with torch.inference_mode():
        assert convlens.capture(model, img).equals(ref)
    model.train()
    assert convlens.capture(model, img).equals(ref)
    assert all(m.training for m in model.modules())


def test_float16_is_the_float32_output_rounded():
    model = Residual().eval()
    trace = convlens.capture(model, small_cat(8), dtype="float16")
    assert_same(trace, reference(model, trace.model_input), dtype=np.float16)
    lenet = convlens.capture(EfficientNetLite0(10).eval(), small_cat(32), dtype="float16",
                             layers="head.*")
    assert {s.output.dtype for s in lenet} == {np.dtype(np.float16)}


def test_disk_store_round_trip(tmp_path):
    model = Residual().eval()
    img = small_cat(8)
    trace = convlens.capture(model, img, store="disk", directory=tmp_path / "stages")
    assert_same(trace, reference(model, trace.model_input))
    files = sorted(p.name for p in (tmp_path / "stages").iterdir())
    assert files == [f"{i:04d}-{s.name}.npy" for i, s in enumerate(trace)]
    for i, s in enumerate(trace):
        assert not s.output.flags.writeable
        np.testing.assert_array_equal(np.load(tmp_path / "stages" / files[i]), s.output)
    # a second capture into the same folder replaces the files, not the first trace's data
    kept = {s.name: np.array(s.output) for s in trace}
    other = convlens.capture(model, img[::-1].copy(), store="disk", directory=tmp_path / "stages")
    assert not np.array_equal(other["conv1"].output, kept["conv1"])
    assert all(np.array_equal(s.output, kept[s.name]) for s in trace)
    # float16 on disk, and a saved trace reads back equal
    half = convlens.capture(model, img, dtype="float16", store="disk", directory=tmp_path / "h")
    assert_same(half, reference(model, half.model_input), dtype=np.float16)
    assert convlens.Trace.load(half.save(tmp_path / "h.npz")).equals(half)


def test_weights_share_and_none():
    model = Residual().eval()
    img = small_cat(8)
    ref = reference(model, convlens.capture(model, img).model_input)
    shared = convlens.capture(model, img, weights="share")
    assert_same(shared, ref)
    w = shared["conv1"].weights["weight"]
    assert np.shares_memory(w, model.conv1.weight.detach().numpy()) and not w.flags.writeable
    copied = convlens.capture(model, img)
    assert not np.shares_memory(copied["conv1"].weights["weight"], model.conv1.weight.detach().numpy())
    with torch.no_grad():
        model.conv1.weight.data.mul_(2)  # not seen by the version counter: a copy is a copy
    np.testing.assert_array_equal(copied["conv1"].weights["weight"], ref[0][2]["weight"])
    assert_same(convlens.capture(model, img, weights="none"), reference(model, shared.model_input),
                weights=False)
    assert convlens.capture(model, img, weights=False)["conv1"].weights == {}


class Probe(nn.Module):
    """A last layer that counts which earlier outputs are still alive when it runs."""

    def __init__(self, refs: list) -> None:
        super().__init__()
        self.refs = refs
        self.alive: list[str] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.alive = [name for name, r in self.refs if r() is not None]
        return x


def test_layers_keeps_only_the_selected_outputs_alive():
    torch.manual_seed(0)
    refs: list = []
    probe = Probe(refs)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(),
                          nn.Conv2d(4, 4, 3), nn.Tanh(), probe).eval()
    for i, m in enumerate(list(model)[:-1]):
        m.register_forward_hook(lambda _m, _a, out, i=i: refs.append((str(i), weakref.ref(out))))
    img = small_cat(12)
    full = convlens.capture(model, img)
    assert probe.alive == ["0", "1", "2", "3", "4", "5"]
    refs.clear()
    sel = convlens.capture(model, img, layers=["0", "4"])
    assert probe.alive == ["0", "4", "5"]  # 5 is the probe's own input
    assert sel.names == ["0", "4"]
    np.testing.assert_array_equal(sel["4"].output, full["4"].output)
    refs.clear()
    convlens.capture(model, img, dtype="float16")
    assert probe.alive == ["5"]  # converted as each layer returned; nothing held


def test_bad_options_are_one_line_errors(tmp_path):
    model = Residual().eval()
    img = small_cat(8)
    with pytest.raises(CaptureError, match="unknown dtype 'int8'; expected one of float32, float16"):
        convlens.capture(model, img, dtype="int8")
    with pytest.raises(CaptureError, match="unknown store 'cloud'; expected one of memory, disk"):
        convlens.capture(model, img, store="cloud")
    with pytest.raises(CaptureError, match="unknown weights 'lazy'; expected one of copy, share, none"):
        convlens.capture(model, img, weights="lazy")
    with pytest.raises(CaptureError, match="store='disk' needs directory="):
        convlens.capture(model, img, store="disk")
    with pytest.raises(CaptureError, match="only used with store='disk'"):
        convlens.capture(model, img, directory=tmp_path)


def test_keras_applies_the_same_options(tmp_path):
    keras = pytest.importorskip("keras")
    from models import ramp_image

    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 2, name="conv"),
                              keras.layers.ReLU(name="relu")])
    full = convlens.capture(model, ramp_image())
    half = convlens.capture(model, ramp_image(), dtype="float16", weights="none",
                            store="disk", directory=tmp_path)
    assert half.names == full.names
    for a, b in zip(half, full):
        np.testing.assert_array_equal(a.output, b.output.astype(np.float16))
        assert a.weights == {} and not a.output.flags.writeable


# -- rendering: the vectorised grid draws what composing one Block per tile draws ----------
def grid_by_blocks(st, image=0, norm="map", channels=None, max_channels=None, cols=None,
                   cmap=None, tile=96, vrange=None):
    """render.grid with its old defaults, drawn the straightforward way (reference_grid)."""
    import math

    from convlens.render.layout import zoom_factor
    from convlens.render.resolve import channel_scales, check_channels
    from convlens.render.text import fmt

    chs = check_channels(st, channels, max_channels)
    scales = channel_scales(st, image, norm, chs, cmap, vrange)
    labels = []
    for c, s in zip(chs, scales):
        labs = [f"#{c}"]
        if norm == "map":
            labs.append(s.describe())
        elif norm == "standard":
            labs += [f"mean {fmt(s.mean or 0.0)}", f"sd {fmt(s.std or 0.0)}"]
        labels.append(labs)
    ncols = math.ceil(math.sqrt(len(chs))) if cols is None else cols
    return reference_grid(st, image, norm, chs, scales, zoom_factor(*st.output.shape[2:], tile),
                          ncols, labels)


def awkward_stage(dtype=np.float32) -> convlens.Stage:
    """Maps of every kind: signed, non-negative, constant, all-zero, NaN, +-inf, tiny, huge."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 12, 5, 7)).astype(np.float64)
    x[0, 1] = np.abs(x[0, 1]) * 1e-5
    x[0, 2] = 3.0
    x[0, 3] = 0.0
    x[0, 4, 1, 2] = np.nan
    x[0, 5, 0, 0], x[0, 5, 4, 6] = np.inf, -np.inf
    x[0, 6] = np.abs(x[0, 6]) * 1e6
    x[0, 7] = np.nan
    x[0, 8] = -2.0
    x[0, 9] *= 123.456
    with np.errstate(over="ignore"):  # float16: the huge map becomes inf, also worth drawing
        out = x.astype(dtype)
    return convlens.Stage(index=0, name="mixed", kind="conv", op="Conv2d", output=out)


@pytest.mark.parametrize("options", [
    {}, {"norm": "stage"}, {"norm": "global", "vrange": (-1.0, 50.0)}, {"norm": "standard"},
    {"tile": 8, "cols": 5}, {"channels": [9, 0, 4, 4], "cmap": "magma", "image": 1},
    {"max_channels": 3, "tile": 40}, {"dtype": np.float16},
])
def test_vectorised_grid_equals_the_block_by_block_grid(options):
    options = dict(options)
    st = awkward_stage(options.pop("dtype", np.float32))
    fast = convlens.render.grid(st, **options)
    slow = grid_by_blocks(st, **options)
    assert fast.size == slow.size
    np.testing.assert_array_equal(fast.to_array(), slow.to_array())
    assert fast.meta == slow.meta


def test_scaleset_is_a_list_of_scales():
    from convlens.render.scale import Scale
    from convlens.render.scaleset import ScaleSet

    maps = awkward_stage().output[0]
    for cmap in (None, "gray"):
        sset = ScaleSet.per_map(maps, cmap)
        scales = [Scale.for_data(m, "map", cmap) for m in maps]
        assert [sset.scale(k) for k in range(len(maps))] == scales
        assert sset.metas() == [s.as_meta() for s in scales]
        assert sset.describe() == [s.describe() for s in scales]
        np.testing.assert_array_equal(sset.colorize(maps), np.stack([s.colorize(m) for s, m in
                                                                     zip(scales, maps)]))
    std = [Scale.standardized(m) for m in maps]
    np.testing.assert_array_equal(ScaleSet.from_scales(std).colorize(maps),
                                  np.stack([s.colorize(m) for s, m in zip(std, maps)]))


@pytest.mark.parametrize("shape,box,norm", [((12, 5, 7), 20, "map"), ((12, 5, 7), 20, "standard"),
                                            ((5, 40, 30), 11, "stage"), ((3, 9, 9), 9, "map")])
def test_mini_grid_equals_tile_by_tile_layout(shape, box, norm):
    from convlens.render.layout import grid_layout
    from convlens.render.mosaic import heat_grid
    from convlens.render.resolve import channel_scales
    from convlens.render.scaleset import ScaleSet
    from convlens.render.tiles import heat_tile

    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, *shape)).astype(np.float32)
    x[0, 1] = np.abs(x[0, 1])
    x[0, 2, 0, 0] = np.nan
    st = convlens.Stage(index=0, name="s", kind="conv", op="Conv2d", output=x)
    chs = [2, 0, 1][: shape[0]] + list(range(3, shape[0]))
    scales = channel_scales(st, 0, norm, chs)
    slow = grid_layout([heat_tile(x[0, c], s, {"channel": c, **s.as_meta()}, box=box)
                        for c, s in zip(chs, scales)], 4, 2)
    fast = heat_grid(x[0], chs, ScaleSet.from_scales(scales), box, 4, 2)
    np.testing.assert_array_equal(np.asarray(fast.image), np.asarray(slow.image))
    assert fast.records == slow.records


def colorbar_by_draw(scale, length, thickness=10, sigma_units=False, size=11):
    """render.colorbar's bar the straightforward way: drawn with ImageDraw on a Pillow image."""
    from PIL import Image, ImageDraw

    from convlens.render.colormaps import lut
    from convlens.render.text import BACKGROUND, INK, font, line_height, text_width

    length = max(16, int(length))
    ticks = scale.ticks(sigma_units=sigma_units)
    labels = [t for _, t in ticks]
    widths = [text_width(t, size) for t in labels]
    width = max(length, sum(widths) + 8 * (len(widths) - 1))
    img = Image.new("RGB", (width, thickness + 3 + line_height(size)), BACKGROUND)
    if len(ticks) == 1:
        bar = np.broadcast_to(scale.colorize(np.array([ticks[0][0]]))[0], (thickness, length, 3))
    else:
        idx = np.floor((np.arange(length) + 0.5) / length * 256).astype(np.int64).clip(0, 255)
        bar = np.broadcast_to(lut(scale.cmap)[idx], (thickness, length, 3))
    x0 = (width - length) // 2
    img.paste(Image.fromarray(np.ascontiguousarray(bar)), (x0, 0))
    draw = ImageDraw.Draw(img)
    draw.rectangle([x0, 0, x0 + length - 1, thickness - 1], outline=(150, 150, 150))
    if len(ticks) == 1:
        draw.text(((width - widths[0]) // 2, thickness + 3), labels[0], font=font(size), fill=INK)
        return img
    placed = []
    for i in [0, len(ticks) - 1] + list(range(1, len(ticks) - 1)):
        value, text = ticks[i]
        tx = x0 + int(round(float(scale.to_unit(np.array(value))) * (length - 1)))
        w = widths[i]
        lx = 0 if i == 0 else (width - w if i == len(ticks) - 1 else tx - w // 2)
        lx = min(max(lx, 0), width - w)
        if any(lx < b + 4 and lx + w + 4 > a for a, b in placed):
            continue
        placed.append((lx, lx + w))
        draw.line([tx, thickness, tx, thickness + 2], fill=INK)
        draw.text((lx, thickness + 3), text, font=font(size), fill=INK)
    return img


@pytest.mark.parametrize("lo,hi,length,sigma", [(-3.2, 8.0, 128, False), (0.0, 0.731, 40, False),
                                                (5.0, 5.0, 100, False), (-1e-5, 2e-6, 300, False),
                                                (-2.0, 2.0, 16, False), (0.0, 123456.0, 60, False),
                                                (None, None, 128, True)])
def test_array_colorbar_equals_the_drawn_one(lo, hi, length, sigma):
    from convlens.render.colorbar import colorbar
    from convlens.render.scale import Scale

    if sigma:
        scale = Scale.standardized(np.arange(10.0))
    else:
        scale = Scale.from_range(lo, hi)
    block, _ = colorbar(scale, length, sigma_units=sigma)
    np.testing.assert_array_equal(np.asarray(block.image),
                                  np.asarray(colorbar_by_draw(scale, length, sigma_units=sigma)))


def test_stage_ranges_are_shared_only_inside_one_figure():
    from convlens.render.resolve import shared_ranges, stage_range

    st = awkward_stage()
    with shared_ranges():
        first = stage_range(st)
        st.output[1, 0, 0, 0] = 1e9  # (a figure never changes its data while it draws)
        assert stage_range(st) == first
    assert stage_range(st)[1] == 1e9  # outside: computed from the data as it is now
    tr = convlens.Trace(stages=[st], input=np.zeros((2, 5, 7, 3), np.float32), framework="torch",
                        model_name="m")
    a = convlens.render.journey(tr)
    with shared_ranges():
        b = convlens.render.journey(tr)
    np.testing.assert_array_equal(a.to_array(), b.to_array())
    assert a.meta == b.meta
