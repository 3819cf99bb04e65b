"""Every exception mapping: the Rust core's errors, the server's error texts, and
failures staged on the embedded server."""

from __future__ import annotations

import pytest

import lnc_uring
from lnc_uring import _native, blocking
from lnc_uring.errors import (
    AccessDeniedError,
    BackpressureError,
    ConfigError,
    ConnectionError,
    DeliveryError,
    InvalidFrameError,
    InvalidTopicNameError,
    LanceError,
    NotLeaderError,
    ProtocolError,
    ServerCatchingUpError,
    ServerError,
    TimeoutError,
    TopicAlreadyExistsError,
    TopicNotFoundError,
)

from conftest import run

# (crate error or server text, exception class, retryable)
MAPPINGS = [
    ("Connect", ConnectionError, True),
    ("ConnectionClosed", ConnectionError, True),
    ("Io", ConnectionError, True),
    ("Closed", ConnectionError, False),
    ("Timeout", TimeoutError, True),
    ("Backpressure", BackpressureError, True),
    ("TopicNotFound", TopicNotFoundError, False),
    ("InvalidTopicName", InvalidTopicNameError, False),
    ("Authentication", AccessDeniedError, False),
    ("CatchingUp", ServerCatchingUpError, True),
    ("Protocol", ProtocolError, False),
    ("RecordTooLarge", ProtocolError, False),
    ("InvalidFrame", InvalidFrameError, False),
    ("Config", ConfigError, False),
    ("Stopped", ConnectionError, False),
    ("ConnectionDropped", ConnectionError, True),
    ("Unreachable", ConnectionError, True),
    ("PeerTimeout", TimeoutError, True),
    ("OutcomeUnknown", TimeoutError, True),
    ("OutcomeUnknownClosed", TimeoutError, False),
    ("CorruptRecord", InvalidFrameError, False),
    ("DeliveryFailed", DeliveryError, False),
    ("server:Unknown topic", TopicNotFoundError, False),
    ("server:Topic 7 not found", TopicNotFoundError, False),
    ("server:Topic 'orders' already exists", TopicAlreadyExistsError, False),
    ("server:Invalid data: Topic name must be alphanumeric", InvalidTopicNameError, False),
    ("server:NOT_LEADER: redirect to 127.0.0.1:2000", NotLeaderError, True),
    ("server:Rate limit exceeded", BackpressureError, True),
    ("server:Authentication required", AccessDeniedError, False),
    ("server:Invalid client command", ProtocolError, False),
    ("server:FORWARD_FAILED: Quorum not reached", ServerError, True),
    ("server:FORWARD_FAILED: Leader not ready", ServerError, True),
    ("server:I/O error: disk full", ServerError, False),
    ("server:something new", ServerError, False),
]


@pytest.mark.parametrize("kind,cls,retryable", MAPPINGS)
def test_mapping(kind, cls, retryable):
    exc = _native.error_for_testing(kind)
    assert type(exc) is cls
    assert isinstance(exc, LanceError)
    assert exc.is_retryable() is retryable
    assert str(exc)


def test_mapping_details():
    assert _native.error_for_testing("server:NOT_LEADER: redirect to 127.0.0.1:2000").leader_addr == "127.0.0.1:2000"
    assert _native.error_for_testing("CatchingUp").server_offset == 42
    assert "Unknown topic" in str(_native.error_for_testing("TopicNotFound"))
    assert isinstance(_native.error_for_testing("Config"), ValueError)


