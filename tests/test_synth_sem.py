"""Ground-truth SEM generators in pipeline.synth: determinism, truth consistency, files."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

import pipeline
from pipeline.synth import (
    cross_section_image,
    particle_image,
    surface_image,
    write_sem_tiff,
    write_truth,
)

SMALL = (384, 512)  # 1024 x 768 nm at 2 nm/px: a few hundred particles, fast


def test_particle_image_is_deterministic():
    a, ta = particle_image(SMALL, seed=3)
    b, tb = particle_image(SMALL, seed=3)
    c, _ = particle_image(SMALL, seed=4)
    assert a.tobytes() == b.tobytes() and ta == tb
    assert a.tobytes() != c.tobytes()
    assert a.dtype == np.uint8 and a.shape == SMALL
    assert particle_image(SMALL, seed=3, bits=16)[0].dtype == np.uint16


def test_mode_number_shares_within_sampling_error():
    shares = []
    n_tot = 0
    for seed in range(3):
        _, t = particle_image((768, 1024), modes=((40.0, 0.12, 0.3), (80.0, 0.12, 0.7)),
                              seed=seed)
        carbon = [p for p in t["particles"] if p["phase"] == "carbon"]
        n_tot += len(carbon)
        shares += [p["mode"] == 0 for p in carbon]
    p0 = float(np.mean(shares))
    se = math.sqrt(0.3 * 0.7 / n_tot)
    assert n_tot > 800
    assert abs(p0 - 0.3) < 4 * se, (p0, se, n_tot)


def test_mode_sizes_and_silver_match_request():
    _, t = particle_image((768, 1024), seed=1, silver_fraction=0.1)
    parts = t["particles"]
    for k, med in enumerate((40.0, 80.0)):
        d = np.array([p["diameter_nm"] for p in parts if p["mode"] == k])
        assert np.exp(np.log(d).mean()) == pytest.approx(med, rel=0.03)
        assert np.log(d).std() == pytest.approx(0.12, rel=0.2)
    silver = [p for p in parts if p["phase"] == "silver"]
    assert t["n_silver"] == len(silver) and all(p["mode"] is None for p in silver)
    share = len(silver) / len(parts)
    assert abs(share - 0.1) < 4 * math.sqrt(0.09 / len(parts))


def test_overlaps_are_slight_and_edges_flagged():
    _, t = particle_image(SMALL, seed=2)
    ny, nx = SMALL
    xy = np.array([[p["x_nm"], p["y_nm"]] for p in t["particles"]])
    r = np.array([p["diameter_nm"] / 2 for p in t["particles"]])
    gap = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    depth = r[:, None] + r[None, :] - gap
    np.fill_diagonal(depth, -np.inf)
    allowed = 0.15 * np.minimum(r[:, None], r[None, :])
    assert np.all(depth <= allowed + 1e-6)
    assert np.count_nonzero(depth > 0) > len(r)  # most particles touch a neighbour (necks)
    for p, rr in zip(t["particles"], r):
        out = (p["x_nm"] - rr < 0 or p["y_nm"] - rr < 0
               or p["x_nm"] + rr > nx * 2.0 or p["y_nm"] + rr > ny * 2.0)
        assert p["touches_edge"] == out
    assert any(p["touches_edge"] for p in t["particles"])


def test_label_image_consistent_with_diameters():
    img, t = particle_image(SMALL, seed=5, return_labels=True)
    labels = t["labels"]
    assert labels.shape == SMALL and labels.dtype == np.int32
    assert "labels" not in particle_image(SMALL, seed=5)[1]
    area_px = np.bincount(labels.ravel(), minlength=len(t["particles"]) + 1)
    assert t["coverage_achieved"] == pytest.approx(np.count_nonzero(labels) / labels.size)
    ratios = []
    for p in t["particles"]:
        disc = math.pi * (p["diameter_nm"] / 2.0 / 2.0) ** 2  # pixels (2 nm/px)
        a = area_px[p["id"]]
        assert a <= disc + math.pi * p["diameter_nm"] / 2.0 + 4  # perimeter discretisation
        if not p["touches_edge"]:
            assert a > 0
            ratios.append(a / disc)
    assert 0.9 <= np.median(ratios) <= 1.02
    # phases by brightness: silver interiors brighter than carbon interiors, pores darkest
    silver_ids = [p["id"] for p in t["particles"] if p["phase"] == "silver"]
    is_ag = np.isin(labels, silver_ids)
    assert img[is_ag].mean() > img[(labels > 0) & ~is_ag].mean() > img[labels == 0].mean()


def test_particle_image_bad_arguments():
    with pytest.raises(ValueError, match="positive number shares"):
        particle_image(SMALL, modes=((40.0, 0.1, 0.0),))
    with pytest.raises(ValueError, match="bits must be 8 or 16"):
        particle_image(SMALL, bits=12)


def test_full_size_speed_printed():
    t0 = time.perf_counter()
    img, t = particle_image()
    dt = time.perf_counter() - t0
    print(f"particle_image 2048x1536: {dt:.2f} s, {len(t['particles'])} particles, "
          f"coverage {t['coverage_achieved']:.3f}")
    assert img.shape == (1536, 2048) and len(t["particles"]) > 1500


@pytest.mark.parametrize("bar", [70, 0])
def test_fei_tiff_reads_back(tmp_path, bar):
    img, truth = particle_image(SMALL, seed=0)
    p = write_sem_tiff(tmp_path / "p.tif", img, pixel_um=0.002, databar_rows=bar)
    assert json.loads(write_truth(p, truth).read_text())["particles"][0]["id"] == 1
    da = pipeline.read(p)
    assert da.attrs["reader"] == "fei"
    assert da.shape == SMALL and da.attrs["databar_rows"] == bar
    assert np.array_equal(da.values, img)
    assert da.attrs["pixel_size_um"] == pytest.approx({"x": 0.002, "y": 0.002}, rel=1e-9)
    assert da.attrs["kv"] == pytest.approx(5.0) and da.attrs["detector"] == "TLD"
    again = write_sem_tiff(tmp_path / "q.tif", img, pixel_um=0.002, databar_rows=bar)
    assert again.read_bytes() == p.read_bytes()


def test_fei_tiff_bar_is_grey_with_text_and_16_bit(tmp_path):
    import tifffile

    img = particle_image(SMALL, seed=0, bits=16)[0]
    p = write_sem_tiff(tmp_path / "p16.tif", img, pixel_um=0.004)
    page = tifffile.imread(p)
    assert page.shape == (SMALL[0] + 70, SMALL[1]) and page.dtype == np.uint16
    bar = page[SMALL[0]:]
    assert np.median(bar) == 65535 // 4 and np.count_nonzero(bar == 65535) > 500
    da = pipeline.read(p)
    assert da.shape == SMALL and da.attrs["pixel_size_um"]["x"] == pytest.approx(0.004)


def test_write_sem_tiff_bad_arguments(tmp_path):
    img = np.zeros((10, 10), np.uint8)
    with pytest.raises(ValueError, match="vendor 'fei' only"):
        write_sem_tiff(tmp_path / "a.tif", img, pixel_um=1.0, vendor="zeiss")
    with pytest.raises(ValueError, match="2-D uint8 or uint16"):
        write_sem_tiff(tmp_path / "a.tif", img.astype(float), pixel_um=1.0)


@pytest.mark.parametrize("porosity", [0.2, 0.4, 0.6])
def test_cross_section_truth_porosity(porosity):
    img, t = cross_section_image(porosity=porosity, seed=1)
    assert abs(t["porosity_frac"] - porosity) < 0.01
    assert img.shape == (768, 1024) and img.dtype == np.uint8
    assert (t["layer_top_row"], t["layer_bottom_row"]) == (100, 599)
    # collector bright and dense, background dark, layer in between
    assert img[650:].mean() > 190 and img[:90].mean() < 50
    assert 50 < img[100:600].mean() < 160
    assert cross_section_image(porosity=porosity, seed=1)[0].tobytes() == img.tobytes()


def test_cross_section_bad_arguments():
    with pytest.raises(ValueError, match="outside 0.05-0.95"):
        cross_section_image(porosity=0.99)
    with pytest.raises(ValueError, match="do not fit"):
        cross_section_image(layer_rows=(600, 100))


def test_surface_image_truth():
    img, t = surface_image(seed=2)
    assert img.shape == (960, 1280) and t["count"] == 40 == len(t["protrusions"])
    assert surface_image(seed=2)[0].tobytes() == img.tobytes()
    for b in t["protrusions"]:
        assert 14.0 <= b["diameter_px"] <= 26.0
        r, c = round(b["row"]), round(b["col"])
        ring = img[max(r - 20, 0):r + 21, max(c - 20, 0):c + 21].astype(float)
        assert img[r, c] > np.percentile(ring, 50) + 15  # the bump stands out locally
