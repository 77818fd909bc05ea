"""The realistic SEM model `pipeline.synth.sem`: determinism, truth, aggregates, rims, and
its "tio2-bam" preset against the real BAM images it was tuned on."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.synth.sem import PRESETS, SemModel, isolated_primaries, sem_dataarray, sem_scene

SMALL = (256, 320)
BAM = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "sem-labelled" / "bam_tio2"
BAM_ROWS = 712  # the Zeiss data zone covers rows 712-767
# Scattered single spheres (clusters of one that do not overlap): many isolated particles.
SPHERES = {"structure": "agglomerates", "primaries": (1.0, 0.0, 1, 1), "separate": True,
           "coverage": 0.12, "silver_fraction": 0.0, "irregular_fraction": 0.0,
           "binder_fraction": 0.0, "layer_nm": 0.0}


def _plain(truth):
    return {k: v for k, v in truth.items() if not isinstance(v, np.ndarray)}


@pytest.mark.parametrize("preset", ["tio2-bam", "cb-agg-40"])
def test_same_arguments_same_bytes(preset):
    a, ta = sem_scene(preset, shape=SMALL, seed=3)
    b, tb = sem_scene(preset, shape=SMALL, seed=3)
    c, _ = sem_scene(preset, shape=SMALL, seed=4)
    assert a.tobytes() == b.tobytes() and a.dtype == np.uint8 and a.shape == SMALL
    assert json.dumps(_plain(ta), sort_keys=True) == json.dumps(_plain(tb), sort_keys=True)
    for key in ("owner", "aggregate_owner", "binder"):
        assert np.array_equal(ta[key], tb[key])
    assert a.tobytes() != c.tobytes()
    d16, t16 = sem_scene(preset, shape=SMALL, seed=3, bits=16)
    assert d16.dtype == np.uint16 and np.array_equal(t16["owner"], ta["owner"])


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_truth_is_consistent(preset):
    _, t = sem_scene(preset, shape=SMALL, seed=1)
    owner, agg_owner, binder = t["owner"], t["aggregate_owner"], t["binder"]
    assert owner.dtype == agg_owner.dtype == np.int32 and binder.dtype == bool
    prims = {p["id"]: p for p in t["primaries"]}
    assert sorted(prims) == list(range(1, len(prims) + 1))
    assert set(np.unique(owner)) - {0} == set(prims)  # every primary listed is seen
    area = np.bincount(owner.ravel(), minlength=len(prims) + 1)
    for p in prims.values():
        assert 0.0 < p["visible_fraction"] <= 1.0
        assert area[p["id"]] > 0
        assert p["phase"] in ("carbon", "silver", "tio2")
        if p["shape"] == "sphere":
            assert p["projected_ecd_nm"] == pytest.approx(p["diameter_nm"], rel=1e-9)
    # aggregate_owner: the aggregate's id, or the particle's own id when discrete
    expect = np.array([0] + [p["aggregate"] or p["id"] for p in t["primaries"]], np.int32)
    assert np.array_equal(agg_owner, expect[owner])
    ids = [a["id"] for a in t["aggregates"]]
    assert len(set(ids)) == len(ids) and not set(ids) & set(prims)
    for a in t["aggregates"]:
        members = [p for p in prims.values() if p["aggregate"] == a["id"]]
        assert len(members) == a["n_visible"] <= a["n_primaries"]
        seen = np.count_nonzero(agg_owner == a["id"]) * t["pixel_nm"] ** 2
        assert seen <= a["projected_area_nm2"] + 1e-6  # the union includes hidden parts
        assert a["perimeter_nm"] >= 2 * math.sqrt(math.pi * a["projected_area_nm2"]) * 0.95
    assert not np.any(binder & (owner > 0))  # binder is never a particle
    json.dumps(_plain(t))
    assert t["preset"] == preset and t["shape"] == list(SMALL)
    assert SemModel(**t["model"]) == PRESETS[preset]


def test_isolated_sphere_silhouette_is_its_diameter():
    _, t = sem_scene("mono-40", shape=(384, 384), seed=2, **SPHERES)
    iso = isolated_primaries(t)
    assert len(iso) >= 8
    area = np.bincount(t["owner"].ravel())
    for p in iso:
        ecd_px = 2.0 * math.sqrt(area[p["id"]] / math.pi) * t["pixel_nm"]
        assert abs(ecd_px - p["diameter_nm"]) < t["pixel_nm"], p
        assert p["projected_ecd_nm"] == pytest.approx(p["diameter_nm"], rel=1e-9)
        assert p["x_nm"] == pytest.approx(t["pixel_nm"] * np.mean(np.nonzero(t["owner"] == p["id"])[1] + 0.5),
                                          abs=0.5 * t["pixel_nm"])


def _fractal_dim(truth):
    agg = [a for a in truth["aggregates"] if a["n_primaries"] >= 5]
    n = np.array([a["n_primaries"] for a in agg], float)
    rg = np.array([a["radius_of_gyration_nm"] / (a["mean_primary_nm"] / 2) for a in agg])
    return float(np.polyfit(np.log(rg), np.log(n), 1)[0]), len(agg)


def test_aggregates_are_fractal_with_fused_necks():
    _, t = sem_scene("cb-agg-40", seed=0)
    df, n_agg = _fractal_dim(t)
    assert n_agg > 100 and 1.6 <= df <= 2.4, (df, n_agg)
    counts = [a["n_primaries"] for a in t["aggregates"]]
    assert min(counts) >= 5 and max(counts) <= 60
    # necks: primaries of one aggregate overlap, centre distance 0.7-0.95 of the summed radii
    ratios = []
    by_agg: dict[int, list] = {}
    for p in t["primaries"]:
        if p["shape"] == "sphere":
            by_agg.setdefault(p["aggregate"], []).append(p)
    for members in by_agg.values():
        if len(members) < 2:
            continue
        xyz = np.array([[p["x_nm"], p["y_nm"], p["z_nm"]] for p in members])
        r = np.array([p["diameter_nm"] / 2 for p in members])
        gap = np.linalg.norm(xyz[:, None] - xyz[None], axis=2) / (r[:, None] + r[None])
        np.fill_diagonal(gap, np.inf)
        ratios += list(gap.min(1))
    ratios = np.array(ratios)
    assert ratios.min() >= 0.7 - 1e-6
    assert 0.7 <= np.median(ratios) <= 0.95, np.median(ratios)
    # the dimension is tunable: a denser growth gives a larger fitted dimension
    lo = _fractal_dim(sem_scene("cb-agg-40", seed=0, shape=SMALL, fractal_dim=1.7, coverage=3.0)[1])[0]
    hi = _fractal_dim(sem_scene("cb-agg-40", seed=0, shape=SMALL, fractal_dim=2.2, coverage=3.0)[1])[0]
    assert hi > lo + 0.25, (lo, hi)


def _edge_profile(img, truth, iso):
    """Mean grey level against the distance (px) from the centre over the radius, isolated
    spheres pooled: bins of 0.1 radius from 0 to 1.3."""
    ny, nx = img.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    p_nm = truth["pixel_nm"]
    sums, cnts = np.zeros(13), np.zeros(13)
    for p in iso:
        rho = np.hypot((xx + 0.5) * p_nm - p["x_nm"], (yy + 0.5) * p_nm - p["y_nm"]) / (p["diameter_nm"] / 2)
        k = rho < 1.3
        b = (rho[k] * 10).astype(int)
        sums += np.bincount(b, img[k].astype(float), 13)
        cnts += np.bincount(b, minlength=13)
    return sums / cnts


def test_rims_on_and_off():
    from pipeline.segmentation.particles import find_particles
    from pipeline.synth import match_labels

    profiles, ecd = {}, {}
    for rim in (0.6, 0.0):
        da, t = sem_dataarray("mono-40", shape=(384, 384), seed=2, rim_gain=rim, **SPHERES)
        iso = isolated_primaries(t)
        prof = _edge_profile(da.values, t, iso)
        profiles[rim] = prof
        table, labels = find_particles(da, return_labels=True)
        pairs = match_labels(t["owner"], labels)
        found = dict(zip(table["label"], table["ecd_nm"]))
        ecd[rim] = np.median([found[pairs[p["id"]]] / p["projected_ecd_nm"] for p in iso if p["id"] in pairs])
    plateau_on, plateau_off = profiles[0.6][:4].mean(), profiles[0.0][:4].mean()
    assert profiles[0.6][6:10].max() > 1.15 * plateau_on  # a rim brighter than the plateau
    assert profiles[0.0][6:10].max() < 1.03 * plateau_off  # flat up to the edge
    print(f"find_particles ECD / truth on isolated spheres: rims {ecd[0.6]:.3f}, none {ecd[0.0]:.3f}")
    assert ecd[0.0] == pytest.approx(1.0, abs=0.03)


def _stats(img, labels):
    """Background and particle medians, noise and halo of one image (grey levels)."""
    from scipy.ndimage import distance_transform_edt, gaussian_filter

    a = img.astype(float)
    part = labels > 0
    out_d, in_d = distance_transform_edt(~part), distance_transform_edt(part)
    bg, inner = out_d > 8, in_d > 3
    cross = (a[:-1, :-1] - a[:-1, 1:] - a[1:, :-1] + a[1:, 1:]) / 2  # no plane, no row offset
    res = a - gaussian_filter(a, 3.0)
    pair = bg[:, 1:] & bg[:, :-1]
    bg_med = float(np.median(a[bg]))
    return {
        "background": bg_med,
        "particles": float(np.median(a[inner])),
        "noise_background": float(np.std(cross[bg[:-1, :-1] & bg[1:, 1:]])),
        "noise_particles": float(np.std(cross[inner[:-1, :-1] & inner[1:, 1:]])),
        "noise_lag1": float(np.corrcoef(res[:, 1:][pair], res[:, :-1][pair])[0, 1]),
        "halo": float(np.median(a[(out_d > 1.5) & (out_d <= 4.5)]) - bg_med),
    }


@pytest.mark.slow
def test_tio2_preset_matches_the_bam_images():
    if not BAM.is_dir():
        pytest.skip(f"real BAM TiO2 images not present ({BAM})")
    import tifffile
    from skimage.measure import label

    real = []
    for f in sorted(BAM.glob("[0-9]*[0-9].tif")):
        img = tifffile.imread(f)[:BAM_ROWS]
        lab = label(tifffile.imread(f.with_name(f.stem + "_mask.tif"))[:BAM_ROWS] > 0, connectivity=1)
        real.append(_stats(img, lab))
    assert len(real) == 10
    synth = []
    for seed in (0, 1):
        img, t = sem_scene("tio2-bam", shape=(BAM_ROWS, 1024), seed=seed)
        synth.append(_stats(img, t["owner"]))
    for key, rel in (("background", 0.15), ("particles", 0.15), ("noise_background", 0.2),
                     ("noise_particles", 0.2), ("noise_lag1", 0.25), ("halo", 0.5)):
        r = np.array([s[key] for s in real])
        s = float(np.median([s[key] for s in synth]))
        assert r.min() <= s <= r.max(), (key, s, r.min(), r.max())  # within the real spread
        assert abs(s - np.median(r)) <= rel * abs(np.median(r)), (key, s, np.median(r))


def test_dataarray_is_what_find_particles_takes():
    from pipeline.segmentation.particles import find_particles

    da, t = sem_dataarray("bimodal-40-80", shape=SMALL, seed=0)
    assert da.dims == ("y", "x") and da.shape == SMALL
    assert da.attrs["pixel_size_um"] == pytest.approx({"x": 0.002, "y": 0.002})
    assert float(da.x[0]) == pytest.approx(0.001) and da.attrs["kind"] == "sem"
    table = find_particles(da)
    assert len(table) > 20 and t["pixel_nm"] == 2.0
    assert sem_dataarray("tio2-bam", shape=SMALL)[0].attrs["pixel_size_um"]["x"] == pytest.approx(
        0.00734375)


def test_presets_and_overrides():
    assert {"bimodal-40-80", "bimodal-25-70", "mono-40", "cb-agg-40", "cb-agg-80", "tio2-bam"} <= set(PRESETS)
    _, t = sem_scene("bimodal-25-70", shape=SMALL, pixel_nm=3.0, rim_gain=0.0)
    assert t["pixel_nm"] == 3.0 and t["model"]["rim_gain"] == 0.0
    assert t["model"]["modes"] == ((25.0, 0.12, 0.5), (70.0, 0.12, 0.5))
    silver = [p for p in t["primaries"] if p["phase"] == "silver"]
    assert all(p["mode"] is None and p["aggregate"] is None for p in silver)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        sem_scene("nope")
    with pytest.raises(ValueError, match="bits must be 8 or 16"):
        sem_scene("mono-40", shape=SMALL, bits=12)
    with pytest.raises(TypeError, match="not SemModel fields: \\['rim'\\]"):
        sem_scene("mono-40", shape=SMALL, rim=1.0)
    with pytest.raises(NotImplementedError, match="'packed' scenes only"):
        sem_scene("cb-agg-40", shape=SMALL, silver_fraction=0.1)
    with pytest.raises(ValueError, match="structure must be"):
        sem_scene("mono-40", shape=SMALL, structure="foam")
    with pytest.raises(ValueError, match="positive number shares"):
        sem_scene("mono-40", shape=SMALL, modes=((40.0, 0.1, 0.0),))


def test_facet_shading_and_light_leave_the_layout_alone():
    """Facet brightness and directional light change grey levels, not the layout: the
    ownership is that of the same seed without them, and with both at 0 the image is the
    preset's to the byte."""
    base, t0 = sem_scene("tio2-bam", shape=SMALL, seed=5, facet_fraction=1.0)
    same, _ = sem_scene("tio2-bam", shape=SMALL, seed=5, facet_fraction=1.0,
                        facet_contrast=0.0, light_weight=0.0)
    assert np.array_equal(base, same)
    lit, t1 = sem_scene("tio2-bam", shape=SMALL, seed=5, facet_fraction=1.0,
                        facet_contrast=0.2, light_weight=0.5)
    assert np.array_equal(t0["owner"], t1["owner"])
    inside = t0["owner"] > 0
    assert not np.array_equal(base[inside], lit[inside])
    # within one faceted body the brightness now steps between facets: the spread of its
    # pixels grows
    big = max((p for p in t0["primaries"] if p["visible_fraction"] == 1.0),
              key=lambda p: p["diameter_nm"])
    me = t0["owner"] == big["id"]
    assert lit[me].astype(float).std() > base[me].astype(float).std()
