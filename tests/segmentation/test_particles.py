"""find_particles on synthetic SEM images of touching discs with known diameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.errors import MeasurementError, MissingCalibration, UnreadableInput
from pipeline.ingest.dataarray import sem_dataarray
from pipeline.segmentation.particles import find_particles

PX_NM = 2.0
BG, CARBON, SILVER = 40.0, 130.0, 225.0


def make_discs(shape, modes, counts, *, seed=0, cv=0.08, ag_count=0, ag_d_nm=60.0,
               px_nm=PX_NM, overlap=0.15):
    """Touching discs: each new disc is placed against a random earlier one (or anywhere).

    Returns (x_px, y_px, d_px, is_silver) arrays of the discs placed (no overlaps).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    ds = []
    for m, n in zip(modes, counts):
        ds.append(m * np.exp(rng.normal(0.0, cv, n)))
    d = np.concatenate(ds + [ag_d_nm * np.exp(rng.normal(0.0, cv, ag_count))]) / px_nm
    ag = np.concatenate([np.zeros(sum(counts), bool), np.ones(ag_count, bool)])
    order = rng.permutation(d.size)
    d, ag = d[order], ag[order]
    flags = []
    X = np.empty(0)
    Y = np.empty(0)
    R = np.empty(0)
    for di, gi in zip(d, ag):
        r = di / 2.0
        for _ in range(60):
            if X.size and rng.random() < 0.7:
                j = rng.integers(X.size)
                a = rng.uniform(0, 2 * math.pi)
                dist = R[j] + r - rng.uniform(0.0, overlap) * min(R[j], r)
                x, y = X[j] + dist * math.cos(a), Y[j] + dist * math.sin(a)
            else:
                x, y = rng.uniform(0, nx), rng.uniform(0, ny)
            if not (-r < x < nx + r and -r < y < ny + r):
                continue
            if X.size and np.any(np.hypot(X - x, Y - y) < (R + r) - overlap * np.minimum(R, r)):
                continue
            X, Y, R = np.append(X, x), np.append(Y, y), np.append(R, r)
            flags.append(gi)
            break
    return X, Y, 2 * R, np.array(flags, bool)


def render(shape, x, y, d, silver, *, seed=0, blur_px=1.2, noise=10.0, dtype=np.uint8):
    """Anti-aliased discs, blurred, with Gaussian noise."""
    import cv2

    rng = np.random.default_rng(seed + 1000)
    img = np.full(shape, BG, np.float32)
    ny, nx = shape
    for xi, yi, di, si in zip(x, y, d, silver):
        r = di / 2.0
        x0, x1 = max(int(xi - r - 2), 0), min(int(xi + r + 3), nx)
        y0, y1 = max(int(yi - r - 2), 0), min(int(yi + r + 3), ny)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dist = np.hypot(xx + 0.5 - xi - 0.5, yy + 0.5 - yi - 0.5)
        cov = np.clip(r - dist + 0.5, 0.0, 1.0)
        lvl = SILVER if si else CARBON
        patch = img[y0:y1, x0:x1]
        np.maximum(patch, BG + cov * (lvl - BG), out=patch)
    img = cv2.GaussianBlur(img, (0, 0), blur_px)
    img += rng.normal(0.0, noise, shape).astype(np.float32)
    top = 255 if dtype == np.uint8 else 65535
    scale = 1.0 if dtype == np.uint8 else 256.0
    return np.clip(img * scale, 0, top).astype(dtype)


def as_sem(img, px_nm=PX_NM, masked=None, pixel=True):
    return sem_dataarray(img, path="synthetic.tif",
                         pixel_size_um=(px_nm / 1e3, px_nm / 1e3) if pixel else None,
                         pixel_size_source="test" if pixel else None, vendor="test", fmt="test",
                         masked_regions=masked)


def synthetic(shape=(768, 1024), modes=(40.0, 80.0), counts=(300, 300), seed=0, **kw):
    x, y, d, ag = make_discs(shape, modes, counts, seed=seed, **kw)
    img = render(shape, x, y, d, ag, seed=seed)
    return as_sem(img), (x, y, d, ag)


