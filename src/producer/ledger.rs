//! A producer's books: records outstanding, failures, and which sealed batches are
//! resolved — so `flush` waits for exactly the records accepted before it was called,
//! and reports each failure once.
//!
//! Every sealed batch gets a sequence number. The ledger keeps, per unresolved batch, its
//! record count in a ring indexed by sequence, and a *watermark*: every batch below it is
//! resolved. `flush` seals the open batches, notes the next sequence number `S`, and waits
//! until the watermark reaches `S`. Records accepted later land in batches `≥ S` and do
//! not hold it up. Work is per batch, never per record.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::Error;

/// Failed batches kept for `flush`/`close` to report; beyond this, entries merge.
const MAX_FAILURE_ENTRIES: usize = 1024;

#[derive(Debug)]
struct Failure {
    /// Sequence of the (last) batch this entry covers.
    seq: u64,
    records: u64,
    error: Error,
}

#[derive(Debug)]
struct Seqs {
    /// Sequence number of the next sealed batch.
    next: u64,
    /// Every batch below this is resolved.
    watermark: u64,
}

/// Failures of records accepted before a `flush` or `close`: how many, and the first.
#[derive(Debug)]
pub(crate) struct FailureReport {
    pub(crate) records: u64,
    pub(crate) first: Error,
}

