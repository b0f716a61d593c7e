"""The working-set iterations on arrays of fixed shape, for GPUs.

A GPU runs a queue of operations ahead of the host; every time the host reads a value the
device computed (``bool(t.any())``, a shape that depends on data, ``.item()``) the queue
drains and the device idles until the host catches up. The iterations of
:func:`~sklearn_splice._solver._working_set_batch` read several such values per outer
iteration (which rows converged, how many concepts to add, the size of each solve). Here
the same method runs on arrays whose shapes change only on a schedule the host sets:

- every sample keeps its support in ``K`` slots (its valid entries first) and adds up to
  ``K // 2`` concepts per iteration; once some support fills half of the slots, ``K`` grows
  at the next check to twice the largest support (in steps of 32);
- samples that converge are frozen (masked updates) rather than removed; the host looks at
  the batch only after iterations 1, 2, 3, 4, 6, 8, 11, 16, ... (factors of about
  ``sqrt(2)``), where it removes the finished samples and grows ``K``, so the number of
  reads grows with the logarithm of the iterations;
- the small problems get a fixed number of primal-dual active-set solves.

Anything unusual, which the host would have to look at, is left to the exact path instead:
a sample whose small problem has not settled after those solves, whose working-set matrix
does not factorise, or whose certificate would need more concepts rescored in float64
than :data:`_RESCORED` is frozen and solved again from the start, after the loop, by
``_working_set_batch`` (its ``n_iter`` then counts the iterations there, its ``n_passes``
the passes of both). Every answer is certified by the same duality gap as there.
"""

from __future__ import annotations

import math

from ._solver import (
    _MIN_ADD,
    _append_rows,
    _cholesky_solve,
    _coordinate_eps,
    _excess_gap,
    _gather_square,
    _inner_eps,
    _mask_support,
    _max_violation,
    _working_set_batch,
)
from ._torch_utils import import_torch

# Support slots per sample at the start; grown at checks as supports grow.
_START_CAPACITY = 64
# Solves per working-set problem in one iteration: warm-started, 99.9% settle within 5
# (measured on both benchmark families at penalties 0.05-0.25); a sample whose problem
# has not settled by then goes to the exact path. (Problems whose working sets outgrow
# the dimension, e.g. a penalty near 0 with d = 64, settle less often.)
_PDAS_SOLVES = 6
# Concepts rescored in float64 for the certificate; more candidates than this within the
# float32 round-off of the best score send the sample to the exact path.
_RESCORED = 16


def _check_points(max_iter: int) -> set[int]:
    """Iteration counts after which the host looks at the batch: ``1, 2, 3, 4, 6, 8, 11, ...``."""
    points, n = set(), 1
    while n < max_iter:
        points.add(n)
        n = max(n + 1, round(n * math.sqrt(2)))
    points.add(max_iter)
    return points


