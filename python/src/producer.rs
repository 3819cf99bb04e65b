//! `ProducerCore`: the crate's `Producer` for both Python flavours.
//!
//! * Records are TLV-encoded straight from the caller's `bytes` / `bytearray` into the
//!   crate's batch buffer, with the GIL held and no intermediate copy.
//! * Acknowledged sends (`send`, `send_batch`) seal the open batch at once instead of
//!   waiting for `linger` (the seed wrote one frame per send, so its acknowledged send
//!   took one round trip; so does this).
//! * Outcomes reach asyncio futures through a [`Completer`], without the GIL on the
//!   driver thread. Every record gets exactly one outcome: a failure raised by the
//!   `send` / `send_batch` that awaited it is not raised again, and failures nobody
//!   received — records sent with `send_async`, and sends whose awaiting task was
//!   cancelled — are kept here with their record ids and raised by the next `flush` or
//!   `close` as a `DeliveryError`. The crate runs a record's completion callback
//!   before `flush` stops counting it, so when the crate's `flush` returns, every
//!   failure it covers is in that list (the crate's own `DeliveryFailed` counts the
//!   failures already raised to their callers too, so it is not raised as such).
//! * The crate's producer runs with `FullBufferPolicy::Fail`; a full buffer is waited out
//!   here (a blocked thread with the GIL released, or an awaited future), so the event
//!   loop never blocks.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use lnc_uring::proto::RecordType;
use lnc_uring::{
    BufferLimit, ConnectionConfig, DeliveryTicket, Error, FullBufferPolicy, ProduceRecord,
    Producer, ProducerConfig, RecordMetadata,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::buffer::with_bytes;
use crate::completion::{Build, Completer, Deliver, Done, Inbox};
use crate::errors::{delivery_error, to_py};
use crate::records::TlvRecord;
use crate::worker::Worker;

/// Failures kept with their record ids; beyond this many only a count is kept.
const KEEP_FAILURES: usize = 1000;

/// State shared with delivery callbacks (which run on the driver thread).
#[derive(Debug, Default)]
struct Shared {
    /// Ids handed out by `send*`: 1, 2, 3… (one per call, as the seed's batch ids).
    next_id: AtomicU64,
    failures: Mutex<Failures>,
    /// The newest record's ticket: waiting for it frees buffer memory.
    last: Mutex<Option<DeliveryTicket>>,
}

#[derive(Debug, Default)]
struct Failures {
    kept: Vec<(u64, Error)>,
    dropped: u64,
}

impl Failures {
    /// `Ok`, or the `DeliveryError` of these failures.
    fn into_result(self, py: Python<'_>) -> PyResult<()> {
        if self.kept.is_empty() && self.dropped == 0 {
            Ok(())
        } else {
            Err(delivery_error(py, self.kept, self.dropped))
        }
    }
}

/// What the crate's `flush` returned, as Python sees it: `DeliveryFailed` is not an
/// error here (the failures no caller received are raised from [`Shared::failures`];
/// the others were raised by the sends that awaited them).
fn flushed(r: Result<(), Error>) -> Result<(), Error> {
    match r {
        Err(Error::DeliveryFailed { .. }) => Ok(()),
        other => other,
    }
}

/// What `close` raises: the failures no caller received, else the crate's error.
fn closed_result(py: Python<'_>, r: Result<(), Error>, f: Failures) -> PyResult<()> {
    f.into_result(py)?;
    flushed(r).map_err(|e| to_py(py, e))
}

impl Shared {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn record_failure(&self, rid: u64, e: Error) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.kept.len() < KEEP_FAILURES {
            f.kept.push((rid, e));
        } else {
            f.dropped += 1;
        }
    }

    fn take_failures(&self) -> Failures {
        std::mem::take(&mut *self.failures.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn set_last(&self, t: &DeliveryTicket) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(t.clone());
    }

    fn pending_last(&self) -> Option<DeliveryTicket> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|t| !t.is_done())
            .cloned()
    }
}

type Handle = Arc<RwLock<Option<Producer>>>;

