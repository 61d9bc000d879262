"""The browser's pages: Jinja2 templates rendered on the server, a little inline script.

Every link carries the dataset (``?dataset=...``), so a copied URL is a saved view of one
dataset; every form that posts carries the server's CSRF token (pipelines.browser_guard).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import jinja2

from pipelines.browser_guard import TOKEN_FIELD

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} · robust-data</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 0; color: #222 }
 main { margin: 1em 2em }
 a { color: #1456b8 } h1 { font-size: 1.3em } h2 { font-size: 1.1em }
 header { display: flex; gap: 1.5em; align-items: center; background: #1f2a37; color: #fff;
   padding: .5em 2em } header a { color: #fff; text-decoration: none; font-weight: 600 }
 header .brand { color: #9ec5fe } header form { margin-left: auto }
 form.filters { display: flex; flex-wrap: wrap; gap: .4em 1em; align-items: end;
   background: #f4f6f8; padding: .6em; border-radius: 6px }
 form.filters label { display: flex; flex-direction: column; font-size: 12px }
 .hists { display: flex; gap: 1.5em; flex-wrap: wrap; margin: .6em 0 }
 .hist { font-size: 12px } .hist svg { background: #f8f9fb; cursor: crosshair; display: block }
 .hist rect.bar { fill: #8fb3e8 } .hist rect.bar.in { fill: #1456b8 }
 .hist rect.bar.pending { fill: #e8a100 }
 .grid { display: flex; flex-wrap: wrap; gap: 8px; margin-top: .8em }
 .cell { width: 128px; border: 1px solid #ddd; border-radius: 4px; padding: 3px;
   font-size: 11px; text-align: center; line-height: 1.35 }
 .cell img { width: 96px; height: 96px; image-rendering: pixelated; background: #000 }
 .cell.dropped { border-color: #d33 } .cell.reviewed { outline: 2px solid #e8a100 }
 .cell .name { font-weight: 600 } .bad { color: #c0392b; font-weight: 600 }
 .warn { color: #a15c00 } .good { color: #1e7b34 } .tag { background: #eef2ff;
   border-radius: 3px; padding: 0 3px; margin: 0 1px; color: #3730a3 }
 table.scores td, table.scores th { padding: 2px 8px; border-bottom: 1px solid #eee;
   text-align: left }
 img.large { width: 280px; height: 280px; image-rendering: pixelated; background: #000 }
 .row { display: flex; gap: 2em; flex-wrap: wrap } .muted { color: #777 }
 .thumbs img { width: 64px; height: 64px; image-rendering: pixelated; margin: 2px }
 .review { background: #fff8e6; padding: .6em; border-radius: 6px; margin: .8em 0;
   display: flex; flex-wrap: wrap; gap: .5em 1em; align-items: center }
 .refused { background: #fdecea; padding: .6em; border-radius: 6px; max-width: 60em }
 .confirm { background: #fff8e6; padding: 1em; border-radius: 6px; max-width: 50em }
 .legend span { display: inline-block; margin-right: 1em } .legend i { display: inline-block;
   width: 10px; height: 10px; border-radius: 5px; margin-right: 4px }
 .views a { margin-right: .8em } .pager a { margin: 0 .5em }
</style></head><body>
<header><span class="brand">robust-data</span>
 <a href="{{ link('/') }}">Samples</a><a href="{{ link('/embedding') }}">Embedding</a>
 {% if datasets %}<form method="get" action="/" id="switch"><label>dataset
  <select name="dataset" id="dataset" onchange="this.form.submit()">
  {% for d in datasets %}<option {{ "selected" if d == dataset }}>{{ d }}</option>
  {% endfor %}</select></label></form>{% endif %}</header>
<main>{% block body %}{% endblock %}</main>
</body></html>"""

