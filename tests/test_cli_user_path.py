"""The CLI as a new user meets it: closed pipes, bench exit codes, check of rerank models, where configs
were looked for, options anywhere in `embed`, the REPL surviving a failed request, `rag index` summary,
`rag ask --min-score` with and without a chat model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def config_dir(tmp_path, echo, dashscope_server):
    key = "${MODULE_AI_TEST_KEY}"
    (tmp_path / "m.json").write_text(json.dumps({"models": {
        "echo": {"model_type": "chat", "server_type": "openai", "model": "fault-model", "url": echo.base_url,
                 "api_key": key, "max_retries": 0, "out_tokens": 8},
        "ds-rerank": {"model_type": "rerank", "server_type": "openai", "rerank_style": "dashscope",
                      "model": "gte-rerank-v2", "url": dashscope_server.url + "/api/v1", "api_key": key},
        "ds-emb": {"model_type": "embedding", "server_type": "openai", "model": "text-embedding-v4",
                   "url": dashscope_server.base_url, "api_key": key, "dimensions": 64},
    }}))
    return str(tmp_path)


def _closed_stdout(*argv: str, cwd: str | None = None) -> tuple[int, str]:
    """Run with a stdout pipe whose reader is already gone (what `| head` does)."""
    proc = subprocess.Popen([sys.executable, "-m", "module_ai", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=dict(os.environ))
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=120), err


def test_closed_stdout_is_a_quiet_exit(config_dir, tmp_path):
    code, err = _closed_stdout("-c", config_dir, "models", "--json")
    assert code == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
    log = tmp_path / "usage.jsonl"
    log.write_text("")
    code, err = _closed_stdout("cost", str(log), "--json")
    assert code == 0 and err == "", err


def test_bench_exits_non_zero_when_a_level_has_only_errors(cli, config_dir, echo):
    echo.configure(faults=lambda k, path, body: "500")
    proc = cli("-c", config_dir, "bench", "echo", "--concurrency", "1", "--requests", "3", "--no-progress")
    assert proc.returncode == 1, proc.stdout
    assert "every request at concurrency 1 failed" in proc.stderr and "HTTP 500" in proc.stderr
    echo.configure(faults=lambda k, path, body: "500" if k % 2 else None)  # some errors: still a result
    proc = cli("-c", config_dir, "bench", "echo", "--concurrency", "1", "--requests", "4", "--no-progress")
    assert proc.returncode == 0, proc.stderr


def test_check_probes_a_rerank_model_with_a_one_document_rerank(cli, config_dir, dashscope_server):
    proc = cli("-c", config_dir, "check", "ds-rerank", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)[0]
    assert report["ok"] and report["found"]["reranked_documents"] == 1
    paths = [r.path for r in dashscope_server.requests]
    assert paths == ["/api/v1/services/rerank/text-rerank/text-rerank"]  # not /models
    assert dashscope_server.requests[0].body["input"]["documents"] == ["ping"]


def test_models_says_where_configs_were_looked_for(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MODULE_AI_CONFIG"}
    proc = subprocess.run([sys.executable, "-m", "module_ai", "models"], capture_output=True, text=True,
                          cwd=str(tmp_path), env=env, timeout=60, check=False)
    assert proc.returncode == 0 and "minilm" in proc.stdout
    hint = proc.stderr
    assert str(tmp_path / "configs") in hint and "--config" in hint and "MODULE_AI_CONFIG" in hint
    proc = subprocess.run([sys.executable, "-m", "module_ai", "--config", str(ROOT / "configs"), "models"],
                          capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stderr == ""


def test_embed_options_anywhere(cli, config_dir):
    proc = cli("-c", config_dir, "embed", "ds-emb", "--json", "你好", "世界")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["dimensions"] == 64 and len(data["vectors"]) == 2
    proc = cli("-c", config_dir, "embed", "ds-emb", "--jsn", "你好")
    assert proc.returncode == 1 and "unrecognized arguments: --jsn" in proc.stderr


def test_chat_repl_reports_a_failed_request_in_one_line_and_goes_on(cli, config_dir, echo):
    echo.configure(faults=lambda k, path, body: "500" if k == 2 else None)
    proc = cli("-c", config_dir, "chat", "echo", stdin="第一\n第二\n/help\n第三\n/exit\n")
    assert proc.returncode == 0, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "request failed" in errors[0] and "HTTP 500" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    bodies = [r["body"] for r in echo.requests if r["path"].endswith("/chat/completions")]
    assert len(bodies) == 3  # /help was answered locally
    last = bodies[-1]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "user"]  # the failed turn left no trace
    assert last[0]["content"] == "第一" and last[-1]["content"] == "第三"
    banner = proc.stdout.partition("\n")[0]
    assert "module-ai chat with echo" in banner
    for command in ("/help", "/cost", "/reset", "/exit"):
        assert proc.stdout.count(command) >= 2  # in the banner and again for /help


def test_chat_message_flag_failure_exits_1(cli, config_dir, echo):
    echo.configure(faults=lambda k, path, body: "500")
    proc = cli("-c", config_dir, "chat", "echo", "-m", "你好")
    assert proc.returncode == 1 and "HTTP 500" in proc.stderr and "Traceback" not in proc.stderr
