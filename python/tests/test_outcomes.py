"""Every record gets exactly one outcome and the caller can always learn it: the Rust
core's outcome errors staged end to end (records given up unacknowledged, a stopped
driver, a server gone, a damaged record in the log), flush/close reporting, the
subscription calls and the consumer's commit points."""

from __future__ import annotations

import asyncio
import socket
import time
import zlib

import pytest

import lnc_uring
from lnc_uring import (
    ConfigError,
    ConnectionError,
    DeliveryError,
    InvalidFrameError,
    MemoryOffsetStore,
    ProducerConfig,
    StandaloneConfig,
    TimeoutError,
    TopicNotFoundError,
    blocking,
)
from lnc_uring.protocol import Flag, LwpHeader
from lnc_uring.testkit import TestServer

from conftest import run


def test_a_failure_raised_by_send_is_not_raised_again(server, topic_name):
    tid = server.create_topic(topic_name)

    async def main():
        p = await lnc_uring.Producer.connect(server.address, ProducerConfig(linger_ms=0))
        server.reject_ingest("Unknown topic")
        with pytest.raises(TopicNotFoundError):
            await p.send(tid, b"refused")
        await p.flush()  # already raised by send: nothing to report
        server.reject_ingest("Unknown topic")
        with pytest.raises(TopicNotFoundError):
            await p.send_batch(tid, [lnc_uring.TlvRecord.raw(b"x")])
        await p.close()  # nor here

    run(main())

    p = blocking.Producer.connect(server.address, ProducerConfig(linger_ms=0))
    server.reject_ingest("Unknown topic")
    with pytest.raises(TopicNotFoundError):
        p.send(tid, b"refused")
    rid = p.send_async(tid, b"fine")
    p.flush()
    server.reject_ingest("Unknown topic")
    lost = p.send_async(tid, b"refused, nobody waiting")
    with pytest.raises(DeliveryError) as e:
        p.close()
    assert [(r, type(x)) for r, x in e.value.failures] == [(lost, TopicNotFoundError)]
    assert e.value.failed == 1 and isinstance(e.value.first, TopicNotFoundError)
    assert "1 record(s)" in str(e.value) and lost > rid


def test_unacknowledged_records_are_given_up_with_outcome_unknown():
    with TestServer() as server:
        tid = server.create_topic("silent")
        cfg = ProducerConfig(linger_ms=0, delivery_timeout_s=0.5)

        async def main():
            p = await lnc_uring.Producer.connect(server.address, cfg)
            server.pause_reads()  # sent (into the socket), never acknowledged
            with pytest.raises(TimeoutError) as awaited:
                await p.send(tid, b"awaited")
            rid = await p.send_async(tid, b"not awaited")
            with pytest.raises(DeliveryError) as flushed:
                await p.flush(timeout=5)
            await p.close(timeout=1)
            return awaited.value, rid, flushed.value

        try:
            awaited, rid, flushed = run(main())
        finally:
            server.resume_reads()
    assert awaited.outcome_unknown and awaited.native_kind == "OutcomeUnknown"
    assert awaited.attempts >= 1 and isinstance(awaited.__cause__, TimeoutError)
    assert awaited.is_retryable()
    [(r, e)] = flushed.failures
    # Queued behind the silent connection: given up before it was even sent.
    assert r == rid and isinstance(e, TimeoutError)
    # A plain deadline is not an unknown outcome.
    assert not lnc_uring._native.error_for_testing("Timeout").outcome_unknown


def test_a_stopped_driver_is_a_connection_error(server, topic_name):
    tid = server.create_topic(topic_name)
    p = blocking.Producer.connect(server.address, ProducerConfig(linger_ms=10_000))
    lingering = p.send_async(tid, b"in its batch when the driver stops")
    p._core.debug_stop_driver()
    deadline = time.monotonic() + 5
    while True:
        try:
            p.send_async(tid, b"after")
        except ConnectionError as e:
            err = e
            break
        assert time.monotonic() < deadline, "the stop was never reported"
        time.sleep(0.01)
    assert err.native_kind == "Stopped" and not err.is_retryable()
    with pytest.raises(ConnectionError):
        p.send(tid, b"blocking")
    with pytest.raises(DeliveryError) as e:
        p.close(timeout=2)
    rids = [r for r, _ in e.value.failures]
    assert rids[0] == lingering and all(isinstance(x, ConnectionError) for _, x in e.value.failures)


