"""A re-run of an export whose samples are all stored measures nothing and draws nothing:
the report shows the finished pictures kept under each sample's key, the tables are left as
they are when their rows have not changed, and a store at the newest schema opens without
Alembic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.batch.runner import run
from pipeline.report import preview_cache
from pipeline.report.html import drawn_by
from tests.factories import electrode
from tests.helpers import ROOT


def _export(tmp_path: Path) -> Path:
    electrode(tmp_path / "export" / "S1")
    return tmp_path / "export"


def _strip_times(html: str) -> list[str]:
    return [line for line in html.splitlines() if "created" not in line
            and "reused from store" not in line]


def test_a_re_run_shows_the_kept_pictures_and_draws_none(tmp_path, monkeypatch):
    export, out = _export(tmp_path), tmp_path / "out"
    first = run(export, out)
    key = first.samples[0]["provenance"]["idempotency_key"]
    kept = preview_cache.load_pictures(out, "S1", key, drawn_by())
    assert kept is not None and kept["sem"], "the finished pictures are kept"
    html_first = (out / "report.html").read_text()

    from pipeline.report import figures

    def no_drawing(*a, **kw):
        raise AssertionError("a kept picture was drawn again")

    for name in ("sem_picture", "height_picture", "histogram_png", "depth_profile_png",
                 "chart_png"):
        monkeypatch.setattr(figures, name, no_drawing)
    again = run(export, out)
    assert again.results["counts"]["reused_from_store"] == 1
    assert _strip_times((out / "report.html").read_text()) == _strip_times(html_first)


def test_pictures_of_other_drawing_code_are_drawn_again(tmp_path):
    export, out = _export(tmp_path), tmp_path / "out"
    key = run(export, out).samples[0]["provenance"]["idempotency_key"]
    path = preview_cache.pictures_path(out, "S1", key)
    kept = json.loads(path.read_text())
    path.write_text(json.dumps({**kept, "drawn_by": "older code", "pictures": {"sem": []}}))
    run(export, out)
    assert json.loads(path.read_text())["drawn_by"] == drawn_by()
    assert "<img" in (out / "report.html").read_text()


def test_unchanged_tables_are_not_rewritten_and_changed_ones_are(tmp_path):
    export, out = _export(tmp_path), tmp_path / "out"
    run(export, out)
    tables = [out / "tables" / f"{n}.{x}" for n in ("images", "samples") for x in ("csv", "parquet")]
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tables}
    run(export, out)
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tables} == before
    edited = out / "tables" / "samples.csv"
    edited.write_text("edited by hand\r\n")
    run(export, out)
    assert edited.read_text().startswith("sample_id,")


def test_a_store_at_the_newest_schema_opens_without_alembic(tmp_path):
    db = tmp_path / "results.db"
    code = ("import sys\nfrom pipeline.batch.store import Store\n"
            f"Store.open('sqlite:///{db}').close()\n"
            "print('alembic' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, check=True)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=True)
    assert first.stdout.strip() == "True"  # a new store is created by the migrations
    assert second.stdout.strip() == "False"
