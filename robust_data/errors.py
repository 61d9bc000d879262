"""Errors raised for bad input. Each message is one line: expected, found, how to fix."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset could not be read or failed validation.

    The message is a single line naming what was expected, what was found and how to fix it.
    """

    def __init__(self, expected: str, found: str, fix: str) -> None:
        self.expected = expected
        self.found = found
        self.fix = fix
        super().__init__(f"expected {expected}; found {found}; {fix}")
