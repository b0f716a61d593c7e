import gc
import json
import logging
import pickle
import shutil
import socket
import time
import warnings
import weakref
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import pytest
import scipy.sparse as sp
from PIL import Image
from sklearn.base import clone

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from sklearn_splice import OpenCLIPEncoder, load_reference_mean  # noqa: E402
from sklearn_splice import _encoder, _weights  # noqa: E402
from sklearn_splice._errors import (  # noqa: E402
    InputError,
    InputTypeError,
    MissingInputError,
    UnreadableInputsWarning,
    WeightsUnavailableError,
)
from test_image_reader import BAD_KINDS, make_bad_input, no_hang  # noqa: E402, F401

SMALL_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture
def encoder(tiny_clip):
    config, checkpoint = tiny_clip
    return OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu", batch_size=4)


@pytest.fixture
def fresh_registry(monkeypatch):
    """An empty model registry for this test; the shared one is put back afterwards."""
    monkeypatch.setattr(_encoder, "_MODELS", OrderedDict())
    return _encoder._MODELS


def reference_model(tiny_clip):
    config, checkpoint = tiny_clip
    model = open_clip.create_model("TinySpliceCLIP", pretrained=checkpoint)
    return model.eval()


def write_config(path, **changes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**SMALL_CONFIG, **changes}))
    return str(path)


# -- embeddings -------------------------------------------------------------------------
def test_checkpoint_loads_through_the_real_path(encoder, tiny_clip, image_files):
    paths, _ = image_files
    emb = encoder.encode_image(paths)
    assert emb.shape == (12, 32) and emb.dtype == np.float32
    model = reference_model(tiny_clip)
    _, _, preprocess = open_clip.create_model_and_transforms("TinySpliceCLIP")
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])
        ref = model.encode_image(pixels)
    np.testing.assert_allclose(emb, ref.numpy(), atol=1e-5)


def test_pil_images_arrays_and_paths_agree(encoder, image_files):
    paths, _ = image_files
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths[:3]]
    a = encoder.encode_image(paths[:3])
    np.testing.assert_allclose(encoder.encode_image(arrays), a, atol=1e-6)
    pil = [Image.fromarray(x) for x in arrays]
    np.testing.assert_allclose(encoder.encode_image(pil), a, atol=1e-6)
    np.testing.assert_allclose(encoder.encode_image(np.stack(arrays)), a, atol=1e-6)


def test_texts_match_open_clip_in_every_batch_order(encoder, tiny_clip):
    texts = ["cat", "a dog sleeping on the grass", "tree", "x " * 100, "red car", ""]
    ours = encoder.encode_text(texts)
    model = reference_model(tiny_clip)
    tokens = open_clip.get_tokenizer("TinySpliceCLIP")(texts)
    with torch.no_grad():
        ref = model.encode_text(tokens).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_long_texts_are_truncated_consistently(encoder):
    # open_clip keeps the first 76 tokens and the end-of-text token; "cat" is one token
    shared = "cat " * 80
    a, b = encoder.encode_text([shared + "dog", shared + "a very different ending"])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_precomputed_embeddings_pass_through(encoder):
    E = np.random.RandomState(0).standard_normal((5, 32))
    for method in (encoder.encode_image, encoder.encode_text):
        np.testing.assert_array_equal(method(E), E)  # float64 is kept, not rounded
        assert method(E).dtype == np.float64 and method(E.astype(np.float32)).dtype == np.float32
        np.testing.assert_array_equal(method(E.tolist()), E)
        np.testing.assert_array_equal(method(E.astype(object)), E)
        np.testing.assert_array_equal(method(E * 1e300), E * 1e300)  # beyond float32's range
    with pytest.raises(ValueError, match=r"shape \(n_samples, 32\) for this model, got \(5, 31\)"):
        encoder.encode_image(E[:, :31])
    with pytest.raises(ValueError, match=r"got \(32,\)"):
        encoder.encode_text(E[0])
    bad = E.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        encoder.encode_image(bad)
    with pytest.raises(ValueError, match="NaN or infinite"):
        encoder.encode_text(E * np.inf)
    with pytest.raises(ValueError, match="real numbers"):
        encoder.encode_image(E.astype(complex))
    with pytest.raises(TypeError, match="dense"):
        encoder.encode_image(sp.csr_matrix(E))


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_models_return_float32(tiny_clip, image_files, precision):
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


