"""Deferred stages, the weight-copy cache and the allocator setting of capture().

Deferred stages (a convolution, batch norm or clamping activation fed by a kept stage) are computed
again when first read; they must give exactly what the layer computed, whatever happens
to the model afterwards.  The weight copies are reused while the model is unchanged and
made anew as soon as it changes.  No timings here (speed is measured in bench/).
"""
import numpy as np
import pytest
import torch
from torch import nn

import convlens
from convlens.capture import allocator
from convlens.errors import ConvlensError
from tests.test_perf_paths import assert_same, reference


def conv_bn_relu(inplace: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU6(),
        nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=inplace),
        nn.Conv2d(4, 2, 1), nn.LeakyReLU(0.1), nn.Hardtanh(-0.5, 0.25), nn.Conv2d(2, 2, 1),
    )
    with torch.no_grad():  # running statistics a real network would have
        for bn in (m[1], m[4]):
            bn.running_mean.copy_(torch.linspace(-0.5, 0.5, 4))
            bn.running_var.copy_(torch.linspace(0.5, 2.0, 4))
            bn.weight.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0]))
            bn.bias.copy_(torch.tensor([0.1, 0.0, -0.3, 0.2]))
    return m.eval()


def image(seed: int = 1, size: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size, 3), dtype=np.float32)


def assert_outputs(trace: convlens.Trace, ref) -> None:
    assert [s.name for s in trace] == [r[0] for r in ref]
    for s, (name, arr, _) in zip(trace, ref):
        np.testing.assert_array_equal(s.output, arr, err_msg=name)


def model_input(trace: convlens.Trace) -> np.ndarray:
    return np.ascontiguousarray(trace.model_input)


