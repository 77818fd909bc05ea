"""Porosity of an electrode layer: gravimetric (as the patent measures it) and from SEM.

* `gravimetric_porosity`: 1 - (m_A / t) * sum(w_i / rho_i) from thickness, areal mass and the
  recipe, with true densities from ``calibration/materials.toml`` and a GUM-style uncertainty.
* `void_reduction`: (before - after) / before, the patent's Table 1 "void reduction".
* `porosity_from_cross_section`: pore area fraction of the layer between its top surface and
  the current collector in an SEM cross-section.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, MeasurementError

__all__ = [
    "gravimetric_porosity",
    "load_materials",
    "porosity_from_cross_section",
    "void_reduction",
]

log = logging.getLogger(__name__)

# The top surface of a layer: where the row solid fraction, coming in from the far side,
# first exceeds this share of the layer's median. A layer's top rows are sparser than its
# bulk (particles at the surface stand alone); at 0.5 the top was placed 3-4 rows too deep
# and porosity came out 1-2 points low on synthetic layers with a known top, at 0.2 within
# 0.9 points.
TOP_LEVEL = 0.2

#: Plausible porosity range; outside it the inputs are inconsistent.
POROSITY_MAX = 0.95
#: (mg/cm2) / um -> g/cm3
_MG_CM2_PER_UM_TO_G_CM3 = 10.0


def _norm(name: str) -> str:
    return " ".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())


def load_materials(path: str | Path | None = None) -> dict[str, Any]:
    """Load true densities: ``{"table": {name: (rho_g_cm3, u_g_cm3)}, "aliases", "identity"}``.

    Parameters
    ----------
    path : str or Path, optional
        A materials TOML (schema ``materials``); default ``calibration/materials.toml``.
    """
    from pipeline.calibration import calibration_file, load_versioned

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
    return {"table": table, "aliases": aliases, "identity": cal.identity()}


def _density_table(densities) -> dict[str, Any]:
    if densities is None or isinstance(densities, (str, Path)):
        return load_materials(densities)
    table = {}
    for name, value in densities.items():
        rho, u = (value, 0.0) if np.isscalar(value) else value
        table[_norm(name)] = (float(rho), float(u))
    # the shipped file's aliases ("Ag" -> silver) still apply to caller-supplied densities
    aliases = {a: k for a, k in load_materials()["aliases"].items() if k in table}
    return {"table": table, "aliases": aliases, "identity": {"id": "caller-supplied"}}


def _material_of(component: str, mats: dict[str, Any]) -> str:
    base = _norm(str(component).split("/", 1)[0])
    if base in mats["table"]:
        return base
    if base in mats["aliases"]:
        return mats["aliases"][base]
    known = ", ".join(sorted(mats["table"]))
    raise ConfigError(
        mats["identity"].get("path"),
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
    s = sum(w / mats["table"][k][0] for k, w in w_by_material.items())
    rho_pf = 1.0 / s
    rho_app = _MG_CM2_PER_UM_TO_G_CM3 * m / t
    porosity = 1.0 - rho_app * s
    # first-order propagation: P = 1 - 10 m s / t
    budget = {"thickness": (rho_app * s / t * ut) ** 2, "areal_mass": (rho_app * s / m * um) ** 2}
    var_s = 0.0
    for k, w in w_by_material.items():
        rho, u = mats["table"][k]
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
    return {
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
        "materials": mats["identity"],
        "method": "gravimetric",
    }


def void_reduction(before: float, after: float) -> float:
    """Relative reduction of porosity by pressing, ``(before - after) / before``.

    Both in the same unit (fraction or percent); the result is a fraction.
    """
    b, a = float(before), float(after)
    if not (math.isfinite(b) and b > 0 and math.isfinite(a) and a >= 0):
        raise MeasurementError(None, f"void reduction needs porosity before > 0 and after >= 0, "
                                     f"got before={b}, after={a}")
    return (b - a) / b


# --- cross-sections -------------------------------------------------------------------------

def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, stop) runs of True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(values))


def _midpoint_threshold(values: np.ndarray, start: float) -> float:
    """Iterate T = (median below T + median above T) / 2 from `start` (an area-preserving
    threshold for blurred edges between two phases, unlike Otsu whose result shifts with
    the phases' area ratio)."""
    t = start
    for _ in range(20):
        lo, hi = values[values <= t], values[values > t]
        if lo.size == 0 or hi.size == 0:
            break
        new = 0.5 * (float(np.median(lo)) + float(np.median(hi)))
        if abs(new - t) < 1e-3:
            t = new
            break
        t = new
    return t


def _layer_on_side(frac: np.ndarray) -> tuple[int, float] | None:
    """Rows of layer counted outward from the collector (`frac`, the row solid fraction,
    ordered that way), and the layer's median solid fraction; None without a layer.

    The top surface is where the smoothed solid fraction rises from the background above
    `TOP_LEVEL` of the layer's, coming in from the far side; rises shorter than max(5, 2.5 %) rows (debris)
    are ignored, and pores spanning a row inside the layer do not end it."""
    from scipy.ndimage import binary_opening, uniform_filter1d

    if frac.size < 3:
        return None
    fs = uniform_filter1d(frac, min(9, frac.size), mode="nearest")
    fmax = float(np.percentile(fs, 95))
    if fmax < 0.05:
        return None
    span = max(5, frac.size // 40)

    def extent(level: float) -> int:
        high = binary_opening(fs >= level, np.ones(span, bool)) if frac.size > span else fs >= level
        idx = np.flatnonzero(high)
        return int(idx[-1]) + 1 if idx.size else 0

    n = extent(0.5 * fmax)
    if n < 3:
        return None
    f_ref = float(np.median(frac[:n]))
    n = extent(TOP_LEVEL * f_ref)
    return (n, f_ref) if n >= 3 else None


def porosity_from_cross_section(sem, *, smooth_sigma_px: float = 1.0) -> dict[str, Any]:
    """Pore area fraction of a porous layer on a current collector in an SEM cross-section.

    Method. The image is smoothed (Gaussian, `smooth_sigma_px`). The current collector is the
    longest run of >= 3 rows whose 5th percentile lies above the whole-image Otsu threshold
    (uniformly bright, no dark pores). On each side of it, the row solid fraction (pixels
    above the Otsu threshold of the image without the collector) is followed; the top
    surface is where it rises from the background, coming in from the far side, above
    `TOP_LEVEL` (0.2) of its median over the layer (short rises, debris, are ignored). The side with the thicker
    layer is measured.
    Inside the layer, pores are pixels at or below a threshold found by iterating
    T = (median of pores + median of solid) / 2 from Otsu within the layer, which keeps
    blurred edges in the right phase whatever the porosity. The band is the porosity at
    T -/+ 10 grey levels (x 257 for 16-bit images). Pixels in ``attrs["masked_regions"]``
    (burned-in text, scale bars) take no part; rows wholly masked take the solid fraction
    of their neighbours, so a masked band does not end the layer.

    Parameters
    ----------
    sem : xarray.DataArray
        uint8/uint16 SEM image, dims ("y", "x"), from `sem_dataarray`. A pixel size is not
        needed (porosity is a ratio); thickness is reported only when it is known.
    smooth_sigma_px : float
        Gaussian smoothing before thresholding, pixels.

    Returns
    -------
    dict
        ``porosity_frac``, ``band`` [lo, hi], ``layer_top_row``, ``layer_bottom_row``
        (inclusive image rows, top < bottom), ``collector_side`` ("top"/"bottom"),
        ``thickness_um`` (None without pixel size), ``threshold`` (grey level), ``method``,
        ``flags``.

    Raises
    ------
    UnreadableInput
        A blank image (all one grey value, or nearly;
        `pipeline.ingest.dataarray.refuse_blank`): its data cannot be a micrograph.
    MeasurementError
        An image without contrast, without a current collector or without a layer on it.
    """
    from scipy.ndimage import gaussian_filter

    from pipeline.ingest.dataarray import refuse_blank, valid_mask

    src = sem.attrs.get("source_path")
    img = np.asarray(sem.values)
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise MeasurementError(src, f"cross-section must be a 2-D uint8/uint16 image, got "
                                    f"{img.dtype} with shape {img.shape}")
    refuse_blank(sem)
    scale = 257.0 if img.dtype == np.uint16 else 1.0
    flags: list[str] = []
    g = gaussian_filter(img.astype(np.float64), smooth_sigma_px) if smooth_sigma_px > 0 \
        else img.astype(np.float64)
    p_lo, p_hi = np.percentile(g, [0.5, 99.5])
    if p_hi - p_lo < 5 * scale:
        raise MeasurementError(src, f"cross-section has no contrast (grey levels {p_lo:.0f}-{p_hi:.0f}); "
                                    "no layer or current collector is visible")
    valid = valid_mask(sem)
    if not valid.any():
        raise MeasurementError(src, "the whole cross-section is masked")
    rows_ok = valid.any(axis=1)  # rows with at least one analysed pixel
    masked = not valid.all()
    gv = np.where(valid, g, np.nan) if masked else g
    t0 = _otsu(g[valid] if masked else g)
    row_p5 = np.full(g.shape[0], -np.inf)
    row_p5[rows_ok] = (np.nanpercentile(gv[rows_ok], 5, axis=1) if masked
                       else np.percentile(g, 5, axis=1))
    runs = [r for r in _runs(row_p5 > t0) if r[1] - r[0] >= 3]
    if not runs:
        raise MeasurementError(src, "no current collector visible: no band of >= 3 rows that is "
                                    "uniformly brighter than the pore/solid threshold")
    c0, c1 = max(runs, key=lambda r: r[1] - r[0])
    rest = np.concatenate([g[:c0][valid[:c0]], g[c1:][valid[c1:]]])
    if rest.size == 0 or np.ptp(rest) < 5 * scale:
        raise MeasurementError(src, f"no porous layer visible: outside the current collector "
                                    f"(rows {c0}-{c1 - 1}) the image has no contrast")
    t_solid = _otsu(rest)  # pores/background vs solid, collector left out
    n_row = valid.sum(axis=1)
    solid = ((g > t_solid) & valid).sum(axis=1) / np.maximum(n_row, 1)
    if not rows_ok.all():  # fully masked rows take their neighbours' fraction
        idx = np.flatnonzero(rows_ok)
        solid = np.interp(np.arange(solid.size), idx, solid[idx])
    above = _layer_on_side(solid[:c0][::-1])
    below = _layer_on_side(solid[c1:])
    if above is None and below is None:
        raise MeasurementError(src, f"no porous layer visible on the current collector (rows "
                                    f"{c0}-{c1 - 1}): no rows with solid next to it on either side")
    if above is not None and below is not None:
        flags.append("layers_on_both_sides")
    if below is None or (above is not None and above[0] >= below[0]):
        n = above[0]
        top, bottom, side = c0 - n, c0 - 1, "bottom"
    else:
        n = below[0]
        top, bottom, side = c1, c1 + n - 1, "top"
    if top == 0 and side == "bottom" or bottom == img.shape[0] - 1 and side == "top":
        flags.append("layer_reaches_image_edge")
    vals = g[top:bottom + 1][valid[top:bottom + 1]]
    if vals.size == 0:
        raise MeasurementError(src, f"the layer (rows {top}-{bottom}) is entirely masked")
    t_otsu = _otsu(vals)
    thr = _midpoint_threshold(vals, t_otsu)
    step = 10.0 * scale

    def pore_frac(t: float) -> float:
        return float(np.count_nonzero(vals <= t)) / vals.size

    porosity = pore_frac(thr)
    band = [pore_frac(thr - step), pore_frac(thr + step)]
    if band[1] - band[0] > 0.10:
        flags.append("threshold_sensitive")
    if porosity < 0.01 or porosity > 0.99:
        flags.append("porosity_at_limit")
    if n < 20:
        flags.append("thin_layer")
    ps = sem.attrs.get("pixel_size_um")
    thickness_um = float(n * ps["y"]) if ps else None
    if thickness_um is None:
        flags.append("no_pixel_size")
    if masked:
        flags.append("masked_regions_excluded")
    log.debug("cross-section: collector rows %d-%d, layer rows %d-%d, T=%.1f, porosity %.4f",
              c0, c1 - 1, top, bottom, thr, porosity)
    return {
        "porosity_frac": porosity,
        "band": band,
        "layer_top_row": int(top),
        "layer_bottom_row": int(bottom),
        "collector_side": side,
        "collector_rows": [int(c0), int(c1 - 1)],
        "thickness_um": thickness_um,
        "threshold": float(thr),
        "threshold_otsu": float(t_otsu),
        "method": "cross-section: collector = uniformly bright rows, top surface at 0.2 of the "
                  "layer's solid fraction, pores <= iterated mid-median threshold "
                  f"(Gaussian sigma {smooth_sigma_px:g} px)",
        "flags": flags,
    }
