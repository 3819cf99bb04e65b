//! Batches on a connection: queued and in flight, ACK matching, attribution of errors,
//! quorum failures, fences, retries with back-off and delivery deadlines
//! (docs/protocol.md §1.2, §4.6–4.7, §13.3; the rules are summarised in the
//! [module documentation](super)).
//!
//! The bytes of a batch in flight belong to the frame table ([`Frames`]): resolving a
//! batch only tells the table whether they are wanted again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::calls::Calls;
use super::tx::Frames;
use super::types::{after, new_histogram, Batch, SessionStats, Tx, TxKey};
use super::SessionConfig;
use crate::proto::{offset, ServerError};
use crate::Error;

/// First retry delay after a retryable error (doubled per attempt).
const RETRY_BACKOFF: Duration = Duration::from_millis(10);
/// Largest retry delay.
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A batch written on this connection and not yet resolved.
#[derive(Debug)]
struct Inflight {
    batch_id: u64,
    /// Its frame is in the frame table, under `TxKey::Batch(seq)`.
    batch: Batch,
    sent_at: Instant,
    /// Sequence number of the frame: its key in the frame table, and what fences
    /// compare.
    seq: u64,
    /// Its delivery deadline passed and its slot failed; it stays here as a placeholder
    /// so a late ACK or error still lines up, until an ACK or a fence resolves it.
    timed_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FenceState {
    None,
    /// K1 sent with sequence `seq`; waiting for its echo.
    First {
        seq: u64,
    },
    /// K2 sent; when its echo arrives, everything sent before seq is resolved.
    Second {
        seq: u64,
    },
}

/// The batches of one session.
#[derive(Debug)]
pub(super) struct Ingest {
    max_inflight: usize,
    max_attempts: u32,
    next_batch_id: u64,
    /// Batches waiting to be sent, oldest first (retries go to the front).
    queue: VecDeque<Batch>,
    inflight: VecDeque<Inflight>,
    /// Ingest errors not yet attributed to a batch, in arrival order.
    errors: VecDeque<ServerError>,
    quorum_lost: bool,
    fence: FenceState,
    /// Retried batches already put back at the front of the queue in this pass.
    retries_in_pass: usize,
    stats: SessionStats,
    latency: Histogram<u64>,
}

impl Ingest {
    pub(super) fn new(cfg: &SessionConfig) -> Ingest {
        Ingest {
            max_inflight: cfg.max_inflight,
            max_attempts: cfg.max_attempts,
            next_batch_id: 1,
            queue: VecDeque::with_capacity(cfg.max_batches),
            inflight: VecDeque::with_capacity(cfg.max_inflight.min(cfg.max_batches)),
            errors: VecDeque::new(),
            quorum_lost: false,
            fence: FenceState::None,
            retries_in_pass: 0,
            stats: SessionStats::default(),
            latency: new_histogram(),
        }
    }

    /// The batch counters (every field but `keepalives_sent`).
    pub(super) fn stats(&self) -> SessionStats {
        self.stats
    }

    /// ACK latencies (µs, from the batch's write to its ACK) recorded since the last call.
    pub(super) fn take_latencies(&mut self, into: &mut Histogram<u64>) {
        if !self.latency.is_empty() {
            let _ = into.add(&self.latency);
            self.latency.reset();
        }
    }

    pub(super) fn submit(&mut self, batch: Batch) {
        self.queue.push_back(batch);
    }

    /// Fails a batch that is not in flight.
    pub(super) fn fail(&mut self, mut b: Batch, error: Error) {
        b.fail(error);
        self.stats.batches_failed += 1;
    }

    /// Batches in flight plus queued.
    pub(super) fn len(&self) -> usize {
        self.inflight.len() + self.queue.len()
    }

    pub(super) fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Whether batch `id` is in flight.
    pub(super) fn carries(&self, id: u64) -> bool {
        self.inflight.iter().any(|f| f.batch_id == id)
    }

    /// Whether a queued batch was written before (on an earlier connection).
    pub(super) fn has_resends(&self) -> bool {
        self.queue.iter().any(|b| b.sends > 0)
    }

