"""The atlas: what each channel of a network responds to across a whole folder of images.

    convlens.atlas.atlas("photos/", "zoo:efficientnet-lite0", k=9, out="atlas-out")

For every channel of a few stages: the top-k images by the channel's maximum (with where
the maximum is), its mean, std, dead fraction and a histogram of its responses, in
memory O(k x channels).  ``engine="local"`` (default) runs in this process; ``"dask"``
runs the same shard function on Dask distributed.  ``maximize=True`` adds each shown
channel's activation maximisation.  The :class:`AtlasResult` shows itself in a notebook;
:func:`load` reads an atlas folder back.  See docs/atlas.md.
"""
from __future__ import annotations

from convlens.atlas.api import AtlasResult, atlas, load
from convlens.atlas.engine import ModelSpec, Plan, default_stages, list_images, run_shard
from convlens.atlas.state import State, StageState, merge

__all__ = ["atlas", "load", "AtlasResult", "ModelSpec", "Plan", "State", "StageState", "merge",
           "run_shard", "list_images", "default_stages"]
