"""The data-set job end to end: tar shards in, Parquet out, against an in-process transform.

Measures, on shards of JPEG images and on shards of precomputed ``.npy`` embeddings:

- images/s of ``transform`` on the same inputs in this process (the baseline);
- images/s of ``decompose_dataset`` in this process, and its overhead over the baseline;
- images/s of ``decompose_dataset`` on a ``LocalCluster`` of 1 and of 2 worker processes
  (torch runs single-threaded in a dask worker's task thread), once each worker has
  loaded the model;
- the peak RSS of a worker process after runs over few and over many shards (it should not
  grow with the number of shards).

The weights of the model are random (nothing is downloaded): the cost of a forward pass
does not depend on them. In-process figures are the best of 3 alternated runs. Prints
figures; asserts nothing.

    python benchmarks/bench_dataset.py [--quick] [--model tiny|ViT-B-32]
"""

import argparse
import io
import json
import os
import resource
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from _images import make_image_folder
from sklearn_splice import OpenCLIPEncoder, SpliceTransformer, decompose_dataset

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


REPEATS = 3


def encoder_for(name, workdir):
    if name == "tiny":
        config = Path(workdir) / "BenchDatasetTinyCLIP.json"
        config.write_text(json.dumps(TINY))
        return OpenCLIPEncoder(str(config), pretrained=None, device="cpu")
    return OpenCLIPEncoder(name, pretrained=None, device="cpu")


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def image_shards(paths, labels, per_shard, folder):
    """Tar shards of the JPEG files, ``per_shard`` each, with ``.cls`` labels."""
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for s, start in enumerate(range(0, len(paths), per_shard)):
        shard = folder / f"images-{s:04d}.tar"
        with tarfile.open(shard, "w") as tar:
            for i in range(start, min(start + per_shard, len(paths))):
                _add(tar, f"{i:07d}.jpg", Path(paths[i]).read_bytes())
                _add(tar, f"{i:07d}.cls", b"%d" % labels[i])
        shards.append(str(shard))
    return shards


