"""Instrument profiles: loading, strict validation, matching, applying."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline.config_files import defaults_dir
from pipeline.errors import ConfigError
from pipeline.ingest.dataarray import height_dataarray, sem_dataarray
from pipeline.instruments import (
    apply_profile,
    find_profile,
    load_profile,
    load_profiles,
)

TODAY = dt.date(2025, 6, 1)

BASE = """schema_version = 1
id = "{id}"

[match]
{match}
"""


def write(tmp_path: Path, name: str, *, id="p1", match='vendor = "FEI"', body="") -> Path:
    p = tmp_path / name
    p.write_text(BASE.format(id=id, match=match) + body, encoding="utf-8")
    return p


def sem(ps=(0.01, 0.01), *, vendor="FEI", instrument="Helios NanoLab 660", header=None):
    img = np.arange(60 * 80, dtype=np.uint16).reshape(60, 80)
    return sem_dataarray(img, path="/data/a.tif", pixel_size_um=ps,
                         pixel_size_source=None if ps is None else "FEI [Scan] PixelWidth",
                         vendor=vendor, instrument=instrument, fmt="fei-tiff",
                         header=header or {"System.SerialNumber": "9922"})


def height(z=None):
    z = np.full((10, 12), 2.0) + np.arange(12) * 0.01 if z is None else z
    return height_dataarray(z, path="/data/h.x3p", dx_um=0.5, dy_um=0.5,
                            pixel_size_source="x3p", vendor="Keyence", instrument="VK-X1000",
                            fmt="x3p", header={"serial": "K-7"})


CERT = """
[certificate]
id = "C-1"
date = 2024-06-01
valid_until = 2025-06-01
"""


def test_example_profile_loads_and_matches_only_its_fake_serial():
    profiles = load_profiles(defaults_dir() / "instruments")
    ex = {p.id: p for p in profiles}["example-fei-helios"]
    assert ex.correction_factor == pytest.approx((1.0032, 1.0041))
    assert ex.certificate["valid_until"] == dt.date(2026, 1, 15)
    assert find_profile(sem(), [ex]) is None
    assert find_profile(sem(header={"Serial": "example-0000"}), [ex]) is ex


def test_correction_factor_applies_and_records(tmp_path):
    p = load_profile(write(tmp_path, "helios.toml", body="""
[pixel_size]
correction_factor = { x = 1.01, y = 0.98 }
uncertainty_rel = 0.002
""" + CERT))
    da = sem()
    out = apply_profile(da, p, today=TODAY)
    assert out.attrs["pixel_size_um"]["x"] == pytest.approx(0.0101, rel=1e-12)
    assert out.attrs["pixel_size_um"]["y"] == pytest.approx(0.0098, rel=1e-12)
    assert float(out.x[1] - out.x[0]) == pytest.approx(0.0101, rel=1e-9)
    assert float(out.y[-1]) == pytest.approx(59.5 * 0.0098, rel=1e-9)
    assert out.attrs["pixel_size_source"] == "calibration/instruments/helios.toml"
    assert out.attrs["pixel_size_source_uncorrected"] == "FEI [Scan] PixelWidth"
    assert out.attrs["calibration"] == "profile:p1"
    assert out.attrs["pixel_size_uncertainty_rel"] == pytest.approx(0.002)
    ident = out.attrs["calibration_profile"]
    assert ident["id"] == "p1" and len(ident["sha256"]) == 64
    assert ident["path"].endswith("helios.toml")
    assert out.attrs["calibration_certificate"]["valid_until"] == "2025-06-01"
    # The input is untouched and the values are the same.
    assert da.attrs["pixel_size_um"]["x"] == 0.01 and da.attrs["calibration"] == "ok"
    np.testing.assert_array_equal(out.values, da.values)
    assert out.dtype == np.uint16


def test_expired_profile_is_recorded_and_warned(tmp_path, caplog):
    body = "[pixel_size]\ncorrection_factor = 1.0\n" + CERT
    p = load_profile(write(tmp_path, "a.toml", body=body))
    assert apply_profile(sem(), p, today=dt.date(2025, 6, 1)).attrs["calibration"] == "profile:p1"
    with caplog.at_level(logging.WARNING, logger="pipeline.instruments"):
        out = apply_profile(sem(), p, today=dt.date(2025, 6, 2))
    assert out.attrs["calibration"] == "expired:p1"
    assert "expired on 2025-06-01" in caplog.text and "a.tif" in caplog.text


def test_override_for_missing_pixel_size_only(tmp_path):
    p = load_profile(write(tmp_path, "o.toml", body="""
