"""Several processes on one knowledge base: writers serialised by the lock (nothing acknowledged is
lost), readers opening during commits never fail, a killed lock holder never blocks the next writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from langchain_core.documents import Document

from module_ai.errors import KnowledgeBaseError
from module_ai.retrieval import KnowledgeBase
from module_ai.retrieval._testing import HashingEmbeddings
from module_ai.retrieval.embedded import store

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

WRITER = """
import sys
from langchain_core.documents import Document
from module_ai.retrieval import KnowledgeBase
from module_ai.retrieval._testing import HashingEmbeddings

kb_dir, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
kb = KnowledgeBase.open(kb_dir, HashingEmbeddings(size=16), show_progress=False)
for i in range(n):
    kb.add_documents([Document(f"writer {tag} note {i}: topic {tag}{i} only here", metadata={"source": f"{tag}-{i}"})])
    print(f"{tag}-{i}", flush=True)  # acknowledged: the commit returned
"""

HOLDER = """
import pathlib, sys, time
from langchain_core.documents import Document
from module_ai.retrieval import KnowledgeBase
from module_ai.retrieval._testing import HashingEmbeddings

class Stalling(HashingEmbeddings):
    def embed_documents(self, texts):
        pathlib.Path(sys.argv[2]).write_text("holding")
        time.sleep(300)

kb = KnowledgeBase.open(sys.argv[1], Stalling(size=16), show_progress=False)
kb.add_documents([Document("never committed", metadata={"source": "held"})])
"""


def _base(tmp_path: Path) -> Path:
    kb_dir = tmp_path / "kb"
    KnowledgeBase.build([Document("seed text", metadata={"source": "seed"})], kb_dir, HashingEmbeddings(size=16),
                        show_progress=False)
    return kb_dir


def _spawn(tmp_path: Path, code: str, *args: str) -> subprocess.Popen:
    script = tmp_path / f"script_{abs(hash(code))}.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.Popen([sys.executable, str(script), *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


TRIALS, PER_WRITER = 3, 12


def test_two_writer_processes_lose_no_acknowledged_chunk(tmp_path):
    lost_per_trial = []
    for trial in range(TRIALS):
        kb_dir = _base(tmp_path / f"t{trial}")
        procs = [_spawn(tmp_path, WRITER, str(kb_dir), tag, str(PER_WRITER)) for tag in ("a", "b")]
        acked = set()
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            acked |= set(out.split())
        assert len(acked) == 2 * PER_WRITER
        kb = KnowledgeBase.open(kb_dir, None)
        lost_per_trial.append(len(acked - set(kb.sources())))
        assert len({d.id for d in kb.documents()}) == len(kb.documents()) == 2 * PER_WRITER + 1
    assert lost_per_trial == [0] * TRIALS


READER_WRITER = """
import sys
from langchain_core.documents import Document
from module_ai.retrieval import KnowledgeBase
from module_ai.retrieval._testing import HashingEmbeddings

kb = KnowledgeBase.open(sys.argv[1], HashingEmbeddings(size=16), show_progress=False)
for i in range(int(sys.argv[2])):
    kb.add_documents([Document(f"commit {i} text", metadata={"source": f"c{i}"})])
"""


def test_readers_opening_during_commits_never_fail(tmp_path):
    kb_dir = _base(tmp_path)
    commits = 40
    writer = _spawn(tmp_path, READER_WRITER, str(kb_dir), str(commits))
    opens, errors, counts = 0, [], set()
    while writer.poll() is None:
        try:
            kb = KnowledgeBase.open(kb_dir, None)
            counts.add(len(kb.documents()))
            opens += 1
        except KnowledgeBaseError as exc:
            errors.append(str(exc))
    assert writer.returncode == 0, writer.stderr.read()
    assert errors == [] and opens > 10
    assert counts <= set(range(1, commits + 2))  # every state seen is a committed one
    assert len(KnowledgeBase.open(kb_dir, None).documents()) == commits + 1


def test_commit_keeps_the_generation_it_replaced(tmp_path):
    kb_dir = _base(tmp_path)
    stale = store.read_manifest(kb_dir)  # a reader read the manifest, then a writer commits
    kb = KnowledgeBase.open(kb_dir, HashingEmbeddings(size=16))
    kb.add_documents([Document("second", metadata={"source": "s2"})])
    records, *_ = store.load_generation(kb_dir, stale)  # the replaced generation is still whole
    assert [r["metadata"]["source"] for r in records] == ["seed"]
    kb.add_documents([Document("third", metadata={"source": "s3"})])  # two commits later it is gone ...
    with pytest.raises(KnowledgeBaseError):
        store.load_generation(kb_dir, stale)
    manifest, (records, *_rest) = store.open_generation(kb_dir)  # ... and a fresh open reads the newest
    assert manifest["generation"] == kb.manifest["generation"] and len(records) == 3


def test_killed_lock_holder_never_blocks_and_live_holder_gives_clear_error(tmp_path):
    kb_dir = _base(tmp_path)
    marker = tmp_path / "holding"
    holder = _spawn(tmp_path, HOLDER, str(kb_dir), str(marker))
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert holder.poll() is None, holder.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    kb = KnowledgeBase.open(kb_dir, HashingEmbeddings(size=16), lock_timeout=0.3)
    with pytest.raises(KnowledgeBaseError, match=rf"another writer \(pid {holder.pid}\).*lock_timeout"):
        kb.add_documents([Document("blocked", metadata={"source": "b"})])
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert (kb_dir / ".writer.lock").exists()  # the file stays; the kernel dropped the lock with the process
    kb.lock_timeout = 10.0
    report = kb.add_documents([Document("after the kill", metadata={"source": "after"})])
    assert report.added == ["after"]
    assert KnowledgeBase.open(kb_dir, None).sources() == ["after", "seed"]


def test_writer_catches_up_with_a_commit_made_elsewhere(tmp_path):
    kb_dir = _base(tmp_path)
    first = KnowledgeBase.open(kb_dir, HashingEmbeddings(size=16))
    second = KnowledgeBase.open(kb_dir, HashingEmbeddings(size=16))
    first.add_documents([Document("from first", metadata={"source": "f"})])
    second.add_documents([Document("from second", metadata={"source": "s"})])  # must not drop "f"
    second.set_defaults(k=3)
    first.set_defaults(fusion="rrf")  # must not drop "s" nor k=3
    reopened = KnowledgeBase.open(kb_dir, None)
    assert reopened.sources() == ["f", "s", "seed"]
    assert reopened.settings.k == 3 and reopened.settings.fusion == "rrf"
