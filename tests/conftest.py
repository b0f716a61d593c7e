"""Shared fixtures: a tiny randomly initialised open_clip model and real image files."""

import json

import numpy as np
import pytest

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own caches, on disk and in memory, so none sees another's, and
    none goes online."""
    from sklearn_splice._cache import clear_memory_cache

    monkeypatch.setenv("SKLEARN_SPLICE_CACHE_DIR", str(tmp_path / "splice-cache"))
    # No test reaches the Hugging Face Hub: the ones about downloads fake the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clear_memory_cache()


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """(config path, checkpoint path) of a tiny random open_clip CLIP saved to disk."""
    torch = pytest.importorskip("torch")
    open_clip = pytest.importorskip("open_clip")
    folder = tmp_path_factory.mktemp("tiny_clip")
    config = folder / "TinySpliceCLIP.json"
    config.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(1234)
    model = open_clip.create_model("TinySpliceCLIP")
    checkpoint = folder / "tiny_splice_clip.pt"
    torch.save(model.state_dict(), checkpoint)
    return str(config), str(checkpoint)


@pytest.fixture(scope="session")
def image_files(tmp_path_factory):
    """12 JPEG/PNG files cut from scikit-learn's sample photos, and their source labels."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    folder = tmp_path_factory.mktemp("images")
    paths, labels = [], []
    for label, photo in enumerate(load_sample_images().images):
        for k in range(6):
            top, left = 40 * k, 60 * k
            crop = photo[top : top + 200, left : left + 260]
            ext = "jpg" if k % 2 else "png"
            path = folder / f"photo{label}_{k}.{ext}"
            Image.fromarray(np.ascontiguousarray(crop)).save(path)
            paths.append(str(path))
            labels.append(label)
    return paths, np.array(labels)
