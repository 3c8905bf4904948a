"""server_type openai, both transports (httpx and sdk): connection reuse, cut streams, glitchy 200s.

Connections are counted by the fault server (tests/servers/fault_openai.py, ``stats()["connections"]``).
"""

from __future__ import annotations

import asyncio

import pytest

from module_ai.controls.events import add_listener, remove_listener
from module_ai.controls.limits import limiter_for
from module_ai.controls.retry import RetryPolicy
from module_ai.errors import BackendError, ConfigError
from tests.controls_helpers import chat_model, config, registry

TRANSPORTS = ["httpx", "sdk"]


def embeddings(url: str, **fields):
    cfg = config(url, model_type="embedding", max_batch=4, **fields)
    emb = registry(cfg).embeddings(cfg.display_name)
    limiter_for(cfg).configure(initial=0.001, max_delay=0.01, jitter=0.0)
    return emb


def _records():
    records: list = []
    add_listener(records.append)
    return records


# ---------------------------------------------------------------- connection reuse (httpx transport)

def test_sequential_sync_streams_reuse_one_connection(fault_server):
    llm = chat_model(fault_server.base_url, transport="httpx")
    assert "".join(c.content for c in llm.stream("hi"))  # first call: may open the connection
    first = fault_server.stats()["connections"]
    for _ in range(19):
        assert "".join(c.content for c in llm.stream("hi")).startswith("tok0")
    assert fault_server.stats()["connections"] == first <= 1


def test_sequential_async_streams_reuse_one_connection(fault_server):
    llm = chat_model(fault_server.base_url, transport="httpx")

    async def run() -> int:
        assert "".join([c.content async for c in llm.astream("hi")])
        first = fault_server.stats()["connections"]
        for _ in range(19):
            assert "".join([c.content async for c in llm.astream("hi")]).startswith("tok0")
        return first

    first = asyncio.run(run())
    assert fault_server.stats()["connections"] == first <= 1


def test_stream_stopped_early_returns_its_connection(fault_server):
    fault_server.configure(reply_tokens=40)  # the rest arrives within DRAIN_S
    llm = chat_model(fault_server.base_url, transport="httpx")
    list(llm.stream("warm up"))
    first = fault_server.stats()["connections"]
    for _ in range(5):
        for chunk in llm.stream("hi"):
            if chunk.content:
                break  # the caller stops after the first word
    assert llm.invoke("hi").content
    assert fault_server.stats()["connections"] == first

    async def run() -> None:
        for _ in range(3):
            stream = llm.astream("hi")
            async for chunk in stream:
                if chunk.content:
                    break
            await stream.aclose()
        assert (await llm.ainvoke("hi")).content

    asyncio.run(run())
    assert fault_server.stats()["connections"] == first + 1  # one per event loop


def test_invoke_and_embeddings_share_the_endpoint_pool(fault_server):
    llm = chat_model(fault_server.base_url, transport="httpx")
    for _ in range(10):
        llm.invoke("hi")
    assert fault_server.stats()["connections"] <= 1


# ---------------------------------------------------------------- cut streams (both transports)

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stream_cut_before_content_is_retried(fault_server, transport):
    fault_server.configure(faults=["cut"], drop_after=0)
    llm = chat_model(fault_server.base_url, transport=transport)
    chunks = list(llm.stream("hi"))
    assert "".join(c.content for c in chunks).startswith("tok0")
    assert [c.response_metadata["attempts"] for c in chunks if "attempts" in c.response_metadata] == [2]
    assert fault_server.stats()["total"] == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stream_cut_mid_answer_raises_and_usage_says_cut(fault_server, transport):
    fault_server.configure(faults=["cut"], drop_after=2, reply_tokens=6)
    llm = chat_model(fault_server.base_url, transport=transport)
    records = _records()
    try:
        with pytest.raises(BackendError, match="broke after output") as info:
            list(llm.stream("hi"))
    finally:
        remove_listener(records.append)
    assert "cut" in str(info.value)
    assert [r.extra.get("stream_cut") for r in records] == [True]
    assert records[0].error and records[0].output_tokens > 0  # the partial output is billed


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_async_stream_cut_mid_answer_raises(fault_server, transport):
    fault_server.configure(faults=["cut"], drop_after=2)
    llm = chat_model(fault_server.base_url, transport=transport)

    async def run():
        return [c async for c in llm.astream("hi")]

    with pytest.raises(BackendError, match="broke after output"):
        asyncio.run(run())


# ---------------------------------------------------------------- 200s that are not answers

@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", ["html", "text"])
def test_html_or_text_200_is_a_backend_error_not_retried(fault_server, transport, fault):
    fault_server.configure(faults=[fault] * 4)
    llm = chat_model(fault_server.base_url, transport=transport, max_retries=2)
    with pytest.raises(BackendError) as info:
        llm.invoke("hi")
    message = str(info.value)
    assert llm.module_ai_config.display_name in message and "/chat/completions" in message
    assert ("HTML page" in message) == (fault == "html")
    assert fault_server.stats()["total"] == 1  # a proxy's page will not change on a retry
    emb = embeddings(fault_server.base_url, transport=transport)
    fault_server.configure(faults=[fault] * 4)
    with pytest.raises(BackendError, match="/embeddings"):
        emb.embed_documents(["a"])
    with pytest.raises(BackendError, match="/embeddings"):
        asyncio.run(emb.aembed_documents(["a"]))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_empty_200_is_retried_then_a_backend_error(fault_server, transport):
    fault_server.configure(faults=["empty"] * 3)
    llm = chat_model(fault_server.base_url, transport=transport, max_retries=2)
    with pytest.raises(BackendError) as info:
        llm.invoke("hi")
    assert llm.module_ai_config.display_name in str(info.value) and "/v1" in str(info.value)
    assert info.value.attempts == 3 and fault_server.stats()["total"] == 3
    fault_server.configure(faults=["empty"])
    assert llm.invoke("hi").response_metadata["attempts"] == 2
    emb = embeddings(fault_server.base_url, transport=transport)
    fault_server.configure(faults=["empty"] * 3)
    with pytest.raises(BackendError):
        emb.embed_documents(["a"])


