"""The product's errors: one family, each reported as one line (expected, found, how to fix).

:class:`RobustDataError` is raised for bad input: an option out of range, a file that is not
what it should be, a stored table that must be re-made. A broken internal invariant (a
programming error) is not one: it stays a plain ``ValueError``, ``TypeError`` or
``AssertionError`` with its traceback.

An error about an option lists it by its Python name (the option dataclass field, the Dagster
run config key) in :attr:`RobustDataError.options`. Where its message tells the user to set
one, it writes it in backquotes, `` `root` `` or `` `resize=28x28` ``, never as a command-line
flag: a front end rewrites those in its own spelling (the ``robust-data`` command: ``--root``,
``--resize 28x28``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any


class RobustDataError(ValueError):
    """Bad input, as one line: ``expected ...; found ...; how to fix``.

    A ``ValueError``, so callers that catch ``ValueError`` keep working.

    Parameters
    ----------
    expected : str
        What was expected, after "expected".
    found : str
        What was found instead, after "found".
    fix : str
        How to fix it.
    options : sequence of str
        The options the error is about; where the message tells the user to set one, it
        writes it `` `name` `` or `` `name=VALUE` `` (see the module docs).

    Attributes
    ----------
    expected, found, fix : str
        The message's three parts.
    options : tuple of str
        The options the error is about.
    """

    def __init__(self, expected: str, found: str, fix: str, *, options: Sequence[str] = ()) -> None:
        self.expected = expected
        self.found = found
        self.fix = fix
        self.options = tuple(options)
        super().__init__(f"expected {expected}; found {found}; {fix}")

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled whole: the default would call ``cls(message)``, which this signature refuses."""
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[RobustDataError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """An unpickled :class:`RobustDataError` of any subclass, its constructor not called."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class DatasetError(RobustDataError):
    """A dataset could not be read or failed validation."""


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``did you mean 'curate'?`` for the closest of ``known`` to ``word``; ``""`` for none.

    The one "did you mean" of the product: mistyped commands, choices, dataset sources and
    stored dataset names all go through it (difflib's ratio >= 0.6).
    """
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"did you mean {close[0]!r}?" if close else ""
