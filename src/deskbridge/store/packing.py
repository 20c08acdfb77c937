"""Compression of the two large records of every inbound event, before they are sealed.

Each queued event holds its raw request (kept for re-ingest) and its normalized event
record. Both are JSON around the customer's text, and were most of an event's Redis
memory and AOF (about 1.6 KB and 1.9 KB of a 4.8 KB event, for a 1 KB Telegram update).
They are compressed primed with a preset dictionary of what such records always hold
(field names, header names, the usual values), so that even a short record compresses:
the dictionary pays for the structure, the compressor for the text.

Format 2 (written now) is a zstd frame primed with dictionary 1 as raw content, written
at level -1 (zstd's first "fast" level: matches against the dictionary and the record,
literals left as they are, no Huffman tables built per record) with tables sized for a
record, not a file (8 KB window, 4 KB hash table: they stay in the CPU's cache in a busy
gateway; ~9 us against ~14 us a record with level -1's own tables when other work has
evicted them, for ~12 % more bytes: 658 against 585 B for a 1.2 KB raw request). In a
quiet loop, for a 1.2 KB raw request on this project's VM: ~4.3 us and 627 B at level
-1, ~7 us and 529 B at level 1 (the level of releases up to issue 19's third session),
~24 us for format 1 (raw deflate, zlib level 1, same dictionary; 138 k of the gateway's
~810 k instructions per ack went to zlib). Neither the level nor the table sizes are
part of the format: every zstd frame reads the same, so records written with any of
them read alike. Format 1 records, written by earlier
releases, still read.

A packed record starts with ``\\x00`` and the format's id, which no JSON document
(the unpacked records) starts with, so records written before packing read unchanged.
Compression happens before sealing (ciphertext does not compress) and never on its own:
a packed record is always sealed. A dictionary, once released, never changes: records
packed with it stay in Redis for months. A better one takes the next id.
"""

from __future__ import annotations

import threading
import zlib

import zstandard

__all__ = ["pack", "unpack"]

_MARK = 0
# format 1's raw deflate window (4 KB; records were written at level 1, memLevel 4)
_WBITS = -12

