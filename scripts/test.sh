#!/usr/bin/env bash
# Install the test dependencies and run the whole suite (servers are started by the test fixtures:
# a real llama.cpp server with a generated tiny GGUF, and local DashScope/Ollama/fault servers).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null; then                # real Redis for the shared-limits tests
  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null
fi
python -m pip install --quiet "torch==2.13.0"            # CPU wheel first, so nothing pulls a CUDA build
python -m pip install --quiet -e ".[dev,notebooks]"
command -v tmux >/dev/null || { apt-get update -qq && apt-get install -y -qq tmux; }  # the REPL terminal test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python -m pytest -q -p no:cacheprovider "$@"
