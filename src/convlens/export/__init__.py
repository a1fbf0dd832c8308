"""Export: a stage or a channel as PNG, a Trace as a folder of PNGs with a manifest (and
back), and the journey as an animated GIF.  (``Trace.save`` keeps the exact ``.npz``.)

    from convlens import export
    export.save_stage(trace["conv1"], "conv1.png")
    export.save_channel(trace["conv1"], 0, "conv1_c0.png")
    export.to_folder(trace, "trace_pngs/");  back = export.from_folder("trace_pngs/")
    export.journey_gif(trace, "journey.gif")
"""
from __future__ import annotations

from convlens.export.folder import FORMAT, MANIFEST, from_folder, to_folder
from convlens.export.gif import journey_frames, journey_gif
from convlens.export.png import save_channel, save_stage

__all__ = ["save_stage", "save_channel", "to_folder", "from_folder", "journey_gif",
           "journey_frames", "MANIFEST", "FORMAT"]
