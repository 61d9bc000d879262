"""``robust-data browse``: a local web app over a home's datasets (Starlette).

Pages are rendered on the server (pipelines.browser_pages: Jinja2 templates, plain HTML forms,
a little inline script, no frontend build); every URL names its dataset, so a copied URL is a
saved view, and the menu in the header switches datasets:

- ``/``: the grid of tiles (class name, misclassified / flips at try k / robust, cleanlab's
  suggested label, label quality and outlier score, tags), with filters, histograms of label
  quality, outlier score and steps to flip whose bars select a range, sorting and paging
  (robust_data.explore.sample_index);
- ``/sample?id=...``: one sample, large, with every score, its ledger outcome, its
  near-duplicate group, its variants, the perturbed image that flipped it, and the previous
  and next sample of the grid it was opened from;
- ``/embedding``: the reference model's features of both splits projected to 2-D (UMAP when
  installed, else PCA), coloured with a legend; a box dragged on it filters the grid;
- ``POST /review``: keep / drop / relabel decisions, or tags, for one sample, the checked
  samples or every sample matching the filters; more than one sample first shows a page that
  names the count and asks to confirm. Decisions go to the ``reviews`` table
  (robust_data.curation.reviews), tags to ``tags`` (robust_data.explore.tags); nothing else is
  ever written.

It listens on 127.0.0.1 only and answers only its own pages (pipelines.browser_guard: the Host
is this server, a form comes from its pages with its CSRF token). A refused request, an unknown
page or a failure gets a page in the app's style saying what went wrong, in one line; nothing
is recorded.
"""

from __future__ import annotations

import errno
import functools
import socket
import threading
import urllib.parse
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from pipelines.browser_forms import (
    check_confirmed,
    check_split,
    chosen_ids,
    confirm_page,
    first_value,
    form_reviews,
    parse_view,
    view_query,
)
from pipelines.browser_guard import Guard, Refused, new_token, read_form, safe_next
from pipelines.browser_pages import COLOURINGS, legend, link, point_colour, templates
from pipelines.cli.common import flagged
from robust_data.curation.reviews import DECISIONS, record_reviews
from robust_data.errors import DatasetError, did_you_mean
from robust_data.explore.embedding import projection_method
from robust_data.explore.filters import parse_whole, shown
from robust_data.explore.flipped import flipped_image
from robust_data.explore.sample_index import (
    PAGE_SIZE,
    SORTABLE,
    SampleIndex,
    tables_stamp,
)
from robust_data.explore.tags import record_tags

BOOL_FILTERS = (
    ("robust", "robust"),
    ("misclassified", "misclassified"),
    ("label_issue", "label issue"),
    ("outlier", "outlier"),
    ("kept", "kept"),
)
#: Grid parameters that are not filters but belong to a view (kept in links to it).
VIEW_KEYS = ("sort", "order")


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


