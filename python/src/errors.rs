//! Rust errors as the seed client's exception classes (defined in `lnc_uring/errors.py`).
//!
//! The crate's [`Error`] is `#[non_exhaustive]`: variants this module does not know yet
//! become a plain `LanceError` carrying the crate's message and retryability.

use std::sync::Arc;

use lnc_uring::{proto::ServerErrorKind, BufferLimit, Error};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyList;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The `lnc_uring.errors` module (imported once).
fn module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    ERRORS
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("lnc_uring.errors")?.unbind())
        })
        .map(|m| m.bind(py))
}

/// Instantiates `lnc_uring.errors.<class>(*args)` and marks its retryability.
fn make<'py>(
    py: Python<'py>,
    class: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
    retryable: bool,
    source: &Error,
) -> PyResult<PyErr> {
    Ok(PyErr::from_value(instance(
        py, class, args, retryable, source,
    )?))
}

/// `make`, as the exception object (to set more attributes on it).
fn instance<'py>(
    py: Python<'py>,
    class: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
    retryable: bool,
    source: &Error,
) -> PyResult<Bound<'py, PyAny>> {
    let cls = module(py)?.getattr(class)?;
    let exc = cls.call1(args)?;
    exc.setattr("_retryable", retryable)?;
    exc.setattr("native_kind", kind_name(source))?;
    Ok(exc)
}

/// A short name of the crate's error variant, kept on the exception as `native_kind`.
fn kind_name(e: &Error) -> &'static str {
    match e {
        Error::Connect { .. } => "Connect",
        Error::ConnectionClosed => "ConnectionClosed",
        Error::Io(_) => "Io",
        Error::Timeout(_) => "Timeout",
        Error::Backpressure(_) => "Backpressure",
        Error::TopicNotFound { .. } => "TopicNotFound",
        Error::InvalidTopicName { .. } => "InvalidTopicName",
        Error::Authentication { .. } => "Authentication",
        Error::Server(_) => "Server",
        Error::CatchingUp { .. } => "CatchingUp",
        Error::InvalidFrame(_) => "InvalidFrame",
        Error::InvalidRecord(_) => "InvalidRecord",
        Error::Protocol(_) => "Protocol",
        Error::InvalidResponse(_) => "InvalidResponse",
        Error::RecordTooLarge { .. } => "RecordTooLarge",
        Error::Closed => "Closed",
        Error::Config(_) => "Config",
        Error::Stopped { .. } => "Stopped",
        Error::DeliveryFailed { .. } => "DeliveryFailed",
        Error::OutcomeUnknown { .. } => "OutcomeUnknown",
        Error::PeerTimeout { .. } => "PeerTimeout",
        Error::ConnectionDropped { .. } => "ConnectionDropped",
        Error::Unreachable { .. } => "Unreachable",
        Error::CorruptRecord { .. } => "CorruptRecord",
        _ => "Other",
    }
}

/// The Python exception for a crate error.
pub(crate) fn to_py(py: Python<'_>, e: Error) -> PyErr {
    match build(py, &e) {
        Ok(err) => err,
        // The errors module itself failed to import or construct: report that.
        Err(import_failure) => import_failure,
    }
}

fn build(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let msg = e.to_string();
    let retry = e.is_retryable();
    match e {
        // The driver thread stopped: a connection-level failure that retrying on this
        // handle cannot cure (retryable: false; connect a new one).
        Error::Connect { .. }
        | Error::ConnectionClosed
        | Error::Io(_)
        | Error::Closed
        | Error::Stopped { .. }
        | Error::ConnectionDropped { .. }
        | Error::Unreachable { .. } => make(py, "ConnectionError", (msg,), retry, e),
        Error::Timeout(_) | Error::PeerTimeout { .. } => make(py, "TimeoutError", (msg,), true, e),
        // Sent, never acknowledged, given up: what the seed reported as an ACK timeout.
        // The server may or may not have stored it (`outcome_unknown`); the reason it was
        // given up is the `__cause__`.
        Error::OutcomeUnknown { attempts, cause } => {
            let exc = instance(py, "TimeoutError", (msg,), retry, e)?;
            exc.setattr("outcome_unknown", true)?;
            exc.setattr("attempts", *attempts)?;
            exc.setattr("__cause__", to_py(py, (**cause).clone()).into_value(py))?;
            Ok(PyErr::from_value(exc))
        }
        // Records accepted before a flush/close failed, record ids unknown here (the
        // producer builds its `DeliveryError` itself, with them).
        Error::DeliveryFailed { failed, first } => {
            let first = to_py(py, (**first).clone()).into_value(py);
            let cls = module(py)?.getattr("DeliveryError")?;
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("failed", *failed)?;
            kwargs.set_item("first", first)?;
            let exc = cls.call((PyList::empty(py), 0), Some(&kwargs))?;
            exc.setattr("native_kind", kind_name(e))?;
            Ok(PyErr::from_value(exc))
        }
        // Damaged data in the log: `offset` names the record; the consumer's
        // `skip_bad_record()` moves past it.
        Error::CorruptRecord { offset, reason } => {
            let exc = instance(py, "InvalidFrameError", (msg,), retry, e)?;
            exc.setattr("offset", *offset)?;
            exc.setattr("reason", reason.as_str())?;
            Ok(PyErr::from_value(exc))
        }
        Error::Backpressure(limit) => {
            let what = match limit {
                BufferLimit::Memory { max_bytes } => {
                    format!("buffer memory full ({max_bytes} bytes)")
                }
                BufferLimit::InFlight { max_batches } => {
                    format!("{max_batches} batches in flight")
                }
                _ => "server backpressure".to_owned(),
            };
            make(py, "BackpressureError", (what,), true, e)
        }
        Error::TopicNotFound { message } => {
            make(py, "TopicNotFoundError", (message.clone(),), false, e)
        }
        Error::InvalidTopicName { name, .. } => {
            make(py, "InvalidTopicNameError", (name.clone(),), false, e)
        }
        Error::Authentication { message } => {
            make(py, "AccessDeniedError", (message.clone(),), false, e)
        }
        Error::CatchingUp { server_offset } => {
            make(py, "ServerCatchingUpError", (*server_offset,), true, e)
        }
        Error::InvalidFrame(_) => make(py, "InvalidFrameError", (msg,), false, e),
        Error::InvalidRecord(_)
        | Error::Protocol(_)
        | Error::InvalidResponse(_)
        | Error::RecordTooLarge { .. } => make(py, "ProtocolError", (msg,), false, e),
        Error::Config(_) => make(py, "ConfigError", (msg,), false, e),
        Error::Server(s) => {
            let text = s.message.clone();
            match &s.kind {
                ServerErrorKind::NotLeader { redirect } => {
                    make(py, "NotLeaderError", (redirect.clone(),), true, e)
                }
                ServerErrorKind::TopicNotFound => make(py, "TopicNotFoundError", (text,), false, e),
                ServerErrorKind::TopicExists => {
                    make(py, "TopicAlreadyExistsError", (text,), false, e)
                }
                ServerErrorKind::InvalidTopicName => {
                    make(py, "InvalidTopicNameError", (text,), false, e)
                }
                ServerErrorKind::RateLimited => make(py, "BackpressureError", (text,), true, e),
                ServerErrorKind::AuthenticationRequired => {
                    make(py, "AccessDeniedError", (text,), false, e)
                }
                ServerErrorKind::InvalidRequest => make(py, "ProtocolError", (text,), false, e),
                _ => make(py, "ServerError", (text,), s.is_retryable(), e),
            }
        }
        // Variants added to the crate after this module was written.
        _ => make(py, "LanceError", (msg,), retry, e),
    }
}

