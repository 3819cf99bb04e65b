//! The blocking consumer.
//!
//! Fetch returns raw byte ranges of the topic's log, which can begin and end inside a
//! record (docs/protocol.md §7.3–7.6). The consumer keeps the cut tail and completes it with
//! the next fetch, so it only ever delivers whole records, and its position — and every
//! offset it commits — is a record boundary.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::ConnectionConfig;
use crate::driver::{Driver, DriverStats};
use crate::offset::{consumer_id, OffsetStore};
use crate::proto::{
    complete_prefix, parse_topic_list, ExpandedRecords, FetchRequest, Request, SubscribeRequest,
    TlvError, MAX_PAYLOAD_LEN, MAX_VALUE_LEN,
};
use crate::request::{unexpected, PendingReply};
use crate::session::{after, BufPool, Reply};
use crate::Error;

/// Where a consumer starts, or seeks to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SeekPosition {
    /// Offset 0.
    #[default]
    Beginning,
    /// The end of the log at the time of the seek (resolved with the `u64::MAX` tail
    /// sentinel): only records produced afterwards are read.
    End,
    /// A byte offset. It must be a record boundary: 0, or an offset this consumer (or
    /// another one) reached or committed.
    Offset(u64),
}

/// A topic named by id or by name (a name is resolved with ListTopics at start).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicRef {
    /// By id.
    Id(u32),
    /// By name.
    Name(String),
}

/// Consumer settings. Defaults mirror the seed clients: `max_fetch_bytes` 65536, start at
/// offset 0, `poll_interval` 50 ms (here the ceiling of the tailing back-off, not a fixed
/// wait), auto-commit every 5 s.
///
/// ```
/// use std::time::Duration;
/// use lnc_uring::{ConsumerConfig, SeekPosition};
///
/// let cfg = ConsumerConfig::new("billing", 3)
///     .with_max_fetch_bytes(1 << 20)
///     .with_start(SeekPosition::End)
///     .with_auto_commit(Some(Duration::from_secs(1)));
/// assert_eq!(cfg.max_fetch_bytes, 1 << 20);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// The consumer's name: the key of its committed offsets, and (hashed with
    /// [`crate::consumer_id`]) its id on the server.
    pub consumer_name: String,
    /// The topic.
    pub topic: TopicRef,
    /// Most bytes per fetch. Default 65536. Records longer than this are assembled from
    /// several fetches.
    pub max_fetch_bytes: u32,
    /// Where to start when no committed offset is stored. Default: the beginning.
    pub start: SeekPosition,
    /// The longest wait between fetches that find nothing new: the ceiling of the
    /// tailing back-off of [`StandaloneConsumer::poll_timeout`]. Once caught up, the
    /// consumer fetches again 50 µs after the first empty fetch and doubles the wait
    /// after each further one, up to this interval; a fetch that brings data resets it
    /// to 50 µs. So a consumer keeping up with a steady stream reads a record within
    /// about the gap since the previous one (well under a millisecond at 1,000 records
    /// a second), while an idle one sends at most one fetch per interval once the back-off
    /// has grown (with the default: about 30 fetches in its first idle second, 20 a
    /// second after that). The first record after an idle spell can wait up to this
    /// long. Default 50 ms.
    pub poll_interval: Duration,
    /// Commit automatically this often, checked on each poll: what the caller has had
    /// the chance to process, i.e. every record returned by the polls *before* the
    /// current one (as Kafka does). [`StandaloneConsumer::close`] commits everything
    /// returned; dropping the consumer commits what was returned before the latest poll,
    /// and nothing while the thread panics. `None`: only explicit commits. Default 5 s.
    pub auto_commit: Option<Duration>,
    /// Where committed offsets are kept. Default: none (in memory only for this consumer).
    pub offset_store: Option<Arc<dyn OffsetStore>>,
    /// Streaming mode: Subscribe at start, CommitOffset on each commit, Unsubscribe at
    /// close, so the server tracks the consumer (it pushes nothing; data is still
    /// fetched). The server keeps this in memory only. Default off.
    pub server_tracking: bool,
    /// How the connection is made.
    pub connection: ConnectionConfig,
}

