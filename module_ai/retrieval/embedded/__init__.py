"""The embedded knowledge base: one folder with float32 vectors, a bm25s index, chunks and a manifest."""
