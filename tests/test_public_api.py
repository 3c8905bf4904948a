"""The public surface: pinned __all__, lazy heavy imports, import time."""

from __future__ import annotations

import json
import subprocess
import sys

import module_ai

EXPECTED_CORE = {
    "BackendError", "BudgetExceededError", "ConfigError", "ContextWindowError", "KnowledgeBaseError",
    "MissingAPIKeyError", "MissingDependencyError", "ModelConfig", "ModuleAIError", "Registry",
    "UnknownModelError", "estimate_tokens", "load_registry",
}


def test_all_is_sorted_and_resolvable():
    assert module_ai.__all__ == sorted(module_ai.__all__)
    assert EXPECTED_CORE <= set(module_ai.__all__)
    for name in module_ai.__all__:
        assert getattr(module_ai, name) is not None, name


def test_errors_share_one_base():
    for name in module_ai.__all__:
        obj = getattr(module_ai, name)
        if isinstance(obj, type) and name.endswith("Error"):
            assert issubclass(obj, module_ai.ModuleAIError), name


def test_import_is_light_and_lazy():
    code = (
        "import sys, time; t = time.perf_counter(); import module_ai; dt = time.perf_counter() - t; "
        "import json; heavy = ['langchain_openai', 'langchain_ollama', 'torch', 'sentence_transformers', "
        "'llama_cpp', 'bm25s', 'faiss', 'rjieba', 'jieba', 'numpy', 'langgraph', 'pymilvus', 'openai', "
        "'langchain_community', 'langchain_classic']; "
        "print(json.dumps({'t': dt, 'loaded': [m for m in heavy if m in sys.modules]}))"
    )
    runs = [json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(3)]
    assert all(r["loaded"] == [] for r in runs), runs
    assert min(r["t"] for r in runs) < 0.3, runs


def test_lazy_table_and_all_agree():
    eager = {n for n in module_ai.__all__ if n not in module_ai._LAZY}
    assert set(module_ai._LAZY) <= set(module_ai.__all__)
    assert EXPECTED_CORE <= eager
