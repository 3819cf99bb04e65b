//! The sans-IO connection session: what to send next, and what every received frame
//! means for the batches and requests in flight. No sockets, no threads, no clock (time
//! is an argument), no `unsafe`. The driver thread owns one `Session` per connection
//! and feeds it bytes, completions and time.
//!
//! # Correlation rules (docs/protocol.md §1.2, §4.6–4.7, §6.14, §13)
//!
//! * Ingest ACKs arrive strictly FIFO and carry the batch id. An ACK for batch `n`
//!   resolves every earlier unacknowledged batch as **skipped**: it got no ACK.
//! * An ingest error (ErrorResponse) carries no batch id and is written *inline*, so it
//!   can overtake the deferred ACKs of earlier batches. Errors are queued unattributed
//!   and handed, in order, to skipped batches as they are discovered (errors are written
//!   in processing order, skipped batches are found in send order).
//! * A quorum failure (`FORWARD_FAILED: Quorum not reached`) is followed by no ACK and
//!   no error for the rest of that read chunk. Once one is seen, every skipped batch
//!   without an error of its own has an **unknown outcome** and is retried.
//! * When errors are waiting and no later ACK will come to skip their batches, a
//!   **fence** resolves them: keepalive K1; when its echo arrives, K2; the echo of K2
//!   comes after every ACK of the chunk that held K1 (the server reads the next chunk
//!   only after writing the current chunk's ACKs), so any batch sent before K1 and still
//!   unacknowledged got no ACK.
//! * Control replies are inline and in request order. To attribute an ErrorResponse
//!   without guessing, a control request is a **barrier** on a connection that carries
//!   ingests: it is sent only when no batch is in flight, and no batch is sent while a
//!   control request is outstanding. An ErrorResponse therefore belongs to the oldest
//!   control request if there is one, otherwise to an ingest.
//! * Unsubscribe is answered by an Ack frame whose batch id is the consumer id: such a
//!   request is held while a batch with that id is in flight, and batch ids skip every
//!   consumer id with an Unsubscribe outstanding.
//! * Keepalive echoes are counted, never answered (the server echoes every keepalive).

mod bulk;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub(crate) use crate::buffers::BufPool;
use crate::buffers::{FrameBuf, Registration};
use crate::delivery::DeliverySlot;
use crate::proto::{
    keepalive_frame, offset, Checksum, ControlCode, Frame, FrameDecoder, FrameKind, Item, Request,
    Response, ServerError, ServerErrorKind, HEADER_LEN, MAX_PAYLOAD_LEN,
};
use crate::Error;
use bulk::Bulk;

/// Session tuning.
#[derive(Clone, Debug)]
pub(crate) struct SessionConfig {
    pub(crate) checksum: Checksum,
    /// Most batches sent and not yet acknowledged.
    pub(crate) max_inflight: usize,
    /// Send a keepalive after this long without sending anything.
    pub(crate) keepalive_interval: Duration,
    /// Declare the peer dead when nothing arrives for this long while a keepalive or a
    /// batch is outstanding.
    pub(crate) peer_timeout: Duration,
    /// Authenticate with this token first on every connection.
    pub(crate) auth_token: Option<String>,
    /// Largest frame payload accepted from the server.
    pub(crate) max_payload: u32,
    /// Resend a batch after a retryable error or a lost connection at most this often
    /// (its delivery deadline bounds it too).
    pub(crate) max_attempts: u32,
    /// Where fetched data is copied to (a consumer's pool), if anywhere.
    pub(crate) fetch_pool: Option<std::sync::Arc<BufPool>>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            checksum: Checksum::Ieee,
            max_inflight: 64,
            keepalive_interval: Duration::from_secs(10),
            peer_timeout: Duration::from_secs(30),
            auth_token: None,
            max_payload: MAX_PAYLOAD_LEN,
            max_attempts: u32::MAX,
            fetch_pool: None,
        }
    }
}

/// One sealed ingest frame and who waits for it.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Header and payload; bytes 12..20 (batch id) are patched when it is first sent,
    /// which needs no CRC update (the header CRC covers bytes 0..8 only).
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

/// A control request and where its reply goes.
#[derive(Debug)]
pub(crate) struct Call {
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

/// A frame to write. Ingest frames are referenced by batch id and stay owned by the
/// session until the driver reports them written ([`Session::tx_complete`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxKey {
    Batch(u64),
    Other(u64),
}

