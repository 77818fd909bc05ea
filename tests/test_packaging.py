"""The wheel ships calibration/ as pipeline/_calibration, and an installed copy finds it.

The wheel is built (pip, build isolation) from a copy of the sources in a temporary folder,
so that the build leaves nothing in the repository. .ci/run goes further: it installs the
wheel with its dependencies into a fresh virtual environment and runs the main job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "setup.py", "README.md", "pipeline", "calibration")


def calibration_files() -> dict[str, bytes]:
    """Every file of the repository's calibration/ (hidden ones excepted), by relative path."""
    out = {}
    for path in sorted((ROOT / "calibration").rglob("*")):
        rel = path.relative_to(ROOT / "calibration")
        if path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
            out[rel.as_posix()] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_calibration")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q",
                        "-w", str(dist)], capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = dist.glob("electrode_qc-*.whl")
    return whl


def test_wheel_ships_every_calibration_file(wheel):
    expected = calibration_files()
    assert "specs/claim15.toml" in expected and "instruments/example-fei-helios.toml" in expected
    with zipfile.ZipFile(wheel) as z:
        shipped = {n.removeprefix("pipeline/_calibration/"): z.read(n) for n in z.namelist()
                   if n.startswith("pipeline/_calibration/")}
        names = z.namelist()
    assert shipped.keys() == expected.keys()
    for rel, data in expected.items():
        assert shipped[rel] == data, rel
    assert not any(n.startswith("calibration/") for n in names)


def test_wheel_ships_the_particle_network(wheel):
    """``find_particles(method="learned")`` needs its weights in the installed package."""
    model = ROOT / "pipeline" / "segmentation" / "models" / "particles.onnx"
    with zipfile.ZipFile(wheel) as z:
        assert z.read("pipeline/segmentation/models/particles.onnx") == model.read_bytes()


PROBE = """
import json
import pipeline
from pipeline.config_files import calibration_file, defaults_dir
from pipeline.instruments import load_profiles
from pipeline.metrology.recipe import load_recipe
print(json.dumps({
    "package": pipeline.__file__,
    "defaults": str(defaults_dir()),
    "claim15": str(calibration_file("specs/claim15.toml")),
    "recipe": load_recipe().identity()["path"],
    "profiles": [p.path for p in load_profiles()],
}))
"""


def probe(site_packages: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ELECTRODE_QC_CALIBRATION", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site_packages)
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120, check=False)


def test_installed_copy_finds_its_bundled_defaults(wheel, tmp_path):
    site_packages = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site_packages)  # a pure-Python wheel installs by unpacking
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = probe(site_packages, elsewhere)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    bundled = site_packages / "pipeline" / "_calibration"
    assert Path(found["package"]).parent == site_packages / "pipeline"
    assert Path(found["defaults"]) == bundled
    assert Path(found["claim15"]) == bundled / "specs" / "claim15.toml"
    assert Path(found["recipe"]) == bundled / "recipes" / "default.toml"
    assert [Path(p) for p in found["profiles"]] == [bundled / "instruments" / "example-fei-helios.toml"]


def test_installed_copy_without_its_defaults_says_so(wheel, tmp_path):
    site_packages = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site_packages)
    shutil.rmtree(site_packages / "pipeline" / "_calibration")
    r = probe(site_packages, tmp_path)
    assert r.returncode != 0
    assert "ConfigError" in r.stderr
    assert "default calibration files shipped with electrode-qc are missing" in r.stderr