    /// Hands the next batch to the frame table, if the window, the fence and its back-off
    /// allow. Its id is assigned at its first send, skipping ids that `calls` reserves.
    pub(super) fn transmit<'f>(
        &mut self,
        now: Instant,
        frames: &'f mut Frames,
        calls: &Calls,
    ) -> Option<Tx<'f>> {
        if self.inflight.len() >= self.max_inflight || self.fence != FenceState::None {
            return None;
        }
        if self
            .queue
            .front()
            .is_some_and(|b| b.not_before.is_some_and(|t| t > now))
        {
            return None;
        }
        let mut batch = self.queue.pop_front()?;
        batch.not_before = None;
        let id = match batch.id {
            Some(id) => id,
            None => {
                let id = self.take_batch_id(calls);
                batch.id = Some(id);
                batch.frame.data[offset::BATCH_ID..offset::BATCH_ID + 8]
                    .copy_from_slice(&id.to_le_bytes());
                id
            }
        };
        if batch.sends > 0 {
            self.stats.batches_retried += 1;
        }
        batch.sends += 1;
        let seq = frames.next_seq();
        let buf = batch.frame.take();
        self.inflight.push_back(Inflight {
            batch_id: id,
            batch,
            sent_at: now,
            seq,
            timed_out: false,
        });
        Some(frames.hand_out(TxKey::Batch(seq), buf, true))
    }

    fn take_batch_id(&mut self, calls: &Calls) -> u64 {
        loop {
            let id = self.next_batch_id;
            self.next_batch_id = self.next_batch_id.wrapping_add(1).max(1);
            if !calls.reserves(id) {
                return id;
            }
        }
    }

    /// An Ack frame for batch id `id`. `false`: no batch of ours has that id.
    pub(super) fn on_ack(&mut self, id: u64, now: Instant, frames: &mut Frames) -> bool {
        let Some(pos) = self.inflight.iter().position(|f| f.batch_id == id) else {
            return false;
        };
        self.retries_in_pass = 0;
        // Everything before it was skipped: it got no ACK.
        for _ in 0..pos {
            let f = self.inflight.pop_front().expect("pos < len");
            self.resolve_skipped(f, now, frames);
        }
        let f = self.inflight.pop_front().expect("found at pos");
        if !f.timed_out {
            f.batch.slot.ack(id, f.batch.sends);
            self.stats.batches_acked += 1;
            self.stats.records_acked += u64::from(f.batch.records);
            let us = now.saturating_duration_since(f.sent_at).as_micros() as u64;
            let _ = self.latency.record(us.max(1));
        }
        retire(f, frames);
        self.settle();
        true
    }

    /// An ingest ErrorResponse (it names no batch; which one is learned from the ACKs).
    /// A fence must follow ([`Ingest::fence_idle`]).
    pub(super) fn on_error(&mut self, e: ServerError) {
        self.stats.unattributed_errors += 1;
        if e.outcome_unknown() {
            self.quorum_lost = true;
        }
        self.errors.push_back(e);
    }

    /// Whether no fence is running (one may start).
    pub(super) fn fence_idle(&self) -> bool {
        self.fence == FenceState::None
    }

    /// A fence started with keepalive K1 (sequence `k1`).
    pub(super) fn fence_started(&mut self, k1: u64) {
        self.fence = FenceState::First { seq: k1 };
        self.stats.fences += 1;
    }

    /// The fence's second keepalive K2 (sequence `k2`) was queued.
    pub(super) fn fence_second(&mut self, k2: u64) {
        self.fence = FenceState::Second { seq: k2 };
    }

    /// The echo of keepalive `echoed` arrived. `true`: it was the fence's K1, and K2 must
    /// be queued now ([`Ingest::fence_second`]). The echo of K2 completes the fence.
    pub(super) fn on_echo(&mut self, echoed: u64, now: Instant, frames: &mut Frames) -> bool {
        match self.fence {
            FenceState::First { seq } if seq == echoed => true,
            FenceState::Second { seq } if seq == echoed => {
                self.fence = FenceState::None;
                self.resolve_before(seq, now, frames);
                false
            }
            _ => false,
        }
    }

    /// Once nothing is in flight, a past quorum failure no longer taints attribution.
    fn settle(&mut self) {
        if self.inflight.is_empty() && self.errors.is_empty() {
            self.quorum_lost = false;
        }
    }

    /// A batch got no ACK: it was refused (an error of the queue is its reason) or lost
    /// in a quorum failure (outcome unknown).
    fn resolve_skipped(&mut self, f: Inflight, now: Instant, frames: &mut Frames) {
        let error = self.errors.pop_front();
        if f.timed_out {
            // Its records already failed; it only kept the line.
            retire(f, frames);
            return;
        }
        match error {
            // After a quorum failure the errors can arrive out of batch order (the
            // quorum error is written after the inline errors of later batches of its
            // chunk, docs/protocol.md §4.7), so no error is trusted to name its batch: every
            // skipped batch is retried as "outcome unknown". A batch truly refused fails
            // again on its retry, unambiguously.
            Some(_) | None if self.quorum_lost => {
                self.fail_or_retry(f, unknown_outcome(), true, true, now, frames)
            }
            Some(e) => {
                let retry = e.is_retryable();
                let unknown = e.outcome_unknown();
                self.fail_or_retry(f, Error::from(e), retry, unknown, now, frames);
            }
            // No ACK and no error: dropped after a quorum failure, outcome unknown.
            None => self.fail_or_retry(f, unknown_outcome(), true, true, now, frames),
        }
    }

    /// A batch without an ACK: resent when `retry` allows and its budget is not spent,
    /// failed otherwise. `unknown`: this send may have been stored.
    fn fail_or_retry(
        &mut self,
        f: Inflight,
        error: Error,
        retry: bool,
        unknown: bool,
        now: Instant,
        frames: &mut Frames,
    ) {
        let key = TxKey::Batch(f.seq);
        let mut b = f.batch;
        b.maybe_stored |= unknown;
        if retry && b.sends < self.max_attempts {
            b.frame = reclaim(frames, key);
            // Back off a little (the cause — a follower without a leader, a rate
            // limit — needs time), and go before newer batches, in the original order,
            // to keep per-topic order as far as the window allows.
            let exp = RETRY_BACKOFF.saturating_mul(1 << b.sends.min(6));
            b.not_before = Some(after(now, exp.min(RETRY_BACKOFF_MAX)));
            self.queue.insert(self.retries_in_pass, b);
            self.retries_in_pass += 1;
        } else {
            self.fail(b, error);
            frames.release(key);
        }
    }

    /// Fence complete: batches sent before `seq` without an ACK were skipped.
    fn resolve_before(&mut self, seq: u64, now: Instant, frames: &mut Frames) {
        self.retries_in_pass = 0;
        while self.inflight.front().is_some_and(|f| f.seq < seq) {
            let f = self.inflight.pop_front().expect("front exists");
            self.resolve_skipped(f, now, frames);
        }
        self.errors.clear();
        self.settle();
    }

    /// A new connection: nothing from the last one is pending attribution.
    pub(super) fn on_connected(&mut self) {
        self.fence = FenceState::None;
        self.errors.clear();
        self.quorum_lost = false;
    }

    /// The connection is gone (and the frame table closed). In-flight batches go back to
    /// the front of the queue (at-least-once: the server may have stored some of them),
    /// or fail when their sends are spent.
    pub(super) fn on_disconnected(&mut self, error: &Error, frames: &mut Frames) {
        for f in std::mem::take(&mut self.inflight).into_iter().rev() {
            if f.timed_out {
                // Already failed; nothing to resend.
                retire(f, frames);
                continue;
            }
            // Written, no answer: the server may have stored it.
            let key = TxKey::Batch(f.seq);
            let mut b = f.batch;
            b.maybe_stored = true;
            b.frame = reclaim(frames, key);
            if b.sends >= self.max_attempts {
                self.fail(b, error.clone());
            } else {
                self.queue.push_front(b);
            }
        }
        self.errors.clear();
        self.quorum_lost = false;
        self.fence = FenceState::None;
    }

    /// Authentication was refused: every queued batch fails.
    pub(super) fn refuse(&mut self, error: &Error) {
        for b in std::mem::take(&mut self.queue) {
            self.fail(b, error.clone());
        }
    }

    /// Fails everything (the handle is closing).
    pub(super) fn abort(&mut self, error: &Error, frames: &mut Frames) {
        for mut f in std::mem::take(&mut self.inflight) {
            if !f.timed_out {
                // Written and unanswered: it may have been stored.
                f.batch.maybe_stored = true;
                f.batch.fail(error.clone());
                self.stats.batches_failed += 1;
            }
            retire(f, frames);
        }
        for b in std::mem::take(&mut self.queue) {
            self.fail(b, error.clone());
        }
    }

    /// Offers the delivery deadlines and the back-off of the next batch to `min`.
    pub(super) fn poll_timeout(&self, min: &mut impl FnMut(Instant)) {
        if let Some(b) = self.queue.front() {
            min(b.deadline);
            if let Some(nb) = b.not_before {
                min(nb);
            }
        }
        for f in self.inflight.iter().filter(|f| !f.timed_out) {
            min(f.batch.deadline);
        }
    }

    /// Delivery deadlines. Queued batches fail at once (`link_error` and `connected`
    /// explain why they waited). In-flight ones fail too, but stay in line as
    /// placeholders (a late ACK or error must not be given to another batch) until an ACK
    /// skips them or a fence resolves them. `true`: an in-flight batch expired (a fence
    /// should resolve it).
    pub(super) fn expire(
        &mut self,
        now: Instant,
        link_error: Option<&str>,
        connected: bool,
    ) -> bool {
        while self.queue.front().is_some_and(|b| b.deadline <= now) {
            let b = self.queue.pop_front().expect("front exists");
            let why = match (link_error, connected) {
                (Some(e), false) => format!("delivery timeout while not connected ({e})"),
                _ if b.sends > 0 => "delivery timeout while waiting to be resent".to_owned(),
                _ => "delivery timeout before the batch was sent".to_owned(),
            };
            self.fail(b, Error::Timeout(why));
        }
        let mut expired_inflight = false;
        for f in self
            .inflight
            .iter_mut()
            .filter(|f| !f.timed_out && f.batch.deadline <= now)
        {
            f.timed_out = true;
            f.batch.maybe_stored = true;
            f.batch.fail(Error::Timeout(
                "delivery timeout waiting for the ACK".into(),
            ));
            self.stats.batches_failed += 1;
            expired_inflight = true;
        }
        expired_inflight
    }
}

