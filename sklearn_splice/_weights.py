"""Pretrained weights of an open_clip tag: found in the local cache, or fetched quietly.

Without network access the Hugging Face client retries each file with back-off and logs
every retry; open_clip, when it logs, installs a handler on the root logger for the rest of
the process. This module keeps both out of the user's logs and turns any failure into one
:class:`WeightsUnavailableError`.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

from ._errors import WeightsUnavailableError
from ._torch_utils import import_open_clip

__all__ = ["fetch_weights", "root_handlers_kept"]

_PROXY_VARIABLES = (
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"
)
_TRUE = {"1", "ON", "YES", "TRUE"}


def fetch_weights(arch: str, tag: str, tag_cfg: dict, cache_dir: str | None) -> str:
    """Path of the weights of a pretrained tag: from the local cache, else downloaded.

    The cache is looked at first, without the network, so that a machine that has the
    weights never waits on the Hub; without them and without access, it fails at once
    instead of after the Hub client's retries.
    """
    open_clip = import_open_clip()
    hub = tag_cfg.get("hf_hub", "")
    if hub and "file" not in tag_cfg:
        cached = _cached_hub_file(hub, cache_dir)
        if cached is not None:
            return cached
        if _hub_offline():
            raise WeightsUnavailableError(
                arch, tag, "not in the local Hugging Face cache, and offline mode is on"
            )
        unreachable = _hub_unreachable()
        if unreachable is not None:
            raise WeightsUnavailableError(arch, tag, unreachable)
    try:
        with _hub_retries_quiet():
            path = open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)
    except Exception as exc:
        raise WeightsUnavailableError(
            arch, tag, f"the download failed ({type(exc).__name__}, chained below)"
        ) from exc
    if not path:
        raise WeightsUnavailableError(arch, tag, "open_clip names no source for them")
    return path


def _hub_filenames(filename: str) -> list[str]:
    """The files open_clip tries on the Hub for ``filename``, in its order of preference."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    names = []
    try:
        import safetensors  # noqa: F401  (open_clip prefers .safetensors only when installed)
    except ImportError:
        pass
    else:
        if filename == HF_WEIGHTS_NAME:
            names.append(HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            names.append(filename[:-4] + ".safetensors")
    return [*names, filename]


def _cached_hub_file(hub: str, cache_dir: str | None) -> str | None:
    """A tag's weights file in the local Hugging Face cache, found without the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_WEIGHTS_NAME
    except ImportError:
        return None
    repo_id, filename = os.path.split(hub)
    for name in _hub_filenames(filename or HF_WEIGHTS_NAME):
        found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _hub_offline() -> bool:
    """Hugging Face offline mode, read now: the Hub client reads it only when imported."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").upper() in _TRUE:
            return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the Hub cannot be reached, or None when it can (or a proxy decides).

    The Hub client retries a failed connection five times with back-off (about 45 s for
    open_clip's two candidate files); one connection attempt tells the same at once.
    """
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in _PROXY_VARIABLES):
        return None  # only the proxy can tell
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    url = urlsplit(constants.ENDPOINT)
    host = url.hostname
    if not host:
        return None
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host} cannot be reached ({type(exc).__name__})"
    return None


@contextmanager
def _hub_retries_quiet():
    """Keep the Hub client's per-retry warnings out of the logs during one download."""
    logger = logging.getLogger("huggingface_hub.utils._http")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def root_handlers_kept():
    """Leave the root logger's handlers as they were before the block.

    open_clip logs through the ``logging`` module's functions, which install a stderr
    handler on the root logger when it has none, for the rest of the process. Inside the
    block an unconfigured root logger gets Python's last-resort handler instead (so
    warnings print as they would without that side effect), and any handler added in the
    block is removed afterwards.
    """
    root = logging.getLogger()
    before = list(root.handlers)
    stand_in = logging.lastResort if not before else None
    if stand_in is not None:
        root.addHandler(stand_in)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
                if handler is not stand_in:
                    handler.close()
