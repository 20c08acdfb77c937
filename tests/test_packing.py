"""store.packing: records compressed before sealing read back exactly; records written
before packing read unchanged; a damaged or unknown packed record is an error."""

from __future__ import annotations

import hashlib
import json

import pytest

from deskbridge.adapters.telegram import sample_update
from deskbridge.schemas import RawRequest
from deskbridge.store.packing import pack, unpack
from deskbridge.store.raw import raw_record, read_raw_record


def test_a_raw_request_packs_smaller_and_reads_back_exactly() -> None:
    body = sample_update(
        "Hello, my order 4411 has not arrived yet. " * 12, update_id=1, chat_id=42, user_id=42
    )
    req = RawRequest(method="POST", path="/webhooks/telegram/acme", body=body)
    plain = raw_record(req, 1700000000.5)
    packed = pack(plain)
    assert packed[0] == 0 and len(packed) < len(plain) // 2
    meta, got = read_raw_record(packed)
    assert got == body and meta["path"] == "/webhooks/telegram/acme"


def test_a_record_written_before_packing_reads_unchanged() -> None:
    plain = json.dumps({"event": {"text": "hi"}}).encode()
    assert unpack(plain) == plain
    assert read_raw_record(b'{"method":"POST"}\nbody') == ({"method": "POST"}, b"body")


def test_a_record_that_packing_would_not_shrink_stays_as_it_is() -> None:
    assert pack(b"{}") == b"{}"
    assert pack(b"") == b""


def test_binary_and_unicode_bodies_round_trip() -> None:
    for plain in (bytes(range(256)) * 8, "Grüße 👋 — 你好".encode() * 40, b"\x00" * 3000):
        assert unpack(pack(plain)) == plain


@pytest.mark.parametrize("blob", [b"\x00\x09abc", b"\x00\x01not deflate", b"\x00"])
def test_a_damaged_or_unknown_packed_record_is_an_error(blob: bytes) -> None:
    with pytest.raises(ValueError, match="packed record"):
        unpack(blob)


def test_a_packed_record_cut_short_is_an_error() -> None:
    packed = pack(b'{"text":"' + b"abcdefgh" * 200 + b'"}')
    with pytest.raises(ValueError, match="packed record"):
        unpack(packed[: len(packed) // 2])


def test_a_released_dictionary_never_changes() -> None:
    """Records packed with dictionary 1 stay in Redis for months: its bytes are pinned."""
    from deskbridge.store import packing

    digest = hashlib.sha256(packing._DICTS[1]).hexdigest()
    assert digest == "718c3b496292834d18dea8b4a094d079e7fc7f737ee48bb7940ec079c3e9aca2"


def test_records_are_zstd_now_and_format_1_records_still_read() -> None:
    """Format 2 (zstd) is written; deflate records written by earlier releases read."""
    import zlib

    from deskbridge.store import packing

    plain = raw_record(
        RawRequest(method="POST", path="/webhooks/telegram/acme", body=b'{"text":"hi"}' * 40),
        1700000000.5,
    )
    packed = pack(plain)
    assert packed[:2] == b"\x00\x02" and unpack(packed) == plain
    old = zlib.compressobj(1, zlib.DEFLATED, -12, 4, zdict=packing._DICTS[1])
    format_1 = b"\x00\x01" + old.compress(plain) + old.flush()
    assert unpack(format_1) == plain


@pytest.mark.parametrize("blob", [b"\x00\x02not zstd", b"\x00\x02"])
def test_a_damaged_zstd_record_is_an_error(blob: bytes) -> None:
    with pytest.raises(ValueError, match="packed record"):
        unpack(blob)


def test_packing_from_several_threads() -> None:
    """zstd contexts are per thread: records packed concurrently read back exactly."""
    from concurrent.futures import ThreadPoolExecutor

    records = [b'{"n":%d,"text":"' % n + b"order status please " * 30 + b'"}' for n in range(64)]
    with ThreadPoolExecutor(4) as pool:
        packed = list(pool.map(pack, records))
    assert [unpack(p) for p in packed] == records


def test_records_written_with_level_minus_1s_own_tables_still_read() -> None:
    """Format 2 records of releases before the smaller tables (level -1 with its 512 KB
    window and 32 KB hash table) read: the tables are not part of the format."""
    import zstandard

    from deskbridge.store import packing

    plain = raw_record(
        RawRequest(method="POST", path="/webhooks/telegram/acme", body=b'{"text":"hi"}' * 800),
        1700000000.5,
    )
    zdict = zstandard.ZstdCompressionDict(packing._DICT_1, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    earlier = zstandard.ZstdCompressor(
        level=-1, dict_data=zdict, write_checksum=False, write_dict_id=False
    )
    assert unpack(b"\x00\x02" + earlier.compress(plain)) == plain
    assert unpack(pack(plain)) == plain  # a record past the 8 KB window reads too
