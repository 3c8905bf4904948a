"""Crash and resume: kill an indexing process mid-way; the last commit stays readable; the rerun
re-embeds only what the killed process had not cached."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from module_ai.retrieval import KnowledgeBase
from module_ai.retrieval._testing import HashingEmbeddings

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import pathlib, sys, time
from module_ai.retrieval import KnowledgeBase
from module_ai.retrieval._testing import HashingEmbeddings

class Stalling(HashingEmbeddings):
    def embed_documents(self, texts):
        out = super().embed_documents(texts)
        if self.document_calls == 3:  # two batches are cached by now; stall inside the third
            pathlib.Path(sys.argv[3]).write_text("stalled")
            time.sleep(300)
        return out

kb = KnowledgeBase.open(sys.argv[1], Stalling(size=32), batch_size=4, show_progress=False)
kb.add_paths(sys.argv[2])
"""


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"indexer exited early:\n{proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("indexer never reached the third batch")
        time.sleep(0.05)


def test_kill_mid_index_then_resume(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "a.txt").write_text("第一批文件讲长城的历史。", encoding="utf-8")
    (first / "b.txt").write_text("第一批文件讲黄河的水文。", encoding="utf-8")
    for i in range(10):
        (second / f"n{i}.txt").write_text(f"第二批第{i}号文件，主题编号{i * 7}，内容各不相同。", encoding="utf-8")
    kb_dir = tmp_path / "kb"
    KnowledgeBase.build(first, kb_dir, HashingEmbeddings(size=32), show_progress=False)

    script = tmp_path / "indexer.py"
    script.write_text(SCRIPT, encoding="utf-8")
    marker = tmp_path / "stalled"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(kb_dir), str(second), str(marker)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(marker, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    emb = HashingEmbeddings(size=32)
    kb = KnowledgeBase.open(kb_dir, emb)  # the last committed state: only the first batch of files
    assert sorted(Path(s).name for s in kb.sources()) == ["a.txt", "b.txt"]
    assert Path(kb.search("长城", k=1)[0].metadata["source"]).name == "a.txt"

    report = kb.add_paths(second)  # rerun: 8 of 10 texts were cached before the kill
    assert len(report.added) == 10 and report.embedded == 2 and emb.texts_embedded == 2
    assert len(kb.sources()) == 12
    assert Path(kb.search("第二批第3号文件", k=1, mode="bm25")[0].metadata["source"]).name == "n3.txt"
    reopened = KnowledgeBase.open(kb_dir, emb)
    assert len(reopened.documents()) == 12
    assert not [p for p in kb_dir.iterdir() if p.name.startswith(".tmp")]
