"""Areal surface texture of a height map: F-operator, S/L filters, ISO 25178-2 parameters.

`surface_texture` is the one entry point: it takes a height DataArray as the readers
return it and a recipe, and returns a flat dict of parameters with units in the keys.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, MeasurementError
from pipeline.ingest.dataarray import require_pixel_size
from pipeline.metrology.acf import acf_decay
from pipeline.metrology.features import spd
from pipeline.metrology.filters import band_pass
from pipeline.metrology.form import level as apply_level
from pipeline.metrology.form import plane_terms
from pipeline.metrology.height import height_parameters
from pipeline.metrology.outliers import outlier_mask
from pipeline.metrology.recipe import Recipe, check_level, load_recipe
from pipeline.metrology.spatial import sdq, sdr
from pipeline.resultdict import SurfaceTexture

__all__ = ["scale_limited_surface", "surface_texture"]


def _optional(flags: list[str], name: str, fn, *args, **kwargs):
    """A parameter that some surfaces leave undefined: NaN and a flag, not a failed result."""
    try:
        return fn(*args, **kwargs)
    except MeasurementError as exc:
        flags.append(f"{name}_undefined: {exc.problem}")
        return None


def scale_limited_surface(
    z: np.ndarray,
    dx_um: float,
    dy_um: float,
    *,
    level: str,
    lambda_s_um: float | None,
    lambda_c_um: float | None,
) -> np.ndarray:
    """F-operator, then S-filter, then L-filter: the surface that parameters are computed on."""
    if level == "plane" and (lambda_s_um or lambda_c_um):
        # the plane is subtracted as the filters take the map in: one pass fewer
        form = plane_terms(z, dx_um, dy_um)
        return band_pass(z, dx_um, dy_um, lambda_s_um, lambda_c_um, form=form)
    return band_pass(apply_level(z, level, dx_um, dy_um), dx_um, dy_um, lambda_s_um, lambda_c_um)


def _resolve(recipe, level, lambda_s, lambda_c):
    if recipe is None:
        recipe = load_recipe()
    elif not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    level = check_level(recipe.level if level is None else level)
    ls = recipe.lambda_s_um if lambda_s is None else (lambda_s or None)
    lc = recipe.lambda_c_um if lambda_c is None else (lambda_c or None)
    for name, v in (("lambda_s", ls), ("lambda_c", lc)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ConfigError(None, f"{name} must be a positive length in um, got {v}")
    if ls and lc and ls >= lc:
        raise ConfigError(None, f"lambda_s ({ls} um) must be shorter than lambda_c ({lc} um)")
    return recipe, level, ls, lc


def surface_texture(
    height,
    *,
    level: str | None = "plane",
    lambda_s: float | None = None,
    lambda_c: float | None = None,
    recipe=None,
) -> dict[str, Any]:
    """ISO 25178-2 texture parameters of a height map.

    Parameters
    ----------
    height : xarray.DataArray
        Heights in micrometres, dims ("y", "x"), NaN where unmeasured, with
        ``attrs["pixel_size_um"]`` (as `pipeline.read` returns it).
    level : {"none", "plane", "poly:N"} or None
        F-operator. None takes the recipe's.
    lambda_s, lambda_c : float, optional
        S- and L-filter nesting indices in micrometres; None takes the recipe's, 0 means
        no filter.
    recipe : Recipe, path or None
        The measurement recipe (default ``calibration/recipes/default.toml``).

    Returns
    -------
    dict
        ``Sa_um, Sq_um, Sp_um, Sv_um, Sz_um, Ssk, Sku, Sdq, Sdr_pct, Sal_um, Str,
        Spd_per_mm2, invalid_fraction, sz_without_outliers_um, sz_with_outliers_um,
        n_outliers, outlier_policy, level, lambda_s_um, lambda_c_um, pixel_size_um,
        n_valid, flags, recipe`` (recipe: id, path, sha256).

    Raises
    ------
    MeasurementError
        The map has no valid point, or too few for a parameter.
    ConfigError
        Invalid options or recipe.

    Examples
    --------
    >>> import pipeline
    >>> da = pipeline.read("sample_images/embodiment-1/height-01.x3p")
    >>> r = surface_texture(da, level="plane")
    >>> round(float(r["Sa_um"]), 3), round(float(r["Sz_um"]), 2)
    (0.068, 0.9)
    """
    src = getattr(height, "attrs", {}).get("source_path")
    try:
        return _texture(height, level, lambda_s, lambda_c, recipe)
    except MeasurementError as exc:
        if exc.path is None:  # raised deep in a parameter: name the file
            raise MeasurementError(src, exc.problem) from None
        raise
    except (ValueError, ArithmeticError, MemoryError) as exc:
        raise MeasurementError(src, f"{type(exc).__name__}: {exc}") from None


def _invalid_fraction(z: np.ndarray, src) -> float:
    """The share of unmeasured (non-finite) points of the height map `z`. Raises
    MeasurementError under 9 measured points."""
    valid = np.isfinite(z)
    n_valid = int(np.count_nonzero(valid))
    if n_valid < 9:
        raise MeasurementError(src, f"height map has {n_valid} valid points; at least 9 are needed")
    return 1.0 - n_valid / z.size


def _sampling_flags(shape: tuple[int, ...], dx: float, dy: float, ls, lc, invalid_fraction: float,
                    recipe: Recipe, src) -> list[str]:
    """The flags of a map's sampling: too many unmeasured points, an undersampled S-filter,
    an L-filter wider than the field. Raises MeasurementError for a filter more than ten
    times the field."""
    flags: list[str] = []
    if invalid_fraction > recipe.max_invalid_fraction:
        flags.append(
            f"invalid_points: {invalid_fraction:.1%} of points unmeasured "
            f"(recipe limit {recipe.max_invalid_fraction:.0%})"
        )
    if ls and ls < 2.0 * max(dx, dy):
        flags.append(f"lambda_s {ls} um is below two pixels ({max(dx, dy):.4g} um): S-filter undersampled")
    field = min(shape[0] * dy, shape[1] * dx)
    widest = max(shape[0] * dy, shape[1] * dx)
    for name, lam in (("lambda_s", ls), ("lambda_c", lc)):
        if lam and lam > 10 * widest:
            raise MeasurementError(
                src,
                f"{name} {lam:g} um is more than ten times the field ({widest:.4g} um); "
                "such a filter does not separate anything on this map",
            )
    if lc and lc > field:
        flags.append(f"lambda_c {lc} um exceeds the field ({field:.4g} um)")
    return flags


def _outlier_heights(s: np.ndarray, recipe: Recipe, flags: list[str]):
    """(the surface parameters are computed on, its height parameters, Sz with the outliers,
    Sz without them, the number of outliers); a ``sz_spike_sensitive`` flag in `flags` when
    the outliers make Sz more than the recipe's ratio larger."""
    mask = outlier_mask(
        s,
        recipe.outlier_policy,
        n_sigma=recipe.n_sigma,
        sigma=recipe.sigma,
        material_ratio_pct=recipe.material_ratio_pct,
    )
    n_out = int(np.count_nonzero(mask))
    cleaned = np.where(mask, np.nan, s) if n_out else s
    surf = cleaned if recipe.outlier_action == "remove" else s
    hp = height_parameters(surf)
    sz_all = hp["Sz_um"] if surf is s else height_parameters(s)["Sz_um"]
    sz_clean = height_parameters(cleaned)["Sz_um"] if n_out else sz_all
    if sz_clean > 0 and sz_all / sz_clean > recipe.spike_flag_ratio:
        flags.append(
            f"sz_spike_sensitive: Sz {sz_all:.4g} um with {n_out} outlier points, "
            f"{sz_clean:.4g} um without ({recipe.outlier_policy})"
        )
    return surf, hp, sz_all, sz_clean, n_out


