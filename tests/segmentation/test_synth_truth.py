"""Porosity and protrusions on the generators of `pipeline.synth` (the files the example
electrodes are made from), against the truth those generators return."""

import numpy as np
import pytest

from pipeline.ingest.dataarray import sem_dataarray
from pipeline.segmentation.cross_section import porosity_from_cross_section
from pipeline.segmentation.protrusions import find_protrusions
from pipeline.synth import cross_section_image, surface_image


def sem(img, pixel_um):
    return sem_dataarray(img, path="synthetic.tif", pixel_size_um=(pixel_um, pixel_um),
                         pixel_size_source="synthetic", vendor="synthetic", fmt="tiff")


# the patent's Table 1 porosities after and before pressing (Embodiment 1, Comparative 3)
@pytest.mark.slow
@pytest.mark.parametrize("porosity", [0.364, 0.571, 0.71])
@pytest.mark.parametrize("seed", [0, 1])
def test_cross_section_porosity_within_1_5_points(seed, porosity):
    img, truth = cross_section_image(porosity=porosity, seed=seed)
    r = porosity_from_cross_section(sem(img, 0.05))
    assert abs(r["porosity_frac"] - truth["porosity_frac"]) <= 0.015
    assert r["band"][0] <= r["porosity_frac"] <= r["band"][1]
    assert abs(r["layer_bottom_row"] - truth["layer_bottom_row"]) <= 3
    assert r["thickness_um"] == pytest.approx(0.05 * 500, rel=0.03)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_surface_protrusions_recall_precision(seed):
    img, truth = surface_image(seed=seed)
    found = find_protrusions(sem(img, 1.0))
    true_rc = np.array([[b["row"], b["col"]] for b in truth["protrusions"]])
    found_rc = found[["y_um", "x_um"]].to_numpy() - 0.5  # pixel centres at (i + 0.5) um
    dist = np.hypot(*(true_rc[:, None, :] - found_rc[None, :, :]).transpose(2, 0, 1))
    recall = np.mean(dist.min(axis=1) < 5.0)
    precision = np.mean(dist.min(axis=0) < 5.0)
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)


@pytest.mark.slow
def test_cross_section_masked_text_is_left_out():
    """Burned-in text (white on black) across the layer and a masked band of whole rows:
    neither moves the porosity nor ends the layer."""
    img, truth = cross_section_image(porosity=0.45, seed=3)
    img = img.copy()
    img[300:330, 100:500] = 255  # a white label over the layer
    img[400:404, :] = 0          # burned rows across it
    regions = [{"row0": 300, "row1": 330, "col0": 100, "col1": 500, "reason": "text"},
               {"row0": 400, "row1": 404, "col0": 0, "col1": img.shape[1], "reason": "rows"}]
    da = sem_dataarray(img, path="masked.tif", pixel_size_um=(0.05, 0.05),
                       pixel_size_source="synthetic", vendor="synthetic", fmt="tiff",
                       masked_regions=regions)
    r = porosity_from_cross_section(da)
    assert abs(r["porosity_frac"] - truth["porosity_frac"]) <= 0.015
    assert abs(r["layer_top_row"] - truth["layer_top_row"]) <= 5
    assert "masked_regions_excluded" in r["flags"]
    unmasked = porosity_from_cross_section(sem(img, 0.05))  # the same pixels, not masked
    assert abs(unmasked["porosity_frac"] - truth["porosity_frac"]) > \
        abs(r["porosity_frac"] - truth["porosity_frac"])
