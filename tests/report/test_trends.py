"""I-MR control limits (analytic) and the trend charts built from a store history."""

import numpy as np
import pandas as pd
import pytest

from pipeline.conformity import load_spec
from pipeline.report.trends import imr_limits, trend_png, trends


def test_imr_limits_by_hand():
    lim = imr_limits([1.0, 2.0, 3.0, 2.0, np.nan])
    assert lim["centre"] == pytest.approx(2.0)
    assert lim["mr_bar"] == pytest.approx(1.0)
    assert lim["ucl"] == pytest.approx(2.0 + 2.66) and lim["lcl"] == pytest.approx(2.0 - 2.66)
    assert lim["mr_ucl"] == pytest.approx(3.267)
    assert imr_limits([5.0]) is None


def test_trends_leave_out_superseded_rows_and_use_spec_limits():
    h = pd.DataFrame({
        "row_id": [1, 2, 3, 4], "sample_id": ["a", "b", "a", "c"],
        "created_utc": ["t1", "t2", "t3", "t4"],
        "porosity_frac": [0.35, 0.38, 0.36, np.nan], "Sa_um": [0.05, 0.06, 0.07, 0.08],
        "Sz_um": [0.5, 0.6, 0.7, 0.8], "void_reduction_pct": [np.nan] * 4,
        "gate_outcome": ["conforming"] * 4, "superseded": [True, False, False, False]})
    out = {t["metric"]: t for t in trends(h, load_spec())}
    assert set(out) == {"porosity_frac", "Sa_um", "Sz_um"}  # void reduction has no value
    assert out["Sa_um"]["n"] == 3 and out["porosity_frac"]["n"] == 2
    assert out["porosity_frac"]["limits"]["centre"] == pytest.approx(37.0)  # percent
    assert out["Sa_um"]["png"][:8] == b"\x89PNG\r\n\x1a\n"


def test_before_pressing_rows_get_charts_of_their_own():
    """Porosity before pressing (~57 %) and after (~36 %) are different process states: mixed,
    they would give one wide, meaningless set of control limits."""
    h = pd.DataFrame({
        "row_id": [1, 2, 3, 4, 5], "sample_id": ["a0", "a1", "b0", "b1", "c"],
        "state": ["after", "after", "before", "before", None],
        "created_utc": ["t1", "t2", "t3", "t4", "t5"],
        "porosity_frac": [0.36, 0.38, 0.57, 0.59, 0.37], "Sa_um": [0.05, 0.06, 0.2, 0.3, 0.07],
        "Sz_um": [np.nan] * 5, "void_reduction_pct": [36.0, 35.0, np.nan, np.nan, 34.0],
        "gate_outcome": ["conforming"] * 5, "superseded": [False] * 5})
    out = {(t["metric"], t["state"]): t for t in trends(h, load_spec())}
    assert set(out) == {("porosity_frac", None), ("Sa_um", None), ("void_reduction_pct", None),
                        ("porosity_frac", "before"), ("Sa_um", "before")}
    assert out[("porosity_frac", None)]["limits"]["centre"] == pytest.approx(37.0)
    assert out[("porosity_frac", None)]["n"] == 3
    assert out[("porosity_frac", "before")]["limits"]["centre"] == pytest.approx(58.0)
    assert out[("porosity_frac", "before")]["title"] == "Porosity before pressing"


def test_single_value_chart_draws():
    assert trend_png([0.05], ["a"], title="Sa", unit="um", spec_limit=0.1)[:4] == b"\x89PNG"
