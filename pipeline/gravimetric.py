"""Porosity of an electrode layer: gravimetric (as the patent measures it) and from SEM.

* `gravimetric_porosity`: 1 - (m_A / t) * sum(w_i / rho_i) from thickness, areal mass and the
  recipe, with true densities from ``calibration/materials.toml`` and a GUM-style uncertainty.
* `void_reduction`: (before - after) / before, the patent's Table 1 "void reduction".

Porosity from SEM cross-sections is `pipeline.segmentation.cross_section`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config_files import calibration_file, load_versioned
from pipeline.errors import ConfigError, MeasurementError
from pipeline.resultdict import GravimetricPorosity

__all__ = [
    "Materials",
    "gravimetric_porosity",
    "load_materials",
    "void_reduction",
]

log = logging.getLogger(__name__)

#: Plausible porosity range; outside it the inputs are inconsistent.
POROSITY_MAX = 0.95
#: (mg/cm2) / um -> g/cm3
_MG_CM2_PER_UM_TO_G_CM3 = 10.0


def _norm(name: str) -> str:
    return " ".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())


@dataclass(frozen=True)
class Materials:
    """True densities: ``table`` {normalised name: (rho g/cm3, u g/cm3, k = 1)}, ``aliases``
    {alias: name}, and the identity of the file they came from (``{"id": "caller-supplied"}``
    for densities passed in)."""

    table: Mapping[str, tuple[float, float]]
    aliases: Mapping[str, str] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        return dict(self.source)


def load_materials(path: str | Path | None = None) -> Materials:
    """Load true densities from a materials file.

    >>> m = load_materials()
    >>> m.identity()["id"], m.table["silver"][0]
    ('materials', 10.49)

    Parameters
    ----------
    path : str or Path, optional
        A materials TOML (schema ``materials``); default ``calibration/materials.toml``.
    """
    path = Path(path) if path is not None else calibration_file("materials.toml")
    cal = load_versioned(path, "materials")
    entries = cal.data.get("materials")
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(path, "materials file has no [materials.<name>] tables")
    table: dict[str, tuple[float, float]] = {}
    aliases: dict[str, str] = {}
    for name, entry in entries.items():
        try:
            rho = float(entry["density_g_cm3"])
            u = float(entry.get("u_density_g_cm3", 0.0))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(path, f"material {name!r} needs a numeric density_g_cm3") from None
        if not (math.isfinite(rho) and rho > 0 and math.isfinite(u) and u >= 0):
            raise ConfigError(path, f"material {name!r}: density {rho} +/- {u} g/cm3 is not physical")
        key = _norm(name)
        table[key] = (rho, u)
        for alias in entry.get("aliases", []):
            aliases[_norm(alias)] = key
    return Materials(table, aliases, cal.identity())


def _density_table(densities) -> Materials:
    if densities is None or isinstance(densities, (str, Path)):
        return load_materials(densities)
    table = {}
    for name, value in densities.items():
        rho, u = (value, 0.0) if np.isscalar(value) else value
        table[_norm(name)] = (float(rho), float(u))
    # the shipped file's aliases ("Ag" -> silver) still apply to caller-supplied densities
    aliases = {a: k for a, k in load_materials().aliases.items() if k in table}
    return Materials(table, aliases, {"id": "caller-supplied"})


def _material_of(component: str, mats: Materials) -> str:
    base = _norm(str(component).split("/", 1)[0])
    if base in mats.table:
        return base
    if base in mats.aliases:
        return mats.aliases[base]
    known = ", ".join(sorted(mats.table))
    raise ConfigError(
        mats.source.get("path"),
        f"recipe component {component!r} has no true density (known materials: {known}); "
        "add it to materials.toml or rename the component",
    )


def gravimetric_porosity(
    *,
    thickness_um: float,
    areal_mass_mg_cm2: float,
    recipe: Mapping[str, float],
    densities=None,
    thickness_u_um: float = 0.0,
    areal_mass_u: float = 0.0,
) -> dict[str, Any]:
    """Porosity of a layer from its thickness, areal mass and recipe.

    ``porosity = 1 - (m_A / t) * sum_i(w_i / rho_i)``, with ``w_i`` the mass fractions of the
    recipe and ``rho_i`` the true densities; ``1 / sum_i(w_i / rho_i)`` is the pore-free
    density.

    Parameters
    ----------
    thickness_um : float
        Layer thickness t in micrometres (without the current collector).
    areal_mass_mg_cm2 : float
        Layer mass per area m_A in mg/cm2 (without the current collector).
    recipe : mapping of str to float
        Component -> mass (any one unit). Components are looked up by material name or alias
        (case-insensitive); a grade after a slash is ignored for the lookup, so
        ``{"carbon_black/40nm": 3, "carbon_black/80nm": 3}`` is two entries of one material.
    densities : mapping, str or Path, optional
        Name -> density (g/cm3) or (density, standard uncertainty); or a materials TOML path.
        Default: ``calibration/materials.toml``.
    thickness_u_um, areal_mass_u : float
        Standard uncertainties of thickness (um) and areal mass (mg/cm2).

    Returns
    -------
    dict
        ``porosity_frac``, ``u_porosity_frac`` (standard), ``U_porosity_frac`` (expanded,
        ``coverage_factor`` 2), ``pore_free_density_g_cm3`` and its ``u_...``,
        ``apparent_density_g_cm3``, ``mass_fractions``, ``budget`` (variance contributions),
        ``inputs``, ``materials`` (file identity).

    Raises
    ------
    ConfigError
        Empty or negative recipe, or a component without a density.
    MeasurementError
        Non-positive inputs, or a porosity below 0 or above 0.95 (the inputs are named).

    Examples
    --------
    >>> recipe = {"carbon_black/40nm": 3.0, "carbon_black/80nm": 3.0, "silver": 2.0, "pvdf": 0.56}
    >>> r = gravimetric_porosity(thickness_um=10.0, areal_mass_mg_cm2=1.5, recipe=recipe)
    >>> round(r["porosity_frac"], 3), round(r["pore_free_density_g_cm3"], 3)
    (0.346, 2.294)
    """
    t, m = float(thickness_um), float(areal_mass_mg_cm2)
    ut, um = float(thickness_u_um), float(areal_mass_u)
    inputs = {"thickness_um": t, "areal_mass_mg_cm2": m, "recipe": dict(recipe),
              "thickness_u_um": ut, "areal_mass_u": um}
    if not (math.isfinite(t) and t > 0 and math.isfinite(m) and m > 0):
        raise MeasurementError(None, f"thickness ({t} um) and areal mass ({m} mg/cm2) must be "
                                     "positive and finite")
    if not (math.isfinite(ut) and ut >= 0 and math.isfinite(um) and um >= 0):
        raise MeasurementError(None, f"uncertainties must be >= 0 (thickness_u_um={ut}, "
                                     f"areal_mass_u={um})")
    masses = {k: float(v) for k, v in recipe.items()}
    if not masses or any(not math.isfinite(v) or v < 0 for v in masses.values()) \
            or sum(masses.values()) <= 0:
        raise ConfigError(None, f"recipe needs non-negative masses with a positive total; got {masses}")
    mats = _density_table(densities)
    total = sum(masses.values())
    w_by_material: dict[str, float] = {}
    for comp, mass in masses.items():
        mat = _material_of(comp, mats)
        w_by_material[mat] = w_by_material.get(mat, 0.0) + mass / total
    # specific volume of the pore-free solid, cm3/g; one density per material (correlated)
    s = sum(w / mats.table[k][0] for k, w in w_by_material.items())
    rho_pf = 1.0 / s
    rho_app = _MG_CM2_PER_UM_TO_G_CM3 * m / t
    porosity = 1.0 - rho_app * s
    # first-order propagation: P = 1 - 10 m s / t
    budget = {"thickness": (rho_app * s / t * ut) ** 2, "areal_mass": (rho_app * s / m * um) ** 2}
    var_s = 0.0
    for k, w in w_by_material.items():
        rho, u = mats.table[k]
        ds = w / rho**2 * u
        var_s += ds**2
        budget[f"density:{k}"] = (rho_app * ds) ** 2
    u_p = math.sqrt(sum(budget.values()))
    where = (f"thickness {t:g} um, areal mass {m:g} mg/cm2, recipe {masses}, "
             f"pore-free density {rho_pf:.4g} g/cm3, apparent density {rho_app:.4g} g/cm3")
    if not (0.0 <= porosity <= POROSITY_MAX):
        raise MeasurementError(
            None, f"gravimetric porosity {porosity:.3f} is outside [0, {POROSITY_MAX}] for {where}; "
                  "check the thickness (um), the areal mass (mg/cm2, layer only) and the recipe")
    return GravimetricPorosity({
        "porosity_frac": porosity,
        "u_porosity_frac": u_p,
        "U_porosity_frac": 2.0 * u_p,
        "coverage_factor": 2.0,
        "pore_free_density_g_cm3": rho_pf,
        "u_pore_free_density_g_cm3": math.sqrt(var_s) * rho_pf**2,
        "apparent_density_g_cm3": rho_app,
        "mass_fractions": w_by_material,
        "budget": budget,
        "inputs": inputs,
        "materials": mats.identity(),
        "method": "gravimetric",
    })


def void_reduction(before: float, after: float) -> float:
    """Relative reduction of porosity by pressing, ``(before - after) / before``.

    Both in the same unit (fraction or percent); the result is a fraction.

    Examples
    --------
    >>> round(void_reduction(0.55, 0.30), 3)
    0.455
    """
    b, a = float(before), float(after)
    if not (math.isfinite(b) and b > 0 and math.isfinite(a) and a >= 0):
        raise MeasurementError(None, f"void reduction needs porosity before > 0 and after >= 0, "
                                     f"got before={b}, after={a}")
    return (b - a) / b
