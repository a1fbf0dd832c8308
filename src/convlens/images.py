"""Loading images as float32 RGB arrays in [0, 1], the bundled cat, resizing and batching.

NumPy + Pillow only (no torch, no keras).  Every image convlens works with is an
``(H, W, 3)`` float32 array in [0, 1], RGB order; a batch is ``(B, H, W, 3)``.

Conversions :func:`load_image` makes (documented so nothing is a surprise):

* greyscale (``L``, ``1``, ``I;16*``, ``I``, ``F``) is copied to three equal channels;
* transparency (``RGBA``, ``LA``, ``PA``, palette or RGB/L images with a transparent
  colour) is composited over **white**: ``out = rgb * alpha + 1 * (1 - alpha)``;
* palette images become their palette colours; CMYK, YCbCr, HSV become RGB via Pillow;
* 8-bit data is divided by 255, 16-bit data (``I;16``, ``I;16B``, ``I`` with values in
  0..65535) by 65535; 32-bit float ``F`` data already in [0, 1] is kept, other ``F``
  data follows Pillow's own convention (0..255, clipped) and is divided by 255;
* the EXIF orientation tag is applied, so a phone photo comes out the way it is shown;
* only the first frame of an animated or multi-page file is read.

Decompression bombs: a file with more pixels than ``max_pixels`` (argument), else the
environment variable ``CONVLENS_MAX_PIXELS``, else the module-level :data:`MAX_PIXELS`
is refused *before* its pixels are decoded.  Pillow's own hard limit
(``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 million pixels) still applies above that.
"""
from __future__ import annotations

import functools
import io
import os
import warnings
from importlib import resources
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from convlens.errors import ImageError

__all__ = ["MAX_PIXELS", "ImageSource", "load_image", "cat", "resize", "as_batch"]

MAX_PIXELS: int = 64_000_000
"""Default largest number of pixels (width x height) :func:`load_image` decodes."""

ENV_MAX_PIXELS = "CONVLENS_MAX_PIXELS"

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Image.Image]
"""What :func:`load_image` accepts: a path, encoded file bytes, an array or a PIL image."""

_FORMATS = "a PNG, JPEG, BMP, GIF, TIFF or WebP image"
_ARRAY_SHAPES = "(H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"


# -- limits -------------------------------------------------------------------------------
def _pixel_limit(max_pixels: int | None) -> int:
    """The limit in force: the argument, else ``$CONVLENS_MAX_PIXELS``, else MAX_PIXELS."""
    if max_pixels is not None:
        value, origin = max_pixels, "max_pixels"
    elif os.environ.get(ENV_MAX_PIXELS, "").strip():
        value, origin = os.environ[ENV_MAX_PIXELS].strip(), ENV_MAX_PIXELS
    else:
        value, origin = MAX_PIXELS, "convlens.images.MAX_PIXELS"
    try:
        limit = int(str(value).replace("_", "")) if not isinstance(value, int) else value
    except ValueError:
        limit = 0
    if isinstance(limit, bool) or limit <= 0:
        raise ImageError(f"{origin}={value!r} is not a positive whole number of pixels; "
                         "expected e.g. 64000000")
    return limit


def _check_size(label: str, size: tuple[int, int], limit: int) -> None:
    w, h = size
    if w * h > limit:
        raise ImageError(
            f"{label}: image is {w}x{h} = {w * h:,} pixels, more than the limit of "
            f"{limit:,} (a decompression bomb guard); downscale it first, or raise the "
            f"limit with max_pixels= or the {ENV_MAX_PIXELS} environment variable"
        )


