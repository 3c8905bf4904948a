"""A fake Ollama (native API) server whose text and vectors come from the tiny GGUF via llama_cpp.

Routes: `POST /api/chat`, `POST /api/embed`, `GET /api/tags`, `POST /api/show`, `GET /api/version`.
- /api/chat: `stream` defaults to true (NDJSON: one object per generated token, then a final
  `{"done": true, "done_reason", "prompt_eval_count", "eval_count", ...durations}`); `stream: false`
  returns one object. `think` true → `message.thinking` (generated first, at most `THINK_TOKENS`
  tokens); `think` false → none; `think` absent → `thinking_default` (True, as qwen3 in Ollama).
  `options.num_predict` caps content tokens (done_reason "length"), default `DEFAULT_PREDICT` tokens;
  `options.num_ctx` silently truncates the prompt to its last num_ctx tokens (like Ollama).
  `format` ("json" or a JSON schema) → deterministic JSON content (schema-shaped), not generated.
  `tools` → a call to the first tool unless the last message is a tool result.
  Generation is real (tiny random model, printable-ASCII logit bias so text is valid and non-empty).
- /api/embed: `input` str | [str] → L2-normalised mean-pooled 64-dim vectors from the model;
  `dimensions` truncates (and renormalises).
- Unknown model → 404 `{"error": "model \"x\" not found, try pulling it first"}`.
No auth by default (Ollama has none); pass `api_key` to require `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._http import JSONHandler, RecordingServer
from ._util import sample_from_schema

CHAT_MODELS = {"qwen3:4b": "qwen3", "llama3.2:1b": "llama"}
EMBED_MODELS = {"qwen3-embedding:0.6b": "qwen3", "nomic-embed-text:latest": "nomic-bert"}
DEFAULT_PREDICT = 24
THINK_TOKENS = 8
MAX_PROMPT = 1500  # the tiny model has n_ctx 2048
# byte tokens <0x20>..<0x7E> are ids 3+0x20 .. 3+0x7E in tests/servers/tiny_gguf.py
PRINTABLE_BIAS = {3 + b: 30.0 for b in range(0x20, 0x7F)} | {2: -100.0}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class _Handler(JSONHandler):
    owner: FakeOllama

    def auth_error(self) -> dict:
        return {"error": "unauthorized"}

    def route(self, method: str, path: str, body: Any) -> None:
        if method == "GET" and path == "/api/version":
            return self.send_json(200, {"version": "0.12.6"})
        if method == "GET" and path == "/api/tags":
            return self.send_json(200, {"models": [self.owner.model_entry(m) for m in self.owner.models]})
        if method == "POST" and path == "/api/show":
            return self.show(body)
        if method == "POST" and path == "/api/chat":
            return self.chat(body)
        if method == "POST" and path == "/api/embed":
            return self.embed(body)
        if method == "GET" and path == "/":
            return self.send_json(200, "Ollama is running")
        self.send_json(404, {"error": "404 page not found"})

    def _model(self, body: dict) -> str | None:
        name = self.owner.resolve(body.get("model") or body.get("name") or "")
        if name is None:
            self.send_json(404, {"error": f'model "{body.get("model")}" not found, try pulling it first'})
        return name

    def show(self, body: dict) -> None:
        name = self._model(body)
        if name is None:
            return
        family = self.owner.models[name]
        embed = name in EMBED_MODELS
        caps = ["embedding"] if embed else ["completion", "tools", "thinking"]
        self.send_json(
            200,
            {
                "modelfile": f"FROM {name}\n",
                "parameters": "temperature 0.6",
                "template": "{{ .Prompt }}",
                "details": self.owner.model_entry(name)["details"],
                "capabilities": caps,
                "model_info": {
                    "general.architecture": family,
                    f"{family}.context_length": 40960,
                    f"{family}.embedding_length": 64,
                },
                "modified_at": _now(),
            },
        )

    def chat(self, body: dict) -> None:
        name = self._model(body)
        if name is None:
            return
        if name in EMBED_MODELS:
            return self.send_json(400, {"error": f'"{name}" does not support chat'})
        messages = body.get("messages") or []
        opts = body.get("options") or {}
        stream = body.get("stream", True)
        think = body.get("think")
        think = self.owner.thinking_default if think is None else bool(think)
        num_predict = opts.get("num_predict")
        capped = num_predict is not None and num_predict >= 0
        n_max = num_predict if capped else DEFAULT_PREDICT
        fmt, tools = body.get("format"), body.get("tools") or []
        t0 = time.monotonic_ns()
        prompt = self.owner.prompt_tokens(messages, opts.get("num_ctx"))

        def frame(message: dict, done: bool) -> dict:
            return {
                "model": name,
                "created_at": _now(),
                "message": {"role": "assistant", **message},
                "done": done,
            }

        with self.owner.gen_lock:  # llama_cpp.Llama is not thread-safe
            thinking = self.owner.generate(prompt, THINK_TOKENS) if think else []
            fixed: str | None = None
            tool_calls = None
            if fmt:
                schema = fmt if isinstance(fmt, dict) else {}
                fixed = json.dumps(sample_from_schema(schema) if schema else {"answer": "ok"})
            elif tools and messages and messages[-1].get("role") != "tool":
                fn = tools[0]["function"]
                tool_calls = [
                    {
                        "function": {
                            "name": fn["name"],
                            "arguments": sample_from_schema(fn.get("parameters") or {}),
                        }
                    }
                ]
                fixed = ""
            if stream:
                self.start_chunked("application/x-ndjson")
                for piece in thinking:
                    self.ndjson(frame({"content": "", "thinking": piece}, False))
            pieces: list[str] = []
            token_iter = iter([fixed]) if fixed is not None else self.owner.generate_iter(prompt, n_max)
            for piece in token_iter:
                pieces.append(piece)
                if stream and piece:
                    self.ndjson(frame({"content": piece}, False))
        eval_count = len(thinking) + (len(pieces) if fixed is None else max(1, len(fixed) // 4))
        dur = time.monotonic_ns() - t0
        final = frame({"content": ""}, True)
        if not stream:
            final["message"]["content"] = "".join(pieces)
            if thinking:
                final["message"]["thinking"] = "".join(thinking)
        if tool_calls:
            final["message"]["tool_calls"] = tool_calls
        final.update(
            done_reason="length" if capped and fixed is None and len(pieces) >= n_max else "stop",
            total_duration=dur,
            load_duration=1000,
            prompt_eval_count=len(prompt),
            prompt_eval_duration=dur // 3,
            eval_count=eval_count,
            eval_duration=dur // 2,
        )
        if stream:
            self.ndjson(final)
            return self.end_chunked()
        self.send_json(200, final)

    def embed(self, body: dict) -> None:
        name = self._model(body)
        if name is None:
            return
        inp = body.get("input")
        texts = [inp] if isinstance(inp, str) else inp
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return self.send_json(400, {"error": "invalid input type"})
        t0 = time.monotonic_ns()
        vecs, n_tokens = self.owner.embed(texts, body.get("dimensions"))
        self.send_json(
            200,
            {
                "model": name,
                "embeddings": vecs,
                "total_duration": time.monotonic_ns() - t0,
                "load_duration": 1000,
                "prompt_eval_count": n_tokens,
            },
        )


class FakeOllama(RecordingServer):
    handler_class = _Handler

    def __init__(
        self,
        model_path: str | Path,
        api_key: str | None = None,
        *,
        thinking_default: bool = True,
        seed: int = 1234,
    ):
        import llama_cpp

        self.models = {**CHAT_MODELS, **EMBED_MODELS}
        self.thinking_default = thinking_default
        self.gen_lock = threading.Lock()
        self.embed_lock = threading.Lock()
        common = {
            "model_path": str(model_path),
            "verbose": False,
            "n_ctx": 2048,
            "n_threads": 1,
            "n_threads_batch": 1,
        }
        self.llm = llama_cpp.Llama(seed=seed, **common)
        self.embedder = llama_cpp.Llama(embedding=True, **common)
        self._thinking_default = thinking_default
        super().__init__(api_key)

    def reset(self) -> None:
        """Clear recorded requests and restore `thinking_default`."""
        super().reset()
        self.thinking_default = self._thinking_default

    @property
    def base_url(self) -> str:
        return self.url

    def resolve(self, name: str) -> str | None:
        for cand in (name, f"{name}:latest"):
            if cand in self.models:
                return cand
        return None

    def model_entry(self, name: str) -> dict:
        family = self.models[name]
        return {
            "name": name,
            "model": name,
            "modified_at": _now(),
            "size": 475040,
            "digest": f"{abs(hash(name)):064x}"[:64],
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": family,
                "families": [family],
                "parameter_size": "0.1M",
                "quantization_level": "F32",
            },
        }

    def prompt_tokens(self, messages: list[dict], num_ctx: int | None) -> list[int]:
        text = (
            "".join(
                f"<|im_start|>{m.get('role', 'user')}\n{m.get('content') or ''}<|im_end|>\n" for m in messages
            )
            + "<|im_start|>assistant\n"
        )
        toks = self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        keep = min(num_ctx or MAX_PROMPT, MAX_PROMPT)
        return toks[-keep:]

    def generate_iter(self, prompt: list[int], n: int):
        if n <= 0:
            return
        for chunk in self.llm.create_completion(
            prompt, max_tokens=n, stream=True, temperature=0.8, logit_bias=PRINTABLE_BIAS
        ):
            choice = chunk["choices"][0]
            if choice["text"] or choice.get("finish_reason") is None:
                yield choice["text"]

    def generate(self, prompt: list[int], n: int) -> list[str]:
        return [p for p in self.generate_iter(prompt, n)]

    def embed(self, texts: list[str], dims: int | None) -> tuple[list[list[float]], int]:
        with self.embed_lock:
            raw = [self.embedder.embed(t) for t in texts]  # one at a time: batching changes the floats
            n_tokens = sum(len(self.embedder.tokenize(t.encode("utf-8"))) for t in texts)
        out = []
        for v in raw:
            v = list(v)[: dims or None]
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / norm for x in v])
        return out, n_tokens


def start(model_path: str | Path, api_key: str | None = None, **kwargs: Any) -> FakeOllama:
    return FakeOllama(model_path, api_key, **kwargs)
