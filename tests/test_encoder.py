import pickle

import numpy as np
import pytest
from sklearn.base import clone

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from sklearn_splice import OpenCLIPEncoder  # noqa: E402
from sklearn_splice import _encoder  # noqa: E402


@pytest.fixture
def encoder(tiny_clip):
    config, checkpoint = tiny_clip
    return OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu", batch_size=4)


def reference_model(tiny_clip):
    config, checkpoint = tiny_clip
    model = open_clip.create_model("TinySpliceCLIP", pretrained=checkpoint)
    return model.eval()


def test_checkpoint_loads_through_the_real_path(encoder, tiny_clip, image_files):
    paths, _ = image_files
    emb = encoder.encode_image(paths)
    assert emb.shape == (12, 32) and emb.dtype == np.float32
    model = reference_model(tiny_clip)
    _, _, preprocess = open_clip.create_model_and_transforms("TinySpliceCLIP")
    from PIL import Image

    with torch.no_grad():
        ref = model.encode_image(torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths]))
    np.testing.assert_allclose(emb, ref.numpy(), atol=1e-5)


def test_pil_images_arrays_and_paths_agree(encoder, image_files):
    from PIL import Image

    paths, _ = image_files
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths[:3]]
    a = encoder.encode_image(paths[:3])
    np.testing.assert_allclose(encoder.encode_image(arrays), a, atol=1e-6)
    np.testing.assert_allclose(encoder.encode_image([Image.fromarray(x) for x in arrays]), a, atol=1e-6)


def test_truncated_text_encoding_equals_open_clip(encoder, tiny_clip):
    texts = ["cat", "a dog sleeping on the grass", "tree", "x " * 100, "red car", ""]
    ours = encoder.encode_text(texts)
    model = reference_model(tiny_clip)
    tokens = open_clip.get_tokenizer("TinySpliceCLIP")(texts)
    with torch.no_grad():
        ref = model.encode_text(tokens).numpy()
    assert np.abs(ours - ref).max() < 1e-5
    assert _encoder._supports_truncation(model)


def test_precomputed_embeddings_pass_through(encoder):
    E = np.random.RandomState(0).standard_normal((5, 32))
    np.testing.assert_array_equal(encoder.encode_image(E), E.astype(np.float32))
    np.testing.assert_array_equal(encoder.encode_text(E), E.astype(np.float32))
    with pytest.raises(ValueError, match=r"shape \(n_samples, 32\) for this model, got \(5, 31\)"):
        encoder.encode_image(E[:, :31])


def test_model_is_shared_not_pickled_and_clones(encoder, image_files):
    paths, _ = image_files
    first = encoder.encode_image(paths[:2])
    twin = clone(encoder)
    assert twin._load()[0] is encoder._load()[0]  # one model per process
    blob = pickle.dumps(encoder)
    assert len(blob) < 2000  # parameters only, no weights
    np.testing.assert_allclose(pickle.loads(blob).encode_image(paths[:2]), first)
    assert twin.get_params()["model_name"] == encoder.model_name


def test_identity_tracks_weights_and_architecture(encoder, tiny_clip, tmp_path):
    import shutil

    other = tmp_path / "copy.pt"
    shutil.copy(tiny_clip[1], other)
    assert encoder.cache_identity() != encoder.set_params(pretrained=str(other)).cache_identity()
    assert OpenCLIPEncoder("ViT-B-32").cache_identity() != OpenCLIPEncoder("ViT-B-16").cache_identity()


def test_errors_are_actionable(tiny_clip, tmp_path):
    config, checkpoint = tiny_clip
    with pytest.raises(ValueError, match="not an open_clip architecture.*ViT-B-32"):
        OpenCLIPEncoder("ViT-B-33").embedding_dim
    with pytest.raises(ValueError, match="not a known tag.*Known tags"):
        OpenCLIPEncoder(config, pretrained="laion_nonexistent", device="cpu").encode_text(["a"])
    with pytest.raises(ValueError, match="checkpoint file does not exist"):
        OpenCLIPEncoder(config, pretrained=str(tmp_path / "w.pt"), device="cpu").encode_text(["a"])
    with pytest.raises(FileNotFoundError, match="model config file"):
        OpenCLIPEncoder(str(tmp_path / "none.json")).embedding_dim
    enc = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu")
    with pytest.raises(TypeError, match="single str"):
        enc.encode_image("photo.jpg")
    with pytest.raises(TypeError, match="Text 1 is a int"):
        enc.encode_text(["a", 1])
    with pytest.raises(FileNotFoundError, match="Image 1 .*missing.jpg"):
        enc.encode_image([np.zeros((8, 8, 3), np.uint8), str(tmp_path / "missing.jpg")])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            OpenCLIPEncoder(config, pretrained=checkpoint, device="cuda").encode_text(["a"])


def test_malicious_pickle_in_checkpoint_does_not_run(tiny_clip, tmp_path):
    config, _ = tiny_clip
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as fh:
        pickle.dump({"state_dict": Evil()}, fh)
    with pytest.raises(ValueError, match="could not be loaded"):
        OpenCLIPEncoder(config, pretrained=str(bad), device="cpu").encode_text(["a"])
    assert not marker.exists()


def test_random_weights_are_reproducible(tiny_clip):
    config, _ = tiny_clip
    a = OpenCLIPEncoder(config, pretrained=None, device="cpu").encode_text(["cat"])
    _encoder._MODELS.clear()
    b = OpenCLIPEncoder(config, pretrained=None, device="cpu").encode_text(["cat"])
    np.testing.assert_array_equal(a, b)
