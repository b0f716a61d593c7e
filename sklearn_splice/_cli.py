"""Command line: ``sklearn-splice decompose IMAGE...`` prints each image's top concepts."""

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sklearn-splice",
        description="Decompose CLIP embeddings into sparse, nonnegative concept weights (SpLiCE).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    dec = sub.add_parser("decompose", help="print the top concepts of each image")
    dec.add_argument("images", nargs="+", help="image files")
    dec.add_argument("--top", type=int, default=10, help="concepts shown per image (default 10)")
    dec.add_argument("--l1-penalty", type=float, default=0.25, help="sparsity penalty (default 0.25)")
    dec.add_argument(
        "--vocabulary", default="laion",
        help=f"one of {sorted(VOCABULARIES)} or a text file with one concept per line",
    )
    dec.add_argument("--vocabulary-size", type=int, default=10000, help="shipped vocabularies only")
    dec.add_argument("--model", default="ViT-B-32", help="open_clip architecture or config JSON")
    dec.add_argument("--pretrained", default="laion2b_s34b_b79k", help="open_clip tag or checkpoint file")
    dec.add_argument(
        "--image-mean", choices=["reference", "fit"], default="reference",
        help="centre with the shipped MSCOCO mean (default) or the mean of the given images",
    )
    dec.add_argument("--device", default="auto")
    dec.add_argument("--format", choices=["table", "json", "csv"], default="table")
    dec.add_argument("--quiet", action="store_true", help="no progress output")
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


def _decompose(args) -> list[dict]:
    from ._encoder import OpenCLIPEncoder
    from ._transformer import SpliceTransformer

    if args.top < 1:
        raise _UserError("--top must be at least 1")
    if args.image_mean == "fit" and len(args.images) < 2:
        raise _UserError("--image-mean fit needs at least 2 images (one image is its own mean)")
    encoder = OpenCLIPEncoder(
        args.model, pretrained=args.pretrained, device=args.device, verbose=not args.quiet
    )
    splice = SpliceTransformer(
        encoder,
        vocabulary=_vocabulary(args.vocabulary),
        vocabulary_size=args.vocabulary_size,
        l1_penalty=args.l1_penalty,
        image_mean=args.image_mean,
        device=args.device,
        verbose=not args.quiet,
    )
    W = splice.fit_transform(list(args.images)).tocsr()
    names = splice.get_feature_names_out()
    rows = []
    for path, i in zip(args.images, range(W.shape[0])):
        row = W.getrow(i)
        order = np.argsort(-row.data, kind="stable")[: args.top]
        concepts = [(str(names[row.indices[j]]), float(row.data[j])) for j in order]
        rows.append({"image": path, "l0": int(row.nnz), "concepts": concepts})
    return rows


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sklearn-splice``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        rows = _decompose(args)
    except (_UserError, FileNotFoundError, ValueError, TypeError, RuntimeError) as exc:
        print(f"sklearn-splice: error: {exc}", file=sys.stderr)
        return 2
    _print(rows, args.format, sys.stdout)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