impl ConsumerConfig {
    /// A consumer named `consumer_name` of topic `topic_id`.
    pub fn new(consumer_name: impl Into<String>, topic_id: u32) -> Self {
        ConsumerConfig::for_topic(consumer_name, TopicRef::Id(topic_id))
    }

    /// A consumer of the topic named `topic_name`.
    pub fn with_topic_name(
        consumer_name: impl Into<String>,
        topic_name: impl Into<String>,
    ) -> Self {
        ConsumerConfig::for_topic(consumer_name, TopicRef::Name(topic_name.into()))
    }

    fn for_topic(consumer_name: impl Into<String>, topic: TopicRef) -> Self {
        ConsumerConfig {
            consumer_name: consumer_name.into(),
            topic,
            max_fetch_bytes: 64 * 1024,
            start: SeekPosition::Beginning,
            poll_interval: Duration::from_millis(50),
            auto_commit: Some(Duration::from_secs(5)),
            offset_store: None,
            server_tracking: false,
            connection: ConnectionConfig::default(),
        }
    }

    /// Sets [`ConsumerConfig::max_fetch_bytes`].
    pub fn with_max_fetch_bytes(mut self, n: u32) -> Self {
        self.max_fetch_bytes = n;
        self
    }
    /// Sets [`ConsumerConfig::start`].
    pub fn with_start(mut self, p: SeekPosition) -> Self {
        self.start = p;
        self
    }
    /// Sets [`ConsumerConfig::poll_interval`].
    pub fn with_poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }
    /// Sets [`ConsumerConfig::auto_commit`].
    pub fn with_auto_commit(mut self, every: Option<Duration>) -> Self {
        self.auto_commit = every;
        self
    }
    /// Sets [`ConsumerConfig::offset_store`].
    pub fn with_offset_store(mut self, store: Arc<dyn OffsetStore>) -> Self {
        self.offset_store = Some(store);
        self
    }
    /// Sets [`ConsumerConfig::server_tracking`].
    pub fn with_server_tracking(mut self, on: bool) -> Self {
        self.server_tracking = on;
        self
    }
    /// Sets [`ConsumerConfig::connection`].
    pub fn with_connection(mut self, c: ConnectionConfig) -> Self {
        self.connection = c;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        // A fetch reply is 16 bytes of prefix plus data, in one frame of at most 16 MiB.
        if self.max_fetch_bytes == 0 || self.max_fetch_bytes > MAX_PAYLOAD_LEN - 16 {
            return Err(Error::Config(format!(
                "max_fetch_bytes must be 1..={}, got {}",
                MAX_PAYLOAD_LEN - 16,
                self.max_fetch_bytes
            )));
        }
        crate::config::check_duration("poll_interval", self.poll_interval)?;
        if let Some(d) = self.auto_commit {
            crate::config::check_duration("auto_commit", d)?;
        }
        self.connection.validate()
    }
}

/// Whole records read by one poll, borrowed from one buffer.
///
/// `start_offset..end_offset` is the byte range of the log they occupy; both are record
/// boundaries. Compressed-batch records are expanded by [`PollResult::records`].
pub struct PollResult {
    buf: Vec<u8>,
    scratch: Vec<u8>,
    pool: Arc<BufPool>,
    start_offset: u64,
    end_offset: u64,
    lag: u64,
}

impl fmt::Debug for PollResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollResult")
            .field("start_offset", &self.start_offset)
            .field("end_offset", &self.end_offset)
            .field("bytes", &self.buf.len())
            .field("lag", &self.lag)
            .finish()
    }
}

impl Drop for PollResult {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

impl PollResult {
    /// The records, in order, as views into this result (no copy; compressed batches are
    /// expanded into a scratch buffer). A record that cannot be read is an `Err` item,
    /// after every record before it.
    pub fn records(&mut self) -> ExpandedRecords<'_> {
        ExpandedRecords::new(&self.buf, &mut self.scratch)
    }