/// A frame to write, from [`Session::poll_transmit`].
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
    fn plain(key: TxKey, bytes: &'a Vec<u8>) -> Tx<'a> {
        Tx {
            key,
            bytes,
            reg: None,
            capacity: bytes.capacity(),
        }
    }
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

#[derive(Debug)]
struct Inflight {
    batch_id: u64,
    batch: Batch,
    /// The driver still holds a pointer into `batch.frame`.
    tx_pending: bool,
    sent_at: Instant,
    /// Sequence number of the frame, to compare with fences.
    seq: u64,
    /// Its delivery deadline passed and its slot failed; it stays here as a placeholder
    /// so a late ACK or error still lines up, until an ACK or a fence resolves it.
    timed_out: bool,
}

#[derive(Debug)]
struct PendingCall {
    call: Call,
    tx_pending: bool,
    seq: u64,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Disconnected,
    /// Authenticate sent, nothing else until its reply.
    Authenticating,
    Ready,
    /// The token was refused: everything fails until the handle is closed.
    Refused,
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

/// The connection state machine.
#[derive(Debug)]
pub(crate) struct Session {
    cfg: SessionConfig,
    phase: Phase,
    decoder: FrameDecoder,
    next_batch_id: u64,
    next_seq: u64,
    /// Batches waiting to be sent, oldest first (retries go to the front).
    queue: VecDeque<Batch>,
    inflight: VecDeque<Inflight>,
    calls_queued: VecDeque<Call>,
    calls_pending: VecDeque<PendingCall>,
    /// Frames that are not batches, ready to write: (key, bytes).
    small: VecDeque<(u64, Vec<u8>)>,
    /// Small frames handed to the driver and not yet reported written.
    small_tx: Vec<(u64, Vec<u8>)>,
    /// Frames of resolved batches the driver may still be reading.
    retired: Vec<(u64, FrameBuf)>,
    errors: VecDeque<ServerError>,
    quorum_lost: bool,
    fence: FenceState,
    /// Keepalives sent and not yet echoed (echoes come in order): sequence number and,
    /// for a ping, who waits for the echo.
    keepalives: VecDeque<(u64, Option<Pong>)>,
    /// Retried batches already put back at the front of the queue in this pass.
    retries_in_pass: usize,
    /// Last frame queued for writing (keepalives are sent after an idle interval).
    last_tx: Instant,
    /// Last write that completed: the peer's kernel is still taking our bytes.
    last_tx_done: Instant,
    last_rx: Instant,
    /// While set, batches wait for the echo of this keepalive (proof that the server
    /// answers on a new connection before anything is resent on it).
    probe: Option<u64>,
    /// Why the connection is down, for messages about records that wait meanwhile.
    link_error: Option<String>,
    refused: Option<Error>,
    stats: SessionStats,
    fatal: Option<Fatal>,
    /// Reused list of actions decoded from one chunk.
    actions: Vec<Action>,
    /// A large fetch reply being received into its own buffer (kept until the
    /// connection is closed: the kernel may be writing into it).
    bulk: Option<Bulk>,
    /// A valid frame arrived on this connection (proof of life, for reconnect back-off).
    heard: bool,
    latency: Histogram<u64>,
}

impl Session {
    pub(crate) fn new(cfg: SessionConfig, now: Instant) -> Session {
        let mut decoder = FrameDecoder::with_max_payload(cfg.checksum, cfg.max_payload);
        if cfg.fetch_pool.is_some() {
            // A consumer: large fetch replies are received straight into their buffers.
            decoder.detach_fetch_payloads(Some(DETACH_MIN));
        }
        Session {
            decoder,
            cfg,
            phase: Phase::Disconnected,
            next_batch_id: 1,
            next_seq: 1,
            queue: VecDeque::new(),
            inflight: VecDeque::new(),
            calls_queued: VecDeque::new(),
            calls_pending: VecDeque::new(),
            small: VecDeque::new(),
            small_tx: Vec::new(),
            retired: Vec::new(),
            errors: VecDeque::new(),
            quorum_lost: false,
            fence: FenceState::None,
            keepalives: VecDeque::new(),
            retries_in_pass: 0,
            last_tx: now,
            last_tx_done: now,
            last_rx: now,
            probe: None,
            link_error: None,
            refused: None,
            stats: SessionStats::default(),
            fatal: None,
            actions: Vec::new(),
            bulk: None,
            heard: false,
            latency: new_histogram(),
        }
    }

    pub(crate) fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Batches in flight plus queued.
    pub(crate) fn outstanding_batches(&self) -> usize {
        self.inflight.len() + self.queue.len()
    }

    pub(crate) fn outstanding_calls(&self) -> usize {
        self.calls_pending.len() + self.calls_queued.len()
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.outstanding_batches() == 0 && self.outstanding_calls() == 0
    }

    /// Whether a frame is waiting to be written (while connected).
    pub(crate) fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Authenticating | Phase::Ready)
    }

    /// Whether a valid frame arrived since the connection came up.
    pub(crate) fn heard_from_peer(&self) -> bool {
        self.heard
    }

    /// The reason the connection must be closed, once.
    pub(crate) fn take_fatal(&mut self) -> Option<Fatal> {
        self.fatal.take()
    }

    /// Notes why connecting failed (for messages about records waiting meanwhile).
    pub(crate) fn set_link_error(&mut self, error: String) {
        self.link_error = Some(error);
    }

    // ---- inputs from the handles ----

    pub(crate) fn submit_batch(&mut self, batch: Batch) {
        if let Some(e) = &self.refused {
            let e = e.clone();
            self.fail_batch(batch, e);
            return;
        }
        self.queue.push_back(batch);
    }

    pub(crate) fn submit_call(&mut self, call: Call) {
        if let Some(e) = &self.refused {
            let _ = call.reply.send(Err(e.clone()));
            return;
        }
        self.calls_queued.push_back(call);
    }

    /// Measures a round trip with a keepalive; the echo answers `reply` with
    /// [`Reply::Pong`].
    pub(crate) fn submit_ping(
        &mut self,
        reply: crossbeam_channel::Sender<Result<Reply, Error>>,
        now: Instant,
    ) {
        if !self.is_connected() {
            let _ = reply.send(Err(Error::ConnectionClosed));
            return;
        }
        self.queue_keepalive_for(now, Some((reply, now)));
    }

    // ---- connection lifecycle ----

    /// A new connection is up: authenticate first if configured.
    pub(crate) fn on_connected(&mut self, now: Instant) {
        self.decoder.reset();
        self.bulk = None;
        self.heard = false;
        self.last_rx = now;
        self.last_tx = now;
        self.last_tx_done = now;
        self.keepalives.clear();
        self.fence = FenceState::None;
        self.errors.clear();
        self.quorum_lost = false;
        self.fatal = None;
        self.probe = None;
        self.link_error = None;
        if let Some(token) = self.cfg.auth_token.clone() {
            // The Authenticate reply is also the proof of life a resend waits for.
            let mut frame = Vec::new();
            // A token is UTF-8 text; encoding cannot fail.
            let _ = Request::Authenticate { token: &token }.encode(self.cfg.checksum, &mut frame);
            let seq = self.bump_seq();
            self.small.push_front((seq, frame));
            self.phase = Phase::Authenticating;
        } else {
            self.phase = Phase::Ready;
            if self.queue.iter().any(|b| b.sends > 0) {
                // Batches written on an earlier connection wait until the server answers
                // on this one: a frozen server accepts connections (the kernel does) and
                // would otherwise collect a copy of the window on every reconnect.
                self.probe = Some(self.queue_keepalive(now));
            }
        }
    }

    /// The connection is gone and the driver holds no pointer into any frame any more.
    /// In-flight batches go back to the front of the queue (at-least-once: the server
    /// may have stored some of them); outstanding calls fail with a retryable error.
    pub(crate) fn on_disconnected(&mut self, error: &Error) {
        self.phase = if self.refused.is_some() {
            Phase::Refused
        } else {
            Phase::Disconnected
        };
        self.link_error = Some(error.to_string());
        self.probe = None;
        let max = self.cfg.max_attempts;
        for f in std::mem::take(&mut self.inflight).into_iter().rev() {
            if f.timed_out {
                // Already failed; nothing to resend.
                self.retire(f);
                continue;
            }
            // Written, no answer: the server may have stored it.
            let mut b = f.batch;
            b.maybe_stored = true;
            if b.sends >= max {
                self.fail_batch(b, error.clone());
            } else {
                self.queue.push_front(b);
            }
        }
        for p in self.calls_pending.drain(..) {
            let _ = p.call.reply.send(Err(error.clone()));
        }
        self.small.clear();
        self.small_tx.clear();
        self.retired.clear();
        // No operation references it any more (the connection is closed).
        self.bulk = None;
        self.errors.clear();
        self.quorum_lost = false;
        self.fence = FenceState::None;
        for (_, pong) in self.keepalives.drain(..) {
            if let Some((tx, _)) = pong {
                let _ = tx.send(Err(error.clone()));
            }
        }
    }

    // ---- transmit ----

    /// The next frame to write, or `None`. The returned bytes stay valid, unmoved and
    /// unmodified until [`Session::tx_complete`] is called with the key (or the
    /// connection is closed and every operation on it has completed).
    pub(crate) fn poll_transmit(&mut self, now: Instant) -> Option<Tx<'_>> {
        if !self.is_connected() {
            return None;
        }
        if let Some((seq, buf)) = self.small.pop_front() {
            self.small_tx.push((seq, buf));
            self.last_tx = now;
            let (seq, buf) = self.small_tx.last().expect("just pushed");
            return Some(Tx::plain(TxKey::Other(*seq), buf));
        }
        if self.phase != Phase::Ready {
            return None;
        }
        // A control request goes out only when no batch is in flight (barrier).
        if self.inflight.is_empty() && self.calls_pending.is_empty() {
            if let Some(call) = self.calls_queued.front() {
                let blocked = call
                    .unsubscribe_id
                    .is_some_and(|id| self.inflight.iter().any(|f| f.batch_id == id));
                if !blocked {
                    let call = self.calls_queued.pop_front().expect("front exists");
                    let seq = self.bump_seq();
                    self.calls_pending.push_back(PendingCall {
                        call,
                        tx_pending: true,
                        seq,
                    });
                    self.last_tx = now;
                    let p = self.calls_pending.back().expect("just pushed");
                    return Some(Tx::plain(TxKey::Other(seq | CALL_BIT), &p.call.frame));
                }
            }
        }
        if !self.calls_pending.is_empty() || !self.calls_queued.is_empty() {
            // Batches wait behind control requests.
            return None;
        }
        if self.inflight.len() >= self.cfg.max_inflight
            || self.fence != FenceState::None
            || self.probe.is_some()
        {
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
                let id = self.take_batch_id();
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
        let seq = self.bump_seq();
        self.inflight.push_back(Inflight {
            batch_id: id,
            batch,
            tx_pending: true,
            sent_at: now,
            seq,
            timed_out: false,
        });
        self.last_tx = now;
        let f = self.inflight.back().expect("just pushed");
        Some(Tx {
            key: TxKey::Batch(id),
            bytes: f.batch.frame.data.as_slice(),
            reg: f.batch.frame.registration(),
            capacity: f.batch.frame.data.capacity(),
        })
    }

    /// The buffer of batch frame `key` was registered for fixed sends (it keeps the
    /// registration when it goes back to its pool).
    pub(crate) fn set_registration(&mut self, key: TxKey, reg: Registration) {
        if let TxKey::Batch(id) = key {
            if let Some(f) = self.inflight.iter_mut().find(|f| f.batch_id == id) {
                f.batch.frame.reg = Some(reg);
            }
        }
    }

    /// The driver finished writing the frame with `key`.
    pub(crate) fn tx_complete(&mut self, key: TxKey, now: Instant) {
        match key {
            TxKey::Batch(id) => {
                // The server is taking our data (a keepalive would always fit in the
                // socket buffer, so only batch writes count as progress).
                self.last_tx_done = now;
                if let Some(f) = self.inflight.iter_mut().find(|f| f.batch_id == id) {
                    f.tx_pending = false;
                } else if let Some(i) = self.retired.iter().position(|(k, _)| *k == id) {
                    // Resolved while being written: its buffer may go back now.
                    self.retired.swap_remove(i);
                }
            }
            TxKey::Other(key) if key & CALL_BIT != 0 => {
                let seq = key & !CALL_BIT;
                if let Some(p) = self.calls_pending.iter_mut().find(|p| p.seq == seq) {
                    p.tx_pending = false;
                } else {
                    self.small_tx.retain(|(s, _)| *s != key);
                }
            }
            TxKey::Other(seq) => self.small_tx.retain(|(s, _)| *s != seq),
        }
    }

    fn take_batch_id(&mut self) -> u64 {
        loop {
            let id = self.next_batch_id;
            self.next_batch_id = self.next_batch_id.wrapping_add(1).max(1);
            let clashes = self
                .calls_pending
                .iter()
                .map(|p| &p.call)
                .chain(self.calls_queued.iter())
                .any(|c| c.unsubscribe_id == Some(id));
            if !clashes {
                return id;
            }
        }
    }

    fn bump_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    // ---- receive ----

    /// Bytes from the socket. A protocol violation is reported by [`Session::take_fatal`].
    pub(crate) fn handle_bytes(&mut self, mut chunk: &[u8], now: Instant) {
        self.last_rx = now;
        if let Some(b) = self.bulk.as_mut() {
            // The rest of a detached fetch reply comes first.
            let n = b.absorb(chunk);
            chunk = &chunk[n..];
            if b.remaining() == 0 {
                self.finish_bulk(now);
            }
            if chunk.is_empty() {
                return;
            }
        }
        let pool = self.cfg.fetch_pool.as_deref();
        let mut frames = self.decoder.feed(chunk);
        let mut actions = std::mem::take(&mut self.actions);
        let mut fatal = None;
        let mut bulk = None;
        while let Some(item) = frames.next_item() {
            match item {
                Ok(Item::Frame(frame)) => actions.push(Action::from_frame(&frame, pool)),
                // A large fetch reply: the rest of it goes straight to its buffer.
                Ok(Item::Detached(d)) => bulk = Some(Bulk::start(d.header, d.payload, pool)),
                Err(e) => {
                    fatal = Some(Fatal::Protocol(Error::InvalidFrame(e)));
                    break;
                }
            }
        }
        drop(frames);
        for a in actions.drain(..) {
            self.apply(a, now);
        }
        self.actions = actions;
        if let Some(f) = fatal {
            self.fatal.get_or_insert(f);
        }
        self.bulk = bulk;
    }

    /// Where the next received bytes can go without a copy: the unfilled part of a
    /// detached fetch reply's buffer (pointer, length). The memory stays valid and
    /// unmoved until [`Session::received_direct`] or the end of the connection.
    pub(crate) fn recv_target(&mut self) -> Option<(*mut u8, usize)> {
        self.bulk.as_mut()?.target()
    }

    /// `n` bytes were received at [`Session::recv_target`].
    pub(crate) fn received_direct(&mut self, n: usize, now: Instant) {
        self.last_rx = now;
        if let Some(b) = self.bulk.as_mut() {
            b.received(n);
            if b.remaining() == 0 {
                self.finish_bulk(now);
            }
        }
    }

    fn finish_bulk(&mut self, now: Instant) {
        let Some(b) = self.bulk.take() else {
            return;
        };
        match b.finish(self.cfg.checksum) {
            Ok((next_offset, data)) => {
                self.apply(Action::Reply(Reply::Fetch { next_offset, data }), now)
            }
            Err(e) => {
                self.fatal.get_or_insert(Fatal::Protocol(e));
            }
        }
    }

    fn apply(&mut self, action: Action, now: Instant) {
        if !matches!(action, Action::Malformed(_)) {
            self.heard = true;
        }
        match action {
            Action::Keepalive => self.on_keepalive_echo(now),
            Action::Ack(id) => self.on_ack(id, now),
            Action::Backpressure => {}
            Action::Reply(reply) => self.on_reply(reply, now),
            Action::Ignore => {}
            Action::Malformed(e) => {
                self.fatal.get_or_insert(Fatal::Protocol(e));
            }
        }
    }

    fn on_keepalive_echo(&mut self, now: Instant) {
        let Some((echoed, pong)) = self.keepalives.pop_front() else {
            // An echo we did not ask for: harmless, never answered.
            return;
        };
        if let Some((tx, sent)) = pong {
            let _ = tx.send(Ok(Reply::Pong(now.saturating_duration_since(sent))));
        }
        if self.probe == Some(echoed) {
            self.probe = None;
        }
        match self.fence {
            FenceState::First { seq } if seq == echoed => {
                let k2 = self.queue_keepalive(now);
                self.fence = FenceState::Second { seq: k2 };
            }
            FenceState::Second { seq } if seq == echoed => {
                self.fence = FenceState::None;
                self.resolve_before(seq, now);
            }
            _ => {}
        }
    }

    fn queue_keepalive(&mut self, now: Instant) -> u64 {
        self.queue_keepalive_for(now, None)
    }

    fn queue_keepalive_for(&mut self, now: Instant, pong: Option<Pong>) -> u64 {
        let seq = self.bump_seq();
        self.small
            .push_back((seq, keepalive_frame(self.cfg.checksum).to_vec()));
        self.keepalives.push_back((seq, pong));
        self.stats.keepalives_sent += 1;
        self.last_tx = now;
        seq
    }

    fn on_ack(&mut self, id: u64, now: Instant) {
        if let Some(pos) = self.inflight.iter().position(|f| f.batch_id == id) {
            self.retries_in_pass = 0;
            // Everything before it was skipped: it got no ACK.
            for _ in 0..pos {
                let f = self.inflight.pop_front().expect("pos < len");
                self.resolve_skipped(f, now);
            }
            let f = self.inflight.pop_front().expect("found at pos");
            if !f.timed_out {
                f.batch.slot.ack(id, f.batch.sends);
                self.stats.batches_acked += 1;
                self.stats.records_acked += u64::from(f.batch.records);
                let us = now.saturating_duration_since(f.sent_at).as_micros() as u64;
                let _ = self.latency.record(us.max(1));
            }
            self.retire(f);
            self.settle();
            return;
        }
        // Not a batch of ours: the reply to an Unsubscribe?
        if let Some(i) = self
            .calls_pending
            .iter()
            .position(|p| p.call.unsubscribe_id == Some(id))
        {
            let p = self.calls_pending.remove(i).expect("position exists");
            let _ = p
                .call
                .reply
                .send(Ok(Reply::Unsubscribed { consumer_id: id }));
            self.release_call(p);
        }
        // Otherwise an ACK for nothing we sent on this connection: ignore it.
    }

    /// Once nothing is in flight, a past quorum failure no longer taints attribution.
    fn settle(&mut self) {
        if self.inflight.is_empty() && self.errors.is_empty() {
            self.quorum_lost = false;
        }
    }

    /// A batch got no ACK: it was refused (an error of the queue is its reason) or lost
    /// in a quorum failure (outcome unknown).
    fn resolve_skipped(&mut self, f: Inflight, now: Instant) {
        let error = self.errors.pop_front();
        if f.timed_out {
            // Its records already failed; it only kept the line.
            self.retire(f);
            return;
        }
        match error {
            // After a quorum failure the errors can arrive out of batch order (the
            // quorum error is written after the inline errors of later batches of its
            // chunk, docs/protocol.md §4.7), so no error is trusted to name its batch: every
            // skipped batch is retried as "outcome unknown". A batch truly refused fails
            // again on its retry, unambiguously.
            Some(_) | None if self.quorum_lost => {
                self.fail_or_retry(f, unknown_outcome(), true, true, now)
            }
            Some(e) => {
                let retry = e.is_retryable();
                let unknown = e.outcome_unknown();
                self.fail_or_retry(f, Error::from(e), retry, unknown, now);
            }
            // No ACK and no error: dropped after a quorum failure, outcome unknown.
            None => self.fail_or_retry(f, unknown_outcome(), true, true, now),
        }
    }

    /// A batch without an ACK: resent when `retry` allows and its budget is not spent,
    /// failed otherwise. `unknown`: this send may have been stored.
    fn fail_or_retry(
        &mut self,
        mut f: Inflight,
        error: Error,
        retry: bool,
        unknown: bool,
        now: Instant,
    ) {
        if f.tx_pending {
            // The driver still reads this buffer: retry with a copy.
            let copy = FrameBuf::heap(f.batch.frame.data.clone());
            let old = std::mem::replace(&mut f.batch.frame, copy);
            self.retired.push((f.batch_id, old));
        }
        let mut b = f.batch;
        b.maybe_stored |= unknown;
        if retry && b.sends < self.cfg.max_attempts {
            // Back off a little (the cause — a follower without a leader, a rate
            // limit — needs time), and go before newer batches, in the original order,
            // to keep per-topic order as far as the window allows.
            let exp = RETRY_BACKOFF.saturating_mul(1 << b.sends.min(6));
            b.not_before = Some(after(now, exp.min(RETRY_BACKOFF_MAX)));
            self.queue.insert(self.retries_in_pass, b);
            self.retries_in_pass += 1;
        } else {
            self.fail_batch(b, error);
        }
    }

    fn fail_batch(&mut self, mut b: Batch, error: Error) {
        b.fail(error);
        self.stats.batches_failed += 1;
    }

    /// Drops a resolved batch, keeping its frame while the driver may still read it.
    fn retire(&mut self, mut f: Inflight) {
        if f.tx_pending {
            self.retired.push((f.batch_id, f.batch.frame.take()));
        }
    }

    /// Drops a pending call, keeping its frame while the driver may still read it.
    fn release_call(&mut self, p: PendingCall) {
        if p.tx_pending {
            self.small_tx.push((p.seq | CALL_BIT, p.call.frame));
        }
    }

    /// Fence complete: batches sent before `seq` without an ACK were skipped.
    fn resolve_before(&mut self, seq: u64, now: Instant) {
        self.retries_in_pass = 0;
        while self.inflight.front().is_some_and(|f| f.seq < seq) {
            let f = self.inflight.pop_front().expect("front exists");
            self.resolve_skipped(f, now);
        }
        self.errors.clear();
        self.settle();
    }

    fn on_reply(&mut self, reply: Reply, now: Instant) {
        // The Authenticate reply comes first on a connection that authenticates.
        if self.phase == Phase::Authenticating {
            match reply {
                Reply::Authenticate { success: true, .. } => {
                    self.phase = Phase::Ready;
                }
                Reply::Authenticate { message, .. } => self.refuse(message),
                Reply::Error(e) => self.refuse(e.message),
                other => {
                    self.fatal
                        .get_or_insert(Fatal::Protocol(Error::Protocol(format!(
                            "expected the Authenticate reply, got {other:?}"
                        ))));
                }
            }
            return;
        }
        if let Some(p) = self.calls_pending.pop_front() {
            if let Reply::Error(e) = &reply {
                if let ServerErrorKind::NotLeader {
                    redirect: Some(addr),
                } = &e.kind
                {
                    self.fatal.get_or_insert(Fatal::Redirect(addr.clone()));
                }
            }
            let _ = p.call.reply.send(Ok(reply));
            self.release_call(p);
            return;
        }
        match reply {
            Reply::Error(e) => {
                // An ingest was rejected; which one is learned from the ACKs.
                self.stats.unattributed_errors += 1;
                if let ServerErrorKind::NotLeader {
                    redirect: Some(addr),
                } = &e.kind
                {
                    self.fatal.get_or_insert(Fatal::Redirect(addr.clone()));
                }
                if e.outcome_unknown() {
                    self.quorum_lost = true;
                }
                self.errors.push_back(e);
                if self.fence == FenceState::None {
                    let seq = self.queue_keepalive(now);
                    self.fence = FenceState::First { seq };
                    self.stats.fences += 1;
                }
            }
            other => {
                self.fatal
                    .get_or_insert(Fatal::Protocol(Error::Protocol(format!(
                        "unsolicited reply {other:?}"
                    ))));
            }
        }
    }

    fn refuse(&mut self, message: String) {
        log::error!("authentication refused: {message}");
        let e = Error::Authentication { message };
        self.refused = Some(e.clone());
        self.phase = Phase::Refused;
        for b in std::mem::take(&mut self.queue) {
            self.fail_batch(b, e.clone());
        }
        for c in self.calls_queued.drain(..) {
            let _ = c.reply.send(Err(e.clone()));
        }
    }

    // ---- time ----

    /// The next instant at which [`Session::handle_timeout`] has work.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.fatal.is_some() {
            // The connection is being closed; its timers no longer matter.
            return None;
        }
        let mut t: Option<Instant> = None;
        let mut min = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        if self.is_connected() {
            min(after(self.last_tx, self.cfg.keepalive_interval));
            if self.awaits_reply() {
                min(after(self.last_progress(), self.cfg.peer_timeout));
            }
        }
        if let Some(b) = self.queue.front() {
            min(b.deadline);
            if let Some(nb) = b.not_before {
                min(nb);
            }
        }
        for f in self.inflight.iter().filter(|f| !f.timed_out) {
            min(f.batch.deadline);
        }
        for c in self
            .calls_queued
            .iter()
            .chain(self.calls_pending.iter().map(|p| &p.call))
        {
            min(c.deadline);
        }
        t
    }

    /// Runs timers: keepalives, the dead-peer check, delivery and request deadlines.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.is_connected() && self.fatal.is_none() {
            let progress = self.last_progress();
            if self.awaits_reply() && now >= after(progress, self.cfg.peer_timeout) {
                self.fatal.get_or_insert(Fatal::PeerTimeout(
                    now.saturating_duration_since(self.last_rx),
                ));
            } else if now >= after(self.last_tx, self.cfg.keepalive_interval) {
                self.queue_keepalive(now);
            }
        }
        // Delivery deadlines. Queued batches fail at once. In-flight ones fail too, but
        // stay in line as placeholders (a late ACK or error must not be given to another
        // batch) until an ACK skips them or a fence resolves them.
        while self.queue.front().is_some_and(|b| b.deadline <= now) {
            let b = self.queue.pop_front().expect("front exists");
            let why = match (&self.link_error, self.is_connected()) {
                (Some(e), false) => format!("delivery timeout while not connected ({e})"),
                _ if b.sends > 0 => "delivery timeout while waiting to be resent".to_owned(),
                _ => "delivery timeout before the batch was sent".to_owned(),
            };
            self.fail_batch(b, Error::Timeout(why));
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
        if expired_inflight && self.fence == FenceState::None && self.is_connected() {
            let seq = self.queue_keepalive(now);
            self.fence = FenceState::First { seq };
            self.stats.fences += 1;
        }
        let expired = |c: &Call| c.deadline <= now;
        let mut keep = VecDeque::new();
        for c in self.calls_queued.drain(..) {
            if expired(&c) {
                let _ = c
                    .reply
                    .send(Err(Error::Timeout(format!("{} request", c.code))));
            } else {
                keep.push_back(c);
            }
        }
        self.calls_queued = keep;
        // A pending call that timed out leaves its reply on the way: the stream would
        // be out of step, so the connection is reset.
        if self.calls_pending.iter().any(|p| expired(&p.call)) {
            for p in std::mem::take(&mut self.calls_pending) {
                let _ = p
                    .call
                    .reply
                    .send(Err(Error::Timeout(format!("{} request", p.call.code))));
                self.release_call(p);
            }
            self.fatal
                .get_or_insert(Fatal::Protocol(Error::Timeout("control request".into())));
        }
    }

    /// Fails everything (the handle is closing).
    pub(crate) fn abort(&mut self, error: &Error) {
        for mut f in std::mem::take(&mut self.inflight) {
            if !f.timed_out {
                // Written and unanswered: it may have been stored.
                f.batch.maybe_stored = true;
                f.batch.fail(error.clone());
                self.stats.batches_failed += 1;
            }
            self.retire(f);
        }
        for b in std::mem::take(&mut self.queue) {
            self.fail_batch(b, error.clone());
        }
        for p in std::mem::take(&mut self.calls_pending) {
            let _ = p.call.reply.send(Err(error.clone()));
            self.release_call(p);
        }
        for c in self.calls_queued.drain(..) {
            let _ = c.reply.send(Err(error.clone()));
        }
    }

    /// Whether something sent on this connection waits for an answer.
    fn awaits_reply(&self) -> bool {
        !self.keepalives.is_empty() || !self.inflight.is_empty() || !self.calls_pending.is_empty()
    }

    /// The later of the last byte received and the last write completed: a live but slow
    /// server (an fsync, a full queue) still takes our bytes; a frozen one soon stops.
    fn last_progress(&self) -> Instant {
        self.last_rx.max(self.last_tx_done)
    }

    /// ACK latencies (µs, from the batch's write to its ACK) recorded since the last call.
    pub(crate) fn take_latencies(&mut self, into: &mut Histogram<u64>) {
        if !self.latency.is_empty() {
            let _ = into.add(&self.latency);
            self.latency.reset();
        }
    }
}

