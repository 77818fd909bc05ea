"""The sample record is defined once (`pipeline.batch.records.SampleRecord`): a measured
sample and a failed one both follow results.schema.json's ``sample``."""

from __future__ import annotations

from pathlib import Path

import jsonschema

from pipeline.batch.config import load_run_config
from pipeline.batch.records import FAILED_METRICS, SampleRecord
from pipeline.batch.sample import measure_sample
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
    assert rec["claim15"]["outcome"] == rec["gate"]["outcome"] == "indeterminate"


def test_a_measured_sample_record_follows_the_schema():
    cfg = load_run_config()
    samples, _ = discover(ROOT / "sample_images", rules=cfg.rules)
    rec, _, _ = measure_sample(samples[-1], cfg, previews=False)
    _validate_sample(rec, cfg)
    assert list(rec)[:4] == ["sample_id", "title", "state", "pair"]
    assert "task_failed" not in rec and rec["sample_id"] == "embodiment-1"


def test_a_record_of_a_manifest_sample_takes_its_title_and_pair():
    s = Sample("b", manifest={"title": "pressed B", "pair": "a"})
    rec = SampleRecord.of(s, claim15={}, gate={}).to_json()
    assert (rec["title"], rec["pair"], rec["state"]) == ("pressed B", "a", "after")
