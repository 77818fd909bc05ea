"""The particle network (`pipeline.segmentation.learned`, ``find_particles(method="learned")``).

Oracles: the synthetic SEM model's truth on scenes the network never saw (its training set
uses scene seeds from 100 000 on; these use seeds below 100), and the package's own limits
(size of the weights, OpenCV as the only runtime).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.segmentation.learned import MODEL, choose_scale, normalise, predict
from pipeline.segmentation.particles import find_particles
from pipeline.segmentation.psd import counted
from pipeline.synth.sem import sem_dataarray, sem_scene


def test_weights_ship_with_the_package_and_are_small():
    assert MODEL.is_file()
    assert MODEL.stat().st_size < 20e6


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("n", [1, 2, 9, 5000])
def test_percentiles_from_the_histogram_are_numpys(dtype, n):
    from pipeline.segmentation.learned import _percentiles

    top = 65535 if dtype == np.uint16 else 255
    a = np.random.default_rng(n).integers(0, top + 1, n).astype(dtype)
    q = [0.0, 1.0, 33.3, 99.5, 100.0]
    np.testing.assert_allclose(_percentiles(a, q), np.percentile(a, q), rtol=0, atol=1e-9)


def test_normalise_maps_the_percentiles():
    img = np.arange(10_000, dtype=np.uint16).reshape(100, 100)
    x = normalise(img)
    assert x.dtype == np.float32
    assert np.percentile(x, 1.0) == pytest.approx(0.0, abs=1e-6)
    assert np.percentile(x, 99.5) == pytest.approx(1.0, abs=1e-6)
    assert x.min() >= -0.5 and x.max() <= 1.5
    assert np.all(normalise(np.full((8, 8), 7, np.uint8)) == 0.0)  # constant: no division by 0


@pytest.mark.parametrize("shape", [(64, 64), (75, 131)])
def test_predict_gives_three_probability_maps_of_the_image_size(shape):
    img, _ = sem_scene("bimodal-40-80", shape=shape, seed=3)
    for scale in (1.0, 0.6):
        maps = predict(img, scale)
        assert maps.shape == (3, *shape) and maps.dtype == np.float32
        assert maps.min() >= 0.0 and maps.max() <= 1.0


def test_choose_scale():
    assert choose_scale([30.0] * 3) == 1.0  # fewer than 5: full resolution
    assert choose_scale([40.0] * 10) == pytest.approx(0.5)  # median to 20 px
    assert choose_scale([80.0] * 10) == pytest.approx(0.5)  # never below half
    assert choose_scale([21.0] * 10) == 1.0  # 0.95 or more: full resolution
    # the smaller particles are kept at >= 12 px
    d = [16.0] * 5 + [60.0] * 10
    assert choose_scale(d) == pytest.approx(12.0 / 16.0)
    assert choose_scale([40.0] * 10, min_diameter_px=20.0) == pytest.approx(0.6)


def test_a_sparse_field_of_large_particles_is_probed_whole():
    """200 nm particles at 3.5 nm/px (~57 px) leave fewer than 5 whole ones in the central
    block; the whole image chooses the scale, the 0.5 floor."""
    from pipeline.segmentation import learned
    from pipeline.segmentation.particles import _inner_diameters, _learned_labels

    da, _ = sem_dataarray("tio2-bam", shape=(512, 640), seed=12, pixel_nm=3.5)
    x = learned.normalise(np.asarray(da.values, np.float32))
    block = learned.probe_block(x.shape)
    valid = np.ones(x[block].shape, bool)
    assert _inner_diameters(_learned_labels(learned.maps(x[block]), valid)).size < learned.MIN_PARTICLES
    assert find_particles(da).attrs["network_scale"] == pytest.approx(0.5)


def test_large_particles_run_at_a_reduced_scale():
    """Particles of ~39 px (200 nm at 5 nm/px) go to about 20 px: the network runs at a
    scale near 0.5, the table says so, and the sizes hold."""
    da, truth = sem_dataarray("tio2-bam", shape=(512, 640), seed=12, pixel_nm=5.0)
    table = find_particles(da, method="learned")
    assert 0.5 <= table.attrs["network_scale"] <= 0.65
    inner = [p["diameter_nm"] for p in truth["primaries"] if not p["touches_edge"]]
    x50 = float(np.median(table.loc[counted(table), "ecd_nm"]))
    assert x50 == pytest.approx(float(np.median(inner)), rel=0.15)


def _matched(truth, labels):
    """Per visible truth particle (inner, >= 20 px): the found label holding most of it, when
    that label covers >= 50 % of the particle and the particle >= 50 % of the label."""
    owner = truth["owner"]
    sel = (owner > 0) & (labels > 0)
    pairs, counts = np.unique(np.stack([owner[sel], labels[sel]]), axis=1, return_counts=True)
    n_own = np.bincount(owner.ravel())
    n_lab = np.bincount(labels.ravel())
    out = {}
    for (o, lab), c in zip(pairs.T, counts):
        if c >= 0.5 * n_own[o] and c >= 0.5 * n_lab[lab]:
            out[int(o)] = int(lab)
    return out, n_own


@pytest.mark.parametrize("preset", ["bimodal-40-80", "tio2-bam"])
def test_particles_found_on_unseen_scenes(preset):
    da, truth = sem_dataarray(preset, shape=(384, 512), seed=11)
    table, labels = find_particles(da, method="learned", return_labels=True)
    found, n_own = _matched(truth, labels)
    inner = [p["id"] for p in truth["primaries"]
             if not p["touches_edge"] and n_own[p["id"]] >= 20]
    recall = np.mean([i in found for i in inner])
    precision = len(found) / max(int(labels.max()), 1)
    assert recall >= 0.75 and precision >= 0.7, (recall, precision)
    # the sizes of the matched particles: visible area, not the rim-widened outline
    ratio = [math.sqrt(np.sum(labels == found[i]) / n_own[i]) for i in inner if i in found]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.04)
    assert {"aggregate", "aggregate_primary_nm"} <= set(table.columns)


def test_blank_image_is_still_refused():
    from pipeline.errors import UnreadableInput

    da, _ = sem_dataarray("bimodal-40-80", shape=(64, 64), seed=0)
    da = da.copy(data=np.full(da.shape, 40, da.dtype))
    with pytest.raises(UnreadableInput):
        find_particles(da, method="learned")


def test_tiles_give_the_maps_of_the_whole_image(monkeypatch):
    """Large images run in tiles with a margin; the maps match a single pass where the
    context reaches (the padding of a single pass differs only at the image border)."""
    from pipeline.segmentation import learned

    img, _ = sem_scene("bimodal-40-80", shape=(300, 420), seed=4)
    whole = predict(img)
    monkeypatch.setattr(learned, "TILE", 128)
    tiled = predict(img)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() < 1e-3


def test_results_name_the_network_that_made_them(tmp_path):
    """A learned result is traceable to its weights: the table and ``particles --json``
    carry the file's SHA-256; other methods carry no model."""
    import hashlib
    import json

    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.synth import write_sem_tiff

    da, _ = sem_dataarray("bimodal-40-80", shape=(256, 256), seed=12)
    table = find_particles(da, method="learned")
    sha = hashlib.sha256(MODEL.read_bytes()).hexdigest()
    assert table.attrs["method"] == "learned" and table.attrs["model"]["sha256"] == sha
    assert "model" not in find_particles(da, method="classic").attrs
    path = write_sem_tiff(tmp_path / "p.tif", np.asarray(da.values), pixel_um=0.002)
    r = CliRunner().invoke(app, ["particles", str(path), "--json", "--method", "learned"])
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.stdout)
    assert rec["method"] == "learned" and rec["model"]["sha256"] == sha
    assert rec["network_scale"] == table.attrs["network_scale"]
    from pipeline.batch.measure import _psd

    record = _psd(da, {})[0]
    assert record["method"] == "learned" and record["model_sha256"] == sha
    assert record["network_scale"] == table.attrs["network_scale"]
