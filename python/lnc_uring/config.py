"""Configuration classes: the seed client's names, fields and defaults.

Settings the seed accepted but never used now take effect: ``batch_size``,
``linger_ms`` and ``max_pending_acks`` drive the crate's batching producer,
``auto_commit_interval_s`` commits the consumer's position, and ``poll_interval_ms`` is
the wait between empty fetches of ``poll(timeout=…)``. Additions are marked "(lnc-uring)".
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Union

from lnc_uring.errors import validate_topic_name

DEFAULT_PORT = 1992


class SeekPosition(Enum):
    """Where a consumer starts or seeks to: ``BEGINNING``, ``END``, or
    ``SeekPosition.offset(n)`` (a byte offset that is a record boundary)."""

    BEGINNING = "beginning"
    END = "end"

    @staticmethod
    def offset(value: int) -> tuple[str, int]:
        """Seek to byte offset ``value``: returns ``("offset", value)``."""
        return ("offset", value)


Position = Union[SeekPosition, "tuple[str, int]"]


@dataclass(slots=True)
class RetentionInfo:
    """Retention policy of a topic (0: no limit on that axis)."""

    max_age_secs: int = 0
    max_bytes: int = 0


@dataclass(slots=True)
class TopicInfo:
    """A topic: ``id`` is the numeric id used on the wire, ``name`` the stable name.

    Fields are attributes (``topic.id``) and, as in the seed README's examples, also
    keys (``topic["id"]``).
    """

    id: int
    name: str
    created_at: int = 0
    topic_epoch: int = 1
    retention: RetentionInfo | None = None

    def __getitem__(self, key: str) -> Any:
        if key not in self.__slots__:  # type: ignore[attr-defined]
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """``topic.get("id")``: a field by name, or ``default``."""
        try:
            return self[key]
        except KeyError:
            return default


@dataclass(slots=True)
class ClientConfig:
    """Settings of the admin :class:`~lnc_uring.LanceClient`."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    keepalive_interval_s: float = 10.0
    #: TLS is not supported by lnc-uring: a value here makes connecting fail.
    ssl_context: ssl.SSLContext | None = None

    @property
    def address(self) -> str:
        """``"host:port"``."""
        return f"{self.host}:{self.port}"

    def with_host(self, host: str) -> ClientConfig:
        self.host = host
        return self

    def with_port(self, port: int) -> ClientConfig:
        self.port = port
        return self

    def with_connect_timeout(self, timeout_s: float) -> ClientConfig:
        self.connect_timeout_s = timeout_s
        return self

    def with_ssl(self, ctx: ssl.SSLContext) -> ClientConfig:
        self.ssl_context = ctx
        return self


