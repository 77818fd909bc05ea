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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config_files import (
    CalibrationFile,
    FromFile,
    calibration_file,
    config_number,
    extend,
    load_versioned,
)
from pipeline.errors import ConfigError

__all__ = [
    "DECISION_RULES",
    "Claim",
    "ClaimResult",
    "ClaimSet",
    "ClaimsDecision",
    "Decision",
    "PropertyDecision",
    "Spec",
    "SpecProperty",
    "evaluate_layer_claims",
    "evaluate_particle_claims",
    "evaluate_spec",
    "judge",
    "load_layer_claims",
    "load_particle_claims",
    "load_spec",
    "spec_name",
]

DECISION_RULES = ("simple", "guard_band", "non_binary")
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
#: each particle test and the unit of its value ("": a ratio; "modes": a count of modes)
_PARTICLE_UNITS = {"two_modes": "modes", "ratio": "", "mode_ranges": "nm", "difference": "nm",
                   "no_mode_at_or_above": "nm", "aspect_ratio": ""}
_PARTICLE_TESTS = set(_PARTICLE_UNITS)
_LAYER_UNITS = {"two_sublayers": "layers", "sublayer_ratio": ""}


_SPEC_KEYS = {"schema_version", "id", "title", "notes", "extends", "property", "combine",
              "decision_rule", "default_u_calibration_rel", "min_particles_per_mode",
              "require_particles"}
_CLAIM_KEYS = {"schema_version", "id", "title", "notes", "claim"}


@dataclass(frozen=True)
class SpecProperty:
    """One property of a spec: the metric it reads, the comparison with its limit, its unit."""

    name: str
    metric: str
    comparison: str
    limit: float
    unit: str | None = None


@dataclass(frozen=True)
class Spec(FromFile):
    """A validated spec: its properties, how they combine (``"any"``: one or more must hold,
    as claim 15 says; ``"all"``), the decision rule for one property, the gate's own settings,
    and the file it came from (`identity`)."""

    file: CalibrationFile
    title: str
    properties: tuple[SpecProperty, ...]
    combine: str = "any"
    decision_rule: str = "simple"
    default_u_calibration_rel: float | None = None
    min_particles_per_mode: int = 500
    require_particles: bool = False

    def limits(self) -> dict[str, float]:
        """Each property's limit, by property name."""
        return {p.name: p.limit for p in self.properties}


@dataclass(frozen=True)
class Claim:
    """One information claim: its claim numbers and text, the test that decides it and the
    test's bounds (``min``/``max``, ``limit``, or the two modes' ranges)."""

    claim: str
    text: str
    test: str
    min: float | None = None
    max: float | None = None
    limit: float | None = None
    mode1: tuple[float, float] | None = None
    mode2: tuple[float, float] | None = None


@dataclass(frozen=True)
class ClaimSet(FromFile):
    """A validated claims spec (the particle claims or the layer claims) and its file."""

    file: CalibrationFile
    title: str
    claims: tuple[Claim, ...]


def _unknown_keys(cf: CalibrationFile, allowed: set[str], what: str) -> None:
    """Refuse a setting not in `allowed`, naming the file that wrote it: the deepest file of
    the ``extends`` chain that holds it (a base's settings are merged into the files built
    on it)."""
    extra = sorted(set(cf.data) - allowed)
    if not extra:
        return
    culprit = cf
    while culprit.extends is not None and set(extra) & set(culprit.extends.data):
        culprit = culprit.extends
    raise ConfigError(culprit.path, f"{what} has unknown setting(s) {', '.join(extra)}; "
                                    f"known: {', '.join(sorted(allowed))}")


