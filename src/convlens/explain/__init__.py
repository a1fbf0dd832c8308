"""Teaching figures computed from real numbers: convolution and pooling animations, the
activation-function table, architecture diagrams, receptive fields and shape formulas.

Every number drawn comes from :mod:`convlens.ops`.  Real-model explanations take a
:class:`~convlens.trace.Trace`; the classic examples need nothing.  Figures are
:class:`~convlens.render.figure.Figure` objects; animations are :class:`Animation`
objects (``save_gif``, ``save_frames``, ``save_svg``, ``frame(i)``).
"""
from __future__ import annotations

from convlens.explain.activations import TABLE as ACTIVATION_TABLE
from convlens.explain.activations import activation_histogram, activation_table
from convlens.explain.architecture import architecture_blocks, architecture_diagram, architecture_svg
from convlens.explain.canvas import Animation, Canvas
from convlens.explain.conv import DEFAULT_INPUT, DEFAULT_KERNEL, conv_animation, conv_animation_from_stage
from convlens.explain.layers import REFERENCE_SPECS, LayerInfo, layer_infos
from convlens.explain.pool import DEFAULT_POOL_INPUT, pool_animation, pool_animation_from_stage
from convlens.explain.receptive import (
    ReceptiveField, receptive_field, receptive_field_figure, receptive_field_growth,
    receptive_field_growth_figure,
)
from convlens.explain.shapes import FORMULA, explain_shapes, size_formula

__all__ = [
    "ACTIVATION_TABLE", "Animation", "Canvas", "DEFAULT_INPUT", "DEFAULT_KERNEL",
    "DEFAULT_POOL_INPUT", "FORMULA", "LayerInfo", "REFERENCE_SPECS",
    "ReceptiveField", "activation_histogram", "activation_table", "architecture_blocks",
    "architecture_diagram", "architecture_svg", "conv_animation", "conv_animation_from_stage",
    "explain_shapes", "layer_infos", "pool_animation",
    "pool_animation_from_stage", "receptive_field", "receptive_field_figure",
    "receptive_field_growth", "receptive_field_growth_figure", "size_formula",
]
