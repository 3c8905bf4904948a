"""Errors of the httpx transport, shaped like the openai SDK's so both transports fail alike.

HTTP error statuses become the SDK's own classes (``openai.BadRequestError`` ... with ``.status_code``,
``.response`` and the provider's ``.body``); connect/timeouts ``openai.APIConnectionError`` /
``APITimeoutError``; an ``{"error": ...}`` sent with 200 ``openai.APIError``. Two kinds are the
transport's own: :class:`EmptyBodyError` (a 200 with no body, retried like truncated JSON) and the
error of a stream cut before ``finish_reason``/``[DONE]`` (:func:`stream_cut_error`, retried before
the first chunk).
"""

from __future__ import annotations

import json
import re
from typing import Any

_USERINFO = re.compile(r"://[^/@\s]*@")


def masked(url: Any) -> str:
    """``url`` for messages: a ``user:password@`` part becomes ``***@``."""
    return _USERINFO.sub("://***@", str(url))

__all__ = ["EmptyBodyError", "api_error", "connection_error", "masked", "status_error", "stream_cut_error"]


class EmptyBodyError(json.JSONDecodeError):
    """A 200 with an empty body (a server or proxy glitch; retried like a truncated JSON body)."""

    def __str__(self) -> str:
        return self.msg


_cut_class: Any = None


def stream_cut_error(message: str, request: Any = None) -> Exception:
    """The error of a stream that ended before ``finish_reason``/``[DONE]``: an
    ``httpx.RemoteProtocolError`` (so it is retried before the first chunk) with ``stream_cut = True``."""
    global _cut_class
    if _cut_class is None:
        import httpx

        class StreamCutError(httpx.RemoteProtocolError):
            """The server ended a stream before ``finish_reason`` or ``[DONE]``."""

            stream_cut = True

        _cut_class = StreamCutError
    return _cut_class(message, request=request)


def connection_error(exc: Exception, request: Any) -> Exception:
    """httpx's connect/timeout errors as the SDK's ``APIConnectionError`` / ``APITimeoutError``."""
    import httpx
    import openai

    if isinstance(exc, httpx.TimeoutException):
        return openai.APITimeoutError(request=request)
    if isinstance(exc, httpx.TransportError):
        return openai.APIConnectionError(request=request)
    return exc


def status_error(response: Any) -> Exception:
    """The SDK's exception for an HTTP error status (same class, message, ``.body`` and ``.response``)."""
    import openai

    text = response.text.strip()
    body: Any = text
    try:
        body = json.loads(text)
        message = f"Error code: {response.status_code} - {body}"
    except ValueError:
        message = f"Error code: {response.status_code}" + (f" - {text[:500]}" if text else "")
    data = body.get("error", body) if isinstance(body, dict) else body
    classes = {400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
               404: openai.NotFoundError, 409: openai.ConflictError, 422: openai.UnprocessableEntityError,
               429: openai.RateLimitError}
    cls = classes.get(response.status_code) or (
        openai.InternalServerError if response.status_code >= 500 else openai.APIStatusError)
    return cls(message, response=response, body=data)


def api_error(error: Any, response: Any) -> Exception:
    """An ``{"error": ...}`` object sent with status 200 (in a body or an event): the SDK's ``APIError``."""
    import openai

    message = error.get("message") if isinstance(error, dict) else None
    return openai.APIError(str(message or error), request=response.request, body=error)
