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
    pub(super) fn new() -> Frames {
        Frames {
            next_seq: 1,
            queued: VecDeque::new(),
            out: VecDeque::new(),
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

    /// The I/O layer finished writing frame `key`: its bytes go unless kept.
    ///
    /// A batch resent while the write of its previous frame is not reported done has two
    /// frames with one key; the report is then taken to be the kept one's (as it has
    /// always been), and the other goes at the next report or at the close.
    pub(super) fn complete(&mut self, key: TxKey) {
        let mut found = None;
        for (i, o) in self.out.iter().enumerate() {
            if o.key == key {
                found.get_or_insert(i);
                if o.kept {
                    found = Some(i);
                    break;
                }
            }
        }
        let Some(i) = found else {
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
}
