import json
import subprocess
import sys

import numpy as np
from typer.testing import CliRunner

from pipeline.cli import app
from tests.helpers import cli_json


def test_help_does_not_import_the_science_stack():
    code = (
        "import sys, pipeline.cli; "
        "heavy = [m for m in ('numpy', 'xarray', 'scipy', 'cv2', 'pandas') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_lists_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("inspect", "surface", "formats"):
        assert cmd in result.output


def test_formats_json_lists_height_readers():
    rows = cli_json(["formats", "--json"])
    names = {r["name"] for r in rows}
    assert {
        "x3p", "gwy", "sur", "plu", "zygo_dat", "al3d", "keyence_zon", "keyence_vk4",
        "keyence_vk6", "keyence_csv", "float_tiff", "surftopo",
    } <= names
    assert all(set(r) >= {"name", "kind", "suffixes", "description", "available"} for r in rows)


def _tiff_height(path, z, px_um=0.5):
    import tifffile

    tifffile.imwrite(path, z.astype(np.float32), metadata={"pixel_size_um": {"x": px_um, "y": px_um}, "z_unit": "um"})


def test_surface_json_keeps_going_after_a_bad_file(tmp_path):
    good = tmp_path / "good.tif"
    z = np.sin(np.linspace(0, 20 * np.pi, 200))[None, :] * np.ones((50, 1)) * 0.2
    _tiff_height(good, z)
    bad = tmp_path / "bad.x3p"
    bad.write_bytes(b"PK\x03\x04 this is not a zip")
    result = CliRunner().invoke(app, ["surface", str(good), str(bad), "--json"])
    assert result.exit_code == 4, result.output
    out = json.loads(result.stdout)
    assert [r["path"] for r in out] == [str(good), str(bad)]
    assert 0.1 < out[0]["Sa_um"] < 0.14
    for key in ("Sa_um", "Sq_um", "Sp_um", "Sv_um", "Sz_um", "Ssk", "Sku", "Sdq", "Sdr_pct",
                "Sal_um", "Str", "Spd_per_mm2", "invalid_fraction", "sz_without_outliers_um",
                "recipe"):
        assert key in out[0], key
    assert "error" in out[1]
    assert "Traceback" not in result.output


def test_surface_text_and_options(tmp_path):
    good = tmp_path / "good.tif"
    _tiff_height(good, np.random.default_rng(0).normal(size=(64, 64)))
    result = CliRunner().invoke(app, ["surface", str(good), "--level", "poly:2", "--lambda-c", "8"])
    assert result.exit_code == 0, result.output
    assert "Sa um" in result.stdout
    bad = CliRunner().invoke(app, ["surface", str(good), "--level", "sphere"])
    assert bad.exit_code == 2
    assert "level" in bad.output


def test_inspect_missing_file_exit_4(tmp_path):
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "nope.x3p")])
    assert result.exit_code == 4
    assert "does not exist" in result.output


def test_unknown_format_lists_readers_tried(tmp_path, caplog):
    p = tmp_path / "mystery.dat"
    p.write_bytes(b"\x00\x01garbage" * 100)
    result = CliRunner().invoke(app, ["inspect", str(p)])
    assert result.exit_code == 4
    assert "no reader recognises this file" in result.output
    assert len(result.output.strip().splitlines()) == 1  # the readers tried go to -v
    assert "Readers tried" not in result.output
    with caplog.at_level("INFO", logger="pipeline.ingest.registry"):
        CliRunner().invoke(app, ["-v", "inspect", str(p)])
    assert "x3p" in caplog.text  # the readers tried, in the log that -v shows


def test_inspect_json_contract(tmp_path):
    p = tmp_path / "map.tif"
    z = np.random.default_rng(0).normal(0.0, 0.1, (30, 40))
    z[0, :5] = np.nan
    _tiff_height(p, z, px_um=0.25)
    rec = cli_json(["inspect", str(p), "--json"])
    assert rec["format"] == "tiff"
    assert rec["kind"] == "height"
    assert rec["shape"] == [30, 40]
    assert rec["pixel_size_um"] == {"x": 0.25, "y": 0.25}
    assert rec["pixel_size_source"]
    assert abs(rec["invalid_fraction"] - 5 / 1200) < 1e-12
    assert "vendor" in rec and "instrument" in rec
    assert len(rec["source_sha256"]) == 64


def test_inspect_real_x3p_text_shows_header():
    from tests.helpers import realfile

    p = realfile("heightmaps", "surftopo_x3p-2.x3p")
    result = CliRunner().invoke(app, ["inspect", str(p)])
    assert result.exit_code == 0
    assert "650 rows x 650 cols" in result.stdout
    assert "header:" in result.stdout


def test_surface_json_has_null_not_nan(tmp_path):
    # a 4 x 4 ramp: the ACF cannot decay within half the field, so Sal and Str are undefined
    p = tmp_path / "ramp.tif"
    _tiff_height(p, np.add.outer(np.arange(4.0), np.arange(4.0)))
    result = CliRunner().invoke(app, ["surface", str(p), "--json", "--level", "none"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # strict JSON: NaN would not parse as a number here
    assert "NaN" not in result.stdout
    assert out[0]["Sal_um"] is None and out[0]["Str"] is None


SAMPLE = __import__("pathlib").Path(__file__).resolve().parents[1] / "sample_images"


def test_a_file_of_the_other_kind_names_the_commands_that_take_it():
    tif = SAMPLE / "embodiment-1" / "psd-01.tif"
    x3p = SAMPLE / "embodiment-1" / "height-01.x3p"
    r = CliRunner().invoke(app, ["surface", str(tif)])
    assert r.exit_code == 4
    assert ("psd-01.tif is an SEM image (FEI), not a height map; use particles, porosity or "
            "protrusions") in r.output
    r = CliRunner().invoke(app, ["particles", str(x3p)])
    assert r.exit_code == 4
    assert "height-01.x3p is a height map, not an SEM image; use surface" in r.output


def test_an_error_is_printed_once_on_stderr(tmp_path):
    bad = tmp_path / "bad.x3p"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    good = SAMPLE / "embodiment-1" / "height-01.x3p"
    for cmd in ("surface", "particles", "protrusions"):
        r = CliRunner().invoke(app, [cmd, str(bad), str(good)])
        assert r.exit_code == 4, r.output
        assert "bad.x3p" not in r.stdout  # the results of the files measured only
        assert r.stderr.count("bad.x3p") == 1
        assert len(r.stderr.strip().splitlines()) == (1 if cmd == "surface" else 2)
