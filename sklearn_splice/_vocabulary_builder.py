"""Concept vocabularies built from a user's own captions.

The SpLiCE vocabularies count the words and two-word phrases of LAION captions and keep the
most frequent ones; :func:`build_vocabulary` does the same with any collection of captions
and returns its result in the order of the shipped files (least frequent first).
"""

from __future__ import annotations

import functools
import heapq
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral

import numpy as np

__all__ = ["build_vocabulary"]

#: Every run of letters and digits, and every other visible character on its own.
#: CountVectorizer's default pattern skips one-character words and punctuation, which joins
#: the words around them ("vitamin c tablets" would give "vitamin tablets", "sofa, red"
#: "sofa red"); here they are one-character tokens, which end a phrase and are dropped.
@functools.lru_cache(maxsize=1)
def _token_pattern() -> str:
    """Runs of word characters and combining marks, or one punctuation character.

    ``\\w`` alone leaves out combining marks (the accent of a decomposed "é", the dot that
    lowercasing adds to "İ", the vowel signs of Indic scripts), which would split words.
    """
    # The marks of the Basic Multilingual Plane, as ranges (scanning all of Unicode would
    # cost seconds for the few historic scripts beyond it).
    ranges, start, prev = [], None, None
    for c in range(0x10000):
        if unicodedata.category(chr(c)) in ("Mn", "Mc", "Me"):
            if start is None:
                start = c
            prev = c
        elif start is not None:
            ranges.append(f"\\u{start:04x}-\\u{prev:04x}")
            start = None
    marks = "".join(ranges)
    return rf"(?u)\w[\w{marks}]*|[^\w\s{marks}]"


def _preprocess(lowercase: bool):
    """Lowercase, drop invisible format characters (soft hyphens, joiners), compose (NFC)."""

    def prepare(text: str) -> str:
        text = text.lower() if lowercase else text
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
        return unicodedata.normalize("NFC", text)

    return prepare


@dataclass(frozen=True)
class VocabularyCounts:
    """What :func:`count_concepts` found: the kept concepts and the numbers behind them."""

    #: Kept concepts, least frequent first (the order of the shipped vocabulary files).
    concepts: list[str]
    #: Occurrences of each kept concept, in the same order.
    counts: list[int]
    #: Captions read (each string counts, blank ones included).
    n_captions: int
    #: Distinct words and phrases counted before ``min_count`` and ``max_concepts``.
    n_candidates: int


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def _check_params(max_concepts, ngram_range, min_count, stop_words, lowercase) -> frozenset:
    """Validate the parameters (before a generator of captions is consumed); the stop set."""
    if max_concepts is not None and not (_is_int(max_concepts) and max_concepts >= 1):
        raise ValueError(
            f"max_concepts must be a positive integer or None, got {max_concepts!r}."
        )
    if not (_is_int(min_count) and min_count >= 1):
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}.")
    if (
        not isinstance(ngram_range, (tuple, list))
        or len(ngram_range) != 2
        or not all(_is_int(n) for n in ngram_range)
        or not 1 <= ngram_range[0] <= ngram_range[1]
    ):
        raise ValueError(
            "ngram_range must be a pair of integers (min_n, max_n) with 1 <= min_n <= max_n, "
            f"got {ngram_range!r}."
        )
    if not isinstance(lowercase, (bool, np.bool_)):
        raise TypeError(f"lowercase must be True or False, got {lowercase!r}.")
    if stop_words is None:
        return frozenset()
    if isinstance(stop_words, str):
        if stop_words != "english":
            raise ValueError(
                f"stop_words must be 'english', None or a collection of words, got {stop_words!r}."
            )
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        return frozenset(ENGLISH_STOP_WORDS)
    if not isinstance(stop_words, Iterable):
        raise TypeError(
            "stop_words must be 'english', None or a collection of words, got "
            f"{type(stop_words).__name__}."
        )
    words = []
    for i, word in enumerate(stop_words):
        if not isinstance(word, str):
            raise TypeError(
                f"stop_words[{i}] is {type(word).__name__} ({word!r}); stop words must be strings."
            )
        # compared with the tokens lowercased: a stop word is one in any case
        words.append(word.strip().lower())
    return frozenset(words)


