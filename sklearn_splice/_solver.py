"""Batched nonnegative lasso, the sparse-coding step of SpLiCE.

For each row ``x`` of ``X`` this solves::

    min_{w >= 0}  ||dictionary.T @ w - x||_2^2 + l1_penalty * ||w||_1

Both solvers work on whole batches in torch (CPU or CUDA), start from ``w = 0`` (so the
result is deterministic) and stop per sample on a relative duality gap computed in float64.

``"working_set"`` (default)
    Each outer iteration makes one pass over the dictionary (a float32 ``(B, d) @ (d, c)``
    product) to score every concept, certifies the current point with the duality gap, and
    grows a small per-sample working set (the support plus the concepts that break the
    optimality conditions most). The problem restricted to the working set is solved
    exactly, in float64, on its small Gram matrix by a primal-dual active-set method
    (falling back to Lawson-Hanson when it cycles); the support's rows and Gram matrix are
    carried to the next iteration, which only computes the blocks of the rows it adds. A
    converged answer is the exact optimum up to round-off, not an approximation that merely
    meets ``tol``. Memory is ``O(B * (c + K * d + K^2))`` for working sets of size ``K``:
    the ``c x c`` Gram matrix is never formed.
``"fista"``
    Accelerated proximal gradient in float64, two dictionary passes per iteration. Slow but
    simple: kept to cross-check the default solver.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array

from ._progress import progress
from ._torch_utils import import_torch, resolve_device, run_split_on_oom

__all__ = ["nonnegative_lasso"]

_SOLVERS = ("working_set", "fista")
# Round-off bound of a float32 dot product of length d is about d * 2**-24 * |a| |b|;
# twice that decides which float32 scores must be recomputed in float64.
_F32_UNIT = 2.0**-24
# Diagonal shift for the small Gram systems: keeps duplicate concepts (identical rows)
# solvable while moving the solution far less than any tolerance a user can ask for.
_RIDGE = 1e-11
# Optimality tolerance of the inner problem, relative to the penalty.
_INNER_EPS = 1e-11


def nonnegative_lasso(
    X: Any,
    dictionary: Any,
    l1_penalty: float,
    *,
    solver: str = "working_set",
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

        min_{w >= 0}  ||dictionary.T @ w - x||_2^2 + l1_penalty * ||w||_1

    This is the objective of SPEC.md; scikit-learn's ``Lasso(alpha=l1_penalty / (2 * d),
    positive=True, fit_intercept=False)`` fitted on ``(dictionary.T, x)`` has the same
    minimiser.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Signals to encode (for SpLiCE: centred, unit-norm CLIP embeddings).
    dictionary : array-like of shape (n_components, n_features)
        One atom per row (for SpLiCE: centred, unit-norm concept embeddings).
    l1_penalty : float
        Weight ``lambda >= 0`` of the L1 term.
    solver : {"working_set", "fista"}, default="working_set"
        ``"working_set"`` is exact and fast; ``"fista"`` is a plain accelerated proximal
        gradient method kept for cross-checks.
    tol : float, default=1e-6
        Stop a sample once its duality gap, relative to its objective value, is at most
        ``tol``.
    max_iter : int, default=None
        Most outer iterations: passes over the dictionary for ``"working_set"`` (default
        100), gradient steps for ``"fista"`` (default 20000).
    batch_size : int, default=256
        Samples solved together.
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
    sparse_output : bool, default=False
        Return a ``scipy.sparse`` CSR matrix instead of a dense array.
    return_info : bool, default=False
        Also return a dict with per-sample ``duality_gap`` (relative), ``n_passes`` (products
        with the whole dictionary) and ``converged``.
    verbose : bool, default=False
        Show a progress bar over batches.

    Returns
    -------
    codes : ndarray or csr_matrix of shape (n_samples, n_components)
        Nonnegative float64 weights.
    info : dict
        Only when ``return_info=True``.

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
    """
    X = check_array(X, dtype=[np.float64, np.float32], input_name="X")
    dictionary = check_array(dictionary, dtype=[np.float32, np.float64], input_name="dictionary")
    if X.shape[1] != dictionary.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} features per sample but the dictionary has "
            f"{dictionary.shape[1]}; both must use the same embedding width."
        )
    if not isinstance(l1_penalty, Real) or isinstance(l1_penalty, bool) or not l1_penalty >= 0:
        raise ValueError(f"l1_penalty must be a nonnegative number, got {l1_penalty!r}.")
    if not math.isfinite(l1_penalty):
        raise ValueError(f"l1_penalty must be finite, got {l1_penalty!r}.")
    if solver not in _SOLVERS:
        raise ValueError(f"solver must be one of {_SOLVERS}, got {solver!r}.")
    if not isinstance(tol, Real) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}.")
    if not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if max_iter is None:
        max_iter = 100 if solver == "working_set" else 20000
    elif not isinstance(max_iter, Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}.")

    torch = import_torch()
    dev = resolve_device(device)
    n, c = X.shape[0], dictionary.shape[0]
    mu = float(l1_penalty) / 2.0  # the solvers work on half the objective

    rows_parts, cols_parts, vals_parts = [], [], []
    gaps = np.zeros(n)
    passes = np.zeros(n, dtype=np.int64)
    with torch.inference_mode():
        C64 = torch.as_tensor(dictionary, device=dev).double()
        C_pass = C64.float()
        row_norm = float(torch.linalg.vector_norm(C64, dim=1).max())
        margin_coef = 2.0 * dictionary.shape[1] * _F32_UNIT * max(row_norm, 1.0)
        lipschitz = None
        starts = range(0, n, batch_size)
        starts = progress(starts, len(starts), "sparse coding", enabled=verbose)
        for start in starts:
            stop = min(start + batch_size, n)
            z = torch.as_tensor(X[start:stop], device=dev).double()
            if solver == "fista" and lipschitz is None:
                lipschitz = float(torch.linalg.eigvalsh(C64.T @ C64).max())

            def solve(zb, C_pass=C_pass, C64=C64, lipschitz=lipschitz):
                if solver == "working_set":
                    return _working_set_batch(zb, C_pass, C64, mu, tol, max_iter, margin_coef)
                return _fista_batch(zb, C64, mu, tol, max_iter, lipschitz, margin_coef)

            def on_cpu(zb):
                return solve(zb.cpu(), C_pass.cpu(), C64.cpu())

            res = run_split_on_oom(
                solve, z, combine=_combine_parts, fallback=on_cpu if dev.type != "cpu" else None,
                what="sparse-coding",
            )
            r_rows, r_cols, r_vals, r_gap, r_pass = res
            rows_parts.append((r_rows + start).cpu().numpy())
            cols_parts.append(r_cols.cpu().numpy())
            vals_parts.append(r_vals.cpu().numpy())
            gaps[start:stop] = r_gap.cpu().numpy()
            passes[start:stop] = r_pass.cpu().numpy()

    rows = np.concatenate(rows_parts) if rows_parts else np.zeros(0, dtype=np.int64)
    cols = np.concatenate(cols_parts) if cols_parts else np.zeros(0, dtype=np.int64)
    vals = np.concatenate(vals_parts) if vals_parts else np.zeros(0)
    codes = sp.csr_matrix((vals, (rows, cols)), shape=(n, c), dtype=np.float64)
    codes.sum_duplicates()
    converged = gaps <= tol
    if not converged.all():
        warnings.warn(
            f"nonnegative_lasso ({solver}) did not reach a relative duality gap of {tol:g} "
            f"for {int((~converged).sum())} of {n} samples within max_iter={max_iter} "
            f"(worst gap {gaps.max():.2e}); increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=2,
        )
    out = codes if sparse_output else codes.toarray()
    if return_info:
        return out, {"duality_gap": gaps, "n_passes": passes, "converged": converged}
    return out


