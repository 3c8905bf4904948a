"""Mixins that make a stock LangChain model "managed": usage, cost, limits, budgets and retries.

``ManagedChatMixin`` goes in front of a ``BaseChatModel`` subclass, ``ManagedEmbeddingsMixin`` in
front of an ``Embeddings`` subclass. They wrap the low-level ``_generate``/``_stream`` (and async)
methods so that every path (invoke, stream, batch, async) is handled once:

1. the input is counted (``module_ai.controls.tokens``) and checked against ``input_tokens - out_tokens``
   (:class:`~module_ai.errors.ContextWindowError`);
2. the worst-case cost is reserved with any open ``track_usage(max_cost=...)``
   (:class:`~module_ai.errors.BudgetExceededError`);
3. each HTTP attempt is admitted by the model's process-wide limiter (``module_ai.controls.limits``) and
   failures are retried by the one retry owner (``module_ai.controls.retry``; the SDKs run with 0 retries);
4. usage (estimated when the server sends none), cost and latency go into a
   :class:`~module_ai.controls.events.CallRecord` and the cost into ``response_metadata["cost"]``.

``batch``/``abatch`` run ``max_concurrency`` items at once by default (not Python's 6), keep input
order, and never lose finished items when one fails (:mod:`._batch`).
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pydantic import BaseModel, Field

from module_ai.backends._batch import ainvoke_all, batch_configs, settle_batch
from module_ai.config import ModelConfig
from module_ai.controls.budget_bounds import CAPPED_SERVER_TYPES, input_bound, output_bound
from module_ai.controls.call import ManagedCall
from module_ai.controls.cost import call_cost
from module_ai.controls.events import CallRecord, emit
from module_ai.controls.limits import limiter_for
from module_ai.controls.tokens import estimate_message_tokens, estimate_tokens
from module_ai.controls.usage import UNKNOWN_OUTPUT_TOKENS, budget_active

__all__ = ["ManagedChatMixin", "model_kwargs_for"]

_inside: contextvars.ContextVar[int | None] = contextvars.ContextVar("module_ai_inside_call", default=None)


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
    module_ai_limiter: Any = Field(default=None, exclude=True, repr=False)
    """The process-wide :class:`~module_ai.controls.limits.ModelLimiter` of this model's endpoint."""

    def bind_module_ai(self, cfg: ModelConfig, path: str | None):
        """Attach the config (used for usage, cost and limits) and return ``self``."""
        self.module_ai_config = cfg
        self.module_ai_path = path
        self.module_ai_limiter = limiter_for(cfg, update=True)
        return self

    def _open_call(self, input_tokens: int, max_output: int | None, *, check_window: bool = True,
                   budget_input: int | None = None):
        cfg = self.module_ai_config
        if cfg is None or _inside.get() == id(self):
            return None
        limiter = self.module_ai_limiter or limiter_for(cfg)
        return ManagedCall(cfg, limiter, input_tokens, max_output, path=self.module_ai_path,
                           check_window=check_window, budget_input=budget_input)


