//! The crate's error type.

use std::io;
use std::sync::Arc;

use thiserror::Error;

use crate::proto::{FrameError, PayloadError, ServerError, ServerErrorKind, TlvError};

/// Shorthand for `Result<T, lnc_uring::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which local limit made a send fail with [`Error::Backpressure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BufferLimit {
    /// The producer's buffer-memory cap, in bytes.
    Memory {
        /// The configured cap.
        max_bytes: usize,
    },
    /// The in-flight window (batches sent and not yet acknowledged).
    InFlight {
        /// The configured window.
        max_batches: usize,
    },
    /// The server sent a Backpressure (0x10) frame (the released server never does).
    Server,
}

/// Everything that can go wrong, with the server's text kept wherever there is one.
///
/// `Clone`, because one failure is reported to every record of a batch.
///
/// ```
/// use lnc_uring::{Error, proto::ServerError};
///
/// let e = Error::from(ServerError::classify("Unknown topic"));
/// assert!(matches!(e, Error::TopicNotFound { .. }));
/// assert!(!e.is_retryable());
/// assert!(Error::from(ServerError::classify("FORWARD_FAILED: Leader address unknown")).is_retryable());
/// ```
#[derive(Clone, Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// No connection could be made to any address of the server.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address as given.
        addr: String,
        /// The last connect error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The server closed the connection (or it was reset).
    #[error("connection closed by the server")]
    ConnectionClosed,
    /// Another I/O failure.
    #[error("I/O error: {0}")]
    Io(#[source] Arc<io::Error>),
    /// A deadline passed: connect, request, delivery or flush.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A local buffer is full (the policy was to fail, or blocking timed out).
    #[error("buffer full: {0:?}")]
    Backpressure(BufferLimit),
    /// The topic does not exist (`Unknown topic`, `Topic … not found`).
    #[error("topic not found: {message}")]
    TopicNotFound {
        /// The server's text (or the name that did not resolve).
        message: String,
    },
    /// A topic name the server would refuse (`[A-Za-z0-9-]+`).
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Ingest was rejected because the connection is not authenticated, or a token was
    /// refused.
    #[error("authentication failed: {message}")]
    Authentication {
        /// The server's text.
        message: String,
    },
    /// Any other ErrorResponse, classified; see [`ServerError`].
    #[error("server error: {0}")]
    Server(ServerError),
    /// A fetch asked for an offset past the end of the log.
    #[error("offset is past the end of the log (server size {server_offset})")]
    CatchingUp {
        /// The server's current size of the topic.
        server_offset: u64,
    },
    /// Bytes from the network that are not a valid frame. The connection is closed.
    #[error("invalid frame: {0}")]
    InvalidFrame(#[from] FrameError),
    /// Records that cannot be parsed or built.
    #[error("invalid record: {0}")]
    InvalidRecord(#[from] TlvError),
    /// Valid frames at the wrong time (an unsolicited reply, a reply of the wrong
    /// kind). The connection is reset.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A reply with the wrong shape.
    #[error("invalid reply: {0}")]
    InvalidResponse(#[from] PayloadError),
    /// A record larger than a frame can carry: its encoded size (5-byte header plus
    /// value) is over 16 MiB.
    #[error("record of {size} encoded bytes exceeds the limit of {max}")]
    RecordTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The handle has been closed (or the record was still unsent when it closed).
    #[error("the client is closed")]
    Closed,
    /// The handle's driver thread stopped (its I/O backend failed, or it panicked):
    /// nothing more can be sent or received on this handle.
    #[error("the driver thread stopped: {reason}")]
    Stopped {
        /// What stopped it.
        reason: String,
    },
    /// Records accepted before a `flush` or `close` failed: how many, and the first
    /// failure. Each record's ticket has its own outcome.
    #[error("{failed} record(s) were not delivered; first failure: {first}")]
    DeliveryFailed {
        /// Records that failed.
        failed: u64,
        /// The first failure among them.
        first: Box<Error>,
    },
    /// A batch was sent (perhaps several times) and never acknowledged, then given up:
    /// the server may or may not have stored it.
    #[error("outcome unknown after {attempts} send(s): {cause}")]
    OutcomeUnknown {
        /// Times the batch was written to a connection.
        attempts: u32,
        /// Why it was given up (delivery timeout, retry limit, close, …).
        cause: Box<Error>,
    },
    /// The server did not answer for the peer timeout while a reply was awaited; the
    /// connection was dropped (the server itself closed nothing).
    #[error("no reply from the server for {silent:?}; the connection was dropped")]
    PeerTimeout {
        /// How long nothing arrived.
        silent: std::time::Duration,
    },
    /// This client dropped the connection because the server sent something it cannot
    /// use (an invalid frame, an unexpected reply); requests on it may be retried.
    #[error("dropped the connection: {reason}")]
    ConnectionDropped {
        /// What was wrong.
        reason: String,
    },
    /// No connection to the server could be kept up (what a full buffer means when the
    /// server is down).
    #[error("the server is unreachable: {last_error}")]
    Unreachable {
        /// The last connection error.
        last_error: String,
    },
    /// Fetched data that cannot be records: at `offset` (a byte offset of the topic), a
    /// record header declares a length no frame can carry. The records before it were
    /// delivered; see [`crate::StandaloneConsumer::skip_bad_record`].
    #[error("damaged record at offset {offset}: {reason}")]
    CorruptRecord {
        /// Log offset of the record header.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Configuration that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether trying again later (perhaps after reconnecting) can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::ConnectionClosed
            | Error::Io(_)
            | Error::Timeout(_)
            | Error::Backpressure(_)
            | Error::PeerTimeout { .. }
            | Error::ConnectionDropped { .. }
            | Error::Unreachable { .. }
            | Error::CatchingUp { .. } => true,
            Error::Server(e) => e.is_retryable(),
            Error::OutcomeUnknown { cause, .. } => cause.is_retryable(),
            _ => false,
        }
    }

    /// The server's classified error, when this error came from an ErrorResponse.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Server(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(Arc::new(e))
    }
}

impl From<ServerError> for Error {
    fn from(e: ServerError) -> Error {
        match e.kind {
            ServerErrorKind::TopicNotFound => Error::TopicNotFound { message: e.message },
            ServerErrorKind::AuthenticationRequired => Error::Authentication { message: e.message },
            _ => Error::Server(e),
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Io(inner) => inner.kind(),
            Error::Connect { source, .. } => source.kind(),
            Error::ConnectionClosed | Error::ConnectionDropped { .. } => {
                io::ErrorKind::ConnectionAborted
            }
            Error::Timeout(_) | Error::PeerTimeout { .. } => io::ErrorKind::TimedOut,
            Error::Unreachable { .. } => io::ErrorKind::NotConnected,
            Error::Backpressure(_) => io::ErrorKind::WouldBlock,
            Error::TopicNotFound { .. } => io::ErrorKind::NotFound,
            Error::InvalidTopicName { .. } | Error::Config(_) | Error::RecordTooLarge { .. } => {
                io::ErrorKind::InvalidInput
            }
            Error::Authentication { .. } => io::ErrorKind::PermissionDenied,
            Error::InvalidFrame(_)
            | Error::InvalidRecord(_)
            | Error::InvalidResponse(_)
            | Error::CorruptRecord { .. } => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
