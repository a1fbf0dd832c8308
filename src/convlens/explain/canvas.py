"""A tiny vector canvas: record rectangles, lines and text once, then draw them as a
Pillow image (PNG / GIF frames) or write them as SVG text.  Also :class:`Animation`.

Only ASCII (plus the middle dot and the ellipsis) is used in text: Pillow's built-in
font has no other glyphs.  Everything here is deterministic.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence
from xml.sax.saxutils import escape

from PIL import Image, ImageDraw, ImageFont

from convlens.render.figure import Figure, save_png

__all__ = ["Canvas", "Animation", "font", "text_width"]

Point = tuple[float, float]


@lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels."""
    return ImageFont.load_default(size=max(int(size), 6))


def text_width(text: str, size: int) -> float:
    """Width in pixels of ``text`` drawn at ``size``."""
    return float(font(size).getlength(text))


_SVG_H = {"l": "start", "m": "middle", "r": "end"}
_SVG_V = {"a": "text-before-edge", "t": "text-before-edge", "m": "central",
          "s": "alphabetic", "b": "text-after-edge", "d": "text-after-edge"}


def _dashes(pts: Sequence[Point], on: float = 6.0, off: float = 4.0) -> list[list[Point]]:
    """Split a polyline into dash pieces, the pattern running on across its vertices."""
    pieces: list[list[Point]] = []
    cur: list[Point] = []
    drawing, left = True, on  # left: length until the pattern flips
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        seg = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
        t = 0.0
        while seg - t > 1e-9:
            step = min(left, seg - t)
            a = (x0 + (x1 - x0) * t / seg, y0 + (y1 - y0) * t / seg)
            t += step
            b = (x0 + (x1 - x0) * t / seg, y0 + (y1 - y0) * t / seg)
            left -= step
            if drawing:
                if not cur:
                    cur.append(a)
                cur.append(b)
            if left <= 1e-9:
                if drawing and cur:
                    pieces.append(cur)
                    cur = []
                drawing = not drawing
                left = on if drawing else off
    if cur:
        pieces.append(cur)
    return pieces


