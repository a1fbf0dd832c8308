"""The remembered capture plan of a PyTorch model, the wrapped ``forward`` of its leaves
during a pass, and convolutions computed again when read.

A plan is reused only while the model is unchanged: every test changes the model in
one way and checks the next capture against a clone-everything reference.  No timings
here (speed is measured in bench/).
"""
import gc
import sys
import threading
import weakref

import numpy as np
import pytest
import torch
from torch import nn

import convlens
from convlens.capture import torch_plan
from tests.test_perf_paths import assert_same, reference


def image(seed: int = 3, size: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size, 3), dtype=np.float32)


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 144, 3),
    ).eval()


def check(model: nn.Module, img: np.ndarray) -> convlens.Trace:
    t = convlens.capture(model, img)
    assert_same(t, reference(model, np.ascontiguousarray(t.model_input)))
    return t


def test_the_plan_is_reused_while_the_model_is_unchanged():
    m = net()
    before = {n: dict(x.__dict__) for n, x in m.named_modules()}
    a = check(m, image())
    plan = torch_plan._PLANS[m]
    b = check(m, image(4))
    assert torch_plan._PLANS[m] is plan  # not made again
    assert a.names == b.names and not b.equals(a)
    # nothing of the capture stays on the model: same attributes, and it copies as before
    assert {n: dict(x.__dict__) for n, x in m.named_modules()} == before
    import copy
    twin = copy.deepcopy(m)
    assert_same(convlens.capture(twin, image()), reference(m, np.ascontiguousarray(a.model_input)))


def test_a_replaced_layer_makes_a_new_plan():
    m = net()
    check(m, image())
    plan = torch_plan._PLANS[m]
    m[4] = nn.Hardtanh(-0.2, 0.2)
    t = check(m, image())
    assert torch_plan._PLANS[m] is not plan
    assert t["4"].op == "Hardtanh" and t["4"].output.max() <= 0.2
    assert t["4"].params["function"] == "hard_tanh"


def test_a_changed_attribute_makes_a_new_plan():
    m = net()
    a = check(m, image())
    assert a["3"].params["padding"] == (1, 1)
    m[3].padding = (0, 0)
    m[6] = nn.Linear(4 * 100, 3)
    b = check(m, image())
    assert b["3"].params["padding"] == (0, 0) and b["3"].shape == (4, 10, 10)
    m[2].inplace = True  # now overwrites the norm's output: the norm must come out right
    c = check(m, image())
    assert c["2"].params["inplace"] is True


def test_a_hook_on_a_layer_makes_its_stage_held_as_returned():
    m = net()
    check(m, image())
    handle = m[3].register_forward_hook(lambda _m, _a, out: out * 2)  # changes what follows
    try:
        t = check(m, image())
        assert t["3"].computed  # held (a hook may change a layer's output): not recomputed
    finally:
        handle.remove()


def test_new_weights_are_seen_on_the_next_capture():
    m = net()
    a = check(m, image())
    with torch.no_grad():
        m[3].weight.mul_(-1)  # in place: the version counter moves
    b = check(m, image())
    np.testing.assert_array_equal(b["3"].weights["weight"], -a["3"].weights["weight"])
    m[0].weight = nn.Parameter(torch.zeros_like(m[0].weight))  # a new tensor object
    c = check(m, image())
    assert not c["0"].weights["weight"].any() and a["0"].weights["weight"].any()


def test_writes_through_data_and_lists_edited_in_place_are_seen():
    m = net()
    check(m, image())
    with torch.no_grad():
        m[6].weight.data.fill_(0.5)  # through .data: no version bump
    t = check(m, image())  # (check compares every stage with a plain forward pass)
    assert (t["6"].weights["weight"] == 0.5).all()
    m = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU()).eval()
    m[0].padding = [1, 1]
    check(m, image())
    m[0].padding[0] = 0  # a list edited in place: compared by value
    t = check(m, image())
    assert t["0"].params["padding"] == (0, 1) and t["0"].shape[1:] == (10, 12)


def test_the_plan_does_not_keep_the_model_alive():
    m = net()
    convlens.capture(m, image())
    ref = weakref.ref(m)
    del m
    gc.collect()
    assert ref() is None


class Boom(nn.Module):
    def forward(self, x):
        raise ValueError("boom")


