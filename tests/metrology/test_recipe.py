import pytest

from pipeline.errors import ConfigError
from pipeline.metrology.recipe import default_recipe_path, load_recipe


def test_default_recipe_loads_with_identity():
    r = load_recipe()
    assert r.level == "plane" and r.lambda_s_um is None and r.lambda_c_um is None
    assert r.outlier_policy in ("none", "n_sigma", "material_ratio")
    assert r.identity()["id"] == "default"
    assert len(r.identity()["sha256"]) == 64
    assert r.identity()["path"] == str(default_recipe_path())


def _write(tmp_path, text):
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


def test_newer_schema_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="newer than this electrode-qc knows"):
        load_recipe(_write(tmp_path, "schema_version = 99\n"))


def test_missing_schema_version(tmp_path):
    with pytest.raises(ConfigError, match="schema_version"):
        load_recipe(_write(tmp_path, 'id = "x"\n'))


def test_unknown_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown keys in \[filters\]: lamda_c_um"):
        load_recipe(_write(tmp_path, "schema_version = 1\n[filters]\nlamda_c_um = 80\n"))


def test_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="must be below lambda_c_um"):
        load_recipe(_write(tmp_path, "schema_version = 1\n[filters]\nlambda_s_um = 80\nlambda_c_um = 8\n"))
    with pytest.raises(ConfigError, match="policy"):
        load_recipe(_write(tmp_path, 'schema_version = 1\n[outliers]\npolicy = "median"\n'))
    with pytest.raises(ConfigError, match="level"):
        load_recipe(_write(tmp_path, 'schema_version = 1\n[form]\nlevel = "sphere"\n'))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(_write(tmp_path, "schema_version = = 1\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_recipe(tmp_path / "absent.toml")


def test_custom_recipe_identity(tmp_path):
    r = load_recipe(_write(tmp_path, 'schema_version = 1\nid = "band"\n[filters]\nlambda_s_um = 2.5\nlambda_c_um = 80\n'))
    assert (r.lambda_s_um, r.lambda_c_um, r.identity()["id"]) == (2.5, 80.0, "band")
