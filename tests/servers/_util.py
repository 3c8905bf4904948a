"""Deterministic content helpers shared by the fake servers (token counts, vectors, scores, JSON samples)."""

from __future__ import annotations

import hashlib
import math
import random
import re
from typing import Any

_TOKEN_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[A-Za-z0-9_]+|[^\sA-Za-z0-9_]")


def count_tokens(text: str) -> int:
    """Crude tokenizer: one token per CJK char, per ASCII word, per punctuation mark."""
    return len(_TOKEN_RE.findall(text or ""))


def text_of(content: Any) -> str:
    """Text of an OpenAI message `content` (string or list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def hash_vector(text: str, dims: int) -> list[float]:
    """Deterministic unit vector for `text` (same text → same vector)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    v = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def lexical_score(query: str, doc: str) -> float:
    q = {c for c in query.lower() if not c.isspace()}
    if not q:
        return 0.0
    d = set(doc.lower())
    return round(len(q & d) / len(q), 6)


def sample_from_schema(schema: dict, depth: int = 0) -> Any:
    """A value matching a (simple) JSON schema, for fake structured output / tool arguments."""
    if not isinstance(schema, dict) or depth > 5:
        return None
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return sample_from_schema(schema[key][0], depth + 1)
    t = schema.get("type", "object")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if t == "object":
        props = schema.get("properties", {})
        return {k: sample_from_schema(v, depth + 1) for k, v in props.items()}
    if t == "array":
        return [sample_from_schema(schema.get("items", {"type": "string"}), depth + 1)]
    return {"string": "测试", "integer": 1, "number": 1.0, "boolean": True, "null": None}.get(t, "测试")
