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


@pytest.mark.parametrize("num_workers", [0, 1, 3])
def test_threaded_reading_keeps_order_and_errors(tiny_clip, image_files, tmp_path, num_workers):
    config, checkpoint = tiny_clip
    paths, _ = image_files
    enc = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu", batch_size=5, num_workers=num_workers)
    ref = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu", batch_size=64, num_workers=0)
    np.testing.assert_allclose(enc.encode_image(paths), ref.encode_image(paths), atol=1e-5)
    bad = list(paths)
    bad[7] = str(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match=r"Image 7 \(.*missing\.png\)"):
        enc.encode_image(bad)


def test_on_error_zero_keeps_rows_aligned(tiny_clip, image_files, tmp_path):
    config, checkpoint = tiny_clip
    paths, _ = image_files
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really")
    items = [paths[0], str(tmp_path / "gone.jpg"), paths[1], str(broken), paths[2]]
    enc = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu", batch_size=2, on_error="zero")
    with pytest.warns(UserWarning, match=r"2 of 5 images could not be read.*1: Image 1 .*gone\.jpg.*3: Image 3 .*broken\.jpg"):
        emb = enc.encode_image(items)
    assert not emb[[1, 3]].any()
    ref = enc.set_params(on_error="raise").encode_image([paths[0], paths[1], paths[2]])
    np.testing.assert_allclose(emb[[0, 2, 4]], ref, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="Image 1"):
        enc.encode_image(items)


def test_out_of_memory_halves_batches_without_losing_rows(tiny_clip, image_files, monkeypatch):
    config, checkpoint = tiny_clip
    paths, _ = image_files
    enc = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu", batch_size=8, num_workers=0)
    expected = enc.encode_image(paths)
    texts = [f"word {i}" for i in range(10)]
    expected_text = enc.encode_text(texts)
    model = enc._load()[0]
    real_image, sizes = model.encode_image, []

    def small_batches_only(x, *a, **k):
        sizes.append(len(x))
        if len(x) > 3:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return real_image(x, *a, **k)

    monkeypatch.setattr(model, "encode_image", small_batches_only)
    np.testing.assert_allclose(enc.encode_image(paths), expected, atol=1e-5)
    assert max(s for s in sizes if s <= 3) <= 3 and 8 in sizes

    real_forward = model.transformer.forward

    def short_text_batches(x, *a, **k):
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("simulated")
        return real_forward(x, *a, **k)

    monkeypatch.setattr(model.transformer, "forward", short_text_batches)
    np.testing.assert_allclose(enc.encode_text(texts), expected_text, atol=1e-5)


def test_long_texts_are_truncated_consistently(encoder):
    # open_clip keeps the first 76 tokens and the end-of-text token; "cat" is one token
    shared = "cat " * 80
    a, b = encoder.encode_text([shared + "dog", shared + "a very different ending"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_checkpoint_of_another_model_is_named(tiny_clip, tmp_path):
    config, _ = tiny_clip
    wrong = tmp_path / "other.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, wrong)
    with pytest.raises(ValueError, match=r"other\.pt'?: the checkpoint file could not be loaded into TinySpliceCLIP"):
        OpenCLIPEncoder(config, pretrained=str(wrong), device="cpu").encode_text(["a"])


def test_unreachable_tag_download_says_what_to_do(tiny_clip, monkeypatch):
    from open_clip import pretrained as oc_pretrained

    def offline(*args, **kwargs):
        raise RuntimeError("network is unreachable")

    monkeypatch.setattr(oc_pretrained, "download_pretrained", offline)
    import open_clip.factory

    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    with pytest.raises(RuntimeError, match="downloads them from the internet.*pretrained=<file>"):
        OpenCLIPEncoder("ViT-B-32", pretrained="laion2b_s34b_b79k", device="cpu").encode_text(["a"])


def test_other_text_towers_fall_back_to_encode_text(tiny_clip):
    import copy

    model = copy.deepcopy(reference_model(tiny_clip))
    tokens = open_clip.get_tokenizer("TinySpliceCLIP")(["cat", "a dog on the grass"])
    model.text_pool_type = "last"  # pooled at the last position: truncation would change it
    assert not _encoder._supports_truncation(model)
    with torch.no_grad():
        np.testing.assert_array_equal(_encoder.encode_text_tokens(model, tokens), model.encode_text(tokens))
    model.text_pool_type = "argmax"
    model.attn_mask = None  # a non-causal tower
    assert not _encoder._supports_truncation(model)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_models_return_float32(tiny_clip, image_files, precision):
    # the original code crashed when float16 model outputs met float32 dictionaries
    config, checkpoint = tiny_clip
    paths, _ = image_files
    half = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu", precision=precision)
    full = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu")
    for method, inputs in (("encode_text", ["cat", "a red car"]), ("encode_image", paths[:2])):
        out = getattr(half, method)(inputs)
        assert out.dtype == np.float32
        ref = getattr(full, method)(inputs)
        cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
        assert (cos > 0.99).all()


def test_model_names_with_slashes():
    assert OpenCLIPEncoder("ViT-B/32").cache_identity() == OpenCLIPEncoder("ViT-B-32").cache_identity()
    assert OpenCLIPEncoder("ViT-B/32").embedding_dim == 512