/// Drops a resolved batch; the frame table keeps its bytes while they are being written.
fn retire(f: Inflight, frames: &mut Frames) {
    frames.release(TxKey::Batch(f.seq));
}

/// The bytes of in-flight batch `key`, to send again.
fn reclaim(frames: &mut Frames, key: TxKey) -> crate::buffers::FrameBuf {
    frames
        .reclaim(key)
        .expect("the frame of a batch in flight is in the frame table")
}

fn unknown_outcome() -> Error {
    Error::Server(ServerError::classify(
        "FORWARD_FAILED: no acknowledgement after a quorum failure (outcome unknown)",
    ))
}

#[cfg(test)]
mod tests {
    use crate::proto::{Frame, MAX_PAYLOAD_LEN};
    use crate::session::testutil::*;

    #[test]
    fn acks_in_order() {
        let now = t0();
        let mut s = session(now);
        let slots: Vec<_> = (0..3).map(|_| submit(&mut s, 1, now)).collect();
        let sent = flush(&mut s, now);
        assert_eq!(ids(&sent), [1, 2, 3]);
        // The batch id is patched into bytes 12..20 with no CRC change needed.
        let (f, _) = Frame::decode(&sent[1].1, C, MAX_PAYLOAD_LEN).unwrap();
        assert_eq!(f.header.batch_id, 2);
        let mut acks = Vec::new();
        for i in 1..=3 {
            acks.extend(ack_frame(C, i));
        }
        s.handle_bytes(&acks, now);
        for (i, slot) in slots.iter().enumerate() {
            assert_eq!(status(slot), Some(Ok(i as u64 + 1)));
        }
        assert!(s.is_idle());
        assert!(s.take_fatal().is_none());
    }

