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
//!
//! # Layout
//!
//! This file is the glue: it routes inputs to the parts below and holds the rules that
//! span them.
//!
//! * `tx` — the one table of frames handed to the driver: their bytes stay valid until
//!   written or the connection is closed, whatever happens to the operation that sent
//!   them.
//! * `ingest` — batches: the window, ACK matching, error attribution, quorum failures,
//!   fences, retries and delivery deadlines.
//! * `calls` — control requests: the barrier, replies in order, Unsubscribe's Ack,
//!   request deadlines.
//! * `link` — the connection: phase, authentication, the proof-of-life probe,
//!   keepalives and the dead-peer timer.
//! * `rx` — received bytes decoded into actions; `bulk` — a large fetch reply received
//!   straight into its own buffer.
//! * `types` — the values exchanged with the handles and the driver.

mod bulk;
mod calls;
mod ingest;
mod link;
mod rx;
#[cfg(test)]
mod testutil;
mod tx;
mod types;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub(crate) use crate::buffers::BufPool;
use crate::buffers::Registration;
use crate::proto::{Checksum, ServerError, ServerErrorKind, MAX_PAYLOAD_LEN};
use crate::Error;
use calls::Calls;
use ingest::Ingest;
use link::{AuthReply, Link};
use rx::{Action, Rx};
use tx::Frames;
pub(crate) use types::{after, new_histogram, Batch, Call, Fatal, Reply, TxKey};
use types::{SessionStats, Tx};

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
    pub(crate) fetch_pool: Option<Arc<BufPool>>,
    /// Most batches that can exist at once (a producer's buffer budget): the batch
    /// queues and the frame table are sized for it up front, so a steady state never
    /// grows them. 0: grow as needed.
    pub(crate) max_batches: usize,
}

impl SessionConfig {
    /// Most frames handed to the driver and not yet written, in a steady state: the
    /// batches in flight (no more than exist) and a few calls and keepalives. Queues
    /// of frames are sized for it up front.
    pub(crate) fn max_frames(&self) -> usize {
        self.max_inflight.min(self.max_batches.max(64)) + 16
    }
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
            max_batches: 0,
        }
    }
}

/// The connection state machine.
#[derive(Debug)]
pub(crate) struct Session {
    /// Frames handed to the driver, and the frames queued that no operation keeps.
    tx: Frames,
    ingest: Ingest,
    calls: Calls,
    link: Link,
    rx: Rx,
    /// Where fetched data is copied to, if anywhere.
    fetch_pool: Option<Arc<BufPool>>,
    /// Reused list of actions decoded from one chunk.
    actions: Vec<Action>,
    fatal: Option<Fatal>,
}

impl Session {
    pub(crate) fn new(cfg: SessionConfig, now: Instant) -> Session {
        // One received chunk decodes to at most about as many replies as frames out.
        let frames = cfg.max_frames();
        Session {
            tx: Frames::new(frames),
            ingest: Ingest::new(&cfg),
            calls: Calls::default(),
            link: Link::new(&cfg, now),
            rx: Rx::new(&cfg),
            fetch_pool: cfg.fetch_pool,
            actions: Vec::with_capacity(frames),
            fatal: None,
        }
    }

    pub(crate) fn stats(&self) -> SessionStats {
        SessionStats {
            keepalives_sent: self.link.keepalives_sent(),
            ..self.ingest.stats()
        }
    }

    /// Batches in flight plus queued.
    pub(crate) fn outstanding_batches(&self) -> usize {
        self.ingest.len()
    }

    pub(crate) fn outstanding_calls(&self) -> usize {
        self.calls.len()
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.outstanding_batches() == 0 && self.outstanding_calls() == 0
    }

    /// Whether a frame is waiting to be written (while connected).
    pub(crate) fn is_connected(&self) -> bool {
        self.link.is_connected()
    }

    /// Whether a valid frame arrived since the connection came up.
    pub(crate) fn heard_from_peer(&self) -> bool {
        self.link.heard()
    }

    /// The reason the connection must be closed, once.
    pub(crate) fn take_fatal(&mut self) -> Option<Fatal> {
        self.fatal.take()
    }

    /// Notes why connecting failed (for messages about records waiting meanwhile).
    pub(crate) fn set_link_error(&mut self, error: String) {
        self.link.set_link_error(error);
    }

