"""`electrode-qc run` and `gate` end to end on small synthetic electrodes with known truth:
verdicts, exit codes for every outcome, outputs, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from pipeline import synth
from pipeline.batch.runner import gate, run
from pipeline.cli import app
from pipeline.report.tables import results_schema
from tests.factories import RECIPE, electrode, manifest, paired_export


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    electrode(root / "good", seed=1)
    electrode(root / "rough", sa=(0.19, 0.21), sz=(1.5, 1.7), xsec_porosity=0.6, seed=2)
    manifest(root / "samples.toml", {"good": (0.30, 0.50), "rough": (0.55, 0.70)})
    out = root.parent / "out"
    return root, out, run(root, out, report=False)


def test_verdicts_and_void_reduction(export):
    _root, _out, res = export
    assert res.exit_code == 0
    by = {s["sample_id"]: s for s in res.samples}
    good, rough = by["good"], by["rough"]
    assert good["spec"]["met"] is True and rough["spec"]["met"] is False
    p = good["spec"]["properties"]
    assert p["porosity"]["value"] == pytest.approx(0.30, abs=0.002)
    assert p["porosity"]["source"].startswith("gravimetric")
    assert p["Sa"]["value"] == pytest.approx(0.051, rel=1e-4)
    assert p["Sz"]["value"] == pytest.approx(0.61, rel=1e-4)
    assert p["Sa"]["U"] > 0 and p["Sa"]["margin"] == pytest.approx(0.10 - 0.051, rel=1e-3)
    assert good["gate"]["outcome"] == "conforming"
    assert rough["gate"]["outcome"] == "non-conforming"
    assert good["void_reduction_pct"] == pytest.approx(100 * (0.5 - 0.3) / 0.5, abs=0.3)
    xs = good["metrics"]["porosity_cross_section"]
    _img, truth = synth.cross_section_image((256, 320), porosity=0.35, layer_rows=(40, 200),
                                            seed=1)
    assert xs["mean"] == pytest.approx(truth["porosity_frac"], abs=0.015) and xs["n"] == 1
    assert good["metrics"]["protrusions_per_mm2"]["mean"] > 0
    assert {im["role"] for im in good["images"]} == {"psd", "surface", "cross_section", "height"}
    assert any("notes.txt" in n for n in good["notes"])


def test_outputs_validate_and_load(export):
    import jsonschema

    _root, out, _res = export
    data = json.loads((out / "results.json").read_text())
    jsonschema.validate(data, results_schema())
    assert data["samples"][0]["provenance"]["inputs"][0]["sha256"]
    for name in ("images", "samples"):
        a = pd.read_csv(out / "tables" / f"{name}.csv")
        b = pd.read_parquet(out / "tables" / f"{name}.parquet")
        assert len(a) == len(b) > 0
    samples = pd.read_parquet(out / "tables" / "samples.parquet")
    assert set(samples["sample_id"]) == {"good", "rough"}
    # one particle table per sample, written by the worker that measured it
    parts = pd.read_parquet(out / "tables" / "particles")
    assert set(parts["sample_id"]) == {"good", "rough"} and "ecd_nm" in parts
    ref = data["samples"][0]["provenance"]["particles_table"]
    csv = pd.read_csv(out / "tables" / "particles-csv" / Path(ref["path"]).with_suffix(".csv").name)
    assert len(csv) == ref["rows"] == len(pd.read_parquet(out / ref["path"]))


def test_schema_rejects_a_broken_record(export):
    import jsonschema

    _root, out, _res = export
    data = json.loads((out / "results.json").read_text())
    data["samples"][0]["gate"]["outcome"] = "probably fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, results_schema())


def test_unreadable_file_exit_4_and_the_rest_measured(tmp_path):
    root = tmp_path / "export"
    electrode(root / "a", seed=3, psd=False, surface=False)
    (root / "a" / "broken-psd.tif").write_bytes(b"II*\x00" + b"\x00" * 20)
    res = run(root, tmp_path / "out", report=False)
    assert res.exit_code == 4
    s = res.samples[0]
    bad = [im for im in s["images"] if im["status"] == "error"]
    assert len(bad) == 1 and "broken-psd.tif" in bad[0]["error"]
    assert s["spec"]["properties"]["Sa"]["value"] is not None  # the rest was measured
    assert (tmp_path / "out" / "results.json").is_file()


def test_strict_exit_1_on_non_conforming(export):
    root, _out, _res = export
    r = CliRunner().invoke(app, ["run", str(root), "--out", str(root.parent / "o2"),
                                 "--no-html", "--strict"])
    assert r.exit_code == 1, r.output
    assert "rough: Claim 15 not met" in r.stdout


def test_run_json_on_stdout(export):
    root, _out, _res = export
    r = CliRunner().invoke(app, ["run", str(root), "--out", str(root.parent / "o3"),
                                 "--no-html", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["counts"]["samples"] == 2


def test_missing_folder_is_usage_error(tmp_path):
    r = CliRunner().invoke(app, ["run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "is not a folder" in r.output


# --- gate: one exit code per outcome ---------------------------------------------------------

def gate_code(folder, *extra):
    r = CliRunner().invoke(app, ["gate", str(folder), "--json", *extra])
    return r.exit_code, (json.loads(r.stdout) if r.stdout.strip() else None), r.output


def test_gate_conforming_0(export):
    root, _out, _res = export
    code, out, text = gate_code(root / "good")
    assert code == 0 and out["gate"]["outcome"] == "conforming", text


def test_gate_non_conforming_1(export):
    root, _out, _res = export
    code, out, text = gate_code(root / "rough")
    assert code == 1 and out["gate"]["outcome"] == "non-conforming", text


def test_gate_guard_band_indeterminate_3(tmp_path):
    """Sa 0.098 um is below 0.10 but within its U of the limit; porosity (no manifest,
    cross-section 0.3) and Sz (0.6) clearly pass: under the guard band, indeterminate;
    under simple acceptance, conforming."""
    folder = electrode(tmp_path / "edge", sa=(0.096, 0.100), sz=(0.6, 0.6),
                       xsec_porosity=0.3, seed=4, psd=False, surface=False)
    code, out, text = gate_code(folder)
    assert code == 3, text
    assert out["gate"]["outcome"] == "indeterminate"
    assert out["gate"]["properties"]["Sa"]["statement"] == "indeterminate"
    assert out["gate"]["properties"]["Sz"]["statement"] == "pass"
    assert any(r.startswith("Sa = 0.098") for r in out["gate"]["reasons"])
    simple = tmp_path / "simple.toml"
    from pipeline.config_files import calibration_file

    text_spec = calibration_file("specs/gate-production.toml").read_text()
    simple.write_text(text_spec.replace('decision_rule = "guard_band"', 'decision_rule = "simple"'))
    code, out, text = gate_code(folder, "--spec", str(simple))
    assert code == 0 and out["gate"]["outcome"] == "conforming", text


def test_gate_missing_calibration_3(tmp_path):
    folder = electrode(tmp_path / "nocal", seed=5, psd=False, surface=False)
    img, _ = synth.particle_image((256, 256), seed=5)
    tifffile.imwrite(folder / "psd-02.tif", img)  # a plain TIFF: no pixel size anywhere
    code, out, text = gate_code(folder)
    assert code == 3, text
    assert out["gate"]["outcome"] == "indeterminate"
    assert any("missing calibration" in r and "psd-02.tif" in r for r in out["gate"]["reasons"])


def test_gate_unreadable_4(tmp_path):
    folder = electrode(tmp_path / "bad", seed=6, psd=False, surface=False)
    (folder / "height-03.x3p").write_bytes(b"PK\x03\x04 not really a zip")
    code, _out, text = gate_code(folder)
    assert code == 4, text
    assert "height-03.x3p" in text


def test_gate_usage_2(tmp_path):
    code, _out, text = gate_code(tmp_path / "missing")
    assert code == 2 and "is not a folder" in text


def test_gate_internal_error_70(tmp_path, monkeypatch):
    import pipeline.batch.runner

    def boom(*a, **k):
        raise RuntimeError("simulated fault")

    monkeypatch.setattr(pipeline.batch.runner, "gate", boom)
    code, _out, text = gate_code(tmp_path)
    assert code == 70 and "simulated fault" in text and "Traceback" not in text


def test_gate_api_matches_cli(export):
    root, _out, _res = export
    res = gate(root / "good")
    assert res.exit_code == 0 and res.samples[0]["sample_id"] == "good"
    # the parent's manifest applies: gravimetric porosity is the claim's source
    assert res.samples[0]["spec"]["properties"]["porosity"]["source"].startswith("gravimetric")


def test_paired_before_sample_gives_void_reduction(tmp_path):
    """A before-pressing electrode measured on its own (cross-sections only) and paired with
    the pressed one in the manifest: the void reduction comes from the two porosities."""
    root = paired_export(tmp_path / "export")
    res = run(root, None)
    by = {s["sample_id"]: s for s in res.samples}
    before = by["as-coated"]["spec"]["properties"]["porosity"]["value"]
    after = by["pressed"]["spec"]["properties"]["porosity"]["value"]
    assert by["pressed"]["void_reduction_pct"] == pytest.approx(100 * (before - after) / before)
    assert by["pressed"]["void_reduction_pct"] == pytest.approx(100 * (0.55 - 0.30) / 0.55, abs=4)
    assert "paired" in by["pressed"]["void_reduction_source"]
    assert any("before pressing" in f for f in by["as-coated"]["flags"])


def test_no_progress_bar_when_stderr_is_not_a_terminal(export):
    root, _out, _res = export
    r = CliRunner().invoke(app, ["run", str(root), "--out", str(root.parent / "o4"), "--no-html"])
    assert r.exit_code == 0
    assert "measuring" not in r.stderr and "\x1b[" not in r.stderr


def _calibration_copy(tmp_path, monkeypatch):
    import shutil

    from pipeline.config_files import defaults_dir

    cal = tmp_path / "calibration"
    shutil.copytree(defaults_dir(), cal)
    monkeypatch.setenv("ELECTRODE_QC_CALIBRATION", str(cal))
    return cal


def test_gate_expired_calibration_3(tmp_path, monkeypatch):
    """An instrument profile that matches the SEM but whose certificate has expired: the
    values would conform, the gate says indeterminate."""
    cal = _calibration_copy(tmp_path, monkeypatch)
    (cal / "instruments" / "synth.toml").write_text(
        'schema_version = 1\nid = "synth-sem"\n[match]\nvendor = "FEI"\n'
        'model = "electrode-qc synth"\n[pixel_size]\ncorrection_factor = 1.0\n'
        'uncertainty_rel = 0.002\n[certificate]\nid = "C-1"\ndate = 2024-01-01\n'
        'valid_until = 2025-01-01\n')
    folder = electrode(tmp_path / "old", seed=9, psd=False, surface=False)
    code, out, text = gate_code(folder)
    assert code == 3, text
    assert any(r.startswith("expired calibration (synth-sem)") for r in out["gate"]["reasons"])


def test_gate_too_few_particles_3(tmp_path, monkeypatch):
    cal = _calibration_copy(tmp_path, monkeypatch)
    spec = cal / "specs" / "gate-production.toml"
    spec.write_text(spec.read_text().replace("require_particles = false",
                                             "require_particles = true"))
    folder = electrode(tmp_path / "few", seed=10, surface=False)  # a 384 x 512 psd field
    code, out, text = gate_code(folder)
    assert code == 3, text
    assert any("too few particles" in r for r in out["gate"]["reasons"])


def test_empty_folder_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, ["run", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "holds no samples" in r.output
    code, _out, text = gate_code(tmp_path / "empty")
    assert code == 2 and "holds no samples" in text


def test_before_state_does_not_fail_strict(tmp_path):
    root = tmp_path / "export"
    electrode(root / "pressed", sa=(0.05, 0.05), sz=(0.6, 0.6), seed=11, psd=False,
              surface=False)
    electrode(root / "coated", sa=(0.3, 0.3), sz=(2.0, 2.0), xsec_porosity=0.6, seed=12,
              psd=False, surface=False)
    (root / "samples.toml").write_text(
        'schema_version = 1\n[[sample]]\nid = "coated"\nstate = "before"\n'
        '[[sample]]\nid = "pressed"\npair = "coated"\n')
    r = CliRunner().invoke(app, ["run", str(root), "--out", str(tmp_path / "o"), "--no-html",
                                 "--strict", "--jobs", "1"])
    assert r.exit_code == 0, r.output  # the as-coated electrode fails, but is not judged


def test_protrusions_of_two_magnifications_are_two_classes(tmp_path):
    root = tmp_path / "export"
    folder = electrode(root / "mixed", seed=5, psd=False)
    img, _ = synth.surface_image((240, 320), n_protrusions=8, seed=6)
    synth.write_sem_tiff(folder / "surface-400x.tif", img, pixel_um=0.25)
    res = run(root, tmp_path / "out", report=True)
    s = res.samples[0]
    by = s["metrics"]["protrusions_by_class"]
    assert set(by) == {"1000-3000 nm/px", "100-300 nm/px"}
    assert all(v["n"] == 1 for v in by.values())
    assert s["metrics"]["protrusions_per_mm2"] is None
    assert any("2 magnification classes" in f for f in s["flags"])
    html = (tmp_path / "out" / "report.html").read_text()
    assert "protrusion density (100-300 nm/px)" in html


def test_layer_claims_from_a_two_sub_layer_cross_section(tmp_path):
    root = tmp_path / "export"
    folder = electrode(root / "layered", seed=9, psd=False, surface=False)
    (folder / "xsec-01.tif").unlink()
    img, _ = synth.xsec_scene((512, 768), seed=0, sublayer_ratio=(1, 8), radius_px=(6.0, 10.0),
                              sublayer_radius_px=(3.0, 5.0))
    synth.write_sem_tiff(folder / "xsec-01.tif", img, pixel_um=0.005)
    res = run(root, tmp_path / "out", report=True)
    s = res.samples[0]
    layers = s["metrics"]["layers"]
    assert layers["n_layers"] == 2 and layers["ratio_claim"] == pytest.approx(0.125, rel=0.15)
    claims = {c["claim"]: c for c in s["layer_claims"]["claims"]}
    assert claims["10"]["met"] is True and claims["11"]["met"] in (True, None)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Layer claims (information)" in html and "depth profile of layered" in html


def test_cross_section_thickness_checks_the_manifest(tmp_path):
    # the cross-section shows 160 rows of 0.05 um: an 8 um layer
    root = tmp_path / "export"
    for sid in ("agrees", "disagrees"):
        electrode(root / sid, seed=2, psd=False, surface=False)
    rows = ["schema_version = 1", 'id = "t"']
    for sid, t in (("agrees", 8.0), ("disagrees", 12.0)):
        rows += ["[[sample]]", f'id = "{sid}"', f"thickness_um = {t}", "areal_mass_mg_cm2 = 1.3",
                 "u_thickness_um = 0.1", "u_areal_mass_mg_cm2 = 0.005", "[sample.recipe]"]
        rows += [f'"{k}" = {v}' for k, v in RECIPE.items()]
    (root / "samples.toml").write_text("\n".join(rows) + "\n")
    res = run(root, tmp_path / "out", report=False)
    by = {s["sample_id"]: s for s in res.samples}
    xs = by["agrees"]["metrics"]["thickness_cross_section_um"]
    assert xs["mean"] == pytest.approx(8.0, abs=0.3) and 0 < xs["U"] < 0.5
    assert not any(f.startswith("thickness:") for f in by["agrees"]["flags"])
    assert any(f.startswith("thickness: the cross-sections give 8") for f in by["disagrees"]["flags"])


def test_a_run_hashes_each_file_once(tmp_path, monkeypatch):
    """The run hashes the inputs for the idempotency keys and hands the digests to the
    readers: no file is hashed a second time, and each record's SHA-256 is the file's."""
    import hashlib

    from pipeline.ingest import registry

    electrode(tmp_path / "export" / "S1")
    read_time = []
    real = registry.sha256_file
    monkeypatch.setattr(registry, "sha256_file", lambda p, **kw: read_time.append(p) or real(p, **kw))
    res = run(tmp_path / "export", None, report=False)
    assert read_time == []
    images = [im for s in res.samples for im in s["images"] if im["status"] == "ok"]
    assert images and all(im["sha256"] == hashlib.sha256(Path(im["path"]).read_bytes()).hexdigest()
                          for im in images)
