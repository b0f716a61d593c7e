"""The fixed-shape working-set loop (the GPU's), run here on the CPU.

The solver tests below are collected again in this module with the loop forced on the
CPU, so that it meets the same problems (edge cases, magnitudes, duplicates, zero
penalties) as the variable-shape loop; the tests after them check what is its own.
"""

import math

import numpy as np
import pytest
from test_solver import (  # noqa: F401  (collected again here, with the fixed-shape loop)
    lasso_reference,
    numpy_gap,
    objective,
    problem,
    test_atoms_of_different_norms,
    test_both_methods_match_sklearn_lasso,
    test_deterministic_and_independent_of_batching,
    test_dictionary_of_any_magnitude,
    test_duplicate_and_near_duplicate_concepts,
    test_duplicate_atoms_are_solvable,
    test_edge_cases,
    test_extreme_magnitudes_scale_the_solution,
    test_ill_posed_least_squares_is_never_claimed_converged_too_early,
    test_nearly_degenerate_dictionaries_converge,
    test_not_converged_warns,
    test_objective_matches_sklearn_lasso,
    test_per_row_penalties_survive_compaction,
    test_planted_support_is_recovered,
    test_rows_of_very_different_norms_in_one_batch,
    test_short_atoms_are_solved_not_forgiven,
    test_solution_meets_kkt_conditions,
    test_unfinished_samples_report_the_gap_of_their_answer,
    test_weights_beyond_float64_are_an_error_not_inf,
    test_zero_penalty_inside_the_cone,
    test_zero_penalty_outside_the_cone_is_nnls,
    test_zero_penalty_with_large_weights,
)

from sklearn_splice import _fixed_shape, _solver, nonnegative_lasso
from sklearn_splice._synthetic import make_concept_dictionary, make_sparse_signals


@pytest.fixture(autouse=True)
def fixed_shape_on_cpu(monkeypatch, request):
    """Run the fixed-shape loop wherever the solver runs, and count its batches."""
    monkeypatch.setattr(_solver, "_FIXED_SHAPE_DEVICES", ("cpu",))
    calls = {"fixed": 0, "exact": []}
    fixed, exact = _fixed_shape._fixed_shape_batch, _fixed_shape._working_set_batch

    def counted_fixed(*args):
        calls["fixed"] += 1
        return fixed(*args)

    def counted_exact(z, *args):
        calls["exact"].append(z.shape[0])
        return exact(z, *args)

    monkeypatch.setattr(_fixed_shape, "_fixed_shape_batch", counted_fixed)
    monkeypatch.setattr(_fixed_shape, "_working_set_batch", counted_exact)
    yield calls
    # every test collected from the solver's ran the fixed-shape loop
    if request.node.function.__module__ == "test_solver":
        assert calls["fixed"] > 0 or calls.get("other_method")


@pytest.fixture(autouse=True)
def mark_other_methods(request, fixed_shape_on_cpu):
    """The precomputed-Gram and FISTA cases of the collected tests never reach the loop."""
    params = getattr(request.node, "callspec", None)
    params = {} if params is None else params.params
    params = {**params, **params.get("kwargs", {})}
    if params.get("precompute") is True or params.get("solver") == "fista":
        fixed_shape_on_cpu["other_method"] = True


@pytest.fixture(scope="module")
def wide():
    """300 concepts like CLIP's, with signals of a few dozen of them."""
    D = make_concept_dictionary(300, 64, random_state=2).astype(np.float64)
    Z, _ = make_sparse_signals(D, 40, n_active=30, random_state=3)
    return D, Z.astype(np.float64)


