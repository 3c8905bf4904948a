"""``module-ai bench NAME --concurrency 1,4,16 --requests 100``: load-test a chat model."""

from __future__ import annotations

import json
import sys
from typing import Any

from module_ai.errors import ModuleAIError

__all__ = ["register", "run_bench"]


def register(subparsers: Any) -> None:
    """Add ``bench`` to the CLI."""
    p = subparsers.add_parser("bench", help="measure TTFT, latency, throughput, errors and cost per concurrency")
    p.add_argument("name", metavar="NAME", help="chat model name")
    p.add_argument("--concurrency", default="1,4,16", metavar="LIST", help="levels, e.g. 1,4,16 (default)")
    p.add_argument("--requests", type=int, default=100, metavar="N", help="requests per level (default 100)")
    p.add_argument("--prompt", default=None, help="prompt to send (default: a short Chinese question)")
    p.add_argument("--max-tokens", type=int, default=None, metavar="N", help="cap output tokens (out_tokens)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run_bench)


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise ModuleAIError(f"--concurrency {text!r} must be positive integers separated by commas, e.g. 1,4,16",
                            field="concurrency")
    return sorted(set(levels))


def run_bench(args: Any) -> int:
    from module_ai.controls.bench import DEFAULT_PROMPT, bench_model, format_bench
    from module_ai.registry import load_registry

    levels = _levels(args.concurrency)
    if args.requests < 1:
        raise ModuleAIError("--requests must be at least 1", field="requests")
    registry = load_registry(args.config)
    registry.config(args.name)  # unknown names fail before any request
    report = bench_model(registry, args.name, levels, args.requests, prompt=args.prompt or DEFAULT_PROMPT,
                         max_tokens=args.max_tokens, progress=not args.no_progress)
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else format_bench(report))
    failed = [lv for lv in report["levels"] if lv["errors"] == lv["requests"]]
    for lv in failed:
        sys.stderr.write(f"module-ai: error: every request at concurrency {lv['concurrency']} failed: "
                         f"{lv['first_error']}\n")
    return 1 if failed else 0
