"""The self-contained HTML report: no external reference, PNG data URIs, failures first,
escaped text, missing pieces shown instead of crashing, overlays drawn where they belong."""

from __future__ import annotations

import base64
import io
import math
from html.parser import HTMLParser

import numpy as np
import pytest

from pipeline.report import figures
from pipeline.report.html import fmt, fmt_pm, render_html, write_html
from tests.report.report_data import (
    artifacts_for,
    histogram_artifact,
    results_for,
    sample_result,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Doc(HTMLParser):
    """What the tests look at: every img's attributes, the sample id of each summary row
    (its first link) and the heading text of each sample section, in document order."""

    def __init__(self):
        super().__init__()
        self.imgs: list[dict] = []
        self.summary: list[str] = []
        self.sections: list[str] = []
        self._row: str | None = None  # text of the current summary row's first link
        self._capture: str | None = None  # tag whose text is being collected
        self._buf = ""
        self._in_sample = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        elif tag == "tr" and a.get("class") == "summary-row":
            self._row = ""
        elif tag == "a" and self._row == "":
            self._capture, self._buf = "a", ""
        elif tag == "section" and a.get("class") == "sample":
            self._in_sample = True
        elif tag == "h2" and self._in_sample:
            self._capture, self._buf = "h2", ""

    def handle_data(self, data):
        if self._capture:
            self._buf += data

    def handle_endtag(self, tag):
        if tag == self._capture == "a":
            self._row, self._capture = self._buf, None
        elif tag == "tr" and self._row is not None:
            self.summary.append(self._row)
            self._row = None
        elif tag == self._capture == "h2":
            self.sections.append(self._buf.strip())
            self._capture, self._in_sample = None, False


def parse(html: str) -> _Doc:
    doc = _Doc()
    doc.feed(html)
    doc.close()
    return doc


@pytest.fixture(scope="module")
def four() -> tuple[dict, dict]:
    """Four samples in an order that is not failures-first, with all their artifacts."""
    samples = [
        sample_result("ok-met", outcome="conforming"),
        sample_result("bad", outcome="non-conforming", porosity=0.5, sa_um=0.13, sz_um=1.13),
        sample_result("unsure", outcome="indeterminate", error_image=True),
        sample_result("ok-not-met", outcome="conforming", porosity=0.45, sa_um=0.12, sz_um=1.2),
    ]
    arts = {s["sample_id"]: artifacts_for(i) for i, s in enumerate(samples)}
    return results_for(samples), arts


@pytest.fixture(scope="module")
def four_html(four) -> str:
    return render_html(*four)


def decode_png(uri: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix), uri[:40]
    return base64.b64decode(uri[len(prefix):], validate=True)


def test_report_is_self_contained(four_html):
    html = four_html
    for bad in ("http://", "https://", 'src="/', "<link", "<script", "url(", "@import", "<iframe"):
        assert bad not in html.lower(), bad
    doc = parse(html)
    # 3 SEM previews + 1 histogram + 2 height maps for each of the 4 samples
    assert len(doc.imgs) == 4 * 6
    for img in doc.imgs:
        png = decode_png(img["src"])
        assert png[:8] == PNG_SIGNATURE
        assert len(png) <= figures.MAX_BYTES
        w, h = figures.png_size(png)
        assert (int(img["width"]), int(img["height"])) == (w, h)
        from PIL import Image

        with Image.open(io.BytesIO(png)) as im:
            im.load()  # decodes the whole image: a truncated PNG raises here
            assert im.size == (w, h)


def test_failures_first(four_html):
    doc = parse(four_html)
    # non-conforming, indeterminate, then conforming with claim 15 not met before met
    order = ["bad", "unsure", "ok-not-met", "ok-met"]
    assert doc.summary == order
    assert [s.split()[0] for s in doc.sections] == order


def test_ties_keep_order_and_unreadable_files_come_first():
    samples = [sample_result("a"), sample_result("b", error_image=True), sample_result("c")]
    doc = parse(render_html(results_for(samples), {}))
    assert doc.summary == ["b", "a", "c"]


def test_claim_table_values_limits_and_sources(four_html):
    html = four_html
    # porosity fraction 0.364 +/- 0.012 is shown in percent, with its limit and margin
    assert "36.4 \u00b1 1.2 %" in html
    assert "\u2264 40 %" in html
    assert "3.6 points" in html
    assert "0.0700 \u00b1 0.0060 \u00b5m" in html
    assert "height maps (n = 2)" in html and "gravimetric" in html
    # each sample's gate rule and reasons, the unreadable file's error text
    assert "guard band (ISO 14253-1)" in html
    assert "bad: reason for non-conforming" in html
    assert "truncated TIFF: strip 3 &lt;ends&gt; past the end of the file" in html
    # height-map titles carry Sa and Sz
    assert "height-01.x3p: Sa 0.07 \u00b5m, Sz 0.92 \u00b5m" in html
    # provenance: hashes, readers, pixel-size sources, spec id and package version
    assert "0123456789abcdef" * 4 in html
    assert "FEI metadata" in html and "X3P header" in html
    assert "calibration/specs/claim15.toml" in html and "0.1.0" in html
    assert "2025-01-02T03:04:05Z" in html


def test_text_is_escaped():
    evil = "<script>alert(1)</script>"
    s = sample_result(evil, title='A & B "quoted" <b>bold</b>', flags=("<img src=x onerror=alert(2)>",))
    s["gate"]["reasons"] = ["<i>why</i>"]
    html = render_html(results_for([s]), {evil: {"sem": [], "height": [], "histogram": None}})
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "A &amp; B &#34;quoted&#34; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<img" not in html  # no picture here, and the flag is text
    assert "&lt;i&gt;why&lt;/i&gt;" in html


def test_missing_pieces_do_not_crash():
    bare = {"sample_id": "bare"}  # nothing but an id
    nulls = sample_result("nulls")
    nulls["metrics"] = {"porosity_gravimetric": None, "psd": None}
    nulls["claim15"] = {"met": None, "properties": {"porosity": {"value": None, "U": None,
                                                                 "limit": 0.4, "met": None}}}
    nulls["void_reduction_pct"] = None
    results = results_for([nulls, bare])
    arts = {"nulls": {"sem": [], "height": [], "histogram": None}}  # "bare" has none at all
    html = render_html(results, arts)
    assert "No SEM previews." in html and "No height maps." in html
    assert "No size distribution." in html
    assert "n/a" in html and "undetermined" in html
    # no gate outcome ranks with the undecided (indeterminate), before a conforming sample
    assert parse(html).summary == ["bare", "nulls"]
    # no samples at all
    empty = render_html({"samples": []}, {})
    assert "No samples in the results." in empty
    assert render_html({}, {})


def test_a_figure_that_cannot_be_drawn_shows_its_error():
    s = sample_result("broken")
    arts = {"broken": {"sem": [{"path": "broken/psd.tif", "role": "psd", "image": None}],
                       "height": [{"path": "broken/h.x3p", "z_um": "not an array", "pixel_um": 1.0,
                                   "Sa_um": 0.1, "Sz_um": 1.0}],
                       "histogram": {"ecd_nm": np.array([]), "modes": []}}}
    html = render_html(results_for([s]), arts)
    assert html.count("Could not draw") == 2
    assert "Could not draw the SEM preview" in html and "Could not draw the height map" in html
    doc = parse(html)
    assert len(doc.imgs) == 1  # the (empty) histogram still draws, with "no particles"


def test_write_html(tmp_path, four):
    out = write_html(tmp_path / "sub" / "report.html", *four)
    assert out == tmp_path / "sub" / "report.html"
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not list(tmp_path.glob("sub/*.tmp"))


# --------------------------------------------------------------------------- the pictures
def _rgb(png: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"))


def test_sem_overlay_draws_boundaries_circles_and_layer_lines():
    img = np.full((60, 80), 100, np.uint8)
    labels = np.zeros((60, 80), np.int32)
    labels[10:20, 10:20] = 1  # carbon
    labels[30:45, 40:60] = 2  # silver
    png, size = figures.sem_png(img, labels=labels, phase_of_label={1: "carbon", 2: "silver"},
                                points=[(20.0, 45.0, 6.0)], layer_rows=(5, 55))
    assert size == (80, 60)
    rgb = _rgb(png)
    carbon = np.all(rgb == figures.OVERLAY_COLOURS["carbon"], axis=2)
    silver = np.all(rgb == figures.OVERLAY_COLOURS["silver"], axis=2)
    circle = np.all(rgb == figures.OVERLAY_COLOURS["protrusion"], axis=2)
    layer = np.all(rgb == figures.OVERLAY_COLOURS["layer"], axis=2)
    # the inner boundary of each square, in its phase's colour, and nothing inside it
    assert carbon[10, 10:20].all() and carbon[19, 10:20].all() and carbon[10:20, 10].all()
    assert not carbon[12:18, 12:18].any() and carbon.sum() == 36
    assert silver[30, 40:60].all() and silver.sum() == 2 * 20 + 2 * 13
    # the circle passes 6 px from its centre (x 20, y 45) and not through it
    assert circle[45, 14] or circle[45, 13] or circle[45, 15]
    assert not circle[45, 20]
    ys, xs = np.nonzero(circle)
    assert np.allclose(np.hypot(xs - 20, ys - 45), 6.0, atol=1.5)
    # layer lines at rows 5 and 55 across the width
    assert layer[4:6].all() and layer[54:56].all() and not layer[20:40].any()
    # the grey image is otherwise kept (quantised to 7 bits)
    assert abs(int(rgb[50, 75, 0]) - 100) <= 2


def test_sem_preview_shrinks_to_its_byte_budget():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (768, 1024), dtype=np.uint8)
    png, (w, h) = figures.sem_png(noise, points=[(500.0, 400.0, 20.0)], max_bytes=150_000)
    assert len(png) <= 150_000
    assert w < 1024 and abs(w / h - 1024 / 768) < 0.02
    assert figures.png_size(png) == (w, h)


def test_height_map_colours_and_unmeasured_points():
    z = np.tile(np.linspace(0.0, 1.0, 64), (32, 1))
    z[0, 0] = np.nan
    png, size, limits = figures.height_png(z, percentiles=(0.0, 100.0))
    assert size == (64, 32)
    assert limits == pytest.approx((0.0, 1.0))
    rgb = _rgb(png)
    stops = figures.colour_stops(2)  # the two ends of the colour map
    lo_rgb = tuple(int(stops[0][i:i + 2], 16) for i in (1, 3, 5))
    hi_rgb = tuple(int(stops[1][i:i + 2], 16) for i in (1, 3, 5))
    assert tuple(rgb[5, 0]) == lo_rgb and tuple(rgb[5, 63]) == hi_rgb
    assert tuple(rgb[0, 0]) == figures.NAN_RGB
    # all unmeasured: no colour scale, still a picture
    _, _, none = figures.height_png(np.full((8, 8), np.nan))
    assert none is None


def test_mode_curves_integrate_to_each_mode_count():
    hist = histogram_artifact(3)
    n = hist["ecd_nm"].size
    for log_x in (True, False):
        lo, hi = 10.0, 200.0
        edges = np.geomspace(lo, hi, 81) if log_x else np.linspace(lo, hi, 81)
        centres = np.sqrt(edges[:-1] * edges[1:]) if log_x else (edges[:-1] + edges[1:]) / 2
        curves = figures.mode_curves(hist["modes"], n, edges, centres, log_x=log_x)
        assert [i for i, _ in curves] == [0, 1]
        for i, y in curves:
            # summed over the bins, a curve counts that mode's particles
            assert y.sum() == pytest.approx(n * hist["modes"][i]["number_share"], rel=0.01)


def test_sigma_from_sd_nm_matches_gsd():
    # geometric mean 40 nm, GSD exp(0.15): sd_nm = 40 * sqrt(exp(s2) * (exp(s2) - 1))
    s = 0.15
    sd = 40.0 * math.sqrt(math.exp(s * s) * math.expm1(s * s))
    assert figures._sigma_ln({"mean_nm": 40.0, "sd_nm": sd}) == pytest.approx(s, rel=1e-9)
    assert figures._sigma_ln({"mean_nm": 40.0, "gsd": math.exp(s)}) == pytest.approx(s, rel=1e-12)
    assert figures._sigma_ln({"mean_nm": 40.0}) is None


def test_histogram_png_is_a_png_without_particles_too():
    for d in (histogram_artifact(1)["ecd_nm"], np.array([]), np.array([50.0, 50.0, np.nan])):
        png = figures.histogram_png(d, histogram_artifact(1)["modes"], title="t")
        assert png[:8] == PNG_SIGNATURE and figures.png_size(png)[0] > 100


def test_number_formatting():
    assert fmt(0.07) == "0.07" and fmt(36.4) == "36.4" and fmt(2.0) == "2"
    assert fmt(None) == "n/a" and fmt(float("nan")) == "n/a" and fmt(True) == "yes"
    assert fmt(0.0001234) == "0.000123" and fmt(1e-9) == "1e-09"
    assert fmt_pm(0.364, 0.012, scale=100, unit="%") == "36.4 \u00b1 1.2 %"
    assert fmt_pm(13.71, 0.2) == "13.71 \u00b1 0.20"
    assert fmt_pm(None, 0.1) == "n/a" and fmt_pm(0.5, None, unit="um") == "0.5 um"
