"""``server_type: llamacpp``: a GGUF model loaded in-process with llama-cpp-python (the seed's
"model embedded in the app"). ``model`` is the path of the ``.gguf`` file, or, with ``model_file``
(a path or package parts, verified by sha256 before loading: see ``_model_file``), its name.

Loaded models are shared per (path, mode) in this process; calls to one model are serialized
(a ``llama_cpp.Llama`` is not thread-safe). ``options`` pass through to ``llama_cpp.Llama``
(e.g. ``n_threads``, ``n_gpu_layers``, ``chat_format``); ``n_threads`` and ``n_threads_batch``
default to the CPUs this process may run on (llama-cpp-python's own default is half of them).
``use_extra_bufts`` (default false) turns on llama.cpp's extra weight buffers (repacking, AMX):
off by default because a native build on a CPU that reports AMX dies with SIGILL on the first
Q4_K matrix product where the AMX tiles are not usable (measured on this project's 2-core VMs).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.backends import available_cpus
from module_ai.backends._managed import ManagedChatMixin
from module_ai.backends._managed_embeddings import ManagedEmbeddingsMixin
from module_ai.backends._model_file import resolve_model_file
from module_ai.config import ModelConfig
from module_ai.errors import BackendError, ConfigError, require

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

__all__ = ["build_chat", "build_embeddings", "check", "gguf_path", "load_llama"]

_loaded: dict[tuple, tuple[Any, threading.Lock]] = {}
_load_lock = threading.Lock()
_classes: dict[str, type] = {}


def gguf_path(cfg: ModelConfig, path: str | None) -> Path:
    """The GGUF file of ``cfg``: ``model_file`` verified (and assembled) first, else ``model`` as a path."""
    if cfg.model_file is not None:
        return resolve_model_file(cfg.model_file, cfg.model, model=cfg.display_name, config_path=path)[0]
    gguf = Path(cfg.model).expanduser()
    if not gguf.is_absolute() and path:
        candidate = Path(path).parent / gguf
        gguf = candidate if candidate.exists() else gguf
    if not gguf.exists():
        raise ConfigError(f"GGUF file '{gguf}' does not exist; set model to the path of a .gguf file",
                          path=path, model=cfg.display_name, field="model")
    return gguf


def load_llama(cfg: ModelConfig, path: str | None, *, embedding: bool = False) -> tuple[Any, threading.Lock]:
    """Load (once per process) the GGUF file of ``cfg``; returns the model and its lock."""
    llama_cpp = require("llama_cpp", "llamacpp", model=cfg.display_name, path=path)
    gguf = gguf_path(cfg, path)
    key = (str(gguf.resolve()), embedding, tuple(sorted((k, str(v)) for k, v in cfg.options.items())))
    with _load_lock:
        if key not in _loaded:
            threads = available_cpus()
            kwargs = {"n_ctx": cfg.input_tokens or 2048, "verbose": False, "embedding": embedding,
                      "n_threads": threads, "n_threads_batch": threads}
            kwargs.update(cfg.options)
            extra_bufts = bool(kwargs.pop("use_extra_bufts", False))
            try:
                with _model_params(llama_cpp, use_extra_bufts=extra_bufts):
                    _loaded[key] = (llama_cpp.Llama(model_path=str(gguf), **kwargs), threading.Lock())
            except Exception as exc:
                raise BackendError(f"llama.cpp could not load {gguf}: {exc}", model=cfg.display_name) from exc
        return _loaded[key]


@contextlib.contextmanager
def _model_params(llama_cpp: Any, *, use_extra_bufts: bool) -> Iterator[None]:
    """Set ``llama_model_params.use_extra_bufts`` for one load (``Llama()`` has no argument for it).

    ``Llama.__init__`` takes its model params from ``llama_model_default_params()``; the default is
    replaced for the duration of the load (callers hold ``_load_lock``).
    """
    low = llama_cpp.llama_cpp
    original = low.llama_model_default_params
    if not hasattr(original(), "use_extra_bufts"):  # an older llama.cpp: nothing to set
        yield
        return

    def params() -> Any:
        value = original()
        value.use_extra_bufts = use_extra_bufts
        return value

    low.llama_model_default_params = params
    try:
        yield
    finally:
        low.llama_model_default_params = original


def _to_openai_messages(messages: list) -> list[dict[str, Any]]:
    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
    return [{"role": roles.get(m.type, "user"), "content": m.content} for m in messages]


def _chat_class() -> type:
    if "chat" in _classes:
        return _classes["chat"]
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

    class _LlamaCppChat(BaseChatModel):
        model_name: str
        max_tokens: int | None = None
        temperature: float = 0.7

        @property
        def _llm_type(self) -> str:
            return "module_ai-llamacpp"

        def _params(self, messages: list, stop: list[str] | None, **kwargs: Any) -> dict[str, Any]:
            params = {"messages": _to_openai_messages(messages), "temperature": self.temperature,
                      "max_tokens": self.max_tokens, "stop": stop}
            params.update({k: v for k, v in kwargs.items() if k in ("temperature", "max_tokens", "top_p", "seed")})
            return params

        def _llama(self) -> tuple[Any, threading.Lock]:
            return load_llama(self.module_ai_config, self.module_ai_path)

        def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
            llm, lock = self._llama()
            with lock:
                reply = llm.create_chat_completion(**self._params(messages, stop, **kwargs))
            choice, usage = reply["choices"][0], reply.get("usage") or {}
            message = AIMessage(
                content=choice["message"].get("content") or "",
                usage_metadata={"input_tokens": usage.get("prompt_tokens", 0),
                                "output_tokens": usage.get("completion_tokens", 0),
                                "total_tokens": usage.get("total_tokens", 0)} if usage else None,
                response_metadata={"finish_reason": choice.get("finish_reason"), "model_name": self.model_name},
            )
            return ChatResult(generations=[ChatGeneration(message=message)])

        def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator[ChatGenerationChunk]:
            llm, lock = self._llama()
            with lock:
                for part in llm.create_chat_completion(stream=True, **self._params(messages, stop, **kwargs)):
                    choice = part["choices"][0]
                    text = choice.get("delta", {}).get("content") or ""
                    meta = {"finish_reason": choice["finish_reason"]} if choice.get("finish_reason") else {}
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=text, response_metadata=meta))
                    if run_manager and text:
                        run_manager.on_llm_new_token(text, chunk=chunk)
                    yield chunk

    class ChatLlamaCppInProcess(ManagedChatMixin, _LlamaCppChat):
        """A chat model over an in-process ``llama_cpp.Llama``: streaming, usage, ``max_tokens``."""

    _classes["chat"] = ChatLlamaCppInProcess
    return ChatLlamaCppInProcess


def _embeddings_class() -> type:
    if "emb" in _classes:
        return _classes["emb"]
    from langchain_core.embeddings import Embeddings

    class LlamaCppEmbeddings(ManagedEmbeddingsMixin, Embeddings):
        """Embeddings from an in-process ``llama_cpp.Llama(embedding=True)``."""

        chunk_size: int = 32

        def _embed_batch(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
            llm, lock = load_llama(self.module_ai_config, self.module_ai_path, embedding=True)
            with lock:
                reply = llm.create_embedding(texts)
            rows = sorted(reply["data"], key=lambda r: r["index"])
            return [r["embedding"] for r in rows], (reply.get("usage") or {}).get("prompt_tokens")

        async def _aembed_batch(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
            import asyncio

            return await asyncio.to_thread(self._embed_batch, texts)

        def _concurrency(self) -> int:
            return 1

    _classes["emb"] = LlamaCppEmbeddings
    return LlamaCppEmbeddings


def build_chat(cfg: ModelConfig, registry: Any, path: str | None) -> BaseChatModel:
    """Build the in-process llama.cpp chat model (the GGUF loads on first call)."""
    kwargs: dict[str, Any] = {"model_name": Path(cfg.model).name}
    if cfg.out_tokens:
        kwargs["max_tokens"] = cfg.out_tokens
    if cfg.temperature is not None:
        kwargs["temperature"] = cfg.temperature
    return _chat_class()(**kwargs).bind_module_ai(cfg, path)


def build_embeddings(cfg: ModelConfig, registry: Any, path: str | None) -> Embeddings:
    """Build in-process llama.cpp embeddings (the GGUF loads on first call)."""
    return _embeddings_class()(chunk_size=cfg.max_batch or 32).bind_module_ai(cfg, path)


def check(cfg: ModelConfig, registry: Any, path: str | None) -> dict[str, Any]:
    """Load the GGUF file and report its context size and vocabulary."""
    llm, _ = load_llama(cfg, path, embedding=cfg.model_type == "embedding")
    return {"n_ctx": llm.n_ctx(), "n_vocab": llm.n_vocab(), "n_embd": llm.n_embd()}
