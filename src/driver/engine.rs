//! A ring's loop: commands in, each connection's frames out, bytes and timers in,
//! connections made and remade. Never blocks on anything but the backend's wait (or the
//! idle strategy's).
//!
//! Every turn visits every connection, starting from a different one each time, and
//! hands each at most [`SEND_BUDGET`] frames: a producer that saturates its connection
//! cannot starve a consumer's fetch on the same ring.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use super::idle::Step;
use super::io::{ConnIo, EventSink, Events, Io, Link, Slot};
use super::ring::QueueSender;
#[cfg(target_os = "linux")]
use super::stats::BACKEND_URING;
use super::stats::{Counters, BACKEND_POLL};
use super::waker::Waker;
use super::{poll, resolve, Backend, Command, DriverConfig, RingConfig};
use crate::producer::Lingering;
use crate::proto::ServerError;
use crate::session::{after, Fatal, Session, TxKey};
use crate::Error;

/// How often a connection's ACK-latency histogram is merged into its counters.
const LATENCY_EXPORT: Duration = Duration::from_millis(100);
/// Consecutive redirects without useful traffic before redirects back off too.
const MAX_FREE_REDIRECTS: u32 = 3;
/// Frames handed to the backend per connection per turn.
const SEND_BUDGET: usize = 64;

/// A ring's command queue, as its thread holds it: the handles' shared sender (taken at
/// the end) and the receiver.
pub(super) type Queue = (Arc<QueueSender>, Receiver<(u64, Command)>);

