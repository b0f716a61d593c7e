"""Progress bars on stderr for long work (tqdm comes with open_clip)."""

from __future__ import annotations

from typing import Iterable


def progress(iterable: Iterable, total: int, desc: str, enabled: bool = True) -> Iterable:
    """``iterable`` wrapped in a tqdm bar when ``enabled`` (and tqdm is installed)."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with open_clip
        return iterable
    return tqdm(iterable, total=total, desc=desc)
