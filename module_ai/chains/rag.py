"""The grounded answer chain: retrieve → (rerank) → numbered context → cited answer → groundedness.

Example:
    >>> chain = rag_chain(reg.chat("qwen3-4b"), kb.as_retriever(k=8),
    ...                   reranker=reg.reranker("gte-rerank-v2"))          # doctest: +SKIP
    >>> out = chain.invoke("问题")                                           # doctest: +SKIP
    >>> out["answer"], out["sources"], out["grounded"]                      # doctest: +SKIP

``chain.stream(q)`` yields ``{"answer": token}`` pieces as they come, then one piece with
``sources``, ``grounded`` and the rest. Retrieval under ``min_score`` refuses without calling the
model. Context blocks are delimited, and delimiter look-alikes inside documents are neutralized, so a
document's text cannot pass as instructions or close its block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from module_ai.chains.context import format_blocks, format_context, source_entry
from module_ai.chains.grounding import check_groundedness, is_refusal, lexical_support
from module_ai.prompts import load_prompt
from module_ai.prompts.replies import parse_judgement, reply_text

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

__all__ = ["DEFAULT_MIN_COVERAGE", "format_context", "prompt_profile_of", "question_coverage", "rag_chain",
           "refusal_text", "source_entry"]

DEFAULT_MIN_COVERAGE = 0.3
"""``min_coverage`` of ``rag ask``, the demo and ``rag eval --answers``: chosen on the tuning slice of
cmrc2018-dev-zh from qwen2.5-coder-0.5b's answers (small profile, e5 hybrid top 3, 12 answerable + 12
unanswerable; the curve's choice was 0.308, rounded). On the held-out slice, with the small profile:
false refusal 0.25 -> 0.33, hallucination 0.92 -> 0.17, correct 0.42 -> 0.33; against the earlier
defaults (long prompt, no gate: 0.58 / 0.58 / 0.33) both error rates are lower at the same correctness.
Retrieval-only curves (BM25 top 3, 150 + 150 per slice) at 0.30: 4% / 13% of answerable and 71% / 75% of
unanswerable questions refused, tuning / held-out (benchmarks/bench_answers.py)."""
_SCORE_KEYS = ("relevance_score", "dense_score", "score")
"""Score used for the ``min_score`` refusal: reranker score, else dense similarity, else fused score."""


def refusal_text(lang: str = "zh", prompts_dir: str | None = None) -> str:
    """The refusal sentence ("根据已知信息无法回答" / "I cannot answer from the given documents")."""
    return load_prompt("rag_refusal", lang, override_dir=prompts_dir).strip()


def _top_score(docs: Sequence[Any]) -> float | None:
    for key in _SCORE_KEYS:
        values = [d.metadata[key] for d in docs if d.metadata.get(key) is not None]
        if values:
            return max(float(v) for v in values)
    return None


def question_coverage(question: str, docs: Sequence[Any]) -> float | None:
    """Share (0..1) of the question's content units (CJK bigrams, latin words) found in its best block."""
    return max((round(lexical_support(question, d.page_content), 3) for d in docs), default=None)


def _select(question: str, docs: list, reranker: Any, k: int | None, min_score: float | None,
            min_coverage: float | None = None) -> dict:
    if reranker is not None and docs:
        docs = list(reranker.compress_documents(docs, question))
    docs = docs[:k] if k else docs
    top, coverage = _top_score(docs), question_coverage(question, docs)
    refused = not docs or (min_score is not None and (top is None or top < min_score)) or (
        min_coverage is not None and (coverage is None or coverage < min_coverage))
    return {"question": question, "docs": docs, "refused": refused, "top_score": top, "coverage": coverage}


def _question_of(value: Any) -> str:
    return value["question"] if isinstance(value, dict) else str(value)


def _retrieve(value: Any, *, retriever: Any, reranker: Any, k: int | None, min_score: float | None,
              min_coverage: float | None) -> dict:
    question = _question_of(value)
    return _select(question, list(retriever.invoke(question)), reranker, k, min_score, min_coverage)


async def _aretrieve(value: Any, *, retriever: Any, reranker: Any, k: int | None, min_score: float | None,
                     min_coverage: float | None):
    question = _question_of(value)
    docs = list(await retriever.ainvoke(question))
    if reranker is not None and docs:
        docs = list(await reranker.acompress_documents(docs, question))
    return _select(question, docs, None, k, min_score, min_coverage)


def prompt_profile_of(llm: Any) -> str:
    """The ``prompt_profile`` of the (first) module_ai config behind ``llm``; ``default`` otherwise."""
    from module_ai.controls.capabilities import configs_of

    return next((c.prompt_profile for c in configs_of(llm)), "default")


def _answer_step(state: dict, *, llm: Any, lang: str, prompts_dir: str | None, profile: str | None) -> Any:
    if state["refused"]:
        return refusal_text(lang, prompts_dir)
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    profile = profile or prompt_profile_of(llm)
    prompt = ChatPromptTemplate.from_messages([
        ("system", load_prompt("rag_answer_system", lang, override_dir=prompts_dir, profile=profile)),
        ("human", load_prompt("rag_answer_user", lang, override_dir=prompts_dir, profile=profile)),
    ])
    values = {"context": format_blocks(state["docs"], profile), "question": state["question"]}
    return prompt.partial(**values) | llm | StrOutputParser()


