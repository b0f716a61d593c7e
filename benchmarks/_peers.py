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
  the gradient of P = F / (2d); with a violation v in those units, G is at most
  2d * v * ||w||_1 (to first order), so tol_skglm = tol * F* / (2d ||w*||_1).

All peers get float64 inputs. The benchmark recomputes every solver's duality gap
afterwards (`relative_gap`) so the tolerances can be checked in the output.
"""

import numpy as np

INSTALL = 'pip install -e ".[bench]"'


def objective(W, D, Z, lam):
    """F(w) per row of W, in float64."""
    D = np.asarray(D, dtype=np.float64)
    return ((W @ D - Z) ** 2).sum(1) + lam * W.sum(1)


def relative_gap(W, D, Z, lam):
    """Duality gap over objective, per row, from the rescaled residual as dual point."""
    D = np.asarray(D, dtype=np.float64)
    Z = np.asarray(Z, dtype=np.float64)
    R = Z - W @ D
    primal = (R**2).sum(1) + lam * W.sum(1)
    top = (2 * R @ D.T).max(1)
    scale = np.where(top > lam, lam / np.maximum(top, 1e-300), 1.0)
    U = 2 * R * scale[:, None]
    dual = (U * Z).sum(1) - (U**2).sum(1) / 4
    return (primal - dual) / primal


def _gap_stopped(Lasso, Z, D, lam, f_star, max_iter, tol):
    """Per-sample fits of a Lasso class that stops on a duality gap relative to ||x||^2."""
    X = np.asarray(D, dtype=np.float64).T
    d = X.shape[0]
    out = []
    for z, f in zip(Z, f_star):
        model = Lasso(
            alpha=lam / (2 * d), positive=True, fit_intercept=False, max_iter=max_iter,
            tol=tol * f / (2 * z @ z),
        )
        out.append(model.fit(X, z).coef_.copy())
    return np.array(out)


def sklearn_lasso(Z, D, lam, f_star, w1_star, tol):
    from sklearn.linear_model import Lasso

    return _gap_stopped(Lasso, Z, D, lam, f_star, 100000, tol)


def celer_lasso(Z, D, lam, f_star, w1_star, tol):
    from celer import Lasso

    return _gap_stopped(Lasso, Z, D, lam, f_star, 1000, tol)


def skglm_lasso(Z, D, lam, f_star, w1_star, tol):
    from skglm import Lasso

    X = np.asfortranarray(np.asarray(D, dtype=np.float64).T)
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
