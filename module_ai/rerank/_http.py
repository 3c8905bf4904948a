"""``HTTPReranker``: every rerank HTTP API (Cohere/Jina, Xinference, TEI, DashScope native and
OpenAI-style) through one class driven by :data:`~module_ai.rerank._styles.API_STYLES`.

A call is split into requests within ``max_documents`` / ``max_request_tokens``; their raw scores are
merged before normalization, so the final order is global. Each HTTP request is one managed call
(:class:`module_ai.controls.call.ManagedCall`, as for chat and embeddings): budget reservation,
admission by the model's process-wide limiter (``max_concurrency``, ``rpm``, ``tpm``) per attempt, and
retries by the one retry owner (429/5xx/transport errors, ``Retry-After`` honoured, ``max_retries``).
Each request emits one ``CallRecord(kind="rerank")`` with the provider's token count (estimated when
absent) and ``call_cost(cfg, tokens, 0)``. What still fails is a
:class:`~module_ai.errors.BackendError` naming the model and the endpoint URL, never the key.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from pydantic import Field, PrivateAttr, SecretStr

from module_ai.config import ModelConfig
from module_ai.controls.events import CallRecord, emit
from module_ai.controls.limits import limiter_for
from module_ai.errors import BackendError
from module_ai.rerank._base import BaseReranker
from module_ai.rerank._scores import Judgement, normalize
from module_ai.rerank._styles import (
    API_STYLES,
    build_payload,
    endpoint,
    parse_response,
    plan_batches,
    request_tokens,
)

__all__ = ["HTTPReranker"]


class HTTPReranker(BaseReranker):
    """A reranker behind an HTTP API; ``style`` names the wire format (a row of ``API_STYLES``).

    Example:
        >>> rr = HTTPReranker(model="BAAI/bge-reranker-v2-m3", url="http://127.0.0.1:8000/v1")  # doctest: +SKIP
        >>> rr.rank("熊猫吃什么", ["竹子", "汽车"])                                     # doctest: +SKIP
        [(0, 0.97), (1, 0.02)]
    """

    model: str
    url: str
    """API base URL; the endpoint is ``url + style path`` (see :mod:`module_ai.rerank._styles`)."""
    api_key: SecretStr | None = None
    authorization: SecretStr | None = Field(default=None, repr=False)
    """A whole ``Authorization`` value (Basic auth from the URL's ``user:password@``); wins over api_key."""
    style: str = "cohere"
    timeout: float = Field(default=60.0, gt=0)
    max_documents: int | None = Field(default=None, gt=0)
    max_request_tokens: int | None = Field(default=None, gt=0)
    max_concurrency: int = Field(default=4, gt=0)
    """Requests of one call in flight at once (the model's limiter caps every caller together)."""
    max_retries: int = Field(default=2, ge=0)
    """Used only without ``module_ai_config`` (else the config's ``max_retries``)."""
    instruct: str | None = None
    score_scale: str | None = None
    """Normalization rule; ``None`` uses the style's default."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Extra request fields (dotted paths allowed), merged last."""
    module_ai_config: Any = Field(default=None, exclude=True, repr=False)
    """The ModelConfig: prices, limits and retries (made from the fields above when not given)."""

    _client: httpx.Client | None = PrivateAttr(default=None)
    _call_cfg: Any = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        if self.style not in API_STYLES:
            raise ValueError(f"style {self.style!r} is not one of {', '.join(API_STYLES)}")
        if self.module_ai_config is None:
            self.module_ai_config = ModelConfig(
                model_type="rerank", server_type="openai", model=self.model, url=self.url, name=self.name,
                rerank_style=self.style, timeout=self.timeout, max_concurrency=self.max_concurrency,
                max_retries=self.max_retries)
        limiter_for(self.module_ai_config, update=True)
        # errors and retries name the endpoint, not the base url
        self._call_cfg = self.module_ai_config.model_copy(update={"url": self.endpoint})

    # --- properties ------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """The URL requests go to."""
        return endpoint(API_STYLES[self.style], self.url)

    @property
    def _label(self) -> str:
        return self.name or self.model

    def _limits(self) -> tuple[int | None, int | None]:
        style = API_STYLES[self.style]
        return (self.max_documents or style.max_documents,
                self.max_request_tokens or style.max_request_tokens)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.authorization is not None:
            headers["Authorization"] = self.authorization.get_secret_value()
        elif self.api_key is not None and self.api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        return headers

    def _payload(self, query: str, texts: list[str]) -> dict[str, Any]:
        return build_payload(API_STYLES[self.style], model=self.model, query=query, texts=texts,
                             instruct=self.instruct, extra=self.extra_body)

    # --- scoring ---------------------------------------------------------------------------------
    def _judge(self, query: str, texts: list[str], callbacks: Any = None) -> list[Judgement]:
        batches = plan_batches(query, texts, max_documents=self._limits()[0],
                               max_request_tokens=self._limits()[1])
        if len(batches) == 1:
            parts = [self._request(query, [texts[i] for i in batches[0]])]
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(batches))) as pool:
                parts = list(pool.map(lambda b: self._request(query, [texts[i] for i in b]), batches))
        return self._merge(batches, parts, len(texts))

    async def _ajudge(self, query: str, texts: list[str], callbacks: Any = None) -> list[Judgement]:
        batches = plan_batches(query, texts, max_documents=self._limits()[0],
                               max_request_tokens=self._limits()[1])
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(client: httpx.AsyncClient, batch: range) -> dict[int, float]:
            async with gate:
                return await self._arequest(client, query, [texts[i] for i in batch])

        async with httpx.AsyncClient(timeout=self.timeout) as client:
            parts = await asyncio.gather(*(one(client, b) for b in batches))
        return self._merge(batches, list(parts), len(texts))

    def _merge(self, batches: list[range], parts: list[dict[int, float]], count: int) -> list[Judgement]:
        raw: dict[int, float] = {}
        for batch, scores in zip(batches, parts):
            raw.update({batch[local]: score for local, score in scores.items()})
        scale = self.score_scale or API_STYLES[self.style].scale
        order = sorted(raw)
        normalized = dict(zip(order, normalize([raw[i] for i in order], scale)))
        return [Judgement(raw[i], normalized[i]) if i in raw
                else Judgement(None, 0.0, "missing from the provider's response")
                for i in range(count)]

    # --- HTTP ------------------------------------------------------------------------------------
    def _http_client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout)
        return self._client

    def _open(self, query: str, texts: list[str]) -> Any:
        """A managed call: budget reservation now, limiter admission and retries per attempt."""
        from module_ai.controls.call import ManagedCall

        return ManagedCall(self._call_cfg, limiter_for(self.module_ai_config), request_tokens(query, texts), 0,
                           check_window=False)

    def _request(self, query: str, texts: list[str]) -> dict[int, float]:
        payload, call = self._payload(query, texts), self._open(query, texts)

        def send() -> Any:
            return _checked(self._http_client().post(self.endpoint, json=payload, headers=self._headers()))

        try:
            scores, tokens = self._parse(call.run(send), len(texts))
        except Exception as exc:  # noqa: BLE001 - mapped by _failed and re-raised
            error = self._failed(call, texts, exc)
            raise error from (exc if error is not exc else exc.__cause__)
        return self._settled(call, texts, scores, tokens)

    async def _arequest(self, client: httpx.AsyncClient, query: str, texts: list[str]) -> dict[int, float]:
        payload, call = self._payload(query, texts), self._open(query, texts)

        async def send() -> Any:
            return _checked(await client.post(self.endpoint, json=payload, headers=self._headers()))

        try:
            scores, tokens = self._parse(await call.arun(send), len(texts))
        except Exception as exc:  # noqa: BLE001 - mapped by _failed and re-raised
            error = self._failed(call, texts, exc)
            raise error from (exc if error is not exc else exc.__cause__)
        return self._settled(call, texts, scores, tokens)

    def _settled(self, call: Any, texts: list[str], scores: dict[int, float], tokens: int | None):
        self._record(call, texts, tokens)
        call.finish(total_tokens=tokens)
        return scores

    def _failed(self, call: Any, texts: list[str], exc: Exception) -> Exception:
        call.abort()
        self._record(call, texts, None, error=f"{type(exc).__name__}: {exc}")
        return self._final_error(exc, call.attempts)

    def _parse(self, response: httpx.Response, count: int) -> tuple[dict[int, float], int | None]:
        try:
            return parse_response(API_STYLES[self.style], response.json(), count)
        except (ValueError, TypeError) as exc:
            raise BackendError(f"{self.endpoint} sent an unexpected response for style '{self.style}': {exc}; "
                               f"body starts {response.text[:200]!r}", model=self._label) from exc

    def _final_error(self, exc: Exception, attempts: int) -> Exception:
        """The error to raise (mapped by :func:`module_ai.controls.retry.backend_error`), never showing the key."""
        key = self.api_key.get_secret_value() if self.api_key is not None else ""
        if isinstance(exc, BackendError) and key and key in str(exc):
            error = type(exc)(exc.message.replace(key, "***"), model=exc.model, path=exc.path)
            error.status_code, error.url, error.attempts = exc.status_code, exc.url, exc.attempts
            return error
        return exc

    def _record(self, call: Any, texts: list[str], tokens: int | None, error: str | None = None) -> None:
        from module_ai.controls.cost import call_cost

        cfg = self.module_ai_config
        count = tokens if tokens is not None else call.input_tokens
        key = self.api_key.get_secret_value() if self.api_key is not None else ""
        emit(CallRecord(
            model=self._label, kind="rerank", input_tokens=0 if error else count, estimated=tokens is None,
            cost=0.0 if error else call_cost(cfg, count, 0), currency=cfg.currency,
            latency_s=time.perf_counter() - call.start, attempts=call.attempts,
            error=error.replace(key, "***") if error and key else error, timestamp=time.time(),
            extra={"documents": len(texts), "url": self.endpoint, "style": self.style},
        ))

    def close(self) -> None:
        """Close the pooled sync HTTP client (a new one opens on the next call)."""
        if self._client is not None:
            self._client.close()
            self._client = None


class _StatusError(Exception):
    """An HTTP error status, shaped for :func:`module_ai.controls.retry.classify` (``status_code``, ``response``,
    ``body``)."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.response = response
        try:
            self.body = response.json()
        except ValueError:
            self.body = None
        inner = self.body.get("error", self.body) if isinstance(self.body, dict) else None
        message = inner.get("message") if isinstance(inner, dict) else inner
        self.detail = str(message)[:300] if isinstance(message, str) and message else response.text[:300]
        super().__init__(self.detail)


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise _StatusError(response)
    return response