/// A histogram of microseconds, 1 µs to 1 hour, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// Fetch replies at least this large are received straight into their buffers.
const DETACH_MIN: u32 = 16 * 1024;

/// First retry delay after a retryable error (doubled per attempt).
const RETRY_BACKOFF: Duration = Duration::from_millis(10);
/// Largest retry delay.
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

fn unknown_outcome() -> Error {
    Error::Server(ServerError::classify(
        "FORWARD_FAILED: no acknowledgement after a quorum failure (outcome unknown)",
    ))
}

/// Marks keys of control requests (small frames use plain sequence numbers).
const CALL_BIT: u64 = 1 << 63;

/// What one received frame asks the session to do.
#[derive(Debug)]
enum Action {
    Keepalive,
    Ack(u64),
    Backpressure,
    Reply(Reply),
    Ignore,
    Malformed(Error),
}

impl Action {
    fn from_frame(frame: &Frame<'_>, pool: Option<&BufPool>) -> Action {
        match frame.kind() {
            FrameKind::Keepalive => Action::Keepalive,
            FrameKind::Ack => Action::Ack(frame.header.batch_id),
            FrameKind::Backpressure => Action::Backpressure,
            FrameKind::Control(_) => match Response::parse(frame) {
                Ok(r) => Action::Reply(owned(r, pool)),
                Err(e) => Action::Malformed(Error::InvalidResponse(e)),
            },
            FrameKind::Ingest | FrameKind::Unknown => Action::Ignore,
        }
    }
}

