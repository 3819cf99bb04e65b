//! A ring: one driver thread and one I/O backend (an io_uring instance, or a `poll(2)`
//! set) serving the connections of any number of handles; and [`Driver`], a handle's
//! side of its connection on a ring.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::stats::{Counters, DriverStats, BACKEND_POLL, BACKEND_URING};
use super::waker::Waker;
use super::{engine, Backend, Command, DriverConfig, IdleStrategy};
use crate::session::Batch;
use crate::Error;

/// Commands in one ring's queue, at most (senders wait when it is full).
const QUEUE: usize = 4096;

/// Settings of a ring's thread.
///
/// ```
/// use lnc_uring::{Backend, IdleStrategy, RingConfig};
///
/// let cfg = RingConfig::default()
///     .with_name("md-ring")
///     .with_backend(Backend::Auto)
///     .with_pin_cpu(1)
///     .with_idle(IdleStrategy::BusySpin);
/// assert_eq!(cfg.pin_cpu, Some(1));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RingConfig {
    /// Thread name. Default `lnc-ring`.
    pub name: String,
    /// I/O backend. Default [`Backend::Auto`].
    pub backend: Backend,
    /// Pin the thread to this CPU id.
    pub pin_cpu: Option<usize>,
    /// What the thread does between events. Default [`IdleStrategy::Block`].
    pub idle: IdleStrategy,
    /// Test hook: io_uring features to treat as missing.
    pub(crate) masked_uring_features: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            name: "lnc-ring".into(),
            backend: Backend::Auto,
            pin_cpu: None,
            idle: IdleStrategy::Block,
            masked_uring_features: 0,
        }
    }
}

impl RingConfig {
    /// Sets [`RingConfig::name`].
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Sets [`RingConfig::backend`].
    pub fn with_backend(mut self, b: Backend) -> Self {
        self.backend = b;
        self
    }
    /// Sets [`RingConfig::pin_cpu`].
    pub fn with_pin_cpu(mut self, cpu: usize) -> Self {
        self.pin_cpu = Some(cpu);
        self
    }
    /// Sets [`RingConfig::idle`].
    pub fn with_idle(mut self, idle: IdleStrategy) -> Self {
        self.idle = idle;
        self
    }
}

/// One driver thread, optionally pinned, with one io_uring instance (or a `poll(2)` set
/// where io_uring is unavailable), serving the connections of any number of producers,
/// consumers and admin clients. Give it to a handle with
/// [`crate::ConnectionConfig::with_ring`]; a handle without one gets a ring of its own.
///
/// Connections on a ring take turns: each loop turn sends at most a bounded number of
/// frames per connection, so a saturating producer cannot starve a consumer's fetch.
/// The thread ends when the last handle using it (and the last `Ring` clone) is gone.
///
/// ```
/// use std::time::Duration;
/// use lnc_uring::testkit::TestServer;
/// use lnc_uring::{ConnectionConfig, ConsumerConfig, LanceClient, Producer, ProducerConfig, Ring, RingConfig, StandaloneConsumer};
///
/// let server = TestServer::start()?;
/// let ring = Ring::new(RingConfig::default().with_name("app-ring"))?;
/// let conn = ConnectionConfig::new(server.addr().to_string()).with_ring(&ring);
/// let admin = LanceClient::with_config(conn.clone())?;
/// let topic = admin.create_topic("orders")?.id;
/// let producer = Producer::with_config(ProducerConfig::default().with_connection(conn.clone()))?;
/// producer.send(topic, b"one thread for all three")?;
/// let mut consumer = StandaloneConsumer::connect(ConsumerConfig::new("c", topic).with_connection(conn))?;
/// assert!(consumer.poll_timeout(Duration::from_secs(5))?.is_some());
/// assert_eq!(ring.connections(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Ring {
    pub(crate) inner: Arc<RingInner>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("name", &self.inner.name)
            .field("backend", &self.backend())
            .field("connections", &self.connections())
            .finish()
    }
}