def _rank(item: tuple[str, int]) -> tuple[int, str]:
    """One ranking over words and phrases alike: most frequent first, ties in code point
    order of the text, so that the result never depends on the order of the captions."""
    concept, count = item
    return -count, concept


def _check_captions(captions) -> Iterable:
    if isinstance(captions, (str, bytes)):
        raise TypeError(
            "captions must be a collection of strings, one caption each, not a single "
            f"{type(captions).__name__}; wrap one caption in a list."
        )
    if not isinstance(captions, Iterable):
        raise TypeError(
            f"captions must be an iterable of strings, got {type(captions).__name__}."
        )
    return captions


def count_concepts(
    captions: Iterable[str],
    *,
    max_concepts: int | None = 10000,
    ngram_range: tuple[int, int] = (1, 2),
    min_count: int = 2,
    stop_words: str | Iterable[str] | None = "english",
    lowercase: bool = True,
) -> VocabularyCounts:
    """:func:`build_vocabulary` with its counts; an empty result is returned, not raised."""
    from sklearn.feature_extraction.text import CountVectorizer

    stop = _check_params(max_concepts, ngram_range, min_count, stop_words, lowercase)
    captions = _check_captions(captions)
    # Stop words and one-character tokens are filtered here, from the finished n-grams,
    # rather than by CountVectorizer: it drops stop words before it joins the n-grams, so
    # "photo of a cat" would give the phrase "photo cat", which no caption contains.
    analyze = CountVectorizer(
        preprocessor=_preprocess(bool(lowercase)),
        ngram_range=tuple(ngram_range),
        stop_words=None,
        token_pattern=_token_pattern(),
    ).build_analyzer()

    def kept(gram: str) -> bool:  # n-grams are tokens joined by single spaces
        if " " not in gram:  # a word: the common case, without a split
            return len(gram) > 1 and gram.lower() not in stop
        return all(len(t) > 1 and t.lower() not in stop for t in gram.split(" "))

    # One count per distinct word or phrase, updated caption by caption: the memory grows
    # with the number of distinct n-grams, never with the number of captions.
    counts: Counter[str] = Counter()
    n_captions = 0
    for i, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise TypeError(
                f"captions[{i}] is {type(caption).__name__} ({caption!r:.80}); every caption "
                "must be a string."
            )
        counts.update(filter(kept, analyze(caption)))
        n_captions = i + 1
    frequent = [(concept, n) for concept, n in counts.items() if n >= min_count]
    if max_concepts is None or max_concepts >= len(frequent):
        ranked = sorted(frequent, key=_rank)
    else:  # the same as sorted(...)[:max_concepts], without sorting what is left out
        ranked = heapq.nsmallest(max_concepts, frequent, key=_rank)
    ranked.reverse()  # least frequent first, like the shipped files
    return VocabularyCounts(
        concepts=[concept for concept, _ in ranked],
        counts=[int(n) for _, n in ranked],
        n_captions=n_captions,
        n_candidates=len(counts),
    )


