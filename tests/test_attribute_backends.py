"""The same functions on PyTorch and Keras models: same stage names, same maps; the
user's model is exactly as it was afterwards."""
import numpy as np
import pytest
import torch
from torch import nn

import convlens
from convlens import attribute
from convlens.attribute.base import LOGITS, channel_seed, subject
from convlens.nets import zoo

keras = pytest.importorskip("keras")  # a dev dependency: always installed by the test setup
L = keras.layers


@pytest.fixture(scope="module")
def lenets():
    return zoo.load("lenet"), zoo.load("lenet", backend="keras")


@pytest.fixture(scope="module")
def digits():
    return convlens.digits(3)[0]


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
@pytest.mark.parametrize("stage", ["conv1", "pool1", "relu2"])
def test_torch_and_keras_lenet_give_the_same_cam(lenets, digits, method, stage):
    t, k = (attribute.cam(zm, digits, stage, method=method) for zm in lenets)
    assert t.framework == "torch" and k.framework == "keras"
    assert t.targets == k.targets
    np.testing.assert_allclose(t.scores, k.scores, rtol=1e-5)
    assert t.maps.max() > 0
    np.testing.assert_allclose(t.maps, k.maps, atol=1e-5 * float(t.maps.max()), rtol=0)


@pytest.mark.parametrize("fn", [attribute.saliency, attribute.gradient_x_input])
def test_torch_and_keras_lenet_give_the_same_gradient_maps(lenets, digits, fn):
    t, k = (fn(zm, digits, target=[3, 1, 4]) for zm in lenets)
    assert t.targets == k.targets == [3, 1, 4]
    np.testing.assert_allclose(t.maps, k.maps, atol=1e-5 * float(np.abs(t.maps).max()), rtol=0)


