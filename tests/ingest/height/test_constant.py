"""A height map whose data cannot be a measurement is refused, whatever its format.

An interrupted copy or a pre-allocated export leaves a data block of zeros; measured as is,
it is a perfectly flat surface that passes every roughness limit. `height_dataarray`, which
every height reader goes through, refuses a block with no valid point, or whose valid points
all hold one value.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest

from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import CONSTANT_HEIGHTS, height_dataarray
from pipeline.ingest.height.sur import HEADER_FIELDS
from tests.helpers import assert_unreadable, realfile
from tests.ingest.height.test_al3d import al3d_bytes
from tests.ingest.height.test_plu import UNDEFINED, plu_bytes
from tests.ingest.height.test_sur import sur_object
from tests.ingest.height.test_zygo import BAD_PHASE, dat_bytes

CONSTANT = re.escape(CONSTANT_HEIGHTS)
assert CONSTANT_HEIGHTS == "no height data (the block is constant: an interrupted copy?)"


def _hd(z):
    return height_dataarray(np.asarray(z, dtype=float), path="h.dat", dx_um=0.5, dy_um=0.5,
                            pixel_size_source="test", vendor="test", fmt="test")


# ------------------------------------------------- real files with their data block zeroed


def _plu_block(buf: bytes) -> tuple[int, int]:
    rows, cols = struct.unpack_from("<2I", buf, 500)  # first layer's dimensions
    return 508, rows * cols * 4


def _dat_block(buf: bytes) -> tuple[int, int]:
    header_size, = struct.unpack_from(">I", buf, 6)
    intensity_bytes, = struct.unpack_from(">I", buf, 60)
    cols, rows = struct.unpack_from(">2H", buf, 68)
    return header_size + intensity_bytes, rows * cols * 4


def _sur_block(buf: bytes) -> tuple[int, int]:
    names = [n for n, _ in HEADER_FIELDS]
    fmt = "<" + "".join(c for _, c in HEADER_FIELDS)
    values = dict(zip([n for n in names if n], struct.unpack_from(fmt, buf, 0)))
    start = 512 + values["comment_size"] + values["private_size"]
    return start, values["n_x"] * values["n_y"] * values["bits_per_point"] // 8


def _al3d_block(buf: bytes) -> tuple[int, int]:
    def tag(key: bytes) -> int:
        return int(re.search(key + rb"\x00+([0-9]+)\x00", buf).group(1))

    cols, rows = tag(b"Cols"), tag(b"Rows")
    stride = -(-cols * 4 // 8) * 8 // 4
    return tag(b"DepthImageOffset"), rows * stride * 4


@pytest.mark.parametrize("name, block", [
    ("surfalize_test_1.plu", _plu_block),
    ("surfalize_test_1.dat", _dat_block),
    ("surfalize_test_uncompressed.sur", _sur_block),
    ("surftopo_al3d-1.al3d", _al3d_block),
])
def test_real_file_with_zeroed_data_block_is_refused(tmp_path, name, block):
    buf = bytearray(realfile("heightmaps", name).read_bytes())
    start, size = block(bytes(buf))
    assert 0 < start and start + size <= len(buf)
    buf[start:start + size] = bytes(size)
    p = tmp_path / name
    p.write_bytes(bytes(buf))
    assert_unreadable(p, CONSTANT)


# ------------------------------------------------------------ files made by the test writers


@pytest.mark.parametrize("name, content", [
    ("zeros.plu", lambda: plu_bytes(np.zeros((7, 11)))),
    ("const.plu", lambda: plu_bytes(np.full((7, 11), 2.5))),
    ("zeros.dat", lambda: dat_bytes(np.zeros((5, 8), np.int32))),
    ("zeros.sur", lambda: sur_object(np.zeros((6, 9), np.int32))),
    ("const.sur", lambda: sur_object(np.full((6, 9), 7, np.int32), offset_z=0.3)),
    ("zeros.al3d", lambda: al3d_bytes(np.zeros((6, 7)))),
])
def test_constant_block_is_refused(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content())
    assert_unreadable(p, CONSTANT)


def test_valid_points_of_one_value_are_refused(tmp_path):
    z = np.full((7, 11), 1.25)
    z[2:4, 3:8] = UNDEFINED  # unmeasured points, NaN once read
    p = tmp_path / "holes.plu"
    p.write_bytes(plu_bytes(z))
    assert_unreadable(p, CONSTANT)
    phase = np.zeros((5, 8), np.int32)
    phase[1, :4] = BAD_PHASE
    p = tmp_path / "holes.dat"
    p.write_bytes(dat_bytes(phase))
    assert_unreadable(p, CONSTANT)


def test_constant_float_tiff_is_refused(tmp_path):
    import tifffile

    p = tmp_path / "flat.tif"
    tifffile.imwrite(p, np.full((20, 30), 4.0, np.float32),
                     metadata={"pixel_size_um": {"x": 0.5, "y": 0.5}, "z_unit": "um"})
    assert_unreadable(p, CONSTANT)


# ----------------------------------------------------------------- height_dataarray itself


@pytest.mark.parametrize("z", [
    np.zeros((3, 4)),
    np.full((3, 4), -7.5),
    [[1.0, np.nan], [1.0, np.inf]],
    [[np.nan, -np.inf, 2.0]],  # a single valid point
])
def test_height_dataarray_refuses_constant_valid_points(z):
    with pytest.raises(UnreadableInput, match="h.dat: " + CONSTANT):
        _hd(z)


def test_height_dataarray_refuses_no_valid_point():
    with pytest.raises(UnreadableInput, match=r"h.dat: height map has no valid point"):
        _hd(np.full((3, 4), np.nan))


def test_height_dataarray_keeps_the_smallest_variation():
    da = _hd([[1.0, 1.0, np.nan], [1.0, 1.0 + 1e-12, 1.0]])
    assert da.attrs["invalid_fraction"] == pytest.approx(1 / 6)
