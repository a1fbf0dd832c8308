"""How much a report holds: :class:`ReportOptions`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from convlens.errors import ConvlensError
from convlens.render.colormaps import CmapName, check_cmap
from convlens.render.scale import Norm, check_norm

__all__ = ["ReportOptions"]


@dataclass(frozen=True)
class ReportOptions:
    """The detail of a report; the defaults keep EfficientNet-Lite0 on one image under
    15 MB (see docs/report.md for measured sizes).

    ``max_channels``: channels embedded per stage (the rest are counted, not drawn);
    ``first``: of those, how many show before "show all"; ``thumb``: pixels per side a
    channel tile is stored at; ``layers``: which stages get a section (names, kinds or
    globs as in ``Trace.select``; None: all); ``images``: which batch items (None: all);
    ``norm``/``cmap``: colour scales; ``journey_tile``: panel size of the journey
    picture; ``explanations``: add the teaching figures that apply to this model.
    """

    max_channels: int = 16
    first: int = 8
    thumb: int = 64
    layers: str | Sequence[str] | None = None
    images: Sequence[int] | None = None
    norm: Norm = "stage"
    cmap: CmapName | None = None
    journey_tile: int = 96
    explanations: bool = True
    title: str | None = None

    def __post_init__(self) -> None:
        for name, lo, hi in (("max_channels", 1, 100_000), ("first", 1, 100_000),
                             ("thumb", 8, 512), ("journey_tile", 64, 512)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConvlensError(f"report option {name}={v!r} is not valid; expected an "
                                    f"integer in {lo}..{hi}")
        check_norm(self.norm)
        if self.cmap is not None:
            check_cmap(self.cmap)