_FORMS = """{% macro review_fields(single=None, next_url='/') %}
 <input type="hidden" name="{{ token_field }}" value="{{ csrf_token }}">
 <input type="hidden" name="dataset" value="{{ dataset }}">
 {% if single %}<input type="hidden" name="sample_id" value="{{ single }}">{% endif %}
 <input type="hidden" name="next" value="{{ next_url }}">
 <label>decision <select name="decision" id="decision" required>
  <option value="" selected>choose...</option>
  {% for d in decisions %}<option value="{{ d }}">{{ d }}</option>{% endfor %}
 </select></label>
 <label>new label <select name="new_label" id="new_label"><option value="">-</option>
  {% for name in classes %}<option value="{{ loop.index0 }}">{{ loop.index0 }} {{ name }}
  </option>{% endfor %}</select></label>
 <input name="note" id="note" placeholder="note (optional)" size="24">
 <button type="submit" name="action" value="review" id="review-submit">Record</button>
 <span class="muted">|</span>
 <input name="tag" id="tag" placeholder="tag" size="12" list="known-tags">
 <datalist id="known-tags">{% for t in tags %}<option value="{{ t }}">{% endfor %}</datalist>
 <button type="submit" name="action" value="tag" id="tag-add" formnovalidate>Add tag</button>
 <button type="submit" name="action" value="untag" id="tag-remove" formnovalidate
 >Remove tag</button>
{% endmacro %}"""

_HIST = """{% macro histogram(h) %}
<div class="hist" id="hist-{{ h.prefix }}"><b>{{ h.title }}</b>
 {% if h.selected[0] is not none or h.selected[1] is not none %}
 <span id="range-{{ h.prefix }}">{{ h.selected[0]|bound }}-{{ h.selected[1]|bound }}</span>
 <a href="{{ page_url(offset=0, **{'min_' ~ h.prefix: '', 'max_' ~ h.prefix: ''}) }}">clear</a>
 {% endif %}
 <svg class="hist" width="{{ 12 * h.bins|length }}" height="64" data-prefix="{{ h.prefix }}"
  data-whole="{{ 1 if h.whole else 0 }}">
 {% set top = h.bins|map(attribute='count')|max %}
 {% for b in h.bins %}{% set height = 0 if not top else 56 * b.count / top %}
  <rect class="bar {{ 'in' if b|inside(h.selected) }}" x="{{ 12 * loop.index0 + 1 }}"
   y="{{ 60 - height }}" width="10" height="{{ height }}" data-low="{{ b.low }}"
   data-high="{{ b.high }}" data-last="{{ 1 if loop.last else 0 }}"><title>{{ b.low|bound
   }}-{{ b.high|bound }}: {{ b.count }}</title></rect>
  <rect class="hit" x="{{ 12 * loop.index0 }}" y="0" width="12" height="64"
   fill="transparent" data-k="{{ loop.index0 }}"></rect>{% endfor %}
 </svg>
 <span class="muted">{{ h.low|bound }}</span>
 <span class="muted" style="float:right">{{ 'robust' if h.whole else h.high|bound }}</span>
</div>{% endmacro %}"""

