"""Particle size distribution from a particle table (`find_particles`).

Statistics use the inner particles of one phase (carbon by default): rows that touch the
image edge or a masked region, and merge suspects, are left out and counted.

Weighting (ISO 9276-2): number weighting gives every particle weight 1 (Q0); volume
weighting gives weight ``d^3`` (Q3, spheres). Quantiles ``x10, x50, x90`` of a weighted
sample: the particles sorted by diameter, each placed at the middle of its own step of the
cumulative weight, ``P_i = (W_{i-1} + w_i / 2) / W`` (Hazen plotting positions; for equal
weights this is numpy's ``method="hazen"``), and ``x_q`` interpolated linearly in ``P``
(clamped to the smallest / largest diameter). ``mean_nm`` is the weighted arithmetic mean
(number: D[1,0]; volume: D[4,3]); ``gsd`` the weighted geometric standard deviation
``exp(sd(ln d))``. 95 % confidence intervals are percentile bootstrap intervals over
``n_boot`` resamples of the particles (seeded).

Modes: a Gaussian mixture on ``ln(ECD)`` (scikit-learn, full covariance, 1-D) with k = 2
forced, and k chosen by BIC over 1..3. Real size distributions are not exactly log-normal
(a particle partly hidden by a neighbour measures small, a few merges measure large), and
with ~2 000 particles BIC may add a broad component at the same mean only to fit those
tails. ``bic_k`` therefore counts the *resolved* modes of the BIC-best mixture: components
sorted by mean, neighbours with Ashman's separation
``D = sqrt(2) |mu1 - mu2| / sqrt(s1^2 + s2^2) < 2`` counted as one mode (single linkage);
the raw component count is ``bic_k_raw``. A ``bic_k`` other than 2 is a flag. Each mode:
``mean_nm`` = ``exp(mu)`` (geometric mean), ``gsd`` = ``exp(sigma)``, ``sd_nm`` = the
standard deviation in nm of that log-normal, ``number_share`` (the mixture weight),
``volume_share`` (responsibility-weighted ``d^3`` share), ``n`` (particles assigned to it).
A mode with fewer than 500 particles is flagged.

Resolution gate, on the measured sizes: with the smallest mode's diameter ``d_min`` (the
smaller k = 2 mean when the two are resolved, else the geometric mean diameter), a pixel
coarser than ``d_min / 20`` is a flag and one coarser than ``d_min / 10`` a MeasurementError
(`find_particles` applies the same gate up front when given ``min_diameter_nm``).
"""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np

from pipeline.errors import MeasurementError
from pipeline.resultdict import SizeDistribution
from pipeline.segmentation.aggregates import compare_with_instances, primary_mean

__all__ = ["aggregate_primaries", "counted", "resolved_modes", "size_distribution", "weighted_quantiles"]

log = logging.getLogger(__name__)

QUANTILES = (0.10, 0.50, 0.90)
MIN_MODE_N = 500
LARGE_NM = 100.0
ASHMAN_D_MIN = 2.0


def weighted_quantiles(d: np.ndarray, w: np.ndarray, qs=QUANTILES) -> np.ndarray:
    """Quantiles of diameters ``d`` with weights ``w`` (Hazen positions, linear in P).

    ``d`` and ``w`` may be 2-D (one sample a row), with ``d`` sorted along the last axis.
    """
    d = np.atleast_2d(d)
    w = np.atleast_2d(w)
    cw = np.cumsum(w, axis=-1)
    tot = cw[:, -1:]
    p = (cw - 0.5 * w) / tot
    out = np.empty((d.shape[0], len(qs)))
    rows = np.arange(d.shape[0])
    last = d.shape[1] - 1
    for j, q in enumerate(qs):
        k = (p < q).sum(axis=1)  # first position with P >= q
        k1 = np.clip(k, 1, last)
        k0 = k1 - 1
        p0, p1 = p[rows, k0], p[rows, k1]
        frac = np.clip((q - p0) / np.where(p1 > p0, p1 - p0, 1.0), 0.0, 1.0)
        val = d[rows, k0] + frac * (d[rows, k1] - d[rows, k0])
        val = np.where(k == 0, d[:, 0], np.where(k > last, d[:, last], val))
        out[:, j] = val
    return out