def load_spec(path: str | Path | None = None, *, default: str = "claim15") -> Spec:
    """A spec file (default calibration/specs/<default>.toml), on top of the spec it
    ``extends`` (`pipeline.config_files.extend`: properties merged by name), validated.

    Examples
    --------
    >>> spec = load_spec()
    >>> spec.identity()["id"], [p.metric for p in spec.properties], spec.combine
    ('claim15', ['porosity_frac', 'Sa_um', 'Sz_um'], 'any')
    """
    path = Path(path) if path is not None else calibration_file(f"specs/{default}.toml")
    cf = extend(load_versioned(path, "spec"), merge_by_name=("property",))
    d = cf.data
    _unknown_keys(cf, _SPEC_KEYS, "a spec")
    if d.get("combine", "any") not in ("any", "all"):
        raise ConfigError(path, f"combine must be 'any' or 'all', found {d.get('combine')!r}")
    if d.get("decision_rule", "simple") not in DECISION_RULES:
        raise ConfigError(path, f"decision_rule must be one of {DECISION_RULES}, "
                                f"found {d.get('decision_rule')!r}")
    props = d.get("property")
    if not isinstance(props, list) or not props:
        raise ConfigError(path, "a spec needs at least one [[property]]")
    typed = tuple(_spec_property(path, p) for p in props)
    u_rel = d.get("default_u_calibration_rel")
    if u_rel is not None:
        u_rel = config_number(path, "default_u_calibration_rel", u_rel, lo=0.0, hi=1.0)
    min_n = config_number(path, "min_particles_per_mode", d.get("min_particles_per_mode", 500),
                          lo=1.0, hi=1e9)
    if min_n != int(min_n):
        raise ConfigError(path, f"min_particles_per_mode must be a whole number, found {min_n:g}")
    require = d.get("require_particles", False)
    if not isinstance(require, bool):
        raise ConfigError(path, f"require_particles must be true or false, found {require!r}")
    return Spec(file=cf, title=str(d.get("title") or cf.id), properties=typed,
                combine=d.get("combine", "any"), decision_rule=d.get("decision_rule", "simple"),
                default_u_calibration_rel=u_rel, min_particles_per_mode=int(min_n),
                require_particles=require)


def _spec_property(path: Path, p: Any) -> SpecProperty:
    if not isinstance(p, dict):
        raise ConfigError(path, f"[[property]] must be a table, found {p!r}")
    name = p.get("name")
    if not isinstance(name, str) or not isinstance(p.get("metric"), str):
        raise ConfigError(path, f"[[property]] needs a name and a metric: {p!r}")
    extra = sorted(set(p) - {"name", "metric", "comparison", "limit", "unit", "text"})
    if extra:
        raise ConfigError(path, f"property {name}: unknown setting(s) {', '.join(extra)}")
    if p.get("comparison") not in _OPS:
        raise ConfigError(path, f"property {name}: comparison must be one of {list(_OPS)}")
    lim = p.get("limit")
    if isinstance(lim, bool) or not isinstance(lim, (int, float)) or not math.isfinite(lim):
        raise ConfigError(path, f"property {name}: limit must be a finite number")
    unit = p.get("unit")
    return SpecProperty(name=name, metric=p["metric"], comparison=p["comparison"],
                        limit=float(lim), unit=None if unit is None else str(unit))


#: what each test reads of its claim, beyond the claim, its text and its test
_CLAIM_BOUNDS = {"two_modes": (), "two_sublayers": (), "ratio": ("min", "max"),
                 "difference": ("min", "max"), "aspect_ratio": ("min", "max"),
                 "sublayer_ratio": ("min", "max"), "no_mode_at_or_above": ("limit",),
                 "mode_ranges": ("mode1", "mode2")}


def _claim(path: Path, c: Any, tests) -> Claim:
    """One [[claim]] table, validated for its test."""
    if not isinstance(c, dict):
        raise ConfigError(path, f"[[claim]] must be a table, found {c!r}")
    name = c.get("claim")
    if c.get("test") not in tests:
        raise ConfigError(path, f"claim {name!r}: test must be one of {sorted(tests)}")
    if not isinstance(name, str) or not isinstance(c.get("text"), str):
        raise ConfigError(path, f"claim {name!r}: claim and text must be strings (e.g. "
                                'claim = "15", text = "what the patent says")')
    t = c["test"]
    known = {"claim", "text", "test", *_CLAIM_BOUNDS[t]}
    extra = sorted(set(c) - known)
    if extra:
        raise ConfigError(path, f"claim {name!r}: unknown setting(s) {', '.join(extra)} for "
                                f"test {t}")
    fields: dict[str, Any] = {}
    for key in _CLAIM_BOUNDS[t]:
        where = f"claim {name!r} {key}"
        if key not in c:
            raise ConfigError(path, f"claim {name!r}: test {t} needs {key}")
        if key.startswith("mode"):
            pair = c.get(key)
            if not isinstance(pair, list) or len(pair) != 2:
                raise ConfigError(path, f"{where} must be [min, max] in nm, found {pair!r}")
            lo, hi = (config_number(path, where, v, lo=0.0) for v in pair)
            if not lo < hi:
                raise ConfigError(path, f"{where} needs min < max, found {pair!r}")
            fields[key] = (lo, hi)
        else:
            fields[key] = config_number(path, where, c.get(key), lo=0.0,
                                        positive=t == "sublayer_ratio")
    if "min" in fields and not fields["min"] < fields["max"]:
        raise ConfigError(path, f"claim {name!r}: {t} needs "
                                f"{'0 < ' if t == 'sublayer_ratio' else ''}min < max")
    return Claim(claim=name, text=c["text"], test=t, **fields)


