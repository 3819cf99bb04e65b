//! An embedded LWP server for tests, examples and benchmarks (cargo feature `testkit`).
//!
//! [`TestServer`] behaves like the released Lance server on the wire, byte for byte
//! (`docs/protocol.md` in this repository, cited as §n below), and
//! adds scripted faults ([`FaultPlan`]). It shares no code with the client's I/O path:
//! plain blocking `std::net` sockets, one thread per connection, and the sans-IO
//! [`crate::proto`] core for framing.
//!
//! What it reproduces:
//!
//! * **Read-chunk processing** (§1.2): one `read()` (up to 256 KiB by default), every
//!   complete frame of it in order; control replies, keepalive echoes and ingest errors
//!   written at once; ingest ACKs deferred to the end of the chunk and written FIFO in
//!   one write; the next `read()` only after that. So `[Ingest b1][Fetch]` sent in one
//!   write is answered `FetchResponse`, `Ack(b1)`.
//! * **Malformed frames** (§2.4): bad magic, version, header CRC, payload CRC or a
//!   payload over the limit close the connection without a reply (the length is checked
//!   as soon as 44 bytes are buffered, before the magic).
//! * **Classification** (§3.2) via [`crate::proto::FrameKind::of`]; client-sent Ack,
//!   Backpressure and unknown frames are ignored.
//! * **Topics and control commands** (§6, §6.13, §6.16, §10): ids from 1, the exact error
//!   texts, the lenient payload rules, JSON with the server's key order.
//! * **Storage** (§4, §7): payloads appended verbatim, offsets are byte positions, Fetch
//!   returns raw ranges that may cut records, `CatchingUp` past the end, the `u64::MAX`
//!   tail sentinel, topic 0 write-only, empty ingests unanswered, retention 0 deleting
//!   every closed segment.
//! * **Token auth** gating ingest only (§8), the fetch rate limiter (§5.2), and the
//!   cluster-flavoured texts of §4.7, §7.3, §9 with [`TestServerBuilder::cluster_mode`].
//!
//! Choices where the server is nondeterministic: ListTopics lists by id (the server's
//! order is unspecified); ingested data is visible to Fetch as soon as its frame is
//! handled (the server makes it visible at the latest when it ACKs); the active segment
//! is closed only by [`TestServer::restart`] or [`TestServer::roll_segments`] (the
//! server also rotates at 1 GiB).
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use lnc_uring::proto::{ack_frame, encode_raw, ingest_header, seal_frame, Checksum, HEADER_LEN};
//! use lnc_uring::testkit::TestServer;
//!
//! let server = TestServer::start()?;
//! let topic = server.create_topic("events");
//! assert_eq!(topic, 1);
//!
//! let mut frame = vec![0u8; HEADER_LEN];
//! encode_raw(&mut frame, b"test")?;
//! seal_frame(Checksum::Ieee, ingest_header(1, 0, 1, topic), &mut frame);
//!
//! let mut sock = TcpStream::connect(server.addr())?;
//! sock.write_all(&frame)?;
//! let mut ack = [0u8; HEADER_LEN];
//! sock.read_exact(&mut ack)?;
//! assert_eq!(ack, ack_frame(Checksum::Ieee, 1));
//! assert_eq!(server.topic_bytes(topic), frame[HEADER_LEN..]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod fault;
mod server;
mod state;

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use fault::{Fault, FaultPlan, Target, QUORUM_FAILURE_TEXT};
pub use state::RetentionRun;

use crate::proto::{Checksum, Retention, TopicInfo, MAX_PAYLOAD_LEN};
use server::{Config, Inner};
use state::StoreMode;

/// When ingest ACKs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AckPolicy {
    /// At the end of each read chunk, as soon as its data is stored.
    #[default]
    Immediate,
    /// After sleeping this long at the end of each chunk that has ACKs to write (a
    /// stand-in for the server's fsync and quorum wait). Nothing is read meanwhile.
    Delayed(Duration),
}

/// A snapshot of a server's counters ([`TestServer::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Stats {
    /// Connections accepted since start (across restarts); the next accept index.
    pub connections_accepted: u64,
    /// Connections currently served.
    pub connections_open: u64,
    /// Valid frames received, of any kind.
    pub frames_received: u64,
    /// Ingest frames received, whatever became of them.
    pub ingest_frames: u64,
    /// Payload bytes stored by ingest.
    pub ingest_bytes: u64,
    /// Control frames received.
    pub control_frames: u64,
    /// Keepalives echoed.
    pub keepalives: u64,
    /// Ingest ACK frames written.
    pub acks_sent: u64,
    /// ErrorResponse frames written.
    pub errors_sent: u64,
    /// Bytes read from clients.
    pub bytes_received: u64,
    /// Bytes written to clients.
    pub bytes_sent: u64,
    /// Connections closed because of a malformed frame (§2.4).
    pub malformed_closes: u64,
    /// Restarts so far.
    pub restarts: u64,
}