@dataclass
class Canvas:
    """Drawing commands on a ``width`` x ``height`` white page (colours as ``#rrggbb``)."""

    width: int
    height: int
    background: str = "#ffffff"
    ops: list[tuple[Any, ...]] = field(default_factory=list)

    # -- recording ------------------------------------------------------------
    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: str | None = None,
             outline: str | None = None, width: int = 1, dash: bool = False) -> None:
        self.ops.append(("rect", x0, y0, x1, y1, fill, outline, width, dash))

    def line(self, points: Sequence[Point], fill: str = "#000000", width: int = 1,
             dash: bool = False) -> None:
        self.ops.append(("line", tuple(points), fill, width, dash))

    def polygon(self, points: Sequence[Point], fill: str | None, outline: str | None = None) -> None:
        self.ops.append(("polygon", tuple(points), fill, outline))

    def circle(self, x: float, y: float, r: float, fill: str, outline: str | None = None) -> None:
        self.ops.append(("circle", x, y, r, fill, outline))

    def text(self, x: float, y: float, text: str, size: int = 14, fill: str = "#000000",
             anchor: str = "la", vertical: bool = False) -> None:
        """``anchor`` is Pillow's two-letter code (``la``, ``mm``, ``rs``...);
        ``vertical`` turns the text 90 degrees counter-clockwise (anchored the same way
        in the turned frame)."""
        self.ops.append(("text", x, y, str(text), int(size), fill, anchor, vertical))

    def image(self, x: int, y: int, im: Image.Image) -> None:
        self.ops.append(("image", int(x), int(y), im.convert("RGB")))

    # -- output ---------------------------------------------------------------
    def to_image(self) -> Image.Image:
        im = Image.new("RGB", (int(self.width), int(self.height)), self.background)
        draw = ImageDraw.Draw(im)
        for op in self.ops:
            kind = op[0]
            if kind == "rect":
                _, x0, y0, x1, y1, fill, outline, width, dash = op
                if fill:
                    draw.rectangle([x0, y0, x1, y1], fill=fill)
                if outline:
                    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
                    if dash:
                        for piece in _dashes(corners):
                            draw.line(piece, fill=outline, width=width)
                    else:
                        draw.rectangle([x0, y0, x1, y1], outline=outline, width=width)
            elif kind == "line":
                _, pts, fill, width, dash = op
                if dash:
                    for piece in _dashes(pts):
                        draw.line(piece, fill=fill, width=width)
                else:
                    draw.line(list(pts), fill=fill, width=width, joint="curve")
            elif kind == "polygon":
                _, pts, fill, outline = op
                draw.polygon(list(pts), fill=fill, outline=outline)
            elif kind == "circle":
                _, x, y, r, fill, outline = op
                draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=outline)
            elif kind == "text":
                _, x, y, s, size, fill, anchor, vertical = op
                if not vertical:
                    draw.text((x, y), s, font=font(size), fill=fill, anchor=anchor)
                else:
                    f = font(size)
                    l, t, r, b = f.getbbox(s, anchor=anchor)
                    tile = Image.new("L", (int(r - l) + 2, int(b - t) + 2), 0)
                    ImageDraw.Draw(tile).text((-l + 1, -t + 1), s, font=f, fill=255, anchor=anchor)
                    tile = tile.transpose(Image.Transpose.ROTATE_90)
                    # in the turned frame the anchor point moved: (l, t) -> (t, -r)
                    px, py = int(round(x + t - 1)), int(round(y - r - 1))
                    im.paste(Image.new("RGB", tile.size, fill), (px, py), tile)
            elif kind == "image":
                _, x, y, pic = op
                im.paste(pic, (x, y))
        return im

    def to_figure(self, meta: dict[str, Any] | None = None) -> Figure:
        return Figure(self.to_image(), dict(meta or {}))

    def to_svg(self) -> str:
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
            f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" '
            'font-family="Helvetica, Arial, sans-serif">',
            f'<rect x="0" y="0" width="{self.width}" height="{self.height}" '
            f'fill="{self.background}"/>',
        ]
        for op in self.ops:
            kind = op[0]
            if kind == "rect":
                _, x0, y0, x1, y1, fill, outline, width, dash = op
                style = f'fill="{fill or "none"}"'
                if outline:
                    style += f' stroke="{outline}" stroke-width="{width}"'
                    if dash:
                        style += ' stroke-dasharray="6 4"'
                out.append(f'<rect x="{_n(x0)}" y="{_n(y0)}" width="{_n(x1 - x0)}" '
                           f'height="{_n(y1 - y0)}" {style}/>')
            elif kind == "line":
                _, pts, fill, width, dash = op
                extra = ' stroke-dasharray="6 4"' if dash else ""
                out.append(f'<polyline points="{_pts(pts)}" fill="none" stroke="{fill}" '
                           f'stroke-width="{width}"{extra}/>')
            elif kind == "polygon":
                _, pts, fill, outline = op
                stroke = f' stroke="{outline}"' if outline else ""
                out.append(f'<polygon points="{_pts(pts)}" fill="{fill or "none"}"{stroke}/>')
            elif kind == "circle":
                _, x, y, r, fill, outline = op
                stroke = f' stroke="{outline}"' if outline else ""
                out.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(r)}" fill="{fill}"{stroke}/>')
            elif kind == "text":
                _, x, y, s, size, fill, anchor, vertical = op
                rot = f' transform="rotate(-90 {_n(x)} {_n(y)})"' if vertical else ""
                out.append(
                    f'<text x="{_n(x)}" y="{_n(y)}" font-size="{size}" fill="{fill}" '
                    f'text-anchor="{_SVG_H[anchor[0]]}" '
                    f'dominant-baseline="{_SVG_V[anchor[1]]}"{rot}>{escape(s)}</text>')
            elif kind == "image":
                _, x, y, pic = op
                buf = io.BytesIO()
                pic.save(buf, format="PNG", optimize=False, compress_level=6)
                data = base64.b64encode(buf.getvalue()).decode("ascii")
                out.append(f'<image x="{x}" y="{y}" width="{pic.width}" height="{pic.height}" '
                           f'href="data:image/png;base64,{data}"/>')
        out.append("</svg>")
        return "\n".join(out) + "\n"


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _pts(pts: Sequence[Point]) -> str:
    return " ".join(f"{_n(x)},{_n(y)}" for x, y in pts)


@dataclass(eq=False)
class Animation:
    """Frames of an explanation, drawn on demand.  ``meta`` holds the numbers shown
    (for example ``meta["output"]``, the full output map of a convolution)."""

    canvases: list[Canvas]
    meta: dict[str, Any] = field(default_factory=dict)
    duration_ms: int = 900
    last_frame_ms: int = 2500

    def __len__(self) -> int:
        return len(self.canvases)

    def frame(self, i: int = -1) -> Figure:
        """Frame ``i`` as a :class:`~convlens.render.figure.Figure` (default: the last)."""
        return self.canvases[i].to_figure({**self.meta, "frame": i % len(self)})

    @property
    def frames(self) -> list[Image.Image]:
        return [c.to_image() for c in self.canvases]

    def to_gif_bytes(self) -> bytes:
        frames = [
            im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            for im in self.frames
        ]
        durations = [self.duration_ms] * (len(frames) - 1) + [self.last_frame_ms]
        buf = io.BytesIO()
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                       duration=durations, loop=0, optimize=False, disposal=1)
        return buf.getvalue()

    def save_gif(self, path: str | Path) -> Path:
        """Write an animated GIF (byte-identical for the same inputs); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_gif_bytes())
        return path

    def save_frames(self, folder: str | Path, prefix: str = "frame") -> list[Path]:
        """Write every frame as ``prefix_001.png``... in ``folder``; returns the paths.

        Numbered from 1 like the "step 1 of N" each frame shows (conv and pool alike),
        zero-padded (at least 3 digits) so the files sort in step order."""
        folder = Path(folder)
        width = max(3, len(str(len(self))))
        return [save_png(im, folder / f"{prefix}_{i:0{width}d}.png")
                for i, im in enumerate(self.frames, start=1)]

    def to_svg(self, i: int = -1) -> str:
        """Frame ``i`` as SVG text."""
        return self.canvases[i].to_svg()

    def save_svg(self, path: str | Path, i: int = -1) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_svg(i), encoding="utf-8")
        return path
