"""The areal autocorrelation function and the spatial parameters Sal and Str (ISO 25178-2).

Inputs as in `pipeline.metrology.spatial`: heights in micrometres, levelled and filtered,
NaN where unmeasured; pixel sizes along x (a row) and y (a column); non-square pixels handled.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from pipeline.errors import MeasurementError
from pipeline.metrology.spatial import check_height_map

__all__ = ["acf_decay", "autocorrelation", "sal_str"]

logger = logging.getLogger(__name__)


def _acf_lags(z: np.ndarray, lag_y: int, lag_x: int, *, single: bool = False) -> np.ndarray:
    """Normalised ACF for lags |τy| <= lag_y, |τx| <= lag_x pixels, origin at the centre.

    ``single`` correlates in float32 (half the time and memory of float64): the ACF then
    carries a relative error of about 1e-6 of the variance, and the number of valid pairs
    an absolute error of about 1e-6 of the number of valid points, harmless where every lag
    has many pairs (lags up to half the field) but not at the far corners.
    """
    import scipy.fft as sfft

    m, n = z.shape
    valid = np.isfinite(z)
    n_valid = int(np.count_nonzero(valid))
    if n_valid == 0:
        raise MeasurementError(None, "autocorrelation: every point of the height map is invalid")
    all_valid = n_valid == z.size
    mean = float(z.mean()) if all_valid else float(z[valid].mean())
    dtype = np.float32 if single else np.float64
    # Zero padding to at least M + lag: circular lags beyond the field then see no overlap.
    shape = (sfft.next_fast_len(m + lag_y, real=True), sfft.next_fast_len(n + lag_x, real=True))

    def correlate(fill) -> np.ndarray:
        a = np.zeros(shape, dtype=dtype)  # the padded input, written once
        fill(a[:m, :n])
        spec = sfft.rfft2(a, overwrite_x=True)
        del a
        re, im = spec.real, spec.imag  # |F|^2 in place: no complex temporary
        np.multiply(re, re, out=re)
        np.multiply(im, im, out=im)
        re += im
        im.fill(0.0)
        out = sfft.irfft2(spec, s=shape, overwrite_x=True)
        del spec
        # lags -lag..lag with the origin at the centre: the four corners of the circular result
        res = np.empty((2 * lag_y + 1, 2 * lag_x + 1))
        for dst_r, src_r in ((slice(0, lag_y), slice(-lag_y, None)),
                             (slice(lag_y, None), slice(0, lag_y + 1))):
            res[dst_r, :lag_x] = out[src_r, -lag_x:]
            res[dst_r, lag_x:] = out[src_r, :lag_x + 1]
        return res

    def centred(a: np.ndarray) -> None:
        np.subtract(z, mean, out=a, casting="same_kind")
        if not all_valid:
            a[~valid] = 0.0

    acf = correlate(centred)
    if all_valid:  # every lag's number of pairs: (M - |ty|) (N - |tx|), divided in place
        acf /= (m - np.abs(np.arange(-lag_y, lag_y + 1, dtype=np.float64)))[:, None]
        acf /= (n - np.abs(np.arange(-lag_x, lag_x + 1, dtype=np.float64)))[None, :]
    else:
        pairs = np.rint(correlate(lambda a: np.copyto(a, valid)))
        with np.errstate(invalid="ignore", divide="ignore"):
            acf /= pairs
        acf[pairs < 0.5] = np.nan
        del pairs
    variance = acf[lag_y, lag_x]
    if not variance > 0:
        raise MeasurementError(None, "autocorrelation: the height map has zero variance "
                                     "(a flat surface has no autocorrelation length)")
    acf /= variance
    return acf


def autocorrelation(z, dx_um: float, dy_um: float, *, max_lag_frac: float = 1.0):
    """Areal autocorrelation function (ISO 25178-2 f_ACF) by FFT, without wrap-around.

    Parameters
    ----------
    z : (M, N) ndarray
        Heights in micrometres; NaN where unmeasured.
    dx_um, dy_um : float
        Pixel size along x (a row) and along y (a column), micrometres.
    max_lag_frac : float, optional
        Largest lag returned, as a fraction of (N − 1) along x and (M − 1) along y; 1.0
        (default) gives every lag with at least one pair of points.

    Returns
    -------
    acf : (2·Ly + 1, 2·Lx + 1) ndarray
        Dimensionless ACF, 1 at zero lag, which sits at ``acf[Ly, Lx]``. Mean (of the valid
        points) removed; invalid points count as missing, so
        ACF(τ) = [Σ over valid pairs f(r)·f(r+τ) / number of valid pairs] / variance.
        NaN where no valid pair exists. ``acf[i, j]`` is the lag
        (τx, τy) = ``(tau_x_um[j], tau_y_um[i])``; ACF(−τ) = ACF(τ).
    tau_x_um : (2·Lx + 1,) ndarray
        Lags along x, micrometres.
    tau_y_um : (2·Ly + 1,) ndarray
        Lags along y (down a column), micrometres.

    Raises
    ------
    ValueError
        ``max_lag_frac`` outside (0, 1].
    MeasurementError
        Every point is invalid, or the surface is flat (zero variance).
    """
    z = check_height_map(z, dx_um, dy_um)
    if not 0.0 < max_lag_frac <= 1.0:
        raise ValueError(f"max_lag_frac must be in (0, 1]; got {max_lag_frac!r}")
    lag_y = max(1, int(max_lag_frac * (z.shape[0] - 1)))
    lag_x = max(1, int(max_lag_frac * (z.shape[1] - 1)))
    acf = _acf_lags(z, lag_y, lag_x)
    tau_x = np.arange(-lag_x, lag_x + 1) * float(dx_um)
    tau_y = np.arange(-lag_y, lag_y + 1) * float(dy_um)
    return acf, tau_x, tau_y


def _bilinear(img: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``img`` at fractional (row, column) indices inside it."""
    i0 = np.clip(np.floor(yy).astype(np.intp), 0, img.shape[0] - 2)
    j0 = np.clip(np.floor(xx).astype(np.intp), 0, img.shape[1] - 2)
    fy = yy - i0
    fx = xx - j0
    top = img[i0, j0] * (1.0 - fx) + img[i0, j0 + 1] * fx
    bottom = img[i0 + 1, j0] * (1.0 - fx) + img[i0 + 1, j0 + 1] * fx
    return top * (1.0 - fy) + bottom * fy