    /// The raw bytes of the records (TLV-encoded).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Log offset of the first record.
    pub fn start_offset(&self) -> u64 {
        self.start_offset
    }

    /// Log offset after the last record: the consumer's new position.
    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    /// Bytes between the new position and the end of the log as last seen.
    pub fn lag(&self) -> u64 {
        self.lag
    }
}

/// A blocking consumer of one topic. One driver thread (io_uring or `poll`) owns its
/// connection; the next fetch is already in flight while the application handles the
/// current records.
///
/// ```
/// use std::time::Duration;
/// use lnc_uring::{testkit::TestServer, ConsumerConfig, ConnectionConfig, Producer, ProducerConfig, StandaloneConsumer};
///
/// let server = TestServer::start()?;
/// let addr = server.addr().to_string();
/// let topic = server.create_topic("events");
/// let producer = Producer::connect(&addr, ProducerConfig::default())?;
/// for i in 0..3 {
///     producer.send(topic, format!("event {i}").as_bytes())?;
/// }
///
/// let cfg = ConsumerConfig::new("reader", topic).with_connection(ConnectionConfig::new(addr));
/// let mut consumer = StandaloneConsumer::connect(cfg)?;
/// let mut batch = consumer.poll_timeout(Duration::from_secs(5))?.expect("records");
/// let values: Vec<Vec<u8>> = batch.records().map(|r| r.unwrap().value.to_vec()).collect();
/// assert_eq!(values, [b"event 0".to_vec(), b"event 1".to_vec(), b"event 2".to_vec()]);
/// consumer.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StandaloneConsumer {
    driver: Driver,
    cfg: ConsumerConfig,
    topic_id: u32,
    consumer_id: u64,
    /// Record boundary: offset of the next record to deliver.
    position: u64,
    /// Record boundary before the latest batch returned: what the caller has had the
    /// chance to process (auto-commit never goes past it).
    processed: u64,
    /// A damaged record found at the position: its offset and declared length.
    bad_record: Option<(u64, u64)>,
    /// Bytes after `position` already fetched: an incomplete record.
    carry: Vec<u8>,
    /// The fetch in flight and the offset it asked for.
    inflight: Option<(PendingReply, u64)>,
    /// Tailing back-off: how long to wait after the next fetch that finds nothing new.
    idle_wait: Duration,
    /// After a fetch that found nothing new: the offset it asked for and when the next
    /// fetch from there is due.
    idle_until: Option<(u64, Instant)>,
    /// End of the log as last seen, and when it was asked for.
    log_end: u64,
    log_end_at: Option<Instant>,
    committed: Option<u64>,
    last_commit: Instant,
    pool: Arc<BufPool>,
    closed: bool,
}

impl fmt::Debug for StandaloneConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandaloneConsumer")
            .field("consumer", &self.cfg.consumer_name)
            .field("topic_id", &self.topic_id)
            .field("position", &self.position)
            .field("committed", &self.committed)
            .finish()
    }
}

