import numpy as np
import pytest
import scipy.sparse as sp
from PIL import Image

from sklearn_splice._errors import InputTypeError
from sklearn_splice._inputs import classify_inputs


@pytest.mark.parametrize(
    "X",
    [
        np.zeros((3, 4)),
        np.zeros((3, 4), dtype=np.float32)[::-1],
        np.zeros(4),  # 1-D: scikit-learn's validation explains it must be 2-D
        [[0.0, 1.0], [2.0, 3.0]],
        [np.zeros(4), np.ones(4)],
        [0.5, 1.5],
        sp.csr_matrix(np.eye(3)),
    ],
)
def test_numeric_input_is_a_matrix(X):
    inputs = classify_inputs(X)
    assert inputs.kind == "matrix" and inputs.data is X


@pytest.mark.parametrize(
    "X,n",
    [
        (["a.jpg", "b.jpg"], 2),
        (("a", "b", "c"), 3),
        (np.array(["a", "b"]), 2),
        (np.array(["a", "b"], dtype=object)[:, None], 2),
        (np.zeros((2, 8, 8, 3), np.uint8), 2),
        ([np.zeros((8, 8, 3), np.uint8)], 1),
        ([Image.new("RGB", (4, 4))], 1),
        (iter(["a", "b"]), 2),
        ([b"bytes-path.png"], 1),
    ],
)
def test_collections_are_items(X, n):
    inputs = classify_inputs(X)
    assert inputs.kind == "items" and len(inputs.data) == n


def test_items_are_the_callers_objects():
    img = Image.new("RGB", (4, 4))
    arr = np.zeros((4, 4, 3), np.uint8)
    inputs = classify_inputs(["a.jpg", img, arr])
    assert inputs.data[1] is img and inputs.data[2] is arr


def test_pandas_columns():
    pd = pytest.importorskip("pandas")
    assert classify_inputs(pd.Series(["a", "b"])).kind == "items"
    assert classify_inputs(pd.DataFrame({"p": ["a", "b"]})).data == ["a", "b"]
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [3, 4]})
    assert classify_inputs(frame).kind == "matrix"
    with pytest.raises(ValueError, match=r"2 columns \['path', 'label'\].*X\['path'\]"):
        classify_inputs(pd.DataFrame({"path": ["a", "b"], "label": [0, 1]}))


@pytest.mark.parametrize("single", ["a.jpg", b"a.jpg", Image.new("RGB", (2, 2))])
def test_a_single_input_must_be_wrapped(single):
    with pytest.raises(TypeError, match="wrap it in a list"):
        classify_inputs(single)


@pytest.mark.parametrize("odd", [0, 2, 4])
def test_mixed_collections_name_the_odd_member(odd):
    items = ["a.jpg"] * 5
    items[odd] = [0.1, 0.2]
    with pytest.raises(InputTypeError) as info:
        classify_inputs(items)
    assert info.value.index == odd
    rows = [[0.1, 0.2]] * 5
    rows[odd] = "a.jpg"
    with pytest.raises(InputTypeError) as info:
        classify_inputs(rows)
    assert info.value.index == odd


@pytest.mark.parametrize("X", [[], np.array([], dtype=object), ()])
def test_empty_collections_are_refused(X):
    with pytest.raises(ValueError, match="empty collection"):
        classify_inputs(X)


def test_other_objects_are_refused():
    with pytest.raises(TypeError, match="got dict"):
        classify_inputs({"a": 1})
    with pytest.raises(TypeError, match="got int"):
        classify_inputs(5)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4\)"):
        classify_inputs(np.zeros((2, 3, 4)))
