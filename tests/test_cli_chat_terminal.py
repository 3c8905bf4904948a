"""`module-ai chat` in a real terminal (tmux): Chinese input, backspace over wide characters, history.

The REPL runs in a detached tmux session (UTF-8 locale); keys go in with `tmux send-keys`, the screen
comes back with `tmux capture-pane`, and what was sent is read from the fault server's recording.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.controls_helpers import fresh_echo

ROOT = Path(__file__).resolve().parent.parent


class Tmux:
    def __init__(self, command: str) -> None:
        assert shutil.which("tmux"), "tmux is needed for the terminal test (scripts/test.sh installs it)"
        self.socket = f"module-ai-test-{uuid.uuid4().hex[:8]}"
        self._run("new-session", "-d", "-s", "chat", "-x", "120", "-y", "30", command)

    def _run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout

    def keys(self, *keys: str) -> None:
        self._run("send-keys", "-t", "chat", *keys)
        time.sleep(0.3)

    def screen(self) -> str:
        return self._run("capture-pane", "-p", "-t", "chat")

    def wait_for(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.3)
        raise AssertionError(f"{text!r} never appeared on screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30, check=False)


@pytest.fixture()
def terminal_chat(tmp_path):
    echo = fresh_echo()
    config = tmp_path / "m.json"
    config.write_text(json.dumps({"model_type": "chat", "server_type": "openai", "model": "fault-model",
                                  "url": echo.base_url, "api_key": "${MODULE_AI_TEST_KEY}", "out_tokens": 4,
                                  "max_retries": 0}))
    env = f"env LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=xterm PYTHONPATH={ROOT} MODULE_AI_TEST_KEY={os.environ['MODULE_AI_TEST_KEY']}"
    tmux = Tmux(f"{env} {sys.executable} -m module_ai -c {config} chat m; sleep 30")
    yield tmux, echo
    tmux.close()


def _prompt_line(screen: str) -> str:
    return [line for line in screen.splitlines() if line.startswith("你>")][-1]


def test_chinese_line_editing_backspace_and_history(terminal_chat):
    tmux, echo = terminal_chat
    tmux.wait_for("你>")
    assert "/help" in tmux.screen() and "/exit" in tmux.screen()  # the banner lists the commands
    tmux.keys("你好世界")
    tmux.keys("BSpace", "BSpace")  # two wide characters, four columns
    tmux.keys("啊")
    assert _prompt_line(tmux.screen()).rstrip() == "你> 你好啊"
    tmux.keys("Left", "Left", "Left")  # cursor to the start of the text, insert there
    tmux.keys("说")
    tmux.keys("Enter")
    tmux.wait_for("tok3")
    bodies = [r["body"] for r in echo.requests if r["path"].endswith("/chat/completions")]
    assert [m["content"] for m in bodies[-1]["messages"]] == ["说你好啊"]
    tmux.keys("Up")  # history: the last line comes back for editing
    assert _prompt_line(tmux.screen()).rstrip() == "你> 说你好啊"
    tmux.keys("C-u")
    tmux.keys("/help", "Enter")
    tmux.wait_for("show these commands")
    tmux.keys("/exit", "Enter")
    time.sleep(1)
    assert len([r for r in echo.requests if r["path"].endswith("/chat/completions")]) == 1  # /help was local
