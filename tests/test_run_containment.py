"""`electrode-qc run` on hostile or broken surroundings: a full disk, links out of the export,
an output folder inside it, a manifest typo, planted links at output names. Whatever
happens, what was measured is kept, the error is one line with the right exit code, and
nothing outside the export folder is read or written."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.factories import electrode, manifest
from tests.helpers import ROOT

SAMPLES = ROOT / "sample_images"


def _stored(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return [r[0] for r in con.execute("SELECT sample_id FROM samples ORDER BY sample_id")]


@pytest.fixture
def small_export(tmp_path):
    root = tmp_path / "export"
    for i, sid in enumerate(("e1", "e2", "e3")):
        electrode(root / sid, seed=10 + i, surface=False)
    manifest(root / "samples.toml", {"e1": (0.30, None), "e2": (0.32, None), "e3": (0.5, None)})
    return root


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (root only): room for the store's neighbours, not for the outputs."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "tiny"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], check=False,
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_keeps_every_measured_sample_in_the_store(small_export, tmp_path,
                                                             tiny_disk):
    db = tmp_path / "store.db"
    out = tiny_disk / "out"
    r = CliRunner().invoke(app, ["run", str(small_export), "--out", str(out), "--jobs", "1",
                                 "--db", f"sqlite:///{db}"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], r.output
    assert _stored(db) == ["e1", "e2", "e3"]  # every sample measured is stored
    leftovers = [p.name for p in out.rglob("*") if p.is_file() and "tmp" in p.name]
    assert leftovers == []


def test_a_link_to_a_file_outside_the_export_is_not_read(tmp_path):
    root = tmp_path / "export"
    electrode(root / "e1", seed=1, psd=False, surface=False)
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:$6$SECRETHASH:19000:0:99999:7:::\n" * 4)
    (root / "e1" / "height-09.x3p").symlink_to(secret)
    (root / "e2").symlink_to(tmp_path, target_is_directory=True)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["run", str(root), "--out", str(out), "--jobs", "1"])
    assert r.exit_code == 0, r.output
    everything = "".join(p.read_text(errors="replace") for p in out.rglob("*")
                         if p.is_file() and p.suffix in (".json", ".html", ".csv"))
    with sqlite3.connect(out / "results.db") as con:
        everything += "".join(str(row) for row in con.execute("SELECT * FROM samples"))
    assert "SECRETHASH" not in everything and "root:$6$" not in everything
    assert "726f6f74" not in everything  # nor its bytes in hex
    notes = json.loads((out / "results.json").read_text())["notes"]
    assert any("height-09.x3p" in n for n in notes) and any("e2" in n for n in notes)
    assert "note: " in r.output


def test_an_output_folder_inside_the_export_is_not_read(small_export):
    out = small_export / "report"
    first = CliRunner().invoke(app, ["run", str(small_export), "--out", str(out), "--jobs", "1"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(app, ["run", str(small_export), "--out", str(out), "--jobs",
                                     "1", "--force"])
    assert again.exit_code == 0, again.output
    res = json.loads((out / "results.json").read_text())
    assert [s["sample_id"] for s in res["samples"]] == ["e1", "e2", "e3"]
    assert all(not im["path"].startswith(str(out)) for s in res["samples"]
               for im in s["images"])


def test_a_manifest_typo_is_a_usage_error_with_a_suggestion(tmp_path):
    root = tmp_path / "export"
    shutil.copytree(SAMPLES / "embodiment-1", root / "embodiment-1")
    text = (SAMPLES / "samples.toml").read_text()
    head, _, _ = text.partition('[[sample]]\nid = "comparative-1"')
    (root / "samples.toml").write_text(head.replace('id = "embodiment-1"', 'id = "embodiment1"'))
    r = CliRunner().invoke(app, ["run", str(root), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert "embodiment1" in r.output and "did you mean 'embodiment-1'" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_loose_files_are_left_out_unless_the_folder_is_one_sample(tmp_path):
    folder = electrode(tmp_path / "one", seed=2, psd=False, surface=False)
    r = CliRunner().invoke(app, ["run", str(folder), "--out", str(tmp_path / "o1")])
    assert r.exit_code == 2 and "holds no samples" in r.output, r.output
    assert "--single-sample" in r.output
    r = CliRunner().invoke(app, ["run", str(folder), "--out", str(tmp_path / "o2"),
                                 "--single-sample"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("one: Claim 15")


def test_a_planted_link_at_an_output_name_does_not_redirect_the_write(small_export, tmp_path):
    """Links planted where the run writes its temporary files (the old fixed names) and
    at a guessable name are left pointing at their untouched victims."""
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    victims = []
    for name in (".results.json.tmp", "report.html.tmp", "tables/.samples.csv.tmp"):
        victim = tmp_path / f"victim-{len(victims)}"
        victim.write_text("keep me")
        (out / name).symlink_to(victim)
        victims.append(victim)
    r = CliRunner().invoke(app, ["run", str(small_export), "--out", str(out), "--jobs", "1"])
    assert r.exit_code == 0, r.output
    assert all(v.read_text() == "keep me" for v in victims)
    assert json.loads((out / "results.json").read_text())["counts"]["samples"] == 3
