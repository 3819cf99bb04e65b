//! Delivery outcomes: one slot per batch, shared by the tickets of its records.
//!
//! The driver thread completes a slot exactly once (ACKed or failed); any number of
//! threads may wait on it. Completion is an atomic store plus, only when someone is
//! blocked, an unpark: no lock on the hot path. Slots are pooled by the producer and
//! reused once no ticket refers to them (`Arc::strong_count == 1`), so steady-state
//! sending allocates nothing per record.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::producer::ledger::Ledger;
use crate::{Error, IdleStrategy};

const PENDING: u8 = 0;
const ACKED: u8 = 1;
const FAILED: u8 = 2;

/// A completion callback of one record.
type Callback = Box<dyn FnOnce(Result<RecordMetadata, Error>) + Send + 'static>;

/// Who waits for a slot: parked threads, and callbacks with their record's position.
#[derive(Default)]
struct Waiters {
    threads: Vec<Thread>,
    callbacks: Vec<(u32, Callback)>,
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters")
            .field("threads", &self.threads.len())
            .field("callbacks", &self.callbacks.len())
            .finish()
    }
}

/// Where an acknowledged record went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RecordMetadata {
    /// The topic.
    pub topic_id: u32,
    /// The batch id the server acknowledged (per connection; resent batches get new ids).
    pub batch_id: u64,
    /// The record's position in its batch.
    pub offset_in_batch: u32,
    /// Send attempts the batch needed (1 unless it was resent after a reconnect or a
    /// retryable error; a resend can duplicate the batch on the server).
    pub attempts: u32,
}

/// The shared outcome of one batch.
#[derive(Debug)]
pub(crate) struct DeliverySlot {
    state: AtomicU8,
    batch_id: AtomicU64,
    topic_id: AtomicU64,
    attempts: AtomicU64,
    has_waiters: AtomicBool,
    waiters: Mutex<Waiters>,
    error: Mutex<Option<Error>>,
    /// The batch's sequence number in its producer's [`Ledger`] (`UNSEALED` before
    /// sealing) and its payload bytes.
    seq: AtomicU64,
    bytes: AtomicUsize,
    ledger: Option<Arc<Ledger>>,
}

const UNSEALED: u64 = u64::MAX;

impl DeliverySlot {
    #[cfg(test)]
    pub(crate) fn new() -> DeliverySlot {
        DeliverySlot::with_ledger(None)
    }

    pub(crate) fn with_ledger(ledger: Option<Arc<Ledger>>) -> DeliverySlot {
        DeliverySlot {
            state: AtomicU8::new(PENDING),
            batch_id: AtomicU64::new(0),
            topic_id: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            has_waiters: AtomicBool::new(false),
            // Room for a waiter or two without allocating on the first wait.
            waiters: Mutex::new(Waiters {
                threads: Vec::with_capacity(2),
                callbacks: Vec::new(),
            }),
            error: Mutex::new(None),
            seq: AtomicU64::new(UNSEALED),
            bytes: AtomicUsize::new(0),
            ledger,
        }
    }

    /// The batch was sealed as sequence `seq` of the ledger with `bytes` payload bytes;
    /// its completion resolves that entry.
    pub(crate) fn set_sealed(&self, seq: u64, bytes: usize) {
        self.bytes.store(bytes, Ordering::Relaxed);
        self.seq.store(seq, Ordering::Release);
    }