def match(df, truth, shape, px_nm=PX_NM):
    """Per inner truth disc: (one_to_one, measured ECD nm, measured phase) via the label
    image re-derived from centroids: nearest particle centroid within d/4."""
    x, y, d, _ag = truth
    ny, nx = shape
    inner = (x - d / 2 > 2) & (x + d / 2 < nx - 2) & (y - d / 2 > 2) & (y + d / 2 < ny - 2)
    px = df["x_nm"].to_numpy() / px_nm - 0.5
    py = df["y_nm"].to_numpy() / px_nm - 0.5
    from scipy.spatial import cKDTree

    tree = cKDTree(np.c_[px, py])
    dist, idx = tree.query(np.c_[x, y])
    ecd = df["ecd_nm"].to_numpy()[idx]
    ok = (dist < d / 4) & (np.abs(ecd - d * px_nm) < 0.15 * d * px_nm)
    # one-to-one: no two truth discs matched to the same particle
    counts = np.bincount(idx[ok], minlength=len(df))
    ok &= counts[idx] == 1
    return inner, ok, ecd, df["phase"].to_numpy()[idx]


@pytest.fixture(scope="module")
def bimodal():
    sem, truth = synthetic(seed=3, ag_count=40)
    return sem, truth, find_particles(sem, min_diameter_nm=40.0)


def test_bimodal_split_one_to_one(bimodal):
    sem, truth, df = bimodal
    inner, ok, _ecd, _ = match(df, truth, sem.shape)
    frac = ok[inner].mean()
    assert frac >= 0.88, frac


def test_ecd_unbiased(bimodal):
    sem, truth, df = bimodal
    inner, ok, ecd, _ = match(df, truth, sem.shape)
    sel = inner & ok
    ratio = ecd[sel] / (truth[2][sel] * PX_NM)
    assert abs(np.median(ratio) - 1.0) < 0.02, np.median(ratio)


def test_silver_recall_precision(bimodal):
    sem, truth, df = bimodal
    _x, _y, _d, ag = truth
    inner, ok, _ecd, phase = match(df, truth, sem.shape)
    sel = inner & ok
    true_ag = ag[sel]
    found_ag = phase[sel] == "silver"
    recall = (true_ag & found_ag).sum() / true_ag.sum()
    precision = (true_ag & found_ag).sum() / found_ag.sum()
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
    assert 0.0 < df.attrs["ag_area_frac"] < 0.2


def test_table_columns_and_definitions(bimodal):
    _, _, df = bimodal
    assert list(df.columns) == ["label", "x_nm", "y_nm", "ecd_nm", "feret_max_nm",
                                "feret_min_nm", "aspect_ratio", "solidity", "phase",
                                "touches_edge", "merge_suspect", "area_px", "aggregate",
                                "aggregate_primary_nm"]
    silver = (df["phase"] == "silver").to_numpy()
    assert (df["aggregate"].to_numpy()[silver] == 0).all()
    assert df["aggregate_primary_nm"].to_numpy()[silver].size == 0 or \
        np.isnan(df["aggregate_primary_nm"].to_numpy()[silver]).all()
    assert (df["aggregate"].to_numpy()[~silver] > 0).all()
    # one primary size per aggregate, none for aggregates cut by the border
    per = df[~silver].groupby("aggregate")["aggregate_primary_nm"]
    assert (per.nunique(dropna=False) == 1).all()
    cut = df[~silver].groupby("aggregate")["touches_edge"].any()
    assert per.first()[cut].isna().all() and per.first()[~cut].notna().any()
    np.testing.assert_allclose(df["aspect_ratio"], df["feret_max_nm"] / df["feret_min_nm"],
                               rtol=1e-12)
    assert (df["feret_max_nm"] >= df["feret_min_nm"]).all()
    assert df["touches_edge"].any() and not df["touches_edge"].all()
    assert ((df["solidity"] > 0) & (df["solidity"] <= 1)).all()
    inner = ~df["touches_edge"] & ~df["merge_suspect"]
    assert df.loc[inner, "solidity"].median() > 0.9
    assert df.loc[inner, "aspect_ratio"].median() < 1.15