# -- PIL image -> array -------------------------------------------------------------------
def _composite_over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgb * alpha + (1 - alpha)``, in float64; alpha has a trailing axis of 1."""
    return rgb * alpha + (1.0 - alpha)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=-1)


def _pil_to_array(im: Image.Image, label: str) -> np.ndarray:
    """Decode a PIL image (any mode) to float32 RGB (H, W, 3) in [0, 1]."""
    mode = im.mode
    palette_alpha = mode == "P" and im.palette is not None and im.palette.mode == "RGBA"
    if palette_alpha or ("transparency" in im.info and mode in ("1", "L", "P", "RGB")):
        im, mode = im.convert("RGBA"), "RGBA"
    elif mode in ("RGBa", "PA", "RGBA"):
        im, mode = im.convert("RGBA"), "RGBA"
    elif mode == "La":
        im, mode = im.convert("LA"), "LA"
    elif mode in ("1", "P"):
        im = im.convert("L" if mode == "1" else "RGB")
        mode = im.mode

    if mode == "RGB":
        out = np.asarray(im, dtype=np.float64) / 255.0
    elif mode == "L":
        out = _grey_to_rgb(np.asarray(im, dtype=np.float64) / 255.0)
    elif mode == "RGBA":
        a = np.asarray(im, dtype=np.float64) / 255.0
        out = _composite_over_white(a[..., :3], a[..., 3:])
    elif mode == "LA":
        a = np.asarray(im, dtype=np.float64) / 255.0
        out = _grey_to_rgb(_composite_over_white(a[..., 0], a[..., 1]))
    elif mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N, I (32-bit int)
        raw = np.asarray(im)
        lo, hi = (int(raw.min()), int(raw.max())) if raw.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ImageError(
                f"{label}: 32-bit integer image with values {lo}..{hi}, outside the 16-bit "
                "range 0..65535 convlens reads; expected 8- or 16-bit data — convert it to "
                "a 16-bit or 8-bit image, or pass a float array scaled to [0, 1]"
            )
        out = _grey_to_rgb(raw.astype(np.float64) / 65535.0)
    elif mode == "F":
        raw = np.asarray(im, dtype=np.float64)
        if not np.isfinite(raw).all():
            raise ImageError(f"{label}: float image contains NaN or infinite values; "
                             "expected finite values — clean the data before loading it")
        if raw.size and (raw.min() < 0.0 or raw.max() > 1.0):
            raw = np.clip(raw, 0.0, 255.0) / 255.0  # Pillow's own F -> L convention
        out = _grey_to_rgb(raw)
    else:  # CMYK, YCbCr, HSV, RGBX, LAB...
        try:
            converted = im.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ImageError(
                f"{label}: Pillow cannot convert image mode {mode!r} to RGB ({exc}); "
                f"expected an RGB, greyscale, palette or CMYK image — re-export it as PNG"
            ) from None
        out = np.asarray(converted, dtype=np.float64) / 255.0
    return np.ascontiguousarray(out, dtype=np.float32)


def _decode(im: Image.Image, label: str, limit: int, max_size: int | None = None) -> np.ndarray:
    """Size check first, then decode pixels (shrunk while decoding when ``max_size`` asks
    for it), apply EXIF orientation, convert."""
    _check_size(label, im.size, limit)
    try:
        if max_size is not None and max(im.size) > max_size:
            k = max_size / max(im.size)
            im.draft(im.mode, (max(1, int(im.size[0] * k)), max(1, int(im.size[1] * k))))
        im.load()
        oriented = ImageOps.exif_transpose(im)
        im = oriented if oriented is not None else im
        if max_size is not None and max(im.size) > max_size:
            if im.mode not in ("RGB", "RGBA", "L", "LA", "I", "F"):
                im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
            k = max_size / max(im.size)
            im = im.resize((max(1, round(im.size[0] * k)), max(1, round(im.size[1] * k))),
                           Image.Resampling.BILINEAR, reducing_gap=3.0)
        return _pil_to_array(im, label)
    except ImageError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # decoders of untrusted files raise many kinds
        raise ImageError(
            f"{label}: truncated or corrupt image file ({_reason(exc)}); expected "
            f"{_FORMATS} — re-export or re-download it"
        ) from None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _open_and_decode(fp: io.IOBase, label: str, limit: int,
                     max_size: int | None = None) -> np.ndarray:
    """Open an encoded image from a binary file object; Pillow's bomb checks never leak."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(fp)
        except Image.DecompressionBombError as exc:
            raise ImageError(
                f"{label}: image is too large to decode safely (Pillow: {_reason(exc)}); "
                "downscale it first, or raise PIL.Image.MAX_IMAGE_PIXELS as well as "
                f"max_pixels= / {ENV_MAX_PIXELS}"
            ) from None
        except UnidentifiedImageError:
            raise ImageError(
                f"{label}: not an image file Pillow can read (unknown or damaged format); "
                f"expected {_FORMATS} — check the file, or re-export it"
            ) from None
        except MemoryError:
            raise
        except Exception as exc:
            raise ImageError(
                f"{label}: truncated or corrupt image file ({_reason(exc)}); expected "
                f"{_FORMATS} — re-export or re-download it"
            ) from None
        with im:
            return _decode(im, label, limit, max_size)


