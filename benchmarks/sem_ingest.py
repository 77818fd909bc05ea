"""Time reading a vendor SEM TIFF (metadata, pixel size, data-bar crop) against tifffile.imread.

Run by hand: ``python benchmarks/sem_ingest.py``. Target: ours within 1.5x of
``tifffile.imread`` of the same file, in the same run. The read is timed without the
provenance hash (an orchestrator hashes each input once and passes the digest), and also
with it, for the record. The file is a 2048 x 1536 16-bit
image with an FEI-style INI block (tag 34682) and a 70-row appended data bar.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NY, NX, BAR = 1536, 2048, 70


def fei_tiff(path: Path) -> None:
    import tifffile

    rng = np.random.default_rng(0)
    img = rng.integers(0, 65535, size=(NY + BAR, NX), dtype=np.uint16)
    ini = (
        "[User]\r\nDate=01/02/2026\r\n[System]\r\nSystemType=Helios G4\r\n"
        "[Beam]\r\nHV=5000\r\n[Scan]\r\nPixelWidth=7.5e-09\r\nPixelHeight=7.5e-09\r\n"
        f"[Image]\r\nResolutionX={NX}\r\nResolutionY={NY}\r\n"
        "[Detectors]\r\nName=ETD\r\n[PrivateFei]\r\nDatabarHeight=0\r\n"
    )
    tifffile.imwrite(path, img, extratags=[(34682, "s", 0, ini, True)])


def median_time(fn, repeat: int = 15) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    import tifffile

    import pipeline

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "fei.tif"
        fei_tiff(p)
        da = pipeline.read(p, calibrate=False)
        print(f"check  reader {da.attrs['reader']}, shape {da.shape}, pixel "
              f"{da.attrs['pixel_size_um']}, bar {da.attrs['databar_rows']} rows")
        ours = median_time(lambda: pipeline.read(p, sha256=False, calibrate=False))
        hashed = median_time(lambda: pipeline.read(p, calibrate=False))
        base = median_time(lambda: tifffile.imread(p))
    print(f"SEM read  ours {ours * 1e3:7.2f} ms   tifffile.imread {base * 1e3:7.2f} ms   "
          f"ratio {ours / base:.2f} (target <= 1.5)")
    print(f"with the provenance SHA-256 computed too: {hashed * 1e3:7.2f} ms "
          f"(ratio {hashed / base:.2f})")


if __name__ == "__main__":
    main()
