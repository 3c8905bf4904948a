"""Thin LCEL builders over given objects: chat with history, the grounded RAG answer, context and grounding."""
