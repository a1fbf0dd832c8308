"""The public surface: pinned __all__, and `import convlens` stays light."""
import subprocess
import sys

import convlens

EXPECTED = {
    "__version__", "load_image", "cat", "digits", "as_batch", "resize", "Preprocess", "capture",
    "make_trace", "Trace", "Stage", "STAGE_KINDS", "build", "parse_spec", "load_model",
    "LoadedModel", "render", "ops", "compare", "ConvlensError", "ImageError", "ModelError",
    "CaptureError", "SpecError", "TraceError", "RenderError",
}


def test_public_names_are_pinned():
    assert set(convlens.__all__) == EXPECTED
    assert all(hasattr(convlens, name) for name in convlens.__all__)


def test_import_does_not_pull_in_torch_keras_or_matplotlib():
    code = ("import sys, convlens, convlens.render, convlens.ops;"
            "print(sorted(m for m in ('torch', 'keras', 'matplotlib', 'tensorflow')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_errors_are_also_builtin_exceptions():
    for cls in (convlens.ImageError, convlens.ModelError, convlens.CaptureError,
                convlens.SpecError, convlens.TraceError, convlens.RenderError):
        assert issubclass(cls, convlens.ConvlensError) and issubclass(cls, ValueError)
    assert str(convlens.SpecError("a\n  b")) == "a b"
