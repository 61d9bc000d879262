"""The error family of robust_data.errors: one line, the options it is about, pickled whole."""

from __future__ import annotations

import pickle

from robust_data.errors import DatasetError, RobustDataError
from robust_data.ingest.images import ImageDecodeError


def test_one_line_from_its_three_parts() -> None:
    error = DatasetError("channels 1 or 3", "2", "pass `channels=1`", options=("channels",))
    assert str(error) == "expected channels 1 or 3; found 2; pass `channels=1`"
    assert (error.expected, error.found, error.fix) == ("channels 1 or 3", "2", "pass `channels=1`")
    assert error.options == ("channels",)
    assert isinstance(error, RobustDataError) and isinstance(error, ValueError)
    assert RobustDataError("a", "b", "c").options == ()


def test_errors_pickle_whole_whatever_their_constructor() -> None:
    for error in (
        DatasetError("a", "b", "c", options=("root",)),
        ImageDecodeError("empty file"),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.options == error.options and copy.fix == error.fix
    assert pickle.loads(pickle.dumps(ImageDecodeError("empty file"))).reason == "empty file"
