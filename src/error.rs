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
    /// A record or batch larger than a frame can carry.
    #[error("record of {size} bytes exceeds the limit of {max}")]
    RecordTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The handle (or its driver) has been closed.
    #[error("the client is closed")]
    Closed,
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
            | Error::CatchingUp { .. } => true,
            Error::Server(e) => e.is_retryable(),
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
            Error::ConnectionClosed => io::ErrorKind::ConnectionAborted,
            Error::Timeout(_) => io::ErrorKind::TimedOut,
            Error::Backpressure(_) => io::ErrorKind::WouldBlock,
            Error::TopicNotFound { .. } => io::ErrorKind::NotFound,
            Error::InvalidTopicName { .. } | Error::Config(_) | Error::RecordTooLarge { .. } => {
                io::ErrorKind::InvalidInput
            }
            Error::Authentication { .. } => io::ErrorKind::PermissionDenied,
            Error::InvalidFrame(_) | Error::InvalidRecord(_) | Error::InvalidResponse(_) => {
                io::ErrorKind::InvalidData
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