def test_feret_of_known_rectangle():
    img = np.full((200, 300), 20, np.uint8)
    img[50:90, 60:180] = 200  # 120 x 40 px rectangle
    img[150:160, 250:260] = 200
    df = find_particles(as_sem(img))
    row = df.loc[df["area_px"].idxmax()]
    assert row["area_px"] == pytest.approx(4800, abs=10)  # corners rounded by smoothing
    assert row["feret_max_nm"] == pytest.approx(math.hypot(120, 40) * PX_NM, rel=0.01)
    assert row["feret_min_nm"] == pytest.approx(40 * PX_NM, rel=0.01)
    assert row["solidity"] == pytest.approx(1.0, abs=0.03)
    assert row["phase"] == "carbon"


def test_merge_suspect_flags_elongated_oversized_and_concave():
    import cv2

    img = np.full((240, 320), 20, np.uint8)
    for cx, cy in ((40, 30), (100, 30), (160, 30), (220, 30), (40, 210), (100, 210),
                   (160, 210)):
        cv2.circle(img, (cx, cy), 20, 200, -1)
    cv2.ellipse(img, (110, 120), (50, 18), 0, 0, 360, 200, -1)  # ECD 60 px vs 41: oversized
    df = find_particles(as_sem(img), min_diameter_nm=60.0, method="classic")
    ell = df.loc[(df["x_nm"] - 110.5 * PX_NM).abs().idxmin()]
    assert ell["aspect_ratio"] == pytest.approx(50 / 18, rel=0.05)
    assert ell["solidity"] > 0.95
    assert ell["merge_suspect"]
    discs = df.loc[df["area_px"].between(1200, 1400)]
    assert len(discs) == 7
    assert not discs["merge_suspect"].any()
    assert discs["solidity"].min() > 0.9


def test_geometry_of_concave_region():
    """A disc (r = 30 px) with a 100 degree wedge cut out: solidity 0.82, Feret 60/~53 px."""
    import cv2

    from pipeline.segmentation.particles import _region_geometry

    lab = np.zeros((100, 100), np.int32)
    cv2.ellipse(lab, (50, 50), (30, 30), 0, 50, 310, 1, -1)
    area, cx, _cy, fmax, _fmin, hull = _region_geometry(lab, 1)
    sector = math.pi * 30.5**2 * 260 / 360
    expect = sector / (sector + 0.5 * 30.5**2 * math.sin(math.radians(100)))
    assert area[0] / hull[0] == pytest.approx(expect, abs=0.03)
    assert fmax[0] == pytest.approx(61.0, abs=1.5)
    assert cx[0] < 50  # the mouth opens to +x


def test_masked_region_is_edge():
    sem, _truth = synthetic(shape=(256, 256), counts=(30, 30), seed=5)
    sem.attrs["masked_regions"] = [{"row0": 200, "row1": 256, "col0": 0, "col1": 256,
                                    "reason": "databar"}]
    df = find_particles(sem, min_diameter_nm=40.0)
    assert (df["y_nm"] < 200 * PX_NM).all()
    low = df["y_nm"] + df["feret_max_nm"] / 2 > 198 * PX_NM
    assert df.loc[low, "touches_edge"].all()


def test_uint16_and_estimated_min_diameter():
    x, y, d, ag = make_discs((384, 512), (40.0, 80.0), (60, 60), seed=7)
    sem = as_sem(render((384, 512), x, y, d, ag, seed=7, dtype=np.uint16))
    df = find_particles(sem)
    assert 20.0 < df.attrs["min_diameter_nm"] < 50.0
    inner, ok, _, _ = match(df, (x, y, d, ag), sem.shape)
    assert ok[inner].mean() >= 0.85


def test_no_particles_noise_only():
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(60, 8, (256, 256)), 0, 255).astype(np.uint8)
    with pytest.raises(MeasurementError, match="no particles found"):
        find_particles(as_sem(img))


@pytest.mark.parametrize("value, word", [(0, "all black"), (255, "all white"),
                                         (90, "all uniform grey")])
def test_uniform_images(value, word):
    # a blank image cannot be a micrograph: unreadable input (exit 4), not "no particles"
    img = np.full((128, 128), value, np.uint8)
    with pytest.raises(UnreadableInput, match=f"synthetic.tif: the image is blank: every "
                                              f"analysed pixel is {value} \\({word}\\)"):
        find_particles(as_sem(img))


