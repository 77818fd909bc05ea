"""Decision rules (simple, ISO 14253-1 guard band, non-binary), spec combination, particle
claims and per-sample aggregation."""

from __future__ import annotations

import math

import pytest

from pipeline.config_files import calibration_file
from pipeline.conformity import (
    evaluate_particle_claims,
    evaluate_spec,
    judge,
    load_particle_claims,
    load_spec,
)
from pipeline.errors import ConfigError
from pipeline.uncertainty import summarize


@pytest.mark.parametrize("x, U, rule, expected", [
    (0.08, 0.01, "simple", "pass"),
    (0.095, 0.01, "simple", "pass"),
    (0.10, 0.01, "simple", "fail"),          # Sa < 0.10: the limit itself fails
    (0.08, 0.01, "guard_band", "pass"),      # 0.08 < 0.10 - 0.01
    (0.095, 0.01, "guard_band", "indeterminate"),
    (0.105, 0.01, "guard_band", "indeterminate"),
    (0.12, 0.01, "guard_band", "fail"),      # 0.12 >= 0.10 + 0.01
    (0.095, None, "guard_band", "indeterminate"),
    (0.095, 0.01, "non_binary", "conditional pass"),
    (0.105, 0.01, "non_binary", "conditional fail"),
    (None, 0.01, "simple", "indeterminate"),
    (math.nan, 0.01, "simple", "indeterminate"),
])
def test_judge_upper_limit(x, U, rule, expected):
    assert judge(x, U, 0.10, "<", rule) == expected


def test_judge_lower_limit_and_inclusive():
    assert judge(0.40, 0.0, 0.40, "<=", "simple") == "pass"
    assert judge(5.0, 0.5, 4.0, ">=", "guard_band") == "pass"
    assert judge(4.2, 0.5, 4.0, ">=", "guard_band") == "indeterminate"
    assert judge(3.0, 0.5, 4.0, ">=", "guard_band") == "fail"


def values(por, sa, sz, u=0.0):
    return {"porosity_frac": None if por is None else {"value": por, "U": u, "source": "g"},
            "Sa_um": {"value": sa, "U": u, "source": "h"},
            "Sz_um": {"value": sz, "U": u, "source": "h"}}


def test_claim15_one_or_more():
    spec = load_spec()
    r = evaluate_spec(spec, values(0.55, 0.08, 1.4))
    assert r.met is True and r.outcome == "conforming"
    assert r.properties["Sa"].met is True and r.properties["Sz"].met is False
    assert r.properties["porosity"].margin == pytest.approx(0.40 - 0.55)
    r = evaluate_spec(spec, values(0.55, 0.12, 1.4))
    assert r.met is False and r.outcome == "non-conforming"
    r = evaluate_spec(spec, values(None, 0.12, 1.4))  # porosity not measured
    assert r.met is None and "porosity: not measured" in r.reasons


def test_gate_guard_band_and_blockers():
    gate = load_spec(default="gate-production")
    assert gate.decision_rule == "guard_band" and gate.combine == "all"
    r = evaluate_spec(gate, values(0.30, 0.095, 0.5, u=0.01))  # Sa within U of its limit
    assert r.outcome == "indeterminate"
    r = evaluate_spec(gate, values(0.55, 0.095, 1.4, u=0.01))  # porosity and Sz fail
    assert r.outcome == "non-conforming"
    r = evaluate_spec(gate, values(0.30, 0.05, 0.5, u=0.01),
                      blockers=["expired calibration (x): a.tif"])
    assert r.outcome == "indeterminate" and r.reasons[0].startswith("expired")