def _load_claims(path: str | Path | None, default: str, what: str, tests) -> ClaimSet:
    """A claims spec: at least one [[claim]], each with a known test and its bounds."""
    path = Path(path) if path is not None else calibration_file(f"specs/{default}.toml")
    cf = load_versioned(path, "spec")
    _unknown_keys(cf, _CLAIM_KEYS, what)
    claims = cf.data.get("claim")
    if not isinstance(claims, list) or not claims:
        raise ConfigError(path, f"{what} need at least one [[claim]]")
    return ClaimSet(file=cf, title=str(cf.data.get("title") or cf.id),
                    claims=tuple(_claim(path, c, tests) for c in claims))


def load_particle_claims(path: str | Path | None = None) -> ClaimSet:
    """calibration/specs/particle-claims.toml (or `path`), validated."""
    return _load_claims(path, "particle-claims", "particle claims", _PARTICLE_TESTS)


def load_layer_claims(path: str | Path | None = None) -> ClaimSet:
    """calibration/specs/layer-claims.toml (or `path`), validated: claims 10-11."""
    return _load_claims(path, "layer-claims", "layer claims", set(_LAYER_UNITS))


@dataclass(frozen=True)
class PropertyDecision:
    """One property judged: its value and expanded uncertainty, the limit and comparison, the
    margin to the limit (positive inside), the statement (`judge`) and whether it is met
    (None when neither pass nor fail), its unit and where the value came from."""

    value: float | None
    U: float | None
    limit: float
    comparison: str
    margin: float | None
    met: bool | None
    statement: str
    unit: str | None
    source: str | None

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "U": self.U, "limit": self.limit,
                "comparison": self.comparison, "margin": self.margin, "met": self.met,
                "statement": self.statement, "unit": self.unit, "source": self.source}


