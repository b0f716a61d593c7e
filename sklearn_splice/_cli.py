"""Command line: ``sklearn-splice decompose IMAGE...``, ``sklearn-splice describe FOLDER``,
``sklearn-splice decompose-dataset SHARD... --out DIR`` and
``sklearn-splice vocabulary CAPTIONS.txt --out vocab.txt``."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ._errors import WeightsUnavailableError
from ._files import regular_file_problem
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


def _add_model_options(sub: argparse.ArgumentParser, image_mean: str, top: bool = True) -> None:
    if top:
        sub.add_argument(
            "--top", type=_count, default=10,
            help="concepts shown per image or group (default 10)",
        )
    sub.add_argument(
        "--l1-penalty", type=_penalty, default=0.25, help="sparsity penalty (default 0.25)"
    )
    sub.add_argument(
        "--vocabulary", default="laion",
        help=f"one of {sorted(VOCABULARIES)} or a UTF-8 text file with one concept per line",
    )
    sub.add_argument(
        "--vocabulary-size", type=_count, default=None,
        help="keep the N most frequent concepts: the last N lines of a vocabulary file, "
        "which lists the least frequent first (default: 10000 of a shipped vocabulary, "
        "all of a file)",
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
    desc = sub.add_parser(
        "describe",
        help="print the concept distribution of a folder of images or of a decompose-dataset "
        "output",
    )
    desc.add_argument(
        "folder",
        help="a folder of images (with --by-class, class_name/image.jpg), or the output "
        "folder or URL of decompose-dataset (read as it is: the model options do not apply)",
    )
    desc.add_argument("--by-class", action="store_true", help="one distribution per class folder")
    desc.add_argument("--plot", metavar="PNG", help="also save a chart of the distribution")
    _add_model_options(desc, "fit")
    data = sub.add_parser(
        "decompose-dataset", help="decompose the images of tar shards into Parquet files",
        description="Decompose every image (or .npy embedding) of webdataset-style tar shards "
        "into OUT/weights/ and OUT/inputs/ (one Parquet partition per shard) and "
        "OUT/_splice_run.json, shard by shard, on a dask cluster with --scheduler. "
        "Read the result with `sklearn-splice describe OUT`.",
    )
    data.add_argument("shards", nargs="+", metavar="SHARD", help="tar shard paths or URLs")
    data.add_argument("--out", required=True, metavar="DIR", help="output folder or URL")
    data.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="a dask scheduler (e.g. tcp://10.0.0.1:8786); default: this process",
    )
    data.add_argument(
        "--resume", action=argparse.BooleanOptionalAction, default=True,
        help="finish a run already in DIR: only its missing shards are decomposed (default); "
        "--no-resume refuses an existing run",
    )
    data.add_argument(
        "--batch-size", type=_count, default=256, help="images decomposed at a time (default 256)"
    )
    _add_model_options(data, "reference", top=False)
    voc = sub.add_parser(
        "vocabulary", help="build a concept vocabulary from your own captions",
        description="Count the words and two-word phrases of your captions and write the most "
        "frequent ones, least frequent first, one per line: a file for --vocabulary.",
    )
    voc.add_argument(
        "captions", nargs="+", metavar="CAPTIONS",
        help="UTF-8 text files with one caption per line; - reads standard input",
    )
    voc.add_argument("--out", required=True, metavar="FILE", help="the vocabulary file to write")
    voc.add_argument(
        "--max-concepts", type=_count, default=10000, metavar="N",
        help="concepts kept, the most frequent (default 10000)",
    )
    voc.add_argument(
        "--min-count", type=_count, default=2, metavar="N",
        help="leave out words and phrases that occur fewer times (default 2)",
    )
    voc.add_argument(
        "--ngrams", type=int, choices=[1, 2], default=2,
        help="longest concept in words: 1 for words only, 2 for words and phrases (default 2)",
    )
    voc.add_argument(
        "--keep-stop-words", action="store_true",
        help="keep common words such as 'the' and 'of', on their own and in phrases",
    )
    voc.add_argument("--quiet", action="store_true", help="no summary on stderr")
    for command in (dec, desc, data, voc):
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
    problem = regular_file_problem(path)
    if problem is not None:
        raise _UserError(f"{what} {path} {problem}")


def _vocabulary(arg: str, size: int | None):
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
    # a file lists its least frequent concepts first, like the shipped ones
    return words if size is None else words[-size:]


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

    if args.image_mean == "fit" and n_images is not None and n_images < 2:
        raise _UserError("--image-mean fit needs at least 2 images (one image is its own mean)")
    vocabulary = _vocabulary(args.vocabulary, args.vocabulary_size)
    _check_pretrained(args.pretrained)
    encoder = OpenCLIPEncoder(
        args.model, pretrained=args.pretrained, pretrained_tag=args.pretrained_tag,
        device=args.device, verbose=not args.quiet,
    )
    _check_reference_mean(args, encoder)
    return SpliceTransformer(
        encoder,
        vocabulary=vocabulary,
        vocabulary_size=10000 if args.vocabulary_size is None else args.vocabulary_size,
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


def _client(address: str | None):
    """A dask client of the scheduler at ``address`` (None: the job runs in this process)."""
    if address is None:
        return contextlib.nullcontext()
    try:
        from distributed import Client
    except ImportError as exc:
        raise _UserError('--scheduler needs distributed: pip install "sklearn-splice[scale]"') \
            from exc
    try:
        # not the process's default: a client that fails to connect would otherwise leave
        # dask's global scheduler set to it, and later computations would wait on it
        return Client(address, set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:  # unreachable, or not an address
        raise _UserError(f"--scheduler {address}: cannot connect ({exc})") from exc


def _stored_mean(args):
    """The mean of a run already in --out, so that resuming it does not fit the mean again;
    None for a new run. --no-resume on an existing run fails here, before any work."""
    from ._files import url_to_fs
    from ._run_metadata import METADATA_FILE, read_run_metadata

    fs, root = url_to_fs(args.out)
    if not fs.exists(f"{root.rstrip('/')}/{METADATA_FILE}"):
        return None
    if not args.resume:
        raise _UserError(
            f"--out {args.out} already holds a decomposition run: --resume finishes it, or "
            "write to another folder"
        )
    return np.asarray(read_run_metadata(args.out)["mean"], dtype=np.float64)


def _decompose_dataset(args):
    from ._dataset import decompose_dataset
    from ._files import is_url

    for path in args.shards:
        if not is_url(path) and not any(c in path for c in "*?["):
            _regular_file(path, "shard")
    if not is_url(args.out) and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise _UserError(f"--out {args.out} is a file, not a folder")
    mean = _stored_mean(args)
    splice = _splice(args, None)
    if args.image_mean == "fit" and mean is not None:
        splice.set_params(image_mean=mean)  # the run's own mean: no second pass to refit it
    with _client(args.scheduler) as client:
        return decompose_dataset(
            list(args.shards), splice, args.out, client=client, resume=args.resume,
            batch_size=args.batch_size, progress=not args.quiet,
        )


def _print_summary(summary, fmt: str, out) -> None:
    record = {
        "output": summary.output,
        "images": summary.images,
        "unreadable": summary.unreadable,
        "shards_done": summary.shards_done,
        "shards_skipped": summary.shards_skipped,
        "failed_shards": [list(f) for f in summary.failed_shards],
        "seconds": round(summary.seconds, 3),
        "images_per_second": round(summary.images_per_second, 3),
    }
    if fmt == "json":
        json.dump(record, out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out)
        del record["failed_shards"]
        writer.writerow(list(record))
        writer.writerow(list(record.values()))
    else:
        out.write(f"{summary}\n")


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
    from ._explain import concept_distribution

    full = None if labels is None else concept_distribution(W, names, labels)
    _save_plot(dist, full, path, top)


def _save_plot(dist, by_class, path, top):
    """Bars of ``dist``'s prevalences, or, given the full distribution per class, the
    prevalence in each class of the concepts that ``dist`` shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._plotting import plot_concepts, plot_prevalence

    if by_class is None:
        ax = plot_concepts(
            dist["concept"], dist["prevalence"], top=top, title="prevalence of concepts"
        )
        ax.set_xlabel("prevalence")
    else:
        chosen = list(dict.fromkeys(dist["concept"]))  # each class's top concepts
        ax = plot_prevalence(by_class, chosen, title="prevalence by class")
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=100)
    plt.close(ax.figure)