def _combine_parts(first, second, n_first):
    """Join the results of two halves of a batch (rows of the second shifted)."""
    torch = import_torch()
    dev = first[0].device
    second = tuple(t.to(dev) for t in second)
    return (
        torch.cat([first[0], second[0] + n_first]),
        torch.cat([first[1], second[1]]),
        torch.cat([first[2], second[2]]),
        torch.cat([first[3], second[3]]),
        torch.cat([first[4], second[4]]),
    )


def _relative_gap(z, r, w_sum, cmax, mu):
    """Relative duality gap of the half objective ``0.5 ||r||^2 + mu * sum(w)``.

    ``r = z - D^T w`` is the residual and ``cmax = max_j D_j . r``. Scaling ``r`` into the
    dual feasible set ``{theta : D theta <= mu}`` gives the dual value
    ``0.5 ||z||^2 - 0.5 ||z - theta||^2``, a lower bound on the optimum.
    """
    torch = import_torch()
    primal = 0.5 * (r * r).sum(1) + mu * w_sum
    # Round-off of order 1e-9 |r| in cmax is forgiven: at the optimum cmax equals mu.
    # With mu = 0 the dual set is a cone that scaling cannot reach, so the float32 Gram
    # round-off of the small solves (about 1e-7) is forgiven there as well.
    slack = (1e-9 if mu > 0 else 1e-6) * torch.linalg.vector_norm(r, dim=1)
    scale = torch.where(cmax > mu + slack, mu / cmax.clamp_min(1e-300), torch.ones_like(cmax))
    theta = r * scale[:, None]
    dual = 0.5 * (z * z).sum(1) - 0.5 * ((z - theta) ** 2).sum(1)
    gap = (primal - dual).clamp_min(0.0)
    rel = torch.where(primal > 0, gap / primal.clamp_min(1e-300), torch.zeros_like(gap))
    return rel, primal


