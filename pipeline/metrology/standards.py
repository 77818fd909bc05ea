"""Calibration standards: pixel size from a grating, z scale from a step-height standard.

Pure functions on arrays; `write_profile` turns their results into an instrument profile
(calibration/instruments/*.toml, schema_version 1) that `pipeline.instruments` loads.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, MeasurementError
from pipeline.fsutil import atomic_path, ensure_folder
from pipeline.instruments import load_profile
from pipeline.metrology.form import remove_plane

__all__ = ["grating_pixel_size", "step_height", "write_profile"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- grating


def _prepare(image) -> np.ndarray:
    z = np.asarray(getattr(image, "values", image), dtype=np.float64)
    if z.ndim == 1:
        z = z[np.newaxis, :]
    if z.ndim != 2:
        raise MeasurementError(None, f"grating image has {z.ndim} dimensions; expected 1 or 2")
    if not np.isfinite(z).all():
        raise MeasurementError(None, "grating image has non-finite values; fill or crop them")
    if max(z.shape) < 32:
        raise MeasurementError(None, f"grating image {z.shape} is too small (< 32 px)")
    # Remove mean and tilt (a plane), so leakage from DC does not bias low-frequency bins;
    # a single row or column has one slope: a line along it.
    ny, nx = z.shape
    scale = float(np.abs(z).max()) + 1.0
    if min(ny, nx) > 1:
        z = remove_plane(z)
    else:
        t = np.arange(z.size)
        z = (z.ravel() - np.polyval(np.polyfit(t, z.ravel(), 1), t)).reshape(z.shape)
    if float(np.std(z)) <= 1e-9 * scale:
        raise MeasurementError(None, "no clear grating peak: the image is flat")
    wy = np.hanning(ny + 2)[1:-1] if ny > 1 else np.ones(1)
    wx = np.hanning(nx + 2)[1:-1]
    return z * wy[:, None] * wx[None, :]


def _zoom_dft(zw: np.ndarray, fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """|DFT|^2 of the windowed image at arbitrary frequencies (cycles/px), grid fy x fx."""
    ny, nx = zw.shape
    ey = np.exp(-2j * np.pi * np.outer(fy, np.arange(ny)))
    ex = np.exp(-2j * np.pi * np.outer(np.arange(nx), fx))
    return np.abs(ey @ zw @ ex) ** 2


def _refine(zw: np.ndarray, fy0: float, fx0: float) -> tuple[float, float, float]:
    """Sub-bin peak by successive zoom DFTs, then a parabola on the log power."""
    ny, nx = zw.shape
    sy, sx = (1.0 / ny if ny > 1 else 0.0), 1.0 / nx
    fy, fx = fy0, fx0
    for _ in range(4):
        gy = fy + sy * np.linspace(-1, 1, 11) if sy else np.array([0.0])
        gx = fx + sx * np.linspace(-1, 1, 11)
        p = _zoom_dft(zw, gy, gx)
        iy, ix = np.unravel_index(np.argmax(p), p.shape)
        fy, fx = gy[iy], gx[ix]
        sy, sx = sy / 5, sx / 5
    # Final parabolic step on log power along each axis (grid spacing = current step * 5).
    hy, hx = sy * 5, sx * 5
    if hx:
        lp = np.log(_zoom_dft(zw, np.array([fy]), fx + hx * np.array([-1, 0, 1]))[0] + 1e-300)
        den = lp[0] - 2 * lp[1] + lp[2]
        if den < 0:
            fx += hx * 0.5 * (lp[0] - lp[2]) / den
    if hy:
        lp = np.log(_zoom_dft(zw, fy + hy * np.array([-1, 0, 1]), np.array([fx]))[:, 0] + 1e-300)
        den = lp[0] - 2 * lp[1] + lp[2]
        if den < 0:
            fy += hy * 0.5 * (lp[0] - lp[2]) / den
    peak = float(_zoom_dft(zw, np.array([fy]), np.array([fx]))[0, 0])
    return fy, fx, peak


def _axis_peak(zw, power, fyg, fxg, axis: str, *, max_angle_deg: float, min_snr: float,
               strongest: float, min_rel_power: float):
    """The fundamental peak in the sector within `max_angle_deg` of `axis`, or None."""
    ny, nx = zw.shape
    along, across = (fxg, fyg) if axis == "x" else (fyg, fxg)
    n_along = nx if axis == "x" else ny
    if n_along < 32:
        return None, "too few pixels along this axis"
    # Half plane (along > 0); at least 4 periods in the field; below Nyquist.
    tan = math.tan(math.radians(max_angle_deg))
    sector = (along >= 4.0 / n_along) & (np.abs(across) <= along * tan)
    if not sector.any():
        return None, "no frequencies in the search sector"
    noise = float(np.median(power[sector]))
    if noise <= 0:
        noise = float(np.mean(power[sector])) or 1e-300
    sp = np.where(sector, power, 0.0)
    k = np.unravel_index(np.argmax(sp), sp.shape)
    best = (fyg[k], fxg[k], sp[k])
    # A harmonic can outshine the fundamental (narrow lines); prefer a clear subharmonic.
    for n in (4, 3, 2):
        ty, tx = best[0] / n, best[1] / n
        near = sector & (np.abs(fyg - ty) <= 1.5 / ny) & (np.abs(fxg - tx) <= 1.5 / nx)
        if near.any():
            j = np.unravel_index(np.argmax(np.where(near, power, 0.0)), power.shape)
            if power[j] >= max(min_snr * noise, 0.02 * best[2]):
                best = (fyg[j], fxg[j], power[j])
                break
    fy, fx, peak = _refine(zw, best[0], best[1])
    snr = peak / noise
    if snr < min_snr:
        return None, f"no clear peak (SNR {snr:.1f} < {min_snr:g})"
    if best[2] < min_rel_power * strongest:
        return None, (f"strongest peak is {best[2] / strongest:.2g} of the image's strongest "
                      f"(< {min_rel_power:g}): leakage or a harmonic, not a grating")
    return (fy, fx, peak, snr), ""


def grating_pixel_size(
    image,
    pitch_nm: float,
    *,
    pixel_size_um: float | tuple[float, float] | dict | None = None,
    min_snr: float = 100.0,
    max_angle_deg: float = 20.0,
    min_rel_power: float = 1e-2,
) -> dict[str, Any]:
    """Pixel size from an image of a periodic grating of known pitch.

    The image is detrended (plane), Hann-windowed and Fourier transformed; along each axis
    the strongest peak within `max_angle_deg` of that axis (checked for a stronger
    subharmonic) is refined below one bin by successive zoom DFTs and a final parabola on
    the log power. The period is 1 / |f| (f in cycles/pixel), so a grating slightly rotated
    still gives its true pitch; pixel size = pitch / period.

    Parameters
    ----------
    image : (M, N) or (N,) array_like or DataArray
        Grey values or heights of a grating with lines along one or both axes.
    pitch_nm : float
        Certified pitch of the grating in nanometres.
    pixel_size_um : float, (x, y) or {"x", "y"}, optional
        The pixel size the file records; when given, ``correction_factor`` (measured /
        recorded) is returned per axis.
    min_snr : float
        Least peak power over the median power in the search sector.
    max_angle_deg : float
        Half-width of the search sector around each axis.
    min_rel_power : float
        Least peak power relative to the strongest peak of the image (leaves out leakage
        and aliased harmonics on an axis without lines).

    Returns
    -------
    dict
        ``pitch_nm``, ``x`` and ``y`` (None when that axis has no clear peak, with the reason
        in ``<axis>_reason``), each with ``period_px``, ``pixel_size_um``, ``snr``,
        ``angle_deg``, ``uncertainty_rel`` and, when `pixel_size_um` was given,
        ``recorded_pixel_size_um`` and ``correction_factor``.

    Raises
    ------
    MeasurementError
        When neither axis shows a clear peak.
    """
    if isinstance(pitch_nm, bool) or not (isinstance(pitch_nm, (int, float)) and pitch_nm > 0
                                          and math.isfinite(pitch_nm)):
        raise ConfigError(None, f"pitch_nm must be a positive number, found {pitch_nm!r}")
    recorded = _recorded(pixel_size_um)
    zw = _prepare(image)
    ny, nx = zw.shape
    power = np.abs(np.fft.fft2(zw)) ** 2
    fyg, fxg = np.meshgrid(np.fft.fftfreq(ny), np.fft.fftfreq(nx), indexing="ij")
    far = np.hypot(fyg * ny, fxg * nx) >= 4.0
    strongest = float(power[far].max()) if far.any() else 0.0
    out: dict[str, Any] = {"pitch_nm": float(pitch_nm), "shape": [ny, nx], "min_snr": min_snr}
    for axis in ("x", "y"):
        found, reason = _axis_peak(zw, power, fyg, fxg, axis, max_angle_deg=max_angle_deg,
                                   min_snr=min_snr, strongest=strongest,
                                   min_rel_power=min_rel_power)
        if found is None:
            out[axis], out[f"{axis}_reason"] = None, reason
            continue
        fy, fx, _, snr = found
        f = math.hypot(fx, fy)
        n_along = nx if axis == "x" else ny
        # Cramer-Rao bound for one sinusoid in white noise, with a factor 2 for the window
        # and the noise estimate: sigma_f ~ sqrt(3) / (pi N sqrt(SNR)).
        u_rel = 2 * math.sqrt(3) / (math.pi * n_along * math.sqrt(snr) * f)
        px = pitch_nm * 1e-3 * f
        res = {
            "period_px": 1.0 / f,
            "pixel_size_um": px,
            "snr": float(snr),
            "angle_deg": math.degrees(math.atan2(fy, fx) if axis == "x" else math.atan2(-fx, fy)),
            "uncertainty_rel": u_rel,
        }
        if recorded is not None:
            rec = recorded[0 if axis == "x" else 1]
            res["recorded_pixel_size_um"] = rec
            res["correction_factor"] = px / rec
        out[axis] = res
    if out["x"] is None and out["y"] is None:
        raise MeasurementError(
            None, f"no clear grating peak along x ({out['x_reason']}) or y ({out['y_reason']}); "
            "check the image shows at least 4 periods of the grating and the pitch")
    return out


def _recorded(ps) -> tuple[float, float] | None:
    if ps is None:
        return None
    if isinstance(ps, dict):
        vals = (ps.get("x"), ps.get("y"))
    elif isinstance(ps, (tuple, list)):
        vals = tuple(ps) if len(ps) == 2 else (None, None)
    else:
        vals = (ps, ps)
    try:
        x, y = (float(v) for v in vals)
    except (TypeError, ValueError):
        raise ConfigError(
            None, f"pixel_size_um must be a number, (x, y) or {{x, y}}, found {ps!r}") from None
    if not (x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)):
        raise ConfigError(None, f"pixel_size_um must be finite and positive, found {ps!r}")
    return x, y


# --------------------------------------------------------------------------- step height


def step_height(
    height_map_um,
    *,
    certified_um: float | None = None,
    certified_uncertainty_um: float = 0.0,
    edge_exclusion_px: float | None = None,
    max_iter: int = 20,
) -> dict[str, Any]:
    """Measure a step-height standard (ISO 5436-1 type A: a step or a groove).

    The map is split into an upper and a lower level (two-class threshold on the heights),
    then one least-squares model ``z = a + b x + c y + h * lower`` (a common plane for both
    levels, so the tilt is removed, and the step h) is fitted on the points of each level
    farther than the edge exclusion from the other level; the split is redone on the
    tilt-corrected heights until it no longer changes.

    Parameters
    ----------
    height_map_um : (M, N) or (N,) array_like or DataArray
        Heights in micrometres; NaN where unmeasured.
    certified_um : float, optional
        Certified step height; gives ``z_scale = certified / measured``.
    certified_uncertainty_um : float
        Standard uncertainty of the certified height (combined into ``z_scale_uncertainty_rel``).
    edge_exclusion_px : float, optional
        Distance from the edge inside which points are left out. Default: a third of the
        narrower level's width (ISO 5436-1 evaluates the central third of a groove), at
        least 3 px.

    Returns
    -------
    dict
        ``step_um`` (upper minus lower, positive), ``step_uncertainty_um``, ``tilt_x``,
        ``tilt_y`` (um per px), ``residual_rms_um``, ``n_upper``, ``n_lower``,
        ``edge_exclusion_px``, ``lower_fraction``; with `certified_um`, also
        ``certified_um``, ``z_scale`` and ``z_scale_uncertainty_rel``.
    """
    from scipy import ndimage

    z = np.asarray(getattr(height_map_um, "values", height_map_um), dtype=np.float64)
    if z.ndim == 1:
        z = z[np.newaxis, :]
    if z.ndim != 2:
        raise MeasurementError(None, f"height map has {z.ndim} dimensions; expected 1 or 2")
    valid = np.isfinite(z)
    if valid.sum() < 20:
        raise MeasurementError(None, "height map has fewer than 20 valid points")
    ny, nx = z.shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    xx -= nx / 2
    yy -= ny / 2
    design = np.column_stack([np.ones(z.size), xx.ravel(), yy.ravel()])
    zf = np.where(valid, z, 0.0).ravel()
    # Start: the tilt from the median pixel-to-pixel slopes (the edges are a few pixels
    # only, a plane fit would tilt towards the step), then the two-level split.
    gx = np.diff(z, axis=1)
    gy = np.diff(z, axis=0)
    tx = float(np.median(gx[np.isfinite(gx)])) if np.isfinite(gx).any() else 0.0
    ty = float(np.median(gy[np.isfinite(gy)])) if np.isfinite(gy).any() else 0.0
    lower = _two_level(z - tx * xx - ty * yy, valid)
    fit = None
    for _ in range(max_iter):
        excl = edge_exclusion_px
        d_low = ndimage.distance_transform_edt(lower)
        d_up = ndimage.distance_transform_edt(~lower)
        if excl is None:
            excl = max(3.0, min(d_low.max(), d_up.max()) * 2 / 3)
        use = valid & (((d_low > excl) & lower) | ((d_up > excl) & ~lower))
        n_low, n_up = int((use & lower).sum()), int((use & ~lower).sum())
        if min(n_low, n_up) < 10:
            raise MeasurementError(
                None, f"no clear step: too few points away from the edges (upper {n_up}, "
                f"lower {n_low}) with edge exclusion {excl:g} px; is there a step in the map?")
        a = np.column_stack([design, lower.ravel().astype(np.float64)])[use.ravel()]
        coef, *_ = np.linalg.lstsq(a, zf[use.ravel()], rcond=None)
        fit = (coef, a, use, excl, n_low, n_up)
        plane = (design @ coef[:3]).reshape(z.shape)
        new_lower = _two_level(z - plane, valid)
        if np.array_equal(new_lower, lower):
            break
        lower = new_lower
    coef, a, use, excl, n_low, n_up = fit
    r = zf[use.ravel()] - a @ coef
    dof = max(len(r) - 4, 1)
    rms = float(np.sqrt(r @ r / dof))
    cov = np.linalg.pinv(a.T @ a) * rms**2
    step = -float(coef[3])  # lower level = plane + h, so h < 0 for a true step down
    u_step = float(math.sqrt(max(cov[3, 3], 0.0)))
    if step <= 0 or step < 5 * rms:
        raise MeasurementError(
            None, f"no clear step: levels {step:.4g} um apart with residual rms {rms:.3g} um")
    out = {
        "step_um": step,
        "step_uncertainty_um": u_step,
        "tilt_x": float(coef[1]),
        "tilt_y": float(coef[2]),
        "residual_rms_um": rms,
        "n_upper": n_up,
        "n_lower": n_low,
        "edge_exclusion_px": float(excl),
        "lower_fraction": float(lower[valid].mean()),
    }
    if certified_um is not None:
        if isinstance(certified_um, bool) or not (certified_um > 0 and math.isfinite(certified_um)):
            raise ConfigError(None, f"certified height must be positive, found {certified_um!r}")
        out.update(
            certified_um=float(certified_um),
            z_scale=float(certified_um) / step,
            z_scale_uncertainty_rel=math.hypot(u_step / step,
                                               certified_uncertainty_um / certified_um),
        )
    return out


def _two_level(z: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mask of the lower level: the threshold that best separates two classes (Otsu)."""
    v = np.sort(z[valid])
    n = v.size
    c = np.cumsum(v)
    k = np.arange(1, n)
    m0 = c[:-1] / k
    m1 = (c[-1] - c[:-1]) / (n - k)
    between = k * (n - k) * (m1 - m0) ** 2
    i = int(np.argmax(between))
    thr = 0.5 * (v[i] + v[i + 1])
    return valid & (z <= thr)