pub(super) fn thread_main(
    cfg: RingConfig,
    queue: Queue,
    waker: Arc<Waker>,
    open: Arc<AtomicU64>,
    ready: Sender<Result<u8, Error>>,
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
            match super::uring::Uring::new(waker.clone(), cfg.masked_uring_features) {
                Ok(io) => {
                    log::info!("{}: {}", cfg.name, io.describe());
                    let _ = ready.send(Ok(BACKEND_URING));
                    return run(Engine::new(cfg, queue, waker, open, io, BACKEND_URING));
                }
                Err(e) if cfg.backend == Backend::IoUring => {
                    let _ = ready.send(Err(Error::Config(format!("io_uring unavailable: {e}"))));
                    return;
                }
                Err(e) => {
                    log::warn!(
                        "{}: io_uring unavailable ({e}); falling back to poll(2)",
                        cfg.name
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
    match poll::PollIo::new(waker.clone()) {
        Ok(io) => {
            log::info!("{}: {}", cfg.name, io.describe());
            let _ = ready.send(Ok(BACKEND_POLL));
            run(Engine::new(cfg, queue, waker, open, io, BACKEND_POLL))
        }
        Err(e) => {
            let _ = ready.send(Err(e.into()));
        }
    }
}

/// Runs the loop; whatever ends it — the last handle gone, a backend failure, a panic —
/// every record and request it held gets an outcome before the thread exits.
fn run<I: Io>(mut engine: Engine<I>) {
    let outcome = catch_unwind(AssertUnwindSafe(|| engine.run()));
    let reason = match outcome {
        Ok(Exit::Done) => None,
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
    engine.exit(reason);
}

/// Why the loop ended.
enum Exit {
    Done,
    Failed(String),
}

/// The ring's loop over one backend.
struct Engine<I: Io> {
    // Declared first, dropped first: the backend ends every kernel reference to the
    // sessions' buffers before the sessions are dropped.
    io: I,
    table: Table,
    rx: Receiver<(u64, Command)>,
    /// The handles' sender, taken when the thread ends.
    tx: Arc<QueueSender>,
    waker: Arc<Waker>,
    open: Arc<AtomicU64>,
    cfg: RingConfig,
    backend: u8,
    /// Connections in visiting order; the start rotates every turn.
    order: Vec<u64>,
    turn: usize,
    /// Idle turns in a row (for the idle strategy).
    idle_turns: u32,
    /// The queue is closed: no handle will ever send again.
    orphaned: bool,
}

/// The connections, by id and by backend slot.
struct Table {
    conns: HashMap<u64, Conn>,
    slots: Vec<Option<u64>>,
}

impl EventSink for Table {
    fn events(&mut self, slot: Slot) -> Option<&mut dyn Events> {
        let id = (*self.slots.get(slot as usize)?)?;
        Some(&mut self.conns.get_mut(&id)?.st)
    }
}

/// One connection: its session and bookkeeping, and what the loop tracks for it.
struct Conn {
    slot: Slot,
    st: State,
    cfg: DriverConfig,
    counters: Arc<Counters>,
    /// Linger timers of open batches: (when, topic, generation), earliest first.
    lingers: BinaryHeap<Reverse<(Instant, u32, u64)>>,
    /// `open` waits for the first connection attempt's outcome.
    ready: Option<Sender<Result<(), Error>>>,
    /// Closing: finish by then, and tell whoever waits.
    shutdown: Option<(Instant, Option<Sender<()>>)>,
    /// Everything has been failed; waiting for the socket to close.
    finishing: bool,
    last_latency_export: Instant,
}

/// Everything the backend's event handler mutates for one connection: the session and
/// the connection's bookkeeping (addresses, back-off, why it closed).
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
    /// `open` waits for the first connection attempt's outcome.
    awaiting_first: bool,
    first_outcome: Option<Result<(), Error>>,
    seeds_label: String,
    backoff_base: Duration,
    backoff_max: Duration,
    name: String,
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

    /// Publishes the session's counters, after each event that may change them. The
    /// outcomes an event produced reach their callers first: a caller may see a record
    /// acknowledged a moment before the counters that count it.
    fn export_counters(&self) {
        let s = self.session.stats();
        let c = &self.counters;
        c.batches_acked.store(s.batches_acked, Ordering::Relaxed);
        c.records_acked.store(s.records_acked, Ordering::Relaxed);
        c.batches_in_flight
            .store(self.session.outstanding_batches() as u64, Ordering::Relaxed);
        c.batches_failed.store(s.batches_failed, Ordering::Relaxed);
        c.batches_retried
            .store(s.batches_retried, Ordering::Relaxed);
        c.keepalives_sent
            .store(s.keepalives_sent, Ordering::Relaxed);
        c.unattributed_errors
            .store(s.unattributed_errors, Ordering::Relaxed);
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
        log::debug!("{}: connected to {:?}", self.name, self.target);
        self.session.on_connected(Instant::now());
        if self.awaiting_first {
            self.awaiting_first = false;
            self.first_outcome = Some(Ok(()));
        }
    }

    fn connect_failed(&mut self, error: io::Error) {
        let now = Instant::now();
        log::debug!(
            "{}: connect to {:?} failed: {error}",
            self.name,
            self.target
        );
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
        self.export_counters();
    }

    fn recv_target(&mut self) -> Option<(*mut u8, usize)> {
        self.session.recv_target()
    }

    fn received(&mut self, n: usize) {
        self.counters
            .bytes_received
            .fetch_add(n as u64, Ordering::Relaxed);
        self.session.received_direct(n, Instant::now());
        self.export_counters();
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
            log::info!("{}: connection to {:?} lost: {e}", self.name, self.target);
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

impl<I: Io> Engine<I> {
    fn new(
        cfg: RingConfig,
        (tx, rx): Queue,
        waker: Arc<Waker>,
        open: Arc<AtomicU64>,
        io: I,
        backend: u8,
    ) -> Engine<I> {
        Engine {
            io,
            table: Table {
                conns: HashMap::new(),
                slots: Vec::new(),
            },
            rx,
            tx,
            waker,
            open,
            cfg,
            backend,
            order: Vec::new(),
            turn: 0,
            idle_turns: 0,
            orphaned: false,
        }
    }

    fn run(&mut self) -> Exit {
        loop {
            let now = Instant::now();
            let mut worked = match self.take_commands(now) {
                Ok(w) => w,
                Err(exit) => return exit,
            };
            let mut more_to_send = false;
            let n = self.order.len();
            self.turn = self.turn.wrapping_add(1);
            for k in 0..n {
                let id = self.order[(self.turn + k) % n];
                let Some(c) = self.table.conns.get_mut(&id) else {
                    continue;
                };
                let (w, more) = c.turn(&mut self.io, now);
                worked |= w;
                more_to_send |= more;
            }
            self.remove_finished();
            if self.orphaned && self.table.conns.is_empty() {
                return Exit::Done;
            }

            // Wait for I/O, a command or the next timer, as the idle strategy says.
            let wake_at = if more_to_send {
                Some(now)
            } else {
                self.table
                    .conns
                    .values()
                    .filter_map(|c| c.wake_at(&self.io))
                    .min()
            };
            if worked {
                self.idle_turns = 0;
            } else {
                self.idle_turns = self.idle_turns.saturating_add(1);
            }
            let until_timer = wake_at.map(|t| t.saturating_duration_since(now));
            let (timeout, block) = match self.cfg.idle.step(self.idle_turns) {
                _ if more_to_send => (Some(Duration::ZERO), false),
                Step::Spin | Step::Yield => (Some(Duration::ZERO), false),
                Step::Park(p) => (Some(until_timer.map_or(p, |t| t.min(p))), false),
                Step::Block => (until_timer, true),
            };
            let mut timeout = timeout;
            if block {
                for c in self.table.conns.values() {
                    c.counters
                        .write_due
                        .store(self.io.write_in_flight(c.slot), Ordering::SeqCst);
                }
                self.waker.set_asleep(wake_at);
                if !self.rx.is_empty() {
                    timeout = Some(Duration::ZERO);
                }
            }
            if timeout != Some(Duration::ZERO) {
                for c in self.table.conns.values() {
                    c.counters.waits.fetch_add(1, Ordering::Relaxed);
                }
            }
            let res = self.io.poll(timeout, &mut self.table);
            if block {
                self.waker.set_awake();
                for c in self.table.conns.values() {
                    c.counters.write_due.store(false, Ordering::SeqCst);
                }
            } else if matches!(self.cfg.idle.step(self.idle_turns), Step::Yield) {
                std::thread::yield_now();
            }
            if let Err(e) = res {
                return Exit::Failed(format!("the I/O backend failed: {e}"));
            }
            let now = Instant::now();
            for c in self.table.conns.values_mut() {
                c.st.session.handle_timeout(now);
                c.export_stats(now, false);
            }
        }
    }

    /// Takes every queued command. `Ok(true)` if there was any.
    fn take_commands(&mut self, now: Instant) -> Result<bool, Exit> {
        let mut worked = false;
        loop {
            let (id, cmd) = match self.rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.orphaned = true;
                    break;
                }
            };
            worked = true;
            if let Command::Open {
                cfg,
                counters,
                ready,
            } = cmd
            {
                self.open_conn(id, *cfg, counters, ready, now);
                continue;
            }
            if let Command::DebugStop { panic } = cmd {
                if panic {
                    panic!("driver panic requested by a test");
                }
                return Err(Exit::Failed(
                    "stopped by a test (a simulated backend failure)".into(),
                ));
            }
            match self.table.conns.get_mut(&id) {
                Some(c) => c.command(cmd, now),
                // The connection is gone: nothing will handle this.
                None => fail_command(cmd, &Error::Closed),
            }
        }
        Ok(worked)
    }

    fn open_conn(
        &mut self,
        id: u64,
        cfg: DriverConfig,
        counters: Arc<Counters>,
        ready: Sender<Result<(), Error>>,
        now: Instant,
    ) {
        counters.backend.store(self.backend, Ordering::Relaxed);
        // Allocated once here, not on the hot path.
        counters
            .ack_latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(crate::session::new_histogram);
        let slot = match self.io.add(ConnIo {
            counters: counters.clone(),
            recv_buffers: cfg.recv_buffers,
            direct_receive: cfg.direct_receive,
            zero_copy: cfg.zero_copy,
            max_frames: cfg.session.max_frames(),
        }) {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(e.into()));
                return;
            }
        };
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
            name: cfg.name.clone(),
        };
        let c = Conn {
            slot,
            st,
            cfg,
            counters,
            // One timer per producer topic at most; grows only with new topics.
            lingers: BinaryHeap::with_capacity(64),
            ready: Some(ready),
            shutdown: None,
            finishing: false,
            last_latency_export: now,
        };
        if self.table.slots.len() <= slot as usize {
            self.table.slots.resize(slot as usize + 1, None);
        }
        self.table.slots[slot as usize] = Some(id);
        self.table.conns.insert(id, c);
        self.order.push(id);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes connections that are closed for good and tells whoever waits.
    fn remove_finished(&mut self) {
        let done: Vec<u64> = self
            .table
            .conns
            .iter()
            .filter(|(_, c)| c.finishing && self.io.link(c.slot) == Link::Idle)
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            let mut c = self.table.conns.remove(&id).expect("listed");
            c.finish(&Error::Closed);
            self.io.remove(c.slot);
            self.table.slots[c.slot as usize] = None;
            self.order.retain(|x| *x != id);
            self.open.fetch_sub(1, Ordering::Relaxed);
            if let Some((_, Some(done))) = c.shutdown.take() {
                let _ = done.send(());
            }
        }
    }

    /// The end of the thread: fails everything every connection holds (with the stop
    /// reason when it stopped by itself), closes the connections and waits until the
    /// backend holds no pointer into any buffer.
    fn exit(&mut self, reason: Option<String>) {
        let error = match &reason {
            Some(r) => {
                log::error!("{}: driver thread stopped: {r}", self.cfg.name);
                for c in self.table.conns.values() {
                    *c.counters
                        .stop_reason
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(r.clone());
                    // Published before anything is failed: handles see it and fail fast.
                    c.counters.stopped.store(true, Ordering::Release);
                }
                Error::Stopped { reason: r.clone() }
            }
            None => Error::Closed,
        };
        for c in self.table.conns.values_mut() {
            c.st.session.abort(&error);
            if self.io.link(c.slot) != Link::Idle {
                self.io.close(c.slot);
            }
        }
        let until = Instant::now() + Duration::from_secs(5);
        while self
            .table
            .conns
            .values()
            .any(|c| self.io.link(c.slot) != Link::Idle)
            && Instant::now() < until
        {
            if self
                .io
                .poll(Some(Duration::from_millis(50)), &mut self.table)
                .is_err()
            {
                break;
            }
        }
        // Commands that will never be handled. The queue is closed first, so every
        // command is either refused to its sender (who fails it) or received here: this
        // drains until the last sender that had the queue open is done.
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            let (id, cmd) = match self.rx.recv_timeout(Duration::from_millis(10)) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) if Instant::now() < until => continue,
                Err(_) => break,
            };
            if let Command::Open { ready, .. } = cmd {
                let _ = ready.send(Err(error.clone()));
                continue;
            }
            if let (Command::Shutdown { done, .. }, Some(c)) = (&cmd, self.table.conns.get_mut(&id))
            {
                c.shutdown = Some((Instant::now(), Some(done.clone())));
                continue;
            }
            fail_command(cmd, &error);
        }
        for c in self.table.conns.values_mut() {
            c.finish(&error);
            if let Some(r) = c.ready.take() {
                let _ = r.send(Err(error.clone()));
            }
        }
        if !self.io.quiesce(Duration::from_secs(2)) {
            // Frames may still be read by the kernel: leak them rather than free them.
            for c in self.table.conns.values_mut() {
                let fresh = Session::new(c.cfg.session.clone(), Instant::now());
                std::mem::forget(std::mem::replace(&mut c.st.session, fresh));
            }
        }
        for (_, mut c) in self.table.conns.drain() {
            if let Some((_, Some(done))) = c.shutdown.take() {
                let _ = done.send(());
            }
        }
        self.open.store(0, Ordering::Relaxed);
    }
}

