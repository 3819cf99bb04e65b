"""TLV records: ``type u8 | length u32 LE | value``, packed back to back.

:class:`TlvRecord`, :func:`encode_records` and :func:`decode_records` are implemented
by the Rust core (``lnc_uring._native``); :class:`RecordType` names the type bytes.
"""

from __future__ import annotations

from enum import IntEnum

from lnc_uring._native import TlvRecord, decode_records, encode_records


class RecordType(IntEnum):
    """TLV record type bytes (the specification's table, which the seed used)."""

    RESERVED = 0x00
    RAW_DATA = 0x01
    JSON = 0x02
    MSGPACK = 0x03
    PROTOBUF = 0x04
    AVRO = 0x05
    KEY_VALUE = 0x10
    TIMESTAMPED = 0x11
    KEY_TIMESTAMPED = 0x12
    #: (lnc-uring) An LZ4 compressed batch of records, written by producers with
    #: ``compression=True`` and expanded by consumers. Not for your own records.
    COMPRESSED_BATCH = 0xFE
    #: Avoid on a released server: its crash recovery misreads type 0xFF and may
    #: truncate acknowledged data after an unclean restart. Use a zero-length RAW_DATA
    #: or a type of your own (0x80–0xFD) as a tombstone.
    NULL = 0xFF


__all__ = ["RecordType", "TlvRecord", "encode_records", "decode_records"]
