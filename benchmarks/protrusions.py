"""Time protrusion detection on a 1280 x 960 100x surface image against scikit-image.

Run by hand: ``python benchmarks/protrusions.py [--repeat N]``. Prints the median time of
`pipeline.segmentation.protrusions.find_protrusions` and of a plain scikit-image pipeline
doing the same steps (gaussian background subtraction, gaussian smoothing, MAD-tied
h_maxima, label, regionprops), both on the same synthetic image in the same run, their
ratio, and the count each finds. Target: ours <= 0.3 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "segmentation"))

PIXEL_UM = 1.2
D_PX = 20.0


def median_time(fn, repeat: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def skimage_baseline(img: np.ndarray, h_sigma: float = 5.0) -> int:
    from skimage.filters import gaussian
    from skimage.measure import label, regionprops
    from skimage.morphology import h_maxima

    f = img.astype(np.float64)
    r = gaussian(f - gaussian(f, sigma=3 * D_PX), sigma=D_PX / 4)
    mad = np.median(np.abs(r - np.median(r)))
    peaks = h_maxima(r, h_sigma * 1.4826 * mad)
    props = regionprops(label(peaks), intensity_image=r)
    return len(props)


def main(argv=None) -> int:
    from test_protrusions import sem, surface

    from pipeline.segmentation.protrusions import find_protrusions

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=11)
    args = ap.parse_args(argv)
    img, truth = surface(0, n=150, shape=(960, 1280))
    da = sem(img)
    t_ours, df = median_time(lambda: find_protrusions(da, bump_diameter_um=D_PX * PIXEL_UM),
                             args.repeat)
    t_base, n_base = median_time(lambda: skimage_baseline(img), args.repeat)
    print(f"image 1280 x 960, {len(truth)} bumps; median of {args.repeat}")
    print(f"find_protrusions : {t_ours * 1e3:8.1f} ms  ({len(df)} found)  target <= 300 ms")
    print(f"skimage baseline : {t_base * 1e3:8.1f} ms  ({n_base} found)")
    print(f"ratio ours/base  : {t_ours / t_base:8.3f}  (speed-up {t_base / t_ours:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
