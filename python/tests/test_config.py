"""Every configuration default is the seed client's (plus the documented additions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lnc_uring import (
    ClientConfig,
    InvalidTopicNameError,
    ProducerConfig,
    ReconnectConfig,
    RetentionInfo,
    SeekPosition,
    StandaloneConfig,
    TopicInfo,
)


def test_producer_defaults():
    c = ProducerConfig()
    assert (c.batch_size, c.linger_ms, c.compression, c.max_pending_acks) == (32768, 5, False, 64)
    assert (c.connect_timeout_s, c.request_timeout_s, c.keepalive_interval_s) == (10.0, 30.0, 10.0)
    assert c.ssl_context is None and c.auto_reconnect is True
    assert (c.buffer_memory, c.delivery_timeout_s) == (32 * 1024 * 1024, 120.0)
    c2 = ProducerConfig().with_batch_size(1).with_linger_ms(2).with_compression(True).with_max_pending_acks(3)
    assert (c2.batch_size, c2.linger_ms, c2.compression, c2.max_pending_acks) == (1, 2, True, 3)


def test_standalone_defaults():
    c = StandaloneConfig()
    assert (c.consumer_name, c.topic_id, c.topic_name) == ("", 0, None)
    assert c.max_fetch_bytes == 65536
    assert c.start_offset == 0 and c.start_position is SeekPosition.BEGINNING
    assert c.poll_interval_ms == 50
    assert c.offset_dir is None and c.auto_commit_interval_s == 5.0
    assert (c.connect_timeout_s, c.poll_timeout_s, c.keepalive_interval_s) == (10.0, 0.1, 10.0)
    assert c.ssl_context is None and c.auto_reconnect is True


def test_standalone_keywords_and_builders(tmp_path: Path):
    c = StandaloneConfig("app", 3, start_offset=500, offset_dir=str(tmp_path), max_fetch_bytes=1024)
    assert c.start_position == ("offset", 500) and c.start_offset == 500
    assert c.offset_dir == tmp_path and c.max_fetch_bytes == 1024
    n = StandaloneConfig.with_topic_name("app", "orders")
    assert (n.topic_id, n.topic_name) == (0, "orders")
    assert StandaloneConfig.new_with_id("app", "orders", 9).topic_id == 9
    assert StandaloneConfig().with_manual_commit().auto_commit_interval_s is None
    assert StandaloneConfig().with_start_position(SeekPosition.END).start_offset == 2**63 - 1
    with pytest.raises(InvalidTopicNameError):
        StandaloneConfig("app", topic_name="bad name")
    with pytest.raises(TypeError):
        StandaloneConfig("app", no_such_setting=1)


def test_client_defaults():
    c = ClientConfig()
    assert (c.host, c.port, c.connect_timeout_s, c.request_timeout_s, c.keepalive_interval_s) == (
        "127.0.0.1",
        1992,
        10.0,
        30.0,
        10.0,
    )
    assert c.address == "127.0.0.1:1992" and c.ssl_context is None
    assert ClientConfig().with_host("h").with_port(7).address == "h:7"


def test_reconnect_and_small_types():
    r = ReconnectConfig()
    assert (r.base_delay_ms, r.max_delay_ms, r.max_attempts, r.jitter_factor) == (100, 30000, 0, 0.1)
    assert 0.1 <= r.delay_for_attempt(0) <= 0.11
    assert 30.0 <= r.delay_for_attempt(20) <= 33.0
    assert SeekPosition.offset(7) == ("offset", 7)
    t = TopicInfo(id=4, name="x")
    assert (t.created_at, t.topic_epoch, t.retention) == (0, 1, None)
    assert t["id"] == 4 and t.get("nope", 1) == 1
    assert RetentionInfo() == RetentionInfo(0, 0)