def _print_frames(dist, quality, fmt: str, out) -> None:
    if fmt == "json":
        json.dump({"summary": quality.to_dict("records"), "concepts": dist.to_dict("records")},
                  out, indent=2, default=str)
        out.write("\n")
    elif fmt == "csv":
        # one table: each concept row carries its group's sparsity and fidelities
        summary = quality.drop(columns="n_samples")
        dist.merge(summary, on="group", how="left", sort=False).to_csv(out, index=False)
    else:
        for row in quality.itertuples(index=False):
            out.write(
                f"{row.group}: {row.n_samples} images, mean L0 {row.mean_l0:.1f}, "
                f"mean cosine fidelity {row.mean_fidelity:.3f} (mean alone: "
                f"{row.mean_baseline_fidelity:.3f}; centred parts: "
                f"{row.mean_centred_fidelity:.3f})\n"
            )
            sub = dist[dist["group"] == row.group]
            for r in sub.itertuples(index=False):
                out.write(f"  {r.prevalence:6.1%}  {r.mean_weight:7.4f}  {r.concept}\n")


def _is_decomposition(folder: str) -> bool:
    """A URL, or a folder holding run metadata: the output of decompose-dataset."""
    from ._files import is_url
    from ._run_metadata import METADATA_FILE

    return is_url(folder) or os.path.isfile(os.path.join(folder, METADATA_FILE))