def _load_path(path: Path, label: str, limit: int, max_size: int | None = None) -> np.ndarray:
    try:
        if path.is_dir():
            raise ImageError(f"{label}: is a directory; expected an image file — "
                             "pass the path of one image inside it")
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise ImageError(f"{label}: file is empty (0 bytes); expected {_FORMATS} — "
                                 "re-export or re-download it")
            return _open_and_decode(fh, label, limit, max_size)
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file; expected the path of an image file — "
                         "check the spelling and the working directory") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot read the file ({exc.strerror or _reason(exc)}); "
                         "expected a readable image file — check its permissions") from None


# -- arrays ---------------------------------------------------------------------------------
def _array_to_rgb(arr: np.ndarray, label: str) -> np.ndarray:
    """Convert ``(..., H, W[, C])`` data to float32 RGB in [0, 1] (see load_image)."""
    if arr.dtype == np.bool_:
        data = arr.astype(np.float64)
    elif arr.dtype == np.uint8:
        data = arr.astype(np.float64) / 255.0
    elif arr.dtype == np.uint16:
        data = arr.astype(np.float64) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        data = arr.astype(np.float64)
        if data.size and not np.isfinite(data).all():
            raise ImageError(f"{label}: float image contains NaN or infinite values; "
                             "expected finite floats in [0, 1] — clean the data and scale "
                             "it to [0, 1]")
        if data.size and (data.min() < 0.0 or data.max() > 1.0):
            raise ImageError(
                f"{label}: float image values range from {data.min():.4g} to "
                f"{data.max():.4g}; expected floats in [0, 1] — scale to [0, 1] "
                "(e.g. divide 0..255 data by 255)"
            )
    else:
        raise ImageError(
            f"{label}: array dtype {arr.dtype} is not supported; expected uint8 (0..255), "
            "uint16 (0..65535), bool or float in [0, 1] — e.g. arr.astype(np.uint8)"
        )
    return np.ascontiguousarray(data, dtype=np.float32)


def _load_array(arr: np.ndarray, label: str) -> np.ndarray:
    shape = arr.shape
    ok = arr.ndim == 2 or (arr.ndim == 3 and shape[-1] in (1, 3, 4))
    if not ok or 0 in shape:
        hint = ""
        if arr.ndim == 3 and shape[0] in (1, 3, 4):
            hint = " — it looks channels-first: use arr.transpose(1, 2, 0)"
        elif arr.ndim == 4:
            hint = " — for a batch use convlens.as_batch()"
        raise ImageError(f"{label}: array of shape {shape} is not an image; expected "
                         f"{_ARRAY_SHAPES}{hint}")
    data = _array_to_rgb(arr, label)
    if data.ndim == 2:
        data = data[..., None]
    if data.shape[-1] == 1:
        data = np.repeat(data, 3, axis=-1)
    elif data.shape[-1] == 4:
        d64 = data.astype(np.float64)
        data = _composite_over_white(d64[..., :3], d64[..., 3:])
    return np.ascontiguousarray(data, dtype=np.float32)


