"""The Jinja2 template and style sheet of the HTML report (text only; see `html.py`)."""

from __future__ import annotations

__all__ = ["CSS", "TEMPLATE"]

CSS = """
:root { --bad: #b3261e; --warn: #a15c00; --good: #1b6e20; --na: #555; --rule: #d0d4da; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1d2126; margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 1200px; }
h1 { font-size: 1.6rem; margin: .2rem 0 .4rem; }
h2 { font-size: 1.3rem; margin: 2rem 0 .5rem; padding-top: .6rem; border-top: 3px solid #2f4a66; }
h2 small { font-weight: normal; color: #555; font-size: .95rem; }
h3 { font-size: 1.05rem; margin: 1.3rem 0 .4rem; color: #2f4a66; }
table { border-collapse: collapse; margin: .3rem 0 .8rem; }
th, td { border: 1px solid var(--rule); padding: .2rem .5rem; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .8rem; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: .7rem; color: #fff;
         font-size: .85rem; font-weight: 600; white-space: nowrap; }
.badge.bad { background: var(--bad); } .badge.warn { background: var(--warn); }
.badge.good { background: var(--good); } .badge.na { background: var(--na); }
.alert { border-left: 4px solid var(--bad); background: #fbeceb; padding: .4rem .8rem; margin: .5rem 0; }
.alert.reasons { border-color: var(--warn); background: #fdf3e6; }
.note { color: #555; font-size: .9rem; }
.meta td:first-child { font-weight: 600; background: #f6f7f9; }
figure { display: inline-block; margin: .3rem .8rem .8rem 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); display: block; }
figure.sem { width: min(100%, 560px); }
.layers { position: relative; border: 1px solid var(--rule); }
.layers img { width: 100%; border: 0; }
.layers img.overlay { position: absolute; top: 0; left: 0; height: 100%; }
figure.height { width: min(100%, 380px); } figure.height img { width: 100%; image-rendering: pixelated; }
figcaption { font-size: .85rem; color: #333; max-width: 100%; }
.swatch { display: inline-block; width: .8rem; height: .8rem; border: 1px solid #444;
          vertical-align: middle; margin: 0 .2rem 0 .6rem; }
.cbar { position: relative; height: 2.3rem; margin-top: .3rem; }
.cbar .ramp { height: .8rem; border: 1px solid #444; }
.cbar .tick { position: absolute; top: .85rem; transform: translateX(-50%); font-size: .75rem;
              white-space: nowrap; }
.cbar .tick.first { transform: none; } .cbar .tick.last { transform: translateX(-100%); }
ul.flags { margin: .2rem 0 .6rem; padding-left: 1.2rem; }
details { margin: .3rem 0 .8rem; } summary { cursor: pointer; color: #2f4a66; font-weight: 600; }
.verdict { font-size: 1.05rem; }
footer { margin-top: 3rem; color: #666; font-size: .85rem; }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>electrode-qc report{% if run.set_id %}: {{ run.set_id }}{% endif %}</title>
<style>{{ css }}</style>
</head>
<body>
{% macro badge(b) %}<span class="badge {{ b.cls }}">{{ b.text }}</span>{% endmacro %}
{% macro claims_table(rows, kind) %}
{% if rows %}
<table>
<tr><th>Claim</th><th>Statement</th><th>Value</th><th>Met</th><th>Note</th></tr>
{% for r in rows %}
<tr><td>{{ r.claim }}</td><td>{{ r.text }}</td><td class="num">{{ r.value }}</td><td>{{ badge(r.met) }}</td><td>{{ r.note }}</td></tr>
{% endfor %}
</table>
{% else %}<p class="note">No {{ kind }} claims evaluated.</p>{% endif %}
{% endmacro %}
{% macro kv_table(rows) %}
<table class="meta">
{% for k, v in rows %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>
{% endfor %}
</table>
{% endmacro %}
<header>
<h1>electrode-qc report</h1>
<p class="note">Folder {{ run.folder }} &middot; created {{ run.created_utc }} &middot;
electrode-qc {{ run.package_version }} &middot; spec {{ run.spec_id }} &middot;
gate {{ run.gate_spec_id }} &middot;
exit code {{ run.exit_code }} &middot; {{ run.counts }}</p>
{% if run.pictures_note %}<p class="note">{{ run.pictures_note }}</p>{% endif %}
</header>

<section id="summary">
<h2>Summary</h2>
<p class="note">Failures first: non-conforming, then indeterminate, then conforming; within each,
{{ run.spec_name }} not met first, then samples with failed files.</p>
{% if samples %}
<table>
<tr><th>Sample</th><th>Title</th><th>Gate</th><th>{{ run.spec_name }}</th><th>Porosity</th><th>Sa</th>
<th>Sz</th><th>Particle claims</th><th>Void reduction</th><th>Failed files</th><th>Flags</th></tr>
{% for s in samples %}
<tr class="summary-row" data-outcome="{{ s.outcome.key }}">
<td><a href="#{{ s.anchor }}">{{ s.sample_id }}</a></td><td>{{ s.title }}</td>
<td>{{ badge(s.outcome) }}</td><td>{{ badge(s.claim15_met) }}</td>
{% for p in s.c15_summary %}<td class="num">{{ p.text }} {% if p.met %}{{ badge(p.met) }}{% endif %}</td>
{% endfor %}
<td>{{ badge(s.particle_met) }}</td><td class="num">{{ s.void_reduction }}</td>
<td class="num">{{ s.failed | length }}</td><td class="num">{{ s.flags | length }}</td>
</tr>
{% endfor %}
</table>
{% else %}
<p class="alert">No samples in the results.</p>
{% endif %}
</section>
{% if trends %}

<section id="trends">
<h2>Trends</h2>
<p class="note">Individuals and moving range per metric from the results store, oldest first.
Control limits (grey) describe the process; the spec limit (dashed red) is the requirement.
Samples measured before pressing are charted apart, without the claim's limits.</p>
{% for t in trends %}
<figure><img src="{{ t.uri }}" width="{{ t.width }}" height="{{ t.height }}" alt="{{ t.caption }}">
<figcaption>{{ t.caption }}</figcaption></figure>
{% endfor %}
</section>
{% endif %}

{% for s in samples %}
<section class="sample" id="{{ s.anchor }}">
<h2>{{ s.sample_id }}{% if s.title %} <small>{{ s.title }}</small>{% endif %}</h2>
<p class="verdict">Production gate {{ badge(s.outcome) }} &middot; {{ s.spec_name }} {{ badge(s.claim15_met) }} &middot;
particle claims {{ badge(s.particle_met) }}{% if s.state %} &middot; state: {{ s.state }}{% endif %}</p>
{% if s.failed %}
<div class="alert failed"><strong>Failed files ({{ s.failed | length }}): not measured</strong>
<ul>{% for u in s.failed %}<li><span class="mono" title="{{ u.path }}">{{ u.file }}</span> ({{ u.role }}): {{ u.error }}</li>{% endfor %}</ul>
</div>
{% endif %}
{% if s.gate_reasons %}
<div class="alert reasons"><strong>Gate reasons</strong>
<ul class="flags">{% for r in s.gate_reasons %}<li>{{ r }}</li>{% endfor %}</ul>
</div>
{% endif %}

<h3>{{ s.spec_name }} and production gate</h3>
<p class="note">{{ s.spec_name }}: met when {{ s.claim15_rule }} of the properties holds.
Production gate: {{ s.gate_combine }}; decision rule: {{ s.gate_rule }}.</p>
{% if s.property_rows %}
<table class="properties">
<tr><th>Property</th><th>Value &plusmn; U (k = 2)</th><th>Limit</th><th>Margin</th><th>{{ s.spec_name }}</th><th>Gate</th><th>Source</th></tr>
{% for r in s.property_rows %}
<tr data-property="{{ r.name }}"><td>{{ r.name }}</td><td class="num">{{ r.value }}</td><td class="num">{{ r.limit }}</td>
<td class="num">{{ r.margin }}</td><td>{{ badge(r.met) }}</td><td class="gate">{{ badge(r.gate) }}{% if r.gate_note %} <span class="note">{{ r.gate_note }}</span>{% endif %}</td><td>{{ r.source }}</td></tr>
{% endfor %}
</table>
{% else %}<p class="note">No claim-15 or gate properties.</p>{% endif %}
{% if s.claim15_reasons %}<ul class="flags">{% for r in s.claim15_reasons %}<li>{{ r }}</li>{% endfor %}</ul>{% endif %}

<h3>Flags</h3>
{% if s.flags %}<ul class="flags">{% for f in s.flags %}<li>{{ f }}</li>{% endfor %}</ul>
{% else %}<p class="note">None.</p>{% endif %}

<h3>Particle claims (information)</h3>
{{ claims_table(s.particle_rows, "particle") }}

<h3>Layer claims (information)</h3>
{{ claims_table(s.layer_rows, "layer") }}
{% if s.layer_profile %}
<figure class="histogram">
{% if s.layer_profile.uri %}<img src="{{ s.layer_profile.uri }}" width="{{ s.layer_profile.width }}" height="{{ s.layer_profile.height }}" alt="depth profile of {{ s.sample_id }}">{% endif %}
<figcaption>Median particle-section radius against depth below the top surface (the first
cross-section); a second sub-layer shows as larger sections below the boundary.
{% if s.layer_profile.error %}<div class="alert">{{ s.layer_profile.error }}</div>{% endif %}</figcaption>
</figure>
{% endif %}

<h3>Porosity, surface and void reduction</h3>
<table>
<tr><th>Quantity</th><th>Value</th></tr>
{% for name, text in s.metric_rows %}<tr><td>{{ name }}</td><td class="num">{{ text }}</td></tr>
{% endfor %}
<tr><td>void reduction</td><td class="num">{{ s.void_reduction }}</td></tr>
</table>

<h3>SEM images</h3>
{% for f in s.sem %}
<figure class="sem">
{% if f.photo %}<div class="layers"><img src="{{ f.photo }}" width="{{ f.width }}" height="{{ f.height }}" alt="{{ f.caption }}">
{% if f.overlay %}<img class="overlay" src="{{ f.overlay }}" width="{{ f.width }}" height="{{ f.height }}" alt="segmentation of {{ f.caption }}">{% endif %}
</div>{% endif %}
<figcaption>{{ f.caption }}{% for name, colour in f.legend %}<span class="swatch" style="background: {{ colour }}"></span>{{ name }}{% endfor %}
{% if f.error %}<div class="alert">{{ f.error }}</div>{% endif %}</figcaption>
</figure>
{% else %}<p class="note">No SEM previews.</p>
{% endfor %}

<h3>Particle size distribution</h3>
{% if s.histogram %}
<figure class="histogram">
{% if s.histogram.uri %}<img src="{{ s.histogram.uri }}" width="{{ s.histogram.width }}" height="{{ s.histogram.height }}" alt="size histogram of {{ s.sample_id }}">{% endif %}
<figcaption>Number histogram of equivalent circle diameters; each mode of the log-normal
mixture fit is drawn scaled by its number share.
{% if s.histogram.error %}<div class="alert">{{ s.histogram.error }}</div>{% endif %}</figcaption>
</figure>
{% endif %}
{% if s.psd_rows %}{{ kv_table(s.psd_rows) }}{% endif %}
{% if s.mode_rows %}
<table>
<tr><th>Mode</th><th>Geometric mean</th><th>SD</th><th>GSD</th><th>Number share</th><th>Volume share</th><th>n</th></tr>
{% for m in s.mode_rows %}<tr>{% for c in m %}<td class="num">{{ c }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% endif %}
{% if not s.histogram and not s.psd_rows %}<p class="note">No size distribution.</p>{% endif %}

<h3>Height maps</h3>
{% for h in s.heights %}
<figure class="height">
<figcaption><strong>{{ h.title }}</strong></figcaption>
{% if h.uri %}<img src="{{ h.uri }}" width="{{ h.width }}" height="{{ h.height }}" alt="{{ h.title }}">{% endif %}
{% if h.ticks %}
<div class="cbar">
<div class="ramp" style="background: linear-gradient(to right, {{ h.gradient }})"></div>
{% for pos, text, cls in h.ticks %}<span class="tick {{ cls }}" style="left: {{ pos }}%">{{ text }}</span>{% endfor %}
</div>
{% endif %}
<figcaption>{{ h.caption }}{% if h.error %}<div class="alert">{{ h.error }}</div>{% endif %}</figcaption>
</figure>
{% else %}<p class="note">No height maps.</p>
{% endfor %}

<h3>Input files</h3>
{% if s.inputs %}
<table class="inputs">
<tr><th>File</th><th>Role</th><th>Reader</th><th>Pixel size</th><th>Pixel-size source</th><th>Status</th><th>SHA-256</th></tr>
{% for f in s.inputs %}
<tr><td class="mono" title="{{ f.path }}">{{ f.file }}</td><td>{{ f.role }}</td><td>{{ f.reader }}</td><td class="num">{{ f.pixel }}</td>
<td>{{ f.pixel_source }}</td><td>{{ f.status }}{% if f.error %}: {{ f.error }}{% endif %}</td><td class="mono" title="{{ f.sha256 }}">{{ f.sha_short }}</td></tr>
{% endfor %}
</table>
{% else %}<p class="note">No input files.</p>{% endif %}
{% if s.provenance_rows %}
<details class="provenance"><summary>Provenance ({{ s.provenance_rows | length }} entries)</summary>
{{ kv_table(s.provenance_rows) }}
</details>
{% endif %}
</section>
{% endfor %}

<section id="run-provenance">
<h2>Run provenance</h2>
<details class="provenance"><summary>Specs, recipe and versions ({{ run.provenance_rows | length }} entries)</summary>
{{ kv_table(run.provenance_rows) }}
</details>
</section>
<footer>Generated by electrode-qc {{ run.package_version }}; this file is self-contained and needs no network.</footer>
</body>
</html>
"""
