//! The driver thread's loop: commands in, the session's frames out, bytes and timers
//! in, connections made and remade. Never blocks on anything but the backend's wait.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::io::{Events, Io, Link};
#[cfg(target_os = "linux")]
use super::stats::BACKEND_URING;
use super::stats::{Counters, BACKEND_POLL};
use super::waker::Waker;
use super::{poll, resolve, Backend, Command, DriverConfig};
use crate::producer::Lingering;
use crate::proto::ServerError;
use crate::session::{after, Fatal, Session, TxKey};
use crate::Error;

/// How often the ACK-latency histogram is merged into the shared counters.
const LATENCY_EXPORT: Duration = Duration::from_millis(100);
/// Consecutive redirects without useful traffic before redirects back off too.
const MAX_FREE_REDIRECTS: u32 = 3;

pub(super) fn thread_main(
    cfg: DriverConfig,
    rx: Receiver<Command>,
    waker: Arc<Waker>,
    counters: Arc<Counters>,
    ready: Sender<Result<(), Error>>,
) {
    if let Some(cpu) = cfg.pin_cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            let _ = ready.send(Err(Error::Config(format!(
                "cannot pin the driver thread to CPU {cpu}"
            ))));
            return;
        }
    }
    #[cfg(target_os = "linux")]
    {
        if cfg.backend != Backend::Poll {
            match super::uring::Uring::new(waker.clone(), counters.clone(), &cfg) {
                Ok(io) => {
                    counters.backend.store(BACKEND_URING, Ordering::Relaxed);
                    log::info!("{}: io_uring backend ({})", cfg.thread_name, io.features());
                    return run(Loop::new(cfg, rx, waker, counters, io), ready);
                }
                Err(e) if cfg.backend == Backend::IoUring => {
                    let _ = ready.send(Err(Error::Config(format!("io_uring unavailable: {e}"))));
                    return;
                }
                Err(e) => {
                    log::warn!(
                        "{}: io_uring unavailable ({e}); falling back to poll(2)",
                        cfg.thread_name
                    );
                }
            }
        }
    }
    if cfg.backend == Backend::IoUring {
        let _ = ready.send(Err(Error::Config(
            "io_uring is not available on this platform".into(),
        )));
        return;
    }
    match poll::PollIo::new(waker.clone(), counters.clone()) {
        Ok(io) => {
            counters.backend.store(BACKEND_POLL, Ordering::Relaxed);
            log::info!("{}: poll(2) backend", cfg.thread_name);
            run(Loop::new(cfg, rx, waker, counters, io), ready)
        }
        Err(e) => {
            let _ = ready.send(Err(e.into()));
        }
    }
}

/// Runs the loop; whatever ends it — shutdown, a backend failure, a panic — every
/// record and request it held gets an outcome before the thread exits.
fn run<I: Io>(mut lp: Loop<I>, ready: Sender<Result<(), Error>>) {
    let mut ready = Some(ready);
    let outcome = catch_unwind(AssertUnwindSafe(|| lp.run(&mut ready)));
    let reason = match outcome {
        Ok(Exit::Shutdown) => None,
        Ok(Exit::Failed(reason)) => Some(reason),
        Err(panic) => Some(format!(
            "panicked: {}",
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into())
        )),
    };
    lp.exit(reason, ready);
}

/// Why the loop ended.
enum Exit {
    Shutdown,
    Failed(String),
}

/// The driver loop over one backend.
struct Loop<I: Io> {
    // Declared first, dropped first: the backend ends every kernel reference to the
    // session's buffers before the session is dropped.
    io: I,
    st: State,
    cfg: DriverConfig,
    rx: Receiver<Command>,
    waker: Arc<Waker>,
    counters: Arc<Counters>,
    /// Linger timers of open batches: (when, topic, generation), earliest first.
    lingers: BinaryHeap<Reverse<(Instant, u32, u64)>>,
    shutdown: Option<Instant>,
    last_latency_export: Instant,
}

