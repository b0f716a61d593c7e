import csv
import io
import json

import pytest

from sklearn_splice._cli import main

WORDS = ["cat", "dog", "tree", "car", "sky", "sea", "grass", "house", "road", "snow"]


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("\n".join(WORDS) + "\n\n")
    return str(path)


def run(argv, capsys):
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def base_args(tiny_clip, vocab_file, images):
    config, checkpoint = tiny_clip
    return [
        "decompose", *images, "--model", config, "--pretrained", checkpoint, "--vocabulary",
        vocab_file, "--image-mean", "fit", "--l1-penalty", "0.05", "--device", "cpu", "--quiet",
    ]


def test_json_output_lists_top_concepts(tiny_clip, vocab_file, image_files, capsys):
    paths, _ = image_files
    args = base_args(tiny_clip, vocab_file, paths[:4]) + ["--format", "json", "--top", "3"]
    status, out, err = run(args, capsys)
    assert status == 0, err
    rows = json.loads(out)
    assert [r["image"] for r in rows] == paths[:4]
    for r in rows:
        weights = [c["weight"] for c in r["concepts"]]
        assert len(weights) <= 3 and weights == sorted(weights, reverse=True)
        assert all(c["concept"] in WORDS for c in r["concepts"]) and r["l0"] >= len(weights)


def test_csv_and_table(tiny_clip, vocab_file, image_files, capsys):
    paths, _ = image_files
    status, out, _ = run(base_args(tiny_clip, vocab_file, paths[:2]) + ["--format", "csv"], capsys)
    assert status == 0
    table = list(csv.reader(io.StringIO(out)))
    assert table[0] == ["image", "rank", "concept", "weight"] and len(table) > 1
    status, out, _ = run(base_args(tiny_clip, vocab_file, paths[:2]), capsys)
    assert status == 0 and paths[0] in out and "concepts)" in out


def test_user_errors_are_one_line(tiny_clip, vocab_file, image_files, capsys, tmp_path):
    paths, _ = image_files
    args = base_args(tiny_clip, vocab_file, [paths[0], str(tmp_path / "no.jpg")])
    status, out, err = run(args, capsys)
    assert status == 2 and out == ""
    assert err.startswith("sklearn-splice: error: Image 1") and "no.jpg" in err
    assert len(err.strip().splitlines()) == 1
    status, _, err = run(base_args(tiny_clip, vocab_file, paths[:1]), capsys)
    assert status == 2 and "at least 2 images" in err
    args = base_args(tiny_clip, vocab_file, paths[:2])
    args[args.index("--vocabulary") + 1] = "wordnet"
    status, _, err = run(args, capsys)
    assert status == 2 and "--vocabulary 'wordnet'" in err


@pytest.fixture
def class_folder(image_files, tmp_path):
    import shutil

    paths, labels = image_files
    root = tmp_path / "photos"
    for p, label in zip(paths, labels):
        dest = root / ("china" if label == 0 else "flower")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)
    return root


def describe_args(tiny_clip, vocab_file, folder, *extra):
    config, checkpoint = tiny_clip
    return [
        "describe", str(folder), "--model", config, "--pretrained", checkpoint, "--vocabulary",
        vocab_file, "--l1-penalty", "0.05", "--device", "cpu", *extra,
    ]


def test_describe_by_class_json_and_plot(tiny_clip, vocab_file, class_folder, capsys, tmp_path):
    png = tmp_path / "dist.png"
    status, out, err = run(
        describe_args(tiny_clip, vocab_file, class_folder, "--by-class", "--format", "json",
                      "--top", "3", "--plot", str(png), "--quiet"),
        capsys,
    )
    assert status == 0, err
    report = json.loads(out)
    assert [r["group"] for r in report["summary"]] == ["china", "flower"]
    assert all(r["n_samples"] == 6 and 0 < r["mean_fidelity"] <= 1 for r in report["summary"])
    for r in report["summary"]:
        assert -1 <= r["mean_baseline_fidelity"] <= 1 and -1 <= r["mean_centred_fidelity"] <= 1
    per_group = {}
    for r in report["concepts"]:
        per_group.setdefault(r["group"], []).append(r)
    assert all(len(v) <= 3 for v in per_group.values())
    assert all(r["concept"] in WORDS and r["prevalence"] > 0 for r in report["concepts"])
    assert png.stat().st_size > 1000 and err == ""


def test_describe_flat_folder_table_shows_progress(tiny_clip, vocab_file, class_folder, capsys):
    status, out, err = run(describe_args(tiny_clip, vocab_file, class_folder), capsys)
    assert status == 0
    assert out.startswith("all: 12 images, mean L0")
    assert "encoding images" in err  # tqdm progress on stderr unless --quiet