/// The producer's books (shared with its delivery slots).
#[derive(Debug)]
pub(crate) struct Ledger {
    seqs: Mutex<Seqs>,
    /// Record counts of unresolved batches by `seq & mask` (0 = resolved).
    ring: Box<[AtomicU32]>,
    mask: u64,
    watermark: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<Error>>,
    failures: Mutex<VecDeque<Failure>>,
    waiting: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Ledger {
    /// Books for at most `max_batches` sealed batches unresolved at once.
    pub(crate) fn new(max_batches: usize) -> Ledger {
        let n = max_batches.max(64).next_power_of_two();
        Ledger {
            seqs: Mutex::new(Seqs {
                next: 0,
                watermark: 0,
            }),
            ring: (0..n).map(|_| AtomicU32::new(0)).collect(),
            mask: n as u64 - 1,
            watermark: AtomicU64::new(0),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_failure: Mutex::new(None),
            failures: Mutex::new(VecDeque::new()),
            waiting: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    /// Books a sealed batch of `records` records (at least one) and `bytes` bytes;
    /// returns its sequence number. Waits while the ring is full (it is sized so that the
    /// producer's memory budget runs out first).
    pub(crate) fn seal(&self, records: u32, bytes: usize) -> u64 {
        let records = records.max(1);
        loop {
            {
                let mut s = self.seqs.lock().unwrap_or_else(|e| e.into_inner());
                if s.next - s.watermark <= self.mask {
                    let seq = s.next;
                    s.next += 1;
                    self.ring[(seq & self.mask) as usize].store(records, Ordering::Release);
                    self.records
                        .fetch_add(u64::from(records), Ordering::Relaxed);
                    self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                    return seq;
                }
            }
            let next = self.next_seq();
            self.wait_until(Instant::now() + Duration::from_millis(100), || {
                next - self.watermark.load(Ordering::SeqCst) <= self.mask
            });
        }
    }

    /// A sealed batch got its outcome (exactly once per sequence number): counts it.
    /// Call [`Ledger::settle`] after the waiters of the batch were told.
    pub(crate) fn resolve(&self, seq: u64, bytes: usize, failure: Option<&Error>) {
        let records = self.ring[(seq & self.mask) as usize].load(Ordering::Acquire);
        self.records
            .fetch_sub(u64::from(records), Ordering::Relaxed);
        self.bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
        if let Some(e) = failure {
            self.note_failure(seq, u64::from(records), e);
        }
    }

    /// The batch `seq` resolved by [`Ledger::resolve`] no longer holds up `flush`.
    pub(crate) fn settle(&self, seq: u64) {
        self.ring[(seq & self.mask) as usize].store(0, Ordering::Release);
        {
            let mut s = self.seqs.lock().unwrap_or_else(|e| e.into_inner());
            let mut w = s.watermark;
            while w < s.next && self.ring[(w & self.mask) as usize].load(Ordering::Acquire) == 0 {
                w += 1;
            }
            if w != s.watermark {
                s.watermark = w;
                // SeqCst, paired with the waiter's increment of `waiting` then load of the
                // watermark: one of the two sides sees the other.
                self.watermark.store(w, Ordering::SeqCst);
            }
        }
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cv.notify_all();
        }
    }

    fn note_failure(&self, seq: u64, records: u64, error: &Error) {
        self.failed.fetch_add(records, Ordering::Relaxed);
        {
            let mut first = self.first_failure.lock().unwrap_or_else(|e| e.into_inner());
            if first.is_none() {
                *first = Some(error.clone());
            }
        }
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() >= MAX_FAILURE_ENTRIES {
            let last = f.back_mut().expect("full");
            last.seq = last.seq.max(seq);
            last.records += records;
        } else {
            f.push_back(Failure {
                seq,
                records,
                error: error.clone(),
            });
        }
    }

    /// The sequence number the next sealed batch will get.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seqs.lock().unwrap_or_else(|e| e.into_inner()).next
    }

    /// Waits until every batch below `seq` is resolved or `deadline`; returns the records
    /// of batches below `seq` still unresolved (0 when done).
    pub(crate) fn wait_resolved(&self, seq: u64, deadline: Instant) -> u64 {
        if self.wait_until(deadline, || self.watermark.load(Ordering::SeqCst) >= seq) {
            return 0;
        }
        let w = self.watermark.load(Ordering::SeqCst);
        (w..seq)
            .map(|s| u64::from(self.ring[(s & self.mask) as usize].load(Ordering::Acquire)))
            .sum()
    }

    /// Waits until `done()` or `deadline`; returns `done()`.
    fn wait_until(&self, deadline: Instant, done: impl Fn() -> bool) -> bool {
        if done() {
            return true;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let ok = loop {
            // Checked under the lock after announcing the wait: a resolver that moved the
            // watermark either is seen here or sees `waiting` and notifies under the lock.
            if done() {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            guard = self
                .cv
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        drop(guard);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        ok
    }

    /// Takes (so they are reported once) the failures of batches below `seq`.
    pub(crate) fn take_failures(&self, seq: u64) -> Option<FailureReport> {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut report: Option<FailureReport> = None;
        f.retain(|x| {
            if x.seq >= seq {
                return true;
            }
            match &mut report {
                Some(r) => r.records += x.records,
                None => {
                    report = Some(FailureReport {
                        records: x.records,
                        first: x.error.clone(),
                    })
                }
            }
            false
        });
        report
    }

    /// Records in sealed batches not yet resolved.
    pub(crate) fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Payload bytes in sealed batches not yet resolved.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Records that failed since the producer started.
    pub(crate) fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The first failure since the producer started.
    pub(crate) fn first_failure(&self) -> Option<Error> {
        self.first_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_waits_only_for_earlier_batches() {
        let l = Ledger::new(8);
        let a = l.seal(3, 30);
        let b = l.seal(2, 20);
        let s = l.next_seq();
        let c = l.seal(5, 50); // accepted after the flush began
        let soon = Instant::now() + Duration::from_millis(5);
        assert_eq!(l.wait_resolved(s, soon), 5, "a and b pending");
        l.resolve(b, 20, None);
        l.settle(b);
        assert_eq!(l.wait_resolved(s, soon), 3);
        l.resolve(a, 30, None);
        l.settle(a);
        assert_eq!(l.wait_resolved(s, soon), 0, "c does not hold the flush up");
        assert_eq!(l.records(), 5);
        l.resolve(c, 50, None);
        l.settle(c);
        assert_eq!((l.records(), l.bytes()), (0, 0));
    }

    #[test]
    fn failures_are_reported_once_by_the_call_that_covers_them() {
        let l = Ledger::new(8);
        let a = l.seal(3, 30);
        let b = l.seal(4, 40);
        l.resolve(a, 30, Some(&Error::Closed));
        l.settle(a);
        let cut = l.next_seq();
        let c = l.seal(1, 10);
        l.resolve(c, 10, Some(&Error::ConnectionClosed));
        l.settle(c);
        l.resolve(b, 40, Some(&Error::Config("x".into())));
        l.settle(b);
        let r = l.take_failures(cut).unwrap();
        assert_eq!(r.records, 7);
        assert!(matches!(r.first, Error::Closed));
        assert!(l.take_failures(cut).is_none(), "reported once");
        assert_eq!(l.take_failures(u64::MAX).unwrap().records, 1);
        assert_eq!(l.failed(), 8);
    }

    #[test]
    fn a_full_ring_waits_for_resolution() {
        let l = std::sync::Arc::new(Ledger::new(1)); // 64 entries
        let seqs: Vec<u64> = (0..64).map(|_| l.seal(1, 1)).collect();
        let l2 = l.clone();
        let h = std::thread::spawn(move || l2.seal(1, 1));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!h.is_finished());
        l.resolve(seqs[0], 1, None);
        l.settle(seqs[0]);
        assert_eq!(h.join().unwrap(), 64);
    }
}
