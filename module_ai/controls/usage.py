"""Token usage, cost and budgets: ``track_usage()`` and the :class:`UsageTracker` callback.

Every managed call (chat invoke/stream/batch/async, embeddings, rerank) emits a
:class:`~module_ai.controls.events.CallRecord`. A tracker opened with ``with track_usage() as usage:``
receives the records of calls made inside the block: in the same context (asyncio tasks and
LangChain's batch threads inherit it) and, for threads that do not copy the context (a plain
``threading.Thread``), every record emitted while the tracker is open. Nested trackers all count.

Cost is in the model's ``currency``: ``(input * pay_in + output * pay_out) / price_unit``. Where a
server returns no usage the counts are estimated from text (``module_ai.controls.tokens``) and counted in
``estimated_calls``.

Budget: ``track_usage(max_cost=0.5)`` raises :class:`~module_ai.errors.BudgetExceededError` *before*
a call whose worst case would cross ``max_cost``, counting calls already in flight, and settles with
the real cost after (:mod:`module_ai.controls.budget`). The worst case bounds the input by bytes for
text whose estimate is unreliable (hex, code, base64, digits, CJK) and the output by ``out_tokens``,
else :data:`UNKNOWN_OUTPUT_TOKENS`, which is then sent as ``max_tokens``
(:mod:`module_ai.controls.budget_bounds`). Currencies are never mixed against one ``max_cost``.
``track_usage(max_cost=5, budget="team-a")`` shares the budget across processes through Redis.

Log: ``track_usage(log_path="usage.jsonl")`` or the environment variable ``MODULE_AI_USAGE_LOG``
appends one JSON line per call; ``module-ai cost`` reports from it.

Example:
    >>> from module_ai import track_usage                    # doctest: +SKIP
    >>> with track_usage(max_cost=1.0) as usage:           # doctest: +SKIP
    ...     llm.invoke("你好")
    >>> print(usage.report())                                # doctest: +SKIP
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections import OrderedDict
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from typing_extensions import Self

from module_ai.controls import budget as _budget
from module_ai.controls.budget_bounds import UNKNOWN_OUTPUT_TOKENS
from module_ai.controls.cost import UsageStats
from module_ai.controls.events import CallRecord, add_listener
from module_ai.controls.usage_log import UsageLog, read_usage_log
from module_ai.errors import ConfigError

__all__ = [
    "UNKNOWN_OUTPUT_TOKENS", "UsageTracker", "budget_active", "read_usage_log", "reserve_budget", "track_usage",
]



_active: contextvars.ContextVar[tuple[UsageTracker, ...]] = contextvars.ContextVar("module_ai_trackers",
                                                                                   default=())
_open: list[UsageTracker] = []
_open_lock = threading.Lock()
_dispatching = False


def _targets() -> tuple[UsageTracker, ...]:
    """Trackers that see a call made here: this context's, else every open one."""
    return _active.get() or tuple(_open)


def reserve_budget(cfg: Any, input_tokens: int, max_output: int | None, *,
                   token: str = "") -> _budget.Reservation | None:
    """Reserve a call's worst case with every tracker open here that has ``max_cost``
    (see :func:`module_ai.controls.budget.reserve_budget`)."""
    return _budget.reserve_budget(_targets(), cfg, input_tokens, max_output, token=token)


def budget_active() -> bool:
    """True when a call made here would be checked against some ``max_cost``."""
    return any(t.max_cost is not None for t in _targets())


def _dispatch(record: CallRecord) -> None:
    for tracker in _targets():
        tracker.add(record)


