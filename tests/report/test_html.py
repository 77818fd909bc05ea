"""The self-contained HTML report: no external reference, WebP photos and PNG overlays and
charts as data URIs, failures first, escaped text, missing pieces shown instead of crashing,
verdicts that cannot be misread, units on every number, overlays drawn where they belong."""

from __future__ import annotations

import base64
import io
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from pipeline.report import figures
from pipeline.report.html import fmt, fmt_pm, render_html, write_html
from tests.report.report_data import (
    SHA,
    artifacts_for,
    histogram_artifact,
    results_for,
    sample_result,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SAMPLE_IMAGES = Path(__file__).resolve().parents[2] / "sample_images"


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


def decode_uri(uri: str) -> tuple[str, bytes]:
    """(MIME type, bytes) of a base64 data URI."""
    m = re.fullmatch(r"data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)", uri)
    assert m, uri[:40]
    return m.group(1), base64.b64decode(m.group(2), validate=True)


def check_picture(img: dict) -> tuple[str, tuple[int, int]]:
    """An img's data URI names the format its bytes are in, decodes whole and has the size
    its width and height attributes say; returns (MIME type, size)."""
    from PIL import Image

    mime, data = decode_uri(img["src"])
    with Image.open(io.BytesIO(data)) as im:
        im.load()  # decodes the whole image: a truncated picture raises here
        assert f"image/{im.format.lower()}" == mime
        size = im.size
    assert figures.mime_type(data) == mime
    assert figures.image_size(data) == size == (int(img["width"]), int(img["height"]))
    return mime, size


def section(html: str, sample_id: str) -> str:
    """The HTML of one sample's section."""
    m = re.search(r'<section class="sample" id="[^"]+">\s*<h2>' + re.escape(sample_id)
                  + r"[ <].*?</section>", html, re.DOTALL)
    assert m, sample_id
    return m.group(0)


def property_row(html: str, name: str) -> str:
    m = re.search(rf'<tr data-property="{name}">.*?</tr>', html, re.DOTALL)
    assert m, name
    return m.group(0)


def test_report_is_self_contained(four_html):
    html = four_html
    for bad in ("http://", "https://", 'src="/', "<link", "<script", "url(", "@import", "<iframe"):
        assert bad not in html.lower(), bad
    doc = parse(html)
    # 3 SEM photos and their 3 overlays + 1 histogram + 2 height maps for each of 4 samples
    assert len(doc.imgs) == 4 * 9
    kinds = [check_picture(img)[0] for img in doc.imgs]
    # photos WebP; overlays and the histogram PNG
    assert kinds == 4 * (["image/webp", "image/png"] * 3 + ["image/png"] + ["image/webp"] * 2)
    for img in doc.imgs:
        assert len(decode_uri(img["src"])[1]) <= figures.MAX_BYTES
    # each overlay has its photo's size
    for photo, overlay in zip(doc.imgs, doc.imgs[1:]):
        if overlay.get("class") == "overlay":
            assert (photo["width"], photo["height"]) == (overlay["width"], overlay["height"])


def test_failures_first(four_html):
    doc = parse(four_html)
    # non-conforming, indeterminate, then conforming with claim 15 not met before met
    order = ["bad", "unsure", "ok-not-met", "ok-met"]
    assert doc.summary == order
    assert [s.split()[0] for s in doc.sections] == order


def test_ties_keep_order_and_failed_files_come_first():
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
    # height-map titles carry Sa and Sz, to three significant digits
    assert "height-01.x3p: Sa 0.0700 \u00b5m, Sz 0.920 \u00b5m" in html
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
    nulls["spec"] = {"met": None, "properties": {"porosity": {"value": None, "U": None,
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


# ------------------------------------------------------------------- verdicts at a glance
def test_gate_badge_names_its_rule_and_sits_beside_the_property_statements():
    """A gate that is satisfied by any one property says so; each property row shows the
    gate's statement beside claim 15's, so a red porosity row never sits beside a bare
    green "conforming"."""
    s = sample_result("any", outcome="conforming", porosity=0.45, combine="any")
    html = section(render_html(results_for([s]), {}), "any")
    verdict = re.search(r'<p class="verdict">.*?</p>', html, re.DOTALL).group(0)
    assert '<span class="badge good">conforming (any one property)</span>' in verdict
    assert '<span class="badge good">met (one or more)</span>' in verdict
    assert "conforming when any one property passes" in html
    porosity = property_row(html, "porosity")
    assert porosity.count('<span class="badge bad">') == 2  # claim 15 not met, gate fail
    assert '<span class="badge bad">fail</span>' in porosity
    assert '<span class="badge good">pass</span>' in property_row(html, "Sa")


def test_gate_with_every_property_required_and_its_in_between_statements():
    s = sample_result("all", outcome="indeterminate", sz_um=0.98)  # Sz within U of 1.0
    s["gate"]["reasons"] = ["Sz = 0.98 is within U = 0.05 of the limit 1"]
    html = section(render_html(results_for([s]), {}), "all")
    verdict = re.search(r'<p class="verdict">.*?</p>', html, re.DOTALL).group(0)
    assert '<span class="badge warn">indeterminate</span>' in verdict
    assert "conforming only when every property is measured and passes" in html
    assert '<span class="badge warn">indeterminate</span>' in property_row(html, "Sz")
    assert '<span class="badge good">met</span>' in property_row(html, "Sz")  # as measured
    # the reasons stay visible, next to the verdict
    assert html.index("Sz = 0.98 is within U") < html.index("Claim 15 and production gate")
    # conforming with every property: the plain word
    ok = section(render_html(results_for([sample_result("ok")]), {}), "ok")
    assert '<span class="badge good">conforming</span>' in ok


def test_gate_properties_not_in_claim_15_and_other_limits_are_shown():
    s = sample_result("g")
    s["gate"]["properties"]["Sa"] = dict(s["gate"]["properties"]["Sa"], limit=0.08)
    s["gate"]["properties"]["Sz"] = dict(s["gate"]["properties"]["Sz"], value=0.95)
    s["gate"]["properties"]["Spd"] = {"value": 5000.0, "U": None, "limit": 4000.0,
                                      "comparison": "<", "statement": "fail",
                                      "unit": "per_mm2", "margin": -1000.0}
    html = render_html(results_for([s]), {})
    assert "limit &lt; 0.08 \u00b5m" in property_row(html, "Sa")
    assert "judged on 0.950 \u00b1 0.050 \u00b5m" in property_row(html, "Sz")
    assert "judged on" not in property_row(html, "porosity")
    spd = property_row(html, "Spd")
    assert "not in Claim 15" in spd and "5000 /mm\u00b2" in spd and "&lt; 4000 /mm\u00b2" in spd
    assert "not gated" not in html
    del s["gate"]["properties"]["Sz"]
    assert '<span class="badge na">not gated</span>' in property_row(
        render_html(results_for([s]), {}), "Sz")
    # a record from before the gate kept its statements: nothing is claimed about them
    del s["gate"]["properties"]
    old = render_html(results_for([s]), {})
    assert '<span class="badge na">n/a</span>' in property_row(old, "Sz")
    assert "not gated" not in old


SPIKE = "sz_spike_sensitive: Sz 1.2 um with 3 outlier points, 0.9 um without"


def test_image_flags_join_the_sample_flags_once():
    s = sample_result("f", flags=("particles: BIC chooses k=1 modes, not 2",
                                  "xsec-01.tif: threshold_sensitive"),
                      image_flags={"xsec-01.tif": ["threshold_sensitive", "layers_on_both_sides"],
                                   "height-01.x3p": [SPIKE]})
    html = render_html(results_for([s]), {})
    flags = re.search(r"<h3>Flags</h3>\s*<ul class=\"flags\">(.*?)</ul>", html, re.DOTALL).group(1)
    items = re.findall(r"<li>(.*?)</li>", flags)
    # the sample's own first, then the images' in their order, each once
    assert items == ["particles: BIC chooses k=1 modes, not 2",
                     "xsec-01.tif: threshold_sensitive",
                     f"height-01.x3p: {SPIKE}",
                     "xsec-01.tif: layers_on_both_sides"]
    row = re.search(r'<tr class="summary-row".*?</tr>', html, re.DOTALL).group(0)
    assert re.findall(r'<td class="num">(\d+)</td>', row)[-1] == "4"  # the flag count


def test_failed_files_are_listed_beside_the_verdict():
    html = section(render_html(results_for([sample_result("x", error_image=True)]), {}), "x")
    reason = "truncated TIFF: strip 3 &lt;ends&gt; past the end of the file"
    box = re.search(r'<div class="alert failed">.*?</div>', html, re.DOTALL).group(0)
    assert "Failed files (1)" in box and "xsec-02.tif" in box and reason in box
    assert html.index(box) < html.index("Claim 15 and production gate")
    assert html.index('<p class="verdict">') < html.index(box)
    ok = section(render_html(results_for([sample_result("y")]), {}), "y")
    assert "Failed files" not in ok


def test_pixel_sizes_are_shown_in_nm_or_um():
    s = sample_result("p", error_image=True, psd_pixel_um={"x": 0.002, "y": 0.0025})
    html = section(render_html(results_for([s]), {}), "p")
    table = re.search(r'<table class="inputs">.*?</table>', html, re.DOTALL).group(0)
    cells = re.findall(r'<td class="num">(.*?)</td>', table)
    # psd (not square), height map, cross-section, the file that failed (no pixel size)
    assert cells == ["2 \u00d7 2.5 nm", "0.5 \u00b5m", "50 nm", "n/a"]
    from pipeline.report.html import _pixel

    assert _pixel({"x": 0.049999999999999996, "y": 0.05}) == "50 nm"
    assert _pixel({"x": 1.0, "y": 1.0}) == "1 \u00b5m" and _pixel(0.14) == "0.14 \u00b5m"
    assert _pixel({"x": 0.2, "y": None}) == "0.2 \u00d7 n/a \u00b5m" and _pixel(None) == "n/a"


def test_provenance_is_folded():
    html = render_html(results_for([sample_result("v"), sample_result("w")]), {})
    folded = re.findall(r'<details class="provenance">.*?</details>', html, re.DOTALL)
    assert len(folded) == 3  # each sample's and the run's
    assert all("<summary>" in d for d in folded)
    rest = html
    for d in folded:
        rest = rest.replace(d, "")
    for key in ("calibration.sha256", "files[0].path", "spec.path", "package_version"):
        assert key in "".join(folded) and key not in rest
    # the inputs stay visible, hashes shortened (the whole hash is in the folded part)
    assert rest.count(f'<td class="mono" title="{SHA}">{SHA[:12]}</td>') == 6


def test_numbers_carry_units_and_three_significant_digits(four_html):
    html = section(four_html, "ok-met")
    # summary values, margins to the value's decimal place
    summary = re.search(r'<tr class="summary-row" data-outcome="conforming">\s*<td><a href="#[^"]+">'
                        r"ok-met</a>.*?</tr>", four_html, re.DOTALL).group(0)
    for text in ("36.4 %", "0.0700 \u00b5m", "0.920 \u00b5m", "36.2 %"):
        assert f"{text} " in summary or f">{text}<" in summary, text
    assert "0.0300 \u00b5m" in property_row(html, "Sa") and "0.080 \u00b5m" in property_row(html, "Sz")
    # metrics: SD with its unit, counts plain
    assert "0.0700 \u00b1 0.0060 \u00b5m (SD 0.00300 \u00b5m, n = 2)" in html
    assert "12.0 \u00b1 3.0 /mm\u00b2 (SD 1.00 /mm\u00b2, n = 1)" in html
    # particle claims and the size distribution
    assert ">1:2.00<" in html and ">40.0 nm, 80.0 nm<" in html
    for text in ("48.0 nm", "40.0 nm", "1.00 %", "60.0 %", "2.00"):
        assert f"<td>{text}</td>" in html or f'<td class="num">{text}</td>' in html, text
    # colour-bar ticks share one decimal place; the ends carry the unit
    ticks = re.findall(r'<span class="tick[^"]*" style="left: [0-9.]+%">([^<]*)</span>', html)
    assert len(ticks) == 2 * 5 and ticks[0].endswith(" \u00b5m") and ticks[4].endswith(" \u00b5m")
    places = {len(t.split()[0].partition(".")[2]) for t in ticks[:5]}
    assert len(places) == 1


def test_trend_captions_carry_units():
    from pipeline.report.trends import trend_png

    png = trend_png([36.0, 37.0, 38.0], ["a", "b", "c"], title="Porosity", unit="%",
                    spec_limit=40.0)
    assert png[:8] == PNG_SIGNATURE
    trends = [{"metric": "porosity_frac", "state": None, "title": "Porosity", "png": png,
               "n": 3, "limits": {"centre": 37.0, "ucl": 39.66, "lcl": 34.34, "mr_bar": 1.0}},
              {"metric": "Sa_um", "state": None, "title": "Sa", "unit": "um", "png": png,
               "n": 1, "limits": None}]
    html = render_html(results_for([]), {}, trends)
    assert ("Porosity: 3 measurements; centre 37.0 %, control limits 34.3 % to 39.7 % "
            "(process, not spec)") in html
    assert "Sa: 1 measurements<" in html
    imgs = parse(html).imgs
    assert [check_picture(i)[0] for i in imgs] == ["image/png"] * 2


# ------------------------------------------------------------------- the sample_images run
@pytest.fixture(scope="module")
def sample_images_report(tmp_path_factory) -> Path:
    """report.html of `electrode-qc run sample_images` (about 10 s)."""
    import pipeline

    out = tmp_path_factory.mktemp("sample_images_run")
    pipeline.run(SAMPLE_IMAGES, out, jobs=1, store=False)
    return out / "report.html"


@pytest.mark.slow
def test_sample_images_report_is_small_and_keeps_its_pictures(sample_images_report):
    size = sample_images_report.stat().st_size
    assert size < 2_000_000, size  # 4.6 MB with PNG previews
    html = sample_images_report.read_text(encoding="utf-8")
    samples = sorted(p.name for p in SAMPLE_IMAGES.iterdir() if p.is_dir())
    assert len(samples) == 4
    for sid in samples:
        imgs = parse(section(html, sid)).imgs
        kinds = [check_picture(i)[0] for i in imgs]
        # the cross-section's depth profile (layer claims); psd, surface and cross-section
        # photos each with its overlay; histogram; 2 height maps
        assert kinds == (["image/png"] + ["image/webp", "image/png"] * 3 + ["image/png"]
                         + ["image/webp"] * 2), sid
        assert [i.get("class") for i in imgs[2:7:2]] == ["overlay"] * 3
        photo = min(imgs[1:7:2], key=lambda i: int(i["width"]))
        assert int(photo["width"]) >= 560  # sharp at the width the report shows them


# --------------------------------------------------------------------------- the pictures
def _rgba(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGBA"))


def test_sem_overlay_draws_boundaries_circles_and_layer_lines():
    img = np.full((60, 80), 100, np.uint8)
    labels = np.zeros((60, 80), np.int32)
    labels[10:20, 10:20] = 1  # carbon
    labels[30:45, 40:60] = 2  # silver
    pic = figures.sem_picture(img, labels=labels, phase_of_label={1: "carbon", 2: "silver"},
                              points=[(20.0, 45.0, 6.0)], layer_rows=(5, 55))
    assert pic.size == (80, 60)
    assert figures.mime_type(pic.photo) == "image/webp"
    assert figures.mime_type(pic.overlay) == "image/png"
    assert figures.image_size(pic.photo) == figures.image_size(pic.overlay) == (80, 60)
    over = _rgba(pic.overlay)
    rgb, drawn = over[..., :3], over[..., 3] == 255
    assert set(np.unique(over[..., 3])) == {0, 255}  # drawn or transparent, nothing between

    def colour(name):
        return drawn & np.all(rgb == figures.OVERLAY_COLOURS[name], axis=2)

    carbon, silver = colour("carbon"), colour("silver")
    circle, layer = colour("protrusion"), colour("layer")
    assert (carbon | silver | circle | layer).sum() == drawn.sum()
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
    # the photo is the grey image, without the overlay (lossy: within a few levels)
    photo = _rgba(pic.photo)[..., :3].astype(int)
    assert np.abs(photo - 100).max() <= 3
    # an SEM image without segmentation has no overlay
    assert figures.sem_picture(img).overlay is None


def test_sem_preview_keeps_its_pixel_and_byte_budgets():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (768, 1024), dtype=np.uint8)
    # the long side to max_px first
    pic = figures.sem_picture(noise, points=[(500.0, 400.0, 20.0)], max_bytes=10**7)
    assert pic.size == (figures.SEM_MAX_PX, 576)
    # then smaller until the photo fits its bytes; the overlay is drawn at the same scale
    pic = figures.sem_picture(noise, points=[(500.0, 400.0, 20.0)], max_px=1024,
                              max_bytes=100_000)
    w, h = pic.size
    assert len(pic.photo) <= 100_000
    assert w < 1024 and abs(w / h - 1024 / 768) < 0.02
    assert figures.image_size(pic.photo) == figures.image_size(pic.overlay) == (w, h)
    ys, xs = np.nonzero(_rgba(pic.overlay)[..., 3])
    scale = w / 1024
    assert np.allclose(np.hypot(xs - 500 * scale, ys - 400 * scale), 20 * scale, atol=1.5)


def test_height_map_colours_and_unmeasured_points():
    z = np.tile(np.linspace(0.0, 1.0, 64), (32, 1))
    z[8:24, 24:40] = np.nan
    data, size, limits = figures.height_picture(z, percentiles=(0.0, 100.0))
    assert figures.mime_type(data) == "image/webp"
    assert size == (64, 32) == figures.image_size(data)
    assert limits == pytest.approx((0.0, 1.0))
    rgb = _rgba(data)[..., :3].astype(int)
    stops = figures.colour_stops(2)  # the two ends of the colour map
    lo_rgb = [int(stops[0][i:i + 2], 16) for i in (1, 3, 5)]
    hi_rgb = [int(stops[1][i:i + 2], 16) for i in (1, 3, 5)]
    # lossy: colours within a few levels, away from sharp edges
    assert np.abs(rgb[4:28, 1] - lo_rgb).max() <= 12
    assert np.abs(rgb[4:28, 62] - hi_rgb).max() <= 12
    assert np.abs(rgb[12:20, 28:36] - figures.NAN_RGB).max() <= 12
    # larger maps are scaled to HEIGHT_MAX_PX on the long side
    _, big, _ = figures.height_picture(np.zeros((1000, 500)))
    assert big == (figures.HEIGHT_MAX_PX // 2, figures.HEIGHT_MAX_PX)
    # all unmeasured: no colour scale, still a picture
    _, _, none = figures.height_picture(np.full((8, 8), np.nan))
    assert none is None


def test_picture_formats_sizes_and_data_uris():
    """`image_size` reads every kind of file it may meet: PNG, and WebP lossy (VP8), lossless
    (VP8L) and extended (VP8X, as with alpha), each against Pillow's answer."""
    from PIL import Image

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    cases = [("PNG", "RGB", {}), ("WEBP", "RGB", {"quality": 70}),
             ("WEBP", "RGB", {"lossless": True}), ("WEBP", "RGBA", {"quality": 70})]
    chunks = set()
    for fmt_name, mode, kw in cases:
        buf = io.BytesIO()
        Image.fromarray(pixels[..., :len(mode)], mode).save(buf, format=fmt_name, **kw)
        data = buf.getvalue()
        chunks.add(data[12:16])
        assert figures.image_size(data) == (53, 37)
        mime = figures.mime_type(data)
        assert mime == f"image/{fmt_name.lower()}"
        assert decode_uri(figures.data_uri(data)) == (mime, data)
    assert {b"VP8 ", b"VP8L", b"VP8X"} <= chunks
    buf = io.BytesIO()
    Image.fromarray(pixels[..., :3]).save(buf, format="JPEG")
    with pytest.raises(ValueError, match="not a PNG or WebP"):
        figures.data_uri(buf.getvalue())
    with pytest.raises(ValueError):
        figures.image_size(PNG_SIGNATURE + b"\0\0\0\rIHDX" + b"\0" * 8)


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


def test_histogram_png_is_a_palette_png_without_particles_too():
    from PIL import Image

    sizes = []
    for d in (histogram_artifact(1)["ecd_nm"], np.array([]), np.array([50.0, 50.0, np.nan])):
        png = figures.histogram_png(d, histogram_artifact(1)["modes"], title="t")
        assert png[:8] == PNG_SIGNATURE and figures.image_size(png)[0] > 100
        with Image.open(io.BytesIO(png)) as im:
            assert im.mode == "P" and len(im.getcolors()) <= figures.CHART_COLOURS
        sizes.append(len(png))
    assert sizes[0] < 15_000  # about 26 kB as an RGBA PNG


def test_number_formatting():
    assert fmt(0.07) == "0.07" and fmt(36.4) == "36.4" and fmt(2.0) == "2"
    assert fmt(None) == "n/a" and fmt(float("nan")) == "n/a" and fmt(True) == "yes"
    assert fmt(0.0001234) == "0.000123" and fmt(1e-9) == "1e-09"
    assert fmt_pm(0.364, 0.012, scale=100, unit="%") == "36.4 \u00b1 1.2 %"
    assert fmt_pm(13.71, 0.2) == "13.71 \u00b1 0.20"
    assert fmt_pm(None, 0.1) == "n/a" and fmt_pm(0.5, None, unit="um") == "0.500 um"
    # plain values: three significant digits, trailing zeros kept
    assert fmt_pm(0.53, scale=100, unit="%") == "53.0 %" and fmt_pm(0.2) == "0.200"
    assert fmt_pm(1234.5) == "1234" and fmt_pm(0.0) == "0" and fmt_pm(2e-9) == "2.00e-09"
    assert fmt_pm(-0.00001, 0.01) == "0.000 \u00b1 0.010"  # no "-0.000"
    assert fmt_pm(445.1, 27.3) == "445 \u00b1 27"
