"""The shared numerical helpers: exact and thread-independent distance maps, robust spread."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from pipeline import numerics
from pipeline.numerics import exact_edt, mad_sigma


def test_doctests():
    assert doctest.testmod(numerics).failed == 0


def test_exact_edt_is_the_square_root_of_an_integer_and_matches_scipy():
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(3)
    from scipy.ndimage import gaussian_filter

    m = gaussian_filter(rng.standard_normal((300, 400)), 4) > 0
    d = exact_edt(m)
    assert d.dtype == np.float32
    sq = d.astype(np.float64) ** 2
    np.testing.assert_allclose(sq, np.rint(sq), atol=1e-3)
    np.testing.assert_allclose(d, distance_transform_edt(m), atol=1e-4)


def test_exact_edt_does_not_depend_on_the_thread_count():
    cv2 = pytest.importorskip("cv2")
    from scipy.ndimage import gaussian_filter

    m = gaussian_filter(np.random.default_rng(0).standard_normal((600, 800)), 3) > 0
    before = cv2.getNumThreads()
    try:
        maps = []
        for n in (1, 2, 4):
            cv2.setNumThreads(n)
            maps.append(exact_edt(m))
    finally:
        cv2.setNumThreads(before)
    for other in maps[1:]:
        assert np.array_equal(other, maps[0])


def test_sublayers_do_not_depend_on_the_thread_count():
    """The particle sections are distance-map maxima: a last-bit difference between thread
    counts used to change their number and the rank statistic between runs."""
    cv2 = pytest.importorskip("cv2")
    from pipeline.segmentation.cross_section import porosity_from_cross_section
    from pipeline.synth.xsec import xsec_dataarray

    da, _ = xsec_dataarray((384, 512), seed=4, porosity=0.45, radius_px=(5.0, 12.0))
    before = cv2.getNumThreads()
    try:
        out = []
        for n in (1, 2):
            cv2.setNumThreads(n)
            s = porosity_from_cross_section(da)["sublayers"]
            out.append((s["n_sections"], s["z"], s["profile"]["radius_px"]))
    finally:
        cv2.setNumThreads(before)
    assert out[0] == out[1]


def test_mad_sigma_of_a_normal_sample_and_empty_input():
    v = np.random.default_rng(1).normal(5.0, 2.0, 200_000)
    assert mad_sigma(v) == pytest.approx(2.0, rel=0.01)
    assert mad_sigma(np.array([])) == 0.0
