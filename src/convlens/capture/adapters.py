"""The one registry of model adapters: which framework a model object belongs to, how to
capture it, what input it expects, which files load into it and its gradient backend.

An adapter is declared with :func:`register` and named by dotted ``"module:attribute"``
references, so nothing here imports a framework: the module is imported the first time a
model of that framework is captured.  Adding a framework (ONNX, say) is one new module
with the functions below and one :func:`register` call at the end of this file.

The functions an adapter names:

* ``capture(model, x, keep, options) -> (stages, output, model_name, notices)``: run the
  model once on the channels-first batch ``x``; ``keep(name, kind)`` says which stages to
  keep; ``options`` is a :class:`~convlens.capture.options.CaptureOptions`.
* ``expected(model) -> (channels | None, (h, w) | None)``: what input the model declares.
* ``load(path) -> model``: read a model file, running no code from it.
* ``backend``: a :class:`~convlens.attribute.base.Backend` class (gradients), or ``None``.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable

from convlens.errors import ModelError

__all__ = ["Adapter", "register", "adapters", "adapter_for", "adapter_named", "for_file",
           "resolve"]


@dataclass(frozen=True)
class Adapter:
    name: str
    """Short name: ``Trace.framework``, ``--backend`` choices."""
    owns: Callable[[Any], bool]
    """Does this object belong to the adapter?  Must not import a framework."""
    capture: str
    expected: str
    backend: str | None = None
    load: str | None = None
    suffixes: tuple[str, ...] = ()
    """Model-file suffixes ``load`` reads (lower case, with the dot)."""
    files: str = ""
    """One line for ``convlens models``: the files it loads and how to write one."""
    extra: str = ""
    """The pip extra that installs the framework."""
    format: str = ""
    """What its files are, in a few words (the explorer's upload list)."""
    runs_file_code: bool = False
    """Does running a model loaded from its files execute code the file carries
    (TorchScript)?  Such formats are never accepted as uploads by the explorer."""

    def function(self, role: str) -> Callable[..., Any]:
        ref = getattr(self, role)
        if ref is None:
            raise ModelError(f"{self.name} models have no {role} in convlens; expected a "
                             f"model of a framework that has one")
        return resolve(ref)


_ADAPTERS: list[Adapter] = []


def register(adapter: Adapter) -> Adapter:
    """Add ``adapter``; the first registered adapter that owns a model wins."""
    if any(a.name == adapter.name for a in _ADAPTERS):
        raise ValueError(f"an adapter named {adapter.name!r} is already registered")
    _ADAPTERS.append(adapter)
    return adapter


def adapters() -> tuple[Adapter, ...]:
    return tuple(_ADAPTERS)


def resolve(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def adapter_for(model: Any) -> Adapter:
    """The adapter that owns ``model``; a one-line ModelError for anything else."""
    for a in _ADAPTERS:
        if a.owns(model):
            return a
    kinds = ", ".join(a.name for a in _ADAPTERS)
    raise ModelError(
        f"cannot capture a {type(model).__module__}.{type(model).__name__}; expected a model "
        f"of one of: {kinds} (a torch.nn.Module, a keras.Model...); load files with "
        "convlens.load_model"
    )


def adapter_named(name: str) -> Adapter:
    for a in _ADAPTERS:
        if a.name == name:
            return a
    raise ModelError(f"no adapter named {name!r}; expected one of "
                     f"{', '.join(a.name for a in _ADAPTERS)}")


def for_file(suffix: str) -> Adapter | None:
    """The adapter that loads files ending in ``suffix`` (``".onnx"``), if any."""
    for a in _ADAPTERS:
        if suffix.lower() in a.suffixes:
            return a
    return None


# -- the adapters --------------------------------------------------------------------
def _is_keras(model: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Layer)


def _is_torchscript(model: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.jit.ScriptModule)


def _is_exported(model: Any) -> bool:
    export = sys.modules.get("torch.export")
    return export is not None and isinstance(model, export.ExportedProgram)


def _is_torch(model: Any) -> bool:
    torch = sys.modules.get("torch")
    # Keras layers are also nn.Modules on the torch backend: the Keras adapter owns them
    return torch is not None and isinstance(model, torch.nn.Module) and not _is_keras(model)


register(Adapter(
    name="keras", owns=_is_keras,
    capture="convlens.capture.keras:capture_keras",
    expected="convlens.capture.keras:expected_input",
    backend="convlens.attribute.keras_backend:KerasBackend",
    load="convlens.capture.files:load_keras", suffixes=(".keras", ".h5"),
    files=".keras / .h5 (model.save(...)), loaded in Keras safe mode: no Python code from "
          "the file runs", extra="keras", format="Keras (loaded in safe mode)"))
register(Adapter(
    name="torchscript", owns=_is_torchscript,
    capture="convlens.capture.torchscript:capture_torchscript",
    expected="convlens.capture.torchscript:expected_input",
    load="convlens.capture.torchscript:load_torchscript", suffixes=(".pt", ".pth", ".ts"),
    files=".pt / .pth / .ts TorchScript, scripted or traced (torch.jit.script(model).save("
          "path)); pickled torch.save(model) files are refused", extra="torch",
    format="TorchScript", runs_file_code=True))
register(Adapter(
    name="export", owns=_is_exported,
    capture="convlens.capture.exported:capture_exported",
    expected="convlens.capture.exported:expected_input",
    load="convlens.capture.exported:load_exported", suffixes=(".pt2",),
    files=".pt2 torch.export programs (torch.export.save(torch.export.export(model, (x,)), "
          "path))", extra="torch", format="torch.export program"))
register(Adapter(
    name="torch", owns=_is_torch,
    capture="convlens.capture.torch:capture_torch",
    expected="convlens.capture.torch:expected_input",
    backend="convlens.attribute.torch_backend:TorchBackend", extra="torch"))
register(Adapter(
    name="onnx",  # (an OnnxModel exists only once its module is imported)
    owns=lambda m: isinstance(m, getattr(sys.modules.get("convlens.capture.onnx_model"),
                                         "OnnxModel", ())),
    capture="convlens.capture.onnx:capture_onnx", expected="convlens.capture.onnx:expected_input",
    backend=None, load="convlens.capture.onnx:load_onnx", suffixes=(".onnx",),
    files=".onnx (torch.onnx.export(model, x, path)), run with onnxruntime; external data only "
          "from the model's folder", extra="onnx", format="ONNX"))