def test_describe_shows_the_fidelity_beside_the_mean_alone_and_the_centred_parts(
    tiny_clip, vocab_file, class_folder, capsys
):
    import re

    args = describe_args(tiny_clip, vocab_file, class_folder, "--by-class", "--quiet")
    status, out, err = run(args + ["--format", "json"], capsys)
    assert status == 0, err
    summary = {r["group"]: r for r in json.loads(out)["summary"]}
    assert list(summary["china"]) == [
        "group", "n_samples", "mean_l0", "median_l0", "mean_fidelity",
        "mean_baseline_fidelity", "mean_centred_fidelity",
    ]
    status, out, _ = run(args, capsys)
    assert status == 0
    lines = [line for line in out.splitlines() if not line.startswith(" ")]
    assert len(lines) == 2
    for line, (group, r) in zip(lines, summary.items()):
        assert line == (
            f"{group}: 6 images, mean L0 {r['mean_l0']:.1f}, mean cosine fidelity "
            f"{r['mean_fidelity']:.3f} (mean alone: {r['mean_baseline_fidelity']:.3f}; "
            f"centred parts: {r['mean_centred_fidelity']:.3f})"
        )
        assert re.fullmatch(r".* \(mean alone: -?\d\.\d{3}; centred parts: -?\d\.\d{3}\)", line)
    status, out, _ = run(args + ["--format", "csv"], capsys)
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == [
        "group", "concept", "mean_weight", "prevalence", "n_samples", "mean_l0", "median_l0",
        "mean_fidelity", "mean_baseline_fidelity", "mean_centred_fidelity",
    ]
    assert {r["group"] for r in rows} == {"china", "flower"}
    for r in rows:
        expected = summary[r["group"]]
        for column in ("mean_fidelity", "mean_baseline_fidelity", "mean_centred_fidelity"):
            assert float(r[column]) == pytest.approx(expected[column])


def test_describe_errors(tiny_clip, vocab_file, tmp_path, capsys):
    args = describe_args(tiny_clip, vocab_file, tmp_path / "nowhere", "--by-class")
    status, _, err = run(args, capsys)
    assert status == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    status, _, err = run(describe_args(tiny_clip, vocab_file, tmp_path / "empty"), capsys)
    assert status == 2 and "no images found" in err


# -- one-line errors, pipes, signals, odd files -------------------------------------------
def cli_process(args, *, cwd=None, env=None, **popen):
    """``python -m sklearn_splice ARGS`` in a subprocess that imports this working tree."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import sklearn_splice

    root = str(Path(sklearn_splice.__file__).resolve().parents[1])
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "sklearn_splice", *args], cwd=cwd, env=env, **popen
    )


def cli_run(args, timeout=120, **kwargs):
    """(status, stdout, stderr) of a finished subprocess; a hang fails the test."""
    import subprocess

    proc = cli_process(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"sklearn-splice did not finish within {timeout} s")
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sklearn-splice: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["decompose", "a.jpg", "--top", "abc"], "argument --top: invalid int value: 'abc'"),
        (["decompose", "a.jpg", "--top", "0"], "argument --top: must be at least 1"),
        (["decompose", "a.jpg", "--l1-penalty", "nan"], "argument --l1-penalty:"),
        (["decompose", "a.jpg", "--bogus"], "unrecognized arguments: --bogus"),
        (["decompose", "a.jpg", "--top"], "argument --top: expected one argument"),
        (["decompose"], "the following arguments are required: images"),
        (["decompose", "a.jpg", "--format", "xml"], "argument --format: invalid choice"),
        (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: command"),
    ],
)
def test_usage_errors_are_one_line(argv, expected, capsys):
    status, out, err = run(argv, capsys)
    assert status == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith(f"sklearn-splice: error: {expected}") and "--help" in line


def test_help_is_still_full(capsys):
    status, out, err = run(["decompose", "--help"], capsys)
    assert status == 0 and err == ""
    assert out.startswith("usage: sklearn-splice decompose") and "--pretrained-tag" in out


def long_vocabulary(tmp_path):
    """Concepts of about 4,600 characters, so that the output overflows a pipe's buffer."""
    path = tmp_path / "long.txt"
    path.write_text("\n".join(f"{w} " + "very long concept name " * 200 for w in WORDS))
    return str(path)


def test_closed_pipe_exits_quietly(tiny_clip, image_files, tmp_path):
    import subprocess

    paths, _ = image_files
    args = base_args(tiny_clip, long_vocabulary(tmp_path), paths * 4)  # output of about 1 MB
    with open(tmp_path / "stderr", "w+b") as err:
        proc = cli_process(args, stdout=subprocess.PIPE, stderr=err)
        try:
            first = proc.stdout.readline()  # the rest no longer fits in the pipe
            proc.stdout.close()  # like `| head -1`
            status = proc.wait(timeout=120)
        finally:
            proc.kill()
        err.seek(0)
        message = err.read().decode()
    assert first.startswith(paths[0].encode()) and message == ""
    assert status == 141  # 128 + SIGPIPE, what a shell shows for `yes | head -1`


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_every_format_into_a_closed_pipe(
    fmt, tiny_clip, vocab_file, image_files, monkeypatch, capsys
):
    import os
    import sys

    paths, _ = image_files
    reader, writer = os.pipe()
    os.close(reader)  # nobody reads: the first write fails with EPIPE
    with open(writer, "w", encoding="utf-8") as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        status = main(base_args(tiny_clip, vocab_file, paths[:2]) + ["--format", fmt])
    assert status == 141 and capsys.readouterr().err == ""


