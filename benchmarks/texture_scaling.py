"""Surface texture against surfalize, and how its time grows with the map, in the same run.

Run by hand: ``python benchmarks/texture_scaling.py [--repeat N] [--largest 8192]``
(surfalize from the ``bench`` extra; it is GPL and only timed here, never imported by the
package).

1. Ours: `pipeline.metrology.texture.surface_texture` (plane, band-pass 2.5/80 um, Sa..Sku,
   Sdq, Sdr, Sal, Str, Spd, the outlier policy) against surfalize 0.19 doing level,
   band-pass and Sa, Sq, Sz, Sdq, Sdr, Sal, Str and Spd on the same map, at 2048 x 1536 and
   4096 x 3072; runs interleaved, medians. Target: ratio <= 0.10.
2. Ours alone at 1024 x 768 up to 8192 x 6144 (each 4x the pixels of the last): the growth
   of the median time per 4x pixels. Target: <= x4.3 (linear is x4).

The map: a tilted plane, a 150 um wave along x and Gaussian-filtered roughness, 0.139 um
pixels (a confocal 50x field). Prints the parameters of both tools at the first size so
that a change in what is computed shows beside the times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PIXEL_UM = 0.139
LAMBDA_S, LAMBDA_C = 2.5, 80.0
SIZES = ((768, 1024), (1536, 2048), (3072, 4096), (6144, 8192))
ANCHOR_SIZES = ((1536, 2048), (3072, 4096))
SURFALIZE_PARAMS = ("Sa", "Sq", "Sz", "Sdq", "Sdr", "Sal", "Str", "Spd")


def make_map(ny: int, nx: int, seed: int = 0) -> np.ndarray:
    """The test surface (um), built row block by row block to keep the peak low."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    rough = rng.standard_normal((ny, nx))
    gaussian_filter(rough, 3.0, output=rough)
    rough *= 0.3
    x = np.arange(nx) * PIXEL_UM
    y = np.arange(ny) * PIXEL_UM
    rough += (5.0 + 0.01 * x + 0.2 * np.sin(2 * np.pi * x / 150.0))[None, :]
    rough -= (0.004 * y)[:, None]
    return rough


def ours(z: np.ndarray) -> dict:
    import xarray as xr

    from pipeline.metrology.texture import surface_texture

    da = xr.DataArray(z, dims=("y", "x"), attrs={
        "kind": "height", "units": "um", "pixel_size_um": {"x": PIXEL_UM, "y": PIXEL_UM}})
    return surface_texture(da, level="plane", lambda_s=LAMBDA_S, lambda_c=LAMBDA_C)


def theirs(z: np.ndarray) -> dict:
    import surfalize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = surfalize.Surface(z.copy(), PIXEL_UM, PIXEL_UM).level()
        s = s.filter("bandpass", LAMBDA_S, LAMBDA_C)
        return {p: float(getattr(s, p)()) for p in SURFALIZE_PARAMS}


def timed(fn, z) -> float:
    t0 = time.perf_counter()
    fn(z)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--largest", type=int, default=8192, help="widest map timed (ours)")
    ap.add_argument("--no-anchor", action="store_true", help="skip surfalize")
    opts = ap.parse_args()

    z = make_map(*SIZES[0])
    mine = ours(z)
    print("parameters at 1024 x 768:")
    print("  ours     ", {k: round(float(mine[k]), 5) for k in (
        "Sa_um", "Sq_um", "Sz_um", "Sdq", "Sdr_pct", "Sal_um", "Str", "Spd_per_mm2")})
    if not opts.no_anchor:
        print("  surfalize", {k: round(v, 5) for k, v in theirs(z).items()})

    ok = True
    if not opts.no_anchor:
        print(f"\n1. ours / surfalize, medians of {opts.repeat} interleaved runs")
        for ny, nx in ANCHOR_SIZES:
            z = make_map(ny, nx)
            ours(z)  # warm-up
            a, b = [], []
            for _ in range(opts.repeat):
                a.append(timed(ours, z))
                b.append(timed(theirs, z))
            ta, tb = statistics.median(a), statistics.median(b)
            ratio = ta / tb
            ok &= ratio <= 0.10
            print(f"  {nx} x {ny}: ours {ta:7.3f} s  surfalize {tb:7.3f} s  ratio {ratio:.3f}"
                  f"  {'PASS' if ratio <= 0.10 else 'FAIL'} (<= 0.10)")

    print(f"\n2. growth of ours per 4x pixels, medians of {opts.repeat}")
    last = None
    for ny, nx in SIZES:
        if nx > opts.largest:
            break
        z = make_map(ny, nx)
        ours(z)  # warm-up
        t = statistics.median(timed(ours, z) for _ in range(opts.repeat))
        del z
        line = f"  {nx} x {ny}: {t:7.3f} s  {t / (nx * ny) * 1e9:6.1f} ns/px"
        if last is not None:
            growth = t / last
            ok &= growth <= 4.3
            line += f"  x{growth:.2f} {'PASS' if growth <= 4.3 else 'FAIL'} (<= x4.3)"
        print(line)
        last = t
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