class ManagedChatMixin(_ModuleAIFields):
    """Limits, retries, budget and usage of every chat call; cost in ``response_metadata``."""

    def _chat_call(self, messages: list, kwargs: dict) -> ManagedCall | None:
        cfg = self.module_ai_config
        if cfg is not None:
            from module_ai.controls.capabilities import check_messages

            check_messages(cfg, messages, path=self.module_ai_path)  # media the model cannot take: no request
        max_output = kwargs.get("max_tokens") or (cfg.out_tokens if cfg else None)
        estimate = estimate_message_tokens(messages)
        bound = None
        if cfg is not None and budget_active():  # worst-case bounds only when a budget will use them
            bound = input_bound(cfg, messages)
            if max_output is None and cfg.server_type in CAPPED_SERVER_TYPES:
                max_output = kwargs["max_tokens"] = output_bound(cfg, estimate, None, UNKNOWN_OUTPUT_TOKENS)
        return self._open_call(estimate, max_output, budget_input=bound)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        call = self._chat_call(messages, kwargs)
        send = functools.partial(super()._generate, messages, stop=stop, run_manager=run_manager, **kwargs)
        if call is None:
            return send()
        token = _inside.set(id(self))
        try:
            result = call.run(send)
        except BaseException as exc:
            self._emit_failure(exc, call)
            call.abort()
            raise
        finally:
            _inside.reset(token)
        self._settle(messages, result, call)
        return result

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        call = self._chat_call(messages, kwargs)
        send = functools.partial(super()._agenerate, messages, stop=stop, run_manager=run_manager, **kwargs)
        if call is None:
            return await send()
        token = _inside.set(id(self))
        try:
            result = await call.arun(send)
        except BaseException as exc:
            self._emit_failure(exc, call)
            call.abort()
            raise
        finally:
            _inside.reset(token)
        self._settle(messages, result, call)
        return result

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator[Any]:
        call = self._chat_call(messages, kwargs)
        make = functools.partial(super()._stream, messages, stop=stop, run_manager=run_manager, **kwargs)
        if call is None:
            yield from make()
            return
        tally = _StreamTally(self, messages, call)
        try:
            for chunk in call.run_stream(make):
                tally.observe(chunk)
                yield chunk
            closing = tally.closing_chunk()
        except BaseException as exc:
            tally.failed(exc)
            call.abort()
            raise
        call.finish(tally.output_tokens, tally.total_tokens)
        yield closing

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs) -> AsyncIterator[Any]:
        call = self._chat_call(messages, kwargs)
        make = functools.partial(super()._astream, messages, stop=stop, run_manager=run_manager, **kwargs)
        if call is None:
            async for chunk in make():
                yield chunk
            return
        tally = _StreamTally(self, messages, call)
        stream = call.arun_stream(make)
        try:
            async for chunk in stream:
                tally.observe(chunk)
                yield chunk
            closing = tally.closing_chunk()
        except BaseException as exc:
            tally.failed(exc)
            call.abort()
            await stream.aclose()  # now, not whenever the loop finalizes it: the connection goes back
            raise
        call.finish(tally.output_tokens, tally.total_tokens)
        yield closing

    # ---- batch ----------------------------------------------------------------------------------
    def batch(self, inputs, config=None, *, return_exceptions: bool = False, **kwargs) -> list[Any]:
        configs = batch_configs(self, config, len(inputs))
        results = super().batch(inputs, configs, return_exceptions=True, **kwargs)
        return settle_batch(results, return_exceptions)

    async def abatch(self, inputs, config=None, *, return_exceptions: bool = False, **kwargs) -> list[Any]:
        configs = batch_configs(self, config, len(inputs))
        return settle_batch(await ainvoke_all(self, inputs, configs, **kwargs), return_exceptions)

    # ---- accounting -----------------------------------------------------------------------------
    def _settle(self, messages: list, result: Any, call: ManagedCall) -> None:
        output_tokens = total_tokens = 0
        try:
            for gen in result.generations:
                record = self._account_message(messages, gen.message, call)
                output_tokens += record.output_tokens
                total_tokens += record.input_tokens + record.output_tokens
        finally:
            call.finish(output_tokens, total_tokens)

    def _account_message(self, messages: list, message: Any, call: ManagedCall) -> CallRecord:
        usage = getattr(message, "usage_metadata", None)
        estimated = not usage
        if estimated:
            usage = _estimated_usage(messages, message.content)
            message.usage_metadata = usage
        record = _chat_record(self.module_ai_config, usage, estimated, time.perf_counter() - call.start, call)
        message.response_metadata.update(_cost_metadata(record))
        emit(record)
        return record

    def _emit_failure(self, exc: BaseException, call: ManagedCall, usage: dict | None = None) -> None:
        cfg = self.module_ai_config
        record = _chat_record(cfg, usage or {}, bool(usage), time.perf_counter() - call.start, call)
        record.error = f"{type(exc).__name__}: {exc}"
        emit(record)