def test_ctrl_c_is_one_line(tiny_clip, vocab_file, image_files, tmp_path):
    import os
    import signal
    import subprocess
    import threading
    import time

    paths, _ = image_files
    folder = os.path.dirname(paths[0])
    names = [os.path.basename(p) for p in paths] * 400  # seconds of encoding
    args = base_args(tiny_clip, vocab_file, names)
    args.remove("--quiet")  # the progress bar says when the images are being encoded
    proc = cli_process(args, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = bytearray()
    chunks = iter(lambda: os.read(proc.stderr.fileno(), 4096), b"")
    reader = threading.Thread(target=lambda: [err.extend(c) for c in chunks], daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while b"encoding images" not in err and proc.poll() is None:
            assert time.monotonic() < deadline, "no progress bar within 120 s"
            time.sleep(0.01)
        assert proc.poll() is None, bytes(err).decode()
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=60)
    finally:
        proc.kill()
    reader.join(timeout=10)
    text = bytes(err).decode()
    assert status == 130
    assert text.splitlines()[-1] == "sklearn-splice: interrupted" and "Traceback" not in text


def test_vocabulary_file_problems(tiny_clip, vocab_file, image_files, tmp_path, capsys):
    paths, _ = image_files
    args = base_args(tiny_clip, vocab_file, paths[:2])
    at = args.index("--vocabulary") + 1
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("cat\ncafé\n".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    (tmp_path / "folder").mkdir()
    cases = [
        (latin1, "is not UTF-8 text (byte 0xe9 at offset 7); save it as UTF-8"),
        (empty, "holds no concepts (one per line expected)"),
        (tmp_path / "folder", "is a directory, not a file."),
    ]
    for path, problem in cases:
        args[at] = str(path)
        status, out, err = run(args, capsys)
        assert status == 2 and out == ""
        assert one_error_line(err) == f"sklearn-splice: error: --vocabulary {path} {problem}"



def test_pipes_are_refused_without_blocking(tiny_clip, vocab_file, image_files, tmp_path):
    import os

    paths, _ = image_files
    fifo = str(tmp_path / "pipe.jpg")
    os.mkfifo(fifo)
    args = base_args(tiny_clip, vocab_file, [paths[0], fifo])
    args.remove("--quiet")  # refused before anything is encoded: no progress bar either
    status, out, err = cli_run(args, timeout=60)
    assert status == 2 and out == ""
    assert one_error_line(err) == (
        f"sklearn-splice: error: Image 1 ({fifo}) is not a regular file (a pipe, socket or "
        "device); only files can be read."
    )
    args = base_args(tiny_clip, fifo, paths[:2])
    status, out, err = cli_run(args, timeout=60)
    assert status == 2 and out == ""
    assert one_error_line(err).endswith(
        f"--vocabulary {fifo} is not a regular file (a pipe, socket or device); only files "
        "can be read."
    )


def test_plot_target_is_checked_before_encoding(
    tiny_clip, vocab_file, class_folder, tmp_path, capsys, monkeypatch
):
    import sys

    (tmp_path / "folder.png").mkdir()
    cases = [
        (tmp_path / "missing" / "chart.png", "does not exist"),
        (tmp_path / "folder.png", "is a folder"),
        (tmp_path / "chart.xyz", "unknown image format 'xyz'"),
    ]
    for path, problem in cases:
        # no --quiet: a progress bar on stderr would mean that the encoding had started
        args = describe_args(tiny_clip, vocab_file, class_folder, "--plot", str(path))
        status, out, err = run(args, capsys)
        assert status == 2 and out == ""
        assert str(path) in one_error_line(err) and problem in err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backend_bases", None)
    args = describe_args(tiny_clip, vocab_file, class_folder, "--plot", str(tmp_path / "c.png"))
    status, _, err = run(args, capsys)
    assert status == 2 and "needs matplotlib" in one_error_line(err)


def test_unwritable_plot_folder(tiny_clip, vocab_file, class_folder, tmp_path, capsys, monkeypatch):
    import os
    from pathlib import Path

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere: show the check what another user gets
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and access(p, mode))
    try:
        args = describe_args(tiny_clip, vocab_file, class_folder, "--plot", str(locked / "c.png"))
        status, _, err = run(args, capsys)
    finally:
        locked.chmod(0o700)
    assert status == 2 and "no permission to write" in one_error_line(err)


def test_pretrained_tag_gives_a_checkpoint_file_its_reference_mean(
    tiny_clip, vocab_file, image_files, capsys
):
    from sklearn_splice._cli import _parse, _splice

    paths, _ = image_files
    _, checkpoint = tiny_clip
    argv = ["decompose", *paths[:2], "--pretrained", checkpoint, "--vocabulary", vocab_file]
    splice = _splice(_parse(argv + ["--pretrained-tag", "laion2b_s34b_b79k"]), 2)
    assert splice.encoder.pretrained_tag == "laion2b_s34b_b79k" and splice.image_mean == "reference"
    # without the tag, the default --image-mean reference says what to add, before any work
    status, out, err = run(argv + ["--device", "cpu"], capsys)
    line = one_error_line(err)
    assert status == 2 and out == ""
    assert "add --pretrained-tag TAG" in line and "--image-mean fit" in line


def test_weights_unavailable_offline_is_one_line_of_cli_advice(image_files, vocab_file, tmp_path):
    paths, _ = image_files
    hub = str(tmp_path / "hf")  # empty: the weights were never downloaded
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": hub, "HF_HUB_CACHE": hub}
    status, out, err = cli_run(
        ["decompose", *paths[:2], "--vocabulary", vocab_file, "--device", "cpu"], env=offline
    )
    assert status == 2 and out == ""
    line = one_error_line(err)  # and nothing else: no logging, no retries, no traceback
    assert line.startswith(
        "sklearn-splice: error: cannot download the ViT-B-32 weights 'laion2b_s34b_b79k' ("
    )
    assert line.endswith(
        "; offline, pass --pretrained /path/to/checkpoint --pretrained-tag laion2b_s34b_b79k"
    )


def test_bugs_keep_their_traceback_and_messages_stay_one_line(monkeypatch, capsys):
    from sklearn_splice import _cli
    from sklearn_splice._errors import InputError

    def fail_with(exc):
        def fail(args):
            raise exc
        monkeypatch.setattr(_cli, "_decompose", fail)

    fail_with(ValueError("the first line\n  and the second\r\nand a third"))
    status, _, err = run(["decompose", "a.jpg"], capsys)
    assert status == 2
    assert one_error_line(err) == "sklearn-splice: error: the first line and the second and a third"
    fail_with(InputError(3, "is broken.", path="x.jpg", kind="Image"))
    status, _, err = run(["decompose", "a.jpg"], capsys)
    assert status == 2
    assert one_error_line(err) == "sklearn-splice: error: Image 3 (x.jpg) is broken."
    broken_import = ImportError("cannot import name 'x'", name="sklearn_splice._y")
    for bug in (TypeError("unexpected keyword"), KeyError("oops"), broken_import):
        fail_with(bug)
        with pytest.raises(type(bug)):
            main(["decompose", "a.jpg"])
    fail_with(ModuleNotFoundError("No module named 'pandas'", name="pandas"))  # user's to install
    status, _, err = run(["decompose", "a.jpg"], capsys)
    assert status == 2 and one_error_line(err) == "sklearn-splice: error: No module named 'pandas'"


def test_odd_image_files(tiny_clip, vocab_file, image_files, tmp_path, capsys):
    paths, _ = image_files
    folder = tmp_path / "photo.jpg"
    folder.mkdir()
    args = base_args(tiny_clip, vocab_file, [paths[0], str(folder)])
    args.remove("--quiet")  # a folder is refused before anything is encoded
    status, out, err = run(args, capsys)
    assert status == 2 and out == ""
    line = one_error_line(err)
    assert line == f"sklearn-splice: error: Image 1 ({folder}) is a directory, not a file."
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image\n")
    for bad in (empty, text):
        status, out, err = run(base_args(tiny_clip, vocab_file, [paths[0], str(bad)]), capsys)
        assert status == 2 and out == ""
        assert one_error_line(err).startswith(f"sklearn-splice: error: Image 1 ({bad}) ")


def test_paths_that_are_not_utf8(tiny_clip, vocab_file, image_files, tmp_path, capsys):
    import os
    import shutil

    paths, _ = image_files
    odd = os.path.join(tmp_path, os.fsdecode(b"caf\xe9.png"))  # undecodable bytes, as argv has them
    shutil.copy(paths[0], odd)
    shown = odd.encode("utf-8", "backslashreplace").decode()  # ...\udce9.png
    args = base_args(tiny_clip, vocab_file, [odd, paths[1]])
    status, out, err = run(args, capsys)  # a strict stdout, as in a UTF-8 locale
    assert status == 0, err
    assert out.startswith(f"{shown}  (")
    status, out, _ = run(args + ["--format", "csv"], capsys)
    assert status == 0 and list(csv.reader(io.StringIO(out)))[1][0] == shown
    status, out, _ = run(args + ["--format", "json"], capsys)
    assert status == 0 and json.loads(out)[0]["image"] == odd  # round-trips to the same bytes
    os.remove(odd)
    status, out, err = run(args, capsys)
    assert status == 2
    assert one_error_line(err) == f"sklearn-splice: error: Image 0 ({shown}) does not exist."


def test_warnings_are_one_line(monkeypatch, capsys):
    import warnings

    from sklearn_splice import _cli

    def warn(args):
        warnings.warn("the weights were trained with quick_gelu=True;\n  embeddings will be off")
        return []

    monkeypatch.setattr(_cli, "_decompose", warn)
    status, out, err = run(["decompose", "a.jpg", "--format", "json"], capsys)
    assert status == 0 and json.loads(out) == []
    assert err == (
        "sklearn-splice: warning: the weights were trained with quick_gelu=True; "
        "embeddings will be off\n"
    )


# -- sklearn-splice vocabulary ---------------------------------------------------------
CAPTIONS = [
    "A photo of a cat",
    "a cat on a red sofa",
    "red sofa in a living room",
    "a dog on a red sofa",
    "the cat and the dog",
]
VOCABULARY = ["dog", "sofa", "red sofa", "red", "cat"]  # least frequent first


@pytest.fixture
def captions_file(tmp_path):
    path = tmp_path / "captions.txt"
    path.write_text("\n".join(CAPTIONS) + "\n")
    return str(path)


def lines_of(path):
    with open(path, encoding="utf-8", newline="") as fh:
        text = fh.read()
    assert text.endswith("\n") and "\r" not in text
    return text.splitlines()


def test_vocabulary_round_trip_into_decompose(
    tiny_clip, image_files, captions_file, tmp_path, capsys
):
    out = str(tmp_path / "vocab.txt")
    status, stdout, err = run(["vocabulary", captions_file, "--out", out], capsys)
    assert status == 0 and stdout == ""
    assert lines_of(out) == VOCABULARY
    assert err == (
        f"sklearn-splice: wrote 5 concepts to {out} (4 words and 1 phrase, occurring 2 to 3 "
        "times) from 5 captions; 4 rarer ones left out\n"
    )
    paths, _ = image_files
    args = base_args(tiny_clip, out, paths[:4]) + ["--format", "json", "--top", "5"]
    status, stdout, err = run(args, capsys)
    assert status == 0, err
    rows = json.loads(stdout)
    assert [r["image"] for r in rows] == paths[:4]
    used = {c["concept"] for r in rows for c in r["concepts"]}
    assert used and used <= set(VOCABULARY)


def test_vocabulary_size_keeps_the_last_lines_of_a_file(tiny_clip, captions_file, tmp_path):
    from sklearn_splice._cli import _parse, _splice

    out = str(tmp_path / "vocab.txt")
    assert main(["vocabulary", captions_file, "--out", out, "--quiet"]) == 0
    _, checkpoint = tiny_clip
    argv = ["decompose", "a.jpg", "--pretrained", checkpoint, "--pretrained-tag",
            "laion2b_s34b_b79k", "--vocabulary", out]
    assert _splice(_parse(argv), 2).vocabulary == VOCABULARY  # a file: all of it by default
    splice = _splice(_parse(argv + ["--vocabulary-size", "3"]), 2)
    assert splice.vocabulary == ["red sofa", "red", "cat"]  # the 3 most frequent


def test_vocabulary_options(captions_file, tmp_path, capsys):
    out = str(tmp_path / "vocab.txt")
    cases = [
        (["--ngrams", "1"], ["dog", "sofa", "red", "cat"]),
        (["--min-count", "3"], ["sofa", "red sofa", "red", "cat"]),
        (["--max-concepts", "2"], ["red", "cat"]),
        (["--keep-stop-words", "--ngrams", "1"], ["the", "on", "dog", "sofa", "red", "cat"]),
    ]
    for options, expected in cases:
        status, _, err = run(["vocabulary", captions_file, "--out", out, *options], capsys)
        assert status == 0, err
        assert lines_of(out) == expected, options


def test_vocabulary_from_several_files_and_stdin(captions_file, tmp_path, capsys, monkeypatch):
    import sys

    out = str(tmp_path / "vocab.txt")
    more = tmp_path / "more.txt"
    more.write_bytes("\ufeffgreen sofa\r\n\r\ngreen sofa\r\n".encode("utf-8"))  # BOM, CRLF
    stdin = io.TextIOWrapper(io.BytesIO("a green cat\nGreen dog\n".encode("utf-8")))
    monkeypatch.setattr(sys, "stdin", stdin)
    status, _, err = run(
        ["vocabulary", captions_file, "-", str(more), "--out", out, "--quiet"], capsys
    )
    assert status == 0 and err == ""
    # green 4, sofa 5, cat 4, dog 3, "red sofa" 3, "green sofa" 2, red 3
    assert lines_of(out) == [
        "green sofa", "red sofa", "red", "dog", "green", "cat", "sofa",
    ]


def test_vocabulary_reads_a_pipe_on_stdin(tmp_path):
    import subprocess

    out = tmp_path / "vocab.txt"
    proc = cli_process(["vocabulary", "-", "--out", str(out)],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, err = proc.communicate(("\n".join(CAPTIONS) + "\n").encode(), timeout=120)
    assert proc.returncode == 0 and stdout == b""
    assert err.decode().startswith("sklearn-splice: wrote 5 concepts to ")
    assert lines_of(out) == VOCABULARY


def test_vocabulary_input_problems(captions_file, tmp_path, capsys):
    out = tmp_path / "vocab.txt"
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("a cat\ncafé au lait\n".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    (tmp_path / "folder").mkdir()
    cases = [
        ([captions_file, str(latin1)],
         f"captions file {latin1} is not UTF-8 text (byte 0xe9 at offset 9, line 2); save it "
         "as UTF-8"),
        ([str(empty)], f"{empty}: no captions (one per line expected)"),
        ([str(tmp_path / "folder")],
         f"captions file {tmp_path / 'folder'} is a directory, not a file."),
        ([str(tmp_path / "no.txt")], f"captions file {tmp_path / 'no.txt'} does not exist."),
        (["-", "-"], "- (standard input) can be given only once"),
        ([captions_file, "--min-count", "4"],
         "no word or phrase occurs at least 4 times (--min-count) in the 5 captions of "
         f"{captions_file} once stop words are left out"),
    ]
    for argv, problem in cases:
        status, stdout, err = run(["vocabulary", *argv, "--out", str(out)], capsys)
        assert status == 2 and stdout == ""
        assert one_error_line(err).startswith(f"sklearn-splice: error: {problem}")
        assert not out.exists()


def test_vocabulary_output_is_checked_before_reading(captions_file, tmp_path, capsys, monkeypatch):
    import os
    import sys
    from pathlib import Path

    class Unreadable:
        def __iter__(self):
            raise AssertionError("the captions were read")

        buffer = property(__iter__)

    monkeypatch.setattr(sys, "stdin", Unreadable())
    (tmp_path / "folder").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    cases = [
        (tmp_path / "missing" / "vocab.txt", f"folder {tmp_path / 'missing'} does not exist"),
        (Path(captions_file) / "vocab.txt", f"folder {captions_file} is not a folder"),
        (tmp_path / "folder", "is a folder; give a file name such as"),
        (locked / "vocab.txt", "no permission to write there"),
    ]
    access = os.access  # as if locked were read-only, also for root
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and access(p, mode))
    for out, problem in cases:
        status, stdout, err = run(["vocabulary", "-", "--out", str(out)], capsys)
        assert status == 2 and stdout == ""
        assert one_error_line(err).startswith(f"sklearn-splice: error: --out {out}")
        assert problem in err


def test_vocabulary_pipes_are_refused_without_blocking(captions_file, tmp_path):
    import os

    fifo = str(tmp_path / "captions.fifo")
    os.mkfifo(fifo)
    out = tmp_path / "vocab.txt"
    argv = ["vocabulary", captions_file, fifo, "--out", str(out)]
    status, stdout, err = cli_run(argv, timeout=60)
    assert status == 2 and stdout == ""
    assert one_error_line(err) == (
        f"sklearn-splice: error: captions file {fifo} is not a regular file (a pipe, socket or "
        "device); only files can be read."
    )
    status, _, err = cli_run(["vocabulary", captions_file, "--out", fifo], timeout=60)
    assert status == 2 and one_error_line(err).endswith(
        f"--out {fifo} is not a regular file (a pipe or a device?)"
    )
    assert not out.exists()


def test_vocabulary_is_written_atomically(captions_file, tmp_path, capsys, monkeypatch):
    import os

    out = tmp_path / "vocab.txt"
    out.write_text("old\nvocabulary\n")
    out.chmod(0o640)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"caf\xe9\n")
    status, _, err = run(["vocabulary", captions_file, str(latin1), "--out", str(out)], capsys)
    assert status == 2 and "not UTF-8" in err
    assert out.read_text() == "old\nvocabulary\n"  # a failed run leaves the old file

    def interrupted(src, dst):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", interrupted)
        status, _, err = run(["vocabulary", captions_file, "--out", str(out)], capsys)
    assert status == 130 and err == "sklearn-splice: interrupted\n"
    assert out.read_text() == "old\nvocabulary\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["captions.txt", "latin1.txt", "vocab.txt"]
    assert main(["vocabulary", captions_file, "--out", str(out), "--quiet"]) == 0
    assert lines_of(out) == VOCABULARY and (out.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["captions.txt", "latin1.txt", "vocab.txt"]


def test_new_vocabulary_file_follows_the_umask(captions_file, tmp_path):
    import os

    old = os.umask(0o027)
    try:
        assert main(["vocabulary", captions_file, "--out", str(tmp_path / "v.txt"), "--quiet"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "v.txt").stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["vocabulary", "c.txt"], "the following arguments are required: --out"),
        (["vocabulary", "--out", "v.txt"], "the following arguments are required: CAPTIONS"),
        (["vocabulary", "c.txt", "--out", "v.txt", "--ngrams", "3"],
         "argument --ngrams: invalid choice: 3"),
        (["vocabulary", "c.txt", "--out", "v.txt", "--max-concepts", "0"],
         "argument --max-concepts: must be at least 1"),
        (["vocabulary", "c.txt", "--out", "v.txt", "--min-count", "x"],
         "argument --min-count: invalid int value: 'x'"),
    ],
)
def test_vocabulary_usage_errors(argv, expected, capsys):
    status, out, err = run(argv, capsys)
    assert status == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith(f"sklearn-splice: error: {expected}") and "--help" in line


