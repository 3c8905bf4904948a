"""The lean transport of ``server_type: openai``: pooled httpx connections, JSON and SSE parsed here.

LangChain's ``ChatOpenAI`` calls ``self.client.create(**payload)`` and
``self.client.with_raw_response.create(**payload).parse()`` (and the async twins); the facades in
:mod:`._http_stream` offer that surface on httpx and return plain dicts (non-stream) or an iterator of chunk dicts, which
LangChain converts with its own code (``_create_chat_result``, ``_convert_chunk_to_generation_chunk``).
Why not the SDK on the hot path: module_ai owns retries, errors, limits and usage already, the SDK's
per-request and per-chunk model building is most of the client CPU, and its sync stream stops reading
at ``[DONE]`` so the connection never goes back to the pool (one new TCP/TLS handshake per reply).

- One ``httpx.HTTPTransport`` pool per endpoint (URL, key) per process and one
  ``httpx.AsyncHTTPTransport`` per endpoint per event loop, each with the lean keep-alive stack of
  :mod:`._http_pool` instead of httpcore's pool (whose cost per request grows with its connections) and
  :mod:`._http11`'s connections instead of httpcore's (h11); sized from
  ``max_concurrency``, idle connections kept :data:`KEEPALIVE_S` seconds, timeouts from ``timeout``,
  proxies from the environment.
- Streams are read to the end (after ``[DONE]`` too) so the connection returns to the pool; a caller
  that stops early gets the rest drained for up to ``_http_stream.DRAIN_S`` seconds, else the
  connection closes.
- HTTP errors are the SDK's own exception classes (``openai.BadRequestError`` ... with ``.status_code``,
  ``.response``, ``.body``), so ``module_ai.controls.retry`` treats both transports alike. A 200 that is empty
  (retried), HTML or not JSON, or a stream cut before ``finish_reason``/``[DONE]`` (retried before the
  first chunk) never passes as an answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
from typing import Any

from module_ai.backends._http_errors import EmptyBodyError, api_error, connection_error, masked, status_error
from module_ai.errors import BackendError

__all__ = ["KEEPALIVE_S", "Transport"]

KEEPALIVE_S = 30.0
"""Seconds an idle pooled connection is kept (providers close theirs after 60-75 s)."""
_MIN_POOL = 64
_PASS = frozenset({"extra_body", "extra_headers", "extra_query", "timeout"})

_sync_pools: dict[tuple, Any] = {}
_sync_lock = threading.Lock()
_sync_pid = os.getpid()
_loop_pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loops refusing an attribute


def _limits(cfg: Any) -> Any:
    import httpx

    pool = max(_MIN_POOL, cfg.max_concurrency or 0)
    return httpx.Limits(max_connections=None, max_keepalive_connections=pool, keepalive_expiry=KEEPALIVE_S)


_ssl: Any = None


def _ssl_context() -> Any:
    """One TLS context for every pooled client (building one costs 15-150 ms; httpx builds one per
    client). ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured as by httpx."""
    global _ssl
    if _ssl is None:
        import httpx

        _ssl = httpx.create_ssl_context(trust_env=True)
    return _ssl


def _pool_kwargs(cfg: Any, url: str) -> dict[str, Any]:
    """Settings of one connection pool: limits, TLS context, and the proxy the environment names for
    ``url`` (``HTTPS_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY``, as httpx and the SDK honour them)."""
    import urllib.parse
    import urllib.request

    kwargs: dict[str, Any] = {"limits": _limits(cfg), "verify": _ssl_context()}
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        kwargs["proxy"] = proxy if "://" in proxy else f"http://{proxy}"
    return kwargs


class Transport:
    """Everything one model needs to talk to its endpoint: URL, headers, timeouts and the pools.

    Requests go straight to a pooled ``httpx.HTTPTransport`` (sync, one per endpoint) or
    ``httpx.AsyncHTTPTransport`` (one per endpoint and event loop): an ``httpx.Client`` would add URL
    merging, cookies, auth and redirect handling on every call, none of which an API call needs.
    ``user_client`` / ``user_async_client`` (``options.http_client`` / ``http_async_client``) are
    used instead when given.
    """

    def __init__(self, cfg: Any, base_url: str, api_key: str | None, *, default_headers: dict | None = None,
                 user_client: Any = None, user_async_client: Any = None) -> None:
        import httpx

        self.cfg, self.base_url = cfg, base_url.rstrip("/")
        host = httpx.URL(self.base_url).netloc.decode("ascii")
        self.headers = {"Host": host, "Accept": "application/json", "Accept-Encoding": "gzip, deflate",
                        "User-Agent": "module_ai (httpx)",
                        "Content-Type": "application/json", **(default_headers or {})}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._stream_headers = {**self.headers, "Accept": "text/event-stream"}
        self.timeout = httpx.Timeout(cfg.timeout).as_dict()
        self._urls: dict[str, Any] = {}
        digest = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
        self.key = (self.base_url, digest, _limits(cfg).max_keepalive_connections)
        self.user_client, self.user_async_client = user_client, user_async_client

    def __repr__(self) -> str:
        return f"Transport({masked(self.base_url)!r})"

    # ---- pools ------------------------------------------------------------------------------------
    def pool(self) -> Any:
        """The process-wide ``httpx.HTTPTransport`` of this endpoint."""
        global _sync_pid
        pool = _sync_pools.get(self.key)
        if pool is not None and _sync_pid == os.getpid():
            return pool
        from module_ai.backends._http_pool import LeanTransport

        with _sync_lock:
            if _sync_pid != os.getpid():  # forked: the parent's sockets are not ours
                _sync_pools.clear()
                _sync_pid = os.getpid()
            pool = _sync_pools.get(self.key)
            if pool is None:
                pool = _sync_pools[self.key] = LeanTransport(**_pool_kwargs(self.cfg, self.base_url))
        return pool

    def apool(self) -> Any:
        """The ``httpx.AsyncHTTPTransport`` of this endpoint for the running event loop."""
        import asyncio

        loop = asyncio.get_running_loop()
        pools = getattr(loop, "_module_ai_http", None)
        if pools is None:
            pools = {}
            try:
                loop._module_ai_http = pools  # dies with the loop (no cross-loop connection reuse)
            except AttributeError:
                pools = _loop_pools.setdefault(loop, pools)
        pool = pools.get(self.key)
        if pool is None:
            from module_ai.backends._http_pool import AsyncLeanTransport

            pool = pools[self.key] = AsyncLeanTransport(**_pool_kwargs(self.cfg, self.base_url))
        return pool

    # ---- requests ---------------------------------------------------------------------------------
    def request(self, path: str, payload: dict[str, Any], client: Any = None) -> Any:
        """An ``httpx.Request`` for POST ``path`` with ``payload`` (SDK-style ``extra_*`` keys honoured)."""
        import httpx

        body = {k: v for k, v in payload.items() if k not in _PASS and v is not None}
        extra = payload.get("extra_body")
        if extra:
            body.update(extra)
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=_jsonable).encode()
        headers = self._stream_headers if body.get("stream") else self.headers
        if payload.get("extra_headers"):
            headers = {**headers, **payload["extra_headers"]}
        timeout = payload.get("timeout")
        timeout = httpx.Timeout(timeout).as_dict() if isinstance(timeout, (int, float)) else self.timeout
        if client is not None:  # a user's client: let it merge its own settings
            return client.build_request("POST", self.base_url + path, headers=headers, content=content,
                                        params=payload.get("extra_query"), timeout=httpx.Timeout(**timeout))
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.base_url + path)
        if payload.get("extra_query"):
            url = url.copy_merge_params(payload["extra_query"])
        return httpx.Request("POST", url, headers=headers, content=content, extensions={"timeout": timeout})

    def send(self, path: str, payload: dict[str, Any]) -> tuple[Any, Any]:
        """POST; return (the parsed JSON dict or a stream of chunk dicts, the ``httpx.Response``)."""
        from module_ai.backends._http_stream import Stream

        request = self.request(path, payload, self.user_client)
        try:
            if self.user_client is not None:
                response = self.user_client.send(request, stream=True)
            else:
                response = self.pool().handle_request(request)
                response.request = request
        except Exception as exc:
            raise connection_error(exc, request) from exc
        if response.status_code >= 400:
            response.read()
            response.close()
            raise status_error(response)
        if payload.get("stream"):
            return Stream(self, response), response
        try:  # without a content-encoding (the common case) httpx's decoder chain is skipped
            content = response.read() if "content-encoding" in response.headers else b"".join(response.stream)
        finally:
            response.close()
        return self.json_of(response, content), response

    async def asend(self, path: str, payload: dict[str, Any]) -> tuple[Any, Any]:
        """Async :meth:`send`."""
        from module_ai.backends._http_stream import AsyncStream

        request = self.request(path, payload, self.user_async_client)
        try:
            if self.user_async_client is not None:
                response = await self.user_async_client.send(request, stream=True)
            else:
                response = await self.apool().handle_async_request(request)
                response.request = request
        except Exception as exc:
            raise connection_error(exc, request) from exc
        if response.status_code >= 400:
            await response.aread()
            await response.aclose()
            raise status_error(response)
        if payload.get("stream"):
            return AsyncStream(self, response), response
        try:
            if "content-encoding" in response.headers:
                content = await response.aread()
            else:
                content = b"".join([part async for part in response.stream])
        finally:
            await response.aclose()
        return self.json_of(response, content), response

    # ---- bodies -----------------------------------------------------------------------------------
    def where(self, response: Any) -> str:
        return masked(response.request.url)

    def json_of(self, response: Any, content: bytes | None = None) -> dict[str, Any]:
        """The JSON object of a 2xx reply; empty, HTML or non-JSON bodies raise (see module docstring)."""
        content = response.content if content is None else content
        if not content.strip():
            raise EmptyBodyError(f"{self.where(response)} answered HTTP {response.status_code} with an empty "
                                 "body", "", 0)
        ctype = response.headers.get("content-type", "")
        try:
            data = json.loads(content)
        except json.JSONDecodeError:
            if "json" in ctype and not content.lstrip().startswith(b"<"):
                raise  # truncated JSON: a glitch, retried
            raise self.not_json(response, ctype, content) from None
        if not isinstance(data, dict):
            raise self.not_json(response, ctype, content)
        if data.get("error") and not data.get("choices") and not data.get("data"):
            raise api_error(data["error"], response)
        return data

    def not_json(self, response: Any, ctype: str, content: bytes) -> BackendError:
        head = content.lstrip()[:200].decode("utf-8", "replace")
        html = "html" in ctype or head[:1] == "<"
        what = "an HTML page (a proxy's error or login page?)" if html else f"'{ctype or 'no content type'}'"
        return BackendError(f"{self.where(response)} answered HTTP {response.status_code} with {what}, not "
                            f"the JSON an OpenAI-compatible API sends; check url (it usually ends in /v1) and "
                            f"any proxy in between. Body starts: {head[:80]!r}", model=self.cfg.display_name)

    def check_stream(self, response: Any) -> None:
        """A stream must be ``text/event-stream``; a JSON error or a page instead raises."""
        ctype = response.headers.get("content-type", "")
        if "event-stream" in ctype:
            return
        data = self.json_of(response)  # raises for empty / HTML / non-JSON / error bodies
        raise BackendError(f"{self.where(response)} answered a streaming request with '{ctype}', not an "
                           f"event stream (keys {sorted(data)[:6]}); use a server that streams, or call "
                           "invoke", model=self.cfg.display_name)


def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