def _run_settings(meta: dict, dataset) -> dict:
    """What a reader of the report needs to know of the run (not the mean or concepts)."""
    backbone = meta.get("backbone") or {}
    return {
        "output": dataset.outputs[0],
        "architecture": backbone.get("architecture"),
        "pretrained": backbone.get("pretrained"),
        "encoder_identity": meta.get("encoder_identity"),
        "modality": meta.get("modality"),
        "n_concepts": len(dataset.concepts),
        "vocabulary_sha256": meta.get("vocabulary_sha256"),
        "l1_penalty": meta.get("l1_penalty"),
        "solver": meta.get("solver"),
        "tol": meta.get("tol"),
        "exclude_concepts": meta.get("exclude_concepts"),
        "mean_sha256": meta.get("mean_sha256"),
        "n_shards": len(meta.get("shards", [])),
        "n_shards_done": len(dataset.shard_ids),
        "created": meta.get("created"),
        "library_version": meta.get("library_version"),
    }


def _describe_decomposition(args):
    """Counts, top concepts overall and per label, and settings of a decompose-dataset output."""
    import pandas as pd

    from ._dataset_reading import read_decomposition
    from ._explain import concept_distribution

    if args.plot:
        _check_plot(args.plot)
    dataset = read_decomposition(args.folder)
    per_label = dataset.input_counts(by_label=True)
    labels = per_label[per_label["group"].notna()]
    unlabelled = int(per_label.loc[per_label["group"].isna(), "n_decomposed"].sum())
    if args.by_class and labels.empty:
        raise _UserError(f"--by-class: the inputs of {args.folder} have no labels")
    overall = per_label[["n_inputs", "n_decomposed", "n_unreadable"]].sum()
    counts = [pd.DataFrame({"group": ["all"], **{k: [int(v)] for k, v in overall.items()}})]
    frames = [concept_distribution(dataset)]
    by_class = None
    if not labels.empty and unlabelled:
        warnings.warn(
            f"{unlabelled:,} decomposed inputs of {args.folder} have no label: no "
            "distribution per label is shown"
        )
    elif not labels.empty:
        counts.append(labels.astype({"group": "int64"}).astype({"group": object}))
        by_class = concept_distribution(dataset, y="label")
        frames.append(by_class)
    dist = pd.concat(frames, ignore_index=True)
    dist = dist[dist["prevalence"] > 0].groupby("group", sort=False).head(args.top)
    dist = dist.reset_index(drop=True)
    if args.plot:
        shown = dist if by_class is None else dist[dist["group"] != "all"]
        _save_plot(shown, by_class, args.plot, args.top)
    counts = pd.concat(counts, ignore_index=True)
    return _run_settings(dataset.metadata, dataset), counts, dist


