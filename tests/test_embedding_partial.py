"""One failed embedding batch keeps the good ones: the error carries their vectors and names the failed
inputs; sync and async count the same usage; a knowledge base caches what did come back."""

from __future__ import annotations

import asyncio
import json

import pytest

from module_ai import BackendError, load_registry, track_usage

POISON = "POISON-TEXT"
TEXTS = [f"文本 {i} 的内容" for i in range(50)]
TEXTS[23] = POISON


@pytest.fixture()
def emb(tmp_path, fault_server, test_api_key):
    fault_server.configure(faults=lambda k, path, body: "400" if POISON in json.dumps(body) else None)
    (tmp_path / "e.json").write_text(json.dumps({
        "model_type": "embedding", "server_type": "openai", "model": "fault-model", "url": fault_server.base_url,
        "api_key": test_api_key, "max_batch": 10, "max_concurrency": 3, "max_retries": 0, "pay_in": 1.0}))
    return load_registry(tmp_path, builtin=False).embeddings("e")


def _check(err: BackendError) -> None:
    assert err.failed_inputs == list(range(20, 30))
    vectors = err.partial_vectors
    assert len(vectors) == 50 and [i for i, v in enumerate(vectors) if v is None] == list(range(20, 30))
    assert "1 of 5 embedding batches failed (inputs 20-29)" in str(err)


def test_sync_and_async_keep_good_batches_and_count_the_same(emb):
    with track_usage() as sync_usage, pytest.raises(BackendError) as sync_err:
        emb.embed_documents(TEXTS)
    _check(sync_err.value)

    async def run():
        with track_usage() as usage, pytest.raises(BackendError) as err:
            await emb.aembed_documents(TEXTS)
        return usage, err.value

    async_usage, async_err = asyncio.run(run())
    _check(async_err.value if hasattr(async_err, "value") else async_err)
    for usage in (sync_usage, async_usage):
        assert (usage.total.calls, usage.total.errors) == (5, 1)
    assert async_usage.total.input_tokens == sync_usage.total.input_tokens > 0  # the 40 embedded texts, billed
    assert async_usage.total.total_cost == pytest.approx(sync_usage.total.total_cost)


def test_knowledge_base_caches_the_good_batches(emb, tmp_path, fault_server):
    from langchain_core.documents import Document

    from module_ai.retrieval import KnowledgeBase

    docs = [Document(t, metadata={"source": f"s{i}"}) for i, t in enumerate(TEXTS)]
    with pytest.raises(BackendError):
        KnowledgeBase.build(docs, tmp_path / "kb", emb, batch_size=50, chunk_size=100, chunk_overlap=0,
                            show_progress=False)
    fault_server.configure(faults=None)
    before = fault_server.stats()["total"]
    kb = KnowledgeBase.build(docs, tmp_path / "kb", emb, batch_size=50, chunk_size=100, chunk_overlap=0,
                             show_progress=False)
    assert kb.last_report.embedded == 10 and len(kb.documents()) == 50  # only the failed batch again
    assert fault_server.stats()["total"] - before == 1
