"""How a ``server_type: openai`` model reaches its server: the httpx transport (default) or the SDK.

- :func:`checked_options`: ``options`` may not set what module_ai owns (retries, URL, key, timeout,
  model, clients): a :class:`~module_ai.errors.ConfigError` naming ``options.<key>``.
- :func:`httpx_clients`: the ``client`` / ``async_client`` LangChain calls, on :mod:`._http`; the SDK
  (:class:`LazySDK`, 0 retries) only for ``root_client`` paths (``response_format`` parsing, the
  Responses API).
- :func:`transport_layer`: the chat class just below the managed layer. On ``transport: sdk`` a
  stream without ``finish_reason`` raises (the SDK ends silently when the connection closes
  mid-answer); on httpx ``ainvoke`` builds its result on the event loop (stock ``_agenerate`` hands
  that to a worker thread per call: a thread hop, a context copy and GIL traffic for ~0.1 ms of work).
- :func:`not_json`: the SDK hands back the text of a 200 that is not JSON; it becomes a BackendError.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from module_ai.config import ModelConfig

if TYPE_CHECKING:
    from module_ai.backends._http import Transport

__all__ = ["LazySDK", "checked_options", "httpx_clients", "not_json", "transport_layer", "uses_sdk"]


def transport_layer(base: type) -> type:
    """Below the managed layer (so a cut is retried before the first chunk): on the SDK transport a
    stream must carry a ``finish_reason`` (the SDK ends silently when the connection closes early;
    the httpx transport checks ``finish_reason``/``[DONE]`` itself); on the httpx transport
    ``_agenerate`` converts the reply inline."""
    import openai  # loaded with langchain_openai, which built ``base``: bound once per class, not per call
    from langchain_openai.chat_models import base as lc_openai

    class TransportLayer(base):
        def _stream(self, *args: Any, **kwargs: Any):
            if not uses_sdk(self):
                yield from super()._stream(*args, **kwargs)
                return
            finished = False
            for chunk in super()._stream(*args, **kwargs):
                finished = finished or bool((chunk.generation_info or {}).get("finish_reason"))
                yield chunk
            if not finished:
                raise _cut(self)

        async def _astream(self, *args: Any, **kwargs: Any):
            finished = not uses_sdk(self)
            inner = self._chat_completions_astream(args, kwargs)
            try:
                async for chunk in inner:
                    finished = finished or bool((chunk.generation_info or {}).get("finish_reason"))
                    yield chunk
            finally:
                await inner.aclose()  # now, not when the loop collects it: the connection goes back
            if not finished:
                raise _cut(self)

        async def _agenerate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any):
            """Stock ``_agenerate`` for the plain chat-completions call, without its worker thread:
            the same payload, raw response, header/gateway metadata, error handlers and conversion."""
            if uses_sdk(self):
                return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
            payload = self._get_request_payload(messages, stop=stop, **kwargs)
            if "response_format" in payload or self._use_responses_api(payload):  # the SDK-only paths
                return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
            try:
                raw = await self.async_client.with_raw_response.create(**payload)
            except openai.BadRequestError as exc:
                lc_openai._handle_openai_bad_request(exc)
            except openai.APIError as exc:
                lc_openai._handle_openai_api_error(exc)
            info = {"headers": dict(raw.headers)} if self.include_response_headers else {}
            lc_openai._add_gateway_metadata(info, raw)
            return self._create_chat_result(raw.parse(), info)

        def _chat_completions_astream(self, args: tuple, kwargs: dict):
            """``BaseChatOpenAI._astream`` itself: ``ChatOpenAI._astream`` relays it without closing
            it, which would leave the stream (and its connection) to the garbage collector."""
            from langchain_openai.chat_models.base import BaseChatOpenAI

            if self._use_responses_api({**kwargs, **self.model_kwargs}):
                return super()._astream(*args, **kwargs)
            return BaseChatOpenAI._astream(self, *args, **kwargs)

    return TransportLayer


def uses_sdk(model: Any) -> bool:
    """True on ``transport: sdk`` (or for a model built outside the registry)."""
    cfg = model.module_ai_config
    return cfg is None or cfg.transport == "sdk"


def _cut(model: Any) -> Exception:
    from module_ai.backends._http_errors import masked, stream_cut_error

    return stream_cut_error(f"the stream from {masked(model.openai_api_base)}/chat/completions ended without a "
                                  "finish_reason: the answer was cut")


def not_json(cfg: ModelConfig, url: str, text: str | bytes) -> Exception:
    from module_ai.backends._http_errors import masked
    from module_ai.errors import BackendError

    url = masked(url)
    head = (text.decode("utf-8", "replace") if isinstance(text, bytes) else text).lstrip()[:80]
    if not head:
        import json

        return json.JSONDecodeError(f"{url} answered HTTP 200 with an empty body", "", 0)  # a glitch: retried
    what = "an HTML page (a proxy's error or login page?)" if head.startswith("<") else "text that is not JSON"
    return BackendError(f"{url} answered HTTP 200 with {what}, not the JSON an OpenAI-compatible API sends; "
                        f"check url (it usually ends in /v1) and any proxy in between. Body starts: {head!r}",
                        model=cfg.display_name if cfg else None)


_OWNED = {
    "max_retries": "max_retries (module_ai is the only retry layer)",
    "base_url": "url", "openai_api_base": "url", "api_key": "api_key", "openai_api_key": "api_key",
    "timeout": "timeout", "request_timeout": "timeout", "model": "model", "model_name": "model",
    "client": "transport", "async_client": "transport", "root_client": "transport",
    "root_async_client": "transport",
}


def checked_options(cfg: ModelConfig, path: str | None) -> dict[str, Any]:
    """``options`` minus nothing: a key module_ai owns (retries, URL, key, timeout ...) is a ConfigError."""
    from module_ai.errors import ConfigError

    for key in cfg.options:
        if key in _OWNED:
            raise ConfigError(f"options.{key} is set by module_ai; use the model's own field "
                              f"{_OWNED[key]} instead", path=path, model=cfg.display_name, field=f"options.{key}")
    return dict(cfg.options)


def httpx_clients(cfg: ModelConfig, kwargs: dict[str, Any], path: str) -> dict[str, Any]:
    """``client``/``async_client`` (and lazy SDK roots for the rare SDK-only paths) on the httpx transport."""
    from module_ai.backends._http import Transport
    from module_ai.backends._http_stream import AsyncCompletions, Completions

    key = kwargs["api_key"] if kwargs["api_key"] != "not-needed" else None
    transport = Transport(cfg, kwargs["base_url"], key, default_headers=kwargs.get("default_headers"),
                          user_client=kwargs.get("http_client"), user_async_client=kwargs.get("http_async_client"))
    if transport.user_client is None:
        transport.pool()  # built now, like the SDK's client: the first call's latency stays the server's
    clients = {"client": Completions(transport, path), "async_client": AsyncCompletions(transport, path)}
    if path == "/chat/completions":
        clients["root_client"] = LazySDK(transport, kwargs["api_key"], asynchronous=False)
        clients["root_async_client"] = LazySDK(transport, kwargs["api_key"], asynchronous=True)
    return clients


class LazySDK:
    """The ``openai`` SDK client (0 retries), built on first use (per event loop when async), for the
    few paths LangChain sends through ``root_client`` (``response_format`` parsing, the Responses API)."""

    def __init__(self, transport: Transport, api_key: str, *, asynchronous: bool) -> None:
        self._transport, self._key, self._async = transport, api_key, asynchronous
        self._cached: tuple[Any, Any] | None = None

    def __repr__(self) -> str:
        return f"LazySDK({self._transport!r})"

    def _sdk(self) -> Any:
        import openai

        owner: Any = None
        if self._async:
            import asyncio

            owner = asyncio.get_running_loop()
        if self._cached is None or self._cached[0]() is not owner:
            cls = openai.AsyncOpenAI if self._async else openai.OpenAI
            sdk = cls(base_url=self._transport.base_url, api_key=self._key, max_retries=0,
                      timeout=self._transport.cfg.timeout)
            self._cached = (weakref.ref(owner) if owner is not None else (lambda: None), sdk)
        return self._cached[1]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._sdk(), name)
