"""A sample whose measurement failed as a whole is stored too, with its reasons, so that
the report from the store and the trend charts show it (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pipeline.batch.store import Store
from pipeline.batch.store_tables import sample_values
from pipeline.errors import UnreadableInput
from pipeline.ingest.discover import Sample
from tests.report.report_data import sample_result


@pytest.fixture(scope="module")
def cfg():
    from pipeline.batch.config import load_run_config

    return load_run_config()


def failed(cfg, sample_id: str, problem: str) -> dict:
    """The record the runner makes of a sample whose task failed (`runner._failed_record`)."""
    from pipeline.batch.runner import _failed_record

    sample = Sample(sample_id, files=[Path(f"exports/{sample_id}/psd-01.tif"),
                                      Path(f"exports/{sample_id}/height-01.x3p")])
    exc = UnreadableInput(f"exports/{sample_id}/psd-01.tif", problem)
    rec = _failed_record(sample, exc, cfg)
    rec["provenance"].update(package_version="0.1.0", idempotency_key="0" * 64)
    return rec


def key(n: int) -> str:
    return f"{n:064x}"


def test_the_failed_record_is_what_the_runner_makes(cfg):
    rec = failed(cfg, "F1", "bad magic")
    assert rec["gate"]["outcome"] == "indeterminate"
    assert all(v is None for v in rec["metrics"].values())
    assert [im["status"] for im in rec["images"]] == ["error", "error"]
    assert all(p["value"] is None for p in rec["spec"]["properties"].values())
    values, images = sample_values(rec, key(1), None)
    assert values["gate_outcome"] == "indeterminate" and values["porosity_frac"] is None
    assert [im["status"] for im in images] == ["error", "error"]
    assert "bad magic" in images[0]["error"] and images[0]["results_json"] is None


def test_a_failed_sample_is_stored_and_read_back(db_url, cfg):
    problem = "truncated TIFF: strip 3 ends past the file \x00 (byte 0x00 in the header)"
    with Store.open(db_url) as st:
        run_id = st.begin_run(folder="exports", package_version="0.1.0", meta={})
        ok, _ = st.append(sample_result("G1", porosity=0.31), key=key(1), run_id=run_id)
        row, reason = st.append(failed(cfg, "F1", problem), key=key(2), run_id=run_id)
        assert reason is None
        # measured again later: the failure is superseded like any other row
        again, reason = st.append(sample_result("F1", porosity=0.33), key=key(3),
                                  run_id=run_id)
        assert reason == "new input, calibration or software"

        latest = {r["sample_id"]: r for r in st.samples()}
        assert latest["F1"]["row_id"] == again
        everything = st.samples(latest_only=False)
        (stored,) = [r for r in everything if r["row_id"] == row]
        assert stored["gate_outcome"] == "indeterminate" and stored["spec_met"] is None
        assert stored["porosity_frac"] is None and stored["sa_um"] is None
        assert stored["record"]["gate"]["outcome"] == "indeterminate"
        # the record keeps the reason as it was (its JSON escapes the NUL)
        assert stored["record"]["images"][0]["error"].endswith(problem)
        images = st.images(row)
        assert [(im["path"], im["status"]) for im in images] == [
            ("exports/F1/psd-01.tif", "error"), ("exports/F1/height-01.x3p", "error")]
        # the reason reads back as stored (a NUL a file put in a message is kept as U+FFFD:
        # PostgreSQL text holds no NUL)
        assert images[0]["error"].endswith("ends past the file \ufffd (byte 0x00 in the header)")
        assert images[0]["results"] is None

        h = st.history()
        f1 = h[h["sample_id"] == "F1"].reset_index(drop=True)
        assert f1["gate_outcome"].tolist() == ["indeterminate", "conforming"]
        assert math.isnan(f1.loc[0, "porosity_frac"]) and math.isnan(f1.loc[0, "Sa_um"])
        assert f1["superseded"].tolist() == [True, False]
        assert f1.loc[1, "porosity_frac"] == pytest.approx(0.33)
        assert ok in h["row_id"].tolist()


def test_a_failed_sample_alone_is_its_latest_row(db_url, cfg):
    with Store.open(db_url) as st:
        run_id = st.begin_run(folder="exports", package_version="0.1.0", meta={})
        row, _ = st.append(failed(cfg, "F2", "not a TIFF"), key=key(4), run_id=run_id)
        (latest,) = st.samples()
        assert latest["row_id"] == row and latest["gate_outcome"] == "indeterminate"
        assert st.current([key(4)])[key(4)]["row_id"] == row
        h = st.history()
        assert h["gate_outcome"].tolist() == ["indeterminate"]
        assert h[["porosity_frac", "Sa_um", "Sz_um", "void_reduction_pct"]].isna().all().all()
        # a later run measures the same input again (the failure may not repeat)
        again, reason = st.append(sample_result("F2"), key=key(4), run_id=run_id, force=True)
        assert reason == "re-measured (--force)" and st.latest("F2")["row_id"] == again
        assert st.history()["superseded"].tolist() == [True, False]
