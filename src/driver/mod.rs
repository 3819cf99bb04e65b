//! The driver thread: the only module that touches io_uring, raw file descriptors or
//! `unsafe`.
//!
//! One driver thread owns one connection. Handles send it [`Command`]s over a
//! `crossbeam-channel` queue and wake it through an eventfd ([`waker`]) only when it is
//! parked. The thread runs the same loop over one of two backends:
//!
//! * [`uring`]: io_uring with SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN, the ring
//!   created inside the thread, the socket as a registered file, multishot receive into a
//!   provided buffer ring, an eventfd read kept armed, adaptive SEND / SEND_ZC.
//! * [`poll`]: plain non-blocking sockets and `poll(2)`, chosen automatically when
//!   `io_uring_setup` fails (ENOSYS or EPERM under a container's default seccomp
//!   profile), or by configuration.
//!
//! The protocol work (what to send, what replies mean) is the sans-IO
//! [`crate::session::Session`]; the backends only move bytes.

pub(crate) mod poll;
#[cfg(target_os = "linux")]
pub(crate) mod uring;
pub(crate) mod waker;

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::session::{Batch, Call, Fatal, FrameBuf, Session, SessionConfig, TxKey};
use crate::Error;
use waker::Waker;

/// Which I/O backend a driver thread uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// io_uring when the kernel allows it, otherwise `poll(2)`.
    #[default]
    Auto,
    /// io_uring only; fail if it is unavailable.
    IoUring,
    /// Non-blocking sockets and `poll(2)`.
    Poll,
}

impl Backend {
    /// Whether this process may use io_uring: the kernel has it and no seccomp policy
    /// blocks `io_uring_setup` (checked once, by creating and dropping a small ring).
    ///
    /// ```
    /// let _ = lnc_uring::Backend::io_uring_available();
    /// ```
    pub fn io_uring_available() -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            #[cfg(target_os = "linux")]
            {
                io_uring::IoUring::new(8).is_ok()
            }
            #[cfg(not(target_os = "linux"))]
            {
                false
            }
        })
    }

    /// `"auto"`, `"io_uring"` or `"poll"`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::IoUring => "io_uring",
            Backend::Poll => "poll",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "io_uring" | "io-uring" | "uring" => Ok(Backend::IoUring),
            "poll" | "epoll" | "portable" => Ok(Backend::Poll),
            o => Err(format!("unknown backend {o:?} (auto, io_uring, poll)")),
        }
    }
}

/// Batches that are filled by handles and sealed by the driver when their linger time
/// runs out (the producer's per-topic accumulators).
pub(crate) trait Accumulator: Send + Sync + fmt::Debug {
    /// Seals every batch whose linger deadline is at or before `now`, handing each to
    /// `sink`; returns the earliest deadline still pending.
    fn expire(&self, now: Instant, sink: &mut dyn FnMut(Batch)) -> Option<Instant>;
}

/// When the io_uring backend sends large frames with SEND_ZC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ZeroCopy {
    /// SEND_ZC for frames of 16 KiB or more until the kernel's notifications show it
    /// copies anyway (as on loopback); then copying sends for the rest of the connection.
    #[default]
    Auto,
    /// SEND_ZC for every frame of 16 KiB or more, whatever the notifications say.
    Always,
    /// Never SEND_ZC.
    Never,
}

/// Messages from handles to the driver thread.
#[derive(Debug)]
pub(crate) enum Command {
    Batch(Batch),
    Call(Call),
    /// A keepalive round trip; answered with `Reply::Pong`.
    Ping(Sender<Result<crate::session::Reply, Error>>),
    /// A batch was opened that must be sealed at this instant at the latest.
    Linger(Instant),
    /// Finish what is queued, then stop; fail what is left at `deadline`.
    Shutdown {
        deadline: Instant,
    },
}

