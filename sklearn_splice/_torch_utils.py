"""Lazy access to PyTorch and device selection."""

from __future__ import annotations

from typing import Any

_INSTALL_HINT = (
    "sklearn_splice needs PyTorch for this step. Install it with "
    "`pip install torch` (see https://pytorch.org for CUDA builds)."
)


def import_torch() -> Any:
    """Import torch, or fail with an actionable message.

    Returns
    -------
    torch : module
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a hard dependency
        raise ImportError(_INSTALL_HINT) from exc
    return torch


def import_open_clip() -> Any:
    """Import open_clip, or fail with an actionable message.

    Returns
    -------
    open_clip : module
    """
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - open_clip is a hard dependency
        raise ImportError(
            "OpenCLIPEncoder needs the open_clip package. Install it with "
            "`pip install open_clip_torch`."
        ) from exc
    return open_clip


def resolve_device(device: Any = "auto") -> Any:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a torch.device into a torch.device.

    ``"auto"`` picks the first CUDA device when one is usable and the CPU otherwise,
    so that an estimator fitted on a GPU machine still runs on a CPU-only one.

    Parameters
    ----------
    device : str, torch.device or None, default="auto"
        The device asked for; None means ``"auto"``.

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        For a string torch does not know, or a CUDA device on a machine without CUDA.
    """
    torch = import_torch()
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid torch device; use 'auto', 'cpu' or 'cuda'."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this machine; "
            "use device='auto' or 'cpu'."
        )
    return dev


def usable_device(device: Any = "auto") -> Any:
    """Like :func:`resolve_device`, but a CUDA device that is not there becomes the CPU.

    Used by fitted estimators at transform time, so that one pickled on a GPU machine
    with ``device="cuda"`` still runs on a CPU-only one (with a warning).

    Parameters
    ----------
    device : str, torch.device or None, default="auto"
        The device asked for.

    Returns
    -------
    device : torch.device
    """
    torch = import_torch()
    if isinstance(device, str) and device.startswith("cuda") and not torch.cuda.is_available():
        import warnings

        warnings.warn(
            f"device={device!r} is not available on this machine; running on the CPU.",
            RuntimeWarning,
            stacklevel=2,
        )
        return torch.device("cpu")
    return resolve_device(device)


def run_split_on_oom(fn, x, *, combine, fallback=None, what="batch"):
    """``fn(x)``; on out-of-memory, run the halves of ``x`` instead, down to single rows.

    ``combine(first, second, n_first)`` joins the results of the halves in order, so no
    row is lost or reordered. When even one row does not fit, ``fallback(x)`` runs it
    (e.g. on the CPU) with a warning; without a fallback the error propagates.

    Parameters
    ----------
    fn : callable
        ``fn(x)`` computes the result for a batch.
    x : sequence or tensor
        The batch; sliceable along its first axis.
    combine : callable
        ``combine(first, second, n_first)`` joins the results of two consecutive halves.
    fallback : callable or None, default=None
        Runs a single row that does not fit on the device.
    what : str, default="batch"
        What a row is, for the warning.

    Returns
    -------
    result : object
        ``fn(x)``, or the halves' results joined by ``combine``.

    Raises
    ------
    torch.OutOfMemoryError
        When a single row does not fit and there is no ``fallback``.
    """
    torch = import_torch()
    try:
        return fn(x)
    except torch.OutOfMemoryError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        n = len(x)
        if n > 1:
            h = n // 2
            first = run_split_on_oom(fn, x[:h], combine=combine, fallback=fallback, what=what)
            second = run_split_on_oom(fn, x[h:], combine=combine, fallback=fallback, what=what)
            return combine(first, second, h)
        if fallback is None:
            raise
        import warnings

        warnings.warn(
            f"Out of memory on the device even for a single {what} row; falling back to the CPU.",
            RuntimeWarning,
            stacklevel=2,
        )
        return fallback(x)
