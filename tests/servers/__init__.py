"""Real and fake model servers for module_ai's tests (see tests/conftest.py for the fixtures).

- tiny_gguf.make_tiny_gguf(path): a 0.5 MB random llama GGUF.
- llama_server.start_llama_server(gguf): the real llama-cpp-python OpenAI-compatible server (subprocess).
- fake_dashscope.start(api_key): DashScope compatible-mode chat/embeddings + native and compatible rerank.
- fake_ollama.start(gguf): Ollama native API backed by the tiny GGUF (llama_cpp in-process).
- fault_openai.start(api_key): fault-injecting OpenAI-compatible server (asyncio).
"""
