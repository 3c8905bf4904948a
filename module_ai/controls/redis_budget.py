"""Named budgets and the usage ledger, shared through Redis (Lua scripts, one round trip each).

Budget ``name`` (``track_usage(max_cost=..., budget=name)``) lives in three keys:
``module_ai:budget:<name>`` (hash: ``spent``, ``calls``, ``currency``), ``...:amt`` (hash: reservation
token -> worst-case cost) and ``...:res`` (sorted set: token -> lease expiry). A reservation is
refused when ``spent + reservations in flight + worst > max_cost``; expired reservations (a crashed
process) are dropped first. Settling adds the real cost and drops the reservation atomically.
The first reservation fixes the budget's currency; a model in another currency is refused.

Ledger: every call record of every process (when Redis is configured) adds to
``module_ai:ledger:<model>`` (calls, errors, tokens, cost, latency); ``module-ai cost --redis``
reads it.
"""

from __future__ import annotations

from typing import Any

from module_ai.controls.shared_state import PREFIX

__all__ = ["SharedBudget", "ledger_listener", "read_ledger"]

_NOW = ("if redis.replicate_commands then redis.replicate_commands() end\n"  # Redis 5/6: TIME before writes
        "local t = redis.call('TIME')\nlocal now = t[1] * 1000 + t[2] / 1000\n")
# KEYS: budget, amt, res, budget names. ARGV: token, worst, max_cost, currency, lease_ms, name
_RESERVE = _NOW + """
redis.call('SADD', KEYS[4], ARGV[6])
for _, token in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('HDEL', KEYS[2], token)
  redis.call('ZREM', KEYS[3], token)
end
local cur = redis.call('HGET', KEYS[1], 'currency')
if not cur then
  redis.call('HSET', KEYS[1], 'currency', ARGV[4])
elseif cur ~= ARGV[4] then
  return {'currency', cur, '0'}
end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or 0)
local reserved = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do reserved = reserved + tonumber(v) end
local worst = tonumber(ARGV[2])
if spent + reserved + worst > tonumber(ARGV[3]) then
  return {'over', string.format('%.17g', spent), string.format('%.17g', reserved)}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[1])
return {'ok', string.format('%.17g', spent), string.format('%.17g', reserved)}
"""
# KEYS: budget, amt, res. ARGV: token, cost, currency
_SETTLE = """
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HSETNX', KEYS[1], 'currency', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'calls', 1)
return redis.call('HINCRBYFLOAT', KEYS[1], 'spent', ARGV[2])
"""
# KEYS: models set, model hash. ARGV: model, currency, errors, input, output, reasoning, estimated, cost, latency
_LEDGER = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'currency', ARGV[2])
redis.call('HINCRBY', KEYS[2], 'calls', 1)
local names = {'errors', 'input_tokens', 'output_tokens', 'reasoning_tokens', 'estimated_calls'}
for i, name in ipairs(names) do redis.call('HINCRBY', KEYS[2], name, ARGV[i + 2]) end
redis.call('HINCRBYFLOAT', KEYS[2], 'total_cost', ARGV[8])
redis.call('HINCRBYFLOAT', KEYS[2], 'latency_s', ARGV[9])
return 1
"""
_BUDGETS = f"{PREFIX}budgets"
_MODELS = f"{PREFIX}ledger-models"


class SharedBudget:
    """One named budget in Redis (see the module docstring). Methods may raise redis errors; the
    caller wraps them in ``SharedState.run`` for fail-open/closed."""

    def __init__(self, state: Any, name: str) -> None:
        self.state, self.name = state, name
        base = f"{PREFIX}budget:{name}"
        self.keys = [base, f"{base}:amt", f"{base}:res"]

    def reserve(self, token: str, worst: float, max_cost: float, currency: str) -> tuple[str, str, float]:
        """``("ok" | "over" | "currency", spent or the budget's currency, reserved)``."""
        script = self.state.script("budget_reserve", _RESERVE)
        status, spent, reserved = script(keys=[*self.keys, _BUDGETS],
                                         args=[token, repr(float(worst)), repr(float(max_cost)), currency,
                                               self.state.settings.lease_s * 1000, self.name])
        if status == "ok":
            self.state.leases.hold(self.keys[2], token)
        return status, spent, float(reserved)

    def settle(self, token: str, cost: float, currency: str) -> None:
        """Add a call's real cost and drop its reservation (one atomic step)."""
        self.state.leases.drop(token)
        self.state.script("budget_settle", _SETTLE)(keys=self.keys, args=[token, repr(float(cost)), currency])

    def unreserve(self, token: str) -> None:
        """Drop a reservation whose call sent nothing billable (or was already settled)."""
        self.state.leases.drop(token)
        pipe = self.state.client.pipeline(transaction=True)
        pipe.hdel(self.keys[1], token).zrem(self.keys[2], token)
        pipe.execute()

    def status(self) -> dict[str, Any]:
        """``{"spent", "calls", "currency", "reserved", "in_flight"}`` of this budget now."""
        return _budget_status(self.state.client, self.name)


def _budget_status(client: Any, name: str) -> dict[str, Any]:
    base = f"{PREFIX}budget:{name}"
    data = client.hgetall(base)
    amounts = [float(v) for v in client.hvals(f"{base}:amt")]
    return {"spent": float(data.get("spent", 0)), "calls": int(data.get("calls", 0)),
            "currency": data.get("currency", ""), "reserved": sum(amounts), "in_flight": len(amounts)}


def ledger_listener(record: Any) -> None:
    """Add one call record to the shared ledger (best effort: an outage never fails a call)."""
    from module_ai.controls.shared_state import shared_state

    state = shared_state()
    if state is None:
        return
    script = state.script("ledger", _LEDGER)
    args = [record.model, record.currency or "", int(record.error is not None), record.input_tokens,
            record.output_tokens, record.reasoning_tokens, int(bool(record.estimated)), repr(float(record.cost)),
            repr(float(record.latency_s))]
    state.quiet(lambda: script(keys=[_MODELS, f"{PREFIX}ledger:{record.model}"], args=args), "the usage ledger")


def read_ledger(client: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``({model: UsageStats}, {budget name: status})`` from the shared ledger."""
    from module_ai.controls.cost import UsageStats

    by_model: dict[str, UsageStats] = {}
    for model in sorted(client.smembers(_MODELS)):
        data = client.hgetall(f"{PREFIX}ledger:{model}")
        stats = UsageStats(currency=data.get("currency", ""))
        for name in ("calls", "errors", "input_tokens", "output_tokens", "reasoning_tokens", "estimated_calls"):
            setattr(stats, name, int(data.get(name, 0)))
        stats.total_cost = float(data.get("total_cost", 0))
        stats.latency_s = float(data.get("latency_s", 0))
        by_model[model] = stats
    budgets = {name: _budget_status(client, name) for name in sorted(client.smembers(_BUDGETS))}
    return by_model, budgets
