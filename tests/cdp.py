"""A minimal Chrome DevTools Protocol client: drive a real headless Chromium from a test.

Chromium starts with ``--remote-debugging-port=0`` in its own process group and a fresh
profile; the port comes from ``DevToolsActivePort`` in the profile. Commands go over the
page's WebSocket (the ``websockets`` package Dagster's webserver already installs). Pages
are driven the way a user would: navigate, set form fields, click, read the DOM back.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

START_TIMEOUT_S = 30
LOAD_TIMEOUT_S = 30


class Chromium:
    """One headless Chromium with one page; close it (or use ``with``) to kill its group."""

    def __init__(self, binary: str, profile: Path, size: tuple[int, int] = (1400, 1000)) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        command = [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--no-first-run",
            "--hide-scrollbars",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            "about:blank",
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        self._next_id = 0
        self._stack = contextlib.ExitStack()
        try:
            port = self._port(profile / "DevToolsActivePort")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            url = pages[0]["webSocketDebuggerUrl"]
            self._socket = self._stack.enter_context(connect(url, max_size=None))
        except BaseException:
            self.close()
            raise

    def _port(self, active: Path) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = (
                    self._process.stderr.read().decode(errors="replace")
                    if self._process.stderr
                    else ""
                )
                raise RuntimeError(f"chromium exited {self._process.returncode}: {err[-500:]}")
            if active.is_file() and active.read_text().strip():
                return int(active.read_text().split()[0])
            time.sleep(0.1)
        raise TimeoutError(f"chromium wrote no {active} in {START_TIMEOUT_S} s")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer (events in between are skipped)."""
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=LOAD_TIMEOUT_S))
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_loaded(self, previous_url: str | None = None) -> str:
        """Wait until a (new) document has loaded and its images are decoded; its URL."""
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while time.monotonic() < deadline:
            state = self.evaluate(
                "[document.readyState, location.href,"
                " Array.from(document.images).every(i => i.complete)]"
            )
            if state[0] == "complete" and state[2] and state[1] != previous_url:
                return str(state[1])
            time.sleep(0.1)
        raise TimeoutError(f"the page did not load in {LOAD_TIMEOUT_S} s")

    def goto(self, url: str) -> str:
        """Navigate and wait for the page to load."""
        before = self.evaluate("location.href")
        self.call("Page.navigate", url=url)
        return self.wait_loaded(before if before != url else None)

    def submit(self, action: str) -> str:
        """Run ``action`` (JavaScript that clicks or submits), then wait for the next page."""
        return self.navigated(lambda: self.evaluate(action), repr(action))

    def navigated(self, act: Callable[[], Any], what: str = "the action") -> str:
        """Do ``act`` (a click, a drag), then wait for the next page to load; its URL."""
        before = self.evaluate("location.href + '#' + performance.timeOrigin")
        act()
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while time.monotonic() < deadline:
            now = self.evaluate("location.href + '#' + performance.timeOrigin")
            if now != before:
                return self.wait_loaded()
            time.sleep(0.1)
        raise TimeoutError(f"no new page after {what}")

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 8) -> None:
        """Press the left mouse button at ``start``, move to ``end``, release (CSS pixels)."""
        mouse = {"button": "left", "clickCount": 1}
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=start[0], y=start[1])
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=start[0], y=start[1], **mouse)
        for k in range(1, steps + 1):
            x = start[0] + (end[0] - start[0]) * k / steps
            y = start[1] + (end[1] - start[1]) * k / steps
            self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, buttons=1)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=end[0], y=end[1], **mouse)

    def centre(self, selector: str) -> tuple[float, float]:
        """The viewport position of the centre of the first element matching ``selector``."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({selector!r});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        return float(box[0]), float(box[1])

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the page (the whole document, not only the window)."""
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        """Kill Chromium's whole process group (renderers and crashpad included)."""
        self._stack.close()
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._process.wait(10)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
