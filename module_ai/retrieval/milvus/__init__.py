"""Milvus backend of the knowledge base: Milvus Lite (a local ``.db`` file) or a Milvus cluster.

The client API is the same for both, so one code path is tested on Lite and runs at scale on a
cluster. Keyword search is Milvus' built-in BM25 (a server-side analyzer feeding a sparse field), dense
vectors come from the registry's embedding model through the same embedding cache as the embedded
index, and hybrid fusion maps onto Milvus' ``RRFRanker`` / ``WeightedRanker``.

Mixed-language corpora: the default analyzer (``language="zh"``) is jieba, which segments Chinese with
its dictionary and keeps English words and numbers whole (lower-cased, not stemmed), so Chinese,
English and mixed Chinese/English documents share one BM25 index. ``language="en"`` (Milvus'
standard tokenizer) is only for corpora without Chinese. See :mod:`module_ai.retrieval.milvus.schema`.

中文说明：``language="zh"``（默认）使用 Milvus 内置的 jieba 分词器（精确模式），中文按词典切词，英文单词与
数字整体保留并转小写，因此中文、英文以及中英混合的文档共用同一个 BM25 索引，无需按行区分语言；
``language="en"`` 使用 standard 分词器，只适合不含中文的语料。Milvus Lite 会忽略英文词干过滤器
（stemmer），Milvus 集群会执行它。

Nothing heavy is imported here: pymilvus, milvus-lite and langchain-milvus load on first use
(``pip install 'module_ai[milvus]'``).

Example:
    >>> from module_ai.retrieval.milvus import MilvusConfig, MilvusKnowledgeBase  # doctest: +SKIP
    >>> cfg = MilvusConfig(uri="https://milvus.example:19530", token="${MILVUS_TOKEN}")  # doctest: +SKIP
    >>> kb = MilvusKnowledgeBase.build("docs/", "kb/", emb, config=cfg)  # doctest: +SKIP
    >>> kb.as_retriever(k=5).invoke("如何配置代理？")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from module_ai._lazy import lazy_exports

if TYPE_CHECKING:
    from module_ai.retrieval.milvus.config import MilvusConfig
    from module_ai.retrieval.milvus.evaluate import evaluate_milvus
    from module_ai.retrieval.milvus.kb import MilvusKnowledgeBase

_EXPORTS = {
    "MilvusConfig": "module_ai.retrieval.milvus.config",
    "MilvusKnowledgeBase": "module_ai.retrieval.milvus.kb",
    "evaluate_milvus": "module_ai.retrieval.milvus.evaluate",
}

__all__ = ["MilvusConfig", "MilvusKnowledgeBase", "evaluate_milvus"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
