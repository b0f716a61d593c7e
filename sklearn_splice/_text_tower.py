"""Text-tower forward passes cut at each batch's longest sequence.

CLIP pads every text to its context length (77 tokens), but most concept names are a few
tokens long. A causal tower pooled at the end-of-text token cannot see the padding, so
running it only up to the batch's longest sequence gives the same embeddings for a
fraction of the work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._torch_utils import import_torch

__all__ = ["token_lengths", "supports_truncation", "encode_text_tokens"]


def token_lengths(tokens: Any) -> np.ndarray:
    """Number of positions up to and including each text's end-of-text token.

    Parameters
    ----------
    tokens : torch.Tensor of shape (n_texts, context_length)
        Token ids from an open_clip CLIP tokenizer, whose end-of-text token has the
        largest id of the vocabulary.

    Returns
    -------
    lengths : ndarray of shape (n_texts,)
        Length of each text in tokens, start and end tokens included.
    """
    return tokens.argmax(dim=-1).cpu().numpy() + 1


def supports_truncation(model: Any) -> bool:
    """Whether positions after the end-of-text token cannot change ``model``'s text output.

    True for causal CLIP text towers pooled at the end-of-text token (``argmax`` pooling);
    other towers (Hugging Face text models, non-causal masks, other pooling) are run whole.

    Parameters
    ----------
    model : open_clip.CLIP or torch.nn.Module
        The model whose text tower is checked.

    Returns
    -------
    supported : bool
    """
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")
    if not all(hasattr(model, a) for a in needed):
        return False
    mask = model.attn_mask
    if mask is None or getattr(model, "text_pool_type", None) != "argmax":
        return False
    # causal: -inf strictly above the diagonal, 0 on and below it
    torch = import_torch()
    upper = torch.triu(torch.ones_like(mask, dtype=torch.bool), diagonal=1)
    return bool(torch.isinf(mask[upper]).all()) and bool((mask[~upper] == 0).all())


def encode_text_tokens(model: Any, tokens: Any) -> Any:
    """``model.encode_text(tokens)``, computed only up to the batch's longest sequence.

    Parameters
    ----------
    model : open_clip.CLIP or torch.nn.Module
        A model with an ``encode_text`` method.
    tokens : torch.Tensor of shape (n_texts, context_length)
        Token ids, on the model's device.

    Returns
    -------
    embeddings : torch.Tensor of shape (n_texts, embedding_dim)
        In the model's precision. Equal to ``model.encode_text(tokens)``; towers for which
        :func:`supports_truncation` is False are run through ``encode_text`` itself.
    """
    if not supports_truncation(model):
        return model.encode_text(tokens)
    torch = import_torch()
    length = int(tokens.argmax(dim=-1).max()) + 1
    tok = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tok).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tok.argmax(dim=-1)]
    proj = model.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return x
