"""Image throughput: end-to-end from JPEG files against the model's forward rate.

The forward rate is measured on already-preprocessed tensors; end to end includes
reading, decoding and preprocessing, which OpenCLIPEncoder runs in threads while the
model works (``num_workers``). End to end is also printed as a share of the forward rate.

    python benchmarks/bench_image_throughput.py [--quick] [--model ViT-B-32|tiny]
"""

import argparse
import tempfile
import time

import torch
from PIL import Image

from _images import make_image_folder
from bench_grid_search import encoder_for


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture or 'tiny'")
    parser.add_argument("--n-images", type=int, default=256)
    args = parser.parse_args()
    n = 64 if args.quick else args.n_images
    with tempfile.TemporaryDirectory() as workdir:
        paths, _ = make_image_folder(n, size=320, folder=workdir)
        encoder = encoder_for(args.model, workdir)
        encoder.set_params(batch_size=32)
        model, preprocess, _, _ = encoder._load()
        pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])
        with torch.inference_mode():
            model.encode_image(pixels[:4])
            t0 = time.perf_counter()
            for i in range(0, n, 32):
                model.encode_image(pixels[i : i + 32])
            t_forward = time.perf_counter() - t0
        t0 = time.perf_counter()
        for p in paths:
            preprocess(Image.open(p).convert("RGB"))
        t_prep = time.perf_counter() - t0
        print(
            f"{args.model} (random weights), {n} JPEGs of 320x320, "
            f"torch threads {torch.get_num_threads()}"
        )
        print(f"forward on preprocessed tensors: {n / t_forward:.1f} images/s; "
              f"read+decode+preprocess alone, one thread: {n / t_prep:.1f} images/s")
        for workers in (0, 2, 4):
            encoder.set_params(num_workers=workers)
            t0 = time.perf_counter()
            encoder.encode_image(paths)
            t_e2e = time.perf_counter() - t0
            print(f"end to end, num_workers={workers}: {n / t_e2e:.1f} images/s = "
                  f"{100 * t_forward / t_e2e:.0f}% of the forward rate")


if __name__ == "__main__":
    main()
