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
    status, out, err = run(base_args(tiny_clip, vocab_file, paths[:4]) + ["--format", "json", "--top", "3"], capsys)
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
    status, out, err = run(base_args(tiny_clip, vocab_file, [paths[0], str(tmp_path / "no.jpg")]), capsys)
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
        describe_args(tiny_clip, vocab_file, class_folder, "--by-class", "--format", "json", "--top", "3",
                      "--plot", str(png), "--quiet"),
        capsys,
    )
    assert status == 0, err
    report = json.loads(out)
    assert [r["group"] for r in report["summary"]] == ["china", "flower"]
    assert all(r["n_samples"] == 6 and 0 < r["mean_fidelity"] <= 1 for r in report["summary"])
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


def test_describe_errors(tiny_clip, vocab_file, tmp_path, capsys):
    status, _, err = run(describe_args(tiny_clip, vocab_file, tmp_path / "nowhere", "--by-class"), capsys)
    assert status == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    status, _, err = run(describe_args(tiny_clip, vocab_file, tmp_path / "empty"), capsys)
    assert status == 2 and "no images found" in err
