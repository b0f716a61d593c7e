"""Command line: ``sklearn-splice decompose IMAGE...`` and ``sklearn-splice describe FOLDER``."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import Sequence

import numpy as np

from ._vocabulary import VOCABULARIES


class _UserError(Exception):
    """A mistake in the command line: reported in one line, without a traceback."""


def _add_model_options(sub: argparse.ArgumentParser, image_mean: str) -> None:
    sub.add_argument("--top", type=int, default=10, help="concepts shown per image or group (default 10)")
    sub.add_argument("--l1-penalty", type=float, default=0.25, help="sparsity penalty (default 0.25)")
    sub.add_argument(
        "--vocabulary", default="laion",
        help=f"one of {sorted(VOCABULARIES)} or a text file with one concept per line",
    )
    sub.add_argument("--vocabulary-size", type=int, default=10000, help="shipped vocabularies only")
    sub.add_argument("--model", default="ViT-B-32", help="open_clip architecture or config JSON")
    sub.add_argument("--pretrained", default="laion2b_s34b_b79k", help="open_clip tag or checkpoint file")
    sub.add_argument(
        "--image-mean", choices=["reference", "fit"], default=image_mean,
        help=f"centre with the shipped MSCOCO mean or the mean of the given images (default {image_mean})",
    )
    sub.add_argument("--device", default="auto")
    sub.add_argument("--format", choices=["table", "json", "csv"], default="table")
    sub.add_argument("--quiet", action="store_true", help="no progress output on stderr")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sklearn-splice",
        description="Decompose CLIP embeddings into sparse, nonnegative concept weights (SpLiCE).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    dec = sub.add_parser("decompose", help="print the top concepts of each image")
    dec.add_argument("images", nargs="+", help="image files")
    _add_model_options(dec, "reference")
    desc = sub.add_parser("describe", help="print the concept distribution of a folder of images")
    desc.add_argument("folder", help="a folder of images; with --by-class, class_name/image.jpg")
    desc.add_argument("--by-class", action="store_true", help="one distribution per class folder")
    desc.add_argument("--plot", metavar="PNG", help="also save a chart of the distribution")
    _add_model_options(desc, "fit")
    return parser


def _vocabulary(arg: str):
    if arg in VOCABULARIES:
        return arg
    if not os.path.isfile(arg):
        raise _UserError(
            f"--vocabulary {arg!r} is neither one of {sorted(VOCABULARIES)} nor an existing file"
        )
    with open(arg, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def _splice(args, n_images: int):
    from ._encoder import OpenCLIPEncoder
    from ._transformer import SpliceTransformer

    if args.top < 1:
        raise _UserError("--top must be at least 1")
    if args.image_mean == "fit" and n_images < 2:
        raise _UserError("--image-mean fit needs at least 2 images (one image is its own mean)")
    encoder = OpenCLIPEncoder(
        args.model, pretrained=args.pretrained, device=args.device, verbose=not args.quiet
    )
    return SpliceTransformer(
        encoder,
        vocabulary=_vocabulary(args.vocabulary),
        vocabulary_size=args.vocabulary_size,
        l1_penalty=args.l1_penalty,
        image_mean=args.image_mean,
        device=args.device,
        verbose=not args.quiet,
    )


def _decompose(args) -> list[dict]:
    from ._explain import top_concepts

    splice = _splice(args, len(args.images))
    W = splice.fit_transform(list(args.images)).tocsr()
    tops = top_concepts(W, splice.get_feature_names_out(), args.top)
    l0 = np.diff(W.indptr)
    return [
        {"image": path, "l0": int(n), "concepts": concepts}
        for path, n, concepts in zip(args.images, l0, tops)
    ]


def _print(rows: list[dict], fmt: str, out) -> None:
    if fmt == "json":
        json.dump(
            [{**r, "concepts": [{"concept": c, "weight": w} for c, w in r["concepts"]]} for r in rows],
            out, indent=2,
        )
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(["image", "rank", "concept", "weight"])
        for r in rows:
            for rank, (c, w) in enumerate(r["concepts"], 1):
                writer.writerow([r["image"], rank, c, f"{w:.6f}"])
    else:
        for r in rows:
            out.write(f"{r['image']}  ({r['l0']} concepts)\n")
            for c, w in r["concepts"]:
                out.write(f"  {w:8.4f}  {c}\n")


def _folder_images(folder: str, by_class: bool):
    from pathlib import Path

    from ._datasets import IMAGE_EXTENSIONS, load_image_folder

    if by_class:
        return load_image_folder(folder)
    root = Path(folder)
    if not root.is_dir():
        raise _UserError(f"{folder} is not a folder")
    paths = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise _UserError(f"no images found in {folder}")
    return paths, None


def _describe(args):
    from ._explain import concept_distribution, decomposition_quality

    paths, labels = _folder_images(args.folder, args.by_class)
    splice = _splice(args, len(paths))
    W = splice.fit_transform(paths)
    names = splice.get_feature_names_out()
    dist = concept_distribution(W, names, labels)
    dist = dist[dist["prevalence"] > 0].groupby("group", sort=False).head(args.top).reset_index(drop=True)
    quality = decomposition_quality(W, splice.embed(paths), splice, labels)
    if args.plot:
        _plot(dist, names, W, labels, args.plot, args.top)
    return dist, quality


def _plot(dist, names, W, labels, path, top):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._plotting import plot_concepts, plot_prevalence

    if labels is None:
        ax = plot_concepts(dist["concept"], dist["prevalence"], top=top, title="prevalence of concepts")
        ax.set_xlabel("prevalence")
    else:
        from ._explain import concept_distribution

        chosen = list(dict.fromkeys(dist["concept"]))  # each class's top concepts
        ax = plot_prevalence(concept_distribution(W, names, labels), chosen, title="prevalence by class")
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=100)
    plt.close(ax.figure)


def _print_frames(dist, quality, fmt: str, out) -> None:
    if fmt == "json":
        json.dump({"summary": quality.to_dict("records"), "concepts": dist.to_dict("records")},
                  out, indent=2, default=str)
        out.write("\n")
    elif fmt == "csv":
        dist.to_csv(out, index=False)
    else:
        for row in quality.itertuples(index=False):
            out.write(f"{row.group}: {row.n_samples} images, mean L0 {row.mean_l0:.1f}, "
                      f"mean cosine fidelity {row.mean_fidelity:.3f}\n")
            sub = dist[dist["group"] == row.group]
            for r in sub.itertuples(index=False):
                out.write(f"  {r.prevalence:6.1%}  {r.mean_weight:7.4f}  {r.concept}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sklearn-splice``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "decompose":
            rows = _decompose(args)
        else:
            dist, quality = _describe(args)
    except (_UserError, FileNotFoundError, ValueError, TypeError, RuntimeError, ImportError) as exc:
        print(f"sklearn-splice: error: {exc}", file=sys.stderr)
        return 2
    if args.command == "decompose":
        _print(rows, args.format, sys.stdout)
    else:
        _print_frames(dist, quality, args.format, sys.stdout)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
