"""Particles against the realistic ground truth of `pipeline.synth.particle_image`
(rims, necks, shading, shot noise, silver): the Done-when checks of the segmentation issue
on five seeds of 40 + 80 nm at 2 nm/px, 2048 x 1536, and monomodal images."""

import numpy as np
import pytest

from pipeline.errors import MeasurementError
from pipeline.ingest.dataarray import sem_dataarray
from pipeline.segmentation.particles import find_particles
from pipeline.segmentation.psd import size_distribution
from pipeline.synth import match_labels, particle_image

SEEDS = [0, 1, 2, 3, 4]  # seed 0 once split at carbon/silver: a regression


def sem(img, pixel_nm=2.0):
    return sem_dataarray(img, path="synthetic", pixel_size_um=(pixel_nm / 1e3, pixel_nm / 1e3),
                         pixel_size_source="synthetic", vendor="synthetic", fmt="synthetic")


@pytest.fixture(scope="module", params=SEEDS)
def bimodal(request):
    img, truth = particle_image(seed=request.param, return_labels=True)
    table, labels = find_particles(sem(img), return_labels=True)
    return truth, table, labels


@pytest.mark.slow
def test_split_one_to_one(bimodal):
    truth, _table, labels = bimodal
    pairs = match_labels(truth["labels"], labels)
    inner = [p["id"] for p in truth["particles"] if not p["touches_edge"]]
    visible = np.bincount(truth["labels"].ravel(), minlength=len(truth["particles"]) + 1)
    inner = [i for i in inner if visible[i] > 0]  # hidden entirely behind a neighbour
    share = np.mean([i in pairs for i in inner])
    assert share >= 0.88, share


def test_silver_recall_and_precision(bimodal):
    truth, table, labels = bimodal
    pairs = match_labels(truth["labels"], labels)
    phase = dict(zip(table["label"], table["phase"]))
    true_phase = {p["id"]: p["phase"] for p in truth["particles"]}
    silver = [p["id"] for p in truth["particles"]
              if p["phase"] == "silver" and not p["touches_edge"]]
    found = table[(table["phase"] == "silver") & ~table["touches_edge"]]["label"]
    back = {f: t for t, f in pairs.items()}
    recall = np.mean([t in pairs and phase[pairs[t]] == "silver" for t in silver])
    precision = np.mean([f in back and true_phase[back[f]] == "silver" for f in found])
    assert len(silver) > 50
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)


def test_modes_within_3_percent_and_bic_2(bimodal):
    truth, table, _labels = bimodal
    dist = size_distribution(table)
    means = sorted(m["mean_nm"] for m in dist["modes"])
    assert means == [pytest.approx(40.0, rel=0.03), pytest.approx(80.0, rel=0.03)]
    assert dist["bic_k"] == 2
    assert not any("BIC" in f or "coarse" in f for f in dist["flags"])
    n_carbon = sum(p["phase"] == "carbon" and not p["touches_edge"] for p in truth["particles"])
    assert dist["n"] >= 0.85 * n_carbon
    # a few merges reach 100 nm; most of them are caught by the merge guard
    assert dist["share_ge_100nm"] < 0.05
    assert 0.10 < dist["ag_area_frac"] < 0.20


@pytest.mark.slow
@pytest.mark.parametrize("median_nm, seed", [(40.0, 0), (120.0, 1)])
def test_monomodal_bic_1(median_nm, seed):
    img, _truth = particle_image(seed=seed, modes=((median_nm, 0.12, 1.0),))
    dist = size_distribution(find_particles(sem(img)))
    assert dist["bic_k"] == 1
    assert "BIC chooses k=1 modes, not 2" in dist["flags"]
    gmean = np.exp(np.average(np.log([m["mean_nm"] for m in dist["modes"]]),
                              weights=[m["number_share"] for m in dist["modes"]]))
    assert gmean == pytest.approx(median_nm, rel=0.04)


@pytest.mark.slow
def test_resolution_gate_on_measured_modes():
    """Without ``min_diameter_nm`` the gate works from the measured smallest mode: at 3 nm/px
    the 40 nm mode is still measured (40.9 nm) and the pixel, coarser than 1/20 of it, is
    flagged. Beyond 1/10 segmentation collapses (at 6 nm/px the 40 nm particles merge into
    ~150 nm clumps) and the measured sizes cannot reveal it, so the refusal needs the
    expected size up front."""
    img, _ = particle_image((600, 800), pixel_nm=3.0, seed=3)
    table = find_particles(sem(img, 3.0))
    dist = size_distribution(table)
    assert min(m["mean_nm"] for m in dist["modes"]) == pytest.approx(40.0, rel=0.05)
    assert any(f.startswith("coarse pixel: 3 nm > 1/20") for f in dist["flags"])
    table.attrs["pixel_size_nm"] = {"x": 4.5, "y": 4.5}  # the same sizes, a coarser pixel
    with pytest.raises(MeasurementError, match="tenth of the smallest mode"):
        size_distribution(table)
    img6, _ = particle_image((600, 800), pixel_nm=6.0, seed=3)
    with pytest.raises(MeasurementError, match="tenth of the smallest diameter 40"):
        find_particles(sem(img6, 6.0), min_diameter_nm=40.0)
