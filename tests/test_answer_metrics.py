"""Answer scoring: normalisation, F1, containment, refusals, citations, and the summary over records.

Every expected value is computed by hand in the comment next to it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from module_ai.chains.answer_eval import load_answers, sample_questions
from module_ai.chains.answer_metrics import (
    answer_contains,
    answer_f1,
    citation_scores,
    is_refusal,
    normalize_answer,
    tokens_of,
)
from module_ai.chains.answer_report import (
    apply_settings,
    choose_threshold,
    min_score_curve,
    summarize,
    worst_examples,
)
from module_ai.retrieval.evaluate import load_beir

REFUSAL = "根据已知信息无法回答"
CMRC = Path(__file__).resolve().parents[1] / "data" / "retrieval" / "cmrc2018-dev-zh"


def test_normalisation_zh_and_en():
    assert normalize_answer("《战国 无双3》！[2]") == "战国无双3"        # spaces, CJK punctuation, citation gone
    assert normalize_answer("The Big  cat.", "en") == "big cat"          # lowercase, article, punctuation
    assert normalize_answer("An apple, a day!", "en") == "apple day"
    assert tokens_of("光荣和ω-force开发[1]") == ["光", "荣", "和", "ω", "force", "开", "发"]
    assert tokens_of("1903年") == ["1903", "年"]


def test_f1_hand_computed():
    # pred 光 荣 和 ω force 开 发 (7), gold 光 荣 和 ω force (5), overlap 5: P 5/7, R 1 -> 10/12
    assert answer_f1("光荣和ω-force开发[1]", ["光荣和ω-force"]) == 0.8333
    # pred 1903 年 建 成 (4), gold 1903 年 (2), overlap 2: P 1/2, R 1 -> 2/3
    assert answer_f1("1903年建成", ["1903年"]) == 0.6667
    # pred 雨 城 堡, gold 村 雨 城, overlap 2: P = R = 2/3 -> 2/3
    assert answer_f1("雨城堡", ["村雨城"]) == 0.6667
    # best over golds: the first gold matches exactly
    assert answer_f1("村雨城", ["村雨城", "任天堂游戏谜之村雨城"]) == 1.0
    # en: pred answer is big cat (4), gold big cat (2) -> P 1/2, R 1 -> 2/3
    assert answer_f1("The answer is the Big Cat", ["a big cat"], "en") == 0.6667
    assert answer_f1("", ["锣鼓点"]) == 0.0
    assert answer_f1("锣鼓点", []) == 0.0


def test_containment():
    assert answer_contains("是村雨城。[1]", ["村雨城"])
    assert not answer_contains("村城雨", ["雨城"])
    assert answer_contains("答案：鼓 、锣、钹和板[1]", ["鼓、锣、钹和板"])  # punctuation and spaces ignored
    assert answer_contains("It is the big cat.", ["Big Cat"], "en")
    assert not answer_contains("bigcat", ["big cat"], "en")              # whole tokens only


def test_refusal_detection():
    # the package's one detector (module_ai.chains.grounding.is_refusal), as the evaluation uses it
    assert is_refusal("根据已知信息无法回答。[2]", REFUSAL)
    assert is_refusal("[1][2]。", REFUSAL)                                # citations only
    assert is_refusal("", REFUSAL)
    assert is_refusal("I cannot answer from the given documents.", "I cannot answer from the given documents")
    assert not is_refusal("文中没有提到。", REFUSAL)                      # a paraphrase is not the phrase
    assert not is_refusal("锣鼓点[1]", REFUSAL)


def test_citation_scores():
    # distinct markers 1, 3, 7; block 3 holds the passage; 7 names no block of 5
    assert citation_scores("甲[1][3]。乙[3][7]。", {3}, 5) == {"markers": 3, "good": 1, "out_of_range": 1}
    assert citation_scores("没有引用。", {1}, 5) == {"markers": 0, "good": 0, "out_of_range": 0}


def _sent(text, cites, lexical, embedding=0.0):
    return {"text": text, "citations": cites, "lexical": lexical, "embedding": embedding}


def _rec(rid, kind, answer, refused, top, relevant, grounded, sentences, gold=("x",)):
    return {"id": rid, "kind": kind, "question": rid, "gold": list(gold), "answer": answer, "refused": refused,
            "top_score": top, "relevant_blocks": relevant, "n_blocks": 3, "grounded": grounded,
            "sentences": sentences, "latency_s": 1.0, "tokens": 10, "cost": 0.001}


RECORDS = [
    _rec("a1", "answerable", "锣鼓点[1]", False, 0.9, [1], True, [_sent("锣鼓点[1]", [1], 1.0)], ["锣鼓点"]),
    _rec("a2", "answerable", "鼓和锣[2][1]", False, 0.5, [1], True, [_sent("鼓和锣[2][1]", [2, 1], 0.4, 0.7)],
         ["鼓、锣、钹和板"]),
    _rec("a3", "answerable", REFUSAL, True, 0.8, [2], False, [], ["三茂铁路股份有限公司"]),
    _rec("a4", "answerable", "1903年[2]。由张三建成[2]。", False, 0.4, [], False,
         [_sent("1903年[2]。", [2], 1.0), _sent("由张三建成[2]。", [2], 0.2)], ["1903年"]),
    _rec("u1", "unanswerable", "364.6公里[1]", False, 0.3, [], False, [_sent("364.6公里[1]", [1], 0.0, 0.1)]),
    _rec("u2", "unanswerable", REFUSAL, True, 0.6, [], False, []),
]


def test_summary_hand_computed():
    m = summarize(RECORDS)
    assert (m["n"], m["answerable"], m["unanswerable"]) == (6, 4, 2)
    assert m["correct"] == 0.5            # a1 and a4 contain a gold answer; a2 does not; a3 refused
    # F1: a1 1; a2 pred 鼓和锣 (3) vs 鼓锣钹和板 (5), overlap 3: P 1, R 3/5 -> 0.75; a3 0 (refused)
    # a4: pred 1903 年 由 张 三 建 成 (7) vs 1903 年 (2): P 2/7, R 1 -> 4/9 = 0.4444
    assert m["f1"] == pytest.approx((1 + 0.75 + 0 + 0.4444) / 4, abs=1e-4)
    assert m["citation_precision"] == 0.5  # good markers 1 (a1) + 1 (a2) + 0 (a4) over 1 + 2 + 1
    assert m["citation_recall"] == 1.0     # a1 and a2 had the passage in context and cite it; a4 had not
    assert m["false_refusal"] == 0.25 and m["hallucination"] == 0.5
    assert m["retrieval_hit"] == 0.75      # a1, a2, a3
    assert m["grounded"] == 0.5            # answered a1 a2 a4 u1: T T F F
    # flags (not grounded) among answered: a4 (right), u1 (wrong) -> precision 1/2;
    # wrong answers a2 (passed), u1 (flagged) -> recall 1/2
    assert m["flag_precision"] == 0.5 and m["flag_recall"] == 0.5
    assert m["latency_s"] == 1.0 and m["tokens"] == 10.0 and m["cost"] == 0.006


def test_min_score_and_curve():
    m = summarize([apply_settings(r, min_score=0.45, refusal=REFUSAL) for r in RECORDS])
    assert m["false_refusal"] == 0.5 and m["hallucination"] == 0.0 and m["correct"] == 0.25  # a4, u1 refused
    curve = min_score_curve(RECORDS, refusal=REFUSAL)
    assert [r["min_score"] for r in curve] == [None, 0.3, 0.4, 0.5, 0.6, 0.8, 0.9]
    assert curve[0] == {"min_score": None, "false_refusal": 0.25, "hallucination": 0.5, "correct": 0.5}
    assert curve[2] == {"min_score": 0.4, "false_refusal": 0.25, "hallucination": 0.0, "correct": 0.5}  # u1 only
    assert curve[3]["false_refusal"] == 0.5  # 0.5 also refuses a4 (0.4)
    assert RECORDS[3]["refused"] is False  # inputs unchanged


def test_question_coverage_and_min_coverage():
    from langchain_core.documents import Document

    from module_ai.chains.rag import question_coverage

    # question bigrams 黄河 河注 注入 入哪 哪个 个海 (6); the block has 黄河 河注 注入 -> 3/6
    assert question_coverage("黄河注入哪个海？", [Document("长城很长"), Document("黄河注入渤海")]) == 0.5
    assert question_coverage("q", []) is None
    records = [{**r, "coverage": c} for r, c in zip(RECORDS, (0.9, 0.7, 0.6, 0.2, 0.1, 0.5))]
    m = summarize([apply_settings(r, min_coverage=0.3, refusal=REFUSAL) for r in records])
    assert (m["false_refusal"], m["hallucination"]) == (0.5, 0.0)  # a4 (0.2) and u1 (0.1) refused
    curve = min_score_curve(records, refusal=REFUSAL, key="coverage")
    assert curve[1] == {"min_coverage": 0.1, "false_refusal": 0.25, "hallucination": 0.5, "correct": 0.5}
    assert choose_threshold(curve)["min_coverage"] == 0.2  # lowest hallucination (0) at no extra refusal


def test_policies_and_checks():
    lex = [apply_settings(r, policy="supported_only", refusal=REFUSAL) for r in RECORDS]
    assert lex[3]["answer"] == "1903年[2]。" and lex[1]["refused"] and lex[4]["refused"]
    m = summarize(lex)
    assert (m["correct"], m["false_refusal"], m["hallucination"]) == (0.5, 0.5, 0.0)
    emb = summarize([apply_settings(r, check="embedding", policy="supported_only", refusal=REFUSAL)
                     for r in RECORDS])
    assert (emb["false_refusal"], emb["hallucination"]) == (0.25, 0.0)  # a2 is supported by embeddings (0.7)
    strict = summarize([apply_settings(r, policy="refuse_ungrounded", refusal=REFUSAL) for r in RECORDS])
    assert (strict["correct"], strict["false_refusal"]) == (0.25, 0.75)  # a2 and a4 refused as well
    checked = [apply_settings(r, check="embedding") for r in RECORDS]
    assert [r["grounded"] for r in checked] == [True, True, False, False, False, False]


def test_worst_examples_order():
    worst = worst_examples(RECORDS, 5)
    assert [w["id"] for w in worst] == ["a3", "u1", "a4", "a2"]  # badness 1, 1, 1-0.4444, 1-0.75
    assert worst[0]["why"].startswith("refused") and "not in the index" in worst[1]["why"]


def test_sampling_is_seeded_disjoint_and_removes_the_passages():
    _, _, qrels = load_beir(CMRC)
    gold = load_answers(CMRC)
    ans, una, removed = sample_questions(qrels, gold, 20, seed=3, split="tune")
    assert len(ans) == len(una) == 20 and not set(ans) & set(una)
    assert removed == {d for q in una for d in qrels[q]}
    assert all(not set(qrels[q]) & removed for q in ans)
    assert sample_questions(qrels, gold, 20, seed=3, split="tune") == (ans, una, removed)
    held = sample_questions(qrels, gold, 20, seed=3, split="heldout")
    assert not (set(ans) | set(una)) & (set(held[0]) | set(held[1]))  # tune and held-out never share a query
