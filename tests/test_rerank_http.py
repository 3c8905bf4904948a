"""Every rerank HTTP shape against a local server: exact request bodies, splitting, limits, errors, usage.

Servers: tests/servers/fake_rerank.py (cohere, xinference, tei) and the shared fake DashScope (native and
OpenAI-style rerank). Each server scores by query-character overlap and rejects oversize requests when told.
"""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.documents import Document

from module_ai.config import ModelConfig
from module_ai.controls.events import add_listener, remove_listener
from module_ai.errors import BackendError
from module_ai.registry import Registry
from tests.servers._util import count_tokens, lexical_score

QUERY = "熊猫吃什么食物"
TEXTS = ["汽车需要加油才能行驶", "大熊猫主要吃竹子，也吃少量其他食物", "熊猫是中国的国宝", "股市今天下跌",
         "什么食物适合熊猫幼崽", "天气很好"]
KEY_REF = "${MODULE_AI_TEST_KEY}"


@pytest.fixture
def servers(fake_servers, dashscope_server):
    for srv in fake_servers.values():
        srv.reset()
    return {**fake_servers, "dashscope": dashscope_server, "dashscope_openai": dashscope_server}


@pytest.fixture
def records():
    seen = []
    add_listener(seen.append)
    yield seen
    remove_listener(seen.append)


def _base_url(servers, style: str) -> str:
    srv = servers[style]
    if style == "dashscope":
        return srv.url + "/api/v1"
    if style == "dashscope_openai":
        return srv.url + "/compatible-api/v1"
    return srv.base_url


def make(servers, style: str, **fields):
    """A reranker built through the registry from a config of ``style`` pointing at the local server."""
    data = {"model_type": "rerank", "server_type": "openai", "rerank_style": style, "model": "rr-model",
            "url": _base_url(servers, style), "api_key": KEY_REF, "pay_in": 2.0, **fields}
    reg = Registry({"rr": ModelConfig(name="rr", **data)})
    return reg.reranker("rr")


def _expected_order(texts=TEXTS, query=QUERY) -> list[int]:
    return sorted(range(len(texts)), key=lambda i: (-lexical_score(query, texts[i]), i))


EXPECTED_BODIES = {
    "cohere": {"model": "rr-model", "query": QUERY, "documents": TEXTS, "top_n": 6, "return_documents": False},
    "xinference": {"model": "rr-model", "query": QUERY, "documents": TEXTS, "top_n": 6, "return_documents": False,
                   "return_len": True},
    "tei": {"query": QUERY, "texts": TEXTS, "return_text": False, "raw_scores": False, "truncate": True},
    "dashscope": {"model": "rr-model", "input": {"query": QUERY, "documents": TEXTS},
                  "parameters": {"top_n": 6, "return_documents": False}},
    "dashscope_openai": {"model": "rr-model", "query": QUERY, "documents": TEXTS, "top_n": 6,
                         "return_documents": False, "instruct": "Retrieve semantically similar text."},
}
PATHS = {"cohere": "/v1/rerank", "xinference": "/v1/rerank", "tei": "/rerank",
         "dashscope": "/api/v1/services/rerank/text-rerank/text-rerank", "dashscope_openai": "/compatible-api/v1/reranks"}


@pytest.mark.parametrize("style", list(EXPECTED_BODIES))
def test_exact_request_and_parsed_response(servers, style, test_api_key, records):
    extra = {"instruct": "Retrieve semantically similar text."} if style == "dashscope_openai" else {}
    rr = make(servers, style, **extra)
    docs = [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(TEXTS)]
    out = rr.compress_documents(docs, QUERY)

    sent = servers[style].requests_to(PATHS[style])
    assert len(sent) == 1
    assert sent[0].body == EXPECTED_BODIES[style]
    headers = {k.lower(): v for k, v in sent[0].headers.items()}
    assert headers["authorization"] == f"Bearer {test_api_key}"
    assert [d.metadata["rerank_index"] for d in out] == _expected_order()
    for d in out:
        raw = lexical_score(QUERY, d.page_content)
        assert d.metadata["raw_score"] == pytest.approx(raw)
        assert d.metadata["relevance_score"] == pytest.approx(raw)  # 0..1 scores are kept
        assert d.metadata["i"] == d.metadata["rerank_index"]
    assert len(records) == 1 and records[0].kind == "rerank" and records[0].model == "rr"