def _exact_max_corr(best32, top_vals, top_ids, r, C64, margin_coef, supp_corr):
    """``max_j C_j . r`` in float64, using the float32 scores only to pick candidates.

    ``best32`` is each row's largest float32 score; ``top_vals``/``top_ids`` the largest
    scores outside the support, whose exact scores are ``supp_corr``. Every concept whose
    float32 score is within twice the round-off bound of the best one is rescored exactly;
    a row with more such candidates than ``top_ids`` holds is rescored in full.
    """
    torch = import_torch()
    margin = margin_coef * torch.linalg.vector_norm(r, dim=1).float()
    cand = top_vals >= (best32 - 2 * margin)[:, None]
    k = int(cand.sum(1).max())
    if supp_corr.shape[1]:
        cmax = supp_corr.max(1).values
    else:
        cmax = torch.full_like(r[:, 0], float("-inf"))
    if k:
        exact = torch.einsum("bkd,bd->bk", C64[top_ids[:, :k]], r)
        exact = torch.where(cand[:, :k], exact, torch.full_like(exact, float("-inf")))
        cmax = torch.maximum(cmax, exact.max(1).values)
    if k == top_ids.shape[1] and top_ids.shape[1] < C64.shape[0]:
        full = cand.all(1)  # candidates may go on beyond the ones listed
        if bool(full.any()):
            rows = full.nonzero().squeeze(1)
            cmax[rows] = (r[rows] @ C64.T).max(1).values
    return cmax