/// `DeliveryError` for records whose outcome no caller received (sent with `send_async`,
/// or whose awaiting task was cancelled): `(record id, exception)` pairs, plus how many
/// more failed beyond the kept list.
pub(crate) fn delivery_error(py: Python<'_>, failures: Vec<(u64, Error)>, dropped: u64) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let list = PyList::empty(py);
        for (rid, e) in failures {
            list.append((rid, to_py(py, e).into_value(py)))?;
        }
        let cls = module(py)?.getattr("DeliveryError")?;
        Ok(PyErr::from_value(cls.call1((list, dropped))?))
    };
    build().unwrap_or_else(|e| e)
}

/// A representative crate error of each kind, mapped: the exception mapping test uses
/// it to check every variant without staging each failure on a server.
#[pyfunction]
pub(crate) fn error_for_testing(py: Python<'_>, kind: &str) -> PyResult<Py<PyAny>> {
    use lnc_uring::proto::ServerError;
    let io = || Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
    let e = match kind {
        "Connect" => Error::Connect {
            addr: "127.0.0.1:1".into(),
            source: io(),
        },
        "ConnectionClosed" => Error::ConnectionClosed,
        "Io" => Error::Io(io()),
        "Timeout" => Error::Timeout("flush".into()),
        "Backpressure" => Error::Backpressure(BufferLimit::Memory { max_bytes: 1024 }),
        "TopicNotFound" => Error::TopicNotFound {
            message: "Unknown topic".into(),
        },
        "InvalidTopicName" => Error::InvalidTopicName {
            name: "a b".into(),
            reason: "space".into(),
        },
        "Authentication" => Error::Authentication {
            message: "Authentication required".into(),
        },
        "CatchingUp" => Error::CatchingUp { server_offset: 42 },
        "Protocol" => Error::Protocol("unsolicited reply".into()),
        "RecordTooLarge" => Error::RecordTooLarge {
            size: 1 << 25,
            max: 1 << 24,
        },
        "Closed" => Error::Closed,
        "Config" => Error::Config("bad".into()),
        "InvalidFrame" => Error::InvalidFrame(
            lnc_uring::proto::Header::decode(&[0u8; 4], lnc_uring::Checksum::Ieee)
                .expect_err("too short"),
        ),
        "Stopped" => Error::Stopped {
            reason: "io_uring submission failed".into(),
        },
        "DeliveryFailed" => Error::DeliveryFailed {
            failed: 3,
            first: Box::new(Error::TopicNotFound {
                message: "Unknown topic".into(),
            }),
        },
        "OutcomeUnknown" => Error::OutcomeUnknown {
            attempts: 2,
            cause: Box::new(Error::Timeout("delivery timeout".into())),
        },
        "OutcomeUnknownClosed" => Error::OutcomeUnknown {
            attempts: 1,
            cause: Box::new(Error::Closed),
        },
        "PeerTimeout" => Error::PeerTimeout {
            silent: std::time::Duration::from_secs(30),
        },
        "ConnectionDropped" => Error::ConnectionDropped {
            reason: "unsolicited reply".into(),
        },
        "Unreachable" => Error::Unreachable {
            last_error: "connection refused".into(),
        },
        "CorruptRecord" => Error::CorruptRecord {
            offset: 4096,
            reason: "declared length 4294967295 exceeds any frame".into(),
        },
        server if server.starts_with("server:") => {
            Error::from(ServerError::classify(&server["server:".len()..]))
        }
        other => return Err(PyValueError::new_err(format!("unknown kind {other:?}"))),
    };
    Ok(to_py(py, e).into_value(py).into_any())
}
