"""Sparse-coding speed: our batched solver against per-sample skglm, celer and scikit-learn.

Prints samples/s for each solver, measured side by side in one run, every solver's duality
gap, the objective agreement, the pass-equivalents (our time over the time of one float32
(B x d) @ (d x c) product) and, in the default run, a scaling table over dictionary and
batch sizes. Every peer is stopped at our duality-gap criterion, translated sample by
sample (see `_peers.py`). Two dictionary families (see `_dictionaries.py`): a synthetic one
correlated like CLIP text embeddings, and real text embeddings of the shipped vocabularies
by sentence-transformers/all-MiniLM-L6-v2.

    python benchmarks/bench_solver.py            # c = 10,000 on both families, scaling
    python benchmarks/bench_solver.py --quick    # under 3 minutes
    python benchmarks/bench_solver.py --grid --family both    # the full grid, see README.md
    python benchmarks/bench_solver.py --grid --sizes 500,2000 --penalties 0.25 --peer-samples 4
    python benchmarks/bench_solver.py --device cuda   # our solver on a GPU (peers on the CPU)
    python benchmarks/bench_solver.py --grid --fixed-shape ...   # the GPU's loop, on the CPU

`--grid` prints one markdown table over family x c x penalty, every cell measured in one
run of all four solvers. skglm, celer and the text model are optional
(`pip install -e ".[bench]"`); a missing one is skipped with a message.
"""

import argparse
import os
import platform
import time
import tracemalloc
import warnings

import numpy as np
import torch
from sklearn.decomposition import SparseCoder

from sklearn_splice import _solver, nonnegative_lasso
from sklearn_splice._synthetic import make_concept_dictionary, make_sparse_signals

from _dictionaries import families
from _peers import available_peers, design, objective, primal_dual, relative_gap

GRID_SIZES = [500, 2000, 10000, 30000, 52445]
GRID_PENALTIES = [0.05, 0.1, 0.25]
# The solver's own stopping test allows 2**-40 ||x||^2 on top of tol * F (round-off).
GAP_FLOOR = 2.0**-40


def peer_schedule(c):
    """Samples per peer at dictionary size c: enough for a stable rate, the full grid of
    both families in about 30 minutes on 2 cores (scikit-learn is the slowest by far)."""
    if c <= 2000:
        return {"skglm": 32, "celer": 32, "sklearn": 16}
    if c <= 10000:
        return {"skglm": 16, "celer": 16, "sklearn": 6}
    return {"skglm": 8, "celer": 8, "sklearn": 3}


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, repeat=1, device="cpu", enough=None):
    """Best time of up to `repeat` calls; stops repeating once one call took `enough` s."""
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
        if enough is not None and best >= enough:
            break
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
        return Zt @ Dt.T

    timed(one, device=device)
    return timed(one, repeat=5, device=device)[0] / len(Zt)


def warm_up(device, seconds=5.0):
    """Solve until `seconds` have passed: the first seconds of a process run its solver up to
    20x slower (one-time initialisation), which would land in the first cell's figures."""
    D = make_concept_dictionary(2000, 512, random_state=0)
    Z, _ = make_sparse_signals(D, 256, random_state=1)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        nonnegative_lasso(Z, D, 0.25, device=device)
        sync(device)


def run_cell(D, Z, lam, counts, batch, device, peers, tol, X=None):
    """Ours on all of Z, each peer on its first `counts[name]` samples, in the same run."""
    X = design(D) if X is None else X
    nonnegative_lasso(Z[:8], D, lam, batch_size=batch, device=device, tol=tol)  # warm-up
    ours_t, (W, info) = timed(
        lambda: nonnegative_lasso(
            Z, D, lam, tol=tol, batch_size=batch, return_info=True, device=device
        ),
        repeat=3, device=device, enough=10.0,  # one call suffices when it takes 10 s
    )
    per_pass = pass_time(Z, D, batch, device)
    f_ours, dual_ours = primal_dual(W, D, Z, lam)
    gap_ours = (f_ours - dual_ours) / f_ours
    zz = (np.asarray(Z, dtype=np.float64) ** 2).sum(1)
    certified = gap_ours <= tol + GAP_FLOOR * zz / f_ours
    res = {
        "c": D.shape[0], "d": D.shape[1], "lam": lam, "n": len(Z), "counts": {},
        "l0": np.mean((W > 0).sum(1)), "ours": len(Z) / ours_t,
        "pass_eq": ours_t / len(Z) / per_pass, "per_pass": per_pass,
        "scoring_passes": info["n_passes"].mean(),
        "certified": int(certified.sum()), "converged": int(np.sum(info["converged"])),
        "method": method_label(info, device),
        "gap": {"ours": gap_ours.max()}, "rate": {}, "obj": {}, "obj_diff": {},
    }
    w1 = W.sum(1)
    for name, fn in peers.items():
        k = min(counts[name], len(Z))
        Zp = np.asarray(Z[:k], dtype=np.float64)
        t, Wp = timed(lambda fn=fn, k=k, Zp=Zp: fn(Zp, X, lam, f_ours[:k], w1[:k], tol))
        f_peer = objective(Wp, D, Zp, lam)
        res["counts"][name] = k
        res["rate"][name] = k / t
        # with the better of its own dual value and ours: celer certifies with a dual point
        # of its own, much closer than its residual's
        res["gap"][name] = relative_gap(Wp, D, Zp, lam, dual=dual_ours[:k]).max()
        diff = (f_ours[:k] - f_peer) / f_peer
        res["obj_diff"][name] = (diff.max(), np.abs(diff).max())  # signed, absolute
    fast = [res["rate"][k] for k in ("skglm", "celer") if k in res["rate"]]
    res["vs_fast"] = res["ours"] / max(fast) if fast else float("nan")
    res["vs_sklearn"] = res["ours"] / res["rate"].get("sklearn", float("nan"))
    return res


