"""Time the surface-texture stages against their baselines in the same run.

Run by hand: ``python benchmarks/surface.py [--repeat N]``. Prints medians and ratios:

1. pipeline: plane + band-pass (lambda_s 2.5 um, lambda_c 80 um) + height parameters + Sdr
   on a 2048 x 1536 map, against the same pipeline done the common way (spatial
   scipy.ndimage.gaussian_filter, an lstsq plane, plain numpy parameters and Sdr).
   Targets: ours <= 0.15 s and <= 1/10 of the baseline.
2. Sa..Sku alone against a bare numpy float64 pass (mean, abs, max, min). Target <= 1.5x.
3. reading a 2048 x 1536 float64 x3p against unzip + numpy.frombuffer. Target <= 2x.

The map has the pixel of a confocal 50x field (0.139 um, about 285 x 214 um).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NY, NX = 1536, 2048
PIXEL_UM = 0.139
LAMBDA_S, LAMBDA_C = 2.5, 80.0


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_surface(seed: int = 0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:NY, 0:NX] * PIXEL_UM
    rough = gaussian_filter(rng.normal(size=(NY, NX)), 3.0) * 0.3
    wave = 0.2 * np.sin(2 * np.pi * x / 150.0)
    return 5.0 + 0.01 * x - 0.004 * y + wave + rough


# --- the common way (baseline) -------------------------------------------------------
def baseline_pipeline(z: np.ndarray) -> dict:
    from scipy.ndimage import gaussian_filter

    ny, nx = z.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    a = np.column_stack([xx.ravel(), yy.ravel(), np.ones(z.size)])
    coef, *_ = np.linalg.lstsq(a, z.ravel(), rcond=None)
    lev = z - (a @ coef).reshape(z.shape)
    sig_s = 0.18739 * LAMBDA_S / PIXEL_UM
    sig_c = 0.18739 * LAMBDA_C / PIXEL_UM
    s = gaussian_filter(lev, sig_s)
    sl = s - gaussian_filter(s, sig_c)
    d = sl - sl.mean()
    out = {
        "Sa": np.abs(d).mean(),
        "Sq": np.sqrt((d**2).mean()),
        "Sp": d.max(),
        "Sv": -d.min(),
        "Ssk": (d**3).mean() / np.sqrt((d**2).mean()) ** 3,
        "Sku": (d**4).mean() / (d**2).mean() ** 2,
    }
    out["Sdr"] = baseline_sdr(sl, PIXEL_UM)
    return out


def baseline_sdr(z: np.ndarray, dx: float) -> float:
    a, b, c, d = z[:-1, :-1], z[:-1, 1:], z[1:, :-1], z[1:, 1:]

    def tri(p1, p2, p3):
        v1 = np.stack([np.full(p1.shape, dx), np.zeros(p1.shape), p2 - p1])
        v2 = np.stack([np.zeros(p1.shape), np.full(p1.shape, dx), p3 - p1])
        cr = np.cross(v1, v2, axis=0)
        return 0.5 * np.sqrt((cr**2).sum(axis=0))

    area = tri(a, b, c) + tri(d, c, b)
    return (area.sum() / (dx * dx * area.size) - 1) * 100


# --- ours ------------------------------------------------------------------------------
def our_pipeline(z: np.ndarray) -> dict:
    from pipeline.metrology.height import height_parameters
    from pipeline.metrology.spatial import sdr
    from pipeline.metrology.texture import scale_limited_surface

    s = scale_limited_surface(
        z, PIXEL_UM, PIXEL_UM, level="plane", lambda_s_um=LAMBDA_S, lambda_c_um=LAMBDA_C
    )
    out = height_parameters(s)
    out["Sdr_pct"] = sdr(s, PIXEL_UM, PIXEL_UM)
    return out


def bare_numpy(z: np.ndarray):
    return z.mean(), np.abs(z).mean(), z.max(), z.min()


def write_x3p(path: Path, z: np.ndarray) -> None:
    main = f"""<?xml version="1.0" encoding="UTF-8"?>
<p:ISO5436_2 xmlns:p="http://www.opengps.eu/2008/ISO5436_2">
<Record1><Revision>ISO5436 - 2000</Revision><FeatureType>SUR</FeatureType>
<Axes>
<CX><AxisType>I</AxisType><DataType>D</DataType><Increment>{PIXEL_UM * 1e-6}</Increment><Offset>0</Offset></CX>
<CY><AxisType>I</AxisType><DataType>D</DataType><Increment>{PIXEL_UM * 1e-6}</Increment><Offset>0</Offset></CY>
<CZ><AxisType>A</AxisType><DataType>D</DataType></CZ>
</Axes></Record1>
<Record2><Date>2026-01-01T00:00:00</Date><Instrument><Manufacturer>bench</Manufacturer><Model>synthetic</Model><Serial>0</Serial><Version>1</Version></Instrument>
<CalibrationDate>2026-01-01T00:00:00</CalibrationDate><ProbingSystem><Type>NonContacting</Type><Identification>none</Identification></ProbingSystem><Comment/></Record2>
<Record3><MatrixDimension><SizeX>{z.shape[1]}</SizeX><SizeY>{z.shape[0]}</SizeY><SizeZ>1</SizeZ></MatrixDimension>
<DataLink><PointDataLink>bin/data.bin</PointDataLink></DataLink></Record3>
<Record4><ChecksumFile>md5checksum.hex</ChecksumFile></Record4>
</p:ISO5436_2>"""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("main.xml", main)
        zf.writestr("bin/data.bin", (z * 1e-6).astype("<f8").tobytes())


def unzip_frombuffer(path: Path):
    with zipfile.ZipFile(path) as zf:
        return np.frombuffer(zf.read("bin/data.bin"), dtype="<f8").reshape(NY, NX)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=11)
    args = ap.parse_args()
    import pipeline

    z = make_surface()
    r = args.repeat

    ours = our_pipeline(z)
    base = baseline_pipeline(z)
    print(f"check  Sa ours {ours['Sa_um']:.6g} um, baseline {base['Sa']:.6g} um; "
          f"Sdr ours {ours['Sdr_pct']:.6g} %, baseline {base['Sdr']:.6g} %")
    t_ours = median_time(lambda: our_pipeline(z), r)
    t_base = median_time(lambda: baseline_pipeline(z), max(3, r // 3))
    print(f"pipeline        ours {t_ours * 1e3:8.1f} ms   baseline {t_base * 1e3:8.1f} ms   "
          f"ratio {t_ours / t_base:.3f} (target <= 0.100, ours <= 150 ms)")

    from pipeline.metrology.height import height_parameters

    zl = z - z.mean()
    t_h = median_time(lambda: height_parameters(zl), r * 3)
    t_np = median_time(lambda: bare_numpy(zl), r * 3)
    print(f"Sa..Sku         ours {t_h * 1e3:8.2f} ms   numpy    {t_np * 1e3:8.2f} ms   "
          f"ratio {t_h / t_np:.3f} (target <= 1.5)")

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "bench.x3p"
        write_x3p(p, z)
        t_read = median_time(lambda: pipeline.read(p), r)
        t_unzip = median_time(lambda: unzip_frombuffer(p), r)
    print(f"x3p read        ours {t_read * 1e3:8.1f} ms   unzip+np {t_unzip * 1e3:8.1f} ms   "
          f"ratio {t_read / t_unzip:.3f} (target <= 2)")


if __name__ == "__main__":
    main()
