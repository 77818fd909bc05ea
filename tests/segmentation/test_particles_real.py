"""Particle segmentation on real SEM images with manual masks (../shared/realdata/sem-labelled).

Scored with the metric of ``benchmarks/psd_accuracy.py`` (centroid in a mask instance that no
other centroid hits, ECD within 0.8-1.25x). The floors are what the methods reach today;
the issue's target (9 of 10 images within x50 10 %, count 20 %, F1 0.7) is not yet met.
The default method (``learned``, "ours" in the benchmark) never saw these images (trained
and tuned on the synthetic SEM model only).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BAM = ROOT.parent / "shared" / "realdata" / "sem-labelled" / "bam_tio2"

pytestmark = pytest.mark.skipif(not BAM.is_dir(), reason="labelled SEM set not present")


@pytest.fixture(scope="module")
def scores():
    spec = importlib.util.spec_from_file_location("psd_accuracy", ROOT / "benchmarks" /
                                                  "psd_accuracy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = {m: [] for m in ("ours", "classic", "seams", "skimage")}
    for path in bench.images(BAM):
        da, mask, px_nm = bench.load_image(path)
        truth = bench.truth_labels(mask)
        for m, rows in out.items():
            centroids, ecd, _s, _refused = bench.run_method(m, da, px_nm)
            rows.append(bench.score_image(truth, centroids, ecd, px_nm))
    return out


def _mean(rows, key):
    return float(np.mean([abs(r[key]) for r in rows]))


@pytest.mark.slow
def test_seams_beats_the_anchor_and_the_classic_method(scores):
    seams, classic, anchor = scores["seams"], scores["classic"], scores["skimage"]
    assert len(seams) == 10
    assert _mean(seams, "f1") >= 0.65
    assert _mean(seams, "f1") > _mean(anchor, "f1") + 0.2
    assert _mean(seams, "f1") > _mean(classic, "f1") + 0.2
    assert _mean(seams, "x50_err_pct") < 15.0 < _mean(anchor, "x50_err_pct")
    assert _mean(seams, "count_err_pct") < 20.0


def test_no_image_is_refused_by_seams(scores):
    assert all(r["n"] > 0 for r in scores["seams"])


def test_the_default_beats_the_anchor_on_images_it_never_saw(scores):
    """The default (``learned``): the network was trained on synthetic images only; these
    real ones are held out."""
    learned, anchor, seams = scores["ours"], scores["skimage"], scores["seams"]
    assert len(learned) == 10 and all(r["n"] > 0 for r in learned)
    assert _mean(learned, "f1") >= 0.66
    assert _mean(learned, "f1") > _mean(anchor, "f1") + 0.2
    assert _mean(learned, "x50_err_pct") < 8.0 < _mean(anchor, "x50_err_pct")
    assert _mean(learned, "x50_err_pct") < _mean(seams, "x50_err_pct")
    assert _mean(learned, "count_err_pct") < 14.0
    assert sum(r["f1"] >= 0.7 and abs(r["x50_err_pct"]) <= 10 and abs(r["count_err_pct"]) <= 20
               for r in learned) >= 3
