"""Multimodal messages: part shapes, MIME sniffing, capability checks, and the exact wire format
against the fake DashScope (OpenAI-compatible content list) and fake Ollama (native ``images``)."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from module_ai import ConfigError, ModuleAIError, load_registry
from module_ai.chains.multimodal import audio_part, image_part, multimodal_message, video_part
from module_ai.controls.capabilities import (
    check_messages,
    configs_of,
    ensure_capabilities,
    required_capabilities,
    with_capability_check,
)
from module_ai.errors import CapabilityError, MediaError


def tiny_png() -> bytes:
    """A valid 1x1 red RGB PNG, built by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def tiny_wav() -> bytes:
    """A 4-sample 8 kHz mono 16-bit WAV."""
    data = b"\x00\x00" * 4
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


PNG = tiny_png()
PNG_B64 = base64.b64encode(PNG).decode()
PNG_URL = "data:image/png;base64," + PNG_B64


def write_registry(tmp_path, **configs) -> object:
    for name, cfg in configs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(cfg), encoding="utf-8")
    return load_registry(tmp_path)


def dashscope_cfg(server, **extra) -> dict:
    return {"model_type": "chat", "server_type": "openai", "model": "qwen3-vl-plus", "url": server.base_url,
            "api_key": "${MODULE_AI_TEST_KEY}", "no_think": True, "input_tokens": 4096, "out_tokens": 8,
            **extra}


# --- parts ------------------------------------------------------------------------------------------
def test_image_part_from_bytes_path_and_url(tmp_path):
    assert image_part(PNG) == {"type": "image_url", "image_url": {"url": PNG_URL}}
    (tmp_path / "a.png").write_bytes(PNG)
    assert image_part(tmp_path / "a.png") == image_part(str(tmp_path / "a.png")) == image_part(PNG)
    (tmp_path / "b.jpg").write_bytes(b"not really a jpeg")  # no magic: the file name decides
    assert image_part(tmp_path / "b.jpg")["image_url"]["url"].startswith("data:image/jpeg;base64,")
    for url in ("https://example.com/cat.jpg", PNG_URL, "oss://bucket/x.png"):
        assert image_part(url) == {"type": "image_url", "image_url": {"url": url}}
    assert image_part(b"\xff\xd8\xff\xe0jpeg")["image_url"]["url"].startswith("data:image/jpeg;")


def test_bad_media_raises_media_error(tmp_path):
    with pytest.raises(MediaError, match="cannot tell the image type"):
        image_part(b"plain bytes")
    with pytest.raises(MediaError, match="mime="):
        image_part(tiny_wav())  # audio bytes are not an image
    with pytest.raises(MediaError, match="cannot read media file"):
        image_part(tmp_path / "missing.png")
    with pytest.raises(MediaError, match="format="):
        audio_part(b"plain bytes")
    assert issubclass(MediaError, ModuleAIError)


def test_audio_part_dashscope_and_raw_forms():
    wav = tiny_wav()
    encoded = base64.b64encode(wav).decode()
    assert audio_part(wav) == {"type": "input_audio",
                               "input_audio": {"data": "data:;base64," + encoded, "format": "wav"}}
    assert audio_part(wav, raw_base64=True)["input_audio"]["data"] == encoded
    assert audio_part(b"ID3\x03rest", format=None)["input_audio"]["format"] == "mp3"
    assert audio_part("https://e.com/a.mp3?x=1")["input_audio"] == {"data": "https://e.com/a.mp3?x=1",
                                                                    "format": "mp3"}


def test_video_part_url_file_and_frames(tmp_path):
    assert video_part("https://e.com/v.mp4") == {"type": "video_url", "video_url": {"url": "https://e.com/v.mp4"}}
    mp4 = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 8
    assert video_part(mp4)["video_url"]["url"].startswith("data:video/mp4;base64,")
    frames = video_part([PNG, "https://e.com/2.jpg"])
    assert frames == {"type": "video", "video": [PNG_URL, "https://e.com/2.jpg"]}


def test_multimodal_message_order_and_capabilities():
    msg = multimodal_message("这是什么？", images=[PNG, "https://e.com/b.png"], audio=tiny_wav(),
                             video=["https://e.com/1.jpg"])
    assert isinstance(msg, HumanMessage)
    assert [p["type"] for p in msg.content] == ["image_url", "image_url", "input_audio", "video", "text"]
    assert msg.content[-1] == {"type": "text", "text": "这是什么？"}
    assert required_capabilities([msg]) == {"vision", "audio", "video"}
    assert required_capabilities([SystemMessage("x"), HumanMessage("纯文本")]) == set()
    assert required_capabilities("text") == set()
    single = multimodal_message("hi", images=PNG)  # one source, not a list
    assert len(single.content) == 2


