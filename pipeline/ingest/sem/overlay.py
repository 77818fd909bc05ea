"""Find what instruments paint over the stored raster: data bars and burned-in annotations.

Two different things, handled differently:

- A *painted data bar* (Hitachi, Zeiss) replaces the bottom rows of the image with a flat
  strip carrying text. It is found from the bottom as the run of rows in which one grey
  value covers at least half the row (`painted_bar_rows`), and the reader crops it.
- *Burned-in annotations* (JEOL: accelerating voltage, magnification, scale bar) are drawn
  as saturated text with a black outline over the live image, without a flat strip. The
  rows around them still hold image data, so the region is reported and masked from
  analysis, not cropped (`burned_in_region`).
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["burned_in_region", "painted_bar_rows", "row_mode_fraction"]

log = logging.getLogger(__name__)


def row_mode_fraction(row: np.ndarray) -> float:
    """Fraction of the pixels of one row that share its most common grey value."""
    r = np.asarray(row).ravel()
    if r.size == 0:
        return 0.0
    if r.dtype == np.uint8:
        counts = np.bincount(r, minlength=256)
    else:
        _, counts = np.unique(r, return_counts=True)
    return float(counts.max()) / r.size


def painted_bar_rows(
    image: np.ndarray,
    *,
    min_fraction: float = 0.5,
    max_bar_fraction: float = 0.25,
    edge_rows: int = 2,
    min_run_after_edge: int = 8,
) -> int:
    """Height in rows of a data bar painted over the bottom of `image` (0 if none).

    The bar is the run of rows, from the bottom, in which one grey value covers at least
    `min_fraction` of the row. Some instruments (Zeiss) frame the bar with a one-row border
    of mixed values at the very bottom; up to `edge_rows` such rows are skipped (and counted
    in the bar) when a run of at least `min_run_after_edge` uniform rows follows them.

    Parameters
    ----------
    image : (M, N) uint8 or uint16 ndarray
        The stored raster, bar included.
    min_fraction : float
        A row belongs to the bar when one grey value covers at least this fraction of it.
    max_bar_fraction : float
        A run taller than this fraction of the image is not a data bar (a flat or blank
        image): 0 is returned and a warning logged.
    edge_rows, min_run_after_edge : int
        The bottom border allowance described above.

    Returns
    -------
    int
        Number of bottom rows to crop.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    ny = img.shape[0]
    limit = int(ny * max_bar_fraction)
    for skip in range(min(edge_rows, ny - 1) + 1):
        run = _uniform_run(img, ny - 1 - skip, min_fraction, limit + 1)
        if run > limit:
            log.warning(
                "uniform rows run more than %.0f %% of the image height from the bottom; "
                "that is a flat image, not a data bar: nothing cropped", 100 * max_bar_fraction
            )
            return 0
        if run and (skip == 0 or run >= min_run_after_edge):
            return skip + run
    return 0


def _uniform_run(img: np.ndarray, start: int, min_fraction: float, stop_after: int) -> int:
    """Rows from `start` upwards whose mode covers `min_fraction`, counting at most `stop_after`."""
    run = 0
    for i in range(start, -1, -1):
        if run >= stop_after or row_mode_fraction(img[i]) < min_fraction:
            break
        run += 1
    return run


def burned_in_region(
    image: np.ndarray,
    *,
    search_fraction: float = 0.25,
    outline_px: int = 2,
    min_pixels_per_row: int = 3,
    max_row_gap: int = 16,
    pad: int = 2,
) -> dict[str, int | str] | None:
    """Bounding box of saturated, black-outlined text and bars drawn near the image bottom.

    Seeds are pixels at the dtype's maximum with a pixel of value 0 within `outline_px`:
    instruments outline their white labels in black so they read on any background, and
    live SEM signal almost never jumps from full scale to zero. Each seed grows to its whole
    connected saturated glyph (or bar) plus the black outline touching it.

    Parameters
    ----------
    image : (M, N) uint8 or uint16 ndarray
    search_fraction : float
        Only the bottom fraction of the rows is searched (where JEOL draws its labels).
    outline_px : int
        Distance within which a black outline pixel must lie.
    min_pixels_per_row : int
        Rows with fewer annotation pixels are noise.
    max_row_gap : int
        Annotation rows closer than this join one region (a scale bar above its label).
    pad : int
        Pixels added on every side, for anti-aliased edges.

    Returns
    -------
    dict or None
        ``{"row0", "row1", "col0", "col1", "reason"}`` (half-open, full-image pixel
        indices), or None when nothing is found.
    """
    from scipy import ndimage

    img = np.asarray(image)
    if img.ndim != 2 or not np.issubdtype(img.dtype, np.integer):
        raise ValueError(f"image must be a 2-D integer array, got {img.dtype} {img.shape}")
    ny, nx = img.shape
    top = ny - max(1, round(ny * search_fraction))
    band = img[top:]
    sat = band == np.iinfo(img.dtype).max
    dark = band == 0
    if not (sat.any() and dark.any()):
        return None
    grow = np.ones((3, 3), bool)
    near_dark = ndimage.binary_dilation(dark, structure=grow, iterations=outline_px)
    seeds = sat & near_dark
    if not seeds.any():
        return None
    labels, _ = ndimage.label(sat, structure=grow)
    glyphs = np.isin(labels, np.unique(labels[seeds]))
    mask = glyphs | (dark & ndimage.binary_dilation(glyphs, structure=grow,
                                                     iterations=outline_px))
    per_row = mask.sum(axis=1)
    rows = np.flatnonzero(per_row >= min_pixels_per_row)
    if rows.size == 0:
        return None
    # Group rows into runs separated by gaps; keep the run with most annotation pixels.
    groups = np.split(rows, np.flatnonzero(np.diff(rows) > max_row_gap) + 1)
    best = max(groups, key=lambda g: int(per_row[g[0]:g[-1] + 1].sum()))
    r0, r1 = int(best[0]), int(best[-1]) + 1
    cols = np.flatnonzero(mask[r0:r1].any(axis=0))
    region: dict[str, int | str] = {
        "row0": max(0, top + r0 - pad),
        "row1": min(ny, top + r1 + pad),
        "col0": max(0, int(cols[0]) - pad),
        "col1": min(nx, int(cols[-1]) + 1 + pad),
        "reason": "burned-in text and scale bar",
    }
    log.debug("burned-in annotation region %s", region)
    return region
