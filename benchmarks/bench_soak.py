"""Soak: transform many precomputed embeddings against a 10,000-concept vocabulary.

Runs each data size in a fresh process and prints throughput and peak resident memory,
next to the size of the input array and of the sparse output. Memory beyond those two
should not grow with the number of samples: transform works through the rows in chunks
and the solver in batches.

    python benchmarks/bench_soak.py [--quick] [--sizes 10000 100000]
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


class SyntheticEncoder:
    """Concept i embeds as row i of a synthetic CLIP-like dictionary."""

    def __init__(self, n_concepts=10000, width=512):
        from sklearn_splice._synthetic import make_concept_dictionary

        self.table = make_concept_dictionary(n_concepts, width, random_state=0)
        self.names = [f"concept{i}" for i in range(n_concepts)]

    def encode_text(self, texts):
        index = {n: i for i, n in enumerate(self.names)}
        return self.table[[index[t] for t in texts]]

    def encode_image(self, X):
        return X


def one_run(n, batch_size):
    from sklearn_splice import SpliceTransformer
    from sklearn_splice._synthetic import make_sparse_signals

    enc = SyntheticEncoder()
    rng = np.random.RandomState(0)
    offset = rng.standard_normal(512).astype(np.float32) * 0.05
    # built in small pieces, so that generating the data does not set the memory peak
    parts = [make_sparse_signals(enc.table, min(1000, n - s), random_state=s)[0].astype(np.float32)
             for s in range(0, n, 1000)]
    X = (np.vstack(parts) + offset).astype(np.float32)
    del parts
    splice = SpliceTransformer(enc, vocabulary=enc.names, l1_penalty=0.25, batch_size=batch_size,
                               device="cpu", cache_dir=False).fit(X[:2000])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    W = splice.transform(X)
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out_mb = (W.data.nbytes + W.indices.nbytes + W.indptr.nbytes) / 2**20
    print(json.dumps({"n": n, "seconds": elapsed, "rate": n / elapsed, "peak_mb": peak / 1024,
                      "before_mb": base / 1024, "input_mb": X.nbytes / 2**20, "output_mb": out_mb,
                      "nnz_per_row": W.nnz / n}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        one_run(args.child, args.batch_size)
        return
    sizes = [2000, 10000] if args.quick else args.sizes
    print(
        f"{'samples':>8s} {'samples/s':>10s} {'peak RSS MB':>12s} {'before MB':>10s} "
        f"{'input MB':>9s} {'output MB':>10s} {'nnz/row':>8s}"
    )
    rows = []
    for n in sizes:
        child = [sys.executable, __file__, "--child", str(n), "--batch-size", str(args.batch_size)]
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append(r)
        print(
            f"{r['n']:8d} {r['rate']:10.0f} {r['peak_mb']:12.0f} {r['before_mb']:10.0f} "
            f"{r['input_mb']:9.0f} {r['output_mb']:10.1f} {r['nnz_per_row']:8.1f}"
        )
    a, b = rows[0], rows[-1]
    growth = (b["peak_mb"] - b["before_mb"]) - (a["peak_mb"] - a["before_mb"])
    print(f"growth of transform's peak from {a['n']} to {b['n']} samples: {growth:.0f} MB "
          f"(output grew {b['output_mb'] - a['output_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
