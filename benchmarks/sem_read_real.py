"""Reading each real SEM TIFF against tifffile.imread of the same file, in the same run.

Run by hand: ``python benchmarks/sem_read_real.py [--repeat N] [--folder DIR]`` (default
folder: ``../shared/realdata/sem`` beside the repository). Our read is the reader registry's
`pipeline.ingest.registry.read` without the provenance hash (a run hashes each input once and
passes the digest): the vendor metadata, the pixel size and the data-bar crop; log messages
about the files are silenced. Prints the
medians of interleaved runs and their ratio. Target: <= 1.5x on every file.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = 1.5


def main() -> int:
    import tifffile

    from pipeline.ingest.registry import read

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--folder", type=Path, default=ROOT.parent / "shared" / "realdata" / "sem")
    opts = ap.parse_args()
    logging.disable(logging.WARNING)
    files = sorted(opts.folder.glob("*.tif"))
    if not files:
        print(f"no TIFF files in {opts.folder}")
        return 0
    ok = True
    print(f"{'file':40s} {'ours ms':>8s} {'tifffile ms':>11s} {'ratio':>6s}")
    for f in files:
        def ours(f=f):
            return read(f, sha256=False)

        def theirs(f=f):
            return tifffile.imread(f)

        try:
            ours()
            theirs()
        except Exception as exc:  # a file we refuse is not timed
            print(f"{f.name:40s} not read: {type(exc).__name__}: {exc}")
            continue
        a, b = [], []
        for _ in range(opts.repeat):
            t0 = time.perf_counter()
            ours()
            a.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            theirs()
            b.append(time.perf_counter() - t0)
        ta, tb = statistics.median(a), statistics.median(b)
        ratio = ta / tb
        ok &= ratio <= TARGET
        print(f"{f.name:40s} {ta * 1e3:8.2f} {tb * 1e3:11.2f} {ratio:6.2f} "
              f"{'PASS' if ratio <= TARGET else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
