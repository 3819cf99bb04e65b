//! The send queue of one connection: frames waiting to be written, how much of each is
//! written, and which zero-copy notifications still hold which frames.
//!
//! A frame is reported sent (its buffer may be reused) only when all of it was written
//! *and* every SEND_ZC that covered any part of it has delivered its notification: the
//! kernel may read a zero-copy buffer until then. A frame can be covered by several
//! partial ZC sends; each one holds it.

use std::collections::VecDeque;

use crate::driver::io::Events;
use crate::session::TxKey;

/// A frame queued for sending; `len` bytes at `ptr` stay valid and unchanged until it is
/// reported sent or the connection is reported closed (the contract of `Io::queue`).
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) key: TxKey,
    pub(super) ptr: *const u8,
    pub(super) len: usize,
    /// Bytes already written.
    pub(super) done: usize,
    /// Registered buffer holding the frame.
    pub(super) fixed: Option<u16>,
}

impl Pending {
    /// Bytes still to write.
    pub(super) fn remaining(&self) -> usize {
        self.len - self.done
    }
}

#[derive(Debug, Default)]
pub(super) struct SendQueue {
    pending: VecDeque<Pending>,
    /// ZC sends whose notification has not arrived: (sequence, the frame it covered).
    notifs: VecDeque<(u64, TxKey)>,
    /// Frames fully written, waiting for notifications: (key, length).
    held: Vec<(TxKey, usize)>,
}

impl SendQueue {
    /// A queue with room for `frames` frames (and as many zero-copy notifications)
    /// before it grows.
    pub(super) fn with_capacity(frames: usize) -> SendQueue {
        SendQueue {
            pending: VecDeque::with_capacity(frames),
            notifs: VecDeque::with_capacity(frames),
            held: Vec::with_capacity(frames),
        }
    }

    pub(super) fn push(&mut self, p: Pending) {
        self.pending.push_back(p);
    }

    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub(super) fn front(&self) -> Option<&Pending> {
        self.pending.front()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Pending> {
        self.pending.iter()
    }

    /// A ZC send with sequence `seq` was submitted for the front frame.
    pub(super) fn zc_submitted(&mut self, seq: u64) {
        if let Some(p) = self.pending.front() {
            self.notifs.push_back((seq, p.key));
        }
    }

    /// The ZC send `seq` will deliver no notification (it failed before sending).
    pub(super) fn zc_abandoned(&mut self, seq: u64, events: &mut dyn Events) {
        self.zc_notified(seq, events);
    }

    /// Accounts `n` bytes written from the front of the queue; reports frames done.
    pub(super) fn advance(&mut self, mut n: usize, events: &mut dyn Events) {
        while n > 0 {
            let Some(p) = self.pending.front_mut() else {
                break;
            };
            let rem = p.remaining();
            if n < rem {
                p.done += n;
                break;
            }
            n -= rem;
            let p = self.pending.pop_front().expect("front exists");
            if self.notifs.iter().any(|&(_, k)| k == p.key) {
                self.held.push((p.key, p.len));
            } else {
                events.sent(p.key, p.len);
            }
        }
    }

    /// The notification of ZC send `seq` arrived: frames no other notification holds
    /// are reported sent.
    pub(super) fn zc_notified(&mut self, seq: u64, events: &mut dyn Events) {
        let Some(i) = self.notifs.iter().position(|&(s, _)| s == seq) else {
            return;
        };
        let (_, key) = self.notifs.remove(i).expect("position exists");
        if self.notifs.iter().any(|&(_, k)| k == key) {
            return;
        }
        if let Some(j) = self.held.iter().position(|&(k, _)| k == key) {
            let (key, len) = self.held.swap_remove(j);
            events.sent(key, len);
        }
    }

    /// The connection is gone and no operation references any frame: forget everything
    /// (the session takes its frames back through `Events::closed`).
    pub(super) fn clear(&mut self) {
        self.pending.clear();
        self.notifs.clear();
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[derive(Default)]
    struct Log(Vec<(TxKey, usize)>);
    impl Events for Log {
        fn connected(&mut self) {}
        fn connect_failed(&mut self, _: io::Error) {}
        fn data(&mut self, _: &[u8]) {}
        fn sent(&mut self, key: TxKey, bytes: usize) {
            self.0.push((key, bytes));
        }
        fn closed(&mut self, _: Option<io::Error>) {}
    }

    fn frame(id: u64, len: usize) -> Pending {
        Pending {
            key: TxKey::Batch(id),
            ptr: std::ptr::null(),
            len,
            done: 0,
            fixed: None,
        }
    }

    #[test]
    fn a_frame_covered_by_two_partial_zc_sends_waits_for_both_notifications() {
        let mut q = SendQueue::default();
        let mut log = Log::default();
        q.push(frame(1, 100));
        q.zc_submitted(1);
        q.advance(60, &mut log); // first ZC send wrote 60 bytes
        q.zc_submitted(2);
        q.advance(40, &mut log); // the second wrote the rest
        assert!(log.0.is_empty(), "both sends may still read the buffer");
        // The later notification first: the earlier one still holds the frame.
        q.zc_notified(2, &mut log);
        assert!(
            log.0.is_empty(),
            "send 1's notification is still outstanding"
        );
        q.zc_notified(1, &mut log);
        assert_eq!(log.0, [(TxKey::Batch(1), 100)]);
    }

    #[test]
    fn copying_sends_report_frames_at_once() {
        let mut q = SendQueue::default();
        let mut log = Log::default();
        q.push(frame(1, 10));
        q.push(frame(2, 10));
        q.advance(15, &mut log);
        assert_eq!(log.0, [(TxKey::Batch(1), 10)]);
        q.advance(5, &mut log);
        assert_eq!(log.0.len(), 2);
        assert!(q.is_empty());
    }

    #[test]
    fn an_abandoned_zc_send_releases_its_hold() {
        let mut q = SendQueue::default();
        let mut log = Log::default();
        q.push(frame(1, 10));
        q.zc_submitted(7);
        q.advance(10, &mut log);
        q.zc_abandoned(7, &mut log);
        assert_eq!(log.0, [(TxKey::Batch(1), 10)]);
    }
}