def test_html_page_instead_of_a_stream_is_a_backend_error(fault_server):
    fault_server.configure(faults=["html"] * 3)
    llm = chat_model(fault_server.base_url, transport="httpx")
    with pytest.raises(BackendError, match="HTML page"):
        list(llm.stream("hi"))


# ---------------------------------------------------------------- retries owned by module_ai

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retry_after_nan_waits_sanely(fault_server, transport):
    fault_server.configure(faults=["429"], retry_after="nan")
    llm = chat_model(fault_server.base_url, transport=transport)
    assert llm.invoke("hi").response_metadata["attempts"] == 2
    assert 0 <= RetryPolicy().delay(1, float("nan")) <= 1.0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_http_errors_keep_status_and_provider_message(fault_server, transport):
    fault_server.configure(faults=["400"])
    llm = chat_model(fault_server.base_url, transport=transport)
    with pytest.raises(Exception) as info:
        llm.invoke("hi")
    assert getattr(info.value, "status_code", None) == 400
    assert "Invalid request (injected)" in str(info.value)
    fault_server.configure(faults=["500"] * 10)
    with pytest.raises(BackendError):
        llm.invoke("hi")
    assert fault_server.stats()["total"] == 1 + 3  # max_retries 2: three requests, no SDK retries


@pytest.mark.parametrize("option", ["max_retries", "base_url", "api_key", "timeout", "client"])
def test_options_cannot_override_what_module_ai_owns(fault_server, option):
    cfg = config(fault_server.base_url, options={option: 5})
    with pytest.raises(ConfigError, match=f"options.{option}"):
        registry(cfg).chat(cfg.display_name)


# ---------------------------------------------------------------- the model's max_batch, whoever calls

def test_knowledge_base_build_honours_the_models_max_batch(fault_server, tmp_path):
    from langchain_core.documents import Document

    from module_ai.retrieval import KnowledgeBase

    cfg = config(fault_server.base_url, model_type="embedding", max_batch=10)
    emb = registry(cfg).embeddings(cfg.display_name)
    docs = [Document(page_content=f"第 {i} 段 unique text {i}", metadata={"source": f"d{i}"}) for i in range(95)]
    KnowledgeBase.build(docs, tmp_path / "kb", emb, show_progress=False)  # its own default batch_size is 64
    sizes = [len(r["body"]["input"]) for r in fault_server.requests if r["path"].endswith("/embeddings")]
    assert len(sizes) == 10 and max(sizes) == 10 and sum(sizes) == 95


def test_a_password_in_the_url_stays_out_of_errors(fault_server):
    import base64

    url = fault_server.base_url.replace("http://", "http://user:hunter2-secret@")
    fault_server.configure(faults=["html"])
    llm = chat_model(url, transport="httpx", api_key=None)  # URL credentials replace the key
    with pytest.raises(Exception) as info:  # the server wants its Bearer key: a 401 (or the html fault)
        llm.invoke("hi")
    assert "hunter2-secret" not in str(info.value) and "hunter2-secret" not in repr(info.value)
    sent = fault_server.requests[-1]["headers"]["authorization"]
    assert sent == "Basic " + base64.b64encode(b"user:hunter2-secret").decode()  # sent as Basic, not in the URL
    assert "hunter2" not in fault_server.requests[-1]["path"]

# ---------------------------------------------------------------- ainvoke without a worker thread

def test_ainvoke_builds_its_result_on_the_event_loop_and_maps_errors_as_stock(fault_server, monkeypatch):
    """Stock ``_agenerate`` converts the reply in a worker thread; on the httpx transport it is done inline,
    with the same error handlers (LangChain's classes under module_ai's BackendError, sync and async alike)."""
    import threading

    llm = chat_model(fault_server.base_url, transport="httpx", max_retries=0)
    threads: list[int] = []
    convert = type(llm)._create_chat_result

    def recording(self, *args, **kwargs):
        threads.append(threading.get_ident())
        return convert(self, *args, **kwargs)

    monkeypatch.setattr(type(llm), "_create_chat_result", recording)

    async def run() -> tuple[str, BaseException]:
        reply = await llm.ainvoke("hi")
        fault_server.configure(faults=["400"])
        with pytest.raises(BackendError) as info:
            await llm.ainvoke("hi")
        return reply.content, info.value

    content, async_error = asyncio.run(run())
    assert content.startswith("tok0") and threads == [threading.get_ident()]
    fault_server.configure(faults=["400"])
    with pytest.raises(BackendError) as info:
        llm.invoke("hi")
    fault_server.reset()
    assert type(async_error.__cause__) is type(info.value.__cause__)
    assert type(info.value.__cause__).__module__.startswith("langchain_openai")
