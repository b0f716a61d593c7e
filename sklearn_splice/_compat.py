"""The private scikit-learn names the package relies on, imported in one place.

scikit-learn does not promise these across releases; if one moves, only this module
changes.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    Options,
    StrOptions,
    validate_params,
)
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import _check_feature_names_in

__all__ = [
    "_fit_context",
    "HasMethods",
    "Interval",
    "Options",
    "StrOptions",
    "validate_params",
    "_get_output_config",
    "_check_feature_names_in",
]
