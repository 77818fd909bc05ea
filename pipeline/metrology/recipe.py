"""The measurement recipe for surface texture: validated, with its identity for provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config_files import CalibrationFile, calibration_file, config_number, load_versioned
from pipeline.errors import ConfigError

__all__ = ["Recipe", "default_recipe_path", "load_recipe"]

_SECTIONS: dict[str, set[str]] = {
    "form": {"level"},
    "filters": {"lambda_s_um", "lambda_c_um"},
    "invalid_points": {"max_fraction"},
    "outliers": {"policy", "n_sigma", "sigma", "material_ratio_pct", "action", "spike_flag_ratio"},
    "spatial": {"acf_threshold"},
    "features": {"spd_pruning_pct_sz"},
}
_TOP = {"schema_version", "id", "title", *_SECTIONS}


@dataclass(frozen=True)
class Recipe:
    """How to measure. Lengths in micrometres; a nesting index of None means no filter."""

    level: str = "plane"
    lambda_s_um: float | None = None
    lambda_c_um: float | None = None
    max_invalid_fraction: float = 0.25
    outlier_policy: str = "n_sigma"
    n_sigma: float = 6.0
    sigma: str = "robust"
    material_ratio_pct: float = 0.01
    outlier_action: str = "report"
    spike_flag_ratio: float = 1.5
    acf_threshold: float = 0.2
    spd_pruning_pct_sz: float = 5.0
    file_identity: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """The recipe file's identity (id, path, SHA-256, schema version)."""
        return dict(self.file_identity)


def default_recipe_path() -> Path:
    """recipes/default.toml: the site folder's when it has one, else the packaged default."""
    return calibration_file("recipes/default.toml")


def _num(path, section, key, value, *, lo=None, hi=None, allow_zero=True) -> float:
    return config_number(path, f"[{section}] {key}", value, lo=lo, hi=hi, allow_zero=allow_zero)


def _choice(path, section, key, value, options) -> str:
    if value not in options:
        raise ConfigError(
            path, f"[{section}] {key} = {value!r}; expected one of {', '.join(options)}"
        )
    return value


def check_level(level: str, *, path=None) -> str:
    """Validate an F-operator name: none, plane or poly:N (N >= 0)."""
    lv = str(level).strip().lower()
    if lv in ("none", "plane"):
        return lv
    if lv.startswith("poly:") and lv[5:].isdigit() and int(lv[5:]) <= 10:
        return lv
    raise ConfigError(path, f"level {level!r}; expected none, plane or poly:N with 0 <= N <= 10")


def recipe_from_file(cf: CalibrationFile) -> Recipe:
    d, p = cf.data, cf.path
    unknown = set(d) - _TOP
    if unknown:
        raise ConfigError(p, f"unknown recipe keys: {', '.join(sorted(unknown))}")
    for sec, keys in _SECTIONS.items():
        sub = d.get(sec, {})
        if not isinstance(sub, dict):
            raise ConfigError(p, f"[{sec}] must be a table")
        bad = set(sub) - keys
        if bad:
            raise ConfigError(p, f"unknown keys in [{sec}]: {', '.join(sorted(bad))}")
    g = lambda sec, key, default: d.get(sec, {}).get(key, default)
    ls = _num(p, "filters", "lambda_s_um", g("filters", "lambda_s_um", 0.0), lo=0)
    lc = _num(p, "filters", "lambda_c_um", g("filters", "lambda_c_um", 0.0), lo=0)
    if ls and lc and ls >= lc:
        raise ConfigError(p, f"[filters] lambda_s_um ({ls}) must be below lambda_c_um ({lc})")
    return Recipe(
        level=check_level(g("form", "level", "plane"), path=p),
        lambda_s_um=ls or None,
        lambda_c_um=lc or None,
        max_invalid_fraction=_num(
            p, "invalid_points", "max_fraction", g("invalid_points", "max_fraction", 0.25), lo=0, hi=1
        ),
        outlier_policy=_choice(
            p, "outliers", "policy", g("outliers", "policy", "n_sigma"),
            ("none", "n_sigma", "material_ratio"),
        ),
        n_sigma=_num(p, "outliers", "n_sigma", g("outliers", "n_sigma", 6.0), lo=1, hi=100),
        sigma=_choice(p, "outliers", "sigma", g("outliers", "sigma", "robust"), ("robust", "std")),
        material_ratio_pct=_num(
            p, "outliers", "material_ratio_pct", g("outliers", "material_ratio_pct", 0.01),
            lo=0, hi=10, allow_zero=False,
        ),
        outlier_action=_choice(
            p, "outliers", "action", g("outliers", "action", "report"), ("report", "remove")
        ),
        spike_flag_ratio=_num(
            p, "outliers", "spike_flag_ratio", g("outliers", "spike_flag_ratio", 1.5), lo=1
        ),
        acf_threshold=_num(
            p, "spatial", "acf_threshold", g("spatial", "acf_threshold", 0.2), lo=0, hi=1,
            allow_zero=False,
        ),
        spd_pruning_pct_sz=_num(
            p, "features", "spd_pruning_pct_sz", g("features", "spd_pruning_pct_sz", 5.0),
            lo=0, hi=100,
        ),
        file_identity=cf.identity(),
    )


def load_recipe(path: str | Path | None = None) -> Recipe:
    """Load a recipe file (default: calibration/recipes/default.toml).

    Examples
    --------
    >>> r = load_recipe()
    >>> r.level, r.outlier_policy
    ('plane', 'n_sigma')
    """
    return recipe_from_file(load_versioned(path or default_recipe_path(), "recipe"))
