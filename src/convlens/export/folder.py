"""A Trace as a folder of 8-bit PNGs plus ``manifest.json``, and back.

Layout of the folder::

    manifest.json              what every file holds and how to turn pixels into values
    input.png                  the input image (input_1.png ... for a batch)
    000_conv1.png              stage 0: its channels tiled left to right, top to bottom
    ...                        (000_conv1_img1.png ... for a batch)

Each stage PNG is greyscale: channel ``c`` of an ``H x W`` stage is the tile at row
``c // cols``, column ``c % cols`` (``cols`` in the manifest), and a pixel ``q`` stands
for ``vmin + q / 255 * (vmax - vmin)`` with that channel's own ``[vmin, vmax]`` (its
finite min and max; a constant channel stores ``vmin = vmax``).  A flat ``(B, N)`` stage
is a ``1 x N`` row with one scale.  So :func:`from_folder` gets every value back to
within half a grey level, ``(vmax - vmin) / 510``.  NaN is stored as ``vmin`` and
+/-inf as the ends of the range (counted under ``nonfinite``).

The manifest also keeps names, kinds, ops, params, sources, preprocessing and meta;
weights and the model's preprocessed input are not exported (use :meth:`Trace.save`
for an exact copy).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from convlens.errors import TraceError
from convlens.render.figure import save_png
from convlens.trace import Stage, Trace

__all__ = ["to_folder", "from_folder", "MANIFEST", "FORMAT"]

MANIFEST = "manifest.json"
FORMAT = "convlens-png-folder"
_VERSION = 1


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _quantise(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=lo, posinf=hi, neginf=lo)
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.uint8)
    return np.clip(np.floor((x - lo) / (hi - lo) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def _range(x: np.ndarray) -> list[float]:
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return [0.0, 0.0]
    return [float(finite.min()), float(finite.max())]


def _stage_image(x: np.ndarray, cols: int) -> tuple[np.ndarray, list[list[float]]]:
    """One image's stage output -> (uint8 mosaic, per-channel [vmin, vmax])."""
    if x.ndim == 1:
        rng = _range(x)
        return _quantise(x, *rng)[None, :], [rng]
    c, h, w = x.shape
    rows = math.ceil(c / cols)
    mosaic = np.zeros((rows * h, cols * w), dtype=np.uint8)
    scales = []
    for k in range(c):
        rng = _range(x[k])
        r, q = divmod(k, cols)
        mosaic[r * h:(r + 1) * h, q * w:(q + 1) * w] = _quantise(x[k], *rng)
        scales.append(rng)
    return mosaic, scales


