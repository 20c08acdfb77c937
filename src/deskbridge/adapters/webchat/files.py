"""A visitor's files: what their bytes are, what they are called, and how a message
frame names them. Pure.

A file's type is read from its first bytes with the signatures of the WHATWG MIME
Sniffing Standard (mimesniff.spec.whatwg.org: "Matching an image type pattern", the
WAVE and MP4 signatures of "Matching an audio or video type pattern", the PDF signature
and "binary data byte" of the unknown-type rules), never from the name or the browser's
``Content-Type``, which the visitor controls.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from deskbridge.config import WidgetMediaType
from deskbridge.errors import PayloadInvalid
from deskbridge.schemas import Attachment, AttachmentKind

__all__ = [
    "FILE_ID",
    "MAX_FILES",
    "attachment",
    "file_ids",
    "file_ref",
    "kind_of",
    "safe_name",
    "sniff",
]

FILE_ID = re.compile(r"[A-Za-z0-9_-]{22}")
"""The id the gateway gives an uploaded file (16 random bytes, URL-safe base64)."""
MAX_FILES = 5
"""Files one message may carry."""

_HEADER = 1445  # the "resource header" the standard sniffs
_IMAGES: tuple[tuple[bytes, bytes, WidgetMediaType], ...] = (
    # pattern, mask (0x00: any byte), type
    (b"GIF87a", b"\xff" * 6, "image/gif"),
    (b"GIF89a", b"\xff" * 6, "image/gif"),
    (b"RIFF\0\0\0\0WEBPVP", b"\xff" * 4 + b"\0" * 4 + b"\xff" * 6, "image/webp"),
    (b"\x89PNG\r\n\x1a\n", b"\xff" * 8, "image/png"),
    (b"\xff\xd8\xff", b"\xff" * 3, "image/jpeg"),
    (b"RIFF\0\0\0\0WAVE", b"\xff" * 4 + b"\0" * 4 + b"\xff" * 4, "audio/wav"),
    (b"%PDF-", b"\xff" * 5, "application/pdf"),
)
_BINARY = frozenset([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_KINDS: dict[str, AttachmentKind] = {"image": "image", "audio": "audio", "video": "video"}
_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image/jpeg": (".jpg", ".jpeg"),
    "image/png": (".png",),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
    "application/pdf": (".pdf",),
    "text/plain": (".txt", ".log", ".csv"),
    "audio/wav": (".wav",),
    "video/mp4": (".mp4", ".m4v", ".m4a"),
}


def _matches(data: bytes, pattern: bytes, mask: bytes) -> bool:
    if len(data) < len(pattern):
        return False
    return all(d & m == p & m for d, p, m in zip(data, pattern, mask, strict=False))


def _mp4(data: bytes) -> bool:
    """The standard's "matches the signature for MP4": an ``ftyp`` box whose major or a
    compatible brand starts with ``mp4``."""
    if len(data) < 12:
        return False
    box = int.from_bytes(data[:4], "big")
    if len(data) < box or box % 4 or data[4:8] != b"ftyp":
        return False
    if data[8:11] == b"mp4":
        return True
    return any(data[i : i + 3] == b"mp4" for i in range(16, box, 4))


def _text(data: bytes) -> bool:
    if any(b in _BINARY for b in data[:_HEADER]):
        return False
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return True


def sniff(data: bytes) -> WidgetMediaType | None:
    """The type ``data`` shows, or None for anything the widget does not take."""
    head = data[:_HEADER]
    for pattern, mask, mime in _IMAGES:
        if _matches(head, pattern, mask):
            return mime
    if _mp4(head):
        return "video/mp4"
    if data and _text(data):
        return "text/plain"
    return None


def kind_of(mime: str) -> AttachmentKind:
    """The normalized kind of a file of type ``mime``."""
    return _KINDS.get(mime.partition("/")[0], "document")


def safe_name(given: str, mime: str) -> str:
    """A file name to show and to give the desk: the visitor's name without folders,
    control or separator characters (at most 100 characters), ending in an extension of
    its real type (``invoice.html`` that is a PNG becomes ``invoice.html.png``)."""
    name = unicodedata.normalize("NFC", given).replace("\\", "/").rpartition("/")[2]
    name = "".join(
        "_" if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in name
    ).strip(" .")
    extensions = _EXTENSIONS.get(mime, ())
    stem = name[:90] or "file"
    if extensions and not stem.lower().endswith(extensions):
        stem += extensions[0]
    return stem


def file_ref(visitor_key: str, file_id: str) -> str:
    """``Attachment.ref`` of a visitor's file: the visitor's digest and the file id."""
    return f"{visitor_key}/{file_id}"


def attachment(
    visitor_key: str, file_id: str, *, name: str, mime: str, size: int, sha256: str
) -> Attachment:
    """The normalized attachment of an uploaded file."""
    return Attachment(
        kind=kind_of(mime),
        ref=file_ref(visitor_key, file_id),
        filename=name,
        mime_type=mime,
        size=size,
        sha256=sha256,
    )


def file_ids(frame: dict[str, Any]) -> tuple[str, ...]:
    """The ids of the uploaded files a ``message`` frame carries (``files``), in order
    and without repeats. Raises ``PayloadInvalid`` naming what is wrong."""
    given = frame.get("files", [])
    if given is None:
        return ()
    if not isinstance(given, list) or not all(
        isinstance(f, str) and FILE_ID.fullmatch(f) for f in given
    ):
        raise PayloadInvalid("webchat: files is a list of the ids uploads returned")
    if len(given) > MAX_FILES:
        raise PayloadInvalid(f"webchat: a message carries at most {MAX_FILES} files")
    if given and frame.get("type") != "message":
        raise PayloadInvalid("webchat: the offline form takes no files")
    return tuple(dict.fromkeys(given))