def test_outcome_mapping_details():
    unknown = _native.error_for_testing("OutcomeUnknown")
    assert unknown.outcome_unknown and unknown.attempts == 2
    assert type(unknown.__cause__) is TimeoutError and not unknown.__cause__.outcome_unknown
    assert "outcome unknown after 2 send(s)" in str(unknown)
    closed = _native.error_for_testing("OutcomeUnknownClosed")
    assert type(closed.__cause__) is ConnectionError and not closed.is_retryable()
    corrupt = _native.error_for_testing("CorruptRecord")
    assert isinstance(corrupt, ProtocolError) and corrupt.offset == 4096 and "4294967295" in corrupt.reason
    failed = _native.error_for_testing("DeliveryFailed")
    assert failed.failed == 3 and failed.failures == [] and failed.more == 0
    assert type(failed.first) is TopicNotFoundError and failed.__cause__ is failed.first
    assert str(failed).startswith("3 record(s) were not delivered")
    assert failed.native_kind == "DeliveryFailed"
    for kind in ("Stopped", "ConnectionDropped", "Unreachable", "PeerTimeout"):
        e = _native.error_for_testing(kind)
        assert e.native_kind == kind and str(e)
    assert not _native.error_for_testing("Stopped").is_retryable()
    # Seed-built exceptions keep the class defaults of the new attributes.
    assert TimeoutError().outcome_unknown is False and InvalidFrameError().offset is None
    assert DeliveryError([(1, TimeoutError())]).is_retryable()
    assert not DeliveryError().is_retryable() and DeliveryError().failed == 0


def test_class_defaults_as_in_the_seed():
    assert ConnectionError().is_retryable() and TimeoutError().is_retryable()
    assert BackpressureError().is_retryable() and ServerCatchingUpError().is_retryable()
    assert NotLeaderError().is_retryable()
    assert not LanceError().is_retryable() and not TopicNotFoundError(1).is_retryable()
    assert not TopicAlreadyExistsError().is_retryable() and not AccessDeniedError().is_retryable()
    assert issubclass(InvalidFrameError, ProtocolError)
    assert isinstance(InvalidTopicNameError("x"), ValueError)


def test_validate_topic_name():
    lnc_uring.validate_topic_name("orders-2024")
    for bad in ("", "a b", "a_b", "é"):
        with pytest.raises(InvalidTopicNameError):
            lnc_uring.validate_topic_name(bad)


def test_connect_refused_is_connection_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError) as e:
        blocking.Producer.connect(f"127.0.0.1:{port}", lnc_uring.ProducerConfig(connect_timeout_s=2.0))
    assert e.value.is_retryable()


def test_wire_errors(server):
    async def main():
        p = await lnc_uring.Producer.connect(server.address, lnc_uring.ProducerConfig())
        with pytest.raises(TopicNotFoundError):
            await p.send(4242, b"no such topic")
        async with lnc_uring.LanceClient(lnc_uring.ClientConfig(host=server.host, port=server.port)) as c:
            await c.create_topic_once("dup")
            with pytest.raises(TopicAlreadyExistsError):
                await c.create_topic_once("dup")
            with pytest.raises(InvalidTopicNameError):
                await c.create_topic("no spaces")
            with pytest.raises(TopicNotFoundError):
                await c.get_topic(999)
            with pytest.raises(TopicNotFoundError):
                await c.get_topic_by_name("missing")
        await p.close()

    run(main())


def test_rejected_ingest_maps_and_is_reported_by_flush(server):
    tid = server.create_topic("rejects")

    async def main():
        p = await lnc_uring.Producer.connect(server.address, lnc_uring.ProducerConfig(linger_ms=0))
        server.reject_ingest("Authentication required")
        with pytest.raises(AccessDeniedError):
            await p.send(tid, b"refused")
        server.reject_ingest("Unknown topic")
        rid = await p.send_async(tid, b"refused later")
        with pytest.raises(DeliveryError) as e:
            await p.flush()
        assert [(r, type(x)) for r, x in e.value.failures] == [(rid, TopicNotFoundError)]
        await p.flush()  # reported once
        assert await p.send(tid, b"fine") > rid
        await p.close()

    run(main())


def test_closed_producer_raises_connection_error(server):
    tid = server.create_topic("closed")
    p = blocking.Producer.connect(server.address)
    p.close()
    p.close()
    with pytest.raises(ConnectionError):
        p.send(tid, b"late")


def test_tls_is_refused():
    import ssl

    with pytest.raises(ConfigError):
        blocking.Producer.connect("127.0.0.1:1", lnc_uring.ProducerConfig(ssl_context=ssl.create_default_context()))