fn owned(r: Response<'_>, pool: Option<&BufPool>) -> Reply {
    match r {
        Response::Topic(j) | Response::ClusterStatus(j) => Reply::Json(j.to_vec()),
        Response::Fetch(f) => Reply::Fetch {
            next_offset: f.next_offset,
            data: match pool {
                Some(p) => {
                    let mut v = p.take(f.data.len());
                    v.extend_from_slice(f.data);
                    v
                }
                None => f.data.to_vec(),
            },
        },
        Response::CatchingUp { server_offset } => Reply::CatchingUp { server_offset },
        Response::SubscribeAck(a) => Reply::SubscribeAck {
            consumer_id: a.consumer_id,
            start_offset: a.start_offset,
        },
        Response::CommitAck(a) => Reply::CommitAck {
            consumer_id: a.consumer_id,
            committed_offset: a.committed_offset,
        },
        Response::Authenticate { success, message } => Reply::Authenticate {
            success,
            message: message.into_owned(),
        },
        Response::Unsubscribed { consumer_id } => Reply::Unsubscribed { consumer_id },
        Response::Error(text) => Reply::Error(ServerError::classify(text.into_owned())),
        Response::Other { code, payload } => Reply::Other {
            code: code.0,
            payload: payload.to_vec(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ack_frame, encode_frame, encode_raw, ingest_header, seal_frame};
    use crate::proto::{FetchResponse, Response as R};

    const C: Checksum = Checksum::Ieee;

    fn t0() -> Instant {
        Instant::now()
    }

    fn batch(topic: u32, value: &[u8], now: Instant) -> (Batch, Arc<DeliverySlot>) {
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

    fn session(now: Instant) -> Session {
        let mut s = Session::new(SessionConfig::default(), now);
        s.on_connected(now);
        s
    }

    /// Transmits everything pending; returns (key, bytes) and completes the writes.
    fn flush(s: &mut Session, now: Instant) -> Vec<(TxKey, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(tx) = s.poll_transmit(now) {
            out.push((tx.key, tx.bytes.to_vec()));
        }
        for (k, _) in &out {
            s.tx_complete(*k, now);
        }
        out
    }

    fn ids(sent: &[(TxKey, Vec<u8>)]) -> Vec<u64> {
        sent.iter()
            .filter_map(|(k, _)| match k {
                TxKey::Batch(id) => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn keepalives(sent: &[(TxKey, Vec<u8>)]) -> usize {
        sent.iter().filter(|(_, b)| b[5] == 0x20).count()
    }

    fn error(text: &str) -> Vec<u8> {
        let mut v = Vec::new();
        R::Error(text.into()).encode(C, &mut v);
        v
    }

    fn echo() -> Vec<u8> {
        keepalive_frame(C).to_vec()
    }

    fn status(slot: &DeliverySlot) -> Option<Result<u64, String>> {
        if !slot.is_done() {
            return None;
        }
        let t = crate::delivery::DeliveryTicket::new(
            // Borrow the slot's state through a ticket on a clone of the Arc.
            registered(slot),
            0,
            Duration::ZERO,
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
        static SLOTS: std::cell::RefCell<Vec<Arc<DeliverySlot>>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn submit(s: &mut Session, topic: u32, now: Instant) -> Arc<DeliverySlot> {
        let (b, slot) = batch(topic, b"v", now);
        SLOTS.with(|m| m.borrow_mut().push(slot.clone()));
        s.submit_batch(b);
        slot
    }

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
    fn completed_batch_writes_keep_a_slow_server_alive_but_keepalives_do_not() {
        let now = t0();
        let mut s = session(now);
        let _a = submit(&mut s, 1, now);
        let sent = flush(&mut s, now); // completes the write at `now`
        assert_eq!(ids(&sent), [1]);
        // More batches written while the server takes them slowly.
        let _b = submit(&mut s, 1, now);
        let t20 = now + Duration::from_secs(20);
        while let Some(tx) = s.poll_transmit(t20) {
            let k = tx.key;
            s.tx_complete(k, t20);
        }
        s.handle_timeout(now + Duration::from_secs(35));
        assert!(s.take_fatal().is_none(), "written 15 s ago: alive");
        // A keepalive write always fits the socket buffer: it proves nothing.
        s.handle_timeout(now + Duration::from_secs(31));
        let t40 = now + Duration::from_secs(40);
        while let Some(tx) = s.poll_transmit(t40) {
            let k = tx.key;
            s.tx_complete(k, t40);
        }
        s.handle_timeout(now + Duration::from_secs(51));
        assert!(matches!(s.take_fatal(), Some(Fatal::PeerTimeout(_))));
    }

    #[test]
    fn dropped_batch_fails_its_records() {
        let now = t0();
        let (b, slot) = batch(1, b"x", now);
        SLOTS.with(|m| m.borrow_mut().push(slot.clone()));
        drop(b);
        assert!(matches!(status(&slot), Some(Err(e)) if e.contains("closed")));
    }

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

    #[test]
    fn authentication_comes_first_and_a_refusal_fails_everything() {
        let now = t0();
        let cfg = SessionConfig {
            auth_token: Some("secret".into()),
            ..SessionConfig::default()
        };
        let mut s = Session::new(cfg.clone(), now);
        let a = submit(&mut s, 1, now);
        s.on_connected(now);
        let sent = flush(&mut s, now);
        assert_eq!(sent.len(), 1, "only Authenticate until its reply");
        assert_eq!(&sent[0].1[44..], b"secret");
        let mut v = Vec::new();
        R::Authenticate {
            success: true,
            message: "Authenticated".into(),
        }
        .encode(C, &mut v);
        s.handle_bytes(&v, now);
        assert_eq!(ids(&flush(&mut s, now)), [1]);
        s.handle_bytes(&ack_frame(C, 1), now);
        assert_eq!(status(&a), Some(Ok(1)));

        let mut s = Session::new(cfg, now);
        let b = submit(&mut s, 1, now);
        s.on_connected(now);
        flush(&mut s, now);
        let mut v = Vec::new();
        R::Authenticate {
            success: false,
            message: "Invalid token".into(),
        }
        .encode(C, &mut v);
        s.handle_bytes(&v, now);
        assert!(matches!(status(&b), Some(Err(e)) if e.contains("Invalid token")));
        let c = submit(&mut s, 1, now);
        assert!(matches!(status(&c), Some(Err(e)) if e.contains("authentication failed")));
    }

    #[test]
    fn reconnect_resends_unacknowledged_batches_with_their_ids_after_proof_of_life() {
        let now = t0();
        let mut s = session(now);
        let slots: Vec<_> = (0..3).map(|_| submit(&mut s, 1, now)).collect();
        flush(&mut s, now);
        s.handle_bytes(&ack_frame(C, 1), now);
        s.on_disconnected(&Error::ConnectionClosed);
        assert_eq!(status(&slots[1]), None);
        s.on_connected(now);
        // Nothing is resent until the server answers on the new connection.
        let sent = flush(&mut s, now);
        assert_eq!((ids(&sent).len(), keepalives(&sent)), (0, 1));
        s.on_disconnected(&Error::ConnectionClosed);
        s.on_connected(now);
        assert_eq!(keepalives(&flush(&mut s, now)), 1);
        s.handle_bytes(&echo(), now);
        assert_eq!(ids(&flush(&mut s, now)), [2, 3]);
        let mut acks = ack_frame(C, 2).to_vec();
        acks.extend(ack_frame(C, 3));
        s.handle_bytes(&acks, now);
        let t = crate::delivery::DeliveryTicket::new(slots[2].clone(), 0, Duration::ZERO);
        let m = t.try_wait().unwrap().unwrap();
        assert_eq!(
            (m.batch_id, m.attempts),
            (3, 2),
            "written twice, not three times"
        );
        assert_eq!(s.stats().batches_retried, 2);
    }

    #[test]
    fn keepalive_when_idle_and_dead_peer_detection() {
        let now = t0();
        let mut s = session(now);
        assert!(flush(&mut s, now).is_empty());
        let t1 = now + Duration::from_secs(10);
        assert_eq!(s.poll_timeout(), Some(t1));
        s.handle_timeout(t1);
        assert_eq!(keepalives(&flush(&mut s, t1)), 1);
        s.handle_bytes(&echo(), t1 + Duration::from_millis(1));
        assert!(s.take_fatal().is_none());
        // Another keepalive, never answered: dead after the peer timeout.
        let t2 = t1 + Duration::from_secs(10);
        s.handle_timeout(t2);
        flush(&mut s, t2);
        s.handle_timeout(t2 + Duration::from_secs(31));
        assert!(matches!(s.take_fatal(), Some(Fatal::PeerTimeout(_))));
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

    #[test]
    fn garbage_is_fatal() {
        let now = t0();
        let mut s = session(now);
        s.handle_bytes(&[0u8; 44], now);
        assert!(matches!(
            s.take_fatal(),
            Some(Fatal::Protocol(Error::InvalidFrame(_)))
        ));
        let mut s = session(now);
        let mut v = Vec::new();
        encode_frame(
            C,
            crate::proto::control_header(ControlCode::FETCH_RESPONSE),
            b"short",
            &mut v,
        );
        s.handle_bytes(&v, now);
        assert!(matches!(s.take_fatal(), Some(Fatal::Protocol(_))));
    }
}
