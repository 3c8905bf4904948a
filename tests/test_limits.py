"""Concurrency caps, rpm/tpm pacing, retries, faults, batches and fallbacks against the fault server."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import openai
import pytest

from module_ai import BackendError, BadRequestError, ContextWindowError
from module_ai.controls.cost import call_cost
from module_ai.controls.limits import ModelLimiter, limiter_for
from module_ai.controls.usage import track_usage
from tests.controls_helpers import chat_model, config, fresh_echo, item, registry


@pytest.fixture
def echo():
    return fresh_echo()



def _index(body: dict) -> int:
    import re

    return int(re.search(r"#(\d+)", body["messages"][-1]["content"]).group(1))


def _max_in_window(stamps: list[float], rate: float, burst: float) -> float:
    """Largest excess of requests over ``burst + rate * span`` across every window of arrivals.

    A token bucket bounds the times requests are *released*; arrival times at the server add each
    request's scheduling delay, so a window of arrivals may hold ``rate x (largest delay)`` more.
    """
    stamps = sorted(stamps)
    worst = 0.0
    for i in range(len(stamps)):
        for j in range(i, len(stamps)):
            worst = max(worst, (j - i + 1) - (burst + rate * (stamps[j] - stamps[i])))
    return worst


def test_batch_of_500_in_order_capped_paced_retried_and_costed(echo):
    """The issue's batch contract: order, no loss, cap, rpm, retries and costs, all at once."""
    seen: Counter = Counter()
    plan = {0: ["429"], 50: ["429"], 77: ["500"], 101: ["429", "500"], 333: ["malformed"], 499: ["503"]}

    def faults(k, path, body):
        i = _index(body)
        seen[i] += 1
        todo = plan.get(i, [])
        return todo[seen[i] - 1] if seen[i] <= len(todo) else None

    echo.configure(latency_ms=5, faults=faults, retry_after="0")
    llm = chat_model(echo.base_url, max_concurrency=8, rpm=6000, max_retries=2, pay_in=2.0, pay_out=8.0)
    with track_usage() as usage:
        results = llm.batch([item(i) for i in range(500)])
    stats = echo.stats()
    assert len(results) == 500
    assert [r.content.split()[-1] for r in results] == [f"tok{i}" for i in range(500)]
    assert 2 <= stats["max_in_flight"] <= 8
    retries = sum(len(v) for v in plan.values())
    assert stats["total"] == 500 + retries
    assert sum(r.response_metadata["attempts"] for r in results) == 500 + retries
    assert results[101].response_metadata["attempts"] == 3
    # rpm 6000 = 100/s with a 1 s burst; allow 0.15 s of thread-scheduling delay (15 requests).
    # Unpaced, the same batch runs ~4x faster and exceeds this bound by hundreds of requests.
    assert _max_in_window(stats["timestamps"], rate=100.0, burst=100.0) <= 15
    per_call = [call_cost(llm.module_ai_config, r.usage_metadata["input_tokens"], r.usage_metadata["output_tokens"])
                for r in results]
    assert [r.response_metadata["cost"] for r in results] == pytest.approx(per_call)
    assert usage.total_cost == pytest.approx(sum(per_call))
    assert usage.calls == 500 and usage.output_tokens == sum(i + 1 for i in range(500))


def test_cap_is_shared_by_every_object_sync_and_async(echo):
    echo.configure(latency_ms=20)
    cfg = config(echo.base_url, max_concurrency=3)
    first, second = registry(cfg).chat(cfg.display_name), registry(cfg).chat(cfg.display_name)
    assert first is not second and first.module_ai_limiter is second.module_ai_limiter
    thread = threading.Thread(target=first.batch, args=([item(i) for i in range(30)],))
    thread.start()
    asyncio.run(second.abatch([item(i) for i in range(30)]))
    thread.join()
    assert echo.stats()["total"] == 60
    assert echo.stats()["max_in_flight"] <= 3


def test_batch_runs_max_concurrency_at_once_not_pythons_default(echo):
    echo.configure(latency_ms=40)
    llm = chat_model(echo.base_url, max_concurrency=12)
    llm.batch([item(i) for i in range(48)])
    assert 6 < echo.stats()["max_in_flight"] <= 12


