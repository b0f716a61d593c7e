"""Errors and warnings about individual inputs, carrying the input's position as data.

An input is read far from where the user's list is known: a worker thread decodes an
image, and the embedding cache hands the encoder only the inputs it has not seen. So the
position and the path travel as attributes (``.index``, ``.path``), and whoever knows the
caller's numbering re-addresses the error with :meth:`InputError.at`; no message text is
ever parsed.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

__all__ = [
    "InputError",
    "MissingInputError",
    "InputTypeError",
    "UnreadableInputsWarning",
    "WeightsUnavailableError",
]


class InputError(ValueError):
    """One input cannot be used.

    Parameters
    ----------
    index : int
        Position of the input in the caller's collection.
    reason : str
        What is wrong with it, without its position (e.g. "does not exist").
    path : str, bytes, path-like or None, default=None
        The file the input names, if it names one (kept as given).
    kind : str, default="Input"
        What the input is, for the message ("Image", "Text").

    Attributes
    ----------
    index, reason, path, kind
        As given.
    """

    def __init__(self, index: int, reason: str, *, path: Any = None, kind: str = "Input"):
        self.index = int(index)
        self.reason = str(reason)
        self.path = path
        self.kind = kind
        super().__init__(self.index, self.reason)

    def __str__(self) -> str:
        where = f" ({_show_path(self.path)})" if self.path is not None else ""
        return f"{self.kind} {self.index}{where} {self.reason}"

    def __reduce__(self):  # keeps the data through pickling (joblib, dask workers)
        return (_rebuild, (type(self), self.index, self.reason, self.path, self.kind))

    def at(self, index: int) -> InputError:
        """The same error for the input at position ``index`` of an outer collection.

        Parameters
        ----------
        index : int
            The input's position in the outer collection.

        Returns
        -------
        error : InputError
            A new error of the same type; the cause chain is kept.
        """
        moved = type(self)(index, self.reason, path=self.path, kind=self.kind)
        moved.__cause__ = self.__cause__
        return moved


class MissingInputError(InputError, FileNotFoundError):
    """An input names a file that does not exist (also a ``FileNotFoundError``).

    Parameters
    ----------
    index : int
        Position of the input in the caller's collection.
    reason : str
        What is wrong with it.
    path : str, bytes, path-like or None, default=None
        The file the input names, if it names one.
    kind : str, default="Input"
        What the input is, for the message.
    """


class InputTypeError(InputError, TypeError):
    """An input is of a type that cannot be embedded (also a ``TypeError``).

    Parameters
    ----------
    index : int
        Position of the input in the caller's collection.
    reason : str
        What is wrong with it.
    path : str, bytes, path-like or None, default=None
        The file the input names, if it names one.
    kind : str, default="Input"
        What the input is, for the message.
    """


def _rebuild(cls, index, reason, path, kind):
    return cls(index, reason, path=path, kind=kind)


def _show_path(path: Any) -> str:
    """A path as text that can always be printed and written (undecodable bytes escaped)."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class UnreadableInputsWarning(UserWarning):
    """Some inputs could not be read and were given all-zero embeddings.

    Parameters
    ----------
    failures : sequence of InputError
        One error per unreadable input, in input order.
    n_inputs : int
        How many inputs the call was given.

    Attributes
    ----------
    failures : list of InputError
    n_inputs : int
    indices : list of int
        The positions of the unreadable inputs.
    """

    _LISTED = 20

    def __init__(self, failures: Sequence[InputError], n_inputs: int):
        self.failures = list(failures)
        self.n_inputs = int(n_inputs)
        super().__init__(self.failures, self.n_inputs)

    @property
    def indices(self) -> list[int]:
        """Positions of the unreadable inputs."""
        return [f.index for f in self.failures]

    def __str__(self) -> str:
        shown = "; ".join(str(f) for f in self.failures[: self._LISTED])
        more = len(self.failures) - self._LISTED
        tail = f" (and {more} more)" if more > 0 else ""
        return (
            f"{len(self.failures)} of {self.n_inputs} inputs could not be read and got "
            f"all-zero embeddings (on_error='zero'): {shown}{tail}"
        )

    def __reduce__(self):
        return (type(self), (self.failures, self.n_inputs))

    def at(self, positions: Sequence[int], n_inputs: int) -> UnreadableInputsWarning:
        """The same warning for a subset placed at ``positions`` of ``n_inputs`` inputs.

        Parameters
        ----------
        positions : sequence of int
            ``positions[k]`` is where the subset's input ``k`` stands in the outer collection.
        n_inputs : int
            Size of the outer collection.

        Returns
        -------
        warning : UnreadableInputsWarning
        """
        return type(self)([f.at(positions[f.index]) for f in self.failures], n_inputs)


class WeightsUnavailableError(RuntimeError):
    """The pretrained weights of a tag could not be fetched (e.g. no internet access).

    Parameters
    ----------
    architecture : str
        The open_clip architecture.
    tag : str
        The pretrained tag whose weights were asked for.
    reason : str
        What went wrong, in one line.

    Attributes
    ----------
    architecture, tag, reason
        As given.
    """

    def __init__(self, architecture: str, tag: str, reason: str):
        self.architecture = architecture
        self.tag = tag
        self.reason = reason
        super().__init__(architecture, tag, reason)

    def __str__(self) -> str:
        return (
            f"Could not get the {self.architecture} weights for pretrained tag {self.tag!r} "
            f"({self.reason}). They are downloaded on first use; without internet access, "
            "pass the path of a local copy as pretrained=<file> (and pretrained_tag="
            f"{self.tag!r} to say which weights the file holds)."
        )

    def __reduce__(self):
        return (type(self), (self.architecture, self.tag, self.reason))
