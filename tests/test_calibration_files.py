"""Where calibration files come from: the site folder first, file by file, then the defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config_files import (
    SITE_ENV,
    calibration_dirs,
    calibration_file,
    defaults_dir,
)
from pipeline.conformity import load_spec
from pipeline.errors import ConfigError
from pipeline.ingest.dataarray import sem_dataarray
from pipeline.instruments import calibrate_image, load_profiles
from pipeline.metrology.recipe import default_recipe_path, load_recipe

PROFILE = """schema_version = 1
id = "{id}"

[match]
vendor = "FEI"
serial = "{serial}"

[pixel_size]
correction_factor = 1.02
"""

SPEC = """schema_version = 1
id = "site-sa"
title = "Site spec: Sa only"
combine = "any"
decision_rule = "simple"

[[property]]
name = "Sa"
metric = "sa_um"
comparison = "<"
limit = 0.08
"""


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A site folder with one instrument profile and one custom spec, named by the variable."""
    folder = tmp_path / "site"
    (folder / "instruments").mkdir(parents=True)
    (folder / "specs").mkdir()
    (folder / "instruments" / "line-3.toml").write_text(PROFILE.format(id="line-3", serial="S-3"))
    (folder / "specs" / "site-sa.toml").write_text(SPEC)
    monkeypatch.setenv(SITE_ENV, str(folder))
    return folder


def sem(serial: str):
    img = np.zeros((20, 30), dtype=np.uint8)
    return sem_dataarray(img, path="/data/a.tif", pixel_size_um=(0.01, 0.01),
                         pixel_size_source="FEI [Scan] PixelWidth", vendor="FEI",
                         instrument="Helios", fmt="fei-tiff", header={"SerialNumber": serial})


def test_defaults_without_a_site_folder(monkeypatch):
    monkeypatch.delenv(SITE_ENV, raising=False)
    defaults = defaults_dir()
    assert (defaults / "specs" / "claim15.toml").is_file()
    assert calibration_file("specs/claim15.toml") == defaults / "specs" / "claim15.toml"
    assert calibration_dirs("instruments") == [defaults / "instruments"]


def test_site_files_and_defaults_together(site):
    defaults = defaults_dir()
    assert calibration_file("specs/site-sa.toml") == site / "specs" / "site-sa.toml"
    assert load_spec(calibration_file("specs/site-sa.toml")).id == "site-sa"
    # the site folder has no claim spec, recipe, rules or materials: the defaults serve
    for rel in ("specs/claim15.toml", "specs/gate-production.toml", "recipes/default.toml",
                "discovery.toml", "materials.toml"):
        assert calibration_file(rel) == defaults / rel
    assert load_recipe().identity()["id"] == "default"
    assert calibration_dirs("instruments") == [site / "instruments", defaults / "instruments"]
    assert calibration_dirs() == [site, defaults]


def test_site_profiles_join_the_packaged_ones(site):
    ids = {p.id: p for p in load_profiles()}
    assert set(ids) == {"line-3", "example-fei-helios"}
    assert ids["line-3"].path == str(site / "instruments" / "line-3.toml")
    out = calibrate_image(sem("S-3"))
    assert out.attrs["calibration"] == "profile:line-3"
    assert out.attrs["pixel_size_um"]["x"] == pytest.approx(0.0102)
    assert calibrate_image(sem("other")).attrs["calibration"] == "ok"


def test_a_site_file_overrides_the_default_of_the_same_name(site):
    (site / "recipes").mkdir()
    (site / "recipes" / "default.toml").write_text(
        'schema_version = 1\nid = "site-band"\n[filters]\nlambda_s_um = 2.5\nlambda_c_um = 80\n')
    assert default_recipe_path() == site / "recipes" / "default.toml"
    recipe = load_recipe()
    assert (recipe.identity()["id"], recipe.lambda_c_um) == ("site-band", 80.0)

    (site / "instruments" / "example-fei-helios.toml").write_text(
        PROFILE.format(id="site-helios", serial="H-1"))
    ids = {p.id for p in load_profiles()}
    assert ids == {"line-3", "site-helios"}


def test_same_profile_id_in_site_and_defaults_is_refused(site):
    (site / "instruments" / "copy.toml").write_text(
        PROFILE.format(id="example-fei-helios", serial="H-2"))
    with pytest.raises(ConfigError, match="profile id 'example-fei-helios' is also used by"):
        load_profiles()


def test_a_missing_file_names_both_places(site):
    with pytest.raises(ConfigError) as info:
        calibration_file("specs/absent.toml")
    msg = str(info.value)
    assert str(site / "specs" / "absent.toml") in msg
    assert str(defaults_dir() / "specs" / "absent.toml") in msg
    assert SITE_ENV in msg and "no such calibration file" in msg


def test_a_missing_file_without_site_folder(monkeypatch):
    monkeypatch.delenv(SITE_ENV, raising=False)
    with pytest.raises(ConfigError, match="no such calibration file") as info:
        calibration_file("recipes/absent.toml")
    assert str(defaults_dir() / "recipes" / "absent.toml") in str(info.value)
    assert "may supply it" in str(info.value)


def test_a_site_folder_that_does_not_exist_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(SITE_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="site calibration folder .* does not exist") as info:
        calibration_file("specs/claim15.toml")
    assert info.value.path == str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="does not exist"):
        load_profiles()


@pytest.mark.parametrize("rel", ["/etc/passwd", "../pyproject.toml", "specs/../../x.toml", ""])
def test_paths_outside_the_folder_are_refused(rel):
    with pytest.raises(ValueError, match="relative to the calibration folder"):
        calibration_file(rel)
