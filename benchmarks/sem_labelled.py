"""Particle segmentation on real SEM images with manual masks, beside an anchor method.

Run by hand: ``python benchmarks/sem_labelled.py [--set ../shared/realdata/sem-labelled/bam_tio2]``.
Reads the images and masks from the shared folder (never copied). For each image it prints,
for `find_particles` ("ours") and for a plain scikit-image pipeline (the anchor: Gaussian
smoothing, Otsu threshold, holes filled, distance-transform watershed from
``peak_local_max`` seeds 50 nm apart), the count and the number-weighted ECD x50 of the inner particles
(not touching the border), their errors against the manual mask, and the object F1 of a
one-to-one match at IoU >= 0.5. The mask is labelled with 4-connectivity and regions under
20 px dropped (the separation-line slivers; see the set's SOURCES.md). Both methods see the
image as `pipeline.read` gives it (data zone cropped) and are scored on the same rows.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SET = ROOT.parent / "shared" / "realdata" / "sem-labelled" / "bam_tio2"
MIN_MASK_PX = 20  # slivers along the masks' separation lines


def _inner(labels: np.ndarray) -> np.ndarray:
    """Label ids of regions that do not touch the image border."""
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    ids = np.unique(labels)
    return np.setdiff1d(ids[ids > 0], edge)


def _ecd_nm(labels: np.ndarray, ids: np.ndarray, px_nm: float) -> np.ndarray:
    area = np.bincount(labels.ravel())
    return np.sqrt(4.0 * area[ids] / math.pi) * px_nm


def _drop_small(labels: np.ndarray, min_px: int) -> np.ndarray:
    """`labels` without the regions under `min_px` pixels, relabelled 1..n."""
    from skimage.segmentation import relabel_sequential

    area = np.bincount(labels.ravel())
    keep = area >= min_px
    keep[0] = False
    return relabel_sequential(np.where(keep[labels], labels, 0))[0]


def truth_labels(mask: np.ndarray) -> np.ndarray:
    from skimage.measure import label

    return _drop_small(label(mask > 0, connectivity=1), MIN_MASK_PX)


ANCHOR_SEED_NM = 50.0  # seeds at least the smallest particle's diameter apart (SOURCES.md)


def anchor_labels(img: np.ndarray, px_nm: float) -> np.ndarray:
    """Otsu + distance-transform watershed (scikit-image), seeds `ANCHOR_SEED_NM` apart."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    smooth = gaussian(img.astype(np.float32), sigma=1.0, preserve_range=True)
    fg = ndi.binary_fill_holes(smooth > threshold_otsu(smooth))
    fg = _drop_small(ndi.label(fg)[0], MIN_MASK_PX) > 0
    dist = ndi.distance_transform_edt(fg)
    seeds = peak_local_max(dist, min_distance=max(1, round(ANCHOR_SEED_NM / px_nm)),
                           labels=ndi.label(fg)[0], exclude_border=False)
    markers = np.zeros(img.shape, np.int32)
    markers[tuple(seeds.T)] = np.arange(1, len(seeds) + 1)
    return watershed(-dist, markers, mask=fg)


def f1(truth: np.ndarray, found: np.ndarray) -> float:
    """Object F1: one-to-one matches at IoU >= 0.5 (unique at that threshold), over inner
    truth regions and inner found regions."""
    t_ids, f_ids = _inner(truth), _inner(found)
    if not len(t_ids) or not len(f_ids):
        return 0.0
    both = (truth > 0) & (found > 0)
    pairs = truth[both].astype(np.int64) * (int(found.max()) + 1) + found[both]
    uniq, inter = np.unique(pairs, return_counts=True)
    t, f = uniq // (int(found.max()) + 1), uniq % (int(found.max()) + 1)
    at = np.bincount(truth.ravel())
    af = np.bincount(found.ravel())
    iou = inter / (at[t] + af[f] - inter)
    ok = (iou >= 0.5) & np.isin(t, t_ids) & np.isin(f, f_ids)
    matched = int(ok.sum())
    precision, recall = matched / len(f_ids), matched / len(t_ids)
    return 0.0 if matched == 0 else 2 * precision * recall / (precision + recall)


def score(labels: np.ndarray, truth: np.ndarray, px_nm: float) -> dict:
    ids = _inner(labels)
    ecd = _ecd_nm(labels, ids, px_nm)
    return {"n": len(ids), "x50": float(np.median(ecd)) if len(ecd) else float("nan"),
            "f1": f1(truth, labels)}


def _columns(r: dict, ref: dict, seconds: float) -> str:
    dn = 100 * (r["n"] - ref["n"]) / ref["n"]
    dx = 100 * (r["x50"] - ref["x50"]) / ref["x50"]
    return f"{r['n']:6d} {dn:+6.0f} {r['x50']:6.1f} {dx:+7.1f} {r['f1']:5.2f} {seconds:5.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", type=Path, default=DEFAULT_SET)
    opts = ap.parse_args()
    if not opts.set.is_dir():
        sys.exit(f"{opts.set}: no labelled set here")
    import tifffile

    import pipeline
    from pipeline.errors import ElectrodeQCError
    from pipeline.segmentation.particles import find_particles

    print(f"{'image':8s} {'truth n':>7s} {'x50 nm':>7s} | {'ours n':>6s} {'dn %':>6s} "
          f"{'x50':>6s} {'dx50 %':>7s} {'F1':>5s} {'s':>5s} | {'anchor n':>8s} {'dn %':>6s} "
          f"{'x50':>6s} {'dx50 %':>7s} {'F1':>5s} {'s':>5s}")
    rows = []
    for img_path in sorted(opts.set.glob("*.tif")):
        if img_path.stem.endswith("_mask"):
            continue
        da = pipeline.read(img_path)
        px_nm = float(da.attrs["pixel_size_um"]["x"]) * 1e3
        mask = tifffile.imread(img_path.with_name(f"{img_path.stem}_mask.tif"))[: da.shape[0]]
        truth = truth_labels(mask)
        ref = score(truth, truth, px_nm)
        t0 = time.perf_counter()
        try:
            _, labels = find_particles(da, return_labels=True)
            ours = score(labels, truth, px_nm)
        except ElectrodeQCError as exc:
            ours = {"n": 0, "x50": float("nan"), "f1": 0.0, "error": exc.problem}
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        anchor = score(anchor_labels(np.asarray(da.values), px_nm), truth, px_nm)
        t_anchor = time.perf_counter() - t0
        rows.append((ref, ours, anchor))
        print(f"{img_path.stem:8s} {ref['n']:7d} {ref['x50']:7.1f} | "
              f"{_columns(ours, ref, t_ours)} |   {_columns(anchor, ref, t_anchor)}"
              + (f"  ours refused: {ours['error']}" if "error" in ours else ""))

    def mean_abs(k, i):
        return np.nanmean([abs(r[i][k] - r[0][k]) / r[0][k] * 100 for r in rows])

    for i, name in ((1, "ours"), (2, "anchor")):
        print(f"{name:6s}: mean |dx50| {mean_abs('x50', i):.1f} %, mean |dn| "
              f"{mean_abs('n', i):.1f} %, mean F1 {np.mean([r[i]['f1'] for r in rows]):.2f}")


if __name__ == "__main__":
    main()
