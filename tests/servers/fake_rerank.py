"""Fake rerank servers for the Cohere/Jina, Xinference and Hugging Face TEI wire formats (stdlib only).

    srv = start("cohere")                    # or "xinference", "tei"; srv.url, srv.base_url, srv.requests
    srv.configure(max_documents=3, max_tokens=200, scale="logit", delay=0.5, fail_first=[503])

Routes: cohere and xinference `POST /v1/rerank` (base_url = url + "/v1"); tei `POST /rerank`
(base_url = url). Score = share of the query's distinct characters found in the document (0..1, as in
fake_dashscope); `scale="logit"` sends `8 * (score - 0.5)` instead (raw logits, like llama-server).
Responses follow each API's documented shape:
- cohere (vLLM/Jina): `{"id", "results": [{"index", "relevance_score", "document"?: {"text"}}],
  "usage": {"total_tokens"}}`, sorted best first, `top_n` honoured.
- xinference: same results but `document` is a plain string (or null); usage only with `return_len`:
  `"meta": {"tokens": {"input_tokens", "output_tokens"}}`.
- tei: a bare list `[{"index", "score", "text"?}]`, no usage; `raw_scores: true` sends logits.
Limits: more than `max_documents` documents -> 413 (tei) / 400; more than `max_tokens` request tokens
(query x docs + docs, counted by `_util.count_tokens`) -> 400. `fail_first=[503, ...]` answers the
first requests with those statuses (`Retry-After: 0`). `delay` seconds before answering. The server
records requests and the highest number of requests in flight at once (`max_in_flight`).
Optional `api_key` requires `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from typing import Any

from ._http import JSONHandler, RecordingServer
from ._util import count_tokens, lexical_score

STYLES = ("cohere", "xinference", "tei")
_DEFAULTS: dict[str, Any] = {"max_documents": None, "max_tokens": None, "scale": "probability", "delay": 0.0,
                             "fail_first": ()}


class _Handler(JSONHandler):
    def route(self, method: str, path: str, body: Any) -> None:
        owner: FakeRerank = self.owner  # type: ignore[assignment]
        if method != "POST" or path != owner.route_path:
            return super().route(method, path, body)
        owner.enter()
        try:
            if owner.delay:
                time.sleep(owner.delay)
            status = owner.next_failure()
            if status:
                return self.send_json(status, {"error": {"message": f"injected {status}"}},
                                      headers={"Retry-After": "0"})
            self.rerank(owner, body)
        finally:
            owner.leave()

    def rerank(self, owner: FakeRerank, body: dict) -> None:
        docs_key = "texts" if owner.style == "tei" else "documents"
        query, docs = body.get("query"), body.get(docs_key)
        if not isinstance(query, str) or not isinstance(docs, list) or not docs:
            return self.send_json(422 if owner.style == "tei" else 400,
                                  {"error": f"query and {docs_key} are required"})
        texts = [d.get("text", "") if isinstance(d, dict) else str(d) for d in docs]
        if owner.max_documents is not None and len(texts) > owner.max_documents:
            status = 413 if owner.style == "tei" else 400
            return self.send_json(status, {"error": f"batch size {len(texts)} > maximum allowed batch size "
                                                    f"{owner.max_documents}"})
        tokens = count_tokens(query) * len(texts) + sum(count_tokens(t) for t in texts)
        if owner.max_tokens is not None and tokens > owner.max_tokens:
            return self.send_json(400, {"error": f"request has {tokens} tokens > limit {owner.max_tokens}"})
        logits = owner.scale == "logit" or (owner.style == "tei" and body.get("raw_scores"))
        scores = [lexical_score(query, t) for t in texts]
        scores = [round(8 * (s - 0.5), 6) for s in scores] if logits else scores
        ranked = sorted(range(len(texts)), key=lambda i: (-scores[i], i))
        if owner.style == "tei":
            rows = [{"index": i, "score": scores[i], **({"text": texts[i]} if body.get("return_text") else {})}
                    for i in ranked]
            return self.send_json(200, rows)
        ranked = ranked[: body.get("top_n") or len(texts)]
        results = []
        for i in ranked:
            row: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
            if owner.style == "xinference":
                row["document"] = texts[i] if body.get("return_documents") else None
            elif body.get("return_documents"):
                row["document"] = {"text": texts[i]}
            results.append(row)
        reply: dict[str, Any] = {"id": str(uuid.uuid4()), "results": results}
        if owner.style == "xinference":
            usage = {"input_tokens": tokens, "output_tokens": tokens} if body.get("return_len") else None
            reply["meta"] = {"api_version": None, "billed_units": None, "tokens": usage, "warnings": None}
        else:
            reply["model"] = body.get("model")
            reply["usage"] = {"total_tokens": tokens}
        self.send_json(200, reply)


class FakeRerank(RecordingServer):
    handler_class = _Handler

    def __init__(self, style: str, api_key: str | None = None, **settings: Any):
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}")
        self.style = style
        self.route_path = "/rerank" if style == "tei" else "/v1/rerank"
        self._state = threading.Lock()
        self._defaults = {**_DEFAULTS, **settings}
        self.__dict__.update(self._defaults)
        self._in_flight = self.max_in_flight = self._failures = 0
        super().__init__(api_key)

    @property
    def base_url(self) -> str:
        """What goes in a config's `url` (the endpoint is base_url + "/rerank")."""
        return self.url if self.style == "tei" else self.url + "/v1"

    def configure(self, **settings: Any) -> FakeRerank:
        unknown = set(settings) - set(_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        self.__dict__.update(settings)
        return self

    def reset(self) -> None:
        super().reset()
        self.__dict__.update(self._defaults)
        with self._state:
            self._in_flight = self.max_in_flight = self._failures = 0

    def enter(self) -> None:
        with self._state:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def leave(self) -> None:
        with self._state:
            self._in_flight -= 1

    def next_failure(self) -> int | None:
        with self._state:
            if self._failures < len(self.fail_first):
                self._failures += 1
                return self.fail_first[self._failures - 1]
        return None


def start(style: str, api_key: str | None = None, **settings: Any) -> FakeRerank:
    return FakeRerank(style, api_key, **settings)


# --- a scripted chat model for the LLM reranker -----------------------------------------------------------

_WORD = re.compile(r"[a-z]{3,}|[\u4e00-\u9fff]")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _judge_reply(prompt: str, garble: str | None) -> str:
    """Answer a module_ai rerank prompt (pointwise or listwise, zh or en) by word overlap."""
    query = re.search(r"(?:Question: |问题：)(.*)", prompt).group(1)
    passages = re.findall(r"^\[(\d+)\] (.*)$", prompt, re.MULTILINE)
    if passages:  # listwise: "[2] > [1] > ..." by overlap, ties in given order
        ranked = sorted(passages, key=lambda p: (-len(_words(query) & _words(p[1])), int(p[0])))
        return " > ".join(f"[{n}]" for n, text in ranked if not (garble and garble in text))
    document = re.search(r"(?:Document:|文档：)\n(.*?)\n\n", prompt, re.DOTALL).group(1)
    if garble and garble in document:
        return "~~ ?? no idea @@"
    return str(min(10, 2 * len(_words(query) & _words(document))))


def scripted_judge(garble: str | None = None):
    """A LangChain chat model that grades/orders by word overlap; texts containing ``garble`` get gibberish."""
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    class ScriptedJudge(BaseChatModel):
        garble: str | None = None
        calls: int = 0

        @property
        def _llm_type(self) -> str:
            return "scripted-judge"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            self.calls += 1
            reply = _judge_reply(str(messages[-1].content), self.garble)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=reply))])

    return ScriptedJudge(garble=garble)