@dataclass(slots=True)
class ProducerConfig:
    """Settings of the :class:`~lnc_uring.Producer`.

    ``batch_size`` (bytes), ``linger_ms`` and ``max_pending_acks`` (batches in flight)
    work as their names say; ``compression`` wraps each batch in the crate's LZ4
    compressed-batch record, which this package's consumers expand (the seed set the
    frame's compressed flag, which the server ignores, leaving data no consumer could
    read).
    """

    batch_size: int = 32 * 1024
    linger_ms: int = 5
    compression: bool = False
    max_pending_acks: int = 64
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    keepalive_interval_s: float = 10.0
    #: TLS is not supported by lnc-uring: a value here makes connecting fail.
    ssl_context: ssl.SSLContext | None = None
    #: The crate always reconnects (and resends unacknowledged batches).
    auto_reconnect: bool = True
    #: (lnc-uring) Most bytes accepted and not yet acknowledged; sends wait beyond it.
    buffer_memory: int = 32 * 1024 * 1024
    #: (lnc-uring) Each record is acknowledged or failed within this time.
    delivery_timeout_s: float = 120.0
    #: (lnc-uring) Resends of a batch after a retryable error, a lost connection or a
    #: silent server, at most (each may store it again: delivery is at-least-once).
    #: A batch given up after being sent fails with ``TimeoutError``
    #: (``outcome_unknown``: it may or may not be stored).
    max_retries: int = 5
    #: (lnc-uring) How long a producer garbage-collected without ``close()`` waits for
    #: its records before failing them (what was lost is written to standard error).
    drop_timeout_s: float = 5.0

    def with_batch_size(self, size: int) -> ProducerConfig:
        self.batch_size = size
        return self

    def with_linger_ms(self, ms: int) -> ProducerConfig:
        self.linger_ms = ms
        return self

    def with_compression(self, enabled: bool) -> ProducerConfig:
        self.compression = enabled
        return self

    def with_max_pending_acks(self, n: int) -> ProducerConfig:
        self.max_pending_acks = n
        return self

    def with_connect_timeout(self, timeout_s: float) -> ProducerConfig:
        self.connect_timeout_s = timeout_s
        return self

    def with_request_timeout(self, timeout_s: float) -> ProducerConfig:
        self.request_timeout_s = timeout_s
        return self

    def with_ssl(self, ctx: ssl.SSLContext) -> ProducerConfig:
        self.ssl_context = ctx
        return self

    def with_auto_reconnect(self, enabled: bool) -> ProducerConfig:
        self.auto_reconnect = enabled
        return self

    def with_buffer_memory(self, size: int) -> ProducerConfig:
        """(lnc-uring) Sets ``buffer_memory``."""
        self.buffer_memory = size
        return self

    def with_delivery_timeout(self, timeout_s: float) -> ProducerConfig:
        """(lnc-uring) Sets ``delivery_timeout_s``."""
        self.delivery_timeout_s = timeout_s
        return self

    def with_max_retries(self, n: int) -> ProducerConfig:
        """(lnc-uring) Sets ``max_retries``."""
        self.max_retries = n
        return self

    def with_drop_timeout(self, timeout_s: float) -> ProducerConfig:
        """(lnc-uring) Sets ``drop_timeout_s``."""
        self.drop_timeout_s = timeout_s
        return self


_CONSUMER_DEFAULTS: dict[str, Any] = {
    "max_fetch_bytes": 65_536,
    "start_position": SeekPosition.BEGINNING,
    "offset_dir": None,
    "auto_commit_interval_s": 5.0,
    "connect_timeout_s": 10.0,
    "poll_timeout_s": 0.1,
    "keepalive_interval_s": 10.0,
    "poll_interval_ms": 50,
    "ssl_context": None,
    "auto_reconnect": True,
    "request_timeout_s": 30.0,
}


