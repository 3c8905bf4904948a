"""One managed call: context check, budget reservation, limiter admission per attempt, retries.

Used by the mixins in ``_managed.py`` (and usable by any backend, e.g. rerankers)::

    call = ManagedCall(cfg, limiter, input_tokens, max_output)   # may raise ContextWindowError/BudgetExceededError
    try:
        result = call.run(lambda: send(...))                       # retries; failures come out as BackendError
    except Exception:
        call.abort(); raise
    emit(record)                                                   # count the call first ...
    call.finish(output_tokens=..., total_tokens=...)               # ... then free slot and budget reservation
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from module_ai._redact import redact_url
from module_ai.controls.budget_bounds import note_real_input
from module_ai.controls.limits import ModelLimiter, check_context
from module_ai.controls.retry import backend_error, classify
from module_ai.controls.usage import reserve_budget
from module_ai.controls.usage_log import ensure_env_log
from module_ai.errors import BackendError

__all__ = ["ManagedCall", "substantive"]

_ids = itertools.count(1)
_proc: tuple[int, str] = (0, "")


def _process_id() -> str:
    """``pid-random``: unique across machines and forks (call ids key shared budget reservations)."""
    global _proc
    pid = os.getpid()
    if _proc[0] != pid:
        _proc = (pid, f"{pid}-{uuid.uuid4().hex[:8]}")
    return _proc[1]


def substantive(chunk: Any) -> bool:
    """True when a stream chunk carries something for the caller (text, reasoning, tool calls)."""
    message = getattr(chunk, "message", chunk)
    return bool(message.content or getattr(message, "tool_call_chunks", None)
                or message.additional_kwargs.get("reasoning_content"))


def _resolved_url(cfg: Any, path: str | None) -> str | None:
    """The URL requests go to (``${VAR:-default}`` expanded), for error messages."""
    try:
        return cfg.resolved_url(path)
    except Exception:  # noqa: BLE001 - an unresolvable URL was never used; show it as written
        return cfg.url


class ManagedCall:
    """State of one logical call across its attempts (see the module docstring)."""

    __slots__ = (
        "_held",
        "_path",
        "_slot",
        "_t0",
        "_url",
        "attempts",
        "call_id",
        "cfg",
        "input_tokens",
        "limiter",
        "max_output",
        "request_tokens",
        "reservation",
        "start",
    )

    def __init__(self, cfg: Any, limiter: ModelLimiter, input_tokens: int, max_output: int | None, *,
                 path: str | None = None, check_window: bool = True, budget_input: int | None = None) -> None:
        if check_window:
            check_context(cfg, input_tokens, path=path)
        ensure_env_log()
        self.cfg, self.limiter = cfg, limiter
        self.input_tokens, self.max_output = input_tokens, max_output
        self.call_id = f"{_process_id()}-{next(_ids)}"
        bound = input_tokens if budget_input is None else budget_input
        self.reservation = reserve_budget(cfg, bound, max_output, token=self.call_id)
        self.request_tokens = input_tokens + (max_output or 0)
        self.start = time.perf_counter()
        self.attempts = 0
        self._slot: Any = None
        self._held = False
        self._t0 = self.start
        self._url = redact_url(_resolved_url(cfg, path))
        self._path = path

    # ---- admission ------------------------------------------------------------------------------
    def _admit(self) -> None:
        self.attempts += 1
        if self.limiter.active:
            self._slot = self.limiter.acquire(self.request_tokens)
            self._held = True
        self._t0 = time.perf_counter()

    async def _aadmit(self) -> None:
        self.attempts += 1
        if self.limiter.active:
            self._slot = await self.limiter.aacquire(self.request_tokens)
            self._held = True
        self._t0 = time.perf_counter()

    def _failed_attempt(self, exc: BaseException) -> float:
        """Free the slot; return the wait before the next attempt, or raise the final error."""
        failure = classify(exc)
        if self._held:
            self._held = False
            self.limiter.release(self._slot, overload=failure.overload)
        if not failure.retryable or self.attempts > self.cfg.max_retries:
            raise backend_error(exc, self.cfg, self.attempts, url=self._url, path=self._path) from exc
        return self.limiter.retry_policy.delay(self.attempts, failure.retry_after)

    # ---- plain calls ----------------------------------------------------------------------------
    def run(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` with admission and retries (sync)."""
        while True:
            self._admit()
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - classify() decides; non-retryable ones re-raise
                time.sleep(self._failed_attempt(exc))

    async def arun(self, fn: Callable[[], Any]) -> Any:
        """Await ``fn()`` with admission and retries."""
        while True:
            await self._aadmit()
            try:
                return await fn()
            except Exception as exc:  # noqa: BLE001 - classify() decides; non-retryable ones re-raise
                await asyncio.sleep(self._failed_attempt(exc))

    # ---- streams --------------------------------------------------------------------------------
    def run_stream(self, make: Callable[[], Iterator[Any]]) -> Iterator[Any]:
        """Stream with retries until the first substantive chunk; later failures raise BackendError."""
        while True:
            self._admit()
            head: list[Any] = []
            try:
                stream = iter(make())
                for chunk in stream:
                    head.append(chunk)
                    if substantive(chunk):
                        break
            except Exception as exc:  # noqa: BLE001 - classify() decides; non-retryable ones re-raise
                time.sleep(self._failed_attempt(exc))
                continue
            try:
                yield from head
                yield from stream
            except Exception as exc:
                raise self._broken(exc) from exc
            finally:
                getattr(stream, "close", lambda: None)()
            return

    async def arun_stream(self, make: Callable[[], AsyncIterator[Any]]) -> AsyncIterator[Any]:
        """Async :meth:`run_stream`."""
        while True:
            await self._aadmit()
            head: list[Any] = []
            try:
                stream = make().__aiter__()
                async for chunk in stream:
                    head.append(chunk)
                    if substantive(chunk):
                        break
            except Exception as exc:  # noqa: BLE001 - classify() decides; non-retryable ones re-raise
                await asyncio.sleep(self._failed_attempt(exc))
                continue
            try:
                for chunk in head:
                    yield chunk
                async for chunk in stream:
                    yield chunk
            except Exception as exc:
                raise self._broken(exc) from exc
            finally:
                closer = getattr(stream, "aclose", None)
                if closer is not None:
                    await closer()
            return

    def _broken(self, exc: BaseException) -> BaseException:
        if not classify(exc).retryable:
            return exc
        error = BackendError(
            f"the stream from {self._url} broke after output reached the caller ({type(exc).__name__}: "
            f"{exc}); partial output is not replayed, call again", model=self.cfg.display_name)
        error.attempts = self.attempts
        return error

    # ---- end ------------------------------------------------------------------------------------
    def finish(self, output_tokens: int = 0, total_tokens: int | None = None) -> None:
        """After the record was emitted: free the slot (feeding latency/usage back) and the budget."""
        if self._held:
            self._held = False
            unused = self.request_tokens - total_tokens if total_tokens is not None else 0
            self.limiter.release(self._slot, latency=time.perf_counter() - self._t0, output_tokens=output_tokens,
                                 unused_tokens=unused)
        self._release_budget(None if total_tokens is None else total_tokens - output_tokens)

    def abort(self) -> None:
        """After a failure (or an abandoned stream): free whatever is still held."""
        if self._held:
            self._held = False
            self.limiter.release(self._slot)
        self._release_budget()

    def _release_budget(self, real_input: int | None = None) -> None:
        if self.reservation is not None:
            if real_input is not None:
                note_real_input(self.cfg, self.reservation.input_tokens, real_input)
            self.reservation.release()
            self.reservation = None