/// Driver settings.
#[derive(Clone, Debug)]
pub(crate) struct DriverConfig {
    /// Seed addresses (`host:port`, `ip:port`, `[v6]:port`), tried in order.
    pub(crate) addrs: Vec<String>,
    pub(crate) session: SessionConfig,
    pub(crate) backend: Backend,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    /// Pin the thread to this CPU id.
    pub(crate) pin_cpu: Option<usize>,
    /// Busy-poll this long after the last activity before parking (latency mode).
    pub(crate) busy_poll: Option<Duration>,
    /// Capacity of the command queue.
    pub(crate) queue_capacity: usize,
    pub(crate) thread_name: String,
    /// Where lingering batches live.
    pub(crate) accumulator: Option<Arc<dyn Accumulator>>,
    pub(crate) zero_copy: ZeroCopy,
    /// Registered send buffers the io_uring backend makes for the handle: count, bytes.
    pub(crate) send_buffers: (usize, usize),
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            addrs: vec![format!("127.0.0.1:{}", crate::proto::DEFAULT_PORT)],
            session: SessionConfig::default(),
            backend: Backend::Auto,
            connect_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            pin_cpu: None,
            busy_poll: None,
            queue_capacity: 4096,
            thread_name: "lnc-uring".into(),
            accumulator: None,
            zero_copy: ZeroCopy::Auto,
            send_buffers: (0, 0),
        }
    }
}

/// Counters of one driver thread. Read with [`DriverStats`] snapshots.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) backend: AtomicU8,
    pub(crate) connects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) send_ops: AtomicU64,
    pub(crate) zc_sends: AtomicU64,
    pub(crate) zc_copied: AtomicU64,
    pub(crate) zc_fixed: AtomicU64,
    pub(crate) recv_events: AtomicU64,
    pub(crate) buffer_shortages: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) batches_acked: AtomicU64,
    pub(crate) batches_failed: AtomicU64,
    pub(crate) batches_retried: AtomicU64,
    pub(crate) keepalives_sent: AtomicU64,
    pub(crate) unattributed_errors: AtomicU64,
    pub(crate) records_acked: AtomicU64,
    pub(crate) batches_in_flight: AtomicU64,
    /// Why the last connection was dropped.
    pub(crate) last_error: Mutex<Option<String>>,
    /// ACK latency, µs.
    pub(crate) ack_latency: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

const BACKEND_URING: u8 = 1;
const BACKEND_POLL: u8 = 2;

/// A snapshot of a driver thread's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverStats {
    /// `"io_uring"` or `"poll"` (empty before the thread started).
    pub backend: &'static str,
    /// Connections established.
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Connections lost or reset.
    pub disconnects: u64,
    /// Bytes written to sockets.
    pub bytes_sent: u64,
    /// Bytes read from sockets.
    pub bytes_received: u64,
    /// Send operations (syscalls or SQEs).
    pub send_ops: u64,
    /// Zero-copy sends submitted.
    pub zc_sends: u64,
    /// Zero-copy sends the kernel reported it copied anyway (loopback does).
    pub zc_copied: u64,
    /// Zero-copy sends from registered (fixed) buffers.
    pub zc_fixed: u64,
    /// Receive completions.
    pub recv_events: u64,
    /// Times the receive buffers ran out (ENOBUFS) and receive was re-armed.
    pub buffer_shortages: u64,
    /// Times the driver blocked waiting for events.
    pub waits: u64,
    /// eventfd writes by handles to wake the driver.
    pub wakeups: u64,
    /// Batches sent or queued in the driver and not yet resolved.
    pub batches_in_flight: u64,
    /// Batches acknowledged.
    pub batches_acked: u64,
    /// Batches failed.
    pub batches_failed: u64,
    /// Batch resends (each may duplicate data on the server).
    pub batches_retried: u64,
    /// Keepalives sent.
    pub keepalives_sent: u64,
    /// Ingest errors that arrived without a batch id.
    pub unattributed_errors: u64,
}

/// The handles' side of a driver thread.
#[derive(Debug)]
pub(crate) struct Driver {
    tx: Sender<Command>,
    waker: Arc<Waker>,
    counters: Arc<Counters>,
    recycled: Receiver<FrameBuf>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Driver {
    /// Starts the thread and waits for its first connection attempt. Fails when no
    /// address accepts a connection or the backend cannot start.
    pub(crate) fn spawn(cfg: DriverConfig) -> Result<Driver, Error> {
        if cfg.addrs.is_empty() {
            return Err(Error::Config("no server address".into()));
        }
        let waker = Arc::new(Waker::new()?);
        let counters = Arc::new(Counters::default());
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue_capacity.max(1));
        let (recycle_tx, recycled) = crossbeam_channel::bounded(1024);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let thread = {
            let waker = waker.clone();
            let counters = counters.clone();
            let cfg = cfg.clone();
            std::thread::Builder::new()
                .name(cfg.thread_name.clone())
                .spawn(move || thread_main(cfg, rx, waker, counters, recycle_tx, ready_tx))?
        };
        let driver = Driver {
            tx,
            waker,
            counters,
            recycled,
            thread: Mutex::new(Some(thread)),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(driver),
            Ok(Err(e)) => {
                driver.join();
                Err(e)
            }
            Err(_) => {
                driver.join();
                Err(Error::Closed)
            }
        }
    }

