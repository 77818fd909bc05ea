"""Surface protrusions: bumps on a 100x SEM surface image, and peaks on a height map.

`find_protrusions` (SEM, grey levels):

1. Background: a Gaussian of sigma 3 bump diameters, computed as a normalised convolution
   (masked pixels carry no weight) on a grid decimated to about 4 px per background sigma,
   then interpolated back. It follows shading and long-range texture; a bump of diameter d
   raises it by only ~(d / 2.355)^2 / (3 d)^2 ~ 2 % of its height.
2. Smoothing at the bump scale: a Gaussian of sigma d / 4 (close to the matched filter of a
   Gaussian bump, which has sigma d / 2.355, but narrower so that neighbours stay apart).
3. h-maxima with a noise-tied height ``h = h_sigma * 1.4826 * MAD`` of the background-removed,
   smoothed image (floored at 1 grey level; the MAD is taken once more without the points
   3 sigma above the median, so that many bumps do not inflate it). Exact h-maxima (reconstruction by dilation of
   ``r - h`` under ``r``; the pixels where ``r - R == h`` are the tops of the maxima whose
   dynamic is >= h; a peak must also stand >= h above the background, which rules out
   noise maxima that reach h only through a deep neighbouring saddle) is run on the smoothed image decimated so that the smoothing sigma is
   >= 1.5 decimated pixels: after step 2 the image holds nothing finer, so no peak is lost,
   and scikit-image's sorted-pixel reconstruction on ~1/9 of the pixels costs ~30 ms where
   `skimage.morphology.h_maxima` on the full grid costs ~0.6 s. (A bounded-iteration
   OpenCV reconstruction was rejected: on a noise background the reconstruction must
   propagate across the whole image, and a truncated one leaves false plateaus.) Each peak is
   then moved to the full-resolution maximum nearby with a parabolic sub-pixel step.
4. Size: the region around each peak above half its height (within its Voronoi cell, so
   neighbours do not merge). For a Gaussian-like bump the smoothing widens the half-height
   diameter in quadrature, so the diameter is corrected as
   ``sqrt(d_meas^2 - (2.355 sigma_s)^2)`` and the height by ``(d_meas / d)^2`` (volume is
   conserved): `height` and `diameter_*` estimate the bump's own peak and FWHM.

Before detection, `specimen_mask` leaves out what is not specimen (stub, tape, void beside
it, with a border zone of 2 bump diameters where the edge glints); the data bar is a masked
region already. A protrusion is counted when its peak lies in the analysed area (the image
minus the masked regions and the off-specimen part): one point per bump, so the count per
area is unbiased without an edge rule;
``touches_edge`` flags bumps whose half-height region reaches the image border (their size
is truncated).

Refused, like every SEM measurement: an image without a pixel size (MissingCalibration: a
count per mm2 needs one) and a blank image (UnreadableInput: all one grey value, or nearly).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from pipeline.errors import MeasurementError
from pipeline.ingest.dataarray import refuse_blank, require_pixel_size, valid_mask
from pipeline.metrology.form import remove_plane
from pipeline.numerics import MAD_TO_SIGMA

__all__ = ["estimate_bump_diameter_px", "find_height_protrusions", "find_protrusions",
           "specimen_mask"]

log = logging.getLogger(__name__)

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548
_SMOOTH_PER_DIAMETER = 0.25
_BACKGROUND_PER_DIAMETER = 3.0
_MIN_H_GREY = 1.0
SPECIMEN_SIGMA_PER_DIAMETER = 3.0   # the level map that tells specimen from what is beside it
SPECIMEN_MIN_SHARE = 0.02           # the smaller part must cover 2 % of the field ...
SPECIMEN_STEP_NOISE = 6.0           # ... and differ from the larger by 6 x the fine texture
SPECIMEN_BORDER_PER_DIAMETER = 2.0  # the specimen's border zone left out, in bump diameters


def _gaussian(img: np.ndarray, sigma_x: float, sigma_y: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y,
                            borderType=cv2.BORDER_REFLECT)


def _background(img: np.ndarray, weight: np.ndarray, sigma_px: float) -> np.ndarray:
    """Normalised-convolution Gaussian background on a decimated grid (float32)."""
    import cv2

    ny, nx = img.shape
    step = max(1, int(sigma_px / 4.0))
    small = (max(2, -(-nx // step)), max(2, -(-ny // step)))
    iw = cv2.resize(img * weight, small, interpolation=cv2.INTER_AREA)
    w = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    s = sigma_px * small[0] / nx
    num = _gaussian(iw, s, sigma_px * small[1] / ny)
    den = _gaussian(w, s, sigma_px * small[1] / ny)
    bg = num / np.maximum(den, 1e-6)
    return cv2.resize(bg, (nx, ny), interpolation=cv2.INTER_LINEAR)


def specimen_mask(img: np.ndarray, valid: np.ndarray, diameter_px: float) -> np.ndarray:
    """The part of the field that is specimen, its border zone left out.

    A low-magnification image may show the stub, tape or void beside the specimen; its
    border glints, and the step in level leaves a ridge after any background removal.
    Smoothed over ``SPECIMEN_SIGMA_PER_DIAMETER`` bump diameters, the field is split by Otsu
    into two levels; when the smaller part holds at least ``SPECIMEN_MIN_SHARE`` of the field
    and the step between the levels is at least ``SPECIMEN_STEP_NOISE`` x the fine texture's
    spread, the larger part is the specimen and ``SPECIMEN_BORDER_PER_DIAMETER`` bump
    diameters along its border are left out. Otherwise the specimen fills the field and
    `valid` is returned as it is.
    """
    import cv2
    from skimage.filters import threshold_otsu

    if valid.sum() < 100:
        return valid
    smooth = _gaussian(img, SPECIMEN_SIGMA_PER_DIAMETER * diameter_px,
                       SPECIMEN_SIGMA_PER_DIAMETER * diameter_px)
    v = smooth[valid]
    if np.ptp(v) <= 0:
        return valid
    t = float(threshold_otsu(v))
    hi = smooth > t
    share_hi = float((hi & valid).sum()) / float(valid.sum())
    minority = min(share_hi, 1.0 - share_hi)
    fine = img - smooth
    texture = _robust_sigma(fine[valid][::7])
    step = float(np.median(v[v > t]) - np.median(v[v <= t]))
    if minority < SPECIMEN_MIN_SHARE or step < SPECIMEN_STEP_NOISE * max(texture, 1e-6):
        return valid
    specimen = (hi if share_hi >= 0.5 else ~hi) & valid
    r = max(1, round(SPECIMEN_BORDER_PER_DIAMETER * diameter_px))
    off = (~specimen & valid).astype(np.uint8)
    near = cv2.dilate(off, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return specimen & ~near.astype(bool)


def estimate_bump_diameter_px(img: np.ndarray) -> float:
    """The FWHM diameter (px) at which the scale-normalised blob response peaks.

    Used when no bump diameter is given: a difference of Gaussians over a geometric series of
    scales, on the image with a coarse background (sigma = min(shape) / 8) removed; the
    scale whose 99.9th-percentile response is largest wins.
    """
    img = np.asarray(img, dtype=np.float32)
    big = min(img.shape) / 8.0
    r = img - _background(img, np.ones_like(img), big)
    sigmas = np.geomspace(1.0, max(1.5, min(img.shape) / 40.0), 12)
    k = 1.25
    best, best_s = -np.inf, sigmas[0]
    for s in sigmas:
        dog = (_gaussian(r, s, s) - _gaussian(r, k * s, k * s)) / (k - 1.0)
        score = float(np.percentile(dog[::2, ::2], 99.9))
        if score > best:
            best, best_s = score, s
    return float(best_s * math.sqrt(k) * FWHM_PER_SIGMA)


def _robust_sigma(sample: np.ndarray) -> float:
    """1.4826 * MAD, recomputed once without the points > 3 sigma above the median (bumps)."""
    med = float(np.median(sample))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(sample - med)))
    kept = sample[sample <= med + 3.0 * sigma]
    if kept.size >= 0.5 * sample.size and sigma > 0:
        med = float(np.median(kept))
        sigma = MAD_TO_SIGMA * float(np.median(np.abs(kept - med)))
    return sigma


def _refine(r: np.ndarray, yy: int, xx: int, half: int) -> tuple[int, int, float, float]:
    """Full-resolution argmax near (yy, xx), plus a parabolic sub-pixel offset."""
    ny, nx = r.shape
    y0, y1 = max(yy - half, 0), min(yy + half + 1, ny)
    x0, x1 = max(xx - half, 0), min(xx + half + 1, nx)
    win = r[y0:y1, x0:x1]
    iy, ix = np.unravel_index(int(np.argmax(win)), win.shape)
    py, px = y0 + iy, x0 + ix

    def parab(a, b, c):
        den = a - 2.0 * b + c
        return 0.0 if den >= 0 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))

    dy = parab(r[py - 1, px], r[py, px], r[py + 1, px]) if 0 < py < ny - 1 else 0.0
    dx = parab(r[py, px - 1], r[py, px], r[py, px + 1]) if 0 < px < nx - 1 else 0.0
    return int(py), int(px), py + dy, px + dx


def _hmaxima_peaks(r: np.ndarray, valid: np.ndarray, h: float, step: int) -> np.ndarray:
    """(K, 2) decimated-grid (row, col) of the tops of maxima with dynamic >= h."""
    from scipy import ndimage as ndi
    from skimage.morphology import reconstruction

    g = r[::step, ::step].astype(np.float64)
    rec = reconstruction(g - h, g, method="dilation")
    top = (g - rec) >= h * (1.0 - 1e-9)
    top &= valid[::step, ::step] & (g >= h)
    lab, n = ndi.label(top, structure=np.ones((3, 3)))
    if n == 0:
        return np.empty((0, 2), dtype=int)
    idx = ndi.maximum_position(g, lab, index=np.arange(1, n + 1))
    return np.asarray(idx, dtype=int).reshape(-1, 2) * step


def _given_diameter_px(dx: float, dy: float, bump_diameter_um: float | None,
                       bump_diameter_px: float | None) -> tuple[float | None, float | None]:
    """(x, y) bump diameter in pixels from the one given in micrometres or pixels; (None,
    None) when neither is. Raises ValueError for a non-positive or non-finite diameter."""
    d_x = d_y = None
    if bump_diameter_um is not None:
        d_x, d_y = bump_diameter_um / dx, bump_diameter_um / dy
    elif bump_diameter_px is not None:
        d_x = d_y = float(bump_diameter_px)
    if d_x is not None and not (d_x > 0 and d_y > 0 and math.isfinite(d_x * d_y)):
        raise ValueError(f"bump diameter must be > 0 and finite, got {d_x:g} x {d_y:g} px")
    return d_x, d_y


def _specimen_area(image, img: np.ndarray, field: np.ndarray,
                   d_mean: float) -> tuple[np.ndarray, int, float]:
    """(the analysed area: the specimen within the unmasked `field`, its pixel count, the
    share of the field left out as not specimen or its border). Raises MeasurementError
    when no specimen is left."""
    valid = specimen_mask(img, field, d_mean)
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise MeasurementError(image.attrs.get("source_path"),
                               "no specimen area left once the specimen's border is left out")
    border_share = 1.0 - n_valid / float(field.sum())
    return valid, n_valid, border_share


def _protrusion_rows(r: np.ndarray, valid: np.ndarray, peaks: np.ndarray, step: int,
                     d_max: float, fwhm_s2: float) -> list[dict]:
    """One dict per peak in the analysed area (``x_px``, ``y_px``, ``height``, ``area_px``,
    ``diameter_px``, ``touches_edge``): the peaks moved to the full-resolution maximum,
    sized on their half-height region within their Voronoi cell, smoothing (`fwhm_s2`,
    the smoothing's squared FWHM) removed."""
    refined = [_refine(r, y, x, step) for y, x in peaks]
    py = np.array([p[0] for p in refined])
    px = np.array([p[1] for p in refined])
    keep = valid[py, px]
    refined = [p for p, k in zip(refined, keep) if k]
    half = math.ceil(1.5 * d_max) + 2
    cy = np.array([p[0] for p in refined], dtype=float)
    cx = np.array([p[1] for p in refined], dtype=float)
    return [_protrusion_row(r, valid, i, peak, cy, cx, half, fwhm_s2)
            for i, peak in enumerate(refined)]


def _half_height_region(r: np.ndarray, valid: np.ndarray, i: int, iy: int, ix: int, cy: np.ndarray,
                        cx: np.ndarray, half: int) -> tuple[np.ndarray, int, int, int, int]:
    """(the region around peak `i` at (`iy`, `ix`) above half its height, within its Voronoi
    cell among the peaks (`cy`, `cx`), and the window rows y0:y1, columns x0:x1 it is cut
    from)."""
    from scipy import ndimage as ndi

    ny, nx = r.shape
    peak = float(r[iy, ix])
    y0, y1 = max(iy - half, 0), min(iy + half + 1, ny)
    x0, x1 = max(ix - half, 0), min(ix + half + 1, nx)
    win = r[y0:y1, x0:x1] >= 0.5 * peak
    win &= valid[y0:y1, x0:x1]
    near = (np.abs(cy - iy) <= 2 * half) & (np.abs(cx - ix) <= 2 * half)
    near[i] = False
    if near.any():  # Voronoi cell: closer to this peak than to any other
        gy, gx = np.mgrid[y0:y1, x0:x1]
        own = (gy - iy) ** 2 + (gx - ix) ** 2
        for j in np.flatnonzero(near):
            win &= own <= (gy - cy[j]) ** 2 + (gx - cx[j]) ** 2
    lab, _ = ndi.label(win)
    region = lab == lab[iy - y0, ix - x0]
    return region, y0, y1, x0, x1


def _protrusion_row(r: np.ndarray, valid: np.ndarray, i: int, refined_peak: tuple, cy: np.ndarray,
                    cx: np.ndarray, half: int, fwhm_s2: float) -> dict:
    """The table row of peak `i` (`refined_peak`: full-resolution row, column, sub-pixel row,
    column): position, height and half-height size with the smoothing removed, and whether
    the region reaches the image border."""
    ny, nx = r.shape
    iy, ix, fy, fx = refined_peak
    peak = float(r[iy, ix])
    region, y0, y1, x0, x1 = _half_height_region(r, valid, i, iy, ix, cy, cx, half)
    area_px = int(region.sum())
    d_meas2 = 4.0 * area_px / math.pi
    d2 = max(d_meas2 - fwhm_s2, 0.25 * d_meas2)
    touches = bool(
        (y0 == 0 and region[0].any()) or (y1 == ny and region[-1].any())
        or (x0 == 0 and region[:, 0].any()) or (x1 == nx and region[:, -1].any())
    )
    return {
        "x_px": fx, "y_px": fy, "height": peak * d_meas2 / d2,
        "area_px": math.pi * d2 / 4.0, "diameter_px": math.sqrt(d2),
        "touches_edge": touches,
    }


def _protrusion_table(rows: list[dict], dx: float, dy: float):
    """The protrusions' DataFrame: the pixel columns of `rows` and their micrometre
    equivalents for a pixel of `dx` x `dy` um (no ``attrs`` yet)."""
    import pandas as pd

    cols = ["x_px", "y_px", "height", "area_px", "diameter_px", "touches_edge"]
    df = pd.DataFrame(rows, columns=cols)
    df["touches_edge"] = df["touches_edge"].astype(bool)
    df.insert(0, "y_um", (df["y_px"] + 0.5) * dy)
    df.insert(0, "x_um", (df["x_px"] + 0.5) * dx)
    df["area_um2"] = df["area_px"] * dx * dy
    df["diameter_um"] = df["diameter_px"] * math.sqrt(dx * dy)
    return df


def find_protrusions(image, *, bump_diameter_um: float | None = None,
                     bump_diameter_px: float | None = None, h_sigma: float = 5.0):
    """Protrusions (bright bumps) on an SEM surface image.

    Parameters
    ----------
    image : xarray.DataArray, (M, N) uint8 or uint16
        An SEM image (`pipeline.ingest.dataarray.sem_dataarray`) with a pixel size
        (attrs ``pixel_size_um`` {"x", "y"}); attrs ``masked_regions`` (list of {"row0",
        "row1", "col0", "col1"}, half-open pixel ranges) are left out.
    bump_diameter_um : float, optional
        Typical bump diameter (full width at half height).
    bump_diameter_px : float, optional
        The same in pixels. When neither is given the scale is estimated with
        `estimate_bump_diameter_px`.
    h_sigma : float
        The h of the h-maxima in units of the robust noise (1.4826 * MAD).

    Returns
    -------
    pandas.DataFrame
        One row per protrusion: ``x_px``, ``y_px`` (sub-pixel, pixel centres at integers),
        ``height`` (grey levels above background), ``area_px``, ``diameter_px`` (equivalent
        diameter of the half-height region, smoothing removed), ``touches_edge``,
        ``x_um``, ``y_um`` (pixel centres at (i + 0.5) * dx, as the image coordinates),
        ``area_um2``, ``diameter_um``. ``attrs``: ``count``, ``per_mm2``, ``area_px``,
        ``area_mm2`` (the analysed area), ``h`` (grey levels), ``noise_sigma``,
        ``bump_diameter_px``, ``off_specimen_share`` (the share of the unmasked field left
        out as not specimen or its border).

    Raises
    ------
    MissingCalibration
        The image has no pixel size: a count per area needs one
        (`pipeline.ingest.dataarray.require_pixel_size`).
    UnreadableInput
        A blank image (all one grey value, or nearly;
        `pipeline.ingest.dataarray.refuse_blank`).
    MeasurementError
        Not a 2-D image, or everything masked.
    ValueError
        Non-positive `h_sigma` or bump diameter.

    Examples
    --------
    >>> import pipeline
    >>> bumps = find_protrusions(pipeline.read("sample_images/embodiment-1/surface-100x.tif"))
    >>> bumps.attrs["count"], round(bumps.attrs["per_mm2"], 1)
    (5, 16.3)
    """
    img = np.asarray(image.values, dtype=np.float32)
    if img.ndim != 2:
        raise MeasurementError(image.attrs.get("source_path"),
                               f"find_protrusions needs a 2-D image, got {img.ndim} dimensions")
    if h_sigma <= 0:
        raise ValueError(f"h_sigma must be > 0, got {h_sigma}")
    dx, dy = require_pixel_size(image)
    d_x, d_y = _given_diameter_px(dx, dy, bump_diameter_um, bump_diameter_px)
    valid = valid_mask(image)
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise MeasurementError(image.attrs.get("source_path"),
                               "every pixel of the image is in a masked region")
    refuse_blank(image)
    if d_x is None:
        d_x = d_y = estimate_bump_diameter_px(img)
        log.info("bump diameter estimated at %.1f px", d_x)
    d_mean = 0.5 * (d_x + d_y)
    valid, n_valid, border_share = _specimen_area(image, img, valid, d_mean)
    weight = valid.astype(np.float32)

    bg = _background(img, weight, _BACKGROUND_PER_DIAMETER * d_mean)
    resid = np.where(valid, img - bg, np.float32(0.0))
    ss_x, ss_y = max(_SMOOTH_PER_DIAMETER * d_x, 0.7), max(_SMOOTH_PER_DIAMETER * d_y, 0.7)
    r = _gaussian(resid, ss_x, ss_y)

    step = max(1, int(min(ss_x, ss_y) / 1.5))
    sample = r[::step, ::step][valid[::step, ::step]]
    noise = _robust_sigma(sample)
    h = max(h_sigma * noise, _MIN_H_GREY)

    peaks = _hmaxima_peaks(r, valid, h, step)
    rows = []
    if len(peaks):
        rows = _protrusion_rows(r, valid, peaks, step, max(d_x, d_y), (FWHM_PER_SIGMA ** 2) * ss_x * ss_y)
    df = _protrusion_table(rows, dx, dy)
    area_mm2 = n_valid * dx * dy * 1e-6
    df.attrs.update(
        count=len(df),
        per_mm2=len(df) / area_mm2,
        area_px=n_valid,
        area_mm2=area_mm2,
        h=float(h),
        noise_sigma=noise,
        bump_diameter_px=float(d_mean),
        off_specimen_share=float(border_share),
    )
    return df


def find_height_protrusions(height, *, threshold_um: float):
    """Protrusions on a height map: connected regions above the mean plane by a threshold.

    Parameters
    ----------
    height : xarray.DataArray, (M, N) float64 micrometres
        A height map (NaN = unmeasured) with ``attrs["pixel_size_um"]``.
    threshold_um : float
        Height above the least-squares mean plane (fitted on the valid points) from which a
        point belongs to a protrusion.

    Returns
    -------
    pandas.DataFrame
        One row per 8-connected region: ``x_um``, ``y_um`` (centroid, pixel centres at
        (i + 0.5) * dx), ``peak_um`` (highest point above the plane), ``area_um2``,
        ``touches_edge``. ``attrs``: ``count``, ``per_mm2`` (per measured area),
        ``threshold_um``, ``area_mm2``.
    """
    import pandas as pd
    from scipy import ndimage as ndi

    if not (threshold_um > 0 and math.isfinite(threshold_um)):
        raise ValueError(f"threshold_um must be > 0 and finite, got {threshold_um}")
    dx, dy = require_pixel_size(height)
    z = remove_plane(np.asarray(height.values, dtype=np.float64), dx, dy)
    finite = np.isfinite(z)
    above = np.zeros(z.shape, dtype=bool)
    np.greater(z, threshold_um, out=above, where=finite)
    lab, n = ndi.label(above, structure=np.ones((3, 3)))
    cols = ["x_um", "y_um", "peak_um", "area_um2", "touches_edge"]
    if n:
        idx = np.arange(1, n + 1)
        counts = ndi.sum_labels(above, lab, idx)
        cyx = np.asarray(ndi.center_of_mass(above, lab, idx)).reshape(-1, 2)
        peak = ndi.maximum(np.where(finite, z, -np.inf), lab, idx)
        border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        df = pd.DataFrame({
            "x_um": (cyx[:, 1] + 0.5) * dx, "y_um": (cyx[:, 0] + 0.5) * dy,
            "peak_um": np.asarray(peak, dtype=float), "area_um2": counts * dx * dy,
            "touches_edge": np.isin(idx, border),
        })
    else:
        df = pd.DataFrame({c: pd.Series(dtype=bool if c == "touches_edge" else float)
                           for c in cols})
    area_mm2 = int(finite.sum()) * dx * dy * 1e-6
    df.attrs.update(count=int(n), per_mm2=n / area_mm2, threshold_um=float(threshold_um),
                    area_mm2=area_mm2)
    return df