def method_label(info, device):
    """The method the solver chose: the Gram matrix, or scoring passes, on fixed shapes where
    the device runs those (with the samples handed on to the variable-shape loop, whose
    passes count on top of their iterations)."""
    if info.get("gram") is None:
        return "-"
    if info["gram"]:
        return "Gram"
    if torch.device(device).type not in _solver._FIXED_SHAPE_DEVICES:
        return "passes"
    handed = int(np.sum(info["n_passes"] > info["n_iter"]))
    return "fixed shape" + (f", {handed} handed on" if handed else "")


def compare(family, D, Z, lam, counts, batch, device, peers, tol):
    """One row per solver at one penalty: samples/s, ratios, objective gap."""
    res = run_cell(D, Z, lam, counts, batch, device, peers, tol)
    n_sc = max(res["counts"].values(), default=8)
    sc_t, _ = timed(lambda: sparse_coder(Z[:n_sc], D, lam))
    print(
        f"\n{family}, penalty {lam}: dictionary {D.shape[0]} x {D.shape[1]}, batch {batch}; "
        f"ours on {len(Z)} samples, the per-sample solvers on the first "
        f"{'/'.join(str(v) for v in res['counts'].values()) or n_sc}, tol {tol:g}"
    )
    rows = [(f"{k} Lasso per sample, positive", v) for k, v in res["rate"].items()]
    rows.append(("sklearn SparseCoder lasso_cd n_jobs=2 (own tol)", n_sc / sc_t))
    rows.append((f"nonnegative_lasso (ours, {device})", res["ours"]))
    ref = res["rate"].get("sklearn", float("nan"))
    print(f"  {'solver':48s} {'samples/s':>10s} {'x sklearn':>9s} {'rel. gap':>9s}")
    for label, rate in rows:
        name = label.split()[0]
        gap = res["gap"].get("ours" if "ours" in label else name, float("nan"))
        gap_s = "" if "SparseCoder" in label else f"{gap:9.1e}"
        print(f"  {label:48s} {rate:10.1f} {rate / ref:9.1f} {gap_s:>9s}")
    print(f"  mean nonzeros {res['l0']:.1f}; ours / faster of skglm, celer: {res['vs_fast']:.1f}x;"
          f" certified {res['certified']}/{res['n']}")
    if "sklearn" in res["obj_diff"]:
        signed, absolute = res["obj_diff"]["sklearn"]
        print(f"  objective vs scikit-learn: max |F_ours - F_sk| / F_sk {absolute:.1e}, "
              f"ours above by at most {max(signed, 0):.1e} "
              f"({'ok' if signed <= 1e-9 else 'ABOVE 1e-9'})")
    print(f"  one pass over the dictionary: {res['per_pass'] * 1e6:.1f} us/sample "
          f"({1 / res['per_pass']:.0f} samples/s); ours uses {res['pass_eq']:.1f} "
          f"pass-equivalents per sample ({res['scoring_passes']:.1f} scoring passes)")
    return res


def _n(v, digits=0):
    return f"{v:,.{digits}f}" if np.isfinite(v) else "-"


def _ratio(v):
    return f"**{v:.1f}x**" if np.isfinite(v) else "-"


