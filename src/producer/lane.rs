//! Per-topic lanes: the batch being filled for one topic ([`Batcher`]), behind a lock of
//! its own. A [`super::TopicWriter`] owns a batcher of its own and takes no lock at all.
//!
//! Senders to different topics never share a lock; the common path of a record is one
//! table lookup (an array index for topic ids below [`DIRECT_LANES`]), one uncontended
//! lock, one copy of the record into a buffer that cannot reallocate, and a ticket. Clock
//! reads, sequence numbers and memory accounting happen once per batch.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::config::ProducerConfig;
use super::ledger::Ledger;
use super::record::ProduceRecord;
use crate::buffers::{BufferPool, FrameBuf};
use crate::delivery::{DeliverySlot, DeliveryTicket, SlotPool};
use crate::proto::{
    compress_records, ingest_header, seal_frame, RecordType, HEADER_LEN, TLV_HEADER_LEN,
};
use crate::session::{after, Batch};

/// Topic ids below this are looked up by index; others in a map.
pub(crate) const DIRECT_LANES: usize = 1024;

/// What a producer's lanes share: settings, memory, books and counters.
#[derive(Debug)]
pub(crate) struct LaneCtx {
    pub(crate) cfg: ProducerConfig,
    /// How threads waiting on tickets wait.
    pub(crate) idle: crate::IdleStrategy,
    pub(crate) pool: BufferPool,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) batches_sealed: AtomicU64,
    pub(crate) records_sealed: AtomicU64,
    pub(crate) bytes_sealed: AtomicU64,
}

/// A batch being filled.
#[derive(Debug)]
struct Open {
    /// 44 bytes of header space, then the records.
    buf: FrameBuf,
    records: u32,
    slot: Arc<DeliverySlot>,
    /// Generation, so a linger timer seals only the batch it was set for.
    gen: u64,
    /// When lingering ends (with a non-zero linger).
    linger_at: Option<Instant>,
}

/// The batch being filled for one topic, and what filling it needs: owned by a [`Lane`]
/// (behind its lock, sealed by a linger timer too) or by a writer (no lock; sealed when
/// full or handed over).
#[derive(Debug)]
pub(crate) struct Batcher {
    topic_id: u32,
    /// Lingering applies (a lane): a linger timer seals the batch, and with no linger
    /// every record is sent at once. A writer's batch is sealed only when full or handed
    /// over.
    lingers: bool,
    open: Option<Open>,
    /// A pooled buffer obtained while the lock was released, kept for the next batch.
    spare: Option<FrameBuf>,
    slots: SlotPool,
    next_gen: u64,
    /// The driver holds a linger timer for this lane (at most one at a time).
    timer_armed: bool,
    /// Compression output, reused (grows once to the LZ4 bound of a batch).
    scratch: Vec<u8>,
}

/// One topic's lane: its batcher behind a lock of its own.
pub(crate) struct Lane {
    topic_id: u32,
    state: Mutex<Batcher>,
}

impl fmt::Debug for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lane")
            .field("topic_id", &self.topic_id)
            .finish()
    }
}

/// Where sealed batches go, and a linger timer to hand to the driver once the lane is
/// unlocked.
///
/// Batches are handed to the driver *while the lane is locked*: the order in which a
/// lane seals its batches is the order the driver gets them, whichever thread sealed
/// them (so the records of one thread, of one topic, stay in order). The driver never
/// waits for a lane's lock (its linger timer only tries it), so a sender that waits
/// for room in the driver's queue while holding the lock cannot deadlock it.
pub(crate) struct Outbox<'a> {
    sink: &'a dyn Fn(Batch),
    /// A batch was opened that must be sealed at this instant: (when, topic, generation).
    pub(crate) linger: Option<(Instant, u32, u64)>,
    /// Batches handed over.
    pub(crate) sealed: usize,
}

impl fmt::Debug for Outbox<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("linger", &self.linger)
            .field("sealed", &self.sealed)
            .finish()
    }
}

impl<'a> Outbox<'a> {
    pub(crate) fn new(sink: &'a dyn Fn(Batch)) -> Outbox<'a> {
        Outbox {
            sink,
            linger: None,
            sealed: 0,
        }
    }

    fn push(&mut self, b: Batch) {
        (self.sink)(b);
        self.sealed += 1;
    }
}

/// What a lane's linger timer found.
#[derive(Debug)]
pub(crate) enum Lingering {
    /// The batch it was set for, now sealed.
    Sealed(Batch),
    /// That batch was sealed already; a newer one lingers until then.
    Rearm(Instant, u64),
    /// Nothing is open.
    Idle,
}

/// A record reserved in a lane's open batch, written in place by the caller; the lane
/// stays locked until it is committed or dropped (dropping abandons it).
pub(crate) struct ClaimGuard<'a> {
    st: MutexGuard<'a, Batcher>,
    /// Where the record starts in the batch buffer.
    start: usize,
}

