"""The records are defined once (`pipeline.batch.records`): a measured sample and a failed one
both follow results.schema.json's ``sample``, a file's record its ``image``, and a decision
its ``decision``."""

from __future__ import annotations

from pathlib import Path

import jsonschema

from pipeline.batch.config import load_run_config
from pipeline.batch.records import FAILED_METRICS, ImageRecord, SampleRecord
from pipeline.batch.sample import measure_sample
from pipeline.conformity import evaluate_spec, load_spec
from pipeline.errors import UnreadableInput
from pipeline.ingest.discover import Sample, discover
from pipeline.report.tables import results_schema
from tests.helpers import ROOT


def _validate_sample(rec: dict, cfg) -> None:
    """`rec` with the provenance a run adds (version, time, key, configuration identities)
    against the schema's sample."""
    rec["provenance"].update(package_version="0.1.0", created_utc="2026-01-01T00:00:00+00:00",
                             manifest=None, idempotency_key="0" * 64, **cfg.identities())
    schema = results_schema()
    jsonschema.validate(rec, {"$defs": schema["$defs"], "$ref": "#/$defs/sample"})


def test_a_failed_sample_record_follows_the_schema():
    from pipeline.batch.runner import _failed_record

    sample = Sample("s1", files=[Path("exports/s1/psd-01.tif")])
    cfg = load_run_config()
    rec = _failed_record(sample, UnreadableInput("exports/s1/psd-01.tif", "truncated"), cfg)
    _validate_sample(rec, cfg)
    assert rec["task_failed"] is True and "void_reduction_source" not in rec
    assert list(rec["metrics"]) == list(FAILED_METRICS)
    assert all(v is None for v in rec["metrics"].values())
    assert rec["spec"]["outcome"] == rec["gate"]["outcome"] == "indeterminate"


def test_a_measured_sample_record_follows_the_schema():
    cfg = load_run_config()
    samples, _ = discover(ROOT / "sample_images", rules=cfg.rules)
    rec, _, _ = measure_sample(samples[-1], cfg, previews=False)
    _validate_sample(rec, cfg)
    assert list(rec)[:4] == ["sample_id", "title", "state", "pair"]
    assert "task_failed" not in rec and rec["sample_id"] == "embodiment-1"


def test_a_record_of_a_manifest_sample_takes_its_title_and_pair():
    s = Sample("b", manifest={"title": "pressed B", "pair": "a"})
    d = evaluate_spec(load_spec(), {})
    rec = SampleRecord.of(s, spec=d, gate=d).to_json()
    assert (rec["title"], rec["pair"], rec["state"]) == ("pressed B", "a", "after")


def _validate(value, name: str) -> None:
    schema = results_schema()
    jsonschema.validate(value, {"$defs": schema["$defs"], "$ref": f"#/$defs/{name}"})


def test_image_records_follow_the_schema_and_keep_their_field_order():
    ok = ImageRecord("a.tif", role="psd", results={"n_particles": 3},
                     file={"sha256": "0" * 64, "reader": "tiff"})
    failed = ImageRecord("b.tif", file={"reader": "tiff"})
    failed.fail("b.tif: out of memory", 4, "MemoryError", retry=True)
    for rec in (ok, failed):
        _validate(rec.to_json(), "image")
    assert list(ok.to_json()) == ["path", "role", "status", "error", "exit_code", "results",
                                  "sha256", "reader"]
    assert list(failed.to_json())[-2:] == ["error_type", "retry"]
    assert "retry" not in ok.to_json() and "error_type" not in ok.to_json()


def test_a_decision_follows_the_schema_and_names_its_spec():
    spec = load_spec()
    d = evaluate_spec(spec, {"porosity_frac": {"value": 0.3, "U": 0.01, "source": "x"}})
    _validate(d.to_json(), "decision")
    assert d.to_json()["spec"] == {"id": "claim15", "sha256": spec.sha256}
    assert d.outcome == "conforming" and d.properties["Sa"].statement == "indeterminate"
