"""Command line: ``sklearn-splice decompose IMAGE...`` and ``sklearn-splice describe FOLDER``."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import re
import stat
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._errors import WeightsUnavailableError
from ._vocabulary import REFERENCE_MEANS, VOCABULARIES

PROG = "sklearn-splice"
#: Exit statuses: a usage or input error, Ctrl-C (128 + SIGINT), and a reader that went
#: away, e.g. ``| head`` (128 + SIGPIPE, what a shell shows for a process killed by it).
EXIT_ERROR, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 2, 130, 141


class _UserError(Exception):
    """A mistake in the command line: reported in one line, without a traceback."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints the whole usage)."""

    def error(self, message: str):
        raise _UserError(f"{message} (see {self.prog} --help)")


def _number(text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None


def _count(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _penalty(text: str) -> float:
    value = _number(text, float)
    if not math.isfinite(value) or value < 0:  # float() also takes "nan" and "inf"
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _add_model_options(sub: argparse.ArgumentParser, image_mean: str) -> None:
    sub.add_argument(
        "--top", type=_count, default=10, help="concepts shown per image or group (default 10)"
    )
    sub.add_argument(
        "--l1-penalty", type=_penalty, default=0.25, help="sparsity penalty (default 0.25)"
    )
    sub.add_argument(
        "--vocabulary", default="laion",
        help=f"one of {sorted(VOCABULARIES)} or a UTF-8 text file with one concept per line",
    )
    sub.add_argument(
        "--vocabulary-size", type=_count, default=10000, help="shipped vocabularies only"
    )
    sub.add_argument("--model", default="ViT-B-32", help="open_clip architecture or config JSON")
    sub.add_argument(
        "--pretrained", default="laion2b_s34b_b79k", help="open_clip tag or checkpoint file"
    )
    sub.add_argument(
        "--pretrained-tag", metavar="TAG",
        help="with --pretrained FILE: the open_clip tag whose weights the file holds, "
        "so that its reference mean applies (e.g. laion2b_s34b_b79k)",
    )
    sub.add_argument(
        "--image-mean", choices=["reference", "fit"], default=image_mean,
        help="centre with the shipped MSCOCO mean or the mean of the given images "
        f"(default {image_mean})",
    )
    sub.add_argument("--device", default="auto")
    sub.add_argument("--format", choices=["table", "json", "csv"], default="table")
    sub.add_argument("--quiet", action="store_true", help="no progress output on stderr")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
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
    for command in (dec, desc):
        command.set_defaults(parser=command)  # so that a misplaced option names its command
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _regular_file(path: str, what: str) -> None:
    """Refuse what is not a regular file before opening it: reading a FIFO would block."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise _UserError(f"{what} {path}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(mode):
        raise _UserError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise _UserError(f"{what} {path} is not a regular file (a pipe or a device?)")


def _vocabulary(arg: str):
    if arg in VOCABULARIES:
        return arg
    if not os.path.lexists(arg):
        raise _UserError(
            f"--vocabulary {arg!r} is neither one of {sorted(VOCABULARIES)} nor an existing file"
        )
    _regular_file(arg, "--vocabulary")
    with open(arg, "rb") as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is no part of the first concept
    except UnicodeDecodeError as exc:
        raise _UserError(
            f"--vocabulary {arg} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from exc
    words = [line.strip() for line in text.splitlines() if line.strip()]
    if not words:
        raise _UserError(f"--vocabulary {arg} holds no concepts (one per line expected)")
    return words


_CHECKPOINTS = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def _check_pretrained(path: str) -> None:
    """A --pretrained that names a file must be one (a folder or a pipe is not a checkpoint)."""
    if os.path.exists(path) or os.sep in path or path.endswith(_CHECKPOINTS):
        _regular_file(path, "--pretrained")


def _check_reference_mean(args, encoder) -> None:
    """--image-mean reference needs a backbone with a shipped mean; say how in CLI terms."""
    if args.image_mean != "reference":
        return
    arch, tag = encoder.backbone()  # no weights are loaded
    if tag is None:
        raise _UserError(
            f"--image-mean reference needs to know which weights {args.pretrained} holds: add "
            "--pretrained-tag TAG (e.g. laion2b_s34b_b79k), or use --image-mean fit"
        )
    if (arch, tag) not in REFERENCE_MEANS:
        shipped = ", ".join(f"{m} {t}" for m, t in REFERENCE_MEANS)
        raise _UserError(
            f"no reference mean is shipped for {arch} {tag!r} (only for {shipped}); "
            "use --image-mean fit"
        )


def _splice(args, n_images: int):
    from ._encoder import OpenCLIPEncoder
    from ._transformer import SpliceTransformer

    if args.image_mean == "fit" and n_images < 2:
        raise _UserError("--image-mean fit needs at least 2 images (one image is its own mean)")
    vocabulary = _vocabulary(args.vocabulary)
    _check_pretrained(args.pretrained)
    encoder = OpenCLIPEncoder(
        args.model, pretrained=args.pretrained, pretrained_tag=args.pretrained_tag,
        device=args.device, verbose=not args.quiet,
    )
    _check_reference_mean(args, encoder)
    return SpliceTransformer(
        encoder,
        vocabulary=vocabulary,
        vocabulary_size=args.vocabulary_size,
        l1_penalty=args.l1_penalty,
        image_mean=args.image_mean,
        device=args.device,
        verbose=not args.quiet,
    )


def _check_images(paths: Sequence[str]) -> None:
    """Name a missing path, a folder or a pipe among the images before the model loads."""
    from ._images import check_regular_file

    for i, path in enumerate(paths):
        check_regular_file(path, i)


def _decompose(args) -> list[dict]:
    from ._explain import top_concepts

    _check_images(args.images)
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
        records = [
            {**r, "concepts": [{"concept": c, "weight": w} for c, w in r["concepts"]]} for r in rows
        ]
        json.dump(records, out, indent=2)
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
    from ._datasets import IMAGE_EXTENSIONS, load_image_folder

    if by_class:
        return load_image_folder(folder)
    root = Path(folder)
    if not root.is_dir():
        raise _UserError(f"{folder} is not a folder")
    paths = sorted(
        str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not paths:
        raise _UserError(f"no images found in {folder}")
    return paths, None


def _check_plot(path: str) -> None:
    """Fail before the (long) encoding if the chart could not be saved at the end."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError as exc:
        raise _UserError("--plot needs matplotlib: pip install matplotlib") from exc
    target = Path(path)
    suffix = target.suffix.lower().lstrip(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise _UserError(
            f"--plot {path}: unknown image format {suffix!r} (use one of {sorted(formats)})"
        )
    folder = target.parent
    if target.is_dir():
        raise _UserError(
            f"--plot {path} is a folder; give a file name such as {target / 'chart.png'}"
        )
    if not folder.is_dir():
        raise _UserError(f"--plot {path}: folder {folder} does not exist")
    writable = os.access(folder, os.W_OK | os.X_OK)
    if not writable or (target.exists() and not os.access(target, os.W_OK)):
        raise _UserError(f"--plot {path}: no permission to write there")


def _describe(args):
    from ._explain import concept_distribution, decomposition_quality

    if args.plot:
        _check_plot(args.plot)
    paths, labels = _folder_images(args.folder, args.by_class)
    splice = _splice(args, len(paths))
    W = splice.fit_transform(paths)
    names = splice.get_feature_names_out()
    dist = concept_distribution(W, names, labels)
    shown = dist[dist["prevalence"] > 0].groupby("group", sort=False).head(args.top)
    dist = shown.reset_index(drop=True)
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
        ax = plot_concepts(
            dist["concept"], dist["prevalence"], top=top, title="prevalence of concepts"
        )
        ax.set_xlabel("prevalence")
    else:
        from ._explain import concept_distribution

        chosen = list(dict.fromkeys(dist["concept"]))  # each class's top concepts
        ax = plot_prevalence(
            concept_distribution(W, names, labels), chosen, title="prevalence by class"
        )
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


def _one_line(text: str) -> str:
    """A message as one line: a multi-line exception text must not look like several."""
    return re.sub(r"\s*[\r\n]+\s*", " ", str(text)).strip()


def _say(text: str) -> None:
    """One line on stderr; a stderr that is gone is no reason for a traceback."""
    line = f"{PROG}: {_one_line(text)}"
    line = line.encode("utf-8", "backslashreplace").decode("utf-8")  # undecodable path bytes
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _is_user_error(exc: BaseException) -> bool:
    """Errors a user can fix (input, parameters, files, missing packages), not bugs."""
    if isinstance(exc, BrokenPipeError):  # handled by main, like a closed stdout
        return False
    if isinstance(exc, ImportError):  # a missing dependency, not a broken import of ours
        return not (exc.name or "").startswith(__package__ or "sklearn_splice")
    return isinstance(exc, (_UserError, ValueError, OSError))


def _weights_advice(exc: WeightsUnavailableError) -> str:
    return (
        f"cannot download the {exc.architecture} weights {exc.tag!r} ({exc.reason}); "
        f"offline, pass --pretrained /path/to/checkpoint --pretrained-tag {exc.tag}"
    )


@contextlib.contextmanager
def _one_line_warnings():
    """Warnings of the library and its dependencies as one line each, like the errors."""
    def show(message, category, filename, lineno, file=None, line=None):
        _say(f"warning: {message}")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _escaped_stdout():
    """stdout that writes undecodable path bytes (and what its encoding lacks) as escapes.

    A path given as bytes that are not UTF-8 would otherwise stop a strict stdout with a
    UnicodeEncodeError, or put bytes that are not text into the table or CSV output
    (depending on the locale); JSON escapes them itself.
    """
    out = sys.stdout
    errors = getattr(out, "errors", None)
    if errors is None or not hasattr(out, "reconfigure"):
        yield out
        return
    out.reconfigure(errors="backslashreplace")
    try:
        yield out
    finally:
        out.reconfigure(errors=errors)


def _silence_stdout() -> None:
    """Point stdout at devnull: the reader is gone and the flush at exit must not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured)
        pass


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = _parse(argv)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except _UserError as exc:
        _say(f"error: {exc}")
        return EXIT_ERROR
    try:
        if args.command == "decompose":
            rows = _decompose(args)
        else:
            dist, quality = _describe(args)
    except WeightsUnavailableError as exc:
        _say(f"error: {_weights_advice(exc)}")
        return EXIT_ERROR
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        _say(f"error: {exc}")
        return EXIT_ERROR
    with _escaped_stdout() as out:
        if args.command == "decompose":
            _print(rows, args.format, out)
        else:
            _print_frames(dist, quality, args.format, out)
        out.flush()  # a closed pipe shows here, where it is handled, not at exit
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sklearn-splice``.

    Errors a user can fix (bad arguments, unreadable inputs, missing files, weights that
    cannot be downloaded) are one line on stderr; anything else is a bug and keeps its
    traceback.

    Parameters
    ----------
    argv : sequence of str, default=None
        The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    status : int
        0 on success (and for ``--help``); 2 for a usage or input error; 130 when
        interrupted (Ctrl-C); 141 when the reader of the output went away (a closed pipe,
        as in ``| head``), the status a shell shows for a process killed by SIGPIPE.
    """
    try:
        with _one_line_warnings():
            return _run(argv)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
