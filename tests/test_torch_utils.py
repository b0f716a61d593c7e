import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn_splice._torch_utils import resolve_device, run_split_on_oom, usable_device  # noqa: E402


def concat(a, b, _):
    return np.concatenate([a, b])


def test_split_keeps_every_row_in_order():
    seen = []

    def fn(x):
        seen.append(len(x))
        if len(x) > 2:
            raise torch.OutOfMemoryError("simulated")
        return np.asarray(x) * 10

    out = run_split_on_oom(fn, list(range(7)), combine=concat)
    np.testing.assert_array_equal(out, np.arange(7) * 10)
    assert seen[0] == 7 and max(s for s in seen[1:] if s <= 2) == 2


def test_single_row_falls_back_with_a_warning_or_raises():
    def never(x):
        raise torch.OutOfMemoryError("simulated")

    with pytest.warns(RuntimeWarning, match="falling back to the CPU"):
        out = run_split_on_oom(
            never, [1, 2], combine=concat, fallback=lambda x: np.asarray(x) + 0.5
        )
    np.testing.assert_array_equal(out, [1.5, 2.5])
    with pytest.raises(torch.OutOfMemoryError):
        run_split_on_oom(never, [1, 2], combine=concat)


def test_other_errors_are_not_swallowed():
    def broken(x):
        raise ValueError("not memory")

    with pytest.raises(ValueError, match="not memory"):
        run_split_on_oom(broken, [1, 2], combine=concat, fallback=lambda x: x)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="not a valid torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
        with pytest.warns(RuntimeWarning, match="running on the CPU"):
            assert usable_device("cuda").type == "cpu"
