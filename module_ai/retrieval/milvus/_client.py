"""Connecting to Milvus and turning its exceptions into module_ai errors.

Every call into pymilvus runs inside :func:`milvus_errors`, which maps ``MilvusException`` and raw
gRPC errors to :class:`~module_ai.errors.BackendError` (server unreachable, timed out, refused the
credentials) or :class:`~module_ai.errors.KnowledgeBaseError` (anything about the collection or the
data). Messages name the URI (credentials stripped) and never contain the token.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.errors import BackendError, KnowledgeBaseError, ModuleAIError, require

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from module_ai.retrieval.milvus.config import MilvusConfig

__all__ = ["Connection", "connect", "display_uri", "milvus_errors", "redact", "release_lite"]

_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
_UNREACHABLE = ("fail connecting", "unavailable", "deadline", "timeout", "timed out", "connection refused",
                "failed to connect", "name resolution", "open local milvus failed")
_AUTH = ("auth", "unauthenticated", "permission denied", "credential", "token", "password")


def display_uri(uri: str) -> str:
    """The URI as it may be shown: ``user:password@`` removed."""
    return _USERINFO.sub("", uri)


def redact(text: str, *secrets: str) -> str:
    """Remove every secret (and any ``user:pass@`` of a URL) from ``text``."""
    out = _USERINFO.sub("", text)
    for secret in secrets:
        if secret:
            out = out.replace(secret, "**********")
            for part in secret.split(":"):  # "user:password" tokens: hide the password alone too
                if len(part) >= 4 and part != secret:
                    out = out.replace(part, "**********")
    return out


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    if not message and hasattr(exc, "details"):
        with contextlib.suppress(Exception):
            message = exc.details()
    return str(message or exc).strip() or type(exc).__name__


_QUIET = threading.local()


class _QuietFilter(logging.Filter):
    """Drops pymilvus' own error log (with traceback) for calls whose exception module_ai reports."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(_QUIET, "depth", 0) and record.levelno <= logging.ERROR)


_FILTER = _QuietFilter()


def _install_filter() -> None:
    for name in ("pymilvus", "pymilvus.milvus_client"):
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


def _is_milvus_error(exc: BaseException) -> bool:
    names = {cls.__module__.split(".")[0] for cls in type(exc).__mro__}
    return bool(names & {"pymilvus", "grpc", "milvus_lite"})


@contextlib.contextmanager
def milvus_errors(uri: str, token: str = "", *, what: str = "request",
                  collection: str | None = None) -> Iterator[None]:
    """Map pymilvus / gRPC / Milvus Lite exceptions raised inside the block to module_ai errors.

    Args:
        uri: the server URI or Lite file (shown without credentials).
        token: the secret to scrub from messages.
        what: what was being done, e.g. ``"search"`` (goes into the message).
        collection: the collection involved, if any.
    """
    _install_filter()
    _QUIET.depth = getattr(_QUIET, "depth", 0) + 1
    try:
        yield
    except ModuleAIError:
        raise
    except Exception as exc:
        if not _is_milvus_error(exc):
            raise
        err = _translate(exc, uri, token, what, collection)
        leaks = bool(token) and token in f"{exc!s} {exc!r}"
        raise err from (None if leaks else exc)
    finally:
        _QUIET.depth -= 1


def _translate(exc: BaseException, uri: str, token: str, what: str, collection: str | None) -> ModuleAIError:
    reason = redact(_reason(exc), token)
    shown = display_uri(uri)
    low = reason.lower()
    where = f"collection '{collection}' at {shown}" if collection else shown
    if any(s in low for s in _UNREACHABLE):
        hint = ("another process may hold this Milvus Lite file (one process per file)"
                if shown.endswith(".db") else "check the URI and that the server is running")
        return BackendError(f"cannot reach Milvus at {shown} during {what}: {reason}; {hint}")
    if any(s in low for s in _AUTH) and "collection" not in low:
        return BackendError(f"Milvus at {shown} refused the credentials during {what}: {reason}; "
                            "check the token")
    if collection and ("not exist" in low or "not found" in low):
        return KnowledgeBaseError(f"{where}: {what} failed: {reason}; build the knowledge base first")
    return KnowledgeBaseError(f"{where}: {what} failed: {reason}")


class Connection:
    """A MilvusClient plus what error messages need (URI, token to scrub, collection).

    Args:
        client: the connected ``pymilvus.MilvusClient``.
        uri: the resolved URI or Lite file.
        token: the resolved token (kept only to scrub it from messages).
        collection: the collection name.
        lite_path: the Lite file when the URI is local, else ``None``.
    """

    def __init__(self, client: MilvusClient, uri: str, token: str, collection: str,
                 lite_path: str | None) -> None:
        self.client = client
        self.uri = uri
        self._token = token
        self.collection = collection
        self.lite_path = lite_path

    def __repr__(self) -> str:
        return f"Connection({display_uri(self.uri)!r}, collection={self.collection!r})"

    @property
    def where(self) -> str:
        """``"collection 'name' at <uri>"`` for messages (credentials stripped)."""
        return f"collection '{self.collection}' at {display_uri(self.uri)}"

    def errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        """Context manager mapping Milvus exceptions raised by ``what`` (see :func:`milvus_errors`)."""
        return milvus_errors(self.uri, self._token, what=what, collection=self.collection)

    def call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``client.<method>(*args, **kwargs)`` with error mapping."""
        with self.errors(what):
            return getattr(self.client, method)(*args, **kwargs)

    def close(self) -> None:
        """Close the client; never raises."""
        with contextlib.suppress(Exception):
            self.client.close()


def connect(config: MilvusConfig, base_dir: str | Path | None = None, *, create: bool = True) -> Connection:
    """Open a client for ``config`` (starting Milvus Lite in-process for a ``.db`` file).

    Args:
        config: the Milvus settings.
        base_dir: folder a relative Lite path is taken from.
        create: create a missing Lite file (``False``: raise instead; for opening).

    Raises:
        MissingDependencyError: pymilvus (or milvus-lite for a local file) is not installed.
        BackendError: the server cannot be reached or refused the token; names the URI, never the token.
        KnowledgeBaseError: the Lite URI does not end in ``.db``, or is missing and ``create`` is false.
    """
    pymilvus = require("pymilvus", "milvus")
    uri, token = config.resolved_uri(base_dir), config.resolved_token()
    lite_path = None
    if config.is_lite:
        require("milvus_lite", "milvus")
        if not uri.endswith(".db"):
            raise KnowledgeBaseError(f"a Milvus Lite uri must be a file ending in .db, got '{uri}'",
                                     field="uri")
        if not create and not Path(uri).exists():
            raise KnowledgeBaseError("no Milvus Lite database here; build the knowledge base first "
                                     "(`module-ai rag index ... --backend milvus`)", path=uri)
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        lite_path = str(Path(uri).resolve())
    kwargs: dict[str, Any] = {"uri": uri, "timeout": config.timeout}
    if token:
        kwargs["token"] = token
    if config.db_name:
        kwargs["db_name"] = config.db_name
    with milvus_errors(uri, token, what="connect"):
        client = pymilvus.MilvusClient(**kwargs)
    return Connection(client, uri, token, config.collection, lite_path)


def release_lite(path: str | Path) -> None:
    """Stop the in-process Milvus Lite server of a ``.db`` file (so another process may open it)."""
    with contextlib.suppress(ImportError):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(path))
