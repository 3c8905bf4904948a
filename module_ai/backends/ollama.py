"""``server_type: ollama``: Ollama's native API through langchain-ollama.

``input_tokens`` becomes ``num_ctx`` (Ollama silently truncates to its small default otherwise),
``out_tokens`` becomes ``num_predict``, ``no_think`` becomes ``reasoning=False`` (thinking text is
kept in ``additional_kwargs["reasoning_content"]`` when thinking is on); ``options`` pass through
(e.g. ``keep_alive``). Embeddings go to ``/api/embed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from module_ai.backends._managed import ManagedChatMixin, model_kwargs_for
from module_ai.backends._managed_embeddings import ManagedEmbeddingsMixin
from module_ai.config import ModelConfig
from module_ai.errors import BackendError, require

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

__all__ = ["DEFAULT_URL", "build_chat", "build_embeddings", "check"]

DEFAULT_URL = "http://127.0.0.1:11434"
_classes: dict[str, type] = {}


def _chat_class() -> type:
    if "chat" not in _classes:
        ChatOllama = require("langchain_ollama", "ollama").ChatOllama

        class ManagedChatOllama(ManagedChatMixin, ChatOllama):
            """``ChatOllama`` with module_ai usage, cost and limits."""

            def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
                """Traces name the model a call used: a per-call ``model=`` override (stock reports ``self.model``)."""
                params = super()._get_ls_params(stop=stop, **kwargs)
                if kwargs.get("model"):
                    params["ls_model_name"] = kwargs["model"]
                return params

        _classes["chat"] = ManagedChatOllama
    return _classes["chat"]


def _embeddings_class() -> type:
    if "emb" not in _classes:
        OllamaEmbeddings = require("langchain_ollama", "ollama").OllamaEmbeddings

        class ManagedOllamaEmbeddings(ManagedEmbeddingsMixin, OllamaEmbeddings):
            """``OllamaEmbeddings`` batched by ``max_batch`` with usage from ``prompt_eval_count``."""

            chunk_size: int = 64

            def _embed_batch(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
                reply = self._client.embed(self.model, texts, dimensions=self.dimensions,
                                           options=self._default_params, keep_alive=self.keep_alive)
                return list(reply["embeddings"]), reply.get("prompt_eval_count")

            async def _aembed_batch(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
                reply = await self._async_client.embed(self.model, texts, dimensions=self.dimensions,
                                                       options=self._default_params,
                                                       keep_alive=self.keep_alive)
                return list(reply["embeddings"]), reply.get("prompt_eval_count")

        _classes["emb"] = ManagedOllamaEmbeddings
    return _classes["emb"]


def _client_kwargs(cfg: ModelConfig, path: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"timeout": cfg.timeout}
    auth = cfg.resolved_authorization(path)  # Bearer api_key, or Basic from the url's user:password@
    if auth:
        kwargs["headers"] = {"Authorization": auth}
    return kwargs


def build_chat(cfg: ModelConfig, registry: Any, path: str | None) -> BaseChatModel:
    """Build a ``ChatOllama`` (native API) from the config."""
    kwargs: dict[str, Any] = {
        "model": cfg.model,
        "base_url": cfg.resolved_url(path) or DEFAULT_URL,
        "client_kwargs": _client_kwargs(cfg, path),
        "reasoning": False if cfg.no_think else None,
        **model_kwargs_for(cfg),
    }
    if cfg.input_tokens:
        kwargs["num_ctx"] = cfg.input_tokens
    if cfg.out_tokens:
        kwargs["num_predict"] = cfg.out_tokens
    if cfg.temperature is not None:
        kwargs["temperature"] = cfg.temperature
    kwargs.update(cfg.options)
    return _chat_class()(**kwargs).bind_module_ai(cfg, path)


def build_embeddings(cfg: ModelConfig, registry: Any, path: str | None) -> Embeddings:
    """Build ``OllamaEmbeddings`` (``/api/embed``) from the config."""
    kwargs: dict[str, Any] = {
        "model": cfg.model,
        "base_url": cfg.resolved_url(path) or DEFAULT_URL,
        "client_kwargs": _client_kwargs(cfg, path),
        "chunk_size": cfg.max_batch or 64,
    }
    if cfg.dimensions:
        kwargs["dimensions"] = cfg.dimensions
    if cfg.input_tokens:
        kwargs["num_ctx"] = cfg.input_tokens
    kwargs.update(cfg.options)
    return _embeddings_class()(**kwargs).bind_module_ai(cfg, path)


def check(cfg: ModelConfig, registry: Any, path: str | None) -> dict[str, Any]:
    """List the server's pulled models (``/api/tags``); report whether the configured one is there."""
    import httpx

    url = cfg.resolved_url(path) or DEFAULT_URL
    try:
        response = httpx.get(f"{url}/api/tags", timeout=min(cfg.timeout, 15))
    except httpx.HTTPError as exc:
        raise BackendError(f"cannot reach {url}: {type(exc).__name__}; is `ollama serve` running?",
                           model=cfg.display_name) from None
    if response.status_code >= 400:
        raise BackendError(f"{url}/api/tags answered HTTP {response.status_code}", model=cfg.display_name)
    names = [m.get("name") for m in response.json().get("models", [])]
    listed = cfg.model in names or f"{cfg.model}:latest" in names
    hint = None if listed else f"run: ollama pull {cfg.model}"
    return {"models": names[:50], "model_listed": listed, "hint": hint}