def test_every_forward_is_restored_even_when_the_model_fails():
    m = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), Boom())
    own = lambda x: x + 1  # noqa: E731 - an instance-level forward the user set
    m[1].forward = own
    with pytest.raises(convlens.CaptureError, match="boom"):
        convlens.capture(m, image())
    assert "forward" not in m[0].__dict__ and m[1].__dict__["forward"] is own
    assert "forward" not in m[2].__dict__


def test_calls_from_another_thread_during_a_capture_are_not_recorded():
    class Side(nn.Module):  # runs the model's first conv on another thread, mid-pass
        def __init__(self, other: nn.Module):
            super().__init__()
            self.other = [other]  # (a list: not a child module)

        def forward(self, x):
            done = []
            worker = threading.Thread(target=lambda: done.append(self.other[0](x[:, :3] * 0)))
            worker.start()
            worker.join()
            return x

    conv = nn.Conv2d(3, 3, 3, padding=1)
    m = nn.Sequential(conv, Side(conv), nn.ReLU()).eval()
    t = convlens.capture(m, image())
    # no "0#2" from the other thread; Side returns its input: a pass-through, not a stage
    assert t.names == ["0", "2"] and t["2"].sources == (0,)


def test_a_scripted_leaf_inside_a_python_model_is_recorded():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), torch.jit.script(nn.ReLU()), nn.Conv2d(4, 2, 1)).eval()
    t = convlens.capture(m, image())
    assert t.names == ["0", "1", "2"]
    x = torch.from_numpy(np.ascontiguousarray(t.model_input))
    with torch.no_grad():  # layer by layer (a scripted module takes no hooks)
        for i in range(3):
            x = m[i](x)
            np.testing.assert_array_equal(t[str(i)].output, x.numpy())


@pytest.mark.parametrize("conv", [
    lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2, padding_mode="reflect"),
    lambda: nn.Conv2d(4, 6, 3, padding=1, padding_mode="circular", bias=False),
    lambda: nn.Conv2d(4, 4, 5, padding="same", groups=4),
    lambda: nn.Conv2d(4, 3, (3, 1), stride=(2, 1), padding=(1, 0), padding_mode="replicate"),
])
def test_convolutions_computed_again_are_exact(conv):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), conv(), nn.ReLU()).eval()
    t = convlens.capture(m, image(size=14))
    assert not t["2"].computed  # not held: computed again from the ReLU's output
    assert_same(t, reference(m, np.ascontiguousarray(t.model_input)))


def test_1d_and_3d_convolutions_computed_again_are_exact():
    torch.manual_seed(0)

    class Volume(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = nn.Conv2d(3, 4, 1)
            self.a = nn.Conv1d(4, 4, 3, padding=1)
            self.b = nn.ReLU()
            self.c = nn.Conv1d(4, 2, 3)
            self.d = nn.Conv3d(1, 2, 3, padding=1)
            self.e = nn.Conv3d(2, 1, 1)

        def forward(self, x):
            x = self.pre(x)
            y = self.c(self.b(self.a(x.flatten(2))))
            return self.e(self.d(x.unsqueeze(1))).mean() + y.mean()

    m = Volume().eval()
    t = convlens.capture(m, image(size=6))
    # every one computed again when read: pre from the model input, the flatten and
    # unsqueeze views from pre, a and d from those
    assert [s.name for s in t.stages[:8]] == ["pre", "flatten", "a", "b", "c", "unsqueeze", "d", "e"]
    assert not any(s.computed for s in t.stages[:8])
    assert_same(t, reference(m, np.ascontiguousarray(t.model_input)))


def test_a_long_chain_of_deferred_stages_is_read_without_deep_recursion():
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 3, 1)] + [nn.Conv2d(3, 3, 1) if i % 2 else nn.ReLU() for i in range(600)]
    m = nn.Sequential(*layers, nn.Flatten()).eval()
    t = convlens.capture(m, image(size=4))
    assert sum(not s.computed for s in t) == 601  # all but the flatten (the model's output)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # each stage one level deep: well under
    try:
        last = t.stages[-2].output
    finally:
        sys.setrecursionlimit(limit)
    x = torch.from_numpy(np.ascontiguousarray(t.model_input))
    with torch.no_grad():
        expected = m[:-1](x).numpy()
    np.testing.assert_array_equal(last, expected)


