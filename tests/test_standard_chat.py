"""LangChain's own standard tests (``langchain-tests``) for module_ai's chat models.

- openai backend (``ChatOpenAICompatible``) against the real llama-cpp-python server on the tiny GGUF and
  against the local DashScope server;
- ollama backend (``ManagedChatOllama``) against the local Ollama server.

Each model is built as the registry builds it, with its ``module_ai_config`` (so usage, limits, retries
and capability checks are on). Capability properties say what the server can do. A test is skipped only
where the server lacks the feature; :data:`SERVER_LIMITS` names the limit in the skip reason (the skip
happens before the standard test runs, so its generic reason never shows).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from module_ai.backends._openai_transport import httpx_clients
from module_ai.backends.ollama import _chat_class as ollama_chat_class
from module_ai.backends.openai import _chat_class as openai_chat_class
from module_ai.backends.openai import thinking_body
from module_ai.config import ModelConfig


def _media_limits(server: str) -> dict[str, str]:
    """Skip reasons for the media tests on a text-only server."""
    text_only = f"{server} serves a text-only model: no image, PDF or audio input"
    return {name: text_only for name in ("test_pdf_inputs", "test_audio_inputs", "test_image_inputs",
                                         "test_image_tool_message", "test_pdf_tool_message")} | {
        "test_anthropic_inputs": f"{server} speaks the OpenAI/Ollama wire format, not Anthropic's content blocks",
        "test_stream_time": "not a server limit: the test replays VCR cassettes; these servers run live on 127.0.0.1",
    }


OVERRIDE_TESTS = ("test_invoke_with_model_override", "test_ainvoke_with_model_override",
                  "test_stream_with_model_override", "test_astream_with_model_override")


FAKE_TOOL_LIMITS = {
    name: "the local server fills tool arguments with schema-shaped samples; it cannot reason out the values "
          "the prompt asks for (3, or the requested Chinese text)"
    for name in ("test_tool_calling", "test_tool_calling_async", "test_unicode_tool_call_integration")
}

LLAMA_LIMITS = {
    "test_tool_calling": "llama-cpp-python server without a function-calling chat_format: no tool calls",
    "test_tool_calling_async": "llama-cpp-python server without a function-calling chat_format: no tool calls",
    "test_bind_runnables_as_tools": "llama-cpp-python server without a function-calling chat_format",
    "test_tool_message_histories_string_content": "llama-cpp-python server: no tool calling",
    "test_tool_message_histories_list_content": "llama-cpp-python server: no tool calling",
    "test_tool_choice": "llama-cpp-python server: no tool calling",
    "test_tool_calling_with_no_arguments": "llama-cpp-python server: no tool calling",
    "test_tool_message_error_status": "llama-cpp-python server: no tool calling",
    "test_structured_few_shot_examples": "llama-cpp-python server: no tool calling",
    "test_agent_loop": "llama-cpp-python server: no tool calling",
    "test_unicode_tool_call_integration": "llama-cpp-python server: no tool calling",
    "test_structured_output": "tiny random GGUF cannot fill a schema (no tool calling on this server)",
    "test_structured_output_async": "tiny random GGUF cannot fill a schema (no tool calling on this server)",
    "test_structured_output_pydantic_2_v1": "tiny random GGUF cannot fill a schema",
    "test_structured_output_optional_param": "tiny random GGUF cannot fill a schema",
    "test_json_mode": "tiny random GGUF writes no valid JSON object",
    "test_usage_metadata_streaming": "llama-cpp-python server sends no usage chunk when streaming "
                                     "(module_ai estimates it, but the test wants server counts)",
    **{name: "llama-cpp-python server runs one model (alias 'tiny'): no other model to switch to"
       for name in OVERRIDE_TESTS},
    **_media_limits("the llama-cpp-python server (tiny GGUF, no mmproj)"),
}


class _Server:
    """Sets ``url`` on the class from a session server fixture before ``model`` is built."""

    url: str = "http://127.0.0.1:9/v1"
    limits: ClassVar[dict[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _server_limits(self, request):
        reason = self.limits.get(request.node.originalname or request.node.name)
        if reason:
            pytest.skip(f"server limit: {reason}")


def _openai_params(cfg: ModelConfig, url: str, key: str | None) -> dict[str, Any]:
    """The constructor arguments ``build_chat`` uses for this config (module_ai is the retry owner)."""
    params: dict[str, Any] = {"model": cfg.model, "base_url": url, "api_key": key or "not-needed",
                              "max_retries": 0, "stream_usage": True, "module_ai_config": cfg}
    body = thinking_body(cfg)
    if body:
        params["extra_body"] = body
    if cfg.transport == "httpx":  # module_ai's own transport, as build_chat wires it
        params.update(httpx_clients(cfg, params, "/chat/completions"))
    return params


# ---------------------------------------------------------------- unit tests (no server)

UNIT_URL = "http://127.0.0.1:8000/v1"


class TestOpenAICompatibleUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self):
        return openai_chat_class()

    @property
    def chat_model_params(self) -> dict:
        return {"model": "qwen3-4b", "base_url": UNIT_URL, "api_key": "sk-unit", "max_retries": 0}

    @property
    def init_from_env_params(self):
        return ({"OPENAI_API_KEY": "sk-from-env", "OPENAI_API_BASE": UNIT_URL}, {"model": "qwen3-4b"},
                {"openai_api_key": "sk-from-env", "openai_api_base": UNIT_URL})


class TestOllamaUnit(_Server, ChatModelUnitTests):
    limits: ClassVar[dict[str, str]] = {"test_serdes": "not a server limit: langchain-ollama's ChatOllama declares itself not "
                             "serializable (is_lc_serializable() is False), so there is nothing to load back"}

    @property
    def chat_model_class(self):
        return ollama_chat_class()

    @property
    def chat_model_params(self) -> dict:
        return {"model": "qwen3:4b", "base_url": "http://127.0.0.1:11434"}

    @property
    def init_from_env_params(self):
        return {"OLLAMA_HOST": "http://127.0.0.1:11434"}, {"model": "qwen3:4b"}, {"model": "qwen3:4b"}


# ---------------------------------------------------------------- integration: real llama.cpp server

class TestOpenAICompatibleLlamaCpp(_Server, ChatModelIntegrationTests):
    limits: ClassVar[dict[str, str]] = LLAMA_LIMITS

    @pytest.fixture(autouse=True)
    def _server(self, llama_server):
        type(self).url = llama_server

    @property
    def chat_model_class(self):
        return openai_chat_class()

    @property
    def chat_model_params(self) -> dict:
        cfg = ModelConfig(name="llama-tiny", model_type="chat", server_type="openai", model="tiny", url=self.url,
                          max_retries=0, input_tokens=2048)
        return {**_openai_params(cfg, self.url, None), "max_tokens": 16}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True  # non-streaming replies carry usage; streaming ones are estimated by module_ai


# ---------------------------------------------------------------- integration: local DashScope server

class TestOpenAICompatibleDashScope(_Server, ChatModelIntegrationTests):
    limits: ClassVar[dict[str, str]] = {
        **FAKE_TOOL_LIMITS,
        "test_json_mode": "local DashScope server's JSON mode returns one fixed object {'answer': ...}; it "
                          "cannot follow the prompt's keys",
        **_media_limits("local DashScope server (qwen3-4b, a text model)"),
    }

    @pytest.fixture(autouse=True)
    def _server(self, dashscope_server, test_api_key):
        type(self).url = dashscope_server.base_url
        type(self).key = test_api_key

    @property
    def chat_model_class(self):
        return openai_chat_class()

    @property
    def chat_model_params(self) -> dict:
        cfg = ModelConfig(name="ds-qwen3", model_type="chat", server_type="openai", model="qwen3-4b", url=self.url,
                          max_retries=0, no_think=True, capabilities=["tools", "json"])
        return _openai_params(cfg, self.url, self.key)

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def structured_output_kwargs(self) -> dict:
        return {"method": "function_calling"}

    @property
    def model_override_value(self) -> str:
        return "qwen-flash"


class TestOpenAICompatibleDashScopeSDK(TestOpenAICompatibleDashScope):
    """The same suite on ``transport: sdk`` (the openai SDK's clients instead of module_ai's httpx pools)."""

    @property
    def chat_model_params(self) -> dict:
        cfg = ModelConfig(name="ds-qwen3-sdk", model_type="chat", server_type="openai", model="qwen3-4b",
                          url=self.url, max_retries=0, no_think=True, capabilities=["tools", "json"],
                          transport="sdk")
        return _openai_params(cfg, self.url, self.key)


# ---------------------------------------------------------------- integration: local Ollama server

class TestOllamaNative(_Server, ChatModelIntegrationTests):
    limits: ClassVar[dict[str, str]] = {
        **FAKE_TOOL_LIMITS,
        "test_json_mode": "local Ollama server's format=json returns one fixed object; it cannot follow the "
                          "prompt's keys",
        "test_tool_choice": "Ollama's /api/chat has no tool_choice field: a tool cannot be forced",
        **_media_limits("local Ollama server (qwen3:4b on the tiny GGUF, text only)"),
    }

    @pytest.fixture(autouse=True)
    def _server(self, ollama_server):
        type(self).url = ollama_server.url

    @property
    def chat_model_class(self):
        return ollama_chat_class()

    @property
    def chat_model_params(self) -> dict:
        cfg = ModelConfig(name="ollama-qwen3", model_type="chat", server_type="ollama", model="qwen3:4b",
                          url=self.url, max_retries=0, capabilities=["tools", "json"])
        return {"model": "qwen3:4b", "base_url": self.url, "reasoning": False, "module_ai_config": cfg}

    @property
    def has_tool_choice(self) -> bool:
        return False  # ChatOllama.bind_tools takes no tool_choice (Ollama's API has none)

    @property
    def model_override_value(self) -> str:
        return "llama3.2:1b"

    @property
    def supports_json_mode(self) -> bool:
        return True
