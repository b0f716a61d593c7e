"""Whether a path names a regular file: checked before opening, since a FIFO would block."""

from __future__ import annotations

import os
import stat
from typing import Any

__all__ = ["MISSING", "regular_file_problem"]

MISSING = "does not exist."


def regular_file_problem(path: Any) -> str | None:
    """Why ``path`` is not a regular file that can be opened without blocking, or None.

    Parameters
    ----------
    path : str, bytes or path-like

    Returns
    -------
    problem : str or None
        A sentence to follow the path in a message (``MISSING`` when it does not exist).
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return MISSING
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
        return f"cannot be accessed: {getattr(exc, 'strerror', None) or exc}."
    if stat.S_ISDIR(mode):
        return "is a directory, not a file."
    if not stat.S_ISREG(mode):
        return "is not a regular file (a pipe, socket or device); only files can be read."
    return None
