//! Control requests on a connection (docs/protocol.md §6.1, §6.14, §13.3).
//!
//! * Control replies are inline and in request order, so the oldest request sent is the
//!   one the next reply answers.
//! * A control request is a **barrier** on a connection that carries ingests: it is sent
//!   only when no batch is in flight and no other request waits for its reply, and no
//!   batch is sent while a request is queued or outstanding. An ErrorResponse therefore
//!   belongs to the oldest outstanding request if there is one, otherwise to an ingest.
//! * Unsubscribe is answered by an Ack frame whose batch id is the consumer id: it is held
//!   while a batch with that id is in flight, and batch ids skip every consumer id with an
//!   Unsubscribe queued or outstanding ([`Calls::reserves`]).
//! * A request that outlives its deadline before it is sent fails alone; one that was
//!   sent leaves its reply on the way, so the stream would be out of step: every
//!   outstanding request fails and the connection is reset.

use std::collections::VecDeque;
use std::time::Instant;

use super::ingest::Ingest;
use super::tx::Frames;
use super::types::{Call, Reply, Tx, TxKey};
use crate::buffers::FrameBuf;
use crate::Error;

/// Control requests queued and outstanding.
#[derive(Debug, Default)]
pub(super) struct Calls {
    /// Waiting to be sent, oldest first.
    queued: VecDeque<Call>,
    /// Sent and waiting for their replies, in request order. Their frames belong to the
    /// frame table from the moment they are handed out.
    pending: VecDeque<Call>,
}

impl Calls {
    pub(super) fn submit(&mut self, call: Call) {
        self.queued.push_back(call);
    }

    /// Requests queued or outstanding.
    pub(super) fn len(&self) -> usize {
        self.pending.len() + self.queued.len()
    }

    /// Whether a request waits for its reply.
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Batches wait while any request is queued or outstanding (the barrier).
    pub(super) fn holds_batches(&self) -> bool {
        !self.pending.is_empty() || !self.queued.is_empty()
    }

    /// Whether batch id `id` must not be used: the Ack of an Unsubscribe queued or
    /// outstanding will carry it.
    pub(super) fn reserves(&self, id: u64) -> bool {
        self.pending
            .iter()
            .chain(self.queued.iter())
            .any(|c| c.unsubscribe_id == Some(id))
    }

    /// Whether the oldest queued request may be sent now: no batch in flight and no
    /// request outstanding (the barrier), and for an Unsubscribe, no batch in flight with
    /// its consumer id.
    pub(super) fn ready(&self, ingest: &Ingest) -> bool {
        if ingest.in_flight() > 0 || !self.pending.is_empty() {
            return false;
        }
        self.queued
            .front()
            .is_some_and(|c| !c.unsubscribe_id.is_some_and(|id| ingest.carries(id)))
    }

