"""``module-ai chat NAME``: a streaming chat REPL.

Reasoning (``reasoning_content``) is shown dimmed when present. Commands (handled locally, never
sent to the model): ``/help``, ``/cost`` (tokens and cost of this session), ``/reset`` (forget the
history), ``/exit``. ``--message TEXT`` sends one message and exits (also for scripts and tests);
lines on stdin are read when it is not a terminal.

In a terminal the input line is GNU readline (stdlib ``readline``): arrow keys, in-session history
(up/down), Ctrl-R search, and wide characters (Chinese) edited as one column pair each, so
backspace removes a whole character. A failed request (connection error, 429 after retries, 5xx,
a rejected key) is reported in one line; the session and its history go on.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from module_ai.commands import check_utf8
from module_ai.controls.events import CallRecord, add_listener, remove_listener
from module_ai.errors import ModuleAIError
from module_ai.registry import load_registry

__all__ = ["COMMANDS", "SessionCost", "register"]

DIM, RESET = "\033[2m", "\033[0m"
PROMPT = "你> "

COMMANDS: dict[str, str] = {
    "/help": "show these commands",
    "/cost": "tokens and cost of this session",
    "/reset": "forget the conversation (keeps --system)",
    "/exit": "leave (also /quit or Ctrl-D)",
}
"""The REPL's local commands (never sent to the model)."""


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
    p = subparsers.add_parser("chat", help="chat with a model (streaming REPL; /help, /cost, /reset, /exit)")
    p.add_argument("name", help="chat model name")
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--message", "-m", action="append", help="send this message and exit (repeatable)")
    p.add_argument("--no-color", action="store_true", help="do not dim the reasoning text")
    p.set_defaults(func=run_chat)


def help_text() -> str:
    """The command list shown by the banner and ``/help``."""
    return "\n".join(f"  {name:<7} {what}" for name, what in COMMANDS.items())


def _terminal_lines() -> Iterable[str]:
    """Lines typed in a terminal, edited with readline (when the platform has it)."""
    try:
        import readline  # noqa: F401 - importing it gives input() line editing and history
    except ImportError:  # e.g. Windows without pyreadline: plain input() still works
        pass
    while True:
        try:
            yield input(PROMPT)
        except EOFError:
            sys.stdout.write("\n")
            return
        except KeyboardInterrupt:  # Ctrl-C drops the line being typed, like a shell
            sys.stdout.write("^C\n")


def _lines(args: Any) -> Iterable[str]:
    if args.message:
        yield from args.message
        return
    if sys.stdin.isatty():
        for line in _terminal_lines():
            yield check_utf8(line, "standard input", "stdin")
        return
    while True:
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
    try:
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
    finally:
        sys.stdout.write((RESET if dim and thinking else "") + ("\n" if text or thinking else ""))
    history.append(AIMessage(content="".join(text)))
    return "".join(text)


def _turn(llm: Any, history: list, line: str, dim: bool) -> bool:
    """Send one user line; a failure is one line on stderr and leaves the history as it was."""
    from langchain_core.messages import HumanMessage

    history.append(HumanMessage(content=line))
    try:
        _reply(llm, history, dim)
        return True
    except (ModuleAIError, KeyboardInterrupt) as exc:
        history.pop()  # the unanswered message: the next line starts from the last good turn
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
        sys.stderr.write(f"module-ai: request failed: {what} (the session goes on; /exit to leave)\n")
        sys.stderr.flush()
        return False


def run_chat(args: Any) -> int:
    from langchain_core.messages import SystemMessage

    llm = load_registry(args.config).chat(args.name)
    history: list = [SystemMessage(content=args.system)] if args.system else []
    session = SessionCost()
    add_listener(session)
    if not args.message:
        print(f"module-ai chat with {args.name}; commands:\n{help_text()}", flush=True)
    dim = not args.no_color and sys.stdout.isatty()
    failures = 0
    try:
        for line in _lines(args):
            command = line.strip()
            if command in ("/exit", "/quit"):
                break
            if command == "/help":
                print(help_text())
            elif command == "/cost":
                print(session.line())
            elif command == "/reset":
                del history[1 if args.system else 0:]
                print("(history cleared)")
            elif command.startswith("/") and command.split()[0] not in COMMANDS and " " not in command:
                print(f"unknown command {command}; commands:\n{help_text()}")
            elif command:
                failures += not _turn(llm, history, line, dim)
    finally:
        remove_listener(session)
    return 1 if failures and args.message else 0  # scripts (-m) see a failed request in the exit code