def _stats(d: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Rows of (x10, x50, x90, mean, gsd) for sorted samples d (2-D) with weights w."""
    q = weighted_quantiles(d, w)
    tot = w.sum(axis=1)
    mean = (w * d).sum(axis=1) / tot
    ln = np.log(d)
    mln = (w * ln).sum(axis=1) / tot
    gsd = np.exp(np.sqrt(np.maximum((w * (ln - mln[:, None]) ** 2).sum(axis=1) / tot, 0.0)))
    return np.column_stack([q, mean, gsd])


def _weighted_summary(d_sorted, power, ds):
    """Estimates and (``ds``: sorted bootstrap resamples, one a row) percentile CIs."""
    w = d_sorted[None, :] ** power
    est = _stats(d_sorted[None, :], w)[0]
    names = ["x10_nm", "x50_nm", "x90_nm", "mean_nm", "gsd"]
    out = {k: float(v) for k, v in zip(names, est)}
    if ds is not None:
        boot = _stats(ds, ds**power if power else np.ones_like(ds))
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        for k, a, b in zip(names, lo, hi):
            out[k.replace("_nm", "") + "_ci95" + ("_nm" if k.endswith("_nm") else "")] = [
                float(a), float(b)]
    out["n"] = int(d_sorted.size)
    return out


def _mixture(ln_d: np.ndarray, k: int, seed: int):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    qs = np.quantile(ln_d, (np.arange(k) + 0.5) / k).reshape(-1, 1)
    gm = GaussianMixture(n_components=k, covariance_type="full", means_init=qs,
                         random_state=seed, max_iter=300, tol=1e-4)
    # One thread: the k-means start and the EM steps on a few thousand diameters are too
    # small to share, and in a busy process (a --jobs 1 run, gate, a notebook) OpenMP and
    # BLAS threads only wait for each other; the fit is the same.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported through gm.converged_
        gm.fit(ln_d.reshape(-1, 1))
    return gm


def resolved_modes(gm, d_min: float = ASHMAN_D_MIN) -> int:
    """Number of modes of a 1-D mixture after merging neighbours with Ashman's D < d_min."""
    mu = gm.means_.ravel()
    var = gm.covariances_.ravel()
    order = np.argsort(mu)
    n = 1
    for a, b in itertools.pairwise(order):
        dist = math.sqrt(2.0) * abs(mu[b] - mu[a]) / math.sqrt(var[a] + var[b])
        n += dist >= d_min
    return int(n)


def _modes(d: np.ndarray, gm) -> list[dict]:
    x = np.log(d).reshape(-1, 1)
    resp = gm.predict_proba(x)
    hard = resp.argmax(axis=1)
    vol = d**3
    mu = gm.means_.ravel()
    sig = np.sqrt(gm.covariances_.ravel())
    out = []
    for j in np.argsort(mu):
        s2 = sig[j] ** 2
        out.append({
            "mean_nm": float(math.exp(mu[j])),
            "gsd": float(math.exp(sig[j])),
            "sd_nm": float(math.exp(mu[j] + s2 / 2) * math.sqrt(math.expm1(s2))),
            "number_share": float(gm.weights_[j]),
            "volume_share": float((resp[:, j] * vol).sum() / vol.sum()),
            "n": int((hard == j).sum()),
        })
    return out


def _resolution_gate(attrs: dict, gm2, d: np.ndarray, path, flags: list[str]):
    """Pixel against the smallest measured mode: a flag beyond 1/20, a refusal beyond 1/10.

    The smallest mode is the smaller k = 2 mean when the mixture resolves two modes, else the
    geometric mean of all diameters (a forced split of one mode would understate it).
    """
    px = attrs.get("pixel_size_nm")
    if not px:
        return
    px_nm = max(float(px["x"]), float(px["y"]))
    if gm2 is not None and resolved_modes(gm2) == 2:
        smallest = float(np.exp(gm2.means_.min()))
    else:
        smallest = float(np.exp(np.mean(np.log(d))))
    if px_nm > smallest / 10.0:
        raise MeasurementError(path, f"pixel {px_nm:.3g} nm is coarser than a tenth of the "
                               f"smallest mode ({smallest:.3g} nm); sizes are not measurable "
                               "at this magnification")
    if px_nm > smallest / 20.0 and not any(f.startswith("coarse pixel") for f in flags):
        flags.append(f"coarse pixel: {px_nm:.3g} nm > 1/20 of the smallest mode "
                     f"({smallest:.3g} nm)")


def counted(particles, phase: str = "carbon") -> np.ndarray:
    """Which rows of a `find_particles` table count in the statistics of `phase`.

    A particle counts when it is of that phase, inside the field (``touches_edge`` false),
    not rejected as a merge (``merge_suspect`` false) and has a finite positive ECD. Every
    statistic of a size distribution (the notebook's `size_distribution`, ``particles``,
    ``run`` and the per-file record) is taken over exactly these rows.
    """
    ecd = particles["ecd_nm"].to_numpy(float)
    return ((particles["phase"].to_numpy() == phase)
            & ~particles["touches_edge"].to_numpy(bool)
            & ~particles["merge_suspect"].to_numpy(bool)
            & np.isfinite(ecd) & (ecd > 0))


def aggregate_primaries(particles, phase: str = "carbon") -> np.ndarray:
    """The primary diameter (nm) of each whole aggregate of `phase` in a particle table.

    One value per aggregate (per ``path`` and ``aggregate`` when the table pools several
    images), from the ``aggregate_primary_nm`` column of `find_particles`; aggregates cut
    by the field's border or too small have none. Empty when the table has no such column.
    """
    if "aggregate_primary_nm" not in particles.columns:
        return np.empty(0)
    ph = particles[particles["phase"].to_numpy() == phase]
    keys = ["path", "aggregate"] if "path" in ph.columns else ["aggregate"]
    agg = ph[ph["aggregate"].to_numpy() > 0].drop_duplicates(keys)
    d = agg["aggregate_primary_nm"].to_numpy(float)
    return d[np.isfinite(d)]


def _primary_size(ph, num: dict, n_boot: int, seed: int, flags: list[str]) -> dict | None:
    """The aggregate-based primary size of the rows `ph` (one phase) beside the instance x50."""
    d = aggregate_primaries(ph)
    if d.size == 0:
        return None
    res = primary_mean(d, n_boot=max(n_boot, 100) if n_boot else 0, seed=seed)
    res.update(method="aggregate area and perimeter (ASTM D3849 style), mean over aggregates",
               instance_x50_nm=num["x50_nm"], difference_nm=res["mean_nm"] - num["x50_nm"])
    ci = num.get("x50_ci95_nm")
    if ci is not None and math.isfinite(res["u95_nm"]):
        cmp = compare_with_instances(res, num["x50_nm"], 0.5 * (ci[1] - ci[0]))
        res["combined_u95_nm"] = cmp["combined_u95_nm"]
        if cmp["flag"]:
            flags.append(cmp["flag"])
    flags.extend(f"primary size: {f}" for f in res.pop("flags"))
    return res


def size_distribution(particles, *, weights: str = "number", n_boot: int = 200, seed: int = 0,
                      phase: str = "carbon") -> dict:
    """Size distribution of the particles of one phase.

    Parameters
    ----------
    particles : pandas.DataFrame
        The table from `find_particles` (``ecd_nm``, ``phase``, ``touches_edge``,
        ``merge_suspect``; ``attrs`` with ``ag_area_frac`` and ``flags``).
    weights : {"number", "volume"}
        Which weighting gives the top-level ``x10_nm``/``x50_nm``/``x90_nm``; both are
        always under ``"number"`` and ``"volume"``.
    n_boot : int
        Bootstrap resamples for the 95 % intervals (0: none).
    seed : int
        Seed of the bootstrap and the mixture fits.
    phase : str
        Phase whose distribution is computed ("carbon"); silver is summarised under
        ``"silver"``.

    Returns
    -------
    dict
        ``n, x10_nm, x50_nm, x90_nm, modes, bic_k, share_ge_100nm, merge_suspect_share,
        ag_area_frac, flags`` (the command-line contract) plus ``number``, ``volume``,
        ``mode_ratio``, ``mode_difference_nm``, ``bic``, ``bic_k_raw``, ``excluded``,
        ``n_ge_100nm``, ``primary_size``, ``silver``.

        ``primary_size`` (None when the table has no aggregate column or no whole
        aggregate): the mean primary diameter over the phase's inner aggregates from their
        area and perimeter (`pipeline.segmentation.aggregates`, the ASTM D3849 way), with
        ``ci95_nm``/``u95_nm`` (bootstrap over aggregates), ``n_aggregates``, the number
        median ``instance_x50_nm`` beside it and ``difference_nm``; when the two differ by
        more than their combined U95 a flag says so.

    Examples
    --------
    >>> import pipeline
    >>> table = pipeline.find_particles(pipeline.read("sample_images/embodiment-1/psd-01.tif"))
    >>> d = size_distribution(table)
    >>> d["bic_k"], [round(m["mean_nm"]) for m in d["modes"]]
    (2, [40, 80])
    """
    if weights not in ("number", "volume"):
        raise ValueError(f"weights must be 'number' or 'volume', not {weights!r}")
    attrs = dict(getattr(particles, "attrs", {}) or {})
    path = attrs.get("source_path")
    flags = list(attrs.get("flags", []))
    ph = particles[particles["phase"] == phase]
    edge = ph["touches_edge"].to_numpy(bool)
    merge = ph["merge_suspect"].to_numpy(bool)
    d = np.sort(ph["ecd_nm"].to_numpy(float)[counted(ph, phase)])
    if d.size < 2:
        raise MeasurementError(path, f"only {d.size} {phase} particles left after excluding "
                               f"{int(edge.sum())} at the edge and {int((merge & ~edge).sum())} "
                               "merge suspects; no distribution")
    rng = np.random.default_rng(seed)
    ds = None
    if n_boot > 0:  # the same resamples serve both weightings (d is sorted, so is d[idx])
        ds = d[np.sort(rng.integers(0, d.size, (n_boot, d.size)), axis=1)]
    num = _weighted_summary(d, 0, ds)
    vol = _weighted_summary(d, 3, ds)
    ln_d = np.log(d)
    fits = {}
    bic = {}
    for k in (1, 2, 3):
        if d.size >= 3 * k:
            fits[k] = _mixture(ln_d, k, seed)
            bic[k] = float(fits[k].bic(ln_d.reshape(-1, 1)))
    bic_k_raw = min(bic, key=bic.get)
    bic_k = resolved_modes(fits[bic_k_raw])
    if bic_k != 2:
        flags.append(f"BIC chooses k={bic_k} modes, not 2")
    modes = _modes(d, fits[2]) if 2 in fits else []
    if 2 in fits and not fits[2].converged_:
        flags.append("the k=2 mixture fit did not converge")
    _resolution_gate(attrs, fits.get(2), d, path, flags)
    for i, m in enumerate(modes, 1):
        if m["n"] < MIN_MODE_N:
            flags.append(f"mode {i} ({m['mean_nm']:.0f} nm) has {m['n']} particles "
                         f"(< {MIN_MODE_N})")
    inner_all = ph[~edge]
    large = inner_all["ecd_nm"].to_numpy(float) >= LARGE_NM
    n_large = int(large.sum())
    ms_share = (float(inner_all["merge_suspect"].to_numpy(bool)[large].mean())
                if n_large else 0.0)
    silver = particles[(particles["phase"] == "silver") & ~particles["touches_edge"]]
    primary = _primary_size(ph, num, n_boot, seed, flags)
    top = num if weights == "number" else vol
    out = {
        "n": int(d.size),
        "x10_nm": top["x10_nm"], "x50_nm": top["x50_nm"], "x90_nm": top["x90_nm"],
        "modes": modes,
        "bic_k": int(bic_k),
        "share_ge_100nm": float(large.mean()) if large.size else 0.0,
        "merge_suspect_share": ms_share,
        "ag_area_frac": attrs.get("ag_area_frac"),
        "flags": flags,
        "weights": weights,
        "number": num,
        "volume": vol,
        "mode_ratio": (modes[1]["mean_nm"] / modes[0]["mean_nm"]) if len(modes) == 2 else None,
        "mode_difference_nm": (modes[1]["mean_nm"] - modes[0]["mean_nm"])
        if len(modes) == 2 else None,
        "bic": {str(k): v for k, v in bic.items()},
        "bic_k_raw": int(bic_k_raw),
        "excluded": {"touches_edge": int(edge.sum()),
                     "merge_suspect": int((merge & ~edge).sum())},
        "n_ge_100nm": n_large,
        "primary_size": primary,
        "silver": {"n": len(silver),
                   "x50_nm": float(np.median(silver["ecd_nm"])) if len(silver) else None,
                   "area_frac": attrs.get("ag_area_frac")},
    }
    log.debug("%s: n=%d bic_k=%d", path, d.size, bic_k)
    return SizeDistribution(out)
