"""A spec may extend another (``extends = "claim15"``): the production gate holds only what
differs from claim 15, and a site spec can tighten one limit without copying the rest."""

from __future__ import annotations

import pytest

from pipeline.conformity import evaluate_spec, load_particle_claims, load_spec
from pipeline.errors import ConfigError

CLAIM = {"porosity_frac": {"value": 0.39, "U": 0.02}, "Sa_um": {"value": 0.07, "U": 0.005},
         "Sz_um": {"value": 0.92, "U": 0.03}}


def test_the_gate_is_claim_15_with_its_own_rules():
    claim, gate = load_spec(), load_spec(default="gate-production")
    assert gate.properties == claim.properties
    assert (gate.combine, gate.decision_rule) == ("all", "guard_band")
    ident = gate.identity()
    assert ident["id"] == "gate-production" and ident["extends"] == claim.identity()
    # porosity 0.39 +/- 0.02 against 0.40: the guard band makes the gate undecided
    assert evaluate_spec(claim, CLAIM).outcome == "conforming"
    assert evaluate_spec(gate, CLAIM).outcome == "indeterminate"


def test_a_site_spec_tightens_one_limit_and_adds_a_property(tmp_path):
    p = tmp_path / "strict.toml"
    p.write_text('schema_version = 1\nid = "strict"\nextends = "claim15"\ncombine = "all"\n'
                 '[[property]]\nname = "Sa"\nlimit = 0.08\n'
                 '[[property]]\nname = "Sq"\nmetric = "Sq_um"\ncomparison = "<"\nlimit = 0.12\n'
                 'unit = "um"\n')
    spec = load_spec(p)
    props = {q.name: q for q in spec.properties}
    assert list(props) == ["porosity", "Sa", "Sz", "Sq"]
    assert props["Sa"].limit == 0.08 and props["Sa"].metric == "Sa_um"
    assert props["porosity"].limit == 0.40
    r = evaluate_spec(spec, {**CLAIM, "Sa_um": {"value": 0.09, "U": 0.0},
                             "Sq_um": {"value": 0.1, "U": 0.0}})
    assert r.properties["Sa"].met is False and r.outcome == "non-conforming"


@pytest.mark.parametrize("extends, match", [
    ('"self"', "not itself"),
    ('"no-such-spec"', "no such calibration file"),
    ("3", "name another spec file"),
    ('"../../etc/x"', "name another spec file"),
])
def test_bad_extends_is_a_config_error_naming_the_file(tmp_path, extends, match):
    p = tmp_path / "self.toml"
    p.write_text(f'schema_version = 1\nid = "self"\nextends = {extends}\n')
    with pytest.raises(ConfigError, match=match) as info:
        load_spec(p)
    assert "self.toml" in str(info.value) or "no-such-spec" in str(info.value)


def test_a_loop_of_extends_is_refused(tmp_path):
    (tmp_path / "a.toml").write_text('schema_version = 1\nid = "a"\nextends = "b"\n')
    (tmp_path / "b.toml").write_text('schema_version = 1\nid = "b"\nextends = "a"\n')
    with pytest.raises(ConfigError, match="at most"):
        load_spec(tmp_path / "a.toml")


def test_a_change_to_the_base_spec_changes_the_idempotency_key(tmp_path):
    """A stored verdict judged against the base's old limits must not be reused."""
    import shutil

    from pipeline.batch.config import load_run_config
    from pipeline.batch.identity import idempotency_key
    from pipeline.config_files import defaults_dir
    from pipeline.ingest.discover import Sample

    specs = defaults_dir() / "specs"
    shutil.copy(specs / "gate-production.toml", tmp_path / "gate-production.toml")
    base = tmp_path / "claim15.toml"
    shutil.copy(specs / "claim15.toml", base)
    sample = Sample("s1")

    def key():
        cfg = load_run_config(gate_spec=tmp_path / "gate-production.toml")
        return idempotency_key(sample, cfg, {})

    before = key()
    base.write_text(base.read_text().replace("limit = 0.40", "limit = 0.30"))
    assert key() != before


def test_judge_refuses_an_unknown_rule():
    from pipeline.conformity import judge

    with pytest.raises(ValueError, match="guard-band"):
        judge(0.3, 0.01, 0.4, "<=", "guard-band")


def test_an_unknown_setting_is_blamed_on_the_file_that_wrote_it(tmp_path):
    (tmp_path / "base.toml").write_text(
        'schema_version = 1\nid = "base"\ncolour = "red"\n[[property]]\nname = "Sa"\n'
        'metric = "Sa_um"\ncomparison = "<"\nlimit = 0.1\n')
    child = tmp_path / "child.toml"
    child.write_text('schema_version = 1\nid = "child"\nextends = "base"\ncombine = "all"\n')
    with pytest.raises(ConfigError, match=r"base\.toml: a spec has unknown setting\(s\) colour"):
        load_spec(child)


def test_a_claim_without_its_bound_names_the_test_and_the_bound(tmp_path):
    p = tmp_path / "claims.toml"
    p.write_text('schema_version = 1\nid = "c"\n[[claim]]\nclaim = "2"\ntext = "t"\n'
                 'test = "ratio"\nmin = 1.2\n')
    with pytest.raises(ConfigError, match=r"claim '2': test ratio needs max"):
        load_particle_claims(p)
