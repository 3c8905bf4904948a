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


def _import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(subprocess.check_output([sys.executable, "-c", code], text=True))


def test_import_is_light_and_lazy():
    code = (
        "import sys; import module_ai; "
        "import json; heavy = ['langchain_openai', 'langchain_ollama', 'torch', 'sentence_transformers', "
        "'llama_cpp', 'bm25s', 'faiss', 'rjieba', 'jieba', 'numpy', 'langgraph', 'pymilvus', 'openai', "
        "'langchain', 'langchain_community', 'langchain_classic']; "
        "print(json.dumps({'loaded': [m for m in heavy if m in sys.modules]}))"
    )
    loaded = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))["loaded"]
    assert loaded == [], loaded
    # side by side in the same run (no absolute duration): module_ai against langchain_openai
    ours, reference = [], []
    for _ in range(3):
        ours.append(_import_seconds("module_ai"))
        reference.append(_import_seconds("langchain_openai"))
    assert min(ours) < 0.4 * min(reference), (ours, reference)


def test_lazy_table_and_all_agree():
    eager = {n for n in module_ai.__all__ if n not in module_ai._LAZY}
    assert set(module_ai._LAZY) <= set(module_ai.__all__)
    assert EXPECTED_CORE <= eager


def test_core_dependencies_are_the_described_ones():
    """The description names langchain, langchain-openai, langchain-community, langchain-ollama, pyyaml and
    python-dotenv: a plain install carries them (imported only where used, see the test above)."""
    import re
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert {"langchain", "langchain-openai", "langchain-community", "langchain-ollama", "pyyaml",
            "python-dotenv"} <= names, names
    assert "langchain-tests" in " ".join(project["optional-dependencies"]["dev"])