# Dictionary 1 (never edit; add a new id instead). Deflate looks back up to the window
# size, and matches nearest the end are cheapest: the most common strings come last.
_DICT_1 = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"","changes":[{"value":'
    b'{"messaging_product":"whatsapp","metadata":{"display_phone_number":"","phone_number_id":'
    b'""},"contacts":[{"profile":{"name":""},"wa_id":""}],"messages":[{"from":"","id":"wamid.'
    b'","timestamp":"","type":"text","text":{"body":""}}]},"field":"messages"}]}]}'
    b'{"object":"page","entry":[{"id":"","time":,"messaging":[{"sender":{"id":""},'
    b'"recipient":{"id":""},"timestamp":,"message":{"mid":"m_","text":""}}]}]}'
    b'{"destination":"","events":[{"type":"message","message":{"type":"text","id":"",'
    b'"quoteToken":"","text":""},"webhookEventId":"","deliveryContext":{"isRedelivery":false},'
    b'"timestamp":,"source":{"type":"user","userId":"U"},"replyToken":"","mode":"active"}]}'
    b'"ticket":{"id":,"requester_id":,"status":"open","comment":{"body":"","public":true},'
    b'"author_id":,"via":{"channel":"api"},"external_id":""},"audit":{"events":[{"type":'
    b'"Comment","id":}]}"conversation_id":"","user_type":"agent","content":"",'
    b'"edited_message":{"message_id":,"from":{"id":,"is_bot":false,"first_name":"",'
    b'"last_name":"","username":"","language_code":"en"},"chat":{"id":,"first_name":"",'
    b'"last_name":"","username":"","type":"private"},"date":,"edit_date":,"text":""}'
    b'"photo":[{"file_id":"","file_unique_id":"","file_size":,"width":,"height":}],'
    b'"caption":"","document":{"file_name":"","mime_type":"","file_id":""},'
    b'"voice":{"duration":,"mime_type":"audio/ogg","file_id":""},"reply_to_message":'
    b'"attachments":[{"kind":"image","url":"","mime_type":"image/jpeg","name":"","size":}],'
    b'"reply_to":"","reply_quote":"","edit_of":"","location":{"latitude":,"longitude":},'
    b'"kind":"status","status":"delivered","kind":"call","call_id":"","state":"missed",'
    b'"kind":"email","kind":"phone","kind":"line_user","kind":"messenger_psid",'
    b'"kind":"whatsapp","source":"whatsapp","source":"messenger","source":"line",'
    b'"channel":"whatsapp","channel":"messenger","channel":"line","channel":"email",'
    b'"strength":"weak","context":{"message_id":""},'
    b'{"method":"POST","path":"/webhooks/whatsapp/","path":"/webhooks/messenger/",'
    b'"path":"/webhooks/line/","query":{},"headers":{"host":"","user-agent":"",'
    b'"x-forwarded-for":"","x-forwarded-proto":"https","x-real-ip":"","accept":"*/*",'
    b'"accept-encoding":"gzip, deflate","x-hub-signature-256":"sha256=",'
    b'"x-line-signature":"","connection":"keep-alive","content-length":"'
    b" the to and you of is it that for on in your my this with have be are not we can "
    b"please thanks thank hello hi order help when what will would could do i'm it's "
    b'"note":null,"thread_title":null,"reply_token":null,"context":{}}'
    b'"attachments":[],"reply_to":null,"reply_quote":null,"edit_of":null,"location":null,'
    b'"contact":null,'
    b'"sender":{"external_id":"","display_name":"","username":null,"language":"en",'
    b'"identities":[{"kind":"channel_user","value":"","channel":"telegram",'
    b'"strength":"strong","source":"telegram"}]},"text":"'
    b'{"raw_id":"","received_at":,"event_id":"","delivery_id":"","event":{"account":"",'
    b'"channel":"telegram","dedup_key":"","thread":"","occurred_at":"T:00Z","kind":"message",'
    b'"external_id":"",'
    b'{"method":"POST","path":"/webhooks/telegram/","query":{},"headers":{"host":"127.0.0.1",'
    b'"content-type":"application/json","content-length":"'
    b'"},"received_at":}\n'
    b'{"update_id":,"message":{"message_id":,"from":{"id":,"is_bot":false,"first_name":"",'
    b'"language_code":"en"},"chat":{"id":,"first_name":"","type":"private"},"date":,"text":"'
)
_DICTS = {1: _DICT_1}
"""Format 1: raw deflate (``_WBITS``) primed with ``_DICT_1``. Read only."""
_ZSTD = 2
"""Format 2: a zstd frame (written at ``_ZSTD_LEVEL``, content size written, no checksum:
sealing covers it, no dictionary id: the format byte names it) primed with ``_DICT_1`` as
raw content."""
_CURRENT = _ZSTD

_ZSTD_DICT = zstandard.ZstdCompressionDict(_DICT_1, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
_ZSTD_LEVEL = -1
_ZSTD_PARAMS = zstandard.ZstdCompressionParameters.from_level(
    _ZSTD_LEVEL,
    # tables sized for a ~1 KB record and the ~5 KB dictionary (an 8 KB window, 1,024
    # hash slots: 4 KB) instead of level -1's 512 KB window and 32 KB table: in a busy
    # gateway the big table was out of the CPU's cache at every record (~12 us against
    # ~4 us in a quiet loop); the small one stays in it, for ~12 % larger records
    window_log=13,
    hash_log=10,
    chain_log=10,
    write_checksum=0,  # sealing covers the record
    write_dict_id=0,  # the format byte names the dictionary
)
_ZSTD_DICT.precompute_compress(compression_params=_ZSTD_PARAMS)  # built once
_local = threading.local()  # zstd contexts are not for two threads at once


def _contexts() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    try:
        ctx: tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor] = _local.ctx
    except AttributeError:  # this thread's first record
        ctx = _local.ctx = (
            zstandard.ZstdCompressor(compression_params=_ZSTD_PARAMS, dict_data=_ZSTD_DICT),
            zstandard.ZstdDecompressor(dict_data=_ZSTD_DICT),
        )
    return ctx


def pack(plain: bytes) -> bytes:
    """``plain`` compressed in the current format, or unchanged when that is not
    shorter. The result is for sealing, never for storing as it is."""
    packed = bytes((_MARK, _CURRENT)) + _contexts()[0].compress(plain)
    return packed if len(packed) < len(plain) else plain


def unpack(blob: bytes) -> bytes:
    """The inverse of ``pack``; a record that was never packed comes back as it is.
    Raises ``ValueError`` for a packed record that does not inflate (an unknown
    dictionary, a damaged record: sealing makes the latter all but impossible)."""
    if not blob or blob[0] != _MARK:
        return blob
    if len(blob) > 1 and blob[1] == _ZSTD:
        try:
            return _contexts()[1].decompress(blob[2:])
        except zstandard.ZstdError as exc:
            raise ValueError(f"packed record does not decompress: {exc}") from None
    zdict = _DICTS.get(blob[1]) if len(blob) > 1 else None
    if zdict is None:
        raise ValueError("packed record: unknown dictionary")
    d = zlib.decompressobj(_WBITS, zdict=zdict)
    try:
        plain = d.decompress(blob[2:]) + d.flush()
    except zlib.error as exc:
        raise ValueError(f"packed record does not inflate: {exc}") from None
    if not d.eof:
        raise ValueError("packed record is cut short")
    return plain
