import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition import SparseCoder
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso

from sklearn_splice import nonnegative_lasso
from sklearn_splice._synthetic import make_concept_dictionary, make_sparse_signals


def objective(W, D, Z, lam):
    return ((W @ D - Z) ** 2).sum(1) + lam * W.sum(1)


@pytest.fixture(scope="module")
def problem():
    D = make_concept_dictionary(600, 48, random_state=0).astype(np.float64)
    Z, _ = make_sparse_signals(D, 12, n_active=8, random_state=1)
    return D, Z


@pytest.mark.parametrize("lam", [0.05, 0.15, 0.25, 0.35])
def test_objective_matches_sklearn_lasso(problem, lam):
    D, Z = problem
    d = D.shape[1]
    W = nonnegative_lasso(Z, D, lam)
    ref = np.array(
        [
            Lasso(alpha=lam / (2 * d), positive=True, fit_intercept=False, tol=1e-8, max_iter=100000)
            .fit(D.T, z)
            .coef_
            for z in Z
        ]
    )
    np.testing.assert_allclose(objective(W, D, Z, lam), objective(ref, D, Z, lam), rtol=1e-5)
    assert (W > 0).sum() > 0


@pytest.mark.parametrize("lam", [0.05, 0.25])
def test_solution_meets_kkt_conditions(problem, lam):
    D, Z = problem
    W, info = nonnegative_lasso(Z, D, lam, return_info=True)
    assert (W >= 0).all()
    grad = 2 * (W @ D - Z) @ D.T + lam
    # float32 data: the conditions hold to float32 round-off, far below the penalty
    assert np.abs(grad[W > 0]).max() < 1e-6
    assert grad[W == 0].min() > -1e-6
    assert info["converged"].all() and info["duality_gap"].max() <= 1e-6


def test_matches_sparse_coder(problem):
    D, Z = problem
    lam = 0.2
    ref = SparseCoder(
        dictionary=D, transform_algorithm="lasso_cd", transform_alpha=lam / 2, positive_code=True,
        transform_max_iter=100000,
    ).transform(Z)
    W = nonnegative_lasso(Z, D, lam)
    np.testing.assert_allclose(objective(W, D, Z, lam), objective(ref, D, Z, lam), rtol=1e-5)


def test_fista_cross_check(problem):
    D, Z = problem
    W = nonnegative_lasso(Z[:4], D, 0.25)
    W_fista = nonnegative_lasso(Z[:4], D, 0.25, solver="fista", tol=1e-9, max_iter=50000)
    np.testing.assert_allclose(objective(W_fista, D, Z[:4], 0.25), objective(W, D, Z[:4], 0.25), rtol=1e-6)
    np.testing.assert_allclose(W_fista, W, atol=1e-3)


def test_planted_support_is_recovered():
    rng = np.random.RandomState(3)
    D = rng.standard_normal((300, 64))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    W_true = np.zeros((5, 300))
    for i in range(5):
        W_true[i, rng.choice(300, 4, replace=False)] = rng.uniform(0.5, 1.0, 4)
    Z = W_true @ D
    W = nonnegative_lasso(Z, D, 1e-3)
    for i in range(5):
        top = set(np.argsort(W[i])[-4:])
        assert top == set(np.flatnonzero(W_true[i]))
    np.testing.assert_allclose(W, W_true, atol=0.02)


def test_deterministic_and_independent_of_batching(problem):
    D, Z = problem
    W = nonnegative_lasso(Z, D, 0.15, batch_size=5)
    assert np.array_equal(W, nonnegative_lasso(Z, D, 0.15, batch_size=5))
    np.testing.assert_allclose(nonnegative_lasso(Z, D, 0.15, batch_size=256), W, atol=1e-9)
    perm = np.random.RandomState(0).permutation(len(Z))
    np.testing.assert_allclose(nonnegative_lasso(Z[perm], D, 0.15)[np.argsort(perm)], W, atol=1e-9)


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
def test_edge_cases(problem):
    D, Z = problem
    assert not nonnegative_lasso(np.zeros((2, D.shape[1])), D, 0.25).any()
    # above max_j D_j . z / 2 every weight is zero
    big = 2.01 * (Z @ D.T).max()
    assert not nonnegative_lasso(Z, D, big).any()
    # a zero penalty is nonnegative least squares
    W = nonnegative_lasso(Z[:2], D[:20], 0.0)
    from scipy.optimize import nnls

    for i in range(2):
        np.testing.assert_allclose(W[i] @ D[:20], nnls(D[:20].T, Z[i])[0] @ D[:20], atol=1e-6)


def test_duplicate_atoms_are_solvable(problem):
    D, Z = problem
    D2 = np.vstack([D, D[:50]])
    W = nonnegative_lasso(Z, D2, 0.15)
    np.testing.assert_allclose(objective(W, D2, Z, 0.15), objective(nonnegative_lasso(Z, D, 0.15), D, Z, 0.15), rtol=1e-6)


def test_sparse_output_and_dtypes(problem):
    D, Z = problem
    dense = nonnegative_lasso(Z, D, 0.25)
    csr = nonnegative_lasso(Z.astype(np.float32), D.astype(np.float32), 0.25, sparse_output=True)
    assert sp.isspmatrix_csr(csr) and csr.dtype == np.float64
    np.testing.assert_allclose(csr.toarray(), dense, atol=1e-5)