def test_norm_and_clamp_stages_are_deferred_and_exact():
    m = conv_bn_relu()
    t = convlens.capture(m, image())
    deferred = [s.name for s in t if not s.computed]
    # every conv/BN/activation fed by the model input, a kept or a deferred stage, chains
    # (input -> 0 -> 1 -> ... -> 8) included; the last (whose output is the model's, held
    # anyway) is held
    assert deferred == ["0", "1", "2", "3", "4", "5", "6", "7", "8"]
    assert [t[n].shape for n in ("1", "5")] == [(4, 12, 12), (4, 10, 10)]  # known, not computed
    assert not t["1"].computed
    assert_same(t, reference(m, model_input(t)))  # reads every output: computed now
    assert all(s.computed for s in t)
    # and against NumPy: batch norm then ReLU6 from the kept conv output
    bn = m[1]
    inv = 1 / np.sqrt(bn.running_var.numpy() + bn.eps)
    want = ((t["0"].output - bn.running_mean.numpy()[:, None, None]) * inv[:, None, None]
            * bn.weight.detach().numpy()[:, None, None] + bn.bias.detach().numpy()[:, None, None])
    np.testing.assert_allclose(t["1"].output, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(t["2"].output, np.clip(t["1"].output, 0, 6))


@pytest.mark.parametrize("weights", ["copy", "share", "none"])
def test_deferred_stages_ignore_later_changes_to_the_model(weights):
    m = conv_bn_relu()
    x = image()
    t = convlens.capture(m, x, weights=weights)
    ref = reference(m, model_input(t))
    with torch.no_grad():  # train the model a little after the capture
        for p in m.parameters():
            p.add_(0.5)
        m[1].running_var.mul_(3.0)
    m[2].max_val = 1.0  # even a changed hyperparameter
    assert_outputs(t, ref)


def test_inplace_relu_after_norm_defers_both():
    m = conv_bn_relu(inplace=True)
    t = convlens.capture(m, image(2))
    assert t["4"].computed is False  # the norm: computed again from the conv output
    # the in-place ReLU read the norm's output as it was made: computed again from it
    assert t["5"].computed is False
    assert_same(t, reference(m, model_input(t)))


def test_subclasses_and_training_mode_are_held():
    class MyNorm(nn.BatchNorm2d):
        def forward(self, x):
            return super().forward(x) * 2.0

    m = conv_bn_relu()
    m[1] = MyNorm(4).eval()
    t = convlens.capture(m, image(3))
    assert t["1"].computed  # not a stock module: held as it came
    assert_same(t, reference(m, model_input(t)))


def test_selected_layers_without_their_source_are_held():
    m = conv_bn_relu()
    t = convlens.capture(m, image(4), ["1", "2"])  # the conv that feeds "1" is not kept
    assert t["1"].computed and not t["2"].computed
    ref = {n: a for n, a, _ in reference(m, model_input(t))}
    for s in t:
        np.testing.assert_array_equal(s.output, ref[s.name])


def test_saved_trace_holds_the_deferred_values(tmp_path):
    m = conv_bn_relu()
    t = convlens.capture(m, image(5))
    path = t.save(tmp_path / "t.npz")
    back = convlens.Trace.load(path)
    assert all(a.equals(b) for a, b in zip(t, back))


def test_a_pickled_stage_carries_its_computed_output():
    import pickle

    t = convlens.capture(conv_bn_relu(), image(7))
    back = pickle.loads(pickle.dumps(t["2"]))
    assert back.computed and back.equals(t["2"])


def test_every_capture_shows_the_model_as_it_is_at_the_call():
    m = conv_bn_relu()
    x = image(6)
    a = convlens.capture(m, x)
    b = convlens.capture(m, x)
    assert a["0"].weights["weight"] is not b["0"].weights["weight"]  # copied at each call
    assert not a["0"].weights["weight"].flags.writeable  # read-only
    before = a["0"].weights["weight"].copy()

    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m.train()
    m(torch.from_numpy(model_input(a))).sum().backward()
    opt.step()  # in-place updates: version counters move
    m.eval()
    c = convlens.capture(m, x)
    np.testing.assert_array_equal(a["0"].weights["weight"], before)  # the old trace kept its copy
    np.testing.assert_array_equal(c["0"].weights["weight"], m[0].weight.detach().numpy())
    assert not np.array_equal(c["0"].weights["weight"], before)

    m[3].weight = nn.Parameter(torch.full_like(m[3].weight, 0.25))  # a new tensor object
    d = convlens.capture(m, x)
    assert (d["3"].weights["weight"] == 0.25).all()

    old = d["6"].output.copy()
    with torch.no_grad():
        m[6].weight.data.fill_(2.0)  # through .data: no version bump, nothing to check...
    e = convlens.capture(m, x)  # ... and the very next capture shows it
    assert (e["6"].weights["weight"] == 2.0).all()
    with torch.no_grad():
        want = m(torch.from_numpy(model_input(e)))
    np.testing.assert_array_equal(e.output, want.numpy())
    np.testing.assert_array_equal(d["6"].output, old)  # the earlier trace kept its numbers


def test_allocator_setting_and_its_errors(monkeypatch):
    assert allocator.retain_freed_memory(0) is False
    assert allocator.allocator_status() == {"retain_mb": None, "reason": "turned off (0 MB)"}
    assert allocator.retain_freed_memory(64) is True  # this machine runs glibc
    assert allocator.allocator_status()["retain_mb"] == 64
    with pytest.raises(ConvlensError, match="whole number of megabytes"):
        allocator.retain_freed_memory(-1)

    monkeypatch.setattr(allocator, "_state", {"checked": False, "retain_mb": None, "reason": ""})
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    allocator.ensure_tuned()
    assert allocator.allocator_status() == {
        "retain_mb": None, "reason": "left alone: MALLOC_TRIM_THRESHOLD_ is set"}

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setattr(allocator, "_state", {"checked": False, "retain_mb": None, "reason": ""})
    monkeypatch.setenv("CONVLENS_RETAIN_MB", "lots")
    convlens.capture(conv_bn_relu(), image())  # a capture changes no process-wide setting
    assert allocator._state == {"checked": False, "retain_mb": None, "reason": ""}
    with pytest.raises(ConvlensError) as err:
        allocator.ensure_tuned()  # (the explicit opt-in reads the variable)
    assert "\n" not in str(err.value) and "CONVLENS_RETAIN_MB='lots'" in str(err.value)

    monkeypatch.setenv("CONVLENS_RETAIN_MB", "32")
    allocator.ensure_tuned()
    assert allocator.allocator_status() == {"retain_mb": 32, "reason": "applied"}
    allocator.retain_freed_memory(allocator.DEFAULT_RETAIN_MB)