def test_one_failing_item_does_not_lose_the_others(echo):
    echo.configure(faults=lambda k, path, body: "400" if _index(body) in (3, 7) else None)
    llm = chat_model(echo.base_url, max_concurrency=4)
    results = llm.batch([item(i) for i in range(10)], return_exceptions=True)
    assert [i for i, r in enumerate(results) if isinstance(r, Exception)] == [3, 7]
    assert isinstance(results[3], BadRequestError) and results[3].status_code == 400
    assert isinstance(results[3].__cause__, openai.BadRequestError)  # the provider's own, kept as the cause
    assert results[9].content.endswith("tok9")
    with pytest.raises(BadRequestError) as caught:
        llm.batch([item(i) for i in range(10)])
    kept = caught.value.batch_results
    assert len(kept) == 10 and kept[0].content == "tok0" and isinstance(kept[7], BadRequestError)


async def test_abatch_keeps_order_and_returns_errors(echo):
    echo.configure(latency_ms=2, faults=lambda k, path, body: "400" if _index(body) == 5 else None)
    llm = chat_model(echo.base_url, max_concurrency=6)
    results = await llm.abatch([item(i) for i in range(40)], return_exceptions=True)
    assert isinstance(results[5], BadRequestError)
    assert [r.content.split()[-1] for i, r in enumerate(results) if i != 5] == [f"tok{i}" for i in range(40) if i != 5]
    assert echo.stats()["max_in_flight"] <= 6


def test_retry_after_is_honoured(echo):
    echo.configure(faults=["429"], retry_after="0.3")
    llm = chat_model(echo.base_url)
    reply = llm.invoke("hi")
    stamps = echo.stats()["timestamps"]
    assert reply.response_metadata["attempts"] == 2
    assert stamps[1] - stamps[0] >= 0.3


def test_retries_are_bounded_and_400_is_never_retried(echo):
    echo.configure(faults=lambda k, path, body: "500")
    llm = chat_model(echo.base_url, max_retries=2)
    with track_usage() as usage, pytest.raises(BackendError) as caught:
        llm.invoke("hi")
    assert echo.count == 3 and caught.value.attempts == 3 and caught.value.status_code == 500
    assert "HTTP 500" in str(caught.value) and "3 attempts (max_retries 2)" in str(caught.value)
    assert usage.calls == 1 and usage.errors == 1
    echo.configure(faults=lambda k, path, body: "400")
    with pytest.raises(BadRequestError) as rejected:
        llm.invoke("hi")
    assert echo.count == 4 and rejected.value.attempts == 1


def test_no_retries_on_top_of_the_sdk(echo):
    llm = chat_model(echo.base_url, max_retries=0)
    assert llm.max_retries == 0
    echo.configure(faults=["503", None])
    with pytest.raises(BackendError):
        llm.invoke("hi")
    assert echo.count == 1


def test_slow_response_times_out_then_retries(echo):
    echo.configure(faults=["hang"], hang_s=2.0)
    llm = chat_model(echo.base_url, timeout=0.3)
    assert llm.invoke("hi").response_metadata["attempts"] == 2


def test_malformed_json_is_retried(echo):
    echo.configure(faults=["malformed"])
    llm = chat_model(echo.base_url)
    assert llm.invoke("hi").content == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"
    assert echo.count == 2


def test_stream_drop_before_text_is_retried_after_text_raises(echo):
    llm = chat_model(echo.base_url)
    echo.configure(faults=["drop"], drop_after=0)
    assert "".join(c.content for c in llm.stream("hi")) == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"
    assert echo.count == 2
    echo.configure(faults=["drop"], drop_after=2)
    received = []
    with track_usage() as usage, pytest.raises(BackendError, match="broke after output"):
        for chunk in llm.stream("hi"):
            received.append(chunk.content)
    assert "".join(received) == "tok0 tok1"
    assert usage.errors == 1 and usage.output_tokens > 0 and usage.estimated_calls == 1


def test_malformed_stream_raises_backend_error(echo):
    echo.configure(faults=["malformed"])
    llm = chat_model(echo.base_url)
    with pytest.raises(BackendError):
        list(llm.stream("hi"))


def test_stream_without_usage_is_estimated_and_marked(echo):
    echo.configure(usage=False)
    llm = chat_model(echo.base_url, pay_in=1.0, pay_out=1.0)
    whole = None
    for chunk in llm.stream("hello there"):
        whole = chunk if whole is None else whole + chunk
    assert whole.response_metadata["usage_estimated"] is True
    assert whole.usage_metadata["output_tokens"] > 0 and whole.response_metadata["cost"] > 0