def test_torch_and_keras_maximisation_agree(lenets):
    kw = dict(size=32, steps=4, seed=2, progress=None)
    t, k = (attribute.maximize(zm, "relu2", [5, 9], **kw) for zm in lenets)
    np.testing.assert_allclose(t.start, k.start, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(t.images, k.images, atol=1e-4)


def _keras_branchy():
    inp = keras.Input((10, 10, 3))
    c1 = L.Conv2D(4, 3, activation="relu", name="c1")(inp)
    c2 = L.Conv2D(4, 3, padding="same", name="c2")(c1)
    add = L.Add(name="add")([c1, c2])
    act = L.Activation("relu", name="act")(add)
    pool = L.GlobalAveragePooling2D(name="gap")(act)
    out = L.Dense(3, activation="softmax", name="fc")(pool)
    model = keras.Model(inp, out, name="branchy")
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def test_keras_stage_names_match_capture_and_logits_skip_the_fused_softmax():
    model = _keras_branchy()
    img = np.random.default_rng(1).uniform(0, 1, (10, 10, 3)).astype(np.float32)
    trace = convlens.capture(model, img)
    sub = subject(model)
    _, x = sub.prepare(img)
    assert [s.name for s in sub.backend.stages(x)] == trace.names
    assert trace.names[:3] == ["c1", "c1.relu", "c2"]
    p = sub.backend.run(x, keep=["c1", "add"], objective=(LOGITS, lambda v: np.ones_like(v)))
    assert p.objective_stage == "fc"  # the pre-softmax logits, not the probabilities
    np.testing.assert_allclose(p.values["fc"], trace["fc"].output, rtol=1e-5)
    np.testing.assert_allclose(p.values["c1"], trace["c1"].output, rtol=1e-5)
    # Grad-CAM at the pre-activation and at the fused ReLU differ (negative activations,
    # masked gradients); Layer-CAM is the same at both, as its formula says
    pre, post = (attribute.gradcam(model, img, s, target=0) for s in ("c1", "c1.relu"))
    assert not np.allclose(pre.maps, post.maps)
    pre, post = (attribute.layercam(model, img, s, target=0) for s in ("c1", "c1.relu"))
    np.testing.assert_allclose(pre.maps, post.maps, rtol=1e-6)


def test_torch_stage_names_match_capture(lenets, digits):
    from models import CalledTwice, InplaceResidual, ramp_image

    zm = lenets[0]
    trace = convlens.capture(zm.model, digits, preprocess=zm.preprocess)
    sub = subject(zm)
    _, x = sub.prepare(digits)
    assert [s.name for s in sub.backend.stages(x)] == trace.names
    seen = []
    for model in (CalledTwice(), InplaceResidual()):
        trace = convlens.capture(model, ramp_image())
        sub = subject(model)
        _, x = sub.prepare(ramp_image())
        names = [s.name for s in sub.backend.stages(x)]
        assert names == [n for n in trace.names if n != "output"]
        seen += names
    assert "act#2" in seen  # a module called twice is two stages, named as capture names them


def test_stopping_early_reads_the_same_objective(lenets, digits):
    for zm in lenets:
        sub = subject(zm)
        _, x = sub.prepare(digits)
        full = sub.backend.run(x, objective=("conv2", channel_seed([1, 2, 3])), input_grad=True)
        early = sub.backend.run(x, objective=("conv2", channel_seed([1, 2, 3])), input_grad=True,
                                stop_early=True)
        assert [s.name for s in early.stages] == ["conv1", "relu1", "pool1", "conv2"]
        np.testing.assert_array_equal(full.objective, early.objective)
        np.testing.assert_array_equal(full.grads["input"], early.grads["input"])


# -- the user's model is unchanged ------------------------------------------------------
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.relu(self.bn(self.conv(x)))
        return self.fc(self.drop(self.pool(y).flatten(1)))


def _snapshot_torch(model):
    return ({n: m.training for n, m in model.named_modules()},
            {n: p.requires_grad for n, p in model.named_parameters()},
            {k: v.clone() for k, v in model.state_dict().items()})


def test_torch_model_is_unchanged_by_every_function():
    model = _Net()
    model.train()            # the user's mode: batch norm would update its statistics
    model.bn.eval()          # ... and a mix of modes
    model.conv.bias.requires_grad_(False)
    before = _snapshot_torch(model)
    img = np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    a = attribute.gradcam(model, img, "relu")        # ReLU(inplace) right after the stage...
    attribute.gradcam(model, img, "bn")               # ... it overwrites: the copy protects it
    attribute.layercam(model, img)
    attribute.smoothgrad(model, img, samples=2)
    attribute.gradient_x_input(model, img)
    attribute.maximize(model, "relu", [1], size=8, steps=2, progress=None)
    attribute.sanity(model, img, "bn", steps=2)
    attribute.top_stimuli(model, img, "bn", 0, k=2)
    after = _snapshot_torch(model)
    assert after[0] == before[0] and after[1] == before[1]
    assert all(torch.equal(before[2][k], after[2][k]) for k in before[2])
    assert all(p.grad is None for p in model.parameters())
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
    # in eval mode for the pass (dropout off, running statistics used): deterministic
    b = attribute.gradcam(model, img, "relu")
    np.testing.assert_array_equal(a.maps, b.maps)


def test_bn_stage_is_not_overwritten_by_the_inplace_relu():
    model = _Net().eval()
    img = np.random.default_rng(0).uniform(0, 1, (1, 8, 8, 3)).astype(np.float32)
    a = attribute.layercam(model, img, "bn", target=0)
    trace = convlens.capture(model, img)
    sub = subject(model)
    _, x = sub.prepare(img)
    p = sub.backend.run(x, keep=["bn"], objective=(LOGITS, lambda v: np.eye(3)[[0]]))
    np.testing.assert_allclose(p.values["bn"], trace["bn"].output, rtol=1e-6)
    assert p.values["bn"].min() < 0  # the pre-ReLU values, negatives included
    assert a.maps.shape == (1, 8, 8)


def test_keras_model_is_unchanged(lenets, digits):
    model = _keras_branchy()
    weights = [w.copy() for w in model.get_weights()]
    acts = {layer.name: getattr(layer, "activation", None) for layer in model.layers}
    img = np.random.default_rng(1).uniform(0, 1, (2, 10, 10, 3)).astype(np.float32)
    attribute.gradcam(model, img, "c1.relu")
    attribute.saliency(model, img)
    attribute.maximize(model, "c2", [0], steps=2, progress=None)
    attribute.sanity(model, img, "add", steps=2)
    for w0, w1 in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    for layer in model.layers:
        assert "call" not in layer.__dict__
        assert getattr(layer, "activation", None) is acts[layer.name]
    assert all(v.value.grad is None for v in model.weights)