class _StreamTally:
    """Watches a stream's chunks and produces the closing chunk with usage (estimated if absent)."""

    def __init__(self, model: ManagedChatMixin, messages: list, call: ManagedCall) -> None:
        self.model, self.messages, self.call = model, messages, call
        self.ttft: float | None = None
        self.usage: dict | None = None
        self.text: list[str] = []
        self.done = False
        self.output_tokens = self.total_tokens = 0

    def observe(self, chunk: Any) -> None:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.call.start
        message = chunk.message
        if getattr(message, "usage_metadata", None):
            self.usage = dict(message.usage_metadata)
        if isinstance(message.content, str):
            self.text.append(message.content)
        self.text.append(message.additional_kwargs.get("reasoning_content", ""))

    def _record(self, usage: dict, estimated: bool) -> CallRecord:
        record = _chat_record(self.model.module_ai_config, usage, estimated,
                              time.perf_counter() - self.call.start, self.call)
        record.ttft_s = self.ttft
        self.output_tokens = record.output_tokens
        self.total_tokens = record.input_tokens + record.output_tokens
        return record

    def closing_chunk(self) -> Any:
        from langchain_core.messages import AIMessageChunk
        from langchain_core.outputs import ChatGenerationChunk

        estimated = self.usage is None
        usage = _estimated_usage(self.messages, "".join(self.text)) if estimated else self.usage
        record = self._record(usage, estimated)
        chunk = AIMessageChunk(content="", response_metadata=_cost_metadata(record),
                               usage_metadata=usage if estimated else None)
        self.done = True
        emit(record)
        return ChatGenerationChunk(message=chunk)

    def failed(self, exc: BaseException) -> None:
        """Emit the record of a stream that broke or was abandoned (partial output is billed)."""
        if self.done:
            return
        self.done = True
        partial = "".join(self.text)
        usage = self.usage or (_estimated_usage(self.messages, partial) if self.ttft is not None else {})
        record = self._record(usage, self.usage is None and bool(usage))
        if isinstance(exc, GeneratorExit):
            record.extra["abandoned"] = True
        else:
            record.error = f"{type(exc).__name__}: {exc}"
        if getattr(exc, "stream_cut", False) or getattr(exc.__cause__, "stream_cut", False):
            record.extra["stream_cut"] = True  # the server ended the stream mid-answer
        emit(record)


def _estimated_usage(messages: list, output_text: Any) -> dict:
    text = output_text if isinstance(output_text, str) else str(output_text)
    input_tokens = estimate_message_tokens(messages)
    output_tokens = estimate_tokens(text)
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens}


def _chat_record(cfg: ModelConfig, usage: dict, estimated: bool, latency: float,
                 call: ManagedCall | None = None) -> CallRecord:
    input_tokens = int(usage.get("input_tokens") or 0)
    output_tokens = int(usage.get("output_tokens") or 0)
    details = usage.get("output_token_details") or {}
    return CallRecord(
        model=cfg.display_name, kind="chat", input_tokens=input_tokens, output_tokens=output_tokens,
        reasoning_tokens=int(details.get("reasoning") or 0), estimated=estimated,
        cost=call_cost(cfg, input_tokens, output_tokens), currency=cfg.currency,
        latency_s=latency, timestamp=time.time(), attempts=call.attempts if call else 1,
        extra={"call_id": call.call_id} if call else {},
    )


def _cost_metadata(record: CallRecord) -> dict[str, Any]:
    return {"cost": record.cost, "currency": record.currency, "usage_estimated": record.estimated,
            "attempts": record.attempts, "module_ai_model": record.model,
            "module_ai_call_id": record.extra.get("call_id")}