def test_random_weights_are_reproducible(tiny_clip, fresh_registry):
    config, _ = tiny_clip
    a = OpenCLIPEncoder(config, pretrained=None, device="cpu").encode_text(["cat"])
    fresh_registry.clear()
    b = OpenCLIPEncoder(config, pretrained=None, device="cpu").encode_text(["cat"])
    np.testing.assert_array_equal(a, b)


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


# -- errors as data ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def seven(tiny_clip, image_files):
    """Seven readable image files and their embeddings, encoded one batch at a time."""
    config, checkpoint = tiny_clip
    paths = image_files[0][:7]
    enc = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu", num_workers=0)
    return paths, enc.encode_image(paths)


def encode_recording(enc, items):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb = enc.encode_image(items)
    return emb, [w for w in caught if issubclass(w.category, UnreadableInputsWarning)]


# 7 inputs in batches of 3: position 0 opens a batch, 4 is inside one, 6 is the last input
@pytest.mark.usefixtures("no_hang")
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("position", [0, 4, 6])
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_unreadable_image_raises_with_its_index(
    tiny_clip, seven, tmp_path, kind, position, workers
):
    config, checkpoint = tiny_clip
    items = list(seven[0])
    items[position], path = make_bad_input(kind, tmp_path)
    enc = OpenCLIPEncoder(config, checkpoint, device="cpu", batch_size=3, num_workers=workers)
    with pytest.raises(InputError) as info:
        enc.encode_image(items)
    assert info.value.index == position and info.value.path == path
    assert isinstance(info.value, MissingInputError) == (kind == "missing")


@pytest.mark.usefixtures("no_hang")
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_unreadable_images_become_zero_rows_with_one_warning(
    tiny_clip, seven, tmp_path, kind, workers
):
    config, checkpoint = tiny_clip
    paths, expected = seven
    items = list(paths)
    bad = [0, 4, 6]
    for k, position in enumerate(bad):
        items[position], _ = make_bad_input(kind, tmp_path, tag=str(k))
    enc = OpenCLIPEncoder(
        config, checkpoint, device="cpu", batch_size=3, num_workers=workers, on_error="zero"
    )
    emb, caught = encode_recording(enc, items)
    assert len(caught) == 1
    warning = caught[0].message
    assert warning.indices == bad and warning.n_inputs == 7
    assert all(isinstance(f, InputError) for f in warning.failures)
    assert not emb[bad].any()
    good = [1, 2, 3, 5]
    np.testing.assert_allclose(emb[good], expected[good], atol=1e-5)


@pytest.mark.usefixtures("no_hang")
@pytest.mark.parametrize("workers", [0, 2])
def test_every_kind_of_failure_is_listed_in_the_one_warning(tiny_clip, seven, tmp_path, workers):
    config, checkpoint = tiny_clip
    paths, expected = seven
    items = [paths[0]]
    for kind in BAD_KINDS:
        items.append(make_bad_input(kind, tmp_path)[0])
    items += [paths[1], None]  # None: an input of the wrong type is an InputError too
    enc = OpenCLIPEncoder(
        config, checkpoint, device="cpu", batch_size=2, num_workers=workers, on_error="zero"
    )
    emb, caught = encode_recording(enc, items)
    assert len(caught) == 1
    failures = caught[0].message.failures
    assert [f.index for f in failures] == list(range(1, 8)) + [9]
    assert isinstance(failures[0], MissingInputError) and isinstance(failures[-1], InputTypeError)
    assert failures[0].path == items[1]
    assert not emb[1:8].any() and not emb[9].any()
    np.testing.assert_allclose(emb[[0, 8]], expected[[0, 1]], atol=1e-5)


