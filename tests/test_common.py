"""scikit-learn's estimator checks on SpliceTransformer, with a small hashing encoder."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from helpers import HashingEncoder
from sklearn_splice import SpliceTransformer

WORDS = ["cat", "dog", "tree", "car", "sky", "sea", "grass", "house", "road", "snow"]

# Every check we expect to fail, and why.
EXPECTED_FAILED_CHECKS = {
    "check_transformer_n_iter": (
        "max_iter bounds the sparse-coding solver, which runs in transform; fit builds the "
        "dictionary and the mean without iterating, so there is no n_iter_ to report after fit"
    ),
}


def _estimators():
    common = dict(encoder=HashingEncoder(width=8), vocabulary=WORDS, l1_penalty=0.05, device="cpu")
    return [
        SpliceTransformer(**common),
        SpliceTransformer(**common, sparse_output=False),
    ]


@parametrize_with_checks(_estimators(), expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