/// Everything the backend's event handler mutates: the session and the connection's
/// bookkeeping (addresses, back-off, why it closed).
struct State {
    session: Session,
    counters: Arc<Counters>,
    /// Seeds resolved in this round, and the next one to try.
    resolved: Vec<SocketAddr>,
    next_addr: usize,
    /// A redirect target to try next.
    redirect: Option<SocketAddr>,
    /// Redirects followed since the last connection that carried useful traffic.
    redirects: u32,
    /// The address of the connection (being) made.
    target: Option<SocketAddr>,
    /// Consecutive failed attempts (for back-off).
    attempts: u32,
    next_attempt: Instant,
    last_error: Option<io::Error>,
    /// Why this side is closing the connection (reported instead of "closed by server").
    close_reason: Option<Error>,
    /// `spawn` waits for the first connection attempt's outcome.
    awaiting_first: bool,
    first_outcome: Option<Result<(), Error>>,
    seeds_label: String,
    backoff_base: Duration,
    backoff_max: Duration,
}

impl State {
    /// Schedules the next connection attempt after a failure or a drop: exponential
    /// back-off with full jitter (half to all of the delay).
    fn back_off(&mut self, now: Instant) {
        self.attempts = self.attempts.saturating_add(1);
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << self.attempts.min(16))
            .min(self.backoff_max);
        self.next_attempt = after(now, exp.mul_f64(0.5 + fastrand::f64() * 0.5));
    }

    fn set_last_error(&self, why: String) {
        *self
            .counters
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(why);
    }
}

impl Events for State {
    fn connected(&mut self) {
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        self.counters.connected.store(true, Ordering::Release);
        log::debug!("connected to {:?}", self.target);
        self.session.on_connected(Instant::now());
        if self.awaiting_first {
            self.awaiting_first = false;
            self.first_outcome = Some(Ok(()));
        }
    }

    fn connect_failed(&mut self, error: io::Error) {
        let now = Instant::now();
        log::debug!("connect to {:?} failed: {error}", self.target);
        self.counters
            .connect_failures
            .fetch_add(1, Ordering::Relaxed);
        let why = match self.target {
            Some(a) => format!("connect to {a}: {error}"),
            None => format!("connect: {error}"),
        };
        self.session.set_link_error(why.clone());
        self.set_last_error(why);
        self.last_error = Some(error);
        let more = self.next_addr < self.resolved.len();
        if more {
            // The next seed at once.
            self.next_attempt = now;
        } else if self.awaiting_first {
            self.awaiting_first = false;
            let source = self
                .last_error
                .take()
                .unwrap_or_else(|| io::Error::other("connection failed"));
            self.first_outcome = Some(Err(Error::Connect {
                addr: self.seeds_label.clone(),
                source: Arc::new(source),
            }));
        } else {
            self.back_off(now);
        }
    }

    fn data(&mut self, chunk: &[u8]) {
        self.counters
            .bytes_received
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        self.session.handle_bytes(chunk, Instant::now());
    }

    fn sent(&mut self, key: TxKey, bytes: usize) {
        self.counters
            .bytes_sent
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.session.tx_complete(key, Instant::now());
    }

    fn feature_lost(&mut self, feature: &'static str, why: &str) {
        self.counters.features_lost.fetch_add(1, Ordering::Relaxed);
        log::warn!("io_uring: {feature} refused by the kernel ({why}); falling back");
    }

    fn closed(&mut self, error: Option<io::Error>) {
        self.counters.connected.store(false, Ordering::Release);
        let e = match (self.close_reason.take(), error) {
            (Some(reason), _) => reason,
            (None, Some(e)) => Error::from(e),
            (None, None) => Error::ConnectionClosed,
        };
        if self.session.is_connected() {
            self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
            log::info!("connection to {:?} lost: {e}", self.target);
        }
        self.set_last_error(e.to_string());
        // A connection that carried traffic resets the back-off; one that died before
        // anything valid arrived (refused frames, a server closing at once) does not, so
        // a failing server is not hammered.
        if self.session.heard_from_peer() {
            self.attempts = 0;
        }
        self.session.on_disconnected(&e);
        let now = Instant::now();
        if self.redirect.is_some() && self.redirects <= MAX_FREE_REDIRECTS {
            self.next_attempt = now;
        } else {
            self.back_off(now);
        }
    }
}