[pixel_size]
override_um = { x = 0.02, y = 0.03 }
"""))
    da = sem(ps=None)
    assert da.attrs["calibration"] == "missing"
    out = apply_profile(da, p, today=TODAY)
    assert out.attrs["pixel_size_um"] == {"x": 0.02, "y": 0.03}
    assert out.attrs["pixel_size_source"] == "calibration/instruments/o.toml"
    assert out.attrs["calibration"] == "profile:p1"
    assert out.x.attrs["units"] == "um" and float(out.x[0]) == pytest.approx(0.01)
    assert out.attrs["pixel_size_uncertainty_rel"] is None
    # A file that records its pixel size keeps it: override is only for files without one.
    kept = apply_profile(sem(), p, today=TODAY)
    assert kept.attrs["pixel_size_um"] == {"x": 0.01, "y": 0.01}
    assert kept.attrs["pixel_size_source"] == "FEI [Scan] PixelWidth"


def test_correction_without_pixel_size_stays_missing(tmp_path, caplog):
    p = load_profile(write(tmp_path, "c.toml", body="[pixel_size]\ncorrection_factor = 1.02\n"))
    with caplog.at_level(logging.WARNING, logger="pipeline.instruments"):
        out = apply_profile(sem(ps=None), p, today=TODAY)
    assert out.attrs["pixel_size_um"] is None and out.attrs["calibration"] == "missing"
    assert "supplies no pixel size" in caplog.text


def test_z_scale_multiplies_heights_not_sem(tmp_path):
    p = load_profile(write(tmp_path, "z.toml", match='model = "VK-X*"', body="""