def test_a_single_concept_is_written_with_a_warning(tmp_path, capsys):
    captions = tmp_path / "c.txt"
    captions.write_text("cat\ncat\ndog\n")
    out = tmp_path / "v.txt"
    status, _, err = run(["vocabulary", str(captions), "--out", str(out)], capsys)
    assert status == 0 and lines_of(out) == ["cat"]
    first, second = err.splitlines()
    assert first == (
        f"sklearn-splice: warning: {out} will hold a single concept ('cat'); decompose and "
        "describe need at least 2: lower --min-count or give more captions"
    )
    assert second.startswith("sklearn-splice: wrote 1 concept to ")


def test_vocabulary_never_overwrites_its_captions(tmp_path, capsys):
    captions = tmp_path / "caps.txt"
    captions.write_text("a red sofa\na red sofa\ncat on sofa\n")
    link = tmp_path / "link.txt"
    link.symlink_to(captions)
    for out in (captions, link):
        status, out_text, err = run(["vocabulary", str(captions), "--out", str(out)], capsys)
        assert status == 2 and "it would be lost" in one_error_line(err)
    assert captions.read_text() == "a red sofa\na red sofa\ncat on sofa\n"


def test_vocabulary_splits_captions_on_any_line_break(tmp_path, capsys):
    captions = tmp_path / "cr.txt"
    captions.write_bytes(b"red sofa\rblue car\rred sofa\rblue car\r")
    out = tmp_path / "vocab.txt"
    status, _, err = run(["vocabulary", str(captions), "--out", str(out)], capsys)
    assert status == 0, err
    assert "sofa blue" not in out.read_text().splitlines()
    assert set(out.read_text().split("\n")) >= {"red sofa", "blue car"}


