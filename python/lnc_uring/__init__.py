"""lnc_uring — the Lance Wire Protocol client for Python, on the io_uring-native Rust
core of lnc-uring.

The public API is the seed Python client's (``lnc_client`` 0.2.9): switch with one
import line::

    from lnc_uring import Producer, ProducerConfig   # was: from lnc_client import ...

* :class:`Producer`, :class:`StandaloneConsumer` and :class:`LanceClient` are asyncio
  classes; :mod:`lnc_uring.blocking` has the same classes without ``await``.
* Sockets, batching, acknowledgements, reconnects and fetches run in Rust driver threads;
  the GIL is released whenever Rust waits.
* :mod:`lnc_uring.testkit` starts an embedded server for tests.

Where the seed's behaviour was a bug, this package does what the Rust core does: lag is
real, records cut by a fetch boundary are completed (not dropped), LZ4 batches are
readable by consumers, failures of un-awaited sends are reported by ``flush``, the
server's plain-text errors map to the typed exceptions, and settings the seed ignored
(``batch_size``, ``linger_ms``, ``max_pending_acks``, ``auto_commit_interval_s``) work.
"""

from lnc_uring._native import __version__ as _native_version
from lnc_uring.client import LanceClient
from lnc_uring.config import (
    ClientConfig,
    ProducerConfig,
    ReconnectConfig,
    RetentionInfo,
    SeekPosition,
    StandaloneConfig,
    TopicInfo,
)
from lnc_uring.consumer import PollResult, StandaloneConsumer
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
    validate_topic_name,
)
from lnc_uring.offset import FileOffsetStore, MemoryOffsetStore, OffsetStore
from lnc_uring.producer import Producer
from lnc_uring.protocol import (
    DEFAULT_PORT,
    HEADER_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    ControlCommand,
    Flag,
    LwpHeader,
)
from lnc_uring.tlv import RecordType, TlvRecord, decode_records, encode_records

__version__ = _native_version

__all__ = [
    # Protocol
    "MAGIC",
    "HEADER_SIZE",
    "PROTOCOL_VERSION",
    "DEFAULT_PORT",
    "Flag",
    "ControlCommand",
    "LwpHeader",
    # TLV
    "RecordType",
    "TlvRecord",
    "encode_records",
    "decode_records",
    # Errors
    "LanceError",
    "ConnectionError",
    "ProtocolError",
    "TimeoutError",
    "BackpressureError",
    "TopicNotFoundError",
    "TopicAlreadyExistsError",
    "InvalidTopicNameError",
    "NotLeaderError",
    "ServerCatchingUpError",
    "AccessDeniedError",
    "InvalidFrameError",
    "ServerError",
    "ConfigError",
    "DeliveryError",
    "validate_topic_name",
    # Config
    "ClientConfig",
    "ProducerConfig",
    "StandaloneConfig",
    "ReconnectConfig",
    "SeekPosition",
    "TopicInfo",
    "RetentionInfo",
    # Client
    "LanceClient",
    # Producer
    "Producer",
    # Consumer
    "StandaloneConsumer",
    "PollResult",
    # Offset persistence
    "OffsetStore",
    "FileOffsetStore",
    "MemoryOffsetStore",
]
