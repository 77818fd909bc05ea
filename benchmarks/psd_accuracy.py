"""Particle-size accuracy of `find_particles` on real SEM images with manual masks.

Run by hand: ``python benchmarks/psd_accuracy.py [--set DIR] [--json FILE] [--methods M ...]
[--self-check]``.
Reads the 10 Zeiss TiO2 images and their manual masks from
``../shared/realdata/sem-labelled/bam_tio2`` (never copied; see that set's SOURCES.md) and
scores our three methods (the default first) and two anchors, each on the image as
`pipeline.read` gives it (data zone cropped, 712 rows; the mask is cropped to the same rows):

- ``ours``: `find_particles` with its default, ``method="learned"`` (the network trained on
  the synthetic SEM model only, its thresholds and run scale chosen on synthetic validation
  scenes; these images train nothing); ``classic``: ``method="classic"`` (threshold and
  shape); ``seams``: ``method="seams"`` (intensity-aware splitting). The particles that
  count are the rows where `pipeline.segmentation.psd.counted` is true (carbon, not
  touching the edge, not a merge suspect), with the table's centroid and ECD. A refusal
  (ElectrodeQCError) scores 0 found.
- ``skimage`` (anchor): Gaussian sigma 1, Otsu, holes filled, regions < 20 px dropped,
  Euclidean distance transform, `peak_local_max` seeds 50 nm apart, watershed of -distance
  in the foreground.
- ``porespy`` (anchor, optional: ``pip install .[bench]``): `porespy.filters.snow_partitioning`
  on the same Otsu foreground with its documented defaults ``r_max=4`` px (the peak-search
  window radius, 29 nm here) and ``sigma=0.4`` px (smoothing of the distance map). The SNOW
  trims (saddle points, nearby peaks) are scale-free, so no parameter is tied to the pixel.
  Anchors' particles are the regions not touching the image border.

Metric. Truth: mask > 0 labelled with 4-connectivity, regions < 20 px dropped (the slivers
along the masks' separation lines); inner truth = regions not touching the image border
(the crop's last row is border). A predicted particle matches when its centroid, rounded to
the nearest pixel, lies in a truth instance that no other predicted centroid hits and its
ECD is within 0.8-1.25x that instance's ECD. Recall = matched inner truth / inner truth;
precision = matched predictions (any truth instance, inner or on the border) / predictions;
F1 = 2PR / (P + R). Count error = (n - n_truth) / n_truth; x50 = median ECD (number
weighted) of the counted particles; x50 error against the inner truth's x50. A method that
finds nothing has x50 NaN, scored as 100 % x50 error in the means. An image passes with
|x50 err| <= 10 %, |count err| <= 20 % and F1 >= 0.7. Times are wall clock of the method
call only (segmentation, not scoring), the median of ``--repeat`` calls (3) per method and
image, after one untimed warm-up image. Target: ours passes on >= 90 % of the images (9 of 10), beats every anchor on mean
F1 and mean |x50 err|, and takes <= 2x the skimage anchor's mean time.

The scoring functions (`truth_labels`, `predicted_from_labels`, `predicted_from_table`,
`score_image`) are importable (``tests/segmentation/test_particles_real.py`` uses them);
synthetic scenes are scored by ``benchmarks/psd_synthetic.py``. ``--self-check`` scores each truth against itself
(inner truth centroids and ECDs as the prediction): F1 1.0 and 0 % errors expected.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SET = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "sem-labelled" / "bam_tio2"
MIN_REGION_PX = 20  # slivers along the masks' separation lines (SOURCES.md)
SEED_DISTANCE_NM = 50.0  # skimage anchor: seeds at least the smallest particle's diameter apart
SNOW_R_MAX_PX = 4  # porespy defaults (documented in snow_partitioning)
SNOW_SIGMA_PX = 0.4
ECD_RATIO = (0.8, 1.25)
PASS_X50_PCT, PASS_COUNT_PCT, PASS_F1 = 10.0, 20.0, 0.7
PASS_IMAGE_SHARE = 0.9
TIME_RATIO_MAX = 2.0
METHODS = ("ours", "classic", "seams", "skimage", "porespy")
OURS = {"ours": "learned", "classic": "classic", "seams": "seams"}  # find_particles(method=...)


# --- metric -------------------------------------------------------------------------------

def drop_small(labels: np.ndarray, min_px: int = MIN_REGION_PX) -> np.ndarray:
    """`labels` ((M, N) int) without the regions under `min_px` pixels, relabelled 1..n."""
    from skimage.segmentation import relabel_sequential

    area = np.bincount(labels.ravel())
    keep = area >= min_px
    keep[0] = False
    return relabel_sequential(np.where(keep[labels], labels, 0))[0]


def truth_labels(mask: np.ndarray) -> np.ndarray:
    """Instances of a manual mask ((M, N), particles > 0): 4-connected, >= 20 px, 1..n."""
    from skimage.measure import label

    return drop_small(label(mask > 0, connectivity=1))


def inner_ids(labels: np.ndarray) -> np.ndarray:
    """Sorted ids (> 0) of the regions of `labels` that do not touch the image border."""
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    ids = np.unique(labels)
    return np.setdiff1d(ids[ids > 0], edge)


def ecd_nm(area_px: np.ndarray, px_nm: float) -> np.ndarray:
    """Equivalent circle diameter in nm of areas in pixels (square pixels of `px_nm`)."""
    return 2.0 * np.sqrt(np.asarray(area_px, float) / math.pi) * px_nm


def predicted_from_labels(labels: np.ndarray, px_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Centroids ((K, 2) pixel (row, col)) and ECDs ((K,) nm) of the inner regions."""
    ids = inner_ids(labels)
    flat = labels.ravel()
    n = int(labels.max()) + 1
    area = np.bincount(flat, minlength=n).astype(float)
    rows, cols = np.indices(labels.shape)
    cy = np.bincount(flat, rows.ravel(), minlength=n)[ids] / area[ids]
    cx = np.bincount(flat, cols.ravel(), minlength=n)[ids] / area[ids]
    return np.column_stack([cy, cx]), ecd_nm(area[ids], px_nm)