# -- data sets: tar shards in, Parquet out, described ------------------------------------
@pytest.fixture
def image_shards(image_files, tmp_path):
    """3 tar shards of 4 labelled images each; the second also holds an unreadable one."""
    import tarfile
    from pathlib import Path

    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    paths, labels = image_files
    folder = tmp_path / "shards"
    folder.mkdir()
    shards = []
    for s in range(3):
        shard = folder / f"shard-{s}.tar"
        with tarfile.open(shard, "w") as tar:
            for i in range(4 * s, 4 * s + 4):
                add(tar, f"img{i:02d}{Path(paths[i]).suffix}", Path(paths[i]).read_bytes())
                add(tar, f"img{i:02d}.cls", b"%d" % labels[i])
            if s == 1:
                add(tar, "broken.jpg", b"not an image")
                add(tar, "broken.cls", b"1")
        shards.append(str(shard))
    return shards


def dataset_args(tiny_clip, vocab_file, shards, out, *extra):
    config, checkpoint = tiny_clip
    return [
        "decompose-dataset", *shards, "--out", str(out), "--model", config, "--pretrained",
        checkpoint, "--vocabulary", vocab_file, "--image-mean", "fit", "--l1-penalty", "0.05",
        "--device", "cpu", "--quiet", *extra,
    ]


