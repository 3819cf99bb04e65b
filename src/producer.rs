//! The blocking producer.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::ConnectionConfig;
use crate::delivery::{DeliverySlot, DeliveryTicket, Gauge, RecordMetadata, SlotPool};
use crate::driver::{Accumulator, Command, Driver, DriverConfig, DriverStats};
use crate::proto::{
    compress_records, encode_key_timestamped, encode_key_value, encode_record, encode_timestamped,
    ingest_header, seal_frame, RecordType, HEADER_LEN, MAX_PAYLOAD_LEN, MAX_VALUE_LEN,
    TLV_HEADER_LEN,
};
use crate::session::{after, Batch, FrameBuf};
use crate::{BufferLimit, Error};

/// What `send` does when the buffer-memory cap is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FullBufferPolicy {
    /// Wait up to this long for acknowledgements to free room, then fail with
    /// [`Error::Backpressure`].
    Block(Duration),
    /// Fail at once with [`Error::Backpressure`].
    Fail,
}

/// Producer settings. The defaults mirror the seed clients (`batch_size` 32768,
/// `linger_ms` 5, no compression, 64 pending ACKs).
///
/// ```
/// use std::time::Duration;
/// use lnc_uring::ProducerConfig;
///
/// let cfg = ProducerConfig::default()
///     .with_batch_size(64 * 1024)
///     .with_linger(Duration::from_millis(1))
///     .with_max_pending_acks(128);
/// assert_eq!(cfg.batch_size, 65_536);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProducerConfig {
    /// A batch is sent when it reaches this many payload bytes. Default 32768.
    pub batch_size: usize,
    /// A batch that is not full is sent this long after its first record. Default 5 ms;
    /// zero sends every record at once (lowest latency).
    pub linger: Duration,
    /// Wrap each batch in an LZ4 compressed-batch record. Default off.
    pub compression: bool,
    /// Most batches sent and not yet acknowledged (the pipelining window). Default 64.
    pub max_pending_acks: usize,
    /// Most bytes accepted and not yet acknowledged. Default 32 MiB.
    pub buffer_memory: usize,
    /// What `send` does when `buffer_memory` is reached. Default: block up to 60 s.
    pub full_buffer: FullBufferPolicy,
    /// Each record is acknowledged or failed within this time. Default 120 s.
    pub delivery_timeout: Duration,
    /// How the connection is made (address, backend, pinning, checksum, auth, …).
    pub connection: ConnectionConfig,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            batch_size: 32 * 1024,
            linger: Duration::from_millis(5),
            compression: false,
            max_pending_acks: 64,
            buffer_memory: 32 * 1024 * 1024,
            full_buffer: FullBufferPolicy::Block(Duration::from_secs(60)),
            delivery_timeout: Duration::from_secs(120),
            connection: ConnectionConfig::default(),
        }
    }
}

impl ProducerConfig {
    /// Sets [`ProducerConfig::batch_size`].
    pub fn with_batch_size(mut self, bytes: usize) -> Self {
        self.batch_size = bytes;
        self
    }
    /// Sets [`ProducerConfig::linger`].
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }
    /// Sets [`ProducerConfig::linger`] in milliseconds, as the seed clients do.
    pub fn with_linger_ms(self, ms: u64) -> Self {
        self.with_linger(Duration::from_millis(ms))
    }
    /// Sets [`ProducerConfig::compression`].
    pub fn with_compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }
    /// Sets [`ProducerConfig::max_pending_acks`].
    pub fn with_max_pending_acks(mut self, n: usize) -> Self {
        self.max_pending_acks = n;
        self
    }
    /// Sets [`ProducerConfig::buffer_memory`].
    pub fn with_buffer_memory(mut self, bytes: usize) -> Self {
        self.buffer_memory = bytes;
        self
    }
    /// Sets [`ProducerConfig::full_buffer`].
    pub fn with_full_buffer(mut self, policy: FullBufferPolicy) -> Self {
        self.full_buffer = policy;
        self
    }
    /// Sets [`ProducerConfig::delivery_timeout`].
    pub fn with_delivery_timeout(mut self, t: Duration) -> Self {
        self.delivery_timeout = t;
        self
    }
    /// Sets [`ProducerConfig::connection`].
    pub fn with_connection(mut self, c: ConnectionConfig) -> Self {
        self.connection = c;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        if self.batch_size == 0 || self.batch_size > MAX_PAYLOAD_LEN as usize {
            return Err(Error::Config(format!(
                "batch_size must be 1..={MAX_PAYLOAD_LEN}, got {}",
                self.batch_size
            )));
        }
        if self.max_pending_acks == 0 {
            return Err(Error::Config("max_pending_acks must be at least 1".into()));
        }
        if self.buffer_memory == 0 {
            return Err(Error::Config("buffer_memory must be at least 1".into()));
        }
        crate::config::check_duration("linger", self.linger)?;
        crate::config::check_duration("delivery_timeout", self.delivery_timeout)?;
        if let FullBufferPolicy::Block(t) = self.full_buffer {
            crate::config::check_duration("full_buffer block time", t)?;
        }
        self.connection.validate()
    }
}

