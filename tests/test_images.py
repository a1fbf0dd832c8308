"""Tests for convlens.images: loading every kind of image, errors, the cat, resize, batching."""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convlens import images
from convlens.errors import ConvlensError, ImageError
from convlens.images import as_batch, cat, load_image, resize

F32 = np.float32


# -- helpers --------------------------------------------------------------------------------
def save(im: Image.Image, path: Path, **kwargs) -> Path:
    im.save(path, **kwargs)
    return path


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height 8-bit grey pixels but holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def noise_image(h: int = 64, w: int = 64) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def error_of(src, **kwargs) -> str:
    with pytest.raises(ImageError) as info:
        load_image(src, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# -- decoding files: exact values ---------------------------------------------------------
def test_rgb_png_exact_values(tmp_path):
    px = np.array([[[0, 0, 0], [255, 128, 1]], [[10, 20, 30], [255, 255, 255]]], np.uint8)
    path = save(Image.fromarray(px), tmp_path / "rgb.png")
    out = load_image(path)
    assert out.dtype == np.float32 and out.shape == (2, 2, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, (px / 255.0).astype(F32))
    assert out[0, 1, 1] == F32(128 / 255) and out[0, 1, 2] == F32(1 / 255)
    np.testing.assert_array_equal(load_image(str(path)), out)  # str path too


def test_rgba_composited_over_white(tmp_path):
    px = np.array([[[0, 0, 0, 128], [255, 0, 0, 0]], [[10, 20, 30, 255], [100, 50, 0, 51]]],
                  np.uint8)
    out = load_image(save(Image.fromarray(px, "RGBA"), tmp_path / "a.png"))
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[0, 0], [F32(127 / 255)] * 3)  # black, alpha 128/255
    np.testing.assert_array_equal(out[0, 1], [1, 1, 1])  # fully transparent -> white
    np.testing.assert_array_equal(out[1, 0], (np.array([10, 20, 30]) / 255).astype(F32))
    a = 51 / 255  # 0.2
    expect = np.array([100, 50, 0]) / 255 * a + (1 - a)
    np.testing.assert_allclose(out[1, 1], expect, rtol=0, atol=1e-7)
    assert out[1, 1, 2] == F32(0.8)


def test_greyscale_l_gives_three_equal_channels(tmp_path):
    px = np.array([[0, 51], [204, 255]], np.uint8)
    out = load_image(save(Image.fromarray(px, "L"), tmp_path / "g.png"))
    assert out.shape == (2, 2, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], (px / 255).astype(F32))
    assert out[0, 1, 0] == F32(0.2)


def test_la_and_1bit_modes(tmp_path):
    la = Image.fromarray(np.array([[[0, 0], [0, 255], [200, 51]]], np.uint8), "LA")
    out = load_image(save(la, tmp_path / "la.png"))
    np.testing.assert_array_equal(out[0, 0], [1, 1, 1])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0])
    np.testing.assert_allclose(out[0, 2], [200 / 255 * 0.2 + 0.8] * 3, rtol=0, atol=1e-7)
    bw = Image.new("1", (3, 1), 0)
    bw.putpixel((1, 0), 1)
    out = load_image(save(bw, tmp_path / "bw.png"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 0])
    assert np.array_equal(out[..., 0], out[..., 2])


def test_16bit_png(tmp_path):
    px = np.array([[0, 32768, 65535]], np.uint16)
    path = save(Image.fromarray(px), tmp_path / "deep.png")
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    out = load_image(path)
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out[0, :, 1], [0, F32(32768 / 65535), 1])


def test_16bit_big_endian_and_32bit_int_modes():
    px = np.array([[0, 32768, 65535]], np.uint16)
    big = Image.frombytes("I;16B", (3, 1), px.astype(">u2").tobytes())
    np.testing.assert_array_equal(load_image(big)[0, :, 0], [0, F32(32768 / 65535), 1])
    as_i = Image.fromarray(px.astype(np.int32))
    assert as_i.mode == "I"
    np.testing.assert_array_equal(load_image(as_i)[0, :, 2], [0, F32(32768 / 65535), 1])
    wide = Image.fromarray(np.array([[0, 70000]], np.int32))
    msg = error_of(wide)
    assert "0..70000" in msg and "16-bit" in msg