def _print_decomposition(report, fmt: str, out) -> None:
    settings, counts, dist = report
    if fmt == "json":
        json.dump(
            {"run": settings, "summary": counts.to_dict("records"),
             "concepts": dist.to_dict("records")},
            out, indent=2, default=str,
        )
        out.write("\n")
    elif fmt == "csv":
        dist.merge(counts, on="group", how="left", sort=False).to_csv(out, index=False)
    else:
        backbone = settings["architecture"] or settings["encoder_identity"] or "custom encoder"
        if settings["pretrained"]:
            backbone += f" ({settings['pretrained']})"
        out.write(
            f"run: {backbone}, {settings['modality']}, {settings['n_concepts']:,} concepts "
            f"(vocabulary sha256 {str(settings['vocabulary_sha256'])[:12]}), l1_penalty "
            f"{settings['l1_penalty']}, solver {settings['solver']}, tol {settings['tol']}; "
            f"{settings['n_shards_done']} of {settings['n_shards']} shards done\n"
        )
        for row in counts.itertuples(index=False):
            name = "all" if row.group == "all" else f"label {row.group}"
            out.write(
                f"{name}: {_plural(row.n_inputs, 'image')}, {row.n_decomposed:,} decomposed, "
                f"{row.n_unreadable:,} unreadable\n"
            )
            sub = dist[dist["group"] == row.group]
            for r in sub.itertuples(index=False):
                out.write(f"  {r.prevalence:6.1%}  {r.mean_weight:7.4f}  {r.concept}\n")


def _check_out(path: str) -> None:
    """Fail before the counting if the vocabulary could not be written at the end."""
    target = os.path.realpath(path)  # through a symbolic link, to the file it names
    if os.path.isdir(target):
        raise _UserError(
            f"--out {path} is a folder; give a file name such as {Path(path) / 'vocab.txt'}"
        )
    if os.path.exists(target) and not os.path.isfile(target):
        raise _UserError(f"--out {path} is not a regular file (a pipe or a device?)")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        shown = folder if os.path.islink(path) else (os.path.dirname(path) or ".")
        problem = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise _UserError(f"--out {path}: folder {shown} {problem}")
    writable = os.access(folder, os.W_OK | os.X_OK)
    if not writable or (os.path.exists(target) and not os.access(target, os.W_OK)):
        raise _UserError(f"--out {path}: no permission to write there")


def _stdin_lines() -> Iterator[bytes]:
    if sys.stdin is None:  # started with stdin closed (`<&-`)
        raise _UserError("- reads the captions from standard input, but it is closed")
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return iter(buffer)  # bytes, so that the UTF-8 check is ours, with its offset
    return (line.encode("utf-8", "surrogateescape") for line in sys.stdin)