_GRID = """{% extends "base" %}{% from "forms" import review_fields with context %}
{% from "hist" import histogram with context %}{% block body %}
<h1>Samples of {{ dataset }}</h1>
<form class="filters" method="get" action="/" id="filters">
 <input type="hidden" name="dataset" value="{{ dataset }}">
 <label>split<select name="split" id="f-split"><option value="">any</option>
  {% for s in ["train", "test"] %}<option {{ "selected" if f.split == s }}>{{ s }}</option>
  {% endfor %}</select></label>
 <label>class<select name="label" id="f-label"><option value="">any</option>
  {% for name in classes %}<option value="{{ loop.index0 }}"
   {{ "selected" if f.label == loop.index0 }}>{{ loop.index0 }} {{ name }}</option>
  {% endfor %}</select></label>
 {% for key, title in bools %}
 <label>{{ title }}<select name="{{ key }}" id="f-{{ key }}"><option value="">any</option>
  <option value="true" {{ "selected" if values.get(key) == "true" }}>yes</option>
  <option value="false" {{ "selected" if values.get(key) == "false" }}>no</option></select></label>
 {% endfor %}
 {% for prefix, whole in [("steps", true), ("quality", false), ("outlier", false)] %}
 <label>{{ prefix }} from<input name="min_{{ prefix }}" id="f-min_{{ prefix }}" size="5"
  value="{{ values.get('min_' ~ prefix, '') }}"></label>
 <label>to<input name="max_{{ prefix }}" id="f-max_{{ prefix }}" size="5"
  value="{{ values.get('max_' ~ prefix, '') }}"></label>
 {% endfor %}
 <label>suggested<select name="suggested_label" id="f-suggested_label">
  <option value="">any</option>
  {% for name in classes %}<option value="{{ loop.index0 }}"
   {{ "selected" if f.suggested_label == loop.index0 }}>{{ loop.index0 }} {{ name }}</option>
  {% endfor %}</select></label>
 <label>dup. group<input name="group" id="f-group" size="12" value="{{ f.group or '' }}">
 </label>
 <label>outcome<select name="reason" id="f-reason"><option value="">any</option>
  {% for r in reasons %}<option {{ "selected" if f.reason == r }}>{{ r }}</option>
  {% endfor %}</select></label>
 <label>variant<select name="transform" id="f-transform"><option value="">any</option>
  {% for t in transforms %}<option {{ "selected" if f.transform == t }}>{{ t }}</option>
  {% endfor %}</select></label>
 <label>review<select name="review" id="f-review"><option value="">any</option>
  {% for r in ["keep", "drop", "relabel", "none"] %}
  <option {{ "selected" if f.review == r }}>{{ r }}</option>{% endfor %}</select></label>
 <label>tag<select name="tag" id="f-tag"><option value="">any</option>
  {% for t in tags %}<option {{ "selected" if f.tag == t }}>{{ t }}</option>{% endfor %}
  </select></label>
 <input type="hidden" name="box" id="f-box" value="{{ f.box or '' }}">
 <label>sort<select name="sort" id="f-sort">
  {% for s in sortable %}<option {{ "selected" if sort == s }}>{{ s }}</option>
  {% endfor %}</select></label>
 <label>order<select name="order" id="f-order">
  <option value="asc">ascending</option>
  <option value="desc" {{ "selected" if descending }}>descending</option></select></label>
 <button type="submit" id="apply">Apply</button> <a href="{{ link('/') }}">clear</a>
</form>
{% if f.box %}<p id="box-note">Showing the samples inside the box drawn on the
 <a href="{{ link('/embedding') }}">embedding</a>.
 <a href="{{ page_url(offset=0, box='') }}">drop the box</a></p>{% endif %}
<div class="hists">{% for h in hists %}{{ histogram(h) }}{% endfor %}</div>
<p class="views" id="views"><b>Views:</b> <a id="permalink" href="{{ here }}">link to this
 view</a> <input id="view-name" placeholder="name this view" size="14">
 <button type="button" id="view-save">Save view</button> <span id="saved-views"></span></p>
<p class="pager"><b id="count">{{ "{:,}".format(total) }}</b> samples match;
 showing {{ offset + 1 if rows else 0 }}-{{ offset + rows|length }}.
 {% if offset > 0 %}<a id="prev" href="{{ page_url(offset=offset - page_size) }}">previous</a>
 {% endif %}
 {% if offset + page_size < total %}<a id="next" href="{{ page_url(offset=offset + page_size)
 }}">next</a>{% endif %}</p>
<form method="post" action="/review" id="bulk">
<input type="hidden" name="view" value="{{ view }}">
<div class="review"><b>Act on</b>
 <label><input type="radio" name="scope" value="checked" id="scope-checked" checked>
  the checked samples</label>
 <label><input type="radio" name="scope" value="filter" id="scope-filter">
  all {{ "{:,}".format(total) }} matching samples</label>
 {{ review_fields(None, here) }}</div>
<div class="grid">
{% for r in rows %}
 <div class="cell {{ 'dropped' if r.kept == false }} {{ 'reviewed' if r.review }}"
  data-sample="{{ r.sample_id }}">
  <a href="{{ link('/sample', id=r.sample_id, view=view) }}"><img loading="lazy"
   alt="{{ r.sample_id }}" src="{{ link('/image', id=r.sample_id) }}"></a><br>
  <input type="checkbox" name="sample_id" value="{{ r.sample_id }}">
  <span class="name">{{ r.label|classname(classes) }}</span>
  {% if r.review %} · <b>{{ r.review }}</b>{% endif %}<br>
  <span class="status">{{ r|status(classes)|safe }}</span><br>
  {% if r.is_label_issue and r.suggested_label is not none %}<span class="warn suggest"
   >suggests {{ r.suggested_label|classname(classes) }}</span><br>{% endif %}
  <span class="muted">q {{ r.label_quality|score }} · out {{ r.outlier_score|score }}</span>
  {% if r.tags %}<br>{% for t in r.tags.split(', ') %}<span class="tag">{{ t }}</span>
  {% endfor %}{% endif %}
 </div>
{% endfor %}
</div></form>
<script>
(function () {
  const form = document.getElementById('filters');
  document.querySelectorAll('svg.hist').forEach(function (svg) {
    const prefix = svg.dataset.prefix, whole = svg.dataset.whole === '1';
    const bars = Array.from(svg.querySelectorAll('rect.bar'));
    let start = null;
    function mark(a, b) {
      bars.forEach(function (bar, k) {
        bar.classList.toggle('pending', k >= Math.min(a, b) && k <= Math.max(a, b));
      });
    }
    function pick(a, b) {
      const lo = bars[Math.min(a, b)].dataset, hi = bars[Math.max(a, b)].dataset;
      let low = +lo.low, high = +hi.high;
      if (whole) {
        low = Math.ceil(low);
        high = hi.last === '1' ? Math.round(high) : Math.ceil(high) - 1;
      }
      const fix = function (v) { return String(whole ? v : +v.toFixed(4)); };
      form.elements['min_' + prefix].value = fix(low);
      form.elements['max_' + prefix].value = fix(high);
      form.submit();
    }
    svg.querySelectorAll('rect.hit').forEach(function (hit) {
      const k = +hit.dataset.k;
      hit.addEventListener('mousedown', function (e) {
        start = k; mark(k, k); e.preventDefault();
      });
      hit.addEventListener('mouseenter', function () { if (start !== null) mark(start, k); });
      hit.addEventListener('mouseup', function () {
        if (start !== null) { const a = start; start = null; pick(a, k); }
      });
    });
  });
  const key = 'robust-data-views';
  function saved() { try { return JSON.parse(localStorage.getItem(key) || '[]'); }
                     catch (e) { return []; } }
  function show() {
    const out = document.getElementById('saved-views');
    out.textContent = '';
    saved().forEach(function (v) {
      const a = document.createElement('a'); a.href = v.url; a.textContent = v.name;
      a.className = 'saved-view'; out.appendChild(a);
    });
  }
  document.getElementById('view-save').addEventListener('click', function () {
    const name = document.getElementById('view-name').value.trim();
    if (!name) { return; }
    const views = saved().filter(function (v) { return v.name !== name; });
    views.push({name: name, url: location.pathname + location.search});
    localStorage.setItem(key, JSON.stringify(views));
    show();
  });
  show();
})();
</script>
{% endblock %}"""

