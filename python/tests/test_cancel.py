"""Cancelling an awaiting task never loses a record's outcome."""

from __future__ import annotations

import asyncio

import pytest

import lnc_uring
from lnc_uring import DeliveryError, ProducerConfig, StandaloneConfig, TopicNotFoundError

from conftest import run


def test_cancelled_send_is_still_delivered(server, topic_name):
    tid = server.create_topic(topic_name)

    async def main():
        p = await lnc_uring.Producer.connect(server.address, ProducerConfig())
        server.pause_reads()  # no ACK can come while the task is cancelled
        task = asyncio.ensure_future(p.send(tid, b"survives"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.resume_reads()
        await p.flush(timeout=10)  # delivered, no failure to report
        await p.close()

    run(main())
    assert server.topic_bytes(tid) == b"\x01\x08\x00\x00\x00survives"


def test_cancelled_send_failure_is_reported(server, topic_name):
    tid = server.create_topic(topic_name)

    async def main():
        p = await lnc_uring.Producer.connect(server.address, ProducerConfig())
        server.pause_reads()
        server.reject_ingest("Unknown topic")
        task = asyncio.ensure_future(p.send(tid, b"refused"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.resume_reads()
        with pytest.raises(DeliveryError) as e:
            await p.flush(timeout=10)
        await p.close()
        return e.value

    err = run(main())
    assert len(err.failures) == 1 and isinstance(err.failures[0][1], TopicNotFoundError)
    assert isinstance(err.__cause__, TopicNotFoundError)


def test_cancelled_poll_keeps_its_records(server, topic_name):
    tid = server.create_topic(topic_name)

    async def main():
        p = await lnc_uring.Producer.connect(server.address)
        c = await lnc_uring.StandaloneConsumer.connect(server.address, StandaloneConfig("c", topic_id=tid))
        # Cancel polls at random points while records arrive; every record must come
        # through exactly once, in order.
        expected = [b"r%04d" % i for i in range(200)]
        got = []

        async def produce():
            for v in expected:
                await p.send_async(tid, v)
                if len(v) % 7 == 0:
                    await asyncio.sleep(0)
            await p.flush()

        prod = asyncio.ensure_future(produce())
        rounds = 0
        while len(got) < len(expected):
            rounds += 1
            task = asyncio.ensure_future(c.poll(timeout=0.2))
            await asyncio.sleep(0.001)
            if rounds % 2 == 0:
                task.cancel()
            try:
                r = await task
            except asyncio.CancelledError:
                continue
            if r is not None:
                got.extend(x.value for x in r.records)
        await prod
        await c.commit()
        committed = c.committed_offset
        await c.close()
        await p.close()
        return expected, got, committed

    expected, got, committed = run(main(), timeout=60)
    assert got == expected
    assert committed == 200 * 10
