"""One retry owner: which failures are worth another attempt, and how long to wait first.

module_ai builds the openai SDK client with ``max_retries=0`` and retries in its managed layer, so
attempts never multiply (SDK retries x app retries). The rules, for every backend:

- retried: HTTP 408, 409, 429 and 5xx; connection errors and timeouts; a 200 whose JSON body is
  truncated (a server or proxy glitch);
- never retried: any other 4xx, errors raised by module_ai itself (budget, context window) and
  everything else. A rejected HTTP request becomes one of :data:`REJECTED` (401
  :class:`~module_ai.errors.AuthenticationError`, 403 ``PermissionDeniedError``, 404
  ``ModelNotFoundError``, else ``BadRequestError``) naming the model, the URL used, the status, the
  provider's message and the fix, never the key; the provider's exception is its ``__cause__``.
  Other errors reach the caller unchanged;
- retries used up: :class:`~module_ai.errors.BackendError` with ``.status_code`` and ``.attempts``;
- a stream is retried only until its first chunk with content: after text reached the caller a
  broken stream raises :class:`~module_ai.errors.BackendError` (partial output is never replayed);
- the wait honours ``Retry-After`` / ``retry-after-ms`` (capped at :attr:`RetryPolicy.max_retry_after`),
  else grows exponentially from ``initial`` by ``multiplier`` up to ``max_delay``, with +-``jitter``.

Attempts are bounded by the config's ``max_retries`` (default 2, so at most 3 requests) and are
recorded in ``CallRecord.attempts``.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import time
from dataclasses import dataclass
from typing import Any

from module_ai.errors import (
    AuthenticationError,
    BackendError,
    BadRequestError,
    ModelNotFoundError,
    ModuleAIError,
    PermissionDeniedError,
)

__all__ = ["DEFAULT_POLICY", "REJECTED", "Failure", "RetryPolicy", "backend_error", "classify"]

REJECTED: dict[int, type[BackendError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: ModelNotFoundError,
}
"""Error class per rejected HTTP status; any other non-retryable status is a ``BadRequestError``."""

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
"""HTTP statuses that are retried (plus any other 5xx)."""

_TRANSPORT_NAMES = frozenset({
    "APIConnectionError", "APITimeoutError", "ConnectError", "ConnectTimeout", "ReadTimeout",
    "WriteTimeout", "PoolTimeout", "TimeoutException", "ReadError", "WriteError", "RemoteProtocolError",
    "TransportError", "NetworkError", "ConnectionError", "TimeoutError", "IncompleteRead",
    "ServerDisconnectedError", "ClientConnectionError",
})


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff settings (seconds). Change them per model with ``limiter_for(cfg).configure(...)``.

    Example:
        >>> RetryPolicy(initial=0.5, jitter=0).delay(2)
        1.0
    """

    initial: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 8.0
    jitter: float = 0.2
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None and math.isfinite(retry_after):  # "nan"/"inf" headers: back off as usual
            return min(max(retry_after, 0.0), self.max_retry_after)
        base = min(self.initial * self.multiplier ** (attempt - 1), self.max_delay)
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True)
class Failure:
    """What a failed attempt means for the retry loop."""

    retryable: bool
    status: int | None = None
    retry_after: float | None = None
    overload: bool = False
    """True for 429/503: the server asks for less traffic (adaptive concurrency backs off)."""


def classify(exc: BaseException) -> Failure:
    """Decide whether ``exc`` is worth another attempt.

    Example:
        >>> classify(ConnectionResetError()).retryable
        True
        >>> classify(ValueError("bad input")).retryable
        False
    """
    if isinstance(exc, ModuleAIError):
        return Failure(False)
    status = _status_of(exc)
    if status is not None:
        retryable = status in RETRY_STATUSES or status >= 500
        return Failure(retryable, status, _retry_after(exc), overload=status in (429, 503))
    if isinstance(exc, json.JSONDecodeError):
        return Failure(True)
    names = {cls.__name__ for cls in type(exc).__mro__}
    return Failure(bool(names & _TRANSPORT_NAMES) or isinstance(exc, (ConnectionError, TimeoutError)))