def test_no_warning_when_every_image_is_readable(tiny_clip, seven):
    config, checkpoint = tiny_clip
    enc = OpenCLIPEncoder(config, checkpoint, device="cpu", on_error="zero")
    emb, caught = encode_recording(enc, seven[0])
    assert caught == []
    np.testing.assert_allclose(emb, seven[1], atol=1e-5)


@pytest.mark.parametrize("num_workers", [0, 1, 3])
def test_threaded_reading_keeps_order(tiny_clip, image_files, num_workers):
    config, checkpoint = tiny_clip
    paths, _ = image_files
    enc = OpenCLIPEncoder(
        config, pretrained=checkpoint, device="cpu", batch_size=5, num_workers=num_workers
    )
    ref = OpenCLIPEncoder(config, pretrained=checkpoint, device="cpu", batch_size=64, num_workers=0)
    np.testing.assert_allclose(enc.encode_image(paths), ref.encode_image(paths), atol=1e-5)


def test_texts_that_are_not_strings_carry_their_index(encoder):
    with pytest.raises(InputTypeError) as info:
        encoder.encode_text(["a", "b", None])
    assert info.value.index == 2 and info.value.kind == "Text"
    assert str(info.value).startswith("Text 2 is a NoneType")
    with pytest.raises(InputTypeError) as info:
        encoder.encode_text([b"bytes", "b"])
    assert info.value.index == 0
    with pytest.raises(InputTypeError) as info:
        encoder.encode_text(["a", 1])  # a number among texts
    assert info.value.index == 1


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
    with pytest.raises(ValueError, match="empty"):
        enc.encode_image([])
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


def test_checkpoint_of_another_model_is_named(tiny_clip, tmp_path):
    config, _ = tiny_clip
    wrong = tmp_path / "other.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, wrong)
    expected = r"other\.pt'?: the checkpoint file could not be loaded into Tiny"
    with pytest.raises(ValueError, match=expected) as info:
        OpenCLIPEncoder(config, pretrained=str(wrong), device="cpu").encode_text(["a"])
    assert info.value.__cause__ is not None


# -- estimator, identity and backbone ---------------------------------------------------
def test_model_is_shared_not_pickled_and_clones(encoder, image_files):
    paths, _ = image_files
    first = encoder.encode_image(paths[:2])
    twin = clone(encoder)
    assert twin._load()[0] is encoder._load()[0]  # one model per process
    blob = pickle.dumps(encoder)
    assert len(blob) < 2000  # parameters only, no weights
    np.testing.assert_allclose(pickle.loads(blob).encode_image(paths[:2]), first)
    assert twin.get_params()["model_name"] == encoder.model_name
    tagged = clone(OpenCLIPEncoder("ViT-B-32", "some.pt", pretrained_tag="laion2b_s34b_b79k"))
    assert tagged.get_params()["pretrained_tag"] == "laion2b_s34b_b79k"


def test_identity_tracks_weights_and_architecture(encoder, tiny_clip, tmp_path):
    other = tmp_path / "copy.pt"
    shutil.copy(tiny_clip[1], other)
    before = encoder.cache_identity()
    assert before != clone(encoder).set_params(pretrained=str(other)).cache_identity()
    assert before != clone(encoder).set_params(precision="bf16").cache_identity()
    b32, b16 = OpenCLIPEncoder("ViT-B-32"), OpenCLIPEncoder("ViT-B-16", pretrained="openai")
    assert b32.cache_identity() != b16.cache_identity()


def test_model_names_with_slashes():
    identity = OpenCLIPEncoder("ViT-B-32").cache_identity()
    assert OpenCLIPEncoder("ViT-B/32").cache_identity() == identity
    assert OpenCLIPEncoder("ViT-B/32").embedding_dim == 512


