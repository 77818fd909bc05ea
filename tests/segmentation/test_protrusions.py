"""Protrusions on synthetic 100x SEM surfaces and height maps with known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.errors import MeasurementError, MissingCalibration, UnreadableInput
from pipeline.ingest.dataarray import height_dataarray, sem_dataarray
from pipeline.segmentation.protrusions import find_height_protrusions, find_protrusions

PIXEL_UM = 1.2  # about a 100x field: 1280 px ~ 1.5 mm
FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))


def surface(seed, *, n=40, shape=(480, 640), d_px=(14.0, 26.0), amp=(40.0, 80.0),
            noise=6.0, edge=6):
    """A textured, shaded surface with `n` Gaussian bumps; returns (uint8 image, truth).

    Truth rows: (row, col, fwhm_px, amplitude). `edge` bumps sit within 4 px of a border.
    """
    import cv2

    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    shading = 90.0 + 40.0 * xx / nx - 25.0 * ((yy / ny) - 0.4) ** 2 * 4
    tex = cv2.GaussianBlur(rng.normal(0.0, 1.0, shape).astype(np.float32), (0, 0), 2.5)
    tex = 4.0 * tex / tex.std()
    truth: list[tuple[float, float, float, float]] = []
    while len(truth) < n:
        d = rng.uniform(*d_px)
        if len(truth) < edge:
            side = len(truth) % 4
            along = rng.uniform(d, (nx if side < 2 else ny) - d)
            off = rng.uniform(0.0, 4.0)
            r, c = {0: (off, along), 1: (ny - 1 - off, along),
                    2: (along, off), 3: (along, nx - 1 - off)}[side]
        else:
            r, c = rng.uniform(0, ny - 1), rng.uniform(0, nx - 1)
        if any(math.hypot(r - t[0], c - t[1]) < 1.6 * (d + t[2]) for t in truth):
            continue
        truth.append((r, c, d, rng.uniform(*amp)))
    bumps = np.zeros(shape)
    for r, c, d, a in truth:
        s = d / FWHM
        r0, r1 = int(max(r - 4 * s, 0)), int(min(r + 4 * s + 1, ny))
        c0, c1 = int(max(c - 4 * s, 0)), int(min(c + 4 * s + 1, nx))
        bumps[r0:r1, c0:c1] += a * np.exp(
            -((yy[r0:r1, c0:c1] - r) ** 2 + (xx[r0:r1, c0:c1] - c) ** 2) / (2 * s * s))
    img = shading + tex + bumps + rng.normal(0.0, noise, shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), np.array(truth).reshape(-1, 4)


def sem(img, pixel_um=PIXEL_UM, masked=None):
    return sem_dataarray(img, path="synthetic.tif",
                         pixel_size_um=None if pixel_um is None else (pixel_um, pixel_um),
                         pixel_size_source=None if pixel_um is None else "test",
                         vendor="synthetic", fmt="tiff", masked_regions=masked)


def match(df, truth, radius_px):
    """Greedy one-to-one matching by distance; returns (n_matched, pairs)."""
    det = df[["y_px", "x_px"]].to_numpy()
    used = set()
    pairs = []
    for i, (r, c, *_rest) in enumerate(truth):
        if len(det) == 0:
            break
        dist = np.hypot(det[:, 0] - r, det[:, 1] - c)
        for j in np.argsort(dist):
            if dist[j] > radius_px:
                break
            if j not in used:
                used.add(j)
                pairs.append((i, j))
                break
    return len(pairs), pairs


@pytest.mark.parametrize("seed", range(5))
def test_recall_precision_sizes(seed):
    img, truth = surface(seed)
    df = find_protrusions(sem(img), bump_diameter_um=20.0 * PIXEL_UM)
    n, pairs = match(df, truth, radius_px=6.0)
    recall, precision = n / len(truth), n / max(len(df), 1)
    assert recall >= 0.95 and precision >= 0.95, (recall, precision, len(df))
    ti = np.array([p[0] for p in pairs])
    dj = np.array([p[1] for p in pairs])
    inner = ~df["touches_edge"].to_numpy()[dj]
    # sizes and heights of whole bumps, after the smoothing is taken out
    d_err = df["diameter_px"].to_numpy()[dj][inner] / truth[ti, 2][inner] - 1.0
    h_err = df["height"].to_numpy()[dj][inner] / truth[ti, 3][inner] - 1.0
    assert abs(np.median(d_err)) < 0.10, np.median(d_err)
    assert abs(np.median(h_err)) < 0.12, np.median(h_err)
    pos = np.hypot(df["y_px"].to_numpy()[dj] - truth[ti, 0], df["x_px"].to_numpy()[dj] - truth[ti, 1])
    assert np.median(pos[inner]) < 1.0  # the texture (sd 4, 2.5 px) moves peaks by ~1 px
    # units and per-area count
    assert np.allclose(df["x_um"], (df["x_px"] + 0.5) * PIXEL_UM)
    area_mm2 = img.size * PIXEL_UM**2 * 1e-6
    assert df.attrs["count"] == len(df)
    assert df.attrs["per_mm2"] == pytest.approx(len(df) / area_mm2, rel=1e-9)
    assert df.attrs["h"] > 0 and df.attrs["h"] == pytest.approx(5.0 * df.attrs["noise_sigma"])


def test_edge_bumps_flagged():
    img, truth = surface(1, edge=8)
    df = find_protrusions(sem(img), bump_diameter_um=20.0 * PIXEL_UM)
    _, pairs = match(df, truth, radius_px=6.0)
    flags = df["touches_edge"].to_numpy()
    ny, nx = img.shape
    for i, j in pairs:
        r, c = truth[i, :2]
        at_edge = min(r, c, ny - 1 - r, nx - 1 - c) < 4.5
        if at_edge:
            assert flags[j], (r, c)
        elif min(r, c, ny - 1 - r, nx - 1 - c) > 2 * truth[i, 2]:
            assert not flags[j], (r, c)


@pytest.mark.parametrize("seed", range(3))
def test_no_bumps_no_detections(seed):
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(120.0, 8.0, (480, 640)), 0, 255).astype(np.uint8)
    df = find_protrusions(sem(img), bump_diameter_um=20.0 * PIXEL_UM)
    assert len(df) == 0 and df.attrs["count"] == 0 and df.attrs["per_mm2"] == 0.0


def test_textured_background_without_bumps():
    img, _ = surface(7, n=0)
    df = find_protrusions(sem(img), bump_diameter_um=20.0 * PIXEL_UM)
    assert len(df) == 0


@pytest.mark.parametrize("value, word", [(0, "all black"), (255, "all white"),
                                         (77, "all uniform grey")])
def test_blank_image_is_refused(value, word):
    # counting nothing on a blank image would report a perfect surface: refused instead
    for kw in ({"bump_diameter_um": 20.0}, {}):
        with pytest.raises(UnreadableInput, match=f"synthetic.tif: the image is blank: every "
                                                  f"analysed pixel is {value} \\({word}\\)"):
            find_protrusions(sem(np.full((200, 300), value, np.uint8)), **kw)


def test_nearly_blank_image_is_refused():
    img = np.full((200, 300), 40, np.uint8)
    img[10, 10:40] = 200  # a few stray pixels: 30 of 60000
    with pytest.raises(UnreadableInput, match=r"nearly blank: only 30 of its 60000 analysed "
                                              r"pixels differ from 40"):
        find_protrusions(sem(img), bump_diameter_um=20.0)


def test_masked_region_respected():
    img, truth = surface(2)
    full = find_protrusions(sem(img), bump_diameter_um=20.0 * PIXEL_UM)
    # mask a block that holds some bumps, and burn bright text into it
    region = {"row0": 100, "row1": 260, "col0": 200, "col1": 420, "reason": "label"}
    img2 = img.copy()
    img2[150:170, 230:400:12] = 255
    masked = find_protrusions(sem(img2, masked=[region]), bump_diameter_um=20.0 * PIXEL_UM)
    inside = ((truth[:, 0] >= 100) & (truth[:, 0] < 260)
              & (truth[:, 1] >= 200) & (truth[:, 1] < 420))
    assert inside.sum() >= 2
    y, x = masked["y_px"].to_numpy(), masked["x_px"].to_numpy()
    assert not np.any((y >= 100) & (y < 260) & (x >= 200) & (x < 420))
    n, _ = match(masked, truth[~inside], radius_px=6.0)
    assert n >= 0.95 * (~inside).sum()
    assert len(masked) <= len(full) - inside.sum() + 1
    assert masked.attrs["area_px"] == img.size - 160 * 220
    assert masked.attrs["per_mm2"] == pytest.approx(
        len(masked) / ((img.size - 160 * 220) * PIXEL_UM**2 * 1e-6))


def test_uncalibrated_image_is_refused():
    # a count per mm2 needs a pixel size: refused like every other measurement
    img, _ = surface(3)
    da = sem(img, pixel_um=None)
    for kw in ({"bump_diameter_px": 20.0}, {"bump_diameter_um": 20.0}, {}):
        with pytest.raises(MissingCalibration, match="synthetic.tif: no pixel size") as info:
            find_protrusions(da, **kw)
        assert info.value.exit_code == 3


def test_bump_diameter_in_pixels():
    img, truth = surface(3)
    df = find_protrusions(sem(img), bump_diameter_px=20.0)
    assert {"x_px", "y_px", "area_px", "diameter_px", "x_um", "area_um2"} <= set(df.columns)
    n, _ = match(df, truth, radius_px=6.0)
    assert n >= 0.95 * len(truth)
    assert df.attrs["per_mm2"] == pytest.approx(len(df) / (img.size * PIXEL_UM**2 * 1e-6))


def test_estimated_bump_scale():
    img, truth = surface(4)
    df = find_protrusions(sem(img))
    assert 10.0 < df.attrs["bump_diameter_px"] < 40.0
    n, _ = match(df, truth, radius_px=6.0)
    assert n >= 0.9 * len(truth) and n >= 0.9 * len(df)


def test_bad_arguments():
    da = sem(np.full((50, 60), 10, np.uint8))
    with pytest.raises(ValueError, match="h_sigma must be > 0"):
        find_protrusions(da, bump_diameter_um=10.0, h_sigma=0.0)
    with pytest.raises(ValueError, match="bump diameter must be > 0"):
        find_protrusions(da, bump_diameter_um=-1.0)
    everything = [{"row0": 0, "row1": 50, "col0": 0, "col1": 60}]
    with pytest.raises(MeasurementError, match="every pixel of the image is in a masked region"):
        find_protrusions(sem(np.full((50, 60), 10, np.uint8), masked=everything),
                         bump_diameter_um=10.0)


# ---------------------------------------------------------------- height maps


def height_map(seed, *, nan=True):
    """Tilted rough map with 7 flat-topped and Gaussian protrusions of known heights."""
    rng = np.random.default_rng(seed)
    ny, nx, dx = 300, 400, 0.5
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    z = 0.002 * xx - 0.001 * yy + rng.normal(0.0, 0.02, (ny, nx))
    centres = [(40, 50), (60, 300), (150, 200), (250, 80), (230, 330), (120, 370), (0, 180)]
    peaks = [1.0, 1.5, 2.0, 0.8, 1.2, 3.0, 1.1]
    for (r, c), p in zip(centres, peaks):
        z += p * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * 6.0 ** 2))
    if nan:
        z[200:210, 150:260] = np.nan
    return height_dataarray(z, path="synthetic.x3p", dx_um=dx, dy_um=dx,
                            pixel_size_source="test", vendor="synthetic",
                            instrument="", fmt="x3p"), centres, peaks, dx


@pytest.mark.parametrize("nan", [False, True])
def test_height_protrusions_counted_exactly(nan):
    da, centres, peaks, dx = height_map(0, nan=nan)
    df = find_height_protrusions(da, threshold_um=0.4)
    assert df.attrs["count"] == len(centres) == len(df)
    df = df.sort_values("peak_um").reset_index(drop=True)
    order = np.argsort(peaks)
    for k, i in enumerate(order):
        r, c = centres[i]
        # noise (sd 0.02) adds up to ~0.1 at the top; plane removal shifts by ~0.05
        assert df["peak_um"][k] == pytest.approx(peaks[i], abs=0.12)
        if r > 0:
            assert df["x_um"][k] == pytest.approx((c + 0.5) * dx, abs=2 * dx)
            assert df["y_um"][k] == pytest.approx((r + 0.5) * dx, abs=2 * dx)
    assert df["touches_edge"].sum() == 1
    n_valid = int(np.isfinite(da.values).sum())
    assert df.attrs["per_mm2"] == pytest.approx(7 / (n_valid * dx * dx * 1e-6))


def test_height_protrusions_threshold_above_all_gives_none():
    da, *_ = height_map(1)
    df = find_height_protrusions(da, threshold_um=5.0)
    assert len(df) == 0 and df.attrs["count"] == 0 and df.attrs["per_mm2"] == 0.0
    assert list(df.columns) == ["x_um", "y_um", "peak_um", "area_um2", "touches_edge"]


def test_height_protrusions_bad_threshold():
    da, *_ = height_map(1)
    with pytest.raises(ValueError, match="threshold_um must be > 0"):
        find_height_protrusions(da, threshold_um=0.0)


def _off_specimen(img, col, rng):
    """`img` with the columns from `col` on replaced by a dark stub, its edge glinting."""
    out = img.astype(float)
    out[:, col:] = 20 + rng.normal(0, 4, (img.shape[0], img.shape[1] - col))
    out[:, col - 2:col + 2] = 220
    return np.clip(out, 0, 255).astype(np.uint8)


def test_specimen_border_is_left_out():
    from pipeline.synth import surface_image

    img, t = surface_image((480, 640), n_protrusions=30, seed=3)
    da = sem_dataarray(img, path="s.tif", pixel_size_um=(1.0, 1.0), pixel_size_source="test",
                       vendor="test", fmt="test")
    full = find_protrusions(da, bump_diameter_px=20.0)
    assert full.attrs["off_specimen_share"] == 0.0 and len(full) == t["count"]
    cut = _off_specimen(img, 450, np.random.default_rng(0))
    da = da.copy(data=cut)
    df = find_protrusions(da, bump_diameter_px=20.0)
    truth_density = sum(b["col"] < 450 for b in t["protrusions"]) / (450 * 480 * 1e-6)
    # the stub (30 % of the field) and a 40 px border zone are not specimen
    assert 0.30 < df.attrs["off_specimen_share"] < 0.40
    assert df["x_px"].max() < 450 - 2 * 20
    assert df.attrs["per_mm2"] == pytest.approx(truth_density, rel=0.15)
    # counted over the whole field instead, the density is a quarter low
    assert len(df) / (640 * 480 * 1e-6) < 0.8 * truth_density
