//! Scripted, deterministic faults.
//!
//! A [`FaultPlan`] holds the faults a test has injected. Each fault has a
//! [`Target`] (every connection, one connection by accept index, or the next one to be
//! accepted) and fires at a well-defined point of the server's read-chunk processing
//! (docs/protocol.md §1.2). Counted faults are used up and removed; [`Fault::SplitWrites`]
//! stays until [`FaultPlan::clear`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The text of the quorum-failure error (docs/protocol.md §4.7, §9; the numbers are
/// hard-coded in the server's message).
pub const QUORUM_FAILURE_TEXT: &str = "FORWARD_FAILED: Quorum not reached - required 2 ACKs, got 1";

/// Which connections a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Whichever connection first reaches the fault's trigger point; a counted fault is
    /// shared by all connections. A per-connection fault ([`Fault::CloseAfterFrames`],
    /// [`Fault::CloseAfterBytes`]) binds to the first connection it touches.
    /// [`Fault::SplitWrites`] with this target applies to every connection.
    Any,
    /// The connection with this accept index: 0 is the first connection the server
    /// accepted; indexes keep counting across restarts.
    Conn(u64),
    /// The next connection the server accepts, resolved when the fault is injected
    /// (to `Conn(connections accepted so far)`).
    Next,
}

/// One fault. Counts (`count`, `chunks`, `nth`) of 0 are treated as 1.
///
/// "Chunk" is what one `read()` returned (docs/protocol.md §1.2): the server handles every
/// complete frame in it, writing control replies, keepalive echoes and ingest errors at
/// once, then writes the chunk's ingest ACKs in one go.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Delay the ACK writing of the next `chunks` chunks that have ACKs to write by
    /// `delay` (on top of the server's [`super::AckPolicy`]).
    DelayAcks {
        /// Added delay.
        delay: Duration,
        /// Chunks affected.
        chunks: u32,
    },
    /// Store the next `count` ingests but never acknowledge them. Later ingests are
    /// ACKed normally, so the client sees batch ids skipped. `u32::MAX` ≈ forever.
    WithholdAcks {
        /// Ingests affected.
        count: u32,
    },
    /// A quorum failure (docs/protocol.md §4.7): the `nth` ingest from now (counting ingests
    /// that would be ACKed; 1 = the next one) is stored but answered, in its chunk's ACK
    /// phase after the ACKs of earlier ingests of that chunk, with
    /// [`QUORUM_FAILURE_TEXT`]; every later ingest of the same chunk is stored and gets
    /// neither ACK nor error. The connection stays open.
    FailQuorum {
        /// Which ingest fails (1-based).
        nth: u32,
    },
    /// Let `skip` ingests pass, then, instead of handling the next `count` ingests
    /// (after the auth gate, where the server forwards to its leader, §4.2 step 2),
    /// reply `text` inline — so the error overtakes the deferred ACKs of earlier ingests
    /// of the same chunk (§1.2). Nothing is stored. See [`Fault::forward_failed`],
    /// [`Fault::not_leader`], [`Fault::rate_limited`] and [`Fault::after`].
    RejectIngest {
        /// The ErrorResponse text.
        text: String,
        /// Ingests let through first.
        skip: u32,
        /// Ingests affected.
        count: u32,
    },
    /// Write a Backpressure frame (flags 0x10, everything else 0; the released server
    /// never does, §5.2) inline when each of the next `count` ingests is handled. With
    /// `replace_ingest` the ingest is then dropped (not stored, no ACK); otherwise it is
    /// handled normally after the frame.
    Backpressure {
        /// Ingests affected.
        count: u32,
        /// Drop the ingest instead of handling it.
        replace_ingest: bool,
    },
    /// Handle the next `frames` frames received, then write the chunk's ACKs and close
    /// the connection (the rest of the chunk is ignored). `frames: 0` closes the
    /// connection as soon as the next frame arrives, without handling it.
    CloseAfterFrames {
        /// Frames handled before the close.
        frames: u64,
    },
    /// Receive at most `bytes` more bytes: the frames complete within them are handled
    /// and acknowledged, then the connection closes; bytes past the budget are dropped
    /// as if never received.
    CloseAfterBytes {
        /// Bytes received before the close.
        bytes: u64,
    },
    /// Close the next `count` accepted connections at once, without reading.
    CloseOnAccept {
        /// Connections affected.
        count: u32,
    },
    /// When the next chunk arrives, hold it for `duration` before handling it and read
    /// nothing meanwhile (TCP backpressure: the client's writes block once the socket
    /// buffers are full).
    StallReads {
        /// How long.
        duration: Duration,
    },
    /// Like [`Fault::StallReads`], but until [`FaultPlan::resume_reads`] is called
    /// (a resume after the injection releases it even if it comes before the stall).
    PauseReads,
    /// Write every reply in pieces of 1, 2, …, `max_piece` bytes (cycling), each its own
    /// `write()` call, sleeping `pause` between pieces: exercises client reassembly.
    /// Stays in force until [`FaultPlan::clear`].
    SplitWrites {
        /// Largest piece (at least 1).
        max_piece: usize,
        /// Pause between pieces.
        pause: Duration,
    },
    /// Flip (XOR 0xFF) one byte of the next frame the server writes so the client's CRC
    /// check fails: the first payload byte (payload CRC mismatch) or, for a frame
    /// without payload (ACK, keepalive), a byte of the header CRC.
    CorruptNextFrame,
}