[z_scale]
factor = 1.04
uncertainty_rel = 0.003
"""))
    z = np.full((10, 12), 2.0)
    z[0, 0], z[9, 11] = np.nan, 3.0
    h = height(z)
    out = apply_profile(h, p, today=TODAY)
    assert float(out.values[5, 5]) == pytest.approx(2.08, rel=1e-12)
    assert float(out.values[9, 11]) == pytest.approx(3.12, rel=1e-12)
    assert np.isnan(out.values[0, 0])
    assert out.attrs["z_scale"] == 1.04 and out.attrs["calibration"] == "profile:p1"
    assert out.attrs["pixel_size_source"] == "x3p" and out.attrs["units"] == "um"
    assert float(h.values[5, 5]) == 2.0
    s = apply_profile(sem(instrument="VK-X9"), p, today=TODAY)
    np.testing.assert_array_equal(s.values, sem().values)
    assert "z_scale" not in s.attrs


def test_matching_specificity_case_and_glob(tmp_path):
    vendor = load_profile(write(tmp_path, "v.toml", id="vendor", match='vendor = "fei"',
                                body="[z_scale]\nfactor = 1.0\n"))
    model = load_profile(write(tmp_path, "m.toml", id="model",
                               match='vendor = "FEI"\nmodel = "helios*"',
                               body="[z_scale]\nfactor = 1.0\n"))
    exact = load_profile(write(tmp_path, "e.toml", id="exact",
                               match='vendor = "FEI"\nmodel = "Helios NanoLab 660"',
                               body="[z_scale]\nfactor = 1.0\n"))
    serial = load_profile(write(tmp_path, "s.toml", id="serial",
                                match='vendor = "F*"\nmodel = "*"\nserial = "99[0-9]2"',
                                body="[z_scale]\nfactor = 1.0\n"))
    assert find_profile(sem(), [vendor]) is vendor
    assert find_profile(sem(), [vendor, model]) is model
    assert find_profile(sem(), [vendor, model, exact]) is exact
    assert find_profile(sem(), [vendor, model, exact, serial]) is serial
    other = sem(header={"SerialNumber": "1234"})
    assert find_profile(other, [vendor, model, exact, serial]) is exact
    assert find_profile(sem(header={"Detector": "TLD"}), [serial]) is None
    assert find_profile(sem(vendor="Zeiss"), [vendor, model, exact]) is None
    assert find_profile(sem(vendor=""), [vendor]) is None


def test_equally_specific_matches_are_an_error(tmp_path):
    a = load_profile(write(tmp_path, "a.toml", id="a", match='vendor = "FEI"',
                           body="[z_scale]\nfactor = 1.0\n"))
    b = load_profile(write(tmp_path, "b.toml", id="b", match='vendor = "fei"',
                           body="[z_scale]\nfactor = 1.0\n"))
    msg = r"a\.tif matches instrument profiles a \(a\.toml\), b \(b\.toml\) equally"
    with pytest.raises(ConfigError, match=msg):
        find_profile(sem(), [a, b])


def test_load_profiles_folder(tmp_path):
    assert load_profiles(tmp_path / "none") == []
    write(tmp_path, "1.toml", id="one", body="[z_scale]\nfactor = 1.0\n")
    write(tmp_path, "2.toml", id="two", body="[z_scale]\nfactor = 1.0\n")
    (tmp_path / "README.md").write_text("not a profile")
    assert [p.id for p in load_profiles(tmp_path)] == ["one", "two"]
    write(tmp_path, "3.toml", id="one", body="[z_scale]\nfactor = 1.0\n")
    with pytest.raises(ConfigError, match=r"3\.toml.*'one' is also used by .*1\.toml"):
        load_profiles(tmp_path)


HEAD = 'schema_version = 1\nid = "x"\n[match]\nvendor = "a"\n'
Z1 = "[z_scale]\nfactor = 1.0\n"
CERT0 = '[certificate]\nid = "c"\ndate = 2024-01-01\n'


@pytest.mark.parametrize("text, message", [
    ('schema_version = 2\nid = "x"\n[match]\nvendor = "a"\n', "newer than this electrode-qc"),
    ('id = "x"\n[match]\nvendor = "a"\n', "integer schema_version"),
    ('schema_version = 1\nid = "x"\n[match\n', "not valid TOML"),
    ('schema_version = 1\nid = "x"\ncolour = 1\n[match]\nvendor = "a"\n' + Z1,
     "unknown instrument-profile keys: colour"),
    (HEAD + 'modle = "b"\n[z_scale]\nfactor = 1.0\n',
     r"unknown keys in \[match\]: modle"),
    (HEAD + '[pixel_size]\nfactor = 1.0\n',
     r"unknown keys in \[pixel_size\]: factor"),
    ('schema_version = 1\nid = "x"\n[match]\n[z_scale]\nfactor = 1.0\n', "at least one of vendor"),
    ('schema_version = 1\nid = "x"\n[match]\nvendor = 3\n[z_scale]\nfactor = 1.0\n',
     r"\[match\] vendor must be a non-empty string"),
    ('schema_version = 1\nid = "a b"\n[match]\nvendor = "a"\n' + Z1, "id must be"),
    ('schema_version = 1\n[match]\nvendor = "a"\n[z_scale]\nfactor = 1.0\n', "id must be"),
    (HEAD, "corrects nothing"),
    (HEAD + '[pixel_size]\nuncertainty_rel = 0.1\n',
     "needs correction_factor or override_um"),
    (HEAD + '[pixel_size]\ncorrection_factor = 2.5\n',
     r"correction_factor.x = 2.5 is outside \[0.5, 1.5\]"),
    (HEAD + '[pixel_size]\ncorrection_factor = "1"\n',
     "must be a number"),
    (HEAD + '[pixel_size]\noverride_um = 0.01\n',
     r"override_um must be a table"),
    (HEAD + '[pixel_size]\noverride_um = {x = 0.01}\n',
     "exactly x and y"),
    (HEAD + '[pixel_size]\noverride_um = {x = 0.01, y = -1}\n',
     "must be > 0"),
    (HEAD + '[pixel_size]\noverride_um = {x = 0.01, y = nan}\n',
     "must be finite"),
    (HEAD + '[z_scale]\nuncertainty_rel = 0.1\n', "needs factor"),
    (HEAD + '[z_scale]\nfactor = true\n', "must be a number"),
    ('schema_version = 1\nid = "x"\nz_scale = 1.0\n[match]\nvendor = "a"\n',
     r"\[z_scale\] must be a table"),
    (HEAD + Z1 + CERT0, "needs valid_until"),
    (HEAD + Z1 + CERT0 + 'valid_until = "2025-01-01"\n', "must be a TOML date"),
    (HEAD + Z1 + CERT0 + 'valid_until = 2025-01-01T00:00:00\n', "must be a TOML date"),
    (HEAD + Z1 + CERT0 + 'valid_until = 2023-01-01\n', "is before its date"),
])
def test_bad_profiles_are_refused_naming_the_file(tmp_path, text, message):
    p = tmp_path / "bad-profile.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_profile(p)
    assert "bad-profile.toml" in str(info.value)


def test_missing_profile_file(tmp_path):
    with pytest.raises(ConfigError, match="gone.toml: cannot read instrument file"):
        load_profile(tmp_path / "gone.toml")


def test_inspect_applies_a_matching_profile_and_reports_expiry(tmp_path, monkeypatch):
    import json as _json

    import numpy as _np
    import tifffile
    from typer.testing import CliRunner

    from pipeline.cli import app

    img = tmp_path / "navcam_like.tif"
    tifffile.imwrite(img, _np.zeros((40, 50), _np.uint8))  # generic TIFF: no pixel size
    prof_dir = tmp_path / "instruments"
    prof_dir.mkdir()
    (prof_dir / "bench.toml").write_text(
        'schema_version = 1\nid = "bench-1"\n[match]\nvendor = "unknown"\n'
        "[pixel_size]\noverride_um = { x = 0.5, y = 0.5 }\nuncertainty_rel = 0.01\n"
        '[certificate]\nid = "C-1"\ndate = 2020-01-01\nvalid_until = 2021-01-01\n'
    )
    monkeypatch.setenv("ELECTRODE_QC_CALIBRATION", str(tmp_path))
    r = CliRunner().invoke(app, ["inspect", str(img), "--json"])
    assert r.exit_code == 0, r.output
    rec = _json.loads(r.stdout)
    assert rec["pixel_size_um"] == {"x": 0.5, "y": 0.5}
    assert rec["calibration"] == "expired:bench-1"
    assert "bench.toml" in rec["pixel_size_source"]