    #[test]
    fn error_overtaking_acks_goes_to_the_skipped_batch() {
        // docs/protocol.md §1.2: [b1][b2 → unknown topic][b3] ⇒ Error, Ack(b1), Ack(b3).
        let now = t0();
        let mut s = session(now);
        let a = submit(&mut s, 1, now);
        let b = submit(&mut s, 9, now);
        let c = submit(&mut s, 1, now);
        flush(&mut s, now);
        let mut bytes = error("Unknown topic");
        bytes.extend(ack_frame(C, 1));
        bytes.extend(ack_frame(C, 3));
        s.handle_bytes(&bytes, now);
        assert_eq!(status(&a), Some(Ok(1)));
        assert_eq!(status(&c), Some(Ok(3)));
        assert!(matches!(status(&b), Some(Err(e)) if e.contains("Unknown topic")));
        // The fence it started completes harmlessly.
        let sent = flush(&mut s, now);
        assert_eq!(keepalives(&sent), 1);
        s.handle_bytes(&echo(), now);
        assert_eq!(keepalives(&flush(&mut s, now)), 1);
        s.handle_bytes(&echo(), now);
        assert!(s.is_idle());
    }

    #[test]
    fn error_for_the_last_batch_is_resolved_by_the_fence() {
        let now = t0();
        let mut s = session(now);
        let a = submit(&mut s, 1, now);
        let b = submit(&mut s, 9, now);
        flush(&mut s, now);
        let mut bytes = error("Unknown topic");
        bytes.extend(ack_frame(C, 1));
        s.handle_bytes(&bytes, now);
        assert_eq!(status(&a), Some(Ok(1)));
        assert_eq!(status(&b), None, "not yet known which batch failed");
        // New batches wait while the fence runs.
        let late = submit(&mut s, 1, now);
        let sent = flush(&mut s, now);
        assert_eq!((ids(&sent).len(), keepalives(&sent)), (0, 1));
        s.handle_bytes(&echo(), now);
        assert_eq!(keepalives(&flush(&mut s, now)), 1);
        s.handle_bytes(&echo(), now);
        assert!(matches!(status(&b), Some(Err(e)) if e.contains("Unknown topic")));
        assert_eq!(ids(&flush(&mut s, now)), [3]);
        s.handle_bytes(&ack_frame(C, 3), now);
        assert_eq!(status(&late), Some(Ok(3)));
    }

