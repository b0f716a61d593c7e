"""Sparse-coding speed: our batched solver against per-sample skglm, celer and scikit-learn.

Prints samples/s for each solver, measured side by side in one run on a synthetic
dictionary correlated like CLIP text embeddings, every solver's duality gap, the objective
agreement, the pass equivalents (our time over the time of one float32 (B x d) @ (d x c)
product), and a scaling table over dictionary sizes and batch sizes. Every peer is stopped
at our duality-gap criterion, translated sample by sample (see `_peers.py`).

    python benchmarks/bench_solver.py            # full run (about 10 minutes on 2 cores)
    python benchmarks/bench_solver.py --quick    # under 3 minutes
    python benchmarks/bench_solver.py --grid --peer-samples 16   # c x penalty grid
    python benchmarks/bench_solver.py --grid --sizes 500,2000 --penalties 0.1,0.25
    python benchmarks/bench_solver.py --device cuda   # our solver on a GPU (peers on the CPU)

skglm and celer are optional (`pip install -e ".[bench]"`); a missing one is skipped.
"""

import argparse
import platform
import time
import tracemalloc
import warnings

import numpy as np
import torch
from sklearn.decomposition import SparseCoder

from sklearn_splice import nonnegative_lasso
from sklearn_splice._synthetic import make_concept_dictionary, make_sparse_signals

from _peers import available_peers, objective, relative_gap


