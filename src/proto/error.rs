//! Errors of the sans-IO protocol core. Each converts into [`crate::Error`].

use thiserror::Error;

/// A byte sequence that is not a valid LWP frame. The server reacts to every one of
/// these by closing the connection without an error frame (docs/protocol.md §2.4); the client
/// does the same.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than a header (or than the declared frame) are available.
    #[error("buffer too small: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes required.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The first four bytes are not `LANC`.
    #[error("invalid magic {found:02x?} (expected \"LANC\")")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The version byte is not 1.
    #[error("unsupported protocol version {found}")]
    BadVersion {
        /// The version byte found.
        found: u8,
    },
    /// The header CRC (bytes 8..12) does not match bytes 0..8.
    #[error("header CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderCrc {
        /// The CRC in the frame.
        stored: u32,
        /// The CRC computed over bytes 0..8.
        computed: u32,
    },
    /// `payload_length` exceeds the limit (16 MiB by default). Rejected as soon as the
    /// 44 header bytes are present, before anything is allocated for the payload.
    #[error("payload length {length} exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// Declared payload length.
        length: u32,
        /// The configured maximum.
        max: u32,
    },
    /// The payload CRC does not match the payload.
    #[error("payload CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    PayloadCrc {
        /// The CRC in the header.
        stored: u32,
        /// The CRC computed over the payload.
        computed: u32,
    },
}

/// A TLV record stream that cannot be parsed or built.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlvError {
    /// The data ends inside a record: `available` of its `needed` bytes are present,
    /// starting at `offset`. A fetch cut the record in half; the rest arrives with the
    /// next fetch. Nothing is dropped: the bytes from `offset` on are the tail to carry.
    #[error("incomplete record at offset {offset}: need {needed} bytes, have {available}")]
    Incomplete {
        /// Offset of the incomplete record's first byte.
        offset: usize,
        /// Bytes the whole record needs (5 while the header itself is cut).
        needed: usize,
        /// Bytes present from `offset` to the end.
        available: usize,
    },
    /// A record declares a value longer than the limit (16 MiB by default).
    #[error("record at offset {offset} declares {length} bytes, over the limit of {max}")]
    ValueTooLarge {
        /// Offset of the record.
        offset: usize,
        /// Declared length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// A record's value does not have the layout its type requires (for example a
    /// key-value record whose key length runs past its value).
    #[error("malformed {kind} record: {reason}")]
    Malformed {
        /// The record type's name.
        kind: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A compressed batch record could not be expanded.
    #[error("compressed batch at offset {offset}: {reason}")]
    Compression {
        /// Offset of the compressed batch record.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

/// A control payload (request or response) with the wrong shape.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadError {
    /// The payload is shorter than the command needs.
    #[error("{what} payload is {actual} bytes, needs at least {needed}")]
    TooShort {
        /// The payload's name.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        actual: usize,
    },
    /// A field is inconsistent with the payload (a length past the end, bad UTF-8, …).
    #[error("invalid {what} payload: {reason}")]
    Invalid {
        /// The payload's name.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A JSON reply that does not have the expected keys or types.
    #[error("invalid {what} JSON: {reason}")]
    Json {
        /// The reply's name.
        what: &'static str,
        /// serde_json's message.
        reason: String,
    },
    /// The frame is not the reply the request expects.
    #[error("unexpected reply to {request}: {got}")]
    Unexpected {
        /// The request's name.
        request: &'static str,
        /// What arrived instead.
        got: String,
    },
}
