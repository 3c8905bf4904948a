"""``ManagedEmbeddingsMixin``: batching, concurrency, limits, retries, budget and usage of embeddings.

Each batch is one managed call (see ``module_ai.controls.call``).
"""

from __future__ import annotations

import functools
import time
from typing import Any

from module_ai.backends._managed import _ModuleAIFields
from module_ai.controls.budget_bounds import input_bound
from module_ai.controls.call import ManagedCall
from module_ai.controls.cost import call_cost
from module_ai.controls.events import CallRecord, emit
from module_ai.controls.tokens import estimate_tokens
from module_ai.controls.usage import budget_active

__all__ = ["ManagedEmbeddingsMixin"]


class ManagedEmbeddingsMixin(_ModuleAIFields):
    """Batches by ``max_batch`` (``chunk_size``), runs batches ``max_concurrency`` at a time, counts usage.

    The concrete class provides ``_embed_batch(texts) -> (vectors, tokens or None)`` and the async
    ``_aembed_batch``. Each batch goes through the limiter, budget and retries like a chat call.
    Models that embed queries differently (e5's ``query:`` prefix) also provide ``_embed_query_batch``
    and ``_aembed_query_batch``; ``embed_query`` uses them.
    """

    def embed_documents(self, texts: list[str], chunk_size: int | None = None, **_: Any) -> list[list[float]]:
        """Embed ``texts``; if some batches fail, the others are still returned inside the error.

        Raises:
            BackendError: a batch failed after retries; ``exc.partial_vectors`` holds one entry per input
                (``None`` where its batch failed) and ``exc.failed_inputs`` the failed input indices.
        """
        from langchain_core.runnables.config import ContextThreadPoolExecutor

        batches = self._batches(texts, chunk_size)
        workers = self._concurrency()
        if workers == 1 or len(batches) <= 1:
            results = [_outcome(self._timed_batch, b) for b in batches]
        else:
            with ContextThreadPoolExecutor(max_workers=min(workers, len(batches))) as pool:
                results = list(pool.map(lambda b: _outcome(self._timed_batch, b), batches))
        return self._combine(batches, results)

    async def aembed_documents(self, texts: list[str], chunk_size: int | None = None, *, _query: bool = False,
                               **_: Any) -> list[list[float]]:
        """Async :meth:`embed_documents` (same partial-result error; every batch's usage is counted)."""
        import asyncio

        semaphore = asyncio.Semaphore(self._concurrency())
        embed = getattr(self, "_aembed_query_batch", self._aembed_batch) if _query else self._aembed_batch

        async def one(batch: list[str]) -> list[list[float]]:
            async with semaphore:
                call = self._batch_call(batch)
                if call is None:
                    return (await embed(batch))[0]
                try:
                    vectors, tokens = await call.arun(functools.partial(embed, batch))
                except BaseException as exc:
                    self._emit_batch(batch, None, call, exc)
                    call.abort()
                    raise
                self._emit_batch(batch, tokens, call)
                return vectors

        batches = self._batches(texts, chunk_size)
        results = await asyncio.gather(*(one(b) for b in batches), return_exceptions=True)  # all finish
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r  # CancelledError, KeyboardInterrupt: not a batch failure
        return self._combine(batches, results)

    def _combine(self, batches: list[list[str]], results: list[Any]) -> list[list[float]]:
        """Flatten batch results; if any batch failed, raise its error carrying the good vectors."""
        failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
        if not failed:
            return [vector for batch in results for vector in batch]
        from module_ai.errors import BackendError

        partial: list[Any] = []
        bad: list[int] = []
        for batch, result in zip(batches, results):
            if isinstance(result, BaseException):
                bad.extend(range(len(partial), len(partial) + len(batch)))
                partial.extend([None] * len(batch))
            else:
                partial.extend(result)
        first = results[failed[0]]
        if len(batches) == 1:  # nothing to keep: the batch's own error, unchanged
            raise first
        cfg = self.module_ai_config
        reason = first.message if isinstance(first, BackendError) else f"{type(first).__name__}: {first}"
        error = BackendError(f"{len(failed)} of {len(batches)} embedding batches failed (inputs {_spans(bad)}); "
                             f"the {len(partial) - len(bad)} other vectors are in exc.partial_vectors. "
                             f"First failure: {reason}", model=cfg.display_name if cfg else None)
        error.partial_vectors, error.failed_inputs = partial, bad
        raise error from first

    def embed_query(self, text: str, **_: Any) -> list[float]:
        return self._timed_batch([text], query=True)[0]

    async def aembed_query(self, text: str, **_: Any) -> list[float]:
        return (await self.aembed_documents([text], _query=True))[0]

    def _batches(self, texts: list[str], chunk_size: int | None) -> list[list[str]]:
        size = chunk_size or getattr(self, "chunk_size", None) or 64
        return [list(texts[i:i + size]) for i in range(0, len(texts), size)]

    def _concurrency(self) -> int:
        cfg = self.module_ai_config
        return (cfg.max_concurrency if cfg and cfg.max_concurrency else 4)

    def _batch_call(self, batch: list[str]) -> ManagedCall | None:
        cfg = self.module_ai_config
        bound = input_bound(cfg, batch, messages=False) if cfg is not None and budget_active() else None
        return self._open_call(sum(estimate_tokens(t) for t in batch), 0, check_window=False, budget_input=bound)

    def _timed_batch(self, batch: list[str], query: bool = False) -> list[list[float]]:
        embed = getattr(self, "_embed_query_batch", self._embed_batch) if query else self._embed_batch
        call = self._batch_call(batch)
        if call is None:
            return embed(batch)[0]
        try:
            vectors, tokens = call.run(functools.partial(embed, batch))
        except BaseException as exc:
            self._emit_batch(batch, None, call, exc)
            call.abort()
            raise
        self._emit_batch(batch, tokens, call)
        return vectors

    def _emit_batch(self, batch: list[str], tokens: int | None, call: ManagedCall,
                    exc: BaseException | None = None) -> None:
        cfg = self.module_ai_config
        estimated = tokens is None and exc is None
        count = 0 if exc else (sum(estimate_tokens(t) for t in batch) if estimated else int(tokens))
        try:
            emit(CallRecord(model=cfg.display_name, kind="embedding", input_tokens=count, estimated=estimated,
                            cost=call_cost(cfg, count, 0), currency=cfg.currency,
                            latency_s=time.perf_counter() - call.start, timestamp=time.time(),
                            attempts=call.attempts, error=f"{type(exc).__name__}: {exc}" if exc else None,
                            extra={"texts": len(batch), "call_id": call.call_id}))
        finally:
            if exc is None:
                call.finish(0, count)


def _outcome(fn: Any, batch: list[str]) -> Any:
    """``fn(batch)``, or the exception it raised (so one failed batch does not hide the others)."""
    try:
        return fn(batch)
    except Exception as exc:  # noqa: BLE001 - returned, then raised with the other batches' results
        return exc


def _spans(indices: list[int]) -> str:
    """``[0, 1, 2, 7]`` -> ``"0-2, 7"``."""
    spans: list[list[int]] = []
    for i in indices:
        if spans and spans[-1][1] == i - 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)