def _working_set_batch(z, C_pass, C64, mu, tol, max_iter, margin_coef):
    """Solve one batch; returns COO parts (rows, cols, values), gaps and pass counts.

    Each row carries its support ``S`` with the float64 rows ``C_S`` and Gram matrix
    ``G_SS`` from one iteration to the next, so an iteration only gathers and multiplies
    the rows it adds: ``G`` of the working set ``S + A`` is assembled from ``G_SS``,
    ``C_S C_A^T`` and ``C_A C_A^T``.
    """
    torch = import_torch()
    B, d = z.shape
    c = C_pass.shape[0]
    dev = z.device
    f64 = torch.float64
    min_add = min(c, 16)

    act = torch.arange(B, device=dev)  # rows of the batch still being solved
    idx = torch.zeros((B, 0), dtype=torch.long, device=dev)
    w = torch.zeros((B, 0), dtype=f64, device=dev)
    valid = torch.zeros((B, 0), dtype=torch.bool, device=dev)
    CS = torch.zeros((B, 0, d), dtype=f64, device=dev)
    G = torch.zeros((B, 0, 0), dtype=f64, device=dev)
    q = torch.zeros((B, 0), dtype=f64, device=dev)  # C_S z - mu
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

    for _ in range(max_iter):
        corr = r.float() @ C_pass.T
        passes[act] += 1
        best = corr.max(1).values
        if idx.shape[1]:  # from here on, corr scores the concepts outside the support
            old = corr.gather(1, idx)
            corr.scatter_(1, idx, torch.where(valid, torch.full_like(old, float("-inf")), old))
        # One top-k serves both the certificate's candidates and the concepts to add.
        n_supp = valid.sum(1)
        cap = torch.clamp(n_supp // 2, min=min_add)
        top_vals, top_ids = corr.topk(min(c, max(int(cap.max()), 8)), dim=1)
        cmax = _exact_max_corr(best, top_vals, top_ids, r, C64, margin_coef, supp_corr)
        rel, _ = _relative_gap(zz, r, (w * valid).sum(1), cmax, mu)
        gaps[act] = rel
        done = rel <= tol
        if bool(done.any()):
            emit(done)
            keep = ~done
            act, idx, w, valid, CS, G, q, supp_corr, r, zz, top_vals, top_ids, cap = (
                t[keep]
                for t in (act, idx, w, valid, CS, G, q, supp_corr, r, zz, top_vals, top_ids, cap)
            )
        if act.numel() == 0:
            break

        # Add the concepts that break the optimality conditions most (score above mu):
        # half the support's size, at least 16. Small steps keep the Gram blocks and
        # solves small; each costs one more pass, which is cheaper (measured).
        n_viol = (top_vals > mu).sum(1)  # counted up to the cap, which is all we need
        n_add = torch.minimum(n_viol, cap).clamp(min=1, max=c)
        A = int(n_add.max())
        add_idx = top_ids[:, :A]
        add_valid = torch.arange(A, device=dev)[None, :] < n_add[:, None]
        CA = C64[add_idx]
        G_SA = CS @ CA.transpose(1, 2)
        G = torch.cat(
            [torch.cat([G, G_SA], 2), torch.cat([G_SA.transpose(1, 2), CA @ CA.transpose(1, 2)], 2)], 1
        )
        q = torch.cat([q, torch.einsum("bad,bd->ba", CA, zz) - mu], 1)
        idx = torch.cat([idx, add_idx], 1)
        set_valid = torch.cat([valid, add_valid], 1)
        w0 = torch.cat([w * valid, torch.zeros_like(add_idx, dtype=f64)], 1)

        w, ok = _pdas_qp(G, q, w0, set_valid, mu)
        if not bool(ok.all()):
            bad = (~ok).nonzero().squeeze(1)
            w[bad] = _active_set_qp(G[bad], q[bad], w0[bad], set_valid[bad], mu)
        w = torch.where(set_valid, w.clamp_min(0.0), torch.zeros_like(w))

        # Keep only the new support, compacted to the front of each row.
        n_keep = (w > 0).sum(1)
        S = int(n_keep.max())
        order = torch.argsort(w, dim=1, descending=True)[:, :S]
        idx, w, q = idx.gather(1, order), w.gather(1, order), q.gather(1, order)
        valid = torch.arange(S, device=dev)[None, :] < n_keep[:, None]
        CS = C64[idx]
        G = G.gather(1, order[:, :, None].expand(-1, -1, G.shape[2])).gather(2, order[:, None, :].expand(-1, S, -1))
        r = zz - torch.einsum("bs,bsd->bd", w, CS)
        scores = q + mu - (G @ w[:, :, None]).squeeze(-1)  # C_S r = C_S z - G w
        supp_corr = torch.where(valid, scores, torch.full_like(scores, float("-inf")))
    else:
        emit(torch.ones(act.numel(), dtype=torch.bool, device=dev))

    if out_rows:
        rows, cols, vals = torch.cat(out_rows), torch.cat(out_cols), torch.cat(out_vals)
    else:
        rows = cols = torch.zeros(0, dtype=torch.long, device=dev)
        vals = torch.zeros(0, dtype=f64, device=dev)
    return rows, cols, vals, gaps, passes


def _masked_solve(G, q, P):
    """Solve ``G[P, P] s[P] = q[P]`` per row with ``s = 0`` off ``P``."""
    torch = import_torch()
    m = P.to(G.dtype)
    A = G * (m[:, :, None] * m[:, None, :])
    A.diagonal(dim1=1, dim2=2).add_(1.0 - m + _RIDGE * m)
    rhs = (q * m)[:, :, None]
    L, info = torch.linalg.cholesky_ex(A)
    # two triangular solves are several times faster than cholesky_solve on small batches
    y = torch.linalg.solve_triangular(L, rhs, upper=False)
    s = torch.linalg.solve_triangular(L.mT, y, upper=True).squeeze(-1)
    bad = info != 0
    if bool(bad.any()):  # numerically indefinite: least squares is still well defined
        s[bad] = torch.linalg.lstsq(A[bad], rhs[bad]).solution.squeeze(-1)
    return s * m


def _pdas_qp(G, q, w, valid, mu, max_iter=25):
    """Primal-dual active-set (semismooth Newton) solve of the small problems, batched.

    Guess the support, solve on it, and move every coordinate whose sign condition fails;
    a guess that repeats meets the KKT conditions exactly. Warm-started from the previous
    support this usually takes 2-4 solves. Rows that have not settled after ``max_iter``
    (PDAS can cycle on badly conditioned problems) are reported in ``converged = False``.
    """
    torch = import_torch()
    b, K = q.shape
    eps = _INNER_EPS * max(mu, 1.0)
    grad = (G @ w[:, :, None]).squeeze(-1) - q
    P = valid & ((w > 0) | (grad < -eps))
    out = w.clone()
    converged = torch.zeros(b, dtype=torch.bool, device=q.device)
    rows = torch.arange(b, device=q.device)
    Gr, qr, Pr, vr = G, q, P, valid
    for _ in range(max_iter):
        s = _masked_solve(Gr, qr, Pr)
        grad = (Gr @ s[:, :, None]).squeeze(-1) - qr
        P_next = vr & torch.where(Pr, s > 0, grad < -eps)
        done = (P_next == Pr).all(1)
        if bool(done.any()):
            out[rows[done]] = torch.where(Pr[done], s[done], torch.zeros_like(s[done]))
            converged[rows[done]] = True
            keep = ~done
            rows, Gr, qr, P_next, vr = rows[keep], Gr[keep], qr[keep], P_next[keep], vr[keep]
        if rows.numel() == 0:
            break
        Pr = P_next
    return out, converged


def _active_set_qp(G, q, w, valid, mu):
    """Exact ``min 0.5 w'Gw - q'w`` over ``w >= 0`` (``w = 0`` where not ``valid``), batched.

    A primal active-set method started from a feasible ``w``: add the coordinates whose
    gradient is negative, solve on the enlarged face, and step back to the feasible set when
    a coordinate would turn negative. When adding several coordinates at once makes no
    progress for a row, that row falls back to adding one at a time (Lawson-Hanson), which
    is guaranteed to progress.
    """
    torch = import_torch()
    b, K = q.shape
    if K == 0 or b == 0:
        return w
    eps = _INNER_EPS * max(mu, 1.0)
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
            ratio = torch.where(neg, w / (w - s).clamp_min(1e-300), torch.full_like(w, float("inf")))
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


def _fista_batch(z, C64, mu, tol, max_iter, lipschitz, margin_coef, check_every=10):
    """Accelerated proximal gradient on the half objective, from ``w = 0``."""
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
    out = torch.zeros_like(w)
    for it in range(max_iter):
        if it % check_every == 0:
            r = zz - w @ C64
            corr = r @ C64.T
            passes[act] += 1
            gaps[act] = rel = _relative_gap(zz, r, w.sum(1), corr.max(1).values, mu)[0]
            done = rel <= tol
            if bool(done.any()):
                out[act[done]] = w[done]
                keep = ~done
                act, w, y, zz = act[keep], w[keep], y[keep], zz[keep]
            if act.numel() == 0:
                break
        grad = mu - (zz - y @ C64) @ C64.T
        passes[act] += 2
        w_next = (y - step * grad).clamp_min(0.0)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        y = w_next + ((t - 1.0) / t_next) * (w_next - w)
        w, t = w_next, t_next
    else:
        out[act] = w
    nz = out > 0
    rows, cols = nz.nonzero(as_tuple=True)
    return rows, cols, out[nz], gaps, passes
