"""``module-ai models`` (table or ``--json``) and ``module-ai check NAME``."""

from __future__ import annotations

import json
import sys
from typing import Any

from module_ai._redact import printable, redact_url
from module_ai.registry import load_registry

__all__ = ["models_table", "register"]

_COLUMNS = ("name", "model_type", "server_type", "model", "url", "input_tokens", "out_tokens", "price")


def register(subparsers: Any) -> None:
    """Add ``models`` and ``check`` to the CLI."""
    p = subparsers.add_parser("models", help="list configured models")
    p.add_argument("--type", choices=["chat", "embedding", "rerank"], help="only models of this type")
    p.add_argument("--json", action="store_true", help="print JSON (keys masked)")
    p.set_defaults(func=run_models)
    p = subparsers.add_parser("check", help="reach a model's server (or load it) and report")
    p.add_argument("names", nargs="+", metavar="NAME", help="model name(s); 'all' checks every model")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_check)


def _row(name: str, cfg: Any) -> dict[str, Any]:
    price = f"{cfg.pay_in:g}/{cfg.pay_out:g} {cfg.currency} per {cfg.price_unit:,}"
    row = {"name": name, "model_type": cfg.model_type, "server_type": cfg.server_type, "model": cfg.model,
           "url": redact_url(cfg.url) or "", "input_tokens": cfg.input_tokens or "", "out_tokens": cfg.out_tokens or "",
           "price": price}
    return {k: printable(str(v)) for k, v in row.items()}


def models_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of ``rows`` with :data:`_COLUMNS`."""
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in _COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in _COLUMNS)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in _COLUMNS) for r in rows]
    return "\n".join(lines)


def run_models(args: Any) -> int:
    reg = load_registry(args.config)
    hint = _where_configs_were_looked_for(args.config)
    if hint:
        sys.stderr.write(hint + "\n")
    names = reg.names(args.type)
    if args.json:
        data = [{**reg.config(n).public_dict(), "name": n, "source": reg.source(n)} for n in names]
        print(printable(json.dumps(data, ensure_ascii=False, indent=2), multiline=True))
    else:
        print(models_table([_row(n, reg.config(n)) for n in names]))
    return 0


def _where_configs_were_looked_for(config: str | None) -> str | None:
    """A hint on stderr when no user configs were found, so only the built-in models are listed."""
    import os
    from pathlib import Path

    from module_ai.registry import DEFAULT_CONFIG_DIR

    if config or os.environ.get("MODULE_AI_CONFIG") or Path(DEFAULT_CONFIG_DIR).exists():
        return None
    looked = Path(DEFAULT_CONFIG_DIR).resolve()
    return (f"module-ai: no configs found: looked for --config (not given), $MODULE_AI_CONFIG (not set) and "
            f"{looked} (does not exist); listing the built-in models only. Point at your configs with "
            "`module-ai --config PATH models` or `export MODULE_AI_CONFIG=PATH`")


def run_check(args: Any) -> int:
    reg = load_registry(args.config)
    names = reg.names() if args.names == ["all"] else args.names
    for name in names:
        reg.config(name)  # unknown names fail before any I/O
    reports = [reg.check(name) for name in names]
    if args.json:
        print(json.dumps(reports, ensure_ascii=False, indent=2))
    else:
        for r in reports:
            status = "ok  " if r["ok"] else "FAIL"
            detail = json.dumps(r["found"], ensure_ascii=False) if r["ok"] else r["error"]
            print(f"{status} {r['name']}  {r['latency_ms']} ms  {detail}")
    if not all(r["ok"] for r in reports):
        sys.stderr.write("module-ai: error: some checks failed\n")
        return 1
    return 0
