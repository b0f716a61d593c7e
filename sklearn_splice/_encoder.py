"""OpenCLIPEncoder: image and text embeddings from an open_clip model, loaded lazily."""

from __future__ import annotations

import atexit
import difflib
import hashlib
import json
import os
import re
import reprlib
import shutil
import tempfile
import threading
import warnings
from collections import OrderedDict
from numbers import Integral
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from ._cache import file_identity
from ._compat import Interval, StrOptions
from ._errors import InputTypeError, UnreadableInputsWarning, WeightsUnavailableError
from ._image_reader import preprocessed_batches
from ._inputs import classify_inputs
from ._progress import progress
from ._text_tower import encode_text_tokens, token_lengths
from ._torch_utils import import_open_clip, import_torch, resolve_device, run_split_on_oom
from ._weights import fetch_weights, root_handlers_kept

__all__ = ["OpenCLIPEncoder"]

# Loaded models are shared by every encoder (and every clone of one) in the process,
# keyed by what determines their outputs; they never live on an encoder instance. The
# registry is bounded: a grid search over backbones must not keep every model in memory.
MAX_LOADED_MODELS = 2
_MODELS: OrderedDict[tuple, tuple] = OrderedDict()
_MODELS_LOCK = threading.Lock()

# Model-config files are registered with open_clip under a name unique to their resolved
# path and content, through copies kept in a folder private to this process.
_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")
_REGISTERED_CONFIGS: dict[str, str] = {}
_CONFIG_LOCK = threading.Lock()
_config_folder: Path | None = None

# open_clip's preprocessing settings that a pretrained tag may set.
_TAG_PREPROCESS = {
    "mean": "image_mean",
    "std": "image_std",
    "interpolation": "image_interpolation",
    "resize_mode": "image_resize_mode",
}


class _Weights(NamedTuple):
    """Where a model's weights come from: a file, a tag, both (a declared file) or neither."""

    file: str | None
    tag: str | None


