//! The one table of frames handed to the I/O layer.
//!
//! The rule it keeps: the bytes of a frame given out by
//! [`Session::poll_transmit`](super::Session::poll_transmit) stay valid, unmoved and
//! unmodified until [`Session::tx_complete`](super::Session::tx_complete) is called with
//! its key, or until the connection is closed
//! ([`Session::on_disconnected`](super::Session::on_disconnected), called only when no
//! operation references any buffer).
//!
//! Every frame — batch, control request, keepalive, Authenticate — is registered here
//! when it is handed out, and its bytes are owned here from then on. The operation that
//! sent it can be resolved at any moment without asking whether its frame is still being
//! written: a batch tells the table it no longer needs its bytes ([`Frames::release`]) or
//! wants them back to send again ([`Frames::reclaim`]); a control request, a keepalive or
//! Authenticate never needs them again. The table lets the bytes go when both the write
//! and the operation are done with them.
//!
//! The table also numbers frames: one sequence over everything queued on a connection,
//! in the order it is written (fences compare batch and keepalive sequence numbers).

use std::collections::VecDeque;

use super::types::{Tx, TxKey};
use crate::buffers::{FrameBuf, Registration};

/// Frames queued and frames handed to the I/O layer.
#[derive(Debug)]
pub(super) struct Frames {
    next_seq: u64,
    /// Frames no operation keeps (keepalives, Authenticate), ready to write, in order:
    /// sequence number and bytes.
    queued: VecDeque<(u64, Vec<u8>)>,
    /// Every frame handed out and not yet let go, in hand-out order (the oldest, the
    /// likeliest to be written or acknowledged next, first).
    out: VecDeque<Out>,
}

#[derive(Debug)]
struct Out {
    key: TxKey,
    buf: FrameBuf,
    /// Handed out and not yet reported written: the I/O layer may read the bytes.
    writing: bool,
    /// Its operation may still want the bytes back (a batch in flight may be sent
    /// again).
    kept: bool,
}

impl Frames {
    /// A table with room for `frames` frames handed out before it grows.
    pub(super) fn new(frames: usize) -> Frames {
        Frames {
            next_seq: 1,
            queued: VecDeque::with_capacity(4),
            out: VecDeque::with_capacity(frames),
        }
    }

    /// The sequence number of the next frame.
    pub(super) fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Queues a frame that no operation keeps, after those already queued.
    pub(super) fn queue(&mut self, seq: u64, bytes: Vec<u8>) {
        self.queued.push_back((seq, bytes));
    }

    /// Queues a frame that no operation keeps, before those already queued.
    pub(super) fn queue_first(&mut self, seq: u64, bytes: Vec<u8>) {
        self.queued.push_front((seq, bytes));
    }

