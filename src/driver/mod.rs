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

mod engine;
pub(crate) mod io;
pub(crate) mod poll;
mod socket;
mod stats;
#[cfg(target_os = "linux")]
pub(crate) mod uring;
pub(crate) mod waker;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::session::{Batch, Call, SessionConfig};
use crate::Error;
pub(crate) use stats::Counters;
pub use stats::DriverStats;
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
/// runs out (the producer's per-topic lanes).
pub(crate) trait Accumulator: Send + Sync + fmt::Debug {
    /// The linger timer of batch `gen` of `topic_id` fired.
    fn linger_expired(&self, topic_id: u32, gen: u64) -> crate::producer::Lingering;
    /// Seals every open batch, handing each to `sink`.
    fn drain(&self, sink: &mut dyn FnMut(Batch));
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
    /// Batch `gen` of `topic_id` was opened and must be sealed at `at` at the latest.
    Linger {
        at: Instant,
        topic_id: u32,
        gen: u64,
    },
    /// Test hook: stop as if the backend failed (or panic).
    DebugStop {
        panic: bool,
    },
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
    /// Follow `NOT_LEADER: redirect to <addr>` replies.
    pub(crate) follow_redirects: bool,
    /// Send the auth token to a redirect target that is not one of `addrs`.
    pub(crate) auth_on_redirect: bool,
    /// io_uring features to treat as missing (a test hook: every fallback path can run on
    /// a kernel that has everything). Bits of `uring::probe::Feature`.
    pub(crate) masked_features: u32,
    /// Provided receive buffers of the io_uring backend: count (a power of two) and size.
    pub(crate) recv_buffers: (u16, usize),
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
            follow_redirects: true,
            auth_on_redirect: false,
            masked_features: 0,
            recv_buffers: (64, 64 * 1024),
        }
    }
}

/// The handles' side of a driver thread.
#[derive(Debug)]
pub(crate) struct Driver {
    tx: Sender<Command>,
    waker: Arc<Waker>,
    counters: Arc<Counters>,
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
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let thread = {
            let waker = waker.clone();
            let counters = counters.clone();
            let cfg = cfg.clone();
            std::thread::Builder::new()
                .name(cfg.thread_name.clone())
                .spawn(move || engine::thread_main(cfg, rx, waker, counters, ready_tx))?
        };
        let driver = Driver {
            tx,
            waker,
            counters,
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

    /// Queues a command that needs no action before `at`: the thread is woken only if
    /// it sleeps past `at` (a linger timer set while the driver waits for an ACK costs
    /// no wake-up).
    pub(crate) fn submit_by(&self, cmd: Command, at: Instant) {
        if self.tx.send(cmd).is_ok() {
            self.waker.wake_by(at);
        }
    }

    /// Hands a sealed batch to the thread. If the thread is gone, the batch fails with
    /// the reason it stopped.
    pub(crate) fn submit_batch(&self, batch: Batch) {
        if let Err(e) = self.tx.send(Command::Batch(batch)) {
            if let Command::Batch(mut b) = e.into_inner() {
                b.fail(self.stopped().unwrap_or(Error::Closed));
            }
            return;
        }
        self.waker.wake_for_data();
    }

    /// `Some(error)` once the thread has stopped by itself (a backend failure, a panic);
    /// `None` while it runs or after an orderly shutdown.
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
        self.counters.snapshot(self.waker.writes())
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

/// Resolves `host:port`, `ip:port` or `[v6]:port`.
pub(crate) fn resolve(addr: &str) -> std::io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
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
