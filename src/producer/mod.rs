//! The blocking producer.
//!
//! * [`config`]: settings; [`record`]: what a record is and how it is encoded;
//! * `lane`: per-topic batches being filled, each behind its own lock;
//! * `writer`: [`TopicWriter`], a batch owned by one thread (no lock);
//! * `ledger`: outstanding records, failures and the batch sequence `flush` waits on;
//! * [`crate::buffers`]: the fixed-capacity batch buffers and their memory budget.

pub(crate) mod config;
mod lane;
pub(crate) mod ledger;
mod record;
mod route;
mod writer;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use config::{FullBufferPolicy, ProducerConfig};
pub use record::ProduceRecord;
pub use writer::TopicWriter;

use crate::buffers::{BufferPool, FrameBuf};
use crate::delivery::{DeliveryTicket, RecordMetadata};
use crate::driver::{Accumulator, Driver, DriverConfig, DriverStats};
use crate::proto::HEADER_LEN;
use crate::session::{after, Batch};
use crate::{BufferLimit, Error};
pub(crate) use lane::Lingering;
use lane::{block_time, buffer_capacity, LaneCtx, Lanes, NeedBuffer, Outbox};
use ledger::Ledger;
use route::Connections;

/// Percentiles of a latency distribution, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl LatencySummary {
    pub(crate) fn of(h: &hdrhistogram::Histogram<u64>) -> LatencySummary {
        LatencySummary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// A snapshot of a producer's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerStats {
    /// Records accepted by `send*`.
    pub records_sent: u64,
    /// Record bytes accepted (TLV-encoded).
    pub bytes_sent: u64,
    /// Batches sealed and handed to the driver.
    pub batches_sealed: u64,
    /// Records accepted and not yet acknowledged or failed.
    pub records_outstanding: u64,
    /// Bytes accepted and not yet acknowledged or failed.
    pub bytes_outstanding: u64,
    /// Records that failed.
    pub records_failed: u64,
    /// Memory held by batch buffers (pooled and oversized), at most about
    /// [`ProducerConfig::buffer_memory`].
    pub buffer_memory_used: u64,
    /// Batch write → ACK latency as the driver thread saw it.
    pub ack_latency: LatencySummary,
    /// The driver thread's counters (backend, connects, retries, …).
    pub driver: DriverStats,
}

/// What the producer's lanes and its driver share.
#[derive(Debug)]
struct Shared {
    ctx: LaneCtx,
    lanes: Lanes,
}

impl Accumulator for Shared {
    fn linger_expired(&self, topic_id: u32, gen: u64) -> Lingering {
        match self.lanes.existing(topic_id) {
            Some(lane) => lane.linger_expired(&self.ctx, gen),
            None => Lingering::Idle,
        }
    }

    fn drain(&self, sink: &mut dyn FnMut(Batch)) {
        self.lanes.for_each(|lane| lane.seal_open(&self.ctx, sink));
    }
}

