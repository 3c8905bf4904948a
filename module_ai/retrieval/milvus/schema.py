"""The collection layout, its keyword analyzer, its indexes and the manifest stored with it.

Fields::

    id        VARCHAR primary key = the chunk id (stable hash of source + text), so writes are upserts
    text      VARCHAR, analyzed (jieba or standard), input of the built-in BM25 function
    sparse    SPARSE_FLOAT_VECTOR, output of the BM25 function (Milvus computes it; never written)
    dense     FLOAT_VECTOR(dimensions), from the registry's embedding model
    source    VARCHAR   file the chunk came from (delete / sync by source)
    title     VARCHAR   document title
    position  INT64     chunk number within its source
    metadata  JSON      the chunk's full metadata (source, title, heading, page, start_index ...)

Keyword analysis runs on the server, so the cluster does the keyword work:

* ``language="zh"`` (default): ``{"tokenizer": "jieba"}`` in precise mode. jieba segments Han runs with
  its dictionary and passes Latin words and numbers through whole (``"用Python做机器学习"`` ->
  ``用 / python / 做 / 机器 / 学习``), so it is also the choice for **mixed Chinese/English corpora**: one
  analyzer, one BM25 vocabulary, no per-row language field. English words are lower-cased and, on a
  Milvus server, stemmed by Milvus' English (Snowball) stemmer filter; Milvus Lite ignores that filter
  (``vaccines`` does not match ``vaccine`` there), the embedded index uses a light suffix stripper.
* ``language="en"``: Milvus' ``standard`` tokenizer + lowercase. Use it only for corpora without
  Chinese: it does not segment Han text (Milvus Lite keeps a whole Han run as one token).

Both presets drop the embedded index's stop words and punctuation (a ``stop`` filter), so the two
backends index nearly the same terms. Milvus' ``"type": "chinese"`` preset is not used: Milvus Lite does
not support it. The manifest (embedding model, dimensions, metric, analyzer) is a JSON collection
property, read on open to detect a changed embedding model before any write or search.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from module_ai.errors import KnowledgeBaseError

if TYPE_CHECKING:
    from module_ai.retrieval.milvus._client import Connection
    from module_ai.retrieval.milvus.config import MilvusConfig

__all__ = [
    "FIELDS",
    "MANIFEST_KEY",
    "SCHEMA_VERSION",
    "analyzer_params",
    "check_manifest",
    "create_collection",
    "load_collection",
    "new_manifest",
    "read_manifest",
    "write_manifest",
]

SCHEMA_VERSION = 1
MANIFEST_KEY = "module_ai.manifest"
"""Collection property holding the manifest JSON."""

FIELDS = {"id": "id", "text": "text", "sparse": "sparse", "dense": "dense", "source": "source",
          "title": "title", "position": "position", "metadata": "metadata"}
ID_MAX, TEXT_MAX, SOURCE_MAX, TITLE_MAX = 512, 65_535, 4_096, 1_024
"""VARCHAR sizes in bytes (Milvus' limit is 65,535)."""

_STOP_EN = (
    "a an and are as at be been but by can could did do does for from had has have how i if in into is "
    "it its of on or our so than that the their them then there these they this those to was we were "
    "what when where which who whom why will with would you your"
)
_STOP_ZH = (
    "的 了 是 在 和 与 及 或 也 就 都 而 着 之 其 被 把 对 从 由 于 为 以 等 这 那 这个 那个 这些 那些 "
    "什么 哪 哪个 哪些 哪里 谁 吗 呢 吧 啊 么 怎么 怎样 如何 为什么 多少 几 一个 有 个"
)
_PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + list(
    "，。、；：？！“”‘’（）【】《》〈〉「」『』〔〕—…·～￥％＃＠＆＊＋－／＜＝＞［］＾＿｀｛｜｝"
) + ["……", "——", "...", "--"]
STOP_WORDS: tuple[str, ...] = tuple(sorted(set(_STOP_EN.split()) | set(_STOP_ZH.split()) | set(_PUNCT)))
"""Stop words of the analyzer: the embedded index's English and Chinese lists plus punctuation.

Copied (not imported) on purpose: a collection's analyzer is fixed when it is created, so this list
is versioned with :data:`SCHEMA_VERSION`.
"""


def analyzer_params(language: str, stemming: bool = True) -> dict[str, Any]:
    """Milvus ``analyzer_params`` for ``"zh"`` (jieba, precise mode) or ``"en"`` (standard).

    jieba runs in precise mode without HMM new-word guessing (dictionary words only, as the embedded
    tokenizer). Filters: lowercase, English stemmer (when ``stemming``), stop words. Milvus Lite
    applies only the stop filter and ``mode`` (its tokenizers lower-case by themselves; it ignores the
    stemmer and ``hmm``, always guessing new words).

    Example:
        >>> analyzer_params("zh")["tokenizer"]
        {'type': 'jieba', 'mode': 'exact', 'hmm': False}
    """
    filters: list[Any] = ["lowercase"]
    if stemming:
        filters.append({"type": "stemmer", "language": "english"})
    filters.append({"type": "stop", "stop_words": list(STOP_WORDS)})
    if language == "zh":
        return {"tokenizer": {"type": "jieba", "mode": "exact", "hmm": False}, "filter": filters}
    if language == "en":
        return {"tokenizer": "standard", "filter": filters}
    raise ValueError(f"language must be 'zh' or 'en', not {language!r}")


def bm25_function(language: str, stemming: bool = True) -> Any:
    """The BM25 built-in function (langchain-milvus' ``BM25BuiltInFunction``) for ``text -> sparse``."""
    from langchain_milvus import BM25BuiltInFunction

    return BM25BuiltInFunction(
        input_field_names=FIELDS["text"], output_field_names=FIELDS["sparse"],
        analyzer_params=analyzer_params(language, stemming), function_name="module_ai_bm25",
    )


def _schema(dimensions: int, config: MilvusConfig) -> Any:
    from pymilvus import DataType, MilvusClient

    func = bm25_function(config.language, config.stemming)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(FIELDS["id"], DataType.VARCHAR, is_primary=True, max_length=ID_MAX)
    schema.add_field(FIELDS["text"], DataType.VARCHAR, max_length=TEXT_MAX,
                     **func.get_input_field_schema_kwargs())
    schema.add_field(FIELDS["sparse"], DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field(FIELDS["dense"], DataType.FLOAT_VECTOR, dim=int(dimensions))
    schema.add_field(FIELDS["source"], DataType.VARCHAR, max_length=SOURCE_MAX, default_value="")
    schema.add_field(FIELDS["title"], DataType.VARCHAR, max_length=TITLE_MAX, default_value="")
    schema.add_field(FIELDS["position"], DataType.INT64, default_value=0)
    schema.add_field(FIELDS["metadata"], DataType.JSON, nullable=True)
    schema.add_function(func.function)
    return schema


def _index_params(client: Any, config: MilvusConfig) -> Any:
    params = client.prepare_index_params()
    params.add_index(FIELDS["dense"], index_type=config.index_type, metric_type=config.metric,
                     params=config.build_params())
    params.add_index(FIELDS["sparse"], index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                     params={"bm25_k1": config.bm25_k1, "bm25_b": config.bm25_b})
    params.add_index(FIELDS["source"], index_type="INVERTED")
    return params


def new_manifest(config: MilvusConfig, embedding_model: str, dimensions: int,
                 settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of a new collection (stored as the :data:`MANIFEST_KEY` property)."""
    return {
        "format": "module_ai.retrieval.milvus", "schema_version": SCHEMA_VERSION,
        "embedding_model": embedding_model, "dimensions": int(dimensions),
        "metric": config.metric, "index_type": config.index_type, "language": config.language,
        "stemming": config.stemming, "bm25": {"k1": config.bm25_k1, "b": config.bm25_b},
        "settings": dict(settings or {}),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_manifest(conn: Connection, manifest: dict[str, Any]) -> None:
    """Replace the manifest property of an existing collection."""
    props = {MANIFEST_KEY: json.dumps(manifest, ensure_ascii=False)}
    conn.call("update manifest", "alter_collection_properties", conn.collection, properties=props)


def create_collection(conn: Connection, config: MilvusConfig, manifest: dict[str, Any]) -> None:
    """Create the collection with its BM25 function, indexes and manifest, and load it."""
    kwargs: dict[str, Any] = {"consistency_level": config.consistency_level,
                              "properties": {MANIFEST_KEY: json.dumps(manifest, ensure_ascii=False)}}
    if config.shards:
        kwargs["num_shards"] = config.shards
    schema = _schema(manifest["dimensions"], config)
    with conn.errors("create collection"):
        index = _index_params(conn.client, config)
        conn.client.create_collection(conn.collection, schema=schema, **kwargs)
        # the collection is empty: no need to poll each index's build state (0.5 s sleeps in pymilvus)
        conn.client.create_index(conn.collection, index, sync=False)
    load_collection(conn, config)


def load_collection(conn: Connection, config: MilvusConfig) -> None:
    """Load the collection for search (no-op when loaded; ``replicas`` applies on a cluster)."""
    load = {"replica_number": config.replicas} if config.replicas and not conn.lite_path else {}
    conn.call("load collection", "load_collection", conn.collection, **load)


def describe(conn: Connection) -> dict[str, Any] | None:
    """``describe_collection`` of the collection, or ``None`` when it does not exist."""
    if not conn.call("check collection", "has_collection", conn.collection):
        return None
    return conn.call("describe collection", "describe_collection", conn.collection)


def _dense_dim(info: dict[str, Any]) -> int | None:
    for field in info.get("fields", []):
        if field.get("name") == FIELDS["dense"]:
            return int(field.get("params", {}).get("dim", 0)) or None
    return None


def read_manifest(conn: Connection) -> dict[str, Any]:
    """Read the manifest of an existing collection.

    Raises:
        KnowledgeBaseError: no such collection, or it was not created by module_ai.
    """
    info = describe(conn)
    where = conn.where
    if info is None:
        raise KnowledgeBaseError(f"{where} does not exist; build it with MilvusKnowledgeBase.build "
                                 "or `module-ai rag index ... --backend milvus`")
    raw = (info.get("properties") or {}).get(MANIFEST_KEY)
    names = {f.get("name") for f in info.get("fields", [])}
    if not raw or not {FIELDS["id"], FIELDS["text"], FIELDS["dense"], FIELDS["sparse"]} <= names:
        raise KnowledgeBaseError(f"{where} was not created by module_ai (no '{MANIFEST_KEY}' property or "
                                 "missing fields); pick another collection name or drop it")
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise KnowledgeBaseError(f"{where}: the manifest property is not JSON ({exc}); rebuild") from exc
    manifest["dimensions"] = _dense_dim(info) or manifest.get("dimensions")
    return manifest


def check_manifest(manifest: dict[str, Any], *, embedding_model: str | None, dimensions: int | None,
                   where: str) -> None:
    """Raise a :class:`KnowledgeBaseError` with the fix when the embedding model no longer matches.

    Args:
        manifest: the collection's manifest.
        embedding_model: the name of the embedding model in use (``None``: not checked).
        dimensions: the vector size that model produces (``None``: not checked).
        where: ``"collection 'x' at <uri>"`` for the message.
    """
    if int(manifest.get("schema_version", 0)) > SCHEMA_VERSION:
        raise KnowledgeBaseError(f"{where} has schema version {manifest['schema_version']}, newer than this "
                                 f"module_ai ({SCHEMA_VERSION}); upgrade module_ai")
    built_with, built_dims = manifest.get("embedding_model"), manifest.get("dimensions")
    fix = (f"rebuild it (`module-ai rag index ... --backend milvus --rebuild`, or "
           f"MilvusKnowledgeBase.build(..., rebuild=True)) or use embedding model '{built_with}'")
    if embedding_model and built_with and embedding_model != built_with:
        raise KnowledgeBaseError(f"{where} was built with embedding model '{built_with}' ({built_dims} "
                                 f"dims), not '{embedding_model}'; {fix}", model=embedding_model,
                                 field="embedding_model")
    if dimensions and built_dims and int(dimensions) != int(built_dims):
        raise KnowledgeBaseError(f"{where} stores {built_dims}-dimensional vectors but embedding model "
                                 f"'{embedding_model or built_with}' gives {dimensions}; {fix}",
                                 field="dimensions")
