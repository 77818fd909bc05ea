"""size_distribution: hand-worked weighting cases, mixtures, exclusions, end-to-end truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import MeasurementError
from pipeline.segmentation.psd import size_distribution, weighted_quantiles


def table(d, *, edge=None, merge=None, phase=None, ag_area_frac=0.05):
    d = np.asarray(d, float)
    n = d.size
    df = pd.DataFrame({
        "label": np.arange(1, n + 1), "ecd_nm": d,
        "phase": phase if phase is not None else ["carbon"] * n,
        "touches_edge": np.zeros(n, bool) if edge is None else np.asarray(edge, bool),
        "merge_suspect": np.zeros(n, bool) if merge is None else np.asarray(merge, bool),
    })
    df.attrs.update(ag_area_frac=ag_area_frac, flags=[], source_path="t.tif")
    return df


def test_hand_worked_number_quantiles():
    # Hazen positions of 10, 20, 30, 40: P = 1/8, 3/8, 5/8, 7/8
    q = weighted_quantiles(np.array([10.0, 20, 30, 40]), np.ones(4), (0.10, 0.5, 0.75))
    np.testing.assert_allclose(q[0], [10.0, 25.0, 35.0], rtol=1e-12)


def test_hand_worked_volume_quantiles():
    # weights 1, 8, 27, 64 (sum 100): P = 0.005, 0.05, 0.225, 0.68;
    # x50 = 30 + (0.5 - 0.225) / (0.68 - 0.225) * 10 = 36.0440
    q = weighted_quantiles(np.array([10.0, 20, 30, 40]), np.array([1.0, 8, 27, 64]), (0.5, 0.9))
    assert q[0, 0] == pytest.approx(30 + 0.275 / 0.455 * 10, rel=1e-9)
    assert q[0, 1] == pytest.approx(40.0)  # beyond the last position: clamped


def test_number_and_volume_means():
    r = size_distribution(table([10.0, 20, 30, 40] * 5), n_boot=50)
    assert r["number"]["mean_nm"] == pytest.approx(25.0)
    # D[4,3] = sum d^4 / sum d^3 = (1e4 + 16e4 + 81e4 + 256e4) / (1e3 + 8e3 + 27e3 + 64e3)
    assert r["volume"]["mean_nm"] == pytest.approx(354e4 / 100e3)
    assert r["n"] == 20
    assert r["x50_nm"] == pytest.approx(25.0)
    lo, hi = r["number"]["x50_ci95_nm"]
    assert lo <= 25.0 <= hi and hi > lo
    rv = size_distribution(table([10.0, 20, 30, 40] * 5), weights="volume", n_boot=0)
    assert rv["x50_nm"] == pytest.approx(rv["volume"]["x50_nm"])
    assert rv["x50_nm"] > r["x50_nm"]


def test_gsd_of_lognormal():
    rng = np.random.default_rng(1)
    d = np.exp(rng.normal(np.log(50.0), 0.2, 4000))
    r = size_distribution(table(d), n_boot=100)
    assert r["number"]["gsd"] == pytest.approx(np.exp(0.2), rel=0.03)
    assert r["number"]["x50_nm"] == pytest.approx(50.0, rel=0.02)
    # volume-weighted median of a log-normal: exp(mu + 3 s^2)
    assert r["volume"]["x50_nm"] == pytest.approx(50.0 * np.exp(3 * 0.04), rel=0.03)
    assert r["bic_k"] == 1
    assert any("BIC chooses k=1" in f for f in r["flags"])


def test_bimodal_mixture_shares():
    rng = np.random.default_rng(2)
    d = np.concatenate([np.exp(rng.normal(np.log(40), 0.08, 1200)),
                        np.exp(rng.normal(np.log(80), 0.08, 800))])
    r = size_distribution(table(d), n_boot=20)
    assert r["bic_k"] == 2
    m1, m2 = r["modes"]
    assert m1["mean_nm"] == pytest.approx(40, rel=0.02)
    assert m2["mean_nm"] == pytest.approx(80, rel=0.02)
    assert m1["number_share"] == pytest.approx(0.6, abs=0.02)
    # volume share of the small mode: 1200 * 40^3 / (1200 * 40^3 + 800 * 80^3) = 0.158
    assert m1["volume_share"] == pytest.approx(1200 * 64 / (1200 * 64 + 800 * 512), abs=0.02)
    assert m1["n"] + m2["n"] == 2000
    assert r["mode_ratio"] == pytest.approx(2.0, rel=0.03)
    assert r["mode_difference_nm"] == pytest.approx(40.0, rel=0.05)
    assert m1["gsd"] == pytest.approx(np.exp(0.08), rel=0.02)
    assert not any("particles (<" in f for f in r["flags"])


def test_small_modes_flagged():
    rng = np.random.default_rng(3)
    d = np.concatenate([np.exp(rng.normal(np.log(40), 0.08, 300)),
                        np.exp(rng.normal(np.log(80), 0.08, 700))])
    r = size_distribution(table(d), n_boot=0)
    small = [f for f in r["flags"] if "particles (< 500)" in f]
    assert len(small) == 1 and "300" in small[0]


def test_exclusions_and_large_share():
    d = [40.0] * 10 + [120.0] * 4 + [50.0, 60.0]
    edge = [False] * 14 + [True, False]
    merge = [False] * 10 + [True, True, False, False] + [False, False]
    r = size_distribution(table(d, edge=edge, merge=merge), n_boot=0)
    assert r["excluded"] == {"touches_edge": 1, "merge_suspect": 2}
    assert r["n"] == 13
    # inner (non-edge) particles: 15, of which 4 >= 100 nm, 2 of those merge-suspect
    assert r["share_ge_100nm"] == pytest.approx(4 / 15)
    assert r["merge_suspect_share"] == pytest.approx(0.5)
    assert r["ag_area_frac"] == 0.05


def test_silver_summarised_apart():
    d = [40.0, 42, 44, 46, 48, 150, 160]
    phase = ["carbon"] * 5 + ["silver"] * 2
    r = size_distribution(table(d, phase=phase), n_boot=0)
    assert r["n"] == 5
    assert r["silver"]["n"] == 2 and r["silver"]["x50_nm"] == pytest.approx(155.0)


def test_nothing_left_refused():
    with pytest.raises(MeasurementError, match="only 1 carbon particles left"):
        size_distribution(table([40.0, 50.0, 60.0], edge=[True, False, True]))


def test_bad_weights():
    with pytest.raises(ValueError, match="weights must be"):
        size_distribution(table([40.0, 50.0]), weights="mass")


@pytest.fixture(scope="module")
def synthetic_results():
    from tests.segmentation.test_particles import find_particles, synthetic

    out = []
    for seed in range(5):
        sem, _ = synthetic(seed=seed, counts=(300, 300), ag_count=30)
        out.append(size_distribution(find_particles(sem, min_diameter_nm=40.0), n_boot=50))
    return out


@pytest.mark.slow
def test_bimodal_images_modes_within_3_percent(synthetic_results):
    for r in synthetic_results:
        assert r["bic_k"] == 2
        m1, m2 = r["modes"]
        assert m1["mean_nm"] == pytest.approx(40.0, rel=0.03)
        assert m2["mean_nm"] == pytest.approx(80.0, rel=0.03)
        assert 0.0 < r["ag_area_frac"] < 0.2


def test_monomodal_images_bic_one():
    from tests.segmentation.test_particles import find_particles, synthetic

    for seed in (0, 1):
        sem, _ = synthetic(seed=seed, modes=(60.0,), counts=(500,))
        r = size_distribution(find_particles(sem, min_diameter_nm=40.0), n_boot=0)
        assert r["bic_k"] == 1
        assert r["number"]["x50_nm"] == pytest.approx(60.0, rel=0.03)


def test_resolved_modes_merges_tail_component():
    from pipeline.segmentation.psd import _mixture, resolved_modes

    rng = np.random.default_rng(5)
    # one population with heavy tails (a broad component at the same mean) + a second mode
    ln = np.concatenate([rng.normal(np.log(40), 0.07, 700), rng.normal(np.log(40), 0.16, 200),
                         rng.normal(np.log(80), 0.08, 900)])
    gm3 = _mixture(ln, 3, 0)
    assert resolved_modes(gm3) == 2
    ln2 = np.concatenate([rng.normal(np.log(40), 0.05, 600), rng.normal(np.log(80), 0.05, 600),
                          rng.normal(np.log(160), 0.05, 600)])
    assert resolved_modes(_mixture(ln2, 3, 0)) == 3
    r = size_distribution(table(np.exp(ln)), n_boot=0)
    assert r["bic_k"] == 2 and r["bic_k_raw"] in (2, 3)
