"""The Done-when of the main job: `run` on sample_images/ reproduces the patent's examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.batch.runner import run
from pipeline.report.tables import results_schema

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"
VOID_REDUCTION_PCT = {"embodiment-1": 36, "comparative-1": 33, "comparative-2": 27,
                      "comparative-3": 25}  # Table 1


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, run(SAMPLES, out)


def test_exit_code_and_samples(result):
    _out, res = result
    assert res.exit_code == 0
    assert [s["sample_id"] for s in res.samples] == sorted(VOID_REDUCTION_PCT)


def test_embodiment_1_meets_everything(result):
    _out, res = result
    s = next(s for s in res.samples if s["sample_id"] == "embodiment-1")
    props = s["spec"]["properties"]
    assert s["spec"]["met"] is True
    assert all(props[k]["met"] is True for k in ("porosity", "Sa", "Sz"))
    assert props["porosity"]["value"] == pytest.approx(0.364, abs=0.001)
    assert props["Sa"]["value"] == pytest.approx(0.07, rel=1e-3)
    assert props["Sz"]["value"] == pytest.approx(0.92, rel=1e-3)
    assert s["particle_claims"]["met"] is True
    assert s["gate"]["outcome"] == "conforming"


@pytest.mark.parametrize("sid", ["comparative-1", "comparative-2", "comparative-3"])
def test_comparatives_meet_nothing(result, sid):
    _out, res = result
    s = next(s for s in res.samples if s["sample_id"] == sid)
    assert s["spec"]["met"] is False
    assert not any(p["met"] for p in s["spec"]["properties"].values())
    assert s["particle_claims"]["met"] is not True
    assert s["gate"]["outcome"] == "non-conforming"


def test_void_reductions_within_1_point(result):
    _out, res = result
    got = {s["sample_id"]: s["void_reduction_pct"] for s in res.samples}
    for sid, pct in VOID_REDUCTION_PCT.items():
        assert got[sid] == pytest.approx(pct, abs=1.0), sid


def test_results_validate(result):
    import jsonschema

    out, _res = result
    jsonschema.validate(json.loads((out / "results.json").read_text()), results_schema())