impl fmt::Debug for ClaimGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimGuard")
            .field("topic_id", &self.st.topic_id)
            .field("start", &self.start)
            .finish()
    }
}

impl ClaimGuard<'_> {
    /// The reserved value bytes.
    pub(crate) fn value(&mut self) -> &mut [u8] {
        self.st.claimed_value(self.start)
    }

    /// Makes the record part of the batch; with `ticket`, returns its ticket.
    pub(crate) fn commit(
        mut self,
        ctx: &LaneCtx,
        ticket: bool,
        out: &mut Outbox,
    ) -> Option<DeliveryTicket> {
        let t = self.st.commit(ctx, ticket, out);
        // Committed: nothing to undo.
        self.start = usize::MAX;
        t
    }
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if self.start != usize::MAX {
            self.st.abandon(self.start);
        }
    }
}

/// An append that could not get a buffer: submit the outbox, get a buffer (waiting as
/// the policy says) and try again with it.
#[derive(Debug)]
pub(crate) struct NeedBuffer;

impl Batcher {
    /// An empty batcher for `topic_id`; `lingers` as for a lane (see the field).
    pub(crate) fn new(topic_id: u32, lingers: bool, ledger: &Arc<Ledger>, slots: usize) -> Self {
        Batcher {
            topic_id,
            lingers,
            open: None,
            spare: None,
            slots: SlotPool::with_ledger(ledger.clone(), slots),
            next_gen: 0,
            timer_armed: false,
            scratch: Vec::new(),
        }
    }

    /// The topic.
    pub(crate) fn topic_id(&self) -> u32 {
        self.topic_id
    }

    /// Makes room for a record of `size` encoded bytes in the open batch: seals the
    /// batch into `out` if the record does not fit, and opens one with a buffer (`fresh`,
    /// the spare, or a free pooled one). `Err` when no buffer is free.
    fn make_room(
        &mut self,
        ctx: &LaneCtx,
        size: usize,
        fresh: &mut Option<FrameBuf>,
        out: &mut Outbox,
    ) -> Result<(), NeedBuffer> {
        let oversized = HEADER_LEN + size > ctx.pool.capacity();
        if let Some(open) = &self.open {
            let room = open.buf.data.capacity() - open.buf.data.len();
            if oversized || size > room {
                if open.records > 0 {
                    out.push(self.seal(ctx));
                } else {
                    // Empty (a claim was abandoned): keep its buffer, never send it.
                    let empty = self.open.take().expect("checked");
                    if self.spare.is_none() && empty.buf.data.capacity() == ctx.pool.capacity() {
                        self.spare = Some(empty.buf);
                    }
                }
            }
        }
        if self.open.is_none() {
            let buf = if oversized {
                fresh.take()
            } else {
                fresh
                    .take()
                    .or_else(|| self.spare.take())
                    .or_else(|| ctx.pool.try_take())
            };
            let buf = buf.ok_or(NeedBuffer)?;
            self.open(buf);
        } else if let Some(f) = fresh.take() {
            // Someone opened a batch meanwhile; keep the buffer for the next one.
            if self.spare.is_none() && !oversized {
                self.spare = Some(f);
            }
        }
        Ok(())
    }

    /// A record was written into the open batch: counts it and seals the batch when it
    /// is full (or always, lingering with no linger, or for an oversized record).
    fn written(&mut self, ctx: &LaneCtx, out: &mut Outbox) {
        let open = self.open.as_mut().expect("room was made");
        open.records += 1;
        let linger = ctx.cfg.linger;
        if self.lingers && open.records == 1 && !linger.is_zero() {
            // Lingering starts with the first record (one clock read per batch).
            let at = after(Instant::now(), linger);
            open.linger_at = Some(at);
            if !self.timer_armed {
                // One timer per lane: when it fires for a batch already sealed, the
                // driver re-arms it for the batch open then.
                self.timer_armed = true;
                out.linger = Some((at, self.topic_id, open.gen));
            }
        }
        let len = open.buf.data.len() - HEADER_LEN;
        if len >= ctx.cfg.batch_size
            || (self.lingers && linger.is_zero())
            || open.buf.data.capacity() != ctx.pool.capacity()
        {
            out.push(self.seal(ctx));
        }
    }

