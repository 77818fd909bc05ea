import json

import numpy as np
import pytest

import pipeline
from pipeline.synth import height_map, write_truth, write_x3p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_height_map_reads_back_with_its_truth(tmp_path, seed):
    z, truth = height_map((200, 240), pixel_um=0.2, sa_um=0.04, protrusions=3,
                          tilt=(0.01, -0.02), invalid_fraction=0.01, seed=seed)
    p = write_x3p(tmp_path / "m.x3p", z, dx_um=0.2, dy_um=0.2)
    t = json.loads(write_truth(p, truth).read_text())
    da = pipeline.read(p)
    assert da.shape == (200, 240)
    assert da.attrs["pixel_size_um"] == {"x": pytest.approx(0.2, rel=1e-12), "y": pytest.approx(0.2, rel=1e-12)}
    np.testing.assert_allclose(da.values, z, rtol=1e-12, equal_nan=True)
    assert da.attrs["invalid_fraction"] == pytest.approx(0.01, abs=0.005)
    assert len(t["protrusions"]) == 3


def test_roughness_sa_is_exact_and_deterministic():
    a, _ = height_map((128, 128), sa_um=0.07, seed=5)
    b, _ = height_map((128, 128), sa_um=0.07, seed=5)
    assert np.array_equal(a, b)
    res = pipeline.surface_texture(
        pipeline.ingest.dataarray.height_dataarray(
            a, path="synthetic", dx_um=0.1, dy_um=0.1, pixel_size_source="synthetic",
            vendor="synthetic", fmt="synthetic"),
        level="none",
    )
    assert res["Sa_um"] == pytest.approx(0.07, rel=1e-12)


@pytest.mark.parametrize("sa, sz, bumps", [(0.07, 0.92, 3), (0.18, 1.52, 0)])
def test_height_map_chosen_sa_and_sz(sa, sz, bumps):
    """Sa and Sz of the whole levelled map, as the patent's Table 1 gives them, computed
    here with numpy alone (least-squares plane, mean absolute height, peak to valley)."""
    z, truth = height_map((256, 320), pixel_um=0.2, sa_um=sa, sz_um=sz, protrusions=bumps,
                          protrusion_height_um=0.4, tilt=(0.02, -0.01), invalid_fraction=0.01,
                          seed=4)
    ok = np.isfinite(z)
    yy, xx = np.nonzero(ok)
    a = np.column_stack([np.ones(yy.size), xx, yy])
    coef, *_ = np.linalg.lstsq(a, z[ok], rcond=None)
    r = z[ok] - a @ coef
    assert np.abs(r).mean() == pytest.approx(sa, rel=1e-6)
    assert r.max() - r.min() == pytest.approx(sz, rel=1e-6)
    assert truth["sa_um"] == sa and truth["sz_um"] == sz
    assert len(truth["protrusions"]) == bumps


def test_height_map_unreachable_sz():
    with pytest.raises(ValueError, match="cannot be reached"):
        height_map((64, 64), sa_um=0.1, sz_um=50.0)
    with pytest.raises(ValueError, match="do not fit in Sz"):
        height_map((128, 128), pixel_um=0.2, sa_um=0.05, sz_um=0.3, protrusions=1,
                   protrusion_height_um=0.5)
    with pytest.raises(ValueError, match="need 0 < sa_um < sz_um"):
        height_map((64, 64), sa_um=0.2, sz_um=0.1)