    /// Queues a command and wakes the thread if it is parked.
    pub(crate) fn submit(&self, cmd: Command) -> Result<(), Error> {
        self.tx.send(cmd).map_err(|_| Error::Closed)?;
        self.waker.wake();
        Ok(())
    }

    /// A frame buffer the driver is done with, if any.
    pub(crate) fn recycled_buffer(&self) -> Option<FrameBuf> {
        self.recycled.try_recv().ok()
    }

    /// Asks the thread to finish by `deadline` and waits for it.
    pub(crate) fn shutdown(&self, deadline: Instant) {
        let _ = self.submit(Command::Shutdown { deadline });
        self.join();
    }

    fn join(&self) {
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Why the last connection was dropped, if one was.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.counters
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A copy of the ACK latency histogram (µs).
    pub(crate) fn ack_latency(&self) -> hdrhistogram::Histogram<u64> {
        self.counters
            .ack_latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(crate::session::new_histogram)
    }

    pub(crate) fn stats(&self) -> DriverStats {
        let c = &*self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DriverStats {
            backend: match c.backend.load(Ordering::Relaxed) {
                BACKEND_URING => "io_uring",
                BACKEND_POLL => "poll",
                _ => "",
            },
            connects: l(&c.connects),
            connect_failures: l(&c.connect_failures),
            disconnects: l(&c.disconnects),
            bytes_sent: l(&c.bytes_sent),
            bytes_received: l(&c.bytes_received),
            send_ops: l(&c.send_ops),
            zc_sends: l(&c.zc_sends),
            zc_copied: l(&c.zc_copied),
            zc_fixed: l(&c.zc_fixed),
            recv_events: l(&c.recv_events),
            buffer_shortages: l(&c.buffer_shortages),
            waits: l(&c.waits),
            wakeups: self.waker.writes(),
            batches_in_flight: l(&c.batches_in_flight),
            batches_acked: l(&c.batches_acked),
            batches_failed: l(&c.batches_failed),
            batches_retried: l(&c.batches_retried),
            keepalives_sent: l(&c.keepalives_sent),
            unattributed_errors: l(&c.unattributed_errors),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Handles shut the driver down explicitly; this only covers early errors.
        if self.thread.lock().map(|t| t.is_some()).unwrap_or(false) {
            self.shutdown(Instant::now());
        }
    }
}

/// What a backend reports to the loop.
pub(crate) trait Events {
    fn connected(&mut self);
    fn connect_failed(&mut self, error: io::Error);
    fn data(&mut self, chunk: &[u8]);
    fn sent(&mut self, key: TxKey, bytes: usize);
    /// The connection is closed and no operation on it is pending any more.
    fn closed(&mut self, error: Option<io::Error>);
}

/// Connection phase as a backend sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    Idle,
    Connecting,
    Up,
    Closing,
}

/// A way to move bytes for one connection.
pub(crate) trait Io {
    /// Starts connecting; the outcome is reported through [`Events`].
    fn connect(&mut self, addr: SocketAddr, timeout: Duration) -> io::Result<()>;
    fn link(&self) -> Link;
    /// Whether another frame may be queued for sending now.
    fn can_queue(&self) -> bool;
    /// Queues a frame. `bytes` must stay valid and unchanged until `Events::sent` reports
    /// its key or `Events::closed` is reported. `fixed` names the registered buffer that
    /// holds `bytes`, if any.
    fn queue(&mut self, key: TxKey, bytes: &[u8], fixed: Option<u16>);
    /// Starts closing; `Events::closed` follows once every operation has completed.
    fn close(&mut self);
    /// Before the thread exits: cancels everything and waits (at most `timeout`) until
    /// no operation references any buffer. `false` means the kernel may still use
    /// some, and the caller must leak rather than free them.
    fn quiesce(&mut self, timeout: Duration) -> bool;
    /// Submits queued work and waits up to `timeout` (zero: do not block) for events.
    fn poll(&mut self, timeout: Option<Duration>, events: &mut dyn Events) -> io::Result<()>;
}

fn thread_main(
    cfg: DriverConfig,
    rx: Receiver<Command>,
    waker: Arc<Waker>,
    counters: Arc<Counters>,
    recycle: Sender<FrameBuf>,
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
            match uring::Uring::new(
                waker.clone(),
                counters.clone(),
                cfg.zero_copy,
                cfg.send_buffers,
            ) {
                Ok((io, bufs)) => {
                    counters.backend.store(BACKEND_URING, Ordering::Relaxed);
                    log::info!("{}: io_uring backend", cfg.thread_name);
                    for b in bufs {
                        let _ = recycle.try_send(b);
                    }
                    return Loop::new(cfg, rx, waker, counters, recycle, io).run(ready);
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
            Loop::new(cfg, rx, waker, counters, recycle, io).run(ready)
        }
        Err(e) => {
            let _ = ready.send(Err(e.into()));
        }
    }
}

/// The driver loop over one backend.
struct Loop<I: Io> {
    cfg: DriverConfig,
    rx: Receiver<Command>,
    waker: Arc<Waker>,
    counters: Arc<Counters>,
    recycle: Sender<FrameBuf>,
    io: I,
    st: State,
}

/// Everything the loop's event handler mutates.
struct State {
    session: Session,
    /// Next address to try (index into the resolved list).
    next_addr: usize,
    resolved: Vec<SocketAddr>,
    redirect: Option<String>,
    attempts: u32,
    next_attempt: Instant,
    last_error: Option<io::Error>,
    /// Set when the first connection attempt has been reported to `spawn`.
    first_outcome: Option<Result<(), Error>>,
    counters: Arc<Counters>,
    spent: Vec<FrameBuf>,
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
        self.next_attempt = crate::session::after(now, exp.mul_f64(0.5 + fastrand::f64() * 0.5));
    }
}

