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


# the subpackages' public names, pinned like the top level's
SUBPACKAGES = {
    'analysis': ['StatsTable', 'compare', 'describe_stage', 'trace_predictions', 'trace_stats', 'with_predictions'],
    'atlas': ['AtlasResult', 'ModelSpec', 'Plan', 'StageState', 'State', 'atlas', 'default_stages', 'list_images', 'load', 'merge', 'run_shard'],
    'attribute': ['Attribution', 'Maximization', 'Method', 'SanityReport', 'SanityStep', 'Stimulus', 'TopStimuli', 'attribute', 'cam', 'gradcam', 'gradcam_plus_plus', 'gradient_x_input', 'layercam', 'mass_fraction', 'maximize', 'maximize_figure', 'method_named', 'methods', 'overlay', 'overlay_map', 'register_method', 'saliency', 'sanity', 'sanity_figure', 'smoothgrad', 'spearman', 'ssim', 'stimuli_figure', 'top_stimuli'],
    'capture': ['capture', 'default_preprocess', 'expected_input', 'framework_of'],
    'cli': ['command_modules', 'main'],
    'demo': ['run_demo'],
    'display': ['ALL_CHANNELS', 'CSS', 'Explorer', 'StaticView', 'channel_gallery', 'data_uri', 'explore', 'figure_html', 'heat_tile_png', 'journey_strip', 'png_bytes', 'stage_html', 'stage_png', 'trace_html', 'trace_png'],
    'explain': ['ACTIVATION_TABLE', 'Animation', 'Canvas', 'DEFAULT_INPUT', 'DEFAULT_KERNEL', 'DEFAULT_POOL_INPUT', 'FORMULA', 'LayerInfo', 'REFERENCE_SPECS', 'ReceptiveField', 'activation_histogram', 'activation_table', 'architecture_blocks', 'architecture_diagram', 'architecture_svg', 'conv_animation', 'conv_animation_from_stage', 'explain_shapes', 'layer_infos', 'pool_animation', 'pool_animation_from_stage', 'receptive_field', 'receptive_field_figure', 'receptive_field_growth', 'receptive_field_growth_figure', 'size_formula'],
    'export': ['FORMAT', 'MANIFEST', 'from_folder', 'journey_frames', 'journey_gif', 'save_channel', 'save_stage', 'to_folder'],
    'nets': ['BACKENDS', 'Backend', 'NetSpec', 'build', 'parse_spec'],
    'render': ['CMAPS', 'CmapName', 'DEFAULT_DIVERGING', 'DEFAULT_SEQUENTIAL', 'DIVERGING', 'Figure', 'NORMS', 'Norm', 'SEQUENTIAL', 'Scale', 'bars', 'batch', 'filters', 'global_range', 'grid', 'heatmap', 'journey', 'lut', 'predictions', 'rgb', 'save_png', 'stage', 'upscale'],
    'report': ['ReportOptions', 'report_html', 'write_report'],
    'server': ['create_app'],
}


def test_subpackage_public_names_are_pinned():
    import importlib

    for name, expected in SUBPACKAGES.items():
        module = importlib.import_module(f"convlens.{name}")
        assert sorted(module.__all__) == expected, name
        assert all(hasattr(module, n) for n in module.__all__), name
