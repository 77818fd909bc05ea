"""Start-up of the commands that only look: `inspect` on an SEM TIFF and on a height map,
`formats` and `--help`, each against ``python -c "import tifffile"`` in the same run.

Run by hand: ``python benchmarks/cli_startup.py [--repeat 9]``. Every command runs in a
fresh process (its imports included), interleaved with the baseline (A B A B ...), and the
ratio is taken pair by pair, so the machine's drift cancels. Prints the median wall time of
each, the median of the paired ratios, and which heavy packages (xarray, pandas, dask,
SurfaceTopography, scipy, matplotlib, scikit-learn, OpenCV) the command imported.
Target: `inspect` on a TIFF under 0.6 s wall, with none of xarray, pandas, dask or
SurfaceTopography imported.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIFF = ROOT / "sample_images" / "embodiment-1" / "psd-01.tif"
X3P = ROOT / "sample_images" / "embodiment-1" / "height-01.x3p"
HEAVY = ("xarray", "pandas", "dask", "SurfaceTopography", "scipy", "matplotlib", "sklearn",
         "cv2")
TARGET_S = 0.6

# the command line run in-process, then the heavy packages it left in sys.modules
_PROBE = """
import json, sys
from pipeline.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
sys.stdout.flush()
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY))), file=sys.stderr)
"""


def _cli() -> list[str]:
    exe = shutil.which("electrode-qc")
    return [exe] if exe else [sys.executable, "-m", "pipeline.cli"]


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def heavy_imports(args: list[str]) -> list[str]:
    """The heavy packages that the command line imports for `args`."""
    code = f"HEAVY = {HEAVY!r}\n" + _PROBE
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       check=True)
    return json.loads(r.stderr.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=9)
    opts = ap.parse_args()
    base = [sys.executable, "-c", "import tifffile"]
    cases = {"inspect TIFF": ["inspect", str(TIFF)], "inspect x3p": ["inspect", str(X3P)],
             "formats": ["formats"], "--help": ["--help"]}
    _wall(base)  # warm the file cache
    print(f"{'command':14s} {'median s':>9s} {'tifffile s':>11s} {'ratio':>6s}  heavy imports")
    for name, args in cases.items():
        cmd = _cli() + args
        _wall(cmd)
        a, b = [], []
        for _ in range(opts.repeat):
            a.append(_wall(cmd))
            b.append(_wall(base))
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
        heavy = heavy_imports(args)
        print(f"{name:14s} {statistics.median(a):9.3f} {statistics.median(b):11.3f} "
              f"{ratio:6.2f}  {', '.join(heavy) or 'none'}")
    print(f"target: inspect TIFF < {TARGET_S} s, no xarray/pandas/dask/SurfaceTopography")


if __name__ == "__main__":
    main()
