"""Limits, budgets and the usage ledger shared across processes through a real redis-server.

Worker processes (tests/shared_worker.py) run against the in-process fault server, which records
every request's arrival time, the in-flight maximum and the tokens it billed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from module_ai import ModuleAIError, SharedStateError, configure_shared, track_usage
from module_ai.cli import main
from module_ai.controls.limits import limiter_for, reset_limiters
from module_ai.controls.shared_state import model_key
from tests.controls_helpers import chat_model, config, fresh_echo

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def echo():
    return fresh_echo()


@pytest.fixture
def shared(redis_server):
    """This process uses the session Redis for limiters built inside the test."""
    def use(url: str = redis_server.url, **kwargs):
        configure_shared(url, **kwargs)
        reset_limiters()

    yield use
    configure_shared(None)
    reset_limiters()


def _spawn(redis_url: str, spec: dict, lease: float = 30.0) -> subprocess.Popen:
    env = {**os.environ, "MODULE_AI_REDIS_URL": redis_url, "MODULE_AI_REDIS_LEASE": str(lease),
           "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.shared_worker", json.dumps(spec)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_workers(redis_url: str, spec: dict, processes: int = 4) -> list[dict]:
    """``processes`` workers forked from one interpreter (see tests/shared_worker.py); their results."""
    proc = _spawn(redis_url, {**spec, "processes": processes})
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    results = json.loads(out.strip().splitlines()[-1])
    assert len(results) == processes
    return results


def rate_excess(stamps: list[float], per_minute: float, burst_s: float = 1.0, jitter_s: float = 0.25) -> float:
    """Max over all windows [t_i, t_j] of requests seen minus what the bucket allows in it
    (capacity + rate * (width + jitter)); <= 0 means the rate was never exceeded. Arrival times are
    taken at the server, after the client's scheduling delay: ``jitter_s`` allows for that delay
    (2 cores shared by many processes), not for any extra admission."""
    rate = per_minute / 60
    cap = max(1.0, rate * burst_s)
    ts = sorted(stamps)
    return max(j - i + 1 - (cap + rate * (ts[j] - ts[i] + jitter_s))
               for i in range(len(ts)) for j in range(i, len(ts)))


def test_four_processes_share_one_concurrency_cap(echo, redis_server):
    echo.configure(latency_ms=5)
    spec = {"mode": "chat", "url": echo.base_url, "name": "shared-cap", "n": 200, "threads": 6,
            "fields": {"max_concurrency": 3, "rpm": 6000}}
    results = _run_workers(redis_server.url, spec)
    stats = echo.stats()
    assert [r["errors"] for r in results] == [0] * 4 and sum(r["done"] for r in results) == 800
    assert stats["total"] == 800 and stats["statuses"] == {200: 800}
    assert stats["max_in_flight"] == 3  # reached, never exceeded, with 24 threads in 4 processes wanting more
    excess = rate_excess(stats["timestamps"], 6000)
    span = max(stats["timestamps"]) - min(stats["timestamps"])
    print(f"\ncap: max in flight {stats['max_in_flight']} of 3; 800 requests in {span:.2f} s "
          f"({800 / span:.1f}/s, rpm 6000 = 100/s); worst window excess {excess:.2f}")
    assert excess <= 0


def test_four_processes_share_one_rpm_window(echo, redis_server):
    # rpm 120 = 2 requests/s with a 1 s burst (2): 4 processes x 6 requests take >= 11 s together.
    # Kept small so CI stays fast; the 800-request run above checks the same bucket at rpm 6000.
    spec = {"mode": "chat", "url": echo.base_url, "name": "shared-rpm", "n": 6, "threads": 2,
            "fields": {"max_concurrency": 3, "rpm": 120}}
    results = _run_workers(redis_server.url, spec)
    stamps = echo.stats()["timestamps"]
    assert sum(r["done"] for r in results) == len(stamps) == 24
    span = max(stamps) - min(stamps)
    excess = rate_excess(stamps, 120)
    print(f"\nrpm 120: 24 requests from 4 processes in {span:.2f} s = {60 * 23 / span:.1f}/min; "
          f"worst window excess {excess:.2f} (without the jitter allowance {rate_excess(stamps, 120, jitter_s=0):.2f})")
    assert excess <= 0
    assert span >= (24 - 2) / 2 - 0.5  # one shared bucket, not one per process (4x faster)


def test_four_processes_share_one_budget_and_the_ledger_matches_the_server(echo, redis_server, capsys):
    echo.configure(prompt_count="bytes", reply_tokens=30, latency_ms=10)
    prompt = "f0e1d2c3b4a59687" * 8  # 128 hex chars: estimated ~41 tokens, billed 131 by this server
    name, budget, max_cost = "shared-budget", "team-budget-test", 2.0
    spec = {"mode": "budget", "url": echo.base_url, "name": name, "threads": 4, "prompt": prompt,
            "max_cost": max_cost, "budget": budget,
            "fields": {"pay_in": 1000.0, "pay_out": 1000.0, "out_tokens": 16, "max_concurrency": 8}}
    results = _run_workers(redis_server.url, spec)
    stats = echo.stats()
    spent = sum(r["cost"] for r in results)
    calls = sum(r["calls"] for r in results)
    assert spent <= max_cost and spent > 0.5 * max_cost
    assert all(r["refused"] == 4 for r in results)  # every thread of every process stopped by the budget
    assert calls == stats["total"]
    capsys.readouterr()
    assert main(["cost", "--redis", redis_server.url, "--json", "--model", name]) == 0
    report = json.loads(capsys.readouterr().out)
    total = report["total"]
    assert total["calls"] == calls
    assert total["input_tokens"] == stats["billed"]["prompt_tokens"] == sum(r["input"] for r in results)
    assert total["output_tokens"] == stats["billed"]["completion_tokens"] == sum(r["output"] for r in results)
    assert total["total_cost"] == pytest.approx(spent)
    status = report["budgets"][budget]
    assert status["spent"] == pytest.approx(spent) and status["calls"] == calls and status["in_flight"] == 0
    assert main(["cost", "--redis", redis_server.url, "--model", name]) == 0
    text = capsys.readouterr().out
    assert f"budget {budget}: spent" in text and name in text
    with capsys.disabled():
        print(f"\nshared budget: {calls} calls by 4 processes spent {spent:.6f} of max_cost {max_cost} "
              f"(overshoot {spent - max_cost:+.6f}); {sum(r['refused'] for r in results)} refused; ledger "
              f"{total['input_tokens']}+{total['output_tokens']} tokens = server-billed "
              f"{stats['billed']['prompt_tokens']}+{stats['billed']['completion_tokens']}")


def test_a_killed_worker_frees_its_slots_within_the_lease(echo, redis_server, shared):
    echo.configure(faults=lambda k, path, body: "hang" if "hang" in json.dumps(body) else None, hang_s=8)
    lease, name = 1.5, "shared-kill"
    spec = {"mode": "hold", "url": echo.base_url, "name": name, "threads": 3, "fields": {"max_concurrency": 3}}
    proc = _spawn(redis_server.url, spec, lease=lease)
    assert json.loads(proc.stdout.readline()) == {"holding": True}
    import redis

    client = redis.Redis.from_url(redis_server.url)
    slots = model_key(config(echo.base_url, name=name)) + ":slots"
    deadline = time.monotonic() + 30
    while client.zcard(slots) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.zcard(slots) == 3
    time.sleep(lease)  # the lease was renewed at least once while the worker lived
    assert client.zcard(slots) == 3
    shared(lease_s=lease)
    llm = chat_model(echo.base_url, name=name, max_concurrency=3)
    os.kill(proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(llm.module_ai_limiter.acquire(1)), daemon=True)
    waiter.start()  # waits until one of the dead worker's slots expired
    waiter.join(lease + 10)
    waited = time.monotonic() - killed
    assert got, f"no slot came back within {lease + 10} s of the kill"
    llm.module_ai_limiter.release(got[0])
    proc.wait(10)
    print(f"\nSIGKILL: a slot was free again {waited:.2f} s after the kill (lease {lease} s)")
    assert waited <= lease + 0.5
    assert llm.batch(["hi"] * 3) and client.zcard(slots) == 0  # all three came back
    client.close()


def test_adaptive_limit_is_shared(echo, shared):
    shared()
    cfg = config(echo.base_url, name="shared-adaptive", max_concurrency=8, adaptive_concurrency=True)
    first = limiter_for(cfg)
    lease = first.acquire(10)
    first.release(lease, overload=True)
    assert first.limit == 4
    reset_limiters()  # a fresh limiter, as in another process, obeys the shared state
    other = limiter_for(cfg)
    assert other.limit == 4
    granted = [other.shared._try(f"probe-{i}", 1)[0] for i in range(5)]
    assert granted == [True] * 4 + [False]  # 4 slots, not the configured 8


def test_tpm_bucket_is_shared(echo, shared):
    shared()
    cfg = config(echo.base_url, name="shared-tpm", tpm=600)  # 10 tokens/s, a 10-token burst
    assert limiter_for(cfg).shared._try("a", 10) == (True, 0.0)
    reset_limiters()  # another process: the bucket is already empty
    granted, delay = limiter_for(cfg).shared._try("b", 10)
    assert granted and 0.9 < delay <= 1.0


async def test_async_callers_share_the_cap(echo, shared):
    shared()
    echo.configure(latency_ms=30)
    first = chat_model(echo.base_url, name="shared-async", max_concurrency=2)
    reset_limiters()
    second = chat_model(echo.base_url, name="shared-async", max_concurrency=2)  # its own limiter object
    assert first.module_ai_limiter is not second.module_ai_limiter
    replies = await asyncio.gather(*(llm.ainvoke("hi") for llm in (first, second) for _ in range(6)))
    assert len(replies) == 12 and echo.stats()["max_in_flight"] == 2


def test_redis_stopped_mid_run_fail_closed_raises_fail_open_goes_on(echo, tmp_path, shared, capsys):
    from tests.servers.redis_server import start_redis

    srv = start_redis(tmp_path / "redis", password="s3cret-pw")
    echo.configure(latency_ms=20)
    try:
        shared(srv.url, fail="closed", lease_s=2)
        llm = chat_model(echo.base_url, name="shared-outage", max_concurrency=2)
        llm.invoke("hi")
        with track_usage(max_cost=1.0, budget="outage"):
            llm.invoke("hi")
    finally:
        srv.stop()
    with pytest.raises(SharedStateError) as caught:
        llm.invoke("hi")
    message = str(caught.value)
    assert isinstance(caught.value, ModuleAIError) and "unreachable" in message and "MODULE_AI_REDIS_FAIL" in message
    assert "s3cret-pw" not in message and ":****@127.0.0.1" in message
    with pytest.raises(SharedStateError), track_usage(max_cost=1.0, budget="outage"):
        llm.invoke("hi")
    served = echo.count

    shared(srv.url, fail="open", lease_s=2)
    llm = chat_model(echo.base_url, name="shared-outage", max_concurrency=2)
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        replies = llm.batch(["hi"] * 10)
        with track_usage(max_cost=1.0, budget="outage") as usage:
            llm.invoke("hi")
    assert len(replies) == 10 and usage.calls == 1 and echo.count == served + 11
    assert echo.stats()["max_in_flight"] <= 2  # the in-process cap still holds
    outage = [w for w in caught_warnings if "unreachable" in str(w.message)]
    assert len(outage) == 1 and "s3cret-pw" not in str(outage[0].message)
    assert main(["cost", "--redis", srv.url]) == 1
    err = capsys.readouterr().err
    assert "cannot read the shared ledger" in err and "s3cret-pw" not in err


def test_without_redis_nothing_changes_and_redis_is_never_imported(echo, test_api_key):
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.controls_helpers import chat_model\nfrom module_ai import track_usage\n"
            f"llm = chat_model({echo.base_url!r}, max_concurrency=2, rpm=600)\n"
            "with track_usage(max_cost=1.0):\n    llm.invoke('hi')\n"
            "print(llm.module_ai_limiter.shared, 'redis' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "MODULE_AI_REDIS_URL"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=True, cwd=ROOT).stdout
    assert out.split() == ["None", "False"]


def test_url_is_read_from_dotenv_and_its_password_never_shown(tmp_path):
    (tmp_path / ".env").write_text("MODULE_AI_REDIS_URL=redis://:dotenv-pw@127.0.0.1:6390/2\n"
                                   "MODULE_AI_REDIS_FAIL=open\n")
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from module_ai.controls.shared_state import shared_state\nprint(repr(shared_state()))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODULE_AI_REDIS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                         check=True, cwd=tmp_path).stdout
    assert "redis://:****@127.0.0.1:6390/2" in out and "fail_open=True" in out and "dotenv-pw" not in out


def test_bad_settings_are_config_errors(shared, monkeypatch):
    from module_ai import ConfigError

    with pytest.raises(ConfigError, match="redis://"):
        configure_shared("http://:pw@host:6379")
    with pytest.raises(ConfigError, match="'open' or 'closed'"):
        configure_shared("redis://127.0.0.1:1/0", fail="maybe")
    configure_shared(None)
    with pytest.raises(ConfigError, match="MODULE_AI_REDIS_URL is not set"):
        track_usage(max_cost=1.0, budget="team-a")