    #[test]
    fn quorum_failure_retries_the_unacknowledged_tail() {
        // §4.7: Ack(b1), then FORWARD_FAILED for b2, nothing for b3 and b4.
        let now = t0();
        let mut s = session(now);
        let slots: Vec<_> = (0..4).map(|_| submit(&mut s, 1, now)).collect();
        flush(&mut s, now);
        let mut bytes = ack_frame(C, 1).to_vec();
        bytes.extend(error(
            "FORWARD_FAILED: Quorum not reached - required 2 ACKs, got 1",
        ));
        s.handle_bytes(&bytes, now);
        assert_eq!(status(&slots[0]), Some(Ok(1)));
        s.handle_bytes(&echo(), now);
        flush(&mut s, now);
        s.handle_bytes(&echo(), now);
        // b2 (retryable error), b3 and b4 (outcome unknown) are resent, in order, after
        // a short back-off, with the batch ids they had.
        assert!(ids(&flush(&mut s, now)).is_empty());
        let later = now + Duration::from_secs(2);
        assert_eq!(ids(&flush(&mut s, later)), [2, 3, 4]);
        let mut acks = Vec::new();
        for i in 2..=4 {
            acks.extend(ack_frame(C, i));
        }
        s.handle_bytes(&acks, now);
        for (slot, id) in slots[1..].iter().zip(2..) {
            assert_eq!(status(slot), Some(Ok(id)));
        }
        assert_eq!(s.stats().batches_retried, 3);
    }