def test_decompose_dataset_then_describe_the_output(
    tiny_clip, vocab_file, image_shards, tmp_path, capsys
):
    from sklearn_splice import concept_distribution, read_decomposition

    out = tmp_path / "out"
    status, text, err = run(
        dataset_args(tiny_clip, vocab_file, image_shards, out, "--format", "json"), capsys
    )
    assert status == 0, err
    summary = json.loads(text)
    assert summary["images"] == 12 and summary["unreadable"] == 1
    assert summary["shards_done"] == 3 and summary["shards_skipped"] == 0
    status, text, err = run(["describe", str(out), "--format", "json", "--top", "3"], capsys)
    assert status == 0, err
    report = json.loads(text)
    assert report["run"]["l1_penalty"] == 0.05 and report["run"]["n_concepts"] == len(WORDS)
    assert report["run"]["n_shards_done"] == 3
    assert report["summary"] == [
        {"group": "all", "n_inputs": 13, "n_decomposed": 12, "n_unreadable": 1},
        {"group": 0, "n_inputs": 6, "n_decomposed": 6, "n_unreadable": 0},
        {"group": 1, "n_inputs": 7, "n_decomposed": 6, "n_unreadable": 1},
    ]
    # the top concepts shown are those of the statistics of the output, per group
    dataset = read_decomposition(str(out))
    for group, y in (("all", None), (0, "label"), (1, "label")):
        dist = concept_distribution(dataset, y=y)
        want = dist[(dist["group"] == group) & (dist["prevalence"] > 0)].head(3)
        shown = [r for r in report["concepts"] if r["group"] == group]
        assert [r["concept"] for r in shown] == want["concept"].tolist()
        assert [r["prevalence"] for r in shown] == pytest.approx(want["prevalence"].tolist())
    status, text, _ = run(["describe", str(out), "--top", "2"], capsys)
    lines = text.splitlines()
    assert status == 0 and lines[0].startswith("run: ") and "3 of 3 shards done" in lines[0]
    assert lines[1] == "all: 13 images, 12 decomposed, 1 unreadable"
    assert "label 1: 7 images, 6 decomposed, 1 unreadable" in lines
    status, text, _ = run(["describe", str(out), "--format", "csv"], capsys)
    table = list(csv.reader(io.StringIO(text)))
    assert status == 0 and table[0][:3] == ["group", "concept", "mean_weight"]
    assert "n_unreadable" in table[0]


