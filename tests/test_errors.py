import os
import pickle
import warnings

import pytest

from sklearn_splice._errors import (
    InputError,
    InputTypeError,
    MissingInputError,
    UnreadableInputsWarning,
    WeightsUnavailableError,
)


def test_input_errors_carry_their_position_and_path():
    err = MissingInputError(3, "does not exist.", path="/data/Image 7 broken.png", kind="Image")
    assert isinstance(err, FileNotFoundError) and isinstance(err, ValueError)
    assert (err.index, err.path) == (3, "/data/Image 7 broken.png")
    assert str(err) == "Image 3 (/data/Image 7 broken.png) does not exist."
    moved = err.at(10)
    assert type(moved) is MissingInputError and moved.index == 10
    assert moved.path == err.path and str(moved).startswith("Image 10 (/data/Image 7 broken.png)")
    assert isinstance(InputTypeError(0, "is a dict"), TypeError)


def test_undecodable_paths_print():
    path = os.fsdecode(b"/tmp/caf\xe9.png")  # a lone surrogate
    err = InputError(0, "is broken.", path=path)
    assert err.path == path
    str(err).encode("utf-8")  # printable and writable
    assert "caf\\udce9" in str(InputError(0, "x", path=b"/tmp/caf\xe9.png"))


@pytest.mark.parametrize(
    "obj",
    [
        InputError(2, "bad", path="p", kind="Text"),
        MissingInputError(1, "gone", path="q"),
        WeightsUnavailableError("ViT-B-32", "laion2b_s34b_b79k", "offline"),
    ],
)
def test_errors_pickle_with_their_data(obj):
    back = pickle.loads(pickle.dumps(obj))
    assert type(back) is type(obj) and str(back) == str(obj)
    assert vars(back) == vars(obj)


def test_unreadable_inputs_warning_is_data():
    failures = [InputError(0, "unreadable.", path="a"), InputError(2, "unreadable.", path="b")]
    warning = UnreadableInputsWarning(failures, 3)
    moved = warning.at([4, 7, 9], 12)
    assert moved.indices == [4, 9] and moved.n_inputs == 12
    assert str(moved).startswith("2 of 12 inputs could not be read")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn(moved)
    assert caught[0].message.indices == [4, 9]
    assert pickle.loads(pickle.dumps(moved)).indices == [4, 9]