class Indexes:
    """The home's browsable datasets, each indexed on first use and kept.

    Parameters
    ----------
    first : SampleIndex
        The dataset the server was started with: the default of every page.
    """

    def __init__(self, first: SampleIndex) -> None:
        self.store = first.store
        self.default = first.dataset
        self._built = {first.dataset: first}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Every dataset of the home with stored samples (read now, so new ingests show)."""
        return sorted({self.default, *self.store.datasets()})

    def get(self, name: str | None) -> SampleIndex:
        """The index of dataset ``name`` (the default when empty).

        Raises
        ------
        Refused
            404 for a dataset this home does not hold, with the closest name.
        """
        name = (name or "").strip() or self.default
        built = self._built.get(name)
        if built is not None and built.stamp == tables_stamp(self.store, name):
            built.refresh_notes()  # reviews or tags written by another tool since
            return built
        known = self.names()
        if name not in known:
            raise Refused.of(
                404,
                "No such dataset",
                f"a dataset of this home ({', '.join(known)})",
                shown(name),
                did_you_mean(name, known) or "pick one in the dataset menu",
            )
        with self._lock:  # built again when its tables changed since (a new curation)
            built = self._built.get(name)
            if built is None or built.stamp != tables_stamp(self.store, name):
                built = self._built[name] = SampleIndex(self.store, name)
        return built


class Pages:
    """Renders the pages of one request's dataset with what every page shows."""

    def __init__(self, env: jinja2.Environment, indexes: Indexes) -> None:
        self.env = env
        self.indexes = indexes

    def html(self, name: str, index: SampleIndex, status: int = 200, **context: Any) -> Response:
        common = {
            "dataset": index.dataset,
            "datasets": self.indexes.names(),
            "classes": index.class_names,
            "tags": index.tag_names(),
            "decisions": DECISIONS,
            "link": functools.partial(link, index.dataset),
        }
        page = self.env.get_template(name).render(**{**common, **context})
        return HTMLResponse(page, status_code=status)

    def error(self, refused: Refused, dataset: str | None = None, bare: bool = False) -> Response:
        """A refusal as a page in the app's style: what was refused, and its one line.

        ``bare``: a request not addressed to this server; the page names no dataset.
        """
        shown_dataset = "" if bare else dataset or self.indexes.default
        page = self.env.get_template("error").render(
            title=refused.title,
            message=refused.message,
            dataset=shown_dataset,
            datasets=[] if bare else self.indexes.names(),
            link=(lambda path, **params: path) if bare else functools.partial(link, shown_dataset),
        )
        return HTMLResponse(page, status_code=refused.status)


