"""capture() on PyTorch models: exact feature maps, execution order, the model left untouched."""
import numpy as np
import pytest
import torch
from torch import nn

import convlens
from convlens.errors import CaptureError, ModelError, TraceError
from models import CalledTwice, InplaceResidual, box_sum_net, ramp_image

A = (np.arange(16, dtype=np.float32) / 16).reshape(4, 4)


def test_hand_set_network_gives_exact_maps():
    trace = convlens.capture(box_sum_net(), ramp_image())
    assert trace.names == ["0", "1", "2"]
    assert [s.kind for s in trace] == ["conv", "activation", "pool"]
    conv = trace["0"].output[0]
    np.testing.assert_array_equal(conv[0], [[-0.375, -0.125, 0.125], [0.625, 0.875, 1.125],
                                            [1.625, 1.875, 2.125]])
    np.testing.assert_array_equal(conv[1], [[-1, -15 / 16, -14 / 16], [-12 / 16, -11 / 16, -10 / 16],
                                            [-8 / 16, -7 / 16, -6 / 16]])
    np.testing.assert_array_equal(trace["1"].output[0, 0], np.maximum(conv[0], 0))
    np.testing.assert_array_equal(trace["2"].output[0, 0], [[0.875, 1.125], [1.875, 2.125]])
    np.testing.assert_array_equal(trace["2"].output[0, 1], np.zeros((2, 2)))
    assert trace["0"].params == {"kernel_size": (2, 2), "stride": (1, 1), "padding": (0, 0),
                                 "dilation": (1, 1), "groups": 1, "in_channels": 3,
                                 "out_channels": 2, "bias": True}
    assert trace["2"].params["mode"] == "max" and trace["2"].params["kernel_size"] == 2
    assert trace["0"].weights["weight"].shape == (2, 3, 2, 2)
    np.testing.assert_array_equal(trace["0"].weights["bias"], [-1, 0])
    assert [s.source for s in trace] == [-1, 0, 1]
    assert trace.preprocessing == [{"op": "layout", "to": "NCHW"}]


def test_stages_match_numpy_reference_ops():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2), nn.Tanh(),
                          nn.AvgPool2d(2), nn.MaxPool2d(3, stride=2, padding=1))
    trace = convlens.capture(model, convlens.cat()[:60, :80])
    x = trace.model_input
    for st in trace:
        p = st.params
        if st.kind == "conv":
            x = convlens.ops.conv2d(x, st.weights["weight"], st.weights["bias"], p["stride"],
                                    p["padding"], p["dilation"], p["groups"])
        elif st.kind == "activation":
            x = convlens.ops.activation(x, p["function"])
        else:
            x = convlens.ops.pool2d(x, p["kernel_size"], p["stride"], p["padding"], p["mode"])
        np.testing.assert_allclose(st.output, x, atol=2e-5, err_msg=st.name)


def test_inplace_relu_does_not_change_the_stored_conv_output():
    model = box_sum_net()
    model[1] = nn.ReLU(inplace=True)
    trace = convlens.capture(model, ramp_image())
    assert trace["0"].output.min() == -1.0  # the pre-ReLU negatives are still there
    assert trace["1"].output.min() == 0.0
    assert trace["1"].params["inplace"] is True


def test_inplace_op_inside_forward_is_detected():
    img = ramp_image(2, 2)
    trace = convlens.capture(InplaceResidual(), img)
    a = np.arange(4, dtype=np.float32).reshape(2, 2) / 16
    np.testing.assert_allclose(trace["relu"].output[0, 0], 0.3 - a, atol=1e-7)
    np.testing.assert_array_equal(trace["relu"].output[0, 1:], 0)
    # `+ 0.3` and `y += x` are ops between modules: stages of their own, each exact
    # although `y += x` overwrote the ReLU's output in place
    assert trace.names == ["conv", "add", "relu", "add_1"]
    assert trace["add"].sources == (0,) and trace["add"].params["scalar"] == 0.3
    np.testing.assert_array_equal(trace["add"].output, trace["conv"].output + np.float32(0.3))
    assert trace["add_1"].sources == (2, -1) and trace["add_1"].params["inplace"] is True
    np.testing.assert_array_equal(trace["add_1"].output, trace["relu"].output + trace.model_input)
    np.testing.assert_allclose(trace.output[0, 0], np.full((2, 2), 0.3), atol=1e-7)
    np.testing.assert_allclose(trace.output[0, 2], 1 - a, atol=1e-7)


def test_module_called_twice_and_nested_containers():
    trace = convlens.capture(CalledTwice(), ramp_image(2, 2))
    # `y - 0.25` ran in the model's own forward: a stage named after the op
    assert trace.names == ["body.0.0", "act", "sub", "act#2"]
    np.testing.assert_array_equal(trace["body.0.0"].output[0, 1], [[1, 0.875], [0.75, 0.625]])
    np.testing.assert_array_equal(trace["act"].output[0, 0], 0)
    np.testing.assert_array_equal(trace["sub"].output, trace["act"].output - np.float32(0.25))
    np.testing.assert_array_equal(trace["act#2"].output[0, 1], [[0.75, 0.625], [0.5, 0.375]])
    assert [s.sources for s in trace] == [(-1,), (0,), (1,), (2,)]


