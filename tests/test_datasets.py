import numpy as np
import pytest
from PIL import Image

from sklearn_splice import SpliceTransformer, from_torch_dataset, load_image_folder
from sklearn_splice._errors import InputError

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
    with pytest.raises(InputError, match=r"Dataset item 0 is not an \(image, label\) pair"):
        from_torch_dataset(Pairs([img]))


def test_tensors_of_other_dtypes_and_shapes():
    ramp = torch.linspace(0, 1, 12).reshape(1, 3, 4)
    uint8 = (torch.arange(12, dtype=torch.uint8) * 20).reshape(3, 4)
    data = [
        (ramp.to(torch.bfloat16), 0),  # NumPy has no bfloat16
        (ramp.half().expand(3, 3, 4), 1),
        (uint8, 2),  # HxW
        (uint8.to(torch.int64), 3),  # 8-bit values in a wider integer type
        (torch.zeros(3, 0, 4), 4),  # empty: the encoder reports it
    ]
    images, _ = from_torch_dataset(Pairs(data))
    assert images[0].shape == (3, 4, 1) and images[0].max() == 255 and images[0].min() == 0
    assert images[1].shape == (3, 4, 3)
    np.testing.assert_array_equal(images[2], uint8.numpy())
    np.testing.assert_array_equal(images[3], uint8.numpy())
    assert images[4].size == 0


def normalised(image):
    mean = torch.tensor([0.481, 0.458, 0.408]).view(3, 1, 1)
    std = torch.tensor([0.269, 0.261, 0.276]).view(3, 1, 1)
    return (image - mean) / std


@pytest.mark.parametrize("position", [0, 2, 4])
def test_float_tensors_that_would_clip_are_refused(position):
    photo = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(0))
    bad = {
        "normalised": normalised(photo),
        "0-255 floats": photo * 255,
        "NaN": photo.clone().index_put_((torch.tensor([0]),), torch.tensor(float("nan"))),
        "infinite": photo.clone().index_put_((torch.tensor([1]),), torch.tensor(float("inf"))),
    }
    for what, tensor in bad.items():
        items = [(photo, k) for k in range(5)]
        items[position] = (tensor, position)
        with pytest.raises(InputError) as info:
            from_torch_dataset(Pairs(items))
        err = info.value
        assert isinstance(err, ValueError) and err.index == position, what
        assert str(err).startswith(f"Dataset item {position} is a float image tensor")
        if what == "NaN":
            assert "NaN" in err.reason
        else:
            lo, hi = float(tensor.min()), float(tensor.max())
            assert f"[{lo:.4g}, {hi:.4g}]" in err.reason
            assert "Normalize" in err.reason and "uint8" in err.reason


def test_integer_and_boolean_tensors_out_of_range_are_refused():
    wide = torch.arange(12).reshape(3, 2, 2) * 30  # 0 to 330
    items = [(torch.zeros(3, 2, 2, dtype=torch.uint8), 0), (wide, 1)]
    with pytest.raises(InputError, match=r"Dataset item 1 is an integer image tensor .*\[0, 330\]"):
        from_torch_dataset(Pairs(items))
    with pytest.raises(InputError, match=r"Dataset item 0 .*dtype torch.bool"):
        from_torch_dataset(Pairs([(torch.ones(3, 2, 2, dtype=torch.bool), 0)]))


def test_images_in_range_are_kept_exactly():
    photo = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(1))
    images, _ = from_torch_dataset(Pairs([(photo, 0), (torch.ones(3, 6, 6), 1)]))
    expected = np.rint(photo.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(images[0], expected)
    assert (images[1] == 255).all()


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
        splice = SpliceTransformer(enc, vocabulary=words, device="cpu", embedding_cache=False)
        out = splice.fit_transform(X)
        np.testing.assert_allclose(out.toarray(), ref, atol=1e-6)
