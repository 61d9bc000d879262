"""``robust-data browse``: a local web app over one dataset's stored tables (Starlette).

Pages are rendered on the server (Jinja2 templates, plain HTML forms, no frontend build):

- ``/``: the grid of thumbnails, with filters, sorting and paging
  (robust_data.explore.sample_index);
- ``/sample?id=...``: one sample, large, with every score, its ledger outcome, its
  near-duplicate group, its variants and the perturbed image that flipped it;
- ``/embedding``: the stored embeddings projected to 2-D, each point a link to its sample;
- ``POST /review``: keep / drop / relabel decisions for one sample or a selection of the grid,
  recorded in the ``reviews`` table (robust_data.curation.reviews); nothing else is ever written.

It listens on 127.0.0.1 only and answers only its own pages (pipelines.browser_guard: the Host
is this server, a form comes from its pages with its CSRF token). A refused request gets a
short page saying what was refused and why, in one line; nothing is recorded.
"""

from __future__ import annotations

import errno
import socket
import urllib.parse
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from pipelines.browser_guard import TOKEN_FIELD, Guard, Refused, new_token, read_form, safe_next
from pipelines.cli.common import flagged
from robust_data.curation.reviews import DECISIONS, Review, check_reviews, record_reviews
from robust_data.errors import DatasetError, RobustDataError
from robust_data.explore.sample_index import (
    PAGE_SIZE,
    SORTABLE,
    SampleFilter,
    SampleIndex,
    flipped_image,
    parse_whole,
    shown,
)

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} · robust-data</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 1em 2em; color: #222 }
 a { color: #1456b8 } h1 { font-size: 1.3em } nav a { margin-right: 1em }
 form.filters { display: flex; flex-wrap: wrap; gap: .4em 1em; align-items: end;
   background: #f4f6f8; padding: .6em; border-radius: 6px }
 form.filters label { display: flex; flex-direction: column; font-size: 12px }
 .grid { display: flex; flex-wrap: wrap; gap: 8px; margin-top: .8em }
 .cell { width: 104px; border: 1px solid #ddd; border-radius: 4px; padding: 3px;
   font-size: 11px; text-align: center }
 .cell img { width: 96px; height: 96px; image-rendering: pixelated; background: #000 }
 .cell.dropped { border-color: #d33 } .cell.reviewed { outline: 2px solid #e8a100 }
 table.scores td, table.scores th { padding: 2px 8px; border-bottom: 1px solid #eee;
   text-align: left }
 img.large { width: 280px; height: 280px; image-rendering: pixelated; background: #000 }
 .row { display: flex; gap: 2em; flex-wrap: wrap } .muted { color: #777 }
 .thumbs img { width: 64px; height: 64px; image-rendering: pixelated; margin: 2px }
 .review { background: #fff8e6; padding: .6em; border-radius: 6px; margin: .8em 0 }
 .refused { background: #fdecea; padding: .6em; border-radius: 6px; max-width: 60em }
</style></head><body>
<nav><a href="/">Samples</a><a href="/embedding">Embedding</a>
{% if dataset %}<span class="muted">dataset <b>{{ dataset }}</b></span>{% endif %}</nav>
{% block body %}{% endblock %}
</body></html>"""

_REVIEW_FORM = """{% macro review_form(classes, single=None, next_url='/') %}
<div class="review">
 <input type="hidden" name="{{ token_field }}" value="{{ csrf_token }}">
 {% if single %}<input type="hidden" name="sample_id" value="{{ single }}">{% endif %}
 <input type="hidden" name="next" value="{{ next_url }}">
 <b>Review{% if not single %} the checked samples{% endif %}:</b>
 <select name="decision" id="decision">
  {% for d in decisions %}<option value="{{ d }}">{{ d }}</option>{% endfor %}
 </select>
 <label>new label <select name="new_label" id="new_label"><option value="">-</option>
  {% for name in classes %}<option value="{{ loop.index0 }}">{{ loop.index0 }} {{ name }}
  </option>{% endfor %}</select></label>
 <input name="note" id="note" placeholder="note (optional)" size="30">
 <button type="submit" id="review-submit">Record</button>
</div>
{% endmacro %}"""

_GRID = """{% extends "base" %}{% from "review" import review_form with context %}{% block body %}
<h1>Samples</h1>
<form class="filters" method="get" action="/" id="filters">
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
 <label>steps from<input name="min_steps" id="f-min_steps" size="4"
  value="{{ values.get('min_steps', '') }}"></label>
 <label>to<input name="max_steps" id="f-max_steps" size="4"
  value="{{ values.get('max_steps', '') }}"></label>
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
 <label>sort<select name="sort" id="f-sort">
  {% for s in sortable %}<option {{ "selected" if sort == s }}>{{ s }}</option>
  {% endfor %}</select></label>
 <label>order<select name="order" id="f-order">
  <option value="asc">ascending</option>
  <option value="desc" {{ "selected" if descending }}>descending</option></select></label>
 <button type="submit" id="apply">Apply</button> <a href="/">clear</a>
</form>
<p><b id="count">{{ "{:,}".format(total) }}</b> samples match;
 showing {{ offset + 1 if rows else 0 }}-{{ offset + rows|length }}.
 {% if offset > 0 %}<a id="prev" href="{{ page_url(offset - page_size) }}">previous</a>
 {% endif %}
 {% if offset + page_size < total %}<a id="next" href="{{ page_url(offset + page_size) }}"
 >next</a>{% endif %}</p>
<form method="post" action="/review" id="bulk">
{{ review_form(classes, None, here) }}
<div class="grid">
{% for r in rows %}
 <div class="cell {{ 'dropped' if r.kept == false }} {{ 'reviewed' if r.review }}"
  data-sample="{{ r.sample_id }}">
  <a href="/sample?id={{ r.sample_id|urlencode }}"><img loading="lazy" alt="{{ r.sample_id }}"
   src="/image?id={{ r.sample_id|urlencode }}"></a><br>
  <input type="checkbox" name="sample_id" value="{{ r.sample_id }}">
  {{ r.label }}{% if r.review %} · <b>{{ r.review }}</b>{% endif %}<br>
  <span class="muted">{{ "robust" if r.robust else ("flip@" ~ r.steps_to_flip
   if r.steps_to_flip else "-") }}{% if r.is_label_issue %} · issue{% endif %}</span>
 </div>
{% endfor %}
</div></form>
{% endblock %}"""

_SAMPLE = """{% extends "base" %}{% from "review" import review_form with context %}{% block body %}
<h1>{{ s.sample_id }}</h1>
<div class="row">
 <div><img class="large" id="image" alt="sample" src="/image?id={{ s.sample_id|urlencode }}">
  <br>label {{ s.label }} ({{ s.label_name }})</div>
 {% if flip %}<div><img class="large" id="flip" alt="flipped"
  src="/flip?id={{ s.sample_id|urlencode }}"><br>
  try {{ flip.step }} of {{ s.scheme }} (seed {{ s.rpr_seed }}): the model predicted
  <b id="flip-pred">{{ flip.prediction }}</b> (stored flip_pred {{ flip.stored }})</div>
 {% endif %}
 <div><table class="scores" id="scores">
  {% for key, value in s.items() %}<tr><th>{{ key }}</th><td>{{ value|cell }}</td></tr>
  {% endfor %}</table></div>
</div>
<form method="post" action="/review" id="review">
{{ review_form(classes, s.sample_id, here) }}
</form>
{% if group %}<h2>Near-duplicate group {{ s.near_duplicate_group }}</h2><div class="thumbs">
 {% for g in group %}<a href="/sample?id={{ g|urlencode }}"><img alt="{{ g }}"
  src="/image?id={{ g|urlencode }}"></a>{% endfor %}</div>{% endif %}
{% if variants %}<h2>Variants ({{ variants|length }})</h2><div class="thumbs">
 {% for v in variants %}<img title="{{ v.transform }}" alt="{{ v.transform }}"
  src="/variant?id={{ v.variant_id|urlencode }}">{% endfor %}</div>{% endif %}
{% endblock %}"""

_EMBEDDING = """{% extends "base" %}{% block body %}
<h1>Embedding (PCA of the reference model's features)</h1>
<p>Colour by: {% for c in ["label", "robust", "is_label_issue"] %}
 <a href="/embedding?color={{ c }}">{{ c }}</a>{% endfor %} · {{ points|length }} points
 {% if not points %}(no embeddings stored: materialize oof_predictions){% endif %}</p>
<svg width="720" height="720" viewBox="0 0 720 720" style="background:#fafafa">
{% for p in points %}<a href="/sample?id={{ p.sample_id|urlencode }}"><circle
 cx="{{ 10 + 700 * p.x }}" cy="{{ 10 + 700 * (1 - p.y) }}" r="3"
 fill="{{ colour(p) }}"><title>{{ p.sample_id }}</title></circle></a>{% endfor %}
</svg>{% endblock %}"""

_ERROR = """{% extends "base" %}{% block body %}
<h1>{{ title }}</h1>
<p class="refused" id="error">{{ message }}</p>
<p>Nothing was recorded. <a href="/">Back to the samples</a></p>
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
BOOL_FILTERS = (
    ("robust", "robust"),
    ("label_issue", "label issue"),
    ("outlier", "outlier"),
    ("kept", "kept"),
)


def _templates(token: str) -> jinja2.Environment:
    """The pages; every form that posts carries ``token`` (this server's CSRF token)."""
    loader = jinja2.DictLoader(
        {
            "base": _BASE,
            "review": _REVIEW_FORM,
            "grid": _GRID,
            "sample": _SAMPLE,
            "embedding": _EMBEDDING,
            "error": _ERROR,
        }
    )
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["cell"] = _cell
    env.globals.update(csrf_token=token, token_field=TOKEN_FIELD)
    return env


def _cell(value: Any) -> str:
    """A score as shown: floats to 4 decimals, missing as a dash."""
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _html(env: jinja2.Environment, name: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(env.get_template(name).render(decisions=DECISIONS, **context))


def _error_page(env: jinja2.Environment, refused: Refused, dataset: str | None) -> HTMLResponse:
    """A refusal as a short page in the app's style: what was refused, and its one line."""
    page = env.get_template("error").render(
        title=refused.title, message=refused.message, dataset=dataset
    )
    return HTMLResponse(page, status_code=refused.status)


def _unwritable(error: OSError | DatasetError) -> Refused:
    """The refusal for a review that could not be written (a read-only or unwritable home)."""
    if isinstance(error, DatasetError):  # the page is served by `robust-data browse`
        expected, found, fix = error.expected, error.found, flagged(error.fix, error.options)
    else:
        expected = "a writable home for the reviews table"
        found = f"{error.filename or 'the reviews table'}: {error.strerror or error}"
        fix = "make the home writable, or browse a copy of it with --home"
    title = "Not recorded: the reviews table cannot be written"
    return Refused.of(503, title, expected, found, fix)


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


def build_app(index: SampleIndex) -> Starlette:
    """The browser's Starlette app over one dataset's :class:`SampleIndex`.

    Its CSRF token is made here, once: each start of the server has its own.
    """
    token = new_token()
    env = _templates(token)
    common = {"dataset": index.dataset, "classes": index.class_names}

    def grid(request: Request) -> Response:
        values = dict(request.query_params)
        try:
            where = SampleFilter.from_query(values)
            offset = parse_whole("offset", (values.get("offset") or "0").strip())
        except DatasetError as exc:
            raise Refused(400, "Refused: a bad filter", str(exc)) from None
        sort = values.get("sort") or "sample_id"
        if sort not in SORTABLE:
            raise Refused.of(
                400,
                "Refused: a bad sort",
                f"sort by one of {', '.join(SORTABLE)}",
                shown(sort),
                "pick a sort column in the filters",
            )
        descending = values.get("order") == "desc"
        rows = index.page(where, sort, descending, offset, PAGE_SIZE)

        def page_url(start: int) -> str:
            return "/?" + urllib.parse.urlencode({**values, "offset": max(0, start)})

        return _html(
            env,
            "grid",
            title="samples",
            f=where,
            values=values,
            rows=rows,
            offset=offset,
            total=index.count(where),
            page_size=PAGE_SIZE,
            page_url=page_url,
            here=str(request.url.path) + ("?" + request.url.query if request.url.query else ""),
            bools=BOOL_FILTERS,
            reasons=index.reasons(),
            transforms=index.transforms(),
            sortable=SORTABLE,
            sort=sort,
            descending=descending,
            **common,
        )

    def sample(request: Request) -> Response:
        sample_id = request.query_params.get("id", "")
        row = index.sample(sample_id)
        if row is None:
            raise Refused.of(
                404,
                "No such sample",
                f"a sample id of {index.dataset}",
                shown(sample_id),
                "follow a link from the grid",
            )
        flip = None
        if row["steps_to_flip"] is not None and index.store.has("reference_model", index.dataset):
            made = flipped_image(index, sample_id)
            if made is not None:
                flip = {"step": made[1], "stored": made[2], "prediction": made[3]}
        group = (
            index.group_members(row["near_duplicate_group"]) if row["near_duplicate_group"] else []
        )
        return _html(
            env,
            "sample",
            title=sample_id,
            s=row,
            flip=flip,
            group=group,
            variants=index.sample_variants(sample_id),
            here=f"/sample?{request.url.query}",
            **common,
        )

    def image(request: Request) -> Response:
        try:
            return _png(index.image(request.query_params.get("id", "")))
        except KeyError:
            return PlainTextResponse("no such sample", 404)

    def variant(request: Request) -> Response:
        try:
            return _png(index.variant_image(request.query_params.get("id", "")))
        except KeyError:
            return PlainTextResponse("no such variant", 404)

    def flip(request: Request) -> Response:
        made = flipped_image(index, request.query_params.get("id", ""))
        return _png(made[0]) if made else PlainTextResponse("not flipped", 404)

    def embedding(request: Request) -> Response:
        color = request.query_params.get("color", "label")

        def colour(point: dict[str, Any]) -> str:
            value = point.get(color)
            if color == "label" and value is not None:
                return PALETTE[int(value) % len(PALETTE)]
            bad = (color == "robust" and value is False) or (
                color == "is_label_issue" and value is True
            )
            return "#d62728" if bad else "#9aa"

        return _html(
            env,
            "embedding",
            title="embedding",
            points=index.embedding_2d(),
            colour=colour,
            **common,
        )

    async def review(request: Request) -> Response:
        form = await read_form(request, token)
        ids = form.get("sample_id", [])
        decision = (form.get("decision") or [""])[0]
        raw_label = (form.get("new_label") or [""])[0]
        note = (form.get("note") or [""])[0] or None
        next_url = safe_next((form.get("next") or ["/"])[0])
        if not ids:
            raise Refused.of(
                400, "Not recorded", "at least one sample", "none checked", "tick one first"
            )
        try:
            label = None
            if decision == "relabel" and raw_label:
                label = parse_whole("new_label", raw_label.strip(), "pick a label in the form")
            reviews = [Review(i, decision, label, note) for i in ids]
            check_reviews(reviews, index.sample_ids, len(index.class_names))
        except RobustDataError as exc:
            raise Refused(400, "Not recorded: a bad review", str(exc)) from None
        try:
            record_reviews(index.store, index.dataset, reviews, "browser")
        except (OSError, DatasetError) as exc:
            raise _unwritable(exc) from None
        index.refresh_reviews()
        return RedirectResponse(next_url, status_code=303)

    def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return _error_page(env, exc, index.dataset)

    return Starlette(
        routes=[
            Route("/", grid),
            Route("/sample", sample),
            Route("/image", image),
            Route("/variant", variant),
            Route("/flip", flip),
            Route("/embedding", embedding),
            Route("/review", review, methods=["POST"]),
            Route("/healthz", lambda request: PlainTextResponse("ok")),
        ],
        middleware=[Middleware(Guard, refuse=lambda exc: _error_page(env, exc, None))],
        exception_handlers={Refused: refused},
    )


def listen(port: int) -> socket.socket:
    """A socket bound to 127.0.0.1:``port`` (0: any free port), taken before the slow indexing.

    Raises
    ------
    DatasetError
        One line when the port is out of range or not free.
    """
    if not 0 <= port <= 65535:
        raise DatasetError("a port in 0..65535 (0: any free one)", str(port), "pass --port 8765")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as error:
        sock.close()
        found = "in use" if error.errno == errno.EADDRINUSE else f"refused ({error.strerror})"
        raise DatasetError(
            "a free port on 127.0.0.1", f"{port} {found}", "pass another --port (0: any free one)"
        ) from None
    return sock


def serve(index: SampleIndex, where: int | socket.socket) -> None:
    """Serve the browser on 127.0.0.1 until interrupted: a port, or a socket of :func:`listen`."""
    import uvicorn

    sock = where if isinstance(where, socket.socket) else listen(where)
    uvicorn.Server(uvicorn.Config(build_app(index), log_level="warning")).run(sockets=[sock])