impl<I: Io> Loop<I> {
    fn new(
        cfg: DriverConfig,
        rx: Receiver<Command>,
        waker: Arc<Waker>,
        counters: Arc<Counters>,
        io: I,
    ) -> Loop<I> {
        let now = Instant::now();
        // Allocated once here, not on the hot path.
        counters
            .ack_latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(crate::session::new_histogram);
        let st = State {
            session: Session::new(cfg.session.clone(), now),
            counters: counters.clone(),
            resolved: Vec::new(),
            next_addr: 0,
            redirect: None,
            redirects: 0,
            target: None,
            attempts: 0,
            next_attempt: now,
            last_error: None,
            close_reason: None,
            awaiting_first: true,
            first_outcome: None,
            seeds_label: cfg.addrs.join(", "),
            backoff_base: cfg.backoff_base,
            backoff_max: cfg.backoff_max,
        };
        Loop {
            io,
            st,
            cfg,
            rx,
            waker,
            counters,
            // One timer per producer topic at most; grows only with new topics.
            lingers: BinaryHeap::with_capacity(64),
            shutdown: None,
            last_latency_export: now,
        }
    }

    fn run(&mut self, ready: &mut Option<Sender<Result<(), Error>>>) -> Exit {
        let mut last_activity = Instant::now();
        loop {
            let now = Instant::now();
            let mut worked = match self.take_commands(now) {
                Ok(w) => w,
                Err(exit) => return exit,
            };
            worked |= self.seal_lingering(now);

            // The first connection attempt decides whether `spawn` succeeds.
            if let (Some(r), Some(outcome)) = (ready.as_ref(), self.st.first_outcome.take()) {
                let failed = outcome.is_err();
                let _ = r.send(outcome);
                *ready = None;
                if failed {
                    return Exit::Shutdown;
                }
            }

            match self.io.link() {
                Link::Idle
                    if (self.shutdown.is_none() || !self.st.session.is_idle())
                        && now >= self.st.next_attempt =>
                {
                    self.connect(now);
                    worked = true;
                }
                Link::Up => worked |= self.transmit(now),
                _ => {}
            }
            self.handle_fatal(now);

            if let Some(deadline) = self.shutdown {
                if self.st.session.is_idle() || now >= deadline {
                    return Exit::Shutdown;
                }
            }

            // Wait for I/O, a command or the next timer.
            let mut wake_at = if self.io.link() == Link::Closing {
                // While a connection closes, its timers are moot; look again soon.
                Some(now + Duration::from_millis(10))
            } else {
                self.st.session.poll_timeout()
            };
            if self.io.link() == Link::Idle {
                wake_at =
                    Some(wake_at.map_or(self.st.next_attempt, |t| t.min(self.st.next_attempt)));
            }
            let linger = self.lingers.peek().map(|Reverse((at, _, _))| *at);
            for t in [self.shutdown, linger].into_iter().flatten() {
                wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
            }
            if worked {
                last_activity = now;
            }
            let spinning = self
                .cfg
                .busy_poll
                .is_some_and(|spin| now < last_activity + spin);
            let mut timeout = if spinning {
                Some(Duration::ZERO)
            } else {
                wake_at.map(|t| t.saturating_duration_since(now))
            };
            if !spinning {
                self.waker.set_asleep(wake_at, self.io.write_in_flight());
                if !self.rx.is_empty() {
                    timeout = Some(Duration::ZERO);
                }
            }
            if timeout != Some(Duration::ZERO) {
                self.counters.waits.fetch_add(1, Ordering::Relaxed);
            }
            let res = self.io.poll(timeout, &mut self.st);
            self.waker.set_awake();
            if let Err(e) = res {
                return Exit::Failed(format!("the I/O backend failed: {e}"));
            }
            let now = Instant::now();
            self.st.session.handle_timeout(now);
            self.export_stats(now, false);
        }
    }

    /// Hands the session's frames to the backend while it takes them; `true` if any.
    fn transmit(&mut self, now: Instant) -> bool {
        let mut any = false;
        while self.io.can_queue() {
            let Some(tx) = self.st.session.poll_transmit(now) else {
                break;
            };
            let (key, ptr, len, capacity) =
                (tx.key, tx.bytes.as_ptr(), tx.bytes.len(), tx.capacity);
            let mut reg = tx.reg;
            if reg.is_none() && self.io.wants_registration(len) {
                // First time this buffer carries a large frame: register it once; it
                // keeps the registration for every later batch.
                if let Some(r) = self.io.register(ptr, capacity) {
                    self.st.session.set_registration(key, r);
                    reg = Some(r);
                }
            }
            // The session keeps these bytes valid and unmoved until `Events::sent` or
            // `Events::closed` (the contract of `poll_transmit`).
            self.io.queue(key, ptr, len, reg);
            any = true;
        }
        any
    }