impl StandaloneConsumer {
    /// Connects, resolves the topic, and positions the consumer: at its committed offset
    /// when the store has one, else at `cfg.start`.
    pub fn connect(cfg: ConsumerConfig) -> Result<StandaloneConsumer, Error> {
        cfg.validate()?;
        let pool = Arc::new(BufPool::default());
        let mut dcfg = cfg.connection.driver_config("lnc-consumer");
        dcfg.session.fetch_pool = Some(pool.clone());
        // Large fetch replies are received straight into the buffers handed to the
        // application; headers and small replies through a 16 KiB buffer.
        dcfg.direct_receive = true;
        dcfg.recv_buffers = (1, 16 * 1024);
        let driver = Driver::spawn(dcfg)?;
        let mut c = StandaloneConsumer {
            driver,
            consumer_id: consumer_id(&cfg.consumer_name),
            topic_id: 0,
            position: 0,
            processed: 0,
            bad_record: None,
            carry: Vec::new(),
            inflight: None,
            idle_wait: MIN_IDLE_WAIT.min(cfg.poll_interval),
            idle_until: None,
            log_end: 0,
            log_end_at: None,
            committed: None,
            last_commit: Instant::now(),
            pool,
            closed: false,
            cfg,
        };
        c.topic_id = match &c.cfg.topic {
            TopicRef::Id(id) => *id,
            TopicRef::Name(name) => c.resolve(name)?,
        };
        let stored = match &c.cfg.offset_store {
            Some(store) => store.load(c.topic_id, &c.cfg.consumer_name)?,
            None => None,
        };
        c.committed = stored;
        match stored {
            Some(off) => {
                c.position = off;
                c.processed = off;
            }
            None => {
                c.seek(c.cfg.start)?;
            }
        }
        if c.cfg.server_tracking {
            let req = Request::Subscribe(SubscribeRequest {
                topic_id: c.topic_id,
                start_offset: c.position,
                max_batch_bytes: c.cfg.max_fetch_bytes,
                consumer_id: c.consumer_id,
            });
            match c.request(&req)? {
                Reply::SubscribeAck { .. } => {}
                other => return Err(unexpected(req.code(), other)),
            }
        }
        Ok(c)
    }

    fn request(&self, req: &Request<'_>) -> Result<Reply, Error> {
        let c = &self.cfg.connection;
        PendingReply::start(&self.driver, c.checksum, c.request_timeout, req)?.wait()
    }

    fn resolve(&self, name: &str) -> Result<u32, Error> {
        match self.request(&Request::ListTopics)? {
            Reply::Json(j) => parse_topic_list(&j)?
                .into_iter()
                .find(|t| t.name == name)
                .map(|t| t.id)
                .ok_or_else(|| Error::TopicNotFound {
                    message: format!("no topic named {name:?}"),
                }),
            other => Err(unexpected(Request::ListTopics.code(), other)),
        }
    }

    /// The end of the log now (a fetch with the tail sentinel).
    pub fn end_offset(&mut self) -> Result<u64, Error> {
        let req = Request::Fetch(FetchRequest {
            topic_id: self.topic_id,
            start_offset: FetchRequest::TAIL,
            max_bytes: 0,
        });
        let end = match self.request(&req)? {
            Reply::Fetch { next_offset, .. } => next_offset,
            Reply::CatchingUp { server_offset } => server_offset,
            other => return Err(unexpected(req.code(), other)),
        };
        self.log_end = end;
        self.log_end_at = Some(Instant::now());
        Ok(end)
    }

    /// Moves the position. A fetch in flight is abandoned, an incomplete record dropped.
    pub fn seek(&mut self, to: SeekPosition) -> Result<u64, Error> {
        let target = match to {
            SeekPosition::Beginning => 0,
            SeekPosition::Offset(o) => o,
            SeekPosition::End => self.end_offset()?,
        };
        self.inflight = None;
        self.carry.clear();
        self.position = target;
        self.processed = target;
        self.bad_record = None;
        Ok(target)
    }

    /// Moves past the damaged record a poll reported ([`Error::CorruptRecord`]),
    /// trusting the length its header declares (a TLV stream has no other way to find
    /// the next record). Returns the new position. If that length runs past the end of
    /// the log, the consumer waits there until the log grows; seek to a known boundary
    /// or to the end instead when the length is absurd.
    pub fn skip_bad_record(&mut self) -> Result<u64, Error> {
        let Some((offset, declared)) = self.bad_record.take() else {
            return Err(Error::Config(
                "no damaged record to skip: poll has not reported one at this position".into(),
            ));
        };
        let next = offset
            .saturating_add(crate::proto::TLV_HEADER_LEN as u64)
            .saturating_add(declared);
        self.seek(SeekPosition::Offset(next))
    }

    /// `seek(Beginning)`.
    pub fn rewind(&mut self) -> Result<(), Error> {
        self.seek(SeekPosition::Beginning).map(|_| ())
    }

