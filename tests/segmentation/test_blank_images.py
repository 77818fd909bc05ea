"""Every SEM measurement refuses a blank image alike: its data cannot be a micrograph."""

from __future__ import annotations

import numpy as np
import pytest

import pipeline
from pipeline.errors import UnreadableInput
from pipeline.ingest.dataarray import refuse_blank, sem_dataarray
from pipeline.segmentation.cross_section import porosity_from_cross_section
from pipeline.segmentation.particles import find_particles
from pipeline.segmentation.protrusions import find_protrusions
from tests.helpers import realfile

MEASUREMENTS = {
    "particles": lambda da: find_particles(da),
    "protrusions": lambda da: find_protrusions(da),
    "porosity": lambda da: porosity_from_cross_section(da),
}


def _sem(img, masked=None):
    return sem_dataarray(img, path="blank.tif", pixel_size_um=(0.01, 0.01),
                         pixel_size_source="test", vendor="test", fmt="tiff",
                         masked_regions=masked)


def _nearly_blank(dtype=np.uint8):
    img = np.full((120, 160), 30, dtype)
    img[5, :50] = 180  # a stray line: 50 of 19200 pixels
    return img


@pytest.mark.parametrize("name", MEASUREMENTS)
@pytest.mark.parametrize("img, match", [
    (np.zeros((120, 160), np.uint8), r"blank: every analysed pixel is 0 \(all black\)"),
    (np.full((120, 160), 65535, np.uint16), r"blank: every analysed pixel is 65535 \(all white\)"),
    (np.full((120, 160), 1000, np.uint16), r"blank: every analysed pixel is 1000 \(all uniform grey\)"),
    (_nearly_blank(), r"nearly blank: only 50 of its 19200 analysed pixels differ from 30"),
])
def test_blank_images_are_refused_by_every_measurement(name, img, match):
    with pytest.raises(UnreadableInput, match="blank.tif: the image is " + match) as info:
        MEASUREMENTS[name](_sem(img))
    assert info.value.exit_code == 4
    assert "\n" not in info.value.problem


def test_masked_regions_do_not_count():
    # the only contrast is a burned-in label that is masked: the analysed area is blank
    img = np.full((120, 160), 50, np.uint8)
    img[100:, :80] = np.random.default_rng(0).integers(0, 255, (20, 80), dtype=np.uint8)
    label = {"row0": 100, "row1": 120, "col0": 0, "col1": 80, "reason": "label"}
    with pytest.raises(UnreadableInput, match="every analysed pixel is 50"):
        refuse_blank(_sem(img, masked=[label]))
    refuse_blank(_sem(img))  # without the mask, 8 % of the pixels vary: not blank


def test_a_real_image_is_not_blank():
    rng = np.random.default_rng(1)
    img = np.clip(rng.normal(100, 1.0, (120, 160)), 0, 255).astype(np.uint8)  # low noise
    refuse_blank(_sem(img))


@pytest.mark.parametrize("name", ["fei_helios660_ebeam_8bit.tif", "fei_helios660_ebeam_16bit.tif"])
def test_real_zeroed_instrument_files_are_refused(name):
    # real FEI exports whose pixel data was zeroed (the data bar is intact): readable,
    # calibrated, and blank
    path = realfile("sem", name)
    da = pipeline.read(path)
    assert da.attrs["pixel_size_um"] is not None
    for measure in MEASUREMENTS.values():
        with pytest.raises(UnreadableInput, match="the image is blank: every analysed pixel "
                                                  r"is 0 \(all black\)") as info:
            measure(da)
        assert str(path) in str(info.value)
