"""sklearn_splice: SpLiCE (Sparse Linear Concept Embeddings) as a scikit-learn transformer.

CLIP embeddings of images or texts become sparse, nonnegative weights over human-readable
concept words. The heavy dependencies (torch, open_clip) are imported only when used.
"""

from ._contributions import explain_predictions
from ._datasets import from_torch_dataset, load_image_folder
from ._dataset import DecompositionSummary, decompose_dataset, fit_dataset
from ._dataset_reading import DecomposedDataset, read_decomposition
from ._dictionary import build_dictionary, concept_embeddings
from ._encoder import OpenCLIPEncoder
from ._errors import (
    InputError,
    InputTypeError,
    MissingInputError,
    UnreadableInputsWarning,
    WeightsUnavailableError,
)
from ._explain import (
    coefficient_table,
    compare_classes,
    concept_distribution,
    decomposition_quality,
    top_concepts,
    top_concepts_frame,
)
from ._plotting import (
    CoefficientDisplay,
    ConceptDisplay,
    ContributionDisplay,
    PrevalenceDisplay,
    plot_coefficients,
    plot_concepts,
    plot_prevalence,
)
from ._run_metadata import RunMismatchError
from ._search import find_by_concept
from ._shards import MissingShardError, ShardError
from ._solver import nonnegative_lasso
from ._transformer import SpliceTransformer
from ._vocabulary import REFERENCE_MEANS, VOCABULARIES, load_reference_mean, load_vocabulary
from ._vocabulary_builder import build_vocabulary
from ._zero_shot import ZeroShotClassifier

__version__ = "0.1.0"

__all__ = [
    "SpliceTransformer",
    "OpenCLIPEncoder",
    "ZeroShotClassifier",
    "top_concepts",
    "top_concepts_frame",
    "concept_distribution",
    "decomposition_quality",
    "compare_classes",
    "coefficient_table",
    "read_decomposition",
    "DecomposedDataset",
    "decompose_dataset",
    "fit_dataset",
    "DecompositionSummary",
    "ShardError",
    "MissingShardError",
    "RunMismatchError",
    "explain_predictions",
    "find_by_concept",
    "plot_concepts",
    "plot_prevalence",
    "plot_coefficients",
    "ConceptDisplay",
    "PrevalenceDisplay",
    "CoefficientDisplay",
    "ContributionDisplay",
    "load_image_folder",
    "from_torch_dataset",
    "nonnegative_lasso",
    "InputError",
    "MissingInputError",
    "InputTypeError",
    "UnreadableInputsWarning",
    "WeightsUnavailableError",
    "load_vocabulary",
    "build_vocabulary",
    "load_reference_mean",
    "concept_embeddings",
    "build_dictionary",
    "VOCABULARIES",
    "REFERENCE_MEANS",
    "__version__",
]