def test_last_stage_equals_model_output():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            return self.conv(x) * 2

    model = Scaled().eval()
    img = convlens.cat()[:20, :30]
    trace = convlens.capture(model, img)
    with torch.no_grad():
        ref = model(torch.from_numpy(trace.model_input)).numpy()
    assert trace.names == ["conv", "mul"]  # `* 2` is a stage: the model's output
    assert trace["mul"].kind == "merge" and trace["mul"].params == {"operation": "mul", "scalar": 2.0}
    np.testing.assert_array_equal(trace.output, ref)
    seq = box_sum_net()
    trace = convlens.capture(seq, ramp_image())
    assert trace.names[-1] == "2"  # the last module produced the output: no extra stage
    with torch.no_grad():
        np.testing.assert_array_equal(trace.output, seq(torch.from_numpy(trace.model_input)).numpy())


def test_model_comes_back_exactly_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                          nn.Dropout(0.5), nn.Conv2d(4, 2, 1))
    model.train()
    model[1].eval()
    model[4].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    trace = convlens.capture(model, convlens.cat()[:30, :30])
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == grads
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats untouched
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    # captured in eval mode: dropout is the identity, a pass-through and not a stage
    assert trace.names == ["0", "1", "2", "4"] and trace["4"].sources == (2,)


def test_layers_selects_by_kind_name_and_glob():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(2, 2, 3), nn.ReLU()),
                          nn.MaxPool2d(2))
    img = convlens.cat()[:20, :20]
    full = convlens.capture(model, img)
    assert convlens.capture(model, img, layers="conv").names == ["0", "2.0"]
    sel = convlens.capture(model, img, layers=["2.*", "pool"])
    assert sel.names == ["2.0", "2.1", "3"]
    np.testing.assert_array_equal(sel["2.1"].output, full["2.1"].output)
    assert sel["2.0"].source is None and sel["2.1"].source == 0  # indices among kept stages
    with pytest.raises(CaptureError, match="'nope' matches no stage.*0, 1, 2.0"):
        convlens.capture(model, img, layers="nope")


def test_batch_gives_the_same_stages_as_single_images():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 3, 3), nn.ReLU(), nn.MaxPool2d(2))
    a, b = convlens.cat()[:40, :50], convlens.cat()[100:140, 200:250]
    both = convlens.capture(model, [a, b])
    assert both.batch_size == 2
    for i, img in enumerate((a, b)):
        one = convlens.capture(model, img)
        for s1, s2 in zip(one, both):
            np.testing.assert_allclose(s2.output[i], s1.output[0], atol=1e-6)


def test_one_channel_model_gets_greyscale_input_and_says_so():
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    img = ramp_image(2, 2)
    trace = convlens.capture(model, img)
    assert trace.preprocessing[0]["op"] == "grayscale"
    expected = img @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(trace.output[0, 0], expected, atol=1e-6)


def test_bad_input_is_a_one_line_capture_error():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 8 * 8, 3))
    with pytest.raises(CaptureError) as err:
        convlens.capture(model, convlens.cat()[:20, :20])
    assert "\n" not in str(err.value) and "(1, 3, 20, 20)" in str(err.value)
    with pytest.raises(CaptureError, match="4-channel input"):
        convlens.capture(nn.Conv2d(4, 1, 1), convlens.cat())
    with pytest.raises(ModelError, match="expected a model of one of: keras, torch"):
        convlens.capture(object(), convlens.cat())


def test_torchscript_sequential_steps_through(tmp_path):
    model = box_sum_net()
    path = tmp_path / "m.pt"
    torch.jit.script(model).save(str(path))
    loaded = convlens.load_model(path)
    trace = convlens.capture(loaded.model, ramp_image())
    ref = convlens.capture(model, ramp_image())
    assert trace.names == ref.names and [s.kind for s in trace] == [s.kind for s in ref]
    for s1, s2 in zip(trace, ref):
        np.testing.assert_array_equal(s1.output, s2.output)
    assert trace["0"].params == ref["0"].params


def test_trace_round_trip_is_exact(tmp_path):
    trace = convlens.capture(box_sum_net(), [ramp_image(), ramp_image()[::-1].copy()],
                             meta={"note": "hi", "seq": [1, 2]})
    path = trace.save(tmp_path / "t.npz")
    back = convlens.Trace.load(path)
    assert back.equals(trace)
    assert back["0"].params == trace["0"].params and back.meta == {"note": "hi", "seq": (1, 2)}
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(TraceError, match="not a convlens trace"):
        convlens.Trace.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(2))
    with pytest.raises(TraceError, match="damaged or foreign"):
        convlens.Trace.load(tmp_path / "foreign.npz")
