"""Porosity from SEM cross-sections against the truth of the realistic cross-section model.

Run by hand: ``python benchmarks/porosity_accuracy.py [--seeds 3] [--methods ...]``.

Scenes of `pipeline.synth.xsec` (SE rims, pore-back, shading, depth darkening, curtaining,
PSF, shot noise) at true porosity 30, 40, 45, 50 and 60 % and feature radius 3-8 and 8-20
px, ``--seeds`` each. Per case, each method's error in points (measured - true porosity of
the section plane inside the layer), then per method the worst case, the mean error over
the cases (its sign bias) and the time. Methods:

- ``rim-aware``: `porosity_from_cross_section` (the default method);
- ``mid-median``: the same function with ``method="mid-median"`` (one global threshold);
- ``otsu``: PoreSpy's ``metrics.porosity`` on a plain Otsu mask of the layer, the layer
  given from the truth (an anchor that knows where the layer is; ``pip install -e
  ".[bench]"``).

Then the cases the method must not measure as if resolved: features of radius 1.5-2.5 px
(under-resolved: refused or flagged).

Target: every case within +-1.0 point, the mean error within +-0.3 point. (The method's
uncertainty carries its worst case here, `cross_section.METHOD_BIAS`, so a case outside the
target is still inside its U.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
POROSITIES = (0.30, 0.40, 0.45, 0.50, 0.60)
RADII = {"3-8 px": (3.0, 8.0), "8-20 px": (8.0, 20.0)}
SHAPE = (512, 768)
METHODS = ("rim-aware", "mid-median", "otsu")
CASE_MAX, MEAN_MAX = 1.0, 0.3


def otsu_porosity(img: np.ndarray, truth: dict) -> float:
    """PoreSpy's porosity of a plain Otsu mask inside the truth's layer."""
    import porespy
    from skimage.filters import threshold_otsu

    rows = np.arange(img.shape[0])[:, None]
    layer = (rows >= np.asarray(truth["top_rows"])[None, :]) & \
            (rows <= np.asarray(truth["bottom_rows"])[None, :])
    pores = img <= threshold_otsu(img[layer])
    return float(porespy.metrics.porosity(pores, mask=layer))


def measure(method: str, da, truth: dict) -> tuple[float | None, str]:
    """(porosity or None, a note: the refusal or the flags)."""
    from pipeline.errors import ElectrodeQCError
    from pipeline.segmentation.cross_section import porosity_from_cross_section

    if method == "otsu":
        return otsu_porosity(np.asarray(da.values), truth), ""
    try:
        r = porosity_from_cross_section(da, method=method)
    except ElectrodeQCError as exc:
        return None, f"refused: {exc.problem}"
    return r["porosity_frac"], ",".join(r["flags"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    opts = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from pipeline.synth.xsec import xsec_dataarray

    errors: dict[str, list[float]] = {m: [] for m in opts.methods}
    times: dict[str, list[float]] = {m: [] for m in opts.methods}
    print(f"{'radius':8s} {'true %':>7s} {'seed':>4s} | "
          + " | ".join(f"{m:>12s} err" for m in opts.methods))
    for label, radius in RADII.items():
        for phi in POROSITIES:
            for seed in range(opts.seeds):
                da, truth = xsec_dataarray(SHAPE, seed=seed, porosity=phi, radius_px=radius)
                true = truth["porosity_frac"]
                cells = []
                for method in opts.methods:
                    t0 = time.perf_counter()
                    value, note = measure(method, da, truth)
                    times[method].append(time.perf_counter() - t0)
                    if value is None:
                        errors[method].append(float("nan"))
                        cells.append(f"{note[:16]:>16s}")
                        continue
                    err = 100.0 * (value - true)
                    errors[method].append(err)
                    cells.append(f"{100 * value:6.2f} {err:+6.2f}" + ("*" if note else " "))
                print(f"{label:8s} {100 * true:7.2f} {seed:4d} | " + " | ".join(cells), flush=True)
    print("\n(* flagged)")
    print(f"{'method':12s} {'worst':>7s} {'mean':>7s} {'mean|e|':>7s} {'refused':>7s} {'s/image':>8s}")
    for method in opts.methods:
        e = np.asarray(errors[method])
        ok = e[np.isfinite(e)]
        worst = float(ok[np.argmax(np.abs(ok))]) if ok.size else float("nan")
        print(f"{method:12s} {worst:+7.2f} {ok.mean():+7.2f} {np.abs(ok).mean():7.2f} "
              f"{int((~np.isfinite(e)).sum()):7d} {np.median(times[method]):8.3f}")
    first = opts.methods[0]
    e = np.asarray(errors[first])
    case_ok = bool(np.all(np.isfinite(e)) and np.all(np.abs(e) <= CASE_MAX))
    mean_ok = bool(np.isfinite(e).all() and abs(float(e.mean())) <= MEAN_MAX)
    print(f"\ntarget ({first}): every case within +-{CASE_MAX} point: {'PASS' if case_ok else 'FAIL'}; "
          f"mean within +-{MEAN_MAX}: {'PASS' if mean_ok else 'FAIL'}")
    print("\nunder-resolved features (radius 1.5-2.5 px), expected refused or flagged:")
    for seed in range(opts.seeds):
        da, truth = xsec_dataarray(SHAPE, seed=seed, porosity=0.40, radius_px=(1.5, 2.5))
        for method in opts.methods:
            if method == "otsu":
                continue
            value, note = measure(method, da, truth)
            shown = "refused" if value is None else f"{100 * value:.2f} (true {100 * truth['porosity_frac']:.2f})"
            print(f"  seed {seed} {method:12s} {shown} {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