    /// Takes every queued command. `Ok(true)` if there was any.
    fn take_commands(&mut self, now: Instant) -> Result<bool, Exit> {
        let mut worked = false;
        loop {
            match self.rx.try_recv() {
                Ok(Command::Batch(b)) => self.st.session.submit_batch(b),
                Ok(Command::Call(c)) => self.st.session.submit_call(c),
                Ok(Command::Ping(tx)) => self.st.session.submit_ping(tx, now),
                Ok(Command::Linger { at, topic_id, gen }) => {
                    self.lingers.push(Reverse((at, topic_id, gen)))
                }
                Ok(Command::Shutdown { deadline }) => {
                    self.shutdown = Some(self.shutdown.map_or(deadline, |d| d.min(deadline)))
                }
                Ok(Command::DebugStop { panic }) => {
                    if panic {
                        panic!("driver panic requested by a test");
                    }
                    return Err(Exit::Failed(
                        "stopped by a test (a simulated backend failure)".into(),
                    ));
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.shutdown.get_or_insert(now);
                    break;
                }
            }
            worked = true;
        }
        Ok(worked)
    }

    /// Seals batches whose linger time is up (all of them at shutdown).
    fn seal_lingering(&mut self, now: Instant) -> bool {
        let Some(acc) = self.cfg.accumulator.clone() else {
            self.lingers.clear();
            return false;
        };
        let mut worked = false;
        while let Some(Reverse((at, topic_id, gen))) = self.lingers.peek().copied() {
            if at > now && self.shutdown.is_none() {
                break;
            }
            self.lingers.pop();
            match acc.linger_expired(topic_id, gen) {
                Lingering::Sealed(b) => {
                    self.st.session.submit_batch(b);
                    worked = true;
                }
                Lingering::Rearm(at, gen) if self.shutdown.is_none() => {
                    self.lingers.push(Reverse((at, topic_id, gen)))
                }
                // At shutdown the rest is sealed by the producer's flush.
                Lingering::Rearm(..) | Lingering::Idle => {}
            }
        }
        worked
    }

    /// Closes the connection when the session wants it closed, remembering why.
    fn handle_fatal(&mut self, now: Instant) {
        let Some(fatal) = self.st.session.take_fatal() else {
            return;
        };
        let reason = match fatal {
            Fatal::Redirect(addr) => self.redirect_to(&addr, now),
            Fatal::Protocol(e) => Error::ConnectionDropped {
                reason: e.to_string(),
            },
            Fatal::PeerTimeout(silent) => Error::PeerTimeout { silent },
        };
        log::warn!("{}: closing the connection: {reason}", self.cfg.thread_name);
        self.st.set_last_error(reason.to_string());
        self.st.close_reason = Some(reason);
        if self.io.link() != Link::Idle {
            self.io.close();
        }
    }

    /// Decides whether to follow `NOT_LEADER: redirect to <addr>`; returns the reason the
    /// connection closes.
    fn redirect_to(&mut self, addr: &str, now: Instant) -> Error {
        let reason = Error::Server(ServerError::classify(format!(
            "NOT_LEADER: redirect to {addr}"
        )));
        if !self.cfg.follow_redirects {
            return reason;
        }
        let target = match resolve(addr) {
            Ok(a) => a[0],
            Err(e) => {
                log::warn!("redirect to {addr} not followed: {e}");
                return reason;
            }
        };
        let is_seed = self
            .cfg
            .addrs
            .iter()
            .filter_map(|s| resolve(s).ok())
            .flatten()
            .any(|a| a == target);
        if self.cfg.session.auth_token.is_some() && !is_seed && !self.cfg.auth_on_redirect {
            log::warn!(
                "redirect to {addr} not followed: it is not a configured server and the \
                 auth token would be sent there (allow with ConnectionConfig::with_auth_on_redirect)"
            );
            return reason;
        }
        self.st.redirects += 1;
        if Some(target) == self.st.target {
            // A redirect to where we are: no use hurrying back.
            self.st.redirects = MAX_FREE_REDIRECTS + 1;
        }
        if self.st.redirects > MAX_FREE_REDIRECTS {
            log::warn!(
                "redirected {} times in a row; backing off",
                self.st.redirects
            );
        }
        self.st.redirect = Some(target);
        let _ = now;
        reason
    }