/// One record to send: its type and value (typed layouts are encoded straight into the
/// batch, no temporary buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProduceRecord<'a> {
    /// RawData (0x01).
    Raw(&'a [u8]),
    /// Any type with an opaque value (JSON, MessagePack, user-defined, …).
    Typed(RecordType, &'a [u8]),
    /// KeyValue (0x10).
    KeyValue {
        /// Key, at most 65 535 bytes.
        key: &'a [u8],
        /// Value.
        value: &'a [u8],
    },
    /// Timestamped (0x11).
    Timestamped {
        /// Nanoseconds since the epoch.
        timestamp_ns: u64,
        /// Value.
        value: &'a [u8],
    },
    /// KeyTimestamped (0x12).
    KeyTimestamped {
        /// Nanoseconds since the epoch.
        timestamp_ns: u64,
        /// Key, at most 65 535 bytes.
        key: &'a [u8],
        /// Value.
        value: &'a [u8],
    },
}

impl ProduceRecord<'_> {
    fn value_len(&self) -> usize {
        match *self {
            ProduceRecord::Raw(v) | ProduceRecord::Typed(_, v) => v.len(),
            ProduceRecord::KeyValue { key, value } => 2 + key.len() + value.len(),
            ProduceRecord::Timestamped { value, .. } => 8 + value.len(),
            ProduceRecord::KeyTimestamped { key, value, .. } => 10 + key.len() + value.len(),
        }
    }

    fn encoded_len(&self) -> usize {
        TLV_HEADER_LEN + self.value_len()
    }

    /// Checks what encoding could reject, before anything is buffered.
    fn validate(&self) -> Result<(), Error> {
        let key = match *self {
            ProduceRecord::Typed(t, _) if t == RecordType::COMPRESSED_BATCH => {
                return Err(Error::Config(
                    "record type 0xFE is reserved for compressed batches".into(),
                ))
            }
            ProduceRecord::KeyValue { key, .. } | ProduceRecord::KeyTimestamped { key, .. } => key,
            _ => return Ok(()),
        };
        if key.len() > u16::MAX as usize {
            return Err(Error::InvalidRecord(crate::proto::TlvError::Malformed {
                kind: "KeyValue",
                reason: "key longer than 65535 bytes",
            }));
        }
        Ok(())
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        match *self {
            ProduceRecord::Raw(v) => encode_record(out, RecordType::RAW_DATA, &[v])?,
            ProduceRecord::Typed(t, v) => encode_record(out, t, &[v])?,
            ProduceRecord::KeyValue { key, value } => encode_key_value(out, key, value)?,
            ProduceRecord::Timestamped {
                timestamp_ns,
                value,
            } => encode_timestamped(out, timestamp_ns, value)?,
            ProduceRecord::KeyTimestamped {
                timestamp_ns,
                key,
                value,
            } => encode_key_timestamped(out, timestamp_ns, key, value)?,
        }
        Ok(())
    }
}

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
    /// Batch write → ACK latency as the driver thread saw it.
    pub ack_latency: LatencySummary,
    /// The driver thread's counters (backend, connects, retries, …).
    pub driver: DriverStats,
}