    /// ACK latencies (µs, from the batch's write to its ACK) recorded since the last call.
    pub(crate) fn take_latencies(&mut self, into: &mut Histogram<u64>) {
        self.ingest.take_latencies(into);
    }

    // ---- inputs from the handles ----

    pub(crate) fn submit_batch(&mut self, batch: Batch) {
        if let Some(e) = self.link.refused() {
            let e = e.clone();
            self.ingest.fail(batch, e);
            return;
        }
        self.ingest.submit(batch);
    }

    pub(crate) fn submit_call(&mut self, call: Call) {
        if let Some(e) = self.link.refused() {
            let _ = call.reply.send(Err(e.clone()));
            return;
        }
        self.calls.submit(call);
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
        self.link
            .queue_keepalive(now, &mut self.tx, Some((reply, now)));
    }

    // ---- connection lifecycle ----

    /// A new connection is up: authenticate first if configured.
    pub(crate) fn on_connected(&mut self, now: Instant) {
        self.rx.on_connected();
        self.ingest.on_connected();
        self.fatal = None;
        let resends = self.ingest.has_resends();
        self.link.on_connected(now, &mut self.tx, resends);
    }

    /// The connection is gone and the driver holds no pointer into any frame any more.
    /// In-flight batches go back to the front of the queue (at-least-once: the server
    /// may have stored some of them); outstanding calls fail with a retryable error.
    pub(crate) fn on_disconnected(&mut self, error: &Error) {
        self.link.on_disconnected(error);
        // Nothing is being written any more: the table lets go of every frame but those
        // of the batches in flight, which take them back.
        self.tx.close();
        self.ingest.on_disconnected(error, &mut self.tx);
        self.calls.fail_pending(error);
        self.rx.on_disconnected();
        self.link.fail_pings(error);
    }

    // ---- transmit ----