    /// Makes a slot no one refers to ready for another batch.
    pub(crate) fn reset(&self, topic_id: u32) {
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.topic_id.store(u64::from(topic_id), Ordering::Relaxed);
        self.batch_id.store(0, Ordering::Relaxed);
        self.attempts.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.seq.store(UNSEALED, Ordering::Relaxed);
        self.state.store(PENDING, Ordering::Release);
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) != PENDING
    }

    /// Completes the slot as acknowledged.
    pub(crate) fn ack(&self, batch_id: u64, attempts: u32) {
        self.batch_id.store(batch_id, Ordering::Relaxed);
        self.attempts.store(u64::from(attempts), Ordering::Relaxed);
        self.finish(ACKED);
    }

    /// Completes the slot as failed.
    pub(crate) fn fail(&self, error: Error, attempts: u32) {
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
        self.attempts.store(u64::from(attempts), Ordering::Relaxed);
        self.finish(FAILED);
    }

    fn finish(&self, state: u8) {
        // Exactly one completion wins (the driver, or a batch dropped elsewhere).
        if self
            .state
            .compare_exchange(PENDING, state, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        // Counted before anyone is told: a caller woken by this outcome sees it in the
        // producer's counters.
        let seq = self.seq.load(Ordering::Acquire);
        if let (Some(ledger), true) = (&self.ledger, seq != UNSEALED) {
            let bytes = self.bytes.load(Ordering::Relaxed);
            if state == FAILED {
                let e = self.error.lock().unwrap_or_else(|e| e.into_inner());
                ledger.resolve(seq, bytes, Some(e.as_ref().unwrap_or(&Error::Closed)));
            } else {
                ledger.resolve(seq, bytes, None);
            }
        }
        // Store-then-load against the waiter's store of `has_waiters` then load of
        // `state`: without a full fence on both sides each could miss the other's store
        // (x86 reorders a store with a later load) and the waiter would sleep forever.
        fence(Ordering::SeqCst);
        if self.has_waiters.load(Ordering::SeqCst) {
            // Drain rather than take, so the thread list keeps its capacity for the
            // slot's next batch (no allocation per wait in steady state).
            let callbacks = {
                let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
                self.has_waiters.store(false, Ordering::SeqCst);
                for t in waiters.threads.drain(..) {
                    t.unpark();
                }
                std::mem::take(&mut waiters.callbacks)
            };
            // Outside the lock: a callback may register another one.
            for (offset, f) in callbacks {
                if let Some(r) = self.result(offset) {
                    f(r);
                }
            }
        }
        // Last: `flush` returns once every batch before its cut is settled, by which
        // time every waiter is woken and every callback has run.
        if let (Some(ledger), true) = (&self.ledger, seq != UNSEALED) {
            ledger.settle(seq);
        }
    }

    /// Runs `f` with the outcome of record `offset_in_batch`: now if the slot is done,
    /// otherwise on the thread that completes it.
    fn on_complete(&self, offset_in_batch: u32, f: Callback) {
        {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if !self.is_done() {
                w.callbacks.push((offset_in_batch, f));
                self.has_waiters.store(true, Ordering::SeqCst);
                // Pairs with the fence in `finish`: either it sees `has_waiters`, or the
                // re-check below sees the state.
                fence(Ordering::SeqCst);
                if !self.is_done() {
                    return;
                }
                // Completed meanwhile; `finish` may or may not have drained the list.
                let pending = w.callbacks.pop();
                drop(w);
                if let Some((off, f)) = pending {
                    if let Some(r) = self.result(off) {
                        f(r);
                    }
                }
                return;
            }
        }
        if let Some(r) = self.result(offset_in_batch) {
            f(r);
        }
    }

    fn result(&self, offset_in_batch: u32) -> Option<Result<RecordMetadata, Error>> {
        match self.state.load(Ordering::Acquire) {
            PENDING => None,
            ACKED => Some(Ok(RecordMetadata {
                topic_id: self.topic_id.load(Ordering::Relaxed) as u32,
                batch_id: self.batch_id.load(Ordering::Relaxed),
                offset_in_batch,
                attempts: self.attempts.load(Ordering::Relaxed) as u32,
            })),
            _ => Some(Err(self
                .error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or(Error::Closed))),
        }
    }

    /// Blocks until done or `deadline`, waiting as `idle` says.
    fn wait(&self, deadline: Option<Instant>, idle: IdleStrategy) -> bool {
        idle.wait(deadline, || self.is_done(), |timeout| self.park(timeout))
    }

    /// Registers this thread as a waiter and parks (at most `timeout`) unless done.
    fn park(&self, timeout: Option<Duration>) {
        {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if self.is_done() {
                return;
            }
            let me = thread::current();
            if !w.threads.iter().any(|t| t.id() == me.id()) {
                w.threads.push(me);
            }
            self.has_waiters.store(true, Ordering::SeqCst);
        }
        // Pairs with the fence in `finish`: the completer reads `has_waiters` after its
        // state store, so one of us sees the other.
        fence(Ordering::SeqCst);
        if self.is_done() {
            return;
        }
        match timeout {
            None => thread::park(),
            Some(t) => thread::park_timeout(t),
        }
    }
}