def timed(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def sparse_coder(Z, D, lam):
    coder = SparseCoder(
        dictionary=D.astype(np.float64), transform_algorithm="lasso_cd", transform_alpha=lam / 2,
        positive_code=True, n_jobs=2, transform_max_iter=10000,
    )
    return coder.transform(Z)


def pass_time(Z, D, batch, device="cpu"):
    Zt = torch.as_tensor(Z[:batch], dtype=torch.float32, device=device)
    Dt = torch.as_tensor(D, dtype=torch.float32, device=device)

    def one():
        out = Zt @ Dt.T
        if out.is_cuda:
            torch.cuda.synchronize()

    one()
    return timed(one, repeat=5)[0] / len(Zt)


def run_cell(D, Z, lam, n_peer, batch, device, peers, tol):
    """Ours on all of Z, each peer on Z[:n_peer], in the same run; figures of one cell."""
    nonnegative_lasso(Z[:8], D, lam, batch_size=batch, device=device, tol=tol)  # warm-up
    ours_t, (W, info) = timed(
        lambda: nonnegative_lasso(
            Z, D, lam, tol=tol, batch_size=batch, return_info=True, device=device
        ),
        repeat=3,
    )
    per_pass = pass_time(Z, D, batch, device)
    Zp = Z[:n_peer].astype(np.float64)
    f_ours = objective(W[:n_peer], D, Zp, lam)
    res = {
        "c": D.shape[0], "lam": lam, "n": len(Z), "n_peer": n_peer,
        "l0": np.mean((W > 0).sum(1)), "ours": len(Z) / ours_t,
        "pass_eq": ours_t / len(Z) / per_pass, "per_pass": per_pass,
        "scoring_passes": info["n_passes"].mean(),
        "gap": {"ours": relative_gap(W[:n_peer], D, Zp, lam).max()},
        "rate": {}, "obj": {},
    }
    for name, fn in peers.items():
        t, Wp = timed(lambda fn=fn: fn(Zp, D, lam, f_ours, W[:n_peer].sum(1), tol))
        res["rate"][name] = n_peer / t
        res["obj"][name] = objective(Wp, D, Zp, lam)
        res["gap"][name] = relative_gap(Wp, D, Zp, lam).max()
    fast = [res["rate"][k] for k in ("skglm", "celer") if k in res["rate"]]
    res["vs_fast"] = res["ours"] / max(fast) if fast else float("nan")
    if res["obj"]:
        best = np.min(np.stack(list(res["obj"].values())), axis=0)
        res["obj_diff"] = ((f_ours - best) / best).max()
    else:
        res["obj_diff"] = float("nan")
    return res


def compare(D, Z, lam, n_peer, batch, device, peers, tol):
    """One row per solver at one penalty: samples/s, ratios, objective gap."""
    res = run_cell(D, Z, lam, n_peer, batch, device, peers, tol)
    sc_t, _ = timed(lambda: sparse_coder(Z[:n_peer], D, lam))
    print(
        f"\npenalty {lam}: dictionary {D.shape[0]} x {D.shape[1]}, batch {batch}; ours on "
        f"{len(Z)} samples, the per-sample solvers on the first {n_peer}, tol {tol:g}"
    )
    rows = [(f"{k} Lasso per sample, positive", v) for k, v in res["rate"].items()]
    rows.append(("sklearn SparseCoder lasso_cd n_jobs=2 (own tol)", n_peer / sc_t))
    rows.append((f"nonnegative_lasso working_set (ours, {device})", res["ours"]))
    ref = res["rate"].get("sklearn", float("nan"))
    print(f"  {'solver':48s} {'samples/s':>10s} {'x sklearn':>9s} {'rel. gap':>9s}")
    for label, rate in rows:
        name = label.split()[0]
        gap = res["gap"].get("ours" if "ours" in label else name, float("nan"))
        gap_s = "" if "SparseCoder" in label else f"{gap:9.1e}"
        print(f"  {label:48s} {rate:10.1f} {rate / ref:9.1f} {gap_s:>9s}")
    print(f"  mean nonzeros {res['l0']:.1f}; ours / faster of skglm, celer: {res['vs_fast']:.1f}x")
    if res["obj"]:
        print(f"  objective: ours minus the best peer, worst relative {res['obj_diff']:.1e} "
              f"({'ok' if res['obj_diff'] <= 1e-9 else 'ABOVE 1e-9'})")
    print(f"  one pass over the dictionary: {res['per_pass'] * 1e6:.0f} us/sample "
          f"({1 / res['per_pass']:.0f} samples/s); ours uses {res['pass_eq']:.1f} "
          f"pass-equivalents per sample ({res['scoring_passes']:.1f} scoring passes)")
    return res


def grid(sizes, penalties, n, n_peer, batch, device, peers, tol):
    names = list(peers)
    print(
        f"\ngrid: synthetic dictionaries c x 512, {n} samples for ours (best of 3 calls), "
        f"the first {n_peer} for each per-sample peer (one call; they are slow), tol {tol:g}, "
        f"batch {batch}; samples/s"
    )
    head = (f"  {'c':>6s} {'penalty':>7s} {'L0':>6s} {'ours':>8s}"
            + "".join(f"{k:>9s}" for k in names)
            + f" {'pass-eq':>8s} {'ours/fast':>9s} {'obj diff':>9s} {'max gap ours/peers':>20s}")
    print(head)
    out = []
    for c in sizes:
        D = make_concept_dictionary(c, 512, random_state=0)
        Z, _ = make_sparse_signals(D, n, random_state=1)
        for lam in penalties:
            r = run_cell(D, Z, lam, n_peer, batch, device, peers, tol)
            peer_gap = max((r["gap"][k] for k in names), default=float("nan"))
            print(
                f"  {c:6d} {lam:7g} {r['l0']:6.1f} {r['ours']:8.1f}"
                + "".join(f"{r['rate'][k]:9.2f}" for k in names)
                + f" {r['pass_eq']:8.1f} {r['vs_fast']:9.1f} {r['obj_diff']:9.1e}"
                + f" {r['gap']['ours']:9.1e} /{peer_gap:8.1e}",
                flush=True,
            )
            out.append(r)
    bad = [r for r in out if r["obj_diff"] > 1e-9]
    print("  obj diff = max over the peer samples of (ours - best peer) / best peer: "
          + ("ours lower or equal up to 1e-9 in every cell" if not bad
             else f"ABOVE 1e-9 in {len(bad)} cells"))
    return out


def scaling(sizes, batches, n, lam, device="cpu"):
    print(
        f"\nscaling at penalty {lam}, {n} samples: samples/s "
        "(peak numpy memory of the call, sparse output)"
    )
    print("  " + "c".rjust(7) + "".join(f"{'batch ' + str(b):>22s}" for b in batches))
    for c in sizes:
        D = make_concept_dictionary(c, 512, random_state=0)
        Z, _ = make_sparse_signals(D, n, random_state=1)
        nonnegative_lasso(Z[:8], D, lam, device=device)
        cells = []
        for b in batches:
            tracemalloc.start()
            t, _ = timed(lambda Z=Z, D=D, b=b: nonnegative_lasso(
                Z, D, lam, batch_size=b, sparse_output=True, device=device))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            cells.append(f"{n / t:9.0f} ({peak / 2**20:5.0f} MB)")
        print("  " + f"{c:7d}" + "".join(f"{cell:>22s}" for cell in cells))
    print("  (torch buffers are not traced: per batch about 3 x B x c float32 scores plus the"
          " B x K x d working-set rows; the c x c Gram matrix, 3.6 GB at c = 30k, is never built)")


def floats(text):
    return [float(v) for v in text.split(",")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, under 3 minutes")
    parser.add_argument("--device", default="cpu", help="device of our solver: cpu, cuda or auto")
    parser.add_argument("--grid", action="store_true",
                        help="c in {500, 2000, 10000, 30000, 52445} x penalty {0.05, 0.1, 0.25}")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")],
                        help="dictionary sizes of the grid, e.g. 500,2000,10000")
    parser.add_argument("--penalties", type=floats, help="penalties of the grid, e.g. 0.1,0.25")
    parser.add_argument("--samples", type=int, default=256, help="samples for our solver")
    parser.add_argument("--peer-samples", type=int, default=None,
                        help="samples for each per-sample peer (first ones of ours)")
    parser.add_argument("--tol", type=float, default=1e-6, help="duality-gap tolerance, all")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"torch threads {torch.get_num_threads()}, torch {torch.__version__}; "
        "the peers solve one sample at a time on one thread"
    )
    peers = available_peers()
    if "skglm" in peers:  # numba compilation, kept out of the timings
        D0 = make_concept_dictionary(50, 16, random_state=0)
        peers["skglm"](D0[:2, :] * 0.5, D0, 0.1, np.ones(2), np.ones(2), 1e-6)
    print("peers: " + (", ".join(peers) or "none"))
    if args.grid:
        sizes = args.sizes or ([500, 2000] if args.quick else [500, 2000, 10000, 30000, 52445])
        penalties = args.penalties or ([0.1, 0.25] if args.quick else [0.05, 0.1, 0.25])
        n_peer = args.peer_samples or (4 if args.quick else 16)
        n = 64 if args.quick and args.samples == 256 else args.samples
        grid(sizes, penalties, n, min(n_peer, n), 256, args.device, peers, args.tol)
        return
    D = make_concept_dictionary(10000, 512, random_state=0)
    off = np.abs(D[:2000] @ D[:2000].T)[~np.eye(2000, dtype=bool)]
    print(
        f"dictionary 10000 x 512: mean |cos| {off.mean():.3f}, "
        f"pairs above 0.8: {(off > 0.8).mean() * 2000:.2f} per row"
    )
    n_peer = args.peer_samples or (8 if args.quick else 32)
    Z, _ = make_sparse_signals(D, args.samples, random_state=1)
    r25 = compare(D, Z, 0.25, n_peer, 256, args.device, peers, args.tol)
    r10 = compare(D, Z, 0.1, n_peer, 256, args.device, peers, args.tol)
    if r25["rate"]:
        print("\nours / faster of skglm and celer: "
              f"{r25['vs_fast']:.1f}x at 0.25, {r10['vs_fast']:.1f}x at 0.1")
    if args.quick:
        scaling([2000, 10000], [64, 256], 256, 0.25, args.device)
    else:
        scaling([2000, 10000, 30000], [64, 256, 1024], 1024, 0.25, args.device)


if __name__ == "__main__":
    main()