def reference(Z, D, lam, **kwargs):
    """The variable-shape loop's answer."""
    prepared = _solver._prepare_dictionary(D, "cpu")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_solver, "_FIXED_SHAPE_DEVICES", ())
        return _solver._nonnegative_lasso(Z, prepared, lam, precompute=False, **kwargs)


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("lam", [0.05, 0.2, 0.6])
def test_same_answers_as_the_variable_shape_loop(wide, lam, fixed_shape_on_cpu):
    D, Z = wide
    W, info = nonnegative_lasso(Z, D, lam, precompute=False, return_info=True)
    W_ref, info_ref = reference(Z, D, lam)
    assert info["converged"].all()
    np.testing.assert_allclose(
        objective(W, D, Z, lam), objective(W_ref.toarray(), D, Z, lam), rtol=1e-12
    )
    assert numpy_gap(W, D, Z, lam).max() <= 1e-6
    # the same iterations, one pass each, for all but the few samples handed over (at most
    # one here, whose small problem took more than six solves)
    same = info["n_passes"] == info["n_iter"]
    assert same.sum() >= len(Z) - 1 and sum(fixed_shape_on_cpu["exact"]) == (~same).sum()
    np.testing.assert_array_equal(info["n_iter"][same], info_ref["n_iter"][same])


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
def test_support_slots_grow_as_supports_grow(wide, monkeypatch):
    D, Z = wide
    monkeypatch.setattr(_fixed_shape, "_START_CAPACITY", 2)
    sizes, grow = [], _fixed_shape._grow

    def spy(st, K_new):
        sizes.append(K_new)
        return grow(st, K_new)

    monkeypatch.setattr(_fixed_shape, "_grow", spy)
    W, info = nonnegative_lasso(Z, D, 0.01, precompute=False, return_info=True)
    assert info["converged"].all()
    assert len(sizes) >= 3 and sizes == sorted(sizes)
    assert max(sizes) >= 2 * (W > 0).sum(1).max() or max(sizes) == D.shape[0]
    W_ref = reference(Z, D, 0.01)[0].toarray()
    np.testing.assert_allclose(
        objective(W, D, Z, 0.01), objective(W_ref, D, Z, 0.01), rtol=1e-12
    )


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
def test_unsettled_small_problems_go_to_the_exact_path(wide, monkeypatch, fixed_shape_on_cpu):
    D, Z = wide
    # three solves per iteration settle most warm starts: the others are handed over
    monkeypatch.setattr(_fixed_shape, "_PDAS_SOLVES", 3)
    W, info = nonnegative_lasso(Z, D, 0.2, precompute=False, return_info=True)
    handed = sum(fixed_shape_on_cpu["exact"])
    assert 0 < handed < len(Z)
    assert info["converged"].all()
    W_ref, info_ref = reference(Z, D, 0.2)
    np.testing.assert_allclose(
        objective(W, D, Z, 0.2), objective(W_ref.toarray(), D, Z, 0.2), rtol=1e-12
    )
    # a handed sample counts the iterations of the loop that solved it, and all passes
    again = info["n_passes"] > info["n_iter"]
    assert again.sum() == handed
    np.testing.assert_array_equal(info["n_iter"][again], info_ref["n_iter"][again])
    np.testing.assert_array_equal(info["n_passes"][~again], info["n_iter"][~again])


def test_handed_samples_keep_within_max_iter(wide, monkeypatch, fixed_shape_on_cpu):
    D, Z = wide
    monkeypatch.setattr(_fixed_shape, "_PDAS_SOLVES", 1)
    for max_iter in (2, 4, 6):
        with pytest.warns(Warning, match="did not reach"):
            W, info = nonnegative_lasso(
                Z, D, 0.05, precompute=False, max_iter=max_iter, return_info=True
            )
        assert info["n_iter"].max() <= max_iter
        assert fixed_shape_on_cpu["exact"]
        # the answers are those of the variable-shape loop with the same budget
        with pytest.warns(Warning, match="did not reach"):
            W_ref, info_ref = reference(Z, D, 0.05, max_iter=max_iter)
        np.testing.assert_array_equal(info["converged"], info_ref["converged"])


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
def test_uncertain_certificates_go_to_the_exact_path(wide, monkeypatch, fixed_shape_on_cpu):
    D, Z = wide
    # exact copies of every atom: each support concept's twin ties with it for the best
    # score, so rescoring one candidate can never certify the maximum
    D2 = np.vstack([D, D])
    monkeypatch.setattr(_fixed_shape, "_RESCORED", 1)
    W, info = nonnegative_lasso(Z[:10], D2, 0.1, precompute=False, return_info=True)
    assert sum(fixed_shape_on_cpu["exact"]) > 0
    assert info["converged"].all()
    W_ref = reference(Z[:10], D, 0.1)[0].toarray()
    np.testing.assert_allclose(
        objective(W, D2, Z[:10], 0.1), objective(W_ref, D, Z[:10], 0.1), rtol=1e-9
    )


