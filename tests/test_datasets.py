import numpy as np
import pytest
from PIL import Image

from sklearn_splice import SpliceTransformer, from_torch_dataset, load_image_folder

torch = pytest.importorskip("torch")


def make_tree(root):
    for name in ["cats/a.jpg", "cats/sub/b.png", "dogs/c.jpg", "dogs/readme.txt"]:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".txt":
            path.write_text("x")
        else:
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)


def test_load_image_folder(tmp_path):
    make_tree(tmp_path)
    paths, labels = load_image_folder(tmp_path)
    assert [p.split("/")[-1] for p in paths] == ["a.jpg", "b.png", "c.jpg"]
    assert labels.tolist() == ["cats", "cats", "dogs"]


def test_load_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "none")
    (tmp_path / "loose.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="outside class folders.*loose.jpg"):
        load_image_folder(tmp_path)
    (tmp_path / "loose.jpg").unlink()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No images"):
        load_image_folder(tmp_path)


class Pairs(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_from_torch_dataset_converts_tensors():
    img = torch.zeros(3, 4, 5)
    img[0] = 1.0
    pil = Image.new("RGB", (2, 2))
    images, labels = from_torch_dataset(Pairs([(img, torch.tensor(1)), (pil, 0)]))
    assert images[0].shape == (4, 5, 3) and images[0].dtype == np.uint8
    assert (images[0][..., 0] == 255).all() and images[1] is pil
    assert labels.tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"dataset\[0\] is not an \(image, label\) pair"):
        from_torch_dataset(Pairs([img]))


def test_pandas_column_of_paths(tiny_clip, image_files):
    pd = pytest.importorskip("pandas")
    from sklearn_splice import OpenCLIPEncoder

    config, checkpoint = tiny_clip
    paths, _ = image_files
    enc = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu")
    words = ["a", "b", "c", "d", "e"]
    ref = SpliceTransformer(enc, vocabulary=words, device="cpu").fit_transform(paths).toarray()
    frame = pd.DataFrame({"path": paths})
    for X in (frame["path"], frame[["path"]]):
        out = SpliceTransformer(enc, vocabulary=words, device="cpu", embedding_cache=False).fit_transform(X)
        np.testing.assert_allclose(out.toarray(), ref, atol=1e-6)
