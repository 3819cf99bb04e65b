//! `ConsumerCore`: the crate's `StandaloneConsumer` for both Python flavours.
//!
//! The consumer itself is used by one thread at a time: the caller's (blocking flavour,
//! GIL released) or the object's worker thread (asyncio flavour). `seek`, `rewind` and
//! `seek_to_end` only record the new position, applied before the next call that talks
//! to the server, so they never block an event loop. A poll whose awaiting task was
//! cancelled keeps its records for the next poll (and commits stop before them).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lnc_uring::{ConnectionConfig, ConsumerConfig, Error, SeekPosition, StandaloneConsumer};
use pyo3::prelude::*;

use crate::admin::secs;
use crate::completion::{Build, Completer, Deliver};
use crate::errors::to_py;
use crate::offsets::native_store;
use crate::records::PollResult;
use crate::worker::Worker;

#[derive(Debug)]
struct State {
    consumer: Mutex<Option<StandaloneConsumer>>,
    /// Records of a poll whose task was cancelled: the next poll returns them.
    stash: Mutex<Option<lnc_uring::PollResult>>,
    /// A seek not yet applied.
    pending: Mutex<Option<SeekPosition>>,
    /// The position as last known (a pending offset seek, else the consumer's).
    position: AtomicU64,
    committed: Mutex<Option<u64>>,
    closed: AtomicBool,
    topic_id: u32,
}

impl State {
    /// Runs `f` on the consumer after applying a pending seek.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut StandaloneConsumer, &State) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut g = self.consumer.lock().unwrap_or_else(|e| e.into_inner());
        let c = g.as_mut().ok_or(Error::Closed)?;
        if let Some(p) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            c.seek(p)?;
        }
        let r = f(c, self);
        self.position
            .store(self.effective_position(c), Ordering::Release);
        *self.committed.lock().unwrap_or_else(|e| e.into_inner()) = c.committed_offset();
        r
    }

    /// The next record the application has not seen: the stash's start if there is one.
    fn effective_position(&self, c: &StandaloneConsumer) -> u64 {
        match self
            .stash
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(r) => r.start_offset(),
            None => c.current_offset(),
        }
    }

    fn poll(&self, timeout: Option<Duration>) -> Result<Option<lnc_uring::PollResult>, Error> {
        self.with(|c, s| {
            if let Some(r) = s.stash.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Ok(Some(r));
            }
            match timeout {
                None => c.poll(),
                Some(t) => c.poll_timeout(t),
            }
        })
    }

    fn commit(&self) -> Result<u64, Error> {
        self.with(|c, s| {
            let at = s.effective_position(c);
            c.commit_offset(at)?;
            Ok(at)
        })
    }

    fn close(&self) -> Result<(), Error> {
        let mut g = self.consumer.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut c) = g.take() else {
            return Ok(());
        };
        self.closed.store(true, Ordering::Release);
        // Unread records (a cancelled poll) are not committed by the closing commit.
        if let Some(r) = self.stash.lock().unwrap_or_else(|e| e.into_inner()).take() {
            c.seek(SeekPosition::Offset(r.start_offset()))?;
        }
        c.close()
    }

    fn seek(&self, to: SeekPosition) {
        self.stash.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let SeekPosition::Offset(o) = to {
            self.position.store(o, Ordering::Release);
        } else if to == SeekPosition::Beginning {
            self.position.store(0, Ordering::Release);
        }
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(to);
    }
}

/// A poll's records, converted on the loop thread, or kept if the task was cancelled.
struct PollDelivery {
    result: Option<lnc_uring::PollResult>,
    state: Arc<State>,
}

impl Deliver for PollDelivery {
    fn into_py(self: Box<Self>, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.result {
            Some(r) => Ok(Py::new(py, PollResult::from_native(py, r)?)?.into_any()),
            None => Ok(py.None()),
        }
    }