/// A batch being filled for one topic.
#[derive(Debug)]
struct Open {
    /// Frame: 44 bytes of header space, then records (or the uncompressed records when
    /// compression is on; they are compressed into a new frame when sealed). A registered
    /// buffer never grows: a record that does not fit closes the batch first.
    buf: FrameBuf,
    records: u32,
    slot: Arc<DeliverySlot>,
    deadline: Instant,
}

#[derive(Debug)]
struct Accumulators {
    open: HashMap<u32, Open>,
    pool: SlotPool,
    spare: Vec<FrameBuf>,
    /// Earliest linger deadline the driver has been told about.
    notified: Option<Instant>,
}

#[derive(Debug)]
struct Shared {
    cfg: ProducerConfig,
    acc: Mutex<Accumulators>,
    gauge: Arc<Gauge>,
    records_sent: AtomicU64,
    bytes_sent: AtomicU64,
    batches_sealed: AtomicU64,
}

impl Shared {
    /// Seals `open` into a batch. Infallible: if compression fails (it cannot for a
    /// batch under the frame limit), the records go out uncompressed.
    fn seal(&self, topic_id: u32, open: Open, spare: &mut Vec<FrameBuf>) -> Batch {
        let Open {
            mut buf,
            records,
            slot,
            ..
        } = open;
        let bytes = buf.data.len() - HEADER_LEN;
        if self.cfg.compression {
            let mut frame = spare.pop().unwrap_or_else(|| FrameBuf::heap(Vec::new()));
            frame.data.clear();
            frame.data.resize(HEADER_LEN, 0);
            if compress_records(&buf.data[HEADER_LEN..], &mut frame.data).is_ok() {
                buf.data.clear();
                spare.push(buf);
                buf = frame;
            } else {
                spare.push(frame);
            }
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        seal_frame(
            self.cfg.connection.checksum,
            ingest_header(0, ts, records, topic_id),
            &mut buf.data,
        );
        slot.set_size(bytes, records);
        self.batches_sealed.fetch_add(1, Ordering::Relaxed);
        Batch {
            frame: buf,
            records,
            slot,
            deadline: after(Instant::now(), self.cfg.delivery_timeout),
            attempts: 0,
            not_before: None,
        }
    }
}

impl Accumulator for Shared {
    fn expire(&self, now: Instant, sink: &mut dyn FnMut(Batch)) -> Option<Instant> {
        let mut acc = self.acc.lock().unwrap_or_else(|e| e.into_inner());
        let due: Vec<u32> = acc
            .open
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            let open = acc.open.remove(&t).expect("listed above");
            let mut spare = std::mem::take(&mut acc.spare);
            sink(self.seal(t, open, &mut spare));
            acc.spare = spare;
        }
        let next = acc.open.values().map(|o| o.deadline).min();
        acc.notified = next;
        next
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
    driver: Driver,
    closed: AtomicBool,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("addrs", &self.shared.cfg.connection.addrs)
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
        let gauge = Arc::new(Gauge::default());
        let shared = Arc::new(Shared {
            acc: Mutex::new(Accumulators {
                open: HashMap::new(),
                pool: SlotPool::with_gauge(gauge.clone()),
                spare: Vec::new(),
                notified: None,
            }),
            gauge,
            records_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            batches_sealed: AtomicU64::new(0),
            cfg,
        });
        let mut dcfg: DriverConfig = shared.cfg.connection.driver_config("lnc-producer");
        dcfg.session.max_inflight = shared.cfg.max_pending_acks;
        // Registered send buffers: enough for the window plus the open batches, each a
        // batch plus room for the record that closes it.
        // Pinned memory is capped at 64 MiB; batches over 4 MiB use heap memory.
        let size = (HEADER_LEN + shared.cfg.batch_size + 16 * 1024).next_multiple_of(4096);
        let count = if size > 4 << 20 {
            0
        } else {
            (shared.cfg.max_pending_acks + 16).min((64 << 20) / size)
        };
        dcfg.send_buffers = (count, size);
        dcfg.accumulator = Some(shared.clone());
        let driver = Driver::spawn(dcfg)?;
        Ok(Producer {
            shared,
            driver,
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
    /// Fails immediately (and nothing is sent) for a closed producer, a record that no
    /// frame can carry, or a full buffer under [`FullBufferPolicy::Fail`].
    pub fn send_record_async(
        &self,
        topic_id: u32,
        record: ProduceRecord<'_>,
    ) -> Result<DeliveryTicket, Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let cfg = &self.shared.cfg;
        record.validate()?;
        let size = record.encoded_len();
        if record.value_len() > MAX_VALUE_LEN || size > MAX_PAYLOAD_LEN as usize {
            return Err(Error::RecordTooLarge {
                size,
                max: MAX_PAYLOAD_LEN as usize - TLV_HEADER_LEN,
            });
        }
        let gauge = &self.shared.gauge;
        let room = match cfg.full_buffer {
            FullBufferPolicy::Fail => gauge.try_acquire(size, cfg.buffer_memory),
            FullBufferPolicy::Block(t) => {
                gauge.acquire(size, cfg.buffer_memory, after(Instant::now(), t))
            }
        };
        if !room {
            return Err(Error::Backpressure(BufferLimit::Memory {
                max_bytes: cfg.buffer_memory,
            }));
        }

        let mut sealed: [Option<Batch>; 2] = [None, None];
        let mut linger_at = None;
        let ticket;
        {
            let mut guard = self.shared.acc.lock().unwrap_or_else(|e| e.into_inner());
            let acc = &mut *guard;
            // A record that does not fit closes the open batch first: over the frame
            // limit, or over a registered buffer's capacity (which must not grow).
            if let Some(open) = acc.open.get(&topic_id) {
                let len = open.buf.data.len() - HEADER_LEN;
                let over_fixed = open.buf.reg.is_some()
                    && open.buf.data.len() + size > open.buf.data.capacity()
                    && open.records > 0;
                if len + size > MAX_PAYLOAD_LEN as usize || over_fixed {
                    let open = acc.open.remove(&topic_id).expect("present");
                    sealed[0] = Some(self.shared.seal(topic_id, open, &mut acc.spare));
                }
            }
            let open = match acc.open.entry(topic_id) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let mut buf = self
                        .driver
                        .recycled_buffer()
                        .or_else(|| acc.spare.pop())
                        .unwrap_or_else(|| {
                            FrameBuf::heap(Vec::with_capacity(HEADER_LEN + cfg.batch_size + 64))
                        });
                    buf.data.clear();
                    buf.data.resize(HEADER_LEN, 0);
                    let deadline = after(Instant::now(), cfg.linger);
                    if acc.notified.is_none_or(|n| deadline < n) && !cfg.linger.is_zero() {
                        acc.notified = Some(deadline);
                        linger_at = Some(deadline);
                    }
                    v.insert(Open {
                        buf,
                        records: 0,
                        slot: acc.pool.take(topic_id),
                        deadline,
                    })
                }
            };
            if open.buf.reg.is_some() && open.buf.data.len() + size > open.buf.data.capacity() {
                // Even an empty registered buffer is too small: use heap memory for
                // this batch and keep the registered one for later.
                let mut heap = Vec::with_capacity(HEADER_LEN + size.max(cfg.batch_size));
                heap.extend_from_slice(&open.buf.data);
                let fixed = std::mem::replace(&mut open.buf, FrameBuf::heap(heap));
                acc.spare.push(fixed);
            }
            if let Err(e) = record.encode(&mut open.buf.data) {
                // `validate` makes this unreachable; still, leave nothing behind.
                gauge.unacquire(size);
                drop(guard);
                if let Some(at) = linger_at {
                    self.driver.submit(Command::Linger(at))?;
                }
                return Err(e);
            }
            ticket = DeliveryTicket::new(open.slot.clone(), open.records, cfg.connection.spin);
            open.records += 1;
            if open.buf.data.len() - HEADER_LEN >= cfg.batch_size || cfg.linger.is_zero() {
                let open = acc.open.remove(&topic_id).expect("present");
                sealed[1] = Some(self.shared.seal(topic_id, open, &mut acc.spare));
            }
        }
        self.shared.records_sent.fetch_add(1, Ordering::Relaxed);
        self.shared
            .bytes_sent
            .fetch_add(size as u64, Ordering::Relaxed);
        for b in sealed.into_iter().flatten() {
            self.driver.submit(Command::Batch(b))?;
        }
        if let Some(at) = linger_at {
            self.driver.submit(Command::Linger(at))?;
        }
        Ok(ticket)
    }