/// Fails a command nobody will handle.
fn fail_command(cmd: Command, error: &Error) {
    match cmd {
        Command::Batch(mut b) => b.fail(error.clone()),
        Command::Call(c) => {
            let _ = c.reply.send(Err(error.clone()));
        }
        Command::Ping(tx) => {
            let _ = tx.send(Err(error.clone()));
        }
        Command::Open { ready, .. } => {
            let _ = ready.send(Err(error.clone()));
        }
        Command::Shutdown { done, .. } => {
            let _ = done.send(());
        }
        Command::Linger { .. } | Command::DebugStop { .. } => {}
    }
}

impl Conn {
    fn command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Batch(b) => self.st.session.submit_batch(b),
            Command::Call(c) => self.st.session.submit_call(c),
            Command::Ping(tx) => self.st.session.submit_ping(tx, now),
            Command::Linger { at, topic_id, gen } => {
                self.lingers.push(Reverse((at, topic_id, gen)))
            }
            Command::Shutdown { deadline, done } => {
                let d = match &self.shutdown {
                    Some((d, _)) => (*d).min(deadline),
                    None => deadline,
                };
                self.shutdown = Some((d, Some(done)));
            }
            Command::Open { .. } | Command::DebugStop { .. } => {}
        }
    }

    /// One turn of this connection: `(worked, more frames waiting than the budget let
    /// through)`.
    fn turn(&mut self, io: &mut dyn Io, now: Instant) -> (bool, bool) {
        let mut worked = self.seal_lingering(now);
        // The first connection attempt decides whether `open` succeeds.
        if let (Some(r), Some(outcome)) = (self.ready.as_ref(), self.st.first_outcome.take()) {
            let failed = outcome.is_err();
            let _ = r.send(outcome);
            self.ready = None;
            if failed {
                self.finishing = true;
                return (true, false);
            }
        }
        if self.finishing {
            return (worked, false);
        }
        let mut more = false;
        match io.link(self.slot) {
            Link::Idle
                if (self.shutdown.is_none() || !self.st.session.is_idle())
                    && now >= self.st.next_attempt =>
            {
                self.connect(io);
                worked = true;
            }
            Link::Up => {
                let (sent, full) = self.transmit(io, now);
                worked |= sent;
                more = full;
            }
            _ => {}
        }
        self.handle_fatal(io, now);
        if let Some((deadline, _)) = &self.shutdown {
            if self.st.session.is_idle() || now >= *deadline {
                // Fail what is left and close; removed once the socket is closed.
                self.st.session.abort(&Error::Closed);
                if io.link(self.slot) != Link::Idle {
                    io.close(self.slot);
                }
                self.finishing = true;
                worked = true;
            }
        }
        (worked, more)
    }

    /// When this connection next needs the loop.
    fn wake_at(&self, io: &dyn Io) -> Option<Instant> {
        let link = io.link(self.slot);
        if self.finishing {
            // Waiting for the close to complete.
            return (link != Link::Idle).then(|| Instant::now() + Duration::from_millis(10));
        }
        let mut t = if link == Link::Closing {
            // While a connection closes, its timers are moot; look again soon.
            Some(Instant::now() + Duration::from_millis(10))
        } else {
            self.st.session.poll_timeout()
        };
        let mut min = |x: Instant| t = Some(t.map_or(x, |w: Instant| w.min(x)));
        if link == Link::Idle {
            min(self.st.next_attempt);
        }
        if let Some((d, _)) = &self.shutdown {
            min(*d);
        }
        if let Some(Reverse((at, _, _))) = self.lingers.peek() {
            min(*at);
        }
        t
    }

    /// Hands the session's frames to the backend while it takes them (at most the
    /// budget); `(any, more waiting)`.
    fn transmit(&mut self, io: &mut dyn Io, now: Instant) -> (bool, bool) {
        let mut n = 0;
        while io.can_queue(self.slot) {
            if n == SEND_BUDGET {
                return (true, true);
            }
            let Some(tx) = self.st.session.poll_transmit(now) else {
                break;
            };
            let (key, ptr, len, capacity) =
                (tx.key, tx.bytes.as_ptr(), tx.bytes.len(), tx.capacity);
            let mut reg = tx.reg;
            if reg.is_none() && io.wants_registration(self.slot, len) {
                // First time this buffer carries a large frame: register it once; it
                // keeps the registration for every later batch.
                if let Some(r) = io.register(ptr, capacity) {
                    self.st.session.set_registration(key, r);
                    reg = Some(r);
                }
            }
            // The session keeps these bytes valid and unmoved until `Events::sent` or
            // `Events::closed` (the contract of `poll_transmit`).
            io.queue(self.slot, key, ptr, len, reg);
            n += 1;
        }
        (n > 0, false)
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
    fn handle_fatal(&mut self, io: &mut dyn Io, now: Instant) {
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
        log::warn!("{}: closing the connection: {reason}", self.cfg.name);
        self.st.set_last_error(reason.to_string());
        self.st.close_reason = Some(reason);
        if io.link(self.slot) != Link::Idle {
            io.close(self.slot);
        }
    }

    /// Decides whether to follow `NOT_LEADER: redirect to <addr>`; returns the reason the
    /// connection closes.
    fn redirect_to(&mut self, addr: &str, _now: Instant) -> Error {
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
        reason
    }

    /// Starts the next connection attempt (a redirect target first, then the seeds in
    /// order, re-resolving them on every round) without waiting for it.
    fn connect(&mut self, io: &mut dyn Io) {
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
        let started = target.and_then(|addr| io.connect(self.slot, addr, self.cfg.connect_timeout));
        if let Err(e) = started {
            self.st.connect_failed(e);
        }
    }

    /// The connection is closed for good: what it still holds fails with `error`.
    fn finish(&mut self, error: &Error) {
        self.st.session.abort(error);
        if let Some(acc) = self.cfg.accumulator.clone() {
            acc.drain(&mut |mut b| b.fail(error.clone()));
        }
        self.counters.connected.store(false, Ordering::Release);
        self.export_stats(Instant::now(), true);
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
        self.st.export_counters();
    }
}