impl Fault {
    /// [`Fault::RejectIngest`] of the next ingest with `text`.
    pub fn reject_ingest(text: impl Into<String>) -> Fault {
        Fault::RejectIngest {
            text: text.into(),
            skip: 0,
            count: 1,
        }
    }

    /// This fault, firing only after `ingests` more ingests have passed: sets `skip` of
    /// [`Fault::RejectIngest`], `nth = ingests + 1` of [`Fault::FailQuorum`]; other
    /// faults are returned unchanged.
    ///
    /// ```
    /// use lnc_uring::testkit::Fault;
    ///
    /// // The third ingest from now is refused; the first two are handled.
    /// let f = Fault::forward_failed("Forward operation timed out").after(2);
    /// assert!(matches!(f, Fault::RejectIngest { skip: 2, count: 1, .. }));
    /// ```
    pub fn after(self, ingests: u32) -> Fault {
        match self {
            Fault::RejectIngest { text, count, .. } => Fault::RejectIngest {
                text,
                skip: ingests,
                count,
            },
            Fault::FailQuorum { .. } => Fault::FailQuorum {
                nth: ingests.saturating_add(1),
            },
            other => other,
        }
    }

    /// Reject the next ingest with `FORWARD_FAILED: <reason>` (a follower that cannot
    /// reach its leader, docs/protocol.md §9, §10), e.g. `"Forward operation timed out"`.
    pub fn forward_failed(reason: &str) -> Fault {
        Fault::reject_ingest(format!("FORWARD_FAILED: {reason}"))
    }

    /// Reject the next ingest with `NOT_LEADER: redirect to <addr>` (§9, §10).
    pub fn not_leader(addr: SocketAddr) -> Fault {
        Fault::reject_ingest(format!("NOT_LEADER: redirect to {addr}"))
    }

    /// Reject the next ingest with `Rate limit exceeded` (§5.2, §10).
    pub fn rate_limited() -> Fault {
        Fault::reject_ingest("Rate limit exceeded")
    }
}

/// What an ingest frame meets before it is handled.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct IngestPre {
    pub(crate) backpressure: bool,
    pub(crate) drop: bool,
    pub(crate) reject: Option<String>,
}

/// What a stored ingest gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IngestPost {
    Ack,
    Withhold,
    QuorumFail,
}

/// Per-frame verdict.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameGate {
    Handle,
    HandleThenClose,
    CloseNow,
}

/// Hold before handling a chunk.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    None,
    For(Duration),
    UntilResumed(u64),
}

#[derive(Debug)]
struct Entry {
    /// `Target::Next` is resolved at injection, so only `Any` and `Conn` remain.
    target: Target,
    fault: Fault,
    /// `PauseReads`: the resume epoch at injection.
    epoch: u64,
}

impl Entry {
    fn hits(&self, conn: u64) -> bool {
        match self.target {
            Target::Any => true,
            Target::Conn(c) => c == conn,
            Target::Next => false,
        }
    }
}

/// The faults scripted on a server. Get it with [`super::TestServer::faults`].
///
/// ```
/// use lnc_uring::testkit::{Fault, Target, TestServer};
///
/// let server = TestServer::start().unwrap();
/// server.faults().inject(Fault::WithholdAcks { count: 1 });
/// server.faults().inject_for(Target::Next, Fault::CloseAfterFrames { frames: 3 });
/// assert_eq!(server.faults().armed(), 2);
/// server.faults().clear();
/// assert_eq!(server.faults().armed(), 0);
/// ```
#[derive(Debug)]
pub struct FaultPlan {
    entries: Mutex<Vec<Entry>>,
    /// `entries.len()`, read without the lock on the hot path.
    armed: AtomicUsize,
    resume_epoch: AtomicU64,
    accepted: Arc<AtomicU64>,
}

fn at_least_one(n: u32) -> u32 {
    n.max(1)
}

