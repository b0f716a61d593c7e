"""SpliceTransformer: CLIP embeddings as sparse nonnegative weights over concept words."""

from __future__ import annotations

import difflib
import os
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._dictionary import _resolve_cache_dir, build_dictionary, concept_embeddings, normalize_rows
from ._embedding_cache import cached_encode
from ._encoder import OpenCLIPEncoder
from ._solver import nonnegative_lasso
from ._torch_utils import resolve_device, usable_device
from ._vocabulary import VOCABULARIES, load_reference_mean, load_vocabulary

__all__ = ["SpliceTransformer"]

# Rows normalised and solved at a time: bounds the float64 working copies of transform.
_CHUNK = 8192


def _is_matrix_input(X) -> bool:
    """Numeric 2-D input (embeddings or features) goes through ``validate_data``.

    Lists of paths, PIL images, image arrays or strings go to the encoder unchanged.
    """
    if sp.issparse(X):
        return True
    if isinstance(X, np.ndarray):
        return X.ndim <= 2 and X.dtype.kind in "biufc"
    if hasattr(X, "iloc"):  # pandas: a column of paths or texts is a list of inputs
        return _pandas_column(X) is None
    if hasattr(X, "__array__") and not hasattr(X, "getpixel"):
        return True  # DataFrames and array wrappers
    if isinstance(X, (list, tuple)) and len(X) and isinstance(X[0], (list, tuple)):
        return True
    if isinstance(X, (list, tuple)) and len(X) and isinstance(X[0], (Real, np.number)):
        return True  # a 1-D list of numbers: validate_data explains it must be 2-D
    return False


def _unit_sum(E):
    """Sum of the unit-normalised rows of E and their count, skipping all-zero rows."""
    total = np.zeros(E.shape[1])
    count = 0
    for start in range(0, E.shape[0], _CHUNK):
        U = normalize_rows(np.asarray(E[start : start + _CHUNK], dtype=np.float64))
        total += U.sum(axis=0)
        count += int(U.any(axis=1).sum())
    return total, count


def _pandas_column(X):
    """The values of a pandas Series, or of a one-column DataFrame, that is not numeric."""
    if getattr(X, "ndim", 0) == 2:
        if X.shape[1] != 1:
            return None
        X = X.iloc[:, 0]
    if getattr(X, "ndim", 0) != 1 or np.asarray(X).dtype.kind in "biufc":
        return None
    return list(X)


def _as_item_list(X):
    """Inputs to embed one by one (so they can be cached), or None to pass X on as is."""
    if isinstance(X, (list, tuple)) and len(X):
        return list(X)
    if isinstance(X, np.ndarray) and X.ndim in (1, 4) and X.dtype.kind in "OUu" and len(X):
        return list(X)
    if hasattr(X, "iloc"):
        items = _pandas_column(X)
        return items if items else None
    return None


