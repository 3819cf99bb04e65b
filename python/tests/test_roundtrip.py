"""A consumer reads back what a producer wrote, byte for byte, in both flavours."""

from __future__ import annotations

import os
import threading
import time

import lnc_uring
from lnc_uring import (
    FileOffsetStore,
    MemoryOffsetStore,
    ProducerConfig,
    RecordType,
    SeekPosition,
    StandaloneConfig,
    TlvRecord,
    blocking,
)

from conftest import run


def values(n: int) -> list[bytes]:
    # Varied sizes so records straddle fetch boundaries.
    return [os.urandom(1 + (i * 37) % 700) for i in range(n)]


def read_all(consumer, expect: int, timeout: float = 20.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < expect and time.monotonic() < deadline:
        r = consumer.poll(0.5)
        if r is not None:
            got.extend(r.records)
    return got


def test_async_roundtrip_byte_for_byte_across_fetch_cuts(server, topic_name):
    sent = values(3000)

    async def main():
        p = await lnc_uring.Producer.connect(server.address, ProducerConfig())
        tid = (await lnc_uring.Producer.connect_for_topic(server.address, topic_name))[1]
        for i, v in enumerate(sent):
            payload = v if i % 3 == 0 else (bytearray(v) if i % 3 == 1 else memoryview(v))
            await p.send_async(tid, payload, record_type=RecordType.MSGPACK if i % 2 else RecordType.RAW_DATA)
        await p.flush()
        await p.close()
        # A small fetch size cuts records across fetches: none may be lost or split.
        cfg = StandaloneConfig("reader", topic_id=tid, max_fetch_bytes=1000)
        async with await lnc_uring.StandaloneConsumer.connect(server.address, cfg) as c:
            got = []
            while len(got) < len(sent):
                r = await c.poll(timeout=5.0)
                assert r is not None, f"stalled after {len(got)} records"
                assert r.record_count == len(r.records)
                got.extend(r.records)
            assert r.lag == 0 and r.high_water_mark == r.end_offset == c.current_offset
            return got, tid

    got, tid = run(main())
    assert [r.value for r in got] == sent
    assert [r.record_type for r in got] == [RecordType.MSGPACK if i % 2 else 1 for i in range(len(sent))]
    assert lnc_uring.encode_records(got) == server.topic_bytes(tid)


def test_blocking_roundtrip_with_compression_and_batches(server, topic_name):
    sent = values(500)
    p, tid = blocking.Producer.connect_for_topic(server.address, topic_name, ProducerConfig(compression=True))
    half = len(sent) // 2
    for v in sent[:half]:
        p.send_async(topic_name, v)
    p.send_batch(tid, [TlvRecord.raw(v) for v in sent[half:]])
    p.flush()
    p.close()
    c = blocking.StandaloneConsumer.connect(server.address, StandaloneConfig.with_topic_name("r", topic_name))
    got = read_all(c, len(sent))
    c.close()
    assert [r.value for r in got] == sent


def test_lag_seek_rewind_end(server, topic_name):
    tid = server.create_topic(topic_name)
    p = blocking.Producer.connect(server.address)
    for i in range(100):
        p.send_async(tid, b"%03d" % i)
    p.flush()
    cfg = StandaloneConfig("seeker", topic_id=tid, max_fetch_bytes=80)
    c = blocking.StandaloneConsumer.connect(server.address, cfg)
    first = c.poll(2.0)
    assert first.lag > 0 and first.lag == first.high_water_mark - first.end_offset
    assert first.high_water_mark == 100 * 8
    c.rewind()
    assert c.current_offset == 0
    assert c.poll(2.0).records[0].value == b"000"
    c.seek(8 * 50)
    assert c.poll(2.0).records[0].value == b"050"
    c.seek_to(SeekPosition.offset(8 * 99))
    assert c.poll(2.0).records[0].value == b"099"
    c.seek_to_end()
    assert c.poll() is None
    p.send(tid, b"new")
    assert [r.value for r in c.poll(2.0).records] == [b"new"]
    c.close()
    p.close()


def test_commit_resumes_with_stores(server, topic_name, tmp_path):
    tid = server.create_topic(topic_name)
    p = blocking.Producer.connect(server.address)
    for i in range(10):
        p.send(tid, b"v%d" % i)
    store = MemoryOffsetStore()
    cfg = StandaloneConfig("committer", topic_id=tid, auto_commit_interval_s=None)
    c = blocking.StandaloneConsumer.connect(server.address, cfg, offset_store=store)
    assert len(read_all(c, 10)) == 10
    c.commit()
    assert c.committed_offset == c.current_offset == 10 * 7
    c.close()
    assert run(store.load("committer", tid)) == 70
    p.send(tid, b"v10")
    c = blocking.StandaloneConsumer.connect(server.address, cfg, offset_store=store)
    assert [r.value for r in read_all(c, 1)] == [b"v10"]
    c.close()

    # File store via offset_dir; a seed-format offset file is picked up.
    (tmp_path / f"filer_{topic_name}.offset").write_text(
        '{"consumer": "filer", "topic_id": %d, "topic_name": "%s", "offset": 63}' % (tid, topic_name)
    )
    fcfg = StandaloneConfig("filer", topic_id=tid, topic_name=topic_name, offset_dir=tmp_path)
    c = blocking.StandaloneConsumer.connect(server.address, fcfg)
    assert c.current_offset == 63
    assert [r.value for r in read_all(c, 2)] == [b"v9", b"v10"]
    c.close()  # auto-commit on close
    assert FileOffsetStore(tmp_path / "other").base_dir.exists()
    assert (tmp_path / "filer" / f"topic-{tid}.offset").read_text() == "78\n"
    p.close()


def test_python_offset_store_subclass(server, topic_name):
    class Dict(lnc_uring.OffsetStore):
        def __init__(self):
            self.saved = {}

        async def load(self, consumer_name, topic_id, *, topic_name=None):
            return self.saved.get((consumer_name, topic_id))

        async def save(self, consumer_name, topic_id, offset, *, topic_name=None):
            self.saved[(consumer_name, topic_id)] = offset

        async def delete(self, consumer_name, topic_id, *, topic_name=None):
            self.saved.pop((consumer_name, topic_id), None)

    tid = server.create_topic(topic_name)
    store = Dict()

    async def main():
        p = await lnc_uring.Producer.connect(server.address)
        await p.send(tid, b"a")
        await p.send(tid, b"b")
        cfg = StandaloneConfig("own", topic_id=tid)
        c = await lnc_uring.StandaloneConsumer.connect(server.address, cfg, offset_store=store)
        assert len((await c.poll(2.0)).records) == 2
        await c.commit()
        await c.close()
        await p.send(tid, b"c")
        c = await lnc_uring.StandaloneConsumer.connect(server.address, cfg, offset_store=store)
        assert [r.value for r in (await c.poll(2.0)).records] == [b"c"]
        await c.close()
        await p.close()

    run(main())
    assert store.saved[("own", tid)] == 18  # auto-commit on close


def test_blocking_calls_release_the_gil(server, topic_name):
    tid = server.create_topic(topic_name)
    c = blocking.StandaloneConsumer.connect(server.address, StandaloneConfig("idle", topic_id=tid))
    ticks = 0
    done = threading.Event()

    def spin():
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        start = time.monotonic()
        assert c.poll(0.5) is None  # waits in Rust for half a second
        assert time.monotonic() - start >= 0.45
    finally:
        done.set()
        t.join()
    c.close()
    assert ticks > 10_000, ticks


def test_no_thread_per_call(server, topic_name):
    tid = server.create_topic(topic_name)

    async def main():
        p = await lnc_uring.Producer.connect(server.address)
        c = await lnc_uring.StandaloneConsumer.connect(server.address, StandaloneConfig("t", topic_id=tid))
        await p.send(tid, b"warm")
        await c.poll(1.0)
        before = threading.active_count()
        for i in range(300):
            await p.send(tid, b"x")
            await p.send_async(tid, b"y")
            await c.poll()
        await p.flush()
        after = threading.active_count()
        await c.close()
        await p.close()
        return before, after

    before, after = run(main())
    assert after == before