    fn cancelled(self: Box<Self>, _py: Python<'_>) {
        if let Some(r) = self.result {
            let mut stash = self.state.stash.lock().unwrap_or_else(|e| e.into_inner());
            if stash.is_none() {
                self.state
                    .position
                    .store(r.start_offset(), Ordering::Release);
                *stash = Some(r);
            }
        }
    }
}

fn unit() -> Box<dyn Deliver> {
    Box::new(Build(|py: Python<'_>| Ok(py.None())))
}

/// The crate's consumer, for `lnc_uring.StandaloneConsumer` and its blocking twin.
#[pyclass(frozen, module = "lnc_uring._native")]
pub(crate) struct ConsumerCore {
    state: Arc<State>,
    worker: Worker,
}

#[pymethods]
impl ConsumerCore {
    /// Connects (GIL released) and positions the consumer: at the store's committed
    /// offset when there is one, else at `start` (`"beginning"`, `"end"` or an offset).
    #[staticmethod]
    #[pyo3(signature = (address, consumer_name, topic_id, max_fetch_bytes, start, poll_interval_ms,
        auto_commit_s, connect_timeout_s, request_timeout_s, keepalive_interval_s, offset_store=None,
        server_tracking=false))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        py: Python<'_>,
        address: String,
        consumer_name: String,
        topic_id: u32,
        max_fetch_bytes: u32,
        start: &Bound<'_, PyAny>,
        poll_interval_ms: u64,
        auto_commit_s: Option<f64>,
        connect_timeout_s: f64,
        request_timeout_s: f64,
        keepalive_interval_s: f64,
        offset_store: Option<&Bound<'_, PyAny>>,
        server_tracking: bool,
    ) -> PyResult<ConsumerCore> {
        let start = if let Ok(o) = start.extract::<u64>() {
            SeekPosition::Offset(o)
        } else {
            match start.extract::<String>()?.as_str() {
                "end" => SeekPosition::End,
                _ => SeekPosition::Beginning,
            }
        };
        let conn = ConnectionConfig::new(address)
            .with_connect_timeout(secs(connect_timeout_s)?)
            .with_request_timeout(secs(request_timeout_s)?)
            .with_keepalive_interval(secs(keepalive_interval_s)?);
        let mut cfg = ConsumerConfig::new(consumer_name, topic_id)
            .with_max_fetch_bytes(max_fetch_bytes)
            .with_start(start)
            .with_poll_interval(Duration::from_millis(poll_interval_ms))
            .with_auto_commit(auto_commit_s.map(secs).transpose()?)
            .with_server_tracking(server_tracking)
            .with_connection(conn);
        if let Some(store) = offset_store.and_then(native_store) {
            cfg = cfg.with_offset_store(store);
        }
        let c = py
            .detach(move || StandaloneConsumer::connect(cfg))
            .map_err(|e| to_py(py, e))?;
        Ok(ConsumerCore {
            state: Arc::new(State {
                position: AtomicU64::new(c.current_offset()),
                committed: Mutex::new(c.committed_offset()),
                topic_id: c.topic_id(),
                closed: AtomicBool::new(false),
                consumer: Mutex::new(Some(c)),
                stash: Mutex::new(None),
                pending: Mutex::new(None),
            }),
            worker: Worker::new("lnc-py-consumer"),
        })
    }

    /// One poll (GIL released): `None` when nothing new arrived. Without a timeout it is
    /// one fetch round; with one it fetches until records arrive or time is up.
    #[pyo3(signature = (timeout_s=None))]
    fn poll(&self, py: Python<'_>, timeout_s: Option<f64>) -> PyResult<Option<PollResult>> {
        let timeout = timeout_s.map(secs).transpose()?;
        let state = self.state.clone();
        match py
            .detach(move || state.poll(timeout))
            .map_err(|e| to_py(py, e))?
        {
            Some(r) => Ok(Some(PollResult::from_native(py, r)?)),
            None => Ok(None),
        }
    }

    /// `poll` on the worker thread; resolves `fut` with the result or `None`.
    #[pyo3(signature = (completer, fut, timeout_s=None))]
    fn poll_future(
        &self,
        completer: &Completer,
        fut: Py<PyAny>,
        timeout_s: Option<f64>,
    ) -> PyResult<()> {
        let timeout = timeout_s.map(secs).transpose()?;
        let state = self.state.clone();
        self.worker.run(completer, fut, move || {
            let result = state.poll(timeout)?;
            Ok(Box::new(PollDelivery { result, state }) as Box<dyn Deliver>)
        })
    }

    /// Moves to byte offset `offset` (a record boundary), applied before the next poll.
    fn seek(&self, offset: u64) {
        self.state.seek(SeekPosition::Offset(offset));
    }

    /// Moves past the damaged record the last poll raised (`CorruptRecord`, an
    /// `InvalidFrameError` with `offset`), trusting the length its header declares
    /// (GIL released). Returns the new position.
    fn skip_bad_record(&self, py: Python<'_>) -> PyResult<u64> {
        let state = self.state.clone();
        py.detach(move || state.with(|c, _| c.skip_bad_record()))
            .map_err(|e| to_py(py, e))
    }

    /// `skip_bad_record` on the worker thread; resolves `fut` with the new position.
    fn skip_bad_record_future(&self, completer: &Completer, fut: Py<PyAny>) -> PyResult<()> {
        let state = self.state.clone();
        self.worker.run(completer, fut, move || {
            let at = state.with(|c, _| c.skip_bad_record())?;
            Ok(Box::new(Build(move |py: Python<'_>| {
                Ok(at.into_pyobject(py)?.into_any().unbind())
            })) as Box<dyn Deliver>)
        })
    }

    /// Moves to offset 0, applied before the next poll.
    fn rewind(&self) {
        self.state.seek(SeekPosition::Beginning);
    }

    /// Moves to the end of the log as it is when the next poll runs.
    fn seek_to_end(&self) {
        self.state.seek(SeekPosition::End);
    }

    /// Commits the position (GIL released): to the offset store, and to the server when
    /// the consumer tracks itself there. Returns the committed offset.
    fn commit(&self, py: Python<'_>) -> PyResult<u64> {
        let state = self.state.clone();
        py.detach(move || state.commit()).map_err(|e| to_py(py, e))
    }

    /// `commit` on the worker thread; resolves `fut` with the committed offset.
    fn commit_future(&self, completer: &Completer, fut: Py<PyAny>) -> PyResult<()> {
        let state = self.state.clone();
        self.worker.run(completer, fut, move || {
            let at = state.commit()?;
            Ok(Box::new(Build(move |py: Python<'_>| {
                Ok(at.into_pyobject(py)?.into_any().unbind())
            })) as Box<dyn Deliver>)
        })
    }

    /// The end of the topic's log now (GIL released).
    fn end_offset(&self, py: Python<'_>) -> PyResult<u64> {
        let state = self.state.clone();
        py.detach(move || state.with(|c, _| c.end_offset()))
            .map_err(|e| to_py(py, e))
    }

    /// Closes (GIL released) with the crate's `close`: when auto-commit is on, commits
    /// every record returned (not those of a cancelled poll, which were never seen),
    /// then stops. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let state = self.state.clone();
        py.detach(move || state.close()).map_err(|e| to_py(py, e))
    }

    /// `close` on the worker thread; resolves `fut`.
    fn close_future(&self, completer: &Completer, fut: Py<PyAny>) -> PyResult<()> {
        let state = self.state.clone();
        self.worker.run(completer, fut, move || {
            state.close()?;
            Ok(unit())
        })
    }

    /// The offset of the next record to deliver.
    #[getter]
    fn current_offset(&self) -> u64 {
        self.state.position.load(Ordering::Acquire)
    }

    /// The last committed offset, if any.
    #[getter]
    fn committed_offset(&self) -> Option<u64> {
        *self
            .state
            .committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The topic id.
    #[getter]
    fn topic_id(&self) -> u32 {
        self.state.topic_id
    }

    /// Whether `close` has run.
    #[getter]
    fn closed(&self) -> bool {
        self.state.closed.load(Ordering::Acquire)
    }
}