# --------------------------------------------------------------------------- profile


def _toml_str(value: Any) -> str:
    """`value` as a TOML basic string."""
    return json.dumps(value)  # TOML basic strings accept JSON string escapes


def _header_lines(profile_id: str, title: str | None, match: dict[str, str]) -> list[str]:
    """The profile's first lines: schema version, id, optional title and the ``[match]``
    table."""
    lines = ["# Instrument profile written by electrode-qc calibrate.", "schema_version = 1",
             f"id = {_toml_str(profile_id)}"]
    if title:
        lines.append(f"title = {_toml_str(title)}")
    lines += ["", "[match]"] + [f"{k} = {_toml_str(v)}" for k, v in match.items()]
    return lines


def _pixel_size_lines(grating: dict[str, Any], square_pixels: bool, path: Path) -> list[str]:
    """The ``[pixel_size]`` table from a grating result: ``correction_factor`` when the file
    had a pixel size, else ``override_um``. Raises ConfigError for a single measured axis
    without `square_pixels`."""
    key = "correction_factor" if (grating.get("x") or grating.get("y") or {}).get(
        "correction_factor") is not None else "override_um"
    field = "correction_factor" if key == "correction_factor" else "pixel_size_um"
    vals = {ax: (grating[ax] or {}).get(field) for ax in ("x", "y")}
    if None in vals.values():
        if not square_pixels:
            raise ConfigError(path, "the grating gave only one axis; pass square_pixels to "
                                    "use it for both, or measure a crossed grating")
        known = vals["x"] if vals["x"] is not None else vals["y"]
        vals = {"x": known, "y": known}
    unc = max((grating[ax] or {}).get("uncertainty_rel", 0.0) for ax in ("x", "y"))
    return ["", "[pixel_size]",
            f"# grating pitch {grating.get('pitch_nm')} nm",
            f"{key} = {{ x = {vals['x']!r}, y = {vals['y']!r} }}",
            f"uncertainty_rel = {max(unc, 1e-6)!r}"]