def test_usage_records_carry_provider_tokens_and_cost(servers, records):
    make(servers, "xinference").rank(QUERY, TEXTS)
    make(servers, "dashscope").rank(QUERY, TEXTS)
    make(servers, "tei").rank(QUERY, TEXTS)
    xinf, native, tei = records
    assert not xinf.estimated and xinf.input_tokens > 0  # meta.tokens.input_tokens (return_len)
    assert not native.estimated and native.input_tokens > 0  # usage.total_tokens
    assert native.cost == pytest.approx(native.input_tokens * 2.0 / 1_000_000)
    assert tei.estimated and tei.input_tokens > 0  # TEI reports no usage: estimated
    assert {r.extra["style"] for r in records} == {"xinference", "dashscope", "tei"}
    assert all(r.extra["documents"] == len(TEXTS) and r.error is None for r in records)


def test_dashscope_split_over_max_documents_gives_global_order(servers, records):
    srv = servers["dashscope"]
    srv.max_rerank_docs = 2  # the server now rejects more than 2 documents per request
    with pytest.raises(BackendError, match="HTTP 400"):
        make(servers, "dashscope").rank(QUERY, TEXTS)  # style default (500) is too many here
    srv.reset()
    srv.max_rerank_docs = 2
    pairs = make(servers, "dashscope", max_documents=2).rank(QUERY, TEXTS)
    bodies = [r.body for r in srv.requests_to("text-rerank")]
    assert [len(b["input"]["documents"]) for b in bodies] == [2, 2, 2]
    assert sorted(b["input"]["documents"] for b in bodies) == sorted([TEXTS[0:2], TEXTS[2:4], TEXTS[4:6]])
    assert [i for i, _ in pairs] == _expected_order()
    assert len([r for r in records if r.error is None]) == 3  # one record per HTTP request


def test_tei_split_default_client_batch(servers):
    srv = servers["tei"].configure(max_documents=2)
    with pytest.raises(BackendError, match="HTTP 413"):
        make(servers, "tei").rank(QUERY, TEXTS)
    srv.reset()
    srv.configure(max_documents=2)
    pairs = make(servers, "tei", max_documents=2).rank(QUERY, TEXTS)
    assert [len(r.body["texts"]) for r in srv.requests] == [2, 2, 2]
    assert [i for i, _ in pairs] == _expected_order()


def test_split_over_max_request_tokens(servers):
    srv = servers["cohere"].configure(max_tokens=60)
    with pytest.raises(BackendError, match="tokens > limit"):
        make(servers, "cohere").rank(QUERY, TEXTS)
    srv.reset()
    srv.configure(max_tokens=60)
    pairs = make(servers, "cohere", max_request_tokens=60).rank(QUERY, TEXTS)
    sent = [r.body["documents"] for r in srv.requests]
    assert len(sent) > 1 and sorted(t for batch in sent for t in batch) == sorted(TEXTS)
    assert all(count_tokens(QUERY) * len(b) + sum(count_tokens(t) for t in b) <= 60 for b in sent)
    assert [i for i, _ in pairs] == _expected_order()


def test_duplicates_are_sent_once(servers):
    rr = make(servers, "cohere")
    pairs = rr.rank(QUERY, [TEXTS[1], TEXTS[0], TEXTS[1]])
    assert servers["cohere"].requests[0].body["documents"] == [TEXTS[1], TEXTS[0]]
    assert [i for i, _ in pairs] == [0, 2, 1] and pairs[0][1] == pairs[1][1]


def test_max_concurrency_is_respected_sync_and_async(servers):
    srv = servers["cohere"].configure(delay=0.15)
    rr = make(servers, "cohere", max_documents=1, max_concurrency=2)
    pairs = rr.rank(QUERY, TEXTS)
    assert len(srv.requests) == 6 and srv.max_in_flight == 2
    assert [i for i, _ in pairs] == _expected_order()
    srv.reset()
    srv.configure(delay=0.15)
    assert asyncio.run(rr.arank(QUERY, TEXTS)) == pairs
    assert len(srv.requests) == 6 and srv.max_in_flight == 2