@dataclass(slots=True, init=False)
class StandaloneConfig:
    """Settings of a :class:`~lnc_uring.StandaloneConsumer`.

    Name the topic with ``topic_name`` (resolved, and created if missing, at connect) or
    ``topic_id``. Other settings are keywords: ``max_fetch_bytes`` (65536),
    ``start_position`` (``SeekPosition.BEGINNING``; the legacy ``start_offset=n`` keyword
    is accepted), ``offset_dir`` (keep offsets in a :class:`~lnc_uring.FileOffsetStore`
    there), ``auto_commit_interval_s`` (5.0; ``None`` commits only on ``commit()``),
    ``connect_timeout_s``, ``poll_timeout_s``, ``keepalive_interval_s``,
    ``poll_interval_ms`` (50), and (lnc-uring) ``request_timeout_s`` (30.0).
    """

    consumer_name: str
    topic_id: int
    topic_name: str | None
    max_fetch_bytes: int
    start_position: Position
    offset_dir: Path | None
    auto_commit_interval_s: float | None
    connect_timeout_s: float
    poll_timeout_s: float
    keepalive_interval_s: float
    poll_interval_ms: int
    ssl_context: ssl.SSLContext | None
    auto_reconnect: bool
    request_timeout_s: float

    def __init__(
        self,
        consumer_name: str = "",
        topic_id: int = 0,
        topic_name: str = "",
        **kwargs: Any,
    ) -> None:
        self.consumer_name = consumer_name
        self.topic_id = topic_id
        if topic_name:
            validate_topic_name(topic_name)
        self.topic_name = topic_name or None
        unknown = set(kwargs) - set(_CONSUMER_DEFAULTS) - {"start_offset"}
        if unknown:
            raise TypeError(f"StandaloneConfig got unexpected keyword(s): {sorted(unknown)}")
        for key, default in _CONSUMER_DEFAULTS.items():
            setattr(self, key, kwargs.get(key, default))
        if self.offset_dir is not None:
            self.offset_dir = Path(self.offset_dir)
        if "start_offset" in kwargs:
            self.start_position = SeekPosition.offset(kwargs["start_offset"])

    def with_max_fetch_bytes(self, n: int) -> StandaloneConfig:
        self.max_fetch_bytes = n
        return self

    def with_start_position(self, pos: Position) -> StandaloneConfig:
        self.start_position = pos
        return self

    def with_offset_dir(self, path: Path | str) -> StandaloneConfig:
        self.offset_dir = Path(path)
        return self

    def with_auto_commit_interval(self, interval_s: float | None) -> StandaloneConfig:
        self.auto_commit_interval_s = interval_s
        return self

    def with_manual_commit(self) -> StandaloneConfig:
        self.auto_commit_interval_s = None
        return self

    def with_poll_timeout(self, timeout_s: float) -> StandaloneConfig:
        self.poll_timeout_s = timeout_s
        return self

    def with_connect_timeout(self, timeout_s: float) -> StandaloneConfig:
        self.connect_timeout_s = timeout_s
        return self

    def with_ssl(self, ctx: ssl.SSLContext) -> StandaloneConfig:
        self.ssl_context = ctx
        return self

    def with_auto_reconnect(self, enabled: bool) -> StandaloneConfig:
        self.auto_reconnect = enabled
        return self

    @classmethod
    def with_topic_name(cls, consumer_name: str, topic_name: str, **kwargs: Any) -> StandaloneConfig:
        """A config naming the topic; its id is resolved (or the topic created) at connect."""
        return cls(consumer_name, topic_id=0, topic_name=topic_name, **kwargs)

    @classmethod
    def new_with_id(
        cls, consumer_name: str, topic_name: str, topic_id: int, **kwargs: Any
    ) -> StandaloneConfig:
        """A config with both the topic's name and its known id."""
        return cls(consumer_name, topic_id=topic_id, topic_name=topic_name, **kwargs)

    @property
    def start_offset(self) -> int:
        """The start position as a number: 0 for BEGINNING, the offset for
        ``SeekPosition.offset(n)``, and 2**63 - 1 for END (as the seed; the consumer itself
        resolves END to the real end of the log)."""
        pos = self.start_position
        if isinstance(pos, tuple) and pos[0] == "offset":
            return int(pos[1])
        if pos is SeekPosition.END:
            return 2**63 - 1
        return 0


@dataclass(slots=True)
class ReconnectConfig:
    """Reconnection back-off parameters (exponential, with jitter).

    Kept for API compatibility: the crate reconnects on its own, from 100 ms doubling
    to 10 s with jitter.
    """

    base_delay_ms: int = 100
    max_delay_ms: int = 30_000
    max_attempts: int = 0
    jitter_factor: float = 0.1

    def delay_for_attempt(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt``: min(base·2^n, max) plus up to
        ``jitter_factor`` of it."""
        import random

        delay_ms = min(self.base_delay_ms * (2**attempt), self.max_delay_ms)
        return (delay_ms + random.uniform(0, delay_ms * self.jitter_factor)) / 1000.0


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"``, ``"[v6]:port"`` or ``"host"`` (port 1992) as ``(host, port)``."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return (host, int(port) if port else DEFAULT_PORT)
    host, sep, port = address.rpartition(":")
    if not sep or ":" in host:
        return (address, DEFAULT_PORT)
    return (host or address, int(port) if port else DEFAULT_PORT)


def join_address(host: str, port: int) -> str:
    """``(host, port)`` as the address string the Rust core takes."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def check_tls(ssl_context: Any) -> None:
    """Refuses a TLS context: the crate speaks plain TCP only."""
    if ssl_context is not None:
        from lnc_uring.errors import ConfigError

        raise ConfigError("TLS (ssl_context) is not supported by lnc-uring")
