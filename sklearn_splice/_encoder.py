"""OpenCLIPEncoder: image and text embeddings from an open_clip model, loaded lazily."""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions

from ._images import load_image
from ._progress import progress
from ._torch_utils import import_open_clip, import_torch, resolve_device, run_split_on_oom

__all__ = ["OpenCLIPEncoder"]

# Loaded models are shared by every encoder (and every clone of one) in the process,
# keyed by what determines their outputs; they never live on an encoder instance.
_MODELS: dict[tuple, tuple] = {}
_MODELS_LOCK = threading.Lock()
_REGISTERED_CONFIGS: dict[str, str] = {}


def _as_embedding_matrix(inputs: Any, width: int, what: str) -> np.ndarray | None:
    """Precomputed embeddings pass through (checked); anything else returns None."""
    if not isinstance(inputs, np.ndarray) or inputs.ndim != 2 or inputs.dtype.kind not in "fiu":
        return None
    if inputs.shape[1] != width:
        raise ValueError(
            f"Precomputed {what} embeddings must have shape (n_samples, {width}) for this "
            f"model, got {inputs.shape}."
        )
    if not np.isfinite(inputs).all():
        raise ValueError(f"Precomputed {what} embeddings contain NaN or infinite values.")
    return np.asarray(inputs, dtype=np.float32)


