"""Generic TIFF fallback: any other 8/16-bit grey TIFF, uncalibrated; floats declined."""

from __future__ import annotations

import numpy as np
import pytest

import pipeline
from pipeline.errors import MissingCalibration
from pipeline.ingest.dataarray import require_pixel_size
from pipeline.ingest.sem.generic import GenericTiffReader
from tests.helpers import assert_unreadable


def _write(tmp_path, arr, name="g.tif", **kw):
    import tifffile

    p = tmp_path / name
    tifffile.imwrite(p, arr, **kw)
    return p


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_grey_tiff_read_uncalibrated(tmp_path, dtype):
    arr = np.random.default_rng(0).integers(0, 200, (40, 50)).astype(dtype)
    p = _write(tmp_path, arr, resolution=(300, 300))  # DPI must not become a pixel size
    da = pipeline.read(p)
    assert da.attrs["reader"] == "generic_tiff"
    assert da.attrs["pixel_size_um"] is None and da.attrs["calibration"] == "missing"
    assert da.attrs["vendor"] == "unknown"
    assert da.dtype == dtype
    np.testing.assert_array_equal(da.values, arr)
    with pytest.raises(MissingCalibration, match="no pixel size"):
        require_pixel_size(da)


def test_priority_is_last_among_sem_readers():
    assert GenericTiffReader.priority == 80


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_tiff_declined(tmp_path, dtype):
    p = _write(tmp_path, np.zeros((10, 10), dtype))
    assert not GenericTiffReader().can_open(p.read_bytes()[:4096], p)


def test_rgb_declined(tmp_path):
    p = _write(tmp_path, np.zeros((10, 10, 3), np.uint8), photometric="rgb")
    assert not GenericTiffReader().can_open(p.read_bytes()[:4096], p)


def test_int32_declined(tmp_path):
    p = _write(tmp_path, np.zeros((10, 10), np.int32))
    assert not GenericTiffReader().can_open(p.read_bytes()[:4096], p)


def test_truncated_tiff(tmp_path):
    p = _write(tmp_path, np.random.default_rng(1).integers(0, 255, (200, 300)).astype(np.uint8))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    assert_unreadable(p, "truncated or corrupt")


def test_huge_declared_dimensions_refused(tmp_path):
    import tifffile

    p = _write(tmp_path, np.zeros((16, 16), np.uint8))
    with tifffile.TiffFile(p) as tif:
        tags = tif.pages.first.tags
        w, h = tags[256], tags[257]
        offs = [(w.valueoffset, w.dtype), (h.valueoffset, h.dtype)]
    raw = bytearray(p.read_bytes())
    for off, dt in offs:
        fmt = "<I" if int(dt) == 4 else "<H"
        import struct
        struct.pack_into(fmt, raw, off, 60000)
    p.write_bytes(bytes(raw))
    assert_unreadable(p, "exceed the limit")


def test_non_image_file(tmp_path):
    p = tmp_path / "readme.tif"
    p.write_bytes(b"\x89PNG but not really")
    assert_unreadable(p, "no reader recognises")
