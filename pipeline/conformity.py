"""Specs and decisions: claim 15, the particle claims, the layer claims and the production gate.

A spec (calibration/specs/*.toml) lists properties, each a metric, a comparison and a limit,
a rule that combines them ("any": one or more must hold, as claim 15 says; "all") and a
decision rule for one property with value ``x`` and expanded uncertainty ``U``:

- ``simple`` (simple acceptance): pass when ``x`` meets the limit, else fail.
- ``guard_band`` (ISO 14253-1): pass only inside the limit narrowed by U; fail only outside
  the limit widened by U; in between (or U unknown) indeterminate.
- ``non_binary`` (ILAC-G8 statements): "pass", "conditional pass" (x meets the limit but
  x +/- U crosses it), "conditional fail", "fail"; the conditional ones are indeterminate.

Combining with "any": conforming when a property passes; non-conforming when every property
fails; otherwise indeterminate. With "all": non-conforming when a property fails, conforming
when all pass. A property that was not measured is indeterminate. A gate is also
indeterminate when calibration is missing or expired, whatever the values say.
"""

from __future__ import annotations

import math
import operator
from pathlib import Path
from typing import Any

from pipeline.config_files import CalibrationFile, calibration_file, extend, load_versioned
from pipeline.errors import ConfigError

__all__ = [
    "DECISION_RULES",
    "evaluate_layer_claims",
    "evaluate_particle_claims",
    "evaluate_spec",
    "judge",
    "load_layer_claims",
    "load_particle_claims",
    "load_spec",
]

DECISION_RULES = ("simple", "guard_band", "non_binary")
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
#: each particle test and the unit of its value ("": a ratio; "modes": a count of modes)
_PARTICLE_UNITS = {"two_modes": "modes", "ratio": "", "mode_ranges": "nm", "difference": "nm",
                   "no_mode_at_or_above": "nm", "aspect_ratio": ""}
_PARTICLE_TESTS = set(_PARTICLE_UNITS)
_LAYER_UNITS = {"two_sublayers": "layers", "sublayer_ratio": ""}


def load_spec(path: str | Path | None = None, *, default: str = "claim15") -> CalibrationFile:
    """A spec file (default calibration/specs/<default>.toml), on top of the spec it
    ``extends`` (`pipeline.config_files.extend`: properties merged by name), validated.

    Examples
    --------
    >>> spec = load_spec()
    >>> spec.identity()["id"], [p["metric"] for p in spec.data["property"]]
    ('claim15', ['porosity_frac', 'Sa_um', 'Sz_um'])
    """
    path = Path(path) if path is not None else calibration_file(f"specs/{default}.toml")
    cf = extend(load_versioned(path, "spec"), merge_by_name=("property",))
    d = cf.data
    if d.get("combine", "any") not in ("any", "all"):
        raise ConfigError(path, f"combine must be 'any' or 'all', found {d.get('combine')!r}")
    if d.get("decision_rule", "simple") not in DECISION_RULES:
        raise ConfigError(path, f"decision_rule must be one of {DECISION_RULES}, "
                                f"found {d.get('decision_rule')!r}")
    props = d.get("property")
    if not isinstance(props, list) or not props:
        raise ConfigError(path, "a spec needs at least one [[property]]")
    for p in props:
        name = p.get("name")
        if not isinstance(name, str) or not isinstance(p.get("metric"), str):
            raise ConfigError(path, f"[[property]] needs a name and a metric: {p!r}")
        if p.get("comparison") not in _OPS:
            raise ConfigError(path, f"property {name}: comparison must be one of {list(_OPS)}")
        lim = p.get("limit")
        if isinstance(lim, bool) or not isinstance(lim, (int, float)) or not math.isfinite(lim):
            raise ConfigError(path, f"property {name}: limit must be a finite number")
    for k in ("default_u_calibration_rel", "min_particles_per_mode"):
        v = d.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise ConfigError(path, f"{k} must be a number >= 0, found {v!r}")
    return cf