/// A blocking, thread-safe producer: one driver thread (io_uring or `poll`) owns the
/// connection; any number of threads call `send*`.
///
/// Records are TLV-encoded into per-topic batches (never over the server's 16 MiB frame
/// limit); a batch is sent when it reaches `batch_size`, after `linger`, or on `flush`.
/// Up to `max_pending_acks` batches are in flight at once, and ACKs are matched by the
/// server's real rules (errors without batch ids, replies overtaking ACKs, dropped ACK
/// tails after a quorum failure). Every record gets exactly one outcome: acknowledged, or
/// a typed error.
///
/// Delivery is **at-least-once**: after a lost connection or a retryable error, batches
/// without an ACK are resent and the server may store them twice (it does not
/// deduplicate batch ids).
///
/// ```
/// use lnc_uring::{testkit::TestServer, Producer, ProducerConfig};
///
/// let server = TestServer::start()?;
/// let topic = server.create_topic("orders");
/// let producer = Producer::connect(&server.addr().to_string(), ProducerConfig::default())?;
/// let meta = producer.send(topic, b"hello")?;
/// assert_eq!(meta.topic_id, topic);
/// producer.close(std::time::Duration::from_secs(5))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Producer {
    shared: Arc<Shared>,
    conns: Connections,
    closed: AtomicBool,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("addrs", &self.shared.ctx.cfg.connection.addrs)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Producer {
    /// Connects to `addr` (`host:port`, `ip:port` or `[v6]:port`) and starts the driver
    /// thread. Fails when the server cannot be reached.
    pub fn connect(addr: &str, mut cfg: ProducerConfig) -> Result<Producer, Error> {
        cfg.connection.addrs = vec![addr.to_owned()];
        Producer::with_config(cfg)
    }

    /// Starts a producer for the addresses in `cfg.connection`.
    pub fn with_config(cfg: ProducerConfig) -> Result<Producer, Error> {
        cfg.validate()?;
        let cap = buffer_capacity(cfg.batch_size);
        // The working set up front (the window and a few open batches); more only when
        // batches queue up behind a slow server.
        let pool = BufferPool::new(cap, cfg.buffer_memory, cfg.max_pending_acks + 16);
        // Unresolved batches are bounded by the buffers the budget allows (pooled and
        // oversized, with a compression spare each).
        let max_batches = 2 * (cfg.buffer_memory / cap + 2) + 64;
        let ledger = Arc::new(Ledger::new(max_batches));
        // Slots per topic: the batches one topic usually has unresolved (the window, or
        // all the buffers the budget allows), plus a few in transition.
        let slots = (cfg.buffer_memory / cap + 1).min(2 * cfg.max_pending_acks) + 16;
        let shared = Arc::new(Shared {
            lanes: Lanes::new(ledger.clone(), slots),
            ctx: LaneCtx {
                idle: cfg.connection.effective_idle(),
                pool,
                ledger,
                batches_sealed: AtomicU64::new(0),
                records_sealed: AtomicU64::new(0),
                bytes_sealed: AtomicU64::new(0),
                cfg,
            },
        });
        let cfg = &shared.ctx.cfg;
        let mut dcfg: DriverConfig = cfg.connection.driver_config("lnc-producer");
        dcfg.session.max_inflight = cfg.max_pending_acks;
        dcfg.session.max_attempts = cfg.max_retries.saturating_add(1);
        dcfg.session.max_batches = max_batches;
        // A producer receives ACKs (44 bytes each) and the odd control reply.
        dcfg.recv_buffers = (16, 16 * 1024);
        dcfg.accumulator = Some(shared.clone());
        let mut drivers = Vec::with_capacity(cfg.connections);
        for i in 0..cfg.connections {
            let mut d = dcfg.clone();
            if cfg.connections > 1 {
                // Striped: each connection on a ring of its own, pinned as asked.
                d.name = format!("lnc-producer-{i}");
                d.own_ring.name = d.name.clone();
                if !cfg.pin_cpus.is_empty() {
                    d.own_ring.pin_cpu = Some(cfg.pin_cpus[i % cfg.pin_cpus.len()]);
                }
                if d.ring.is_some() && i > 0 {
                    d.ring = None;
                }
            }
            drivers.push(Driver::spawn(d)?);
        }
        Ok(Producer {
            conns: Connections::new(drivers, cfg.spread),
            shared,
            closed: AtomicBool::new(false),
        })
    }

    /// Sends one RawData record and blocks until it is acknowledged (or fails).
    pub fn send(&self, topic_id: u32, value: &[u8]) -> Result<RecordMetadata, Error> {
        self.send_record_async(topic_id, ProduceRecord::Raw(value))?
            .wait()
    }

    /// Sends one RawData record; returns at once with a ticket for its outcome.
    pub fn send_async(&self, topic_id: u32, value: &[u8]) -> Result<DeliveryTicket, Error> {
        self.send_record_async(topic_id, ProduceRecord::Raw(value))
    }

    /// Sends one typed record and blocks until it is acknowledged (or fails).
    pub fn send_record(
        &self,
        topic_id: u32,
        record: ProduceRecord<'_>,
    ) -> Result<RecordMetadata, Error> {
        self.send_record_async(topic_id, record)?.wait()
    }

    /// Sends records, in order, and blocks until every one is acknowledged; returns the
    /// first failure.
    pub fn send_batch(
        &self,
        topic_id: u32,
        records: &[ProduceRecord<'_>],
    ) -> Result<Vec<RecordMetadata>, Error> {
        let tickets = records
            .iter()
            .map(|r| self.send_record_async(topic_id, *r))
            .collect::<Result<Vec<_>, _>>()?;
        tickets.into_iter().map(DeliveryTicket::wait).collect()
    }

    /// Sends one typed record; returns at once with a ticket for its outcome.
    ///
    /// Fails immediately (and nothing is sent) for a closed producer, a producer whose
    /// driver thread has stopped, a record that no frame can carry, or a full buffer
    /// under [`FullBufferPolicy::Fail`] (or after the blocking time).
    pub fn send_record_async(
        &self,
        topic_id: u32,
        record: ProduceRecord<'_>,
    ) -> Result<DeliveryTicket, Error> {
        self.append(topic_id, &record, true)
            .map(|t| t.expect("a ticket was asked for"))
    }

    /// Sends one typed record without a ticket: the cheapest way to send. Its outcome
    /// is reported by the next [`Producer::flush`] or [`Producer::close`] (as
    /// [`Error::DeliveryFailed`] if it failed), and counted in [`Producer::stats`].
    /// Fails immediately as [`Producer::send_record_async`] does.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lnc_uring::{testkit::TestServer, ProduceRecord, Producer, ProducerConfig};
    ///
    /// let server = TestServer::start()?;
    /// let topic = server.create_topic("ticks");
    /// let producer = Producer::connect(&server.addr().to_string(), ProducerConfig::default())?;
    /// for i in 0..1000u32 {
    ///     producer.produce(topic, ProduceRecord::Raw(&i.to_le_bytes()))?;
    /// }
    /// producer.flush(Duration::from_secs(5))?; // every one acknowledged, or an error
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn produce(&self, topic_id: u32, record: ProduceRecord<'_>) -> Result<(), Error> {
        self.append(topic_id, &record, false).map(drop)
    }

    /// Sends many records of one topic, in order, taking the topic's lock once per batch
    /// rather than once per record; no tickets (outcomes as for [`Producer::produce`]).
    /// Returns how many were accepted: all, unless an error (a full buffer, a closed
    /// producer) stopped it — then the error, and the records before it stay accepted.
    pub fn produce_many(&self, topic_id: u32, records: &[ProduceRecord<'_>]) -> Result<(), Error> {
        self.check_open()?;
        for r in records {
            r.validate()?;
        }
        let lane = self.shared.lanes.get(topic_id);
        let ctx = &self.shared.ctx;
        let mut fresh: Option<FrameBuf> = None;
        let mut rest = records;
        let sink = |b| self.conns.submit_batch(topic_id, b);
        while !rest.is_empty() {
            let mut out = Outbox::new(&sink);
            let step = lane.lock().append_many(ctx, rest, &mut fresh, &mut out);
            self.submit_linger(out.linger);
            match step {
                Ok(n) => rest = &rest[n..],
                Err((n, NeedBuffer)) => {
                    rest = &rest[n..];
                    fresh = Some(self.acquire(rest[0].encoded_len())?);
                }
            }
            self.check_open()?;
        }
        Ok(())
    }

    /// Writes a RawData record of `len` bytes in place: `write` gets the record's value
    /// bytes inside the topic's current batch buffer (no copy of the value), and the
    /// record is committed when it returns (Aeron's `tryClaim`, as a closure). The
    /// topic's batch is locked while `write` runs, so keep it short; if it panics, the
    /// record is abandoned. Returns a ticket for the outcome.
    ///
    /// ```
    /// use lnc_uring::{testkit::TestServer, Producer, ProducerConfig};
    ///
    /// let server = TestServer::start()?;
    /// let topic = server.create_topic("quotes");
    /// let producer = Producer::connect(&server.addr().to_string(), ProducerConfig::default())?;
    /// let ticket = producer.claim(topic, 16, |value| {
    ///     value[..8].copy_from_slice(&42u64.to_le_bytes()); // price
    ///     value[8..].copy_from_slice(&7u64.to_le_bytes()); // size
    /// })?;
    /// assert_eq!(ticket.wait()?.topic_id, topic);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn claim(
        &self,
        topic_id: u32,
        len: usize,
        write: impl FnOnce(&mut [u8]),
    ) -> Result<DeliveryTicket, Error> {
        self.claim_inner(topic_id, len, write, true)
            .map(|t| t.expect("a ticket was asked for"))
    }

    /// [`Producer::claim`] without a ticket (outcome as for [`Producer::produce`]).
    pub fn claim_nowait(
        &self,
        topic_id: u32,
        len: usize,
        write: impl FnOnce(&mut [u8]),
    ) -> Result<(), Error> {
        self.claim_inner(topic_id, len, write, false).map(drop)
    }

    fn claim_inner(
        &self,
        topic_id: u32,
        len: usize,
        write: impl FnOnce(&mut [u8]),
        ticket: bool,
    ) -> Result<Option<DeliveryTicket>, Error> {
        self.check_open()?;
        let size = claim_size(len)?;
        let lane = self.shared.lanes.get(topic_id);
        let ctx = &self.shared.ctx;
        let mut fresh: Option<FrameBuf> = None;
        let sink = |b| self.conns.submit_batch(topic_id, b);
        loop {
            let mut out = Outbox::new(&sink);
            match lane.claim(ctx, len, &mut fresh, &mut out) {
                Ok(mut guard) => {
                    write(guard.value());
                    let t = guard.commit(ctx, ticket, &mut out);
                    self.submit_linger(out.linger);
                    self.check_open()?;
                    return Ok(t);
                }
                Err(NeedBuffer) => {
                    self.submit_linger(out.linger);
                    fresh = Some(self.acquire(size)?);
                    self.check_open()?;
                }
            }
        }
    }

    /// The common path of every send: one lane lock, one copy.
    fn append(
        &self,
        topic_id: u32,
        record: &ProduceRecord<'_>,
        ticket: bool,
    ) -> Result<Option<DeliveryTicket>, Error> {
        self.check_open()?;
        record.validate()?;
        let size = record.encoded_len();
        let lane = self.shared.lanes.get(topic_id);
        let mut fresh: Option<FrameBuf> = None;
        let sink = |b| self.conns.submit_batch(topic_id, b);
        loop {
            let mut out = Outbox::new(&sink);
            let step =
                lane.lock()
                    .append(&self.shared.ctx, record, size, ticket, &mut fresh, &mut out);
            if out.linger.is_some() {
                self.submit_linger(out.linger);
            }
            if out.sealed > 0 {
                // A driver that stopped meanwhile failed the batch; say so now.
                self.check_open()?;
            }
            match step {
                Ok(t) => return Ok(t),
                Err(NeedBuffer) => {
                    fresh = Some(self.acquire(size)?);
                    self.check_open()?;
                }
            }
        }
    }

    /// Fails when the producer is closed or its driver thread has stopped.
    #[inline]
    fn check_open(&self) -> Result<(), Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        match self.conns.stopped() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A buffer for a record of `size` bytes, waiting as the full-buffer policy says.
    fn acquire(&self, size: usize) -> Result<FrameBuf, Error> {
        let pool = &self.shared.ctx.pool;
        let deadline =
            block_time(self.shared.ctx.cfg.full_buffer).map(|t| after(Instant::now(), t));
        let buf = if HEADER_LEN + size > pool.capacity() {
            pool.take_oversized(HEADER_LEN + size, deadline)
        } else {
            pool.take_until(deadline)
        };
        buf.ok_or_else(|| self.full_error())
    }

    /// Why there is no room: the server is not taking data, or is unreachable.
    fn full_error(&self) -> Error {
        if let Some(e) = self.conns.stopped() {
            return e;
        }
        if !self.conns.any_connected() {
            if let Some(last) = self.conns.last_error() {
                return Error::Unreachable { last_error: last };
            }
        }
        Error::Backpressure(BufferLimit::Memory {
            max_bytes: self.shared.ctx.cfg.buffer_memory,
        })
    }

    /// Hands a linger timer to the driver (woken only if it would sleep past it).
    fn submit_linger(&self, linger: Option<(Instant, u32, u64)>) {
        if let Some((at, topic_id, gen)) = linger {
            self.conns.linger(at, topic_id, gen);
        }
    }

    /// Sends every open batch now and waits until every record accepted before the call
    /// is acknowledged or failed (records sent meanwhile by other threads do not hold it
    /// up).
    ///
    /// Fails with [`Error::Timeout`] naming how many of those records are still
    /// unacknowledged (they stay in flight), or with [`Error::DeliveryFailed`] when some
    /// of them failed: how many, and the first cause. Each failure is reported by one
    /// `flush` or `close` (the first that covers it); tickets report every record.
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        self.flush_deadline(after(Instant::now(), timeout))
    }

    fn flush_deadline(&self, deadline: Instant) -> Result<(), Error> {
        self.seal_all();
        let ledger = &self.shared.ctx.ledger;
        let cut = ledger.next_seq();
        let left = ledger.wait_resolved(cut, deadline);
        if left > 0 {
            return Err(Error::Timeout(format!(
                "flush: {left} records accepted before the call are still unacknowledged"
            )));
        }
        match ledger.take_failures(cut) {
            Some(r) => Err(Error::DeliveryFailed {
                failed: r.records,
                first: Box::new(r.first),
            }),
            None => Ok(()),
        }
    }

    /// Ends lingering now: every open batch is sealed and handed to the driver. Returns
    /// at once (it does not wait for acknowledgements; [`Producer::flush`] does).
    pub fn seal_batches(&self) {
        self.seal_all();
    }

    fn seal_all(&self) {
        let ctx = &self.shared.ctx;
        self.shared.lanes.for_each(|lane| {
            let topic_id = lane.topic_id();
            lane.seal_open(ctx, &mut |b| self.conns.submit_batch(topic_id, b))
        });
    }

    /// Flushes, then stops the driver thread. Records still unacknowledged at the
    /// deadline fail (with [`Error::OutcomeUnknown`] when they were sent and may have been
    /// stored). Returns [`Error::DeliveryFailed`] when any record accepted before the call
    /// failed and was not reported by an earlier `flush`.
    pub fn close(self, timeout: Duration) -> Result<(), Error> {
        self.close_inner(after(Instant::now(), timeout))
    }

    fn close_inner(&self, deadline: Instant) -> Result<(), Error> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let flushed = self.flush_deadline(deadline);
        self.conns.shutdown(deadline);
        // Every record accepted has an outcome now.
        let failed = self.shared.ctx.ledger.take_failures(u64::MAX);
        match (flushed, failed) {
            (Err(Error::DeliveryFailed { failed: a, first }), Some(r)) => {
                Err(Error::DeliveryFailed {
                    failed: a + r.records,
                    first,
                })
            }
            (Err(e @ Error::DeliveryFailed { .. }), None) => Err(e),
            (_, Some(r)) => Err(Error::DeliveryFailed {
                failed: r.records,
                first: Box::new(r.first),
            }),
            (_, None) => Ok(()),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ProducerStats {
        let ctx = &self.shared.ctx;
        let (mut open_records, mut open_bytes) = (0, 0);
        self.shared.lanes.for_each(|l| {
            let (r, b) = l.open_size();
            open_records += r;
            open_bytes += b;
        });
        ProducerStats {
            records_sent: ctx.records_sealed.load(Ordering::Relaxed) + open_records,
            bytes_sent: ctx.bytes_sealed.load(Ordering::Relaxed) + open_bytes,
            batches_sealed: ctx.batches_sealed.load(Ordering::Relaxed),
            records_outstanding: ctx.ledger.records() + open_records,
            bytes_outstanding: ctx.ledger.bytes() + open_bytes,
            records_failed: ctx.ledger.failed(),
            buffer_memory_used: ctx.pool.used() as u64,
            ack_latency: LatencySummary::of(&self.conns.ack_latency()),
            driver: self.conns.stats(),
        }
    }

    /// The first record failure since the producer started (useful when tickets were
    /// dropped; [`ProducerStats::records_failed`] counts them all).
    pub fn first_failure(&self) -> Option<Error> {
        self.shared.ctx.ledger.first_failure()
    }

    /// The counters of each connection (one per [`ProducerConfig::connections`]).
    pub fn connection_stats(&self) -> Vec<DriverStats> {
        self.conns.each_stats()
    }

    /// Why the last connection was dropped, if one was (for logs).
    pub fn last_error(&self) -> Option<String> {
        self.conns.last_error()
    }

    #[doc(hidden)]
    /// Test hook: makes the driver thread stop as if its I/O backend had failed (or, with
    /// `panic`, as if it had panicked).
    pub fn debug_stop_driver(&self, panic: bool) {
        self.conns.debug_stop(panic);
    }
}

/// The encoded size of a claimed record of `len` value bytes, if a frame can carry it.
fn claim_size(len: usize) -> Result<usize, Error> {
    let size = crate::proto::TLV_HEADER_LEN.saturating_add(len);
    if size > crate::proto::MAX_PAYLOAD_LEN as usize {
        return Err(Error::RecordTooLarge {
            size,
            max: crate::proto::MAX_PAYLOAD_LEN as usize,
        });
    }
    Ok(size)
}

impl Drop for Producer {
    /// Closes with [`ProducerConfig::drop_timeout`]: records not acknowledged by then
    /// fail (their tickets report it), and what was not delivered is reported through
    /// `log::warn!` and on standard error, so nothing is lost silently.
    fn drop(&mut self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let deadline = after(Instant::now(), self.shared.ctx.cfg.drop_timeout);
        if let Err(e) = self.close_inner(deadline) {
            log::warn!("producer dropped without close: {e}");
            eprintln!("lnc-uring: producer dropped without close: {e}");
        }
    }
}
