"""The Milvus index config: where the collection lives, how it is indexed, how text is analyzed.

One pydantic model, strict like every module_ai config. It is the ``backend: milvus`` part of a
knowledge base's index settings::

    backend: milvus
    uri: ./kb/milvus.db                  # Milvus Lite (a local file), or
    # uri: https://milvus.example:19530  # a Milvus cluster / Zilliz Cloud
    # token: ${MILVUS_TOKEN}             # "user:password" or an API key, by reference
    collection: module_ai_kb
    index_type: HNSW                     # FLAT | HNSW | IVF_FLAT | AUTOINDEX
    metric: COSINE                       # COSINE | IP | L2
    index_params: {M: 16, efConstruction: 200}
    search_params: {ef: 64}
    language: zh                         # zh (jieba; also right for mixed zh/en) | en (standard)

Loading a config does no network I/O and keeps ``token`` an unresolved ``${VAR}`` reference; the
connection resolves it (:meth:`MilvusConfig.resolved_token`). :meth:`MilvusConfig.public_dict` is safe
to save or print: a literal token is masked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from module_ai._env import masked_secret, resolve_env

__all__ = [
    "DEFAULT_COLLECTION",
    "DEFAULT_INDEX_PARAMS",
    "DEFAULT_SEARCH_PARAMS",
    "INDEX_TYPES",
    "LITE_FILE",
    "METRICS",
    "MilvusConfig",
]

INDEX_TYPES = ("FLAT", "HNSW", "IVF_FLAT", "AUTOINDEX")
METRICS = ("COSINE", "IP", "L2")
DEFAULT_COLLECTION = "module_ai_kb"
LITE_FILE = "milvus.db"
"""File name of the Milvus Lite database when ``uri`` is not given (inside the knowledge-base folder)."""

DEFAULT_INDEX_PARAMS: dict[str, dict[str, Any]] = {
    "FLAT": {},
    "HNSW": {"M": 16, "efConstruction": 200},
    "IVF_FLAT": {"nlist": 128},
    "AUTOINDEX": {},
}
"""Build parameters per index type (Milvus' own names), merged under ``index_params``."""

DEFAULT_SEARCH_PARAMS: dict[str, dict[str, Any]] = {
    "FLAT": {},
    "HNSW": {"ef": 64},
    "IVF_FLAT": {"nprobe": 16},
    "AUTOINDEX": {},
}
"""Search parameters per index type, merged under ``search_params`` (HNSW ``ef`` is raised to the limit)."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


class MilvusConfig(BaseModel):
    """Settings of a Milvus-backed knowledge base (Milvus Lite file or Milvus cluster).

    Args:
        uri: a ``.db`` path for Milvus Lite (relative paths are taken from the knowledge-base folder;
            default ``<kb>/milvus.db``), or ``http(s)://host:port`` for a cluster.
        token: ``"user:password"`` or an API key; write ``${MILVUS_TOKEN}`` to keep it out of files.
        db_name: Milvus database (cluster only; default database when empty).
        collection: collection name (letters, digits, ``_``).
        index_type: dense index: ``FLAT``, ``HNSW``, ``IVF_FLAT`` or ``AUTOINDEX`` (Zilliz Cloud).
        metric: dense metric: ``COSINE``, ``IP`` or ``L2``.
        index_params: build parameters, e.g. ``{"M": 32}`` or ``{"nlist": 1024}``.
        search_params: search parameters, e.g. ``{"ef": 128}`` or ``{"nprobe": 32}``.
        language: keyword analyzer: ``"zh"`` (jieba; Chinese, English and mixed text) or ``"en"``
            (Milvus' standard tokenizer; English and other space-separated languages only).
        stemming: add Milvus' English stemmer filter to the analyzer (a Milvus server applies it;
            Milvus Lite ignores it).
        bm25_k1, bm25_b: BM25 parameters of the sparse index (1.5 / 0.75, as the embedded index).
        shards, replicas: cluster layout (``None``: server default; Milvus Lite ignores both).
        consistency_level: ``Strong`` (reads see every acknowledged write) or ``Bounded``/``Eventually``.
        fusion: where hybrid results are fused: ``"auto"`` (Milvus' RRFRanker when it computes the
            embedded index's fusion, else here), ``"server"`` (always Milvus' RRFRanker /
            WeightedRanker) or ``"client"`` (see :mod:`module_ai.retrieval.milvus.search`).
        timeout: seconds per request.

    Example:
        >>> MilvusConfig(uri="https://milvus.example:19530", token="${MILVUS_TOKEN}").is_lite
        False
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["milvus"] = "milvus"
    uri: str = LITE_FILE
    token: SecretStr | None = None
    db_name: str | None = None
    collection: str = DEFAULT_COLLECTION
    index_type: Literal["FLAT", "HNSW", "IVF_FLAT", "AUTOINDEX"] = "HNSW"
    metric: Literal["COSINE", "IP", "L2"] = "COSINE"
    index_params: dict[str, Any] = Field(default_factory=dict)
    search_params: dict[str, Any] = Field(default_factory=dict)
    language: Literal["zh", "en"] = "zh"
    stemming: bool = True
    bm25_k1: float = Field(default=1.5, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    shards: int | None = Field(default=None, gt=0)
    replicas: int | None = Field(default=None, gt=0)
    consistency_level: Literal["Strong", "Bounded", "Session", "Eventually"] = "Strong"
    fusion: Literal["auto", "server", "client"] = "auto"
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("index_type", "metric", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: Any) -> Any:
        return None if value in ("", None) else value

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"'{value}' is not a valid collection name; use letters, digits and '_'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _credentials_out_of_uri(cls, data: Any) -> Any:
        """``https://user:password@host`` -> uri ``https://host`` + token ``user:password`` (masked, never saved)."""
        from urllib.parse import unquote

        from module_ai._redact import split_url_credentials

        if not isinstance(data, dict) or not isinstance(data.get("uri"), str):
            return data
        uri, userinfo = split_url_credentials(data["uri"])
        if userinfo is None:
            return data
        if data.get("token") not in (None, ""):
            raise ValueError("uri carries user:password@ and token is set; only one credential can be sent, remove one")
        return {**data, "uri": uri, "token": unquote(userinfo)}

    @model_validator(mode="after")
    def _uri_shape(self) -> MilvusConfig:
        if not self.uri.strip():
            raise ValueError("uri is empty; give a .db file (Milvus Lite) or http(s)://host:port")
        return self

    @property
    def is_lite(self) -> bool:
        """True for a local ``.db`` file (Milvus Lite), False for an ``http(s)://`` or ``tcp://`` server."""
        return not re.match(r"^(https?|tcp|grpc|unix)://", self.uri.strip(), re.IGNORECASE)

    def resolved_uri(self, base_dir: str | Path | None = None) -> str:
        """The URI with ``${VAR}`` expanded and a relative Lite path joined to ``base_dir``."""
        uri = resolve_env(self.uri, field="uri")
        if self.is_lite and base_dir is not None and not Path(uri).is_absolute():
            uri = str(Path(base_dir) / uri)
        return uri

    def resolved_token(self) -> str:
        """The token with ``${VAR}`` expanded; call only when connecting. Empty string when unset."""
        if self.token is None:
            return ""
        return resolve_env(self.token.get_secret_value(), field="token")

    def build_params(self) -> dict[str, Any]:
        """Index build parameters: the index type's defaults updated with ``index_params``."""
        return {**DEFAULT_INDEX_PARAMS[self.index_type], **self.index_params}

    def query_params(self, limit: int) -> dict[str, Any]:
        """Dense search parameters for a result list of ``limit`` (HNSW needs ``ef >= limit``)."""
        params = {**DEFAULT_SEARCH_PARAMS[self.index_type], **self.search_params}
        if self.index_type == "HNSW":
            params["ef"] = max(int(params.get("ef", 0)), int(limit))
        return params

    def public_dict(self) -> dict[str, Any]:
        """Plain data safe to save or print: a ``${VAR}`` token is kept, a literal one is masked."""
        data = self.model_dump(mode="json")
        if self.token is not None:
            data["token"] = masked_secret(self.token.get_secret_value())
        return data

    def savable_dict(self) -> dict[str, Any]:
        """Like :meth:`public_dict` but a literal token is dropped (it must be passed again on open)."""
        data = self.public_dict()
        if data.get("token") == "**********":
            data["token"] = None
        return data
