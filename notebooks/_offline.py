"""Notebook helper: run the tutorials offline (local test servers) or against real providers.

    from _offline import setup
    CONFIG_DIR, INFO = setup()      # mode: argument, else $MODULE_AI_NOTEBOOK_MODE (or .env), else "offline"

- ``offline`` (default): starts, once per kernel, the servers the test suite uses (tests/servers/):
  a fake DashScope (compatible-mode chat/embeddings + rerank, behaves like qwen3-4b), a fake Ollama
  (native API, backed by a tiny random GGUF), the real llama-cpp-python server on that GGUF and a
  fault-injecting OpenAI-compatible server (adds latency / 429s, for the concurrency notebook). It
  writes a temporary config folder whose model NAMES match the shipped ``configs/`` (qwen3-4b,
  text-embedding-v4, qwen3-ollama, bge-m3-ollama, qwen3-gguf, gte-rerank-v2, qwen3-rerank, ...) but
  whose URLs point at those servers, and sets ``DASHSCOPE_API_KEY=sk-offline-demo`` when unset.
  Generated text is canned or gibberish: the protocol is real, the "intelligence" is not.
- ``live``: returns the repository's ``configs/`` (keys come from the environment or ``.env``).

``INFO`` is a dict: ``mode``, ``config_dir``, ``repo_root``, ``data_dir``, ``demo_docs``,
``cmrc_dir`` (the bundled Chinese retrieval set), ``dashscope_base_url``, ``dashscope_key_env``,
``ollama_url``, ``openai_local_model`` (a registry name served by a local OpenAI-compatible server),
``bench_model`` (the chat model notebook 06 measures) and, offline, the server objects.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

__all__ = ["MODE_ENV", "setup", "show_table", "simulate_provider"]

MODE_ENV = "MODULE_AI_NOTEBOOK_MODE"
OFFLINE_KEY = "sk-offline-demo"
REPO_ROOT = Path(__file__).resolve().parent.parent
LIVE_DASHSCOPE = "https://dashscope.aliyuncs.com/compatible-mode/v1"

_state: dict[str, Any] = {}


def _mode(mode: str | None) -> str:
    if mode is None:
        try:  # the switch may live in .env like the keys
            from dotenv import find_dotenv, load_dotenv

            load_dotenv(find_dotenv(usecwd=True), override=False)
        except ImportError:
            pass
        mode = os.environ.get(MODE_ENV) or "offline"
    mode = mode.strip().lower()
    if mode not in ("offline", "live"):
        raise ValueError(f"{MODE_ENV} must be 'offline' or 'live', not {mode!r}")
    return mode


def _common_info(mode: str, config_dir: Path) -> dict[str, Any]:
    return {
        "mode": mode,
        "config_dir": config_dir,
        "repo_root": REPO_ROOT,
        "data_dir": REPO_ROOT / "data" / "retrieval",
        "demo_docs": REPO_ROOT / "module_ai" / "data" / "demo",
        "cmrc_dir": REPO_ROOT / "data" / "retrieval" / "cmrc2018-dev-zh",
        "dashscope_key_env": "DASHSCOPE_API_KEY",
    }


def setup(mode: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Prepare the notebook: returns ``(config_dir, info)`` for ``load_registry(config_dir)``."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm in a kernel without ipywidgets
    mode = _mode(mode)
    if mode == "live":
        info = _common_info(mode, REPO_ROOT / "configs")
        info.update(dashscope_base_url=LIVE_DASHSCOPE,
                    ollama_url=os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434"),
                    openai_local_model="qwen3-vllm", bench_model="qwen3-4b")
        return info["config_dir"], info
    if "info" not in _state:
        _state["info"] = _start_offline()
    return _state["info"]["config_dir"], _state["info"]


# ------------------------------------------------------------------------------ offline
def _start_offline() -> dict[str, Any]:
    from tests.servers import fake_dashscope, fake_ollama, fake_rerank, fault_openai
    from tests.servers.llama_server import start_llama_server
    from tests.servers.tiny_gguf import make_tiny_gguf

    os.environ.setdefault("DASHSCOPE_API_KEY", OFFLINE_KEY)
    os.environ.setdefault("SILICONFLOW_API_KEY", OFFLINE_KEY)
    work = Path(tempfile.mkdtemp(prefix="module_ai_notebook_"))
    gguf = make_tiny_gguf(work / "tiny.gguf")
    servers: dict[str, Any] = {}
    servers["dashscope"] = fake_dashscope.start(os.environ["DASHSCOPE_API_KEY"])
    servers["ollama"] = fake_ollama.start(gguf)
    servers["rerank"] = fake_rerank.start("cohere", os.environ["SILICONFLOW_API_KEY"])
    servers["fault"] = fault_openai.start()
    servers["llama"] = start_llama_server(gguf, log_dir=work)
    atexit.register(_stop, list(servers.values()))

    config_dir = work / "configs"
    config_dir.mkdir()
    for name, cfg in _offline_configs(servers, gguf).items():
        (config_dir / f"{name}.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=1), encoding="utf-8")

    info = _common_info("offline", config_dir)
    info.update(work_dir=work, gguf=gguf, servers=servers,
                dashscope_base_url=servers["dashscope"].base_url, ollama_url=servers["ollama"].url,
                llama_server_url=servers["llama"].base_url, openai_local_model="tiny-llama",
                bench_model="slow-api")
    return info


def _shipped(name: str) -> dict[str, Any]:
    return json.loads((REPO_ROOT / "configs" / f"{name}.json").read_text(encoding="utf-8"))


def _offline_configs(servers: dict[str, Any], gguf: Path) -> dict[str, dict[str, Any]]:
    """Shipped configs with their URLs (and model files) pointing at the local servers."""
    ds, ollama = servers["dashscope"], servers["ollama"]
    return {
        # DashScope compatible-mode (fake: qwen3-like thinking, embeddings in batches of 10)
        "qwen3-4b": {**_shipped("qwen3-4b"), "url": ds.base_url},
        "qwen-vl-plus": {**_shipped("qwen-vl-plus"), "url": ds.base_url, "thinking_style": "enable_thinking",
                         "no_think": True},
        "text-embedding-v4": {**_shipped("text-embedding-v4"), "url": ds.base_url},
        # DashScope rerank: native and OpenAI-style endpoints
        "gte-rerank-v2": {**_shipped("gte-rerank-v2"), "url": ds.url + "/api/v1"},
        "qwen3-rerank": {**_shipped("qwen3-rerank"), "url": ds.url + "/compatible-api/v1"},
        # Cohere-shaped rerank (SiliconFlow / vLLM / llama-server --reranking)
        "siliconflow-bge-reranker": {**_shipped("siliconflow-bge-reranker"), "url": servers["rerank"].base_url},
        # Ollama native API (fake, tiny GGUF behind it: gibberish text, real protocol)
        "qwen3-ollama": {**_shipped("qwen3-ollama"), "url": ollama.url, "input_tokens": 2048,
                         "out_tokens": 24},
        "bge-m3-ollama": {**_shipped("bge-m3-ollama"), "url": ollama.url, "model": "qwen3-embedding:0.6b"},
        "ollama-llm-rerank": _shipped("ollama-llm-rerank"),
        # llama.cpp: the GGUF embedded in this process, and the real llama-cpp-python server
        "qwen3-gguf": {**_shipped("qwen3-gguf"), "model": str(gguf), "input_tokens": 2048, "out_tokens": 24,
                       "options": {"n_threads": 1}},
        "tiny-llama": {"model_type": "chat", "server_type": "openai", "model": "tiny",
                       "url": servers["llama"].base_url, "input_tokens": 2048, "out_tokens": 24,
                       "thinking_style": "none", "temperature": 0.7, "timeout": 60,
                       "description": "llama-cpp-python server (OpenAI-compatible) on the tiny GGUF"},
        # a slow OpenAI-compatible API (fault server: fixed latency, injectable 429s) for notebook 06
        "slow-api": {"model_type": "chat", "server_type": "openai", "model": "fault-model",
                     "url": servers["fault"].base_url, "api_key": "${DASHSCOPE_API_KEY}",
                     "thinking_style": "none", "out_tokens": 16, "input_tokens": 32768, "pay_in": 0.3,
                     "pay_out": 1.2, "timeout": 30, "max_concurrency": 4,
                     "description": "fault-injecting test server standing in for a remote API"},
        # local rerank over the embedded MiniLM ("minilm" itself is built in)
        "minilm-rerank": _shipped("minilm-rerank"),
    }


def _stop(servers: list[Any]) -> None:
    for srv in servers:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):  # shutting down: nothing to report to
            srv.stop()


def show_table(headers: list[str], rows: list[list[Any]], digits: int = 4) -> None:
    """Display a Markdown table in the notebook (plain text elsewhere); floats get ``digits`` decimals."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    text = "\n".join(lines)
    try:
        from IPython.display import Markdown, display

        display(Markdown(text))
    except ImportError:
        print(text)


def simulate_provider(latency_ms: int = 200, capacity: int | None = None, faults: list | None = None,
                      retry_after: str = "0.2") -> None:
    """Offline only: shape the stand-in remote API behind ``slow-api`` (the fault-injecting server).

    Args:
        latency_ms: fixed latency of every request.
        capacity: requests the "provider" serves at once; more in flight get HTTP 429 (like a
            concurrency quota), ``None`` for no quota.
        faults: explicit per-request faults, e.g. ``["429", "429", None]`` (overrides ``capacity``).
        retry_after: the ``Retry-After`` header sent with a 429, in seconds.
    """
    info = _state.get("info")
    if info is None:
        raise RuntimeError("simulate_provider() works in offline mode, after setup()")
    srv = info["servers"]["fault"]
    srv.reset()
    if faults is None and capacity is not None:
        def faults(k: int, path: str, body: Any) -> str | None:  # called under the server's lock
            return "429" if srv._in_flight > capacity else None
    srv.configure(latency_ms=latency_ms, faults=faults, retry_after=retry_after)