def to_folder(trace: Trace, folder: str | Path) -> Path:
    """Write ``trace`` as PNGs plus ``manifest.json`` into ``folder`` (see module docs);
    returns the manifest's path."""
    if not isinstance(trace, Trace):
        raise TraceError(f"to_folder needs a convlens Trace; got {type(trace).__name__}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    b = trace.batch_size
    img_width = len(str(b - 1))  # zero-padded: files sort in image order
    suffix = (lambda i: f"_{i:0{img_width}d}" if i else "") if b > 1 else (lambda i: "")
    inputs = []
    for i in range(b):
        name = f"input{suffix(i)}.png"
        save_png(Image.fromarray(_quantise(trace.input[i], 0.0, 1.0)), out / name)
        inputs.append(name)
    records = []
    # zero-padded so the files sort in stage order (and image order within a stage)
    width = max(3, len(str(len(trace) - 1)))
    for s in trace.stages:
        x = np.asarray(s.output)
        cols = math.ceil(math.sqrt(s.channels)) if s.is_spatial else 1
        files, scales = [], []
        for i in range(b):
            mosaic, sc = _stage_image(x[i], cols)
            img = f"_img{i:0{img_width}d}" if b > 1 else ""
            name = f"{s.index:0{width}d}_{_safe(s.name)}{img}.png"
            save_png(Image.fromarray(mosaic), out / name)
            files.append(name)
            scales.append(sc)
        records.append({
            "index": s.index, "name": s.name, "kind": s.kind, "op": s.op, "source": s.source,
            "sources": list(s.sources),
            "params": s.params, "shape": list(x.shape), "cols": cols, "files": files,
            "scales": scales, "nonfinite": int((~np.isfinite(x)).sum()),
        })
    manifest = {
        "format": FORMAT, "version": _VERSION, "model_name": trace.model_name,
        "framework": trace.framework, "batch": b, "input_shape": list(trace.input.shape),
        "inputs": inputs, "preprocessing": trace.preprocessing, "meta": trace.meta,
        "pixel_rule": "value = vmin + q / 255 * (vmax - vmin), per channel",
        "stages": records,
    }
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return path


def _read_png(folder: Path, name: str, shape: tuple[int, ...]) -> np.ndarray:
    path = folder / name
    if Path(name).name != name or not path.is_file():
        raise TraceError(f"{path}: missing; the manifest lists it — expected the folder "
                         "written by convlens.export.to_folder")
    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.shape != shape:
        raise TraceError(f"{path}: holds an image of shape {arr.shape}; the manifest says "
                         f"{shape}; the folder is damaged")
    return arr


def _decode(q: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (lo + q.astype(np.float64) / 255.0 * (hi - lo)).astype(np.float32)


def from_folder(folder: str | Path) -> Trace:
    """Read a folder written by :func:`to_folder` back into a Trace (values to within
    8-bit precision; no weights, no ``model_input``)."""
    root = Path(folder)
    try:
        m = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TraceError(f"{root / MANIFEST}: no such file; expected a folder written by "
                         "convlens.export.to_folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TraceError(f"{root / MANIFEST}: not JSON ({exc}); expected the manifest "
                         "written by convlens.export.to_folder") from None
    if m.get("format") != FORMAT or m.get("version") != _VERSION:
        raise TraceError(f"{root / MANIFEST}: format {m.get('format')!r} version "
                         f"{m.get('version')!r}; expected {FORMAT!r} version {_VERSION}")
    try:
        b, h, w, c = m["input_shape"]
        images = np.stack([_decode(_read_png(root, f, (h, w, c)), 0.0, 1.0) for f in m["inputs"]])
        stages = []
        for r in m["stages"]:
            shape = tuple(r["shape"])
            out = np.zeros(shape, dtype=np.float32)
            if not len(r["files"]) == len(r["scales"]) == shape[0] == b:
                raise ValueError(f"stage {r['name']!r} lists {len(r['files'])} files for "
                                 f"a batch of {b}")
            for i, (name, scales) in enumerate(zip(r["files"], r["scales"], strict=True)):
                if len(shape) == 2:
                    q = _read_png(root, name, (1, shape[1]))
                    out[i] = _decode(q[0], *scales[0])
                    continue
                ch, hh, ww = shape[1:]
                cols = r["cols"]
                if len(scales) != ch:
                    raise ValueError(f"stage {r['name']!r} has {len(scales)} scales for {ch} "
                                     "channels")
                q = _read_png(root, name, (math.ceil(ch / cols) * hh, cols * ww))
                for k in range(ch):
                    row, col = divmod(k, cols)
                    out[i, k] = _decode(q[row * hh:(row + 1) * hh, col * ww:(col + 1) * ww],
                                        *scales[k])
            stages.append(Stage(r["index"], r["name"], r["kind"], r["op"], out,
                                params=r["params"], source=r["source"],
                                sources=tuple(r.get("sources") or ())))
        return Trace(stages=stages, input=images, framework=m["framework"],
                     model_name=m["model_name"], preprocessing=m["preprocessing"],
                     meta=m["meta"])
    except TraceError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise TraceError(f"{root / MANIFEST}: damaged manifest ({type(exc).__name__}: {exc}); "
                         "expected the one written by convlens.export.to_folder") from None