TABLE_HEAD = (
    "| family | c | penalty | method | mean L0 | ours, samples/s | pass-eq | skglm | celer "
    "| sklearn "
    "| ours / faster of skglm, celer | ours / sklearn | max rel. obj. diff vs sklearn "
    "| certified (ours) | max rel. gap ours / peers | peer samples |\n"
    "|" + " --- |" * 16
)


def table_row(family, r):
    rate = {k: _n(r["rate"][k], 2) if k in r["rate"] else "-"
            for k in ("skglm", "celer", "sklearn")}
    signed, absolute = r["obj_diff"].get("sklearn", (float("nan"),) * 2)
    obj = "-" if not np.isfinite(absolute) else (
        f"{absolute:.1e}" + ("" if signed <= 1e-9 else " (ours above)"))
    peer_gap = max((v for k, v in r["gap"].items() if k != "ours"), default=float("nan"))
    peer_gap_s = f"{peer_gap:.1e}" if np.isfinite(peer_gap) else "-"
    counts = "/".join(str(r["counts"].get(k, "-")) for k in ("skglm", "celer", "sklearn"))
    return (
        f"| {family} | {r['c']:,} | {r['lam']:g} | {r['method']} | {r['l0']:.1f} "
        f"| {_n(r['ours'])} "
        f"| {r['pass_eq']:.1f} | {rate['skglm']} | {rate['celer']} | {rate['sklearn']} "
        f"| {_ratio(r['vs_fast'])} | {_ratio(r['vs_sklearn'])} | {obj} "
        f"| {r['certified']}/{r['n']} | {r['gap']['ours']:.1e} / {peer_gap_s} | {counts} |"
    )


def grid(fams, sizes, penalties, n, n_peer, batch, device, peers, tol):
    t_start, load0 = time.perf_counter(), os.getloadavg()[0]
    print(
        f"\ngrid: {len(fams)} famil{'y' if len(fams) == 1 else 'ies'} x c {sizes} x penalty "
        f"{penalties}; ours on {n} samples (batch {batch}, {device}, best of up to 3 calls), "
        "each per-sample peer on the first few (one call; peer samples column: skglm/celer/"
        f"sklearn), tol {tol:g}"
    )
    for fam in fams:
        print(f"  {fam.description}")
    print("\n" + TABLE_HEAD, flush=True)
    rows, out = [], []
    for fam in fams:
        for c in sizes:
            t0 = time.perf_counter()
            D, Z = fam.make(c, n)
            X = design(D)
            prep = time.perf_counter() - t0
            for lam in penalties:
                t0 = time.perf_counter()
                counts = peer_schedule(c) if n_peer is None else dict.fromkeys(peers, n_peer)
                r = run_cell(D, Z, lam, counts, batch, device, peers, tol, X=X)
                rows.append(table_row(fam.name, r))
                print(rows[-1], f" <!-- {time.perf_counter() - t0 + prep:.0f} s, load "
                      f"{os.getloadavg()[0]:.1f} -->", flush=True)
                prep = 0.0
                out.append((fam.name, r))
    total = time.perf_counter() - t_start
    print("\nthe table again, for benchmarks/README.md:\n\n" + TABLE_HEAD)
    print("\n".join(rows))
    above = [(f, r) for f, r in out if r["obj_diff"].get("sklearn", (0.0,))[0] > 1e-9]
    uncert = [(f, r) for f, r in out if r["certified"] < r["n"]]
    print(
        "\nobjective: max over the sklearn samples of |F_ours - F_sk| / F_sk; "
        + ("ours nowhere above scikit-learn's by more than 1e-9" if not above
           else f"ours above scikit-learn's by more than 1e-9 in {len(above)} cells")
        + "\ncertified: samples of ours whose float64 duality gap, recomputed here, is within "
        f"tol = {tol:g}: " + ("every sample, every cell" if not uncert
                              else f"NOT all in {len(uncert)} cells")
    )
    print(f"total time of the grid: {total:.0f} s ({total / 60:.1f} min); load average "
          f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (1 minute)")
    return out


def scaling(sizes, batches, n, lam, device="cpu"):
    print(
        f"\nscaling at penalty {lam}, synthetic, {n} samples: samples/s "
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
                Z, D, lam, batch_size=b, sparse_output=True, device=device), device=device)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            cells.append(f"{n / t:9.0f} ({peak / 2**20:5.0f} MB)")
        print("  " + f"{c:7d}" + "".join(f"{cell:>22s}" for cell in cells))
    print("  (torch buffers are not traced: per batch about 3 x B x c float32 scores plus the"
          " B x K x d working-set rows)")


def floats(text):
    return [float(v) for v in text.split(",")]