@dataclass(frozen=True)
class Decision:
    """A spec's decision on one sample: ``outcome`` (conforming, non-conforming,
    indeterminate), ``met`` (None when indeterminate), how the properties combine, the
    decision rule, each property judged, the reasons for anything short of a verdict, and the
    spec's id and SHA-256."""

    outcome: str
    met: bool | None
    combine: str
    decision_rule: str
    properties: dict[str, PropertyDecision]
    reasons: tuple[str, ...]
    spec: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The decision as results.json holds it (``sample.spec``, ``sample.gate``)."""
        return {"outcome": self.outcome, "met": self.met, "combine": self.combine,
                "decision_rule": self.decision_rule, "reasons": list(self.reasons),
                "properties": {k: p.to_json() for k, p in self.properties.items()},
                "spec": dict(self.spec)}


@dataclass(frozen=True)
class ClaimResult:
    """One information claim decided: its value (in `unit`), met (None: undecided) and why."""

    claim: str
    text: str
    test: str
    unit: str
    value: Any
    met: bool | None
    note: str | None

    def to_json(self) -> dict[str, Any]:
        return {"claim": self.claim, "text": self.text, "test": self.test, "unit": self.unit,
                "value": self.value, "met": self.met, "note": self.note}


@dataclass(frozen=True)
class ClaimsDecision:
    """The claims of a claims spec decided: ``met`` is False when any claim fails, None when
    any is undecided, else True."""

    met: bool | None
    claims: tuple[ClaimResult, ...]
    spec: dict[str, str]

    @classmethod
    def of(cls, claims: ClaimSet, results: list[ClaimResult]) -> ClaimsDecision:
        flags = [r.met for r in results]
        met = False if False in flags else (None if None in flags else True)
        return cls(met=met, claims=tuple(results), spec={"id": claims.id,
                                                          "sha256": claims.sha256})

    def to_json(self) -> dict[str, Any]:
        """As results.json holds it (``sample.particle_claims``, ``sample.layer_claims``)."""
        return {"met": self.met, "claims": [c.to_json() for c in self.claims],
                "spec": dict(self.spec)}


def evaluate_layer_claims(claims: ClaimSet, layers: dict[str, Any] | None) -> ClaimsDecision:
    """Claims 10-11 against the sample's sub-layers (`pipeline.batch.sample` aggregates the
    cross-sections' `pipeline.segmentation.sublayers` results).

    ``two_sublayers``: met when every cross-section shows two sub-layers with the finer at the
    solid electrolyte, not met when none does, undecided when they disagree or there is no
    cross-section. ``sublayer_ratio``: the claim-11 ratio with its U (k = 2) inside [min, max]
    (met), wholly outside (not met) or straddling a limit (undecided); not met without two
    sub-layers.

    Examples
    --------
    >>> d = evaluate_layer_claims(load_layer_claims(), None)
    >>> d.met, [c.note for c in d.claims]
    (None, ['no cross-section measured', 'no cross-section measured'])
    """
    return ClaimsDecision.of(claims, [_layer_claim(c, layers) for c in claims.claims])


def _layer_claim(c: Claim, layers: dict[str, Any] | None) -> ClaimResult:
    value: Any = None
    met: bool | None = None
    note = None
    if layers is None:
        note = "no cross-section measured"
    elif c.test == "two_sublayers":
        value = layers["n_layers"]
        met = {2: True, 1: False}.get(value)
        if met is None:
            note = "the cross-sections disagree on the number of sub-layers"
    elif layers["n_layers"] != 2:
        met = False if layers["n_layers"] == 1 else None
        note = "no two sub-layers" if met is False else "the cross-sections disagree"
    else:
        value, U = layers["ratio_claim"], layers["U_ratio"]
        lo, hi = float(c.min), float(c.max)
        if value - U >= lo and value + U <= hi:
            met = True
        elif value + U < lo or value - U > hi:
            met = False
        else:
            note = f"{value:.3f} +/- {U:.3f} (k=2) straddles a limit"
    return ClaimResult(claim=c.claim, text=c.text, test=c.test, unit=_LAYER_UNITS[c.test],
                       value=value, met=met, note=note)


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


def evaluate_spec(spec: Spec, values: dict[str, dict[str, Any] | None], *,
                  blockers: list[str] | None = None) -> Decision:
    """Judge each property of `spec` and combine.

    Parameters
    ----------
    values : dict
        metric -> {"value", "U", "source"} or None (not measured).
    blockers : list of str
        Reasons that force "indeterminate" (missing or expired calibration, ...).

    Returns
    -------
    Decision
        ``outcome``, ``met`` (True/False, None when indeterminate), ``combine``,
        ``decision_rule``, ``properties`` {name: PropertyDecision}, ``reasons``, and
        ``spec`` (the spec's id and SHA-256).

    Examples
    --------
    >>> values = {"porosity_frac": {"value": 0.36, "U": 0.02}, "Sa_um": {"value": 0.07, "U": 0.005},
    ...           "Sz_um": {"value": 0.92, "U": 0.03}}
    >>> r = evaluate_spec(load_spec(), values)
    >>> r.outcome, r.met, r.properties["porosity"].met
    ('conforming', True, True)
    >>> evaluate_spec(load_spec(), {}).outcome
    'indeterminate'
    """
    props: dict[str, PropertyDecision] = {}
    reasons: list[str] = []
    for p in spec.properties:
        v = values.get(p.metric) or {}
        x, U = v.get("value"), v.get("U")
        st = judge(x, U, p.limit, p.comparison, spec.decision_rule)
        margin = None
        if x is not None and math.isfinite(x):
            margin = (p.limit - x) if p.comparison in ("<", "<=") else (x - p.limit)
        props[p.name] = PropertyDecision(
            value=x, U=U, limit=p.limit, comparison=p.comparison, margin=margin,
            met={"pass": True, "fail": False}.get(st), statement=st, unit=p.unit,
            source=v.get("source"))
        if x is None:
            reasons.append(f"{p.name}: not measured")
        elif st not in ("pass", "fail"):
            reasons.append(f"{p.name} = {x:.4g} is within U = "
                           f"{'unknown' if U is None else f'{U:.3g}'} of the limit {p.limit:g}")
    outcome = _outcome([d.statement for d in props.values()], spec.combine)
    if blockers:
        reasons = list(blockers) + reasons
        outcome = "indeterminate"
    return Decision(outcome=outcome, met={"conforming": True, "non-conforming": False}.get(outcome),
                    combine=spec.combine, decision_rule=spec.decision_rule, properties=props,
                    reasons=tuple(reasons), spec={"id": spec.id, "sha256": spec.sha256})


def _in(x: float, lo: float, hi: float, *, hi_open: bool = False) -> bool:
    return lo <= x < hi if hi_open else lo <= x <= hi


def _particle_test(c: Claim, psd: dict[str, Any], modes: list[dict[str, Any]],
                   two: bool, median_aspect_ratio: float | None):
    """(value, met, note) of one particle claim `c` on the distribution's sorted `modes`
    (`two`: two modes resolved), before the particle count is weighed."""
    t = c.test
    m1, m2 = (modes[0]["mean_nm"], modes[1]["mean_nm"]) if len(modes) == 2 else (None, None)
    if t == "two_modes":
        return psd.get("bic_k"), two, None
    if t == "no_mode_at_or_above":
        value = max((m["mean_nm"] for m in modes), default=None)
        return value, value is not None and value < c.limit, None
    if t == "aspect_ratio":
        value = median_aspect_ratio
        return value, None if value is None else _in(value, c.min, c.max), None
    if not two:
        return None, False, f"{psd.get('bic_k')} mode(s) resolved, not 2"
    if t == "ratio":
        return m2 / m1, _in(m2 / m1, c.min, c.max), None
    if t == "difference":
        return m2 - m1, _in(m2 - m1, c.min, c.max), None
    # mode_ranges
    return [m1, m2], (_in(m1, *c.mode1, hi_open=True) and _in(m2, *c.mode2)), None


def evaluate_particle_claims(claims: ClaimSet, psd: dict[str, Any] | None, *,
                             median_aspect_ratio: float | None = None,
                             min_particles_per_mode: int = 500) -> ClaimsDecision:
    """The particle claims against a size distribution (`size_distribution` output).

    Claims about two modes hold only when two modes are resolved (``bic_k == 2``); with one
    they are not met. When the modes hold fewer than `min_particles_per_mode` particles, a
    claim that would hold is not decided (``met`` None, with a note): too few particles
    cannot confirm it; a claim that fails stays failed (a mode at 120 nm does not become
    40 nm with more particles). ``met`` overall: False if any claim fails, None if any is
    undecided, else True.

    Examples
    --------
    >>> evaluate_particle_claims(load_particle_claims(), None).met is None
    True
    """
    if psd is None:
        return ClaimsDecision.of(claims, [
            ClaimResult(claim=c.claim, text=c.text, test=c.test, unit=_PARTICLE_UNITS[c.test],
                        value=None, met=None, note="no particle-size measurement")
            for c in claims.claims])
    modes = sorted(psd.get("modes") or [], key=lambda m: m["mean_nm"])
    two = psd.get("bic_k") == 2 and len(modes) == 2
    few = (any(m["n"] < min_particles_per_mode for m in modes) if two
           else (psd.get("n") or 0) < min_particles_per_mode)
    out = []
    for c in claims.claims:
        value, met, note = _particle_test(c, psd, modes, two, median_aspect_ratio)
        if few and c.test != "aspect_ratio" and met is not None and note is None:
            note = (f"a mode holds fewer than {min_particles_per_mode} particles" if two
                    else f"fewer than {min_particles_per_mode} particles")
            met = None if met else met
        out.append(ClaimResult(claim=c.claim, text=c.text, test=c.test,
                               unit=_PARTICLE_UNITS[c.test], value=value, met=met, note=note))
    return ClaimsDecision.of(claims, out)


def spec_name(spec_id: str | None) -> str:
    """How the report names a spec: "Claim 15" for ``claim15`` (a spec named for a claim of
    the patent), else its id.

    >>> spec_name("claim15"), spec_name("line-3-tight"), spec_name(None)
    ('Claim 15', 'line-3-tight', 'Spec')
    """
    if not spec_id:
        return "Spec"
    m = re.fullmatch(r"claims?[-_ ]?(\d+(?:[-_]\d+)?)", spec_id, flags=re.IGNORECASE)
    return f"Claim {m.group(1).replace('_', '-')}" if m else spec_id