/// The outcome of one record sent with [`Producer::send_async`](crate::Producer::send_async): wait for it,
/// poll it, or drop it (the record is still delivered; [`Producer::flush`](crate::Producer::flush)
/// reports failures of records whose tickets were dropped).
#[derive(Debug, Clone)]
pub struct DeliveryTicket {
    slot: Arc<DeliverySlot>,
    offset_in_batch: u32,
    idle: IdleStrategy,
}

impl DeliveryTicket {
    pub(crate) fn new(slot: Arc<DeliverySlot>, offset_in_batch: u32, idle: IdleStrategy) -> Self {
        DeliveryTicket {
            slot,
            offset_in_batch,
            idle,
        }
    }

    /// Blocks until the record is acknowledged or has failed.
    pub fn wait(self) -> Result<RecordMetadata, Error> {
        self.slot.wait(None, self.idle);
        self.slot
            .result(self.offset_in_batch)
            .unwrap_or(Err(Error::Closed))
    }

    /// The outcome if there is one yet.
    pub fn try_wait(&self) -> Option<Result<RecordMetadata, Error>> {
        self.slot.result(self.offset_in_batch)
    }

    /// Blocks at most `timeout`; `None` if the record is still pending then.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<RecordMetadata, Error>> {
        self.wait_deadline(crate::session::after(Instant::now(), timeout))
    }

    /// Blocks until `deadline`; `None` if the record is still pending then.
    pub fn wait_deadline(&self, deadline: Instant) -> Option<Result<RecordMetadata, Error>> {
        self.slot.wait(Some(deadline), self.idle);
        self.slot.result(self.offset_in_batch)
    }

    /// Whether the outcome is known.
    pub fn is_done(&self) -> bool {
        self.slot.is_done()
    }

    /// Calls `f` exactly once with the record's outcome: at once (on this thread) if it
    /// is already known, otherwise on the thread that learns it — usually the driver
    /// thread, so `f` must be quick and must not block (hand the result to your own
    /// queue, event loop or channel). Allocates one box per call.
    ///
    /// ```
    /// use lnc_uring::{testkit::TestServer, Producer, ProducerConfig};
    ///
    /// let server = TestServer::start()?;
    /// let topic = server.create_topic("events");
    /// let producer = Producer::connect(&server.addr().to_string(), ProducerConfig::default())?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// producer.send_async(topic, b"hello")?.on_complete(move |outcome| {
    ///     let _ = tx.send(outcome.map(|m| m.batch_id));
    /// });
    /// assert!(rx.recv()?.is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_complete<F>(self, f: F)
    where
        F: FnOnce(Result<RecordMetadata, Error>) + Send + 'static,
    {
        self.slot.on_complete(self.offset_in_batch, Box::new(f));
    }
}

/// A pool of slots reused once nothing else refers to them.
#[derive(Debug, Default)]
pub(crate) struct SlotPool {
    slots: Vec<Arc<DeliverySlot>>,
    next: usize,
    ledger: Option<Arc<Ledger>>,
}

impl SlotPool {
    /// A pool of `prealloc` slots (it grows when more are in use at once) that resolve
    /// into `ledger`.
    pub(crate) fn with_ledger(ledger: Arc<Ledger>, prealloc: usize) -> SlotPool {
        let slots = (0..prealloc)
            .map(|_| Arc::new(DeliverySlot::with_ledger(Some(ledger.clone()))))
            .collect();
        SlotPool {
            slots,
            next: 0,
            ledger: Some(ledger),
        }
    }