def _decay_lengths(acf, dx_um, dy_um, s, n_directions):
    """Per direction: distance (um) where the ACF first falls to <= s, else NaN, and for
    directions that never do, the farthest distance searched (um)."""
    lag_y, lag_x = (acf.shape[0] - 1) // 2, (acf.shape[1] - 1) // 2
    theta = np.arange(n_directions) * (math.pi / n_directions)
    cos, sin = np.cos(theta), np.sin(theta)
    step = 0.25 * min(dx_um, dy_um)
    with np.errstate(divide="ignore"):
        reach = np.minimum(np.where(np.abs(cos) > 1e-12, lag_x * dx_um / np.abs(cos), np.inf),
                           np.where(sin > 1e-12, lag_y * dy_um / sin, np.inf))
    last_k = np.floor(reach / step + 1e-9).astype(np.int64)
    length = np.full(n_directions, np.nan)
    searched = np.zeros(n_directions)
    active = np.arange(n_directions)
    previous = np.ones(n_directions)  # ACF at the last sample taken, 1 at the origin
    k0, chunk = 0, 32
    while active.size:
        k = np.arange(k0 + 1, k0 + chunk + 1)
        inside = k[None, :] <= last_k[active, None]
        kc = np.minimum(k[None, :], last_k[active, None])  # clamp, masked below
        xx = lag_x + kc * step * cos[active, None] / dx_um
        yy = lag_y + kc * step * sin[active, None] / dy_um
        values = _bilinear(acf, yy, xx)
        values[~inside] = np.nan
        below = values <= s
        stop = below | np.isnan(values)
        done = stop.any(axis=1)
        first = np.argmax(stop, axis=1)
        rows = np.nonzero(done)[0]
        for row in rows:
            j = first[row]
            ray = active[row]
            before = previous[ray] if j == 0 else values[row, j - 1]
            r_before = (k0 + j) * step
            if below[row, j]:
                length[ray] = r_before + step * (before - s) / (before - values[row, j])
            else:
                searched[ray] = r_before
        keep = ~done
        previous[active[keep]] = values[keep, -1]
        active = active[keep]
        k0 += chunk
        chunk *= 2
    return theta, length, searched