def embedding_shards(E, per_shard, folder):
    """Tar shards of ``.npy`` embeddings (no image decoding, no model forward)."""
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for s, start in enumerate(range(0, len(E), per_shard)):
        shard = folder / f"embeddings-{s:04d}.tar"
        with tarfile.open(shard, "w") as tar:
            for i in range(start, min(start + per_shard, len(E))):
                buf = io.BytesIO()
                np.save(buf, E[i])
                _add(tar, f"{i:07d}.npy", buf.getvalue())
                _add(tar, f"{i:07d}.cls", b"%d" % (i % 2))
        shards.append(str(shard))
    return shards


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def peak_rss_mb():
    """This process's peak resident set size (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def on_cluster(n_workers, shards, splice, out, batch_size):
    """(seconds, peak RSS of each worker in MB) of one run on a fresh LocalCluster."""
    import distributed

    with distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as client:
        # each worker loads the model once and keeps it: one shard per worker first, not timed
        decompose_dataset(shards[:n_workers], splice, out + "-warm-up", client=client,
                          progress=False, batch_size=batch_size)
        seconds = timed(
            lambda: decompose_dataset(
                shards, splice, out, client=client, progress=False, batch_size=batch_size
            )
        )
        rss = client.run(peak_rss_mb)
    return seconds, sorted(rss.values())


def say(line):
    print(line, flush=True)  # as measured: a long run shows its figures as it goes


def run_kind(kind, inputs, shards, splice, workdir, batch_size, n):
    """Baseline, in-process job and 1 and 2 workers on one kind of shard, printed."""
    # alternated, best of REPEATS: the machine may be shared, and a slower run is noise
    baseline, job = [], []
    for repeat in range(REPEATS):
        baseline.append(timed(lambda: splice.transform(inputs)))
        job.append(
            timed(
                lambda: decompose_dataset(
                    shards, splice, str(workdir / f"{kind}-inproc-{repeat}"), progress=False,
                    batch_size=batch_size,
                )
            )
        )
    baseline, job = min(baseline), min(job)
    say(f"{kind}: {n} inputs in {len(shards)} shards")
    say(f"  transform in this process:        {n / baseline:8.1f} images/s")
    say(
        f"  decompose_dataset, this process:  {n / job:8.1f} images/s "
        f"(overhead {100 * (job / baseline - 1):+.0f}%)"
    )
    for workers in (1, 2):
        seconds, rss = on_cluster(
            workers, shards, splice, str(workdir / f"{kind}-{workers}w"), batch_size
        )
        say(
            f"  decompose_dataset, {workers} worker(s):  {n / seconds:8.1f} images/s "
            f"(peak RSS per worker {', '.join(f'{r:.0f}' for r in rss)} MB)"
        )


def memory_flatness(splice, E, per_shard, counts, workdir, batch_size):
    say("peak RSS of one worker against the number of shards (.npy shards):")
    for count in counts:
        shards = embedding_shards(
            np.tile(E, (-(-count * per_shard // len(E)), 1))[: count * per_shard],
            per_shard, workdir / f"flat-{count}",
        )
        seconds, rss = on_cluster(1, shards, splice, str(workdir / f"flat-{count}-out"),
                                  batch_size)
        say(
            f"  {count:4d} shards ({count * per_shard} inputs): peak RSS {rss[0]:.0f} MB, "
            f"{count * per_shard / seconds:.1f} images/s"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default="tiny", help="'tiny' or an open_clip architecture")
    parser.add_argument("--images", type=int, default=512, help="JPEG inputs")
    parser.add_argument("--embeddings", type=int, default=8192, help=".npy inputs")
    parser.add_argument("--shards", type=int, default=4, help="shards per kind")
    parser.add_argument("--vocabulary-size", type=int, default=10000)
    parser.add_argument(
        "--batch-size", type=int, default=128,
        help="samples decomposed at a time, by transform and by the job alike",
    )
    args = parser.parse_args()
    n_images = 128 if args.quick else args.images
    n_embeddings = 1024 if args.quick else args.embeddings
    workdir = Path(tempfile.mkdtemp(prefix="splice-bench-dataset-"))
    try:
        encoder = encoder_for(args.model, workdir)
        (workdir / "jpg").mkdir()
        paths, labels = make_image_folder(n_images, size=320, folder=str(workdir / "jpg"))
        splice = SpliceTransformer(
            encoder, vocabulary_size=args.vocabulary_size, l1_penalty=0.25, device="cpu",
            cache_dir=str(workdir / "cache"), embedding_cache=False,
            batch_size=args.batch_size,
        )
        t0 = time.perf_counter()
        E = splice.fit(paths).embed(paths).astype(np.float32)  # the concepts, and a real mean
        setup = time.perf_counter() - t0
        rng = np.random.RandomState(0)
        # embeddings like the model's: the images' own, jittered, as many as wanted
        Emb = E[rng.randint(0, len(E), n_embeddings)]
        Emb = Emb + 0.05 * rng.standard_normal(Emb.shape).astype(np.float32)
        say(
            f"{args.model} (random weights), {args.vocabulary_size} concepts, penalty 0.25, "
            f"batch {args.batch_size}, {os.cpu_count()} CPU cores; setup {setup:.1f} s"
        )
        per_image_shard = -(-n_images // args.shards)
        per_emb_shard = -(-n_embeddings // args.shards)
        img_shards = image_shards(paths, labels, per_image_shard, workdir / "img-shards")
        emb_shards = embedding_shards(Emb, per_emb_shard, workdir / "emb-shards")
        run_kind("JPEG shards (320x320)", paths, img_shards, splice, workdir,
                 args.batch_size, n_images)
        run_kind(".npy shards", Emb, emb_shards, splice, workdir, args.batch_size, n_embeddings)
        counts = (2, 8) if args.quick else (4, 32)
        memory_flatness(splice, Emb, args.batch_size, counts, workdir, args.batch_size)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
