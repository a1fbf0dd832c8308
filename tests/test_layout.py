"""The package's shape: the core imports none of its consumers, commands and the two
extension points (adapters, attribution methods) are each one registry that everything
listing them reads."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import convlens
from convlens.capture import adapters as A
from convlens.cli import command_modules, main
from convlens.trace import Stage

PKG = Path(convlens.__file__).parent
CORE = {"errors", "images", "ops", "trace", "params", "preprocess"}


def _imports(path: Path) -> set[str]:
    """Every ``convlens.*`` module a file imports, at any depth (function-level too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("convlens"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("convlens"))
    return out


def test_core_imports_none_of_its_consumers():
    for name in CORE:
        bad = {m for m in _imports(PKG / f"{name}.py")
               if m.split(".")[1] not in CORE and m != "convlens"}
        assert not bad, f"convlens.{name} imports {sorted(bad)}"


def test_top_level_holds_the_core_and_the_entry_points_only():
    loose = sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")
    assert loose == sorted(CORE | {"digits", "labels", "pipeline"})
    packages = sorted(p.name for p in PKG.iterdir() if (p / "__init__.py").is_file())
    assert packages == ["analysis", "atlas", "attribute", "capture", "cli", "demo", "display",
                        "explain", "export", "nets", "render", "report", "server"]


def test_every_command_is_a_module_of_cli_and_shares_its_options(capsys):
    names = [m.__name__.rsplit(".", 1)[1] for m in command_modules()]
    files = sorted(p.stem for p in (PKG / "cli").glob("*.py")
                   if not p.stem.startswith("_") and p.stem != "common")
    assert sorted(names) == files
    assert names[:2] == ["demo", "run"]
    # -o/--out is declared in one place: no command module spells it out itself
    for path in (PKG / "cli").glob("*.py"):
        if path.stem != "common":
            assert '"--out"' not in path.read_text(), path.name
            assert '"--model"' not in path.read_text(), path.name


# -- attribution methods: one registry ------------------------------------------------
def test_a_registered_method_reaches_every_list(monkeypatch):
    from convlens import attribute
    from convlens.attribute import registry as M
    from convlens.attribute.sanity import sanity_methods
    from convlens.cli.attribute import method_choices

    calls = []

    def half_saliency(model, images, stage=None, target=None, *, preprocess=None):
        calls.append(stage)
        a = attribute.saliency(model, images, target, preprocess=preprocess)
        a.maps = a.maps / 2
        a.method = "half"
        return a

    monkeypatch.setitem(M._METHODS, "half", M.Method("half", "Half saliency", "gradient",
                                                      half_saliency))
    assert "half" in method_choices() and "half" in sanity_methods()
    from attribute_models import quadrant_net  # a 2-class net with hand-set weights

    img = np.random.default_rng(1).uniform(0.2, 1.0, (16, 20, 3)).astype(np.float32)
    a = attribute.attribute(quadrant_net(), img, "half")
    ref = attribute.saliency(quadrant_net(), img)
    np.testing.assert_array_equal(a.maps, ref.maps / 2)
    assert attribute.overlay(a).meta["title"].startswith("Half saliency at the input")
    assert calls == [None]


def test_unknown_method_suggests_the_nearest():
    from convlens import attribute

    with pytest.raises(convlens.ModelError, match=r"'saliancy'.*did you mean saliency"):
        attribute.attribute(object(), np.zeros((4, 4, 3)), "saliancy")


# -- adapters: one registry ---------------------------------------------------------
class ListNet:
    """A "framework" of its own: a list of (name, numpy function) layers."""

    def __init__(self, *layers):
        self.layers = layers


def _capture(model, x, keep, options):
    stages, value = [], x
    for i, (name, fn) in enumerate(model.layers):
        value = fn(value)
        stages.append(Stage(index=i, name=name, kind="activation", op=name,
                            output=value.astype(np.float32), source=i - 1, sources=(i - 1,)))
    return stages, value.astype(np.float32), "listnet", []


def _expected(model):
    return 3, None


def _load(path):
    n = int(Path(path).read_text())
    return ListNet(*[(f"double{k}", lambda v: v * 2) for k in range(n)])


@pytest.fixture
def listnet_adapter(monkeypatch):
    me = sys.modules[__name__].__name__
    adapter = A.Adapter(name="listnet", owns=lambda m: isinstance(m, ListNet),
                        capture=f"{me}:_capture", expected=f"{me}:_expected",
                        load=f"{me}:_load", suffixes=(".listnet",),
                        files=".listnet: the number of doubling layers", extra="listnet")
    monkeypatch.setattr(A, "_ADAPTERS", [*A._ADAPTERS, adapter])
    return adapter


def test_a_registered_adapter_captures_loads_and_is_listed(listnet_adapter, tmp_path, capsys):
    img = np.full((4, 5, 3), 0.25, np.float32)
    trace = convlens.capture(ListNet(("relu", lambda v: np.maximum(v - 0.5, 0)),
                                     ("neg", lambda v: -v)), img)
    assert trace.framework == "listnet" and trace.names == ["relu", "neg"]
    np.testing.assert_array_equal(trace["relu"].output, np.zeros((1, 3, 4, 5)))
    (tmp_path / "net.listnet").write_text("3")
    loaded = convlens.load_model(tmp_path / "net.listnet")
    t = convlens.capture(loaded.model, img)
    np.testing.assert_array_equal(t.stages[-1].output, np.full((1, 3, 4, 5), 2.0))
    assert main(["models"]) == 0
    assert ".listnet" in capsys.readouterr().out
    with pytest.raises(convlens.ModelError, match="listnet models have no backend"):
        convlens.attribute.gradcam(loaded.model, img)


def test_models_lists_every_way_to_bring_a_model(capsys):
    from convlens.capture.adapters import adapters
    from convlens.nets import zoo

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for a in adapters():
        assert all(s in out for s in a.suffixes)
    assert all(f"zoo:{n}" in out for n in zoo.available())
    assert "MODULE:CALLABLE" in out and "--weights" in out and "--trust-model-code" in out


def test_the_explorer_reads_its_upload_formats_from_the_registry():
    pytest.importorskip("fastapi")
    from convlens.server.state import UPLOAD_FORMATS, _upload_formats

    safe = sorted(s for a in A.adapters() if a.load and not a.runs_file_code for s in a.suffixes)
    assert list(UPLOAD_FORMATS) == safe == [".h5", ".keras", ".onnx", ".pt2"]
    assert ".pt" not in UPLOAD_FORMATS  # TorchScript runs code from its file
    adapter = A.Adapter(name="x", owns=lambda m: False, capture="m:c", expected="m:e",
                        load="m:l", suffixes=(".xnet",), format="X nets")
    A._ADAPTERS.append(adapter)
    try:
        assert _upload_formats()[".xnet"] == "X nets"
    finally:
        A._ADAPTERS.remove(adapter)
