"""Progress of long loops: a tqdm bar on a terminal, plain log lines anywhere else.

On a terminal (or in a Jupyter kernel) :func:`progress_bar` shows a tqdm bar. When stderr is
not a terminal (a log file, Dagster's captured step logs, CI), a bar would fill the log with
carriage returns, so it writes one plain line every 10% of the total or every 30 s, whichever
comes first (but not within ``mininterval`` of the last line), and a final line when
closed (for ``leave=False``, only after a progress line). tqdm has no such mode; the line's
figures (rate, time left, elapsed) are tqdm's own, from ``tqdm.format_meter``::

    rpr pixels: 4,500/10,000 pt (45%), 812pt/s, 00:06 left
    rpr pixels: 10,000/10,000 pt (100%), 805pt/s, done in 00:12

The lines go straight to the stream (``sys.stderr`` unless one is passed), not through
:mod:`logging`: they need no logging configuration to show, and Dagster captures a step's raw
stderr. Lines are written from :meth:`Progress.update` (no thread), so a loop that stalls
between updates writes nothing until its next update.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Generic, TextIO, TypeVar, overload

from tqdm import tqdm

T = TypeVar("T")

#: What the loops inside :func:`progress_step` belong to (``[2/4] curated, seed 0``).
_STEP: ContextVar[str] = ContextVar("robust_data_progress_step", default="")

#: A plain line at least every this fraction of the total ...
EVERY_FRACTION = 0.1
#: ... or every this many seconds, whichever comes first.
EVERY_SECONDS = 30.0


class Progress(Generic[T]):
    """A progress counter with tqdm's API subset: ``update``, ``close``, ``set_postfix``, ``n``.

    Use it as a context manager (closed on exit) or iterate over it when it wraps an iterable
    (one ``update(1)`` per item, closed when the loop ends or is left). This base class shows
    nothing: it is what a disabled progress gets.

    Parameters
    ----------
    iterable : iterable, optional
        What iterating over the progress yields.
    total : int, optional
        Expected count; default ``len(iterable)`` when it has one.
    desc, unit : str
        Label and counted unit, as in tqdm.
    """

    def __init__(
        self, iterable: Iterable[T] | None, total: int | None, desc: str, unit: str
    ) -> None:
        self._iterable = iterable
        self.total = total if total is not None else _length(iterable)
        self.desc, self.unit = desc, unit
        self.n = 0
        self.closed = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.n += n
        self._advanced(n)

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        """Show ``key=value`` pairs after the count (tqdm's ``set_postfix``)."""
        self._postfix(values, refresh)

    def close(self) -> None:
        """Finish: the bar's last state, or the final line; a second call does nothing."""
        if not self.closed:
            self.closed = True
            self._finished()

    def __iter__(self) -> Iterator[T]:
        if self._iterable is None:
            raise TypeError("expected progress_bar(iterable, ...) to iterate; found no iterable")
        try:
            for item in self._iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> Progress[T]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _advanced(self, n: int) -> None:
        """Hook: ``n`` units were just counted."""

    def _postfix(self, values: dict[str, Any], refresh: bool) -> None:
        """Hook: new postfix values."""

    def _finished(self) -> None:
        """Hook: closed for the first time."""


class _Bar(Progress[T]):
    """A tqdm bar (``tqdm.auto``: a widget in Jupyter) drawn on ``stream``."""

    def __init__(
        self,
        iterable: Iterable[T] | None,
        total: int | None,
        desc: str,
        unit: str,
        *,
        stream: TextIO,
        leave: bool,
        mininterval: float,
    ) -> None:
        from tqdm.auto import tqdm as auto_tqdm

        super().__init__(iterable, total, desc, unit)
        self._bar = auto_tqdm(
            total=self.total,
            desc=desc,
            unit=unit,
            leave=leave,
            mininterval=mininterval,
            file=stream,
            disable=False,
        )

    def _advanced(self, n: int) -> None:
        self._bar.update(n)

    def _postfix(self, values: dict[str, Any], refresh: bool) -> None:
        self._bar.set_postfix(refresh=refresh, **values)

    def _finished(self) -> None:
        self._bar.close()


class _Lines(Progress[T]):
    """Plain lines on ``stream``: every ``every_fraction`` of the total or ``every_seconds``.

    A 10% line waits until ``mininterval`` seconds have passed since the last line, so a fast
    loop writes only its final line instead of ten at once.
    """

    def __init__(
        self,
        iterable: Iterable[T] | None,
        total: int | None,
        desc: str,
        unit: str,
        *,
        stream: TextIO,
        clock: Callable[[], float],
        mininterval: float,
        leave: bool = True,
        every_fraction: float = EVERY_FRACTION,
        every_seconds: float = EVERY_SECONDS,
    ) -> None:
        super().__init__(iterable, total, desc, unit)
        self._stream, self._clock = stream, clock
        self._step = self.total * every_fraction if self.total else None
        self._every_seconds, self._mininterval = every_seconds, mininterval
        self._leave, self._lines = leave, 0
        self._started = self._last_time = clock()
        self._last_n = 0
        self._values: dict[str, Any] = {}

    def _advanced(self, n: int) -> None:
        if self.total is not None and self.n >= self.total:
            return  # the final line, written by close(), says 100%
        now = self._clock()
        since = now - self._last_time
        far = self._step is not None and self.n - self._last_n >= self._step
        if (far and since >= self._mininterval) or since >= self._every_seconds:
            self._write(now, final=False)

    def _postfix(self, values: dict[str, Any], refresh: bool) -> None:
        self._values = dict(values)

    def _finished(self) -> None:
        if self._leave or self._lines:  # a transient loop over before its first line: silent
            self._write(self._clock(), final=True)

    def _write(self, now: float, final: bool) -> None:
        self._last_time, self._last_n, self._lines = now, self.n, self._lines + 1
        line = progress_line(
            self.desc, self.n, self.total, self.unit, now - self._started, self._values, final
        )
        self._stream.write(line + "\n")
        self._stream.flush()


def progress_line(
    desc: str,
    n: int,
    total: int | None,
    unit: str,
    elapsed: float,
    values: dict[str, Any] | None = None,
    final: bool = False,
) -> str:
    """One plain progress line, e.g. ``rpr pixels: 4,500/10,000 pt (45%), 812pt/s, 00:06 left``.

    The rate (``812pt/s``, or ``15.2s/batch`` below one per second), the time left and the
    elapsed time (``MM:SS``, ``H:MM:SS``) are formatted by ``tqdm.format_meter``, as on the bar.

    Parameters
    ----------
    desc, unit : str
    n : int
        Units done.
    total : int, optional
        Expected units; without it (or past it) the line has no percentage and no time left.
    elapsed : float
        Seconds since the start; the rate needs it > 0 (and ``n`` > 0).
    values : dict, optional
        Postfix ``key=value`` pairs, appended.
    final : bool
        The closing line: ``done in`` (or ``stopped after``, short of the total) and the
        elapsed time instead of the time left.
    """
    known = total is not None and 0 < total and n <= total
    fields = ["{n:,}/{total:,} {unit} ({percentage:.0f}%)" if known else "{n:,} {unit}"]
    rated = n > 0 and elapsed > 0  # else tqdm would write ?it/s and ? left
    if rated:
        fields.append("{rate_fmt}")
    if final:
        ended = "stopped after" if total is not None and n < total else "done in"
        fields.append(f"{ended} {{elapsed}}")
    elif rated and known:
        fields.append("{remaining} left")
    postfix = ", ".join(f"{key}={value}" for key, value in (values or {}).items())
    meter = tqdm.format_meter(
        n,
        total if known else None,
        elapsed,
        unit=unit,
        unit_scale=True,  # the rate as 812 or 15.2, not padded to 5 characters
        bar_format=", ".join(fields) + "{postfix}",
        postfix=postfix,
    )
    return f"{desc}: {meter}" if desc else meter


def _length(iterable: Iterable[Any] | None) -> int | None:
    return len(iterable) if isinstance(iterable, Sized) else None


def interactive(stream: TextIO) -> bool:
    """Whether ``stream`` shows a live bar: a terminal, or a Jupyter kernel's output."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False
    return type(stream).__module__.startswith("ipykernel")


@overload
def progress_bar(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
    mininterval: float = 0.5,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Progress[T]: ...


@overload
def progress_bar(
    iterable: None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
    mininterval: float = 0.5,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Progress[Any]: ...


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
    mininterval: float = 0.5,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Progress[Any]:
    """Progress of a loop: a tqdm bar on a terminal, else a plain line every 10% or 30 s.

    Called like ``tqdm``: ``progress_bar(total=n, desc=..., unit=...)`` with ``update`` /
    ``close`` (or ``with``), or ``for x in progress_bar(items, desc=...)``.

    Parameters
    ----------
    iterable : iterable, optional
        Items to yield, one ``update(1)`` each.
    total : int, optional
        Expected count; default ``len(iterable)``.
    desc, unit : str
        Label and counted unit (``rpr pixels``, ``img``).
    disable : bool
        Show nothing (a caller's "progress off" switch); the count still runs. The
        environment variable ``TQDM_DISABLE=1`` (tqdm's own switch) turns every one off.
    leave : bool
        Keep the bar on screen when closed; off a terminal, False writes the final line only
        when a progress line was written (a quick inner loop leaves no trace).
    mininterval : float
        Seconds between bar redraws; off a terminal, the least time between two 10% lines
        (so a loop over in a blink writes only its final line).
    stream : text stream, optional
        Where to draw or write; default ``sys.stderr`` at call time.
    clock : callable
        Seconds, monotonic; for the line cadence (a fake clock in tests).

    Returns
    -------
    Progress
    """
    out = sys.stderr if stream is None else stream
    step = _STEP.get()
    desc = f"{step}: {desc}" if step and desc else step or desc
    if disable or out is None or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true"):
        return Progress(iterable, total, desc, unit)
    if interactive(out):
        return _Bar(iterable, total, desc, unit, stream=out, leave=leave, mininterval=mininterval)
    return _Lines(
        iterable, total, desc, unit, stream=out, clock=clock, mininterval=mininterval, leave=leave
    )


@contextmanager
def progress_step(label: str) -> Iterator[None]:
    """Every progress bar made inside the block names ``label`` first.

    For loops that run once per model (or step) and would otherwise print the same lines
    each time: ``[2/4] curated, seed 0: corruption suite: 12/40 chunk (30%), ...``. Blocks
    nest (the inner label is used); the label applies to this thread (a context variable).
    """
    token = _STEP.set(label)
    try:
        yield
    finally:
        _STEP.reset(token)
