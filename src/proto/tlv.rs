//! TLV records: `type u8 | length u32 LE | value[length]`, packed back to back with no
//! padding (docs/protocol.md §7.6).
//!
//! The server never parses records on ingest, but it stores payloads verbatim and, after
//! a crash, truncates an active segment at the first record whose length runs past the
//! end of the file (docs/protocol.md §7.7). Every ingest payload this crate builds is therefore
//! a sequence of complete records.
//!
//! Type bytes follow the published specification and the Python client (the upstream
//! Rust client and the server's recovery code use other tables; see [`RecordType`]).

use std::fmt;

use super::TlvError;

/// Bytes before every record value: the type and the u32 LE length.
pub const TLV_HEADER_LEN: usize = 5;
/// Largest record value: what one frame can carry after the 5-byte record header
/// (16 MiB − 5 = 16 777 211 bytes). The server refuses larger frames, so no stored record
/// can be longer, and a declared length over this marks a damaged stream.
pub const MAX_VALUE_LEN: usize = super::header::MAX_PAYLOAD_LEN as usize - TLV_HEADER_LEN;

/// A record type byte: an open newtype, unknown values are kept.
///
/// | byte | type | value layout |
/// |---|---|---|
/// | 0x01 | RawData | bytes |
/// | 0x02 | JSON | UTF-8 JSON |
/// | 0x03 | MessagePack | bytes |
/// | 0x04 | Protobuf | bytes |
/// | 0x05 | Avro | bytes |
/// | 0x10 | KeyValue | `key_len u16 LE · key · value` |
/// | 0x11 | Timestamped | `timestamp_ns u64 LE · value` |
/// | 0x12 | KeyTimestamped | `timestamp_ns u64 LE · key_len u16 LE · key · value` |
/// | 0x80–0xFD | user-defined | yours |
/// | 0xFE | compressed batch (this crate) | see [`crate::proto::compress`] |
/// | 0xFF | Null | empty |
///
/// **Avoid `Null` (0xFF) on a released server**: its crash recovery reads type 0xFF as a
/// 7-byte *extended* header (`FF · ext_type u16 · len u32`), so a 5-byte Null record in
/// an active segment makes recovery misread the length and may truncate acknowledged
/// data after an unclean restart (docs/protocol.md §7.6–7.7). Use a type of your own, or a
/// zero-length RawData, as a tombstone instead.
///
/// ```
/// use lnc_uring::proto::RecordType;
///
/// assert_eq!(format!("{:?}", RecordType::KEY_VALUE), "KeyValue(0x10)");
/// assert_eq!(format!("{:?}", RecordType(0x90)), "UserDefined(0x90)");
/// assert!(RecordType(0x90).is_user_defined());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordType(pub u8);

impl RecordType {
    /// 0x01 raw bytes; what the upstream tools write.
    pub const RAW_DATA: RecordType = RecordType(0x01);
    /// 0x02 JSON text.
    pub const JSON: RecordType = RecordType(0x02);
    /// 0x03 MessagePack.
    pub const MSGPACK: RecordType = RecordType(0x03);
    /// 0x04 Protocol Buffers.
    pub const PROTOBUF: RecordType = RecordType(0x04);
    /// 0x05 Avro.
    pub const AVRO: RecordType = RecordType(0x05);
    /// 0x10 key and value.
    pub const KEY_VALUE: RecordType = RecordType(0x10);
    /// 0x11 timestamp and value.
    pub const TIMESTAMPED: RecordType = RecordType(0x11);
    /// 0x12 timestamp, key and value.
    pub const KEY_TIMESTAMPED: RecordType = RecordType(0x12);
    /// 0xFE an LZ4 compressed batch of records (this crate's user-defined type).
    pub const COMPRESSED_BATCH: RecordType = RecordType(0xFE);
    /// 0xFF empty record. See the warning on [`RecordType`].
    pub const NULL: RecordType = RecordType(0xFF);

    /// Whether this is in the user-defined range 0x80–0xFE.
    pub fn is_user_defined(self) -> bool {
        (0x80..=0xFE).contains(&self.0)
    }

    /// The type's name.
    pub fn name(self) -> &'static str {
        match self {
            RecordType::RAW_DATA => "RawData",
            RecordType::JSON => "Json",
            RecordType::MSGPACK => "MessagePack",
            RecordType::PROTOBUF => "Protobuf",
            RecordType::AVRO => "Avro",
            RecordType::KEY_VALUE => "KeyValue",
            RecordType::TIMESTAMPED => "Timestamped",
            RecordType::KEY_TIMESTAMPED => "KeyTimestamped",
            RecordType::COMPRESSED_BATCH => "CompressedBatch",
            RecordType::NULL => "Null",
            t if t.is_user_defined() => "UserDefined",
            _ => "Unknown",
        }
    }
}

