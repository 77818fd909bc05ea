"""Time `electrode-qc run sample_images --out DIR` (report included) against the stage
commands a user would otherwise chain over the same files.

Run by hand: ``python benchmarks/run_samples.py [--repeat N]``. Both are timed as fresh
processes (start-up included), in the same run, median of N. The baseline runs, per
electrode, `particles` on the psd image, `protrusions` on the surface image, `porosity` on the
cross-section and `surface` on the height maps, with --json: the same measurements without
discovery, decisions, tables or the report. Target: the run <= 20 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
CLI = [sys.executable, "-m", "pipeline.cli"]


def timed(cmds: list[list[str]]) -> float:
    t0 = time.perf_counter()
    for c in cmds:
        subprocess.run(c, check=False, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    folders = sorted(p for p in SAMPLES.iterdir() if p.is_dir())
    base = []
    for f in folders:
        base += [CLI + ["particles", str(f / "psd-01.tif"), "--json"],
                 CLI + ["protrusions", str(f / "surface-100x.tif"), "--json"],
                 CLI + ["porosity", str(f / "xsec-01.tif"), "--json"],
                 CLI + ["surface", *map(str, sorted(f.glob("height-*.x3p"))), "--json"]]
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            ours.append(timed([CLI + ["run", str(SAMPLES), "--out", f"{tmp}/r{i}"]]))
            theirs.append(timed(base))
    o, b = statistics.median(ours), statistics.median(theirs)
    print(f"electrode-qc run (report included): {o:.2f} s median of {args.repeat}")
    print(f"stage commands one by one         : {b:.2f} s median ({len(base)} processes)")
    print(f"ratio run / stages                 : {o / b:.2f}; target run <= 20 s: "
          f"{'met' if o <= 20 else 'NOT met'}")


if __name__ == "__main__":
    main()
