//! The connection itself: its phase, authentication, keepalives, the proof-of-life probe
//! and the timers that decide the peer is dead (docs/protocol.md §5.1, §8).
//!
//! * With a token, Authenticate is the first frame on every connection and nothing else
//!   is sent until its reply; a refusal fails everything until the handle is closed.
//! * Batches written on an earlier connection wait until the server answers on the new
//!   one (the Authenticate reply, or the echo of a probe keepalive): a frozen server
//!   accepts connections (the kernel does) and would otherwise collect a copy of the
//!   window on every reconnect.
//! * A keepalive is sent after the keepalive interval without sending anything; echoes
//!   are counted, never answered.
//! * The peer is declared dead when, while something sent waits for an answer, neither a
//!   byte arrived nor a batch write completed within the peer timeout: a live but slow
//!   server (an fsync, a full queue) still takes our bytes; a frozen one soon stops.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::tx::Frames;
use super::types::{after, Fatal, Pong, Reply};
use super::SessionConfig;
use crate::proto::{keepalive_frame, Checksum, Request};
use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Disconnected,
    /// Authenticate sent, nothing else until its reply.
    Authenticating,
    Ready,
    /// The token was refused: everything fails until the handle is closed.
    Refused,
}

/// What the first reply on an authenticating connection means.
#[derive(Debug)]
pub(super) enum AuthReply {
    Accepted,
    /// The token was refused: everything queued fails with this error.
    Refused(Error),
    /// Not an Authenticate reply: the connection must be closed.
    Unexpected(Fatal),
}

/// The state of the connection.
#[derive(Debug)]
pub(super) struct Link {
    checksum: Checksum,
    keepalive_interval: Duration,
    peer_timeout: Duration,
    auth_token: Option<String>,
    phase: Phase,
    /// Keepalives sent and not yet echoed (echoes come in order): sequence number and,
    /// for a ping, who waits for the echo.
    keepalives: VecDeque<(u64, Option<Pong>)>,
    keepalives_sent: u64,
    /// Last frame queued for writing (keepalives are sent after an idle interval).
    last_tx: Instant,
    /// Last batch write that completed: the peer's kernel is still taking our bytes.
    last_tx_done: Instant,
    last_rx: Instant,
    /// While set, batches wait for the echo of this keepalive (proof that the server
    /// answers on a new connection before anything is resent on it).
    probe: Option<u64>,
    /// Why the connection is down, for messages about records that wait meanwhile.
    link_error: Option<String>,
    refused: Option<Error>,
    /// A valid frame arrived on this connection (proof of life, for reconnect back-off).
    heard: bool,
}

impl Link {
    pub(super) fn new(cfg: &SessionConfig, now: Instant) -> Link {
        Link {
            checksum: cfg.checksum,
            keepalive_interval: cfg.keepalive_interval,
            peer_timeout: cfg.peer_timeout,
            auth_token: cfg.auth_token.clone(),
            phase: Phase::Disconnected,
            keepalives: VecDeque::new(),
            keepalives_sent: 0,
            last_tx: now,
            last_tx_done: now,
            last_rx: now,
            probe: None,
            link_error: None,
            refused: None,
            heard: false,
        }
    }