    /// `seek(End)`; returns the new position.
    pub fn seek_to_end(&mut self) -> Result<u64, Error> {
        self.seek(SeekPosition::End)
    }

    /// One round: the records of the fetch in flight (or of a new one), or `None` when
    /// there is nothing new yet. Never returns half a record. It fetches at once, whatever
    /// the back-off of [`StandaloneConsumer::poll_timeout`] (an empty answer still counts
    /// toward that back-off).
    pub fn poll(&mut self) -> Result<Option<PollResult>, Error> {
        self.poll_deadline(None)
    }

    /// Polls until records arrive or `timeout` passes (`Ok(None)`). Records are returned
    /// as soon as a fetch brings them. When caught up, it fetches again with a back-off:
    /// 50 µs after the first empty fetch, doubling with each further one up to
    /// [`ConsumerConfig::poll_interval`], back to 50 µs when a fetch brings data. The
    /// back-off carries over from one call to the next, so a loop of short calls on an
    /// idle topic fetches no more often than one long call; no wait runs past `timeout`.
    pub fn poll_timeout(&mut self, timeout: Duration) -> Result<Option<PollResult>, Error> {
        self.poll_deadline(Some(after(Instant::now(), timeout)))
    }

    fn poll_deadline(&mut self, deadline: Option<Instant>) -> Result<Option<PollResult>, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        // Polling again means the records returned so far were processed.
        self.processed = self.position;
        self.maybe_auto_commit()?;
        if let Some((offset, declared)) = self.bad_record {
            return Err(corrupt(offset, declared));
        }
        // Idle at this offset: the next fetch waits for its turn in the back-off.
        if let Some((asked, due)) = self.idle_until {
            let fetch_offset = self.position + self.carry.len() as u64;
            if asked == fetch_offset
                && self.inflight.is_none()
                && deadline.is_some()
                && !sleep_until(due, deadline)
            {
                return Ok(None);
            }
        }
        let mut retry_until: Option<Instant> = None;
        let mut backoff = Duration::from_millis(10);
        loop {
            let fetch_offset = self.position + self.carry.len() as u64;
            let pending = match self.inflight.take() {
                Some((p, asked)) if asked == fetch_offset => p,
                _ => self.start_fetch(fetch_offset)?,
            };
            let outcome = pending.wait();
            let (next_offset, data) = match outcome {
                Ok(Reply::Fetch { next_offset, data }) => (next_offset, data),
                Ok(Reply::CatchingUp { server_offset }) => {
                    // Past the end (retention moved offsets, or a seek beyond the end):
                    // nothing to read yet.
                    self.log_end = server_offset;
                    if !self.wait_a_little(fetch_offset, deadline) {
                        return Ok(None);
                    }
                    continue;
                }
                // A lost connection, FORWARD_FAILED, "Leader not ready", a rate limit:
                // ask again from the same place (nothing is skipped or read twice), with
                // back-off, until the request timeout.
                Ok(Reply::Error(e)) if e.is_retryable() => {
                    self.back_off(Error::from(e), &mut retry_until, &mut backoff)?;
                    continue;
                }
                Err(e) if e.is_retryable() => {
                    self.back_off(e, &mut retry_until, &mut backoff)?;
                    continue;
                }
                Ok(other) => return Err(unexpected(crate::proto::ControlCode::FETCH, other)),
                Err(e) => return Err(e),
            };
            if data.is_empty() {
                self.log_end = next_offset.max(self.position);
                if !self.wait_a_little(fetch_offset, deadline) {
                    return Ok(None);
                }
                continue;
            }
            // Data: the next empty fetch starts the back-off afresh.
            self.idle_wait = MIN_IDLE_WAIT.min(self.cfg.poll_interval);
            self.idle_until = None;
            let full = data.len() as u32 >= self.cfg.max_fetch_bytes;
            if full {
                // More may follow: the end is at least here, and is asked for when the
                // known end is passed or older than a second, for an honest lag.
                self.log_end = self.log_end.max(next_offset);
                let stale = self
                    .log_end_at
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(1));
                if self.log_end <= next_offset || stale {
                    self.end_offset()?;
                }
            } else {
                self.log_end = next_offset;
                self.log_end_at = Some(Instant::now());
            }
            // Whole records. Usually the fetch starts at a record boundary and its cut
            // tail is simply fetched again next time (no copy, at most one record read
            // twice). A record longer than a whole fetch is assembled in `carry`.
            let mut buf = if self.carry.is_empty() {
                data
            } else {
                let mut b = std::mem::take(&mut self.carry);
                b.extend_from_slice(&data);
                self.keep_spare(data);
                b
            };
            let (complete, damaged) = match complete_prefix(&buf, MAX_VALUE_LEN) {
                Ok((n, _)) => (n, None),
                // Every whole record before it is delivered first; the damaged one is
                // reported by the poll that reaches it.
                Err(TlvError::ValueTooLarge { offset, length, .. }) => {
                    (offset, Some((self.position + offset as u64, length as u64)))
                }
                Err(e) => return Err(Error::InvalidRecord(e)),
            };
            if complete == 0 {
                if let Some((offset, declared)) = damaged {
                    self.keep_spare(buf);
                    self.inflight = None;
                    self.bad_record = Some((offset, declared));
                    return Err(corrupt(offset, declared));
                }
                // Only part of one record so far: keep it and fetch on.
                self.carry = buf;
                let next = next_offset;
                self.inflight = Some((self.start_fetch(next)?, next));
                continue;
            }
            let cut = complete < buf.len();
            buf.truncate(complete);
            // Prefetch while the application works on these records.
            if (full || cut) && damaged.is_none() {
                let next = self.position + complete as u64;
                self.inflight = Some((self.start_fetch(next)?, next));
            }
            let start = self.position;
            self.position += complete as u64;
            return Ok(Some(PollResult {
                buf,
                scratch: Vec::new(),
                pool: self.pool.clone(),
                start_offset: start,
                end_offset: self.position,
                lag: self.log_end.saturating_sub(self.position),
            }));
        }
    }

    /// Sleeps before asking again after a retryable failure; the failure itself once
    /// the request timeout has passed.
    fn back_off(
        &self,
        error: Error,
        until: &mut Option<Instant>,
        delay: &mut Duration,
    ) -> Result<(), Error> {
        let now = Instant::now();
        let until = *until.get_or_insert_with(|| after(now, self.cfg.connection.request_timeout));
        if now + *delay >= until {
            return Err(error);
        }
        log::debug!("fetch failed ({error}); retrying in {delay:?}");
        std::thread::sleep(*delay);
        *delay = (*delay * 2).min(Duration::from_secs(1));
        Ok(())
    }

    fn keep_spare(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
    }

    fn fetch_req(&self, offset: u64) -> FetchRequest {
        FetchRequest {
            topic_id: self.topic_id,
            start_offset: offset,
            max_bytes: self.cfg.max_fetch_bytes,
        }
    }

    fn start_fetch(&self, offset: u64) -> Result<PendingReply, Error> {
        let c = &self.cfg.connection;
        PendingReply::start(
            &self.driver,
            c.checksum,
            c.request_timeout,
            &Request::Fetch(self.fetch_req(offset)),
        )
    }

    /// After a fetch from `fetched` that found nothing new: schedules the next fetch one
    /// back-off step later, doubles the step (up to `poll_interval`), and sleeps until
    /// then if the deadline allows; `false` when time is up first (the schedule is kept
    /// for the next poll).
    fn wait_a_little(&mut self, fetched: u64, deadline: Option<Instant>) -> bool {
        let now = Instant::now();
        let due = now + self.idle_wait;
        self.idle_until = Some((fetched, due));
        self.idle_wait = (self.idle_wait * 2).min(self.cfg.poll_interval);
        match deadline {
            Some(d) if now < d => sleep_until(due, deadline),
            _ => false,
        }
    }

    fn maybe_auto_commit(&mut self) -> Result<(), Error> {
        if let Some(every) = self.cfg.auto_commit {
            if self.last_commit.elapsed() >= every && self.committed != Some(self.position) {
                self.commit()?;
            }
        }
        Ok(())
    }

    /// Commits the current position (a record boundary).
    pub fn commit(&mut self) -> Result<(), Error> {
        self.commit_offset(self.position)
    }

    /// Commits `offset`, which must be a record boundary this consumer has reached: to
    /// the offset store, and with server tracking, to the server (advisory).
    pub fn commit_offset(&mut self, offset: u64) -> Result<(), Error> {
        if let Some(store) = &self.cfg.offset_store {
            store.save(self.topic_id, &self.cfg.consumer_name, offset)?;
        }
        if self.cfg.server_tracking {
            let req = Request::CommitOffset {
                topic_id: self.topic_id,
                consumer_id: self.consumer_id,
                offset,
            };
            match self.request(&req)? {
                Reply::CommitAck { .. } => {}
                other => return Err(unexpected(req.code(), other)),
            }
        }
        self.committed = Some(offset);
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Position: the offset of the next record to deliver.
    pub fn current_offset(&self) -> u64 {
        self.position
    }

    /// The last committed offset.
    pub fn committed_offset(&self) -> Option<u64> {
        self.committed
    }

    /// The topic id.
    pub fn topic_id(&self) -> u32 {
        self.topic_id
    }

    /// The numeric id used on the server ([`crate::consumer_id`] of the name).
    pub fn consumer_id(&self) -> u64 {
        self.consumer_id
    }

    /// The driver thread's counters.
    pub fn stats(&self) -> DriverStats {
        self.driver.stats()
    }

    /// Commits every record returned (when auto-commit is on), unsubscribes (with server
    /// tracking) and stops.
    pub fn close(mut self) -> Result<(), Error> {
        self.close_inner(self.position)
    }

    fn close_inner(&mut self, upto: u64) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        let mut result = Ok(());
        if self.cfg.auto_commit.is_some() && self.committed != Some(upto) {
            result = self.commit_offset(upto);
        }
        if self.cfg.server_tracking {
            let req = Request::Unsubscribe {
                topic_id: self.topic_id,
                consumer_id: self.consumer_id,
            };
            let r = self.request(&req);
            if result.is_ok() {
                result = r.map(|_| ());
            }
        }
        self.closed = true;
        self.inflight = None;
        self.driver
            .shutdown(after(Instant::now(), Duration::from_secs(1)));
        result
    }
}

