//! One worker thread per client object, for the asyncio flavour's calls that block in
//! Rust (a consumer poll, an admin request, a producer flush). It is started on the first
//! such call, runs calls in order, never takes the GIL, and ends when its object is
//! dropped (after the call in progress, without being joined).

use std::sync::OnceLock;

use crossbeam_channel::{unbounded, Sender};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::completion::{Completer, Deliver, Done};

type Job = Box<dyn FnOnce() + Send>;

/// A lazily started worker thread.
#[derive(Debug, Default)]
pub(crate) struct Worker {
    tx: OnceLock<Sender<Job>>,
    name: &'static str,
}

impl Worker {
    /// A worker whose thread will be called `name`.
    pub(crate) fn new(name: &'static str) -> Worker {
        Worker {
            tx: OnceLock::new(),
            name,
        }
    }

    fn sender(&self) -> PyResult<&Sender<Job>> {
        if let Some(tx) = self.tx.get() {
            return Ok(tx);
        }
        let (tx, rx) = unbounded::<Job>();
        std::thread::Builder::new()
            .name(self.name.to_owned())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start a worker thread: {e}")))?;
        // Two racing first calls: the loser's thread sees its channel closed and exits.
        Ok(self.tx.get_or_init(|| tx))
    }

    /// Runs `call` on the worker thread and resolves `fut` on the event loop with its
    /// result.
    pub(crate) fn run<F>(&self, completer: &Completer, fut: Py<PyAny>, call: F) -> PyResult<()>
    where
        F: FnOnce() -> Result<Box<dyn Deliver>, lnc_uring::Error> + Send + 'static,
    {
        let inbox = completer.inbox.clone();
        let job: Job = Box::new(move || {
            let outcome = call();
            inbox.push(Done {
                fut,
                outcome,
                keep_error: None,
            });
        });
        self.sender()?
            .send(job)
            .map_err(|_| PyRuntimeError::new_err("worker thread is gone"))
    }
}
