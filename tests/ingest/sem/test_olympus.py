"""Olympus SIS reader (tag 33560 via tifffile's sis_metadata, pixel size in metres).

No real SIS file is in ../shared/realdata; the files are built here with the SIS0 layout
that tifffile parses (header, one tag entry, general-data block with a power-of-ten
exponent and x/y calibration).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

import pipeline
from pipeline.ingest.sem.olympus import OlympusSisReader
from tests.helpers import assert_unreadable

_MARK = b"SIS0" + b"\xab" * 176


def _sis_block(base: int, x_m: float, y_m: float, exp: int) -> bytes:
    hdr = struct.pack("<4s6xhhhhh6x32sH", b"SIS0", 30, 12, 5, 3, 120, b"sample".ljust(32, b"\0"), 1)
    entry = struct.pack("<hhI", 1, 1, base + 68)
    gen = struct.pack("<10xhdd8xd2x34s32s", exp, x_m / 10.0**exp, y_m / 10.0**exp, 2500.0,
                      b"SEM-SE".ljust(34, b"\0"), b"BSE".ljust(32, b"\0"))
    return hdr + entry + gen


def _write(tmp_path, *, x_m=5e-9, y_m=5e-9, exp=-9, dtype=np.uint16, name="sis.tif"):
    import tifffile

    p = tmp_path / name
    img = np.arange(48 * 64, dtype=dtype).reshape(48, 64)
    tifffile.imwrite(p, img, extratags=[(33560, 1, len(_MARK), _MARK, True)])
    raw = bytearray(p.read_bytes())
    off = raw.index(_MARK)
    raw[off:off + len(_MARK)] = _sis_block(off, x_m, y_m, exp)
    p.write_bytes(bytes(raw))
    return p, img


@pytest.mark.parametrize("x_m,y_m,exp", [(5e-9, 5e-9, -9), (1.25e-6, 1.5e-6, -6)])
def test_pixel_size_metres_to_um(tmp_path, x_m, y_m, exp):
    p, img = _write(tmp_path, x_m=x_m, y_m=y_m, exp=exp)
    da = pipeline.read(p)
    assert da.attrs["reader"] == "olympus_sis"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(x_m * 1e6, rel=1e-9)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(y_m * 1e6, rel=1e-9)
    assert "33560" in da.attrs["pixel_size_source"]
    assert da.attrs["magnification"] == pytest.approx(2500)
    assert da.attrs["instrument"] == "SEM-SE"
    np.testing.assert_array_equal(da.values, img)
    assert da.dtype == np.uint16


def test_zero_calibration_is_uncalibrated(tmp_path):
    p, _ = _write(tmp_path, x_m=0.0, y_m=0.0)
    da = pipeline.read(p)
    assert da.attrs["reader"] == "olympus_sis" and da.attrs["calibration"] == "missing"


def test_plain_tiff_is_not_sis(tmp_path):
    import tifffile

    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, np.zeros((8, 8), np.uint8))
    assert not OlympusSisReader().can_open(p.read_bytes()[:4096], p)


def test_truncated_sis_tiff(tmp_path):
    p, _ = _write(tmp_path)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 2000])
    assert_unreadable(p, "truncated or corrupt")