    /// Appends `record` (`size` encoded bytes, already validated) to the open batch if
    /// that needs nothing else: the batch has records, and stays under `batch_size` with
    /// this one (no seal, no timer). The common case, inline; `false` leaves everything
    /// as it was.
    #[inline]
    pub(crate) fn append_fast(
        &mut self,
        ctx: &LaneCtx,
        record: &ProduceRecord<'_>,
        size: usize,
    ) -> bool {
        let Some(open) = self.open.as_mut() else {
            return false;
        };
        let after = open.buf.data.len() + size;
        if open.records == 0
            || after >= HEADER_LEN + ctx.cfg.batch_size
            || after > open.buf.data.capacity()
            || (self.lingers && ctx.cfg.linger.is_zero())
        {
            return false;
        }
        // Validated, and within the capacity: encoding cannot fail or reallocate.
        let encoded = record.encode(&mut open.buf.data);
        debug_assert!(encoded.is_ok());
        open.records += 1;
        true
    }

    /// Appends `record` (`size` encoded bytes, already validated); with `ticket`, returns
    /// a ticket for its outcome. Without a ticket, a record that seals nothing takes the
    /// inline path ([`Batcher::append_fast`]).
    #[inline]
    pub(crate) fn append(
        &mut self,
        ctx: &LaneCtx,
        record: &ProduceRecord<'_>,
        size: usize,
        ticket: bool,
        fresh: &mut Option<FrameBuf>,
        out: &mut Outbox,
    ) -> Result<Option<DeliveryTicket>, NeedBuffer> {
        if !ticket && self.append_fast(ctx, record, size) {
            return Ok(None);
        }
        self.append_slow(ctx, record, size, ticket, fresh, out)
    }

    /// [`Batcher::append`] without the inline path (a caller that tried it already).
    pub(crate) fn append_slow(
        &mut self,
        ctx: &LaneCtx,
        record: &ProduceRecord<'_>,
        size: usize,
        ticket: bool,
        fresh: &mut Option<FrameBuf>,
        out: &mut Outbox,
    ) -> Result<Option<DeliveryTicket>, NeedBuffer> {
        self.make_room(ctx, size, fresh, out)?;
        let open = self.open.as_mut().expect("room was made");
        // Validated before, and the buffer has room: encoding cannot fail or reallocate.
        let encoded = record.encode(&mut open.buf.data);
        debug_assert!(encoded.is_ok());
        let t = ticket.then(|| DeliveryTicket::new(open.slot.clone(), open.records, ctx.idle));
        self.written(ctx, out);
        Ok(t)
    }