/// Configures and starts a [`TestServer`]; see [`TestServer::builder`].
#[derive(Clone, Debug)]
pub struct TestServerBuilder {
    addr: SocketAddr,
    checksum: Checksum,
    ack_policy: AckPolicy,
    tokens: HashSet<String>,
    auth_write_only: bool,
    data_dir: Option<PathBuf>,
    discard: bool,
    max_payload: u32,
    cluster: bool,
    fetch_rate_limit: Option<u64>,
    read_buffer: usize,
}

impl Default for TestServerBuilder {
    fn default() -> Self {
        TestServerBuilder {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            checksum: Checksum::Ieee,
            ack_policy: AckPolicy::Immediate,
            tokens: HashSet::new(),
            auth_write_only: false,
            data_dir: None,
            discard: false,
            max_payload: MAX_PAYLOAD_LEN,
            cluster: false,
            fetch_rate_limit: None,
            read_buffer: 256 * 1024,
        }
    }
}

impl TestServerBuilder {
    /// Listen address; default `127.0.0.1:0` (a free port).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The CRC both ends compute; default IEEE, what the released server computes
    /// (§2.3). A frame checksummed otherwise is a header-CRC mismatch: silent close.
    pub fn checksum(mut self, checksum: Checksum) -> Self {
        self.checksum = checksum;
        self
    }

    /// When ACKs are written; default [`AckPolicy::Immediate`].
    pub fn ack_policy(mut self, policy: AckPolicy) -> Self {
        self.ack_policy = policy;
        self
    }

    /// Enables token auth with these tokens (§8): ingest on a connection that has not
    /// sent a valid Authenticate is answered `Authentication required`. Nothing else is
    /// gated. No tokens (the default) means auth disabled: every ingest is accepted and
    /// any non-empty UTF-8 token authenticates.
    pub fn auth_tokens<I, S>(mut self, tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tokens = tokens.into_iter().map(Into::into).collect();
        self
    }

    /// The server's `auth.write_only` switch, which — as written — disables enforcement
    /// entirely while Authenticate still validates tokens (§8). Default false.
    pub fn auth_write_only(mut self, write_only: bool) -> Self {
        self.auth_write_only = write_only;
        self
    }

    /// Keep topic data in files under `dir` (`segments/<topic name>/…lnc` plus
    /// `metadata.json`, like the server's data directory; topic 0 in `segments/0/`).
    /// Every acknowledged byte is written and fsynced before its ACK, and a restart
    /// (of this server, or a new server on the same directory) reloads everything.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Keep no data at all (for long benchmarks): offsets and sizes advance as usual,
    /// the tail sentinel, CatchingUp and end-of-log fetches work, but a Fetch that
    /// would return data is answered `I/O error: data not retained (testkit
    /// discard_data mode)` and [`TestServer::topic_bytes`] is empty. Not combinable
    /// with [`TestServerBuilder::data_dir`].
    pub fn discard_data(mut self, discard: bool) -> Self {
        self.discard = discard;
        self
    }

    /// Largest accepted `payload_length`, inclusive; default 16 MiB (§2.4). Applies to
    /// every frame type.
    pub fn max_payload(mut self, max: u32) -> Self {
        self.max_payload = max;
        self
    }

    /// Answer as the leader of a one-node cluster instead of a standalone server
    /// where the texts differ: ingest to an unknown topic gets `FORWARD_FAILED: Unknown
    /// topic (metadata convergence)` (§4.7), Fetch of an unknown topic `CatchingUp(0)`
    /// (§7.3), CreateTopic of an existing name returns the existing topic (§6.4, §9),
    /// and GetClusterStatus has no `mode` key (§6.10). Default false.
    pub fn cluster_mode(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Enables the consumer fetch limiter (§5.2): one token bucket of
    /// `bytes_per_sec` shared by all connections, starting full; a Fetch consumes its
    /// `max_bytes`, and is answered `Rate limit exceeded` when the bucket is empty.
    pub fn fetch_rate_limit(mut self, bytes_per_sec: u64) -> Self {
        self.fetch_rate_limit = Some(bytes_per_sec);
        self
    }

    /// Size of one `read()`, i.e. the largest chunk (§1.2); default 256 KiB, the
    /// server's `INITIAL_BUFFER_SIZE`.
    pub fn read_buffer(mut self, bytes: usize) -> Self {
        self.read_buffer = bytes.max(1);
        self
    }

    /// Binds, loads the data directory if any, and starts serving.
    pub fn start(self) -> io::Result<TestServer> {
        let store = match (self.data_dir, self.discard) {
            (Some(_), true) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "testkit: data_dir and discard_data exclude each other",
                ))
            }
            (Some(dir), false) => StoreMode::Dir(dir),
            (None, true) => StoreMode::Discard,
            (None, false) => StoreMode::Memory,
        };
        let inner = Inner::start(Config {
            addr: self.addr,
            checksum: self.checksum,
            ack_policy: self.ack_policy,
            tokens: self.tokens,
            auth_write_only: self.auth_write_only,
            max_payload: self.max_payload,
            cluster: self.cluster,
            fetch_rate_limit: self.fetch_rate_limit,
            read_buffer: self.read_buffer,
            store,
        })?;
        Ok(TestServer { inner })
    }
}