def _fixed_shape_batch(z, mu, C_pass, C64, tol, max_iter, margin_coef, inv_norm):
    """Solve one batch as :func:`~sklearn_splice._solver._working_set_batch` does.

    Same arguments and results. Values are read back from the device once at each of the
    iterations :func:`_check_points` lists and twice at the end, plus whatever the exact
    path reads for the samples left to it.
    """
    torch = import_torch()
    B, d = z.shape
    c = C_pass.shape[0]
    dev = z.device
    f64 = torch.float64
    ninf = float("-inf")
    min_add = min(c, _MIN_ADD)
    mu = mu.to(f64)
    K = min(c, _START_CAPACITY)
    st = {
        "act": torch.arange(B, device=dev),  # the batch row each array row holds
        "idx": torch.zeros((B, K), dtype=torch.long, device=dev),
        "w": torch.zeros((B, K), dtype=f64, device=dev),
        "valid": torch.zeros((B, K), dtype=torch.bool, device=dev),
        "CS": torch.zeros((B, K, d), dtype=f64, device=dev),
        "G": torch.zeros((B, K, K), dtype=f64, device=dev),
        "q": torch.zeros((B, K), dtype=f64, device=dev),  # C_S z - mu
        "supp": torch.full((B, K), ninf, dtype=f64, device=dev),  # exact C_S r
        "r": z.clone(),
        "z": z,
        "mu": mu,
        "live": torch.ones(B, dtype=torch.bool, device=dev),  # neither converged nor handed
        "hard": torch.zeros(B, dtype=torch.bool, device=dev),  # for the exact path
        "gap": torch.full((B,), float("inf"), dtype=f64, device=dev),
        "passes": torch.zeros(B, dtype=torch.long, device=dev),
    }
    gaps = torch.full((B,), float("inf"), dtype=f64, device=dev)
    passes = torch.zeros(B, dtype=torch.long, device=dev)
    finished = []  # (batch rows, concepts, weights, handed on): dense, read back at the end

    def finish(sel):
        """Record the rows at positions ``sel``, without reading anything back."""
        act, hard = st["act"][sel], st["hard"][sel]
        gaps[act] = st["gap"][sel]
        passes[act] = st["passes"][sel]
        keep = st["valid"][sel] & ~hard[:, None]
        W = torch.where(keep, st["w"][sel], torch.zeros_like(st["w"][sel]))
        finished.append((act, st["idx"][sel], W, hard))

    checks = _check_points(max_iter)
    for it in range(1, max_iter + 1):
        live, idx, valid, w, r = st["live"], st["idx"], st["valid"], st["w"], st["r"]
        corr = r.float() @ C_pass.T
        st["passes"] += live
        best = corr.max(1).values
        _mask_support(corr, idx, valid)  # from here on, corr scores the other concepts
        kt = min(c, max(K // 2, min_add, 8))
        top_vals, top_ids = corr.topk(kt, dim=1)
        margin = margin_coef * torch.linalg.vector_norm(r, dim=1).float()
        cmax, excess, unsure = _certified_max(
            best, top_vals, top_ids, r, C64, margin, st["supp"], idx, st["mu"], inv_norm
        )
        rel = _excess_gap(st["z"], r, (w * valid).sum(1), cmax, st["mu"], excess)
        conv = rel <= tol
        st["gap"] = torch.where(live, rel, st["gap"])
        st["hard"] = st["hard"] | (live & conv & unsure)
        st["live"] = live = live & ~conv & ~st["hard"]
        if it < max_iter:
            _step(st, K, kt, top_vals, top_ids, C64, min_add)
        if it in checks:
            n_live, top = torch.stack(
                [st["live"].sum(), (st["valid"].sum(1) * st["live"]).max()]
            ).tolist()
            b = st["live"].shape[0]
            if n_live < b:
                order = torch.argsort((~st["live"]).to(torch.uint8), stable=True)
                finish(order[n_live:])
                st = {k: v.index_select(0, order[:n_live]) for k, v in st.items()}
            if n_live == 0:
                break
            if 2 * top >= K and K < c:
                # twice the largest support, in steps of 32: the solves' cost goes as K**3
                K_new = min(c, -(-2 * top // 32) * 32)
                st = _grow(st, K_new)
                K = K_new
    if st["live"].shape[0]:  # out of iterations: the point whose gap was measured last
        finish(torch.arange(st["live"].shape[0], device=dev))

    width = max(f[1].shape[1] for f in finished)

    def widen(t):
        return torch.cat([t, t.new_zeros((t.shape[0], width - t.shape[1]))], 1)

    act = torch.cat([f[0] for f in finished])
    idx = torch.cat([widen(f[1]) for f in finished])
    W = torch.cat([widen(f[2]) for f in finished])
    nz = (W > 0).nonzero()
    rows, cols, vals = act[nz[:, 0]], idx[nz[:, 0], nz[:, 1]], W[nz[:, 0], nz[:, 1]]
    hard = act[torch.cat([f[3] for f in finished])]
    iters = passes.clone()  # one pass per iteration of the loop that gave the answer
    if hard.numel():
        h_rows, h_cols, h_vals, h_gaps, h_passes, _ = _working_set_batch(
            z[hard], mu[hard], C_pass, C64, tol, max_iter, margin_coef, inv_norm
        )
        rows, cols = torch.cat([rows, hard[h_rows]]), torch.cat([cols, h_cols])
        vals = torch.cat([vals, h_vals])
        gaps[hard] = h_gaps
        iters[hard] = h_passes
        passes[hard] += h_passes
    return rows, cols, vals, gaps, passes, iters


def _step(st, K, kt, top_vals, top_ids, C64, min_add):
    """One working-set update of the live rows of ``st``, in place; other rows are kept."""
    torch = import_torch()
    dev = top_ids.device
    live, idx, valid, w = st["live"], st["idx"], st["valid"], st["w"]
    CS, G, q, z, mu = st["CS"], st["G"], st["q"], st["z"], st["mu"]
    n_supp = valid.sum(1)
    # Add the concepts that break the optimality conditions most: half the support, at
    # least min_add, within the free slots (a full support waits for the next check).
    cap = torch.clamp(n_supp // 2, min=min_add)
    n_viol = (top_vals > mu.float()[:, None]).sum(1)
    n_add = torch.minimum(torch.minimum(n_viol, cap).clamp_min(1), K - n_supp)
    n_add = torch.where(live, n_add, torch.zeros_like(n_add))
    Gw, qw = _append_rows(G, q, CS, C64[top_ids], z, mu)
    idxw = torch.cat([idx, top_ids], 1)
    set_valid = torch.cat([valid, torch.arange(kt, device=dev)[None, :] < n_add[:, None]], 1)
    w0 = torch.cat([w * valid, torch.zeros_like(top_vals, dtype=w.dtype)], 1)
    order = torch.argsort((~set_valid).to(torch.uint8), dim=1, stable=True)
    Gw, idxw, qw = _gather_square(Gw, order), idxw.gather(1, order), qw.gather(1, order)
    w0, sv = w0.gather(1, order), set_valid.gather(1, order)
    wn, settled = _pdas_fixed(Gw, qw, w0, sv, _inner_eps(mu))
    st["hard"] = st["hard"] | (live & ~settled)
    live = live & ~st["hard"]
    # the new support, compacted into the K slots (it has at most n_supp + n_add <= K)
    order = torch.argsort((wn <= 0).to(torch.uint8), dim=1, stable=True)[:, :K]
    n_keep = (wn > 0).sum(1)
    idx_n, w_n, q_n = idxw.gather(1, order), wn.gather(1, order), qw.gather(1, order)
    G_n = _gather_square(Gw, order)
    valid_n = torch.arange(K, device=dev)[None, :] < n_keep[:, None]
    CS_n = C64[idx_n]
    r_n = z - torch.einsum("bs,bsd->bd", w_n, CS_n)
    scores = q_n + mu[:, None] - (G_n @ w_n[:, :, None]).squeeze(-1)  # C_S r = C_S z - G w
    supp_n = torch.where(valid_n, scores, torch.full_like(scores, float("-inf")))
    for key, new in (
        ("idx", idx_n), ("w", w_n), ("valid", valid_n), ("q", q_n), ("supp", supp_n),
        ("r", r_n), ("CS", CS_n), ("G", G_n),
    ):
        m = live.reshape((-1,) + (1,) * (new.dim() - 1))
        st[key] = torch.where(m, new, st[key])
    st["live"] = live


def _pdas_fixed(G, q, w0, valid, eps):
    """:func:`~sklearn_splice._solver._pdas_qp` with exactly :data:`_PDAS_SOLVES` solves.

    Returns the solution (zero where a row has not settled) and which rows settled: met
    the KKT conditions exactly, in a solve that factorised.
    """
    torch = import_torch()
    b = q.shape[0]
    eps = _coordinate_eps(G, eps)
    grad = (G @ w0[:, :, None]).squeeze(-1) - q
    P = valid & ((w0 > 0) | (grad < -eps))
    out = torch.zeros_like(w0)
    settled = torch.zeros(b, dtype=torch.bool, device=q.device)
    for _ in range(_PDAS_SOLVES):
        s, fail, _, _ = _cholesky_solve(G, q, P)
        s = torch.where(P, s, torch.zeros_like(s))
        grad = (G @ s[:, :, None]).squeeze(-1) - q
        P_next = valid & torch.where(P, s > 0, grad < -eps)
        now = ~settled & ~fail & (P_next == P).all(1)
        out = torch.where(now[:, None], s, out)
        settled = settled | now
        P = torch.where(settled[:, None], P, P_next)
    return out.clamp_min(0.0), settled


def _certified_max(best32, top_vals, top_ids, r, C64, margin, supp_corr, supp_idx, mu, inv_norm):
    """:func:`~sklearn_splice._solver._exact_max_corr` on fixed shapes.

    Rescores the first :data:`_RESCORED` candidates outside the support in float64 and
    returns ``max_j C_j . r``, the largest violation in units of each concept's norm, and
    which rows have further candidates within twice their score error of the best one
    (their maximum is not certain). A zero residual has every score exactly 0: certain.
    """
    torch = import_torch()
    ninf = float("-inf")
    m = min(top_ids.shape[1], _RESCORED)
    ids = top_ids[:, :m]
    cand = top_vals[:, :m] >= (best32 - 2 * margin)[:, None]
    exact = torch.einsum("bkd,bd->bk", C64[ids], r)
    exact = torch.where(cand, exact, torch.full_like(exact, ninf))
    cmax = torch.maximum(supp_corr.max(1).values, exact.max(1).values)
    excess = torch.maximum(
        _max_violation(supp_corr, mu, inv_norm[supp_idx]), _max_violation(exact, mu, inv_norm[ids])
    )
    if m == C64.shape[0]:  # every concept rescored
        return cmax, excess, torch.zeros_like(cand[:, 0])
    return cmax, excess, cand[:, -1] & (r != 0).any(1)


def _grow(st, K_new):
    """``st`` with room for ``K_new`` support slots per row (the new slots unused)."""
    torch = import_torch()
    st = dict(st)
    b, K = st["idx"].shape

    def pad(t, fill, dims):
        for dim in dims:
            shape = list(t.shape)
            shape[dim] = K_new - K
            t = torch.cat([t, torch.full(shape, fill, dtype=t.dtype, device=t.device)], dim)
        return t

    for key, fill in (("idx", 0), ("w", 0.0), ("valid", False), ("q", 0.0)):
        st[key] = pad(st[key], fill, (1,))
    st["supp"] = pad(st["supp"], float("-inf"), (1,))
    st["CS"] = pad(st["CS"], 0.0, (1,))
    st["G"] = pad(st["G"], 0.0, (1, 2))
    return st
