//! A writer for one topic owned by one thread: no lock and no atomic operation per
//! record (Aeron's exclusive publication).
//!
//! A [`Producer`]'s `produce` takes the topic's lock for every record; on this project's
//! machine that lock is most of the cost of a 64-byte record. A [`TopicWriter`] owns a
//! batch of its own instead, fills it with plain stores, and hands it to the connection
//! when it is full, on [`TopicWriter::submit`], and when the writer is dropped. It never
//! lingers: records it holds wait for one of those three.

use std::fmt;

use super::lane::{Batcher, NeedBuffer, Outbox};
use super::record::ProduceRecord;
use super::Producer;
use crate::buffers::FrameBuf;
use crate::Error;

/// Writes records of one topic from one thread without locking: made by
/// [`Producer::writer`].
///
/// Records go into the writer's own batch, which is handed to the producer's connection
/// when it reaches `batch_size`, when [`TopicWriter::submit`] is called, and when the
/// writer is dropped. **A writer does not linger**: a record waits in the writer until
/// one of those happens, so call `submit` whenever the thread pauses. From then on each
/// record is the producer's, with the same outcome rules as [`Producer::produce`]:
/// [`Producer::flush`] and [`Producer::close`] report failures, and
/// [`Producer::stats`] counts it. Records of one writer keep their order; records of
/// one topic written through several writers (or a writer and the producer) are ordered
/// only batch by batch.
///
/// ```
/// use std::time::Duration;
/// use lnc_uring::{testkit::TestServer, ProduceRecord, Producer, ProducerConfig};
///
/// let server = TestServer::start()?;
/// let topic = server.create_topic("ticks");
/// let producer = Producer::connect(&server.addr().to_string(), ProducerConfig::default())?;
/// let mut writer = producer.writer(topic);
/// for i in 0..10_000u64 {
///     writer.produce(ProduceRecord::Raw(&i.to_le_bytes()))?;
/// }
/// writer.claim(16, |v| v.fill(7))?; // a value written in place
/// writer.submit()?; // hand over what the writer holds
/// producer.flush(Duration::from_secs(5))?; // every record acknowledged, or an error
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TopicWriter<'p> {
    producer: &'p Producer,
    batcher: Batcher,
}

impl fmt::Debug for TopicWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (records, bytes) = self.batcher.open_size();
        f.debug_struct("TopicWriter")
            .field("topic_id", &self.batcher.topic_id())
            .field("held_records", &records)
            .field("held_bytes", &bytes)
            .finish()
    }
}

impl Producer {
    /// A writer for `topic_id`, for one thread: records appended without a lock (see
    /// [`TopicWriter`]). Any number of writers may exist at once, on any threads.
    pub fn writer(&self, topic_id: u32) -> TopicWriter<'_> {
        TopicWriter {
            producer: self,
            batcher: self.shared.lanes.batcher(topic_id),
        }
    }
}

impl TopicWriter<'_> {
    /// The topic.
    pub fn topic_id(&self) -> u32 {
        self.batcher.topic_id()
    }

    /// Records and record bytes the writer holds (not yet handed to the connection).
    pub fn held(&self) -> (u64, u64) {
        self.batcher.open_size()
    }

    /// Appends one record. Fails at once (and the record is not taken) as
    /// [`Producer::produce`] does: a record no frame can carry, a producer whose
    /// connection thread has stopped, or no buffer memory within the full-buffer policy.
    #[inline]
    pub fn produce(&mut self, record: ProduceRecord<'_>) -> Result<(), Error> {
        self.producer.check_open()?;
        record.validate()?;
        let size = record.encoded_len();
        let ctx = &self.producer.shared.ctx;
        // The common case inline here, not behind `fill`'s loop.
        if self.batcher.append_fast(ctx, &record, size) {
            return Ok(());
        }
        self.fill(size, |b, fresh, out| {
            b.append_slow(ctx, &record, size, false, fresh, out)
                .map(drop)
        })
    }

    /// Writes a RawData record of `len` bytes in place: `write` gets the value bytes
    /// inside the writer's batch (no copy of the value). If `write` panics, the record is
    /// abandoned.
    pub fn claim(&mut self, len: usize, write: impl FnOnce(&mut [u8])) -> Result<(), Error> {
        self.producer.check_open()?;
        let size = super::claim_size(len)?;
        let ctx = &self.producer.shared.ctx;
        let mut write = Some(write);
        self.fill(size, |b, fresh, out| {
            let start = b.claim(ctx, len, fresh, out)?;
            let mut claimed = Abandon { b, start };
            (write.take().expect("written once"))(claimed.b.claimed_value(start));
            claimed.start = usize::MAX;
            claimed.b.commit(ctx, false, out);
            Ok(())
        })
    }

    /// Hands the records the writer holds to the connection now (it does not wait for
    /// their acknowledgement; [`Producer::flush`] does). Fails with the reason when the
    /// producer's connection thread has stopped (the records then fail, and are
    /// reported as [`Producer::produce`]'s are).
    pub fn submit(&mut self) -> Result<(), Error> {
        let topic_id = self.batcher.topic_id();
        if let Some(b) = self.batcher.seal_open(&self.producer.shared.ctx) {
            self.producer.conns.submit_batch(topic_id, b);
        }
        self.producer.check_open()
    }

    /// Runs `step` against the batcher until it has room, getting a buffer (as the
    /// full-buffer policy says) when it needs one.
    fn fill(
        &mut self,
        size: usize,
        mut step: impl FnMut(&mut Batcher, &mut Option<FrameBuf>, &mut Outbox) -> Result<(), NeedBuffer>,
    ) -> Result<(), Error> {
        let p = self.producer;
        let topic_id = self.batcher.topic_id();
        let sink = |b| p.conns.submit_batch(topic_id, b);
        let mut fresh: Option<FrameBuf> = None;
        loop {
            let mut out = Outbox::new(&sink);
            let r = step(&mut self.batcher, &mut fresh, &mut out);
            if out.sealed > 0 {
                // A connection thread that stopped meanwhile failed the batch; say so now.
                p.check_open()?;
            }
            match r {
                Ok(()) => return Ok(()),
                Err(NeedBuffer) => {
                    fresh = Some(p.acquire(size)?);
                    p.check_open()?;
                }
            }
        }
    }
}

impl Drop for TopicWriter<'_> {
    /// Hands over what the writer holds (see [`TopicWriter::submit`]).
    fn drop(&mut self) {
        // A stopped connection thread fails the records; the producer reports them.
        let _ = self.submit();
    }
}

/// Removes the record claimed at `start` unless committed (`start` set to `usize::MAX`),
/// so a panicking `write` leaves no half record.
struct Abandon<'a> {
    b: &'a mut Batcher,
    start: usize,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.start != usize::MAX {
            self.b.abandon(self.start);
        }
    }
}