    /// Sends every open batch now and waits until every record accepted so far is
    /// acknowledged or failed. On timeout, fails with [`Error::Timeout`] naming how many
    /// records are still unacknowledged (they stay in flight).
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        self.flush_deadline(after(Instant::now(), timeout))
    }

    fn flush_deadline(&self, deadline: Instant) -> Result<(), Error> {
        self.seal_all()?;
        let left = self.shared.gauge.wait_empty(deadline);
        if left > 0 {
            return Err(Error::Timeout(format!(
                "flush: {left} records still unacknowledged"
            )));
        }
        Ok(())
    }

    fn seal_all(&self) -> Result<(), Error> {
        let batches: Vec<Batch> = {
            let mut acc = self.shared.acc.lock().unwrap_or_else(|e| e.into_inner());
            let acc = &mut *acc;
            let topics: Vec<u32> = acc.open.keys().copied().collect();
            let mut out = Vec::with_capacity(topics.len());
            for t in topics {
                let open = acc.open.remove(&t).expect("listed");
                out.push(self.shared.seal(t, open, &mut acc.spare));
            }
            out
        };
        for b in batches {
            self.driver.submit(Command::Batch(b))?;
        }
        Ok(())
    }

    /// Flushes, then stops the driver thread. Records still unacknowledged at the
    /// deadline fail with [`Error::Closed`]; their number is reported in the error.
    pub fn close(self, timeout: Duration) -> Result<(), Error> {
        self.close_inner(after(Instant::now(), timeout))
    }

    fn close_inner(&self, deadline: Instant) -> Result<(), Error> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let flushed = self.flush_deadline(deadline);
        let left = self.shared.gauge.records();
        self.driver.shutdown(deadline);
        match flushed {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::Timeout(format!(
                "close: {left} records were not acknowledged and have failed"
            ))),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ProducerStats {
        let s = &self.shared;
        ProducerStats {
            records_sent: s.records_sent.load(Ordering::Relaxed),
            bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
            batches_sealed: s.batches_sealed.load(Ordering::Relaxed),
            records_outstanding: s.gauge.records(),
            bytes_outstanding: s.gauge.bytes() as u64,
            records_failed: s.gauge.failed(),
            ack_latency: LatencySummary::of(&self.driver.ack_latency()),
            driver: self.driver.stats(),
        }
    }

    /// The first record failure since the producer started (useful when tickets were
    /// dropped; [`ProducerStats::records_failed`] counts them all).
    pub fn first_failure(&self) -> Option<Error> {
        self.shared.gauge.first_failure()
    }

    /// Why the last connection was dropped, if one was (for logs).
    pub fn last_error(&self) -> Option<String> {
        self.driver.last_error()
    }
}

impl Drop for Producer {
    /// Flushes for up to the delivery timeout, then stops. Records that could not be
    /// delivered fail (their tickets report it); if any were left, a warning with the
    /// count is written to standard error, so nothing is lost silently.
    fn drop(&mut self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let deadline = after(Instant::now(), self.shared.cfg.delivery_timeout);
        if let Err(e) = self.close_inner(deadline) {
            eprintln!("lnc-uring: producer dropped: {e}");
        }
    }
}
