"""sklearn_splice: SpLiCE (Sparse Linear Concept Embeddings) as a scikit-learn transformer.

CLIP embeddings of images or texts become sparse, nonnegative weights over human-readable
concept words. The heavy dependencies (torch, open_clip) are imported only when used.
"""

from ._dictionary import build_dictionary, concept_embeddings
from ._encoder import OpenCLIPEncoder
from ._solver import nonnegative_lasso
from ._transformer import SpliceTransformer
from ._vocabulary import REFERENCE_MEANS, VOCABULARIES, load_reference_mean, load_vocabulary

__version__ = "0.1.0"

__all__ = [
    "SpliceTransformer",
    "OpenCLIPEncoder",
    "nonnegative_lasso",
    "load_vocabulary",
    "load_reference_mean",
    "concept_embeddings",
    "build_dictionary",
    "VOCABULARIES",
    "REFERENCE_MEANS",
    "__version__",
]