def resolve_device(parser, name):
    """cpu, cuda[:N] or auto; a CUDA device where there is none is refused here, at once."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        build = (f"torch {torch.__version__} is a CPU-only build" if torch.version.cuda is None
                 else f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU")
        parser.error(f"--device {name}: CUDA is not available here: {build}; run it on a "
                     "machine with an NVIDIA GPU, or use --device cpu")
    return name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, under 3 minutes")
    parser.add_argument("--device", default="cpu",
                        help="device of our solver: cpu, cuda[:N] or auto (peers: the CPU)")
    parser.add_argument("--family", choices=["synthetic", "text", "both"], default="both",
                        help="dictionary family (default both)")
    parser.add_argument("--grid", action="store_true",
                        help="c in {500, 2000, 10000, 30000, 52445} x penalty {0.05, 0.1, 0.25}")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")],
                        help="dictionary sizes of the grid, e.g. 500,2000,10000")
    parser.add_argument("--penalties", type=floats, help="penalties of the grid, e.g. 0.1,0.25")
    parser.add_argument("--samples", type=int, default=None,
                        help="samples for our solver (default 256; 16384 on CUDA)")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size of our solver (default 256; 4096 on CUDA)")
    parser.add_argument("--peer-samples", type=int, default=None,
                        help="samples for every per-sample peer (the first ones of ours); "
                        "default: per dictionary size, 32/32/16 (skglm/celer/sklearn) up to "
                        "c = 2,000, 16/16/6 at 10,000, 8/8/3 above")
    parser.add_argument("--tol", type=float, default=1e-6, help="duality-gap tolerance, all")
    parser.add_argument("--fixed-shape", action="store_true",
                        help="run our scoring iterations on fixed shapes, as on a GPU, even on "
                        "the CPU (to check them where there is no GPU; slow there)")
    args = parser.parse_args()
    if args.fixed_shape:
        _solver._FIXED_SHAPE_DEVICES = ("cpu", "cuda")
    device = resolve_device(parser, args.device)
    on_gpu = device.startswith("cuda")
    n = args.samples or (16384 if on_gpu else 64 if args.quick else 256)
    batch = args.batch or (4096 if on_gpu else 256)
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"torch threads {torch.get_num_threads()}, torch {torch.__version__}"
        + (f", {torch.cuda.get_device_name(device)}" if on_gpu else "")
        + "; the peers solve one sample at a time on one thread, on the CPU"
    )
    peers = available_peers()
    if "skglm" in peers:  # numba compilation, kept out of the timings
        D0 = make_concept_dictionary(50, 16, random_state=0)
        peers["skglm"](D0[:2, :] * 0.5, design(D0), 0.1, np.ones(2), np.ones(2), 1e-6)
    print("peers: " + (", ".join(peers) or "none"))
    warm_up(device)
    names = ["synthetic", "text"] if args.family == "both" else [args.family]
    fams = families(names, device=device)
    if not fams:
        parser.exit(1, "no dictionary family can run here\n")
    if args.grid:
        sizes = args.sizes or ([500, 2000] if args.quick else GRID_SIZES)
        penalties = args.penalties or ([0.1, 0.25] if args.quick else GRID_PENALTIES)
        n_peer = args.peer_samples or (4 if args.quick else None)
        grid(fams, sizes, penalties, n, n_peer, batch, device, peers, args.tol)
        return
    counts = (peer_schedule(10000) if args.peer_samples is None
              else dict.fromkeys(peers, args.peer_samples))
    if args.quick:
        counts = dict.fromkeys(peers, 4)
    for fam in fams:
        D, Z = fam.make(10000, n)
        off = np.abs(D[:2000] @ D[:2000].T)[~np.eye(2000, dtype=bool)]
        print(
            f"\n{fam.description}\ndictionary {D.shape[0]} x {D.shape[1]}: mean |cos| "
            f"{off.mean():.3f}, pairs above 0.8: {(off > 0.8).mean() * 2000:.2f} per row"
        )
        r25 = compare(fam.name, D, Z, 0.25, counts, batch, device, peers, args.tol)
        r10 = compare(fam.name, D, Z, 0.1, counts, batch, device, peers, args.tol)
        if r25["rate"]:
            print(f"\n{fam.name}: ours / faster of skglm and celer: "
                  f"{r25['vs_fast']:.1f}x at 0.25, {r10['vs_fast']:.1f}x at 0.1")
    if args.quick:
        scaling([2000, 10000], [64, 256], 256, 0.25, device)
    else:
        scaling([2000, 10000, 30000], [64, 256, 1024], 1024, 0.25, device)


if __name__ == "__main__":
    main()