/// An embedded LWP server. Stops (and joins its threads) when dropped.
///
/// ```
/// use std::time::Duration;
/// use lnc_uring::proto::Checksum;
/// use lnc_uring::testkit::{AckPolicy, Fault, TestServer};
///
/// let server = TestServer::builder()
///     .checksum(Checksum::Castagnoli)
///     .ack_policy(AckPolicy::Delayed(Duration::from_millis(5)))
///     .auth_tokens(["secret"])
///     .start()?;
/// assert!(server.addr().ip().is_loopback());
/// server.faults().inject(Fault::forward_failed("Forward operation timed out"));
/// server.restart()?; // connections cut, data kept, same address
/// assert_eq!(server.stats().restarts, 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TestServer {
    inner: Arc<Inner>,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.inner.addr)
            .field("checksum", &self.inner.cfg.checksum)
            .field("cluster", &self.inner.cfg.cluster)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// A server on `127.0.0.1:<free port>`: in memory, IEEE CRC, immediate ACKs, no
    /// auth, standalone.
    pub fn start() -> io::Result<TestServer> {
        TestServer::builder().start()
    }

    /// A builder with those defaults.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// The address clients connect to (kept across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The checksum in use.
    pub fn checksum(&self) -> Checksum {
        self.inner.cfg.checksum
    }

    /// The fault plan, to script faults at any time.
    pub fn faults(&self) -> &FaultPlan {
        &self.inner.faults
    }

    /// Restarts: stops listening, cuts every connection (no replies for what they had
    /// in flight), keeps every stored byte — reloading from the data directory if there
    /// is one — closes the active segments as a server start does (§7.1), forgets
    /// subscriptions and committed offsets (§6.13), and listens again on the same address.
    /// Faults stay armed; authentication is per connection, so it is gone too.
    pub fn restart(&self) -> io::Result<()> {
        self.inner.restart(Duration::ZERO)
    }

    /// [`TestServer::restart`] with the port closed for `downtime` (connects are
    /// refused meanwhile).
    pub fn restart_with_downtime(&self, downtime: Duration) -> io::Result<()> {
        self.inner.restart(downtime)
    }

    /// Creates a topic as CreateTopic would and returns its id.
    ///
    /// # Panics
    ///
    /// If the server would refuse it (invalid or duplicate name); see
    /// [`TestServer::try_create_topic`].
    pub fn create_topic(&self, name: &str) -> u32 {
        match self.try_create_topic(name) {
            Ok(id) => id,
            Err(e) => panic!("testkit: cannot create topic {name:?}: {e}"),
        }
    }

    /// Creates a topic as CreateTopic would: `Err` is the server's error text.
    pub fn try_create_topic(&self, name: &str) -> Result<u32, String> {
        if name.is_empty() {
            return Err("Topic name required".into());
        }
        self.inner
            .state()
            .create_topic(name, None, self.inner.cfg.cluster)
            .map(|(id, _)| id)
    }

    /// Sets a topic's retention as SetRetention would; `Err` is the server's text.
    pub fn set_retention(&self, topic_id: u32, retention: Retention) -> Result<(), String> {
        self.inner
            .state()
            .set_retention(topic_id, retention)
            .map(|_| ())
    }

    /// Every topic, by id, with its retention (if any) in `max_age_secs` / `max_bytes`.
    pub fn topics(&self) -> Vec<TopicInfo> {
        self.inner.state().topics()
    }

    /// All bytes stored for a topic (topic 0 included), as Fetch would return them from
    /// offset 0. Empty for an unknown topic and in `discard_data` mode.
    pub fn topic_bytes(&self, topic_id: u32) -> Vec<u8> {
        self.inner.state().bytes(topic_id)
    }

    /// A topic's size in bytes, i.e. its end offset (topic 0 included; 0 if unknown).
    pub fn topic_size(&self, topic_id: u32) -> u64 {
        self.inner.state().size(topic_id)
    }

    /// Closes every active segment without a restart, making their data subject to
    /// retention (the server does this on start and after 1 GiB, §7.1).
    pub fn roll_segments(&self) -> io::Result<()> {
        self.inner.state().close_active_segments()
    }

    /// Runs one retention cycle now (the server runs one every 60 s, §7.8): for each
    /// topic with a policy, deletes closed segments older than `max_age_secs`, then the
    /// oldest closed segments while the topic is larger than `max_bytes`. Offsets of
    /// the remaining bytes shrink by what was deleted before them (§7.2).
    pub fn run_retention(&self) -> RetentionRun {
        self.inner.state().run_retention()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// Polls [`TestServer::stats`] until `cond` holds or `timeout` passes; returns
    /// whether it held. For tests that must wait for the server to catch up without
    /// sleeping a fixed time.
    pub fn wait_for(&self, timeout: Duration, mut cond: impl FnMut(&Stats) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.stats()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the server and joins its threads (dropping it does the same).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_shareable_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<TestServer>();
        send_sync::<FaultPlan>();
        send_sync::<Fault>();
    }
}