class SpliceTransformer(TransformerMixin, BaseEstimator):
    """Sparse, nonnegative concept weights of images or texts (SpLiCE).

    ``fit`` embeds the training inputs with a CLIP model, stores the mean of their
    unit-normalised embeddings, and builds the concept dictionary from the text embeddings
    of the vocabulary (centred over the vocabulary, unit rows). ``transform`` embeds,
    centres with that mean and solves, for each input, the nonnegative lasso::

        w* = argmin_{w >= 0} ||C^T w - z_c||^2 + l1_penalty * ||w||_1

    against the dictionary ``C``. Each output column is one concept word
    (``get_feature_names_out``).

    Parameters
    ----------
    encoder : object, default=None
        Anything with ``encode_image(inputs) -> (n, d) array`` and
        ``encode_text(list_of_str) -> (n, d) array``. ``None`` means the paper's backbone,
        ``OpenCLIPEncoder("ViT-B-32", "laion2b_s34b_b79k")``.
    vocabulary : {"laion", "laion_bigrams", "mscoco"} or list of str, default="laion"
        The concepts: a shipped vocabulary or your own list of strings.
    vocabulary_size : int or None, default=10000
        For a shipped vocabulary, keep its ``vocabulary_size`` most frequent concepts;
        ``None`` keeps all. Ignored for a list.
    l1_penalty : float, default=0.25
        The sparsity penalty ``lambda``. Typical values 0.15-0.35 give about 5-30
        nonzero weights with the 10,000-word LAION vocabulary.
    image_mean : {"fit", "reference"} or array-like of shape (d,), default="fit"
        Mean embedding used to centre inputs. ``"fit"``: the mean of the unit-normalised
        embeddings of the inputs given to ``fit``. ``"reference"``: the shipped MSCOCO mean
        of the backbone (only for the four backbones in ``REFERENCE_MEANS``). An array: used
        as given.
    modality : {"image", "text"}, default="image"
        Decompose image embeddings, or text embeddings of input strings.
    exclude_concepts : list of str, default=None
        Concept names whose weights are set to zero after solving (intervention).
    sparse_output : bool, default=True
        ``transform`` returns a CSR matrix; ``False`` gives a dense array. Under
        ``set_output(transform="pandas")`` the output is a dense DataFrame either way.
    solver : {"working_set", "fista"}, default="working_set"
        See :func:`nonnegative_lasso`.
    tol : float, default=1e-6
        Relative duality gap at which each sample's solve stops.
    max_iter : int, default=100
        Most outer iterations of the solver.
    batch_size : int, default=256
        Samples solved together.
    device : str, default="auto"
        Device of the solver: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
    cache_dir : str, path, None or False, default=None
        Folder of the on-disk caches (concept embeddings, and input embeddings when
        ``embedding_cache``); ``None`` uses ``$SKLEARN_SPLICE_CACHE_DIR`` or
        ``~/.cache/sklearn_splice``; ``False`` keeps nothing on disk.
    embedding_cache : bool, default=True
        Reuse the embeddings of inputs already seen with the same backbone: in memory for
        every clone in the process, and on disk (one small file per input under
        ``cache_dir``) for joblib workers, so that a grid search embeds each image once.
        Inputs are keyed by content (path + size + mtime for files, a hash for arrays, PIL
        images and strings). Only encoders with a ``cache_identity()`` method are cached.
    n_jobs : int, default=None
        Chunks of rows solved in parallel by ``transform`` (joblib threads; torch releases
        the GIL). ``None`` means 1 unless in a ``joblib.parallel_config`` context.
    verbose : bool, default=False
        Report stages and show progress bars.

    Attributes
    ----------
    encoder_ : object
        The encoder used (``encoder`` or the default ``OpenCLIPEncoder``).
    concepts_ : ndarray of str of shape (n_concepts,)
        The concept words, one per output column.
    components_ : ndarray of shape (n_concepts, d), float32
        The concept dictionary: centred, unit-norm concept embeddings.
    mean_ : ndarray of shape (d,), float32
        Mean embedding subtracted before decomposing.
    excluded_indices_ : ndarray of int
        Columns zeroed by ``exclude_concepts``.
    n_samples_seen_ : int
        Inputs with a nonzero embedding that the fitted mean averages (0 for a given mean).
    n_features_in_ : int
        Width of numeric input (precomputed embeddings); only set when ``fit`` got a
        numeric matrix.
    feature_names_in_ : ndarray of str
        Column names of a DataFrame given to ``fit``.

    See Also
    --------
    nonnegative_lasso : The solver, usable on its own.
    OpenCLIPEncoder : The default encoder.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_splice import SpliceTransformer
    >>> class ToyEncoder:  # stands in for CLIP: fixed random vectors of width 8
    ...     def encode_text(self, texts):
    ...         rng = np.random.RandomState(0)
    ...         return rng.randn(len(texts), 8)
    ...     def encode_image(self, X):
    ...         return np.asarray(X, dtype=float)
    >>> words = ["cat", "dog", "tree", "car", "sky", "sea"]
    >>> splice = SpliceTransformer(ToyEncoder(), vocabulary=words, l1_penalty=0.1,
    ...                            image_mean=np.zeros(8), device="cpu")
    >>> X = np.random.RandomState(1).randn(4, 8)
    >>> W = splice.fit_transform(X)
    >>> W.shape
    (4, 6)
    >>> list(splice.get_feature_names_out())
    ['cat', 'dog', 'tree', 'car', 'sky', 'sea']
    """

    _parameter_constraints: dict = {
        "encoder": [None, HasMethods(["encode_image", "encode_text"])],
        "vocabulary": [StrOptions(set(VOCABULARIES)), "array-like"],
        "vocabulary_size": [Interval(Integral, 1, None, closed="left"), None],
        "l1_penalty": [Interval(Real, 0, None, closed="left")],
        "image_mean": [StrOptions({"fit", "reference"}), "array-like"],
        "modality": [StrOptions({"image", "text"})],
        "exclude_concepts": ["array-like", None],
        "sparse_output": ["boolean"],
        "solver": [StrOptions({"working_set", "fista"})],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": "no_validation",  # checked by resolve_device, which knows torch devices
        "cache_dir": [str, os.PathLike, None, Options(bool, {False})],
        "embedding_cache": ["boolean"],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        encoder=None,
        *,
        vocabulary="laion",
        vocabulary_size=10000,
        l1_penalty=0.25,
        image_mean="fit",
        modality="image",
        exclude_concepts=None,
        sparse_output=True,
        solver="working_set",
        tol=1e-6,
        max_iter=100,
        batch_size=256,
        device="auto",
        cache_dir=None,
        embedding_cache=True,
        n_jobs=None,
        verbose=False,
    ):
        self.encoder = encoder
        self.vocabulary = vocabulary
        self.vocabulary_size = vocabulary_size
        self.l1_penalty = l1_penalty
        self.image_mean = image_mean
        self.modality = modality
        self.exclude_concepts = exclude_concepts
        self.sparse_output = sparse_output
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = cache_dir
        self.embedding_cache = embedding_cache
        self.n_jobs = n_jobs
        self.verbose = verbose

    # -- fitting ----------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Build the concept dictionary and the mean embedding.

        Parameters
        ----------
        X : list of inputs or array-like of shape (n_samples, d)
            Image paths, PIL images or HxWxC uint8 arrays (``modality="image"``), strings
            (``modality="text"``), or precomputed embeddings.
        y : None
            Ignored.

        Returns
        -------
        self : SpliceTransformer
        """
        self._fit(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit, then return the concept weights of ``X``, embedding ``X`` only once.

        Parameters
        ----------
        X : list of inputs or array-like of shape (n_samples, d)
            As in ``fit``.
        y : None
            Ignored.

        Returns
        -------
        W : csr_matrix or ndarray of shape (n_samples, n_concepts)
        """
        self._validate_params()
        Z = self._fit(X)
        if Z is None:
            Z = self._embed(X, reset=False)
        return self._decompose(Z)

    def _fit(self, X):
        """Fit the state; returns the embeddings of X when they were needed."""
        self._check_files_exist(X)
        self._setup()
        if self._mean_is_fitted():
            E = self._embed(X, reset=True)
            self._update_mean(E, first=True)
            return E
        # A given mean needs no embeddings at fit time; only check the input's form.
        self._set_given_mean()
        self._check_input(X, reset=True)
        return None

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Fit on one batch at a time: the dictionary once, the mean accumulated over batches.

        For data that does not fit in memory: with ``image_mean="fit"`` the mean is the
        running mean of the unit-normalised embeddings of every batch seen so far (equal
        to ``fit`` on all of them at once). Changing parameters between calls needs a new
        estimator.

        Parameters
        ----------
        X : list of inputs or array-like of shape (n_samples, d)
        y : None
            Ignored.

        Returns
        -------
        self : SpliceTransformer
        """
        first = not hasattr(self, "components_")
        if first:
            self._setup()
        if self._mean_is_fitted():
            self._update_mean(self._embed(X, reset=first), first=first)
        else:
            if first:
                self._set_given_mean()
            self._check_input(X, reset=first)
        return self

    def _check_files_exist(self, X):
        """Name a missing image file before the (slow) concept dictionary is built."""
        encoder = OpenCLIPEncoder() if self.encoder is None else self.encoder
        if self.modality != "image" or getattr(encoder, "on_error", "raise") != "raise":
            return
        items = None if _is_matrix_input(X) else _as_item_list(X)
        for i, item in enumerate(items or ()):
            if isinstance(item, (str, os.PathLike)) and not os.path.exists(item):
                raise FileNotFoundError(f"Image {i} ({os.fspath(item)}) does not exist.")

    def _mean_is_fitted(self):
        return isinstance(self.image_mean, str) and self.image_mean == "fit"

    def _update_mean(self, E, *, first):
        """Fold the unit embeddings of E into the running mean (all-zero rows skipped)."""
        total, count = _unit_sum(E)
        seen = 0 if first else self.n_samples_seen_
        if seen + count == 0:
            raise ValueError(
                "Every input given to fit has an all-zero embedding, so no mean can be "
                "fitted; pass readable inputs or set image_mean to 'reference' or an array."
            )
        previous = 0.0 if first else self.mean_.astype(np.float64) * seen
        self.mean_ = ((previous + total) / (seen + count)).astype(np.float32)
        self.n_samples_seen_ = seen + count

    def _set_given_mean(self):
        self.mean_ = np.asarray(self._given_mean(self.components_.shape[1]), dtype=np.float32)
        self.n_samples_seen_ = 0

    def _setup(self):
        """The parts of the fitted state that do not depend on the inputs."""
        resolve_device(self.device)  # an unusable device fails now, not after encoding
        self.encoder_ = OpenCLIPEncoder() if self.encoder is None else self.encoder
        self.concepts_ = np.asarray(
            load_vocabulary(self.vocabulary, self.vocabulary_size), dtype=object
        )
        self.excluded_indices_ = self._excluded_indices()
        emb = concept_embeddings(
            self.encoder_, list(self.concepts_), cache_dir=self.cache_dir, verbose=self.verbose
        )
        self.components_ = build_dictionary(emb)

    def _given_mean(self, d):
        if isinstance(self.image_mean, str):  # "reference"
            enc = self.encoder_
            if self.modality != "image":
                raise ValueError(
                    "image_mean='reference' is an MSCOCO image mean; with modality='text' "
                    "use image_mean='fit' or pass an array."
                )
            if not isinstance(enc, OpenCLIPEncoder) or enc.pretrained is None:
                raise ValueError(
                    "image_mean='reference' needs an OpenCLIPEncoder with a pretrained tag "
                    "that has a shipped mean; use image_mean='fit' or pass an array of shape (d,)."
                )
            mean = load_reference_mean(enc._architecture(), os.fspath(enc.pretrained))
        else:
            mean = check_array(
                np.asarray(self.image_mean), ensure_2d=False, dtype=np.float64, input_name="image_mean"
            )
        if mean.shape != (d,):
            raise ValueError(
                f"image_mean has shape {mean.shape} but the embeddings have width {d}; "
                f"it must have shape ({d},)."
            )
        return mean

    def _excluded_indices(self):
        if self.exclude_concepts is None:
            return np.zeros(0, dtype=np.intp)
        names = [self.exclude_concepts] if isinstance(self.exclude_concepts, str) else list(
            self.exclude_concepts
        )
        position = {c: i for i, c in enumerate(self.concepts_)}
        missing = [n for n in names if n not in position]
        if missing:
            hints = []
            for name in missing:
                close = difflib.get_close_matches(str(name), list(position), n=3)
                hints.append(f"{name!r}" + (f" (close: {', '.join(close)})" if close else ""))
            raise ValueError(
                "exclude_concepts names concepts that are not in the vocabulary: "
                + "; ".join(hints)
            )
        return np.array(sorted({position[n] for n in names}), dtype=np.intp)

    # -- embedding --------------------------------------------------------------------
    def _check_input(self, X, *, reset):
        """Validate numeric matrices (recording ``n_features_in_``); pass other inputs on."""
        if _is_matrix_input(X):
            return validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        if reset:
            for attr in ("n_features_in_", "feature_names_in_"):
                if hasattr(self, attr):
                    delattr(self, attr)
        return X

    def _embed(self, X, *, reset):
        """Embeddings of X as the encoder gives them (not normalised), shape (n_samples, d)."""
        encode = self.encoder_.encode_image if self.modality == "image" else self.encoder_.encode_text
        X = self._check_input(X, reset=reset)
        items = _as_item_list(X)
        identity = getattr(self.encoder_, "cache_identity", None)
        if items is not None and self.embedding_cache and callable(identity):
            folder = _resolve_cache_dir(self.cache_dir)
            E = cached_encode(encode, identity(), items, self.modality, folder)
        else:
            E = np.asarray(encode(X if items is None else items))
        d = self.components_.shape[1]
        if E.ndim != 2 or E.shape[1] != d:
            raise ValueError(
                f"The encoder returned embeddings of shape {E.shape}, but the concept "
                f"dictionary has width {d}."
            )
        if not np.isfinite(E).all():
            bad = np.flatnonzero(~np.isfinite(E).all(axis=1))
            raise ValueError(
                f"The embeddings of {len(bad)} input(s) contain NaN or infinite values "
                f"(rows {bad[:10].tolist()})."
            )
        return E

    # -- transforming -----------------------------------------------------------------
    def transform(self, X):
        """Concept weights of ``X``.

        Parameters
        ----------
        X : list of inputs or array-like of shape (n_samples, d)
            As in ``fit``.

        Returns
        -------
        W : csr_matrix or ndarray of shape (n_samples, n_concepts)
            Nonnegative float64 weights; a CSR matrix when ``sparse_output=True``.
        """
        check_is_fitted(self)
        return self._decompose(self._embed(X, reset=False))

    def _decompose(self, E):
        """Sparse codes of raw embeddings, a chunk of rows at a time (bounded memory).

        An all-zero embedding has no direction: its row of weights is all zero.
        """
        device = usable_device(self.device)
        mean = self.mean_.astype(np.float64)

        def solve(rows):
            U = normalize_rows(np.asarray(E[rows], dtype=np.float64))
            Zc = normalize_rows(U - mean)
            Zc[~U.any(axis=1)] = 0.0
            return nonnegative_lasso(
                Zc,
                self.components_,
                self.l1_penalty,
                solver=self.solver,
                tol=self.tol,
                max_iter=self.max_iter,
                batch_size=self.batch_size,
                device=device,
                sparse_output=True,
                verbose=bool(self.verbose),
            )

        n = E.shape[0]
        n_jobs = effective_n_jobs(self.n_jobs)
        size = min(_CHUNK, max(self.batch_size, -(-n // n_jobs)))
        chunks = [slice(start, start + size) for start in range(0, n, size)]
        if n_jobs > 1 and len(chunks) > 1:
            parts = Parallel(n_jobs=n_jobs, prefer="threads")(delayed(solve)(c) for c in chunks)
        else:
            parts = [solve(c) for c in chunks]
        W = parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")
        if self.excluded_indices_.size:
            keep = np.ones(W.shape[1])
            keep[self.excluded_indices_] = 0.0
            W = sp.csr_matrix(W @ sp.diags(keep))
            W.eliminate_zeros()
        dense_container = _get_output_config("transform", self)["dense"] != "default"
        if self.sparse_output and not dense_container:
            return W
        return W.toarray()

    def embed(self, X):
        """Unit-normalised CLIP embeddings of ``X`` (before centring), shape (n_samples, d).

        Uses the same encoder and embedding cache as ``transform``; useful for fidelity
        (:func:`decomposition_quality`) and for zero-shot classification of dense embeddings.
        """
        check_is_fitted(self)
        return normalize_rows(np.asarray(self._embed(X, reset=False), dtype=np.float64))

    def inverse_transform(self, X):
        """Dense SpLiCE embeddings ``normalise(normalise(C^T w) + mean_)`` (SPEC.md).

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_concepts)
            Concept weights, e.g. the output of ``transform``.

        Returns
        -------
        Z : ndarray of shape (n_samples, d)
            Unit-norm recomposed embeddings (``normalise(mean_)`` where all weights are 0).
        """
        check_is_fitted(self)
        W = check_array(X, accept_sparse="csr", dtype=[np.float64, np.float32], input_name="X")
        c = self.components_.shape[0]
        if W.shape[1] != c:
            raise ValueError(
                f"X has {W.shape[1]} columns but the transformer has {c} concepts."
            )
        recon = np.asarray(W @ self.components_.astype(np.float64))
        return normalize_rows(normalize_rows(recon) + self.mean_.astype(np.float64))

    def get_feature_names_out(self, input_features=None):
        """The concept words, one per output column.

        Parameters
        ----------
        input_features : None
            Ignored; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        return np.asarray(self.concepts_, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags
