"""Hardening (issue 14): model archives checked before loading, NaN and Inf counted in
every picture, security headers and meta on every page."""
from __future__ import annotations

import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

import convlens
from convlens.capture import archive
from convlens.errors import ModelError


# -- model archives -------------------------------------------------------------------
def zip_bomb(path, name="model.weights.h5", size=1 << 30, chunk=1 << 24):
    """A real deflated zip whose one member inflates to ``size`` zero bytes (about 1 MB
    for 1 GiB): the same compressed block, flushed so that it stands alone, repeated."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(chunk)
    block = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    tail = co.flush(zlib.Z_FINISH)
    n = size // chunk
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(zeros, crc)
    packed = len(block) * n + len(tail)
    fn = name.encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, packed, size,
                            len(fn), 0) + fn)
        for _ in range(n):
            f.write(block)
        f.write(tail)
        start = f.tell()
        cd = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, packed, size,
                         len(fn), 0, 0, 0, 0, 0, 0) + fn
        f.write(cd)
        f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(cd), start, 0))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = zip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.keras")
    assert path.stat().st_size < 1_100_000
    with zipfile.ZipFile(path) as zf:  # a real archive: Python's zipfile inflates it
        assert zf.infolist()[0].file_size == 1 << 30
        with zf.open("model.weights.h5") as m:
            assert m.read(1 << 20) == bytes(1 << 20)
    return path


def _cli(tmp_path, *args):
    """Run the convlens CLI in a child process under /usr/bin/time (a child forked from
    pytest would inherit pytest's peak in its own ru_maxrss); returns (status, stderr,
    peak RSS in MB)."""
    peak = tmp_path / "peak.txt"
    r = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(peak), sys.executable, "-c",
                        "import sys; from convlens.cli import main; sys.exit(main())",
                        *map(str, args)], capture_output=True, text=True, timeout=120)
    return r.returncode, r.stderr, int(peak.read_text().split()[-1]) / 1024


def test_a_zip_bomb_is_refused_in_one_line_with_little_memory(bomb, tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    status, err, peak_mb = _cli(tmp_path, "run", "--model", bomb, "-o", tmp_path / "out", img)
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "inflate to 1.00 GiB" in err and "zip bomb" in err and "MAX_RATIO" in err
    assert 20 < peak_mb < 300
    assert not (tmp_path / "out").exists()


def test_the_same_bomb_as_torchscript_is_refused(bomb, tmp_path, monkeypatch):
    pt = tmp_path / "bomb.pt"
    pt.write_bytes(bomb.read_bytes())
    with pytest.raises(ModelError, match=r"bomb.pt: cannot load this TorchScript model: .* "
                                         r"\(1,028 times"):
        convlens.load_model(pt)
    monkeypatch.setattr(archive, "MAX_RATIO", 2000)  # raised by a user who trusts it:
    assert archive.check_archive(bomb) == 1 << 30     # the next limit is 4 GiB


def test_archive_limits(tmp_path, monkeypatch):
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:  # stored: no compression, ratio 1
        for k in range(5):
            zf.writestr(f"f{k}", bytes(1000))
    assert archive.check_archive(path) == 5000
    monkeypatch.setattr(archive, "MAX_MEMBERS", 4)
    with pytest.raises(ModelError, match="holds 5 files; the limit is 4 — if you trust"):
        archive.check_archive(path)
    monkeypatch.setattr(archive, "MAX_MEMBERS", 5)
    monkeypatch.setattr(archive, "MAX_UNCOMPRESSED_BYTES", 4999)
    with pytest.raises(ModelError, match="MAX_UNCOMPRESSED_BYTES"):
        convlens.load_model(path)
    monkeypatch.undo()
    # a highly compressible archive below RATIO_FLOOR is fine (small models compress)
    small = tmp_path / "small.keras"
    with zipfile.ZipFile(small, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("w", bytes(1 << 20))
    assert archive.check_archive(small) == 1 << 20


keras = pytest.importorskip("keras")


def test_a_truncated_keras_file_says_so(tmp_path):
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(2, 3)])
    model.save(tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"cut.keras: cannot load this Keras model: the file "
                                         r"is truncated or corrupt") as err:
        convlens.load_model(cut)
    assert "not found" not in str(err.value).lower()
    text = tmp_path / "text.keras"
    text.write_text("not a zip")
    with pytest.raises(ModelError, match="truncated or corrupt .a .keras file is a zip"):
        convlens.load_model(text)

def test_a_truncated_torchscript_file_says_so(tmp_path):
    import torch
    torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1))).save(str(tmp_path / "t.pt"))
    data = (tmp_path / "t.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelError, match="cut.pt: cannot load this TorchScript model: the "
                                         "file is truncated or corrupt"):
        convlens.load_model(tmp_path / "cut.pt")
