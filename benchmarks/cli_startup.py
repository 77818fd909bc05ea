"""Time `electrode-qc --help` against a bare Python start-up in the same run.

Run by hand: ``python benchmarks/cli_startup.py``. Target: --help in under 0.5 s.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time


def median_wall(cmd: list[str], repeat: int = 9) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    exe = shutil.which("electrode-qc")
    cmd = [exe, "--help"] if exe else [sys.executable, "-m", "pipeline.cli", "--help"]
    t_help = median_wall(cmd)
    t_py = median_wall([sys.executable, "-c", "pass"])
    print(f"electrode-qc --help {t_help * 1e3:7.1f} ms   bare python {t_py * 1e3:7.1f} ms   "
          f"ratio {t_help / t_py:.2f} (target: --help < 500 ms)")


if __name__ == "__main__":
    main()
