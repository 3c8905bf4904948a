"""Fallback chat models that stay chat models: ``reg.chat(name)`` with ``fallbacks`` configured.

LangChain's ``llm.with_fallbacks([...])`` returns a ``RunnableWithFallbacks``: it is no chat model, so
``bind_tools`` and ``with_structured_output`` are lost (or bind only the primary, and a dead primary
raises instead of falling back). :class:`ChatWithFallbacks` is a ``BaseChatModel`` over the primary and
its fallbacks:

- ``invoke``/``batch``/async: the primary answers, else each fallback in order (after the primary's
  own retries); the last error is raised when every model failed, with the earlier ones as notes;
- ``stream``/``astream``: a model that fails before its first chunk hands over to the next; after the
  first chunk reached the caller an error is raised (partial output is never replayed);
- ``bind_tools``/``with_structured_output``: applied to every model, then chained with fallbacks, so a
  structured call with a dead primary is answered by a fallback.

Each model counts its own usage, cost and limits (a fallback's call is a call of that model).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict

__all__ = ["ChatWithFallbacks"]


class ChatWithFallbacks(BaseChatModel):
    """A chat model answered by ``primary``, else by each of ``fallbacks`` in order.

    Example:
        >>> llm = reg.chat("qwen3-4b")  # config: "fallbacks": ["qwen3-ollama"]          # doctest: +SKIP
        >>> llm.with_structured_output(Answer).invoke("...")  # a dead primary falls back  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    runnable: BaseChatModel
    """The primary model (named as in ``RunnableWithFallbacks``)."""
    fallbacks: list[BaseChatModel]
    """Models that answer, in order, when the ones before failed."""

    @property
    def _llm_type(self) -> str:
        return "module_ai-fallbacks"

    @property
    def models(self) -> list[BaseChatModel]:
        """The primary, then the fallbacks."""
        return [self.runnable, *self.fallbacks]

    @property
    def module_ai_config(self) -> Any:
        """The primary's config (name, limits, prices)."""
        return getattr(self.runnable, "module_ai_config", None)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"runnable": self.runnable._identifying_params,
                "fallbacks": [m._identifying_params for m in self.fallbacks]}

    # ---- plain calls ----------------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        config = None  # each model reports its own call; this model's run reports the result
        errors: list[BaseException] = []
        for model in self.models:
            try:
                return _result(model.invoke(messages, config, stop=stop, **kwargs))
            except Exception as exc:  # noqa: BLE001 - the next model answers; all failed: raise the last
                errors.append(exc)
        raise _last(errors, self.models)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        config = None  # each model reports its own call; this model's run reports the result
        errors: list[BaseException] = []
        for model in self.models:
            try:
                return _result(await model.ainvoke(messages, config, stop=stop, **kwargs))
            except Exception as exc:  # noqa: BLE001 - the next model answers; all failed: raise the last
                errors.append(exc)
        raise _last(errors, self.models)

    # ---- streams --------------------------------------------------------------------------------
    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        config = None  # each model reports its own call; this model's run reports the result
        errors: list[BaseException] = []
        for model in self.models:
            stream = iter(model.stream(messages, config, stop=stop, **kwargs))
            try:
                first = next(stream, None)
            except Exception as exc:  # noqa: BLE001 - failed before its first chunk: the next model streams
                errors.append(exc)
                continue
            if first is not None:
                yield _chunk(first)
            for chunk in stream:
                yield _chunk(chunk)
            return
        raise _last(errors, self.models)

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        config = None  # each model reports its own call; this model's run reports the result
        errors: list[BaseException] = []
        for model in self.models:
            stream = model.astream(messages, config, stop=stop, **kwargs).__aiter__()
            try:
                first = await anext(stream, None)
            except Exception as exc:  # noqa: BLE001 - failed before its first chunk: the next model streams
                errors.append(exc)
                continue
            if first is not None:
                yield _chunk(first)
            async for chunk in stream:
                yield _chunk(chunk)
            return
        raise _last(errors, self.models)

    # ---- chat-model methods that build new runnables ------------------------------------------------
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable:
        """``bind_tools`` on every model, chained with fallbacks."""
        bound = [model.bind_tools(tools, **kwargs) for model in self.models]
        return bound[0].with_fallbacks(bound[1:])

    def with_structured_output(self, schema: Any = None, **kwargs: Any) -> Runnable:
        """``with_structured_output`` on every model, chained with fallbacks (a dead primary falls back)."""
        built = [model.with_structured_output(schema, **kwargs) for model in self.models]
        return built[0].with_fallbacks(built[1:])

    def batch(self, inputs: list, config: Any = None, *, return_exceptions: bool = False, **kwargs: Any) -> list:
        from module_ai.backends._batch import batch_configs, settle_batch

        if self.module_ai_config is None:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        configs = batch_configs(self, config, len(inputs))
        return settle_batch(super().batch(inputs, configs, return_exceptions=True, **kwargs), return_exceptions)

    async def abatch(self, inputs: list, config: Any = None, *, return_exceptions: bool = False,
                     **kwargs: Any) -> list:
        from module_ai.backends._batch import ainvoke_all, batch_configs, settle_batch

        if self.module_ai_config is None:
            return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        configs = batch_configs(self, config, len(inputs))
        return settle_batch(await ainvoke_all(self, inputs, configs, **kwargs), return_exceptions)


def _result(message: AIMessage) -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=message)])


def _chunk(message: AIMessageChunk) -> ChatGenerationChunk:
    """Wrap a model's chunk (BaseChatModel.stream reports the token to the callbacks itself)."""
    return ChatGenerationChunk(message=message)


def _last(errors: list[BaseException], models: list[BaseChatModel]) -> BaseException:
    """The last model's error, noting what the earlier ones raised."""
    last = errors[-1]
    if hasattr(last, "add_note"):
        for model, exc in zip(models, errors[:-1]):
            name = getattr(getattr(model, "module_ai_config", None), "display_name", type(model).__name__)
            last.add_note(f"module_ai: fallback chain: {name} failed first: {type(exc).__name__}: {exc}")
    return last
