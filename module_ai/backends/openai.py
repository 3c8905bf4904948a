"""``server_type: openai``: any OpenAI-compatible server (DashScope, DeepSeek, vLLM, llama.cpp, ...).

Fixes over stock ``ChatOpenAI`` (each one measured against a real or wire-faithful server):

- ``out_tokens`` goes on the wire as ``max_tokens`` (stock sends ``max_completion_tokens``, which
  llama-cpp-python's server and other compatible servers ignore).
- ``no_think`` goes on the wire in the server's form (``thinking_style``): DashScope
  ``enable_thinking: false``, vLLM/SGLang ``chat_template_kwargs.enable_thinking: false``, or nothing.
- ``reasoning_content`` is kept in ``additional_kwargs["reasoning_content"]`` in ``invoke`` and in
  every stream chunk (stock drops it).
- ``with_structured_output`` turns thinking off (DashScope rejects JSON mode while thinking).
- Embeddings send raw text (no tiktoken download), in batches of ``max_batch``, with ``dimensions``.
- ``transport: httpx`` (default): requests go through module_ai's pooled httpx transport
  (:mod:`module_ai.backends._http`): streams give their connection back to the pool (also when the
  caller stops early), a cut stream or a 200 that is empty, HTML or not JSON raises, less client CPU.
  ``transport: sdk`` keeps the ``openai`` SDK (with the same checks). ``options`` cannot override
  retries, URL, key, timeout or model (:mod:`module_ai.backends._openai_transport`).
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr

from module_ai.backends._managed import ManagedChatMixin, model_kwargs_for
from module_ai.backends._managed_embeddings import ManagedEmbeddingsMixin
from module_ai.backends._openai_transport import (
    checked_options,
    httpx_clients,
    not_json,
    transport_layer,
    uses_sdk,
)
from module_ai.config import ModelConfig

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

__all__ = ["build_chat", "build_embeddings", "check", "thinking_body"]


def thinking_body(cfg: ModelConfig, *, enable: bool | None = None) -> dict[str, Any]:
    """The request-body fields that switch thinking, in the style the server understands.

    ``enable=None`` means "as configured": off when ``no_think`` is true, else nothing is sent
    (the model's default), except a ``thinking_budget`` which is sent with thinking on.

    Example:
        >>> cfg = ModelConfig(model_type="chat", server_type="openai", model="m", url="http://h/v1", no_think=True)
        >>> thinking_body(cfg)
        {'enable_thinking': False}
    """
    if enable is None:
        enable = False if cfg.no_think else None
    if enable is None and cfg.thinking_budget is None:
        return {}
    style = cfg.thinking_style
    if style == "none":
        return {}
    flag: dict[str, Any] = {} if enable is None else {"enable_thinking": enable}
    if cfg.thinking_budget is not None and enable is not False:
        flag["thinking_budget"] = cfg.thinking_budget
    if style == "chat_template_kwargs":
        return {"chat_template_kwargs": flag} if flag else {}
    return flag


def _chat_class():
    from langchain_openai import ChatOpenAI

    global _ChatClass
    if _ChatClass is not None:
        return _ChatClass

    class ChatOpenAICompatible(ManagedChatMixin, transport_layer(ChatOpenAI)):
        """``ChatOpenAI`` for OpenAI-compatible servers: max_tokens, thinking, reasoning_content."""

        _module_ai_loop: Any = PrivateAttr(default=None)

        @classmethod
        def lc_id(cls) -> list[str]:
            """Serialized as the stock ``ChatOpenAI`` (its constructor arguments are all that is saved;
            the config is not), so ``load(dumpd(llm), allowed_objects="all")`` gives back an equal
            ``ChatOpenAI``. For a managed model again use ``reg.chat(name)``."""
            return ChatOpenAI.lc_id()

        def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
            payload = super()._get_request_payload(input_, stop=stop, **kwargs)
            if "max_completion_tokens" in payload and "max_tokens" not in payload:
                payload["max_tokens"] = payload.pop("max_completion_tokens")
            return payload

        def _create_chat_result(self, response: Any, generation_info: dict | None = None):
            if isinstance(response, (str, bytes)):  # the SDK hands back the text of a non-JSON 200
                raise not_json(self.module_ai_config, f"{self.openai_api_base}/chat/completions", response)
            result = super()._create_chat_result(response, generation_info)
            for gen, choice in zip(result.generations, _choices(response)):
                reasoning = _message_field(choice, "reasoning_content")
                if reasoning:
                    gen.message.additional_kwargs["reasoning_content"] = reasoning
            return result

        async def _agenerate(self, *args: Any, **kwargs: Any):
            _async_client_for_running_loop(self, "chat")
            return await super()._agenerate(*args, **kwargs)

        def _astream(self, *args: Any, **kwargs: Any):
            stream = self._module_ai_astream(*args, **kwargs)
            opened = _open_streams.get()
            if opened is not None:
                opened.append(stream)  # closed by astream() below when the caller stops early
            return stream

        async def _module_ai_astream(self, *args: Any, **kwargs: Any):
            _async_client_for_running_loop(self, "chat")
            inner = super()._astream(*args, **kwargs)
            try:
                async for chunk in inner:
                    yield chunk
            finally:
                await inner.aclose()

        async def astream(self, input: Any, config: Any = None, **kwargs: Any):
            """LangChain's ``astream``, closing the stream underneath when the caller stops early
            (LangChain leaves it to the garbage collector, and its connection with it)."""
            opened: list = []
            outer = super().astream(input, config, **kwargs)
            try:
                token = _open_streams.set(opened)  # set and reset within one step of this generator
                try:
                    first = await outer.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    _open_streams.reset(token)
                yield first
                async for chunk in outer:
                    yield chunk
            finally:
                for stream in opened:
                    await stream.aclose()
                await outer.aclose()

        def _convert_chunk_to_generation_chunk(self, chunk: dict, default_chunk_class: type, base_info: Any):
            gen = super()._convert_chunk_to_generation_chunk(chunk, default_chunk_class, base_info)
            choices = chunk.get("choices") or []
            if gen is not None and choices:
                reasoning = (choices[0].get("delta") or {}).get("reasoning_content")
                if reasoning:
                    gen.message.additional_kwargs["reasoning_content"] = reasoning
            return gen

        def with_structured_output(self, schema: Any = None, **kwargs: Any):
            cfg: ModelConfig | None = self.module_ai_config
            if cfg is None:  # built directly, not from a config: stock behaviour
                return ChatOpenAI.with_structured_output(self, schema, **kwargs)
            body = {**(self.extra_body or {}), **thinking_body(cfg, enable=False)}
            if cfg.thinking_style == "none":
                body = dict(self.extra_body or {})
            quiet = self.model_copy(update={"extra_body": body or None})
            kwargs.setdefault("method", "function_calling")
            return ChatOpenAI.with_structured_output(quiet, schema, **kwargs)

    _ChatClass = ChatOpenAICompatible
    return _ChatClass


_ChatClass = None
_open_streams: contextvars.ContextVar[list | None] = contextvars.ContextVar("module_ai_open_streams", default=None)


def _choices(response: Any) -> list[Any]:
    return (response.get("choices") if isinstance(response, dict) else response.choices) or []


def _message_field(choice: Any, name: str) -> Any:
    """A non-standard field (e.g. ``reasoning_content``) of a choice's message, dict or SDK object."""
    if isinstance(choice, dict):
        return (choice.get("message") or {}).get(name)
    message = getattr(choice, "message", None)
    return getattr(message, name, None) or (getattr(message, "model_extra", None) or {}).get(name)


def _async_client_for_running_loop(model: Any, kind: str) -> None:
    """Give ``model`` an async HTTP client of its own for the running event loop.

    langchain-openai shares one cached async httpx client per base URL across the process; its
    pooled connections belong to the first event loop, so a second ``asyncio.run`` (notebooks,
    scripts, per-test loops) fails with "Event loop is closed". A user-supplied
    ``http_async_client`` is left alone.
    """
    import asyncio
    import weakref

    if model.http_async_client is not None or model.async_client is None or not uses_sdk(model):
        return
    loop = asyncio.get_running_loop()
    ref = model._module_ai_loop  # weak reference to the loop the current async client belongs to
    if ref is not None and ref() is loop:
        return
    import openai

    root = getattr(model, "root_async_client", None) or model.async_client._client
    root = root.copy(http_client=openai.DefaultAsyncHttpxClient(timeout=root.timeout))
    if kind == "chat":
        model.root_async_client, model.async_client = root, root.chat.completions
    else:
        model.async_client = root.embeddings
    model._module_ai_loop = weakref.ref(loop)


def _basic_auth(cfg: ModelConfig, path: str | None) -> dict[str, Any]:
    """``default_headers`` carrying the URL's ``user:password@`` as Basic auth (never with an api_key)."""
    auth = cfg.resolved_authorization(path)
    return {"default_headers": {"Authorization": auth}} if auth and auth.startswith("Basic ") else {}


def build_chat(cfg: ModelConfig, registry: Any, path: str | None) -> BaseChatModel:
    """Build the chat model for an OpenAI-compatible server."""
    cls = _chat_class()
    kwargs: dict[str, Any] = {
        "model": cfg.model,
        "base_url": cfg.resolved_url(path),
        "api_key": cfg.resolved_api_key(path) or "not-needed",
        **_basic_auth(cfg, path),
        "timeout": cfg.timeout,
        "max_retries": 0,
        "stream_usage": True,
        **model_kwargs_for(cfg),
    }
    if cfg.temperature is not None:
        kwargs["temperature"] = cfg.temperature
    if cfg.out_tokens:
        kwargs["max_tokens"] = cfg.out_tokens
    body = thinking_body(cfg)
    if body:
        kwargs["extra_body"] = body
    kwargs.update(checked_options(cfg, path))
    if cfg.transport == "httpx":
        kwargs.update(httpx_clients(cfg, kwargs, "/chat/completions"))
    model = cls(**kwargs)
    return model.bind_module_ai(cfg, path)


def _embeddings_class():
    from langchain_openai import OpenAIEmbeddings

    global _EmbClass
    if _EmbClass is None:

        class OpenAICompatibleEmbeddings(ManagedEmbeddingsMixin, OpenAIEmbeddings):
            """``OpenAIEmbeddings`` sending raw text in ``max_batch`` batches, with usage and limits."""

            _module_ai_loop: Any = PrivateAttr(default=None)

            def _embed_batch(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
                response = self.client.create(input=texts, **self._invocation_params)
                return _vectors_and_tokens(self, response)

            async def _aembed_batch(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
                _async_client_for_running_loop(self, "embeddings")
                response = await self.async_client.create(input=texts, **self._invocation_params)
                return _vectors_and_tokens(self, response)

        _EmbClass = OpenAICompatibleEmbeddings
    return _EmbClass


_EmbClass = None


def _vectors_and_tokens(model: Any, response: Any) -> tuple[list[list[float]], int | None]:
    if isinstance(response, (str, bytes)):  # the SDK hands back the text of a non-JSON 200
        raise not_json(model.module_ai_config, f"{model.openai_api_base}/embeddings", response)
    data = response if isinstance(response, dict) else response.model_dump()
    rows = data.get("data")
    if not isinstance(rows, list):
        from module_ai.backends._http_errors import masked
        from module_ai.errors import BackendError

        raise BackendError(f"{masked(model.openai_api_base)}/embeddings answered without a 'data' list (keys "
                           f"{sorted(data)[:6]}); is url an OpenAI-compatible embeddings API?",
                           model=model.module_ai_config.display_name if model.module_ai_config else None)
    rows = sorted(rows, key=lambda r: r.get("index", 0))
    usage = data.get("usage") or {}
    return [r["embedding"] for r in rows], usage.get("prompt_tokens") or usage.get("total_tokens")


def build_embeddings(cfg: ModelConfig, registry: Any, path: str | None) -> Embeddings:
    """Build the embeddings for an OpenAI-compatible server (raw text, batched by ``max_batch``)."""
    cls = _embeddings_class()
    kwargs: dict[str, Any] = {
        "model": cfg.model,
        "base_url": cfg.resolved_url(path),
        "api_key": cfg.resolved_api_key(path) or "not-needed",
        **_basic_auth(cfg, path),
        "timeout": cfg.timeout,
        "max_retries": 0,
        "check_embedding_ctx_length": False,
        "chunk_size": cfg.max_batch or 64,
        "model_kwargs": {"encoding_format": "float"},
    }
    if cfg.dimensions:
        kwargs["dimensions"] = cfg.dimensions
    kwargs.update(checked_options(cfg, path))
    if cfg.transport == "httpx":
        kwargs.update(httpx_clients(cfg, kwargs, "/embeddings"))
    return cls(**kwargs).bind_module_ai(cfg, path)


def check(cfg: ModelConfig, registry: Any, path: str | None) -> dict[str, Any]:
    """List the server's models; report whether the configured one is among them."""
    import httpx

    from module_ai.errors import BackendError

    url = cfg.resolved_url(path)
    auth = cfg.resolved_authorization(path)
    headers = {"Authorization": auth} if auth else {}
    try:
        response = httpx.get(f"{url}/models", headers=headers, timeout=min(cfg.timeout, 15))
    except httpx.HTTPError as exc:
        raise BackendError(f"cannot reach {url}: {type(exc).__name__}", model=cfg.display_name) from None
    if response.status_code >= 400:
        raise BackendError(f"{url}/models answered HTTP {response.status_code}", model=cfg.display_name)
    ids = [m.get("id") for m in response.json().get("data", [])]
    return {"models": ids[:50], "model_listed": cfg.model in ids}