def _load_claims(path: str | Path | None, default: str, what: str, tests) -> CalibrationFile:
    """A claims spec: at least one [[claim]], each with a known test."""
    path = Path(path) if path is not None else calibration_file(f"specs/{default}.toml")
    cf = load_versioned(path, "spec")
    claims = cf.data.get("claim")
    if not isinstance(claims, list) or not claims:
        raise ConfigError(path, f"{what} need at least one [[claim]]")
    for c in claims:
        if c.get("test") not in tests:
            raise ConfigError(path, f"claim {c.get('claim')!r}: test must be one of "
                                    f"{sorted(tests)}")
    return cf


def load_particle_claims(path: str | Path | None = None) -> CalibrationFile:
    """calibration/specs/particle-claims.toml (or `path`), validated."""
    return _load_claims(path, "particle-claims", "particle claims", _PARTICLE_TESTS)


def load_layer_claims(path: str | Path | None = None) -> CalibrationFile:
    """calibration/specs/layer-claims.toml (or `path`), validated: claims 10-11."""
    cf = _load_claims(path, "layer-claims", "layer claims", set(_LAYER_UNITS))
    for c in cf.data["claim"]:
        if c["test"] == "sublayer_ratio" and not (
                isinstance(c.get("min"), (int, float)) and isinstance(c.get("max"), (int, float))
                and 0 < c["min"] < c["max"]):
            raise ConfigError(cf.path, f"claim {c.get('claim')!r}: sublayer_ratio needs "
                                       "0 < min < max")
    return cf


def evaluate_layer_claims(claims: CalibrationFile, layers: dict[str, Any] | None) -> dict[str, Any]:
    """Claims 10-11 against the sample's sub-layers (`pipeline.batch.sample` aggregates the
    cross-sections' `pipeline.segmentation.sublayers` results).

    ``two_sublayers``: met when every cross-section shows two sub-layers with the finer at the
    solid electrolyte, not met when none does, undecided when they disagree or there is no
    cross-section. ``sublayer_ratio``: the claim-11 ratio with its U (k = 2) inside [min, max]
    (met), wholly outside (not met) or straddling a limit (undecided); not met without two
    sub-layers.
    """
    out = []
    for c in claims.data["claim"]:
        t = c["test"]
        value: Any = None
        met: bool | None = None
        note = None
        if layers is None:
            note = "no cross-section measured"
        elif t == "two_sublayers":
            value = layers["n_layers"]
            met = {2: True, 1: False}.get(value)
            if met is None:
                note = "the cross-sections disagree on the number of sub-layers"
        elif layers["n_layers"] != 2:
            met = False if layers["n_layers"] == 1 else None
            note = "no two sub-layers" if met is False else "the cross-sections disagree"
        else:
            value, U = layers["ratio_claim"], layers["U_ratio"]
            lo, hi = float(c["min"]), float(c["max"])
            if value - U >= lo and value + U <= hi:
                met = True
            elif value + U < lo or value - U > hi:
                met = False
            else:
                note = f"{value:.3f} +/- {U:.3f} (k=2) straddles a limit"
        out.append({"claim": c["claim"], "text": c["text"], "test": t,
                    "unit": _LAYER_UNITS[t], "value": value, "met": met, "note": note})
    flags = [x["met"] for x in out]
    overall = False if False in flags else (None if None in flags else True)
    return {"met": overall, "claims": out, "spec": {"id": claims.id, "sha256": claims.sha256}}


