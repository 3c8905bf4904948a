"""A fake DashScope (Alibaba Model Studio / 百炼) server for tests, stdlib only.

Routes (all require `Authorization: Bearer <api_key>`, else 401):
- `GET  /compatible-mode/v1/models`
- `POST /compatible-mode/v1/chat/completions`: open-source-qwen3-like. Thinking defaults ON
  (`thinking_default`); a non-streaming call without top-level `enable_thinking: false` → 400
  "parameter.enable_thinking must be set to false for non-streaming calls"; JSON mode with thinking → 400;
  `tool_choice` required/object with thinking → 400. Streams `delta.reasoning_content` chunks first, then
  `delta.content`; with `stream_options.include_usage` a final chunk with `choices: []` and usage.
  Honours `max_tokens` only; `max_completion_tokens` is recorded but ignored unless
  `honour_max_completion_tokens=True` (unverified assumption about the real service, like llama.cpp's). One "token" = one piece of `CONTENT_PIECES` (Chinese text), cycled.
  `thinking_budget` caps reasoning pieces. `response_format` json_object/json_schema (thinking off) returns
  JSON (schema-shaped sample). With `tools` (thinking off or tool_choice auto) it calls the named/first
  tool, unless the last message is a `tool` result, then it answers in text.
- `POST /compatible-mode/v1/embeddings`: input str or list[str] (token-id arrays → 400), at most
  `max_batch` (10) rows, `dimensions` in {2048,1536,1024(default),768,512,256,128,64}; deterministic unit
  vectors from a hash of the text; `encoding_format: base64` honoured (float32 LE), else floats.
- `POST /api/v1/services/rerank/text-rerank/text-rerank` (native) and `POST /compatible-api/v1/reranks`
  (flat body): score = share of the query's distinct characters found in the document (0..1);
  > 500 documents → 400.
Model access (chat and embeddings), like the real service: a model in `denied_models` → 403 AccessDenied;
with `known_models_only=True` a model not in `MODELS` → 404 model_not_found (off by default so tests may
use any model id).
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from typing import Any

from ._http import JSONHandler, RecordingServer
from ._util import count_tokens, hash_vector, lexical_score, sample_from_schema, text_of

CONTENT_PIECES = ["你好", "，", "我是", "测试", "模型", "。"]
REASONING_PIECES = ["嗯", "，", "用户", "在", "打招呼", "，", "我", "应该", "礼貌", "回应", "。"]
DEFAULT_CONTENT_TOKENS = 12
NON_STREAM_REASONERS = frozenset({"deepseek-reasoner"})
"""Models that think in non-streaming calls too and return ``message.reasoning_content`` (as DeepSeek's
``deepseek-reasoner`` does); every other model with thinking on needs ``stream: true``."""
EMBED_DIMS = (2048, 1536, 1024, 768, 512, 256, 128, 64)
MODELS = [
    "qwen3-4b",
    "qwen-plus",
    "qwen-flash",
    "qwen3-vl-plus",
    "text-embedding-v4",
    "text-embedding-v3",
    "gte-rerank-v2",
    "qwen3-rerank",
    "deepseek-reasoner",
]
THINKING_NON_STREAM_MSG = "parameter.enable_thinking must be set to false for non-streaming calls"
JSON_THINKING_MSG = "Json mode response is not supported when enable_thinking is true"
TOOL_CHOICE_THINKING_MSG = (
    "The tool_choice parameter does not support being set to required or object in thinking mode"
)


def _err(message: str, code: str = "invalid_parameter_error") -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


class _Handler(JSONHandler):
    owner: FakeDashScope

    def auth_error(self) -> dict:
        if self.path.startswith("/api/"):
            return {
                "code": "InvalidApiKey",
                "message": "Invalid API-key provided.",
                "request_id": str(uuid.uuid4()),
            }
        return _err("Incorrect API key provided. ", "invalid_api_key")

    def route(self, method: str, path: str, body: Any) -> None:
        p = path.rstrip("/")
        if method == "GET" and p == "/compatible-mode/v1/models":
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "system"} for m in MODELS]
            return self.send_json(200, {"object": "list", "data": data})
        if method == "POST" and p in ("/compatible-mode/v1/chat/completions", "/compatible-mode/v1/embeddings"):
            if self.model_refused(body.get("model")):
                return None
            return self.chat(body) if p.endswith("/completions") else self.embeddings(body)
        if method == "POST" and p == "/api/v1/services/rerank/text-rerank/text-rerank":
            return self.rerank(body, native=True)
        if method == "POST" and p == "/compatible-api/v1/reranks":
            return self.rerank(body, native=False)
        return super().route(method, path, body)

    def model_refused(self, model: Any) -> bool:
        """403 for a denied model, 404 for an unknown one (with `known_models_only`), as DashScope answers."""
        if model in self.owner.denied_models:
            self.send_json(403, {"error": {"message": "Access denied, please make sure your account is in good "
                                           "standing and the model is activated.", "type": "AccessDenied",
                                           "param": None, "code": "AccessDenied"}})
            return True
        if self.owner.known_models_only and model not in MODELS:
            self.send_json(404, _err(f"The model `{model}` does not exist or you do not have access to it.",
                                     "model_not_found"))
            return True
        return False

    # chat ------------------------------------------------------------------------------------------
    def chat(self, body: dict) -> None:
        messages = body.get("messages") or []
        if not body.get("model") or not messages:
            return self.send_json(400, _err("model and messages are required"))
        stream = bool(body.get("stream"))
        thinking = bool(body.get("enable_thinking", self.owner.thinking_default))
        rf = (body.get("response_format") or {}).get("type")
        tools, tool_choice = body.get("tools") or [], body.get("tool_choice")
        if thinking and not stream and body["model"] not in NON_STREAM_REASONERS:
            return self.send_json(400, _err(THINKING_NON_STREAM_MSG))
        if thinking and rf in ("json_object", "json_schema"):
            return self.send_json(400, _err(JSON_THINKING_MSG))
        if thinking and tools and (tool_choice == "required" or isinstance(tool_choice, dict)):
            return self.send_json(400, _err(TOOL_CHOICE_THINKING_MSG))

        max_tokens = body.get("max_tokens")
        if max_tokens is None and self.owner.honour_max_completion_tokens:
            max_tokens = body.get("max_completion_tokens")
        n = DEFAULT_CONTENT_TOKENS if max_tokens is None else min(int(max_tokens), DEFAULT_CONTENT_TOKENS)
        finish = "length" if max_tokens is not None and int(max_tokens) < DEFAULT_CONTENT_TOKENS else "stop"
        content_pieces = [CONTENT_PIECES[i % len(CONTENT_PIECES)] for i in range(max(n, 0))]
        tool_call = None
        if rf == "json_object":
            content_pieces = [json.dumps({"answer": "你好，我是测试模型。"}, ensure_ascii=False)]
            finish = "stop"
        elif rf == "json_schema":
            schema = (body["response_format"].get("json_schema") or {}).get("schema", {})
            content_pieces, finish = [json.dumps(sample_from_schema(schema), ensure_ascii=False)], "stop"
        elif tools and tool_choice != "none" and messages[-1].get("role") != "tool":
            fn = tools[0]["function"]
            if isinstance(tool_choice, dict):
                want = tool_choice.get("function", {}).get("name")
                fn = next((t["function"] for t in tools if t["function"]["name"] == want), fn)
            args = json.dumps(sample_from_schema(fn.get("parameters") or {}), ensure_ascii=False)
            tool_call = {
                "id": "call_" + uuid.uuid4().hex[:20],
                "type": "function",
                "function": {"name": fn["name"], "arguments": args},
            }
            content_pieces, finish = [], "tool_calls"
        budget = body.get("thinking_budget")
        reasoning = REASONING_PIECES[: budget if budget is not None else None] if thinking else []

        prompt_tokens = sum(count_tokens(text_of(m.get("content"))) + 4 for m in messages)
        completion_tokens = len(reasoning) + (
            len(content_pieces) if not rf else count_tokens("".join(content_pieces))
        )
        if tool_call:
            completion_tokens = count_tokens(tool_call["function"]["arguments"]) + 5
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        if thinking:
            usage["completion_tokens_details"] = {"reasoning_tokens": len(reasoning)}
        cid, created, model = "chatcmpl-" + uuid.uuid4().hex, int(time.time()), body["model"]
        if not stream:
            msg: dict[str, Any] = {"role": "assistant", "content": "".join(content_pieces)}
            if reasoning:
                msg["reasoning_content"] = "".join(reasoning)
            if tool_call:
                msg["tool_calls"] = [tool_call]
            return self.send_json(
                200,
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}],
                    "usage": usage,
                    "system_fingerprint": None,
                },
            )

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict, finish_reason: str | None = None) -> dict:
            c = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
                "system_fingerprint": None,
            }
            if include_usage:
                c["usage"] = None
            return c

        self.start_chunked("text/event-stream; charset=utf-8")
        first = {"role": "assistant", "content": ""}
        if thinking:
            first["reasoning_content"] = ""
        self.sse(chunk(first))
        for piece in reasoning:
            self.sse(chunk({"content": None, "reasoning_content": piece}))
        for piece in content_pieces:
            self.sse(chunk({"content": piece, "reasoning_content": None} if thinking else {"content": piece}))
        if tool_call:
            self.sse(chunk({"content": None, "tool_calls": [dict(tool_call, index=0)]}))
        self.sse(chunk({"content": ""}, finish))
        if include_usage:
            self.sse(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                    "system_fingerprint": None,
                }
            )
        self.sse("[DONE]")
        self.end_chunked()

    # embeddings ------------------------------------------------------------------------------------
    def embeddings(self, body: dict) -> None:
        inp = body.get("input")
        if isinstance(inp, str):
            texts = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(x, str) for x in inp):
            texts = inp
        else:
            return self.send_json(
                400,
                _err(
                    "<400> InternalError.Algo.InvalidParameter: Value error, "
                    "contents is neither str nor list of str.: input.contents"
                ),
            )
        if len(texts) > self.owner.max_batch:
            return self.send_json(
                400,
                _err(
                    "<400> InternalError.Algo.InvalidParameter: Value error, batch size is invalid, it should "
                    f"not be larger than {self.owner.max_batch}.: input.contents"
                ),
            )
        dims = body.get("dimensions", 1024)
        if dims not in EMBED_DIMS:
            return self.send_json(
                400,
                _err(
                    f"<400> InternalError.Algo.InvalidParameter: Value error, "
                    f"dimension {dims} is invalid: parameters.dimension"
                ),
            )
        data = []
        for i, t in enumerate(texts):
            vec: Any = hash_vector(t, dims)
            if body.get("encoding_format") == "base64":
                vec = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        n = sum(count_tokens(t) for t in texts)
        self.send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": n, "total_tokens": n},
                "id": str(uuid.uuid4()),
            },
        )

    # rerank ----------------------------------------------------------------------------------------
    def rerank(self, body: dict, native: bool) -> None:
        src = body.get("input", {}) if native else body
        params = body.get("parameters", {}) if native else body
        query, docs = src.get("query"), src.get("documents")
        rid = str(uuid.uuid4())

        def bad(msg: str) -> None:
            payload = {"code": "InvalidParameter", "message": msg, "request_id": rid} if native else _err(msg)
            self.send_json(400, payload)

        if not isinstance(query, str) or not query or not isinstance(docs, list) or not docs:
            return bad("query and documents are required")
        if len(docs) > self.owner.max_rerank_docs:
            return bad(f"The number of documents exceeds the limit of {self.owner.max_rerank_docs}.")
        texts = [d.get("text", "") if isinstance(d, dict) else str(d) for d in docs]
        ranked = sorted(range(len(texts)), key=lambda i: (-lexical_score(query, texts[i]), i))
        top_n = params.get("top_n") or len(texts)
        results = []
        for i in ranked[:top_n]:
            r: dict[str, Any] = {"index": i, "relevance_score": lexical_score(query, texts[i])}
            if params.get("return_documents"):
                r["document"] = {"text": texts[i]}
            results.append(r)
        q = count_tokens(query)
        usage = {"total_tokens": q * len(texts) + sum(count_tokens(t) for t in texts)}
        if native:
            return self.send_json(200, {"output": {"results": results}, "usage": usage, "request_id": rid})
        self.send_json(200, {"results": results, "usage": usage, "id": rid})


class FakeDashScope(RecordingServer):
    handler_class = _Handler

    def __init__(
        self,
        api_key: str | None = None,
        *,
        thinking_default: bool = True,
        max_batch: int = 10,
        max_rerank_docs: int = 500,
        honour_max_completion_tokens: bool = False,
        known_models_only: bool = False,
        denied_models: frozenset[str] = frozenset(),
    ):
        self.known_models_only = known_models_only
        self.denied_models = denied_models
        self.thinking_default = thinking_default
        self.honour_max_completion_tokens = honour_max_completion_tokens
        self.max_batch = max_batch
        self.max_rerank_docs = max_rerank_docs
        self._defaults = {
            "thinking_default": thinking_default,
            "max_batch": max_batch,
            "max_rerank_docs": max_rerank_docs,
            "honour_max_completion_tokens": honour_max_completion_tokens,
            "known_models_only": known_models_only,
            "denied_models": denied_models,
        }
        super().__init__(api_key)

    def reset(self) -> None:
        """Clear recorded requests and restore the settings given at start."""
        super().reset()
        self.__dict__.update(self._defaults)

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL (what `OpenAI(base_url=...)` takes)."""
        return self.url + "/compatible-mode/v1"

    @property
    def rerank_url(self) -> str:
        return self.url + "/api/v1/services/rerank/text-rerank/text-rerank"

    @property
    def compat_rerank_url(self) -> str:
        return self.url + "/compatible-api/v1/reranks"


def start(api_key: str | None = None, **kwargs: Any) -> FakeDashScope:
    return FakeDashScope(api_key, **kwargs)
