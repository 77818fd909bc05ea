"""Time the HTML report for 4 samples (3 SEM previews of 1024 x 768, 2 height maps of
512 x 512 and a size histogram each) against drawing the same pictures with matplotlib.

Run by hand: ``python benchmarks/report_html.py [--repeat N]``. Prints the median time of
`pipeline.report.html.render_html`, of a baseline that draws every SEM preview and height map
as a matplotlib figure (imshow, a colour bar for heights, PNG at 90 dpi) the obvious way, their
ratio, and the report's size. Target: the report <= 1.5 s (the whole run has 20 s).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_time(fn, repeat: int) -> tuple[float, object]:
    out = fn()  # warm-up (imports, font cache)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def matplotlib_baseline(artifacts: dict) -> int:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    total = 0
    for art in artifacts.values():
        pictures = [(e["image"], "gray", False) for e in art["sem"]]
        pictures += [(e["z_um"], "viridis", True) for e in art["height"]]
        for data, cmap, bar in pictures:
            h, w = data.shape
            fig = Figure(figsize=(w / 90, h / 90), dpi=90)
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            im = ax.imshow(data, cmap=cmap)
            if bar:
                fig.colorbar(im, ax=ax)
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            total += len(buf.getvalue())
    return total


def main(argv=None) -> int:
    from pipeline.report.html import render_html
    from tests.report.report_data import artifacts_for, results_for, sample_result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    outcomes = ("conforming", "non-conforming", "indeterminate", "conforming")
    samples = [sample_result(f"sample-{i}", outcome=o) for i, o in enumerate(outcomes)]
    arts = {s["sample_id"]: artifacts_for(i, width=1024, height_size=512)
            for i, s in enumerate(samples)}
    results = results_for(samples)
    t_ours, html = median_time(lambda: render_html(results, arts), args.repeat)
    t_base, _ = median_time(lambda: matplotlib_baseline(arts), max(1, args.repeat // 2))
    print(f"render_html, 4 samples x (3 SEM + 2 height + 1 histogram): {t_ours:.3f} s "
          f"(median of {args.repeat}), report {len(html) / 1e6:.2f} MB")
    print(f"matplotlib baseline for the 20 SEM and height pictures alone: {t_base:.3f} s")
    print(f"ratio ours / baseline: {t_ours / t_base:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