    /// Whether a frame may be written (authenticating or ready).
    pub(super) fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Authenticating | Phase::Ready)
    }

    /// Whether requests and batches may be written.
    pub(super) fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    pub(super) fn is_authenticating(&self) -> bool {
        self.phase == Phase::Authenticating
    }

    /// Whether batches wait for the probe's echo.
    pub(super) fn probing(&self) -> bool {
        self.probe.is_some()
    }

    /// The refusal of the token, once authentication failed.
    pub(super) fn refused(&self) -> Option<&Error> {
        self.refused.as_ref()
    }

    pub(super) fn link_error(&self) -> Option<&str> {
        self.link_error.as_deref()
    }

    pub(super) fn set_link_error(&mut self, error: String) {
        self.link_error = Some(error);
    }

    pub(super) fn heard(&self) -> bool {
        self.heard
    }

    /// A valid frame arrived.
    pub(super) fn note_heard(&mut self) {
        self.heard = true;
    }

    pub(super) fn keepalives_sent(&self) -> u64 {
        self.keepalives_sent
    }

    /// A frame was handed out for writing.
    pub(super) fn sent(&mut self, now: Instant) {
        self.last_tx = now;
    }

    /// A batch write completed: the server is taking our data (a keepalive would always
    /// fit in the socket buffer, so only batch writes count as progress).
    pub(super) fn batch_written(&mut self, now: Instant) {
        self.last_tx_done = now;
    }

    /// Bytes arrived.
    pub(super) fn received(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// A new connection is up: authenticate first if configured; otherwise, when
    /// `resends` (batches written on an earlier connection wait), probe first.
    pub(super) fn on_connected(&mut self, now: Instant, frames: &mut Frames, resends: bool) {
        self.heard = false;
        self.last_rx = now;
        self.last_tx = now;
        self.last_tx_done = now;
        self.keepalives.clear();
        self.probe = None;
        self.link_error = None;
        if let Some(token) = self.auth_token.clone() {
            // The Authenticate reply is also the proof of life a resend waits for.
            let mut frame = Vec::new();
            // A token is UTF-8 text; encoding cannot fail.
            let _ = Request::Authenticate { token: &token }.encode(self.checksum, &mut frame);
            let seq = frames.next_seq();
            frames.queue_first(seq, frame);
            self.phase = Phase::Authenticating;
        } else {
            self.phase = Phase::Ready;
            if resends {
                self.probe = Some(self.queue_keepalive(now, frames, None));
            }
        }
    }

    /// The connection is gone.
    pub(super) fn on_disconnected(&mut self, error: &Error) {
        self.phase = if self.refused.is_some() {
            Phase::Refused
        } else {
            Phase::Disconnected
        };
        self.link_error = Some(error.to_string());
        self.probe = None;
    }

    /// Fails the pings waiting for an echo and forgets the keepalives (the connection is
    /// gone).
    pub(super) fn fail_pings(&mut self, error: &Error) {
        for (_, pong) in self.keepalives.drain(..) {
            if let Some((tx, _)) = pong {
                let _ = tx.send(Err(error.clone()));
            }
        }
    }

    /// Queues a keepalive; `pong`: who waits for its echo (a ping). Returns its sequence
    /// number.
    pub(super) fn queue_keepalive(
        &mut self,
        now: Instant,
        frames: &mut Frames,
        pong: Option<Pong>,
    ) -> u64 {
        let seq = frames.next_seq();
        frames.queue(seq, keepalive_frame(self.checksum).to_vec());
        self.keepalives.push_back((seq, pong));
        self.keepalives_sent += 1;
        self.last_tx = now;
        seq
    }

    /// A keepalive echo: answers a ping, ends a probe. Returns the sequence number of the
    /// keepalive echoed, or `None` for an echo we did not ask for (harmless, never
    /// answered).
    pub(super) fn on_echo(&mut self, now: Instant) -> Option<u64> {
        let (echoed, pong) = self.keepalives.pop_front()?;
        if let Some((tx, sent)) = pong {
            let _ = tx.send(Ok(Reply::Pong(now.saturating_duration_since(sent))));
        }
        if self.probe == Some(echoed) {
            self.probe = None;
        }
        Some(echoed)
    }

    /// The first reply on an authenticating connection.
    pub(super) fn on_auth_reply(&mut self, reply: Reply) -> AuthReply {
        match reply {
            Reply::Authenticate { success: true, .. } => {
                self.phase = Phase::Ready;
                AuthReply::Accepted
            }
            Reply::Authenticate { message, .. } => self.refuse(message),
            Reply::Error(e) => self.refuse(e.message),
            other => AuthReply::Unexpected(Fatal::Protocol(Error::Protocol(format!(
                "expected the Authenticate reply, got {other:?}"
            )))),
        }
    }

    fn refuse(&mut self, message: String) -> AuthReply {
        log::error!("authentication refused: {message}");
        let e = Error::Authentication { message };
        self.refused = Some(e.clone());
        self.phase = Phase::Refused;
        AuthReply::Refused(e)
    }

    /// Offers the keepalive and peer timers to `min`; `awaits_reply`: something sent on
    /// this connection waits for an answer.
    pub(super) fn poll_timeout(&self, awaits_reply: bool, min: &mut impl FnMut(Instant)) {
        if self.is_connected() {
            min(after(self.last_tx, self.keepalive_interval));
            if awaits_reply {
                min(after(self.last_progress(), self.peer_timeout));
            }
        }
    }

    /// Whether a keepalive waits for its echo.
    pub(super) fn awaits_echo(&self) -> bool {
        !self.keepalives.is_empty()
    }

    /// Runs the timers of a live connection: the dead-peer check, else the keepalive.
    pub(super) fn handle_timeout(
        &mut self,
        now: Instant,
        awaits_reply: bool,
        frames: &mut Frames,
    ) -> Option<Fatal> {
        let progress = self.last_progress();
        if awaits_reply && now >= after(progress, self.peer_timeout) {
            return Some(Fatal::PeerTimeout(
                now.saturating_duration_since(self.last_rx),
            ));
        }
        if now >= after(self.last_tx, self.keepalive_interval) {
            self.queue_keepalive(now, frames, None);
        }
        None
    }

    /// The later of the last byte received and the last batch write completed.
    fn last_progress(&self) -> Instant {
        self.last_rx.max(self.last_tx_done)
    }
}

#[cfg(test)]
mod tests {
    use crate::session::testutil::*;

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
        let t =
            crate::delivery::DeliveryTicket::new(slots[2].clone(), 0, crate::IdleStrategy::Block);
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
}