def build_app(first: SampleIndex) -> Starlette:
    """The browser's Starlette app over a home, opening on ``first``'s dataset.

    Other datasets of the same home are indexed when a page first asks for them. Its CSRF
    token is made here, once: each start of the server has its own.
    """
    token = new_token()
    indexes = Indexes(first)
    pages = Pages(templates(token), indexes)

    def grid(request: Request) -> Response:
        values = dict(request.query_params)
        index = indexes.get(values.get("dataset"))
        where, sort, descending = parse_view(values)
        check_split(index, where)
        try:
            offset = parse_whole("offset", (values.get("offset") or "0").strip())
        except DatasetError as exc:
            raise Refused(400, "Refused: a bad filter", str(exc)) from None

        def page_url(**changes: Any) -> str:
            merged = {**values, **{k: str(v) for k, v in changes.items()}}
            merged = {k: v for k, v in merged.items() if v != "" and k != "dataset"}
            if "offset" in merged:
                merged["offset"] = str(max(0, int(merged["offset"])))
            return link(index.dataset, "/", **merged)

        return pages.html(
            "grid",
            index,
            title="samples",
            f=where,
            values=values,
            rows=index.page(where, sort, descending, offset, PAGE_SIZE),
            offset=offset,
            total=index.count(where),
            hists=[index.histogram(p, where) for p in ("quality", "outlier", "steps")],
            page_size=PAGE_SIZE,
            page_url=page_url,
            here=page_url(),
            view=view_query(values),
            bools=BOOL_FILTERS,
            reasons=index.reasons(),
            transforms=index.transforms(),
            sortable=SORTABLE,
            sort=sort,
            descending=descending,
        )

    def sample(request: Request) -> Response:
        index = indexes.get(request.query_params.get("dataset"))
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
        view = request.query_params.get("view", "")
        where, sort, descending = parse_view(dict(urllib.parse.parse_qsl(view)))
        prev, next_, position, total = index.neighbours(where, sort, descending, sample_id)
        flip = None
        fragile = row["steps_to_flip"] is not None and row["clean_correct"]
        if fragile and index.store.has("reference_model", index.dataset):
            made = flipped_image(index, sample_id)
            if made is not None:
                flip = {"step": made[1], "stored": made[2], "prediction": made[3]}
        group = (
            index.group_members(row["near_duplicate_group"]) if row["near_duplicate_group"] else []
        )
        here = link(index.dataset, "/sample", id=sample_id, view=view)
        return pages.html(
            "sample",
            index,
            title=sample_id,
            s=row,
            flip=flip,
            group=group,
            variants=index.sample_variants(sample_id),
            here=here,
            view=view,
            prev=prev,
            next=next_,
            position=position,
            total=total,
            back=link(index.dataset, "/", **dict(urllib.parse.parse_qsl(view))),
        )

    def _image(request: Request, read: Any, what: str) -> Response:
        index = indexes.get(request.query_params.get("dataset"))
        wanted = request.query_params.get("id", "")
        try:
            data = read(index, wanted)
        except KeyError:
            data = None
        if data is None:
            raise Refused.of(
                404,
                f"No such {what}",
                f"a {what} id of {index.dataset}",
                shown(wanted),
                "follow a link",
            )
        return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    def image(request: Request) -> Response:
        return _image(request, lambda index, i: index.image(i), "sample")

    def variant(request: Request) -> Response:
        return _image(request, lambda index, i: index.variant_image(i), "variant")

    def flip(request: Request) -> Response:
        return _image(
            request, lambda index, i: (flipped_image(index, i) or (None,))[0], "flipped sample"
        )

    def embedding(request: Request) -> Response:
        index = indexes.get(request.query_params.get("dataset"))
        color = request.query_params.get("color", "label")
        if color not in COLOURINGS:
            raise Refused.of(
                400,
                "Refused: a bad colouring",
                f"color in {', '.join(COLOURINGS)}",
                shown(color),
                "pick a colouring on the embedding page",
            )
        points = index.embedding_2d()
        return pages.html(
            "embedding",
            index,
            title="embedding",
            points=points,
            n_train=sum(p.get("split") == "train" for p in points),
            n_test=sum(p.get("split") == "test" for p in points),
            colour=functools.partial(point_colour, color),
            color=color,
            colourings=list(COLOURINGS),
            legend=legend(color, index.class_names),
            method=projection_method(),
            grid_url=link(index.dataset, "/"),
        )

    async def review(request: Request) -> Response:
        form = await read_form(request, token)
        index = indexes.get(first_value(form, "dataset"))
        action = first_value(form, "action", "review")
        next_url = safe_next(first_value(form, "next", "/"))
        ids = chosen_ids(index, form)
        if action in ("tag", "untag"):
            try:
                record_tags(
                    index.store,
                    index.dataset,
                    ids,
                    first_value(form, "tag"),
                    action == "tag",
                    index.sample_ids,
                    "browser",
                )
            except OSError as exc:
                raise _unwritable(exc) from None
            except DatasetError as exc:
                raise Refused(400, "Not recorded: a bad tag", str(exc)) from None
            index.refresh_notes(force=True)  # now, and its stamp spares the next request
            return RedirectResponse(next_url, status_code=303)
        reviews = form_reviews(index, form, ids)
        if not check_confirmed(form, ids) and len(ids) > 1:
            return confirm_page(pages, index, form, reviews, next_url)
        try:
            record_reviews(index.store, index.dataset, reviews, "browser")
        except (OSError, DatasetError) as exc:
            raise _unwritable(exc) from None
        index.refresh_notes(force=True)  # now, and its stamp spares the next request
        return RedirectResponse(next_url, status_code=303)

    def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return pages.error(exc, _dataset_of(request, indexes))

    def missing(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        title = "No such page" if exc.status_code == 404 else f"Refused: {exc.detail}"
        fix = "use the links in the header" if exc.status_code == 404 else "use the app's forms"
        found = f"{request.method} {shown(request.url.path)}"
        return pages.error(Refused.of(exc.status_code, title, "a page of this browser", found, fix))

    def failed(request: Request, exc: Exception) -> Response:
        found = f"{type(exc).__name__}: {shown(str(exc), 120)}"
        return pages.error(
            Refused.of(500, "Something went wrong", "a page", found, "see the server's output")
        )

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
        middleware=[Middleware(Guard, refuse=lambda exc: pages.error(exc, bare=True))],
        exception_handlers={Refused: refused, HTTPException: missing, Exception: failed},
    )


def _dataset_of(request: Request, indexes: Indexes) -> str | None:
    """The dataset a request named, when it is one of the home's (for the error page's links)."""
    name = request.query_params.get("dataset")
    return name if name in indexes.names() else None


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