impl fmt::Debug for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({:#04x})", self.name(), self.0)
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One record, borrowing its value.
///
/// ```
/// use lnc_uring::proto::{Record, RecordType};
///
/// let r = Record::new(RecordType::RAW_DATA, b"hello");
/// assert_eq!(r.encoded_len(), 10);
/// let mut out = Vec::new();
/// r.encode(&mut out).unwrap();
/// assert_eq!(out, b"\x01\x05\x00\x00\x00hello");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Record<'a> {
    /// The type byte.
    pub record_type: RecordType,
    /// The value.
    pub value: &'a [u8],
}

impl<'a> Record<'a> {
    /// A record.
    pub fn new(record_type: RecordType, value: &'a [u8]) -> Record<'a> {
        Record { record_type, value }
    }

    /// Bytes on the wire: 5 + value length.
    pub fn encoded_len(&self) -> usize {
        TLV_HEADER_LEN + self.value.len()
    }

    /// Appends the record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), TlvError> {
        encode_record(out, self.record_type, &[self.value])
    }

    /// The value as UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value).ok()
    }

    /// Splits a KeyValue value into `(key, value)`.
    ///
    /// ```
    /// use lnc_uring::proto::{encode_key_value, RecordIter};
    ///
    /// let mut buf = Vec::new();
    /// encode_key_value(&mut buf, b"mykey", b"myvalue").unwrap();
    /// let rec = RecordIter::new(&buf).next().unwrap().unwrap();
    /// assert_eq!(rec.as_key_value().unwrap(), (&b"mykey"[..], &b"myvalue"[..]));
    /// ```
    pub fn as_key_value(&self) -> Result<(&'a [u8], &'a [u8]), TlvError> {
        split_key(self.value, "KeyValue")
    }

    /// Splits a Timestamped value into `(timestamp_ns, value)`.
    pub fn as_timestamped(&self) -> Result<(u64, &'a [u8]), TlvError> {
        split_timestamp(self.value, "Timestamped")
    }

    /// Splits a KeyTimestamped value into `(timestamp_ns, key, value)`.
    pub fn as_key_timestamped(&self) -> Result<(u64, &'a [u8], &'a [u8]), TlvError> {
        let (ts, rest) = split_timestamp(self.value, "KeyTimestamped")?;
        let (key, value) = split_key(rest, "KeyTimestamped")?;
        Ok((ts, key, value))
    }
}

fn split_timestamp<'a>(v: &'a [u8], kind: &'static str) -> Result<(u64, &'a [u8]), TlvError> {
    let Some((ts, rest)) = v.split_first_chunk::<8>() else {
        return Err(TlvError::Malformed {
            kind,
            reason: "value shorter than its 8-byte timestamp",
        });
    };
    Ok((u64::from_le_bytes(*ts), rest))
}

fn split_key<'a>(v: &'a [u8], kind: &'static str) -> Result<(&'a [u8], &'a [u8]), TlvError> {
    let Some((len, rest)) = v.split_first_chunk::<2>() else {
        return Err(TlvError::Malformed {
            kind,
            reason: "value shorter than its 2-byte key length",
        });
    };
    let len = u16::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(TlvError::Malformed {
            kind,
            reason: "key length runs past the value",
        });
    }
    Ok(rest.split_at(len))
}

/// Appends one record whose value is the concatenation of `parts` (gathered, so typed
/// records need no temporary buffer). Fails, leaving `out` unchanged, when the value is
/// over [`MAX_VALUE_LEN`].
pub fn encode_record(out: &mut Vec<u8>, ty: RecordType, parts: &[&[u8]]) -> Result<(), TlvError> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > MAX_VALUE_LEN {
        return Err(TlvError::ValueTooLarge {
            offset: out.len(),
            length: len,
            max: MAX_VALUE_LEN,
        });
    }
    out.reserve(TLV_HEADER_LEN + len);
    out.push(ty.0);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    Ok(())
}

/// Appends a RawData (0x01) record.
pub fn encode_raw(out: &mut Vec<u8>, value: &[u8]) -> Result<(), TlvError> {
    encode_record(out, RecordType::RAW_DATA, &[value])
}

fn key_len(key: &[u8]) -> Result<[u8; 2], TlvError> {
    u16::try_from(key.len())
        .map(u16::to_le_bytes)
        .map_err(|_| TlvError::Malformed {
            kind: "KeyValue",
            reason: "key longer than 65535 bytes",
        })
}

/// Appends a KeyValue (0x10) record: `key_len u16 · key · value`.
pub fn encode_key_value(out: &mut Vec<u8>, key: &[u8], value: &[u8]) -> Result<(), TlvError> {
    encode_record(out, RecordType::KEY_VALUE, &[&key_len(key)?, key, value])
}

/// Appends a Timestamped (0x11) record: `timestamp_ns u64 · value`.
pub fn encode_timestamped(
    out: &mut Vec<u8>,
    timestamp_ns: u64,
    value: &[u8],
) -> Result<(), TlvError> {
    encode_record(
        out,
        RecordType::TIMESTAMPED,
        &[&timestamp_ns.to_le_bytes(), value],
    )
}