fn closed_if_none(p: &Option<Producer>) -> Result<&Producer, Error> {
    p.as_ref().ok_or(Error::Closed)
}

/// The crate's producer, for `lnc_uring.Producer` and `lnc_uring.blocking.Producer`.
#[pyclass(frozen, module = "lnc_uring._native")]
pub(crate) struct ProducerCore {
    inner: Handle,
    shared: Arc<Shared>,
    worker: Worker,
    delivery_timeout: Duration,
}

/// The value a successful send resolves to: its record id.
struct Rid(u64);

impl Deliver for Rid {
    fn into_py(self: Box<Self>, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.0.into_pyobject(py)?.into_any().unbind())
    }
}

fn none() -> Box<dyn Deliver> {
    Box::new(Build(|py: Python<'_>| Ok(py.None())))
}

/// Outcome of several records (a `send_batch`, or one `send`) as one future.
struct Group {
    remaining: AtomicUsize,
    first_err: Mutex<Option<Error>>,
    fut: Mutex<Option<Py<PyAny>>>,
    inbox: Arc<Inbox>,
    rid: u64,
    shared: Arc<Shared>,
}

impl Group {
    fn complete_one(&self, r: Result<RecordMetadata, Error>) {
        if let Err(e) = r {
            let mut first = self.first_err.lock().unwrap_or_else(|e| e.into_inner());
            if first.is_none() {
                *first = Some(e);
            }
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    fn finish(&self) {
        let Some(fut) = self.fut.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let err = self
            .first_err
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let (rid, shared) = (self.rid, self.shared.clone());
        self.inbox.push(Done {
            fut,
            outcome: match err {
                Some(e) => Err(e),
                None => Ok(Box::new(Rid(rid))),
            },
            keep_error: Some(Box::new(move |e| shared.record_failure(rid, e))),
        });
    }
}

fn produce_record(record_type: u8, v: &[u8]) -> ProduceRecord<'_> {
    if record_type == RecordType::RAW_DATA.0 {
        ProduceRecord::Raw(v)
    } else {
        ProduceRecord::Typed(RecordType(record_type), v)
    }
}

impl ProducerCore {
    /// Hands one record to the crate; `Ok(None)` when the buffer is full.
    fn enqueue(
        &self,
        topic_id: u32,
        data: &Bound<'_, PyAny>,
        record_type: u8,
    ) -> PyResult<Option<DeliveryTicket>> {
        let py = data.py();
        let guard = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let p = closed_if_none(&guard).map_err(|e| to_py(py, e))?;
        let sent = with_bytes(data, |v| {
            p.send_record_async(topic_id, produce_record(record_type, v))
        })?;
        match sent {
            Ok(t) => {
                self.shared.set_last(&t);
                Ok(Some(t))
            }
            // Full, also while the connection is down (`Unreachable`): wait for room.
            // Every record in the buffer is acknowledged after a reconnect or fails
            // within the delivery timeout, which makes room; the caller learns each
            // outcome, so nothing is raised here.
            Err(Error::Backpressure(BufferLimit::Memory { .. }) | Error::Unreachable { .. }) => {
                Ok(None)
            }
            Err(e) => Err(to_py(py, e)),
        }
    }

    /// Sends open batches now (an acknowledged send does not wait for `linger`).
    fn seal(&self) {
        let guard = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = guard.as_ref() {
            p.seal_batches();
        }
    }

    /// Blocks (GIL released) until the buffer may have room.
    fn wait_room(&self, py: Python<'_>) -> PyResult<()> {
        let last = self.shared.pending_last();
        let inner = self.inner.clone();
        let timeout = self.delivery_timeout;
        py.detach(move || match last {
            Some(t) => {
                let _ = t.wait();
            }
            None => {
                if let Some(p) = inner.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    let _ = p.flush(timeout);
                }
            }
        });
        Ok(())
    }

    fn group(&self, n: usize, rid: u64, completer: &Completer, fut: Py<PyAny>) -> Arc<Group> {
        Arc::new(Group {
            remaining: AtomicUsize::new(n),
            first_err: Mutex::new(None),
            fut: Mutex::new(Some(fut)),
            inbox: completer.inbox.clone(),
            rid,
            shared: self.shared.clone(),
        })
    }
}

#[pymethods]
impl ProducerCore {
    /// Connects (GIL released). Durations in seconds.
    #[staticmethod]
    #[pyo3(signature = (address, batch_size, linger_ms, compression, max_pending_acks,
        connect_timeout_s, request_timeout_s, keepalive_interval_s, buffer_memory,
        delivery_timeout_s, max_retries=5, drop_timeout_s=5.0))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        py: Python<'_>,
        address: String,
        batch_size: usize,
        linger_ms: u64,
        compression: bool,
        max_pending_acks: usize,
        connect_timeout_s: f64,
        request_timeout_s: f64,
        keepalive_interval_s: f64,
        buffer_memory: usize,
        delivery_timeout_s: f64,
        max_retries: u32,
        drop_timeout_s: f64,
    ) -> PyResult<ProducerCore> {
        let secs = crate::admin::secs;
        let conn = ConnectionConfig::new(address)
            .with_connect_timeout(secs(connect_timeout_s)?)
            .with_request_timeout(secs(request_timeout_s)?)
            .with_keepalive_interval(secs(keepalive_interval_s)?);
        let delivery_timeout = secs(delivery_timeout_s)?;
        let cfg = ProducerConfig::default()
            .with_batch_size(batch_size)
            .with_linger_ms(linger_ms)
            .with_compression(compression)
            .with_max_pending_acks(max_pending_acks)
            .with_buffer_memory(buffer_memory)
            .with_full_buffer(FullBufferPolicy::Fail)
            .with_delivery_timeout(delivery_timeout)
            .with_max_retries(max_retries)
            .with_drop_timeout(secs(drop_timeout_s)?)
            .with_connection(conn);
        let p = py
            .detach(move || Producer::with_config(cfg))
            .map_err(|e| to_py(py, e))?;
        Ok(ProducerCore {
            inner: Arc::new(RwLock::new(Some(p))),
            shared: Arc::default(),
            worker: Worker::new("lnc-py-producer"),
            delivery_timeout,
        })
    }

    /// Queues one record without waiting; returns its id, or `None` when the buffer is
    /// full (wait for room, then call again). A failure is reported by `flush`/`close`.
    #[pyo3(signature = (topic_id, data, record_type=1))]
    fn send_nowait(
        &self,
        topic_id: u32,
        data: &Bound<'_, PyAny>,
        record_type: u8,
    ) -> PyResult<Option<u64>> {
        let Some(t) = self.enqueue(topic_id, data, record_type)? else {
            return Ok(None);
        };
        let rid = self.shared.next_id();
        let shared = self.shared.clone();
        t.on_complete(move |r| {
            if let Err(e) = r {
                shared.record_failure(rid, e);
            }
        });
        Ok(Some(rid))
    }

    /// Queues one record and resolves `fut` with its id once acknowledged (or with the
    /// exception). `None` when the buffer is full: nothing was queued.
    fn send_future(
        &self,
        topic_id: u32,
        data: &Bound<'_, PyAny>,
        record_type: u8,
        completer: &Completer,
        fut: Py<PyAny>,
    ) -> PyResult<Option<u64>> {
        let Some(t) = self.enqueue(topic_id, data, record_type)? else {
            return Ok(None);
        };
        self.seal();
        let rid = self.shared.next_id();
        let g = self.group(1, rid, completer, fut);
        t.on_complete(move |r| g.complete_one(r));
        Ok(Some(rid))
    }

    /// Sends one record and blocks (GIL released) until it is acknowledged.
    fn send_wait(
        &self,
        py: Python<'_>,
        topic_id: u32,
        data: &Bound<'_, PyAny>,
        record_type: u8,
    ) -> PyResult<u64> {
        let t = loop {
            match self.enqueue(topic_id, data, record_type)? {
                Some(t) => break t,
                None => self.wait_room(py)?,
            }
        };
        self.seal();
        let rid = self.shared.next_id();
        py.detach(move || t.wait()).map_err(|e| to_py(py, e))?;
        Ok(rid)
    }

    /// Queues `records[start:]` (a list of `TlvRecord`) into `batch` until the buffer is
    /// full; returns the index reached.
    fn batch_push(
        &self,
        batch: &BatchSend,
        records: &Bound<'_, PyList>,
        start: usize,
    ) -> PyResult<usize> {
        let mut i = start;
        let mut tickets = batch.tickets.lock().unwrap_or_else(|e| e.into_inner());
        while i < records.len() {
            let item = records.get_item(i)?;
            let rec = item.cast::<TlvRecord>()?.borrow();
            let (rt, value) = (rec.record_type, rec.value.bind(records.py()).clone());
            drop(rec);
            match self.enqueue(batch.topic_id, &value, rt)? {
                Some(t) => tickets.push(t),
                None => break,
            }
            i += 1;
        }
        Ok(i)
    }

    /// Starts a `send_batch` to `topic_id`.
    fn batch_begin(&self, topic_id: u32) -> BatchSend {
        BatchSend {
            topic_id,
            tickets: Mutex::new(Vec::new()),
        }
    }

    /// Seals the batch's records and resolves `fut` with its id when all are acknowledged
    /// (or with the first failure).
    fn batch_future(&self, batch: &BatchSend, completer: &Completer, fut: Py<PyAny>) -> u64 {
        let tickets = std::mem::take(&mut *batch.tickets.lock().unwrap_or_else(|e| e.into_inner()));
        self.seal();
        let rid = self.shared.next_id();
        let g = self.group(tickets.len(), rid, completer, fut);
        if tickets.is_empty() {
            g.finish();
        }
        for t in tickets {
            let g = g.clone();
            t.on_complete(move |r| g.complete_one(r));
        }
        rid
    }

    /// Seals the batch's records and blocks (GIL released) until all are acknowledged.
    fn batch_wait(&self, py: Python<'_>, batch: &BatchSend) -> PyResult<u64> {
        let tickets = std::mem::take(&mut *batch.tickets.lock().unwrap_or_else(|e| e.into_inner()));
        self.seal();
        let rid = self.shared.next_id();
        let first_err = py.detach(move || {
            let mut first = None;
            for t in tickets {
                if let Err(e) = t.wait() {
                    first.get_or_insert(e);
                }
            }
            first
        });
        match first_err {
            Some(e) => Err(to_py(py, e)),
            None => Ok(rid),
        }
    }

    /// Gives up waiting for a batch (its task was cancelled): records already queued are
    /// still delivered, and failures among them are reported by `flush` / `close`.
    fn batch_detach(&self, batch: &BatchSend) {
        let tickets = std::mem::take(&mut *batch.tickets.lock().unwrap_or_else(|e| e.into_inner()));
        if tickets.is_empty() {
            return;
        }
        let rid = self.shared.next_id();
        for t in tickets {
            let shared = self.shared.clone();
            t.on_complete(move |r| {
                if let Err(e) = r {
                    shared.record_failure(rid, e);
                }
            });
        }
    }

    /// Blocks (GIL released) until the buffer may have room again.
    fn room_wait(&self, py: Python<'_>) -> PyResult<()> {
        self.wait_room(py)
    }

    /// Resolves `fut` (with `None`) when the buffer may have room again.
    fn room_future(&self, py: Python<'_>, completer: &Completer, fut: Py<PyAny>) -> PyResult<()> {
        if let Some(t) = self.shared.pending_last() {
            let inbox = completer.inbox.clone();
            t.on_complete(move |_| {
                inbox.push(Done {
                    fut,
                    outcome: Ok(none()),
                    keep_error: None,
                })
            });
            return Ok(());
        }
        // The newest record is done and the buffer is still full: wait for everything.
        let inner = self.inner.clone();
        let timeout = self.delivery_timeout;
        let _ = py;
        self.worker.run(completer, fut, move || {
            if let Some(p) = inner.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = p.flush(timeout);
            }
            Ok(none())
        })
    }

    /// Flushes (GIL released): sends open batches and waits until every record is
    /// acknowledged or failed. Raises `TimeoutError` (records still in flight; failures
    /// are then raised by a later `flush`), or `DeliveryError` for failures no caller
    /// received.
    fn flush(&self, py: Python<'_>, timeout_s: f64) -> PyResult<()> {
        let timeout = crate::admin::secs(timeout_s)?;
        let inner = self.inner.clone();
        py.detach(move || {
            flushed(
                closed_if_none(&inner.read().unwrap_or_else(|e| e.into_inner()))?.flush(timeout),
            )
        })
        .map_err(|e| to_py(py, e))?;
        self.shared.take_failures().into_result(py)
    }

    /// `flush` on the worker thread; resolves `fut`. The failures are taken on the event
    /// loop, after every earlier outcome queued there (a cancelled `send`'s) was kept.
    fn flush_future(&self, completer: &Completer, fut: Py<PyAny>, timeout_s: f64) -> PyResult<()> {
        let timeout = crate::admin::secs(timeout_s)?;
        let inner = self.inner.clone();
        let shared = self.shared.clone();
        self.worker.run(completer, fut, move || {
            flushed(
                closed_if_none(&inner.read().unwrap_or_else(|e| e.into_inner()))?.flush(timeout),
            )?;
            Ok(Box::new(Build(move |py: Python<'_>| {
                shared.take_failures().into_result(py)?;
                Ok(py.None())
            })))
        })
    }

    /// Flushes for up to `timeout_s`, then stops the driver (GIL released). Records still
    /// unacknowledged then fail. Raises `DeliveryError` for failures no caller received.
    /// Closing twice is harmless.
    fn close(&self, py: Python<'_>, timeout_s: f64) -> PyResult<()> {
        let timeout = crate::admin::secs(timeout_s)?;
        let inner = self.inner.clone();
        let closed = py.detach(move || {
            let p = inner.write().unwrap_or_else(|e| e.into_inner()).take();
            p.map(|p| p.close(timeout)).unwrap_or(Ok(()))
        });
        closed_result(py, closed, self.shared.take_failures())
    }

    /// `close` on the worker thread; resolves `fut`.
    fn close_future(&self, completer: &Completer, fut: Py<PyAny>, timeout_s: f64) -> PyResult<()> {
        let timeout = crate::admin::secs(timeout_s)?;
        let inner = self.inner.clone();
        let shared = self.shared.clone();
        self.worker.run(completer, fut, move || {
            let p = inner.write().unwrap_or_else(|e| e.into_inner()).take();
            let closed = p.map(|p| p.close(timeout)).unwrap_or(Ok(()));
            Ok(Box::new(Build(move |py: Python<'_>| {
                closed_result(py, closed, shared.take_failures())?;
                Ok(py.None())
            })))
        })
    }

    /// Test hook: stops the driver thread as if its I/O backend had failed (`panic`: as
    /// if it had panicked). Sends then raise `ConnectionError` (not retryable).
    #[pyo3(signature = (panic=false))]
    fn debug_stop_driver(&self, panic: bool) {
        if let Some(p) = self
            .inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            p.debug_stop_driver(panic);
        }
    }

    /// Whether `close` has run.
    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Counters: records, bytes, batches, outstanding, failed, ACK latency, driver.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let guard = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let Some(p) = guard.as_ref() else {
            return Ok(d);
        };
        let s = p.stats();
        d.set_item("records_sent", s.records_sent)?;
        d.set_item("bytes_sent", s.bytes_sent)?;
        d.set_item("batches_sealed", s.batches_sealed)?;
        d.set_item("records_outstanding", s.records_outstanding)?;
        d.set_item("bytes_outstanding", s.bytes_outstanding)?;
        d.set_item("records_failed", s.records_failed)?;
        d.set_item("ack_latency_p50_us", s.ack_latency.p50_us)?;
        d.set_item("ack_latency_p99_us", s.ack_latency.p99_us)?;
        d.set_item("backend", s.driver.backend)?;
        Ok(d)
    }
}

/// Records of one `send_batch` queued so far.
#[pyclass(frozen, module = "lnc_uring._native")]
pub(crate) struct BatchSend {
    topic_id: u32,
    tickets: Mutex<Vec<DeliveryTicket>>,
}
