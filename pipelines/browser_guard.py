"""Who may talk to ``robust-data browse``: this server's own pages, nothing else.

The browser listens on 127.0.0.1 only, yet any web page the user opens can still send it
requests: a form posted cross-site (CSRF), or a host name of the attacker's that resolves to
127.0.0.1 (DNS rebinding). So, for every request:

- the ``Host`` header must name this server (``127.0.0.1:PORT`` or ``localhost:PORT``, PORT the
  port it is bound to), else 403, GETs included;
- a request that may write (any method but GET, HEAD, OPTIONS) must come from this server's
  pages: its ``Origin`` (or, without one, its ``Referer``) must be this server when present
  (403; ``Origin: null`` is foreign);
- a form body is read only as ``application/x-www-form-urlencoded`` (415 otherwise) and must
  carry the server's CSRF token, random per server start (403 when missing or wrong);
- a redirect target (``next``) must be a path of this app, else ``/``;
- no page may be framed by another site (``X-Frame-Options``, CSP ``frame-ancestors``).

Every refusal is one line, ``expected ...; found ...; how to fix``, shown by the app.
"""

from __future__ import annotations

import hmac
import secrets
import urllib.parse
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from robust_data.explore.filters import shown

HOST_NAMES = ("127.0.0.1", "localhost")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
FORM_TYPE = "application/x-www-form-urlencoded"
TOKEN_FIELD = "csrf_token"
NO_FRAMES = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)


class Refused(Exception):
    """A request this server will not serve: an HTTP status, a title and one line.

    Parameters
    ----------
    status : int
        The HTTP status of the refusal.
    title : str
        What was refused, for the page's heading.
    message : str
        One line, ``expected ...; found ...; how to fix`` (see :meth:`of`).
    """

    def __init__(self, status: int, title: str, message: str) -> None:
        self.status = status
        self.title = title
        self.message = message
        super().__init__(message)

    @classmethod
    def of(cls, status: int, title: str, expected: str, found: str, fix: str) -> Refused:
        """A refusal whose line is built from its three parts."""
        return cls(status, title, f"expected {expected}; found {found}; {fix}")


def new_token() -> str:
    """A fresh CSRF token (random, URL-safe), made once per server start."""
    return secrets.token_urlsafe(32)


def _port(scope: Scope) -> int | None:
    """The port this server's socket is bound to (not taken from any header)."""
    server = scope.get("server")
    return int(server[1]) if server and server[1] is not None else None


def own_hosts(port: int | None) -> set[str]:
    """The ``Host`` values that name this server."""
    return {f"{name}:{port}" for name in HOST_NAMES} if port is not None else set()


def _own_origins(port: int | None) -> set[str]:
    return {f"http://{host}" for host in own_hosts(port)}


def check_host(request: Request) -> None:
    """Refuse a request whose ``Host`` is not this server (DNS rebinding).

    Raises
    ------
    Refused
        403, naming the Host found and the address to open instead.
    """
    port = _port(request.scope)
    host = request.headers.get("host", "").strip().lower()
    if host not in own_hosts(port):
        raise Refused.of(
            403,
            "Refused: not this server's address",
            f"a request to http://127.0.0.1:{port}/ (or localhost:{port})",
            f"Host {shown(host)}" if host else "no Host header",
            f"open http://127.0.0.1:{port}/ in your browser",
        )


def check_origin(request: Request) -> None:
    """Refuse a writing request sent by another site's page.

    ``Origin`` must be this server when present; without it, ``Referer`` must be a page of
    this server when present. A request with neither still needs the form token.

    Raises
    ------
    Refused
        403, naming the foreign origin.
    """
    if request.method in SAFE_METHODS:
        return
    port = _port(request.scope)
    origin = request.headers.get("origin")
    if origin is not None:
        found, own = origin.strip().lower(), origin.strip().lower() in _own_origins(port)
    else:
        referer = request.headers.get("referer")
        if referer is None:
            return
        parts = urllib.parse.urlsplit(referer.strip())
        found = referer
        own = parts.scheme == "http" and parts.netloc.lower() in own_hosts(port)
    if not own:
        header = "Origin" if origin is not None else "Referer"
        raise Refused.of(
            403,
            "Refused: a request from another site",
            f"a form sent from this browser's own pages (http://127.0.0.1:{port})",
            f"{header} {shown(found)}",
            f"record reviews from http://127.0.0.1:{port}/ itself",
        )


async def read_form(request: Request, token: str) -> dict[str, list[str]]:
    """The fields of a posted form, once its content type and CSRF token are checked.

    Parameters
    ----------
    request : Request
        A writing request (its Host and Origin already checked by :class:`Guard`).
    token : str
        This server's CSRF token (:func:`new_token`).

    Returns
    -------
    dict
        Field name -> its values, blank values kept.

    Raises
    ------
    Refused
        415 for a body that is not a URL-encoded form, 400 for one that is not UTF-8, 403 when
        the token is missing or wrong.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        raise Refused.of(
            415,
            "Refused: not a form",
            f"a form body ({FORM_TYPE})",
            f"Content-Type {shown(kind)}" if kind else "no Content-Type",
            "submit the review form on this browser's pages",
        )
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused.of(
            400,
            "Refused: not a form",
            "a UTF-8 form body",
            "bytes that are not UTF-8",
            "submit the review form on this browser's pages",
        ) from None
    form = urllib.parse.parse_qs(text, keep_blank_values=True)
    sent = form.pop(TOKEN_FIELD, [])
    if len(sent) != 1 or not hmac.compare_digest(sent[0].encode(), token.encode()):
        raise Refused.of(
            403,
            "Refused: no valid form token",
            "the form token of this run of robust-data browse",
            "none" if not sent else "a token that does not match (a page of an earlier run?)",
            "reload the page and submit the form again",
        )
    return form


def safe_next(target: str) -> str:
    """``target`` when it is a path of this app, else ``/`` (never a redirect off-site).

    A path starts with one ``/``; a scheme, a host (``//host``), a backslash (``/\\host``,
    which browsers read as ``//host``) or a control character (browsers drop tabs and
    newlines) sends it to ``/``.
    """
    if not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    parts = urllib.parse.urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


class Guard:
    """ASGI middleware: :func:`check_host` and :func:`check_origin` on every request, and
    headers that forbid framing on every response.

    Parameters
    ----------
    app : ASGIApp
        The app guarded.
    refuse : callable
        Renders a :class:`Refused` as the app's error page.
    """

    def __init__(self, app: ASGIApp, refuse: Callable[[Refused], Response]) -> None:
        self.app = app
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *NO_FRAMES]
            await send(message)

        request = Request(scope, receive)
        try:
            check_host(request)
            check_origin(request)
        except Refused as refused:
            await self.refuse(refused)(scope, receive, send_guarded)
            return
        await self.app(scope, receive, send_guarded)
