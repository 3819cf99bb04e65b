"""Wire constants and the 44-byte frame header, as exported by the seed client.

:class:`LwpHeader` encodes and decodes through the Rust core's ``proto`` module. The
checksum is IEEE CRC-32 (what every released server computes), not the CRC-32C the
published specification names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

from lnc_uring import _native

MAGIC = b"LANC"
PROTOCOL_VERSION = 1
HEADER_SIZE = 44
DEFAULT_PORT = 1992
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_TIMEOUT_S = 30
MAX_RECORD_SIZE = 16 * 1024 * 1024


class Flag(IntFlag):
    """Header flag bits."""

    COMPRESSED = 0x01
    ENCRYPTED = 0x02
    BATCH_MODE = 0x04
    ACK = 0x08
    BACKPRESSURE = 0x10
    KEEPALIVE = 0x20
    CONTROL = 0x40


class ControlCommand(IntEnum):
    """Control command codes (carried in the header's batch_id)."""

    CREATE_TOPIC = 0x01
    DELETE_TOPIC = 0x02
    LIST_TOPICS = 0x03
    GET_TOPIC = 0x04
    SET_RETENTION = 0x05
    CREATE_TOPIC_WITH_RETENTION = 0x06
    GET_CLUSTER_STATUS = 0x07
    AUTHENTICATE = 0x08
    AUTHENTICATE_RESPONSE = 0x09
    FETCH = 0x10
    FETCH_RESPONSE = 0x11
    CATCHING_UP = 0x12
    SUBSCRIBE = 0x20
    UNSUBSCRIBE = 0x21
    COMMIT_OFFSET = 0x22
    SUBSCRIBE_ACK = 0x23
    COMMIT_ACK = 0x24
    TOPIC_RESPONSE = 0x80
    CLUSTER_STATUS_RESPONSE = 0x81
    ERROR_RESPONSE = 0xFF


@dataclass(slots=True)
class LwpHeader:
    """A frame header."""

    version: int = PROTOCOL_VERSION
    flags: int = 0
    header_crc: int = 0
    batch_id: int = 0
    timestamp_ns: int = 0
    record_count: int = 0
    payload_length: int = 0
    payload_crc: int = 0
    topic_id: int = 0

    @property
    def is_ack(self) -> bool:
        return bool(self.flags & Flag.ACK)

    @property
    def is_keepalive(self) -> bool:
        return bool(self.flags & Flag.KEEPALIVE)

    @property
    def is_backpressure(self) -> bool:
        return bool(self.flags & Flag.BACKPRESSURE)

    @property
    def is_control(self) -> bool:
        return bool(self.flags & Flag.CONTROL)

    @property
    def is_batch(self) -> bool:
        return bool(self.flags & Flag.BATCH_MODE)

    @property
    def is_compressed(self) -> bool:
        return bool(self.flags & Flag.COMPRESSED)

    @property
    def command(self) -> ControlCommand | None:
        """The control command of a control frame (low byte of ``batch_id``)."""
        if not self.is_control:
            return None
        try:
            return ControlCommand(self.batch_id & 0xFF)
        except ValueError:
            return None

    def encode(self) -> bytes:
        """The 44 header bytes, with the header CRC computed."""
        return _native.encode_header(
            self.flags,
            self.batch_id,
            self.timestamp_ns,
            self.record_count,
            self.payload_length,
            self.payload_crc,
            self.topic_id,
        )

    @classmethod
    def decode(cls, buf: bytes | bytearray | memoryview) -> LwpHeader:
        """Parses and validates 44 header bytes.

        Raises :class:`~lnc_uring.InvalidFrameError` on a short buffer, bad magic, bad
        version or header CRC mismatch.
        """
        from lnc_uring.errors import InvalidFrameError

        try:
            fields = _native.decode_header(buf)
        except ValueError as e:
            raise InvalidFrameError(str(e)) from None
        return cls(*fields)


__all__ = [
    "MAGIC",
    "PROTOCOL_VERSION",
    "HEADER_SIZE",
    "DEFAULT_PORT",
    "Flag",
    "ControlCommand",
    "LwpHeader",
]
