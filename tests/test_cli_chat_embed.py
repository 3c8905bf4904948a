"""`module-ai chat` (streaming REPL with reasoning and /cost) and `module-ai embed`, via the entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from module_ai import ModelConfig


@pytest.fixture()
def config_dir(tmp_path, dashscope_server):
    (tmp_path / "m.json").write_text(json.dumps({"models": {
        "qwen3-think": {"model_type": "chat", "server_type": "openai", "model": "qwen3-4b",
                        "url": dashscope_server.base_url, "api_key": "${MODULE_AI_TEST_KEY}",
                        "pay_in": 0.3, "pay_out": 1.2, "out_tokens": 6},
        "emb": {"model_type": "embedding", "server_type": "openai", "model": "text-embedding-v4",
                "url": dashscope_server.base_url, "api_key": "${MODULE_AI_TEST_KEY}", "max_batch": 10,
                "dimensions": 64},
    }}))
    return str(tmp_path)


def cli(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "module_ai", *argv], input=stdin, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ))


def test_chat_repl_streams_reasoning_and_reports_cost(config_dir, dashscope_server):
    proc = cli("--config", config_dir, "chat", "qwen3-think", "--system", "你是助手",
               stdin="你好\n/cost\n/reset\n/exit\nnever sent\n")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "嗯" in out and "你好" in out  # reasoning streamed before the answer
    assert out.index("嗯") < out.index("我是")
    cost_line = next(line for line in out.splitlines() if line.startswith("calls 1,"))
    shown = re.match(r"calls 1, input (\d+) tokens, output (\d+) tokens, cost ([0-9.]+) CNY", cost_line)
    assert shown, cost_line
    tokens_in, tokens_out, cost = int(shown[1]), int(shown[2]), float(shown[3])
    price_unit = ModelConfig.model_fields["price_unit"].default
    assert tokens_in > 0 and tokens_out > 0 and cost > 0
    assert cost == pytest.approx((tokens_in * 0.3 + tokens_out * 1.2) / price_unit, abs=6e-7)
    assert "(history cleared)" in out
    chats = [r for r in dashscope_server.requests if r.path.endswith("/chat/completions")]
    assert len(chats) == 1 and chats[0].body["messages"][0] == {"role": "system", "content": "你是助手"}


def test_chat_message_flag_keeps_history(config_dir, dashscope_server):
    proc = cli("--config", config_dir, "chat", "qwen3-think", "-m", "一", "-m", "二")
    assert proc.returncode == 0, proc.stderr
    bodies = [r.body for r in dashscope_server.requests if r.path.endswith("/chat/completions")]
    assert [m["role"] for m in bodies[-1]["messages"]] == ["user", "assistant", "user"]


def test_embed_json_and_errors(config_dir, tmp_path):
    proc = cli("--config", config_dir, "embed", "emb", "你好", "世界", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["dimensions"] == 64 and len(data["vectors"]) == 2
    lines = tmp_path / "lines.txt"
    lines.write_text("a\n\nb\nc\n")
    proc = cli("--config", config_dir, "embed", "emb", "--file", str(lines))
    assert proc.returncode == 0 and proc.stdout.count("64 dims") == 3
    proc = cli("--config", config_dir, "embed", "emb")
    assert proc.returncode == 1 and "nothing to embed" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("--config", config_dir, "embed", "qwen3-think", "x")
    assert proc.returncode == 1 and "not an embedding model" in proc.stderr