def test_not_converged_warns(problem):
    D, Z = problem
    with pytest.warns(ConvergenceWarning, match="did not reach"):
        _, info = nonnegative_lasso(Z, D, 0.05, max_iter=1, return_info=True)
    assert not info["converged"].all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"l1_penalty": -0.1}, "l1_penalty must be a nonnegative"),
        ({"l1_penalty": float("nan")}, "l1_penalty must be a nonnegative"),
        ({"solver": "admm"}, "solver must be one of"),
        ({"tol": 0}, "tol must be a positive"),
        ({"batch_size": 0}, "batch_size must be a positive"),
        ({"max_iter": 0}, "max_iter must be a positive"),
    ],
)
def test_bad_parameters(problem, kwargs, match):
    D, Z = problem
    args = {"l1_penalty": 0.25, **kwargs}
    with pytest.raises(ValueError, match=match):
        nonnegative_lasso(Z, D, **args)


def test_bad_shapes_and_values(problem):
    D, Z = problem
    with pytest.raises(ValueError, match="48 features per sample but the dictionary has 47"):
        nonnegative_lasso(Z, D[:, :47], 0.25)
    bad = Z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        nonnegative_lasso(bad, D, 0.25)
    Z_copy = Z.copy()
    nonnegative_lasso(Z, D, 0.25)
    assert np.array_equal(Z, Z_copy)


def test_out_of_memory_splits_batches_without_moving_rows(problem, monkeypatch):
    import torch

    from sklearn_splice import _solver

    D, Z = problem
    expected = nonnegative_lasso(Z, D, 0.2)
    real, sizes = _solver._working_set_batch, []

    def small_only(z, *args):
        sizes.append(z.shape[0])
        if z.shape[0] > 3:
            raise torch.OutOfMemoryError("simulated")
        return real(z, *args)

    monkeypatch.setattr(_solver, "_working_set_batch", small_only)
    np.testing.assert_allclose(nonnegative_lasso(Z, D, 0.2, batch_size=12), expected, atol=1e-9)
    assert sizes[0] == 12 and max(s for s in sizes if s <= 3) == 3


# -- property tests -------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402


@st.composite
def problems(draw):
    c = draw(st.integers(2, 40))
    d = draw(st.integers(2, 12))
    finite = st.floats(-3, 3, allow_nan=False, width=64)
    D = draw(arrays(np.float64, (c, d), elements=finite))
    D = D[np.linalg.norm(D, axis=1) > 1e-3]
    if len(D) < 2:
        D = np.vstack([np.eye(d)[:2], D])
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    n = draw(st.integers(1, 6))
    Z = draw(arrays(np.float64, (n, d), elements=finite))
    lam = draw(st.floats(1e-3, 2.0))
    return D, Z, lam


@settings(max_examples=60, deadline=None)
@given(problems())
def test_property_nonnegative_and_kkt(prob):
    D, Z, lam = prob
    W, info = nonnegative_lasso(Z, D, lam, return_info=True)
    assert (W >= 0).all() and info["converged"].all()
    grad = 2 * (W @ D - Z) @ D.T + lam
    scale = 1e-6 * (1 + np.abs(Z).sum())
    assert np.all(np.abs(grad[W > 0]) <= scale)
    assert np.all(grad[W == 0] >= -scale)


@settings(max_examples=30, deadline=None)
@given(problems(), st.integers(1, 4), st.randoms(use_true_random=False))
def test_property_batch_size_and_order_do_not_matter(prob, batch_size, rnd):
    D, Z, lam = prob
    W = nonnegative_lasso(Z, D, lam)
    perm = list(range(len(Z)))
    rnd.shuffle(perm)
    W2 = nonnegative_lasso(Z[perm], D, lam, batch_size=batch_size)
    obj = objective(W, D, Z, lam)
    obj2 = objective(W2[np.argsort(perm)], D, Z, lam)
    np.testing.assert_allclose(obj2, obj, rtol=1e-6, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(problems(), st.floats(0.1, 10.0))
def test_property_scaling(prob, a):
    D, Z, lam = prob
    assert not nonnegative_lasso(np.zeros_like(Z), D, lam).any()
    # scaling the signal and the penalty together scales the solution
    W = nonnegative_lasso(Z, D, lam)
    Wa = nonnegative_lasso(a * Z, D, a * lam)
    np.testing.assert_allclose(objective(Wa, D, a * Z, a * lam), a * a * objective(W, D, Z, lam), rtol=1e-5, atol=1e-9)


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
def test_nearly_degenerate_dictionaries_converge():
    # 30 random atoms in 16 dimensions, centred: the float32 working-set solve and the
    # float64 polish once disagreed on such problems and a few samples stalled.
    from helpers import HashingEncoder
    from sklearn_splice import build_dictionary

    T = HashingEncoder(width=16).encode_text([f"word{i}" for i in range(30)])
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    D = build_dictionary(T)
    Z = np.random.RandomState(1).standard_normal((1100, 16))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    W, info = nonnegative_lasso(Z, D, 0.05, return_info=True)
    assert info["converged"].all()
