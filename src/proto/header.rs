//! The 44-byte LWP frame header (docs/protocol.md §2).
//!
//! ```text
//!  0       4   5   6       8          12                 20                 28
//!  +-------+---+---+-------+----------+------------------+------------------+
//!  | magic |ver|flg| rsvd  |header_crc|     batch_id     |   timestamp_ns   |
//!  +-------+---+---+-------+----------+------------------+------------------+
//!  28            32              36             40            44
//!  +-------------+---------------+--------------+-------------+
//!  | record_count| payload_length|  payload_crc |  topic_id   |
//!  +-------------+---------------+--------------+-------------+
//! ```
//!
//! All integers are little-endian. The header CRC covers bytes `0..8` only, so the
//! batch id, lengths and topic are protected by nothing (docs/protocol.md §2.3).

use std::fmt;

use super::checksum::Checksum;
use super::FrameError;

/// Size of every LWP header.
pub const HEADER_LEN: usize = 44;
/// `LANC`, the first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"LANC";
/// The only protocol version the server accepts.
pub const PROTOCOL_VERSION: u8 = 1;
/// The server's default (and the client's) limit on `payload_length`: 16 MiB, inclusive
/// (docs/protocol.md §2.4). A larger frame makes the server close the connection.
pub const MAX_PAYLOAD_LEN: u32 = 16 * 1024 * 1024;
/// The default port of a Lance server.
pub const DEFAULT_PORT: u16 = 1992;

/// Byte offsets of the header fields.
pub mod offset {
    /// `magic` (4 bytes).
    pub const MAGIC: usize = 0;
    /// `version` (1 byte).
    pub const VERSION: usize = 4;
    /// `flags` (1 byte).
    pub const FLAGS: usize = 5;
    /// `reserved` (2 bytes, written as zero, covered by the header CRC, never validated).
    pub const RESERVED: usize = 6;
    /// `header_crc` (u32): CRC of bytes `0..8`.
    pub const HEADER_CRC: usize = 8;
    /// `batch_id` (u64). The command code in control frames.
    pub const BATCH_ID: usize = 12;
    /// `timestamp_ns` (u64).
    pub const TIMESTAMP_NS: usize = 20;
    /// `record_count` (u32).
    pub const RECORD_COUNT: usize = 28;
    /// `payload_length` (u32).
    pub const PAYLOAD_LENGTH: usize = 32;
    /// `payload_crc` (u32): CRC of the payload, 0 when there is none.
    pub const PAYLOAD_CRC: usize = 36;
    /// `topic_id` (u32). The published spec calls it padding; it is not.
    pub const TOPIC_ID: usize = 40;
}

