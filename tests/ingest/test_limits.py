"""Bounds on what an instrument file may claim: plausible pixel sizes."""

from __future__ import annotations

import re

import numpy as np
import pytest

import pipeline
from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import height_dataarray, sem_dataarray
from pipeline.ingest.limits import MAX_PIXEL_SIZE_UM, MIN_PIXEL_SIZE_UM, check_pixel_size
from tests.helpers import assert_unreadable
from tests.ingest.height.test_x3p import axis, main_xml, write_x3p


def test_plausible_range_is_a_tenth_of_a_nanometre_to_a_millimetre():
    assert (MIN_PIXEL_SIZE_UM, MAX_PIXEL_SIZE_UM) == (1e-4, 1e3)
    assert check_pixel_size("f", 1e-4, 1e3) == (1e-4, 1e3)
    assert check_pixel_size("f", 0.0077, 263.975) == (0.0077, 263.975)  # SEM, navigation camera


@pytest.mark.parametrize("dx, dy, axis_name, shown", [
    (5e-5, 1.0, "x", "5e-05"),      # 0.05 nm
    (1.0, 2e3, "y", "2000"),        # 2 mm
    (1e-9, 1e-9, "x", "1e-09"),     # metres taken for micrometres
    (3.3724e6, 3.3724e6, "x", "3.3724e+06"),  # picometres taken for micrometres
])
def test_absurd_pixel_size_is_a_corrupt_calibration(dx, dy, axis_name, shown):
    with pytest.raises(UnreadableInput, match=re.escape(f"f: pixel size {axis_name} is {shown} "
                                                        "um: the calibration is corrupt")) as info:
        check_pixel_size("f", dx, dy)
    assert info.value.exit_code == 4


def test_sem_and_height_dataarrays_refuse_absurd_pixel_sizes():
    with pytest.raises(UnreadableInput, match="s.tif: pixel size x is 20000 um: the calibration"):
        sem_dataarray(np.arange(12, dtype=np.uint8).reshape(3, 4), path="s.tif",
                      pixel_size_um=(2e4, 2e4), pixel_size_source="t", vendor="t", fmt="t")
    with pytest.raises(UnreadableInput, match="h.x3p: pixel size y is 5e-05 um: the calibration"):
        height_dataarray(np.arange(12.0).reshape(3, 4), path="h.x3p", dx_um=0.5, dy_um=5e-5,
                         pixel_size_source="t", vendor="t", fmt="t")


@pytest.mark.parametrize("inc, shown", [("1e-11", "1e-05"), ("0.5", "500000")])
def test_reader_with_absurd_increment_is_refused(tmp_path, inc, shown):
    xml = main_xml(nx=3, ny=2, cx=axis("CX", inc=inc))
    p = write_x3p(tmp_path / "px.x3p", xml,
                  {"bindata/data.bin": (np.arange(6, dtype="<f8") * 1e-6).tobytes()})
    assert_unreadable(p, rf"pixel size x is {shown} um: the calibration is corrupt \(a pixel "
                         r"of 0\.1 nm to 1 mm is expected\)")


def test_real_sem_files_read_within_the_bounds(realdata):
    files = sorted((realdata / "sem").glob("*.tif"))
    assert files
    for f in files:
        da = pipeline.read(f)
        ps = da.attrs["pixel_size_um"]
        if ps is not None:
            assert MIN_PIXEL_SIZE_UM <= min(ps.values()) <= max(ps.values()) <= MAX_PIXEL_SIZE_UM
