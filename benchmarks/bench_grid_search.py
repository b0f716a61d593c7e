"""Grid search embeds each image once: 3 penalties x 3 folds against one fit_transform.

Counts the images that reach the model's image tower and times the search against a
single fit_transform on the same images (their ratio), with the embedding cache on and off.

    python benchmarks/bench_grid_search.py [--quick] [--model ViT-B-32] [--n-images 96]
"""

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from _images import make_image_folder
from sklearn_splice import OpenCLIPEncoder, SpliceTransformer
from sklearn_splice._cache import clear_memory_cache

TINY = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def encoder_for(name, workdir):
    if name == "tiny":
        config = Path(workdir) / "BenchTinyCLIP.json"
        config.write_text(json.dumps(TINY))
        return OpenCLIPEncoder(str(config), pretrained=None, device="cpu")
    return OpenCLIPEncoder(name, pretrained=None, device="cpu")


def forget_embeddings(cache_dir):
    """Start cold: no image embedding in memory or on disk (concepts stay cached)."""
    clear_memory_cache()
    shutil.rmtree(Path(cache_dir) / "embeddings", ignore_errors=True)


def run(encoder, paths, labels, cache, vocab_size, cache_dir):
    model = encoder._load()[0]
    calls = []
    hook = model.visual.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    splice = SpliceTransformer(
        encoder,
        vocabulary_size=vocab_size,
        embedding_cache=cache,
        cache_dir=cache_dir,
        device="cpu",
    )
    try:
        forget_embeddings(cache_dir)
        t0 = time.perf_counter()
        splice.fit_transform(paths)
        t_one = time.perf_counter() - t0
        one_calls = sum(calls)
        calls.clear()
        forget_embeddings(cache_dir)
        pipe = Pipeline([("splice", splice), ("clf", LogisticRegression(max_iter=1000))])
        search = GridSearchCV(pipe, {"splice__l1_penalty": [0.15, 0.25, 0.35]}, cv=3)
        t0 = time.perf_counter()
        search.fit(paths, labels)
        t_search = time.perf_counter() - t0
    finally:
        hook.remove()
    return t_one, one_calls, t_search, sum(calls)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture or 'tiny'")
    parser.add_argument("--n-images", type=int, default=96)
    args = parser.parse_args()
    n = 48 if args.quick else args.n_images
    vocab_size = 2000 if args.quick else 10000
    with tempfile.TemporaryDirectory() as workdir:
        paths, labels = make_image_folder(n, folder=workdir)
        encoder = encoder_for(args.model, workdir)
        cache_dir = str(Path(workdir) / "cache")
        # the concept dictionary is built (and cached on disk) once before timing
        SpliceTransformer(
            encoder, vocabulary_size=vocab_size, cache_dir=cache_dir, device="cpu"
        ).fit(paths[:2])
        print(f"{args.model} (random weights), {n} JPEG files, vocabulary {vocab_size}")
        for cache in (True, False):
            t_one, one_calls, t_search, calls = run(
                encoder, paths, labels, cache, vocab_size, cache_dir
            )
            print(
                f"embedding_cache={cache}: fit_transform {t_one:.1f} s "
                f"({one_calls} images through the tower); 3x3 grid search {t_search:.1f} s "
                f"({calls} images) = {t_search / t_one:.2f}x one fit_transform"
            )


if __name__ == "__main__":
    main()