def test_logit_scores_go_through_sigmoid(servers):
    servers["cohere"].configure(scale="logit")  # like llama-server: raw logits, some negative
    docs = make(servers, "cohere").compress_documents([Document(page_content=t) for t in TEXTS], QUERY)
    raws = [d.metadata["raw_score"] for d in docs]
    assert min(raws) < 0
    for d in docs:
        assert d.metadata["relevance_score"] == pytest.approx(1 / (1 + 2.718281828459045 ** -d.metadata["raw_score"]))
    assert [d.metadata["rerank_index"] for d in docs] == _expected_order()


def test_retry_then_success(servers, records):
    servers["cohere"].configure(fail_first=[503, 429])
    pairs = make(servers, "cohere").rank(QUERY, TEXTS)
    assert [i for i, _ in pairs] == _expected_order()
    assert len(servers["cohere"].requests) == 3 and records[-1].attempts == 3


def test_http_error_is_backend_error_without_key(servers, test_api_key, records):
    servers["cohere"].configure(fail_first=[503])
    with pytest.raises(BackendError) as info:
        make(servers, "cohere", max_retries=0).rank(QUERY, TEXTS)
    message = str(info.value)
    assert "HTTP 503" in message and "'rr'" in message and servers["cohere"].base_url + "/rerank" in message
    assert test_api_key not in message
    assert records[-1].error and records[-1].cost == 0


def test_wrong_key_is_backend_error_without_key(servers, monkeypatch):
    monkeypatch.setenv("WRONG_RERANK_KEY", "sk-wrong-0000-secret")
    with pytest.raises(BackendError) as info:
        make(servers, "dashscope", api_key="${WRONG_RERANK_KEY}").rank(QUERY, TEXTS)
    assert "HTTP 401" in str(info.value) and "sk-wrong-0000-secret" not in str(info.value)


def test_timeout_is_backend_error_naming_model_and_url(servers, test_api_key):
    servers["tei"].configure(delay=1.0)
    rr = make(servers, "tei", timeout=0.2, max_retries=0)
    with pytest.raises(BackendError) as info:
        rr.rank(QUERY, TEXTS)
    message = str(info.value)
    assert "Timeout" in message and "'rr'" in message and servers["tei"].url + "/rerank" in message
    assert test_api_key not in message
    with pytest.raises(BackendError, match="Timeout"):
        asyncio.run(rr.arank(QUERY, TEXTS))


def test_unreachable_server_is_backend_error():
    reg = Registry({"rr": ModelConfig(name="rr", model_type="rerank", server_type="openai", model="m",
                                      url="http://127.0.0.1:9/v1", max_retries=0)})
    with pytest.raises(BackendError, match="ConnectError from http://127.0.0.1:9/v1/rerank"):
        reg.reranker("rr").rank(QUERY, TEXTS)


def test_missing_results_fall_back_and_say_so(servers):
    # extra_body overrides top_n: the server returns only the best result
    rr = make(servers, "cohere", options={"extra_body": {"top_n": 1}})
    out = rr.compress_documents([Document(page_content=t) for t in TEXTS], QUERY)
    assert out[0].metadata["rerank_index"] == _expected_order()[0] and "rerank_fallback" not in out[0].metadata
    rest = out[1:]
    assert [d.metadata["rerank_index"] for d in rest] == sorted(d.metadata["rerank_index"] for d in rest)
    assert all(d.metadata["rerank_fallback"] and d.metadata["relevance_score"] == 0.0 for d in rest)
    assert "missing" in rest[0].metadata["rerank_note"]


def test_async_matches_sync_for_every_style(servers):
    for style in EXPECTED_BODIES:
        rr = make(servers, style)
        docs = [Document(page_content=t) for t in TEXTS]
        sync = [d.metadata["rerank_index"] for d in rr.compress_documents(docs, QUERY)]
        result = asyncio.run(rr.acompress_documents(docs, QUERY))
        assert [d.metadata["rerank_index"] for d in result] == sync == _expected_order()