    /// Hands the oldest queued request to the frame table (after [`Calls::ready`]).
    pub(super) fn send<'f>(&mut self, frames: &'f mut Frames) -> Option<Tx<'f>> {
        let mut call = self.queued.pop_front()?;
        let seq = frames.next_seq();
        let frame = std::mem::take(&mut call.frame);
        self.pending.push_back(call);
        Some(frames.hand_out(TxKey::Other(seq), FrameBuf::heap(frame), false))
    }

    /// A control reply: it answers the oldest outstanding request. Given back when no
    /// request waits for one.
    pub(super) fn on_reply(&mut self, reply: Reply) -> Option<Reply> {
        match self.pending.pop_front() {
            Some(c) => {
                let _ = c.reply.send(Ok(reply));
                None
            }
            None => Some(reply),
        }
    }

    /// An Ack frame that is no batch's: the reply to an Unsubscribe for consumer `id`, if
    /// one is outstanding (otherwise an Ack for nothing sent on this connection).
    pub(super) fn on_ack(&mut self, id: u64) {
        if let Some(i) = self
            .pending
            .iter()
            .position(|c| c.unsubscribe_id == Some(id))
        {
            let c = self.pending.remove(i).expect("position exists");
            let _ = c.reply.send(Ok(Reply::Unsubscribed { consumer_id: id }));
        }
    }

    /// Fails the requests not yet sent.
    pub(super) fn fail_queued(&mut self, error: &Error) {
        for c in self.queued.drain(..) {
            let _ = c.reply.send(Err(error.clone()));
        }
    }

    /// Fails the requests waiting for a reply (the connection is gone).
    pub(super) fn fail_pending(&mut self, error: &Error) {
        for c in self.pending.drain(..) {
            let _ = c.reply.send(Err(error.clone()));
        }
    }

    /// Fails every request (the handle is closing).
    pub(super) fn abort(&mut self, error: &Error) {
        self.fail_pending(error);
        self.fail_queued(error);
    }

    /// Offers every request's deadline to `min`.
    pub(super) fn poll_timeout(&self, min: &mut impl FnMut(Instant)) {
        for c in self.queued.iter().chain(self.pending.iter()) {
            min(c.deadline);
        }
    }

    /// Fails requests whose deadline passed. `true`: an outstanding one did, so every
    /// outstanding request failed and the connection must be reset.
    pub(super) fn expire(&mut self, now: Instant) -> bool {
        let expired = |c: &Call| c.deadline <= now;
        let mut keep = VecDeque::new();
        for c in self.queued.drain(..) {
            if expired(&c) {
                let _ = c
                    .reply
                    .send(Err(Error::Timeout(format!("{} request", c.code))));
            } else {
                keep.push_back(c);
            }
        }
        self.queued = keep;
        if !self.pending.iter().any(expired) {
            return false;
        }
        for c in std::mem::take(&mut self.pending) {
            let _ = c
                .reply
                .send(Err(Error::Timeout(format!("{} request", c.code))));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::{FetchResponse, ServerErrorKind};
    use crate::session::testutil::*;

    #[test]
    fn control_requests_are_barriers() {
        let now = t0();
        let mut s = session(now);
        let _a = submit(&mut s, 1, now);
        assert_eq!(ids(&flush(&mut s, now)), [1]);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let fetch = Request::Fetch(crate::proto::FetchRequest {
            topic_id: 1,
            start_offset: 0,
            max_bytes: 100,
        });
        s.submit_call(Call::new(&fetch, C, now + Duration::from_secs(5), tx).unwrap());
        let b = submit(&mut s, 1, now);
        assert!(flush(&mut s, now).is_empty(), "the call waits for the ACK");
        s.handle_bytes(&ack_frame(C, 1), now);
        let sent = flush(&mut s, now);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1[12], 0x10, "the fetch, alone");
        // An error now is the call's reply, not an ingest error.
        s.handle_bytes(&error("Topic 1 not found"), now);
        let reply = rx.try_recv().unwrap().unwrap();
        assert!(matches!(reply, Reply::Error(e) if e.kind == ServerErrorKind::TopicNotFound));
        assert_eq!(ids(&flush(&mut s, now)), [2]);
        s.handle_bytes(&ack_frame(C, 2), now);
        assert_eq!(status(&b), Some(Ok(2)));

        // A fetch reply is owned and complete.
        let (tx, rx) = crossbeam_channel::bounded(1);
        s.submit_call(Call::new(&fetch, C, now + Duration::from_secs(5), tx).unwrap());
        flush(&mut s, now);
        let mut v = Vec::new();
        R::Fetch(FetchResponse {
            next_offset: 3,
            record_count: 1,
            data: b"abc",
        })
        .encode(C, &mut v);
        s.handle_bytes(&v[..10], now);
        s.handle_bytes(&v[10..], now);
        assert_eq!(
            rx.try_recv().unwrap().unwrap(),
            Reply::Fetch {
                next_offset: 3,
                data: b"abc".to_vec()
            }
        );
    }

    #[test]
    fn unsubscribe_reply_is_an_ack_frame_and_never_confused() {
        let now = t0();
        let mut s = session(now);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let req = Request::Unsubscribe {
            topic_id: 1,
            consumer_id: 1,
        };
        s.submit_call(Call::new(&req, C, now + Duration::from_secs(5), tx).unwrap());
        let a = submit(&mut s, 1, now);
        flush(&mut s, now);
        s.handle_bytes(&ack_frame(C, 1), now);
        assert_eq!(
            rx.try_recv().unwrap().unwrap(),
            Reply::Unsubscribed { consumer_id: 1 }
        );
        // The batch waited behind the request (barrier), so its ACK cannot be confused.
        let sent = flush(&mut s, now);
        assert_eq!(ids(&sent), [1]);
        s.handle_bytes(&ack_frame(C, 1), now);
        assert_eq!(status(&a), Some(Ok(1)));
    }
}