def _caption_lines(path: str) -> Iterator[str]:
    """The non-blank lines of a UTF-8 caption file (``-``: stdin), stripped, as a stream."""
    name = "standard input" if path == "-" else f"captions file {path}"
    fh = None
    try:
        lines = _stdin_lines() if path == "-" else (fh := open(path, "rb"))
        offset = 0
        for number, raw in enumerate(lines, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _UserError(
                    f"{name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                    f"{offset + exc.start}, line {number}); save it as UTF-8"
                ) from None
            if offset == 0:
                text = text.removeprefix("\ufeff")  # a byte-order mark is no part of a caption
            offset += len(raw)
            # a line read up to "\n" may still hold other line breaks ("\r" alone, U+2028)
            for caption in text.splitlines():
                caption = caption.strip()
                if caption:
                    yield caption
    finally:
        if fh is not None:
            fh.close()


def _write_atomically(path: str, lines: Sequence[str]) -> None:
    """Replace the file whole: a failed or interrupted run leaves the previous one."""
    from ._files import replace_file

    replace_file(path, lambda fh: fh.write("".join(f"{line}\n" for line in lines).encode()))


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _build_vocabulary(args) -> str:
    """Count the captions, write the vocabulary file; the summary line."""
    from ._vocabulary_builder import count_concepts

    _check_out(args.out)
    if args.captions.count("-") > 1:
        raise _UserError("- (standard input) can be given only once")
    for path in args.captions:
        if path != "-":
            _regular_file(path, "captions file")
            if os.path.exists(args.out) and os.path.samefile(path, args.out):
                raise _UserError(f"--out {args.out} is the captions file {path}; it would be lost")
    found = count_concepts(
        (line for path in args.captions for line in _caption_lines(path)),
        max_concepts=args.max_concepts,
        ngram_range=(1, args.ngrams),
        min_count=args.min_count,
        stop_words=None if args.keep_stop_words else "english",
    )
    sources = " and ".join(
        "standard input" if p == "-" else p for p in args.captions[:3]
    ) + (f" and {len(args.captions) - 3} more files" if len(args.captions) > 3 else "")
    if found.n_captions == 0:
        raise _UserError(f"{sources}: no captions (one per line expected)")
    if not found.concepts:
        raise _UserError(
            f"no word or phrase occurs at least {args.min_count} times (--min-count) in the "
            f"{_plural(found.n_captions, 'caption')} of {sources}"
            + ("" if args.keep_stop_words else " once stop words are left out")
        )
    if len(found.concepts) < 2:
        warnings.warn(
            f"{args.out} will hold a single concept ({found.concepts[0]!r}); decompose and "
            "describe need at least 2: lower --min-count or give more captions"
        )
    _write_atomically(args.out, found.concepts)
    n_phrases = sum(" " in concept for concept in found.concepts)
    kinds = _plural(len(found.concepts) - n_phrases, "word")
    if args.ngrams > 1:
        kinds += f" and {_plural(n_phrases, 'phrase')}"
    rarer = found.n_candidates - len(found.concepts)
    low, high = found.counts[0], found.counts[-1]
    counts = f"{high:,} times each" if low == high else f"{low:,} to {high:,} times"
    return (
        f"wrote {_plural(len(found.concepts), 'concept')} to {args.out} ({kinds}, occurring "
        f"{counts}) from "
        f"{_plural(found.n_captions, 'caption')}; {rarer:,} rarer ones left out"
    )


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
    report = None
    try:
        if args.command == "vocabulary":
            summary = _build_vocabulary(args)
        elif args.command == "decompose":
            rows = _decompose(args)
        elif args.command == "decompose-dataset":
            summary = _decompose_dataset(args)
        elif _is_decomposition(args.folder):
            report = _describe_decomposition(args)
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
    if args.command == "vocabulary":  # the file is the output: stdout stays empty
        if not args.quiet:
            _say(summary)
        return 0
    with _escaped_stdout() as out:
        if args.command == "decompose":
            _print(rows, args.format, out)
        elif args.command == "decompose-dataset":
            _print_summary(summary, args.format, out)
        elif report is not None:
            _print_decomposition(report, args.format, out)
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