impl Ring {
    /// Starts the thread and its backend. Fails when the backend cannot start (io_uring
    /// asked for and unavailable) or the thread cannot be pinned.
    pub fn new(cfg: RingConfig) -> Result<Ring, Error> {
        Ok(Ring {
            inner: RingInner::start(cfg)?,
        })
    }

    /// `"io_uring"` or `"poll"`.
    pub fn backend(&self) -> &'static str {
        match self.inner.backend.load(Ordering::Relaxed) {
            BACKEND_URING => "io_uring",
            BACKEND_POLL => "poll",
            _ => "",
        }
    }

    /// Connections open on the ring now.
    pub fn connections(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed) as usize
    }
}

/// The sending side of a ring's command queue, while the queue is open.
pub(crate) type QueueSender = Mutex<Option<Sender<(u64, Command)>>>;

/// What handles share with a ring's thread.
pub(crate) struct RingInner {
    /// Taken (dropped) first when the ring goes, so the thread sees the queue close; and
    /// by the thread when it ends, so nothing is queued that nobody will handle.
    tx: Arc<QueueSender>,
    waker: Arc<Waker>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub(crate) backend: AtomicU8,
    pub(crate) idle: IdleStrategy,
    next_conn: AtomicU64,
    /// Connections open (kept by the thread).
    pub(crate) open: Arc<AtomicU64>,
    name: String,
}

impl fmt::Debug for RingInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingInner")
            .field("name", &self.name)
            .finish()
    }
}

impl RingInner {
    fn start(cfg: RingConfig) -> Result<Arc<RingInner>, Error> {
        let waker = Arc::new(Waker::new()?);
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let tx = Arc::new(Mutex::new(Some(tx)));
        let queue = (tx.clone(), rx);
        let inner = Arc::new(RingInner {
            tx,
            waker: waker.clone(),
            thread: Mutex::new(None),
            backend: AtomicU8::new(0),
            idle: cfg.idle,
            next_conn: AtomicU64::new(1),
            open: Arc::new(AtomicU64::new(0)),
            name: cfg.name.clone(),
        });
        let open = inner.open.clone();
        let thread = std::thread::Builder::new()
            .name(cfg.name.clone())
            .spawn(move || engine::thread_main(cfg, queue, waker, open, ready_tx))?;
        *inner.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        match ready_rx.recv() {
            Ok(Ok(backend)) => {
                inner.backend.store(backend, Ordering::Relaxed);
                Ok(inner)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed),
        }
    }

    /// Queues `cmd`; gives it back if the ring is gone (so a batch can be failed).
    #[allow(clippy::result_large_err)] // the command comes back to be failed, not boxed
    fn send(&self, conn: u64, cmd: Command) -> Result<(), Command> {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match tx {
            Some(tx) => tx.send((conn, cmd)).map_err(|e| e.into_inner().1),
            None => Err(cmd),
        }
    }

    /// Opens a connection for a handle and waits for its first connection attempt.
    pub(crate) fn open(self: &Arc<Self>, cfg: DriverConfig) -> Result<Driver, Error> {
        if cfg.addrs.is_empty() {
            return Err(Error::Config("no server address".into()));
        }
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let counters = Arc::new(Counters::default());
        counters
            .backend
            .store(self.backend.load(Ordering::Relaxed), Ordering::Relaxed);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let cmd = Command::Open {
            cfg: Box::new(cfg),
            counters: counters.clone(),
            ready: ready_tx,
        };
        if self.send(conn, cmd).is_err() {
            return Err(Error::Closed);
        }
        self.waker.wake();
        let driver = Driver {
            ring: self.clone(),
            conn,
            counters,
            shut: std::sync::atomic::AtomicBool::new(false),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(driver),
            Ok(Err(e)) => {
                // Already closed on the ring's side.
                driver.shut.store(true, Ordering::Relaxed);
                Err(e)
            }
            Err(_) => {
                driver.shut.store(true, Ordering::Relaxed);
                Err(Error::Closed)
            }
        }
    }
}

