"""SpliceTransformer: CLIP embeddings as sparse nonnegative weights over concept words."""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._compat import (
    HasMethods,
    Interval,
    Options,
    StrOptions,
    _check_feature_names_in,
    _fit_context,
    _get_output_config,
)
from ._dictionary import build_dictionary, concept_embeddings, normalize_rows
from ._embedding import embed_inputs, width_error
from ._encoder import OpenCLIPEncoder
from ._inputs import MATRIX, Inputs, classify_inputs
from ._solver import _nonnegative_lasso, _prepare_dictionary
from ._torch_utils import resolve_device, usable_device
from ._vocabulary import (
    VOCABULARIES,
    load_reference_mean,
    load_vocabulary,
    unknown_concepts_hint,
)

__all__ = ["SpliceTransformer"]

# Rows normalised and solved at a time: bounds the float64 working copies of transform.
_CHUNK = 8192
# A unit embedding closer than this to the mean has no direction left after centring: the
# float32 rounding of mean_ alone moves it by about 1e-7.
_NO_DIRECTION = 1e-6


# Dictionaries prepared for the solver, per process: a data-set job or a streaming caller
# calls transform once per batch, and preparing (and, for small vocabularies, the Gram
# matrix) would otherwise be redone every time. Keyed by the fitted array itself (a weak
# reference guards against a reused id); never pickled.
_PREPARED: dict = {}
_PREPARED_LOCK = threading.Lock()
_MAX_PREPARED = 2


def _prepared_dictionary(components, device):
    key = (id(components), str(device))
    with _PREPARED_LOCK:
        hit = _PREPARED.get(key)
        if hit is not None and hit[0]() is components:
            _PREPARED[key] = _PREPARED.pop(key)  # most recently used last
            return hit[1]
    prepared = _prepare_dictionary(components, device)
    with _PREPARED_LOCK:
        _PREPARED[key] = (weakref.ref(components), prepared)
        while len(_PREPARED) > _MAX_PREPARED:
            _PREPARED.pop(next(iter(_PREPARED)))
    return prepared


def _fitted_attributes(est) -> list[str]:
    return [k for k in vars(est) if k.endswith("_") and not k.startswith("__")]


@contextmanager
def _all_or_nothing(est):
    """Fitting either completes or leaves the estimator's fitted state as it was."""
    saved = {k: getattr(est, k) for k in _fitted_attributes(est)}
    try:
        yield
    except BaseException:
        for k in _fitted_attributes(est):
            delattr(est, k)
        for k, v in saved.items():
            setattr(est, k, v)
        raise


def _centred(E, mean):
    """``normalise(normalise(E) - mean)``; zero rows where no direction is left."""
    U = normalize_rows(np.asarray(E, dtype=np.float64))
    D = U - mean
    Zc = normalize_rows(D)
    Zc[~U.any(axis=1) | (np.linalg.norm(D, axis=1) <= _NO_DIRECTION)] = 0.0
    return Zc