# --- capability checks ------------------------------------------------------------------------------
def test_check_messages_names_the_missing_capability():
    from module_ai.config import ModelConfig

    cfg = ModelConfig(model_type="chat", server_type="openai", model="qwen-plus", url="http://h/v1",
                      name="qwen-plus")
    msg = multimodal_message("?", images=PNG)
    with pytest.raises(CapabilityError) as info:
        check_messages(cfg, [msg])
    err = info.value
    assert isinstance(err, ConfigError) and err.field == "capabilities" and err.model == "qwen-plus"
    assert "vision" in str(err) and "capabilities" in str(err)
    vision = cfg.model_copy(update={"capabilities": ["vision"]})
    check_messages(vision, [msg])  # passes
    with pytest.raises(CapabilityError, match="audio"):
        check_messages(vision, [multimodal_message("?", audio=tiny_wav())])
    check_messages(cfg, "plain text")  # text never needs a capability


def test_ensure_capabilities_for_models_built_elsewhere():
    fake = FakeListChatModel(responses=["ok"])
    msg = [multimodal_message("?", images=PNG)]
    ensure_capabilities(fake, msg)  # no module_ai config: unchecked
    with pytest.raises(CapabilityError, match="vision"):
        ensure_capabilities(fake, msg, capabilities=["tools"])
    ensure_capabilities(fake, msg, capabilities=["vision"])
    guarded = with_capability_check(fake, capabilities=[])
    with pytest.raises(CapabilityError):
        guarded.invoke(msg)
    assert guarded.invoke("text only").content == "ok"


def test_fallbacks_are_checked_too(tmp_path, dashscope_server):
    reg = write_registry(tmp_path, vl=dashscope_cfg(dashscope_server, capabilities=["vision"]),
                         plain=dashscope_cfg(dashscope_server, model="qwen-plus"))
    llm = reg.chat("vl").with_fallbacks([reg.chat("plain")])  # what the `fallbacks` config field builds
    assert [c.display_name for c in configs_of(llm)] == ["vl", "plain"]
    with pytest.raises(CapabilityError) as info:
        ensure_capabilities(llm, [multimodal_message("?", images=PNG)])
    assert info.value.model == "plain"


# --- wire format ------------------------------------------------------------------------------------
def test_dashscope_wire_has_content_parts(tmp_path, dashscope_server):
    reg = write_registry(tmp_path, vl=dashscope_cfg(dashscope_server, capabilities=["vision", "audio", "video"]))
    msg = multimodal_message("图里是什么？", images=[PNG], audio=tiny_wav(), video=[PNG, PNG])
    reply = with_capability_check(reg.chat("vl")).invoke([msg])
    assert reply.content
    (request,) = dashscope_server.requests_to("/chat/completions")
    content = request.body["messages"][-1]["content"]
    assert content == msg.content  # sent exactly as built
    assert content[0] == {"type": "image_url", "image_url": {"url": PNG_URL}}
    assert content[1]["input_audio"]["data"].startswith("data:;base64,UklGR")  # "RIFF"
    assert content[2] == {"type": "video", "video": [PNG_URL, PNG_URL]}


def test_missing_capability_fails_before_any_request(tmp_path, dashscope_server):
    reg = write_registry(tmp_path, plain=dashscope_cfg(dashscope_server, model="qwen-plus"))
    guarded = with_capability_check(reg.chat("plain"))
    with pytest.raises(CapabilityError, match="vision"):
        guarded.invoke([multimodal_message("?", images=PNG)])
    assert dashscope_server.count == 0
    assert guarded.invoke("你好").content  # text still goes through


@pytest.fixture()
def ollama_registry(tmp_path, ollama_server):
    base = {"model_type": "chat", "server_type": "ollama", "model": "qwen3:4b", "url": ollama_server.url,
            "out_tokens": 2, "input_tokens": 8192, "no_think": True}
    return write_registry(tmp_path, llava={**base, "capabilities": ["vision"]}, text=base,
                          omni={**base, "capabilities": ["vision", "audio"]})


def test_ollama_wire_has_images_field(ollama_registry, ollama_server):
    llm = with_capability_check(ollama_registry.chat("llava"))
    llm.invoke([multimodal_message("describe", images=[PNG, PNG])])
    (request,) = [r for r in ollama_server.requests if r.path == "/api/chat"]
    wire = request.body["messages"][-1]
    assert wire["images"] == [PNG_B64, PNG_B64]
    assert wire["content"].strip() == "describe"


def test_ollama_rejects_urls_audio_and_missing_vision(ollama_registry, ollama_server):
    with pytest.raises(MediaError, match="inline"):
        with_capability_check(ollama_registry.chat("llava")).invoke(
            [multimodal_message("?", images="https://e.com/cat.png")])
    with pytest.raises(CapabilityError, match="images only"):
        with_capability_check(ollama_registry.chat("omni")).invoke([multimodal_message("?", audio=tiny_wav())])
    with pytest.raises(CapabilityError, match="vision"):
        with_capability_check(ollama_registry.chat("text")).invoke([multimodal_message("?", images=PNG)])
    assert ollama_server.count == 0