impl Events for State {
    fn connected(&mut self) {
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        log::debug!("connected");
        self.session.on_connected(Instant::now());
        if self.first_outcome.is_none() {
            self.first_outcome = Some(Ok(()));
        }
    }

    fn connect_failed(&mut self, error: io::Error) {
        log::debug!("connect failed: {error}");
        self.counters
            .connect_failures
            .fetch_add(1, Ordering::Relaxed);
        self.last_error = Some(error);
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
        self.session.tx_complete(key);
    }

    fn closed(&mut self, error: Option<io::Error>) {
        if self.session.is_connected() {
            self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
            match &error {
                Some(e) => log::info!("connection lost: {e}"),
                None => log::info!("connection closed"),
            }
        }
        if let Some(e) = &error {
            *self
                .counters
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
        let e = match error {
            Some(e) => Error::from(e),
            None => Error::ConnectionClosed,
        };
        // A connection that carried traffic resets the back-off; one that died before
        // anything valid arrived (refused frames, a server closing at once) does not, so
        // a failing server is not hammered.
        if self.session.heard_from_peer() {
            self.attempts = 0;
        }
        self.session.on_disconnected(&e);
        let now = Instant::now();
        self.back_off(now);
        if self.redirect.is_some() {
            self.next_attempt = now;
        }
    }
}

impl<I: Io> Loop<I> {
    fn new(
        cfg: DriverConfig,
        rx: Receiver<Command>,
        waker: Arc<Waker>,
        counters: Arc<Counters>,
        recycle: Sender<FrameBuf>,
        io: I,
    ) -> Loop<I> {
        let now = Instant::now();
        let st = State {
            session: Session::new(cfg.session.clone(), now),
            next_addr: 0,
            resolved: Vec::new(),
            redirect: None,
            attempts: 0,
            next_attempt: now,
            last_error: None,
            first_outcome: None,
            counters: counters.clone(),
            spent: Vec::new(),
            backoff_base: cfg.backoff_base,
            backoff_max: cfg.backoff_max,
        };
        Loop {
            cfg,
            rx,
            waker,
            counters,
            recycle,
            io,
            st,
        }
    }

