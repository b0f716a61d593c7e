"""Concept-vocabulary encoding: truncated text encoding against open_clip's encode_text.

CLIP's text tower is causal and pools at the end-of-text token, so positions after it
cannot change the result. OpenCLIPEncoder runs each batch only up to its longest token
sequence. This script times both on the first words of the shipped LAION vocabulary,
with randomly initialised weights (same cost as the pretrained ones), and checks that
they agree.

    python benchmarks/bench_text_encoding.py [--quick] [--model ViT-B-32]
"""

import argparse
import time

import numpy as np
import torch

from sklearn_splice import OpenCLIPEncoder, load_vocabulary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--words", type=int, default=10000)
    args = parser.parse_args()
    n_words = 2000 if args.quick else args.words
    n_full = 128 if args.quick else 512  # full-length baseline on a subset: it is slow
    words = load_vocabulary("laion", n_words)
    enc = OpenCLIPEncoder(args.model, pretrained=None, device="cpu", batch_size=256)
    model, _, tokenizer, _ = enc._load()
    print(f"{args.model} (random weights), torch threads {torch.get_num_threads()}")

    enc.encode_text(words[:64])  # warm-up
    t0 = time.perf_counter()
    enc.encode_text(words)
    t_ours = time.perf_counter() - t0

    subset = words[:: max(1, len(words) // n_full)][:n_full]
    tokens = tokenizer(subset)
    with torch.inference_mode():
        model.encode_text(tokens[:8])
        t0 = time.perf_counter()
        full = torch.cat(
            [model.encode_text(tokens[i : i + 256]) for i in range(0, len(tokens), 256)]
        )
        t_full = time.perf_counter() - t0
    ours_subset = enc.encode_text(subset)
    diff = np.abs(ours_subset - full.numpy()).max()
    rate_ours = len(words) / t_ours
    rate_full = len(subset) / t_full
    lengths = (tokens.argmax(-1) + 1).numpy()
    print(f"truncated (ours): {len(words)} words in {t_ours:.1f} s = {rate_ours:.0f} words/s")
    print(
        f"open_clip encode_text, 77 positions: {len(subset)} words in {t_full:.1f} s "
        f"= {rate_full:.0f} words/s"
    )
    print(f"speed-up {rate_ours / rate_full:.1f}x; tokens per word incl. start/end: "
          f"mean {lengths.mean():.1f}, max {lengths.max()}")
    norms = np.linalg.norm(ours_subset, axis=1).mean()
    print(f"max abs difference to encode_text: {diff:.1e} (embedding norms ~{norms:.2f})")
    print(
        f"estimated time for all {len(words)} words: ours {t_ours:.0f} s, "
        f"full length {len(words) / rate_full:.0f} s"
    )


if __name__ == "__main__":
    main()
