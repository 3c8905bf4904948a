"""Messages with images, audio and video (the capability check lives in ``module_ai.controls.capabilities``).

Wire format chosen (OpenAI-compatible content parts, as DashScope's qwen-vl / qwen-omni take them in
compatible mode; vLLM accepts the same image and video parts):

- image: ``{"type": "image_url", "image_url": {"url": "https://..." | "data:image/png;base64,..."}}``
- audio: ``{"type": "input_audio", "input_audio": {"data": "https://..." | "data:;base64,...",
  "format": "wav"}}`` (DashScope's form; OpenAI and vLLM want bare base64: ``raw_base64=True``)
- video file or URL: ``{"type": "video_url", "video_url": {"url": "https://..." | "data:video/mp4;base64,..."}}``
- video as frames: ``{"type": "video", "video": [frame URL or data URL, ...]}`` (DashScope)

Files and bytes become data URLs; the MIME type is sniffed from the bytes, else taken from the file
name. For ``server_type: ollama``, langchain-ollama moves image parts into Ollama's
``messages[i].images`` (bare base64), so images must be inline (path or bytes, not a URL), and Ollama's
chat API takes no audio or video.

:func:`~module_ai.controls.capabilities.check_messages` raises ``CapabilityError`` when a message
needs a capability (``vision``, ``audio``, ``video``) missing from the model's ``capabilities``.

Example:
    >>> msg = multimodal_message("图里有什么？", images=[b"\\x89PNG\\r\\n\\x1a\\n..."])
    >>> msg.content[0]["image_url"]["url"][:22]
    'data:image/png;base64,'
"""

from __future__ import annotations

import base64
import mimetypes
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_ai.errors import MediaError

if TYPE_CHECKING:
    from langchain_core.messages import HumanMessage

__all__ = ["MediaError", "audio_part", "image_part", "multimodal_message", "video_part"]

Source = str | os.PathLike | bytes | bytearray | memoryview
"""A media source: a URL (http(s), data:, oss:), a file path, or the raw bytes."""

URL_PREFIXES = ("http://", "https://", "data:", "oss://")

SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"), (0, b"\xff\xd8\xff", "image/jpeg"), (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"), (8, b"WEBP", "image/webp"), (0, b"BM", "image/bmp"),
    (8, b"WAVE", "audio/wav"), (8, b"AVI ", "video/x-msvideo"), (0, b"ID3", "audio/mpeg"),
    (0, b"\xff\xfb", "audio/mpeg"), (0, b"\xff\xf3", "audio/mpeg"), (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"), (8, b"M4A ", "audio/mp4"), (4, b"ftyp", "video/mp4"),
    (0, b"\x1aE\xdf\xa3", "video/webm"),
)
"""(offset, magic bytes, MIME type) used to sniff media bytes; the first match wins."""

AUDIO_FORMATS: dict[str, str] = {
    "audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3",
    "audio/ogg": "ogg", "audio/flac": "flac", "audio/x-flac": "flac", "audio/mp4": "m4a",
    "audio/x-m4a": "m4a", "audio/aac": "aac", "audio/amr": "amr",
}
"""MIME type -> the ``format`` name of an ``input_audio`` part."""


def image_part(src: Source, *, mime: str | None = None) -> dict[str, Any]:
    """An ``image_url`` content part from a URL, a file path or bytes (bytes become a data URL).

    Example:
        >>> image_part("https://example.com/cat.jpg")
        {'type': 'image_url', 'image_url': {'url': 'https://example.com/cat.jpg'}}
    """
    return {"type": "image_url", "image_url": {"url": _url_of(src, mime, "image")}}


