"""Particle sizes on the realistic SEM model (`pipeline.synth.sem_scene`) with known truth.

Run by hand: ``python benchmarks/psd_synthetic.py [--seeds 3] [--shape 768 1024]``.

For the discrete-particle presets (``bimodal-40-80``, ``bimodal-25-70``, ``mono-40``) it runs
`find_particles` with each method (``learned``, the default, ``classic`` and ``seams``) and
`size_distribution` on the table, and prints per scene: the two mixture modes' geometric
means against the truth modes' medians (error in %), the small mode's number share against
the truth's (inner visible carbon primaries), the BIC mode count (1 expected for
``mono-40``, 2 for the others), and the shares of found regions that merge two or more
particles and of particles split into two or more regions (`merges_and_splits`). For the carbon-black aggregate presets (``cb-agg-40``,
``cb-agg-80``) it prints the aggregate-based primary diameter
(`pipeline.segmentation.aggregates.primary_size`) measured on the model's own aggregate
labels and on the connected foreground `find_particles` finds, against the truth's mean
primary diameter. Every number is printed beside its truth, scene by scene.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DISCRETE = ("bimodal-40-80", "bimodal-25-70", "mono-40")
AGGREGATES = ("cb-agg-40", "cb-agg-80")
METHODS = ("learned", "classic", "seams")


def truth_modes(truth: dict) -> tuple[list[float], float | None]:
    """Median diameter of each truth mode over the inner, visible carbon primaries, and the
    number share of the smallest mode (None with one mode)."""
    prim = [p for p in truth["primaries"]
            if p["phase"] == "carbon" and not p["touches_edge"] and p["mode"] is not None]
    modes = sorted({p["mode"] for p in prim})
    d = {m: np.array([p["diameter_nm"] for p in prim if p["mode"] == m]) for m in modes}
    med = [float(np.median(d[m])) for m in modes]
    order = np.argsort(med)
    share = None if len(modes) < 2 else len(d[modes[order[0]]]) / len(prim)
    return [med[i] for i in order], share


def merges_and_splits(owner: np.ndarray, labels: np.ndarray, min_px: int = 20) -> tuple[float, float]:
    """(merged share of the found regions, split share of the visible particles).

    A found region is a merge when two or more particles each have >= 50 % of their visible
    area in it; a particle is split when two or more found regions each hold >= 25 % of its
    visible area. Particles under `min_px` visible pixels are not counted.
    """
    sel = (owner > 0) & (labels > 0)
    pairs, counts = np.unique(np.stack([owner[sel], labels[sel]]), axis=1, return_counts=True)
    n_own = np.bincount(owner.ravel())
    big = n_own[pairs[0]] >= min_px
    frac = counts / np.maximum(n_own[pairs[0]], 1)
    holds = big & (frac >= 0.5)
    merged_regions = np.unique(pairs[1][holds], return_counts=True)
    n_merged = int((merged_regions[1] >= 2).sum())
    pieces = big & (frac >= 0.25)
    split_particles = np.unique(pairs[0][pieces], return_counts=True)
    n_split = int((split_particles[1] >= 2).sum())
    n_found = int(np.unique(labels[labels > 0]).size)
    n_truth = int((n_own[1:] >= min_px).sum())
    return n_merged / max(n_found, 1), n_split / max(n_truth, 1)


def discrete_row(preset: str, seed: int, shape, method: str) -> str:
    from pipeline.errors import ElectrodeQCError
    from pipeline.segmentation.particles import find_particles
    from pipeline.segmentation.psd import size_distribution
    from pipeline.synth import sem_dataarray

    da, truth = sem_dataarray(preset, shape=shape, seed=seed)
    t_modes, t_share = truth_modes(truth)
    try:
        table, labels = find_particles(da, method=method, return_labels=True)
        dist = size_distribution(table, n_boot=0)
    except ElectrodeQCError as exc:
        return f"{preset:14s} {seed:4d} {method:8s} refused: {exc.problem}"
    modes = sorted(dist["modes"], key=lambda m: m["mean_nm"])
    if len(t_modes) == 2:
        errs = [100 * (m["mean_nm"] - t) / t for m, t in zip(modes, t_modes)]
        share = modes[0]["number_share"]
        cells = (f"{modes[0]['mean_nm']:6.1f} {t_modes[0]:6.1f} {errs[0]:+6.1f} "
                 f"{modes[1]['mean_nm']:6.1f} {t_modes[1]:6.1f} {errs[1]:+6.1f} "
                 f"{share:5.2f} {t_share:5.2f} {share - t_share:+6.2f}")
    else:
        err = 100 * (dist["x50_nm"] - t_modes[0]) / t_modes[0]
        cells = f"{dist['x50_nm']:6.1f} {t_modes[0]:6.1f} {err:+6.1f} (x50, one mode)" + " " * 23
    merged, split = merges_and_splits(truth["owner"], labels)
    return (f"{preset:14s} {seed:4d} {method:8s} {dist['n']:5d} {cells} {dist['bic_k']:5d} "
            f"{100 * merged:7.1f} {100 * split:6.1f}")


def aggregate_row(preset: str, seed: int, shape, methods) -> str:
    from skimage.measure import label

    from pipeline.errors import ElectrodeQCError
    from pipeline.segmentation.aggregates import primary_size
    from pipeline.segmentation.particles import find_particles
    from pipeline.synth import sem_dataarray

    da, truth = sem_dataarray(preset, shape=shape, seed=seed)
    px_nm = float(truth["pixel_nm"])
    d_true = float(np.mean([p["diameter_nm"] for p in truth["primaries"]]))
    cells = []
    try:
        own = primary_size(truth["aggregate_owner"], px_nm, n_boot=200)
        cells.append(f"{own['mean_nm']:6.1f} {100 * (own['mean_nm'] / d_true - 1):+6.1f}")
    except ElectrodeQCError as exc:
        cells.append(f"refused: {exc.problem}")
    for method in methods:
        try:
            _, labels = find_particles(da, return_labels=True, method=method)
            fg = primary_size(label(labels > 0, connectivity=2), px_nm, n_boot=200)
            cells.append(f"{fg['mean_nm']:6.1f} {100 * (fg['mean_nm'] / d_true - 1):+6.1f} "
                         f"{fg['n_aggregates']:4d}")
        except ElectrodeQCError as exc:
            cells.append(f"refused: {exc.problem}")
    return f"{preset:14s} {seed:4d} {d_true:6.1f} | " + " | ".join(cells)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--shape", type=int, nargs=2, default=(768, 1024))
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    opts = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    shape = tuple(opts.shape)
    print(f"{'preset':14s} {'seed':>4s} {'method':8s} {'n':>5s} {'mode1':>6s} {'truth':>6s} "
          f"{'err%':>6s} {'mode2':>6s} {'truth':>6s} {'err%':>6s} {'share':>5s} {'truth':>5s} "
          f"{'diff':>6s} {'bic_k':>5s} {'merged%':>7s} {'split%':>6s}")
    for preset in DISCRETE:
        for seed in range(opts.seeds):
            for method in opts.methods:
                print(discrete_row(preset, seed, shape, method), flush=True)
    print(f"\n{'preset':14s} {'seed':>4s} {'truth':>6s} | {'model aggregates':>13s} err% | "
          + " | ".join(f"foreground ({m}): d err% n_agg" for m in opts.methods))
    for preset in AGGREGATES:
        for seed in range(opts.seeds):
            print(aggregate_row(preset, seed, shape, opts.methods), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
