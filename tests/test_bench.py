"""``module-ai bench`` and ``module-ai cost`` end to end, plus the recommendation rule."""

from __future__ import annotations

import json

import pytest

from module_ai.cli import main
from module_ai.controls.bench import LevelResult, recommend
from module_ai.controls.limits import limiter_for


@pytest.fixture
def config_dir(tmp_path, echo):
    (tmp_path / "fm.json").write_text(json.dumps({
        "model_type": "chat", "server_type": "openai", "model": "fault-model", "url": echo.base_url,
        "api_key": "${MODULE_AI_TEST_KEY}", "pay_in": 0.3, "pay_out": 1.2, "max_concurrency": 2,
        "out_tokens": 16, "max_retries": 3}))
    return tmp_path


def test_bench_json_reports_every_level_and_a_recommendation(config_dir, echo, capsys):
    echo.configure(latency_ms=30)
    assert main(["-c", str(config_dir), "bench", "fm", "--concurrency", "4,1", "--requests", "12",
                 "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [lv["concurrency"] for lv in report["levels"]] == [1, 4]
    for level in report["levels"]:
        assert level["requests"] == 12 and level["errors"] == 0
        assert 0 < level["ttft_p50_s"] <= level["latency_p50_s"] <= level["latency_p95_s"]
        assert level["output_tokens_per_s"] > 0 and level["cost_per_1k"] > 0 and level["currency"] == "CNY"
    assert report["recommended_max_concurrency"] == 4  # 30 ms per call: 1 in flight is ~4x slower
    assert echo.stats()["total"] == 24
    assert echo.stats()["max_in_flight"] > 2  # the bench lifts the configured cap of 2 ...
    assert limiter_for(_config(config_dir)).limit == 2  # ... and restores it afterwards


def _config(config_dir):
    from module_ai.registry import load_registry

    return load_registry(config_dir).config("fm")


def test_bench_text_counts_errors_without_retrying(config_dir, echo, capsys):
    echo.configure(every=(4, "500"))
    assert main(["-c", str(config_dir), "bench", "fm", "--concurrency", "1", "--requests", "8",
                 "--max-tokens", "4"]) == 0
    captured = capsys.readouterr()
    assert "25.0%" in captured.out and "HTTP 500" in captured.out
    assert "no recommendation" in captured.out
    assert echo.stats()["total"] == 8  # max_retries 3 in the config, none in the bench
    assert echo.requests[0]["body"]["max_tokens"] == 4
    assert "bench fm" in captured.err  # the progress bar


def test_bench_rejects_bad_arguments(config_dir, capsys):
    assert main(["-c", str(config_dir), "bench", "fm", "--concurrency", "0,x"]) == 1
    assert "--concurrency" in capsys.readouterr().err
    assert main(["-c", str(config_dir), "bench", "nope"]) == 1
    assert "no model named 'nope'" in capsys.readouterr().err


def _level(concurrency: int, rps: float, errors: int = 0) -> LevelResult:
    return LevelResult(concurrency, 100, errors, errors / 100, 1.0, rps, 0.1, 0.2, 0.3, 10.0, 0.5, "CNY")


def test_recommend_picks_the_smallest_level_near_the_best_throughput():
    assert recommend([_level(1, 10), _level(4, 38), _level(16, 40)]) == 4
    assert recommend([_level(1, 10), _level(4, 20), _level(16, 40)]) == 16
    assert recommend([_level(1, 10), _level(4, 38), _level(16, 60, errors=5)]) == 4
    assert recommend([_level(1, 10, errors=50)]) is None
