//! The sans-IO protocol core: everything the Lance Wire Protocol needs except I/O.
//!
//! No sockets, no threads, no clocks, no `unsafe`: callers own every buffer. Written
//! from what the released server does (`docs/protocol.md` in this repository), which
//! differs from the published LWP specification in many places;
//! see the crate README's "Where the spec is wrong" table.
//!
//! * [`Header`], [`Flags`] — the 44-byte header.
//! * [`FrameDecoder`], [`Frame`], [`FrameKind`], [`encode_frame`], [`seal_frame`] — frames.
//! * [`Request`], [`Response`], [`ControlCode`] — control commands and replies.
//! * [`ServerError`] — classification of the server's plain-text errors.
//! * [`RecordIter`], [`encode_record`], [`RecordType`] — TLV records.
//! * [`compress_records`], [`ExpandedRecords`] — the LZ4 compressed-batch record.
//! * [`Checksum`] — IEEE CRC-32 (what servers compute) or CRC-32C.
#![forbid(unsafe_code)]

mod checksum;
pub mod compress;
mod control;
mod error;
mod frame;
mod header;
mod server_error;
mod tlv;

pub use checksum::Checksum;
pub use compress::{compress_records, decompress_batch, ExpandedRecords};
pub use control::{
    control_header, parse_deleted, parse_topic_list, ClusterStatus, CommitAck, ControlCode,
    FetchRequest, FetchResponse, Request, Response, Retention, RetentionSet, SubscribeAck,
    SubscribeRequest, TopicInfo,
};
pub use error::{FrameError, PayloadError, TlvError};
pub use frame::{
    ack_frame, encode_frame, ingest_header, keepalive_frame, seal_frame, Detached, Frame,
    FrameDecoder, FrameKind, Frames, Item,
};
pub use header::{
    offset, Flags, Header, DEFAULT_PORT, HEADER_LEN, MAGIC, MAX_PAYLOAD_LEN, PROTOCOL_VERSION,
};
pub use server_error::{ServerError, ServerErrorKind};
pub use tlv::{
    complete_prefix, encode_key_timestamped, encode_key_value, encode_null, encode_raw,
    encode_record, encode_timestamped, Record, RecordIter, RecordType, MAX_VALUE_LEN,
    TLV_HEADER_LEN,
};

/// Validates a topic name as the server does: non-empty, only `[A-Za-z0-9-]`
/// (docs/protocol.md §6.4). The server sets no length limit, but the name becomes a directory
/// name, so more than 255 bytes fails there; this check rejects it up front.
///
/// ```
/// use lnc_uring::proto::validate_topic_name;
///
/// assert!(validate_topic_name("orders-2024").is_ok());
/// assert!(validate_topic_name("").is_err());
/// assert!(validate_topic_name("a_b").is_err());
/// ```
pub fn validate_topic_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("topic name must not be empty");
    }
    if name.len() > 255 {
        return Err("topic name is longer than 255 bytes");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err("topic names may contain only A-Z, a-z, 0-9 and '-'");
    }
    Ok(())
}