def _status_of(exc: BaseException) -> int | None:
    """The HTTP error status of ``exc`` (>= 400); a 200 whose body failed to parse has none."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    return status if isinstance(status, int) and status >= 400 else None


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis:
            return float(millis) / 1000
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, AttributeError):
        return None


def backend_error(exc: BaseException, cfg: Any, attempts: int, *, url: str | None = None,
                  path: str | None = None) -> BaseException:
    """The error to raise once a call stops (the one place provider errors are mapped).

    - an HTTP status that is never retried (400, 401, 403, 404, 413, 422 ...) -> one of
      :data:`REJECTED` / ``BadRequestError``: model, URL used, status, provider message, the fix;
    - retries used up -> :class:`BackendError` naming model, URL, status and attempts;
    - anything else (module_ai's own errors, programming errors) -> ``exc`` unchanged.

    Every new error has ``.status_code``, ``.url`` and ``.attempts``; chain it ``from exc``.

    Example:
        >>> from module_ai.config import ModelConfig
        >>> cfg = ModelConfig(model_type="chat", server_type="openai", model="qwen3-4b",
        ...                   url="http://127.0.0.1:9/v1", api_key="${DASHSCOPE_API_KEY}")
        >>> class Rejected(Exception):
        ...     status_code, body = 401, {"message": "Incorrect API key provided."}
        >>> err = backend_error(Rejected(), cfg, 1)
        >>> type(err).__name__, err.status_code
        ('AuthenticationError', 401)
        >>> str(err)
        "model 'qwen3-4b': HTTP 401 from http://127.0.0.1:9/v1: Incorrect API key provided; check DASHSCOPE_API_KEY (missing, wrong or expired key)"
    """
    failure = classify(exc)
    if not failure.retryable and failure.status is None:
        try:
            exc.attempts = attempts
        except AttributeError:  # exceptions with __slots__
            pass
        return exc
    where = _used_url(exc, cfg, url)
    detail = _scrub(_server_message(exc), cfg)
    if not failure.retryable:
        cls = REJECTED.get(failure.status, BadRequestError)
        message = f"HTTP {failure.status} from {where}: {detail}; {_fix(failure.status, cfg, path)}"
    else:
        cls = BackendError
        what = f"HTTP {failure.status}" if failure.status else type(exc).__name__
        message = (f"{what} from {where}, {attempts} attempt{'s' if attempts != 1 else ''} "
                   f"(max_retries {cfg.max_retries if cfg else 0}): {detail}")
    error = cls(message, model=cfg.display_name if cfg else None, path=path)
    error.status_code, error.url, error.attempts = failure.status, where, attempts
    return error


def _used_url(exc: BaseException, cfg: Any, url: str | None) -> str:
    """The URL the failed request went to: the request's own, else the resolved config URL."""
    request = getattr(exc, "request", None) or getattr(getattr(exc, "response", None), "request", None)
    try:
        found = getattr(request, "url", None)
    except RuntimeError:  # httpx raises when a response has no request attached
        found = None
    if found:
        return str(found)
    if url and "${" not in url:
        return url
    try:
        return (cfg.resolved_url() if cfg is not None else None) or url or "the server"
    except ModuleAIError:
        return url or "the server"


def _fix(status: int | None, cfg: Any, path: str | None) -> str:
    """How to fix a rejected request, naming the config field or variable involved (never a value)."""
    var = cfg.api_key_variable() if cfg is not None else None
    model = getattr(cfg, "model", "?")
    in_file = f" in {path}" if path else ""
    if status == 401:
        if var:
            return f"check {var} (missing, wrong or expired key)"
        if cfg is None or cfg.api_key is None:
            return f"the server wants an API key: add api_key: ${{YOUR_KEY_VARIABLE}} to the config{in_file}"
        return f"check the api_key{in_file} (wrong or expired key)"
    if status == 403:
        key = f"the key in {var}" if var else "this key"
        return (f"{key} may not use model '{model}': enable the model for the account, check its quota, "
                "or use another key")
    if status == 404:
        return (f"no model '{model}' at this URL: check the model and url fields{in_file} "
                "(`module-ai check NAME` lists the models the server offers)")
    return "the request was rejected and not retried; fix what the provider names and call again"


def _scrub(text: str, cfg: Any) -> str:
    """Mask the API key should a server echo it back."""
    try:
        key = cfg.resolved_api_key() if cfg is not None else None
    except Exception:  # noqa: BLE001 - an unresolvable key cannot be in the text either
        key = None
    return text.replace(key, "***") if key and len(key) > 3 else text


def _server_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
        if message:
            return str(message)[:300].strip().rstrip(".")
    text = str(exc) or type(exc).__name__
    return text[:300].strip().rstrip(".")
