"""``module-ai embed NAME TEXT...``: embed texts with a registry embedding model."""

from __future__ import annotations

import json
from typing import Any

from module_ai.commands import read_utf8
from module_ai.errors import ConfigError
from module_ai.registry import load_registry

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``embed`` to the CLI."""
    p = subparsers.add_parser("embed", help="embed texts with an embedding model")
    p.add_argument("name", help="embedding model name")
    p.add_argument("texts", nargs="*", help="texts to embed")
    p.add_argument("--file", help="a file with one text per line ('-' for stdin)")
    p.add_argument("--json", action="store_true", help="print the full vectors as JSON")
    p.set_defaults(func=run_embed, intermixed="texts")


def _texts(args: Any) -> list[str]:
    texts = list(args.texts)
    if args.file:
        content = read_utf8(args.file, "texts file", "--file")
        texts += [line for line in content.splitlines() if line.strip()]
    if not texts:
        raise ConfigError("nothing to embed: give TEXT arguments or --file", field="texts")
    return texts


def run_embed(args: Any) -> int:
    texts = _texts(args)
    vectors = load_registry(args.config).embeddings(args.name).embed_documents(texts)
    if args.json:
        print(json.dumps({"model": args.name, "dimensions": len(vectors[0]),
                          "vectors": vectors}, ensure_ascii=False))
        return 0
    for text, vector in zip(texts, vectors):
        head = ", ".join(f"{x:.4f}" for x in vector[:4])
        print(f"{len(vector)} dims  [{head}, ...]  {text[:60]}")
    return 0