    #[test]
    fn quorum_failure_distrusts_out_of_order_errors() {
        // [b1][b2 quorum][b3][b4 unknown topic][b5] in one chunk arrives as
        // Error(b4) inline, Ack(b1), Error(quorum): no batch may be failed for good with
        // another's error; every skipped one is retried (outcome unknown).
        let now = t0();
        let mut s = session(now);
        let slots: Vec<_> = (0..5).map(|_| submit(&mut s, 1, now)).collect();
        flush(&mut s, now);
        let mut bytes = error("Unknown topic");
        bytes.extend(ack_frame(C, 1));
        bytes.extend(error(
            "FORWARD_FAILED: Quorum not reached - required 2 ACKs, got 1",
        ));
        s.handle_bytes(&bytes, now);
        s.handle_bytes(&echo(), now);
        flush(&mut s, now);
        s.handle_bytes(&echo(), now);
        for slot in &slots[1..] {
            assert_eq!(status(slot), None, "retried, not failed");
        }
        let later = now + Duration::from_secs(2);
        assert_eq!(ids(&flush(&mut s, later)), [2, 3, 4, 5]);
        // On the retry, b4 is refused unambiguously; an earlier send may have been
        // stored (the quorum failure), so its outcome is reported as unknown.
        let mut bytes = error("Unknown topic");
        for id in [2, 3, 5] {
            bytes.extend(ack_frame(C, id));
        }
        s.handle_bytes(&bytes, later);
        assert_eq!(status(&slots[1]), Some(Ok(2)));
        assert!(
            matches!(status(&slots[3]), Some(Err(e)) if e.contains("Unknown topic") && e.contains("outcome unknown after 2 send"))
        );
        assert_eq!(status(&slots[4]), Some(Ok(5)));
    }

    #[test]
    fn timed_out_batch_keeps_its_place_for_a_late_error() {
        let now = t0();
        let cfg = SessionConfig {
            peer_timeout: Duration::from_secs(3600),
            ..SessionConfig::default()
        };
        let mut s = Session::new(cfg, now);
        s.on_connected(now);
        let (mut b, a) = batch(1, b"a", now);
        b.deadline = now + Duration::from_millis(10);
        SLOTS.with(|m| m.borrow_mut().push(a.clone()));
        s.submit_batch(b);
        let c = submit(&mut s, 1, now);
        flush(&mut s, now);
        let t1 = now + Duration::from_millis(20);
        s.handle_timeout(t1);
        assert!(matches!(status(&a), Some(Err(e)) if e.contains("timed out")));
        // The late error belongs to the timed-out batch, not to c.
        let mut bytes = error("Unknown topic");
        bytes.extend(ack_frame(C, 2));
        s.handle_bytes(&bytes, t1);
        assert_eq!(status(&c), Some(Ok(2)));
        assert!(s.take_fatal().is_none());
    }

    #[test]
    fn a_batch_that_may_be_stored_and_then_times_out_in_the_queue_says_so() {
        let now = t0();
        let mut s = session(now);
        let (mut b, slot) = batch(1, b"q", now);
        b.deadline = now + Duration::from_millis(5);
        SLOTS.with(|m| m.borrow_mut().push(slot.clone()));
        s.submit_batch(b);
        flush(&mut s, now);
        // A quorum failure: the send may be stored; it waits (back-off) to be resent.
        s.handle_bytes(
            &error("FORWARD_FAILED: Quorum not reached - required 2 ACKs, got 1"),
            now,
        );
        s.handle_bytes(&echo(), now);
        flush(&mut s, now);
        s.handle_bytes(&echo(), now);
        assert_eq!(status(&slot), None, "queued for a resend");
        s.handle_timeout(now + Duration::from_millis(6));
        let e = status(&slot).unwrap().unwrap_err();
        assert!(e.contains("outcome unknown after 1 send"), "{e}");
        assert!(e.contains("waiting to be resent"), "{e}");
    }

    #[test]
    fn delivery_deadline_and_late_ack() {
        let now = t0();
        let mut s = session(now);
        let a = submit(&mut s, 1, now);
        flush(&mut s, now);
        s.handle_timeout(now + Duration::from_secs(61));
        assert!(matches!(status(&a), Some(Err(e)) if e.contains("timed out")));
        // Nothing heard for 61 s with a batch in flight: the peer is presumed dead.
        assert!(matches!(s.take_fatal(), Some(Fatal::PeerTimeout(_))));
        s.handle_bytes(&ack_frame(C, 1), now + Duration::from_secs(62));
        assert!(s.take_fatal().is_none(), "a late ACK is ignored");
    }
}