    fn run(mut self, ready: Sender<Result<(), Error>>) {
        let mut ready = Some(ready);
        let mut shutdown: Option<Instant> = None;
        let mut linger: Option<Instant> = None;
        let mut last_activity = Instant::now();
        loop {
            let now = Instant::now();
            // 1. Commands.
            let mut worked = false;
            loop {
                match self.rx.try_recv() {
                    Ok(Command::Batch(b)) => self.st.session.submit_batch(b),
                    Ok(Command::Call(c)) => self.st.session.submit_call(c),
                    Ok(Command::Ping(tx)) => self.st.session.submit_ping(tx, now),
                    Ok(Command::Linger(at)) => {
                        linger = Some(linger.map_or(at, |l: Instant| l.min(at)))
                    }
                    Ok(Command::Shutdown { deadline }) => {
                        shutdown = Some(shutdown.map_or(deadline, |d| d.min(deadline)))
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        shutdown.get_or_insert(now);
                        break;
                    }
                }
                worked = true;
            }

            // Seal batches whose linger time is up (and all of them at shutdown).
            if let Some(at) = linger {
                let due = if shutdown.is_some() {
                    Some(now + Duration::from_secs(3600))
                } else {
                    (at <= now).then_some(now)
                };
                if let (Some(t), Some(acc)) = (due, self.cfg.accumulator.clone()) {
                    let session = &mut self.st.session;
                    linger = acc.expire(t, &mut |b| session.submit_batch(b));
                    worked = true;
                }
            }

            // 2. The first connection attempt decides whether `spawn` succeeds.
            if let (Some(r), Some(outcome)) = (ready.as_ref(), self.st.first_outcome.take()) {
                let failed = outcome.is_err();
                let _ = r.send(outcome);
                ready = None;
                if failed {
                    return;
                }
            }

            // 3. Connection management.
            match self.io.link() {
                Link::Idle
                    if (shutdown.is_none() || !self.st.session.is_idle())
                        && now >= self.st.next_attempt =>
                {
                    self.connect(now, ready.is_some());
                    continue;
                }
                Link::Up => {
                    while self.io.can_queue() {
                        match self.st.session.poll_transmit(now) {
                            Some((key, bytes, fixed)) => {
                                self.io.queue(key, bytes, fixed);
                                worked = true;
                            }
                            None => break,
                        }
                    }
                }
                _ => {}
            }
            if let Some(fatal) = self.st.session.take_fatal() {
                let why = match &fatal {
                    Fatal::Redirect(addr) => {
                        self.st.redirect = Some(addr.clone());
                        self.st.next_attempt = now;
                        format!("redirected to {addr}")
                    }
                    Fatal::Protocol(e) => e.to_string(),
                    Fatal::PeerTimeout => "no reply within the peer timeout".to_owned(),
                };
                log::warn!("{}: closing the connection: {why}", self.cfg.thread_name);
                *self
                    .counters
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(why);
                if self.io.link() != Link::Idle {
                    self.io.close();
                }
            }

            // 4. Shutdown.
            if let Some(deadline) = shutdown {
                if self.st.session.is_idle() || now >= deadline {
                    self.finish(now);
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(Error::Closed));
                    }
                    return;
                }
            }