def _z_scale_lines(step: dict[str, Any], path: Path) -> list[str]:
    """The ``[z_scale]`` table from a step-height result. Raises ConfigError when the step
    was measured without a certified height (no ``z_scale``)."""
    if step.get("z_scale") is None:
        raise ConfigError(path, "step result has no z_scale (measure with certified_um)")
    return ["", "[z_scale]",
            f"# step {step['step_um']!r} um measured, {step['certified_um']!r} um certified",
            f"factor = {step['z_scale']!r}",
            f"uncertainty_rel = {max(step['z_scale_uncertainty_rel'], 1e-6)!r}"]


def _certificate_lines(certificate: dict[str, Any]) -> list[str]:
    """The ``[certificate]`` table: dates as TOML dates, everything else as strings."""
    lines = ["", "[certificate]"]
    for k, v in certificate.items():
        lines.append(f"{k} = {v.isoformat() if isinstance(v, _dt.date) else _toml_str(v)}")
    return lines


def write_profile(
    path: str | Path,
    *,
    profile_id: str,
    match: dict[str, str],
    grating: dict[str, Any] | None = None,
    step: dict[str, Any] | None = None,
    certificate: dict[str, Any] | None = None,
    title: str | None = None,
    square_pixels: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write an instrument profile (schema_version 1) from calibration results; validated.

    A grating result with ``correction_factor`` (the file had a pixel size) becomes
    ``[pixel_size] correction_factor``, otherwise ``override_um``. An axis the grating did
    not measure takes the other's value only with ``square_pixels=True``. A step result with
    ``z_scale`` becomes ``[z_scale]``. `certificate` has ``id``, ``date``, ``valid_until``
    (dates) and optionally ``issuer``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(path, "profile exists; pass overwrite to replace it")
    lines = _header_lines(profile_id, title, match)
    if grating is not None:
        lines += _pixel_size_lines(grating, square_pixels, path)
    if step is not None:
        lines += _z_scale_lines(step, path)
    if certificate:
        lines += _certificate_lines(certificate)

    ensure_folder(path.parent)
    with atomic_path(path, suffix=".toml") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            load_profile(tmp)
        except ConfigError as exc:
            raise ConfigError(path, f"would not be a valid profile: {exc.problem}") from None
    return path