def test_decompose_dataset_resumes_only_what_is_missing(
    tiny_clip, vocab_file, image_shards, tmp_path, capsys
):
    import os

    out = tmp_path / "out"
    args = dataset_args(tiny_clip, vocab_file, image_shards, out, "--format", "json")
    assert run(args, capsys)[0] == 0
    # a crash before the last shard was committed: its commit marker is missing
    os.remove(out / "inputs" / "shard=shard-2" / "part-0.parquet")
    status, text, err = run(args, capsys)
    assert status == 0, err
    summary = json.loads(text)
    assert summary["shards_done"] == 1 and summary["shards_skipped"] == 2
    assert summary["images"] == 4
    status, text, _ = run(args, capsys)
    assert status == 0 and json.loads(text)["shards_done"] == 0
    # --image-mean fit resumes with the run's stored mean: the mean of two shards alone
    # would differ, and the run would be refused as another one
    fewer = dataset_args(tiny_clip, vocab_file, image_shards[:2], out, "--format", "json")
    status, text, err = run(fewer, capsys)
    assert status == 0, err
    assert json.loads(text)["shards_skipped"] == 2
    status, text, err = run(args + ["--no-resume"], capsys)
    assert status == 2 and text == "" and "already holds" in one_error_line(err)
    other = dataset_args(tiny_clip, vocab_file, image_shards, out, "--l1-penalty", "0.1")
    status, _, err = run(other, capsys)
    assert status == 2 and "'l1_penalty'" in one_error_line(err)


