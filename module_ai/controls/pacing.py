"""Pacing primitives behind :mod:`module_ai.controls.limits`: a thread+asyncio FIFO semaphore, a token bucket
that hands out reservations, and an AIMD concurrency limit. Stdlib only.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

__all__ = ["DEFAULT_ADAPTIVE_CEILING", "LATENCY_RISE"]

DEFAULT_ADAPTIVE_CEILING = 32
"""Upper bound of adaptive concurrency when ``max_concurrency`` is not set."""
LATENCY_RISE = 2.0
"""Adaptive: short-term latency per output token above this multiple of the long-term one is congestion."""
_WARMUP = 20
"""Adaptive: calls seen before latency may count as congestion."""


class _Slots:
    """A FIFO counting semaphore usable from threads and from any asyncio loop at once."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self.limit = max(1, int(limit))
        self.in_flight = 0
        self._waiters: deque = deque()

    def acquire(self) -> None:
        with self._lock:
            if self.in_flight < self.limit and not self._waiters:
                self.in_flight += 1
                return
            event = threading.Event()
            self._waiters.append((None, event))
        event.wait()  # the releaser hands its slot over before setting the event

    async def aacquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.in_flight < self.limit and not self._waiters:
                self.in_flight += 1
                return
            future = loop.create_future()
            entry = (loop, future)
            self._waiters.append(entry)
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                queued = entry in self._waiters
                if queued:
                    self._waiters.remove(entry)
            if not queued and future.done() and not future.cancelled():
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self._wake()

    def set_limit(self, limit: int) -> None:
        with self._lock:
            self.limit = max(1, int(limit))
            self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            loop, waiter = self._waiters.popleft()
            self.in_flight += 1
            if loop is None:
                waiter.set()
            else:
                loop.call_soon_threadsafe(self._grant, waiter)

    def _grant(self, future: asyncio.Future) -> None:
        if future.cancelled():
            self.release()  # the waiter gave up after the slot was handed over
        else:
            future.set_result(None)


class _Bucket:
    """Continuous token bucket that hands out reservations (the caller sleeps the returned delay)."""

    def __init__(self, per_minute: float, burst_seconds: float) -> None:
        self._lock = threading.Lock()
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def reserve(self, amount: float) -> float:
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            need = min(amount, self.capacity)
            delay = max(0.0, (need - self.tokens) / self.rate)
            self.tokens -= amount
            return delay

    def refund(self, amount: float) -> None:
        """Give back unused reserved tokens (a negative amount charges a request that used more)."""
        with self._lock:
            self.tokens = min(self.capacity, self.tokens + amount)


class _Aimd:
    """Additive-increase / multiplicative-decrease concurrency limit.

    Congestion signals: an overload (429/503), or the short-term average of latency per output token
    rising above :data:`LATENCY_RISE` times its long-term average (after :data:`_WARMUP` calls).
    """

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self._short: float | None = None
        self._long: float | None = None
        self._count = 0
        self._latency = 0.05
        self._last_cut = 0.0

    def success(self, latency: float, output_tokens: int) -> None:
        if self.congested(latency, output_tokens):
            self._cut(0.9)
        else:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)

    def congested(self, latency: float, output_tokens: int) -> bool:
        """Feed one success's latency; True when latency per output token signals congestion."""
        signal = latency / (1 + max(0, output_tokens))
        self._count += 1
        self._short = signal if self._short is None else 0.7 * self._short + 0.3 * signal
        self._long = signal if self._long is None else 0.98 * self._long + 0.02 * signal
        self._latency = 0.8 * self._latency + 0.2 * latency
        return self._count >= _WARMUP and self._short > LATENCY_RISE * self._long

    @property
    def min_cut_interval(self) -> float:
        """Seconds between two decreases (about one round trip)."""
        return max(0.05, self._latency)

    def overload(self) -> None:
        self._cut(0.5)

    def _cut(self, factor: float) -> None:
        now = time.monotonic()
        if now - self._last_cut >= self.min_cut_interval:
            self.limit = max(1.0, self.limit * factor)
            self._last_cut = now