def test_records_sent_while_the_server_is_down_all_get_an_outcome():
    server = TestServer()
    tid = server.create_topic("gone")
    # Room for four one-record batches at a time.
    cfg = ProducerConfig(
        linger_ms=0, batch_size=1024, buffer_memory=4096, delivery_timeout_s=0.5, connect_timeout_s=0.5
    )

    async def main():
        p = await lnc_uring.Producer.connect(server.address, cfg)
        await p.send(tid, b"before")
        server.stop()
        # Far more than the buffer holds: sends wait for room, which records failing
        # within the delivery timeout make; none is lost and none raises here.
        start = time.monotonic()
        rids = [await p.send_async(tid, b"x" * 200) for _ in range(8)]
        assert time.monotonic() - start > 0.5  # it did wait for room
        with pytest.raises(DeliveryError) as e:
            await p.close(timeout=5)
        return rids, e.value

    rids, err = run(main(), timeout=40)
    assert sorted(r for r, _ in err.failures) == rids
    assert err.failed == len(rids)
    assert all(isinstance(x, (ConnectionError, TimeoutError)) for _, x in err.failures)
    assert err.is_retryable()


def _append_raw(server: TestServer, topic_id: int, payload: bytes, batch_id: int = 1) -> None:
    """Writes one ingest frame of arbitrary payload bytes, as a foreign producer could."""
    header = LwpHeader(
        flags=Flag.BATCH_MODE,
        batch_id=batch_id,
        record_count=1,
        payload_length=len(payload),
        payload_crc=zlib.crc32(payload),
        topic_id=topic_id,
    )
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(header.encode() + payload)
        ack = b""
        while len(ack) < 44:
            chunk = s.recv(44 - len(ack))
            assert chunk, "connection closed before the ACK"
            ack += chunk
    assert LwpHeader.decode(ack).is_ack


def _damaged_topic(server: TestServer, name: str) -> tuple[int, int, int]:
    """good-1, good-2, then a header declaring more than any record can have."""
    tid = server.create_topic(name)
    good = lnc_uring.encode_records([lnc_uring.TlvRecord.raw(b"good-1"), lnc_uring.TlvRecord.raw(b"good-2")])
    declared = 16 * 1024 * 1024 + 1
    _append_raw(server, tid, good + b"\x01" + declared.to_bytes(4, "little"))
    return tid, len(good), len(good) + 5 + declared


def test_a_damaged_record_is_raised_after_the_good_ones_and_can_be_skipped(server, topic_name):
    tid, bad_at, after = _damaged_topic(server, topic_name)

    async def main():
        c = await lnc_uring.StandaloneConsumer.connect(server.address, StandaloneConfig("d", topic_id=tid))
        r = await c.poll(timeout=5)
        assert [x.value for x in r.records] == [b"good-1", b"good-2"]
        for _ in range(2):  # it stays in the way until skipped
            with pytest.raises(InvalidFrameError) as e:
                await c.poll(timeout=5)
            assert e.value.offset == bad_at and e.value.native_kind == "CorruptRecord"
            assert e.value.reason and not e.value.is_retryable()
        assert await c.skip_bad_record() == after
        assert c.current_offset == after
        with pytest.raises(ConfigError):
            await c.skip_bad_record()  # nothing left to skip
        await c.close()

    run(main())

    c = blocking.StandaloneConsumer.connect(server.address, StandaloneConfig("b", topic_id=tid))
    assert len(c.poll(5).records) == 2
    with pytest.raises(InvalidFrameError):
        c.poll(5)
    assert c.skip_bad_record() == after
    c.close()


def test_subscriptions_go_through_the_core(server, topic_name):
    tid = server.create_topic(topic_name)

    async def main():
        async with lnc_uring.LanceClient(lnc_uring.ClientConfig(host=server.host, port=server.port)) as c:
            assert await c.subscribe(tid, 0, 4096, 91) == {"consumer_id": 91, "start_offset": 0}
            assert await c.commit_offset(tid, 91, 0) == {"consumer_id": 91, "committed_offset": 0}
            await c.unsubscribe(tid, 91)
            await c.unsubscribe(tid, 91)  # answered even when not subscribed
            with pytest.raises(TopicNotFoundError):
                await c.subscribe(999_999, 0, 4096, 91)

    run(main())
    with blocking.LanceClient(lnc_uring.ClientConfig(host=server.host, port=server.port)) as c:
        assert c.subscribe(tid, 0, 4096, 92) == {"consumer_id": 92, "start_offset": 0}
        assert c.commit_offset(tid, 92, 0) == {"consumer_id": 92, "committed_offset": 0}
        c.unsubscribe(tid, 92)