_SAMPLE = """{% extends "base" %}{% from "forms" import review_fields with context %}
{% block body %}
<p class="pager" id="pager"><a href="{{ back }}">back to the grid</a>
 {% if position %}sample {{ position }} of {{ "{:,}".format(total) }} in this view{% endif %}
 {% if prev %}<a id="prev-sample" href="{{ link('/sample', id=prev, view=view) }}"
 >&larr; previous</a>{% endif %}
 {% if next %}<a id="next-sample" href="{{ link('/sample', id=next, view=view) }}"
 >next &rarr;</a>{% endif %}</p>
<h1>{{ s.sample_id }}</h1>
<div class="row">
 <div><img class="large" id="image" alt="sample" src="{{ link('/image', id=s.sample_id) }}">
  <br><span class="name">label {{ s.label }} ({{ s.label_name }})</span>
  <br><span class="status">{{ s|status(classes)|safe }}</span>
  {% if s.tags %}<br>{% for t in s.tags.split(', ') %}<span class="tag">{{ t }}</span>
  {% endfor %}{% endif %}</div>
 {% if flip %}<div><img class="large" id="flip" alt="flipped"
  src="{{ link('/flip', id=s.sample_id) }}"><br>
  try {{ flip.step }} of {{ s.scheme }} (seed {{ s.rpr_seed }}): the model predicted
  <b id="flip-pred">{{ flip.prediction }}</b> (stored flip_pred {{ flip.stored }})</div>
 {% endif %}
 <div><table class="scores" id="scores">
  {% for key, value in s.items() %}<tr><th>{{ key }}</th><td>{{ value|cell }}</td></tr>
  {% endfor %}</table></div>
</div>
<form method="post" action="/review" id="review"><div class="review">
<b>Review this sample:</b> {{ review_fields(s.sample_id, here) }}</div>
</form>
{% if group %}<h2>Near-duplicate group {{ s.near_duplicate_group }}</h2><div class="thumbs">
 {% for g in group %}<a href="{{ link('/sample', id=g) }}"><img alt="{{ g }}"
  src="{{ link('/image', id=g) }}"></a>{% endfor %}</div>{% endif %}
{% if variants %}<h2>Variants ({{ variants|length }})</h2><div class="thumbs">
 {% for v in variants %}<img title="{{ v.transform }}" alt="{{ v.transform }}"
  src="{{ link('/variant', id=v.variant_id) }}">{% endfor %}</div>{% endif %}
{% endblock %}"""