class _Finalizer:
    """Streams answer pieces through, then adds sources and the groundedness report."""

    def __init__(self, lang: str, prompts_dir: str | None, embeddings: Any, judge_llm: Any) -> None:
        self.lang, self.prompts_dir = lang, prompts_dir
        self.embeddings, self.judge_llm = embeddings, judge_llm

    def transform(self, chunks: Iterator[dict]) -> Iterator[dict]:
        from langchain_core.runnables.utils import AddableDict

        state: dict[str, Any] = {}
        for chunk in chunks:
            _merge(state, chunk)
            if chunk.get("answer"):
                yield AddableDict(answer=chunk["answer"])
        yield AddableDict(self.report(state))

    async def atransform(self, chunks: AsyncIterator[dict]) -> AsyncIterator[dict]:
        from langchain_core.runnables.utils import AddableDict

        state: dict[str, Any] = {}
        async for chunk in chunks:
            _merge(state, chunk)
            if chunk.get("answer"):
                yield AddableDict(answer=chunk["answer"])
        yield AddableDict(self.report(state))

    def report(self, state: dict) -> dict[str, Any]:
        docs, answer = state.get("docs", []), state.get("answer", "")
        refusal = refusal_text(self.lang, self.prompts_dir)
        embed = self.embeddings.embed_documents if self.embeddings is not None else None
        check = check_groundedness(answer, [d.page_content for d in docs], refusal=refusal, embed=embed,
                                   judge=self._judge if self.judge_llm is not None else None)
        cited = sorted({n for s in check["sentences"] for n in s["citations"] if 1 <= n <= len(docs)})
        refused = bool(state.get("refused")) or is_refusal(answer, refusal)
        return {"question": state.get("question"),
                "sources": [source_entry(n, docs[n - 1], set(cited)) for n in cited],
                "contexts": [source_entry(i, d, set(cited)) for i, d in enumerate(docs, 1)],
                "grounded": check["grounded"] and not refused, "unsupported": check["unsupported"],
                "bad_citations": check["bad_citations"], "refused": refused,
                "top_score": state.get("top_score"), "coverage": state.get("coverage")}

    def _judge(self, sentence: str, evidence: str) -> bool:
        prompt = load_prompt("rag_judge", self.lang, override_dir=self.prompts_dir)
        verdict = parse_judgement(reply_text(self.judge_llm.invoke(prompt.format(sentence=sentence,
                                                                                  evidence=evidence))))
        return bool(verdict)


def _merge(state: dict, chunk: dict) -> None:
    for key, value in chunk.items():
        if key == "answer":
            state["answer"] = state.get("answer", "") + value
        else:
            state[key] = value


def rag_chain(
    llm: Any,
    retriever: Any,
    reranker: Any = None,
    *,
    lang: str = "zh",
    k: int | None = None,
    min_score: float | None = None,
    min_coverage: float | None = None,
    embeddings: Any = None,
    judge_llm: Any = None,
    prompts_dir: str | None = None,
    prompt_profile: str | None = None,
) -> Runnable:
    """Build the cited, grounded answer chain over given objects.

    Args:
        llm: any LangChain chat model.
        retriever: any LangChain ``BaseRetriever`` (e.g. ``kb.as_retriever(k=8)``).
        reranker: optional ``BaseDocumentCompressor`` applied to the retrieved documents.
        lang: ``zh`` or ``en`` prompt templates and refusal text.
        k: keep at most this many documents as context (after rerank).
        min_score: refuse without calling ``llm`` when the best document's score is lower. The
            score is ``relevance_score`` (reranker, 0..1) if present, else ``dense_score``, else
            ``score``.
        min_coverage: refuse without calling ``llm`` when less than this share (0..1) of the
            question's content units (CJK bigrams, latin words) occurs in its best context block
            (a scale that reads the same for every retriever and embedding model).
        embeddings: optional ``Embeddings`` for the embedding-overlap groundedness check.
        judge_llm: optional chat model judging each sentence against its cited blocks.
        prompts_dir: folder with user overrides of the templates.
        prompt_profile: ``default`` or ``small`` (short rules for small local models); ``None``
            takes the ``prompt_profile`` of ``llm``'s config.

    Returns:
        A Runnable: ``str`` (or ``{"question": str}``) → ``{"answer", "sources", "grounded",
        "unsupported", "refused", "contexts", ...}``; ``stream`` yields answer pieces first. An
        answer that is empty, only citation markers or the refusal sentence counts as ``refused``.
    """
    from langchain_core.runnables import RunnableGenerator, RunnableLambda, RunnablePassthrough

    options = {"retriever": retriever, "reranker": reranker, "k": k, "min_score": min_score,
               "min_coverage": min_coverage}
    retrieve = RunnableLambda(partial(_retrieve, **options), afunc=partial(_aretrieve, **options))
    answer = RunnableLambda(partial(_answer_step, llm=llm, lang=lang, prompts_dir=prompts_dir,
                                    profile=prompt_profile))
    final = _Finalizer(lang, prompts_dir, embeddings, judge_llm)
    chain = retrieve | RunnablePassthrough.assign(answer=answer) | RunnableGenerator(final.transform,
                                                                                    final.atransform)
    return chain.with_config(run_name="module_ai_rag")
