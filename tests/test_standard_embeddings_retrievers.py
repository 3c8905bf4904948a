"""LangChain's own standard tests (``langchain-tests``) for module_ai's embeddings and the KB retriever.

- ``EmbeddingsUnitTests`` / ``EmbeddingsIntegrationTests``: local (all-MiniLM-L6-v2 in-process), openai
  (``OpenAICompatibleEmbeddings``, against the real llama-cpp-python server and the local DashScope
  server) and ollama (``ManagedOllamaEmbeddings``, local Ollama server); each built with its
  ``module_ai_config`` as the registry builds it (usage, limits, batching on).
- ``RetrieversIntegrationTests``: ``KnowledgeBase.as_retriever`` in each mode (hybrid, bm25, dense).
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from module_ai.backends._openai_transport import httpx_clients
from module_ai.backends.local import _embeddings_class as local_class
from module_ai.backends.ollama import _embeddings_class as ollama_class
from module_ai.backends.openai import _embeddings_class as openai_class
from module_ai.config import ModelConfig
from module_ai.registry import BUILTIN_CONFIG_DIR, load_registry

UNIT_URL = "http://127.0.0.1:8000/v1"


def _minilm() -> ModelConfig:
    return load_registry(BUILTIN_CONFIG_DIR / "minilm.json", builtin=False).config("minilm")


def _openai_params(cfg: ModelConfig, key: str | None) -> dict[str, Any]:
    """What ``build_embeddings`` passes for this config."""
    params = {"model": cfg.model, "base_url": cfg.url, "api_key": key or "not-needed", "max_retries": 0,
              "check_embedding_ctx_length": False, "chunk_size": cfg.max_batch or 64,
              "model_kwargs": {"encoding_format": "float"}, "module_ai_config": cfg}
    if cfg.dimensions:
        params["dimensions"] = cfg.dimensions
    if cfg.transport == "httpx":  # module_ai's own transport, as build_embeddings wires it
        params.update(httpx_clients(cfg, params, "/embeddings"))
    return params


# ---------------------------------------------------------------- unit tests

class TestOpenAICompatibleEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self):
        return openai_class()

    @property
    def embedding_model_params(self) -> dict:
        return {"model": "text-embedding-v4", "base_url": UNIT_URL, "api_key": "sk-unit",
                "check_embedding_ctx_length": False}

    @property
    def init_from_env_params(self):
        return ({"OPENAI_API_KEY": "sk-from-env", "OPENAI_API_BASE": UNIT_URL}, {"model": "text-embedding-v4"},
                {"openai_api_key": "sk-from-env", "openai_api_base": UNIT_URL})


class TestOllamaEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self):
        return ollama_class()

    @property
    def embedding_model_params(self) -> dict:
        return {"model": "qwen3-embedding:0.6b", "base_url": "http://127.0.0.1:11434"}

    @property
    def init_from_env_params(self):
        return ({"OLLAMA_HOST": "http://127.0.0.1:11434"}, {"model": "qwen3-embedding:0.6b"},
                {"model": "qwen3-embedding:0.6b"})


class TestLocalEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self):
        return local_class()

    @property
    def embedding_model_params(self) -> dict:
        return {"module_ai_config": _minilm()}

    @pytest.fixture(autouse=True)
    def _no_env(self, request):
        if request.node.name == "test_init_from_env":
            pytest.skip("not a server limit: the in-process model is named by its config file; it reads no "
                        "environment variables, so there is nothing to initialise from the environment")


# ---------------------------------------------------------------- integration tests

class TestOpenAICompatibleEmbeddingsLlamaCpp(EmbeddingsIntegrationTests):
    @pytest.fixture(autouse=True)
    def _server(self, llama_server):
        type(self).url = llama_server

    @property
    def embeddings_class(self):
        return openai_class()

    @property
    def embedding_model_params(self) -> dict:
        cfg = ModelConfig(name="llama-emb", model_type="embedding", server_type="openai", model="tiny",
                          url=self.url, max_retries=0, max_batch=8)
        return _openai_params(cfg, None)


class TestOpenAICompatibleEmbeddingsDashScope(EmbeddingsIntegrationTests):
    @pytest.fixture(autouse=True)
    def _server(self, dashscope_server, test_api_key):
        type(self).url, type(self).key = dashscope_server.base_url, test_api_key

    @property
    def embeddings_class(self):
        return openai_class()

    @property
    def embedding_model_params(self) -> dict:
        cfg = ModelConfig(name="ds-emb", model_type="embedding", server_type="openai", model="text-embedding-v4",
                          url=self.url, max_retries=0, max_batch=10, dimensions=256)
        return _openai_params(cfg, self.key)


class TestOllamaEmbeddings(EmbeddingsIntegrationTests):
    @pytest.fixture(autouse=True)
    def _server(self, ollama_server):
        type(self).url = ollama_server.url

    @property
    def embeddings_class(self):
        return ollama_class()

    @property
    def embedding_model_params(self) -> dict:
        cfg = ModelConfig(name="ollama-emb", model_type="embedding", server_type="ollama",
                          model="qwen3-embedding:0.6b", url=self.url, max_retries=0, max_batch=2)
        return {"model": cfg.model, "base_url": self.url, "module_ai_config": cfg}


class TestLocalEmbeddings(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self):
        return local_class()

    @property
    def embedding_model_params(self) -> dict:
        return {"module_ai_config": _minilm(), "chunk_size": 16}


# ---------------------------------------------------------------- the knowledge-base retriever

TEXTS = [
    "安装前先下载安装包，然后运行安装程序。",
    "Linux 上用 pip 安装 module_ai，再运行 module-ai demo。",
    "安装失败时请检查网络连接和磁盘空间。",
    "升级时重新安装即可，配置文件会保留。",
    "卸载后再次安装不会丢失知识库。",
    "RAG 把检索到的文档交给模型回答问题。",
]


@pytest.fixture(scope="module")
def knowledge_base(tmp_path_factory):
    from langchain_core.documents import Document

    from module_ai import KnowledgeBase

    reg = load_registry(BUILTIN_CONFIG_DIR, builtin=False)
    docs = [Document(text, metadata={"source": f"doc{i}.txt"}) for i, text in enumerate(TEXTS)]
    kb = KnowledgeBase.build(docs, tmp_path_factory.mktemp("kb") / "kb", reg.embeddings("minilm"),
                             embedding_model_name="minilm", show_progress=False)
    yield kb
    kb.close()


class _KBRetriever(RetrieversIntegrationTests):
    mode = "hybrid"

    @pytest.fixture(autouse=True)
    def _kb(self, knowledge_base):
        type(self).kb = knowledge_base

    @property
    def retriever_constructor(self):
        return self.kb.as_retriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"k": 2, "mode": self.mode}

    @property
    def retriever_query_example(self) -> str:
        return "如何安装"


class TestKnowledgeBaseRetrieverHybrid(_KBRetriever):
    mode = "hybrid"


class TestKnowledgeBaseRetrieverBM25(_KBRetriever):
    mode = "bm25"


class TestKnowledgeBaseRetrieverDense(_KBRetriever):
    mode = "dense"