def test_backbone_names_the_architecture_and_the_weights(tmp_path):
    tag = "laion2b_s34b_b79k"
    copy = tmp_path / "b32.safetensors"
    copy.write_bytes(b"not verified")
    assert OpenCLIPEncoder("ViT-B/32", tag).backbone() == ("ViT-B-32", tag)
    assert OpenCLIPEncoder("ViT-B-32", tag, pretrained_tag=tag).backbone() == ("ViT-B-32", tag)
    declared = OpenCLIPEncoder("ViT-B-32", str(copy), pretrained_tag=tag)
    assert declared.backbone() == ("ViT-B-32", tag)
    assert load_reference_mean(*declared.backbone()).shape == (512,)
    assert OpenCLIPEncoder("ViT-B-32", str(copy)).backbone() == ("ViT-B-32", None)
    assert OpenCLIPEncoder("ViT-B-32", None).backbone() == ("ViT-B-32", None)
    assert declared.cache_identity() != OpenCLIPEncoder("ViT-B-32", str(copy)).cache_identity()


def test_contradictory_weights_are_refused(tmp_path):
    copy = tmp_path / "b32.pt"
    copy.write_bytes(b"")
    with pytest.raises(ValueError, match="pretrained=None asks for random weights"):
        OpenCLIPEncoder("ViT-B-32", None, pretrained_tag="openai").backbone()
    with pytest.raises(ValueError, match="only for checkpoint files"):
        OpenCLIPEncoder("ViT-B-32", "openai", pretrained_tag="laion2b_s34b_b79k").backbone()
    # a declared tag is not checked: the reference mean lookup names what is shipped
    assert OpenCLIPEncoder("ViT-B-32", str(copy), pretrained_tag="nope").backbone()[1] == "nope"
    with pytest.raises(ValueError, match="pretrained_tag"):
        OpenCLIPEncoder("ViT-B-32", str(copy), pretrained_tag=3).backbone()


# -- model configs ----------------------------------------------------------------------
def test_configs_named_alike_in_two_folders_are_two_architectures(tmp_path):
    first = write_config(tmp_path / "a" / "model.json", embed_dim=16)
    second = write_config(tmp_path / "b" / "model.json", embed_dim=24)
    one = OpenCLIPEncoder(first, None, device="cpu")
    two = OpenCLIPEncoder(second, None, device="cpu")
    assert one.embedding_dim == 16 and two.embedding_dim == 24
    assert one.backbone()[0] != two.backbone()[0]
    assert one.backbone()[0].startswith("model-")
    assert one.encode_text(["cat"]).shape == (1, 16)
    assert two.encode_text(["cat"]).shape == (1, 24)
    assert one.encode_text(["cat"]).shape == (1, 16)  # not replaced by the second


def test_an_edited_config_is_a_new_architecture(tmp_path):
    path = tmp_path / "model.json"
    enc = OpenCLIPEncoder(write_config(path, embed_dim=16), None, device="cpu")
    name, identity = enc.backbone()[0], enc.cache_identity()
    assert enc.encode_text(["cat"]).shape == (1, 16)
    write_config(path, embed_dim=20)
    assert enc.backbone()[0] != name and enc.cache_identity() != identity
    assert enc.encode_text(["cat"]).shape == (1, 20)
    write_config(path, embed_dim=16)
    assert enc.backbone()[0] == name  # the same file and content: the same architecture


def test_broken_configs_are_refused_without_breaking_later_ones(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        OpenCLIPEncoder(str(broken)).embedding_dim
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"embed_dim": 8}))
    with pytest.raises(ValueError, match="not an open_clip model config.*vision_cfg"):
        OpenCLIPEncoder(str(partial)).embedding_dim
    good = write_config(tmp_path / "good.json", embed_dim=12)
    assert OpenCLIPEncoder(good).embedding_dim == 12


