//! One record to send, and how it is encoded into a batch.

use crate::proto::{
    encode_key_timestamped, encode_key_value, encode_record, encode_timestamped, RecordType,
    TlvError, MAX_PAYLOAD_LEN, TLV_HEADER_LEN,
};
use crate::Error;

/// One record to send: its type and value (typed layouts are encoded straight into the
/// batch, no temporary buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProduceRecord<'a> {
    /// RawData (0x01).
    Raw(&'a [u8]),
    /// Any type with an opaque value (JSON, MessagePack, user-defined, …).
    Typed(RecordType, &'a [u8]),
    /// KeyValue (0x10).
    KeyValue {
        /// Key, at most 65 535 bytes.
        key: &'a [u8],
        /// Value.
        value: &'a [u8],
    },
    /// Timestamped (0x11).
    Timestamped {
        /// Nanoseconds since the epoch.
        timestamp_ns: u64,
        /// Value.
        value: &'a [u8],
    },
    /// KeyTimestamped (0x12).
    KeyTimestamped {
        /// Nanoseconds since the epoch.
        timestamp_ns: u64,
        /// Key, at most 65 535 bytes.
        key: &'a [u8],
        /// Value.
        value: &'a [u8],
    },
}

impl ProduceRecord<'_> {
    #[inline]
    pub(crate) fn value_len(&self) -> usize {
        match *self {
            ProduceRecord::Raw(v) | ProduceRecord::Typed(_, v) => v.len(),
            ProduceRecord::KeyValue { key, value } => 2 + key.len() + value.len(),
            ProduceRecord::Timestamped { value, .. } => 8 + value.len(),
            ProduceRecord::KeyTimestamped { key, value, .. } => 10 + key.len() + value.len(),
        }
    }

    #[inline]
    pub(crate) fn encoded_len(&self) -> usize {
        TLV_HEADER_LEN + self.value_len()
    }

    /// Checks what encoding could reject, before anything is buffered: a record must
    /// fit one frame (5-byte header plus value at most 16 MiB, the server's limit), a key
    /// at most 65 535 bytes, and type 0xFE is reserved.
    #[inline]
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let size = self.encoded_len();
        if size > MAX_PAYLOAD_LEN as usize {
            return Err(Error::RecordTooLarge {
                size,
                max: MAX_PAYLOAD_LEN as usize,
            });
        }
        let key = match *self {
            ProduceRecord::Typed(t, _) if t == RecordType::COMPRESSED_BATCH => {
                return Err(Error::Config(
                    "record type 0xFE is reserved for compressed batches".into(),
                ))
            }
            ProduceRecord::KeyValue { key, .. } | ProduceRecord::KeyTimestamped { key, .. } => key,
            _ => return Ok(()),
        };
        if key.len() > u16::MAX as usize {
            return Err(Error::InvalidRecord(TlvError::Malformed {
                kind: "KeyValue",
                reason: "key longer than 65535 bytes",
            }));
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        if let ProduceRecord::Raw(v) = *self {
            // The common case, without the general encoder's checks (done by `validate`).
            out.push(RecordType::RAW_DATA.0);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
            return Ok(());
        }
        match *self {
            ProduceRecord::Raw(v) => encode_record(out, RecordType::RAW_DATA, &[v])?,
            ProduceRecord::Typed(t, v) => encode_record(out, t, &[v])?,
            ProduceRecord::KeyValue { key, value } => encode_key_value(out, key, value)?,
            ProduceRecord::Timestamped {
                timestamp_ns,
                value,
            } => encode_timestamped(out, timestamp_ns, value)?,
            ProduceRecord::KeyTimestamped {
                timestamp_ns,
                key,
                value,
            } => encode_key_timestamped(out, timestamp_ns, key, value)?,
        }
        Ok(())
    }
}
