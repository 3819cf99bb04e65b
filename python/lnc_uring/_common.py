"""Helpers shared by the asyncio and blocking flavours."""

from __future__ import annotations

import warnings
from typing import Any

from lnc_uring import _native
from lnc_uring.config import (
    ClientConfig,
    ProducerConfig,
    RetentionInfo,
    SeekPosition,
    StandaloneConfig,
    TopicInfo,
    check_tls,
    join_address,
    split_address,
)
from lnc_uring.errors import validate_topic_name

# Retention::UNLIMITED on each axis (what 0, "no limit", is sent as).
_UNLIMITED_AGE = (2**64 - 1) // 1_000_000_000
_UNLIMITED_BYTES = 2**64 - 1


def address_of(address: str) -> str:
    """Normalises ``"host[:port]"`` for the Rust core (port 1992 by default)."""
    return join_address(*split_address(address))


def topic_info(t: tuple) -> TopicInfo:
    """A ``TopicInfo`` from the native tuple ``(id, name, created_at, epoch, age, bytes)``."""
    tid, name, created_at, epoch, age, size = t
    retention = None
    if age is not None and size is not None:
        retention = RetentionInfo(
            max_age_secs=0 if age >= _UNLIMITED_AGE else age,
            max_bytes=0 if size >= _UNLIMITED_BYTES else size,
        )
    return TopicInfo(id=tid, name=name, created_at=created_at, topic_epoch=epoch, retention=retention)


def retention_info(topic_id: int, t: tuple, name: str = "") -> TopicInfo:
    """A ``TopicInfo`` from the native set-retention reply ``(topic_id, age, bytes)``."""
    _, age, size = t
    return TopicInfo(
        id=topic_id,
        name=name,
        retention=RetentionInfo(
            max_age_secs=0 if age >= _UNLIMITED_AGE else age,
            max_bytes=0 if size >= _UNLIMITED_BYTES else size,
        ),
    )


def topic_arg(topic: str | int | None, topic_id: int | None) -> str | int:
    """The topic a send names: ``topic`` (name or id), or the legacy ``topic_id=``."""
    if topic is None and topic_id is not None:
        warnings.warn("topic_id= is deprecated, use topic= instead", DeprecationWarning, stacklevel=4)
        topic = topic_id
    if topic is None:
        raise ValueError("topic is required")
    if isinstance(topic, bool) or not isinstance(topic, (int, str)):
        raise TypeError(f"topic must be a name (str) or an id (int), not {type(topic).__name__}")
    if isinstance(topic, str):
        validate_topic_name(topic)
    return topic


def producer_args(address: str, cfg: ProducerConfig) -> tuple:
    """Arguments of ``_native.ProducerCore.connect``."""
    check_tls(cfg.ssl_context)
    return (
        address_of(address),
        cfg.batch_size,
        cfg.linger_ms,
        cfg.compression,
        cfg.max_pending_acks,
        cfg.connect_timeout_s,
        cfg.request_timeout_s,
        cfg.keepalive_interval_s,
        cfg.buffer_memory,
        cfg.delivery_timeout_s,
        cfg.max_retries,
        cfg.drop_timeout_s,
    )


def admin_args(cfg: ClientConfig) -> tuple:
    """Arguments of ``_native.AdminCore.connect``."""
    check_tls(cfg.ssl_context)
    return (
        join_address(cfg.host, cfg.port),
        cfg.connect_timeout_s,
        cfg.request_timeout_s,
        cfg.keepalive_interval_s,
    )


def admin_config_for(address: str, connect_timeout_s: float = 10.0) -> ClientConfig:
    """The admin settings for a producer's or consumer's address."""
    host, port = split_address(address)
    return ClientConfig(host=host, port=port, connect_timeout_s=connect_timeout_s)


def start_arg(cfg: StandaloneConfig) -> str | int:
    """The consumer's start position for the Rust core."""
    pos = cfg.start_position
    if isinstance(pos, tuple) and pos[0] == "offset":
        return int(pos[1])
    if pos is SeekPosition.END:
        return "end"
    return "beginning"


def consumer_args(address: str, cfg: StandaloneConfig, native_store: Any) -> tuple:
    """Arguments of ``_native.ConsumerCore.connect``."""
    check_tls(cfg.ssl_context)
    return (
        address_of(address),
        cfg.consumer_name,
        cfg.topic_id,
        cfg.max_fetch_bytes,
        start_arg(cfg),
        cfg.poll_interval_ms,
        cfg.auto_commit_interval_s if native_store is not None else None,
        cfg.connect_timeout_s,
        cfg.request_timeout_s,
        cfg.keepalive_interval_s,
        native_store,
    )


def native_store_of(store: Any) -> Any:
    """The Rust store behind one of this package's offset stores, else ``None``."""
    return getattr(store, "_native", None)


def consumer_id(name: str) -> int:
    """The stable numeric id of a consumer name (FNV-1a 64), as the server sees it."""
    return _native.consumer_id(name)
