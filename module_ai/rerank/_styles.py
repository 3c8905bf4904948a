"""Rerank HTTP APIs as data: one :class:`ApiStyle` row per wire format, and pure functions over it.

How ``url`` combines with a style: the endpoint is ``url + path`` (``url`` is the API base, up to and
including the version segment, with no trailing slash); a ``url`` that already ends with the style's
path is used as is. So:

================  ============================================  =============================================
style             example ``url``                               endpoint
================  ============================================  =============================================
cohere            ``http://host:8000/v1`` (vLLM, llama-server,   ``{url}/rerank``
                  SiliconFlow ``https://api.siliconflow.cn/v1``)
xinference        ``http://host:9997/v1``                       ``{url}/rerank``
tei               ``http://host:8080``                          ``{url}/rerank``
dashscope         ``https://dashscope.aliyuncs.com/api/v1``     ``{url}/services/rerank/text-rerank/text-rerank``
dashscope_openai  ``https://dashscope.aliyuncs.com/compatible-   ``{url}/reranks``
                  api/v1``
================  ============================================  =============================================

Field paths are dotted (``"input.query"`` is ``body["input"]["query"]``); ``results=""`` means the
response body itself is the list of results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from module_ai.controls.tokens import estimate_tokens

__all__ = [
    "API_STYLES",
    "ApiStyle",
    "build_payload",
    "endpoint",
    "parse_response",
    "plan_batches",
    "request_tokens",
]


@dataclass(frozen=True)
class ApiStyle:
    """Where each field lives in one rerank API's request and response."""

    path: str
    """Appended to the config's ``url`` to make the endpoint."""
    query: str = "query"
    documents: str = "documents"
    model: str | None = "model"
    """``None``: the API takes no model field (the server hosts one model)."""
    top_n: str | None = "top_n"
    instruct: str | None = None
    """Where ``instruct`` goes; ``None``: the API has no instruction field."""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    """Constant request fields (path -> value)."""
    results: str = "results"
    index: str = "index"
    score: str = "relevance_score"
    usage: tuple[str, ...] = ("usage.total_tokens",)
    """Paths tried in order for the request's token count."""
    scale: str = "auto"
    """Default normalization of the raw score (see :mod:`module_ai.rerank._scores`)."""
    max_documents: int | None = None
    """Documents per request when the config sets no ``max_documents``."""
    max_request_tokens: int | None = None
    """Tokens per request (query x docs + docs) when the config sets no ``max_request_tokens``."""


API_STYLES: dict[str, ApiStyle] = {
    # Cohere / Jina shape: vLLM, SiliconFlow, llama.cpp llama-server --reranking, LiteLLM proxy.
    "cohere": ApiStyle(
        path="/rerank", fixed={"return_documents": False},
        usage=("usage.total_tokens", "meta.tokens.input_tokens", "meta.billed_units.input_tokens"),
    ),
    # Xinference: Cohere shape; token counts only with return_len, under meta.tokens.
    "xinference": ApiStyle(
        path="/rerank", fixed={"return_documents": False, "return_len": True},
        usage=("meta.tokens.input_tokens", "usage.total_tokens"),
    ),
    # Hugging Face text-embeddings-inference: texts, bare list, "score"; one model per server.
    "tei": ApiStyle(
        path="/rerank", documents="texts", model=None, top_n=None,
        fixed={"return_text": False, "raw_scores": False, "truncate": True},
        results="", score="score", usage=(), scale="probability", max_documents=32,
    ),
    # DashScope native (百炼 text-rerank): nested input/parameters, output.results.
    "dashscope": ApiStyle(
        path="/services/rerank/text-rerank/text-rerank", query="input.query", documents="input.documents",
        top_n="parameters.top_n", instruct="parameters.instruct", fixed={"parameters.return_documents": False},
        results="output.results", scale="probability", max_documents=500, max_request_tokens=30_000,
    ),
    # DashScope OpenAI-style (compatible-api, plural "reranks"); instruct for qwen3-rerank.
    "dashscope_openai": ApiStyle(
        path="/reranks", instruct="instruct", fixed={"return_documents": False},
        scale="probability", max_documents=500, max_request_tokens=30_000,
    ),
}