def test_float_f_tiff(tmp_path):
    unit = np.array([[0.0, 0.25, 1.0]], np.float32)
    out = load_image(save(Image.fromarray(unit), tmp_path / "unit.tif"))
    np.testing.assert_array_equal(out[..., 1], unit)  # already in [0, 1]: kept
    wide = np.array([[0.0, 51.0, 300.0]], np.float32)
    out = load_image(save(Image.fromarray(wide), tmp_path / "wide.tif"))
    np.testing.assert_array_equal(out[0, :, 0], [0, F32(0.2), 1])  # Pillow's 0..255, clipped
    nan = Image.fromarray(np.array([[0.0, np.nan]], np.float32))
    assert "NaN" in error_of(save(nan, tmp_path / "nan.tif"))


def test_palette_images(tmp_path):
    pal = Image.new("P", (3, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    pal.putdata([2, 0, 1])
    out = load_image(save(pal, tmp_path / "p.png"))
    np.testing.assert_array_equal(out[0], [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    out = load_image(save(pal, tmp_path / "p.gif"))
    np.testing.assert_array_equal(out[0], [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    # index 0 (red) transparent -> white
    out = load_image(save(pal, tmp_path / "pt.png", transparency=0))
    np.testing.assert_array_equal(out[0], [[0, 0, 1], [1, 1, 1], [0, 1, 0]])


def test_rgb_with_transparent_colour(tmp_path):
    px = np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)
    out = load_image(save(Image.fromarray(px), tmp_path / "t.png", transparency=(255, 0, 0)))
    np.testing.assert_array_equal(out[0], [[1, 1, 1], [0, 0, 1]])


def test_cmyk_jpeg_and_tiff(tmp_path):
    cmyk = Image.new("CMYK", (2, 1), (0, 0, 0, 0))
    cmyk.putpixel((1, 0), (0, 0, 0, 255))
    out = load_image(save(cmyk, tmp_path / "c.tif"))
    np.testing.assert_array_equal(out[0], [[1, 1, 1], [0, 0, 0]])
    big = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red, as JPEG (lossy)
    out = load_image(save(big, tmp_path / "c.jpg", quality=95))
    np.testing.assert_allclose(out[8, 8], [1, 0, 0], atol=0.02)


@pytest.mark.parametrize("orientation, corner", [(1, (0, 0)), (6, (0, -1)), (8, (-1, 0))])
def test_exif_orientation_is_applied(tmp_path, orientation, corner):
    # stored 32 rows x 48 columns: top-left 16x16 block red, the rest blue
    px = np.zeros((32, 48, 3), np.uint8)
    px[..., 2] = 255
    px[:16, :16] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(Image.fromarray(px), tmp_path / f"o{orientation}.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == ((32, 48, 3) if orientation == 1 else (48, 32, 3))
    red, blue = np.array([1, 0, 0]), np.array([0, 0, 1])
    r, c = corner
    np.testing.assert_allclose(out[r, c], red, atol=0.06)
    # the diagonally opposite corner is blue whatever the orientation
    np.testing.assert_allclose(out[-1 - r if r >= 0 else 0, -1 - c if c >= 0 else 0],
                               blue, atol=0.06)
    if orientation == 6:  # rotate 90 clockwise: stored top-left -> displayed top-right
        np.testing.assert_allclose(out[0, 0], blue, atol=0.06)
        np.testing.assert_allclose(out[4, 28], red, atol=0.06)


def test_first_frame_of_animated_gif(tmp_path):
    frames = [Image.new("RGB", (2, 2), c) for c in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    np.testing.assert_array_equal(load_image(path)[0, 0], [1, 0, 0])


def test_pil_image_and_bytes_inputs(tmp_path):
    px = np.array([[[1, 2, 3], [250, 251, 252]]], np.uint8)
    im = Image.fromarray(px)
    expect = (px / 255).astype(F32)
    np.testing.assert_array_equal(load_image(im), expect)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    np.testing.assert_array_equal(load_image(buf.getvalue()), expect)
    np.testing.assert_array_equal(load_image(bytearray(buf.getvalue())), expect)


# -- arrays ---------------------------------------------------------------------------------
def test_array_dtypes_and_shapes():
    u8 = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_array_equal(load_image(u8)[0, :, 1], [0, F32(0.2), 1])
    np.testing.assert_array_equal(load_image(u8[..., None])[0, :, 2], [0, F32(0.2), 1])
    u16 = np.array([[0, 32768, 65535]], np.uint16)
    np.testing.assert_array_equal(load_image(u16)[0, :, 0], [0, F32(32768 / 65535), 1])
    b = np.array([[True, False]])
    np.testing.assert_array_equal(load_image(b)[0, :, 0], [1, 0])
    f64 = np.array([[[0.1, 0.5, 1.0]]])
    out = load_image(f64)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, f64.astype(F32))
    rgba = np.array([[[0.0, 0.0, 0.0, 0.25], [0.2, 0.4, 0.6, 1.0]]], np.float32)
    out = load_image(rgba)
    np.testing.assert_allclose(out[0, 0], [0.75] * 3, atol=0)
    np.testing.assert_allclose(out[0, 1], [0.2, 0.4, 0.6], atol=1e-7)
    src = np.full((2, 2, 3), 0.5, np.float32)
    out = load_image(src)
    out[...] = 0  # result is a new array
    assert src[0, 0, 0] == 0.5


@pytest.mark.parametrize("bad, words", [
    (np.array([[0.0, 2.0]]), ["0 to 2", "scale to [0, 1]"]),
    (np.array([[-0.5, 0.5]], np.float32), ["-0.5 to 0.5", "scale to [0, 1]"]),
    (np.array([[np.nan, 0.5]]), ["NaN", "[0, 1]"]),
    (np.array([[0, 255]], np.int64), ["int64", "uint8"]),
    (np.zeros((3, 8, 8), np.float32), ["(3, 8, 8)", "transpose(1, 2, 0)"]),
    (np.zeros((8, 8, 2), np.float32), ["(8, 8, 2)", "(H, W, 3)"]),
    (np.zeros((2, 8, 8, 3), np.float32), ["as_batch"]),
    (np.zeros((0, 8), np.uint8), ["(0, 8)"]),
])
def test_bad_arrays(bad, words):
    msg = error_of(bad)
    assert msg.startswith("<array>: ")
    for w in words:
        assert w in msg


def test_unsupported_type():
    msg = error_of(12345)
    assert "int" in msg and "path" in msg


# -- broken files -------------------------------------------------------------------------
def test_truncated_png(tmp_path):
    buf = io.BytesIO()
    noise_image().save(buf, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    msg = error_of(path)
    assert "cut.png" in msg and "truncated or corrupt" in msg and "re-export" in msg


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    noise_image(128, 128).save(buf, "JPEG", quality=90)
    path = tmp_path / "cat.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    msg = error_of(path)
    assert msg.startswith(f"{path}: truncated or corrupt image file (")
    assert "truncated" in msg and "re-download" in msg


def test_truncated_bytes_and_header_only():
    buf = io.BytesIO()
    noise_image().save(buf, "PNG")
    msg = error_of(buf.getvalue()[:200])
    assert msg.startswith("<bytes>: truncated or corrupt")
    assert error_of(buf.getvalue()[:5]).startswith("<bytes>: not an image file")
    assert error_of(b"").startswith("<bytes>: no data (0 bytes)")
    assert error_of(b"hello", name="upload.png").startswith("upload.png: not an image file")


def test_empty_text_missing_directory(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert error_of(empty) == (f"{empty}: file is empty (0 bytes); expected a PNG, JPEG, BMP, "
                               "GIF, TIFF or WebP image — re-export or re-download it")
    text = tmp_path / "notes.txt"
    text.write_text("this is not a picture\n")
    msg = error_of(text)
    assert "notes.txt" in msg and "not an image file" in msg
    missing = tmp_path / "nope.jpg"
    msg = error_of(missing)
    assert "nope.jpg" in msg and "no such file" in msg
    msg = error_of(tmp_path)
    assert str(tmp_path) in msg and "directory" in msg
    assert "does not download" in error_of("https://example.com/cat.jpg")


def test_files_are_closed(tmp_path):
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        pytest.skip("needs /proc/self/fd")
    good = save(noise_image(), tmp_path / "good.png")
    buf = io.BytesIO()
    noise_image().save(buf, "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.getvalue()[:300])
    big = tmp_path / "big.png"
    big.write_bytes(png_header(100, 100))
    before = len(os.listdir(fd_dir))
    for _ in range(5):
        load_image(good)
        for bad, kw in ((cut, {}), (big, {"max_pixels": 10})):
            with pytest.raises(ImageError):
                load_image(bad, **kw)
    assert len(os.listdir(fd_dir)) == before


# -- pixel limit ----------------------------------------------------------------------------
def test_max_pixels_argument(tmp_path):
    path = save(noise_image(10, 20), tmp_path / "small.png")
    assert load_image(path, max_pixels=200).shape == (10, 20, 3)
    msg = error_of(path, max_pixels=199)
    assert msg.startswith(f"{path}: image is 20x10 = 200 pixels, more than the limit of 199")
    assert "max_pixels=" in msg and "CONVLENS_MAX_PIXELS" in msg
    # arrays are already decoded: no limit; PIL images and bytes are checked
    with Image.open(path) as im:
        assert "more than the limit" in error_of(im, max_pixels=100)
    assert "more than the limit" in error_of(path.read_bytes(), max_pixels=100)
    assert "positive" in error_of(path, max_pixels=0)


def test_max_pixels_env_var_and_module_default(tmp_path, monkeypatch):
    path = save(noise_image(10, 20), tmp_path / "small.png")
    monkeypatch.setenv("CONVLENS_MAX_PIXELS", "150")
    msg = error_of(path)
    assert "small.png" in msg and "limit of 150" in msg
    assert load_image(path, max_pixels=1000).shape == (10, 20, 3)  # argument wins
    monkeypatch.setenv("CONVLENS_MAX_PIXELS", "lots")
    assert "CONVLENS_MAX_PIXELS='lots'" in error_of(path)
    monkeypatch.delenv("CONVLENS_MAX_PIXELS")
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    assert "limit of 100" in error_of(path)
    monkeypatch.setattr(images, "MAX_PIXELS", 64_000_000)
    assert load_image(path).shape == (10, 20, 3)


@pytest.mark.parametrize("side", [1000, 10_000, 20_000])
def test_limit_checked_before_decoding_and_no_pillow_leaks(tmp_path, monkeypatch, side):
    # The file has no pixel data: decoding would fail as "truncated", so a "limit"
    # message shows the size was checked first.  10_000^2 trips Pillow's warning,
    # 20_000^2 Pillow's DecompressionBombError: neither may escape.
    monkeypatch.delenv("CONVLENS_MAX_PIXELS", raising=False)
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(side, side))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        msg = error_of(path, max_pixels=1000 if side == 1000 else None)
    assert "bomb.png" in msg and "Traceback" not in msg
    assert ("limit of" in msg) or ("too large to decode safely" in msg)
    if side <= 10_000:
        assert f"{side}x{side} = {side * side:,} pixels" in msg


# -- the cat --------------------------------------------------------------------------------
def test_cat():
    c = cat()
    assert c.shape == (300, 451, 3) and c.dtype == np.float32 and c.flags.c_contiguous
    assert 0.0 <= c.min() and c.max() <= 1.0 and c.std() > 0.1
    data = Path(images.__file__).parent / "data" / "chelsea.png"
    with Image.open(data) as im:
        np.testing.assert_array_equal(c, (np.asarray(im.convert("RGB")) / 255).astype(F32))
    c[...] = 0.0
    again = cat()
    assert again.max() > 0.5 and again is not c
    assert again.flags.writeable


# -- resize ---------------------------------------------------------------------------------
def test_resize_constant_stays_constant():
    img = np.full((300, 451, 3), 0.123456, np.float32)
    out = resize(img, (224, 224))
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    assert np.array_equal(out, np.full_like(out, F32(0.123456)))
    up = resize(img[:5, :7], (17, 23))
    assert np.array_equal(up, np.full((17, 23, 3), F32(0.123456), np.float32))


def test_resize_is_antialiased_and_deterministic():
    # 1-D step 0 0 1 1 halved: bilinear support doubles, weights 3/4, 3/4, 1/4 -> 1/7, 6/7
    row = np.array([[0, 0, 1, 1]], np.float32)
    img = np.repeat(row, 4, axis=0)
    out = resize(img, (2, 2))
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out, [[1 / 7, 6 / 7], [1 / 7, 6 / 7]], atol=1e-6)
    rgb = np.random.default_rng(1).random((31, 47, 3), dtype=np.float32)
    assert np.array_equal(resize(rgb, (13, 29)), resize(rgb, (13, 29)))
    same = resize(rgb, (31, 47))
    assert np.array_equal(same, rgb) and same is not rgb


@pytest.mark.parametrize("size", [(0, 5), (5,), "224", (2.5, 3), None, (True, 4)])
def test_resize_bad_size(size):
    with pytest.raises(ImageError, match="positive integers"):
        resize(np.zeros((4, 4, 3), np.float32), size)


# -- as_batch -------------------------------------------------------------------------------
def test_as_batch_shapes_and_sources(tmp_path):
    one = np.full((4, 6, 3), 0.5, np.float32)
    b = as_batch(one)
    assert b.shape == (1, 4, 6, 3) and b.dtype == np.float32 and b.flags.c_contiguous
    batch = np.random.default_rng(0).random((2, 4, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(as_batch(batch), batch)
    u8 = (batch * 255).astype(np.uint8)
    np.testing.assert_array_equal(as_batch(u8), (u8 / 255).astype(F32))
    px = np.array([[[255, 0, 0]] * 6] * 4, np.uint8)
    path = save(Image.fromarray(px), tmp_path / "red.png")
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, "PNG")
    b = as_batch([one, path, buf.getvalue(), str(path)])
    assert b.shape == (4, 4, 6, 3)
    np.testing.assert_array_equal(b[1], np.broadcast_to(np.array([1, 0, 0], F32), (4, 6, 3)))
    assert as_batch(path).shape == (1, 4, 6, 3)


def test_as_batch_mixed_sizes():
    a = np.full((4, 6, 3), 0.25, np.float32)
    b = np.full((8, 8, 3), 0.75, np.float32)
    with pytest.raises(ImageError) as info:
        as_batch([a, b])
    msg = str(info.value)
    assert "4x6" in msg and "8x8" in msg and "size=(h, w)" in msg and "\n" not in msg
    out = as_batch([a, b], size=(5, 5))
    assert out.shape == (2, 5, 5, 3)
    np.testing.assert_allclose(out[0], 0.25, atol=1e-7)
    np.testing.assert_allclose(out[1], 0.75, atol=1e-7)
    with pytest.raises(ImageError, match="no images"):
        as_batch([])
    with pytest.raises(ImageError, match=r"<array>\[1\]"):
        as_batch(np.stack([a, a * 9]))


def test_image_error_kinds():
    assert issubclass(ImageError, ValueError) and issubclass(ImageError, ConvlensError)
    with pytest.raises(ValueError):
        load_image(np.array([[5.0]]))


def test_images_module_imports_no_framework():
    code = ("import sys, convlens.images, convlens.preprocess; "
            "bad = [m for m in ('torch', 'keras', 'tensorflow') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