def test_a_channels_last_input_is_held_not_recomputed():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 5)).eval()
    m = m.to(memory_format=torch.channels_last)

    class ToChannelsLast(nn.Module):
        def forward(self, x):
            return x.contiguous(memory_format=torch.channels_last)

    model = nn.Sequential(ToChannelsLast(), m).eval()
    t = check(model, image(size=16))
    assert t["1.2"].computed  # its input was not contiguous: held


def test_stages_are_made_when_first_read_from_what_the_capture_fixed():
    m = net()
    img = image()
    t = convlens.capture(m, img)
    assert "_lazy" in t.__dict__ and len(t) == 7  # counted, not made
    ref = reference(m, np.ascontiguousarray(t.model_input))
    with torch.no_grad():  # the model changes before the stages are first read
        for p in m.parameters():
            p.mul_(-3.0)
        m[1].running_var.fill_(9.0)
    m[3] = nn.Conv2d(4, 4, 1)
    assert t.names == ["0", "1", "2", "3", "4", "5", "6"]
    assert_same(t, ref)  # outputs and weights as they were at capture time
    assert "_lazy" not in t.__dict__ and t.stages[3].params["kernel_size"] == (3, 3)


def test_a_lazy_trace_pickles_saves_and_copies_with_its_stages(tmp_path):
    import copy
    import pickle

    m = net()
    t = convlens.capture(m, image())
    back = pickle.loads(pickle.dumps(t))
    assert [s.name for s in back] == t.names
    assert all(a.equals(b) for a, b in zip(back, t))
    u = convlens.capture(m, image())
    assert all(a.equals(b) for a, b in zip(copy.deepcopy(u), t))
    v = convlens.capture(m, image())
    loaded = convlens.Trace.load(v.save(tmp_path / "t.npz"))
    assert all(a.equals(b) for a, b in zip(loaded, t))


class Tail(nn.Module):
    """A leaf called "output"; the model returns the ReLU's output although an op (a mean
    nobody uses) ran after it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 3)
        self.output = nn.ReLU()

    def forward(self, x):
        y = self.output(self.conv(x))
        y.mean(dim=(2, 3))
        return y


def test_the_output_stage_is_added_without_making_the_stages_and_named_apart():
    t = convlens.capture(Tail().eval(), image())
    assert "_lazy" in t.__dict__ and len(t) == 4
    assert t.names == ["conv", "output", "mean", "output#2"]
    assert t["mean"].kind == "pool" and t["mean"].sources == (1,)
    assert t["output#2"].kind == "output" and t["output#2"].shape == (2, 10, 10)
    np.testing.assert_array_equal(t["output#2"].output, t["output"].output)
    relu = torch.from_numpy(t["output"].output)
    np.testing.assert_array_equal(t["mean"].output, relu.mean(dim=(2, 3)).numpy())
    plain = convlens.capture(net(), image())
    assert "_lazy" in plain.__dict__ and len(plain) == 7  # the last layer made the output


class EatsItsInput(nn.Module):
    """Overwrites the model input in place after the first conv has read it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x):
        y = self.conv(x)
        x.mul_(-1.0)
        return self.act(y + x)


def test_a_stage_fed_by_the_model_input_survives_an_in_place_change_of_the_input():
    m = EatsItsInput().eval()
    img = image()
    t = convlens.capture(m, img)
    x = convlens.Preprocess().apply(convlens.as_batch(img))[0]
    with torch.no_grad():
        expected = m.conv(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    np.testing.assert_array_equal(t["conv"].output, expected)  # what the conv computed
    assert t["conv"].computed  # held: the input it came from did not survive the pass
    np.testing.assert_array_equal(t.model_input, x)  # the model wrote into its own copy


def test_deferred_outputs_read_with_another_thread_count_are_the_same_bits():
    from convlens.nets.efficientnet import EfficientNetLite0

    torch.manual_seed(0)
    m = EfficientNetLite0(num_classes=10).eval()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        t = convlens.capture(m, image(size=64))
        ref = reference(m, np.ascontiguousarray(t.model_input))
        torch.set_num_threads(1)  # read (computed again) with one thread
        assert sum(not s.computed for s in t) > 100
        assert_same(t, ref)
    finally:
        torch.set_num_threads(before)
