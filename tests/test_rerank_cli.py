"""``module-ai rerank NAME "query" DOC... [--file F] [--top-n N] [--json]``."""

from __future__ import annotations

import argparse
import json

import pytest

from module_ai.commands import rerank as rerank_cmd
from module_ai.errors import ModuleAIError

DOCS = ["Berlin is known for its museums.", "Paris is the capital and largest city of France.",
        "France produces a lot of cheese."]


def run(argv: list[str]) -> int:
    """Parse like ``module-ai`` does (global ``--config`` first) and run the rerank command."""
    parser = argparse.ArgumentParser(prog="module-ai")
    parser.add_argument("--config", "-c", default=None)
    rerank_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_json_output(capsys):
    assert run(["--config", "configs", "rerank", "minilm-rerank", "What is the capital of France?", *DOCS,
                "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in rows] == [1, 2, 3] and rows[0]["index"] == 1
    assert rows[0]["text"] == DOCS[1] and 0 <= rows[0]["relevance_score"] <= 1 and "raw_score" in rows[0]
    scores = [r["relevance_score"] for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_table_with_file_and_top_n(tmp_path, capsys):
    more = tmp_path / "docs.txt"
    more.write_text("\nThe Seine flows through Paris, the French capital.\n\n", encoding="utf-8")
    assert run(["-c", "configs", "rerank", "minilm-rerank", "What is the capital of France?", DOCS[0],
                "--file", str(more), "--top-n", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "index", "score", "raw", "text"]
    assert len(lines) == 2 and lines[1].split()[:2] == ["1", "1"] and "Seine" in lines[1]


def test_threshold_and_mistakes(capsys):
    assert run(["-c", "configs", "rerank", "minilm-rerank", "capital of France", *DOCS, "--threshold", "0.99",
                "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    with pytest.raises(ModuleAIError, match="no documents"):
        run(["-c", "configs", "rerank", "minilm-rerank", "q"])
    with pytest.raises(ModuleAIError, match="no model named 'nope'"):
        run(["-c", "configs", "rerank", "nope", "q", "doc"])
    with pytest.raises(ModuleAIError, match="cannot read documents file"):
        run(["-c", "configs", "rerank", "minilm-rerank", "q", "--file", "/nonexistent/docs.txt"])


def test_through_the_main_cli_when_registered(capsys):
    from module_ai import cli

    assert cli.main(["-c", "configs", "rerank", "minilm-rerank", "France capital", *DOCS, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["index"] == 1
    assert cli.main(["-c", "configs", "rerank", "nope", "q", "d"]) == 1
    assert "no model named 'nope'" in capsys.readouterr().err