    /// Starts the next connection attempt (a redirect target first, then the seeds in
    /// order, re-resolving them on every round) without waiting for it.
    fn connect(&mut self, now: Instant) {
        if self.st.session.heard_from_peer() {
            self.st.redirects = 0;
        }
        let target = if let Some(r) = self.st.redirect.take() {
            Ok(r)
        } else {
            if self.st.next_addr >= self.st.resolved.len() {
                self.st.resolved = self
                    .cfg
                    .addrs
                    .iter()
                    .flat_map(|a| resolve(a).unwrap_or_default())
                    .collect();
                self.st.next_addr = 0;
            }
            match self.st.resolved.get(self.st.next_addr) {
                Some(a) => {
                    self.st.next_addr += 1;
                    Ok(*a)
                }
                None => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no address for {}", self.cfg.addrs.join(", ")),
                )),
            }
        };
        self.st.target = target.as_ref().ok().copied();
        let started = target.and_then(|addr| self.io.connect(addr, self.cfg.connect_timeout));
        if let Err(e) = started {
            self.st.connect_failed(e);
        }
        let _ = now;
    }

    /// The end of the thread: fails everything it holds (with the stop reason when it
    /// stopped by itself), closes the connection and waits until the backend holds no
    /// pointer into any buffer.
    fn exit(&mut self, reason: Option<String>, mut ready: Option<Sender<Result<(), Error>>>) {
        let error = match &reason {
            Some(r) => {
                log::error!("{}: driver thread stopped: {r}", self.cfg.thread_name);
                *self
                    .counters
                    .stop_reason
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(r.clone());
                // Published before anything is failed: handles see it and fail fast.
                self.counters.stopped.store(true, Ordering::Release);
                Error::Stopped { reason: r.clone() }
            }
            None => Error::Closed,
        };
        self.st.session.abort(&error);
        if self.io.link() != Link::Idle {
            self.io.close();
        }
        let until = Instant::now() + Duration::from_secs(5);
        while self.io.link() != Link::Idle && Instant::now() < until {
            if self
                .io
                .poll(Some(Duration::from_millis(50)), &mut self.st)
                .is_err()
            {
                break;
            }
        }
        self.counters.connected.store(false, Ordering::Release);
        // Commands that will never be handled, and batches still being filled.
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Batch(mut b) => b.fail(error.clone()),
                Command::Call(c) => {
                    let _ = c.reply.send(Err(error.clone()));
                }
                Command::Ping(tx) => {
                    let _ = tx.send(Err(error.clone()));
                }
                Command::Linger { .. } | Command::Shutdown { .. } | Command::DebugStop { .. } => {}
            }
        }
        if let Some(acc) = self.cfg.accumulator.clone() {
            acc.drain(&mut |mut b| b.fail(error.clone()));
        }
        self.export_stats(Instant::now(), true);
        if !self.io.quiesce(Duration::from_secs(2)) {
            // Frames may still be read by the kernel: leak them rather than free them.
            let fresh = Session::new(self.cfg.session.clone(), Instant::now());
            std::mem::forget(std::mem::replace(&mut self.st.session, fresh));
        }
        if let Some(r) = ready.take() {
            let _ = r.send(Err(error));
        }
    }

    fn export_stats(&mut self, now: Instant, force: bool) {
        if force || now.duration_since(self.last_latency_export) >= LATENCY_EXPORT {
            self.last_latency_export = now;
            let mut h = self
                .counters
                .ack_latency
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let h = h.get_or_insert_with(crate::session::new_histogram);
            self.st.session.take_latencies(h);
        }
        let s = self.st.session.stats();
        let c = &self.counters;
        c.batches_acked.store(s.batches_acked, Ordering::Relaxed);
        c.records_acked.store(s.records_acked, Ordering::Relaxed);
        c.batches_in_flight.store(
            self.st.session.outstanding_batches() as u64,
            Ordering::Relaxed,
        );
        c.batches_failed.store(s.batches_failed, Ordering::Relaxed);
        c.batches_retried
            .store(s.batches_retried, Ordering::Relaxed);
        c.keepalives_sent
            .store(s.keepalives_sent, Ordering::Relaxed);
        c.unattributed_errors
            .store(s.unattributed_errors, Ordering::Relaxed);
    }
}
