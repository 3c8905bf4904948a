"""Per-model limits shared by the whole process: concurrency cap, rpm/tpm pacing, adaptive concurrency,
and the context-window check.

One :class:`ModelLimiter` exists per model endpoint (key: display name + URL), shared by every object
built from that config, sync and async, in every thread. The managed layer takes one admission per
HTTP attempt (retries included):

1. a concurrency slot (``max_concurrency``; threads block, asyncio tasks await, FIFO);
2. one request from the ``rpm`` bucket and ``input + out_tokens`` from the ``tpm`` bucket. Buckets
   refill continuously and hold ``burst_seconds`` (default 1 s) worth, so requests are paced
   smoothly; a request larger than the bucket waits for a full bucket and leaves a debt, so large
   requests wait longer. Once the real usage is known the difference is settled (unused tokens go
   back, extra tokens are charged).

With ``MODULE_AI_REDIS_URL`` set, the same slots, buckets and adaptive limit live in Redis and are
shared by every process (:mod:`module_ai.controls.redis_limits`); this module keeps the settings and
is the fallback when Redis is unreachable and ``MODULE_AI_REDIS_FAIL=open``.

Adaptive concurrency (AIMD, off by default; config ``adaptive_concurrency: true`` or
``limiter_for(cfg).configure(adaptive=True)``): start at the ceiling (``max_concurrency``, else
:data:`DEFAULT_ADAPTIVE_CEILING`), halve on 429/503, multiply by 0.9 when latency per output token
(short-term average) climbs above twice its long-term average, and add ``1/limit`` per success
(about +1 per round trip). At most one decrease per typical round trip.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from typing import Any

from module_ai.controls.pacing import DEFAULT_ADAPTIVE_CEILING, _Aimd, _Bucket, _Slots
from module_ai.controls.retry import DEFAULT_POLICY, RetryPolicy
from module_ai.errors import ContextWindowError

__all__ = [
    "DEFAULT_ADAPTIVE_CEILING", "DEFAULT_BATCH_CONCURRENCY", "ModelLimiter", "batch_concurrency",
    "check_context", "limiter_for", "reset_limiters", "trim_to_window", "window_tokens",
]

DEFAULT_BATCH_CONCURRENCY = 8
"""``batch``/``abatch`` concurrency when a model sets no ``max_concurrency`` (Python's default is 6)."""


class ModelLimiter:
    """Concurrency, rate and retry settings of one model endpoint (see the module docstring)."""

    def __init__(self, key: tuple[str, str], cfg: Any = None) -> None:
        self.key = key
        self._lock = threading.Lock()
        self.retry_policy: RetryPolicy = DEFAULT_POLICY
        self.burst_seconds = 1.0
        self._settings: dict[str, Any] = {}
        self.shared: Any = _shared_for(self, cfg)
        self._rebuild()
        self.apply(cfg)

    def apply(self, cfg: Any) -> None:
        """Take ``max_concurrency``, ``rpm``, ``tpm`` and ``adaptive_concurrency`` from a config."""
        if cfg is None:
            return
        adaptive = cfg.adaptive_concurrency
        self.configure(max_concurrency=cfg.max_concurrency, rpm=cfg.rpm, tpm=cfg.tpm, adaptive=adaptive)

    def configure(self, **settings: Any) -> ModelLimiter:
        """Change limits at run time: ``max_concurrency``, ``rpm``, ``tpm``, ``adaptive`` (bool),
        ``burst_seconds`` and backoff fields of :class:`~module_ai.controls.retry.RetryPolicy` (``initial``,
        ``multiplier``, ``max_delay``, ``jitter``, ``max_retry_after``). Returns ``self``."""
        policy = {k: settings.pop(k) for k in list(settings) if k in RetryPolicy.__dataclass_fields__}
        if policy:
            self.retry_policy = replace(self.retry_policy, **policy)
        burst = settings.pop("burst_seconds", self.burst_seconds)
        unknown = set(settings) - {"max_concurrency", "rpm", "tpm", "adaptive"}
        if unknown:
            raise TypeError(f"unknown limiter settings: {sorted(unknown)}")
        with self._lock:
            merged = {**self._settings, **settings}
            if merged != self._settings or burst != self.burst_seconds:
                self._settings, self.burst_seconds = merged, burst
                self._rebuild()
        return self

    def _rebuild(self) -> None:
        s = self._settings
        cap, adaptive = s.get("max_concurrency"), bool(s.get("adaptive"))
        self.aimd = _Aimd(cap or DEFAULT_ADAPTIVE_CEILING) if adaptive else None
        limit = self.aimd.ceiling if self.aimd else cap
        old = getattr(self, "slots", None)
        if limit and old is not None:
            old.set_limit(limit)  # keep waiters and in-flight counts
            self.slots: _Slots | None = old
        else:
            self.slots = _Slots(limit) if limit else None
        self.rpm = _Bucket(s["rpm"], self.burst_seconds) if s.get("rpm") else None
        self.tpm = _Bucket(s["tpm"], self.burst_seconds) if s.get("tpm") else None
        self.active = bool(self.slots or self.rpm or self.tpm)

    @property
    def limit(self) -> int | None:
        """The current concurrency limit (moves when adaptive), ``None`` when uncapped."""
        if self.shared is not None:
            return self.shared.shared_limit()
        return self.slots.limit if self.slots else None

    def _rate_delay(self, tokens: int) -> float:
        delay = self.rpm.reserve(1) if self.rpm else 0.0
        if self.tpm:
            delay = max(delay, self.tpm.reserve(tokens))
        return delay

    def acquire(self, tokens: int) -> Any:
        """Block until one request of about ``tokens`` tokens may go; returns the slot to release."""
        if self.shared is not None:
            return self.shared.acquire(tokens)
        return self._local_acquire(tokens)

    def _local_acquire(self, tokens: int) -> _Slots | None:
        slots = self.slots
        if slots:
            slots.acquire()
        delay = self._rate_delay(tokens)
        if delay > 0:
            try:
                time.sleep(delay)
            except BaseException:
                if slots:
                    slots.release()
                raise
        return slots

    async def aacquire(self, tokens: int) -> Any:
        """Async :meth:`acquire` (never blocks the event loop)."""
        if self.shared is not None:
            return await self.shared.aacquire(tokens)
        return await self._local_aacquire(tokens)

    async def _local_aacquire(self, tokens: int) -> _Slots | None:
        slots = self.slots
        if slots:
            await slots.aacquire()
        delay = self._rate_delay(tokens)
        if delay > 0:
            try:
                await asyncio.sleep(delay)
            except BaseException:
                if slots:
                    slots.release()
                raise
        return slots

    def release(self, slots: Any, *, latency: float | None = None, output_tokens: int = 0,
                overload: bool = False, unused_tokens: int = 0) -> None:
        """Give the slot back and feed the outcome to adaptive concurrency and the tpm bucket."""
        if self.shared is not None and isinstance(slots, _shared_lease()):
            self.shared.release(slots, latency=latency, output_tokens=output_tokens, overload=overload,
                                unused_tokens=unused_tokens)
            return
        if self.tpm and unused_tokens:
            self.tpm.refund(unused_tokens)
        aimd = self.aimd
        if aimd is not None and slots is self.slots:
            with self._lock:
                if overload:
                    aimd.overload()
                elif latency is not None:
                    aimd.success(latency, output_tokens)
                target = int(aimd.limit)
            if target != slots.limit:
                slots.set_limit(target)
        if slots:
            slots.release()


def _shared_for(limiter: ModelLimiter, cfg: Any) -> Any:
    """The Redis side of a limiter when ``MODULE_AI_REDIS_URL`` is set (no redis import otherwise)."""
    from module_ai.controls.shared_state import model_key, shared_state

    state = shared_state() if cfg is not None else None
    if state is None:
        return None
    from module_ai.controls.redis_limits import SharedLimiter

    return SharedLimiter(state, model_key(cfg), limiter)


def _shared_lease() -> type:
    from module_ai.controls.redis_limits import SharedLease

    return SharedLease


_limiters: dict[tuple[str, str], ModelLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(cfg_or_model: Any, *, update: bool = False) -> ModelLimiter:
    """The process-wide limiter of a model (a ``ModelConfig`` or a built object).

    ``update=True`` re-applies the config's limits (done when a model object is built, so the most
    recently built config of an endpoint sets its limits).

    Example:
        >>> from module_ai.config import ModelConfig
        >>> cfg = ModelConfig(model_type="chat", server_type="ollama", model="m", max_concurrency=4)
        >>> limiter_for(cfg).limit
        4
    """
    cfg = getattr(cfg_or_model, "module_ai_config", None) or cfg_or_model
    key = (cfg.display_name, str(cfg.url or cfg.model))
    with _registry_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = ModelLimiter(key, cfg)
            return limiter
    if update:
        limiter.apply(cfg)
    return limiter


def reset_limiters() -> None:
    """Forget every limiter, so the next ones are built afresh (e.g. after
    :func:`~module_ai.controls.shared_state.configure_shared`); objects built earlier keep theirs."""
    with _registry_lock:
        _limiters.clear()


def batch_concurrency(cfg: Any) -> int:
    """How many items ``batch``/``abatch`` run at once for this model."""
    if cfg is not None and cfg.max_concurrency:
        return cfg.max_concurrency
    if cfg is not None and getattr(cfg, "adaptive_concurrency", False):
        return DEFAULT_ADAPTIVE_CEILING
    return DEFAULT_BATCH_CONCURRENCY


def window_tokens(cfg: Any) -> int | None:
    """Tokens the prompt may use: ``input_tokens - out_tokens`` (``None`` when ``input_tokens`` is unset)."""
    if cfg is None or not cfg.input_tokens:
        return None
    return max(0, cfg.input_tokens - (cfg.out_tokens or 0))


def check_context(cfg: Any, input_tokens: int, *, path: str | None = None) -> None:
    """Raise :class:`ContextWindowError` when ``input_tokens`` (estimated) does not fit the window."""
    window = window_tokens(cfg)
    if window is None or input_tokens <= window:
        return
    raise ContextWindowError(
        f"the input is about {input_tokens} tokens but only {window} fit (input_tokens "
        f"{cfg.input_tokens} - out_tokens {cfg.out_tokens or 0}); {input_tokens - window} tokens over. "
        "Shorten the input, trim the history (chat_chain does it), lower out_tokens or use a model "
        "with a larger window (counts are estimates, see module_ai.controls.tokens)",
        model=cfg.display_name, path=path, field="input_tokens",
    )


def trim_to_window(messages: list, cfg: Any = None, *, max_tokens: int | None = None) -> list:
    """Drop the oldest turns so ``messages`` fit the window; system messages and the last turn stay.

    Args:
        messages: LangChain messages, oldest first.
        cfg: the model's config (window = ``input_tokens - out_tokens``), or give ``max_tokens``.

    Raises:
        ContextWindowError: even the system messages plus the last human turn do not fit.
    """
    from langchain_core.messages import trim_messages

    from module_ai.controls.tokens import estimate_message_tokens

    limit = max_tokens if max_tokens is not None else window_tokens(cfg)
    if limit is None or estimate_message_tokens(messages) <= limit:
        return list(messages)
    kept = trim_messages(messages, max_tokens=limit, token_counter=estimate_message_tokens,
                         strategy="last", include_system=True, start_on="human", allow_partial=False)
    if not any(m.type == "human" for m in kept):
        needed = estimate_message_tokens([m for m in messages if m.type == "system"] + messages[-1:])
        if cfg is not None:
            check_context(cfg, needed)
        raise ContextWindowError(f"the system prompt and the last message need about {needed} tokens but "
                                 f"only {limit} fit; {needed - limit} tokens over", field="input_tokens")
    return kept