_EMBEDDING = """{% extends "base" %}{% block body %}
<h1>Embedding of {{ dataset }} ({{ method|upper }} of the reference model's features)</h1>
<p>Colour by: {% for c in colourings %}
 <a href="{{ link('/embedding', color=c) }}" {{ 'style="font-weight:700"'|safe
 if c == color }}>{{ c }}</a>{% endfor %} · {{ points|length }} points
 ({{ n_train }} train as dots, {{ n_test }} test as rings) · drag a box to select
 {% if not points %}(no embeddings stored: materialize reference_model or oof_predictions)
 {% endif %}</p>
<p class="legend" id="legend">{% for name, colour in legend %}<span><i
 style="background:{{ colour }}"></i>{{ name }}</span>{% endfor %}</p>
<p id="selection" class="muted">No box drawn.</p>
<svg id="plot" width="720" height="720" viewBox="0 0 720 720" style="background:#fafafa">
{% for p in points %}<a href="{{ link('/sample', id=p.sample_id) }}"><circle
 cx="{{ 10 + 700 * p.x }}" cy="{{ 10 + 700 * (1 - p.y) }}" r="3.2"
 {% if p.split == 'test' %}fill="none" stroke="{{ colour(p) }}" stroke-width="1.4"
 {% else %}fill="{{ colour(p) }}"{% endif %} class="pt {{ p.split }}"><title>{{ p.sample_id
 }}</title></circle></a>{% endfor %}
<rect id="box" x="0" y="0" width="0" height="0" fill="rgba(20,86,184,.12)"
 stroke="#1456b8" visibility="hidden"></rect>
</svg>
<script>
(function () {
  const svg = document.getElementById('plot'), box = document.getElementById('box');
  const grid = {{ grid_url|tojson }};
  let start = null;
  function at(e) {
    const r = svg.getBoundingClientRect();
    return [(e.clientX - r.left) * 720 / r.width, (e.clientY - r.top) * 720 / r.height];
  }
  function unit(v) { return Math.min(1, Math.max(0, (v - 10) / 700)); }
  svg.addEventListener('mousedown', function (e) {
    start = at(e); box.setAttribute('visibility', 'visible'); e.preventDefault();
  });
  svg.addEventListener('mousemove', function (e) {
    if (!start) { return; }
    const p = at(e);
    box.setAttribute('x', Math.min(start[0], p[0]));
    box.setAttribute('y', Math.min(start[1], p[1]));
    box.setAttribute('width', Math.abs(p[0] - start[0]));
    box.setAttribute('height', Math.abs(p[1] - start[1]));
  });
  svg.addEventListener('mouseup', function (e) {
    if (!start) { return; }
    const p = at(e), s = start; start = null;
    if (Math.abs(p[0] - s[0]) < 4 && Math.abs(p[1] - s[1]) < 4) { return; }
    const x0 = unit(Math.min(s[0], p[0])), x1 = unit(Math.max(s[0], p[0]));
    const y0 = 1 - unit(Math.max(s[1], p[1])), y1 = 1 - unit(Math.min(s[1], p[1]));
    const fix = function (v) { return String(+v.toFixed(4)); };
    location.href = grid + '&box=' + [x0, y0, x1, y1].map(fix).join(',');
  });
})();
</script>
{% endblock %}"""

_CONFIRM = """{% extends "base" %}{% block body %}
<h1>Confirm: {{ action }}</h1>
<form method="post" action="/review" id="confirm" class="confirm">
 <p id="confirm-text">{{ summary }}</p>
 <input type="hidden" name="{{ token_field }}" value="{{ csrf_token }}">
 {% for name, value in fields %}<input type="hidden" name="{{ name }}" value="{{ value }}">
 {% endfor %}
 <input type="hidden" name="confirmed" value="{{ ids|length }}">
 <button type="submit" id="confirm-submit">Yes, {{ action }}</button>
 <a id="cancel" href="{{ next_url }}">Cancel</a>
</form>
<div class="thumbs" id="confirm-thumbs">{% for i in ids[:24] %}<img alt="{{ i }}" title="{{ i }}"
 src="{{ link('/image', id=i) }}">{% endfor %}</div>
<p class="muted">First of them: {{ ids[:12]|join(", ") }}{{ " ..." if ids|length > 12 }}</p>
{% endblock %}"""