class _DictStore(lnc_uring.OffsetStore):
    def __init__(self):
        self.saved = {}

    async def load(self, consumer_name, topic_id, *, topic_name=None):
        return self.saved.get((consumer_name, topic_id))

    async def save(self, consumer_name, topic_id, offset, *, topic_name=None):
        self.saved[(consumer_name, topic_id)] = offset

    async def delete(self, consumer_name, topic_id, *, topic_name=None):
        self.saved.pop((consumer_name, topic_id), None)


@pytest.mark.parametrize("store_kind", ["native", "python"])
def test_auto_commit_covers_what_earlier_polls_returned_and_close_all(server, topic_name, store_kind):
    tid = server.create_topic(topic_name)
    store = MemoryOffsetStore() if store_kind == "native" else _DictStore()
    # Every poll may auto-commit; records are 5 + 2 bytes each.
    cfg = StandaloneConfig("ac", topic_id=tid, auto_commit_interval_s=0.0, max_fetch_bytes=14)

    async def saved():
        return await store.load("ac", tid)

    async def main():
        p = await lnc_uring.Producer.connect(server.address)
        for i in range(4):
            await p.send(tid, b"r%d" % i)
        c = await lnc_uring.StandaloneConsumer.connect(server.address, cfg, offset_store=store)
        first = await c.poll(timeout=5)  # r0, r1: not processed yet
        assert [x.value for x in first.records] == [b"r0", b"r1"]
        assert await saved() in (None, 0)
        second = await c.poll(timeout=5)  # polling again: r0, r1 were processed
        assert [x.value for x in second.records] == [b"r2", b"r3"]
        assert await saved() == 14
        await c.close()  # commits everything returned
        assert await saved() == 28
        await p.close()

    run(main())


def test_leaving_the_context_commits_what_was_returned(server, topic_name):
    tid = server.create_topic(topic_name)
    store = MemoryOffsetStore()
    p = blocking.Producer.connect(server.address)
    p.send(tid, b"one")
    cfg = StandaloneConfig("cm", topic_id=tid)

    async def main():
        async with await lnc_uring.StandaloneConsumer.connect(server.address, cfg, offset_store=store) as c:
            assert len((await c.poll(timeout=5)).records) == 1
        assert c._core.closed

    run(main())
    assert run(store.load("cm", tid)) == 8
    p.send(tid, b"two")
    with blocking.StandaloneConsumer.connect(server.address, cfg, offset_store=store) as c:
        assert [r.value for r in c.poll(5).records] == [b"two"]
    assert run(store.load("cm", tid)) == 16
    p.close()


def test_max_retries_and_drop_timeout_reach_the_core(server, topic_name):
    tid = server.create_topic(topic_name)
    cfg = ProducerConfig().with_max_retries(0).with_drop_timeout(0.5)
    assert (cfg.max_retries, cfg.drop_timeout_s) == (0, 0.5)
    p = blocking.Producer.connect(server.address, cfg)
    p.send(tid, b"ok")
    p.close()
    with pytest.raises(ConfigError):
        blocking.Producer.connect(server.address, ProducerConfig(drop_timeout_s=10 * 365 * 86400.0))


def test_cancelled_batch_failure_is_reported_once(server, topic_name):
    tid = server.create_topic(topic_name)

    async def main():
        p = await lnc_uring.Producer.connect(server.address, ProducerConfig())
        server.pause_reads()
        server.reject_ingest("Unknown topic")
        task = asyncio.ensure_future(p.send_batch(tid, [lnc_uring.TlvRecord.raw(b"a")]))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.resume_reads()
        with pytest.raises(DeliveryError) as e:
            await p.flush(timeout=10)
        await p.flush(timeout=10)  # once
        await p.close()
        return e.value

    err = run(main())
    assert err.failed == 1 and isinstance(err.first, TopicNotFoundError)


def test_flush_never_returns_before_a_failure_is_recorded(server, topic_name):
    tid = server.create_topic(topic_name)
    p = blocking.Producer.connect(server.address, ProducerConfig(linger_ms=0))
    for _ in range(30):
        server.reject_ingest("Unknown topic")
        rid = p.send_async(tid, b"refused")
        with pytest.raises(DeliveryError) as e:
            p.flush(timeout=10)
        assert [r for r, _ in e.value.failures] == [rid]
    p.close()
