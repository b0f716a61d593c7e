"""Reading and preprocessing image batches in threads while the model runs."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._errors import InputError
from ._images import load_image
from ._torch_utils import import_torch

__all__ = ["preprocessed_batches"]

# Batches read ahead of the one the model is working on: enough to hide reading behind
# the forward pass, few enough to bound memory.
_READ_AHEAD = 2


def preprocessed_batches(
    items: list,
    preprocess: Callable[[Any], Any],
    batch_size: int,
    workers: int,
    skip: bool = False,
) -> Iterator[tuple[int, Any, list[InputError]]]:
    """Read, preprocess and stack ``items`` batch by batch, in input order.

    Decoding (PIL) and resizing release the GIL, so ``workers`` threads overlap them with
    the model's forward pass on the previous batch.

    Parameters
    ----------
    items : list
        Image inputs: paths, PIL images or image arrays (see :func:`load_image`).
    preprocess : callable
        Turns an RGB ``PIL.Image`` into a ``(C, H, W)`` tensor (open_clip's transform).
    batch_size : int
        Inputs per batch.
    workers : int
        Reading threads; 0 reads in the calling thread.
    skip : bool, default=False
        If False, the first unreadable input (in input order) raises its
        :class:`InputError` unchanged, its ``.index`` being its position in ``items``.
        If True, unreadable inputs are left out of the batch and returned as data.

    Yields
    ------
    start : int
        Position in ``items`` of the batch's first input.
    pixels : torch.Tensor of shape (n_read, C, H, W) or None
        The readable inputs of the batch, in order; None when none of them was readable.
    failed : list of InputError
        The batch's unreadable inputs (always empty when ``skip`` is False).

    Raises
    ------
    InputError
        When ``skip`` is False, for the first unreadable input. Other exceptions (from
        ``preprocess``, say) always propagate.
    """
    torch = import_torch()

    def prepare(i):
        try:
            return preprocess(load_image(items[i], i))
        except InputError as exc:
            if not skip:
                raise
            return exc

    def assemble(start, results):
        failed = [r for r in results if isinstance(r, InputError)]
        good = [r for r in results if not isinstance(r, InputError)]
        return start, (torch.stack(good) if good else None), failed

    def bounds(start):
        return range(start, min(start + batch_size, len(items)))

    starts = range(0, len(items), batch_size)
    if workers == 0:
        for start in starts:
            yield assemble(start, [prepare(i) for i in bounds(start)])
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="splice-read")
    try:
        pending: deque = deque()
        queue = iter(starts)

        def submit_next():
            start = next(queue, None)
            if start is not None:
                pending.append((start, [pool.submit(prepare, i) for i in bounds(start)]))

        for _ in range(_READ_AHEAD):
            submit_next()
        while pending:
            start, futures = pending.popleft()
            batch = assemble(start, [f.result() for f in futures])
            submit_next()
            yield batch
    finally:
        # Reads already started finish (a regular file cannot block); queued ones are dropped.
        pool.shutdown(wait=True, cancel_futures=True)
