"""Peak memory per pixel of the `surface` and `particles` commands, above start-up.

Run by hand: ``python benchmarks/memory.py [--sizes 2048,4096,8192] [--keep DIR]``.

For each size N, writes an N x N input into a temporary folder (a float64 X3P height map for
`surface`; an FEI-style 8-bit SEM TIFF at 2 nm/px, 2048 x 2048 synthetic particle tiles, for
`particles`), then runs the command in a fresh Python process that first imports everything
the command uses (numpy, scipy, OpenCV, scikit-image, the package): the peak resident set of
the process (``ru_maxrss``) minus its resident set after those imports, divided by N^2, is
the figure printed. Target: <= 24 B per pixel (an 8192^2 map within 2 GB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

TARGET_B_PER_PX = 24.0
PIXEL_UM = 0.139
TILE = 2048

CHILD = r"""
import json, resource, sys
import numpy, scipy.ndimage, scipy.fft, cv2, skimage.segmentation, pandas, xarray
import pipeline.cli
import pipeline.ingest.registry, pipeline.metrology.texture, pipeline.segmentation.particles
import pipeline.segmentation.psd, pipeline.instruments


def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


start = rss_kib()
sys.argv = ["electrode-qc", *sys.argv[1:]]
try:
    pipeline.cli.main()
    code = 0
except SystemExit as exc:
    code = exc.code or 0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"start_kib": start, "peak_kib": peak, "exit": code}), file=sys.stderr)
"""


def write_inputs(folder: Path, n: int) -> dict[str, Path]:
    from texture_scaling import make_map

    from pipeline import synth

    height = synth.write_x3p(folder / f"height-{n}.x3p", make_map(n, n), dx_um=PIXEL_UM,
                             dy_um=PIXEL_UM)
    tile, _ = synth.particle_image((TILE, TILE), seed=1)
    reps = max(1, n // TILE)
    sem = np.tile(tile, (reps, reps))[:n, :n]
    particles = synth.write_sem_tiff(folder / f"psd-{n}.tif", sem, pixel_um=0.002)
    return {"surface": height, "particles": particles}


def measure(command: str, path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, command, str(path), "--json"],
                          check=False, capture_output=True, text=True, cwd=ROOT)
    last = done.stderr.strip().splitlines()[-1]
    out = json.loads(last)
    if out["exit"] not in (0, 1, 3):
        raise SystemExit(f"{command} {path} failed ({out['exit']}):\n{done.stderr[-2000:]}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2048,4096,8192")
    ap.add_argument("--keep", type=Path, help="write the inputs here and keep them")
    opts = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = opts.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"{'command':10s} {'size':>11s} {'start MiB':>9s} {'peak MiB':>9s} "
              f"{'B/px':>6s}  target <= {TARGET_B_PER_PX:g}")
        for n in (int(s) for s in opts.sizes.split(",")):
            inputs = write_inputs(folder, n)
            for command, path in inputs.items():
                r = measure(command, path)
                per_px = (r["peak_kib"] - r["start_kib"]) * 1024 / (n * n)
                ok &= per_px <= TARGET_B_PER_PX
                print(f"{command:10s} {n:>5d} x {n:<5d} {r['start_kib'] / 1024:9.0f} "
                      f"{r['peak_kib'] / 1024:9.0f} {per_px:6.1f}  "
                      f"{'PASS' if per_px <= TARGET_B_PER_PX else 'FAIL'}")
            if opts.keep is None:
                for path in inputs.values():
                    path.unlink()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
