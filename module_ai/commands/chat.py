"""``module-ai chat NAME``: a streaming chat REPL.

Reasoning (``reasoning_content``) is shown dimmed when present. Commands: ``/cost`` (tokens and
cost of this session), ``/reset`` (forget the history), ``/exit``. ``--message TEXT`` sends one
message and exits (also for scripts and tests); lines on stdin are read when it is not a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from module_ai.commands import check_utf8
from module_ai.controls.events import CallRecord, add_listener, remove_listener
from module_ai.registry import load_registry

__all__ = ["SessionCost", "register"]

DIM, RESET = "\033[2m", "\033[0m"


class SessionCost:
    """Adds up the call records of one REPL session."""

    def __init__(self) -> None:
        self.calls = self.input_tokens = self.output_tokens = 0
        self.cost = 0.0
        self.currency = ""
        self.estimated = False

    def __call__(self, record: CallRecord) -> None:
        self.calls += 1
        self.input_tokens += record.input_tokens
        self.output_tokens += record.output_tokens
        self.cost += record.cost
        self.currency = record.currency
        self.estimated = self.estimated or record.estimated

    def line(self) -> str:
        mark = " (estimated)" if self.estimated else ""
        return (f"calls {self.calls}, input {self.input_tokens} tokens, output {self.output_tokens} tokens, "
                f"cost {self.cost:.6f} {self.currency}{mark}")


def register(subparsers: Any) -> None:
    """Add ``chat`` to the CLI."""
    p = subparsers.add_parser("chat", help="chat with a model (streaming REPL; /cost, /reset, /exit)")
    p.add_argument("name", help="chat model name")
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--message", "-m", action="append", help="send this message and exit (repeatable)")
    p.add_argument("--no-color", action="store_true", help="do not dim the reasoning text")
    p.set_defaults(func=run_chat)


def _lines(args: Any) -> Iterable[str]:
    if args.message:
        yield from args.message
        return
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            sys.stdout.write("你> ")
            sys.stdout.flush()
        try:
            line = sys.stdin.readline()
        except UnicodeDecodeError:
            line = "\udcff"  # strict stdin: same error as a surrogate-escaped one
        if not line:
            return
        yield check_utf8(line.rstrip("\n"), "standard input", "stdin")


def _reply(llm: Any, history: list, dim: bool) -> str:
    from langchain_core.messages import AIMessage

    thinking, text = False, []
    for chunk in llm.stream(history):
        reasoning = chunk.additional_kwargs.get("reasoning_content")
        if reasoning:
            sys.stdout.write((DIM if dim and not thinking else "") + reasoning)
            thinking = True
        if chunk.content:
            if thinking:
                sys.stdout.write((RESET if dim else "") + "\n")
                thinking = False
            sys.stdout.write(chunk.content)
            text.append(chunk.content)
        sys.stdout.flush()
    sys.stdout.write((RESET if dim and thinking else "") + "\n")
    history.append(AIMessage(content="".join(text)))
    return "".join(text)


def run_chat(args: Any) -> int:
    from langchain_core.messages import HumanMessage, SystemMessage

    llm = load_registry(args.config).chat(args.name)
    history: list = [SystemMessage(content=args.system)] if args.system else []
    session = SessionCost()
    add_listener(session)
    try:
        for line in _lines(args):
            command = line.strip()
            if command in ("/exit", "/quit"):
                break
            if command == "/cost":
                print(session.line())
                continue
            if command == "/reset":
                del history[1 if args.system else 0:]
                print("(history cleared)")
                continue
            if command:
                history.append(HumanMessage(content=line))
                _reply(llm, history, dim=not args.no_color and sys.stdout.isatty())
    finally:
        remove_listener(session)
    return 0