impl FaultPlan {
    pub(crate) fn new(accepted: Arc<AtomicU64>) -> FaultPlan {
        FaultPlan {
            entries: Mutex::new(Vec::new()),
            armed: AtomicUsize::new(0),
            resume_epoch: AtomicU64::new(0),
            accepted,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sync_armed(&self, entries: &[Entry]) {
        self.armed.store(entries.len(), Ordering::Release);
    }

    #[inline]
    fn idle(&self) -> bool {
        self.armed.load(Ordering::Acquire) == 0
    }

    /// Injects a fault for [`Target::Any`].
    pub fn inject(&self, fault: Fault) {
        self.inject_for(Target::Any, fault);
    }

    /// Injects a fault for `target`.
    pub fn inject_for(&self, target: Target, fault: Fault) {
        let target = match target {
            Target::Next => Target::Conn(self.accepted.load(Ordering::SeqCst)),
            t => t,
        };
        let epoch = self.resume_epoch.load(Ordering::SeqCst);
        let mut entries = self.lock();
        entries.push(Entry {
            target,
            fault,
            epoch,
        });
        self.sync_armed(&entries);
    }

    /// Releases every connection held by [`Fault::PauseReads`] (and any such fault
    /// injected before this call that has not fired yet).
    pub fn resume_reads(&self) {
        self.resume_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Removes every fault not yet used up.
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.clear();
        self.sync_armed(&entries);
    }

    /// Faults not yet used up (a persistent [`Fault::SplitWrites`] counts).
    pub fn armed(&self) -> usize {
        self.armed.load(Ordering::Acquire)
    }

    pub(crate) fn resumed_since(&self, epoch: u64) -> bool {
        self.resume_epoch.load(Ordering::SeqCst) > epoch
    }

    /// Runs `f` on the first entry for `conn` it accepts; `f` returns `Some(verdict,
    /// remove)` to claim the entry.
    fn claim<R>(&self, conn: u64, mut f: impl FnMut(&mut Entry) -> Option<(R, bool)>) -> Option<R> {
        if self.idle() {
            return None;
        }
        let mut entries = self.lock();
        for i in 0..entries.len() {
            if !entries[i].hits(conn) {
                continue;
            }
            if let Some((r, remove)) = f(&mut entries[i]) {
                if remove {
                    entries.remove(i);
                    self.sync_armed(&entries);
                }
                return Some(r);
            }
        }
        None
    }

    pub(crate) fn on_accept(&self, conn: u64) -> bool {
        self.claim(conn, |e| match &mut e.fault {
            Fault::CloseOnAccept { count } => {
                *count = at_least_one(*count) - 1;
                Some(((), *count == 0))
            }
            _ => None,
        })
        .is_some()
    }

    /// Applies the byte budget of [`Fault::CloseAfterBytes`] to a chunk of `n` bytes:
    /// the usable length, and whether the connection closes after this chunk.
    pub(crate) fn charge_read(&self, conn: u64, n: usize) -> (usize, bool) {
        self.claim(conn, |e| match &mut e.fault {
            Fault::CloseAfterBytes { bytes } => {
                e.target = Target::Conn(conn);
                let usable = (*bytes).min(n as u64);
                *bytes -= usable;
                let done = *bytes == 0;
                Some(((usable as usize, done), done))
            }
            _ => None,
        })
        .unwrap_or((n, false))
    }

    pub(crate) fn chunk_hold(&self, conn: u64) -> Hold {
        self.claim(conn, |e| match e.fault {
            Fault::StallReads { duration } => Some((Hold::For(duration), true)),
            Fault::PauseReads => Some((Hold::UntilResumed(e.epoch), true)),
            _ => None,
        })
        .unwrap_or(Hold::None)
    }

    pub(crate) fn on_frame(&self, conn: u64) -> FrameGate {
        self.claim(conn, |e| match &mut e.fault {
            Fault::CloseAfterFrames { frames } => {
                e.target = Target::Conn(conn);
                if *frames == 0 {
                    return Some((FrameGate::CloseNow, true));
                }
                *frames -= 1;
                if *frames == 0 {
                    Some((FrameGate::HandleThenClose, true))
                } else {
                    Some((FrameGate::Handle, false))
                }
            }
            _ => None,
        })
        .unwrap_or(FrameGate::Handle)
    }

    pub(crate) fn ingest_pre(&self, conn: u64) -> IngestPre {
        let mut pre = IngestPre::default();
        if self.idle() {
            return pre;
        }
        // Backpressure frames first (they precede whatever the ingest gets), then at
        // most one rejection.
        if let Some(drop) = self.claim(conn, |e| match &mut e.fault {
            Fault::Backpressure {
                count,
                replace_ingest,
            } => {
                *count = at_least_one(*count) - 1;
                Some((*replace_ingest, *count == 0))
            }
            _ => None,
        }) {
            pre.backpressure = true;
            pre.drop = drop;
        }
        if pre.drop {
            return pre;
        }
        pre.reject = self.claim(conn, |e| match &mut e.fault {
            Fault::RejectIngest { skip, .. } if *skip > 0 => {
                *skip -= 1;
                None
            }
            Fault::RejectIngest { text, count, .. } => {
                *count = at_least_one(*count) - 1;
                Some((text.clone(), *count == 0))
            }
            _ => None,
        });
        pre
    }

    pub(crate) fn ingest_post(&self, conn: u64) -> IngestPost {
        if self.idle() {
            return IngestPost::Ack;
        }
        let mut verdict = IngestPost::Ack;
        // Every armed quorum countdown sees this ingest; the first to reach 1 fires.
        let mut entries = self.lock();
        let mut fired = None;
        for (i, e) in entries.iter_mut().enumerate() {
            if !e.hits(conn) {
                continue;
            }
            if let Fault::FailQuorum { nth } = &mut e.fault {
                if *nth <= 1 {
                    if fired.is_none() {
                        fired = Some(i);
                    }
                } else {
                    *nth -= 1;
                }
            }
        }
        if let Some(i) = fired {
            entries.remove(i);
            verdict = IngestPost::QuorumFail;
        } else if let Some(i) = entries
            .iter()
            .position(|e| e.hits(conn) && matches!(e.fault, Fault::WithholdAcks { .. }))
        {
            if let Fault::WithholdAcks { count } = &mut entries[i].fault {
                *count = at_least_one(*count) - 1;
                if *count == 0 {
                    entries.remove(i);
                }
            }
            verdict = IngestPost::Withhold;
        }
        self.sync_armed(&entries);
        verdict
    }

    pub(crate) fn ack_delay(&self, conn: u64) -> Option<Duration> {
        self.claim(conn, |e| match &mut e.fault {
            Fault::DelayAcks { delay, chunks } => {
                *chunks = at_least_one(*chunks) - 1;
                Some((*delay, *chunks == 0))
            }
            _ => None,
        })
    }

    pub(crate) fn corrupt_frame(&self, conn: u64) -> bool {
        self.claim(conn, |e| match e.fault {
            Fault::CorruptNextFrame => Some(((), true)),
            _ => None,
        })
        .is_some()
    }

    pub(crate) fn split_writes(&self, conn: u64) -> Option<(usize, Duration)> {
        self.claim(conn, |e| match e.fault {
            Fault::SplitWrites { max_piece, pause } => Some(((max_piece.max(1), pause), false)),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> FaultPlan {
        FaultPlan::new(Arc::new(AtomicU64::new(5)))
    }

    #[test]
    fn next_resolves_to_the_accept_count() {
        let p = plan();
        p.inject_for(Target::Next, Fault::CorruptNextFrame);
        assert!(!p.corrupt_frame(4));
        assert!(p.corrupt_frame(5));
        assert!(!p.corrupt_frame(5));
    }

    #[test]
    fn counted_faults_are_used_up() {
        let p = plan();
        p.inject(Fault::WithholdAcks { count: 2 });
        assert_eq!(p.ingest_post(0), IngestPost::Withhold);
        assert_eq!(p.ingest_post(1), IngestPost::Withhold);
        assert_eq!(p.ingest_post(0), IngestPost::Ack);
        assert_eq!(p.armed(), 0);
    }

    #[test]
    fn quorum_counts_down() {
        let p = plan();
        p.inject(Fault::FailQuorum { nth: 2 });
        assert_eq!(p.ingest_post(0), IngestPost::Ack);
        assert_eq!(p.ingest_post(0), IngestPost::QuorumFail);
        assert_eq!(p.ingest_post(0), IngestPost::Ack);
    }

    #[test]
    fn close_after_frames_binds_to_one_connection() {
        let p = plan();
        p.inject(Fault::CloseAfterFrames { frames: 2 });
        assert_eq!(p.on_frame(3), FrameGate::Handle);
        assert_eq!(p.on_frame(4), FrameGate::Handle);
        assert_eq!(p.on_frame(3), FrameGate::HandleThenClose);
        assert_eq!(p.armed(), 0);
    }

    #[test]
    fn byte_budget_truncates() {
        let p = plan();
        p.inject(Fault::CloseAfterBytes { bytes: 10 });
        assert_eq!(p.charge_read(1, 4), (4, false));
        assert_eq!(p.charge_read(1, 100), (6, true));
        assert_eq!(p.charge_read(1, 100), (100, false));
    }

    #[test]
    fn resume_before_pause_fires_releases_it() {
        let p = plan();
        p.inject(Fault::PauseReads);
        p.resume_reads();
        let Hold::UntilResumed(epoch) = p.chunk_hold(0) else {
            panic!("expected a pause");
        };
        assert!(p.resumed_since(epoch));
    }
}