def test_pixel_too_coarse_refused():
    sem, _ = synthetic(shape=(256, 256), counts=(30, 30), seed=1)
    with pytest.raises(MeasurementError, match="coarser than a tenth"):
        find_particles(sem, min_diameter_nm=15.0)  # 2 nm px > 1.5 nm


def test_pixel_coarse_flagged():
    sem, _ = synthetic(shape=(256, 256), counts=(30, 30), seed=1)
    df = find_particles(sem, min_diameter_nm=30.0)  # 2 nm px > 1.5 nm, < 3 nm
    assert any("coarse pixel" in f for f in df.attrs["flags"])
    df = find_particles(sem, min_diameter_nm=40.0)
    assert df.attrs["flags"] == []


def test_missing_pixel_size():
    sem, _ = synthetic(shape=(128, 128), counts=(5, 5), seed=1)
    bad = as_sem(sem.values, pixel=False)
    with pytest.raises(MissingCalibration, match="no pixel size"):
        find_particles(bad)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_split_one_to_one_five_seeds(seed):
    sem, truth = synthetic(seed=seed, ag_count=30)
    df = find_particles(sem, min_diameter_nm=40.0)
    inner, ok, _, _ = match(df, truth, sem.shape)
    assert ok[inner].mean() >= 0.88


def test_two_scale_watershed_matches_full_resolution():
    """The half-resolution flood + steepest-ascent refinement against the full watershed."""
    import cv2
    from skimage.segmentation import watershed

    from pipeline.segmentation import particles as P

    x, y, d, ag = make_discs((768, 1024), (40.0, 80.0), (300, 300), seed=11)
    img = render((768, 1024), x, y, d, ag, seed=11).astype(np.float32)
    sm = cv2.GaussianBlur(img, (0, 0), 1.0)
    fg = sm > 0.5 * (BG + CARBON)
    edt = cv2.GaussianBlur(cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, 5),
                           (0, 0), 1.0)
    edt[~fg] = 0
    markers = P._markers(edt, 10.0)
    full = watershed(-edt, markers, mask=fg)
    two = P._split(edt, fg, markers, 10.0, two_scale=True)
    assert (two[fg] == full[fg]).mean() > 0.985
    a_full = np.bincount(full.ravel())[1:]
    a_two = np.bincount(two.ravel(), minlength=a_full.size + 1)[1:]
    ratio = a_two[a_full > 0] / a_full[a_full > 0]
    assert abs(np.median(ratio) - 1.0) < 0.005
    assert np.percentile(np.abs(ratio - 1.0), 90) < 0.05


def test_no_silver_when_none_present():
    sem, _ = synthetic(shape=(512, 512), modes=(60.0,), counts=(120,), seed=4)
    df = find_particles(sem, min_diameter_nm=40.0)
    assert (df["phase"] == "carbon").all()
    assert df.attrs["ag_area_frac"] == 0.0
    assert df.attrs["levels"]["silver"] is None


@pytest.mark.slow
def test_full_size_image_two_scale_path():
    """2048 x 1536, ~1 900 discs (the benchmark image): the half-resolution watershed path."""
    from pipeline.segmentation.psd import size_distribution

    shape = (1536, 2048)
    x, y, d, ag = make_discs(shape, (40.0, 80.0), (900, 900), seed=0, ag_count=100)
    sem = as_sem(render(shape, x, y, d, ag, seed=0))
    df = find_particles(sem, min_diameter_nm=40.0)
    inner, ok, _, phase = match(df, (x, y, d, ag), shape)
    assert ok[inner].mean() >= 0.88
    sel = inner & ok
    found = phase[sel] == "silver"
    assert (ag[sel] & found).sum() >= 0.95 * ag[sel].sum()
    assert (ag[sel] & found).sum() >= 0.95 * found.sum()
    r = size_distribution(df, n_boot=50)
    assert r["bic_k"] == 2
    assert r["modes"][0]["mean_nm"] == pytest.approx(40.0, rel=0.03)
    assert r["modes"][1]["mean_nm"] == pytest.approx(80.0, rel=0.03)
