"""Draw docs/report.png: the top of report.html for sample_images, as Chromium renders it.

Run by hand: ``python docs/make_report_figure.py`` (needs Debian's ``chromium``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from PIL import Image

    import pipeline

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("chromium is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(ROOT)  # the report shows the folder as given: keep it relative
        res = pipeline.run("sample_images", Path(tmp) / "report")
        shot = Path(tmp) / "shot.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        f"--user-data-dir={tmp}/profile", "--hide-scrollbars",
                        "--window-size=1280,1900", f"--screenshot={shot}",
                        (Path(tmp) / "report" / "report.html").as_uri()],
                       check=True, capture_output=True, timeout=120)
        img = Image.open(shot).convert("RGB")
        img = img.resize((900, round(img.height * 900 / img.width)), Image.LANCZOS)
        img = img.quantize(colors=128)
        out = ROOT / "docs" / "report.png"
        img.save(out, optimize=True)
    print(f"{out}: exit code of the run {res.exit_code}")


if __name__ == "__main__":
    main()
