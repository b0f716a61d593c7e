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
