"""TLV records, the frame header, and the admin client."""

from __future__ import annotations

import pytest

import lnc_uring
from lnc_uring import (
    ClientConfig,
    InvalidFrameError,
    LwpHeader,
    RecordType,
    TlvRecord,
    decode_records,
    encode_records,
)

from conftest import run


def test_tlv_records():
    r = TlvRecord(RecordType.RAW_DATA, b"hello")
    assert r.encode() == b"\x01\x05\x00\x00\x00hello" and r.total_size == 10
    kv = TlvRecord.key_value("k", b"v")
    assert kv.record_type == 0x10 and kv.as_key_value() == ("k", b"v")
    ts = TlvRecord.timestamped(123, b"d")
    assert ts.as_timestamped() == (123, b"d")
    assert TlvRecord.null().encode() == b"\xff\x00\x00\x00\x00"
    assert TlvRecord.json(b"{}").record_type == RecordType.JSON
    recs = [r, kv, ts]
    data = encode_records(recs)
    assert decode_records(data) == recs
    assert decode_records(data, expected_count=2) == recs[:2]
    assert decode_records(data + b"\x01\xff\x00") == recs  # truncated tail ignored
    assert decode_records(bytearray(data)) == recs and decode_records(memoryview(data)) == recs
    assert repr(r) == "TlvRecord(record_type=1, value=b'hello')"


def test_header_roundtrip():
    h = LwpHeader(flags=0x04, batch_id=7, record_count=1, payload_length=10, topic_id=3)
    raw = h.encode()
    assert len(raw) == lnc_uring.HEADER_SIZE and raw[:4] == lnc_uring.MAGIC
    back = LwpHeader.decode(raw)
    assert (back.batch_id, back.topic_id, back.is_batch, back.header_crc != 0) == (7, 3, True, True)
    control = LwpHeader.decode(LwpHeader(flags=0x40, batch_id=0x03).encode())
    assert control.command is lnc_uring.ControlCommand.LIST_TOPICS
    with pytest.raises(InvalidFrameError):
        LwpHeader.decode(b"XXXX" + raw[4:])
    with pytest.raises(InvalidFrameError):
        LwpHeader.decode(raw[:10])


def test_admin_calls(server):
    async def main():
        async with lnc_uring.LanceClient(ClientConfig(host=server.host, port=server.port)) as c:
            t = await c.create_topic("admin-a")
            assert (await c.create_topic("admin-a")).id == t.id  # idempotent, as the seed
            assert (await c.ensure_topic("admin-a")).id == t.id
            assert (await c.get_topic(t.id)).name == "admin-a"
            assert (await c.get_topic_by_name("admin-a")).id == t.id
            assert await c.resolve_topic_id("admin-a") == t.id
            r = await c.create_topic_with_retention("admin-b", max_age_secs=60, max_bytes=1 << 20)
            assert r.retention == lnc_uring.RetentionInfo(60, 1 << 20)
            s = await c.set_retention(t.id, max_age_secs=86400)
            assert (s.id, s.name, s.retention) == (t.id, "admin-a", lnc_uring.RetentionInfo(86400, 0))
            assert 0 < await c.ping() < 5
            sub = await c.subscribe(t.id, 0, 4096, 77)
            assert sub == {"consumer_id": 77, "start_offset": 0}
            assert await c.commit_offset(t.id, 77, 0) == {"consumer_id": 77, "committed_offset": 0}
            await c.unsubscribe(t.id, 77)
            await c.delete_topic(r.id)
            assert "admin-b" not in [x.name for x in await c.list_topics()]
        return t

    run(main())
    with lnc_uring.blocking.LanceClient(ClientConfig(host=server.host, port=server.port)) as c:
        assert c.get_topic_by_name("admin-a").name == "admin-a"
        assert c.ping() > 0