def judge(value: float | None, U: float | None, limit: float, comparison: str,
          rule: str) -> str:
    """"pass", "fail", "indeterminate", or for non_binary "conditional pass"/"conditional fail",
    of `value` +/- `U` (expanded) against `limit` under the decision `rule` (`DECISION_RULES`;
    another is a ValueError).

    Examples
    --------
    >>> judge(0.36, 0.02, 0.40, "<=", "guard_band"), judge(0.39, 0.02, 0.40, "<=", "guard_band")
    ('pass', 'indeterminate')
    >>> judge(0.39, 0.02, 0.40, "<=", "simple"), judge(0.39, 0.02, 0.40, "<=", "non_binary")
    ('pass', 'conditional pass')
    """
    if rule not in DECISION_RULES:
        raise ValueError(f"decision rule {rule!r}: expected one of {', '.join(DECISION_RULES)}")
    if value is None or not math.isfinite(value):
        return "indeterminate"
    ok = _OPS[comparison](value, limit)
    if rule == "simple":
        return "pass" if ok else "fail"
    if U is None or not math.isfinite(U):
        return "indeterminate"
    upper = comparison in ("<", "<=")  # the limit is an upper limit
    narrowed, widened = (limit - U, limit + U) if upper else (limit + U, limit - U)
    if _OPS[comparison](value, narrowed):
        return "pass"
    if not _OPS[comparison](value, widened):
        return "fail"
    if rule == "non_binary":
        return "conditional pass" if ok else "conditional fail"
    return "indeterminate"


def _outcome(statements: list[str], combine: str) -> str:
    if combine == "any":
        if "pass" in statements:
            return "conforming"
        if statements and all(s == "fail" for s in statements):
            return "non-conforming"
        return "indeterminate"
    if "fail" in statements:
        return "non-conforming"
    if statements and all(s == "pass" for s in statements):
        return "conforming"
    return "indeterminate"


def evaluate_spec(spec: CalibrationFile, values: dict[str, dict[str, Any] | None], *,
                  blockers: list[str] | None = None) -> dict[str, Any]:
    """Judge each property of `spec` and combine.

    Parameters
    ----------
    values : dict
        metric -> {"value", "U", "source"} or None (not measured).
    blockers : list of str
        Reasons that force "indeterminate" (missing or expired calibration, ...).

    Returns
    -------
    dict
        ``outcome``, ``met`` (True/False, None when indeterminate), ``rule``, ``combine``,
        ``properties`` {name: {value, U, limit, comparison, margin, met, statement, unit,
        source}}, ``reasons``.

    Examples
    --------
    >>> values = {"porosity_frac": {"value": 0.36, "U": 0.02}, "Sa_um": {"value": 0.07, "U": 0.005},
    ...           "Sz_um": {"value": 0.92, "U": 0.03}}
    >>> r = evaluate_spec(load_spec(), values)
    >>> r["outcome"], r["met"], r["properties"]["porosity"]["met"]
    ('conforming', True, True)
    >>> evaluate_spec(load_spec(), {})["outcome"]
    'indeterminate'
    """
    d = spec.data
    rule = d.get("decision_rule", "simple")
    combine = d.get("combine", "any")
    props: dict[str, Any] = {}
    statements = []
    reasons: list[str] = []
    for p in d["property"]:
        v = values.get(p["metric"]) or {}
        x, U = v.get("value"), v.get("U")
        st = judge(x, U, float(p["limit"]), p["comparison"], rule)
        statements.append(st)
        margin = None
        if x is not None and math.isfinite(x):
            margin = (p["limit"] - x) if p["comparison"] in ("<", "<=") else (x - p["limit"])
        props[p["name"]] = {
            "value": x, "U": U, "limit": float(p["limit"]), "comparison": p["comparison"],
            "margin": margin, "met": {"pass": True, "fail": False}.get(st),
            "statement": st, "unit": p.get("unit"), "source": v.get("source"),
        }
        if x is None:
            reasons.append(f"{p['name']}: not measured")
        elif st not in ("pass", "fail"):
            reasons.append(f"{p['name']} = {x:.4g} is within U = "
                           f"{'unknown' if U is None else f'{U:.3g}'} of the limit {p['limit']:g}")
    outcome = _outcome(statements, combine)
    if blockers:
        reasons = list(blockers) + reasons
        outcome = "indeterminate"
    met = {"conforming": True, "non-conforming": False}.get(outcome)
    return {"outcome": outcome, "met": met, "rule": rule, "combine": combine,
            "properties": props, "reasons": reasons,
            "spec": {"id": spec.id, "sha256": spec.sha256}}