    /// A slot no one else holds, reset for `topic_id`.
    pub(crate) fn take(&mut self, topic_id: u32) -> Arc<DeliverySlot> {
        let n = self.slots.len();
        // Look at candidates round robin: old slots free up in roughly the order they
        // were used, so the next one is usually free.
        for _ in 0..n {
            let i = self.next % n;
            self.next = self.next.wrapping_add(1);
            if Arc::strong_count(&self.slots[i]) == 1 {
                self.slots[i].reset(topic_id);
                return self.slots[i].clone();
            }
        }
        // More batches in flight (or tickets held) than ever before: grow.
        let slot = Arc::new(DeliverySlot::with_ledger(self.ledger.clone()));
        slot.reset(topic_id);
        self.slots.push(slot.clone());
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_across_threads() {
        let slot = Arc::new(DeliverySlot::new());
        slot.reset(3);
        let t = DeliveryTicket::new(slot.clone(), 5, IdleStrategy::Block);
        assert!(t.try_wait().is_none());
        assert!(t.wait_timeout(Duration::from_millis(5)).is_none());
        let h = {
            let t = t.clone();
            thread::spawn(move || t.wait())
        };
        thread::sleep(Duration::from_millis(20));
        slot.ack(77, 1);
        let m = h.join().unwrap().unwrap();
        assert_eq!(
            (m.topic_id, m.batch_id, m.offset_in_batch, m.attempts),
            (3, 77, 5, 1)
        );
        assert!(t.is_done());
    }

    #[test]
    fn failure_reaches_every_ticket() {
        let slot = Arc::new(DeliverySlot::new());
        slot.reset(1);
        let a = DeliveryTicket::new(
            slot.clone(),
            0,
            IdleStrategy::spin_then_block(Duration::from_micros(50)),
        );
        let b = DeliveryTicket::new(slot.clone(), 1, IdleStrategy::Block);
        slot.fail(Error::ConnectionClosed, 2);
        assert!(matches!(a.wait(), Err(Error::ConnectionClosed)));
        assert!(matches!(b.try_wait(), Some(Err(Error::ConnectionClosed))));
    }

    #[test]
    fn callbacks_run_once_before_or_after_completion() {
        use std::sync::atomic::AtomicUsize;
        let slot = Arc::new(DeliverySlot::new());
        slot.reset(4);
        let hits = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..3u32 {
            let (hits, tx) = (hits.clone(), tx.clone());
            DeliveryTicket::new(slot.clone(), i, IdleStrategy::Block).on_complete(move |r| {
                hits.fetch_add(1, Ordering::SeqCst);
                tx.send(r.map(|m| m.offset_in_batch)).unwrap();
            });
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        slot.ack(9, 1);
        slot.fail(Error::Closed, 1); // a second completion is ignored
        let mut got: Vec<u32> = (0..3).map(|_| rx.recv().unwrap().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2]);
        // Registered after completion: runs at once, on this thread.
        let hits2 = hits.clone();
        DeliveryTicket::new(slot.clone(), 7, IdleStrategy::Block).on_complete(move |r| {
            assert_eq!(r.unwrap().offset_in_batch, 7);
            hits2.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(hits.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn callbacks_race_with_completion() {
        use std::sync::atomic::AtomicUsize;
        for _ in 0..200 {
            let slot = Arc::new(DeliverySlot::new());
            slot.reset(1);
            let hits = Arc::new(AtomicUsize::new(0));
            let completer = {
                let slot = slot.clone();
                thread::spawn(move || slot.ack(1, 1))
            };
            for i in 0..4 {
                let hits = hits.clone();
                DeliveryTicket::new(slot.clone(), i, IdleStrategy::Block).on_complete(move |_| {
                    hits.fetch_add(1, Ordering::SeqCst);
                });
            }
            completer.join().unwrap();
            assert_eq!(hits.load(Ordering::SeqCst), 4);
        }
    }

    #[test]
    fn pool_reuses_free_slots_only() {
        let mut pool = SlotPool::default();
        let a = pool.take(1);
        let a_ptr = Arc::as_ptr(&a);
        let b = pool.take(1);
        assert_ne!(Arc::as_ptr(&b), a_ptr, "a is still held");
        drop(a);
        let c = pool.take(2);
        assert_eq!(Arc::as_ptr(&c), a_ptr, "a was free and reused");
        assert!(!c.is_done());
    }
}