def _unit_sum(E):
    """Sum of the unit-normalised rows of E and their count, skipping all-zero rows."""
    total = np.zeros(E.shape[1])
    count = 0
    for start in range(0, E.shape[0], _CHUNK):
        U = normalize_rows(np.asarray(E[start : start + _CHUNK], dtype=np.float64))
        total += U.sum(axis=0)
        count += int(U.any(axis=1).sum())
    return total, count


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
        ``encode_text(list_of_str) -> (n, d) array``, returning exactly one row per input
        in the order given (checked: a wrong row count, width, NaN or infinity is an
        error). ``None`` means the paper's backbone,
        ``OpenCLIPEncoder("ViT-B-32", "laion2b_s34b_b79k", device=device)``.
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
        as given. ``"reference"`` is resolved before anything is encoded, so a backbone
        without a shipped mean fails at once.
    modality : {"image", "text"}, default="image"
        Decompose image embeddings, or text embeddings of input strings.
    exclude_concepts : list of str, default=None
        Concept names whose weights are set to zero after solving (intervention). Read
        at ``transform`` time, so ``set_params(exclude_concepts=...)`` on a fitted
        transformer takes effect; names are checked against the vocabulary.
    sparse_output : bool, default=True
        ``transform`` returns a CSR matrix; ``False`` gives a dense array. Under
        ``set_output(transform="pandas")`` the output is a dense DataFrame either way.
    solver : {"working_set", "fista"}, default="working_set"
        See :func:`nonnegative_lasso`.
    precompute : "auto" or bool, default="auto"
        Whether the working-set solver uses the vocabulary's precomputed Gram matrix
        (faster on the CPU for vocabularies of a few thousand concepts); ``"auto"`` decides
        from the device, the vocabulary size and memory. See :func:`nonnegative_lasso`.
    tol : float, default=1e-6
        Relative duality gap at which each sample's solve stops.
    max_iter : int, default=100
        Most outer iterations of the solver.
    batch_size : int, default=256
        Samples solved together.
    device : str, default="auto"
        Device of the solver, and of the default encoder when ``encoder=None``:
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
    cache_dir : str, path, None or False, default=None
        Folder of the on-disk caches (concept embeddings, and input embeddings when
        ``embedding_cache``); ``None`` uses ``$SKLEARN_SPLICE_CACHE_DIR`` or
        ``~/.cache/sklearn_splice``; ``False`` keeps nothing on disk.
    embedding_cache : bool, default=True
        Reuse the embeddings of inputs already seen with the same backbone: in memory for
        every clone in the process, and on disk (one small file per input under
        ``cache_dir``) for joblib workers, so that a grid search embeds each image once.
        Inputs are keyed by content (path + size + mtime for files, a hash for arrays, PIL
        images and strings). The encoder is identified by its ``cache_identity()`` method,
        or, for a scikit-learn estimator, by its class and parameters; other encoders are
        not cached (with a warning).
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
        Mean embedding subtracted before decomposing. An input whose unit embedding is
        within 1e-6 of it has no direction left and gets all-zero weights.
    modality_ : str
        The modality fitted (``modality`` as it was at ``fit``; the mean belongs to it).
    excluded_indices_ : ndarray of int
        Columns zeroed by the current ``exclude_concepts``.
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
    ...     def cache_identity(self):
    ...         return "toy"
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
        "precompute": [StrOptions({"auto"}), "boolean"],
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
        precompute="auto",
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
        self.precompute = precompute
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

        Fitting is all or nothing: when it fails, the transformer keeps the fitted state
        it had before (or stays unfitted).

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
            The fitted transformer.
        """
        with _all_or_nothing(self):
            self._fit(X, need_embeddings=False)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
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
            As ``transform`` returns them.
        """
        with _all_or_nothing(self):
            E = self._fit(X, need_embeddings=True)
        return self._decompose(E)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Fit on one batch at a time: the dictionary once, the mean accumulated over batches.

        For data that does not fit in memory: with ``image_mean="fit"`` the mean is the
        running mean of the unit-normalised embeddings of every batch seen so far (equal
        to ``fit`` on all of them at once). Changing parameters between calls needs a new
        estimator. A rejected batch leaves the state as it was before the call.

        Parameters
        ----------
        X : list of inputs or array-like of shape (n_samples, d)
            One batch, as in ``fit``.
        y : None
            Ignored.

        Returns
        -------
        self : SpliceTransformer
            The updated transformer.
        """
        with _all_or_nothing(self):
            if not self.__sklearn_is_fitted__():
                self._fit(X, need_embeddings=False)
            else:
                inputs = self._classify(X, reset=False)
                if self._mean_is_fitted():
                    self._fold_into_mean(self._embed(inputs), first=False)
        return self

    def __sklearn_is_fitted__(self):
        return hasattr(self, "components_")

    def _fit(self, X, *, need_embeddings):
        """Fit every attribute; returns the embeddings of X when they were computed.

        The cheap checks come first (vocabulary, excluded names, a given mean), then the
        inputs are embedded, then the concept dictionary is built.
        """
        concepts = np.asarray(load_vocabulary(self.vocabulary, self.vocabulary_size), dtype=object)
        self._excluded_indices(concepts)
        resolve_device(self.device)  # an unusable device fails now, not after encoding
        encoder = OpenCLIPEncoder(device=self.device) if self.encoder is None else self.encoder
        given_mean = None if self._mean_is_fitted() else self._given_mean(encoder)
        inputs = self._classify(X, reset=True)
        E = None
        if self._mean_is_fitted() or need_embeddings:
            E = self._embed(inputs, encoder)
        unit = concept_embeddings(
            encoder, list(concepts), cache_dir=self.cache_dir, verbose=self.verbose
        )
        components = build_dictionary(unit)
        d = components.shape[1]
        if E is not None:
            if E.shape[1] != d:  # the rest of E was checked as it was embedded
                raise width_error(E.shape[1], d, f"{type(encoder).__name__}.encode_{self.modality}")
        if given_mean is not None and given_mean.shape != (d,):
            raise ValueError(
                f"image_mean has shape {given_mean.shape} but the embeddings have width {d}; "
                f"it must have shape ({d},)."
            )
        self.encoder_ = encoder
        self.concepts_ = concepts
        self.components_ = components
        self.modality_ = self.modality
        if given_mean is None:
            self._fold_into_mean(E, first=True)
            self._warn_if_no_direction_left(E)
        else:
            self.mean_ = given_mean.astype(np.float32)
            self.n_samples_seen_ = 0
        return E

    def _warn_if_no_direction_left(self, E):
        mean = self.mean_.astype(np.float64)
        for start in range(0, E.shape[0], _CHUNK):
            if _centred(E[start : start + _CHUNK], mean).any():
                return
        warnings.warn(
            "Every input given to fit has the same direction, so the fitted mean equals it "
            "and these inputs decompose to all-zero weights (nothing is left after "
            "centring). Fit on several distinct inputs, or use image_mean='reference' or an "
            "array.",
            UserWarning,
            stacklevel=3,
        )

    def _mean_is_fitted(self):
        return isinstance(self.image_mean, str) and self.image_mean == "fit"

    def _fold_into_mean(self, E, *, first):
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

    def _given_mean(self, encoder):
        """The mean of ``image_mean="reference"`` or of an array, checked before any encoding."""
        if isinstance(self.image_mean, str):  # "reference"
            if self.modality != "image":
                raise ValueError(
                    "image_mean='reference' is an MSCOCO image mean; with modality='text' "
                    "use image_mean='fit' or pass an array."
                )
            backbone = getattr(encoder, "backbone", None)
            name = backbone() if callable(backbone) else None
            if name is None or name[1] is None:
                raise ValueError(
                    "image_mean='reference' needs to know which pretrained weights the encoder "
                    "holds: use OpenCLIPEncoder with a pretrained tag, or with "
                    "pretrained=<checkpoint file> and pretrained_tag=<the tag it is a copy of>; "
                    "otherwise use image_mean='fit' or pass an array of shape (d,)."
                )
            mean = load_reference_mean(*name)
        else:
            mean = check_array(
                np.asarray(self.image_mean),
                ensure_2d=False,
                dtype=np.float64,
                input_name="image_mean",
            )
            if mean.ndim != 1:
                raise ValueError(f"image_mean must be 1-D of shape (d,), got shape {mean.shape}.")
        width = getattr(encoder, "embedding_dim", None)
        if isinstance(width, Integral) and mean.shape != (width,):
            raise ValueError(
                f"image_mean has shape {mean.shape} but the encoder's embeddings have width "
                f"{width}; it must have shape ({width},)."
            )
        return mean

    def _excluded_indices(self, concepts):
        if self.exclude_concepts is None:
            return np.zeros(0, dtype=np.intp)
        names = (
            [self.exclude_concepts]
            if isinstance(self.exclude_concepts, str)
            else list(self.exclude_concepts)
        )
        position = {c: i for i, c in enumerate(concepts)}
        missing = [n for n in names if not isinstance(n, str) or n not in position]
        if missing:
            raise ValueError(
                "exclude_concepts names concepts that are not in the vocabulary: "
                + unknown_concepts_hint(missing, position)
            )
        return np.array(sorted({position[n] for n in names}), dtype=np.intp)

    @property
    def excluded_indices_(self):
        """Columns zeroed by the current ``exclude_concepts`` (ndarray of int)."""
        check_is_fitted(self)
        return self._excluded_indices(self.concepts_)

    # -- embedding --------------------------------------------------------------------
    def _classify(self, X, *, reset):
        """What X is, decided once; numeric matrices are validated (``n_features_in_``)."""
        inputs = classify_inputs(X)
        if inputs.is_matrix:
            X = validate_data(self, inputs.data, reset=reset, dtype=[np.float64, np.float32])
            return Inputs(MATRIX, X)
        if reset:
            for attr in ("n_features_in_", "feature_names_in_"):
                if hasattr(self, attr):
                    delattr(self, attr)
        return inputs

    def _embed(self, inputs, encoder=None):
        """Checked embeddings of classified inputs, as the encoder gives them.

        With the fitted encoder (``encoder=None``), the width must be the dictionary's.
        """
        fitted = encoder is None
        encoder = self.encoder_ if fitted else encoder
        E = embed_inputs(
            encoder,
            inputs,
            self.modality_ if fitted else self.modality,
            use_cache=self.embedding_cache,
            cache_dir=self.cache_dir,
            width=self.components_.shape[1] if fitted else None,
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
        return self._decompose(self._embed(self._classify(X, reset=False)))

    def _decompose(self, E):
        """Sparse codes of raw embeddings, a chunk of rows at a time (bounded memory).

        An all-zero embedding has no direction: its row of weights is all zero.
        """
        excluded = self._excluded_indices(self.concepts_)
        device = usable_device(self.device)
        prepared = _prepared_dictionary(self.components_, device)
        mean = self.mean_.astype(np.float64)

        def solve(rows):
            codes, _ = _nonnegative_lasso(
                _centred(E[rows], mean),
                prepared,
                self.l1_penalty,
                solver=self.solver,
                precompute=self.precompute,
                tol=self.tol,
                max_iter=self.max_iter,
                batch_size=self.batch_size,
                verbose=bool(self.verbose),
            )
            return codes

        n = E.shape[0]
        n_jobs = effective_n_jobs(self.n_jobs)
        size = min(_CHUNK, max(self.batch_size, -(-n // n_jobs)))
        chunks = [slice(start, start + size) for start in range(0, n, size)]
        if n_jobs > 1 and len(chunks) > 1:
            parts = Parallel(n_jobs=n_jobs, prefer="threads")(delayed(solve)(c) for c in chunks)
        else:
            parts = [solve(c) for c in chunks]
        W = parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")
        if excluded.size:
            keep = np.ones(W.shape[1])
            keep[excluded] = 0.0
            W = sp.csr_matrix(W @ sp.diags(keep))
            W.eliminate_zeros()
        dense_container = _get_output_config("transform", self)["dense"] != "default"
        if self.sparse_output and not dense_container:
            return W
        return W.toarray()

    def embed(self, X):
        """Unit-normalised CLIP embeddings of ``X`` (before centring).

        Uses the same encoder and embedding cache as ``transform``; useful for fidelity
        (:func:`decomposition_quality`) and for zero-shot classification of dense embeddings.

        Parameters
        ----------
        X : list of inputs or array-like of shape (n_samples, d)
            As in ``fit``.

        Returns
        -------
        Z : ndarray of shape (n_samples, d)
            Unit-norm float64 rows (all-zero for unreadable inputs).
        """
        check_is_fitted(self)
        E = self._embed(self._classify(X, reset=False))
        return normalize_rows(np.asarray(E, dtype=np.float64))

    def inverse_transform(self, X):
        """Dense SpLiCE embeddings ``normalise(normalise(C^T w) + mean_)``.

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
            raise ValueError(f"X has {W.shape[1]} columns but the transformer has {c} concepts.")
        recon = np.asarray(W @ self.components_.astype(np.float64))
        return normalize_rows(normalize_rows(recon) + self.mean_.astype(np.float64))

    def get_feature_names_out(self, input_features=None):
        """The concept words, one per output column.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Checked as scikit-learn's transformers check it: when given, it must match
            ``feature_names_in_`` (or have ``n_features_in_`` entries) of a transformer
            fitted on a numeric matrix. It does not change the output names.

        Returns
        -------
        feature_names_out : ndarray of str objects
            The concept words.
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features, generate_names=False)
        return np.asarray(self.concepts_, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags
