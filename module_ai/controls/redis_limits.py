"""A model's concurrency cap, rpm/tpm buckets and adaptive concurrency, shared through Redis.

Same semantics as the in-process :class:`~module_ai.controls.limits.ModelLimiter` (see its module), kept in
Redis under :func:`~module_ai.controls.shared_state.model_key` and changed only by Lua scripts, so
each admission is one atomic round trip:

- slots: a sorted set of lease tokens scored by expiry (Redis ``TIME``); expired leases are dropped
  before counting, so a killed process's slots come back within the lease; a waiter polls with a
  short jittered backoff (2-50 ms; no FIFO across processes);
- rpm/tpm: the same continuous token buckets (``burst_seconds`` of capacity), state in a hash;
- adaptive: the AIMD limit lives in a hash; each process feeds it its successes, overloads and
  latency signal, and every process caps by the shared value.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

from module_ai.controls.pacing import _Aimd

__all__ = ["SharedLease", "SharedLimiter"]

_NOW = ("if redis.replicate_commands then redis.replicate_commands() end\n"  # Redis 5/6: TIME before writes
        "local t = redis.call('TIME')\nlocal now = t[1] * 1000 + t[2] / 1000\n")
_BUCKET = """
local function bucket(key, per_minute, burst_s, amount, now)
  local rate = per_minute / 60000
  local cap = math.max(1, per_minute / 60 * burst_s)
  local state = redis.call('HMGET', key, 'tokens', 'stamp')
  local tokens, stamp = tonumber(state[1]) or cap, tonumber(state[2]) or now
  tokens = math.min(cap, tokens + math.max(0, now - stamp) * rate)
  local delay = math.max(0, (math.min(amount, cap) - tokens) / rate)
  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens - amount), 'stamp', string.format('%.17g', now))
  redis.call('PEXPIRE', key, 3600000)
  return delay
end
"""
# KEYS: slots, aimd, rpm, tpm. ARGV: token, lease_ms, cap, adaptive, rpm, tpm, burst_s, tokens
_ACQUIRE = _NOW + _BUCKET + """
local cap = tonumber(ARGV[3])
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local limit = cap
  if ARGV[4] == '1' then
    limit = math.max(1, math.floor(tonumber(redis.call('HGET', KEYS[2], 'limit') or cap)))
  end
  if redis.call('ZCARD', KEYS[1]) >= limit then return {0, '0'} end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], math.floor(tonumber(ARGV[2]) * 4))
end
local delay = 0
if tonumber(ARGV[5]) > 0 then delay = bucket(KEYS[3], tonumber(ARGV[5]), tonumber(ARGV[7]), 1, now) end
if tonumber(ARGV[6]) > 0 then
  delay = math.max(delay, bucket(KEYS[4], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), now))
end
return {1, string.format('%.17g', delay)}
"""
# KEYS: slots, tpm, aimd. ARGV: token, refund, tpm, burst_s, op ('' | inc | cut), factor, ceiling, interval_ms
_RELEASE = _NOW + _BUCKET + """
redis.call('ZREM', KEYS[1], ARGV[1])
local refund = tonumber(ARGV[2])
if refund ~= 0 and tonumber(ARGV[3]) > 0 then bucket(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), -refund, now) end
local ceiling = tonumber(ARGV[7])
local limit = tonumber(redis.call('HGET', KEYS[3], 'limit') or ceiling)
if ARGV[5] == 'inc' then
  limit = math.min(ceiling, limit + 1 / limit)
elseif ARGV[5] == 'cut' then
  local last = tonumber(redis.call('HGET', KEYS[3], 'last_cut') or 0)
  if now - last >= tonumber(ARGV[8]) then
    limit = math.max(1, limit * tonumber(ARGV[6]))
    redis.call('HSET', KEYS[3], 'last_cut', string.format('%.17g', now))
  end
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[3], 'limit', string.format('%.17g', limit))
  redis.call('PEXPIRE', KEYS[3], 3600000)
end
return string.format('%.17g', limit)
"""
_LOCAL = object()


class SharedLease:
    """A held admission: the slot's lease token (released through Redis)."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token


class SharedLimiter:
    """The Redis side of one :class:`~module_ai.controls.limits.ModelLimiter` (which owns the settings)."""

    def __init__(self, state: Any, key: str, limiter: Any) -> None:
        self.state, self.key, self.limiter = state, key, limiter
        self.keys = {k: f"{key}:{k}" for k in ("slots", "aimd", "rpm", "tpm")}
        self._aimd: _Aimd | None = None

    # ---- settings from the owning limiter --------------------------------------------------------
    def _params(self) -> tuple[int, bool, int, int, float]:
        s = self.limiter._settings
        adaptive = bool(s.get("adaptive"))
        cap = s.get("max_concurrency") or 0
        if adaptive:
            cap = self.limiter.aimd.ceiling
            if self._aimd is None or self._aimd.ceiling != cap:
                self._aimd = _Aimd(cap)
        return cap, adaptive, s.get("rpm") or 0, s.get("tpm") or 0, self.limiter.burst_seconds

    def _try(self, token: str, tokens: int) -> tuple[bool, float]:
        cap, adaptive, rpm, tpm, burst = self._params()
        script = self.state.script("acquire", _ACQUIRE)
        k = self.keys
        granted, delay = script(keys=[k["slots"], k["aimd"], k["rpm"], k["tpm"]],
                                args=[token, self.state.settings.lease_s * 1000, cap, int(adaptive), rpm, tpm,
                                      burst, tokens])
        if granted and cap:
            self.state.leases.hold(k["slots"], token)
        return bool(granted), float(delay) / 1000

    # ---- admission --------------------------------------------------------------------------------
    def acquire(self, tokens: int) -> Any:
        """Block until admitted; returns a :class:`SharedLease`, or the local slot when failing open."""
        token, wait = uuid.uuid4().hex, 0.002
        while True:
            got = self.state.run(lambda: self._try(token, tokens), lambda: _LOCAL, "a concurrency slot")
            if got is _LOCAL:
                return self.limiter._local_acquire(tokens)
            if got[0]:
                break
            time.sleep(wait * (0.5 + random.random()))
            wait = min(0.05, wait * 1.5)
        lease = SharedLease(token)
        if got[1] > 0:
            try:
                time.sleep(got[1])
            except BaseException:
                self.release(lease)
                raise
        return lease

    async def aacquire(self, tokens: int) -> Any:
        """Async :meth:`acquire`: Redis calls run in a worker thread, waits are ``asyncio.sleep``."""
        token, wait = uuid.uuid4().hex, 0.002
        while True:
            got = await asyncio.to_thread(self.state.run, lambda: self._try(token, tokens), lambda: _LOCAL,
                                          "a concurrency slot")
            if got is _LOCAL:
                return await self.limiter._local_aacquire(tokens)
            if got[0]:
                break
            await asyncio.sleep(wait * (0.5 + random.random()))
            wait = min(0.05, wait * 1.5)
        lease = SharedLease(token)
        if got[1] > 0:
            try:
                await asyncio.sleep(got[1])
            except BaseException:
                self.release(lease)
                raise
        return lease

    def release(self, lease: SharedLease, *, latency: float | None = None, output_tokens: int = 0,
                overload: bool = False, unused_tokens: int = 0) -> None:
        """Return the slot, refund unused tpm tokens and feed adaptive concurrency (one round trip)."""
        self.state.leases.drop(lease.token)
        cap, adaptive, _, tpm, burst = self._params()
        op, factor = "", 1.0
        if adaptive and self._aimd is not None:
            if overload:
                op, factor = "cut", 0.5
            elif latency is not None:
                op, factor = ("cut", 0.9) if self._aimd.congested(latency, output_tokens) else ("inc", 1.0)
        if not (cap or op or (tpm and unused_tokens)):
            return
        interval = (self._aimd.min_cut_interval if self._aimd else 0.05) * 1000
        k = self.keys
        script = self.state.script("release", _RELEASE)
        self.state.quiet(lambda: script(keys=[k["slots"], k["tpm"], k["aimd"]],
                                        args=[lease.token, unused_tokens, tpm, burst, op, factor, cap or 1,
                                              interval]), "returning a concurrency slot")

    def shared_limit(self) -> int | None:
        """The concurrency limit every process obeys now (the shared adaptive value when adaptive)."""
        cap, adaptive, *_ = self._params()
        if not cap:
            return None
        if not adaptive:
            return cap
        value = self.state.run(lambda: self.state.client.hget(self.keys["aimd"], "limit"), lambda: None,
                               "reading the adaptive limit")
        return max(1, int(float(value))) if value is not None else cap