/// Appends a KeyTimestamped (0x12) record: `timestamp_ns u64 · key_len u16 · key · value`.
pub fn encode_key_timestamped(
    out: &mut Vec<u8>,
    timestamp_ns: u64,
    key: &[u8],
    value: &[u8],
) -> Result<(), TlvError> {
    encode_record(
        out,
        RecordType::KEY_TIMESTAMPED,
        &[&timestamp_ns.to_le_bytes(), &key_len(key)?, key, value],
    )
}

/// Appends a Null (0xFF) record. See the recovery warning on [`RecordType`].
pub fn encode_null(out: &mut Vec<u8>) {
    out.extend_from_slice(&[RecordType::NULL.0, 0, 0, 0, 0]);
}

/// Zero-copy iterator over the records of a byte range.
///
/// Yields `Err(TlvError::Incomplete)` (once, then ends) when the range ends inside a
/// record, as a fetch cut does: the tail is reported, never dropped silently.
/// [`RecordIter::offset`] is always the record boundary after the last record yielded.
///
/// ```
/// use lnc_uring::proto::{encode_raw, RecordIter, TlvError};
///
/// let mut buf = Vec::new();
/// encode_raw(&mut buf, b"hello").unwrap();
/// encode_raw(&mut buf, b"world").unwrap();
/// let cut = &buf[..buf.len() - 1];
///
/// let mut it = RecordIter::new(cut);
/// assert_eq!(it.next().unwrap().unwrap().value, b"hello");
/// assert_eq!(
///     it.next().unwrap(),
///     Err(TlvError::Incomplete { offset: 10, needed: 10, available: 9 })
/// );
/// assert!(it.next().is_none());
/// assert_eq!(it.offset(), 10); // carry cut[10..] over to the next fetch
/// ```
#[derive(Clone, Debug)]
pub struct RecordIter<'a> {
    data: &'a [u8],
    pos: usize,
    max_value: usize,
    done: bool,
}

impl<'a> RecordIter<'a> {
    /// Iterates `data` with the default 16 MiB value limit.
    pub fn new(data: &'a [u8]) -> RecordIter<'a> {
        RecordIter::with_max_value(data, MAX_VALUE_LEN)
    }

    /// Iterates `data` with a custom value limit.
    pub fn with_max_value(data: &'a [u8], max_value: usize) -> RecordIter<'a> {
        RecordIter {
            data,
            pos: 0,
            max_value,
            done: false,
        }
    }

    /// Offset of the next record: the end of the last complete record yielded.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// The bytes not yet consumed (an incomplete tail after the iterator ends).
    pub fn remainder(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, TlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match parse_one(&self.data[self.pos..], self.pos, self.max_value) {
            Ok(None) => {
                self.done = true;
                None
            }
            Ok(Some((record, len))) => {
                self.pos += len;
                Some(Ok(record))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Parses the record at the start of `rest`; `at` is its offset for error reports.
/// `Ok(None)` at the end of the data.
fn parse_one(
    rest: &[u8],
    at: usize,
    max_value: usize,
) -> Result<Option<(Record<'_>, usize)>, TlvError> {
    if rest.is_empty() {
        return Ok(None);
    }
    let Some(head) = rest.first_chunk::<TLV_HEADER_LEN>() else {
        return Err(TlvError::Incomplete {
            offset: at,
            needed: TLV_HEADER_LEN,
            available: rest.len(),
        });
    };
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > max_value {
        return Err(TlvError::ValueTooLarge {
            offset: at,
            length: len,
            max: max_value,
        });
    }
    let total = TLV_HEADER_LEN + len;
    if rest.len() < total {
        return Err(TlvError::Incomplete {
            offset: at,
            needed: total,
            available: rest.len(),
        });
    }
    Ok(Some((
        Record {
            record_type: RecordType(head[0]),
            value: &rest[TLV_HEADER_LEN..total],
        },
        total,
    )))
}

/// Scans `data` for the longest prefix made of complete records. Returns that prefix's
/// length and its record count; the bytes after it are an incomplete tail to carry over.
/// Fails only on a record over `max_value` (the stream is then unreadable from here).
///
/// ```
/// use lnc_uring::proto::{complete_prefix, encode_raw, MAX_VALUE_LEN};
///
/// let mut buf = Vec::new();
/// encode_raw(&mut buf, b"ab").unwrap();
/// encode_raw(&mut buf, b"cde").unwrap();
/// assert_eq!(complete_prefix(&buf[..10], MAX_VALUE_LEN).unwrap(), (7, 1));
/// assert_eq!(complete_prefix(&buf, MAX_VALUE_LEN).unwrap(), (15, 2));
/// ```
pub fn complete_prefix(data: &[u8], max_value: usize) -> Result<(usize, usize), TlvError> {
    let mut pos = 0;
    let mut count = 0;
    loop {
        match parse_one(&data[pos..], pos, max_value) {
            Ok(Some((_, len))) => {
                pos += len;
                count += 1;
            }
            Ok(None) | Err(TlvError::Incomplete { .. }) => return Ok((pos, count)),
            Err(e) => return Err(e),
        }
    }
}
