"""``abatch`` of managed models (module_ai/backends/_batch.py): width, order, per-item configs, failures.

Against the echo fault server: item ``#i`` is answered with ``i + 1`` words, so the order of the answers
shows the order of the results; ``max_in_flight`` is counted by the server.
"""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from module_ai.errors import BackendError
from tests.controls_helpers import chat_model, item


class _RunNames(BaseCallbackHandler):
    def __init__(self) -> None:
        self.names: list[tuple[str, str]] = []

    def on_chat_model_start(self, serialized, messages, *, metadata=None, **kwargs) -> None:
        self.names.append((metadata["i"], messages[0][-1].content))


@pytest.mark.parametrize("width", [1, 4])
def test_abatch_keeps_max_concurrency_in_flight_and_the_input_order(echo, width):
    echo.configure(latency_ms=80)
    llm = chat_model(echo.base_url, max_concurrency=width, max_retries=0)
    results = asyncio.run(llm.abatch([item(i) for i in range(12)]))
    assert [len(r.content.split()) for r in results] == [i + 1 for i in range(12)]
    assert echo.stats()["max_in_flight"] == width and echo.stats()["total"] == 12


def test_a_callers_max_concurrency_below_the_models_is_kept(echo):
    echo.configure(latency_ms=80)
    llm = chat_model(echo.base_url, max_concurrency=8, max_retries=0)
    results = asyncio.run(llm.abatch([item(i) for i in range(10)], {"max_concurrency": 2}))
    assert [len(r.content.split()) for r in results] == [i + 1 for i in range(10)]
    assert echo.stats()["max_in_flight"] == 2


def test_abatch_passes_each_item_its_own_config(echo):
    llm = chat_model(echo.base_url, max_concurrency=3, max_retries=0)
    seen = _RunNames()
    configs = [{"metadata": {"i": str(i)}, "callbacks": [seen]} for i in range(7)]
    asyncio.run(llm.abatch([item(i) for i in range(7)], configs))
    assert sorted(seen.names) == sorted((str(i), item(i)) for i in range(7))


def test_abatch_failures_stay_in_place_and_nothing_is_lost(echo):
    echo.configure(faults=lambda k, path, body: "400" if "#2 " in str(body) or "#5 " in str(body) else None)
    llm = chat_model(echo.base_url, max_concurrency=3, max_retries=0)
    inputs = [item(i) for i in range(7)]
    results = asyncio.run(llm.abatch(inputs, return_exceptions=True))
    assert [type(r).__name__ for r in results] == ["AIMessage"] * 2 + ["BadRequestError"] + ["AIMessage"] * 2 + [
        "BadRequestError", "AIMessage"]
    assert all(isinstance(results[i], BackendError) for i in (2, 5))
    with pytest.raises(BackendError) as info:
        asyncio.run(llm.abatch(inputs))
    assert [len(r.content.split()) if not isinstance(r, Exception) else None for r in info.value.batch_results] == [
        1, 2, None, 4, 5, None, 7]