def _in(x: float, lo: float, hi: float, *, hi_open: bool = False) -> bool:
    return lo <= x < hi if hi_open else lo <= x <= hi


def _particle_test(c: dict[str, Any], psd: dict[str, Any], modes: list[dict[str, Any]],
                   two: bool, median_aspect_ratio: float | None):
    """(value, met, note) of one particle claim `c` on the distribution's sorted `modes`
    (`two`: two modes resolved), before the particle count is weighed."""
    t = c["test"]
    m1, m2 = (modes[0]["mean_nm"], modes[1]["mean_nm"]) if len(modes) == 2 else (None, None)
    if t == "two_modes":
        return psd.get("bic_k"), two, None
    if t == "no_mode_at_or_above":
        value = max((m["mean_nm"] for m in modes), default=None)
        return value, value is not None and value < c["limit"], None
    if t == "aspect_ratio":
        value = median_aspect_ratio
        return value, None if value is None else _in(value, c["min"], c["max"]), None
    if not two:
        return None, False, f"{psd.get('bic_k')} mode(s) resolved, not 2"
    if t == "ratio":
        return m2 / m1, _in(m2 / m1, c["min"], c["max"]), None
    if t == "difference":
        return m2 - m1, _in(m2 - m1, c["min"], c["max"]), None
    # mode_ranges
    return [m1, m2], (_in(m1, *c["mode1"], hi_open=True) and _in(m2, *c["mode2"])), None


def evaluate_particle_claims(claims: CalibrationFile, psd: dict[str, Any] | None, *,
                             median_aspect_ratio: float | None = None,
                             min_particles_per_mode: int = 500) -> dict[str, Any]:
    """The particle claims against a size distribution (`size_distribution` output).

    Claims about two modes hold only when two modes are resolved (``bic_k == 2``); with one
    they are not met. When the modes hold fewer than `min_particles_per_mode` particles, a
    claim that would hold is not decided (``met`` None, with a note): too few particles
    cannot confirm it; a claim that fails stays failed (a mode at 120 nm does not become
    40 nm with more particles). ``met`` overall: False if any claim fails, None if any is
    undecided, else True.
    """
    out = []
    if psd is None:
        for c in claims.data["claim"]:
            out.append({"claim": c["claim"], "text": c["text"], "test": c["test"],
                        "unit": _PARTICLE_UNITS[c["test"]], "value": None, "met": None,
                        "note": "no particle-size measurement"})
        return {"met": None, "claims": out, "spec": {"id": claims.id, "sha256": claims.sha256}}
    modes = sorted(psd.get("modes") or [], key=lambda m: m["mean_nm"])
    two = psd.get("bic_k") == 2 and len(modes) == 2
    few = (any(m["n"] < min_particles_per_mode for m in modes) if two
           else (psd.get("n") or 0) < min_particles_per_mode)
    for c in claims.data["claim"]:
        t = c["test"]
        value, met, note = _particle_test(c, psd, modes, two, median_aspect_ratio)
        if few and t != "aspect_ratio" and met is not None and note is None:
            note = (f"a mode holds fewer than {min_particles_per_mode} particles" if two
                    else f"fewer than {min_particles_per_mode} particles")
            met = None if met else met
        out.append({"claim": c["claim"], "text": c["text"], "test": t,
                    "unit": _PARTICLE_UNITS[t], "value": value, "met": met,
                    "note": note})
    flags = [x["met"] for x in out]
    overall = False if False in flags else (None if None in flags else True)
    return {"met": overall, "claims": out, "spec": {"id": claims.id, "sha256": claims.sha256}}