    /// Appends records from the front of `records` (each validated), until they run out.
    /// `Err` carries how many were appended when a buffer is needed.
    pub(crate) fn append_many(
        &mut self,
        ctx: &LaneCtx,
        records: &[ProduceRecord<'_>],
        fresh: &mut Option<FrameBuf>,
        out: &mut Outbox,
    ) -> Result<usize, (usize, NeedBuffer)> {
        for (i, record) in records.iter().enumerate() {
            self.make_room(ctx, record.encoded_len(), fresh, out)
                .map_err(|e| (i, e))?;
            let open = self.open.as_mut().expect("room was made");
            let encoded = record.encode(&mut open.buf.data);
            debug_assert!(encoded.is_ok());
            self.written(ctx, out);
        }
        Ok(records.len())
    }

    /// Reserves a RawData record of `len` value bytes in the open batch; returns where it
    /// starts, for [`Batcher::claimed_value`], then [`Batcher::commit`] or
    /// [`Batcher::abandon`].
    pub(crate) fn claim(
        &mut self,
        ctx: &LaneCtx,
        len: usize,
        fresh: &mut Option<FrameBuf>,
        out: &mut Outbox,
    ) -> Result<usize, NeedBuffer> {
        self.make_room(ctx, TLV_HEADER_LEN + len, fresh, out)?;
        let open = self.open.as_mut().expect("room was made");
        let start = open.buf.data.len();
        open.buf.data.push(RecordType::RAW_DATA.0);
        open.buf.data.extend_from_slice(&(len as u32).to_le_bytes());
        // Within the capacity checked above: no reallocation.
        open.buf.data.resize(start + TLV_HEADER_LEN + len, 0);
        Ok(start)
    }

    /// The value bytes of the record claimed at `start`.
    pub(crate) fn claimed_value(&mut self, start: usize) -> &mut [u8] {
        let open = self.open.as_mut().expect("claimed");
        &mut open.buf.data[start + TLV_HEADER_LEN..]
    }

    /// Commits the claimed record; with `ticket`, returns its ticket.
    pub(crate) fn commit(
        &mut self,
        ctx: &LaneCtx,
        ticket: bool,
        out: &mut Outbox,
    ) -> Option<DeliveryTicket> {
        let open = self.open.as_mut().expect("claimed");
        let t = ticket.then(|| DeliveryTicket::new(open.slot.clone(), open.records, ctx.idle));
        self.written(ctx, out);
        t
    }

    /// Removes the uncommitted record claimed at `start`.
    pub(crate) fn abandon(&mut self, start: usize) {
        if let Some(open) = self.open.as_mut() {
            open.buf.data.truncate(start);
        }
    }

    fn open(&mut self, mut buf: FrameBuf) {
        buf.data.clear();
        buf.data.resize(HEADER_LEN, 0);
        let gen = self.next_gen;
        self.next_gen += 1;
        self.open = Some(Open {
            buf,
            records: 0,
            slot: self.slots.take(self.topic_id),
            gen,
            linger_at: None,
        });
    }

    /// Seals the open batch (there must be one).
    fn seal(&mut self, ctx: &LaneCtx) -> Batch {
        let Open {
            mut buf,
            records,
            slot,
            ..
        } = self.open.take().expect("an open batch");
        let bytes = buf.data.len() - HEADER_LEN;
        if ctx.cfg.compression {
            self.scratch.clear();
            if let Ok(true) = compress_records(&buf.data[HEADER_LEN..], &mut self.scratch) {
                // Smaller than the records it replaces, so it fits without growing.
                buf.data.truncate(HEADER_LEN);
                buf.data.extend_from_slice(&self.scratch);
            }
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        seal_frame(
            ctx.cfg.connection.checksum,
            ingest_header(0, ts, records, self.topic_id),
            &mut buf.data,
        );
        let seq = ctx.ledger.seal(records, bytes);
        slot.set_sealed(seq, bytes);
        ctx.batches_sealed.fetch_add(1, Ordering::Relaxed);
        ctx.records_sealed
            .fetch_add(u64::from(records), Ordering::Relaxed);
        ctx.bytes_sealed.fetch_add(bytes as u64, Ordering::Relaxed);
        Batch::new(
            buf,
            records,
            slot,
            after(Instant::now(), ctx.cfg.delivery_timeout),
        )
    }

    /// Seals the open batch if it holds records.
    pub(crate) fn seal_open(&mut self, ctx: &LaneCtx) -> Option<Batch> {
        if self.open.as_ref().is_some_and(|o| o.records > 0) {
            Some(self.seal(ctx))
        } else {
            None
        }
    }

    /// Records and bytes in the open batch.
    pub(crate) fn open_size(&self) -> (u64, u64) {
        self.open.as_ref().map_or((0, 0), |o| {
            (u64::from(o.records), (o.buf.data.len() - HEADER_LEN) as u64)
        })
    }
}

impl Lane {
    fn new(topic_id: u32, ledger: &Arc<Ledger>, slots: usize) -> Lane {
        Lane {
            topic_id,
            state: Mutex::new(Batcher::new(topic_id, true, ledger, slots)),
        }
    }

    /// The topic.
    pub(crate) fn topic_id(&self) -> u32 {
        self.topic_id
    }

    /// The lane's batcher, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Batcher> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves a RawData record of `len` value bytes in the open batch; the lane stays
    /// locked until the returned guard commits or drops.
    pub(crate) fn claim<'a>(
        &'a self,
        ctx: &LaneCtx,
        len: usize,
        fresh: &mut Option<FrameBuf>,
        out: &mut Outbox,
    ) -> Result<ClaimGuard<'a>, NeedBuffer> {
        let mut st = self.lock();
        let start = st.claim(ctx, len, fresh, out)?;
        Ok(ClaimGuard { st, start })
    }

