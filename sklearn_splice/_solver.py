"""Batched nonnegative lasso, the sparse-coding step of SpLiCE.

For each row ``x`` of ``X`` this solves::

    min_{w >= 0}  ||dictionary.T @ w - x||_2^2 + l1_penalty * ||w||_1

Both solvers work on whole batches in torch (CPU or CUDA), start from ``w = 0`` (so the
result is deterministic) and stop per sample on a duality gap computed in float64.

``"working_set"`` (default)
    Each outer iteration makes one pass over the dictionary (a float32 ``(B, d) @ (d, c)``
    product) to score every concept, certifies the current point with the duality gap, and
    grows a small per-sample working set (the support plus the concepts that break the
    optimality conditions most). The problem restricted to the working set is solved
    exactly, in float64, on its small Gram matrix by a primal-dual active-set method
    (falling back to Lawson-Hanson when it cycles); on the CPU, samples with working sets
    of similar size are factorised together in groups small enough for the caches. The
    support's rows and Gram matrix are carried to the next iteration, which only computes
    the blocks of the rows it adds. A converged answer is the exact optimum up to
    round-off, not an approximation that merely meets ``tol``. Memory is
    ``O(B * (c + K * d + K^2))`` for working sets of size ``K``. On a GPU the same
    iterations run on arrays of fixed shape, so that the host reads values back from the
    device only on a schedule (``_fixed_shape.py``).

    With ``precompute`` (automatic for dictionaries of up to a few thousand atoms) the
    ``c x c`` Gram matrix ``G`` is computed once per prepared dictionary and the same
    iterations run on it: ``C z`` is computed once per batch, the scores are
    ``C r = C z - G w`` (a sparse product with the support's rows of ``G``) and the small
    systems are gathered from ``G``; only the final certificate goes back to the
    dictionary's rows, so that it is computed exactly as without ``G``. Otherwise the
    ``c x c`` matrix is never formed.
``"fista"``
    Accelerated proximal gradient in float64, two dictionary passes per iteration. Slow but
    simple: kept to cross-check the default solver.

The problem is homogeneous: scaling ``x`` and ``l1_penalty`` by ``s`` scales the solution by
``s``, and scaling the dictionary by ``a`` scales it by ``1 / a``. The solvers therefore see
every row scaled by a power of two to norm about 1, and the dictionary scaled so that its
largest row has norm about 1, with each row's penalty scaled to match; the solution is scaled
back. Powers of two are exact in floating point, so the answer does not depend on the
magnitude of the inputs (beyond over- and underflow of the answer itself), and the float32
scoring passes never overflow or underflow. The tolerances that forgive round-off in the
optimality conditions measure each atom's violation in units of its own norm (atoms longer
than the scaled unit count as 1): a violation ``v`` by atom ``j`` can lower the objective by
``(v / ||atom_j||)^2``, so a tolerance fit for unit atoms alone would certify wrong answers
that need a much shorter one.

The public :func:`nonnegative_lasso` validates its arguments; the transformer calls the
private core (:func:`_prepare_dictionary` once, then :func:`_nonnegative_lasso` per chunk).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array

from ._compat import Interval, StrOptions, validate_params
from ._progress import progress
from ._torch_utils import import_torch, resolve_device, run_split_on_oom

__all__ = ["nonnegative_lasso"]

# Round-off bound of a float32 dot product of length d is about d * 2**-24 * |a| |b|;
# twice that decides which float32 scores must be recomputed in float64.
_F32_UNIT = 2.0**-24
# Diagonal shift for the small Gram systems: keeps duplicate concepts (identical rows)
# solvable while moving the solution far less than any tolerance a user can ask for.
_RIDGE = 1e-11
# Optimality tolerance of the inner problem: relative to the penalty, or to the scaled
# signal's norm (about 1) when the penalty is smaller than that.
_INNER_EPS = 1e-11
# Absolute allowance of the stopping test, times ||x||^2: float64 round-off (a few thousand
# ulps) of an objective whose scale is ||x||^2. Without it a sample whose optimum is ~0
# (l1_penalty = 0 and x in the cone of the atoms) could never certify a relative gap.
_GAP_FLOOR = 2.0**-40
# precompute="auto" solves on the Gram matrix up to this many concepts (see _use_gram)...
_GRAM_MAX_COMPONENTS = 4096
# ...and while it takes at most this much memory.
_GRAM_MAX_BYTES = 2**28
# Concepts added to a working set per iteration: half the support, at least this many.
_MIN_ADD = 16
# Devices where the working-set iterations run on arrays of fixed shape (_fixed_shape.py):
# there each value read back by the host stalls the device; on the CPU the variable
# shapes do less work.
_FIXED_SHAPE_DEVICES = ("cuda",)
# Largest batch chosen from free GPU memory.
_MAX_DEVICE_BATCH = 16384
# Scaled penalties above this give all-zero codes anyway (scaled rows and atoms have norm
# below 1.5); capping keeps ``mu * sum(w)`` finite.
_MAX_MU = 1e30


@validate_params(
    {
        "X": ["array-like"],
        "dictionary": ["array-like"],
        "l1_penalty": [Interval(Real, 0, np.inf, closed="left")],
        "solver": [StrOptions({"working_set", "fista"})],
        "precompute": [StrOptions({"auto"}), "boolean"],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": "no_validation",  # resolve_device names what it accepts
        "sparse_output": ["boolean"],
        "return_info": ["boolean"],
        "verbose": ["verbose"],
    },
    prefer_skip_nested_validation=True,
)
def nonnegative_lasso(
    X: Any,
    dictionary: Any,
    l1_penalty: float,
    *,
    solver: str = "working_set",
    precompute: str | bool = "auto",
    tol: float = 1e-6,
    max_iter: int | None = None,
    batch_size: int = 256,
    device: Any = "cpu",
    sparse_output: bool = False,
    return_info: bool = False,
    verbose: bool = False,
):
    """Sparse nonnegative codes of ``X`` over ``dictionary`` (the SpLiCE objective).

    Solves, independently for every row ``x`` of ``X``::

        min_{w >= 0}  objective(w) = ||dictionary.T @ w - x||_2^2 + l1_penalty * ||w||_1

    scikit-learn's ``Lasso(alpha=l1_penalty / (2 * d), positive=True, fit_intercept=False)``
    fitted on ``(dictionary.T, x)`` has the same minimiser. Inputs of any memory layout
    (views with any strides, Fortran order, read-only) and any magnitude are accepted;
    they are never modified.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Signals to encode (for SpLiCE: centred, unit-norm CLIP embeddings). Finite.
    dictionary : array-like of shape (n_components, n_features)
        One atom per row (for SpLiCE: centred, unit-norm concept embeddings). Finite.
    l1_penalty : float
        Weight ``lambda >= 0`` of the L1 term, finite. With ``0`` the problem is
        nonnegative least squares.
    solver : {"working_set", "fista"}, default="working_set"
        ``"working_set"`` is exact and fast; ``"fista"`` is a plain accelerated proximal
        gradient method kept for cross-checks.
    precompute : "auto" or bool, default="auto"
        Whether ``"working_set"`` solves on the precomputed ``c x c`` Gram matrix
        ``dictionary @ dictionary.T`` (``True``) or scores every iteration against the
        dictionary itself (``False``). Both give the same certified answers. ``"auto"`` uses
        the Gram matrix on the CPU for dictionaries of up to 4096 atoms (where it is
        faster) and at most ``8 * n_samples`` atoms (where computing it pays off), when it
        fits in 256 MiB; never on a GPU, where the iterations without it run on arrays of
        fixed shape and rarely wait for the host. Ignored by ``"fista"``.
    tol : float, default=1e-6
        Stopping tolerance. A sample stops once the duality gap ``G`` of its weights ``w``
        (an upper bound on ``objective(w) - min objective``) satisfies
        ``G <= tol * objective(w) + 2**-40 * ||x||^2``. The second term (about
        ``1e-12 * ||x||^2``, float64 round-off of the objective's scale) matters only when
        the optimum is almost 0, e.g. ``l1_penalty=0`` with ``x`` in the cone spanned by
        the atoms, where a gap relative to the objective alone is undefined.
    max_iter : int, default=None
        Most outer iterations: passes over the dictionary for ``"working_set"`` (default
        100), gradient steps for ``"fista"`` (default 20000).
    batch_size : int, default=256
        Samples solved together. On a GPU, ``"working_set"`` takes larger batches when a
        quarter of the free device memory holds them (at most 16384 samples).
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
    sparse_output : bool, default=False
        Return a ``scipy.sparse`` CSR matrix instead of a dense array.
    return_info : bool, default=False
        Also return a dict of per-sample arrays: ``duality_gap`` (the gap less the
        round-off allowance ``2**-40 * ||x||^2``, relative to ``objective(w)``; at most
        ``tol`` exactly when the sample converged), ``n_passes`` (products with the whole
        dictionary; with the Gram matrix, usually 1), ``n_iter`` (outer iterations) and
        ``converged``, and ``gram`` (bool: whether the Gram matrix was used).
    verbose : bool, default=False
        Show a progress bar over batches.

    Returns
    -------
    codes : ndarray or csr_matrix of shape (n_samples, n_components)
        Nonnegative float64 weights; all zero for an all-zero row of ``X``.
    info : dict
        Only when ``return_info=True``; see ``return_info``.

    Raises
    ------
    sklearn.utils._param_validation.InvalidParameterError
        For a parameter of the wrong type or out of range (a ``ValueError``).
    ValueError
        When ``X`` and ``dictionary`` differ in width, contain NaN or infinity, or the
        dictionary's row norms span more than float64 can hold together.
    OverflowError
        When a weight itself would exceed the float64 range (huge ``X`` over a tiny
        dictionary).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_splice import nonnegative_lasso
    >>> rng = np.random.RandomState(0)
    >>> D = rng.randn(50, 16)
    >>> D /= np.linalg.norm(D, axis=1, keepdims=True)
    >>> x = 0.7 * D[3] + 0.4 * D[10]
    >>> w = nonnegative_lasso(x[None], D, l1_penalty=0.01)
    >>> sorted(np.argsort(w[0])[-2:].tolist())
    [3, 10]
    >>> bool((w >= 0).all())
    True
    >>> w_big = nonnegative_lasso(1e300 * x[None], D, l1_penalty=0.01 * 1e300)
    >>> bool(np.allclose(w_big, 1e300 * w, rtol=1e-9, atol=0))
    True
    """
    X = check_array(X, dtype=[np.float64, np.float32], input_name="X")
    dictionary = check_array(dictionary, dtype=[np.float64, np.float32], input_name="dictionary")
    if X.shape[1] != dictionary.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} features per sample but the dictionary has "
            f"{dictionary.shape[1]}; both must use the same embedding width."
        )
    prepared = _prepare_dictionary(dictionary, device)
    codes, info = _nonnegative_lasso(
        X, prepared, float(l1_penalty), solver=solver, tol=tol, max_iter=max_iter,
        batch_size=batch_size, verbose=verbose, precompute=precompute,
    )
    out = codes if sparse_output else codes.toarray()
    return (out, info) if return_info else out


@dataclass(eq=False)
class _PreparedDictionary:
    """A dictionary on its device, ready for any number of :func:`_nonnegative_lasso` calls.

    ``C64`` is the dictionary times ``2**-exponent`` (exactly), so that its largest row has
    norm in ``[2**-0.5, 2**0.5]``; ``C32`` is its float32 copy for the scoring passes.
    """

    C64: Any
    C32: Any
    exponent: int
    margin_coef: float
    device: Any
    lipschitz: float | None = None  # of C64 (largest eigenvalue of C64.T @ C64), for FISTA
    row_norm: float = 1.0  # largest row norm of C64
    # 1 / min(||C_j||, 1) per row (1 for zero rows): the certificate measures each
    # concept's violation of the optimality conditions in units of its own norm (a
    # violation v of concept j can lower the objective by (v / ||C_j||)^2).
    inv_norm: Any = None
    gram: Any = None  # C64 @ C64.T, computed by the first call that solves on it

    def gram_matrix(self):
        """The float64 ``(c, c)`` Gram matrix of ``C64``, computed once and kept."""
        if self.gram is None:  # a race between threads only computes it twice
            self.gram = self.C64 @ self.C64.T
        return self.gram

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_components, n_features)``."""
        return tuple(self.C64.shape)


def _row_exponents(A):
    """Per row of float64 ``A``: ``e`` with ``||A_i|| * 2**-e`` in ``[0.7, 1.42]``, and nonzero.

    All-zero rows get ``e = 0``. Rows whose squared norm would over- or underflow are
    measured again with their largest entry taken out first.
    """
    with np.errstate(over="ignore", under="ignore"):
        sq = np.einsum("ij,ij->i", A, A)
    ok = (sq > 2.0**-900) & (sq < 2.0**900)
    e = np.zeros(A.shape[0], dtype=np.int64)
    e[ok] = np.rint(0.5 * np.log2(sq[ok]))
    nonzero = ok.copy()
    slow = np.flatnonzero(~ok)
    if slow.size:
        m = np.abs(A[slow]).max(axis=1)
        e1 = np.frexp(m)[1]  # |entries| * 2**-e1 < 1
        B = np.ldexp(A[slow], -e1[:, None])
        n = np.sqrt(np.einsum("ij,ij->i", B, B))
        e[slow] = e1 + np.rint(np.log2(np.where(n > 0, n, 1.0))).astype(np.int64)
        nonzero[slow] = m > 0
    return e, nonzero


def _prepare_dictionary(dictionary: np.ndarray, device: Any) -> _PreparedDictionary:
    """Move a ``(c, d)`` dictionary to ``device`` once, scaled, in float64 and float32.

    Parameters
    ----------
    dictionary : ndarray of shape (n_components, n_features)
        Finite float32 or float64 atoms, any memory layout; not modified.
    device : str or torch.device
        Where the solves run (see :func:`~sklearn_splice._torch_utils.resolve_device`).

    Returns
    -------
    prepared : _PreparedDictionary
        With ``.device`` and ``.shape``; shareable between threads and calls.

    Raises
    ------
    ValueError
        When some nonzero atom is so much smaller than the largest one that it would
        become exactly zero at the largest one's scale (norms more than ~1e308 apart).
    """
    torch = import_torch()
    dev = resolve_device(device)
    # Always a copy: the caller's array is never written, nor shared with the tensors.
    C = np.array(dictionary, dtype=np.float64, order="C")
    e, nonzero = _row_exponents(C)
    exponent = int(e[nonzero].max()) if nonzero.any() else 0
    if exponent:
        np.ldexp(C, -exponent, out=C)  # exact
    if nonzero.any() and int(e[nonzero].min()) < exponent - 1000:  # some rows may underflow
        lost = nonzero & ~(C != 0).any(axis=1)
        if lost.any():
            i, j = int(np.flatnonzero(lost)[0]), int(np.argmax(np.where(nonzero, e, e.min())))
            raise ValueError(
                f"The dictionary's row norms span too many orders of magnitude for float64: "
                f"row {i} is about 2**{int(e[i])} and row {j} about 2**{int(e[j])}, so row "
                f"{i} vanishes when the dictionary is scaled to unit size. Rescale or drop "
                "such rows."
            )
    C64 = torch.from_numpy(C).to(dev)
    norms = torch.linalg.vector_norm(C64, dim=1)
    row_norm = float(norms.max())
    inv_norm = torch.where(norms > 0, 1.0 / norms.clamp(min=1e-300, max=1.0), 1.0)
    return _PreparedDictionary(
        C64=C64,
        C32=C64.float(),
        exponent=exponent,
        margin_coef=2.0 * C.shape[1] * _F32_UNIT * max(row_norm, 1.0),
        device=dev,
        row_norm=row_norm,
        inv_norm=inv_norm,
    )


class _Rows:
    """Scaled signals and their penalties: split together when a batch runs out of memory."""

    def __init__(self, z, mu):
        self.z, self.mu = z, mu

    def __len__(self):
        return self.z.shape[0]

    def __getitem__(self, key):
        return _Rows(self.z[key], self.mu[key])

    def to(self, device):
        return _Rows(self.z.to(device), self.mu.to(device))


def _nonnegative_lasso(
    X: np.ndarray,
    prepared: _PreparedDictionary,
    l1_penalty: float,
    *,
    solver: str = "working_set",
    tol: float = 1e-6,
    max_iter: int | None = None,
    batch_size: int = 256,
    verbose: bool = False,
    precompute: str | bool = "auto",
) -> tuple[sp.csr_matrix, dict]:
    """Core of :func:`nonnegative_lasso`, without validation.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Finite float64 (or float32) signals; rows are converted and scaled a batch at a time,
        so any layout works and ``X`` is never modified.
    prepared : _PreparedDictionary
        From :func:`_prepare_dictionary`, of the same width as ``X``.
    l1_penalty : float
        Finite, nonnegative.
    solver, tol, max_iter, batch_size, verbose, precompute
        As in :func:`nonnegative_lasso`.

    Returns
    -------
    codes : csr_matrix of shape (n_samples, n_components)
        Nonnegative float64 weights.
    info : dict
        Per-sample ``duality_gap``, ``n_passes``, ``n_iter`` and ``converged``, and
        ``gram``, as in :func:`nonnegative_lasso`. A ``ConvergenceWarning`` has been issued
        when some sample did not converge.
    """
    torch = import_torch()
    if max_iter is None:
        max_iter = 100 if solver == "working_set" else 20000
    l1_penalty = float(l1_penalty)  # a float32 scalar would make the scaled penalties float32
    n = X.shape[0]
    c = prepared.shape[0]
    C64, C32, dev = prepared.C64, prepared.C32, prepared.device
    gram = solver == "working_set" and _use_gram(prepared, precompute, n)
    if dev.type == "cuda" and solver == "working_set":
        batch_size = max(batch_size, _device_batch_size(prepared, dev))
    G = prepared.gram_matrix() if gram else None
    # bound on the error of a Gram-derived score C_j z - G_j w (float64, sums of d and c terms)
    gram_err = 4.0 * (prepared.shape[1] + c + 2) * 2.0**-53 * max(prepared.row_norm, 1.0) ** 2

    rows_parts, cols_parts, vals_parts = [], [], []
    gaps = np.zeros(n)
    passes = np.zeros(n, dtype=np.int64)
    iters = np.zeros(n, dtype=np.int64)
    with torch.inference_mode():
        if solver == "fista" and prepared.lipschitz is None:
            prepared.lipschitz = float(torch.linalg.eigvalsh(C64.T @ C64).max())
        lipschitz = prepared.lipschitz

        def solve(rows, C32=C32, C64=C64, G=G):
            inv = prepared.inv_norm.to(rows.z.device)
            if gram:
                return _gram_batch(rows.z, rows.mu, G, C64, tol, max_iter, gram_err, inv)
            if solver == "working_set":
                # the fixed-shape loop lives in its own module, which builds on this one
                from ._fixed_shape import _fixed_shape_batch

                fixed = rows.z.device.type in _FIXED_SHAPE_DEVICES
                return (_fixed_shape_batch if fixed else _working_set_batch)(
                    rows.z, rows.mu, C32, C64, tol, max_iter, prepared.margin_coef, inv
                )
            return _fista_batch(rows.z, rows.mu, C64, tol, max_iter, lipschitz, inv)

        def on_cpu(rows):
            return solve(rows.to("cpu"), C32.cpu(), C64.cpu(), None if G is None else G.cpu())

        starts = range(0, n, batch_size)
        starts = progress(starts, len(starts), "sparse coding", enabled=verbose)
        for start in starts:
            stop = min(start + batch_size, n)
            # C order for torch, whatever the strides of X (negative ones included)
            Xb = np.ascontiguousarray(X[start:stop], dtype=np.float64)
            # Solve for z = x * 2**-e (norm ~1) with the penalty scaled to match:
            # w(x, lambda) = 2**(e - exponent) * w(z, lambda * 2**-(e + exponent)).
            e = _row_exponents(Xb)[0]
            Zb = np.ldexp(Xb, -e[:, None])  # a new array: X is never modified
            with np.errstate(over="ignore", under="ignore"):
                # half the penalty: the solvers work on half the objective
                mu = np.minimum(np.ldexp(l1_penalty, -(e + prepared.exponent) - 1), _MAX_MU)
            rows = _Rows(torch.from_numpy(Zb).to(dev), torch.from_numpy(mu).to(dev))
            res = run_split_on_oom(
                solve, rows, combine=_combine_parts,
                fallback=on_cpu if dev.type != "cpu" else None, what="sparse-coding",
            )
            r_rows, r_cols, r_vals, r_gap, r_pass, r_iter = (t.cpu().numpy() for t in res)
            rows_parts.append(r_rows + start)
            cols_parts.append(r_cols)
            with np.errstate(over="ignore"):
                vals = np.ldexp(r_vals, e[r_rows] - prepared.exponent)
            if not np.isfinite(vals).all():
                raise OverflowError(
                    "Some weights exceed the float64 range (about 1.8e308): the signals are "
                    "too large for the dictionary's scale. Rescale X or the dictionary."
                )
            vals_parts.append(vals)
            gaps[start:stop] = r_gap
            passes[start:stop] = r_pass
            iters[start:stop] = r_iter

    rows = np.concatenate(rows_parts) if rows_parts else np.zeros(0, dtype=np.int64)
    cols = np.concatenate(cols_parts) if cols_parts else np.zeros(0, dtype=np.int64)
    vals = np.concatenate(vals_parts) if vals_parts else np.zeros(0)
    codes = sp.csr_matrix((vals, (rows, cols)), shape=(n, c), dtype=np.float64)
    codes.sum_duplicates()
    codes.eliminate_zeros()  # weights that underflowed when scaled back
    converged = gaps <= tol
    if not converged.all():
        warnings.warn(
            f"nonnegative_lasso ({solver}) did not reach a relative duality gap of {tol:g} "
            f"for {int((~converged).sum())} of {n} samples within max_iter={max_iter} "
            f"(worst gap {gaps.max():.2e}); increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=2,
        )
    info = {"duality_gap": gaps, "n_passes": passes, "n_iter": iters, "converged": converged}
    return codes, {**info, "gram": gram}


def _device_batch_size(prepared: _PreparedDictionary, dev: Any) -> int:
    """Rows a quarter of the free memory of a GPU holds: a GPU wants large batches.

    Per row: the scores (float32 and float64 copies, about ``16 c`` bytes) and a working
    set of up to ``K = min(c, 256)`` float64 rows and its Gram matrices. A batch that still
    runs out of memory is split by :func:`~sklearn_splice._torch_utils.run_split_on_oom`.
    """
    torch = import_torch()
    c, d = prepared.shape
    k = min(c, 256)
    per_row = 16 * c + 8 * (3 * k * d + 4 * k * k)
    free = torch.cuda.mem_get_info(dev)[0]
    return int(min(max(free // 4 // per_row, 1), _MAX_DEVICE_BATCH))


def _use_gram(prepared: _PreparedDictionary, precompute: str | bool, n_samples: int) -> bool:
    """Whether to solve on the ``c x c`` Gram matrix: forced, or when it pays off.

    ``"auto"`` never takes it on a GPU, where a scoring pass is cheap and only the
    scoring method runs on fixed shapes (see ``_fixed_shape.py``). On the CPU it takes it
    up to ``_GRAM_MAX_COMPONENTS`` concepts, while it takes at most ``_GRAM_MAX_BYTES``
    and, unless it is already computed, while computing it (``c / n_samples`` float64
    passes per sample) costs less than it saves (measured on one core: about 20 to 90
    passes per sample saved at 2000 concepts, 8 to 60 at 4000, against ``2 c / n_samples``
    passes to compute it).
    """
    if precompute != "auto":
        return bool(precompute)
    c = prepared.shape[0]
    nbytes = 8 * c * c
    if c > _GRAM_MAX_COMPONENTS:
        return False
    if prepared.device.type in _FIXED_SHAPE_DEVICES:
        return False  # passes are cheap there, and only their iterations avoid host reads
    if prepared.gram is not None:
        return True
    if c > 8 * n_samples:
        return False
    return nbytes <= _GRAM_MAX_BYTES


def _combine_parts(first, second, n_first):
    """Join the results of two halves of a batch (rows of the second shifted)."""
    torch = import_torch()
    dev = first[0].device
    second = tuple(t.to(dev) for t in second)
    return (torch.cat([first[0], second[0] + n_first]),) + tuple(
        torch.cat([a, b]) for a, b in zip(first[1:], second[1:])
    )


def _inner_eps(mu):
    """Per-row optimality tolerance of the small problems: relative to mu, absolute below 1.

    It is for concepts of norm 1: the small solves scale it by each concept's norm
    (:func:`_coordinate_eps`), as the certificate does (:func:`_relative_gap`).
    """
    return _INNER_EPS * mu.clamp_min(1.0)


def _coordinate_eps(G, eps):
    """Per-coordinate tolerances: each row's ``eps`` times ``min(||C_j||, 1)``, from the
    diagonal of the working set's Gram matrices ``G``."""
    return eps[:, None] * G.diagonal(dim1=1, dim2=2).clamp(0.0, 1.0).sqrt()


def _excess_gap(z, r, w_sum, cmax, mu, excess):
    """Duality gap of the half objective less the round-off floor, relative to the objective.

    The half objective is ``0.5 ||r||^2 + mu * sum(w)`` with residual ``r = z - D^T w``;
    ``cmax = max_j D_j . r``. A dual point ``theta = s r`` in the feasible set
    ``{theta : D theta <= mu}`` has the dual value ``0.5 ||z||^2 - 0.5 ||z - s r||^2``.
    With ``y = z - r = D^T w`` the gap is ``0.5 (1 - s)^2 ||r||^2 + mu sum(w) - s r.y``,
    which, unlike the difference of the two values, does not lose the gap to round-off of
    ``||z||^2`` when the optimum is near 0. The result is ``<= tol`` exactly when
    ``gap <= tol * primal + 0.5 * _GAP_FLOOR * ||z||^2``. ``excess`` is the largest
    violation ``max_j (D_j . r - mu) / min(||D_j||, 1)`` (see :func:`_exact_max_corr`).
    """
    zz, rr, ry = (z * z).sum(1), (r * r).sum(1), (r * (z - r)).sum(1)
    return _relative_gap(zz, rr, ry, w_sum, cmax, mu, excess)


def _relative_gap(zz, rr, ry, w_sum, cmax, mu, excess):
    """:func:`_excess_gap` from ``||z||^2``, ``||r||^2`` and ``r.y`` (``y = D^T w``)."""
    torch = import_torch()
    primal = 0.5 * rr + mu * w_sum
    # The largest s <= 1 that keeps s r feasible. A point off the feasible set by round-off
    # of D r (1e-9 |r|) or by the tolerance of the small solves (which leave such concepts
    # out) is taken as it is: with mu = 0 no scaling reaches the set (a cone), so this is
    # what certifies a nonnegative least-squares answer.
    # With mu = 0 nothing bounds ||w*||_1 (an ill-posed problem can have its optimum at
    # weights of 1e7), so only float64 round-off of D r is forgiven there. Violations are
    # measured in units of each concept's norm (excess): an allowance fit for unit concepts
    # would otherwise pass a wrong answer that needs a much shorter one.
    slack = torch.where(mu > 0, 1e-9 * rr.sqrt() + 2.0 * _inner_eps(mu), 1e-13 * rr.sqrt())
    s_cap = torch.where(excess > slack, mu / cmax.clamp_min(1e-300), torch.ones_like(cmax))
    # Within [0, s_cap], the s that minimises the gap (a convex quadratic in s). It differs
    # from s_cap when r is only round-off (mu = 0, x in the cone): there theta = 0 is best,
    # and the gap is the objective itself rather than round-off of r.y magnified.
    s_opt = torch.where(rr > 0, 1.0 + ry / rr.clamp_min(1e-300), s_cap)
    s = torch.minimum(s_opt.clamp_min(0.0), s_cap)
    gap = 0.5 * (1.0 - s) ** 2 * rr + mu * w_sum - s * ry
    excess = (gap - 0.5 * _GAP_FLOOR * zz).clamp_min(0.0)
    return torch.where(primal > 0, excess / primal.clamp_min(1e-300), torch.zeros_like(gap))


def _max_violation(scores, mu, inv_norm):
    """Per row, ``max_j (scores_j - mu) * inv_norm_j``: the largest violation of the
    optimality conditions, in units of each concept's norm (``inv_norm`` as in
    :class:`_PreparedDictionary`, per column or per entry)."""
    return ((scores - mu[:, None]) * inv_norm).max(1).values


def _exact_max_corr(best32, top_vals, top_ids, r, C64, margin, supp_corr, supp_idx, mu, inv_norm):
    """``max_j C_j . r`` in float64, using approximate scores only to pick candidates; and
    the largest violation ``max_j (C_j . r - mu) * inv_norm[j]`` among the same concepts.

    ``best32`` is each row's largest approximate score (float32 or Gram-derived);
    ``top_vals``/``top_ids`` the largest scores outside the support, whose exact scores are
    ``supp_corr`` (``-inf`` in unused slots) at concepts ``supp_idx``; ``margin`` bounds
    each row's score error. Every concept whose score is within twice that bound of the
    best one is rescored exactly; a row with more such candidates than ``top_ids`` holds is
    rescored in full. (A concept left out scores below the best one by more than any
    violation the certificate forgives, so its own violation is forgiven too.)
    """
    torch = import_torch()
    ninf = float("-inf")
    cand = top_vals >= (best32 - 2 * margin)[:, None]
    # one device-to-host copy for both decisions
    k, any_full = torch.stack([cand.sum(1).max(), cand.all(1).any().long()]).tolist()
    if supp_corr.shape[1]:
        cmax = supp_corr.max(1).values
        excess = _max_violation(supp_corr, mu, inv_norm[supp_idx])
    else:
        cmax = excess = torch.full_like(r[:, 0], ninf)
    if k:
        ids = top_ids[:, :k]
        exact = torch.einsum("bkd,bd->bk", C64[ids], r)
        exact = torch.where(cand[:, :k], exact, torch.full_like(exact, ninf))
        cmax = torch.maximum(cmax, exact.max(1).values)
        excess = torch.maximum(excess, _max_violation(exact, mu, inv_norm[ids]))
    if k == top_ids.shape[1] and top_ids.shape[1] < C64.shape[0]:
        if any_full:  # candidates may go on beyond the ones listed
            rows = cand.all(1).nonzero().squeeze(1)
            scores = r[rows] @ C64.T
            cmax[rows] = scores.max(1).values
            excess[rows] = _max_violation(scores, mu[rows], inv_norm)
    return cmax, excess


def _working_set_batch(z, mu, C_pass, C64, tol, max_iter, margin_coef, inv_norm):
    """Solve one batch; returns COO parts (rows, cols, values), gaps and pass counts.

    Each row carries its support ``S`` with the float64 rows ``C_S`` and Gram matrix
    ``G_SS`` from one iteration to the next, so an iteration only gathers and multiplies
    the rows it adds: ``G`` of the working set ``S + A`` is assembled from ``G_SS``,
    ``C_S C_A^T`` and ``C_A C_A^T``. ``mu`` holds each row's half penalty; like every
    per-row tensor it is compacted as rows converge.
    """
    torch = import_torch()
    B, d = z.shape
    c = C_pass.shape[0]
    dev = z.device
    f64 = torch.float64
    min_add = min(c, _MIN_ADD)

    act = torch.arange(B, device=dev)  # rows of the batch still being solved
    idx = torch.zeros((B, 0), dtype=torch.long, device=dev)
    w = torch.zeros((B, 0), dtype=f64, device=dev)
    valid = torch.zeros((B, 0), dtype=torch.bool, device=dev)
    CS = torch.zeros((B, 0, d), dtype=f64, device=dev)
    G = torch.zeros((B, 0, 0), dtype=f64, device=dev)
    q = torch.zeros((B, 0), dtype=f64, device=dev)  # C_S z - mu
    mu = mu.to(f64)
    supp_corr = torch.zeros((B, 0), dtype=f64, device=dev)  # exact C_S r; -inf when unused
    r = z.clone()
    zz = z
    gaps = torch.full((B,), float("inf"), dtype=f64, device=dev)
    passes = torch.zeros(B, dtype=torch.long, device=dev)
    out_rows, out_cols, out_vals = [], [], []

    def emit(sel):
        keep = valid[sel] & (w[sel] > 0)
        rr = act[sel][:, None].expand_as(keep)
        out_rows.append(rr[keep])
        out_cols.append(idx[sel][keep])
        out_vals.append(w[sel][keep])

    for it in range(max_iter):
        corr = r.float() @ C_pass.T
        passes[act] += 1
        best = corr.max(1).values
        if idx.shape[1]:  # from here on, corr scores the concepts outside the support
            _mask_support(corr, idx, valid)
        # One top-k serves both the certificate's candidates and the concepts to add.
        cap = torch.clamp(valid.sum(1) // 2, min=min_add)
        # valid's width bounds every support: no device-to-host copy for the size
        top_vals, top_ids = corr.topk(min(c, max(valid.shape[1] // 2, min_add, 8)), dim=1)
        margin = margin_coef * torch.linalg.vector_norm(r, dim=1).float()
        cmax, excess = _exact_max_corr(
            best, top_vals, top_ids, r, C64, margin, supp_corr, idx, mu, inv_norm
        )
        rel = _excess_gap(zz, r, (w * valid).sum(1), cmax, mu, excess)
        gaps[act] = rel
        done = rel <= tol
        if bool(done.any()):
            emit(done)
            keep = ~done
            act, idx, w, valid, CS, G, q, supp_corr, r, zz, mu, top_vals, top_ids, cap = (
                t[keep]
                for t in (
                    act, idx, w, valid, CS, G, q, supp_corr, r, zz, mu, top_vals, top_ids, cap
                )
            )
        if act.numel() == 0 or it == max_iter - 1:
            break

        # Add the concepts that break the optimality conditions most (score above mu):
        # half the support's size, at least 16. Small steps keep the Gram blocks and
        # solves small; each costs one more pass, which is cheaper (measured).
        n_viol = (top_vals > mu.float()[:, None]).sum(1)  # counted up to the cap: enough
        n_add = torch.minimum(n_viol, cap).clamp(min=1, max=c)
        A = int(n_add.max())
        add_idx = top_ids[:, :A]
        add_valid = torch.arange(A, device=dev)[None, :] < n_add[:, None]
        G, q = _append_rows(G, q, CS, C64[add_idx], zz, mu)
        idx = torch.cat([idx, add_idx], 1)
        set_valid = torch.cat([valid, add_valid], 1)
        w0 = torch.cat([w * valid, torch.zeros_like(add_idx, dtype=f64)], 1)

        # The working set's valid entries first, so that the solves take leading blocks
        order, counts = _valid_first(set_valid)
        G, idx, q = _gather_square(G, order), idx.gather(1, order), q.gather(1, order)
        w = _solve_leading(G, q, w0.gather(1, order), counts, mu)

        # Keep only the new support, compacted to the front of each row.
        order, n_keep = _valid_first(w > 0)
        idx, w, q = idx.gather(1, order), w.gather(1, order), q.gather(1, order)
        G = _gather_square(G, order)
        valid = torch.arange(order.shape[1], device=dev)[None, :] < n_keep[:, None]
        CS = C64[idx]
        r = zz - torch.einsum("bs,bsd->bd", w, CS)
        scores = q + mu[:, None] - (G @ w[:, :, None]).squeeze(-1)  # C_S r = C_S z - G w
        supp_corr = torch.where(valid, scores, torch.full_like(scores, float("-inf")))
    if act.numel():  # out of iterations: the point whose gap was measured last
        emit(torch.ones(act.numel(), dtype=torch.bool, device=dev))

    if out_rows:
        rows, cols, vals = torch.cat(out_rows), torch.cat(out_cols), torch.cat(out_vals)
    else:
        rows = cols = torch.zeros(0, dtype=torch.long, device=dev)
        vals = torch.zeros(0, dtype=f64, device=dev)
    return rows, cols, vals, gaps, passes, passes.clone()  # one pass per iteration


def _append_rows(G, q, CS, CA, z, mu):
    """The Gram matrix and ``q = C z - mu`` of a working set ``S`` with rows ``CA`` appended.

    ``G`` and ``q`` are those of ``S``, whose rows are ``CS``: only the blocks of the new
    rows are computed.
    """
    torch = import_torch()
    G_SA = CS @ CA.transpose(1, 2)
    G = torch.cat(
        [
            torch.cat([G, G_SA], 2),
            torch.cat([G_SA.transpose(1, 2), CA @ CA.transpose(1, 2)], 2),
        ],
        1,
    )
    return G, torch.cat([q, torch.einsum("bad,bd->ba", CA, z) - mu[:, None]], 1)


def _gram_batch(z, mu, G, C64, tol, max_iter, gram_err, inv_norm):
    """Solve one batch on the precomputed Gram matrix ``G = C64 @ C64.T``.

    The correlations ``C z`` are computed once, in float64; every iteration then scores
    the concepts as ``C r = C z - G w`` and gathers the working set's Gram matrix from
    ``G``, never touching the dictionary. The certificate of a sample that looks converged
    is recomputed from its explicit residual ``r = z - C_S^T w`` (no cancellation), with
    the concepts outside the support whose Gram-derived score is within ``gram_err * (||z||
    + ||w||_1)`` of the best one rescored exactly, so that it is the one the scoring method
    computes. Returns what :func:`_working_set_batch` returns.
    """
    torch = import_torch()
    B, d = z.shape
    c = G.shape[0]
    dev = z.device
    f64 = torch.float64
    min_add = min(c, _MIN_ADD)
    mu = mu.to(f64)
    q_all = z @ C64.T  # the one product with the dictionary
    zz = (z * z).sum(1)
    act = torch.arange(B, device=dev)
    idx = torch.zeros((B, 0), dtype=torch.long, device=dev)
    w = torch.zeros((B, 0), dtype=f64, device=dev)
    valid = torch.zeros((B, 0), dtype=torch.bool, device=dev)
    zr = z
    gaps = torch.full((B,), float("inf"), dtype=f64, device=dev)
    passes = torch.ones(B, dtype=torch.long, device=dev)
    iters = torch.zeros(B, dtype=torch.long, device=dev)
    out_rows, out_cols, out_vals = [], [], []
    ninf = float("-inf")

    for it in range(max_iter):
        iters[act] += 1
        b = act.numel()
        # G w from the support's rows of G only: a sparse product, several times cheaper
        # than a dense one (invalid slots, which may repeat a valid concept, are left out)
        nz = valid.nonzero()
        W = torch.sparse_coo_tensor(
            torch.stack([nz[:, 0], idx[valid]]), w[valid], (b, c), check_invariants=False
        ).coalesce()
        Gw = torch.sparse.mm(W, G)
        corr = q_all - Gw  # C r
        w_sum = w.sum(1)
        wq = (w * q_all.gather(1, idx)).sum(1)  # y.z with y = C_S^T w
        wGw = (w * Gw.gather(1, idx)).sum(1)  # y.y
        best = corr.max(1).values
        old = corr.gather(1, idx)
        _mask_support(corr, idx, valid)
        cap = torch.clamp(valid.sum(1) // 2, min=min_add)
        top_vals, top_ids = corr.topk(min(c, max(valid.shape[1] // 2, min_add, 8)), dim=1)
        rr = (zz - 2 * wq + wGw).clamp_min(0.0)
        rel = _relative_gap(zz, rr, wq - wGw, w_sum, best, mu, best - mu)  # a first screen
        n_viol = (top_vals > mu[:, None]).sum(1)
        # Certify exactly what looks converged or has nothing left to add (the Gram-derived
        # ||r||^2 = ||z||^2 - 2 y.z + y.y loses digits when r is small).
        check = (rel <= tol) | (n_viol == 0) | (it == max_iter - 1)
        if bool(check.any()):
            ch = check.nonzero().squeeze(1)
            ic, wc, zc = idx[ch], w[ch], zr[ch]
            r = zc - torch.einsum("bs,bsd->bd", wc, C64[ic])
            supp = torch.where(valid[ch], old[ch], torch.full_like(wc, ninf))
            margin = gram_err * (zz[ch].sqrt() + w_sum[ch])
            cmax, excess = _exact_max_corr(
                best[ch], top_vals[ch], top_ids[ch], r, C64, margin, supp, ic, mu[ch], inv_norm
            )
            rel[ch] = _relative_gap(
                zz[ch], (r * r).sum(1), (r * (zc - r)).sum(1), w_sum[ch], cmax, mu[ch], excess
            )
        gaps[act] = rel
        done = rel <= tol
        if bool(done.any()):
            sel = done.nonzero().squeeze(1)
            keep_nz = w[sel] > 0
            out_rows.append(act[sel][:, None].expand_as(keep_nz)[keep_nz])
            out_cols.append(idx[sel][keep_nz])
            out_vals.append(w[sel][keep_nz])
            keep = (~done).nonzero().squeeze(1)
            act, idx, w, valid, zr, zz, mu, q_all, top_vals, top_ids, n_viol, cap = (
                t.index_select(0, keep)
                for t in (act, idx, w, valid, zr, zz, mu, q_all, top_vals, top_ids, n_viol, cap)
            )
        if act.numel() == 0 or it == max_iter - 1:
            break

        n_add = torch.minimum(n_viol, cap).clamp(min=1, max=c)
        A = int(n_add.max())
        idx_k = torch.cat([idx, top_ids[:, :A]], 1)
        set_valid = torch.cat(
            [valid, torch.arange(A, device=dev)[None, :] < n_add[:, None]], 1
        )
        # the working set's valid entries first: gathered from G once, in that order
        order, counts = _valid_first(set_valid)
        idx_k = idx_k.gather(1, order)
        Gk = _gather_square(G.unsqueeze(0), idx_k, torch.zeros_like(counts))
        qk = q_all.gather(1, idx_k) - mu[:, None]
        w0 = torch.cat([w, torch.zeros((w.shape[0], A), dtype=f64, device=dev)], 1)
        wk = _solve_leading(Gk, qk, w0.gather(1, order), counts, mu)
        order, n_keep = _valid_first(wk > 0)  # the new support, compacted to the front
        idx, w = idx_k.gather(1, order), wk.gather(1, order)
        valid = torch.arange(order.shape[1], device=dev)[None, :] < n_keep[:, None]
    if act.numel():  # out of iterations: the point whose gap was measured last
        keep_nz = w > 0
        out_rows.append(act[:, None].expand_as(keep_nz)[keep_nz])
        out_cols.append(idx[keep_nz])
        out_vals.append(w[keep_nz])

    rows, cols, vals = torch.cat(out_rows), torch.cat(out_cols), torch.cat(out_vals)
    return rows, cols, vals, gaps, passes, iters


def _mask_support(corr, idx, valid):
    """Set ``corr[i, idx[i, j]] = -inf`` where ``valid[i, j]``, in place.

    An unused slot may name a concept that a valid slot names too: taking the minimum,
    rather than writing each slot's value, masks it whatever the order of the writes.
    """
    torch = import_torch()
    inf = torch.full(idx.shape, float("inf"), dtype=corr.dtype, device=corr.device)
    corr.scatter_reduce_(1, idx, torch.where(valid, -inf, inf), "amin")


def _valid_first(valid):
    """Per row, the positions of the valid entries in their order, then the others, cut to
    the most valid entries of any row; and how many each row has."""
    torch = import_torch()
    counts = valid.sum(1)
    k = int(counts.max()) if valid.shape[0] else 0
    return torch.argsort((~valid).to(torch.uint8), dim=1, stable=True)[:, :k], counts


def _solve_leading(G, q, w0, counts, mu):
    """Exact solve of the working-set problems: PDAS, then an active-set method where it cycles.

    The valid entries of each row are its ``counts`` leading ones (see :func:`_valid_first`),
    so that the solves can take leading blocks of ``G`` rather than gather per solve.
    """
    torch = import_torch()
    valid = torch.arange(q.shape[1], device=q.device)[None, :] < counts[:, None]
    eps = _inner_eps(mu)
    w, ok = _pdas_qp(G, q, w0, valid, eps, counts)
    if not bool(ok.all()):
        bad = (~ok).nonzero().squeeze(1)
        w[bad] = _active_set_qp(G[bad], q[bad], w0[bad], valid[bad], eps[bad])
    return torch.where(valid, w.clamp_min(0.0), torch.zeros_like(w))


def _gather_square(G, sel, rows=None):
    """``G[rows[i]][sel[i]][:, sel[i]]`` for every ``i`` (``rows`` defaults to all).

    One flat gather, several times faster on the CPU than two ``gather`` calls or advanced
    indexing; on the CPU a few rows at a time, so that the index stays in the caches
    (measured: twice as fast as one gather over 100 MB), and on a GPU in steps of up to
    ``_GATHER_DEVICE_BYTES`` of index, which would otherwise take as much memory as the
    result.
    """
    torch = import_torch()
    K = G.shape[1]
    b, k = sel.shape
    if rows is None:
        rows = torch.arange(b, device=G.device)
    chunk = _GROUP_BYTES if G.device.type == "cpu" else _GATHER_DEVICE_BYTES
    step = max(1, chunk // (8 * k * k + 1))
    flat_G = G.reshape(-1)
    out = torch.empty((b, k, k), dtype=G.dtype, device=G.device)
    for i in range(0, b, step):
        s = sel[i : i + step]
        flat = (rows[i : i + step] * (K * K))[:, None, None] + s[:, :, None] * K
        flat = (flat + s[:, None, :]).reshape(-1)
        torch.index_select(flat_G, 0, flat, out=out[i : i + step].view(-1))
    return out


# Index bytes per step of a gather on a GPU (see _gather_square).
_GATHER_DEVICE_BYTES = 2**30


# Rows of a batch of small solves are grouped by size while padding every row of a group to
# its largest one costs at most this factor more (Cholesky's k**3) than solving each alone...
_GROUP_SLACK = 1.3
# ...and while a group's matrices take at most this many bytes: the dozen passes of a solve
# then run in the CPU's caches (measured: 2-4x faster per row than over 100 MB)...
_GROUP_BYTES = 2**22
# ...but a group is never cut for the padding below this many rows.
_GROUP_MIN_ROWS = 8


def _size_groups(counts):
    """Split rows into groups of similar ``counts``: ``[(row positions, largest count)]``."""
    torch = import_torch()
    sizes, order = torch.sort(counts)
    top = int(sizes[-1])
    if counts.numel() * 8 * top * top <= _GROUP_BYTES:  # it fits the caches as it is
        return [(order, top)]
    v = sizes.tolist()
    groups, start, n = [], 0, len(v)
    while start < n:
        stop, cubes = start + 1, v[start] ** 3
        while stop < n:
            k = v[stop]
            rows = stop + 1 - start
            if rows * 8 * k * k > _GROUP_BYTES or (
                rows > _GROUP_MIN_ROWS and rows * k**3 > _GROUP_SLACK * (cubes + k**3)
            ):
                break
            cubes += k**3
            stop += 1
        groups.append((order[start:stop], v[stop - 1]))
        start = stop
    return groups


def _masked_solve(G, q, P, rows=None, sizes=None):
    """Solve ``G[P, P] s[P] = q[P]`` per row with ``s = 0`` off ``P``.

    ``q`` and ``P`` have one row per entry of ``rows``, the rows of ``G`` they belong to
    (default: all). ``sizes`` (default: the width) bounds each row's ``P`` to its leading
    entries. Rows of similar size are solved together on the leading block of ``G`` that
    holds the largest of them, so that the cost follows each row's own size rather than
    the width of the batch.
    """
    torch = import_torch()
    b, K = q.shape
    if b == 0 or K == 0:
        return torch.zeros_like(q)
    if sizes is None or q.device.type != "cpu" or b * 8 * K * K <= _GROUP_BYTES:
        # one group: a GPU runs one large batch best, and small ones fit the caches
        groups = [(None, K)]
    else:
        groups = _size_groups(sizes)
    s = torch.zeros_like(q)
    for grp, k in groups:
        if k == 0:
            continue
        if grp is None:
            m, Gg, qg = P, G if rows is None else G.index_select(0, rows), q
        else:
            m, qg = P[grp, :k], q[grp, :k]
            Gg = G[:, :k, :k].index_select(0, grp if rows is None else rows[grp])
        x, bad, A, rhs = _cholesky_solve(Gg, qg, m)
        if bool(bad.any()):  # numerically indefinite: least squares is still well defined
            x[bad] = torch.linalg.lstsq(A[bad], rhs[bad]).solution.squeeze(-1)
        mf = m.to(x.dtype)
        if grp is None:
            s = x * mf
        else:
            s[grp, :k] = x * mf
    return s


def _cholesky_solve(G, q, m):
    """Solve ``G[m, m] s[m] = q[m]`` per row by Cholesky, with the identity off ``m``.

    Returns the solution (meaningless off ``m``), which rows failed to factorise
    (numerically indefinite), and the shifted matrices and right-hand sides.
    """
    torch = import_torch()
    mf = m.to(G.dtype)
    # the ridge in proportion to each concept's squared norm (at most 1), so that the
    # solution is as accurate for a short concept as for a unit one
    ridge = _RIDGE * mf * G.diagonal(dim1=1, dim2=2).clamp(max=1.0)
    A = (G * mf[:, None, :]).mul_(mf[:, :, None])  # 2-5x faster than a where() (measured)
    A.diagonal(dim1=1, dim2=2).add_(1.0 - mf + ridge)
    rhs = (q * mf)[:, :, None]
    L, info = torch.linalg.cholesky_ex(A)
    # two triangular solves are several times faster than cholesky_solve on small batches
    y = torch.linalg.solve_triangular(L, rhs, upper=False)
    x = torch.linalg.solve_triangular(L.mT, y, upper=True)
    # One step of iterative refinement against the unshifted matrix takes out the ridge's
    # bias (ridge * s), which otherwise dominates when the weights are large (l1_penalty
    # near 0 with correlated atoms); on exact duplicates it changes nothing.
    res = rhs - A @ x + ridge[:, :, None] * x
    y = torch.linalg.solve_triangular(L, res, upper=False)
    x = (x + torch.linalg.solve_triangular(L.mT, y, upper=True)).squeeze(-1)
    return x, info != 0, A, rhs


def _pdas_qp(G, q, w, valid, eps, sizes=None, max_iter=25):
    """Primal-dual active-set (semismooth Newton) solve of the small problems, batched.

    Guess the support, solve on it, and move every coordinate whose sign condition fails;
    a guess that repeats meets the KKT conditions exactly. Warm-started from the previous
    support this usually takes 2-4 solves. Rows that have not settled after ``max_iter``
    (PDAS can cycle on badly conditioned problems) are reported in ``converged = False``.
    ``eps`` holds each row's tolerance (:func:`_inner_eps`); ``sizes``, when given, says
    that each row's valid entries are its leading ones, and how many.
    """
    torch = import_torch()
    b = q.shape[0]
    eps = _coordinate_eps(G, eps)
    grad = (G @ w[:, :, None]).squeeze(-1) - q
    P = valid & ((w > 0) | (grad < -eps))
    out = w.clone()
    converged = torch.zeros(b, dtype=torch.bool, device=q.device)
    rows = torch.arange(b, device=q.device)
    qr, Pr, vr, er, nr = q, P, valid, eps, sizes
    for _ in range(max_iter):
        s = _masked_solve(G, qr, Pr, None if rows.numel() == b else rows, nr)
        if rows.numel() == b:
            grad = (G @ s[:, :, None]).squeeze(-1) - qr
        elif 4 * rows.numel() >= b:  # reading all of G beats copying most of it
            s_all = torch.zeros_like(q).index_copy_(0, rows, s)
            grad = (G @ s_all[:, :, None]).squeeze(-1).index_select(0, rows) - qr
        else:
            grad = (G.index_select(0, rows) @ s[:, :, None]).squeeze(-1) - qr
        P_next = vr & torch.where(Pr, s > 0, grad < -er)
        done = (P_next == Pr).all(1)
        if bool(done.any()):
            out[rows[done]] = torch.where(Pr[done], s[done], torch.zeros_like(s[done]))
            converged[rows[done]] = True
            keep = ~done
            rows, qr, P_next, vr, er = (t[keep] for t in (rows, qr, P_next, vr, er))
            nr = None if nr is None else nr[keep]
        if rows.numel() == 0:
            break
        Pr = P_next
    return out, converged


def _active_set_qp(G, q, w, valid, eps):
    """Exact ``min 0.5 w'Gw - q'w`` over ``w >= 0`` (``w = 0`` where not ``valid``), batched.

    A primal active-set method started from a feasible ``w``: add the coordinates whose
    gradient is negative, solve on the enlarged face, and step back to the feasible set when
    a coordinate would turn negative. When adding several coordinates at once makes no
    progress for a row, that row falls back to adding one at a time (Lawson-Hanson), which
    is guaranteed to progress. ``eps`` holds each row's tolerance (:func:`_inner_eps`).
    """
    torch = import_torch()
    b, K = q.shape
    if K == 0 or b == 0:
        return w
    eps = _coordinate_eps(G, eps)
    P = valid & (w > 0)
    single = torch.zeros(b, dtype=torch.bool, device=q.device)
    stalled = torch.zeros(b, dtype=torch.bool, device=q.device)
    w = w.clone()
    # Start from the optimum on the current support (warm starts come from a different face).
    if bool(P.any()):
        w = _settle(G, q, w, P, P.clone())[0]
        P = valid & (w > 0)
    for _ in range(4 * K + 10):
        grad = (G @ w[:, :, None]).squeeze(-1) - q
        viol = valid & ~P & (grad < -eps) & ~stalled[:, None]
        need = viol.any(1)
        if not bool(need.any()):
            break
        if bool((single & need).any()):
            masked = torch.where(viol, grad, torch.full_like(grad, float("inf")))
            one = torch.zeros_like(viol)
            one.scatter_(1, masked.argmin(1, keepdim=True), True)
            viol = torch.where(single[:, None], one & viol, viol)
        rows = need.nonzero().squeeze(1)
        P_old = P[rows]
        w_new, P_new = _settle(G[rows], q[rows], w[rows], P_old | viol[rows], P_old)
        progressed = (P_new & ~P_old).any(1)
        stalled[rows[~progressed & single[rows]]] = True
        single[rows[~progressed]] = True
        w[rows] = w_new
        P[rows] = P_new
    return w


def _settle(G, q, w, P, P_old):
    """From feasible ``w``, move towards the optimum on face ``P`` without leaving ``w >= 0``.

    Coordinates that sit at zero and would have to go negative leave ``P`` at once; others
    are stepped to the boundary and leave when they reach it. Returns the optimum of the
    final face and that face.
    """
    torch = import_torch()
    b, K = q.shape
    settled = torch.zeros(b, dtype=torch.bool, device=q.device)
    w = w.clone()
    for _ in range(2 * K + 2):
        s = _masked_solve(G, q, P)
        stuck = P & (w <= 0) & (s <= 0) & ~settled[:, None]
        stuck_rows = stuck.any(1)
        P = P & ~stuck
        neg = P & (s <= 0)
        has_neg = neg.any(1)
        ok = ~settled & ~stuck_rows & ~has_neg
        w = torch.where(ok[:, None], s, w)
        settled = settled | ok
        step = ~settled & ~stuck_rows & has_neg
        if bool(step.any()):
            inf = torch.full_like(w, float("inf"))
            ratio = torch.where(neg, w / (w - s).clamp_min(1e-300), inf)
            alpha = ratio.min(1).values.clamp(max=1.0)
            moved = w + alpha[:, None] * (s - w)
            hit = neg & (ratio <= alpha[:, None])
            moved = torch.where(hit | ~P, torch.zeros_like(moved), moved).clamp_min(0.0)
            w = torch.where(step[:, None], moved, w)
            P = torch.where(step[:, None], P & ~hit & (moved > 0), P)
        if bool(settled.all()):
            break
    w = torch.where(P, w, torch.zeros_like(w))
    return w, P


def _fista_batch(z, mu, C64, tol, max_iter, lipschitz, inv_norm, check_every=10):
    """Accelerated proximal gradient on the half objective, from ``w = 0``.

    ``mu`` holds each row's half penalty, compacted with the rows as they converge.
    """
    torch = import_torch()
    B = z.shape[0]
    dev = z.device
    step = 1.0 / max(lipschitz, 1e-300)
    act = torch.arange(B, device=dev)
    w = torch.zeros((B, C64.shape[0]), dtype=torch.float64, device=dev)
    y = w.clone()
    t = 1.0
    zz = z
    gaps = torch.full((B,), float("inf"), dtype=torch.float64, device=dev)
    passes = torch.zeros(B, dtype=torch.long, device=dev)
    iters = torch.zeros(B, dtype=torch.long, device=dev)
    out = torch.zeros_like(w)
    for it in range(max_iter):
        iters[act] += 1
        if it % check_every == 0 or it == max_iter - 1:
            r = zz - w @ C64
            corr = r @ C64.T
            passes[act] += 1
            excess = _max_violation(corr, mu, inv_norm)
            gaps[act] = rel = _excess_gap(zz, r, w.sum(1), corr.max(1).values, mu, excess)
            done = rel <= tol
            if bool(done.any()):
                out[act[done]] = w[done]
                keep = ~done
                act, w, y, zz, mu = act[keep], w[keep], y[keep], zz[keep], mu[keep]
            if act.numel() == 0 or it == max_iter - 1:
                break
        grad = mu[:, None] - (zz - y @ C64) @ C64.T
        passes[act] += 2
        w_next = (y - step * grad).clamp_min(0.0)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        y = w_next + ((t - 1.0) / t_next) * (w_next - w)
        w, t = w_next, t_next
    if act.numel():  # out of iterations: the point whose gap was measured last
        out[act] = w
    nz = out > 0
    rows, cols = nz.nonzero(as_tuple=True)
    return rows, cols, out[nz], gaps, passes, iters