    pub(super) fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    /// Hands out the oldest queued frame.
    pub(super) fn next_queued(&mut self) -> Option<Tx<'_>> {
        let (seq, bytes) = self.queued.pop_front()?;
        Some(self.hand_out(TxKey::Other(seq), FrameBuf::heap(bytes), false))
    }

    /// Hands out `buf` as frame `key`. `kept`: its operation may reclaim the bytes.
    pub(super) fn hand_out(&mut self, key: TxKey, buf: FrameBuf, kept: bool) -> Tx<'_> {
        self.out.push_back(Out {
            key,
            buf,
            writing: true,
            kept,
        });
        Tx::new(key, &self.out.back().expect("just pushed").buf)
    }

    /// The buffer of kept frame `key` was registered for fixed sends (it keeps the
    /// registration when it goes back to its pool).
    pub(super) fn set_registration(&mut self, key: TxKey, reg: Registration) {
        if let Some(i) = self.find_kept(key) {
            self.out[i].buf.reg = Some(reg);
        }
    }

    /// The I/O layer finished writing frame `key`: its bytes go unless kept. (Keys are
    /// unique per frame handed out, so a batch sent again while its earlier frame is
    /// still being written cannot have that frame's report taken for its own.)
    pub(super) fn complete(&mut self, key: TxKey) {
        let Some(i) = self.out.iter().position(|o| o.key == key) else {
            return;
        };
        if self.out[i].kept {
            self.out[i].writing = false;
        } else {
            self.out.remove(i);
        }
    }

    /// The operation that sent kept frame `key` will not send it again: its bytes go
    /// now, or when their write is done.
    pub(super) fn release(&mut self, key: TxKey) {
        if let Some(i) = self.find_kept(key) {
            if self.out[i].writing {
                self.out[i].kept = false;
            } else {
                self.out.remove(i);
            }
        }
    }

    /// The operation that sent kept frame `key` will send it again: its bytes, or a copy
    /// of them while the I/O layer may still read them (the original then goes when its
    /// write is done).
    pub(super) fn reclaim(&mut self, key: TxKey) -> Option<FrameBuf> {
        let i = self.find_kept(key)?;
        let o = &mut self.out[i];
        if o.writing {
            o.kept = false;
            Some(FrameBuf::heap(o.buf.data.clone()))
        } else {
            self.out.remove(i).map(|o| o.buf)
        }
    }

    /// The connection is closed and no operation references any buffer: queued frames
    /// and frames no operation keeps go; kept ones stay, no longer being written, for
    /// their operations to reclaim or release.
    pub(super) fn close(&mut self) {
        self.queued.clear();
        self.out.retain_mut(|o| {
            o.writing = false;
            o.kept
        });
    }

    fn find_kept(&self, key: TxKey) -> Option<usize> {
        self.out.iter().position(|o| o.kept && o.key == key)
    }

    /// Frames handed out and not let go.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.out.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffers::BufferPool;
    use crate::session::testutil::*;

    /// A pool with room for one buffer: `try_take` tells whether it was let go.
    fn one_buffer() -> (BufferPool, FrameBuf) {
        let pool = BufferPool::new(64, 64, 0);
        let mut buf = pool.try_take().unwrap();
        buf.data.extend_from_slice(b"frame");
        (pool, buf)
    }

    #[test]
    fn a_frame_resolved_while_being_written_is_kept_until_the_write_completes() {
        let (pool, buf) = one_buffer();
        let mut t = Frames::new(0);
        let key = TxKey::Batch(1);
        let tx = t.hand_out(key, buf, true);
        let ptr = tx.bytes.as_ptr();
        // Resolved (acknowledged, failed) before the driver reported the write.
        t.release(key);
        assert!(pool.try_take().is_none(), "still being written");
        assert_eq!(t.held(), 1);
        t.complete(key);
        assert_eq!(t.held(), 0);
        let again = pool.try_take().expect("released by tx_complete");
        assert_eq!(again.data.as_ptr(), ptr);
    }

    #[test]
    fn a_kept_frame_outlives_its_write_until_released() {
        let (pool, buf) = one_buffer();
        let mut t = Frames::new(0);
        let key = TxKey::Batch(7);
        t.hand_out(key, buf, true);
        t.complete(key);
        assert_eq!(t.held(), 1, "the batch may be sent again");
        t.release(key);
        assert_eq!(t.held(), 0);
        assert!(pool.try_take().is_some());
    }

    #[test]
    fn reclaiming_a_frame_being_written_gives_a_copy() {
        let (pool, buf) = one_buffer();
        let mut t = Frames::new(0);
        let key = TxKey::Batch(3);
        let ptr = t.hand_out(key, buf, true).bytes.as_ptr();
        let copy = t.reclaim(key).unwrap();
        assert_eq!(copy.data, b"frame");
        assert_ne!(copy.data.as_ptr(), ptr);
        assert!(
            pool.try_take().is_none(),
            "the original is still being written"
        );
        t.complete(key);
        assert!(pool.try_take().is_some());
        // Once written, the bytes themselves come back.
        let (_pool, buf) = one_buffer();
        let ptr = t.hand_out(key, buf, true).bytes.as_ptr();
        t.complete(key);
        assert_eq!(t.reclaim(key).unwrap().data.as_ptr(), ptr);
        assert_eq!(t.held(), 0);
    }

    #[test]
    fn unkept_frames_go_when_written_and_everything_goes_at_the_close() {
        let mut t = Frames::new(0);
        let (s1, s2) = (t.next_seq(), t.next_seq());
        t.queue(s1, b"ka".to_vec());
        t.queue_first(s2, b"auth".to_vec());
        assert_eq!(t.next_queued().unwrap().bytes, b"auth");
        assert_eq!(t.next_queued().unwrap().key, TxKey::Other(s1));
        assert!(t.next_queued().is_none());
        t.complete(TxKey::Other(s2));
        assert_eq!(t.held(), 1);

        let (pool, buf) = one_buffer();
        t.hand_out(TxKey::Batch(1), buf, true);
        t.release(TxKey::Batch(1));
        let s3 = t.next_seq();
        t.queue(s3, b"never sent".to_vec());
        // Closed with frames written, queued and released while being written.
        t.close();
        assert_eq!(t.held(), 0);
        assert!(!t.has_queued());
        assert!(pool.try_take().is_some());
    }

    /// A batch sent again while its first frame is being written: the first frame's
    /// report lets that frame go, never the one being written now (the I/O layer may be
    /// reading it, zero-copy, until its own report).
    #[test]
    fn a_report_lets_go_only_the_frame_it_names() {
        let now = t0();
        let mut s = session(now);
        let pool = BufferPool::new(256, 256, 0);
        let slot = submit_pooled(&mut s, &pool, now);
        let first = s.poll_transmit(now).unwrap().key;
        quorum_failure_fenced(&mut s, now);
        let later = now + Duration::from_secs(2);
        let tx = s.poll_transmit(later).unwrap();
        let (second, ptr) = (tx.key, tx.bytes.as_ptr());
        assert_ne!(first, second);
        s.handle_bytes(&ack_frame(C, 1), later);
        assert_eq!(status(&slot), Some(Ok(1)));
        // The first frame's report: the pool's buffer (the first frame) goes, the copy
        // being written stays.
        s.tx_complete(first, later);
        assert!(pool.try_take().is_some(), "the first frame is let go");
        assert_eq!(s.tx.held(), 1, "the second is still being written");
        assert_eq!(s.tx.out[0].buf.data.as_ptr(), ptr);
        s.tx_complete(second, later);
        assert_eq!(s.tx.held(), 0);
    }

    /// A batch for the session whose frame is the pool's only buffer.
    fn submit_pooled(s: &mut Session, pool: &BufferPool, now: Instant) -> Arc<DeliverySlot> {
        let (mut b, slot) = batch(1, b"v", now);
        let mut buf = pool.try_take().expect("the pool's buffer is free");
        buf.data.extend_from_slice(&b.frame.data);
        b.frame = buf;
        SLOTS.with(|m| m.borrow_mut().push(slot.clone()));
        s.submit_batch(b);
        slot
    }

    /// Through the session: whatever resolves a batch or a call, the bytes of its frame
    /// stay until the driver reports the write, and the close lets go of everything.
    #[test]
    fn the_session_keeps_every_frame_handed_out_until_written_or_closed() {
        let now = t0();
        let mut s = session(now);
        let pool = BufferPool::new(256, 256, 0);

        // A batch acknowledged before its write is reported.
        let slot = submit_pooled(&mut s, &pool, now);
        let tx = s.poll_transmit(now).unwrap();
        let (key, ptr) = (tx.key, tx.bytes.as_ptr());
        s.handle_bytes(&ack_frame(C, 1), now);
        assert_eq!(status(&slot), Some(Ok(1)));
        assert!(pool.try_take().is_none(), "still being written");
        s.tx_complete(key, now);
        let buf = pool.try_take().expect("let go once written");
        assert_eq!(buf.data.as_ptr(), ptr);
        drop(buf);

        // A control request answered before its write is reported.
        let (reply, replies) = crossbeam_channel::bounded(1);
        let deadline = now + Duration::from_secs(5);
        s.submit_call(Call::new(&Request::ListTopics, C, deadline, reply).unwrap());
        let key = s.poll_transmit(now).unwrap().key;
        let mut v = Vec::new();
        R::Topic(b"[]").encode(C, &mut v);
        s.handle_bytes(&v, now);
        assert!(replies.try_recv().unwrap().is_ok());
        assert_eq!(s.tx.held(), 1, "still being written");
        s.tx_complete(key, now);
        assert_eq!(s.tx.held(), 0);

        // A batch sent again while its first write is not reported goes from a copy.
        let slot = submit_pooled(&mut s, &pool, now);
        let tx = s.poll_transmit(now).unwrap();
        let (key, ptr, bytes) = (tx.key, tx.bytes.as_ptr(), tx.bytes.to_vec());
        quorum_failure_fenced(&mut s, now);
        assert_eq!(status(&slot), None, "to be resent");
        let later = now + Duration::from_secs(2);
        let tx = s.poll_transmit(later).unwrap();
        assert_eq!(tx.bytes, &bytes[..]);
        assert_ne!(tx.key, key, "a frame of its own");
        assert_ne!(tx.bytes.as_ptr(), ptr);
        assert!(pool.try_take().is_none(), "the first write is not reported");
        assert_eq!(s.tx.held(), 2);

        // Closed with both writes unreported: the table lets go of everything, and the
        // batch takes its bytes back for the next connection.
        s.on_disconnected(&Error::ConnectionClosed);
        assert_eq!(s.tx.held(), 0);
        assert!(pool.try_take().is_some(), "let go at the close");
        s.on_connected(later);
        assert_eq!(keepalives(&flush(&mut s, later)), 1, "the probe");
        s.handle_bytes(&echo(), later);
        let resent = flush(&mut s, later);
        assert_eq!(resent.len(), 1);
        assert_eq!(resent[0].1, bytes);
        s.handle_bytes(&ack_frame(C, 2), later);
        assert_eq!(status(&slot), Some(Ok(2)));
        assert_eq!(s.tx.held(), 0);
    }
}
