//! The values the session exchanges with the handles and the driver: batches and control
//! calls going in; replies, frames to write, fatal conditions and counters coming out;
//! and the time helpers they share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::buffers::{FrameBuf, Registration};
use crate::delivery::DeliverySlot;
use crate::proto::{Checksum, ControlCode, Request, ServerError, HEADER_LEN};
use crate::Error;

/// One sealed ingest frame and who waits for it.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Header and payload; bytes 12..20 (batch id) are patched when it is first sent,
    /// which needs no CRC update (the header CRC covers bytes 0..8 only). While the batch
    /// is in flight its bytes belong to the session's frame table (this is left empty).
    pub(crate) frame: FrameBuf,
    pub(crate) records: u32,
    pub(crate) slot: Arc<DeliverySlot>,
    /// Fail with a timeout when not acknowledged by then.
    pub(crate) deadline: Instant,
    /// Times the frame was handed to a connection.
    pub(crate) sends: u32,
    /// The batch id, assigned at the first send and kept for every resend (so a server
    /// that deduplicates could recognise it).
    pub(crate) id: Option<u64>,
    /// An earlier send may have been stored: it was written and never got a definite
    /// answer (a connection lost with it in flight, a quorum failure, a timeout).
    pub(crate) maybe_stored: bool,
    /// A retry waits until then (back-off after a retryable error).
    pub(crate) not_before: Option<Instant>,
}

impl Batch {
    pub(crate) fn new(
        frame: FrameBuf,
        records: u32,
        slot: Arc<DeliverySlot>,
        deadline: Instant,
    ) -> Batch {
        Batch {
            frame,
            records,
            slot,
            deadline,
            sends: 0,
            id: None,
            maybe_stored: false,
            not_before: None,
        }
    }

    /// Fails the batch's records. `error` is wrapped in [`Error::OutcomeUnknown`] when
    /// an earlier send may have been stored.
    pub(crate) fn fail(&mut self, error: Error) {
        let error = if self.maybe_stored && !matches!(error, Error::OutcomeUnknown { .. }) {
            Error::OutcomeUnknown {
                attempts: self.sends,
                cause: Box::new(error),
            }
        } else {
            error
        };
        self.slot.fail(error, self.sends);
    }
}

impl Drop for Batch {
    /// A batch dropped without an outcome (its driver thread is gone, or the command
    /// could not be queued) fails its records rather than leaving them pending.
    fn drop(&mut self) {
        if !self.slot.is_done() {
            self.fail(Error::Closed);
        }
    }
}

/// `t + d`, saturating far in the future instead of overflowing.
pub(crate) fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(100 * 365 * 86_400))
}

/// A histogram of microseconds, 1 µs to 1 hour, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// A control request and where its reply goes.
#[derive(Debug)]
pub(crate) struct Call {
    /// The encoded request; handed to the session's frame table when it is written.
    pub(crate) frame: Vec<u8>,
    pub(crate) code: ControlCode,
    /// For Unsubscribe: the consumer id its Ack reply will carry.
    pub(crate) unsubscribe_id: Option<u64>,
    pub(crate) deadline: Instant,
    pub(crate) reply: crossbeam_channel::Sender<Result<Reply, Error>>,
}

impl Call {
    /// Encodes `request` as a call; the reply goes to `reply`.
    pub(crate) fn new(
        request: &Request<'_>,
        checksum: Checksum,
        deadline: Instant,
        reply: crossbeam_channel::Sender<Result<Reply, Error>>,
    ) -> Result<Call, Error> {
        let mut frame = Vec::with_capacity(HEADER_LEN + 32);
        request.encode(checksum, &mut frame)?;
        let unsubscribe_id = match request {
            Request::Unsubscribe { consumer_id, .. } => Some(*consumer_id),
            _ => None,
        };
        Ok(Call {
            frame,
            code: request.code(),
            unsubscribe_id,
            deadline,
            reply,
        })
    }
}

/// An owned control reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// TopicResponse or ClusterStatusResponse JSON.
    Json(Vec<u8>),
    /// FetchResponse: the next offset and the raw bytes.
    Fetch {
        next_offset: u64,
        data: Vec<u8>,
    },
    CatchingUp {
        server_offset: u64,
    },
    SubscribeAck {
        consumer_id: u64,
        start_offset: u64,
    },
    CommitAck {
        consumer_id: u64,
        committed_offset: u64,
    },
    Authenticate {
        success: bool,
        message: String,
    },
    Unsubscribed {
        consumer_id: u64,
    },
    /// The echo of a ping's keepalive, and the round-trip time.
    Pong(Duration),
    Error(ServerError),
    Other {
        code: u8,
        payload: Vec<u8>,
    },
}

/// Who waits for a keepalive echo, and when the keepalive was queued.
pub(crate) type Pong = (crossbeam_channel::Sender<Result<Reply, Error>>, Instant);

/// The name of a frame handed to the driver, from [`Tx`] until the driver reports it
/// written ([`super::Session::tx_complete`]): its sequence number on the connection,
/// unique for every frame handed out (a batch sent twice is two frames with two keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxKey {
    Batch(u64),
    Other(u64),
}

/// A frame to write, from [`super::Session::poll_transmit`].
#[derive(Debug)]
pub(crate) struct Tx<'a> {
    pub(crate) key: TxKey,
    pub(crate) bytes: &'a [u8],
    /// The frame buffer's registration for fixed sends, if any.
    pub(crate) reg: Option<Registration>,
    /// Capacity of the frame's allocation (which starts at `bytes`).
    pub(crate) capacity: usize,
}

impl<'a> Tx<'a> {
    pub(super) fn new(key: TxKey, buf: &'a FrameBuf) -> Tx<'a> {
        Tx {
            key,
            bytes: buf.data.as_slice(),
            reg: buf.registration(),
            capacity: buf.data.capacity(),
        }
    }
}

/// Why the session wants its connection closed.
#[derive(Debug, Clone)]
pub(crate) enum Fatal {
    /// Bytes that are not LWP: the stream cannot be trusted.
    Protocol(Error),
    /// No sign of life within the peer timeout (how long nothing was received).
    PeerTimeout(Duration),
    /// `NOT_LEADER: redirect to <addr>`.
    Redirect(String),
}

/// Counters the driver exports.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SessionStats {
    pub(crate) batches_acked: u64,
    pub(crate) records_acked: u64,
    pub(crate) batches_failed: u64,
    /// Batches written again (after an error, a lost connection or a dead peer);
    /// counted once per resend, when it is written.
    pub(crate) batches_retried: u64,
    pub(crate) keepalives_sent: u64,
    pub(crate) fences: u64,
    pub(crate) unattributed_errors: u64,
}

#[cfg(test)]
mod tests {
    use crate::session::testutil::*;

    #[test]
    fn dropped_batch_fails_its_records() {
        let now = t0();
        let (b, slot) = batch(1, b"x", now);
        SLOTS.with(|m| m.borrow_mut().push(slot.clone()));
        drop(b);
        assert!(matches!(status(&slot), Some(Err(e)) if e.contains("closed")));
    }
}
