"""The commands that only look at files (`inspect`, `formats`, `--help`) import only what
they need: no xarray, pandas, dask or SurfaceTopography (each takes a large part of a
second, and xarray brings dask.array in when dask is installed). Timing is measured by
benchmarks/cli_startup.py, not here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

HEAVY = {"xarray", "pandas", "dask", "SurfaceTopography"}
PROBE = """
import json, sys
from pipeline.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [
    ["inspect", str(ROOT / "sample_images" / "embodiment-1" / "psd-01.tif")],
    ["inspect", str(ROOT / "sample_images" / "embodiment-1" / "height-01.x3p"), "--json"],
    ["formats"],
    ["--help"],
], ids=["inspect-tiff", "inspect-x3p", "formats", "help"])
def test_looking_commands_import_no_heavy_package(args):
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                       check=True, timeout=60)
    loaded = set(json.loads(r.stderr.strip().splitlines()[-1]))
    assert not loaded & HEAVY, sorted(loaded & HEAVY)
    if args[0] == "inspect":
        assert "pixel_size" in r.stdout  # it did read the file


def test_inspect_applies_a_matching_profile_to_the_light_image(tmp_path, monkeypatch):
    """A profile that matches still applies (the image becomes a DataArray for it)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    site = tmp_path / "site"
    (site / "instruments").mkdir(parents=True)
    (site / "instruments" / "synth.toml").write_text(
        'schema_version = 1\nid = "synth-fei"\n[match]\nvendor = "FEI"\n'
        'model = "electrode-qc synth"\n[pixel_size]\ncorrection_factor = 1.1\n'
        'uncertainty_rel = 0.01\n')
    monkeypatch.setenv("ELECTRODE_QC_CALIBRATION", str(site))
    tif = ROOT / "sample_images" / "embodiment-1" / "psd-01.tif"
    r = CliRunner().invoke(app, ["inspect", str(tif), "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["calibration"] == "profile:synth-fei"
    assert rec["pixel_size_um"]["x"] == pytest.approx(0.0022)
