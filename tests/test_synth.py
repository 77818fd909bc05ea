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
