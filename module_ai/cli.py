"""The ``module-ai`` command.

Subcommands live in ``module_ai/commands/<name>.py``; each module defines ``register(subparsers)``
which adds its parser and sets ``func(args) -> int``. :data:`COMMANDS` is the one dispatch table.
A :class:`~module_ai.errors.ModuleAIError` (a user mistake or an unreachable server) is printed as
one line on stderr with exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from module_ai._redact import printable
from module_ai.errors import ModuleAIError

__all__ = ["COMMANDS", "main"]

COMMANDS: dict[str, str] = {
    "models": "module_ai.commands.models",
    "check": "module_ai.commands.models",
    "chat": "module_ai.commands.chat",
    "embed": "module_ai.commands.embed",
    "rag": "module_ai.commands.rag",
    "demo": "module_ai.commands.demo",
    "cost": "module_ai.commands.cost",
    "bench": "module_ai.commands.bench",
    "rerank": "module_ai.commands.rerank",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line and exit code 1."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"module-ai: error: {message} (see: {self.prog} --help)\n")
        raise SystemExit(1)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered subcommand."""
    parser = _Parser(prog="module-ai", description="module_ai: LLM models, RAG, rerank, cost and limits")
    parser.add_argument("--config", "-c", default=None,
                        help="config folder or file (default: $MODULE_AI_CONFIG, else ./configs)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    seen = set()
    for module_name in COMMANDS.values():
        if module_name not in seen:
            seen.add(module_name)
            importlib.import_module(module_name).register(subparsers)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, letting a command's trailing positionals (``set_defaults(intermixed=DEST)``) follow
    options: ``module-ai embed NAME --json TEXT...`` as well as ``embed NAME TEXT... --json``."""
    args, extra = parser.parse_known_args(argv)
    dest = getattr(args, "intermixed", None)
    if extra and dest and not any(item.startswith("-") and item != "-" for item in extra):
        getattr(args, dest).extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = _parse(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except ModuleAIError as exc:
        sys.stderr.write(f"module-ai: error: {printable(str(exc))}\n")  # one line, no terminal escapes
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("module-ai: interrupted\n")
        return 130


def _silence_stdout() -> None:
    """The reader closed our stdout (``module-ai models --json | head``): exit quietly.

    Point the stdout descriptor at /dev/null so the interpreter's final flush cannot fail again.
    """
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real descriptor (captured output): nothing left to silence
        pass
