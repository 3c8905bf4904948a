"""RAG agent: retrieve -> grade relevance -> (rewrite the query and retry, bounded) -> generate with
citations -> groundedness check -> answer or refuse. Works with any LangChain retriever and chat model.

Every model step has its prompt in ``prompts/graph_rag.yaml`` (zh, en). Documents reach the models as
numbered blocks ``[1] source: ...`` with the text between ``<document>`` tags (tags inside the text are
neutralised) and every prompt says that text inside them is data, not instructions. A model whose config
says ``prompt_profile: small`` gets ``graph_rag.small.yaml`` instead (short rules, plain ``[n] text``
blocks), chosen per model as in :func:`~module_ai.chains.rag.rag_chain`: ``llm`` for rewrite and
generate, ``grader_llm`` for grading and the groundedness check.

Judgements are read with :func:`parse_judgement` (是/否/相关/不相关/yes/no/...). When a reply cannot be
read, the documented defaults apply, so garbage output still ends in a bounded number of steps:

- relevance: :data:`DEFAULT_RELEVANT` = True (keep the document: the retriever ranked it, and the
  groundedness check guards the answer);
- groundedness: :data:`DEFAULT_GROUNDED` = False (fail closed: an answer nobody could confirm is refused).

Final state: ``answer``, ``sources`` (index, id, source, score, snippet, cited: see
``chains.context.source_entry``), ``grounded`` (True/False, None when the check is off), ``unsupported`` (sentences that failed the check), ``rewrites``,
``refused``, ``reason`` ("answered", "no_relevant_documents", "ungrounded", "model_refused"),
plus ``query`` (the last query used) and ``relevant`` (the documents that passed grading).

Cost: one grading call per retrieved document per round, one rewrite call per retry, one generation,
and at most ``max_claims`` groundedness calls (each carries the whole context). Streaming tokens with
``stream_mode="messages"`` shows the draft (node ``generate``) before it is checked: show it as
provisional, or wait for the final state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from module_ai.chains.context import (
    citations,
    fit_documents,
    format_blocks,
    neutralize,
    sources_of,
    split_sentences,
    truncate_to_tokens,
)
from module_ai.chains.rag import prompt_profile_of
from module_ai.controls.tokens import estimate_tokens
from module_ai.graphs._common import import_langgraph, messages, window_of
from module_ai.prompts import load_prompt_set
from module_ai.prompts.replies import parse_judgement, reply_text

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

__all__ = ["DEFAULT_GROUNDED", "DEFAULT_RELEVANT", "RagState", "rag_agent"]

DEFAULT_RELEVANT = True
"""Verdict used when a relevance reply cannot be parsed."""
DEFAULT_GROUNDED = False
"""Verdict used when a groundedness reply cannot be parsed."""
QUERY_MAX_CHARS = 200
"""Rewritten queries are cut to this length (a babbling model must not flood the retriever)."""
PROMPT_MARGIN = 64
"""Tokens kept free in every prompt on top of the estimates."""


class RagState(TypedDict, total=False):
    """State of :func:`rag_agent`; invoke with ``{"question": ...}``."""

    question: str
    query: str
    documents: list
    relevant: list
    rewrites: int
    draft: str | None
    context: list
    answer: str
    sources: list
    grounded: bool | None
    unsupported: list
    refused: bool
    reason: str


def rag_agent(
    llm: Any,
    retriever: Any,
    *,
    max_rewrites: int = 2,
    lang: str = "zh",
    grader_llm: Any = None,
    check_grounded: bool = True,
    max_claims: int = 8,
    max_concurrency: int = 4,
    window_tokens: int | None = None,
    checkpointer: Any = None,
    prompt_profile: str | None = None,
) -> CompiledStateGraph:
    """Build the compiled RAG agent graph.

    Args:
        llm: chat model that rewrites queries and writes the answer.
        retriever: any LangChain ``BaseRetriever`` (metadata ``id``/``source``/``score`` are reported).
        max_rewrites: query rewrites tried when no document is relevant, before refusing.
        lang: ``zh`` or ``en`` (prompts and the refusal text).
        grader_llm: model for relevance and groundedness judgements (default ``llm``).
        check_grounded: check every sentence of the answer against the documents.
        max_claims: at most this many groundedness calls per answer (sentences are grouped).
        max_concurrency: parallel judgement calls.
        window_tokens: override ``input_tokens - out_tokens`` of the models' configs.
        checkpointer: optional LangGraph checkpointer (the agent itself needs none).
        prompt_profile: ``default`` or ``small`` for both models; ``None`` takes each model's
            ``prompt_profile`` from its config.

    Example:
        >>> agent = rag_agent(reg.chat("qwen3-4b"), kb.as_retriever(k=4))   # doctest: +SKIP
        >>> out = agent.invoke({"question": "年假有几天？"})                  # doctest: +SKIP
        >>> out["answer"], [s["source"] for s in out["sources"] if s["cited"]]  # doctest: +SKIP
    """
    if max_rewrites < 0:
        raise ValueError("max_rewrites must be >= 0")
    lg = import_langgraph()
    grader = grader_llm or llm
    profiles = (prompt_profile or prompt_profile_of(llm), prompt_profile or prompt_profile_of(grader))
    steps = _Steps(llm, grader, retriever, lang, profiles, max_rewrites=max_rewrites, max_claims=max_claims,
                   max_concurrency=max_concurrency, window=window_tokens)
    b = lg.StateGraph(RagState)
    for name in ("start", "retrieve", "grade", "rewrite", "generate", "check", "answer", "refuse"):
        b.add_node(name, getattr(steps, name))
    b.add_edge(lg.START, "start")
    b.add_edge("start", "retrieve")
    b.add_edge("retrieve", "grade")
    b.add_conditional_edges("grade", steps.after_grade, ["generate", "rewrite", "refuse"])
    b.add_edge("rewrite", "retrieve")
    after_generate = steps.after_generate if check_grounded else steps.after_generate_unchecked
    b.add_conditional_edges("generate", after_generate, ["check", "answer", "refuse"])
    b.add_conditional_edges("check", lambda s: "answer" if s["grounded"] else "refuse", ["answer", "refuse"])
    b.add_edge("answer", lg.END)
    b.add_edge("refuse", lg.END)
    graph = b.compile(checkpointer=checkpointer, name="module_ai_rag_agent")
    return graph.with_config(recursion_limit=3 * (max_rewrites + 1) + 12)


class _Steps:
    """The nodes and routers of the agent, sharing models, prompts and limits."""

    def __init__(self, llm, grader, retriever, lang, profiles, *, max_rewrites, max_claims, max_concurrency,
                 window) -> None:
        self.llm, self.grader, self.retriever = llm, grader, retriever
        self.profile, self.grader_profile = profiles
        self.p = load_prompt_set("graph_rag", lang, profile=self.profile)  # rewrite, generate: llm
        self.gp = load_prompt_set("graph_rag", lang, profile=self.grader_profile)  # grade, ground: grader
        self.max_rewrites, self.max_claims, self.max_concurrency = max_rewrites, max_claims, max_concurrency
        self.window, self.grader_window = window_of(llm, window), window_of(grader, window)
        self.refusal = self.p["refusal"]

    # nodes ---------------------------------------------------------------------------------------
    def start(self, state: RagState) -> dict:
        """Reset the per-question fields (a checkpointed thread keeps the previous question's)."""
        return {"query": state["question"], "rewrites": 0, "documents": [], "relevant": [], "draft": None,
                "context": [], "sources": [], "grounded": None, "unsupported": [], "reason": ""}

    def retrieve(self, state: RagState, config) -> dict:
        return {"documents": list(self.retriever.invoke(state["query"], config))}

    def grade(self, state: RagState, config) -> dict:
        docs = state.get("documents") or []
        fixed = estimate_tokens(self.gp["grade_system"] + self.gp["grade_user"] + state["question"])
        room = None if self.grader_window is None else self.grader_window - fixed - PROMPT_MARGIN
        prompts = [messages(self.gp["grade_system"], self.gp["grade_user"].format(
            question=state["question"], document=neutralize(_clip(d.page_content, room)))) for d in docs]
        verdicts = self._judge(prompts, DEFAULT_RELEVANT, config)
        return {"relevant": [d for d, ok in zip(docs, verdicts) if ok]}

    def rewrite(self, state: RagState, config) -> dict:
        user = self.p["rewrite_user"].format(question=state["question"], query=state.get("query", ""))
        reply = self.llm.invoke(messages(self.p["rewrite_system"], user), config)
        return {"query": _clean_query(reply_text(reply)) or state["question"],
                "rewrites": state.get("rewrites", 0) + 1}

    def generate(self, state: RagState, config) -> dict:
        system = self.p["generate_system"].format(refusal=self.refusal)
        fixed = estimate_tokens(system + self.p["generate_user"] + state["question"])
        budget = None if self.window is None else self.window - fixed - PROMPT_MARGIN
        docs = fit_documents(state.get("relevant") or [], budget)
        context = format_blocks(docs, self.profile)
        user = self.p["generate_user"].format(context=context, question=state["question"])
        draft = reply_text(self.llm.invoke(messages(system, user), config))
        refused = _norm(self.refusal) in _norm(draft)
        return {"draft": draft, "context": docs, "sources": sources_of(docs, draft),
                "reason": "model_refused" if refused else ""}

    def check(self, state: RagState, config) -> dict:
        docs, sentences = state.get("context") or [], split_sentences(state.get("draft", ""))
        bad = [s for s in sentences if any(not 1 <= n <= len(docs) for n in citations(s))]
        claims = group_claims([s for s in sentences if s not in bad], self.max_claims)
        fixed = estimate_tokens(self.gp["ground_system"] + self.gp["ground_user"] + max(claims, key=len, default=""))
        room = None if self.grader_window is None else self.grader_window - fixed - PROMPT_MARGIN
        context = format_blocks(fit_documents(docs, room), self.grader_profile)
        prompts = [messages(self.gp["ground_system"], self.gp["ground_user"].format(context=context, sentence=c))
                   for c in claims]
        verdicts = self._judge(prompts, DEFAULT_GROUNDED, config)
        unsupported = bad + [c for c, ok in zip(claims, verdicts) if not ok]
        if not sentences:
            unsupported = [state.get("draft", "")]
        return {"grounded": not unsupported, "unsupported": unsupported}

    def answer(self, state: RagState) -> dict:
        return {"answer": state["draft"], "refused": False, "reason": "answered",
                "grounded": state.get("grounded"), "unsupported": state.get("unsupported", []),
                "rewrites": state.get("rewrites", 0)}

    def refuse(self, state: RagState) -> dict:
        reason = state.get("reason") or ("ungrounded" if state.get("draft") is not None else
                                         "no_relevant_documents")
        return {"answer": self.refusal, "refused": True, "reason": reason, "grounded": False,
                "unsupported": state.get("unsupported", []), "sources": state.get("sources", []),
                "rewrites": state.get("rewrites", 0)}

    # routers -------------------------------------------------------------------------------------
    def after_grade(self, state: RagState) -> str:
        if state.get("relevant"):
            return "generate"
        return "rewrite" if state.get("rewrites", 0) < self.max_rewrites else "refuse"

    def after_generate(self, state: RagState) -> str:
        return "refuse" if state.get("reason") else "check"

    def after_generate_unchecked(self, state: RagState) -> str:
        return "refuse" if state.get("reason") else "answer"

    # helpers -------------------------------------------------------------------------------------
    def _judge(self, prompts: list, default: bool, config) -> list[bool]:
        if not prompts:
            return []
        replies = self.grader.batch(prompts, {**(config or {}), "max_concurrency": self.max_concurrency})
        verdicts = [parse_judgement(reply_text(r)) for r in replies]
        return [default if v is None else v for v in verdicts]


def _clip(text: str, room: int | None) -> str:
    return text if room is None else truncate_to_tokens(text, max(room, 0))


def _norm(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _clean_query(text: str) -> str:
    """First non-empty line, without labels and quotes, cut to :data:`QUERY_MAX_CHARS`."""
    for line in text.splitlines():
        line = _QUERY_LABEL.sub("", line.strip().strip(_QUOTES)).strip().strip(_QUOTES).strip()
        if line:
            return line[:QUERY_MAX_CHARS]
    return ""


_QUOTES = "\"'“”‘’`*"
_QUERY_LABEL = re.compile(r"^(改写后的查询|新查询|查询|rewritten query|new query|query)\s*[:：]", re.IGNORECASE)


def group_claims(sentences: Sequence[str], max_claims: int) -> list[str]:
    """At most ``max_claims`` claims: consecutive sentences joined when there are more."""
    if len(sentences) <= max_claims:
        return list(sentences)
    size = -(-len(sentences) // max_claims)
    return [" ".join(sentences[i:i + size]) for i in range(0, len(sentences), size)]
