"""``convlens demo``: the 2017 tutorial's experiments (:mod:`.tutorial`) and the sections
that follow them — the teaching figures (:mod:`.explain`), trained networks
(:mod:`.trained`), attribution (:mod:`.attribute`) — and the demo's report (:mod:`.report`).
"""
from __future__ import annotations

from convlens.demo.tutorial import run_demo

__all__ = ["run_demo"]