def predicted_from_table(table, px_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (pixel (row, col)) and ECDs (nm) of the counted rows of a `find_particles`
    table (pixel centre i sits at ``(i + 0.5) * px_nm``)."""
    from pipeline.segmentation.psd import counted

    rows = table[counted(table)]
    cy = rows["y_nm"].to_numpy(float) / px_nm - 0.5
    cx = rows["x_nm"].to_numpy(float) / px_nm - 0.5
    return np.column_stack([cy, cx]), rows["ecd_nm"].to_numpy(float)


def match(truth: np.ndarray, centroids: np.ndarray, pred_ecd_nm: np.ndarray,
          px_nm: float) -> np.ndarray:
    """Truth id matched by each prediction (0 = none).

    A prediction matches the truth instance its rounded centroid lies in when no other
    prediction's centroid lies in it and its ECD is within `ECD_RATIO` of the instance's.
    """
    if not len(centroids):
        return np.zeros(0, np.int64)
    pix = np.floor(np.asarray(centroids, float) + 0.5).astype(np.int64)
    pix = np.clip(pix, 0, np.array(truth.shape) - 1)
    hit = truth[pix[:, 0], pix[:, 1]].astype(np.int64)
    n = int(truth.max()) + 1
    hits = np.bincount(hit, minlength=n)
    t_ecd = ecd_nm(np.bincount(truth.ravel(), minlength=n), px_nm)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(pred_ecd_nm, float) / t_ecd[hit]
    ok = (hit > 0) & (hits[hit] == 1) & (ratio >= ECD_RATIO[0]) & (ratio <= ECD_RATIO[1])
    return np.where(ok, hit, 0)


def f1_score(tp_pred: int, n_pred: int, tp_truth: int, n_truth: int) -> tuple[float, float, float]:
    """(precision, recall, F1); 0 where a denominator is 0."""
    p = tp_pred / n_pred if n_pred else 0.0
    r = tp_truth / n_truth if n_truth else 0.0
    return p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)


def pct_error(value: float, ref: float) -> float:
    return 100.0 * (value - ref) / ref if ref else float("nan")


def score_image(truth: np.ndarray, centroids: np.ndarray, pred_ecd_nm: np.ndarray,
                px_nm: float) -> dict:
    """Score predicted particles against a truth label image.

    Parameters
    ----------
    truth : (M, N) int ndarray
        Truth instances (`truth_labels`), 0 = background.
    centroids : (K, 2) ndarray
        Predicted particle centroids in pixels (row, col).
    pred_ecd_nm : (K,) ndarray
        Their ECDs in nm.
    px_nm : float
        Pixel size in nm (square pixels).

    Returns
    -------
    dict
        ``truth_n, truth_x50_nm`` (inner truth), ``n, x50_nm, count_err_pct, x50_err_pct,
        precision, recall, f1``.
    """
    t_ids = inner_ids(truth)
    t_ecd = ecd_nm(np.bincount(truth.ravel())[t_ids], px_nm)
    t_x50 = float(np.median(t_ecd)) if len(t_ecd) else float("nan")
    pred_ecd_nm = np.asarray(pred_ecd_nm, float)
    x50 = float(np.median(pred_ecd_nm)) if len(pred_ecd_nm) else float("nan")
    hit = match(truth, centroids, pred_ecd_nm, px_nm)
    p, r, f1 = f1_score(int((hit > 0).sum()), len(hit), int(np.isin(hit, t_ids).sum()), len(t_ids))
    return {"truth_n": len(t_ids), "truth_x50_nm": t_x50, "n": len(pred_ecd_nm), "x50_nm": x50,
            "count_err_pct": pct_error(len(pred_ecd_nm), len(t_ids)),
            "x50_err_pct": pct_error(x50, t_x50), "precision": p, "recall": r, "f1": f1}


def passes(s: dict) -> bool:
    return bool(abs(s["x50_err_pct"]) <= PASS_X50_PCT and abs(s["count_err_pct"]) <= PASS_COUNT_PCT
                and s["f1"] >= PASS_F1)


# --- methods: each returns (centroids, ecd_nm) and is timed by the caller ---------------

def otsu_foreground(img: np.ndarray) -> np.ndarray:
    """Gaussian sigma 1, Otsu threshold, holes filled, regions < 20 px dropped."""
    from scipy import ndimage as ndi
    from skimage.filters import gaussian, threshold_otsu

    smooth = gaussian(img.astype(np.float32), sigma=1.0, preserve_range=True)
    fg = ndi.binary_fill_holes(smooth > threshold_otsu(smooth))
    return drop_small(ndi.label(fg)[0]) > 0


def skimage_labels(img: np.ndarray, px_nm: float) -> np.ndarray:
    """Otsu foreground, distance-transform watershed from seeds `SEED_DISTANCE_NM` apart."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    fg = otsu_foreground(img)
    dist = ndi.distance_transform_edt(fg)
    seeds = peak_local_max(dist, min_distance=max(1, round(SEED_DISTANCE_NM / px_nm)),
                           labels=ndi.label(fg)[0], exclude_border=False)
    markers = np.zeros(img.shape, np.int32)
    markers[tuple(seeds.T)] = np.arange(1, len(seeds) + 1)
    return watershed(-dist, markers, mask=fg)


def import_porespy():
    """porespy, or None when not installed. Its import sets ``np.seterr`` and a root logging
    handler; both are put back."""
    import logging

    err, root = np.geterr(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        import porespy
    except ImportError:
        return None
    finally:
        np.seterr(**err)
        root.handlers[:] = handlers
        root.setLevel(level)
    return porespy


def porespy_labels(img: np.ndarray, px_nm: float, porespy) -> np.ndarray:
    """SNOW partitioning (PoreSpy defaults) of the Otsu foreground."""
    fg = otsu_foreground(img)
    with np.errstate(divide="ignore", invalid="ignore"):
        return porespy.filters.snow_partitioning(fg, r_max=SNOW_R_MAX_PX, sigma=SNOW_SIGMA_PX).regions


def run_method(name: str, da, px_nm: float, porespy=None):
    """(centroids, ecd_nm, seconds, refusal or None) of one method on one image."""
    from pipeline.errors import ElectrodeQCError
    from pipeline.segmentation.particles import find_particles

    img = np.asarray(da.values)
    t0 = time.perf_counter()
    if name in OURS:
        try:
            table, labels = find_particles(da, return_labels=True, method=OURS[name])
        except ElectrodeQCError as exc:
            return np.zeros((0, 2)), np.zeros(0), time.perf_counter() - t0, exc.problem
        seconds = time.perf_counter() - t0
        centroids, ecd = predicted_from_table(table, px_nm)
        _check_table(table, labels, px_nm, da.attrs.get("source_path"))
        return centroids, ecd, seconds, None
    labels = skimage_labels(img, px_nm) if name == "skimage" else porespy_labels(img, px_nm, porespy)
    seconds = time.perf_counter() - t0
    return *predicted_from_labels(labels, px_nm), seconds, None


def _check_table(table, labels: np.ndarray, px_nm: float, path) -> None:
    """The counted rows' areas as their labels index the label image (the table and the
    label image must describe the same regions, or the scoring would be quietly wrong)."""
    from pipeline.segmentation.psd import counted

    rows = table[counted(table)]
    area = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    if not np.array_equal(area[rows["label"].to_numpy()], rows["area_px"].to_numpy()):
        raise RuntimeError(f"{path}: find_particles' table and label image disagree on areas")


# --- the benchmark ---------------------------------------------------------------------

def load_image(img_path: Path):
    """(DataArray, cropped mask, px_nm) of one image of the set."""
    import tifffile

    import pipeline

    da = pipeline.read(img_path)
    px = da.attrs["pixel_size_um"]
    if not math.isclose(px["x"], px["y"], rel_tol=1e-6):
        raise NotImplementedError(f"{img_path}: non-square pixels {px}; ECDs assume square ones")
    mask = tifffile.imread(img_path.with_name(f"{img_path.stem}_mask.tif"))[: da.shape[0]]
    return da, mask, float(px["x"]) * 1e3


def images(set_dir: Path) -> list[Path]:
    return [p for p in sorted(set_dir.glob("*.tif")) if not p.stem.endswith("_mask")]


def self_check(set_dir: Path) -> int:
    """Each truth scored against its own inner instances: F1 1.0 and 0 % errors expected.

    An instance whose centroid lies outside itself (a crescent: a particle partly hidden by a
    neighbour) cannot be matched by its own centroid; such instances are listed, and the
    truth is scored again without them, where precision 1.0 shows the rest all match.
    """
    bad = 0
    for path in images(set_dir):
        _, mask, px_nm = load_image(path)
        truth = truth_labels(mask)
        centroids, ecd = predicted_from_labels(truth, px_nm)
        s = score_image(truth, centroids, ecd, px_nm)
        ok = s["f1"] == 1.0 and s["count_err_pct"] == 0.0 and s["x50_err_pct"] == 0.0
        bad += not ok
        line = (f"{path.stem:8s} truth n {s['truth_n']:4d}  F1 {s['f1']:.3f}  count err "
                f"{s['count_err_pct']:+.1f} %  x50 err {s['x50_err_pct']:+.1f} %  {'ok' if ok else 'FAIL'}")
        pix = np.floor(centroids + 0.5).astype(np.int64)
        inside = truth[pix[:, 0], pix[:, 1]] == inner_ids(truth)
        if not inside.all():
            rest = score_image(truth, centroids[inside], ecd[inside], px_nm)
            line += (f": {int((~inside).sum())} instance(s) with the centroid outside "
                     f"(ids {inner_ids(truth)[~inside].tolist()}); without them P "
                     f"{rest['precision']:.3f} R {rest['recall']:.3f}")
        print(line)
    print(f"self-check: {'PASS' if not bad else f'FAIL on {bad} image(s)'}")
    return 1 if bad else 0


def summarise(per_image: list[dict], name: str) -> dict:
    rows = [r[name] for r in per_image]
    x50 = [100.0 if math.isnan(s["x50_err_pct"]) else abs(s["x50_err_pct"]) for s in rows]
    return {"mean_abs_x50_err_pct": float(np.mean(x50)),
            "mean_abs_count_err_pct": float(np.mean([abs(s["count_err_pct"]) for s in rows])),
            "mean_f1": float(np.mean([s["f1"] for s in rows])),
            "mean_seconds": float(np.mean([s["seconds"] for s in rows])),
            "images_passing": int(sum(passes(s) for s in rows)), "images": len(rows)}


def target(summary: dict, name: str = "ours") -> dict:
    ours = summary[name]
    anchors = [m for m in summary if m not in OURS]
    need = math.ceil(PASS_IMAGE_SHARE * ours["images"])
    return {
        "images_passing": ours["images_passing"] >= need,
        "beats_anchors": all(ours["mean_f1"] > summary[a]["mean_f1"]
                             and ours["mean_abs_x50_err_pct"] < summary[a]["mean_abs_x50_err_pct"]
                             for a in anchors),
        "time": ours["mean_seconds"] <= TIME_RATIO_MAX * summary["skimage"]["mean_seconds"],
        "images_needed": need, "anchors": anchors,
    }


def _cols(s: dict) -> str:
    return (f"{s['n']:5d} {s['count_err_pct']:+5.0f} {s['x50_nm']:6.1f} {s['x50_err_pct']:+6.1f} "
            f"{s['f1']:4.2f} {s['seconds']:5.2f}")


def print_table(per_image: list[dict], methods: list[str]) -> None:
    group = "    n   dn%    x50  dx50%   F1     s"
    print(f"{'':8s} {'truth':>12s} |" + " |".join(f" {m:^{len(group) - 1}s}" for m in methods))
    print(f"{'image':8s} {'n':>4s} {'x50 nm':>7s} |" + " |".join(group for _ in methods))
    for r in per_image:
        t = r[methods[0]]
        print(f"{r['image']:8s} {t['truth_n']:4d} {t['truth_x50_nm']:7.1f} |"
              + " |".join(_cols(r[m]) for m in methods)
              + "".join(f"  {m} refused: {r[m]['refused']}" for m in methods if r[m].get("refused")))


def _print_means(summary: dict) -> None:
    print()
    print(f"{'method':8s} {'mean|dx50|%':>12s} {'mean|dn|%':>10s} {'mean F1':>8s} {'mean s':>7s} "
          f"{'passing':>8s}")
    for m, s in summary.items():
        print(f"{m:8s} {s['mean_abs_x50_err_pct']:12.1f} {s['mean_abs_count_err_pct']:10.1f} "
              f"{s['mean_f1']:8.2f} {s['mean_seconds']:7.2f} {s['images_passing']:4d}/{s['images']}")


def _print_target(summary: dict, tgt: dict, name: str) -> None:
    ours = summary[name]
    verdict = {True: "PASS", False: "FAIL"}
    print(f"\n{name} (find_particles method={OURS[name]!r}):")
    print(f"\ntarget: {name} passes (|dx50| <= {PASS_X50_PCT:g} %, |dn| <= {PASS_COUNT_PCT:g} %, "
          f"F1 >= {PASS_F1:g}) on >= {tgt['images_needed']} of {ours['images']} images: "
          f"{ours['images_passing']} -> {verdict[tgt['images_passing']]}")
    print(f"target: {name}' mean F1 and mean |dx50| beat {', '.join(tgt['anchors'])}: "
          f"{verdict[tgt['beats_anchors']]}")
    ratio = ours["mean_seconds"] / summary["skimage"]["mean_seconds"]
    print(f"target: {name}' mean time <= {TIME_RATIO_MAX:g}x skimage's: {ratio:.2f}x -> "
          f"{verdict[tgt['time']]}")
    overall = tgt["images_passing"] and tgt["beats_anchors"] and tgt["time"]
    print(f"target: {verdict[overall]}")


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def run(set_dir: Path, *, json_path: Path | None = None, only: list[str] | None = None,
        repeat: int = 3) -> int:
    porespy = import_porespy()
    methods = [m for m in METHODS if (m != "porespy" or porespy is not None)
               and (only is None or m in only or m == "skimage")]
    if porespy is None:
        print("porespy: not installed (pip install .[bench])")
    paths = images(set_dir)
    warm, *_ = load_image(paths[0])
    for m in methods:  # warm-up: imports, JIT compilation, caches
        run_method(m, warm, float(warm.attrs["pixel_size_um"]["x"]) * 1e3, porespy)
    per_image = []
    for path in paths:
        da, mask, px_nm = load_image(path)
        truth = truth_labels(mask)
        row = {"image": path.stem, "px_nm": px_nm}
        for m in methods:
            centroids, ecd, seconds, refused = run_method(m, da, px_nm, porespy)
            # the methods are deterministic: repeats only steady the time (median)
            times = [seconds] + [run_method(m, da, px_nm, porespy)[2] for _ in range(repeat - 1)]
            row[m] = score_image(truth, centroids, ecd, px_nm) | {"seconds": float(np.median(times))}
            if refused:
                row[m]["refused"] = refused
        per_image.append(row)
    print_table(per_image, methods)
    summary = {m: summarise(per_image, m) for m in methods}
    ours = [name for name in OURS if name in methods]
    tgt = {name: target(summary, name) for name in ours}
    _print_means(summary)
    for name in ours:
        _print_target(summary, tgt[name], name)
    if json_path is not None:
        params = {"min_region_px": MIN_REGION_PX, "skimage_seed_distance_nm": SEED_DISTANCE_NM,
                  "porespy_r_max_px": SNOW_R_MAX_PX, "porespy_sigma_px": SNOW_SIGMA_PX,
                  "porespy_version": getattr(porespy, "__version__", None), "ecd_ratio": ECD_RATIO,
                  "pass": {"x50_pct": PASS_X50_PCT, "count_pct": PASS_COUNT_PCT, "f1": PASS_F1}}
        doc = {"set": str(set_dir), "params": params, "images": per_image, "summary": summary,
               "target": tgt}
        json_path.write_text(json.dumps(_json_safe(doc), indent=1) + "\n")
        print(f"wrote {json_path}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", type=Path, default=DEFAULT_SET, help="folder of <id>.tif + <id>_mask.tif")
    ap.add_argument("--json", type=Path, help="write every number to this JSON file")
    ap.add_argument("--methods", nargs="+", choices=METHODS,
                    help="score only these (the skimage anchor is always scored)")
    ap.add_argument("--self-check", action="store_true", help="score each truth against itself")
    ap.add_argument("--repeat", type=int, default=3,
                    help="time each method this many times per image; the median counts")
    opts = ap.parse_args(argv)
    if not opts.set.is_dir() or not images(opts.set):
        print(f"{opts.set}: no labelled SEM set here (expected <id>.tif with <id>_mask.tif; see "
              "../shared/realdata/sem-labelled/SOURCES.md); give its folder with --set DIR",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    if opts.self_check:
        return self_check(opts.set)
    return run(opts.set, json_path=opts.json, only=opts.methods, repeat=max(1, opts.repeat))


if __name__ == "__main__":
    sys.exit(main())