# -- public API -----------------------------------------------------------------------------
def load_image(
    src: ImageSource, *, max_pixels: int | None = None, name: str | None = None,
    max_size: int | None = None,
) -> np.ndarray:
    """Load an image as a float32 RGB array ``(H, W, 3)`` with values in [0, 1].

    ``src`` is a path (``str`` / ``Path``), the encoded bytes of an image file, a NumPy
    array or a ``PIL.Image``.  Arrays may be ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or
    ``(H, W, 4)`` of dtype uint8 (divided by 255), uint16 (divided by 65535), bool, or
    float already in [0, 1].  Transparent pixels are composited over white; see the
    module docstring for every conversion.  ``max_pixels`` overrides the decompression
    bomb limit; ``name`` is the label used in error messages (default: the path,
    ``"<bytes>"``, ``"<array>"`` or ``"<PIL.Image>"``).  ``max_size`` shrinks a file whose
    longer side is larger to that many pixels while decoding (aspect kept; JPEGs are
    decoded at a reduced scale, so a 24 MP photo never exists at full size in memory).

    Raises :class:`~convlens.errors.ImageError` (one line naming the source) for a
    missing, empty, truncated, corrupt or over-large file and for unsupported data.
    """
    limit = _pixel_limit(max_pixels)
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int)
                                 or max_size < 1):
        raise ImageError(f"max_size={max_size!r} is not valid; expected a positive number of "
                         "pixels, e.g. 1024")
    if isinstance(src, np.ndarray):
        return _load_array(src, name or "<array>")
    if isinstance(src, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        if len(src) == 0:
            raise ImageError(f"{label}: no data (0 bytes); expected the bytes of {_FORMATS}")
        return _open_and_decode(io.BytesIO(bytes(src)), label, limit, max_size)
    if isinstance(src, Image.Image):
        label = name or str(getattr(src, "filename", "") or "<PIL.Image>")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _decode(src, label, limit)
    if isinstance(src, (str, os.PathLike)):
        text = os.fspath(src)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if text.startswith(("http://", "https://")):
            raise ImageError(f"{name or text}: convlens does not download images; expected "
                             "a local file — save the image and pass its path")
        return _load_path(Path(text), name or text, limit, max_size)
    raise ImageError(
        f"{name or '<input>'}: cannot load an image from a {type(src).__name__}; expected a "
        "path, the bytes of an image file, a NumPy array or a PIL.Image"
    )


@functools.lru_cache(maxsize=1)
def _cat_cached() -> np.ndarray:
    data = resources.files("convlens").joinpath("data", "chelsea.png").read_bytes()
    arr = load_image(data, name="chelsea.png")
    arr.setflags(write=False)
    return arr


def cat() -> np.ndarray:
    """The bundled photo of a cat: float32 RGB ``(300, 451, 3)`` in [0, 1].

    "Chelsea the cat" by Stefan van der Walt, from the scikit-image sample data,
    released under CC0 ("No copyright restrictions").  The decoded image is cached;
    each call returns a fresh copy that is safe to modify.
    """
    return _cat_cached().copy()


def _check_hw(size: object, what: str = "size") -> tuple[int, int]:
    """Validate a ``(h, w)`` pair of positive ints."""
    try:
        h, w = size  # type: ignore[misc]
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                 for v in (h, w))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ImageError(f"{what}={size!r} is not a valid image size; expected (height, "
                         "width) as two positive integers, e.g. (224, 224)")
    return int(h), int(w)  # type: ignore[has-type]


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an ``(H, W, C)`` or ``(H, W)`` float image to ``size = (h, w)``.

    Bilinear with antialiasing (Pillow's resampling on 32-bit float "F" images, one
    channel at a time): deterministic, and a constant image stays constant.  Returns
    float32; a same-size request returns a copy.
    """
    h, w = _check_hw(size)
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise ImageError(f"cannot resize an array of shape {arr.shape}; expected "
                         "(H, W) or (H, W, C)")
    arr = arr.astype(np.float32, copy=False)
    if arr.shape[:2] == (h, w):
        return np.array(arr, dtype=np.float32, copy=True)
    planes = arr[..., None] if arr.ndim == 2 else arr
    out = np.empty((h, w, planes.shape[-1]), dtype=np.float32)
    for c in range(planes.shape[-1]):
        channel = Image.fromarray(np.ascontiguousarray(planes[..., c]))
        out[..., c] = np.asarray(channel.resize((w, h), Image.Resampling.BILINEAR))
    return out[..., 0] if arr.ndim == 2 else out


def as_batch(
    images: ImageSource | Sequence[ImageSource], size: tuple[int, int] | None = None
) -> np.ndarray:
    """Stack images into one float32 batch ``(B, H, W, 3)``, C-contiguous.

    ``images`` is one image array ``(H, W, 3)`` (or any single source
    :func:`load_image` takes), a batch array ``(B, H, W, 3)``, or a list/tuple of
    arrays, paths, bytes or PIL images.  Images of different sizes need ``size=(h, w)``;
    with ``size`` every image is resized (bilinear, antialiased) to it.
    """
    target = _check_hw(size) if size is not None else None
    if isinstance(images, np.ndarray) and images.ndim == 4:
        if images.shape[-1] not in (1, 3, 4) or 0 in images.shape:
            raise ImageError(f"<array>: batch of shape {images.shape} is not a batch of "
                             "images; expected (B, H, W, 3) (or 1 or 4 channels)")
        items = [_load_array(images[i], f"<array>[{i}]") for i in range(images.shape[0])]
    elif isinstance(images, (list, tuple)):
        if not images:
            raise ImageError("no images given; expected at least one image")
        items = [load_image(im) for im in images]
    else:
        items = [load_image(images)]  # type: ignore[arg-type]
    if target is not None:
        items = [im if im.shape[:2] == target else resize(im, target) for im in items]
    sizes = sorted({im.shape[:2] for im in items})
    if len(sizes) > 1:
        seen = ", ".join(f"{h}x{w}" for h, w in sizes)
        raise ImageError(f"images have different sizes ({seen}, as HxW); expected one size "
                         "— pass size=(h, w) (on the command line: --size HxW) to resize them all")
    return np.ascontiguousarray(np.stack(items), dtype=np.float32)