            // 5. Wait.
            // While a connection closes, its timers are moot; look again soon.
            let mut wake_at = if self.io.link() == Link::Closing {
                Some(now + Duration::from_millis(10))
            } else {
                self.st.session.poll_timeout()
            };
            if self.io.link() == Link::Idle {
                wake_at =
                    Some(wake_at.map_or(self.st.next_attempt, |t| t.min(self.st.next_attempt)));
            }
            for t in [shutdown, linger].into_iter().flatten() {
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
                self.waker.set_asleep(true);
                if !self.rx.is_empty() {
                    timeout = Some(Duration::ZERO);
                }
            }
            if timeout != Some(Duration::ZERO) {
                self.counters.waits.fetch_add(1, Ordering::Relaxed);
            }
            let res = self.io.poll(timeout, &mut self.st);
            self.waker.set_asleep(false);
            if let Err(e) = res {
                // The backend itself failed: fail everything and stop.
                let e = Error::from(e);
                self.st.session.abort(&e);
                self.export_stats();
                self.fail_remaining_commands();
                if !self.io.quiesce(Duration::from_secs(2)) {
                    let fresh = Session::new(self.cfg.session.clone(), Instant::now());
                    std::mem::forget(std::mem::replace(&mut self.st.session, fresh));
                }
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                }
                return;
            }
            self.st.session.handle_timeout(Instant::now());
            self.recycle_buffers();
            self.export_stats();
        }
    }

    /// Starts the next connection attempt (redirect first, then the seeds in order).
    fn connect(&mut self, now: Instant, first: bool) {
        let target = if let Some(r) = self.st.redirect.take() {
            resolve(&r)
        } else {
            if self.st.next_addr >= self.st.resolved.len() {
                // Re-resolve every seed on each round, so DNS changes are followed.
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
                    Ok(vec![*a])
                }
                None => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no address for {}", self.cfg.addrs.join(", ")),
                )),
            }
        };
        let result = target.and_then(|addrs| {
            let addr = *addrs
                .first()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
            self.io.connect(addr, self.cfg.connect_timeout)
        });
        if let Err(e) = result {
            self.counters
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
            self.st.last_error = Some(e);
        }
        // Wait for the attempt to finish (connected / failed) inside the backend.
        while self.io.link() == Link::Connecting {
            if self
                .io
                .poll(Some(self.cfg.connect_timeout), &mut self.st)
                .is_err()
            {
                break;
            }
        }
        if self.io.link() == Link::Up {
            return;
        }
        // Failed: back off (full jitter), trying the next address at once when there is one.
        let more = self.st.next_addr < self.st.resolved.len();
        if first && !more {
            let source = self
                .st
                .last_error
                .take()
                .unwrap_or_else(|| io::Error::other("connection failed"));
            self.st.first_outcome = Some(Err(Error::Connect {
                addr: self.cfg.addrs.join(", "),
                source: Arc::new(source),
            }));
            return;
        }
        if more {
            self.st.next_attempt = now;
        } else {
            self.st.back_off(now);
        }
    }

    /// Fails what is left, closes the connection and waits until the backend holds no
    /// pointer into any buffer.
    fn finish(&mut self, _now: Instant) {
        self.st.session.abort(&Error::Closed);
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
        self.export_stats();
        self.fail_remaining_commands();
        if !self.io.quiesce(Duration::from_secs(2)) {
            // Frames may still be read by the kernel: leak them rather than free them.
            let fresh = Session::new(self.cfg.session.clone(), Instant::now());
            std::mem::forget(std::mem::replace(&mut self.st.session, fresh));
        }
    }

    /// Commands that will never be handled: their batches fail (dropping a `Batch`
    /// fails its records), their callers get `Closed`, and lingering batches are sealed
    /// and failed the same way.
    fn fail_remaining_commands(&mut self) {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Call(c) => {
                    let _ = c.reply.send(Err(Error::Closed));
                }
                Command::Ping(tx) => {
                    let _ = tx.send(Err(Error::Closed));
                }
                Command::Batch(_) | Command::Linger(_) | Command::Shutdown { .. } => {}
            }
        }
        if let Some(acc) = self.cfg.accumulator.clone() {
            let far = crate::session::after(Instant::now(), Duration::from_secs(86_400 * 365));
            acc.expire(far, &mut drop);
        }
    }

    fn recycle_buffers(&mut self) {
        self.st.session.take_spent(&mut self.st.spent);
        for buf in self.st.spent.drain(..) {
            if buf.data.capacity() > 0 {
                let _ = self.recycle.try_send(buf);
            }
        }
    }

    fn export_stats(&mut self) {
        {
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

/// Resolves `host:port`, `ip:port` or `[v6]:port`.
pub(crate) fn resolve(addr: &str) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr} resolves to no address"),
        ));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_forms() {
        assert_eq!(resolve("127.0.0.1:1992").unwrap()[0].port(), 1992);
        assert!(resolve("[::1]:1992").unwrap()[0].is_ipv6());
        assert!(!resolve("localhost:1992").unwrap().is_empty());
        assert!(resolve("no-port").is_err());
        assert_eq!("io_uring".parse::<Backend>().unwrap(), Backend::IoUring);
    }
}
