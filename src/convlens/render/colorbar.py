"""Colour bars (a gradient with the real values at its ends and centre) and the RGB legend."""
from __future__ import annotations

import numpy as np
from PIL import Image

from convlens.render.colormaps import lut
from convlens.render.layout import Block, vstack
from convlens.render.scale import Scale
from convlens.render.text import (
    BACKGROUND, INK, MUTED, SMALL, line_height, stamp, text_image, text_width, wrap_text,
)

__all__ = ["colorbar", "legend"]


def colorbar(
    scale: Scale, length: int, thickness: int = 10, sigma_units: bool = False,
    caption: str | None = None, size: int = SMALL,
) -> tuple[Block, list[str]]:
    """A horizontal colour bar ``length`` pixels long with tick labels under it.

    Returns the block and the tick labels drawn (the real values, e.g.
    ``["-2", "0", "2"]``; ``sigma_units`` labels a standardised bar in sd).  A
    degenerate range (one value) is drawn as a single swatch labelled ``constant``.
    """
    length = max(16, int(length))
    ticks = scale.ticks(sigma_units=sigma_units)
    labels = [t for _, t in ticks]
    widths = [text_width(t, size) for t in labels]
    width = max(length, sum(widths) + 8 * (len(widths) - 1))
    lh = line_height(size)
    img = np.full((thickness + 3 + lh, width, 3), BACKGROUND, np.uint8)  # drawn as arrays:
    if len(ticks) == 1:                                                    # labels are cached
        swatch = scale.colorize(np.array([ticks[0][0]]))[0]
        bar = np.broadcast_to(swatch, (thickness, length, 3))
    else:
        idx = np.floor((np.arange(length) + 0.5) / length * 256).astype(np.int64).clip(0, 255)
        bar = np.broadcast_to(lut(scale.cmap)[idx], (thickness, length, 3))
    x0 = (width - length) // 2
    img[:thickness, x0:x0 + length] = bar
    img[[0, thickness - 1], x0:x0 + length] = _OUTLINE  # the 1-pixel outline
    img[:thickness, [x0, x0 + length - 1]] = _OUTLINE
    if len(ticks) == 1:
        stamp(img, (width - widths[0]) // 2, thickness + 3, labels[0], size, INK)
        return _captioned(Block(Image.fromarray(img)), caption, width, size), labels
    placed: list[tuple[int, int]] = []
    order = [0, len(ticks) - 1] + list(range(1, len(ticks) - 1))  # ends first, then centre
    for i in order:
        value, text = ticks[i]
        u = float(scale.to_unit(np.array(value)))
        tx = x0 + int(round(u * (length - 1)))
        w = widths[i]
        lx = 0 if i == 0 else (width - w if i == len(ticks) - 1 else tx - w // 2)
        lx = min(max(lx, 0), width - w)
        if any(lx < b + 4 and lx + w + 4 > a for a, b in placed):
            labels[i] = ""  # would overlap an end label: leave the centre unlabelled
            continue
        placed.append((lx, lx + w))
        if 0 <= tx < width:
            img[thickness:thickness + 3, tx] = INK  # the tick
        stamp(img, lx, thickness + 3, text, size, INK)
    labels = [t for t in labels if t]
    return _captioned(Block(Image.fromarray(img)), caption, width, size), labels


_OUTLINE = (150, 150, 150)


def _captioned(block: Block, caption: str | None, width: int, size: int) -> Block:
    return vstack([block, legend([caption], width, size)], gap=1) if caption else block


def legend(lines: list[str], width: int, size: int = SMALL) -> Block:
    """Lines of small muted text, each wrapped to ``width``."""
    wrapped = [w for t in lines for w in wrap_text(t, width, size)]
    return vstack([text_image(t, size, MUTED, width=width) for t in wrapped], gap=1)