/// The header's flag byte: an open bit set (docs/protocol.md §3.1). Unknown bits are kept.
///
/// ```
/// use lnc_uring::proto::Flags;
///
/// let f = Flags::BATCH | Flags::COMPRESSED;
/// assert_eq!(f.bits(), 0x05);
/// assert!(f.is_batch() && f.is_compressed());
/// assert!(!f.is_ack() && !f.is_keepalive() && !f.is_control());
/// assert_eq!(format!("{:?}", Flags::from_bits(0x84)), "Flags(BATCH | 0x80)");
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    /// No flag set.
    pub const NONE: Flags = Flags(0);
    /// 0x01: payload compressed. **Ignored by the server**, which stores the bytes as
    /// sent; never set it (see [`crate::proto::compress`] for what to do instead).
    pub const COMPRESSED: Flags = Flags(0x01);
    /// 0x02: encrypted. Ignored by the server.
    pub const ENCRYPTED: Flags = Flags(0x02);
    /// 0x04: batch mode; marks an ingest frame.
    pub const BATCH: Flags = Flags(0x04);
    /// 0x08: an ingest ACK (also the reply to Unsubscribe).
    pub const ACK: Flags = Flags(0x08);
    /// 0x10: backpressure. Defined, never sent by the released server.
    pub const BACKPRESSURE: Flags = Flags(0x10);
    /// 0x20: keepalive; the server echoes it.
    pub const KEEPALIVE: Flags = Flags(0x20);
    /// 0x40: control frame; the command code is in `batch_id`.
    pub const CONTROL: Flags = Flags(0x40);

    const NAMES: [(Flags, &'static str); 7] = [
        (Flags::COMPRESSED, "COMPRESSED"),
        (Flags::ENCRYPTED, "ENCRYPTED"),
        (Flags::BATCH, "BATCH"),
        (Flags::ACK, "ACK"),
        (Flags::BACKPRESSURE, "BACKPRESSURE"),
        (Flags::KEEPALIVE, "KEEPALIVE"),
        (Flags::CONTROL, "CONTROL"),
    ];

    /// Wraps a raw flag byte; every bit pattern is accepted.
    pub const fn from_bits(bits: u8) -> Flags {
        Flags(bits)
    }
    /// The raw flag byte.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// 0x01 set.
    pub const fn is_compressed(self) -> bool {
        self.contains(Flags::COMPRESSED)
    }
    /// 0x04 set.
    pub const fn is_batch(self) -> bool {
        self.contains(Flags::BATCH)
    }
    /// 0x08 set.
    pub const fn is_ack(self) -> bool {
        self.contains(Flags::ACK)
    }
    /// 0x10 set.
    pub const fn is_backpressure(self) -> bool {
        self.contains(Flags::BACKPRESSURE)
    }
    /// 0x20 set.
    pub const fn is_keepalive(self) -> bool {
        self.contains(Flags::KEEPALIVE)
    }
    /// 0x40 set.
    pub const fn is_control(self) -> bool {
        self.contains(Flags::CONTROL)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Flags(")?;
        let mut rest = self.0;
        let mut first = true;
        for (flag, name) in Flags::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                rest &= !flag.0;
                first = false;
            }
        }
        if rest != 0 || first {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "{rest:#04x}")?;
        }
        f.write_str(")")
    }
}

/// A decoded or to-be-encoded LWP header. The magic, version and header CRC are not
/// stored: they are constant or derived.
///
/// ```
/// use lnc_uring::proto::{Checksum, Flags, Header, HEADER_LEN};
///
/// let h = Header {
///     flags: Flags::BATCH,
///     batch_id: 42,
///     timestamp_ns: 1_234_567_890,
///     record_count: 10,
///     payload_length: 4096,
///     payload_crc: 0xDEAD_BEEF,
///     topic_id: 3,
/// };
/// let mut buf = [0u8; HEADER_LEN];
/// h.encode(Checksum::Ieee, &mut buf);
/// assert_eq!(&buf[..4], b"LANC");
/// assert_eq!(Header::decode(&buf, Checksum::Ieee).unwrap(), h);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Header {
    /// The flag byte.
    pub flags: Flags,
    /// Ingest: the client's batch id. ACK: the acknowledged id. Control: the command or
    /// response code (only its low byte is read by the server).
    pub batch_id: u64,
    /// Client-chosen nanoseconds since the epoch on ingest; 0 from the server.
    pub timestamp_ns: u64,
    /// Number of records in an ingest payload (metrics only on the server).
    pub record_count: u32,
    /// Bytes of payload following the header.
    pub payload_length: u32,
    /// CRC of the payload, 0 when `payload_length` is 0.
    pub payload_crc: u32,
    /// Ingest target topic; 0 in every frame the server sends.
    pub topic_id: u32,
}

impl Header {
    /// The CRC stored at offset 8: the checksum of `LANC`, version 1, `flags`, reserved 0.
    ///
    /// ```
    /// use lnc_uring::proto::{Checksum, Flags, Header};
    /// // docs/protocol.md §2.3: the keepalive header CRC is 0x539C1E06 (bytes 06 1E 9C 53).
    /// assert_eq!(Header::header_crc(Checksum::Ieee, Flags::KEEPALIVE), 0x539C_1E06);
    /// ```
    pub fn header_crc(checksum: Checksum, flags: Flags) -> u32 {
        checksum.compute(&Self::prefix(flags))
    }

