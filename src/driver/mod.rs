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
mod idle;
pub(crate) mod io;
pub(crate) mod poll;
mod ring;
mod socket;
mod stats;
#[cfg(target_os = "linux")]
pub(crate) mod uring;
pub(crate) mod waker;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::session::{Batch, Call, SessionConfig};
use crate::Error;
pub use idle::IdleStrategy;
pub(crate) use idle::Step;
pub(crate) use ring::Driver;
pub use ring::{Ring, RingConfig};
pub(crate) use stats::Counters;
pub use stats::DriverStats;

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
    /// A new connection on the ring; `ready` gets its first connection attempt's outcome.
    Open {
        cfg: Box<DriverConfig>,
        counters: Arc<Counters>,
        ready: Sender<Result<(), Error>>,
    },
    /// Finish what is queued, then close the connection; fail what is left at
    /// `deadline`. `done` is told when the ring has let go of everything.
    Shutdown {
        deadline: Instant,
        done: Sender<()>,
    },
}

/// One connection's settings.
#[derive(Clone, Debug)]
pub(crate) struct DriverConfig {
    /// For logs.
    pub(crate) name: String,
    /// Seed addresses (`host:port`, `ip:port`, `[v6]:port`), tried in order.
    pub(crate) addrs: Vec<String>,
    pub(crate) session: SessionConfig,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    /// The ring to open the connection on; without one, a ring of its own with
    /// `own_ring`'s settings.
    pub(crate) ring: Option<Ring>,
    pub(crate) own_ring: RingConfig,
    /// Where lingering batches live.
    pub(crate) accumulator: Option<Arc<dyn Accumulator>>,
    pub(crate) zero_copy: ZeroCopy,
    /// Follow `NOT_LEADER: redirect to <addr>` replies.
    pub(crate) follow_redirects: bool,
    /// Send the auth token to a redirect target that is not one of `addrs`.
    pub(crate) auth_on_redirect: bool,
    /// Receive buffers: count (the io_uring backend's provided-buffer ring, shared by the
    /// ring's connections and sized by the first) and size (also the `poll` backend's
    /// read size).
    pub(crate) recv_buffers: (u16, usize),
    /// Large fetch replies are received straight into their destination (a consumer):
    /// single-shot receives, each into the session's target or a small scratch buffer.
    pub(crate) direct_receive: bool,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            name: "lnc-uring".into(),
            addrs: vec![format!("127.0.0.1:{}", crate::proto::DEFAULT_PORT)],
            session: SessionConfig::default(),
            connect_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            ring: None,
            own_ring: RingConfig::default(),
            accumulator: None,
            zero_copy: ZeroCopy::Auto,
            follow_redirects: true,
            auth_on_redirect: false,
            recv_buffers: (16, 64 * 1024),
            direct_receive: false,
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