class UsageTracker(BaseCallbackHandler):
    """Collects usage per model and in total; a context manager and a LangChain callback.

    Attributes:
        by_model: ``{model name: UsageStats}``.
        max_cost: the budget, or ``None``.
        records: every :class:`CallRecord` seen (kept when ``keep_records=True``).

    As a callback (``config={"callbacks": [tracker]}``) it also counts chat models that module_ai did
    not build, from their ``usage_metadata``; calls it already saw as records are not counted twice.
    """

    def __init__(self, max_cost: float | None = None, log_path: str | os.PathLike | None = None,
                 *, keep_records: bool = False, budget: str | None = None, currency: str | None = None) -> None:
        self.max_cost = max_cost
        self.budget = budget
        self.currency = currency
        self._currency: str | None = None
        self._spent: dict[str, float] = {}
        self._settled: set[str] = set()
        self._shared = _shared_budget(budget) if budget else None
        self.by_model: dict[str, UsageStats] = {}
        self.total = UsageStats()
        self.records: list[CallRecord] = []
        self.keep_records = keep_records
        self.reserved = 0.0
        self._lock = threading.RLock()
        self._log = UsageLog(log_path) if log_path else None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._starts: dict[Any, float] = {}
        self._tokens: list[contextvars.Token] = []

    # ---- totals ---------------------------------------------------------------------------------
    calls = property(lambda self: self.total.calls, doc="Calls counted (failed ones included).")
    input_tokens = property(lambda self: self.total.input_tokens)
    output_tokens = property(lambda self: self.total.output_tokens)
    reasoning_tokens = property(lambda self: self.total.reasoning_tokens)
    total_cost = property(lambda self: self.total.total_cost)
    errors = property(lambda self: self.total.errors)
    estimated_calls = property(lambda self: self.total.estimated_calls)

    def add(self, record: CallRecord) -> None:
        """Count one record (called by the usage bus)."""
        with self._lock:
            self.by_model.setdefault(record.model, UsageStats()).add(record)
            self.total.add(record)
            self._spent[record.currency] = self._spent.get(record.currency, 0.0) + record.cost
            call_id = record.extra.get("call_id")
            if call_id:
                self._seen[call_id] = None
                if len(self._seen) > 10_000:
                    self._seen.popitem(last=False)
            if self.keep_records:
                self.records.append(record)
        if self._shared is not None:
            _budget.settle_shared(self, record)
        if self._log:
            self._log(record)

    # ---- context manager ------------------------------------------------------------------------
    def __enter__(self) -> Self:
        _ensure_dispatch()
        self._tokens.append(_active.set(_active.get() + (self,)))
        with _open_lock:
            _open.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with _open_lock:
            if self in _open:
                _open.remove(self)
        if self._tokens:
            token = self._tokens.pop()
            try:
                _active.reset(token)
            except ValueError:  # exited in another context (e.g. a generator): restore by value
                _active.set(tuple(t for t in _active.get() if t is not self))

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    # ---- budget ---------------------------------------------------------------------------------
    @property
    def remaining(self) -> float | None:
        """Budget left (``max_cost`` minus this process's spend in the budget's currency), ``None``
        without a budget. For a shared budget see :meth:`shared_status`."""
        if self.max_cost is None:
            return None
        return self.max_cost - self._spent.get(self.currency or self._currency or "", 0.0)

    def shared_status(self) -> dict[str, Any] | None:
        """A shared budget's state across processes (``spent``, ``calls``, ``currency``,
        ``reserved``, ``in_flight``), or ``None`` for an in-process tracker."""
        return self._shared.status() if self._shared is not None else None

    # ---- LangChain callback ---------------------------------------------------------------------
    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: Any, **kwargs: Any) -> None:
        self._starts[run_id] = time.perf_counter()

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: Any, **kwargs: Any) -> None:
        self._starts[run_id] = time.perf_counter()

    def on_llm_end(self, response: Any, *, run_id: Any, **kwargs: Any) -> None:
        start = self._starts.pop(run_id, None)
        latency = time.perf_counter() - start if start else 0.0
        for generation in (g for gens in response.generations for g in gens):
            message = getattr(generation, "message", None)
            if message is not None:
                self._count_message(message, latency)

    def on_llm_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
        self._starts.pop(run_id, None)

    def _count_message(self, message: Any, latency: float) -> None:
        meta = message.response_metadata or {}
        call_id = meta.get("module_ai_call_id")
        with self._lock:
            if call_id and call_id in self._seen:
                del self._seen[call_id]
                return
        usage = message.usage_metadata or {}
        details = usage.get("output_token_details") or {}
        self.add(CallRecord(
            model=meta.get("module_ai_model") or meta.get("model_name") or meta.get("model") or "unknown",
            kind="chat", input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0), reasoning_tokens=int(details.get("reasoning") or 0),
            estimated=bool(meta.get("usage_estimated")), cost=float(meta.get("cost") or 0.0),
            currency=meta.get("currency", ""), latency_s=latency, timestamp=time.time()))

    # ---- output ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Totals, per-model stats and the budget as plain data."""
        return {"total": self.total.to_dict(), "by_model": {k: v.to_dict() for k, v in self.by_model.items()},
                "max_cost": self.max_cost, "remaining": self.remaining}

    def report(self) -> str:
        """A plain-text table: per model and total, then spend vs budget."""
        from module_ai.controls.cost import format_report

        return format_report(self.by_model, self.total, self.max_cost)

    def __repr__(self) -> str:
        return (f"UsageTracker(calls={self.calls}, input_tokens={self.input_tokens}, "
                f"output_tokens={self.output_tokens}, total_cost={self.total_cost:.6g})")


def track_usage(max_cost: float | None = None, log_path: str | os.PathLike | None = None, *,
                budget: str | None = None, currency: str | None = None) -> UsageTracker:
    """Count every model call inside a ``with`` block (threads and asyncio tasks included).

    Args:
        max_cost: budget; a call whose worst case would cross it raises
            :class:`~module_ai.errors.BudgetExceededError` before it is sent.
        log_path: append one JSON line per call to this file (read it with ``module-ai cost``).
        budget: a name: the budget (spend, reservations) is shared by every process using the same
            Redis (``MODULE_AI_REDIS_URL``); ``module-ai cost --redis`` reports it.
        currency: the budget's currency; only models priced in it count against ``max_cost``.
            Without it the first model fixes the currency and another currency is refused.

    Example:
        >>> with track_usage() as usage:
        ...     pass
        >>> usage.calls, usage.total_cost
        (0, 0.0)
    """
    return UsageTracker(max_cost=max_cost, log_path=log_path, budget=budget, currency=currency)


def _shared_budget(name: str):
    from module_ai.controls.redis_budget import SharedBudget
    from module_ai.controls.shared_state import REDIS_URL_ENV, shared_state

    state = shared_state()
    if state is None:
        raise ConfigError(f"budget={name!r} is shared through Redis, but {REDIS_URL_ENV} is not set; set it "
                          "(e.g. redis://localhost:6379/0) or drop budget= for an in-process budget",
                          field="budget")
    return SharedBudget(state, name)


def _ensure_dispatch() -> None:
    global _dispatching
    with _open_lock:
        if not _dispatching:
            add_listener(_dispatch)
            _dispatching = True