_ERROR = """{% extends "base" %}{% block body %}
<h1>{{ title }}</h1>
<p class="refused" id="error">{{ message }}</p>
<p>Nothing was recorded. <a href="{{ link('/') }}">Back to the samples</a></p>
{% endblock %}"""

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
BAD, FINE, UNKNOWN = "#d62728", "#7fa7c9", "#cccccc"
#: Embedding colourings: the score and, for booleans, which value is the bad one.
COLOURINGS = {"label": None, "robust": False, "is_label_issue": True, "clean_correct": False}


def link(dataset: str, path: str, **params: Any) -> str:
    """A URL of this app: ``path`` with the dataset and every non-empty parameter."""
    query = {"dataset": dataset, **{k: v for k, v in params.items() if v not in (None, "")}}
    return f"{path}?{urllib.parse.urlencode(query)}"


def point_colour(colouring: str, point: dict[str, Any]) -> str:
    """The colour of one embedding point under ``colouring`` (a key of :data:`COLOURINGS`)."""
    value = point.get(colouring)
    if value is None:
        return UNKNOWN
    if colouring == "label":
        return PALETTE[int(value) % len(PALETTE)]
    return BAD if value == COLOURINGS[colouring] else FINE


def legend(colouring: str, classes: list[str]) -> list[tuple[str, str]]:
    """(name, colour) entries explaining :func:`point_colour` for ``colouring``."""
    if colouring == "label":
        return [(f"{k} {name}", PALETTE[k % len(PALETTE)]) for k, name in enumerate(classes)]
    bad = {"robust": "fragile", "is_label_issue": "label issue", "clean_correct": "misclassified"}
    good = {"robust": "robust", "is_label_issue": "no issue", "clean_correct": "correct"}
    return [(bad[colouring], BAD), (good[colouring], FINE), ("not scored", UNKNOWN)]


def class_name(k: int, classes: list[str]) -> str:
    """A class as shown: ``3 Dress``, or ``3`` where the class is named by its number."""
    name = classes[k] if 0 <= k < len(classes) else ""
    return str(k) if name in ("", str(k)) else f"{k} {name}"


def status(row: dict[str, Any], classes: list[str]) -> str:
    """A tile's robustness line as HTML: misclassified, flips at try k, or robust."""
    from markupsafe import escape

    def name(k: int | None) -> str:
        return "?" if k is None else class_name(k, classes)

    if row.get("clean_correct") is False:
        wrong = escape(name(row["clean_pred"]))
        return f'<span class="bad misclassified">misclassified as {wrong}</span>'
    if row.get("robust"):
        return f'<span class="good">robust ({row["max_steps"]} tries)</span>'
    steps = row.get("steps_to_flip")
    if steps is None:
        return '<span class="muted">not scored</span>'
    to = escape(name(row.get("flip_pred")))
    return f'<span class="warn flips">flips at try {steps} &rarr; {to}</span>'


def _cell(value: Any) -> str:
    """A score as shown: floats to 4 decimals, missing as a dash."""
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _score(value: float | None) -> str:
    """A score on a tile: 2 decimals, a dash when missing."""
    return "-" if value is None else f"{value:.2f}"


def _bound(value: float | None) -> str:
    """A histogram bound: whole numbers plainly, others to 2 decimals, unset as blank."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def _inside(bin_: dict[str, float], selected: tuple[float | None, float | None]) -> bool:
    """Whether a histogram bin lies within the selected range (any bound set)."""
    low, high = selected
    if low is None and high is None:
        return False
    starts_below = high is None or bin_["low"] < high or bin_["low"] == bin_["high"] == high
    return (low is None or bin_["high"] > low) and starts_below


def templates(token: str) -> jinja2.Environment:
    """The pages; every form that posts carries ``token`` (this server's CSRF token)."""
    loader = jinja2.DictLoader(
        {
            "base": _BASE,
            "forms": _FORMS,
            "hist": _HIST,
            "grid": _GRID,
            "sample": _SAMPLE,
            "embedding": _EMBEDDING,
            "confirm": _CONFIRM,
            "error": _ERROR,
        }
    )
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters.update(
        cell=_cell, score=_score, bound=_bound, inside=_inside, status=status, classname=class_name
    )
    env.globals.update(csrf_token=token, token_field=TOKEN_FIELD)
    return env
