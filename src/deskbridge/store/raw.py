"""The stored form of a raw request: a JSON header line, a newline, the exact body."""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import to_json

from deskbridge.schemas import RawRequest
from deskbridge.store.packing import unpack

__all__ = ["raw_record", "read_raw_record"]

# Credentials any request may carry are never stored, even encrypted. A channel's or
# desk's own secret headers and query parameters (Telegram's secret token, Udesk's
# ``?secret=``) are declared by its receiver or connector and dropped by the ingest flow
# with ``RawRequest.scrubbed`` before the request reaches the store.
_SECRET_HEADERS = frozenset({"authorization", "cookie"})


def raw_record(req: RawRequest, received_at: float) -> bytes:
    """The request as stored for re-ingest, without secret headers: one line of JSON
    (method, path, query, headers, received_at), a newline, then the exact body bytes."""
    # pydantic-core's encoder: json.dumps with separators builds an encoder per call
    meta = to_json(
        {
            "method": req.method,
            "path": req.path,
            "query": dict(req.query),
            "headers": {
                name: v
                for k, v in req.headers.items()
                if (name := k.lower()) not in _SECRET_HEADERS
            },
            "received_at": received_at,
        }
    )
    return meta + b"\n" + req.body


def read_raw_record(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """The metadata and body of a stored raw request (the inverse of ``raw_record``, after
    ``packing.pack`` or not: records kept before packing read the same)."""
    meta, _, body = unpack(blob).partition(b"\n")
    return json.loads(meta), body
