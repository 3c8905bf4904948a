"""Build a reranker from a ``model_type: rerank`` config: one dispatch table on ``rerank_style``.

``rerank_style`` defaults by ``server_type``: ``openai`` -> ``cohere`` (``{url}/rerank``, what vLLM,
SiliconFlow, llama-server and Xinference serve), ``local`` -> ``cross_encoder`` (``model`` is a local
folder), ``ollama`` and ``llamacpp`` -> ``llm`` (neither has a rerank endpoint).

``rerank_model`` names another registry model: the chat model of style ``llm`` or the embedding
model of style ``embedding``. Without it, the rerank config itself is used as that chat/embedding
model (e.g. ``{"model_type": "rerank", "server_type": "ollama", "model": "qwen3:4b"}`` reranks with
``ChatOllama("qwen3:4b")``).

``options`` hold reranker settings (unknown keys are an error): ``top_n``, ``score_threshold`` for
every style; ``score_scale``, ``extra_body`` for HTTP styles; ``batch_size``, ``device`` for
``cross_encoder``; ``mode`` (pointwise|listwise), ``language`` (auto|zh|en), ``window``,
``max_chars`` for ``llm``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from module_ai.config import ModelConfig
from module_ai.errors import ConfigError
from module_ai.rerank._styles import API_STYLES

if TYPE_CHECKING:
    from langchain_core.documents import BaseDocumentCompressor

__all__ = ["DEFAULT_STYLES", "OPTION_KEYS", "build_reranker"]

DEFAULT_STYLES: dict[str, str] = {"openai": "cohere", "local": "cross_encoder", "ollama": "llm", "llamacpp": "llm"}
"""``rerank_style`` used when the config gives none, by ``server_type``."""

_COMMON = ("top_n", "score_threshold")
OPTION_KEYS: dict[str, tuple[str, ...]] = {
    **{style: (*_COMMON, "score_scale", "extra_body") for style in API_STYLES},
    "cross_encoder": (*_COMMON, "batch_size", "device"),
    "embedding": _COMMON,
    "llm": (*_COMMON, "mode", "language", "window", "max_chars"),
}
"""Keys allowed in ``options``, per style."""


def build_reranker(cfg: ModelConfig, registry: Any, path: str | None) -> BaseDocumentCompressor:
    """Build the reranker for a ``model_type: rerank`` config (dispatch on ``rerank_style``).

    Raises:
        ConfigError: unknown option, missing url, a style the server cannot serve, a bad ``rerank_model``.
    """
    style = cfg.rerank_style or DEFAULT_STYLES[cfg.server_type]
    allowed = OPTION_KEYS[style]
    unknown = sorted(set(cfg.options) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for rerank_style '{style}'; "
                          f"known: {', '.join(allowed)}", path=path, model=cfg.display_name, field="options")
    builder = _BUILDERS.get(style, _http)
    try:
        return builder(cfg, style, registry, path)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {first['msg']} (got {first.get('input')!r})", path=path,
                          model=cfg.display_name, field="options") from exc


def _common(cfg: ModelConfig) -> dict[str, Any]:
    return {"name": cfg.display_name, "top_n": cfg.options.get("top_n"),
            "score_threshold": cfg.options.get("score_threshold")}


def _http(cfg: ModelConfig, style: str, registry: Any, path: str | None):
    from module_ai.rerank._http import HTTPReranker

    def fail(message: str, field: str) -> ConfigError:
        return ConfigError(message, path=path, model=cfg.display_name, field=field)

    if cfg.server_type != "openai":
        hint = " (Ollama has no rerank endpoint)" if cfg.server_type == "ollama" else ""
        raise fail(f"rerank_style '{style}' is an HTTP API and needs server_type 'openai'{hint}; for "
                   f"server_type '{cfg.server_type}' use rerank_style 'llm' or 'embedding'", "rerank_style")
    if cfg.instruct and not API_STYLES[style].instruct:
        raise fail(f"rerank_style '{style}' has no instruction field; remove 'instruct' or use "
                   "'dashscope_openai' / 'dashscope'", "instruct")
    scale = cfg.options.get("score_scale")
    if scale is not None and scale not in ("probability", "logit", "cosine", "auto"):
        raise fail(f"score_scale {scale!r} is not one of probability, logit, cosine, auto", "options")
    url = cfg.resolved_url(path)
    if style.startswith("dashscope") and url and url.endswith("/compatible-mode/v1"):
        base = url[: -len("/compatible-mode/v1")]
        right = f"{base}/api/v1" if style == "dashscope" else f"{base}/compatible-api/v1"
        raise fail(f"'{url}' is the chat/embeddings base; DashScope rerank ({style}) lives under {right}", "url")
    key = cfg.resolved_api_key(path)
    auth = cfg.resolved_authorization(path)
    return HTTPReranker(
        model=cfg.model, url=url, api_key=key, style=style, timeout=cfg.timeout,
        authorization=auth if auth and auth.startswith("Basic ") else None,
        max_documents=cfg.max_documents, max_request_tokens=cfg.max_request_tokens,
        max_concurrency=cfg.max_concurrency or 4, max_retries=cfg.max_retries, instruct=cfg.instruct,
        score_scale=scale, extra_body=cfg.options.get("extra_body") or {}, module_ai_config=cfg,
        **_common(cfg),
    )


def _cross_encoder(cfg: ModelConfig, style: str, registry: Any, path: str | None):
    from module_ai.backends.local import resolve_model_dir
    from module_ai.rerank._local import CrossEncoderReranker

    model_dir = resolve_model_dir(cfg, path)
    extra = {k: cfg.options[k] for k in ("batch_size", "device") if k in cfg.options}
    return CrossEncoderReranker(model_path=str(model_dir), max_length=cfg.input_tokens, module_ai_config=cfg,
                                **extra, **_common(cfg))


def _embedding(cfg: ModelConfig, style: str, registry: Any, path: str | None):
    from module_ai.rerank._local import EmbeddingReranker

    embeddings = _inner_model("embedding", cfg, registry, path)
    return EmbeddingReranker(embeddings=embeddings, **_common(cfg))


def _llm(cfg: ModelConfig, style: str, registry: Any, path: str | None):
    from module_ai.rerank._llm import LLMReranker

    chat = _inner_model("chat", cfg, registry, path)
    inner_cfg = registry.config(cfg.rerank_model) if cfg.rerank_model else cfg
    extra = {k: cfg.options[k] for k in ("mode", "language", "window", "max_chars") if k in cfg.options}
    concurrency = cfg.max_concurrency or inner_cfg.max_concurrency or 4
    return LLMReranker(llm=chat, max_concurrency=concurrency, **extra, **_common(cfg))


def _inner_model(kind: str, cfg: ModelConfig, registry: Any, path: str | None):
    """The chat/embedding model a reranker runs on: ``rerank_model`` from the registry (the registry's
    shared object, so its limits and clients are shared too), else ``cfg`` itself as that model."""
    from module_ai.errors import UnknownModelError

    if not cfg.rerank_model:
        own = cfg.model_copy(update={"model_type": kind, "options": {}, "rerank_style": None})
        return registry.build(kind, own, path)
    try:
        inner = registry.config(cfg.rerank_model)
    except UnknownModelError as exc:
        raise ConfigError(f"rerank_model '{cfg.rerank_model}' is not in the registry; known {kind} models: "
                          f"{', '.join(registry.names(kind)) or 'none'}", path=path, model=cfg.display_name,
                          field="rerank_model") from exc
    if inner.model_type != kind:
        raise ConfigError(f"rerank_model '{cfg.rerank_model}' is a {inner.model_type} model; rerank_style "
                          f"'{cfg.rerank_style}' needs a {kind} model: {', '.join(registry.names(kind)) or 'none'}",
                          path=path, model=cfg.display_name, field="rerank_model")
    return registry.chat(cfg.rerank_model) if kind == "chat" else registry.embeddings(cfg.rerank_model)


_BUILDERS = {"cross_encoder": _cross_encoder, "embedding": _embedding, "llm": _llm}
"""Non-HTTP styles; every other style is a row of ``API_STYLES`` built by :func:`_http`."""