@pytest.mark.filterwarnings("error::sklearn.exceptions.ConvergenceWarning")
def test_zero_rows_are_certain_without_the_exact_path(wide, fixed_shape_on_cpu):
    D, Z = wide
    X = np.vstack([np.zeros((3, D.shape[1])), Z[:3]])
    W, info = nonnegative_lasso(X, D, 0.1, precompute=False, return_info=True)
    assert not W[:3].any() and W[3:].any()
    assert fixed_shape_on_cpu["exact"] == []
    np.testing.assert_array_equal(info["n_iter"][:3], 1)


def test_check_points_are_geometric():
    points = sorted(_fixed_shape._check_points(100))
    assert points[:8] == [1, 2, 3, 4, 6, 8, 11, 16]
    assert points[-1] == 100
    assert len(points) <= 2 * math.log2(100) + 2
    assert sorted(_fixed_shape._check_points(1)) == [1]


# Operations that make the host wait for a GPU: reading a value, or a result whose shape
# depends on the data.
_READS = {"__bool__", "__int__", "__float__", "__index__", "item", "tolist", "nonzero",
          "masked_select", "unique", "cpu", "numpy"}


def _count_reads(fn, *args):
    import torch
    from torch.overrides import TorchFunctionMode

    reads = {"check": 0, "other": 0}

    class Count(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            key = args[1] if len(args) > 1 else None
            masks = [a for a in (key if isinstance(key, tuple) else (key,))
                     if isinstance(a, torch.Tensor)]
            by_mask = name in ("__getitem__", "__setitem__") and any(
                m.dtype == torch.bool for m in masks
            )
            if name == "tolist":
                reads["check"] += 1
            elif name in _READS or by_mask:
                reads["other"] += 1
            return func(*args, **(kwargs or {}))

    with Count():
        result = fn(*args)
    return result, reads


@pytest.mark.parametrize("lam", [0.1, 0.2])
def test_host_reads_grow_with_the_logarithm_of_the_iterations(wide, lam):
    import torch

    D, Z = wide
    prepared = _solver._prepare_dictionary(D, "cpu")
    z = torch.from_numpy(Z / np.linalg.norm(Z, axis=1, keepdims=True))
    mu = torch.full((len(Z),), lam / 2, dtype=torch.float64)
    args = (z, mu, prepared.C32, prepared.C64, 1e-6, 100, prepared.margin_coef, prepared.inv_norm)
    with torch.inference_mode():
        res, reads = _count_reads(_fixed_shape._fixed_shape_batch, *args)
        _, reads_ref = _count_reads(_solver._working_set_batch, *args)
    iters = int(res[4].max())
    checks = [p for p in _fixed_shape._check_points(100) if p <= iters]
    assert iters >= 4 and bool((res[3] <= 1e-6).all())
    # one read per check it reached (the last one at most one past the iterations)...
    assert len(checks) <= reads["check"] <= len(checks) + 1
    # ...and a fixed number besides, however many iterations ran
    assert reads["other"] <= 2
    # the variable-shape loop reads several values every iteration
    assert sum(reads_ref.values()) > 3 * iters