def endpoint(style: ApiStyle, url: str) -> str:
    """The URL to POST to: ``url + style.path`` unless ``url`` already ends with the path.

    Example:
        >>> endpoint(API_STYLES["cohere"], "http://127.0.0.1:8000/v1/")
        'http://127.0.0.1:8000/v1/rerank'
    """
    url = url.rstrip("/")
    return url if url.endswith(style.path) else url + style.path


def _put(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def _get(data: Any, path: str) -> Any:
    if path == "":
        return data
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def build_payload(style: ApiStyle, *, model: str, query: str, texts: Sequence[str],
                  instruct: str | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body of one request (asks for every score: ``top_n`` = number of texts).

    Example:
        >>> build_payload(API_STYLES["dashscope"], model="gte-rerank-v2", query="q", texts=["a"])
        {'model': 'gte-rerank-v2', 'input': {'query': 'q', 'documents': ['a']}, \
'parameters': {'top_n': 1, 'return_documents': False}}
    """
    body: dict[str, Any] = {}
    if style.model:
        _put(body, style.model, model)
    _put(body, style.query, query)
    _put(body, style.documents, list(texts))
    if style.top_n:
        _put(body, style.top_n, len(texts))
    if instruct and style.instruct:
        _put(body, style.instruct, instruct)
    for path, value in style.fixed.items():
        _put(body, path, value)
    for path, value in (extra or {}).items():
        _put(body, path, value)
    return body


def parse_response(style: ApiStyle, data: Any, count: int) -> tuple[dict[int, float], int | None]:
    """``({index: raw score}, total tokens or None)`` from a response body.

    Raises:
        TypeError: the body has no result list, or a result has no numeric score.
        ValueError: a result's index is not one of the request's documents.
    """
    rows = _get(data, style.results)
    if not isinstance(rows, list):
        where = f"'{style.results}'" if style.results else "a top-level list"
        raise TypeError(f"the response has no result list at {where}")
    scores: dict[int, float] = {}
    for row in rows:
        index, score = _get(row, style.index), _get(row, style.score)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise ValueError(f"result index {index!r} is not in 0..{count - 1}")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise TypeError(f"result {index} has no numeric '{style.score}'")
        scores.setdefault(index, float(score))
    tokens = next((int(t) for t in (_get(data, p) for p in style.usage)
                   if isinstance(t, (int, float)) and not isinstance(t, bool)), None)
    return scores, tokens


def request_tokens(query: str, texts: Sequence[str]) -> int:
    """Estimated tokens of one request, counted the DashScope way: query x docs + sum of docs."""
    return estimate_tokens(query) * len(texts) + sum(estimate_tokens(t) for t in texts)


def plan_batches(query: str, texts: Sequence[str], *, max_documents: int | None,
                 max_request_tokens: int | None) -> list[range]:
    """Split ``texts`` into contiguous batches within both limits (greedy, input order kept).

    A text too large for any batch on its own is sent alone (the provider truncates it).

    Example:
        >>> plan_batches("q", ["a"] * 5, max_documents=2, max_request_tokens=None)
        [range(0, 2), range(2, 4), range(4, 5)]
    """
    q = estimate_tokens(query)
    batches: list[range] = []
    start, used = 0, 0
    for i, text in enumerate(texts):
        cost = q + estimate_tokens(text)
        full = max_documents is not None and i - start >= max_documents
        over = max_request_tokens is not None and used + cost > max_request_tokens
        if i > start and (full or over):
            batches.append(range(start, i))
            start, used = i, 0
        used += cost
    if texts:
        batches.append(range(start, len(texts)))
    return batches
