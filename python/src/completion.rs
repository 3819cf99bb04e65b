//! Completing asyncio futures from threads that must never wait for the GIL.
//!
//! Driver threads (delivery outcomes) and worker threads (blocking calls) push a [`Done`]
//! into an [`Inbox`] and, when the inbox was idle, write one byte to a socket pair. The
//! event loop watches the other end with `loop.add_reader` and calls [`Completer::drain`]
//! on its own thread, which resolves every queued future in one go. This is what
//! `loop.call_soon_threadsafe` does internally (a self-pipe write), minus the GIL: a driver
//! thread stuck behind a busy interpreter would stall every socket it owns.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use lnc_uring::Error;
use pyo3::prelude::*;

use crate::errors::to_py;

/// A value computed off the event loop, turned into a Python object on it.
pub(crate) trait Deliver: Send {
    /// The future's result (or the exception to set).
    fn into_py(self: Box<Self>, py: Python<'_>) -> PyResult<Py<PyAny>>;

    /// Called instead of [`Deliver::into_py`] when the awaiting task was cancelled, so
    /// nothing is lost (a consumer keeps the records for its next poll).
    fn cancelled(self: Box<Self>, _py: Python<'_>) {}
}

/// Any closure building the result on the loop thread.
pub(crate) struct Build<F>(pub(crate) F);

impl<F> Deliver for Build<F>
where
    F: FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send,
{
    fn into_py(self: Box<Self>, py: Python<'_>) -> PyResult<Py<PyAny>> {
        (self.0)(py)
    }
}

/// What to do with a crate error whose future was cancelled.
pub(crate) type OnCancelledError = Box<dyn FnOnce(Error) + Send>;

/// One finished operation: its future and outcome.
pub(crate) struct Done {
    pub(crate) fut: Py<PyAny>,
    pub(crate) outcome: Result<Box<dyn Deliver>, Error>,
    /// Keeps a failure whose awaiting task was cancelled (a producer's failure list).
    pub(crate) keep_error: Option<OnCancelledError>,
}

/// The queue shared by completing threads and the loop thread.
#[derive(Debug)]
pub(crate) struct Inbox {
    queue: Mutex<Vec<DoneBox>>,
    signalled: AtomicBool,
    tx: UnixStream,
    rx: UnixStream,
}

/// `Done` behind a type that can be `Debug`.
struct DoneBox(Done);

impl std::fmt::Debug for DoneBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Done")
    }
}

impl Inbox {
    fn new() -> std::io::Result<Inbox> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(Inbox {
            queue: Mutex::new(Vec::new()),
            signalled: AtomicBool::new(false),
            tx,
            rx,
        })
    }

    /// Queues `done`; wakes the loop unless a wake-up is already pending. Never blocks
    /// for long and never touches the GIL.
    pub(crate) fn push(&self, done: Done) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(DoneBox(done));
        if !self.signalled.swap(true, Ordering::SeqCst) {
            // A full socket buffer means a wake-up byte is already waiting.
            let _ = (&self.tx).write(&[1]);
        }
    }
}

/// An event loop's completion queue. `lnc_uring._aio` makes one per loop and registers
/// [`Completer::fileno`] with `loop.add_reader(fd, completer.drain)`.
#[pyclass(frozen, module = "lnc_uring._native")]
pub(crate) struct Completer {
    pub(crate) inbox: Arc<Inbox>,
}

#[pymethods]
impl Completer {
    #[new]
    fn new() -> PyResult<Completer> {
        Ok(Completer {
            inbox: Arc::new(Inbox::new()?),
        })
    }

    /// The file descriptor to watch for readability.
    fn fileno(&self) -> i32 {
        self.inbox.rx.as_raw_fd()
    }

    /// Resolves every queued future (call on the loop's thread). Returns how many.
    fn drain(&self, py: Python<'_>) -> PyResult<usize> {
        let mut sink = [0u8; 256];
        loop {
            match (&self.inbox.rx).read(&mut sink) {
                Ok(n) if n == sink.len() => continue,
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        // Clear before taking the queue: a push after the take then writes a new byte.
        self.inbox.signalled.store(false, Ordering::SeqCst);
        let batch =
            std::mem::take(&mut *self.inbox.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let n = batch.len();
        let mut first_err = None;
        for DoneBox(done) in batch {
            if let Err(e) = resolve(py, done) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }
}

fn resolve(py: Python<'_>, done: Done) -> PyResult<()> {
    let fut = done.fut.bind(py);
    if fut.call_method0("done")?.is_truthy()? {
        // Cancelled (or resolved elsewhere): keep what must not be lost.
        match done.outcome {
            Ok(value) => value.cancelled(py),
            Err(e) => {
                if let Some(keep) = done.keep_error {
                    keep(e);
                }
            }
        }
        return Ok(());
    }
    match done.outcome {
        Ok(value) => match value.into_py(py) {
            Ok(v) => fut.call_method1("set_result", (v,))?,
            Err(e) => fut.call_method1("set_exception", (e.into_value(py),))?,
        },
        Err(e) => fut.call_method1("set_exception", (to_py(py, e).into_value(py),))?,
    };
    Ok(())
}