impl Drop for RingInner {
    fn drop(&mut self) {
        // The last handle is gone: close the queue, wake the thread, wait for it.
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        self.waker.force_wake();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// A handle's connection on a ring.
#[derive(Debug)]
pub(crate) struct Driver {
    ring: Arc<RingInner>,
    conn: u64,
    counters: Arc<Counters>,
    shut: std::sync::atomic::AtomicBool,
}

impl Driver {
    /// Opens a connection on `ring`, or on a ring of its own started with `own` settings.
    pub(crate) fn spawn(cfg: DriverConfig) -> Result<Driver, Error> {
        let ring = match &cfg.ring {
            Some(r) => r.inner.clone(),
            None => RingInner::start(cfg.own_ring.clone())?,
        };
        ring.open(cfg)
    }

    /// How callers waiting on this connection wait.
    pub(crate) fn idle(&self) -> IdleStrategy {
        self.ring.idle
    }

    /// Queues a command and wakes the thread if it is parked.
    pub(crate) fn submit(&self, cmd: Command) -> Result<(), Error> {
        self.ring.send(self.conn, cmd).map_err(|_| Error::Closed)?;
        self.ring.waker.wake();
        Ok(())
    }

    /// Queues a command that needs no action before `at`: the thread is woken only if
    /// it sleeps past `at` (a linger timer set while the driver waits for an ACK costs
    /// no wake-up).
    pub(crate) fn submit_by(&self, cmd: Command, at: Instant) {
        if self.ring.send(self.conn, cmd).is_ok() {
            self.ring.waker.wake_by(at);
        }
    }

    /// Hands a sealed batch to the thread. If the thread is gone, the batch fails with
    /// the reason it stopped. No wake-up while a write of this connection is in flight:
    /// its completion wakes the thread, and the batch could not go out before it.
    pub(crate) fn submit_batch(&self, batch: Batch) {
        if let Err(cmd) = self.ring.send(self.conn, Command::Batch(batch)) {
            if let Command::Batch(mut b) = cmd {
                b.fail(self.stopped().unwrap_or(Error::Closed));
            }
            return;
        }
        if !self.counters.write_due.load(Ordering::SeqCst) {
            self.ring.waker.wake();
        }
    }

    /// `Some(error)` once the thread has stopped by itself (a backend failure, a panic);
    /// `None` while it runs or after an orderly shutdown.
    #[inline]
    pub(crate) fn stopped(&self) -> Option<Error> {
        if !self.counters.stopped.load(Ordering::Acquire) {
            return None;
        }
        self.counters
            .stop_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .map(|reason| Error::Stopped { reason })
    }

    /// Whether a connection is up now.
    pub(crate) fn is_connected(&self) -> bool {
        self.counters.connected.load(Ordering::Acquire)
    }

    /// Test hook: the thread stops as if its backend failed, or panics.
    pub(crate) fn debug_stop(&self, panic: bool) {
        let _ = self.submit(Command::DebugStop { panic });
    }

    /// Closes the connection: finishes what is queued until `deadline`, fails the rest,
    /// and waits until the ring has let go of everything.
    pub(crate) fn shutdown(&self, deadline: Instant) {
        if self.shut.swap(true, Ordering::AcqRel) {
            return;
        }
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        if self
            .submit(Command::Shutdown {
                deadline,
                done: done_tx,
            })
            .is_err()
        {
            return;
        }
        // The ring answers by the deadline (plus the time to close the socket); if its
        // thread is gone the channel closes at once.
        let _ = done_rx.recv_deadline(crate::session::after(deadline, Duration::from_secs(10)));
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
        self.counters.snapshot(self.ring.waker.writes())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Handles shut their connection down explicitly; this covers early errors.
        self.shutdown(Instant::now());
    }
}
