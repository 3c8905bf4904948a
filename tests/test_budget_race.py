"""Budgets under concurrent callers when the token estimate is low (hex), with no out_tokens, and with
mixed currencies. The fault server bills UTF-8 bytes as prompt tokens (``prompt_count="bytes"``, ~3.5x
the estimate on hex) and would return 5000 output tokens (more than the 4096 assumed) unless the
request carries ``max_tokens``."""

from __future__ import annotations

import asyncio
import threading

import pytest

from module_ai import BudgetExceededError, track_usage
from module_ai.controls.budget_bounds import input_bound
from tests.controls_helpers import chat_model, config, fresh_echo

HEX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" * 16  # 1024 chars
MAX_COST = 40.0


@pytest.fixture
def echo():
    srv = fresh_echo()
    srv.configure(prompt_count="bytes", reply_tokens=5000, latency_ms=20)
    return srv


def _priced(echo, **fields):
    # 1000 per million tokens both ways: one call ~ (1027 + 4096) / 1000 = ~5.1 (worst case 5.1)
    return chat_model(echo.base_url, pay_in=1000.0, pay_out=1000.0, **fields)


def test_thread_race_on_hex_never_overspends(echo):
    llm = _priced(echo)
    refused = []
    with track_usage(max_cost=MAX_COST) as usage:
        def work() -> None:
            for _ in range(10):
                try:
                    llm.invoke(HEX)
                except BudgetExceededError as exc:
                    refused.append(exc)
                    return

        workers = [threading.Thread(target=work) for _ in range(16)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    overshoot = usage.total_cost - MAX_COST
    print(f"\nthreads: {usage.calls} calls spent {usage.total_cost:.4f} of {MAX_COST} (overshoot {overshoot:+.4f})")
    assert overshoot <= 0 and len(refused) == 16 and usage.calls == echo.count >= 4
    assert usage.input_tokens == echo.stats()["billed"]["prompt_tokens"]  # settled with the server's counts
    assert {r["body"]["max_tokens"] for r in echo.requests} == {4096}  # the assumed bound is enforced


def test_asyncio_race_on_hex_never_overspends(echo):
    llm = _priced(echo)

    async def one(refused: list) -> None:
        for _ in range(10):
            try:
                await llm.ainvoke(HEX)
            except BudgetExceededError:
                refused.append(1)
                return

    async def race() -> tuple:
        refused: list = []
        async with track_usage(max_cost=MAX_COST) as usage:
            await asyncio.gather(*(one(refused) for _ in range(16)))
        return usage, refused

    usage, refused = asyncio.run(race())
    overshoot = usage.total_cost - MAX_COST
    print(f"\nasyncio: {usage.calls} calls spent {usage.total_cost:.4f} of {MAX_COST} (overshoot {overshoot:+.4f})")
    assert overshoot <= 0 and len(refused) == 16 and usage.calls == echo.count >= 4
    assert usage.output_tokens == 4096 * usage.calls


def test_input_bound_is_bytes_for_unreliable_text_and_margin_for_prose():
    cfg = config("http://127.0.0.1:1/v1")
    assert input_bound(cfg, [HEX]) == 1024 + 4  # bytes + framing, the estimate would say 297
    assert input_bound(cfg, ["你好"]) == 6 + 4  # CJK: 3 bytes per character
    prose = "the quick brown fox jumps over the lazy dog " * 10
    assert input_bound(cfg, [prose]) == int(126 * 1.5) + 1 + 4
    windowed = config("http://127.0.0.1:1/v1", input_tokens=500)
    assert input_bound(windowed, [HEX]) == 500  # never more than the model's window


def test_a_prose_model_that_bills_more_switches_to_the_byte_bound(echo):
    echo.configure(reply_tokens=4)
    llm = _priced(echo, out_tokens=4)
    cfg = llm.module_ai_config
    prose = "plain words that look like prose " * 4
    before = input_bound(cfg, [prose])
    with track_usage(max_cost=100.0):
        llm.invoke(prose)  # billed at bytes: more than the prose bound
    assert input_bound(cfg, [prose]) > before


def test_currencies_are_never_added_against_one_max_cost(echo):
    echo.configure(reply_tokens=4)
    cny = _priced(echo, out_tokens=4)
    usd = chat_model(echo.base_url, pay_in=1000.0, pay_out=1000.0, out_tokens=4, currency="USD")
    with track_usage(max_cost=1.0) as usage:
        cny.invoke("hi")
        with pytest.raises(BudgetExceededError, match="priced in USD but the budget counts CNY"):
            usd.invoke("hi")
    assert usage.calls == 1
    with track_usage(max_cost=0.02, currency="CNY") as cny_budget, \
            track_usage(max_cost=1.0, currency="USD") as usd_budget:
        for _ in range(3):
            usd.invoke("hi")  # counts against the USD budget only
        cny.invoke("hi")
    assert usd_budget.calls == cny_budget.calls == 4
    assert usd_budget.remaining == pytest.approx(1.0 - 3 * usd.invoke("hi").response_metadata["cost"])
    assert cny_budget.remaining < 0.02


def test_no_budget_no_max_tokens_added(echo):
    llm = _priced(echo)
    with track_usage():
        llm.invoke("hi")
    assert "max_tokens" not in echo.requests[-1]["body"]  # the unbudgeted request is unchanged
