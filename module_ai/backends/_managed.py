"""Mixins that make a stock LangChain model "managed": usage, cost and call records.

``ManagedChatMixin`` goes in front of a ``BaseChatModel`` subclass, ``ManagedEmbeddingsMixin`` in
front of an ``Embeddings`` subclass. They wrap the low-level ``_generate``/``_stream`` (and async)
methods so that every path (invoke, stream, batch, async) is counted once.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Iterator

from pydantic import BaseModel, Field

from module_ai._events import CallRecord, emit
from module_ai.config import ModelConfig
from module_ai.tokens import estimate_message_tokens, estimate_tokens

__all__ = ["ManagedChatMixin", "ManagedEmbeddingsMixin", "call_cost", "model_kwargs_for"]


def call_cost(cfg: ModelConfig, input_tokens: int, output_tokens: int) -> float:
    """Cost of one call in ``cfg.currency``: tokens times ``pay_in``/``pay_out`` per ``price_unit``."""
    return (input_tokens * cfg.pay_in + output_tokens * cfg.pay_out) / cfg.price_unit


def model_kwargs_for(cfg: ModelConfig) -> dict[str, Any]:
    """Constructor kwargs shared by every managed chat model (e.g. LangChain's model profile)."""
    profile = {}
    if cfg.input_tokens:
        profile["max_input_tokens"] = cfg.input_tokens
    if cfg.out_tokens:
        profile["max_output_tokens"] = cfg.out_tokens
    return {"profile": profile} if profile else {}


class _ModuleAIFields(BaseModel):
    module_ai_config: Any = Field(default=None, exclude=True, repr=False)
    """The ModelConfig this object was built from."""
    module_ai_path: str | None = Field(default=None, exclude=True, repr=False)
    """The config file it came from."""

    def bind_module_ai(self, cfg: ModelConfig, path: str | None):
        """Attach the config (used for usage, cost and limits) and return ``self``."""
        self.module_ai_config = cfg
        self.module_ai_path = path
        return self


class ManagedChatMixin(_ModuleAIFields):
    """Counts tokens, cost and latency of every chat call and puts the cost in ``response_metadata``."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        start = time.perf_counter()
        try:
            result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        except Exception as exc:
            self._emit_failure(exc, start)
            raise
        self._account_result(messages, result, start)
        return result

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        start = time.perf_counter()
        try:
            result = await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        except Exception as exc:
            self._emit_failure(exc, start)
            raise
        self._account_result(messages, result, start)
        return result

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator[Any]:
        tally = _StreamTally(self, messages)
        try:
            for chunk in super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
                tally.observe(chunk)
                yield chunk
        except Exception as exc:
            self._emit_failure(exc, tally.start)
            raise
        yield tally.closing_chunk()

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs) -> AsyncIterator[Any]:
        tally = _StreamTally(self, messages)
        try:
            async for chunk in super()._astream(messages, stop=stop, run_manager=run_manager, **kwargs):
                tally.observe(chunk)
                yield chunk
        except Exception as exc:
            self._emit_failure(exc, tally.start)
            raise
        yield tally.closing_chunk()

    def _account_result(self, messages, result, start: float) -> None:
        cfg = self.module_ai_config
        if cfg is None:
            return
        for gen in result.generations:
            message = gen.message
            usage = getattr(message, "usage_metadata", None)
            estimated = not usage
            if estimated:
                usage = _estimated_usage(messages, message.content)
                message.usage_metadata = usage
            record = _chat_record(cfg, usage, estimated, time.perf_counter() - start)
            message.response_metadata.update(_cost_metadata(record))
            emit(record)

    def _emit_failure(self, exc: BaseException, start: float) -> None:
        cfg = self.module_ai_config
        if cfg is not None:
            emit(CallRecord(model=cfg.display_name, kind="chat", currency=cfg.currency,
                            latency_s=time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}",
                            timestamp=time.time()))


class _StreamTally:
    """Watches a stream's chunks and produces the closing chunk with usage (estimated if absent)."""

    def __init__(self, model: ManagedChatMixin, messages: list) -> None:
        self.model, self.messages = model, messages
        self.start = time.perf_counter()
        self.ttft: float | None = None
        self.usage: dict | None = None
        self.text: list[str] = []

    def observe(self, chunk: Any) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.start
        message = chunk.message
        if getattr(message, "usage_metadata", None):
            self.usage = dict(message.usage_metadata)
        if isinstance(message.content, str):
            self.text.append(message.content)
        self.text.append(message.additional_kwargs.get("reasoning_content", ""))

    def closing_chunk(self) -> Any:
        from langchain_core.messages import AIMessageChunk
        from langchain_core.outputs import ChatGenerationChunk

        cfg = self.model.module_ai_config
        estimated = self.usage is None
        usage = _estimated_usage(self.messages, "".join(self.text)) if estimated else self.usage
        record = _chat_record(cfg, usage, estimated, time.perf_counter() - self.start) if cfg else None
        metadata = _cost_metadata(record) if record else {}
        chunk = AIMessageChunk(content="", response_metadata=metadata,
                               usage_metadata=usage if estimated else None)
        if record:
            record.ttft_s = self.ttft
            emit(record)
        return ChatGenerationChunk(message=chunk)


def _estimated_usage(messages: list, output_text: Any) -> dict:
    text = output_text if isinstance(output_text, str) else str(output_text)
    input_tokens = estimate_message_tokens(messages)
    output_tokens = estimate_tokens(text)
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens}


