"""The code base's own checks: ruff, and numpydoc sections on every public callable."""

import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sklearn_splice

ROOT = Path(__file__).resolve().parents[1]

# GL08: no docstring; PR01/PR02: parameters missing from / unknown to the Parameters
# section; RT01: no Returns section.
REQUIRED = {"GL08", "PR01", "PR02", "RT01"}


def _public_callables():
    for name in sklearn_splice.__all__:
        obj = getattr(sklearn_splice, name)
        if inspect.isclass(obj):
            yield f"sklearn_splice.{name}"
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not callable(member):
                    continue
                yield f"sklearn_splice.{name}.{attr}"
        elif callable(obj):
            yield f"sklearn_splice.{name}"


@pytest.mark.parametrize("qualname", sorted(set(_public_callables())))
def test_public_docstrings_have_parameters_and_returns(qualname):
    validate = pytest.importorskip("numpydoc.validate")
    result = validate.validate(qualname)
    problems = [(code, msg) for code, msg in result["errors"] if code in REQUIRED]
    if inspect.isclass(eval(qualname, {"sklearn_splice": sklearn_splice})):
        problems = [(c, m) for c, m in problems if c != "RT01"]  # classes return nothing
    assert not problems, problems


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip(reason="ruff is not installed (it comes with the test extra)")
    done = subprocess.run(
        [ruff, "check", "--no-cache", "sklearn_splice", "tests", "benchmarks", "examples"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