    fn prefix(flags: Flags) -> [u8; 8] {
        [
            MAGIC[0],
            MAGIC[1],
            MAGIC[2],
            MAGIC[3],
            PROTOCOL_VERSION,
            flags.bits(),
            0,
            0,
        ]
    }

    /// Writes the 44 header bytes into `out`, computing the header CRC with `checksum`.
    /// `payload_crc` is written as stored; see [`crate::proto::encode_frame`] to have it
    /// computed.
    pub fn encode(&self, checksum: Checksum, out: &mut [u8; HEADER_LEN]) {
        let prefix = Self::prefix(self.flags);
        out[..8].copy_from_slice(&prefix);
        put_u32(out, offset::HEADER_CRC, checksum.compute(&prefix));
        put_u64(out, offset::BATCH_ID, self.batch_id);
        put_u64(out, offset::TIMESTAMP_NS, self.timestamp_ns);
        put_u32(out, offset::RECORD_COUNT, self.record_count);
        put_u32(out, offset::PAYLOAD_LENGTH, self.payload_length);
        put_u32(out, offset::PAYLOAD_CRC, self.payload_crc);
        put_u32(out, offset::TOPIC_ID, self.topic_id);
    }

    /// The header as a fresh 44-byte array.
    pub fn to_bytes(&self, checksum: Checksum) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        self.encode(checksum, &mut out);
        out
    }

    /// Decodes and validates a header from the start of `buf`, in the server's order
    /// (docs/protocol.md §2.4): length of the buffer, magic, version, header CRC. The payload
    /// length limit and the payload CRC are the frame decoder's business
    /// ([`crate::proto::FrameDecoder`]).
    ///
    /// ```
    /// use lnc_uring::proto::{Checksum, FrameError, Header};
    ///
    /// let mut bad = [0u8; 44];
    /// bad[..4].copy_from_slice(b"XYZW");
    /// assert!(matches!(Header::decode(&bad, Checksum::Ieee), Err(FrameError::BadMagic { .. })));
    /// assert!(matches!(
    ///     Header::decode(&[0u8; 10], Checksum::Ieee),
    ///     Err(FrameError::Truncated { needed: 44, available: 10 })
    /// ));
    /// ```
    pub fn decode(buf: &[u8], checksum: Checksum) -> Result<Header, FrameError> {
        let Some(b) = buf.first_chunk::<HEADER_LEN>() else {
            return Err(FrameError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        };
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        if b[offset::VERSION] != PROTOCOL_VERSION {
            return Err(FrameError::BadVersion {
                found: b[offset::VERSION],
            });
        }
        let stored = get_u32(b, offset::HEADER_CRC);
        let computed = checksum.compute(&b[..8]);
        if stored != computed {
            return Err(FrameError::HeaderCrc { stored, computed });
        }
        Ok(Header {
            flags: Flags::from_bits(b[offset::FLAGS]),
            batch_id: get_u64(b, offset::BATCH_ID),
            timestamp_ns: get_u64(b, offset::TIMESTAMP_NS),
            record_count: get_u32(b, offset::RECORD_COUNT),
            payload_length: get_u32(b, offset::PAYLOAD_LENGTH),
            payload_crc: get_u32(b, offset::PAYLOAD_CRC),
            topic_id: get_u32(b, offset::TOPIC_ID),
        })
    }

    /// Reads `payload_length` (offset 32) without validating anything else, as the
    /// server does before it looks at the magic (docs/protocol.md §2.4 row 1).
    pub fn peek_payload_length(buf: &[u8; HEADER_LEN]) -> u32 {
        get_u32(buf, offset::PAYLOAD_LENGTH)
    }
}

#[inline]
pub(crate) fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[inline]
pub(crate) fn put_u64(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[inline]
pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

#[inline]
pub(crate) fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[inline]
pub(crate) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