def build_vocabulary(
    captions: Iterable[str],
    *,
    max_concepts: int | None = 10000,
    ngram_range: tuple[int, int] = (1, 2),
    min_count: int = 2,
    stop_words: str | Iterable[str] | None = "english",
    lowercase: bool = True,
) -> list[str]:
    """A concept vocabulary from your own captions: their most frequent words and phrases.

    The captions are lowercased (by default), composed (Unicode NFC), stripped of invisible
    format characters (soft hyphens, joiners) and tokenised by scikit-learn's
    :class:`~sklearn.feature_extraction.text.CountVectorizer` into runs of letters, digits
    and their combining marks; every word and every phrase
    of adjacent words (n-gram) is counted, and the ``max_concepts`` most frequent ones that
    occur at least ``min_count`` times are kept: the way the SpLiCE vocabularies were built
    from LAION captions.

    **One ranking.** Words and phrases compete in a single ranking by their number of
    occurrences, as in the shipped ``"laion_bigrams"`` vocabulary: there is no quota of
    phrases. A phrase never occurs more often than its rarer word, so frequent words come
    first and a phrase is kept only if it is as common as the words it displaces
    (``"living room"``, ``"hot dog"``).

    **Stop words** are never concepts, on their own or inside a phrase, and a phrase never
    skips over them: with the default ``stop_words="english"``, "a photo of a red sofa"
    gives the words ``"photo"``, ``"red"``, ``"sofa"`` and the phrase ``"red sofa"``, but
    neither ``"photo of"`` nor ``"photo red"``. One-character tokens ("a", "c", "2") and
    punctuation end a phrase the same way ("vitamin c tablets, white" gives no
    ``"vitamin tablets"`` and no ``"tablets white"``) and are never concepts either.
    ``stop_words=None`` keeps the other words, and the phrases made with them.

    **Order.** The result is sorted like the shipped vocabulary files: least frequent
    first, most frequent last, so that keeping the last ``k`` entries keeps the ``k`` most
    frequent concepts. Ties are broken by the concepts' text (code point order), the one
    sorting first ranking higher (kept first, listed later), so the result does not depend
    on the order of the captions.

    Parameters
    ----------
    captions : iterable of str
        One string per caption: a list, an array, a pandas Series, or a stream such as an
        open text file (one caption per line) or a generator. It is read once, caption by
        caption; the memory used grows with the number of distinct words and phrases, not
        with the number of captions.
    max_concepts : int or None, default=10000
        Keep at most this many concepts, the most frequent ones. ``None`` keeps all that
        occur at least ``min_count`` times.
    ngram_range : tuple (min_n, max_n), default=(1, 2)
        Lengths of the concepts, in words: ``(1, 2)`` counts words and two-word phrases,
        ``(1, 1)`` words only, ``(2, 2)`` phrases only.
    min_count : int, default=2
        Leave out the words and phrases that occur fewer times than this in all the
        captions together (a caption that repeats a word counts every occurrence).
    stop_words : "english", collection of str or None, default="english"
        Words that are not concepts and end phrases: scikit-learn's English stop-word list,
        your own single words (lowercased when ``lowercase=True``), or ``None`` for none.
    lowercase : bool, default=True
        Lowercase the captions before counting, so "Cat" and "cat" are one concept.

    Returns
    -------
    concepts : list of str
        Distinct concepts, least frequent first; the words of a phrase are separated by one
        space. Pass the list as ``SpliceTransformer(vocabulary=concepts)``; keep the ``k``
        most frequent with ``concepts[-k:]``.

    Raises
    ------
    TypeError
        If ``captions`` is a single string or holds something that is not a string (the
        message names its index).
    ValueError
        If a parameter is out of range, or no word or phrase occurs ``min_count`` times.

    See Also
    --------
    load_vocabulary : The shipped vocabularies, in the same order.

    Examples
    --------
    >>> from sklearn_splice import build_vocabulary
    >>> captions = [
    ...     "A photo of a cat",
    ...     "a cat on a red sofa",
    ...     "red sofa in a living room",
    ...     "a dog on a red sofa",
    ...     "the cat and the dog",
    ... ]
    >>> build_vocabulary(captions)
    ['dog', 'sofa', 'red sofa', 'red', 'cat']
    >>> build_vocabulary(captions, min_count=3, ngram_range=(1, 1))
    ['sofa', 'red', 'cat']
    """
    found = count_concepts(
        captions,
        max_concepts=max_concepts,
        ngram_range=ngram_range,
        min_count=min_count,
        stop_words=stop_words,
        lowercase=lowercase,
    )
    if not found.concepts:
        raise ValueError(_empty_result_message(found, min_count, stop_words is not None))
    return found.concepts


def _empty_result_message(found: VocabularyCounts, min_count: int, stop_words: bool) -> str:
    """Why nothing was kept, for the Python error and the command line alike."""
    if found.n_captions == 0:
        return "No captions were given; the vocabulary needs at least one caption."
    removed = " once stop words are removed" if stop_words else ""
    return (
        f"No word or phrase occurs at least {min_count} time(s) in the {found.n_captions} "
        f"caption(s){removed} ({found.n_candidates} distinct ones occur less often); "
        "lower min_count or give more captions."
    )