def audio_part(src: Source, *, format: str | None = None, raw_base64: bool = False) -> dict[str, Any]:
    """An ``input_audio`` part: ``data`` is the URL, or ``data:;base64,...`` for files and bytes.

    Args:
        src: URL, file path or bytes.
        format: ``wav``, ``mp3``, ... (sniffed from the bytes or the file name when omitted).
        raw_base64: send bare base64 (OpenAI, vLLM) instead of DashScope's ``data:;base64,`` form.

    Example:
        >>> audio_part("https://example.com/a.mp3")["input_audio"]
        {'data': 'https://example.com/a.mp3', 'format': 'mp3'}
    """
    if _is_url(src):
        fmt = format or _audio_format(mimetypes.guess_type(str(src).split("?")[0])[0], src)
        return {"type": "input_audio", "input_audio": {"data": str(src), "format": fmt}}
    data, name = _read(src)
    fmt = format or _audio_format(_sniff(data) or _guess(name), name)
    encoded = base64.b64encode(data).decode("ascii")
    payload = encoded if raw_base64 else f"data:;base64,{encoded}"
    return {"type": "input_audio", "input_audio": {"data": payload, "format": fmt}}


def video_part(src: Source | Sequence[Source], *, mime: str | None = None) -> dict[str, Any]:
    """A ``video_url`` part for one video, or a ``video`` part for a list of frame images.

    Example:
        >>> video_part(["https://e.com/1.jpg", "https://e.com/2.jpg"])["video"]
        ['https://e.com/1.jpg', 'https://e.com/2.jpg']
    """
    if isinstance(src, (list, tuple)):
        return {"type": "video", "video": [_url_of(frame, None, "image") for frame in src]}
    return {"type": "video_url", "video_url": {"url": _url_of(src, mime, "video")}}


def multimodal_message(
    text: str,
    *,
    images: Iterable[Source] | Source = (),
    audio: Iterable[Source] | Source | None = None,
    video: Source | Sequence[Source] | None = None,
) -> HumanMessage:
    """A ``HumanMessage`` whose content lists the media parts first, then the text.

    Args:
        text: the question or instruction.
        images: one image or several (URL, path or bytes).
        audio: one audio clip or several.
        video: one video (URL, path or bytes) or a list of frame images.

    Example:
        >>> m = multimodal_message("描述这张图", images="https://example.com/cat.jpg")
        >>> [p["type"] for p in m.content]
        ['image_url', 'text']
    """
    from langchain_core.messages import HumanMessage

    parts = [image_part(i) for i in _many(images)]
    parts += [audio_part(a) for a in _many(audio)]
    if video is not None:
        parts.append(video_part(video))
    parts.append({"type": "text", "text": text})
    return HumanMessage(content=parts)


# --- internals -------------------------------------------------------------------------------------
def _many(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes, bytearray, memoryview, os.PathLike)):
        return [value]
    return list(value)


def _is_url(src: Any) -> bool:
    return isinstance(src, str) and src.startswith(URL_PREFIXES)


def _url_of(src: Source, mime: str | None, kind: str) -> str:
    if _is_url(src):
        return str(src)
    data, name = _read(src)
    mime = mime or _sniff(data) or _guess(name)
    if not mime or not mime.startswith(f"{kind}/"):
        where = f"'{name}'" if name else "the bytes"
        raise MediaError(f"cannot tell the {kind} type of {where} (got {mime or 'unknown'}); pass mime=, "
                         f"e.g. mime='{'image/png' if kind == 'image' else 'video/mp4'}'")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _read(src: Source) -> tuple[bytes, str | None]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src), None
    path = Path(src)
    try:
        return path.read_bytes(), path.name
    except OSError as exc:
        raise MediaError(f"cannot read media file '{path}': {exc.strerror}; pass an existing path, a URL "
                         "(http(s)://, data:) or the bytes") from exc


def _sniff(data: bytes) -> str | None:
    for offset, magic, mime in SIGNATURES:
        if data[offset:offset + len(magic)] == magic:
            return mime
    return None


def _guess(name: str | None) -> str | None:
    return mimetypes.guess_type(name)[0] if name else None


def _audio_format(mime: str | None, src: Any) -> str:
    if mime in AUDIO_FORMATS:
        return AUDIO_FORMATS[mime]
    suffix = Path(str(src).split("?")[0]).suffix.lstrip(".").lower() if isinstance(src, (str, Path)) else ""
    if suffix:
        return suffix
    raise MediaError("cannot tell the audio format; pass format='wav' or 'mp3'")