def _chat_record(cfg: ModelConfig, usage: dict, estimated: bool, latency: float) -> CallRecord:
    input_tokens = int(usage.get("input_tokens") or 0)
    output_tokens = int(usage.get("output_tokens") or 0)
    details = usage.get("output_token_details") or {}
    return CallRecord(
        model=cfg.display_name, kind="chat", input_tokens=input_tokens, output_tokens=output_tokens,
        reasoning_tokens=int(details.get("reasoning") or 0), estimated=estimated,
        cost=call_cost(cfg, input_tokens, output_tokens), currency=cfg.currency,
        latency_s=latency, timestamp=time.time(),
    )


def _cost_metadata(record: CallRecord) -> dict[str, Any]:
    return {"cost": record.cost, "currency": record.currency, "usage_estimated": record.estimated}


class ManagedEmbeddingsMixin(_ModuleAIFields):
    """Batches by ``max_batch`` (``chunk_size``), runs batches ``max_concurrency`` at a time, counts usage.

    The concrete class provides ``_embed_batch(texts) -> (vectors, tokens or None)`` and the async
    ``_aembed_batch``.
    """

    def embed_documents(self, texts: list[str], chunk_size: int | None = None, **_: Any) -> list[list[float]]:
        batches = self._batches(texts, chunk_size)
        workers = self._concurrency()
        if workers == 1 or len(batches) == 1:
            results = [self._timed_batch(b) for b in batches]
        else:
            with ThreadPoolExecutor(max_workers=min(workers, len(batches))) as pool:
                results = list(pool.map(self._timed_batch, batches))
        return [vector for batch in results for vector in batch]

    async def aembed_documents(self, texts: list[str], chunk_size: int | None = None, **_: Any):
        semaphore = asyncio.Semaphore(self._concurrency())

        async def one(batch: list[str]) -> list[list[float]]:
            async with semaphore:
                start = time.perf_counter()
                vectors, tokens = await self._aembed_batch(batch)
                self._account_batch(batch, tokens, start)
                return vectors

        results = await asyncio.gather(*(one(b) for b in self._batches(texts, chunk_size)))
        return [vector for batch in results for vector in batch]

    def embed_query(self, text: str, **_: Any) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_query(self, text: str, **_: Any) -> list[float]:
        return (await self.aembed_documents([text]))[0]

    def _batches(self, texts: list[str], chunk_size: int | None) -> list[list[str]]:
        size = chunk_size or getattr(self, "chunk_size", None) or 64
        return [list(texts[i:i + size]) for i in range(0, len(texts), size)]

    def _concurrency(self) -> int:
        cfg = self.module_ai_config
        return (cfg.max_concurrency if cfg and cfg.max_concurrency else 4)

    def _timed_batch(self, batch: list[str]) -> list[list[float]]:
        start = time.perf_counter()
        vectors, tokens = self._embed_batch(batch)
        self._account_batch(batch, tokens, start)
        return vectors

    def _account_batch(self, batch: list[str], tokens: int | None, start: float) -> None:
        cfg = self.module_ai_config
        if cfg is None:
            return
        estimated = tokens is None
        count = sum(estimate_tokens(t) for t in batch) if estimated else int(tokens)
        emit(CallRecord(model=cfg.display_name, kind="embedding", input_tokens=count, estimated=estimated,
                        cost=call_cost(cfg, count, 0), currency=cfg.currency,
                        latency_s=time.perf_counter() - start, timestamp=time.time(),
                        extra={"texts": len(batch)}))