class OpenCLIPEncoder(BaseEstimator):
    """Image and text embeddings from an open_clip model.

    The model is loaded on first use, never in ``__init__`` and never pickled: it is kept
    in a per-process registry of the most recently used models (at most
    ``MAX_LOADED_MODELS``), shared by all encoders with the same backbone, so clones made by
    ``GridSearchCV`` do not reload it. Being an estimator, the encoder clones and its
    parameters can be grid-searched (``splice__encoder__model_name``).

    Parameters
    ----------
    model_name : str, default="ViT-B-32"
        open_clip architecture name (see ``open_clip.list_models()``), or the path of an
        open_clip model-config JSON file for a custom architecture.
    pretrained : str or None, default="laion2b_s34b_b79k"
        open_clip pretrained tag, or the path of a local checkpoint file (``.pt``/``.bin``
        loaded with ``torch.load(weights_only=True)``, or ``.safetensors``). A tag's weights
        are taken from the local Hugging Face cache, or downloaded into ``cache_dir`` on
        first use. ``None`` gives randomly initialised weights (seeded, so reproducible),
        for tests and benchmarks only.
    pretrained_tag : str or None, default=None
        When ``pretrained`` is a checkpoint file, the open_clip pretrained tag whose weights
        it holds, e.g. for a local copy of ``laion2b_s34b_b79k``. This lets the shipped
        reference mean of that backbone apply (see :meth:`backbone`), and images are
        preprocessed as open_clip does for that tag. It is not verified against the file.
        Must be None when ``pretrained`` is None, and equal to ``pretrained`` when that is
        a tag.
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
        What an unreadable input (missing, empty, truncated, not an image, of the wrong
        type) does: ``"raise"`` raises its ``InputError``, whose
        ``.index`` is its position in the batch; ``"zero"`` gives it an all-zero embedding
        (so rows never shift against labels; ``SpliceTransformer`` turns it into an
        all-zero row of weights) and issues one ``UnreadableInputsWarning`` per call,
        listing every such input.
    cache_dir : str or path, default=None
        Where downloaded weights are stored (the Hugging Face cache when None).
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
    >>> enc.backbone()
    ('ViT-B-32', 'laion2b_s34b_b79k')
    """

    _parameter_constraints: dict = {
        "model_name": [str, os.PathLike],
        "pretrained": [str, os.PathLike, None],
        "pretrained_tag": [str, None],
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
        pretrained_tag=None,
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
        self.pretrained_tag = pretrained_tag
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
            return _register_config(Path(name))
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

    def _weights(self, arch: str) -> _Weights:
        """Check ``pretrained`` and ``pretrained_tag`` together; no weights are loaded."""
        tag = self.pretrained_tag
        if self.pretrained is None:
            if tag is not None:
                raise ValueError(
                    f"pretrained_tag={tag!r} names the weights a checkpoint file holds, but "
                    "pretrained=None asks for random weights; pass the file as pretrained."
                )
            return _Weights(None, None)
        pretrained = os.fspath(self.pretrained)
        if os.path.isfile(pretrained):
            return _Weights(pretrained, tag)  # a declared tag is taken at its word
        looks_like_path = os.sep in pretrained or pretrained.endswith(
            (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
        )
        if looks_like_path:
            raise ValueError(f"pretrained={pretrained!r}: checkpoint file does not exist.")
        _check_tag(arch, pretrained)
        if tag is not None and tag != pretrained:
            raise ValueError(
                f"pretrained={pretrained!r} is a tag, and pretrained_tag={tag!r} names other "
                "weights; pretrained_tag is only for checkpoint files."
            )
        return _Weights(None, pretrained)

    @property
    def embedding_dim(self) -> int:
        """Width of the joint embedding space, read from the model config (no weights loaded).

        Returns
        -------
        width : int
        """
        return int(self._model_config()["embed_dim"])

    def backbone(self) -> tuple[str, str | None]:
        """The open_clip architecture and the pretrained weights it runs with.

        No weights are loaded.

        Returns
        -------
        architecture : str
            The open_clip architecture name (for a model-config file, the name it is
            registered under in this process).
        tag : str or None
            The open_clip pretrained tag: ``pretrained`` when it is a tag,
            ``pretrained_tag`` when ``pretrained`` is a checkpoint file, and None for random
            weights or a checkpoint file whose tag is not declared.
        """
        self._validate_params()
        arch = self._architecture()
        self._model_config()
        return arch, self._weights(arch).tag

    def _weights_identity(self, weights: _Weights) -> str:
        if weights.file is None:
            return "random-init-seed0" if weights.tag is None else f"tag:{weights.tag}"
        identity = file_identity(weights.file) or f"file:{weights.file}"
        # a declared tag changes the preprocessing, hence the embeddings
        return identity if weights.tag is None else f"{identity}:as-tag:{weights.tag}"

    def cache_identity(self) -> str:
        """A string that changes whenever the embeddings this encoder computes could change.

        Returns
        -------
        identity : str
            Made of the class (a subclass may embed differently), the architecture, its
            config, the weights (a file by path, size and modification time) and the
            precision.
        """
        arch = self._architecture()
        cfg = self._model_config()
        cls = type(self)
        return "|".join(
            [
                f"open_clip:{cls.__module__}.{cls.__qualname__}",
                arch,
                json.dumps(cfg, sort_keys=True),
                self._weights_identity(self._weights(arch)),
                self.precision,
            ]
        )

    # -- model ------------------------------------------------------------------------
    def _load(self, device=None, *, keep=True):
        """(model, preprocess, tokenizer, device) from the process registry, loading once.

        With ``keep=False`` a model that is not registered yet is loaded for the caller
        only (the CPU copy used when a device runs out of memory).
        """
        self._validate_params()
        arch = self._architecture()
        self._model_config()  # clear error for unknown architectures
        weights = self._weights(arch)
        device = resolve_device(self.device if device is None else device)
        key = (arch, self._weights_identity(weights), str(device), self.precision)
        with _MODELS_LOCK:
            entry = _MODELS.get(key)
            if entry is not None:
                _MODELS.move_to_end(key)
                return entry
            entry = self._create(arch, weights, device)
            if keep:
                _MODELS[key] = entry
                while len(_MODELS) > MAX_LOADED_MODELS:
                    _MODELS.popitem(last=False)
            return entry

    def _create(self, arch: str, weights: _Weights, device) -> tuple:
        # open_clip would leave a handler on an unconfigured root logger, which then
        # duplicates every log line of the host application (dask's, the Hub's retries).
        with root_handlers_kept():
            return self._create_model(arch, weights, device)

    def _create_model(self, arch: str, weights: _Weights, device) -> tuple:
        torch = import_torch()
        open_clip = import_open_clip()
        cache_dir = None if self.cache_dir is None else os.fspath(self.cache_dir)
        options = {}
        checkpoint = weights.file
        if weights.tag is not None:
            tag_cfg = open_clip.get_pretrained_cfg(arch, weights.tag)
            options = {arg: tag_cfg[k] for k, arg in _TAG_PREPROCESS.items() if k in tag_cfg}
            _warn_on_quick_gelu_mismatch(arch, weights.tag, tag_cfg)
            if checkpoint is None:
                checkpoint = fetch_weights(arch, weights.tag, tag_cfg, cache_dir)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # reproducible weights when pretrained is None
                model, _, preprocess = open_clip.create_model_and_transforms(
                    arch,
                    pretrained=checkpoint,
                    device=device,
                    precision=self.precision,
                    cache_dir=cache_dir,
                    weights_only=True,
                    **options,
                )
        except Exception as exc:
            if checkpoint is None:
                raise
            if weights.file is None:
                raise WeightsUnavailableError(
                    arch, weights.tag, f"the file {checkpoint} could not be loaded"
                ) from exc
            raise ValueError(
                f"pretrained={weights.file!r}: the checkpoint file could not be loaded into "
                f"{arch} ({type(exc).__name__}, chained below)."
            ) from exc
        model.eval()
        tokenizer = open_clip.get_tokenizer(arch)
        return model, preprocess, tokenizer, device

    # -- encoding ---------------------------------------------------------------------
    def encode_image(self, images: Any) -> np.ndarray:
        """Embed images.

        Parameters
        ----------
        images : list or array
            Paths, PIL images or HxW / HxWxC uint8 arrays, or an (n, H, W, C) uint8 array.
            A numeric (n, embedding_dim) matrix is taken as precomputed embeddings and
            returned in its own float precision after checking its width and values.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, embedding_dim)
            float32 for inputs the model embeds; precomputed embeddings keep their precision.
            Not normalised. With ``on_error="zero"``, unreadable inputs get all-zero rows.

        Raises
        ------
        InputError
            With ``on_error="raise"``, for the first unreadable input (``.index`` is its
            position in ``images``).

        Warns
        -----
        UnreadableInputsWarning
            With ``on_error="zero"``, once per call when some inputs were unreadable.
        """
        width = self.embedding_dim
        inputs = classify_inputs(images)
        if inputs.is_matrix:
            return _embedding_matrix(inputs.data, width, "image")
        items = inputs.data
        model, preprocess, _, device = self._load()
        dtype = _input_dtype(self.precision)
        out = np.zeros((len(items), width), dtype=np.float32)
        workers = min(4, os.cpu_count() or 1) if self.num_workers is None else self.num_workers
        skip = self.on_error == "zero"
        batches = preprocessed_batches(items, preprocess, self.batch_size, workers, skip)
        n_batches = -(-len(items) // self.batch_size)
        forward = self._resilient(lambda m, x: m.encode_image(x), "image")
        failures = []
        try:
            for start, pixels, failed in progress(
                batches, n_batches, "encoding images", self.verbose
            ):
                failures.extend(failed)
                if pixels is None:
                    continue
                bad = {f.index for f in failed}
                stop = min(start + self.batch_size, len(items))
                ok = [i for i in range(start, stop) if i not in bad]
                emb = forward(model, pixels.to(device=device, dtype=dtype))
                out[ok] = emb.float().cpu().numpy()
        finally:
            batches.close()  # stops the reading threads now, not when garbage collected
        if failures:
            warnings.warn(UnreadableInputsWarning(failures, len(items)), stacklevel=2)
        return out

    def encode_text(self, texts: Any) -> np.ndarray:
        """Embed strings.

        Texts longer than the model's context (77 tokens for CLIP) are truncated by the
        open_clip tokenizer, keeping the end-of-text token.

        Parameters
        ----------
        texts : list of str
            The texts. A numeric (n, embedding_dim) matrix is taken as precomputed
            embeddings and returned in its own float precision after checking its width and
            values.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, embedding_dim)
            float32 for inputs the model embeds; precomputed embeddings keep their precision.
            Not normalised.

        Raises
        ------
        InputTypeError
            For a text that is not a string (``.index`` is its position).
        """
        width = self.embedding_dim
        inputs = classify_inputs(texts)
        if inputs.is_matrix:
            return _embedding_matrix(inputs.data, width, "text")
        items = inputs.data
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise InputTypeError(
                    i,
                    f"is a {type(text).__name__} ({reprlib.repr(text)}); texts must be strings.",
                    kind="Text",
                )
        torch = import_torch()
        model, _, tokenizer, device = self._load()
        tokens = tokenizer(items)
        out = np.empty((len(items), width), dtype=np.float32)
        # Sorting by length lets each batch stop at its own longest sequence.
        order = np.argsort(-token_lengths(tokens), kind="stable")
        starts = range(0, len(items), self.batch_size)
        forward = self._resilient(encode_text_tokens, "text")
        for start in progress(starts, len(starts), "encoding texts", self.verbose):
            sel = order[start : start + self.batch_size]
            emb = forward(model, tokens[torch.as_tensor(sel)].to(device))
            out[sel] = emb.float().cpu().numpy()
        return out

    def _resilient(self, call, what):
        """``call(model, batch)`` that halves batches on out-of-memory, then uses the CPU.

        The CPU copy of the model is loaded at most once per returned function and is not
        registered, so it is freed when the encoding call that needed it ends.
        """
        torch = import_torch()
        cpu_model = None

        def combine(a, b, _):
            return torch.cat([a, b.to(a.device)])

        def on_cpu(x):
            nonlocal cpu_model
            if cpu_model is None:
                cpu_model = self._load(device="cpu", keep=False)[0]
            with torch.inference_mode():
                return call(cpu_model, x.to("cpu") if x.is_floating_point() else x.cpu())

        def run(model, batch):
            def on_device(x):
                with torch.inference_mode():
                    return call(model, x)

            fallback = on_cpu if batch.device.type != "cpu" else None
            return run_split_on_oom(on_device, batch, combine=combine, fallback=fallback, what=what)

        return run


def _embedding_matrix(data: Any, width: int, what: str) -> np.ndarray:
    """Precomputed embeddings in their own float precision, after checking shape and values."""
    if sp.issparse(data):
        raise TypeError(f"Precomputed {what} embeddings must be a dense array, not sparse.")
    arr = np.asarray(data)
    if arr.dtype.kind == "O":  # e.g. a list of rows mixing Python and NumPy numbers
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            pass
    if arr.dtype.kind not in "fiu":
        raise ValueError(
            f"Precomputed {what} embeddings must be real numbers, got dtype {arr.dtype}."
        )
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(
            f"Precomputed {what} embeddings must have shape (n_samples, {width}) for this "
            f"model, got {arr.shape}."
        )
    # float64 stays float64: rounding to float32 would turn magnitudes beyond its range
    # into inf or 0, and a zero row reads as an unreadable input.
    arr = arr.astype(np.float64 if arr.dtype.kind in "iu" else arr.dtype, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"Precomputed {what} embeddings contain NaN or infinite values.")
    return arr


def _input_dtype(precision: str):
    """dtype of the pixels fed to a model created with open_clip ``precision``."""
    torch = import_torch()
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)


# -- model configs ----------------------------------------------------------------------
def _register_config(path: Path) -> str:
    """Register a model-config file with open_clip; return the architecture name it got.

    The name is the file's stem and a hash of its resolved path and content, so two files
    named alike in two folders are two architectures, and an edited file a new one.
    """
    if not path.is_file():
        raise FileNotFoundError(f"model_name: model config file {path} does not exist.")
    resolved = path.resolve()
    content = resolved.read_bytes()
    digest = hashlib.sha256(os.fsencode(resolved) + b"\0" + content).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem)  # e.g. no "hf-hub:" prefix
    name = f"{stem}-{digest}"
    with _CONFIG_LOCK:
        if name in _REGISTERED_CONFIGS:
            return name
        try:
            cfg = json.loads(content)
        except ValueError as exc:
            raise ValueError(f"model_name: model config file {path} is not valid JSON.") from exc
        if not isinstance(cfg, dict) or not all(k in cfg for k in _CONFIG_KEYS):
            raise ValueError(
                f"model_name: {path} is not an open_clip model config; it needs the keys "
                f"{list(_CONFIG_KEYS)}."
            )
        # open_clip re-reads every registered file whenever one is added, so the copy is
        # checked above (a broken one would break every later registration) and kept.
        copy = _config_dir() / f"{name}.json"
        copy.write_text(json.dumps(cfg), encoding="ascii")
        import_open_clip().add_model_config(copy)
        _REGISTERED_CONFIGS[name] = str(resolved)
    return name


def _config_dir() -> Path:
    global _config_folder
    if _config_folder is None:
        _config_folder = Path(tempfile.mkdtemp(prefix="sklearn-splice-configs-"))
        atexit.register(shutil.rmtree, _config_folder, ignore_errors=True)
    return _config_folder


# -- pretrained weights -----------------------------------------------------------------
def _check_tag(arch: str, tag: str) -> None:
    tags = import_open_clip().list_pretrained_tags_by_model(arch)
    if tag not in tags:
        raise ValueError(
            f"pretrained={tag!r} is not a known tag for {arch}. Known tags: {tags}; or pass "
            "the path of a local checkpoint file."
        )


def _warn_on_quick_gelu_mismatch(arch: str, tag: str, tag_cfg: dict) -> None:
    """open_clip's own check, which it skips when the weights are given as a file."""
    if not tag_cfg:  # a declared tag open_clip does not know for this architecture
        return
    model_quick_gelu = bool(import_open_clip().get_model_config(arch).get("quick_gelu", False))
    tag_quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    if model_quick_gelu != tag_quick_gelu:
        warnings.warn(
            f"The {tag!r} weights were trained with quick_gelu={tag_quick_gelu}, but {arch} "
            f"uses quick_gelu={model_quick_gelu}; the embeddings will be off.",
            UserWarning,
            stacklevel=6,  # the caller of encode_image / encode_text
        )