    /// The next frame to write, or `None`. The returned bytes stay valid, unmoved and
    /// unmodified until [`Session::tx_complete`] is called with the key (or the
    /// connection is closed and every operation on it has completed): the frame table
    /// (`tx`) keeps them.
    pub(crate) fn poll_transmit(&mut self, now: Instant) -> Option<Tx<'_>> {
        if !self.link.is_connected() {
            return None;
        }
        // Keepalives and Authenticate first.
        if self.tx.has_queued() {
            self.link.sent(now);
            return self.tx.next_queued();
        }
        if !self.link.is_ready() {
            return None;
        }
        // A control request goes out only when no batch is in flight (barrier).
        if self.calls.ready(&self.ingest) {
            self.link.sent(now);
            return self.calls.send(&mut self.tx);
        }
        // Batches wait behind control requests, and for the probe's echo.
        if self.calls.holds_batches() || self.link.probing() {
            return None;
        }
        let tx = self.ingest.transmit(now, &mut self.tx, &self.calls);
        if tx.is_some() {
            self.link.sent(now);
        }
        tx
    }

    /// The buffer of batch frame `key` was registered for fixed sends (it keeps the
    /// registration when it goes back to its pool).
    pub(crate) fn set_registration(&mut self, key: TxKey, reg: Registration) {
        self.tx.set_registration(key, reg);
    }

    /// The driver finished writing the frame with `key`.
    pub(crate) fn tx_complete(&mut self, key: TxKey, now: Instant) {
        if let TxKey::Batch(_) = key {
            self.link.batch_written(now);
        }
        self.tx.complete(key);
    }

    // ---- receive ----

    /// Bytes from the socket. A protocol violation is reported by [`Session::take_fatal`].
    pub(crate) fn handle_bytes(&mut self, chunk: &[u8], now: Instant) {
        self.link.received(now);
        let mut actions = std::mem::take(&mut self.actions);
        let fatal = self
            .rx
            .decode(chunk, self.fetch_pool.as_deref(), &mut actions);
        for a in actions.drain(..) {
            self.apply(a, now);
        }
        self.actions = actions;
        if let Some(f) = fatal {
            self.fatal.get_or_insert(f);
        }
    }

    /// Where the next received bytes can go without a copy: the unfilled part of a
    /// detached fetch reply's buffer (pointer, length). The memory stays valid and
    /// unmoved until [`Session::received_direct`] or the end of the connection.
    pub(crate) fn recv_target(&mut self) -> Option<(*mut u8, usize)> {
        self.rx.recv_target()
    }

    /// `n` bytes were received at [`Session::recv_target`].
    pub(crate) fn received_direct(&mut self, n: usize, now: Instant) {
        self.link.received(now);
        if let Some(a) = self.rx.received_direct(n) {
            self.apply(a, now);
        }
    }

    fn apply(&mut self, action: Action, now: Instant) {
        if !matches!(action, Action::Malformed(_)) {
            self.link.note_heard();
        }
        match action {
            Action::Keepalive => self.on_keepalive_echo(now),
            Action::Ack(id) => {
                // Not a batch of ours: the reply to an Unsubscribe?
                if !self.ingest.on_ack(id, now, &mut self.tx) {
                    self.calls.on_ack(id);
                }
            }
            Action::Backpressure => {}
            Action::Reply(reply) => self.on_reply(reply, now),
            Action::Ignore => {}
            Action::Malformed(e) => {
                self.fatal.get_or_insert(Fatal::Protocol(e));
            }
        }
    }

    fn on_keepalive_echo(&mut self, now: Instant) {
        let Some(echoed) = self.link.on_echo(now) else {
            return;
        };
        if self.ingest.on_echo(echoed, now, &mut self.tx) {
            let k2 = self.link.queue_keepalive(now, &mut self.tx, None);
            self.ingest.fence_second(k2);
        }
    }

    /// Starts a fence unless one is running.
    fn start_fence(&mut self, now: Instant) {
        if self.ingest.fence_idle() {
            let k1 = self.link.queue_keepalive(now, &mut self.tx, None);
            self.ingest.fence_started(k1);
        }
    }

    fn on_reply(&mut self, reply: Reply, now: Instant) {
        // The Authenticate reply comes first on a connection that authenticates.
        if self.link.is_authenticating() {
            match self.link.on_auth_reply(reply) {
                AuthReply::Accepted => {}
                AuthReply::Refused(e) => {
                    self.ingest.refuse(&e);
                    self.calls.fail_queued(&e);
                }
                AuthReply::Unexpected(f) => {
                    self.fatal.get_or_insert(f);
                }
            }
            return;
        }
        if let Reply::Error(e) = &reply {
            if let Some(addr) = redirect(e) {
                self.fatal.get_or_insert(Fatal::Redirect(addr.to_owned()));
            }
        }
        // The oldest outstanding control request's, if there is one (barrier).
        let Some(reply) = self.calls.on_reply(reply) else {
            return;
        };
        match reply {
            Reply::Error(e) => {
                // An ingest was rejected; which one is learned from the ACKs.
                self.ingest.on_error(e);
                self.start_fence(now);
            }
            other => {
                self.fatal
                    .get_or_insert(Fatal::Protocol(Error::Protocol(format!(
                        "unsolicited reply {other:?}"
                    ))));
            }
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
        self.link.poll_timeout(self.awaits_reply(), &mut min);
        self.ingest.poll_timeout(&mut min);
        self.calls.poll_timeout(&mut min);
        t
    }

    /// Runs timers: keepalives, the dead-peer check, delivery and request deadlines.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.is_connected() && self.fatal.is_none() {
            let awaits = self.awaits_reply();
            if let Some(f) = self.link.handle_timeout(now, awaits, &mut self.tx) {
                self.fatal.get_or_insert(f);
            }
        }
        let connected = self.link.is_connected();
        let expired_inflight = self.ingest.expire(now, self.link.link_error(), connected);
        if expired_inflight && connected {
            // The expired batches stay in line until a fence resolves them.
            self.start_fence(now);
        }
        if self.calls.expire(now) {
            self.fatal
                .get_or_insert(Fatal::Protocol(Error::Timeout("control request".into())));
        }
    }

    /// Fails everything (the handle is closing).
    pub(crate) fn abort(&mut self, error: &Error) {
        self.ingest.abort(error, &mut self.tx);
        self.calls.abort(error);
    }

    /// Whether something sent on this connection waits for an answer.
    fn awaits_reply(&self) -> bool {
        self.link.awaits_echo() || self.ingest.in_flight() > 0 || self.calls.has_pending()
    }
}

/// The leader's address in a `NOT_LEADER: redirect to <addr>` error.
fn redirect(e: &ServerError) -> Option<&str> {
    match &e.kind {
        ServerErrorKind::NotLeader {
            redirect: Some(addr),
        } => Some(addr),
        _ => None,
    }
}
