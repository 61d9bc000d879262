"""Progress: plain lines off a terminal (fake clock), a tqdm bar on one."""

from __future__ import annotations

import io

import pytest

from robust_data.present.progress import Progress, progress_bar, progress_line


@pytest.fixture(autouse=True)
def progress_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/conftest.py turns progress off for the rest of the suite (TQDM_DISABLE=1)."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_lines_every_tenth_without_carriage_returns() -> None:
    stream, clock = io.StringIO(), FakeClock()
    bar = progress_bar(total=1000, desc="rpr pixels", unit="img", stream=stream, clock=clock)
    for _ in range(1000):
        clock.now += 0.01
        bar.update(1)
    bar.close()
    bar.close()  # a second close writes nothing
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    out = lines(stream)
    assert 2 <= len(out) <= 11
    assert out[0] == "rpr pixels: 100/1,000 img (10%), 100img/s, 00:09 left"
    # 1000 x 0.01 s adds up to 9.99999 s: tqdm's times are whole seconds, truncated
    assert out[-1] == "rpr pixels: 1,000/1,000 img (100%), 100img/s, done in 00:09"
    assert sum("(100%)" in line for line in out) == 1


def test_a_line_every_30_seconds_without_10_percent_progress() -> None:
    stream, clock = io.StringIO(), FakeClock()
    bar = progress_bar(total=10_000, desc="train", unit="batch", stream=stream, clock=clock)
    clock.now = 29.0
    bar.update(1)
    assert lines(stream) == []  # neither 10% nor 30 s yet
    clock.now = 30.5
    bar.update(1)
    assert lines(stream) == ["train: 2/10,000 batch (0%), 15.2s/batch, 42:21:09 left"]
    clock.now = 45.0
    bar.update(1)
    assert len(lines(stream)) == 1  # the next one is due 30 s after the last
    clock.now = 61.0
    bar.update(1)
    assert len(lines(stream)) == 2


def test_final_line_context_manager_and_postfix() -> None:
    stream, clock = io.StringIO(), FakeClock()
    with progress_bar(total=10, desc="corruption suite", stream=stream, clock=clock) as bar:
        clock.now = 4.0
        bar.update(4)
        bar.set_postfix(epoch=1, loss="0.532", refresh=False)
    out = lines(stream)
    assert (
        out[-1]
        == "corruption suite: 4/10 it (40%), 1.00it/s, stopped after 00:04, epoch=1, loss=0.532"
    )
    assert bar.n == 4 and bar.closed


def test_iterating_counts_each_item_and_closes() -> None:
    stream, clock = io.StringIO(), FakeClock()
    items = list(
        progress_bar(["a", "b", "c"], desc="encode", unit="img", stream=stream, clock=clock)
    )
    assert items == ["a", "b", "c"]
    # each item is 33%, but no time passed: no line before the final one (mininterval)
    assert lines(stream) == ["encode: 3/3 img (100%), done in 00:00"]
    unsized = progress_bar(iter(range(5)), desc="decode", stream=stream, clock=clock)
    assert sum(unsized) == 10 and unsized.total is None
    assert lines(stream)[-1] == "decode: 5 it, done in 00:00"


def test_transient_progress_writes_a_final_line_only_after_a_progress_line() -> None:
    stream, clock = io.StringIO(), FakeClock()
    for _ in progress_bar(range(50), desc="decode", leave=False, stream=stream, clock=clock):
        pass  # over in no time: nothing, as a transient bar leaves nothing on a terminal
    assert stream.getvalue() == ""
    slow = progress_bar(range(50), desc="decode", leave=False, stream=stream, clock=clock)
    for _ in slow:
        clock.now += 1.0
    out = lines(stream)
    assert len(out) == 10 and out[-1] == "decode: 50/50 it (100%), 1.00it/s, done in 00:50"


def test_disabled_progress_counts_silently() -> None:
    stream = Terminal()
    bar = progress_bar(total=5, desc="quiet", disable=True, stream=stream)
    bar.update(5)
    bar.close()
    assert type(bar) is Progress and bar.n == 5 and stream.getvalue() == ""


def test_tqdm_disable_in_the_environment_turns_every_one_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")
    stream = io.StringIO()
    bar = progress_bar(total=10, desc="quiet", stream=stream)
    bar.update(10)
    bar.close()
    assert type(bar) is Progress and bar.n == 10 and stream.getvalue() == ""


def test_terminal_gets_a_tqdm_bar() -> None:
    stream = Terminal()
    with progress_bar(total=4, desc="variants", unit="img", stream=stream, mininterval=0) as bar:
        bar.update(2)
        bar.set_postfix(loss="0.1")
        bar.update(2)
    text = stream.getvalue()
    assert "\r" in text and "variants" in text and "4/4" in text and "loss=0.1" in text


@pytest.mark.parametrize(
    ("n", "total", "elapsed", "expected"),
    [
        (4500, 10_000, 5.54, "rpr: 4,500/10,000 img (45%), 812img/s, 00:06 left"),
        (3, 0, 1.0, "rpr: 3 img, 3.00img/s"),
        (0, 10, 0.0, "rpr: 0/10 img (0%)"),
        (100, 1000, 10.0, "rpr: 100/1,000 img (10%), 10.0img/s, 01:30 left"),
    ],
)
def test_line_format(n: int, total: int, elapsed: float, expected: str) -> None:
    # the rate, time left and elapsed time are tqdm's (tqdm.format_meter), as on the bar
    assert progress_line("rpr", n, total, "img", elapsed) == expected


def test_line_past_the_total_drops_the_percentage_and_final_lines_say_how_it_ended() -> None:
    assert progress_line("", 12, 10, "it", 2.0, final=True) == "12 it, 6.00it/s, done in 00:02"
    assert progress_line("x", 5, 10, "it", 3725.0, final=True) == (
        "x: 5/10 it (50%), 745s/it, stopped after 1:02:05"
    )
