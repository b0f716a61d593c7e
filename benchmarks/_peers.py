"""Per-sample peer solvers for `bench_solver.py`, stopped at our duality-gap criterion.

Our solver stops a sample once its duality gap G (in the units of our objective
F(w) = ||D.T w - x||^2 + lam ||w||_1) satisfies G <= tol * F(w). Each peer has its own
stopping test; it is translated here into ours, sample by sample, with F* = the objective
our solver reached on that sample (the peers reach the same minimum, so the scale is the
one their final objective has):

* scikit-learn `Lasso` minimises P = F / (2d) and stops when d * P's gap, i.e. G / 2, is at
  most tol_sk * ||x||^2: tol_sk = tol * F* / (2 ||x||^2).
* celer `Lasso` minimises P = F / (2d) and stops when P's gap, G / (2d), is at most
  tol_celer * ||x||^2 / d: tol_celer = tol * F* / (2 ||x||^2).
* skglm `Lasso` stops on the largest violation of the optimality conditions, measured on
  the gradient of P = F / (2d); a violation v in those units is e = 2d * v in F's. To
  first order G is at most e * ||w||_1 from the support and as much again when a concept
  outside it violates too (the dual point must then be scaled down); with
  tol_skglm = tol * F* / (2d ||w*||_1) skglm's recomputed gaps stayed below tol on every
  sample checked, so the translation keeps the first term only.

Every peer is called with X = `design(D)` (D.T, float64, Fortran-ordered, built once per
dictionary outside the timings) and float64 signals, one sample per `fit`. The benchmark
recomputes every solver's duality gap afterwards (`relative_gap`; for a peer with the best
dual value known for the sample, its own or ours) so the tolerances can be checked in the
output.
"""

import numpy as np
from scipy import sparse

INSTALL = 'pip install -e ".[bench]"'


def objective(W, D, Z, lam):
    """F(w) per row of W, in float64."""
    return primal_dual(W, D, Z, lam)[0]


def primal_dual(W, D, Z, lam, chunk=256):
    """F(w) and a dual value per row of W, in float64, chunk by chunk (bounded memory).

    The dual point is the residual r = x - D.T w scaled by the largest s <= 1 that makes it
    feasible (2 s D r <= lam) and, below that, the best s for the dual objective: every
    value is a lower bound of min F, so F(w) - dual bounds F(w) - min F.
    """
    D = np.asarray(D, dtype=np.float64)
    primal, dual = [np.zeros(0)], [np.zeros(0)]
    for start in range(0, W.shape[0], chunk):
        w = np.asarray(W[start : start + chunk], dtype=np.float64)
        z = np.asarray(Z[start : start + chunk], dtype=np.float64)
        R = z - sparse.csr_matrix(w) @ D  # codes are sparse: this costs no pass
        rr, rz = (R**2).sum(1), (R * z).sum(1)
        top = (2 * R @ D.T).max(1)
        cap = np.where(top > lam, lam / np.maximum(top, 1e-300), 1.0)
        s = np.clip(rz / np.maximum(rr, 1e-300), 0.0, cap)
        primal.append(rr + lam * w.sum(1))
        dual.append(2 * s * rz - s**2 * rr)  # u = 2 s r: u.x - ||u||^2 / 4
    return np.concatenate(primal), np.concatenate(dual)


def relative_gap(W, D, Z, lam, dual=None):
    """(F(w) - best dual value) / F(w) per row: a certified bound on the relative excess.

    ``dual``: lower bounds of min F from elsewhere (another solver's dual values on the same
    samples); the larger one per row is used. The residual of a point that is optimal to
    1e-9 can give a dual value that is only 1e-5 close (the error goes as a square root),
    so a solver certified by a better dual point of its own (celer extrapolates one) is
    judged with the best dual value known for the sample.
    """
    primal, own = primal_dual(W, D, Z, lam)
    best = own if dual is None else np.maximum(own, dual)
    return (primal - best) / primal


def design(D):
    """The peers' design matrix D.T, float64 and Fortran-ordered, built once per dictionary
    (outside the timings: a per-call conversion would be charged to the peers)."""
    return np.asfortranarray(np.asarray(D, dtype=np.float64).T)


def _gap_stopped(Lasso, Z, X, lam, f_star, max_iter, tol):
    """Per-sample fits of a Lasso class that stops on a duality gap relative to ||x||^2."""
    d = X.shape[0]
    out = []
    for z, f in zip(Z, f_star):
        model = Lasso(
            alpha=lam / (2 * d), positive=True, fit_intercept=False, max_iter=max_iter,
            tol=tol * f / (2 * z @ z),
        )
        out.append(model.fit(X, z).coef_.copy())
    return np.array(out)


def sklearn_lasso(Z, X, lam, f_star, w1_star, tol):
    from sklearn.linear_model import Lasso

    return _gap_stopped(Lasso, Z, X, lam, f_star, 100000, tol)


def celer_lasso(Z, X, lam, f_star, w1_star, tol):
    from celer import Lasso

    return _gap_stopped(Lasso, Z, X, lam, f_star, 1000, tol)


def skglm_lasso(Z, X, lam, f_star, w1_star, tol):
    from skglm import Lasso

    d = X.shape[0]
    out = []
    for z, f, w1 in zip(Z, f_star, w1_star):
        model = Lasso(
            alpha=lam / (2 * d), positive=True, fit_intercept=False, max_iter=1000,
            tol=tol * f / (2 * d * max(w1, 1e-300)),
        )
        out.append(model.fit(X, z).coef_.copy())
    return np.array(out)


PEERS = {"skglm": skglm_lasso, "celer": celer_lasso, "sklearn": sklearn_lasso}


def available_peers():
    """The peers importable here; prints how to install the missing ones."""
    found = {}
    for name, fn in PEERS.items():
        try:
            __import__(name)
        except ImportError:
            print(f"{name} not installed: skipped ({INSTALL} installs the peers)")
            continue
        found[name] = fn
    return found