impl Drop for StandaloneConsumer {
    /// Without [`StandaloneConsumer::close`]: auto-commit covers only the records returned
    /// before the latest poll (the latest batch may not have been processed: the drop can
    /// come from an early `?`), and nothing at all while the thread panics.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.cfg.auto_commit = None;
        }
        if let Err(e) = self.close_inner(self.processed) {
            log::warn!("consumer dropped: {e}");
            eprintln!("lnc-uring: consumer dropped: {e}");
        }
    }
}

/// The first wait of the tailing back-off (at most `poll_interval`).
const MIN_IDLE_WAIT: Duration = Duration::from_micros(50);

/// Sleeps until `due` and returns `true`, or (when `deadline` comes first, or there is
/// none) sleeps until the deadline and returns `false`. `true` at once when `due` has
/// passed.
fn sleep_until(due: Instant, deadline: Option<Instant>) -> bool {
    let now = Instant::now();
    if now >= due {
        return true;
    }
    match deadline {
        Some(d) if d >= due => {
            std::thread::sleep(due - now);
            true
        }
        Some(d) => {
            std::thread::sleep(d.saturating_duration_since(now));
            false
        }
        None => false,
    }
}

fn corrupt(offset: u64, declared: u64) -> Error {
    Error::CorruptRecord {
        offset,
        reason: format!(
            "the record header declares {declared} bytes, more than a frame can carry \
             (the data is not TLV records); skip it with skip_bad_record or seek past it"
        ),
    }
}