def _autocorrelation(surf: np.ndarray, dx: float, dy: float, recipe: Recipe,
                     flags: list[str]) -> dict[str, Any]:
    """The ACF parameters (``Sal_um``, ``Str``, ``str_upper_bound``; None where undefined,
    with a flag in `flags`); a ``str_upper_bound`` flag when Str is an upper bound."""
    acf = _optional(flags, "Sal_Str", acf_decay, surf, dx, dy, s=recipe.acf_threshold) or {
        "Sal_um": None, "Str": None, "str_upper_bound": False
    }
    if acf["str_upper_bound"]:
        flags.append(
            f"str_upper_bound: the ACF stays above {recipe.acf_threshold} to half the field in "
            f"{acf['n_censored']} of {acf['n_directions']} directions; Str is at most the value given"
        )
    return acf


def _texture(height, level, lambda_s, lambda_c, recipe) -> dict[str, Any]:
    recipe, level, ls, lc = _resolve(recipe, level, lambda_s, lambda_c)
    src = height.attrs.get("source_path")
    if height.attrs.get("kind", "height") != "height" or height.ndim != 2:
        raise MeasurementError(src, "surface texture needs a 2-D height map")
    dx, dy = require_pixel_size(height)
    z = np.asarray(height.values, dtype=np.float64)
    invalid_fraction = _invalid_fraction(z, src)
    flags = _sampling_flags(z.shape, dx, dy, ls, lc, invalid_fraction, recipe, src)

    try:
        s = scale_limited_surface(z, dx, dy, level=level, lambda_s_um=ls, lambda_c_um=lc)
    except ValueError as exc:
        raise MeasurementError(src, str(exc)) from None

    surf, hp, sz_all, sz_clean, n_out = _outlier_heights(s, recipe, flags)
    acf = _autocorrelation(surf, dx, dy, recipe, flags)
    peaks = _optional(flags, "Spd", spd, surf, dx, dy, pruning_pct_sz=recipe.spd_pruning_pct_sz)
    return SurfaceTexture({
        "Sa_um": hp["Sa_um"],
        "Sq_um": hp["Sq_um"],
        "Sp_um": hp["Sp_um"],
        "Sv_um": hp["Sv_um"],
        "Sz_um": hp["Sz_um"],
        "Ssk": hp["Ssk"],
        "Sku": hp["Sku"],
        "Sdq": _optional(flags, "Sdq", sdq, surf, dx, dy),
        "Sdr_pct": _optional(flags, "Sdr", sdr, surf, dx, dy),
        "Sal_um": acf["Sal_um"],
        "Str": acf["Str"],
        "Spd_per_mm2": None if peaks is None else peaks["Spd_per_mm2"],
        "invalid_fraction": invalid_fraction,
        "sz_without_outliers_um": sz_clean,
        "sz_with_outliers_um": sz_all,
        "n_outliers": n_out,
        "outlier_policy": recipe.outlier_policy,
        "outlier_action": recipe.outlier_action,
        "level": level,
        "lambda_s_um": ls,
        "lambda_c_um": lc,
        "pixel_size_um": {"x": dx, "y": dy},
        "n_valid": hp["n_valid"],
        "flags": flags,
        "recipe": recipe.identity(),
    })
