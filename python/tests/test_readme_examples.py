"""The seed README's examples, run unchanged except the import line and the address.

Each example is the README's text; the test swaps ``lnc_client`` for ``lnc_uring`` and
the README's server address for the embedded server's, then runs it as a script. The
consumer example loops forever, so it runs in a subprocess that is stopped once it has
printed what the producer example sent.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from lnc_uring.testkit import TestServer

PRODUCER = '''
import asyncio
from lnc_client import Producer, ProducerConfig

async def main():
    producer = await Producer.connect("10.0.10.11:1992", ProducerConfig())

    # Send with ACK (guaranteed delivery)
    batch_id = await producer.send(topic_id=1, data=b'{"price": 6942.25}')

    # Send without waiting for ACK (pipelined, higher throughput)
    batch_id = await producer.send_async(topic_id=1, data=b'fire and forget')

    await producer.close()

asyncio.run(main())
'''

CONSUMER = '''
import asyncio
from lnc_client import StandaloneConsumer, StandaloneConfig

async def main():
    consumer = await StandaloneConsumer.connect(
        "10.0.10.11:1992",
        StandaloneConfig(consumer_name="my-app", topic_id=1),
    )

    while True:
        result = await consumer.poll()
        if result is None:
            await asyncio.sleep(0.05)
            continue

        for record in result.records:
            print(f"Type={record.record_type}, Data={record.value}")

        print(f"Lag: {result.lag} bytes")

asyncio.run(main())
'''

TOPICS = '''
import asyncio
from lnc_client import LanceClient, ClientConfig

async def main():
    async with LanceClient(ClientConfig(host="10.0.10.11")) as client:
        # List topics
        topics = await client.list_topics()

        # Create topic
        topic = await client.create_topic("my-events")

        # Create with retention (7-day, 1GB max)
        topic = await client.create_topic_with_retention(
            "logs", max_age_secs=7*86400, max_bytes=1024**3
        )

        # Set retention on existing topic
        await client.set_retention(topic["id"], max_age_secs=86400)

asyncio.run(main())
'''

ERRORS = '''
from lnc_client import (
    LanceError,
    ConnectionError,
    BackpressureError,
    TopicNotFoundError,
    InvalidFrameError,
)

try:
    await producer.send(topic_id=99, data=b"test")
except TopicNotFoundError:
    print("Topic doesn't exist")
except BackpressureError:
    print("Server is overloaded, slow down")
except ConnectionError:
    print("Connection lost")
'''


def adapt(source: str, server: TestServer) -> str:
    """The two allowed changes: the import line and the address."""
    return (
        source.replace("from lnc_client import", "from lnc_uring import")
        .replace('"10.0.10.11:1992"', f'"{server.address}"')
        .replace('ClientConfig(host="10.0.10.11")', f'ClientConfig(host="127.0.0.1", port={server.port})')
    )


def run_script(source: str, timeout: float = 30.0) -> str:
    out = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def fresh_server():
    with TestServer() as s:
        yield s


def test_producer_then_consumer_examples(fresh_server):
    assert fresh_server.create_topic("prices") == 1  # the examples use topic 1
    run_script(adapt(PRODUCER, fresh_server))
    stored = fresh_server.topic_bytes(1)
    assert b'{"price": 6942.25}' in stored and b"fire and forget" in stored

    proc = subprocess.Popen(
        [sys.executable, "-c", adapt(CONSUMER, fresh_server)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 30
        while len(lines) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert lines == [
        """Type=1, Data=b'{"price": 6942.25}'""",
        "Type=1, Data=b'fire and forget'",
        "Lag: 0 bytes",
    ], proc.stderr.read()


def test_topic_management_example(fresh_server):
    run_script(adapt(TOPICS, fresh_server))
    from lnc_uring.blocking import LanceClient
    from lnc_uring import ClientConfig

    with LanceClient(ClientConfig(host="127.0.0.1", port=fresh_server.port)) as c:
        names = sorted(t.name for t in c.list_topics())
    assert names == ["logs", "my-events"]


def test_error_handling_example(fresh_server):
    wrapped = "import asyncio\nfrom lnc_uring import Producer, ProducerConfig\n"
    wrapped += "async def main():\n"
    wrapped += f'    producer = await Producer.connect("{fresh_server.address}", ProducerConfig())\n'
    wrapped += textwrap.indent(adapt(ERRORS, fresh_server), "    ")
    wrapped += "    await producer.close()\n"
    wrapped += "asyncio.run(main())\n"
    assert run_script(wrapped) == "Topic doesn't exist\n"


def test_package_docstring_example(fresh_server):
    """The published package's own usage example (name-based)."""
    source = f'''
import asyncio
from lnc_uring import LanceClient, ClientConfig, Producer, ProducerConfig
from lnc_uring import StandaloneConsumer, StandaloneConfig, SeekPosition

async def main():
    cfg = ClientConfig(host="127.0.0.1", port={fresh_server.port})
    async with LanceClient(cfg) as client:
        topic = await client.ensure_topic("my-events")
        topics = await client.list_topics()
        print(topics)

    prod = await Producer.connect("{fresh_server.address}", ProducerConfig())
    await prod.send(topic="my-events", data=b'hello world')
    await prod.flush()
    await prod.close()

    cons = await StandaloneConsumer.connect(
        "{fresh_server.address}",
        StandaloneConfig.with_topic_name("my-consumer", "my-events"),
    )
    records = await cons.poll()
    print(records.records[0].value)
    await cons.commit()
    await cons.close()

asyncio.run(main())
'''
    out = run_script(source)
    assert "name='my-events'" in out and out.endswith("b'hello world'\n")