def test_decompose_dataset_on_a_dask_scheduler(
    tiny_clip, vocab_file, image_shards, tmp_path, capsys
):
    import dask

    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out"
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
    ) as cluster:
        args = dataset_args(tiny_clip, vocab_file, image_shards, out, "--format", "json")
        status, text, err = run(args + ["--scheduler", cluster.scheduler_address], capsys)
    assert status == 0, err
    assert json.loads(text)["images"] == 12
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        for address, expected in (("tcp://127.0.0.1:1", "Timed out"), ("nonsense", "port")):
            args = dataset_args(tiny_clip, vocab_file, image_shards, tmp_path / "other")
            status, text, err = run(args + ["--scheduler", address], capsys)
            line = one_error_line(err)
            assert status == 2 and text == "" and f"--scheduler {address}" in line
            assert expected in line


def test_decompose_dataset_and_describe_errors(
    tiny_clip, vocab_file, image_shards, tmp_path, capsys
):
    args = dataset_args(tiny_clip, vocab_file, [*image_shards, str(tmp_path / "no.tar")], "o")
    status, _, err = run(args, capsys)
    assert status == 2 and "no.tar" in one_error_line(err)
    status, _, err = run(["describe", "memory://nothing/here"], capsys)
    assert status == 2 and "is not the output of a decomposition run" in one_error_line(err)
    status, _, err = run(["decompose-dataset", "a.tar"], capsys)
    assert status == 2 and "--out" in one_error_line(err)


def test_describe_of_an_output_into_a_closed_pipe(
    tiny_clip, vocab_file, image_shards, tmp_path, monkeypatch, capsys
):
    import os
    import sys

    out = tmp_path / "out"
    assert run(dataset_args(tiny_clip, vocab_file, image_shards[:1], out), capsys)[0] == 0
    png = tmp_path / "by-class.png"
    status, _, err = run(
        ["describe", str(out), "--by-class", "--top", "1", "--plot", str(png)], capsys
    )
    assert status == 0, err
    assert png.stat().st_size > 1000
    reader, writer = os.pipe()
    os.close(reader)
    with open(writer, "w", encoding="utf-8") as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        status = main(["describe", str(out)])
    assert status == 141 and capsys.readouterr().err == ""
