"""Sphinx configuration for sklearn_splice."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import sklearn_splice  # noqa: E402

project = "sklearn_splice"
author = "sklearn_splice developers"
release = version = sklearn_splice.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "numpydoc"]
autosummary_generate = True
numpydoc_show_class_members = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