# -- the model registry -----------------------------------------------------------------
def test_registry_keeps_only_the_most_recently_used_models(tiny_clip, fresh_registry, monkeypatch):
    monkeypatch.setattr(_encoder, "MAX_LOADED_MODELS", 2)
    config, checkpoint = tiny_clip
    a = OpenCLIPEncoder(config, checkpoint, device="cpu")
    b = OpenCLIPEncoder(config, None, device="cpu")
    c = OpenCLIPEncoder(config, checkpoint, device="cpu", precision="bf16")
    model_a, model_b = a._load()[0], b._load()[0]
    assert a._load()[0] is model_a  # a is now the most recently used
    c._load()
    assert len(fresh_registry) == 2
    assert a._load()[0] is model_a
    gone = weakref.ref(model_b)
    del model_b
    gc.collect()
    assert gone() is None  # nothing else held on to the evicted model
    b._load()
    assert len(fresh_registry) == 2


class OnDevice:
    """A batch that says it lives on a GPU, so that the CPU fallback is taken."""

    device = type("Device", (), {"type": "cuda"})()

    def __init__(self, tensor):
        self.tensor = tensor

    def __len__(self):
        return len(self.tensor)

    def __getitem__(self, index):
        return OnDevice(self.tensor[index])

    def is_floating_point(self):
        return True

    def to(self, device):
        return self.tensor


def test_cpu_fallback_model_is_not_kept(tiny_clip, image_files, fresh_registry, monkeypatch):
    config, checkpoint = tiny_clip
    paths, _ = image_files
    enc = OpenCLIPEncoder(config, checkpoint, device="cpu")
    model, preprocess, _, _ = enc._load()
    pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[:3]])
    with torch.no_grad():
        expected = model.encode_image(pixels)
    fresh_registry.clear()  # as if the model the batch is run on lived on a GPU
    created = []
    real_create = OpenCLIPEncoder._create

    def counting_create(self, arch, weights, device):
        created.append(str(device))
        return real_create(self, arch, weights, device)

    monkeypatch.setattr(OpenCLIPEncoder, "_create", counting_create)

    def call(m, x):
        if isinstance(x, OnDevice):
            raise torch.OutOfMemoryError("simulated")
        return m.encode_image(x)

    run = enc._resilient(call, "image")
    with pytest.warns(RuntimeWarning, match="falling back to the CPU"):
        out = run(model, OnDevice(pixels))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert created == ["cpu"]  # loaded once for the three rows
    assert len(fresh_registry) == 0


# -- pretrained weights -----------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("tried the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(open_clip, "download_pretrained", refuse)


@contextmanager
def bare_root_logger():
    """A root logger without handlers, as in a script that never configured logging.

    Swapped inside the test body: pytest adds its capture handlers to the root logger
    around the body, and must find them there when it takes them off.
    """
    root = logging.getLogger()
    saved = root.handlers
    root.handlers = []
    try:
        yield root
    finally:
        root.handlers = saved