def test_production_gate_needs_all_three_claim15_one():
    """Porosity 54.9 % with good Sa and Sz: claim 15 met (one or more), gate non-conforming;
    a property not measured leaves the gate indeterminate but can still meet the claim."""
    claim, gate = load_spec(), load_spec(default="gate-production")
    v = values(0.549, 0.07, 0.92, u=0.005)
    assert evaluate_spec(claim, v).outcome == "conforming"
    assert evaluate_spec(gate, v).outcome == "non-conforming"
    v = values(None, 0.07, 0.92, u=0.005)
    assert evaluate_spec(claim, v).outcome == "conforming"
    r = evaluate_spec(gate, v)
    assert r.outcome == "indeterminate" and "porosity: not measured" in r.reasons
    assert evaluate_spec(gate, values(0.30, 0.07, 0.92, u=0.005)).outcome == "conforming"


def test_spec_all_rule(tmp_path):
    text = calibration_file("specs/claim15.toml").read_text()
    p = tmp_path / "all.toml"
    p.write_text(text.replace('combine = "any"', 'combine = "all"'))
    spec = load_spec(p)
    assert evaluate_spec(spec, values(0.30, 0.05, 0.9)).outcome == "conforming"
    assert evaluate_spec(spec, values(0.30, 0.05, 1.1)).outcome == "non-conforming"


@pytest.mark.parametrize("edit, match", [
    (('combine = "any"', 'combine = "most"'), "combine must be"),
    (('decision_rule = "simple"', 'decision_rule = "vibes"'), "decision_rule must be"),
    (('comparison = "<="', 'comparison = "=<"'), "comparison must be"),
    (("limit = 0.40", 'limit = "forty"'), "limit must be"),
])
def test_bad_spec(tmp_path, edit, match):
    text = calibration_file("specs/claim15.toml").read_text()
    p = tmp_path / "s.toml"
    p.write_text(text.replace(*edit))
    with pytest.raises(ConfigError, match=match):
        load_spec(p)


def psd(m1, m2, bic_k=2, n=(900, 900)):
    return {"bic_k": bic_k, "n": sum(n),
            "modes": [{"mean_nm": m1, "n": n[0]}, {"mean_nm": m2, "n": n[1]}]}


def test_particle_claims_embodiment_and_comparatives():
    claims = load_particle_claims()
    emb = evaluate_particle_claims(claims, psd(40.7, 80.9), median_aspect_ratio=1.2)
    assert emb.met is True
    comp3 = evaluate_particle_claims(claims, psd(122.7, 201.9), median_aspect_ratio=1.2)
    by = {c.claim: c for c in comp3.claims}
    assert comp3.met is False
    assert by["1, 16"].met is True and by["3, 17"].met is False
    assert by["6, 18"].met is False and by["6, 18"].value == pytest.approx(201.9)
    one = evaluate_particle_claims(claims, psd(41.1, 57.9, bic_k=1, n=(871, 14)),
                                   median_aspect_ratio=1.2)
    by = {c.claim: c for c in one.claims}
    assert one.met is False and by["2"].met is False  # ratio 1.4, but one mode
    assert "1 mode(s) resolved" in by["2"].note
    few = evaluate_particle_claims(claims, psd(40.0, 80.0, n=(300, 300)),
                                   median_aspect_ratio=1.2)
    assert few.met is None  # every claim would hold, on too few particles
    assert evaluate_particle_claims(claims, None).met is None


def test_summarize_gum():
    s = summarize([0.068, 0.072], u_cal_rel=0.02)
    u_rep = 0.002828427 / math.sqrt(2)
    assert s.mean == pytest.approx(0.070) and s.n == 2
    assert s.U == pytest.approx(2 * math.sqrt(u_rep**2 + (0.02 * 0.07) ** 2), rel=1e-6)
    one = summarize([0.07], u_cal_rel=0.02)
    assert one.sd is None and one.U == pytest.approx(2 * 0.0014)
    assert "single field" in one.flags[0]
    assert summarize([]) is None and summarize([math.nan]) is None
    assert list(summarize([1.0, math.nan]).flags) == [("single field of view: repeatability not "
                                                   "known, U from calibration only"),
                                                   "1 non-finite value(s) left out"]