    /// The lane's linger timer for batch `gen` fired: seals it if it is still open, or
    /// re-arms the timer for a newer open batch. Never waits for the lane's lock: when a
    /// sender holds it, the timer fires again a little later.
    pub(crate) fn linger_expired(&self, ctx: &LaneCtx, gen: u64) -> Lingering {
        let mut st = match self.state.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return Lingering::Rearm(after(Instant::now(), Duration::from_micros(50)), gen)
            }
        };
        let st = &mut *st;
        match &st.open {
            Some(o) if o.gen == gen && o.records > 0 => {
                st.timer_armed = false;
                Lingering::Sealed(st.seal(ctx))
            }
            Some(Open {
                gen,
                linger_at: Some(at),
                ..
            }) => Lingering::Rearm(*at, *gen),
            _ => {
                st.timer_armed = false;
                Lingering::Idle
            }
        }
    }

    /// Seals the open batch, if any, and hands it to `sink` before unlocking.
    pub(crate) fn seal_open(&self, ctx: &LaneCtx, sink: &mut dyn FnMut(Batch)) {
        let mut st = self.lock();
        if let Some(b) = st.seal_open(ctx) {
            sink(b);
        }
        drop(st);
    }

    /// Records and bytes in the open batch.
    pub(crate) fn open_size(&self) -> (u64, u64) {
        self.lock().open_size()
    }
}

/// The lanes of one producer, by topic id.
pub(crate) struct Lanes {
    direct: Box<[OnceLock<Arc<Lane>>]>,
    other: Mutex<HashMap<u32, Arc<Lane>>>,
    ledger: Arc<Ledger>,
    /// Delivery slots made with each lane: enough for the batches one topic usually has
    /// unresolved, so the slot pool grows only past that.
    slots_per_lane: usize,
}

impl fmt::Debug for Lanes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lanes").finish_non_exhaustive()
    }
}

impl Lanes {
    pub(crate) fn new(ledger: Arc<Ledger>, slots_per_lane: usize) -> Lanes {
        Lanes {
            direct: (0..DIRECT_LANES).map(|_| OnceLock::new()).collect(),
            other: Mutex::new(HashMap::new()),
            ledger,
            slots_per_lane,
        }
    }

    fn make(&self, topic_id: u32) -> Arc<Lane> {
        Arc::new(Lane::new(topic_id, &self.ledger, self.slots_per_lane))
    }

    /// The lane of `topic_id`, created on first use.
    pub(crate) fn get(&self, topic_id: u32) -> LaneRef<'_> {
        match self.direct.get(topic_id as usize) {
            Some(cell) => LaneRef::Direct(cell.get_or_init(|| self.make(topic_id))),
            None => LaneRef::Shared(
                self.other
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(topic_id)
                    .or_insert_with(|| self.make(topic_id))
                    .clone(),
            ),
        }
    }

    /// A batcher of `topic_id` for a writer: a batch of its own, sealed only when full or
    /// handed over.
    pub(crate) fn batcher(&self, topic_id: u32) -> Batcher {
        Batcher::new(topic_id, false, &self.ledger, self.slots_per_lane)
    }

    /// The lane of `topic_id` if it exists.
    pub(crate) fn existing(&self, topic_id: u32) -> Option<Arc<Lane>> {
        match self.direct.get(topic_id as usize) {
            Some(cell) => cell.get().cloned(),
            None => self
                .other
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&topic_id)
                .cloned(),
        }
    }

    /// Calls `f` on every lane.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Lane)) {
        for cell in self.direct.iter() {
            if let Some(l) = cell.get() {
                f(l);
            }
        }
        let others: Vec<Arc<Lane>> = self
            .other
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for l in &others {
            f(l);
        }
    }
}

/// A lane borrowed from the table, or shared from the map.
#[derive(Debug)]
pub(crate) enum LaneRef<'a> {
    Direct(&'a Arc<Lane>),
    Shared(Arc<Lane>),
}

impl std::ops::Deref for LaneRef<'_> {
    type Target = Lane;
    fn deref(&self) -> &Lane {
        match self {
            LaneRef::Direct(l) => l,
            LaneRef::Shared(l) => l,
        }
    }
}

/// Capacity of a pooled batch buffer for `batch_size`: the header, the batch, and room
/// for a record that crosses `batch_size` (at least 4 KiB, rounded to whole pages).
pub(crate) fn buffer_capacity(batch_size: usize) -> usize {
    (HEADER_LEN + batch_size + 4096).next_multiple_of(4096)
}

/// How long a sender waits for buffer memory at most, per the policy.
pub(crate) fn block_time(policy: super::config::FullBufferPolicy) -> Option<Duration> {
    match policy {
        super::config::FullBufferPolicy::Block(t) => Some(t),
        super::config::FullBufferPolicy::Fail => None,
    }
}
