"""Primary particle size from aggregates: perimeter, chain-of-discs model, bootstrap, flags.

Oracles: digital discs, squares and chains of equal discs drawn here with numpy (their true
diameter is known exactly), a single pixel worked by hand, and the flag arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.errors import MeasurementError
from pipeline.segmentation.aggregates import (
    COLUMNS,
    aggregate_geometry,
    compare_with_instances,
    crofton_perimeter,
    primary_size,
)


def disc_mask(r, cy, cx, shape):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def chain_centres(n, r, overlap, rng, branched):
    """Centres (px) of n equal discs of radius r in a tree: each new disc at centre spacing
    (2 - overlap) r from its parent (straight: the last one, same direction; branched: a
    random one, random direction) and >= 2 r + 1 px from all others (only neighbours
    overlap, as the chain model assumes)."""
    spacing = (2.0 - overlap) * r
    c = [np.zeros(2)]
    direction = rng.uniform(0, 2 * math.pi)
    while len(c) < n:
        if branched:
            parent = c[rng.integers(len(c))]
            direction = rng.uniform(0, 2 * math.pi)
        else:
            parent = c[-1]
        q = parent + spacing * np.array([math.sin(direction), math.cos(direction)])
        d = np.hypot(*(np.array(c) - q).T)
        others = d[np.abs(d - spacing) > 1e-9]
        if d.min() >= spacing - 1e-9 and np.all(others >= 2 * r + 1.0):
            c.append(q)
    return np.array(c)


def draw(centres, r, shape):
    """Union of the discs of radius r at centres (px), on a grid of ``shape``."""
    m = np.zeros(shape, bool)
    for cy, cx in centres:
        y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, shape[0])
        x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        m[y0:y1, x0:x1] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return m


def chain_mask(n, r, overlap, rng, branched, pad=4):
    c = chain_centres(n, r, overlap, rng, branched)
    c = c - c.min(axis=0) + r + pad + rng.random(2)  # random sub-pixel placement
    shape = tuple((c.max(axis=0) + r + pad + 1).astype(int))
    return draw(c, r, shape)


# --- perimeter -------------------------------------------------------------------------------

def test_single_pixel_perimeter_by_hand():
    # one pixel: 2 crossings on one line of each direction, P = sum_i w_i / |step_i| with
    # w = atan(1/2) (0 and 90 deg), pi/8 (the four knight directions), pi/4 - atan(1/2)
    # (the diagonals)
    t1 = math.atan(0.5)
    expect = 2 * t1 + 4 * (math.pi / 8) / math.sqrt(5) + 2 * (math.pi / 4 - t1) / math.sqrt(2)
    lab = np.zeros((5, 5), np.int32)
    lab[2, 2] = 1
    assert crofton_perimeter(lab)[0] == pytest.approx(expect, rel=1e-12)
    assert expect == pytest.approx(2.0849, abs=1e-4)


def test_shared_boundary_counts_for_both_labels():
    lab = np.zeros((30, 40), np.int32)
    lab[5:25, 5:20] = 1
    lab[5:25, 20:35] = 2
    alone = np.where(lab == 1, 1, 0).astype(np.int32)
    p = crofton_perimeter(lab)
    assert p[0] == pytest.approx(crofton_perimeter(alone)[0], rel=1e-12)
    assert p[1] == pytest.approx(p[0], rel=1e-12)  # mirror images


@pytest.mark.parametrize("r", [10, 20, 50, 100, 200])
def test_perimeter_of_digital_discs(r):
    rng = np.random.default_rng(r)
    tol = 0.015 if r < 20 else 0.01
    for _ in range(3):
        n = 2 * r + 8
        m = disc_mask(r, n / 2 + rng.random(), n / 2 + rng.random(), (n, n)).astype(np.int32)
        assert crofton_perimeter(m)[0] == pytest.approx(2 * math.pi * r, rel=tol)


@pytest.mark.parametrize(("a", "b", "tol"), [(20, 20, 0.045), (50, 30, 0.035), (100, 100, 0.025),
                                              (200, 200, 0.02)])
def test_perimeter_of_axis_aligned_rectangles(a, b, tol):
    # a rectangle of a x b whole pixels has perimeter 2 (a + b); the estimator reads straight
    # edges at 0 and 90 degrees 1.4 % short and rounds the corners (~1.5 px in all)
    m = np.zeros((b + 10, a + 10), np.int32)
    m[5:5 + b, 5:5 + a] = 1
    p = crofton_perimeter(m)[0]
    assert p < 2 * (a + b)
    assert p == pytest.approx(2 * (a + b), rel=tol)


@pytest.mark.parametrize("angle", [0.0, 10.0, 22.5, 30.0, 45.0, 60.0])
def test_perimeter_of_rotated_squares(angle):
    side = 100.0
    n = 180
    yy, xx = np.mgrid[:n, :n] - n / 2 + 0.3
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    m = ((np.abs(c * xx + s * yy) <= side / 2) & (np.abs(-s * xx + c * yy) <= side / 2))
    assert crofton_perimeter(m.astype(np.int32))[0] == pytest.approx(4 * side, rel=0.025)


# --- one aggregate ---------------------------------------------------------------------------

def test_single_disc_gives_its_diameter():
    m = disc_mask(20, 30.4, 31.7, (64, 64)).astype(np.int32)
    t = aggregate_geometry(m, 2.0)
    assert list(t.columns) == COLUMNS and len(t) == 1
    row = t.iloc[0]
    assert row["n_primaries"] == 1 and row["neck_fit"] == "single"
    assert row["primary_d_nm"] == pytest.approx(80.0, rel=0.02)
    assert row["d_4ap_nm"] == pytest.approx(80.0, rel=0.02)
    assert row["perimeter_nm"] == pytest.approx(2 * math.pi * 40.0, rel=0.01)
    assert row["area_nm2"] == pytest.approx(math.pi * 40.0**2, rel=0.01)
    assert row["ecd_nm"] == pytest.approx(80.0, rel=0.01)
    assert not row["touches_edge"]
    assert row["x_nm"] == pytest.approx((31.7 + 0.5) * 2.0, abs=0.1)
    assert t.attrs["pixel_size_nm"] == 2.0


def test_empty_label_image_gives_an_empty_table():
    t = aggregate_geometry(np.zeros((10, 10), np.int32), 1.0)
    assert len(t) == 0 and list(t.columns) == COLUMNS


@pytest.mark.parametrize("branched", [False, True], ids=["straight", "branched"])
@pytest.mark.parametrize("overlap", [0.0, 0.1, 0.2])
@pytest.mark.parametrize("r", [4, 5, 7, 10])
def test_chains_of_equal_discs(r, overlap, branched):
    """Overlap = (2 r - centre spacing) / r. The corrected diameter is within 5 % (here
    4 %) of the true one and the primaries are all counted; the uncorrected 4 A / P is
    well above it as soon as there are necks."""
    rng = np.random.default_rng(1000 * r + int(100 * overlap) + branched)
    for n in (2, 3, 5, 10):
        for _ in range(2):
            m = chain_mask(n, r, overlap, rng, branched)
            row = aggregate_geometry(m.astype(np.int32), 1.0).iloc[0]
            assert row["n_primaries"] == n
            assert row["primary_d_nm"] == pytest.approx(2 * r, rel=0.04), (n, row.to_dict())
            assert row["neck_fit"] == "ok"
            if n >= 3:
                assert row["d_4ap_nm"] > 1.08 * 2 * r


def test_chains_at_three_px_radius():
    """At 3 px radius each chain is within 7 %, their mean within 3 %."""
    rng = np.random.default_rng(3)
    err = []
    for branched in (False, True):
        for overlap in (0.0, 0.1, 0.2):
            for n in (2, 3, 5, 10):
                for _ in range(3):
                    m = chain_mask(n, 3, overlap, rng, branched)
                    row = aggregate_geometry(m.astype(np.int32), 1.0).iloc[0]
                    err.append(row["primary_d_nm"] / 6.0 - 1.0)
    err = np.array(err)
    assert np.abs(err).max() < 0.07
    assert abs(err.mean()) < 0.03


def test_neck_overlap_is_recovered():
    rng = np.random.default_rng(8)
    for overlap in (0.1, 0.2):
        m = chain_mask(8, 12, overlap, rng, False)
        row = aggregate_geometry(m.astype(np.int32), 1.0).iloc[0]
        # digitisation smooths the cusps: the overlap reads a little high
        assert overlap <= row["neck_overlap"] < overlap + 0.1


def test_dumbbell_has_no_neck_fit():
    # two discs joined by a long thin bar: more perimeter than touching discs can have
    yy, xx = np.mgrid[:120, :160]
    m = (((yy - 60) ** 2 + (xx - 30) ** 2 <= 144) | ((yy - 60) ** 2 + (xx - 120) ** 2 <= 144)
         | ((np.abs(yy - 60) <= 1) & (xx > 30) & (xx < 120)))
    row = aggregate_geometry(m.astype(np.int32), 1.0).iloc[0]
    assert row["n_primaries"] == 2 and row["neck_fit"] == "no_neck"
    assert row["neck_overlap"] == 0.0
    assert row["primary_d_nm"] == pytest.approx(math.sqrt(row["area_px"] / (2 * math.pi)) * 2,
                                                rel=1e-9)


def test_compact_cluster_is_dense():
    # four discs on a square with centre spacing 1.5 r: each overlaps two neighbours (a loop)
    # and the middle is filled, more compact than a tree with 60-degree necks allows
    yy, xx = np.mgrid[:100, :100]
    s = 1.5 * 14
    m = np.zeros((100, 100), bool)
    for cy, cx in ((35, 35), (35, 35 + s), (35 + s, 35), (35 + s, 35 + s)):
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 14**2
    row = aggregate_geometry(m.astype(np.int32), 1.0).iloc[0]
    assert row["n_primaries"] == 4 and row["neck_fit"] == "dense"
    assert row["neck_overlap"] == pytest.approx(1.0)  # capped at 60 degrees
    assert 28.0 < row["primary_d_nm"] < 1.15 * 28.0  # overestimated, as documented


def test_many_dense_aggregates_are_flagged():
    yy, xx = np.mgrid[:100, :300]
    s = 1.5 * 14
    m = np.zeros((100, 300), bool)
    for x0 in (20, 120, 220):
        for cy, cx in ((35, x0), (35, x0 + s), (35 + s, x0), (35 + s, x0 + s)):
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 14**2
    res = primary_size(m, 1.0)
    assert res["n_aggregates"] == 3 and res["n_primaries"] == 12
    assert any(f.startswith("3 of 3 aggregates are denser than the chain model")
               for f in res["flags"])


def test_edge_aggregates_are_marked():
    m = np.zeros((50, 50), np.int32)
    m[disc_mask(8, 25, 3, (50, 50))] = 1
    m[disc_mask(8, 25, 30, (50, 50))] = 2
    t = aggregate_geometry(m, 1.0)
    assert t["touches_edge"].tolist() == [True, False]


# --- many aggregates -------------------------------------------------------------------------

def field(n_agg, rng, shape=(600, 600), r_range=(5.0, 8.0)):
    """Chains of 2-8 primaries (one radius per chain, overlap 0-20 %), kept 3 px apart, on a
    field; returns the foreground and the true primary diameters (px) of the chains that
    do not touch the border."""
    import cv2

    m = np.zeros(shape, bool)
    truth = []
    placed = 0
    while placed < n_agg:
        r = rng.uniform(*r_range)
        c = chain_centres(int(rng.integers(2, 9)), r, rng.uniform(0.0, 0.2), rng,
                          bool(rng.integers(2)))
        one = draw(c - c.mean(axis=0) + rng.uniform(0, shape[0], 2), r, shape)
        near = cv2.dilate(m.view(np.uint8), np.ones((7, 7), np.uint8)).view(bool)
        if not one.any() or (one & near).any():
            continue
        m |= one
        placed += 1
        if not (one[0].any() or one[-1].any() or one[:, 0].any() or one[:, -1].any()):
            truth.append(2 * r)
    return m, np.array(truth)


def test_bootstrap_interval_covers_the_truth():
    rng = np.random.default_rng(21)
    fg, truth = field(40, rng)
    res = primary_size(fg, 2.0, seed=4)
    truth_nm = 2.0 * truth.mean()
    lo, hi = res["ci95_nm"]
    assert lo < truth_nm < hi
    assert res["mean_nm"] == pytest.approx(truth_nm, rel=0.03)
    assert res["u95_nm"] == pytest.approx(0.5 * (hi - lo))
    assert 0 < res["u95_nm"] < 0.1 * res["mean_nm"]
    assert res["n_aggregates"] == truth.size
    assert res["weighting"] == "number of aggregates"
    assert res["d_4ap_mean_nm"] > res["mean_nm"]  # the uncorrected baseline reads high
    assert res["flags"] == []
    # seeded: the same seed gives the same interval, another seed a slightly different one
    assert primary_size(fg, 2.0, seed=4)["ci95_nm"] == res["ci95_nm"]
    other = primary_size(fg, 2.0, seed=5)["ci95_nm"]
    assert other != res["ci95_nm"] and other[0] == pytest.approx(lo, rel=0.03)


def test_labels_and_foreground_agree():
    rng = np.random.default_rng(5)
    fg, _ = field(12, rng, shape=(300, 300))
    import cv2

    _, lab = cv2.connectedComponents(fg.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    a = primary_size(fg, 1.5)
    b = primary_size(lab, 1.5)
    assert a["mean_nm"] == b["mean_nm"] and a["ci95_nm"] == b["ci95_nm"]


def test_border_aggregates_are_excluded_or_flagged():
    m = np.zeros((80, 120), bool)
    m |= disc_mask(10, 40, 5, m.shape)  # cut by the border
    m |= disc_mask(10, 40, 40, m.shape)
    m |= disc_mask(10, 40, 80, m.shape)
    res = primary_size(m, 1.0)
    assert res["n_aggregates"] == 2 and res["excluded"]["touches_edge"] == 1
    assert res["mean_nm"] == pytest.approx(20.0, rel=0.02)
    assert res["table"]["counted"].tolist() == [False, True, True]
    kept = primary_size(m, 1.0, exclude_edge=False)
    assert kept["n_aggregates"] == 3 and kept["excluded"]["touches_edge"] == 0
    assert any("touching the border are included" in f for f in kept["flags"])


def test_specks_are_left_out():
    m = np.zeros((60, 60), bool)
    m |= disc_mask(10, 30, 30, m.shape)
    m[5:7, 50:52] = True  # 4 px of noise
    res = primary_size(m, 1.0)
    assert res["n_aggregates"] == 1 and res["excluded"]["too_small"] == 1


def test_one_aggregate_has_no_interval():
    res = primary_size(disc_mask(10, 30, 30, (60, 60)), 1.0)
    assert res["n_aggregates"] == 1 and math.isnan(res["u95_nm"])
    assert all(math.isnan(v) for v in res["ci95_nm"])
    assert "one aggregate: no interval" in res["flags"]
    with pytest.raises(ValueError, match="finite uncertainty"):
        compare_with_instances(res, 20.0, 1.0)


def test_few_aggregates_and_coarse_pixel_are_flagged():
    m = np.zeros((40, 80), bool)
    for cx in (10, 30, 50, 70):
        m |= disc_mask(3, 20, cx, m.shape)
    res = primary_size(m, 10.0)
    assert res["n_aggregates"] == 4
    assert any(f.startswith("only 4 aggregates") for f in res["flags"])
    assert any(f.startswith("coarse pixel") for f in res["flags"])


# --- comparison with the instance split -------------------------------------------------------

def test_flag_when_sizes_disagree_beyond_combined_uncertainty():
    primary = {"mean_nm": 50.0, "u95_nm": 3.0}
    ok = compare_with_instances(primary, 54.0, 4.0)  # |diff| 4 <= sqrt(9 + 16) = 5
    assert ok["flag"] is None
    assert ok["difference_nm"] == pytest.approx(-4.0)
    assert ok["combined_u95_nm"] == pytest.approx(5.0)
    assert ok["ratio"] == pytest.approx(50.0 / 54.0)
    assert compare_with_instances(primary, 55.0, 4.0)["flag"] is None  # exactly 5: agrees
    low = compare_with_instances(primary, 56.0, 4.0)
    assert "differ by -6 nm" in low["flag"] and "combined U95 5" in low["flag"]
    assert "instances larger" in low["flag"]
    high = compare_with_instances(primary, 44.0, 4.0)
    assert "differ by +6 nm" in high["flag"] and "instances smaller" in high["flag"]


@pytest.mark.parametrize(("mean", "u", "x50", "ui", "match"), [
    (50.0, 3.0, 0.0, 1.0, "instance_x50_nm must be a positive"),
    (50.0, 3.0, float("nan"), 1.0, "instance_x50_nm must be a positive"),
    (-1.0, 3.0, 50.0, 1.0, "primary mean_nm must be a positive"),
    (50.0, 3.0, 50.0, -1.0, "instance_u95_nm must be a finite uncertainty"),
    (50.0, float("inf"), 50.0, 1.0, "primary u95_nm must be a finite uncertainty"),
])
def test_compare_refuses_bad_numbers(mean, u, x50, ui, match):
    with pytest.raises(ValueError, match=match):
        compare_with_instances({"mean_nm": mean, "u95_nm": u}, x50, ui)


# --- bad input -------------------------------------------------------------------------------

def test_empty_foreground_is_a_measurement_error():
    with pytest.raises(MeasurementError, match="foreground is empty") as info:
        primary_size(np.zeros((20, 20), bool), 1.0, path="cb.tif")
    assert info.value.path == "cb.tif" and info.value.exit_code == 3


def test_no_inner_aggregate_is_a_measurement_error():
    m = np.zeros((40, 40), bool)
    m |= disc_mask(8, 20, 2, m.shape)
    m |= disc_mask(8, 2, 30, m.shape)
    with pytest.raises(MeasurementError, match="no inner aggregate.*2 touching the image "
                       "border") as info:
        primary_size(m, 1.0, path="cb.tif")
    assert "cb.tif" in str(info.value)


@pytest.mark.parametrize("px", [0, -2.0, float("nan"), float("inf"), "two", None])
def test_pixel_size_must_be_positive(px):
    m = disc_mask(8, 20, 20, (40, 40))
    with pytest.raises(ValueError, match="pixel_nm must be a positive"):
        primary_size(m, px)
    with pytest.raises(ValueError, match="pixel_nm must be a positive"):
        aggregate_geometry(m.astype(np.int32), px)


@pytest.mark.parametrize(("labels", "match"), [
    (np.zeros((4, 4), np.float64), "integer label image"),
    (np.zeros((2, 4, 4), np.int32), "2-D array"),
    (np.full((4, 4), -1, np.int32), ">= 0"),
    (np.zeros((0, 4), np.int32), "non-empty 2-D"),
])
def test_bad_label_images(labels, match):
    with pytest.raises(ValueError, match=match):
        aggregate_geometry(labels, 1.0)
    with pytest.raises(ValueError, match=match):
        primary_size(labels, 1.0)


def test_too_few_bootstrap_resamples():
    with pytest.raises(ValueError, match="n_boot must be >= 100"):
        primary_size(disc_mask(8, 20, 20, (40, 40)), 1.0, n_boot=10)


def test_particle_aggregates_group_touching_particles():
    """Two touching discs (particles 1, 2) are one aggregate; a lone disc (3) its own; a
    disc cut by the border (4) gets no size; a non-member (5, e.g. silver) none at all."""
    from pipeline.segmentation.aggregates import particle_aggregates

    shape = (120, 200)
    labels = np.zeros(shape, np.int32)
    labels[disc_mask(10, 40, 40, shape)] = 1
    labels[disc_mask(10, 40, 59, shape) & (labels == 0)] = 2
    labels[disc_mask(10, 90, 120, shape)] = 3
    labels[disc_mask(10, 5, 170, shape)] = 4
    labels[disc_mask(8, 90, 40, shape)] = 5
    member = np.array([False, True, True, True, True, False])
    touches = np.array([False, False, False, False, True, False])
    agg, prim = particle_aggregates(labels, member, touches, 2.0)
    assert agg[1] == agg[2] > 0 and len({agg[1], agg[3], agg[4]}) == 3 and agg[5] == 0
    geo = aggregate_geometry(np.where(np.isin(labels, [1, 2]), 1, 0), 2.0)
    assert prim[1] == prim[2] == pytest.approx(float(geo["primary_d_nm"].iloc[0]), rel=1e-12)
    assert prim[3] == pytest.approx(40.0, rel=0.02)  # a disc of radius 10 px, 2 nm pixels
    assert np.isnan(prim[4]) and np.isnan(prim[5])


def test_primary_mean_interval_and_flags():
    from pipeline.segmentation.aggregates import primary_mean

    rng = np.random.default_rng(3)
    d = rng.normal(40.0, 4.0, 400)
    res = primary_mean(np.append(d, np.nan), n_boot=500, seed=1)
    assert res["n_aggregates"] == 400 and res["mean_nm"] == pytest.approx(d.mean())
    # the bootstrap half-width is the standard error x 1.96
    assert res["u95_nm"] == pytest.approx(1.96 * d.std() / math.sqrt(d.size), rel=0.15)
    assert res["flags"] == []
    assert primary_mean([40.0, 41.0], n_boot=500)["flags"][0].startswith("only 2 aggregates")
    assert math.isnan(primary_mean([40.0])["u95_nm"])
    with pytest.raises(ValueError, match="no aggregate"):
        primary_mean([np.nan])


def test_size_distribution_reports_and_flags_the_primary_size():
    """The aggregate mean sits beside the instance median, with a flag when they disagree."""
    import pandas as pd

    from pipeline.segmentation.psd import size_distribution

    rng = np.random.default_rng(0)
    n = 300
    ecd = rng.lognormal(math.log(40.0), 0.1, n)
    agg = np.repeat(np.arange(1, 61), 5)  # 60 aggregates of 5 particles
    t = pd.DataFrame({"ecd_nm": ecd, "phase": "carbon", "touches_edge": False,
                      "merge_suspect": False, "aggregate": agg})
    for primary, flagged in ((40.0, False), (60.0, True)):
        per = rng.normal(primary, 2.0, 61)
        t["aggregate_primary_nm"] = per[agg]
        d = size_distribution(t)
        p = d["primary_size"]
        assert p["n_aggregates"] == 60
        assert p["mean_nm"] == pytest.approx(per[1:].mean(), rel=1e-12)
        assert p["instance_x50_nm"] == d["x50_nm"]
        assert any("aggregate primary size" in f for f in d["flags"]) is flagged
    assert size_distribution(t.drop(columns=["aggregate", "aggregate_primary_nm"]))["primary_size"] is None
