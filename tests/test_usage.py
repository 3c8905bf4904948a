"""Usage tracking, cost, budgets and the usage log, against the fault server and the real llama.cpp server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from module_ai import BudgetExceededError
from module_ai.cli import main
from module_ai.controls.cost import call_cost
from module_ai.controls.events import CallRecord, emit
from module_ai.controls.usage import UsageTracker, read_usage_log, track_usage
from tests.controls_helpers import chat_model, config, fresh_echo, item, registry

ROOT = Path(__file__).resolve().parent.parent

@pytest.fixture
def echo():
    return fresh_echo()



def _aggregate(chunks):
    whole = None
    for chunk in chunks:
        whole = chunk if whole is None else whole + chunk
    return whole


async def _async_calls(llm):
    reply = await llm.ainvoke(item(1))
    streamed = _aggregate([c async for c in llm.astream(item(2))])
    batch = await llm.abatch([item(3), item(4)])
    return [reply, streamed, *batch]


def test_every_kind_of_chat_call_is_counted_and_costs_add_up(echo):
    llm = chat_model(echo.base_url, pay_in=0.3, pay_out=1.2)
    name = llm.module_ai_config.display_name
    with track_usage() as usage:
        replies = [llm.invoke(item(0)), _aggregate(llm.stream(item(5)))]
        replies += llm.batch([item(6), item(7), item(8)])
        replies += asyncio.run(_async_calls(llm))
    assert usage.calls == len(replies) == 9 and usage.by_model[name].calls == 9
    assert usage.output_tokens == sum(r.usage_metadata["output_tokens"] for r in replies) == sum(
        i + 1 for i in (0, 5, 6, 7, 8, 1, 2, 3, 4))
    assert usage.input_tokens == sum(r.usage_metadata["input_tokens"] for r in replies)
    assert usage.total_cost == pytest.approx(sum(r.response_metadata["cost"] for r in replies))
    assert usage.total_cost == pytest.approx(call_cost(llm.module_ai_config, usage.input_tokens, usage.output_tokens))
    assert usage.by_model[name].total_cost == usage.total_cost and usage.estimated_calls == 0
    assert usage.by_model[name].latency_s > 0 and usage.by_model[name].currency == "CNY"


def test_threads_and_tasks_are_counted_and_concurrent_trackers_stay_apart(echo):
    llm = chat_model(echo.base_url)
    with track_usage() as usage:
        workers = [threading.Thread(target=llm.invoke, args=(item(i),)) for i in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert usage.calls == 4

    async def session(n: int) -> UsageTracker:
        async with track_usage() as own:
            await asyncio.gather(*(llm.ainvoke(item(i)) for i in range(n)))
        return own

    async def both():
        return await asyncio.gather(session(2), session(5))

    with track_usage() as outer:
        first, second = asyncio.run(both())
    assert (first.calls, second.calls, outer.calls) == (2, 5, 7)


def test_records_outside_the_block_are_not_counted(echo):
    llm = chat_model(echo.base_url)
    with track_usage() as usage:
        llm.invoke("hi")
    llm.invoke("hi")
    assert usage.calls == 1


def test_llama_server_usage_on_invoke_and_stream(llama_server):
    cfg = config(llama_server, model="tiny", api_key=None, pay_in=1.0, pay_out=2.0, out_tokens=8)
    llm = registry(cfg).chat(cfg.display_name)
    with track_usage() as usage:
        reply = llm.invoke("Hello")
        streamed = _aggregate(llm.stream("Hello"))
    assert reply.response_metadata["usage_estimated"] is False
    assert reply.usage_metadata["input_tokens"] > 0 and reply.response_metadata["cost"] > 0
    assert streamed.response_metadata["usage_estimated"] is True  # llama.cpp sends no usage in streams
    assert streamed.usage_metadata["input_tokens"] > 0
    assert usage.calls == 2 and usage.estimated_calls == 1
    assert usage.total_cost == pytest.approx(reply.response_metadata["cost"] + streamed.response_metadata["cost"])


def test_embeddings_and_rerank_records_are_counted(echo):
    emb_cfg = config(echo.base_url, model_type="embedding", model="emb", pay_in=0.5, max_batch=2)
    emb = registry(emb_cfg).embeddings(emb_cfg.display_name)
    with track_usage() as usage:
        vectors = emb.embed_documents(["a b", "c d e", "f"])
        emit(CallRecord(model="reranker", kind="rerank", input_tokens=30, cost=0.01))
    assert len(vectors) == 3
    assert usage.by_model[emb_cfg.display_name].calls == 2  # two batches of max_batch=2
    assert usage.by_model[emb_cfg.display_name].input_tokens == 6  # the server's counts (words)
    assert usage.by_model["reranker"].total_cost == 0.01 and usage.calls == 3


def test_budget_stops_before_overspending(echo):
    # worst case per call: ~7 estimated input + 20 output tokens at 1,000 per million = ~0.027
    llm = chat_model(echo.base_url, pay_in=1000.0, pay_out=1000.0, out_tokens=20)
    with track_usage(max_cost=0.1) as usage:
        done = 0
        with pytest.raises(BudgetExceededError) as caught:
            for _ in range(20):
                llm.invoke("hi")
                done += 1
    assert echo.count == done >= 3
    assert usage.total_cost <= 0.1
    message = str(caught.value)
    assert "could cost up to" in message and "of max_cost 0.1 CNY" in message
    assert "budget: spent" in usage.report() and usage.remaining == pytest.approx(0.1 - usage.total_cost)


def test_budget_holds_under_concurrency(echo):
    echo.configure(latency_ms=20)
    llm = chat_model(echo.base_url, pay_in=1000.0, pay_out=1000.0, out_tokens=20, max_concurrency=8)
    with track_usage(max_cost=0.2) as usage:
        results = llm.batch(["hi"] * 40, return_exceptions=True)
    refused = [r for r in results if isinstance(r, BudgetExceededError)]
    assert refused and len(refused) + echo.count == 40
    assert usage.total_cost <= 0.2 and usage.calls == echo.count


def test_usage_log_and_cost_command(echo, tmp_path, capsys):
    log = tmp_path / "usage.jsonl"
    llm = chat_model(echo.base_url, pay_in=2.0, pay_out=4.0)
    name = llm.module_ai_config.display_name
    with track_usage(log_path=log) as usage:
        for i in range(3):
            llm.invoke(item(i))
    records = list(read_usage_log(log))
    assert len(records) == 3 and {r.model for r in records} == {name}
    assert main(["cost", str(log)]) == 0
    out = capsys.readouterr().out
    assert name in out and "3 calls" in out and "total" in out
    assert main(["cost", str(log), "--json", "--budget", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["calls"] == 3 and data["total"]["total_cost"] == pytest.approx(usage.total_cost)
    assert data["remaining"] == pytest.approx(1 - usage.total_cost)
    assert main(["cost", str(tmp_path / "missing.jsonl")]) == 1
    assert "usage log not found" in capsys.readouterr().err


def test_usage_log_from_the_environment(echo, tmp_path, test_api_key, monkeypatch, capsys):
    log = tmp_path / "env-usage.jsonl"
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tests.controls_helpers import chat_model; "
            f"llm = chat_model({echo.base_url!r}); llm.invoke('hi'); llm.invoke('hi')")
    env = {**os.environ, "MODULE_AI_USAGE_LOG": str(log), "MODULE_AI_TEST_KEY": test_api_key}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert len(list(read_usage_log(log))) == 2
    monkeypatch.setenv("MODULE_AI_USAGE_LOG", str(log))
    assert main(["cost", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 2
    monkeypatch.delenv("MODULE_AI_USAGE_LOG")
    assert main(["cost"]) == 1
    assert "MODULE_AI_USAGE_LOG" in capsys.readouterr().err


def test_tracker_as_langchain_callback_counts_once(echo):
    from langchain_openai import ChatOpenAI

    stock = ChatOpenAI(base_url=echo.base_url, api_key=os.environ["MODULE_AI_TEST_KEY"], model="stock",
                       max_retries=0, stream_usage=True)
    tracker = UsageTracker()
    stock.invoke(item(2), config={"callbacks": [tracker]})
    assert tracker.calls == 1 and tracker.output_tokens == 3 and tracker.total_cost == 0.0
    managed = chat_model(echo.base_url, pay_in=1.0, pay_out=1.0)
    with tracker:
        managed.invoke(item(3), config={"callbacks": [tracker]})
    managed.invoke(item(4), config={"callbacks": [tracker]})  # callback only: counted from metadata
    assert tracker.calls == 3 and tracker.output_tokens == 3 + 4 + 5
    assert tracker.by_model[managed.module_ai_config.display_name].total_cost > 0