def test_offline_tag_fails_at_once_with_the_root_logger_untouched(
    tmp_path, monkeypatch, no_network, fresh_registry
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = OpenCLIPEncoder("ViT-B-32", "laion2b_s34b_b79k", device="cpu", cache_dir=tmp_path)
    started = time.monotonic()
    with bare_root_logger() as root:
        with pytest.raises(WeightsUnavailableError) as info:
            enc.encode_text(["a"])
        assert root.handlers == []
    assert time.monotonic() - started < 5
    err = info.value
    assert (err.architecture, err.tag) == ("ViT-B-32", "laion2b_s34b_b79k")
    assert "offline" in err.reason and "\n" not in err.reason
    assert len(fresh_registry) == 0


def test_unreachable_hub_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(_weights, "_hub_offline", lambda: False)
    for variable in _weights._PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    tried = []

    def unreachable(address, timeout=None):
        tried.append(address)
        raise OSError("Network is unreachable")

    def never(*args, **kwargs):
        raise AssertionError("downloaded although the hub cannot be reached")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(open_clip, "download_pretrained", never)
    enc = OpenCLIPEncoder("ViT-B-32", "laion2b_s34b_b79k", device="cpu", cache_dir=tmp_path)
    with pytest.raises(WeightsUnavailableError, match="cannot be reached") as info:
        enc.encode_text(["a"])
    assert len(tried) == 1 and "\n" not in info.value.reason


def test_failed_download_is_weights_unavailable_and_quiet(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(_weights, "_hub_offline", lambda: False)
    monkeypatch.setattr(_weights, "_hub_unreachable", lambda: None)
    retry_logger = logging.getLogger("huggingface_hub.utils._http")
    level = retry_logger.level

    def failing_download(cfg, cache_dir=None):
        assert cache_dir == str(tmp_path)
        retry_logger.warning("Retrying in 1s [Retry 1/5].")
        raise ConnectionError("connection reset")

    monkeypatch.setattr(open_clip, "download_pretrained", failing_download)
    enc = OpenCLIPEncoder("ViT-B-32", "laion2b_s34b_b79k", device="cpu", cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        with pytest.raises(WeightsUnavailableError) as info:
            enc.encode_text(["a"])
    assert isinstance(info.value.__cause__, ConnectionError)
    assert "\n" not in info.value.reason
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]
    assert retry_logger.level == level


@pytest.fixture
def tiny_tag(tiny_clip, tmp_path, monkeypatch):
    """A pretrained tag of the tiny model whose weights lie in a local Hugging Face cache."""
    _, checkpoint = tiny_clip
    cache = tmp_path / "hub"
    repo = cache / "models--test-org--tiny-clip"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(checkpoint, repo / "snapshots" / commit / "open_clip_pytorch_model.bin")
    cfg = {"hf_hub": "test-org/tiny-clip/", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    list_tags, get_cfg = open_clip.list_pretrained_tags_by_model, open_clip.get_pretrained_cfg

    def tags(arch):
        return ["tiny_tag"] if arch == "TinySpliceCLIP" else list_tags(arch)

    def tag_cfg(arch, tag):
        return cfg if (arch, tag) == ("TinySpliceCLIP", "tiny_tag") else get_cfg(arch, tag)

    monkeypatch.setattr(open_clip, "list_pretrained_tags_by_model", tags)
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", tag_cfg)
    return str(cache)


def test_cached_tag_weights_load_offline_with_the_tags_preprocessing(
    tiny_tag, tiny_clip, image_files, monkeypatch, no_network, fresh_registry
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, checkpoint = tiny_clip
    paths = image_files[0][:3]
    tagged = OpenCLIPEncoder("TinySpliceCLIP", "tiny_tag", device="cpu", cache_dir=tiny_tag)
    declared = OpenCLIPEncoder(
        "TinySpliceCLIP", checkpoint, pretrained_tag="tiny_tag", device="cpu"
    )
    undeclared = OpenCLIPEncoder("TinySpliceCLIP", checkpoint, device="cpu")
    with bare_root_logger() as root:
        emb = tagged.encode_image(paths)  # open_clip's logging.info() configures an empty root
        assert root.handlers == []
    np.testing.assert_allclose(declared.encode_image(paths), emb, atol=1e-6)
    assert not np.allclose(undeclared.encode_image(paths), emb, atol=1e-3)  # other mean/std
    text = tagged.encode_text(["cat"])
    np.testing.assert_allclose(text, undeclared.encode_text(["cat"]), atol=1e-6)
    assert tagged.backbone() == declared.backbone() == ("TinySpliceCLIP", "tiny_tag")


def test_quick_gelu_mismatch_of_a_tag_is_warned(tiny_tag, monkeypatch, fresh_registry):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    declared = open_clip.get_pretrained_cfg

    def quick_gelu_cfg(arch, tag):
        return {**declared(arch, tag), "quick_gelu": True}

    monkeypatch.setattr(open_clip, "get_pretrained_cfg", quick_gelu_cfg)
    enc = OpenCLIPEncoder("TinySpliceCLIP", "tiny_tag", device="cpu", cache_dir=tiny_tag)
    with pytest.warns(UserWarning, match="trained with quick_gelu=True") as caught:
        enc.encode_text(["cat"])
    assert caught[0].filename == __file__  # points at the caller
