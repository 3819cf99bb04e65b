//! Helpers for the session's unit tests: sessions, batches, frames from the server, and
//! a look at a batch's outcome.

pub(super) use std::sync::Arc;
pub(super) use std::time::{Duration, Instant};

pub(super) use super::types::{Batch, Call, Fatal, Reply, TxKey};
pub(super) use super::{Session, SessionConfig};
pub(super) use crate::buffers::FrameBuf;
pub(super) use crate::delivery::DeliverySlot;
pub(super) use crate::proto::{ack_frame, keepalive_frame, Checksum, Request, Response as R};
use crate::proto::{encode_raw, ingest_header, offset, seal_frame, HEADER_LEN};
pub(super) use crate::Error;

pub(super) const C: Checksum = Checksum::Ieee;

/// Now.
pub(super) fn t0() -> Instant {
    Instant::now()
}

/// A batch of one record `value` for `topic`, due in 60 s, and its slot.
pub(super) fn batch(topic: u32, value: &[u8], now: Instant) -> (Batch, Arc<DeliverySlot>) {
    let mut frame = vec![0u8; HEADER_LEN];
    encode_raw(&mut frame, value).unwrap();
    seal_frame(C, ingest_header(0, 0, 1, topic), &mut frame);
    let slot = Arc::new(DeliverySlot::new());
    slot.reset(topic);
    (
        Batch::new(
            FrameBuf::heap(frame),
            1,
            slot.clone(),
            now + Duration::from_secs(60),
        ),
        slot,
    )
}

/// A connected session with the default configuration.
pub(super) fn session(now: Instant) -> Session {
    let mut s = Session::new(SessionConfig::default(), now);
    s.on_connected(now);
    s
}

/// Transmits everything pending; returns (key, bytes) and completes the writes.
pub(super) fn flush(s: &mut Session, now: Instant) -> Vec<(TxKey, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(tx) = s.poll_transmit(now) {
        out.push((tx.key, tx.bytes.to_vec()));
    }
    for (k, _) in &out {
        s.tx_complete(*k, now);
    }
    out
}

/// The batch ids among frames sent.
pub(super) fn ids(sent: &[(TxKey, Vec<u8>)]) -> Vec<u64> {
    sent.iter()
        .filter_map(|(k, bytes)| match k {
            TxKey::Batch(_) => Some(u64::from_le_bytes(
                bytes[offset::BATCH_ID..offset::BATCH_ID + 8]
                    .try_into()
                    .expect("8 bytes"),
            )),
            _ => None,
        })
        .collect()
}

/// How many keepalives among frames sent.
pub(super) fn keepalives(sent: &[(TxKey, Vec<u8>)]) -> usize {
    sent.iter().filter(|(_, b)| b[5] == 0x20).count()
}

/// An ErrorResponse frame.
pub(super) fn error(text: &str) -> Vec<u8> {
    let mut v = Vec::new();
    R::Error(text.into()).encode(C, &mut v);
    v
}

/// A keepalive echo.
pub(super) fn echo() -> Vec<u8> {
    keepalive_frame(C).to_vec()
}

/// A quorum failure for the batch in flight, then the keepalive fence that settles it
/// (each of its two keepalives sent and echoed).
pub(super) fn quorum_failure_fenced(s: &mut Session, now: Instant) {
    s.handle_bytes(
        &error("FORWARD_FAILED: Quorum not reached - required 2 ACKs, got 1"),
        now,
    );
    for _ in 0..2 {
        assert_eq!(keepalives(&flush(s, now)), 1, "the fence");
        s.handle_bytes(&echo(), now);
    }
}

/// A batch's outcome: `None` while pending, its batch id or its error.
pub(super) fn status(slot: &DeliverySlot) -> Option<Result<u64, String>> {
    if !slot.is_done() {
        return None;
    }
    let t = crate::delivery::DeliveryTicket::new(
        // Borrow the slot's state through a ticket on a clone of the Arc.
        registered(slot),
        0,
        crate::IdleStrategy::Block,
    );
    Some(
        t.try_wait()
            .unwrap()
            .map(|m| m.batch_id)
            .map_err(|e| e.to_string()),
    )
}

// Tickets need an Arc; tests keep one per slot in a side table instead.
fn registered(slot: &DeliverySlot) -> Arc<DeliverySlot> {
    SLOTS.with(|m| {
        m.borrow()
            .iter()
            .find(|a| std::ptr::eq(Arc::as_ptr(a), slot))
            .cloned()
            .expect("slot registered")
    })
}

thread_local! {
    pub(super) static SLOTS: std::cell::RefCell<Vec<Arc<DeliverySlot>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Submits a batch for `topic` and keeps its slot for [`status`].
pub(super) fn submit(s: &mut Session, topic: u32, now: Instant) -> Arc<DeliverySlot> {
    let (b, slot) = batch(topic, b"v", now);
    SLOTS.with(|m| m.borrow_mut().push(slot.clone()));
    s.submit_batch(b);
    slot
}