def acf_decay(z, dx_um: float, dy_um: float, *, s: float = 0.2,
              max_lag_frac: float = 0.5, n_directions: int = 360) -> dict:
    """Autocorrelation length Sal and texture aspect ratio Str (ISO 25178-2) with details.

    Parameters
    ----------
    z : (M, N) ndarray
        Heights in micrometres; NaN where unmeasured.
    dx_um, dy_um : float
        Pixel size along x (a row) and along y (a column), micrometres.
    s : float, optional
        Threshold the ACF decays to, in (0, 1); ISO 25178-3 default 0.2.
    max_lag_frac : float, optional
        The search area: lags up to this fraction of the field extent along each axis
        (default 0.5: every lag searched rests on at least half of the rows / columns).
    n_directions : int, optional
        Number of directions searched, evenly spaced over [0°, 180°) (the ACF is
        centrosymmetric, so that covers every direction); default 360 (0.5°).

    Returns
    -------
    dict
        ``Sal_um``: the shortest decay length over all directions, micrometres.
        ``Str``: Sal / the longest decay length, in (0, 1].
        ``fastest_direction_deg`` / ``slowest_direction_deg``: direction of each, degrees
        from +x towards +y (down a column). ``n_directions``, ``n_censored`` (directions
        where the ACF stayed above s to the edge of the search area or to lags with no
        valid pair), ``str_upper_bound`` (True when n_censored > 0: such a direction enters
        the longest length with the distance searched, a lower bound of its true decay
        length, so the true Str is at most the value given), ``sal_upper_bound`` (True when
        a censored direction was searched less far than Sal), ``s``, ``max_lag_um``.

    Notes
    -----
    Along each direction θ a ray leaves the origin of the ACF (lag in micrometres, so
    non-square pixels are handled) and samples it by bilinear interpolation every
    0.25 · min(dx, dy); the decay length is where it *first* falls to <= s, linearly
    interpolated between samples. Sal = min over directions; Str = Sal / max over
    directions. When no direction decays both are NaN (a warning is logged).
    """
    z = check_height_map(z, dx_um, dy_um)
    if not 0.0 < s < 1.0:
        raise ValueError(f"s must be in (0, 1); got {s!r}")
    if not 0.0 < max_lag_frac <= 1.0:
        raise ValueError(f"max_lag_frac must be in (0, 1]; got {max_lag_frac!r}")
    if int(n_directions) < 4:
        raise ValueError(f"n_directions must be >= 4; got {n_directions!r}")
    lag_y = max(1, int(max_lag_frac * (z.shape[0] - 1)))
    lag_x = max(1, int(max_lag_frac * (z.shape[1] - 1)))
    # float32 where every lag searched rests on at least half of the rows or columns
    acf = _acf_lags(z, lag_y, lag_x, single=max_lag_frac <= 0.5)
    theta, length, searched = _decay_lengths(acf, float(dx_um), float(dy_um), s,
                                             int(n_directions))
    decayed = np.isfinite(length)
    n_censored = int(np.count_nonzero(~decayed))
    out = {"Sal_um": math.nan, "Str": math.nan, "fastest_direction_deg": math.nan,
           "slowest_direction_deg": math.nan, "n_directions": int(n_directions),
           "n_censored": n_censored, "str_upper_bound": n_censored > 0,
           "sal_upper_bound": False, "s": float(s),
           "max_lag_um": (lag_x * float(dx_um), lag_y * float(dy_um))}
    if not decayed.any():
        logger.warning("the ACF does not decay to %.3g within lags of %.4g x %.4g um in any "
                       "direction: Sal and Str undefined", s, *out["max_lag_um"])
        return out
    lengths = np.where(decayed, length, searched)
    i_min = int(np.argmin(np.where(decayed, length, np.inf)))
    i_max = int(np.argmax(lengths))
    sal = float(length[i_min])
    out.update(Sal_um=sal, Str=sal / float(lengths[i_max]),
               fastest_direction_deg=math.degrees(theta[i_min]),
               slowest_direction_deg=math.degrees(theta[i_max]),
               sal_upper_bound=bool(np.any(searched[~decayed] < sal)))
    if n_censored:
        logger.info("ACF stays above %.3g out to the search limit in %d of %d directions: "
                    "Str = %.4g is an upper bound", s, n_censored, n_directions, out["Str"])
    return out


def sal_str(z, dx_um: float, dy_um: float, *, s: float = 0.2) -> tuple[float, float]:
    """Autocorrelation length Sal (micrometres) and texture aspect ratio Str (ISO 25178-2).

    Parameters
    ----------
    z : (M, N) ndarray
        Heights in micrometres; NaN where unmeasured.
    dx_um, dy_um : float
        Pixel size along x (a row) and along y (a column), micrometres.
    s : float, optional
        ACF threshold, default 0.2.

    Returns
    -------
    (Sal_um, Str) : tuple of float
        See :func:`acf_decay`, which gives the same two numbers with the flags that say
        when Str is only an upper bound (some direction does not decay within half the
        field). Both NaN when the ACF decays to s in no direction.
    """
    result = acf_decay(z, dx_um, dy_um, s=s)
    return result["Sal_um"], result["Str"]