class OpenCLIPEncoder(BaseEstimator):
    """Image and text embeddings from an open_clip model.

    The model is loaded on first use, never in ``__init__`` and never pickled: it is kept
    in a per-process registry shared by all encoders with the same backbone, so clones made
    by ``GridSearchCV`` do not reload it. Being an estimator, the encoder clones and its
    parameters can be grid-searched (``splice__encoder__model_name``).

    Parameters
    ----------
    model_name : str, default="ViT-B-32"
        open_clip architecture name (see ``open_clip.list_models()``), or the path of an
        open_clip model-config JSON file for a custom architecture.
    pretrained : str or None, default="laion2b_s34b_b79k"
        open_clip pretrained tag, or the path of a local checkpoint file (``.pt``/``.bin``
        loaded with ``torch.load(weights_only=True)``, or ``.safetensors``). A tag's weights
        are downloaded on first use into ``cache_dir``. ``None`` gives randomly initialised
        weights (seeded, so reproducible), for tests and benchmarks only.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    precision : {"fp32", "fp16", "bf16"}, default="fp32"
        Precision of the model's weights. Embeddings are always returned as float32.
    batch_size : int, default=64
        Images or texts per forward pass.
    num_workers : int, default=None
        Threads that read and preprocess images while the model runs (two batches ahead).
        ``None`` means ``min(4, os.cpu_count())``; 0 reads in the calling thread.
    on_error : {"raise", "zero"}, default="raise"
        What an unreadable image (missing, empty, truncated, not an image) does:
        ``"raise"`` stops with an error naming its index and path; ``"zero"`` gives it an
        all-zero embedding (so rows never shift against labels; ``SpliceTransformer`` turns
        it into an all-zero row of weights) and warns once, listing every such input.
    cache_dir : str or path, default=None
        Where open_clip stores downloaded weights (its own default when None).
    verbose : bool, default=False
        Show progress bars while encoding.

    Examples
    --------
    >>> from sklearn_splice import OpenCLIPEncoder
    >>> enc = OpenCLIPEncoder("ViT-B-32", pretrained="laion2b_s34b_b79k")
    >>> enc.get_params()["model_name"]
    'ViT-B-32'
    >>> enc.embedding_dim
    512
    """

    _parameter_constraints: dict = {
        "model_name": [str, os.PathLike],
        "pretrained": [str, os.PathLike, None],
        "device": "no_validation",  # checked by resolve_device, which knows torch devices
        "precision": [StrOptions({"fp32", "fp16", "bf16"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "num_workers": [Interval(Integral, 0, None, closed="left"), None],
        "on_error": [StrOptions({"raise", "zero"})],
        "cache_dir": [str, os.PathLike, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model_name="ViT-B-32",
        pretrained="laion2b_s34b_b79k",
        *,
        device="auto",
        precision="fp32",
        batch_size=64,
        num_workers=None,
        on_error="raise",
        cache_dir=None,
        verbose=False,
    ):
        self.model_name = model_name
        self.pretrained = pretrained
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.on_error = on_error
        self.cache_dir = cache_dir
        self.verbose = verbose

    # -- identity ---------------------------------------------------------------------
    def _architecture(self) -> str:
        """The open_clip architecture name, registering a config file when one is given."""
        name = os.fspath(self.model_name)
        if name.endswith(".json"):
            path = Path(name)
            if not path.is_file():
                raise FileNotFoundError(f"model_name: model config file {name} does not exist.")
            open_clip = import_open_clip()
            key = str(path.resolve())
            if _REGISTERED_CONFIGS.get(key) is None:
                open_clip.add_model_config(path)
                _REGISTERED_CONFIGS[key] = path.stem
            return path.stem
        return name.replace("/", "-")

    def _model_config(self) -> dict:
        open_clip = import_open_clip()
        arch = self._architecture()
        cfg = open_clip.get_model_config(arch)
        if cfg is None:
            close = difflib.get_close_matches(arch, open_clip.list_models(), n=5, cutoff=0.5)
            hint = f" Did you mean one of {close}?" if close else ""
            raise ValueError(
                f"model_name={self.model_name!r} is not an open_clip architecture.{hint} "
                "See open_clip.list_models(), or pass the path of a model-config JSON file."
            )
        return cfg

    @property
    def embedding_dim(self) -> int:
        """Width of the joint embedding space, read from the model config (no weights loaded)."""
        return int(self._model_config()["embed_dim"])

    def _weights_identity(self) -> str:
        if self.pretrained is None:
            return "random-init-seed0"
        pretrained = os.fspath(self.pretrained)
        if os.path.isfile(pretrained):
            st = os.stat(pretrained)
            return f"file:{os.path.realpath(pretrained)}:{st.st_size}:{st.st_mtime_ns}"
        return f"tag:{pretrained}"

    def cache_identity(self) -> str:
        """A string that changes whenever the embeddings this encoder computes could change."""
        cfg = self._model_config()
        import json

        return "|".join(
            [
                "open_clip",
                self._architecture(),
                json.dumps(cfg, sort_keys=True),
                self._weights_identity(),
                self.precision,
            ]
        )

    # -- model ------------------------------------------------------------------------
    def _load(self, device=None):
        """(model, preprocess, tokenizer, device) from the process registry, loading once."""
        self._validate_params()
        torch = import_torch()
        open_clip = import_open_clip()
        arch = self._architecture()
        self._model_config()  # clear error for unknown architectures
        device = resolve_device(self.device if device is None else device)
        key = (arch, self._weights_identity(), str(device), self.precision)
        with _MODELS_LOCK:
            if key in _MODELS:
                return _MODELS[key]
            pretrained = None if self.pretrained is None else os.fspath(self.pretrained)
            if pretrained is not None and not os.path.isfile(pretrained):
                tags = open_clip.list_pretrained_tags_by_model(arch)
                if pretrained not in tags:
                    looks_like_path = os.sep in pretrained or pretrained.endswith(
                        (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
                    )
                    what = "checkpoint file does not exist" if looks_like_path else "is not a known tag"
                    raise ValueError(
                        f"pretrained={pretrained!r}: {what} for {arch}. Known tags: {tags}; "
                        "or pass the path of a local checkpoint file."
                    )
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)  # reproducible weights when pretrained is None
                    model, _, preprocess = open_clip.create_model_and_transforms(
                        arch,
                        pretrained=pretrained,
                        device=device,
                        precision=self.precision,
                        cache_dir=None if self.cache_dir is None else os.fspath(self.cache_dir),
                        weights_only=True,
                    )
            except Exception as exc:
                if pretrained is None:
                    raise
                if os.path.isfile(pretrained):
                    raise ValueError(
                        f"pretrained={pretrained!r}: the checkpoint file could not be loaded "
                        f"into {arch} ({type(exc).__name__}: {exc})."
                    ) from exc
                raise RuntimeError(
                    f"Could not get the {arch} weights for pretrained tag {pretrained!r}: "
                    f"{exc}. The first use downloads them from the internet; on a machine "
                    "without access, download the checkpoint elsewhere and pass its path "
                    "as pretrained=<file>."
                ) from exc
            model.eval()
            tokenizer = open_clip.get_tokenizer(arch)
            _MODELS[key] = (model, preprocess, tokenizer, device)
            return _MODELS[key]

    # -- encoding ---------------------------------------------------------------------
    def encode_image(self, inputs: Any) -> np.ndarray:
        """Embed images: paths, PIL images, HxWxC uint8 arrays, or an (n, H, W, C) array.

        An ``(n, embedding_dim)`` float array is taken as precomputed embeddings and
        returned as float32 after checking its width. Embeddings are not normalised.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, embedding_dim), float32
        """
        pre = _as_embedding_matrix(inputs, self.embedding_dim, "image")
        if pre is not None:
            return pre
        items = _as_item_list(inputs, "images")
        model, preprocess, _, device = self._load()
        dtype = _input_dtype(self.precision)
        out = np.empty((len(items), self.embedding_dim), dtype=np.float32)
        workers = min(4, os.cpu_count() or 1) if self.num_workers is None else self.num_workers
        skip = self.on_error == "zero"
        batches = _preprocessed_batches(items, preprocess, self.batch_size, workers, skip)
        n_batches = -(-len(items) // self.batch_size)
        forward = self._resilient(lambda m, x: m.encode_image(x), "image")
        failures = []
        for start, pixels, failed in progress(batches, n_batches, "encoding images", self.verbose):
            stop = min(start + self.batch_size, len(items))
            bad = {i for i, _ in failed}
            out[sorted(bad)] = 0.0
            if pixels is not None:
                ok = [i for i in range(start, stop) if i not in bad]
                out[ok] = forward(model, pixels.to(device=device, dtype=dtype)).float().cpu().numpy()
            failures.extend(failed)
        if failures:
            import warnings

            listed = "; ".join(f"{i}: {msg}" for i, msg in failures[:20])
            more = f" (and {len(failures) - 20} more)" if len(failures) > 20 else ""
            warnings.warn(
                f"{len(failures)} of {len(items)} images could not be read and got all-zero "
                f"embeddings (on_error='zero'): {listed}{more}",
                UserWarning,
            )
        return out

    def encode_text(self, texts: Any) -> np.ndarray:
        """Embed strings (an ``(n, embedding_dim)`` float array passes through).

        Texts longer than the model's context (77 tokens for CLIP) are truncated by the
        open_clip tokenizer, keeping the end-of-text token.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, embedding_dim), float32
        """
        pre = _as_embedding_matrix(texts, self.embedding_dim, "text")
        if pre is not None:
            return pre
        items = _as_item_list(texts, "texts")
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise TypeError(f"Text {i} is a {type(t).__name__} ({t!r}); texts must be strings.")
        torch = import_torch()
        model, _, tokenizer, device = self._load()
        tokens = tokenizer(items)
        out = np.empty((len(items), self.embedding_dim), dtype=np.float32)
        # Sorting by length lets each batch stop at its own longest sequence.
        lengths = _token_lengths(tokens)
        order = np.argsort(-lengths, kind="stable")
        starts = range(0, len(items), self.batch_size)
        forward = self._resilient(encode_text_tokens, "text")
        for start in progress(starts, len(starts), "encoding texts", self.verbose):
            sel = order[start : start + self.batch_size]
            emb = forward(model, tokens[torch.as_tensor(sel)].to(device))
            out[sel] = emb.float().cpu().numpy()
        return out

    def _resilient(self, call, what):
        """``call(model, batch)`` that halves batches on out-of-memory, then uses the CPU."""
        torch = import_torch()

        def combine(a, b, _):
            return torch.cat([a, b.to(a.device)])

        def run(model, batch):
            def on_device(x):
                with torch.inference_mode():
                    return call(model, x)

            def on_cpu(x):
                cpu_model = self._load(device="cpu")[0]
                with torch.inference_mode():
                    return call(cpu_model, x.to("cpu") if x.is_floating_point() else x.cpu())

            fallback = on_cpu if batch.device.type != "cpu" else None
            return run_split_on_oom(on_device, batch, combine=combine, fallback=fallback, what=what)

        return run


def _input_dtype(precision: str):
    """dtype of the pixels fed to a model created with open_clip ``precision``."""
    torch = import_torch()
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)


def _preprocessed_batches(items: list, preprocess, batch_size: int, workers: int, skip=False):
    """Yield ``(start, pixels, failed)`` per batch; threads read ahead two batches.

    Decoding (PIL) and resizing release the GIL, so they overlap with the model's forward
    pass. Errors surface in input order and name the input's index and path. With ``skip``,
    unreadable inputs are left out of ``pixels`` and listed in ``failed`` as
    ``(index, message)``; ``pixels`` is None when the whole batch failed.
    """
    torch = import_torch()

    def prepare(i):
        try:
            return preprocess(load_image(items[i], i))
        except (FileNotFoundError, ValueError) as exc:
            if not skip:
                raise
            return exc

    def assemble(start, results):
        failed = [(start + k, str(r)) for k, r in enumerate(results) if isinstance(r, Exception)]
        good = [r for r in results if not isinstance(r, Exception)]
        return start, (torch.stack(good) if good else None), failed

    starts = range(0, len(items), batch_size)
    if workers == 0:
        for start in starts:
            stop = min(start + batch_size, len(items))
            yield assemble(start, [prepare(i) for i in range(start, stop)])
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="splice-read")
    try:
        pending = deque()
        queue = iter(starts)

        def submit_next():
            start = next(queue, None)
            if start is not None:
                stop = min(start + batch_size, len(items))
                pending.append((start, [pool.submit(prepare, i) for i in range(start, stop)]))

        submit_next()
        submit_next()
        while pending:
            start, futures = pending.popleft()
            batch = assemble(start, [f.result() for f in futures])
            submit_next()
            yield batch
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _as_item_list(inputs: Any, what: str) -> list:
    if isinstance(inputs, (str, os.PathLike)):
        raise TypeError(
            f"Expected a collection of {what}, got a single {type(inputs).__name__}; "
            f"wrap it in a list: [{inputs!r}]."
        )
    if isinstance(inputs, np.ndarray) and inputs.ndim == 4:
        return list(inputs)
    if isinstance(inputs, np.ndarray) and inputs.ndim == 3 and what == "images":
        raise ValueError(
            f"Got an array of shape {inputs.shape}: pass a list of HxWxC images or an "
            "(n, H, W, C) uint8 array."
        )
    if not isinstance(inputs, (Sequence, np.ndarray)) and not hasattr(inputs, "__iter__"):
        raise TypeError(f"Expected a collection of {what}, got {type(inputs).__name__}.")
    items = list(inputs)
    if not items:
        raise ValueError(f"Got an empty collection of {what}; at least one is needed.")
    return items


def _token_lengths(tokens) -> np.ndarray:
    """Positions up to and including the end-of-text token (the largest id, for CLIP)."""
    return tokens.argmax(dim=-1).cpu().numpy() + 1


def _supports_truncation(model) -> bool:
    """True for causal CLIP text towers pooled at the end-of-text token (argmax pooling).

    Then positions after that token cannot change the pooled output, so the sequence can be
    cut there. Other towers (HF text models, non-causal masks, other pooling) fall back to
    ``model.encode_text``.
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


def encode_text_tokens(model, tokens):
    """``model.encode_text(tokens)``, computed only up to the batch's longest sequence."""
    if not _supports_truncation(model):
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