def test_fallbacks_answer_when_the_primary_fails(echo):
    echo.configure(faults=lambda k, path, body: "500" if body.get("model") == "primary" else None)
    backup = config(echo.base_url, model="backup")
    primary = config(echo.base_url, model="primary", fallbacks=[backup.display_name], max_retries=1)
    reg = registry(primary, backup)
    for cfg in (primary, backup):
        limiter_for(cfg).configure(initial=0.001, jitter=0.0)
    llm = reg.chat(primary.display_name)
    assert llm.invoke("hi").response_metadata["module_ai_model"] == backup.display_name
    assert [r["body"]["model"] for r in echo.requests] == ["primary", "primary", "backup"]
    whole = None
    for chunk in llm.stream("hi"):
        whole = chunk if whole is None else whole + chunk
    assert whole.content == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7"
    assert whole.response_metadata["module_ai_model"] == backup.display_name
    results = llm.batch([item(i) for i in range(5)])
    assert [r.content.split()[-1] for r in results] == [f"tok{i}" for i in range(5)]


def test_adaptive_concurrency_halves_on_429_and_recovers_slowly(echo):
    llm = chat_model(echo.base_url, max_concurrency=16)
    limiter = limiter_for(llm).configure(adaptive=True)
    assert limiter.limit == 16
    echo.configure(faults=["429"], retry_after="0")
    llm.invoke("hi")
    assert limiter.limit == 8
    for _ in range(30):
        llm.invoke("hi")
    assert 8 < limiter.limit < 16


def test_adaptive_concurrency_backs_off_when_latency_rises(echo):
    llm = chat_model(echo.base_url, max_concurrency=16)
    limiter = limiter_for(llm).configure(adaptive=True)
    echo.configure(latency_ms=2)
    for _ in range(25):
        llm.invoke("hi")
    assert limiter.limit == 16
    echo.configure(latency_ms=80)
    for _ in range(6):
        llm.invoke("hi")
    assert limiter.limit < 16


def test_tpm_paces_large_requests(echo):
    # each request reserves ~780 estimated tokens ("词 " x 600); tpm 96,000 = 1,600 tokens/s, bucket 1,600.
    # Six at once: two go, the rest wait for tokens; the last starts >= (6 x 780 - 1,600 - 5 x 170 refunds)
    # / 1,600 = 1.4 s after the first even if every earlier call already settled its usage.
    llm = chat_model(echo.base_url, tpm=96_000, max_concurrency=6)
    llm.batch(["词 " * 600] * 6)
    stamps = sorted(echo.stats()["timestamps"])
    assert stamps[-1] - stamps[0] >= 1.2


def test_a_larger_request_waits_longer():
    small, large = ModelLimiter(("a", "u")), ModelLimiter(("b", "u"))
    for limiter in (small, large):
        limiter.configure(tpm=60_000)  # 1,000 tokens/s, bucket of 1,000
        limiter.tpm.reserve(1_000)
    assert large.tpm.reserve(1_000) > 5 * small.tpm.reserve(100)


def test_over_window_error_reports_numbers_and_sends_nothing(echo):
    llm = chat_model(echo.base_url, input_tokens=100, out_tokens=20)
    with pytest.raises(ContextWindowError) as caught:
        llm.invoke("长" * 200)
    message = str(caught.value)
    assert "204 tokens" in message and "only 80 fit" in message and "124 tokens over" in message
    assert caught.value.field == "input_tokens" and echo.count == 0


async def test_cancelled_waiter_does_not_leak_a_slot():
    limiter = ModelLimiter(("cancel", "u")).configure(max_concurrency=1)
    slot = await limiter.aacquire(1)
    waiter = asyncio.ensure_future(limiter.aacquire(1))
    await asyncio.sleep(0)
    waiter.cancel()
    limiter.release(slot)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    again = await asyncio.wait_for(limiter.aacquire(1), 5)
    assert limiter.slots.in_flight == 1
    limiter.release(again)
    assert limiter.slots.in_flight == 0


async def test_async_stream_is_retried_before_text(echo):
    echo.configure(faults=["429", "drop"], drop_after=0, retry_after="0")
    llm = chat_model(echo.base_url)
    parts = [c.content async for c in llm.astream("hi")]
    assert "".join(parts) == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7" and echo.count == 3


def test_embedding_batches_are_retried_and_capped(echo):
    echo.configure(latency_ms=10, faults=["500", "429"], retry_after="0")
    cfg = config(echo.base_url, model_type="embedding", model="emb", max_batch=2, max_concurrency=2)
    limiter_for(cfg).configure(initial=0.001, jitter=0.0)
    emb = registry(cfg).embeddings(cfg.display_name)
    with track_usage() as usage:
        vectors = emb.embed_documents([f"text {i}" for i in range(10)])
    assert len(vectors) == 10 and echo.count == 5 + 2
    assert echo.stats()["max_in_flight"] <= 2 and usage.calls == 5 and usage.errors == 0
