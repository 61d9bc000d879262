"""The sample browser takes writes only from its own pages (issue 28), and bad input gets a page.

`robust-data browse` runs as a real process on 127.0.0.1 over a small scored digits home (one
server for the module); requests are plain HTTP (http.client, so that Host, Origin and
Content-Type are exactly what a hostile page or curl would send, and redirects are not
followed). After every refused request the reviews table is byte for byte what it was.

The read-only home is a real read-only file system (EROFS, as in the issue): the server runs in
its own user and mount namespace (``unshare -rm``) with the home bind-mounted read-only, which
stops root too (chmod does not); the test skips where such namespaces are not allowed.
"""

from __future__ import annotations

import html
import http.client
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from robust_data.curation.reviews import load_reviews
from robust_data.ingest.build import ingest
from robust_data.store.store import Store
from tests.fixtures import synthetic_scores
from tests.pipelines.browse_home import start_browse, stop_browse

DATASET = "digits"
N = 120
EVIL = "http://evil.example"
FORM = "application/x-www-form-urlencoded"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
FOREIGN: dict[str, str | None] = {"Origin": EVIL, "Host": "evil.example"}  # the curl
ERROR = re.compile(r'<p class="refused" id="error">(.*?)</p>', re.S)


@dataclass(frozen=True)
class Browser:
    """A running ``robust-data browse``: its home, port and store."""

    home: Path
    port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store(self) -> Store:
        return Store.open(self.home)

    def reviews(self) -> bytes | None:
        """The stored reviews table's bytes (None while there is none)."""
        path = self.store.table_path("reviews", DATASET)
        return path.read_bytes() if path.exists() else None

    def request(
        self,
        method: str,
        path: str,
        body: str | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], str]:
        """One request as sent (Host defaults to 127.0.0.1:PORT); status, headers, body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            sent = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read().decode(errors="replace"),
            )
        finally:
            conn.close()

    def token(self) -> str:
        """The CSRF token in the grid page's review form ('' when it has none)."""
        status, _, page = self.request("GET", "/")
        assert status == 200
        found = TOKEN.search(page)
        return found.group(1) if found else ""

    def sample_id(self) -> str:
        return sorted(self.store.read("raw_samples", DATASET).column("sample_id").to_pylist())[0]

    def post_review(
        self, fields: list[tuple[str, str]], headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        body = urllib.parse.urlencode(fields)
        own = {"Content-Type": FORM, "Origin": self.origin}
        return self.request("POST", "/review", body, {**own, **(headers or {})})


def _scored_home(home: Path) -> Path:
    store = Store.open(home).ensure()
    samples = ingest(DATASET).samples.slice(0, N)
    store.write(samples, "raw_samples", DATASET)
    for name, table in synthetic_scores(samples).items():
        store.write(table, name, DATASET)
    return home


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    home = _scored_home(tmp_path_factory.mktemp("browse") / "home")
    process, port = start_browse(home)
    try:
        yield Browser(home, port)
    finally:
        stop_browse(process)


def _one_line(page: str) -> str:
    """The refusal line of an error page (one line: expected ...; found ...; fix)."""
    found = ERROR.search(page)
    assert found, page[-600:]
    line = html.unescape(found.group(1)).strip()
    assert "\n" not in line and line.startswith("expected ") and "; found " in line, line
    return line


def test_a_same_origin_form_with_the_token_is_recorded(browser: Browser) -> None:
    sample = browser.sample_id()
    for path in ("/", f"/sample?id={urllib.parse.quote(sample)}"):  # every form that posts
        page = browser.request("GET", path)[2]
        assert page.count('method="post"') == len(TOKEN.findall(page)) == 1, path
    fields = [("csrf_token", browser.token()), ("sample_id", sample), ("decision", "drop")]
    here = f"/sample?id={urllib.parse.quote(sample)}"
    status, headers, _ = browser.post_review([*fields, ("note", "blurred"), ("next", here)])
    assert (status, headers["location"]) == (303, here)
    rows = load_reviews(browser.store, DATASET).to_pylist()
    assert (rows[-1]["sample_id"], rows[-1]["decision"], rows[-1]["note"]) == (
        sample,
        "drop",
        "blurred",
    )
    # localhost names the same server; a Referer of its pages stands in for a missing Origin
    port = browser.port
    status, _, _ = browser.request("GET", "/", headers={"Host": f"localhost:{port}"})
    assert status == 200
    status, _, _ = browser.post_review(
        [*fields[:2], ("decision", "keep")],
        {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"},
    )
    assert status == 303
    status, _, _ = browser.request(
        "POST",
        "/review",
        urllib.parse.urlencode([*fields[:2], ("decision", "relabel"), ("new_label", "3")]),
        {"Content-Type": FORM, "Referer": f"{browser.origin}/?split=train"},
    )
    assert status == 303
    assert [r["decision"] for r in load_reviews(browser.store, DATASET).to_pylist()[-3:]] == [
        "drop",
        "keep",
        "relabel",
    ]
    # no other site may frame the pages (clickjacking a same-origin form)
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_writes_from_another_site_are_refused_and_record_nothing(browser: Browser) -> None:
    sample = browser.sample_id()
    token = browser.token()
    drop = urllib.parse.urlencode([("sample_id", sample), ("decision", "drop")])
    signed = f"csrf_token={token}&{drop}"
    image = f"/image?id={urllib.parse.quote(sample)}"
    # (what, request, headers over a same-origin form's, status, words of the refusal);
    # a header given as None is not sent
    cases: list[tuple[str, tuple[str, str, str], dict[str, str | None], int, str]] = [
        ("the issue's curl", ("POST", "/review", drop), FOREIGN, 403, "Host 'evil.example'"),
        ("foreign Origin", ("POST", "/review", signed), {"Origin": EVIL}, 403, "Origin"),
        (
            "Origin null, text/plain",
            ("POST", "/review", drop),
            {"Origin": "null", "Content-Type": "text/plain"},
            403,
            "Origin 'null'",
        ),
        (
            "foreign Referer, no Origin",
            ("POST", "/review", signed),
            {"Origin": None, "Referer": f"{EVIL}/page"},
            403,
            "Referer",
        ),
        ("foreign Host, GET", ("GET", "/", ""), {"Host": "evil.example"}, 403, "Host"),
        ("rebound Host, image", ("GET", image, ""), {"Host": "evil.example:80"}, 403, "Host"),
        (
            "same origin, text/plain",
            ("POST", "/review", signed),
            {"Content-Type": "text/plain"},
            415,
            "Content-Type 'text/plain'",
        ),
        (
            "same origin, multipart",
            ("POST", "/review", "--x\r\n"),
            {"Content-Type": "multipart/form-data; boundary=x"},
            415,
            "Content-Type",
        ),
        ("no token", ("POST", "/review", drop), {}, 403, "found none"),
        (
            "wrong token",
            ("POST", "/review", f"csrf_token={token[:-2]}xx&{drop}"),
            {},
            403,
            "does not match",
        ),
        ("two tokens", ("POST", "/review", f"{signed}&csrf_token=x"), {}, 403, "token"),
    ]
    before = browser.reviews()
    for what, (method, path, body), extra, expected, words in cases:
        sent = {"Content-Type": FORM, "Origin": browser.origin, **extra}
        headers = {k: v for k, v in sent.items() if v is not None}
        status, _, page = browser.request(method, path, body or None, headers)
        assert status == expected, (what, status, page[-400:])
        assert words in _one_line(page), (what, page[-400:])
        if words.startswith("Host"):
            assert DATASET not in page  # nothing of the home shown to a rebinding page
        assert browser.reviews() == before, f"{what}: a refused request was recorded"


def test_next_goes_only_to_a_path_of_this_app(browser: Browser) -> None:
    fields = [("csrf_token", browser.token()), ("sample_id", browser.sample_id())]
    fields.append(("decision", "keep"))
    for target in (
        "//evil.example/x",
        "https://evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "http:/evil.example",
        "evil.example",
    ):
        status, headers, _ = browser.post_review([*fields, ("next", target)])
        assert (status, headers["location"]) == (303, "/"), target
    status, headers, _ = browser.post_review([*fields, ("next", "/?split=test&offset=60")])
    assert headers["location"] == "/?split=test&offset=60"


def test_numeric_query_parameters_are_bounded(browser: Browser) -> None:
    for query, name in (
        ("offset=99999999999999999999999", "offset"),
        ("offset=-1", "offset"),
        ("offset=1e3", "offset"),
        ("label=99999999999999999999", "label"),
        ("suggested_label=-3", "suggested_label"),
        ("min_steps=9223372036854775808", "min_steps"),
        ("max_steps=%C2%B2", "max_steps"),  # a superscript two: isdigit() but not a number
    ):
        status, _, page = browser.request("GET", f"/?{query}")
        assert status == 400, (query, page[-400:])
        line = _one_line(page)
        assert line.startswith(f"expected {name} as a whole number in 0.."), line
    status, _, page = browser.request("GET", "/?split=%3Cscript%3E")  # no such split
    assert status == 400 and _one_line(page).startswith("expected split as one of test, train")
    status, _, page = browser.request("GET", "/?offset=1000000&label=3&min_steps=0")
    assert status == 200 and '<b id="count">' in page


def test_a_port_in_use_or_out_of_range_fails_in_one_line_before_indexing(
    browser: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    home = ["--home", str(browser.home)]
    in_use = f"expected a free port on 127.0.0.1; found {browser.port} in use"
    for port, words in ((browser.port, in_use), (99999, "expected a port in 0..65535")):
        assert main(["browse", DATASET, *home, "--port", str(port)]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and words in err, (out, err)


def _unshare_read_only() -> list[str]:
    """A command prefix that runs its command with HOME-to-be bind-mounted read-only."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare: cannot make a read-only file system here")
    probe = subprocess.run([unshare, "-rm", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"user and mount namespaces not allowed here: {probe.stderr.decode()[-200:]}")
    return [unshare, "-rm", "sh", "-c"]


def test_a_read_only_home_gets_a_clear_page_and_records_nothing(tmp_path: Path) -> None:
    prefix = _unshare_read_only()
    home = _scored_home(tmp_path / "ro-home")
    mount = f'mount --bind "{home}" "{home}" && mount -o remount,bind,ro "{home}" && exec "$0" "$@"'
    process, port = start_browse(home, [*prefix, mount])
    try:
        browser = Browser(home, port)
        before = browser.reviews()
        fields = [("csrf_token", browser.token()), ("sample_id", browser.sample_id())]
        status, _, page = browser.post_review([*fields, ("decision", "drop")])
        assert status == 503, page[-400:]
        line = _one_line(page)
        assert line.startswith("expected a writable home folder; found "), line
        assert "Read-only file system" in line, line
        assert browser.reviews() == before is None
        assert browser.request("GET", "/")[0] == 200  # still browsing
    finally:
        stop_browse(process)


def _tags(browser: Browser) -> bytes | None:
    path = browser.store.table_path("tags", DATASET)
    return path.read_bytes() if path.exists() else None


def test_tags_and_bulk_actions_from_another_site_or_with_bad_input_record_nothing(
    browser: Browser,
) -> None:
    """The new writing surfaces (issue 31): tags, bulk over a filter, the confirm step."""
    sample = browser.sample_id()
    token = browser.token()
    tag = [("sample_id", sample), ("action", "tag"), ("tag", "blurry")]
    bulk = [("scope", "filter"), ("view", "split=train"), ("decision", "drop")]
    before_reviews, before_tags = browser.reviews(), _tags(browser)
    cases: list[tuple[str, list[tuple[str, str]], dict[str, str], int, str]] = [
        ("cross-site tag", [("csrf_token", token), *tag], {"Origin": EVIL}, 403, "Origin"),
        ("tag without token", tag, {}, 403, "found none"),
        ("cross-site bulk drop", [("csrf_token", token), *bulk], {"Origin": EVIL}, 403, "Origin"),
        (
            "confirmed bulk drop, foreign Referer",
            [("csrf_token", token), *bulk, ("confirmed", "60")],
            {"Origin": "", "Referer": f"{EVIL}/x"},
            403,
            "Referer",
        ),
        (
            "a tag that is a path",
            [("csrf_token", token), ("sample_id", sample), ("action", "tag"), ("tag", "../../x")],
            {},
            400,
            "expected a tag of 1-40 letters",
        ),
        (
            "a tag on an unknown sample",
            [("csrf_token", token), ("sample_id", "../raw"), ("action", "tag"), ("tag", "ok")],
            {},
            400,
            "expected a sample id of this dataset",
        ),
        (
            "a view that is SQL",
            [("csrf_token", token), ("scope", "filter"), ("view", "sort=1;DROP TABLE samples")],
            {},
            400,
            "expected sort by one of",
        ),
        (
            "a bad box",
            [
                ("csrf_token", token),
                ("scope", "filter"),
                ("view", "box=0,0,9,1"),
                ("decision", "drop"),
            ],
            {},
            400,
            "expected box as a number in 0..1",
        ),
        (
            "a bulk drop confirmed for another count",
            [("csrf_token", token), *bulk, ("confirmed", "1")],
            {},
            409,
            "expected the 1 samples you confirmed",
        ),
        (
            "a dataset of no home",
            [("csrf_token", token), ("dataset", "../../etc"), *tag[:1], ("decision", "keep")],
            {},
            404,
            "expected a dataset of this home",
        ),
    ]
    for what, fields, extra, expected, words in cases:
        sent = {"Content-Type": FORM, "Origin": browser.origin, **extra}
        headers = {k: v for k, v in sent.items() if v}  # an empty value is not sent
        status, _, page = browser.request(
            "POST", "/review", urllib.parse.urlencode(fields), headers
        )
        assert status == expected, (what, status, page[-400:])
        assert words in _one_line(page), (what, page[-400:])
        assert browser.reviews() == before_reviews, f"{what}: a review was recorded"
        assert _tags(browser) == before_tags, f"{what}: a tag was recorded"
    # an unconfirmed bulk drop only shows the confirm page, with the count
    status, _, page = browser.post_review([("csrf_token", token), *bulk])
    assert status == 200 and 'id="confirm-text"' in page and "all " in page
    assert browser.reviews() == before_reviews
