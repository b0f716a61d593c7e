import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from sklearn_splice._text_tower import (  # noqa: E402
    encode_text_tokens,
    supports_truncation,
    token_lengths,
)

TEXTS = ["cat", "a dog sleeping on the grass", "tree", "x " * 100, "red car", ""]


@pytest.fixture(scope="module")
def model_and_tokens(tiny_clip):
    _, checkpoint = tiny_clip
    model = open_clip.create_model("TinySpliceCLIP", pretrained=checkpoint).eval()
    return model, open_clip.get_tokenizer("TinySpliceCLIP")(TEXTS)


def test_token_lengths_count_up_to_the_end_token(model_and_tokens):
    _, tokens = model_and_tokens
    lengths = token_lengths(tokens)
    # start + end tokens; "" has no word, a 100-word text fills the whole context
    assert lengths[0] == 3 and lengths[5] == 2 and lengths[3] == tokens.shape[1]
    assert (lengths[[1, 4]] > 3).all()


def test_truncated_encoding_equals_open_clip(model_and_tokens):
    model, tokens = model_and_tokens
    assert supports_truncation(model)
    with torch.no_grad():
        ref = model.encode_text(tokens)
        # short batches are cut at their own longest text, long ones not at all
        for sel in ([0, 2, 5], [1, 4], [3], list(range(len(TEXTS)))):
            ours = encode_text_tokens(model, tokens[sel])
            np.testing.assert_allclose(ours.numpy(), ref[sel].numpy(), atol=1e-5)


def test_other_text_towers_fall_back_to_encode_text(model_and_tokens):
    model, tokens = model_and_tokens
    model = copy.deepcopy(model)
    model.text_pool_type = "last"  # pooled at the last position: truncation would change it
    assert not supports_truncation(model)
    with torch.no_grad():
        np.testing.assert_array_equal(encode_text_tokens(model, tokens), model.encode_text(tokens))
    model.text_pool_type = "argmax"
    model.attn_mask = None  # a non-causal tower
    assert not supports_truncation(model)
    model.attn_mask = torch.zeros(77, 77)  # a mask that lets every position see every other
    assert not supports_truncation(model)
    assert not supports_truncation(torch.nn.Linear(2, 2))  # no CLIP text tower at all
