//! Accept loop, one thread per connection, and the read-chunk processing of
//! docs/protocol.md §1.2 with the dispatch of §3.3, §4 and §6.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::fault::{FaultPlan, FrameGate, Hold, IngestPost, QUORUM_FAILURE_TEXT};
use super::state::{FetchOutcome, IngestOutcome, State, StoreMode};
use super::{AckPolicy, Stats};
use crate::proto::{
    ack_frame, keepalive_frame, Checksum, CommitAck, ControlCode, FetchResponse, Flags, Frame,
    FrameDecoder, FrameError, FrameKind, Header, Request, Response, Retention, SubscribeAck,
    HEADER_LEN,
};

/// Server configuration, fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) addr: SocketAddr,
    pub(crate) checksum: Checksum,
    pub(crate) ack_policy: AckPolicy,
    pub(crate) tokens: HashSet<String>,
    pub(crate) auth_write_only: bool,
    pub(crate) max_payload: u32,
    pub(crate) cluster: bool,
    pub(crate) fetch_rate_limit: Option<u64>,
    pub(crate) read_buffer: usize,
    pub(crate) store: StoreMode,
}

impl Config {
    /// Token auth is on only with at least one token (docs/protocol.md §8: enabled without
    /// tokens runs with auth disabled).
    fn auth_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }
}

/// Counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: Arc<AtomicU64>,
    pub(crate) open: AtomicU64,
    pub(crate) frames: AtomicU64,
    pub(crate) ingest_frames: AtomicU64,
    pub(crate) ingest_bytes: AtomicU64,
    pub(crate) control_frames: AtomicU64,
    pub(crate) keepalives: AtomicU64,
    pub(crate) acks: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) restarts: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            connections_accepted: g(&self.accepted),
            connections_open: g(&self.open),
            frames_received: g(&self.frames),
            ingest_frames: g(&self.ingest_frames),
            ingest_bytes: g(&self.ingest_bytes),
            control_frames: g(&self.control_frames),
            keepalives: g(&self.keepalives),
            acks_sent: g(&self.acks),
            errors_sent: g(&self.errors),
            bytes_received: g(&self.bytes_in),
            bytes_sent: g(&self.bytes_out),
            malformed_closes: g(&self.malformed),
            restarts: g(&self.restarts),
        }
    }
}

/// The consumer fetch limiter of docs/protocol.md §5.2: one token bucket for all
/// connections, starting full with one second of tokens, refilled per elapsed
/// millisecond, capped at one second (`lance/src/consumer.rs` `ConsumerRateLimiter`).
#[derive(Debug)]
struct RateLimiter {
    limit: u64,
    tokens: u64,
    last_refill: Instant,
}

impl RateLimiter {
    fn refill(&mut self) {
        let elapsed_ms = self.last_refill.elapsed().as_millis() as u64;
        if elapsed_ms > 0 {
            let amount = self.limit.saturating_mul(elapsed_ms) / 1000;
            if amount > 0 {
                self.tokens = self.tokens.saturating_add(amount).min(self.limit);
                self.last_refill = Instant::now();
            }
        }
    }

    /// `try_consume(max_bytes) == 0 && !has_capacity()` ⇒ "Rate limit exceeded".
    fn admits(&mut self, requested: u64) -> bool {
        self.refill();
        let allowed = self.tokens.min(requested);
        self.tokens -= allowed;
        if allowed > 0 {
            return true;
        }
        self.refill();
        self.tokens > 0
    }
}

/// Stop signal of one run (the time between a start and a stop or restart).
#[derive(Debug, Default)]
pub(crate) struct RunCtl {
    stopping: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl RunCtl {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }

    /// Sleeps for `d`; false if the run is stopping.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.stopping() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            g = match self.cv.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

#[derive(Debug)]
struct Run {
    ctl: Arc<RunCtl>,
    accept: JoinHandle<()>,
}

#[derive(Debug)]
struct ConnEntry {
    stream: TcpStream,
    thread: JoinHandle<()>,
}

/// Everything a server's threads share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) cfg: Config,
    /// The bound address (port resolved); restarts rebind it.
    pub(crate) addr: SocketAddr,
    pub(crate) state: Mutex<State>,
    pub(crate) faults: FaultPlan,
    pub(crate) counters: Counters,
    limiter: Option<Mutex<RateLimiter>>,
    run: Mutex<Option<Run>>,
    conns: Mutex<HashMap<u64, ConnEntry>>,
    /// Serializes start/stop/restart.
    lifecycle: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Binds, loads storage and starts accepting.
    pub(crate) fn start(cfg: Config) -> io::Result<Arc<Inner>> {
        let state = State::open(cfg.store.clone())?;
        let listener = TcpListener::bind(cfg.addr)?;
        let addr = listener.local_addr()?;
        let counters = Counters::default();
        let inner = Arc::new(Inner {
            faults: FaultPlan::new(Arc::clone(&counters.accepted)),
            limiter: cfg.fetch_rate_limit.map(|limit| {
                Mutex::new(RateLimiter {
                    limit,
                    tokens: limit,
                    last_refill: Instant::now(),
                })
            }),
            cfg,
            addr,
            state: Mutex::new(state),
            counters,
            run: Mutex::new(None),
            conns: Mutex::new(HashMap::new()),
            lifecycle: Mutex::new(()),
        });
        inner.spawn_accept(listener)?;
        Ok(inner)
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn spawn_accept(self: &Arc<Self>, listener: TcpListener) -> io::Result<()> {
        let ctl = Arc::new(RunCtl::default());
        let inner = Arc::clone(self);
        let run_ctl = Arc::clone(&ctl);
        let accept = thread::Builder::new()
            .name(format!("lwp-testkit-accept-{}", self.addr.port()))
            .spawn(move || inner.accept_loop(listener, run_ctl))?;
        *lock(&self.run) = Some(Run { ctl, accept });
        Ok(())
    }

    fn accept_loop(self: Arc<Self>, listener: TcpListener, ctl: Arc<RunCtl>) {
        for stream in listener.incoming() {
            if ctl.stopping() {
                break;
            }
            let Ok(stream) = stream else {
                // EMFILE and friends: back off instead of spinning.
                thread::sleep(Duration::from_millis(5));
                continue;
            };
            let id = self.counters.accepted.fetch_add(1, Ordering::SeqCst);
            if self.faults.on_accept(id) {
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
            // docs/protocol.md §1.1: the server sets TCP_NODELAY on every accepted socket.
            let _ = stream.set_nodelay(true);
            let Ok(handle) = stream.try_clone() else {
                continue;
            };
            let mut conns = lock(&self.conns);
            let inner = Arc::clone(&self);
            let conn_ctl = Arc::clone(&ctl);
            bump(&self.counters.open, 1);
            let spawned = thread::Builder::new()
                .name(format!("lwp-testkit-conn-{id}"))
                .spawn(move || {
                    let inner2 = Arc::clone(&inner);
                    Conn::new(inner, conn_ctl, id, stream).serve();
                    lock(&inner2.conns).remove(&id);
                    inner2.counters.open.fetch_sub(1, Ordering::Relaxed);
                });
            match spawned {
                Ok(thread) => {
                    conns.insert(
                        id,
                        ConnEntry {
                            stream: handle,
                            thread,
                        },
                    );
                }
                Err(_) => {
                    self.counters.open.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Stops accepting, cuts every connection and joins every thread.
    fn halt(&self) {
        let run = lock(&self.run).take();
        if let Some(run) = run {
            run.ctl.stop();
            // Wake the blocking accept().
            let ip = match self.addr.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            let _ = TcpStream::connect_timeout(
                &SocketAddr::new(ip, self.addr.port()),
                Duration::from_secs(2),
            );
            let _ = run.accept.join();
        }
        let conns: Vec<ConnEntry> = lock(&self.conns).drain().map(|(_, c)| c).collect();
        for c in &conns {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        for c in conns {
            let _ = c.thread.join();
        }
    }

    pub(crate) fn stop(&self) {
        let _g = lock(&self.lifecycle);
        self.halt();
    }

    /// Cuts every connection, keeps the data (reloading it from disk with a data
    /// directory), forgets subscriptions and commits, and listens again on the same
    /// address after `downtime`.
    pub(crate) fn restart(self: &Arc<Self>, downtime: Duration) -> io::Result<()> {
        let _g = lock(&self.lifecycle);
        self.halt();
        {
            let mut state = self.state();
            if state.on_disk() {
                state.sync();
                let mode = state.mode().clone();
                // Release the old files before reloading.
                *state = State::open(StoreMode::Memory)?;
                *state = State::open(mode)?;
            } else {
                state.restart_in_memory()?;
            }
        }
        bump(&self.counters.restarts, 1);
        if !downtime.is_zero() {
            thread::sleep(downtime);
        }
        let listener = TcpListener::bind(self.addr)?;
        self.spawn_accept(listener)
    }
}

/// An entry of the chunk's deferred-ACK list (docs/protocol.md §1.2).
#[derive(Debug, Clone, Copy)]
enum Pending {
    Ack(u64),
    /// [`super::Fault::FailQuorum`]: the error goes here, nothing after it.
    QuorumFail,
    /// A local write failed: ACK the prefix, then close (§4.7).
    WriteFailed,
}

/// How a chunk ended.
#[derive(Debug, PartialEq, Eq)]
enum ChunkEnd {
    Continue,
    /// Malformed frame: close, the chunk's ACKs are lost.
    Close,
    /// A scripted close: the chunk's ACKs first.
    CloseAfterAcks,
    /// An oversize header after other frames of the chunk: see [`Conn::serve`].
    OversizeLater,
}

/// One connection's thread state.
struct Conn {
    inner: Arc<Inner>,
    ctl: Arc<RunCtl>,
    id: u64,
    stream: TcpStream,
    checksum: Checksum,
    authenticated: bool,
    auth_enforced: bool,
    pending: Vec<Pending>,
    /// Set by a quorum failure: later ingests of the chunk get nothing.
    silenced: bool,
    /// Files written during the chunk, fsynced before its ACKs.
    touched: Vec<Arc<File>>,
    frames_in_chunk: usize,
    out: Vec<u8>,
    acks: Vec<u8>,
    scratch: Vec<u8>,
}

impl Conn {
    fn new(inner: Arc<Inner>, ctl: Arc<RunCtl>, id: u64, stream: TcpStream) -> Conn {
        let enabled = inner.cfg.auth_enabled();
        Conn {
            checksum: inner.cfg.checksum,
            // docs/protocol.md §8: `authenticated` starts as `!enabled`; only ingest is gated,
            // and only when `write_only` is off.
            authenticated: !enabled,
            auth_enforced: enabled && !inner.cfg.auth_write_only,
            inner,
            ctl,
            id,
            stream,
            pending: Vec::new(),
            silenced: false,
            touched: Vec::new(),
            frames_in_chunk: 0,
            out: Vec::with_capacity(256),
            acks: Vec::with_capacity(1024),
            scratch: Vec::new(),
        }
    }

    /// The read loop of docs/protocol.md §1.2: one `read()`, every complete frame of it, the
    /// chunk's ACKs, and only then the next `read()`.
    fn serve(mut self) {
        let cfg = &self.inner.cfg;
        let mut buf = vec![0u8; cfg.read_buffer];
        let mut dec = FrameDecoder::with_max_payload(self.checksum, cfg.max_payload);
        loop {
            let n = match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if self.ctl.stopping() {
                break;
            }
            let (n, last_chunk) = self.inner.faults.charge_read(self.id, n);
            bump(&self.inner.counters.bytes_in, n as u64);
            if !self.hold() {
                break;
            }
            self.frames_in_chunk = 0;
            self.silenced = false;
            let mut end = ChunkEnd::Continue;
            {
                let mut frames = dec.feed(&buf[..n]);
                while let Some(item) = frames.next_frame() {
                    let frame = match item {
                        Ok(frame) => frame,
                        // §2.4 row 1: the server checks the length of the *first*
                        // buffered frame right after a read. An oversize frame behind
                        // other frames is parsed as "incomplete", so the chunk's
                        // replies and ACKs go out and the close comes after the next
                        // read.
                        Err(FrameError::PayloadTooLarge { .. }) if self.frames_in_chunk > 0 => {
                            end = ChunkEnd::OversizeLater;
                            break;
                        }
                        // §2.4: bad magic / version / header CRC / payload CRC / oversize
                        // ⇒ close, no error frame. Pending ACKs of the chunk are lost
                        // (the server's `process_frames` returns the error with `?`).
                        Err(_) => {
                            bump(&self.inner.counters.malformed, 1);
                            end = ChunkEnd::Close;
                            break;
                        }
                    };
                    // Fault::CloseAfterFrames: the frames handled get their replies.
                    let gate = self.inner.faults.on_frame(self.id);
                    if gate == FrameGate::CloseNow {
                        end = ChunkEnd::CloseAfterAcks;
                        break;
                    }
                    if self.dispatch(&frame).is_err() {
                        return self.close();
                    }
                    if gate == FrameGate::HandleThenClose {
                        end = ChunkEnd::CloseAfterAcks;
                        break;
                    }
                }
            }
            if end == ChunkEnd::Close {
                // Malformed: no ACKs for this chunk.
                return self.close();
            }
            if self.finish_chunk().is_err() || last_chunk || end == ChunkEnd::CloseAfterAcks {
                return self.close();
            }
            if end == ChunkEnd::OversizeLater {
                let _ = self.stream.read(&mut buf[..1]);
                bump(&self.inner.counters.malformed, 1);
                return self.close();
            }
        }
        self.close();
    }

    fn close(mut self) {
        self.pending.clear();
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// [`super::Fault::StallReads`] / [`super::Fault::PauseReads`]; false if stopping.
    fn hold(&self) -> bool {
        match self.inner.faults.chunk_hold(self.id) {
            Hold::None => true,
            Hold::For(d) => self.ctl.sleep(d),
            Hold::UntilResumed(epoch) => {
                while !self.inner.faults.resumed_since(epoch) {
                    if !self.ctl.sleep(Duration::from_millis(2)) {
                        return false;
                    }
                }
                true
            }
        }
    }

    /// Writes `bytes` now (whole, or in pieces under [`super::Fault::SplitWrites`]).
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        bump(&self.inner.counters.bytes_out, bytes.len() as u64);
        let Some((max_piece, pause)) = self.inner.faults.split_writes(self.id) else {
            return self.stream.write_all(bytes);
        };
        let mut at = 0;
        let mut k = 0;
        while at < bytes.len() {
            let size = (1 + k % max_piece).min(bytes.len() - at);
            k += 1;
            self.stream.write_all(&bytes[at..at + size])?;
            self.stream.flush()?;
            at += size;
            if !pause.is_zero() && at < bytes.len() && !self.ctl.sleep(pause) {
                return Err(io::ErrorKind::Interrupted.into());
            }
        }
        Ok(())
    }

    /// [`super::Fault::CorruptNextFrame`] on the frame in `frame`.
    fn maybe_corrupt(&self, frame: &mut [u8]) {
        if self.inner.faults.corrupt_frame(self.id) {
            let at = if frame.len() > HEADER_LEN {
                HEADER_LEN
            } else {
                8
            };
            frame[at] ^= 0xFF;
        }
    }

    /// Encodes and writes one reply at once (an "inline" response, §1.2).
    fn reply(&mut self, resp: &Response<'_>) -> io::Result<()> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        resp.encode(self.checksum, &mut out);
        if matches!(resp, Response::Error(_)) {
            bump(&self.inner.counters.errors, 1);
        }
        self.maybe_corrupt(&mut out);
        let r = self.send(&out);
        self.out = out;
        r
    }

    fn error(&mut self, text: &str) -> io::Result<()> {
        self.reply(&Response::Error(Cow::Borrowed(text)))
    }

    fn raw_frame(&mut self, header: Header) -> io::Result<()> {
        let mut frame = header.to_bytes(self.checksum);
        self.maybe_corrupt(&mut frame);
        self.send(&frame)
    }

    /// docs/protocol.md §3.2 classification (via [`FrameKind::of`]) and §3.3 dispatch.
    fn dispatch(&mut self, frame: &Frame<'_>) -> io::Result<()> {
        bump(&self.inner.counters.frames, 1);
        self.frames_in_chunk += 1;
        match frame.kind() {
            FrameKind::Control(code) => {
                bump(&self.inner.counters.control_frames, 1);
                self.control(code, frame.payload)
            }
            FrameKind::Keepalive => {
                // §5.1: a fresh keepalive, written inline (payload ignored).
                bump(&self.inner.counters.keepalives, 1);
                let mut ka = keepalive_frame(self.checksum);
                self.maybe_corrupt(&mut ka);
                self.send(&ka)
            }
            FrameKind::Ingest => self.ingest(&frame.header, frame.payload),
            // §3.3: client-sent Ack / Backpressure / Unknown are ignored.
            FrameKind::Ack | FrameKind::Backpressure | FrameKind::Unknown => Ok(()),
        }
    }

    /// docs/protocol.md §4.2.
    fn ingest(&mut self, h: &Header, payload: &[u8]) -> io::Result<()> {
        bump(&self.inner.counters.ingest_frames, 1);
        // Step 1: the auth gate (§8).
        if self.auth_enforced && !self.authenticated {
            return self.error("Authentication required");
        }
        // Step 2 is forwarding to the leader; scripted rejections stand in for it.
        let pre = self.inner.faults.ingest_pre(self.id);
        if pre.backpressure {
            self.raw_frame(Header {
                flags: Flags::BACKPRESSURE,
                ..Header::default()
            })?;
        }
        if pre.drop {
            return Ok(());
        }
        if let Some(text) = pre.reject {
            return self.error(&text);
        }
        // Steps 3–5: topic check, empty payload, append.
        let outcome = self.inner.state().ingest(h.topic_id, payload);
        match outcome {
            IngestOutcome::UnknownTopic => {
                let text = if self.inner.cfg.cluster {
                    "FORWARD_FAILED: Unknown topic (metadata convergence)"
                } else {
                    "Unknown topic"
                };
                self.error(text)
            }
            // §4.4: no ACK, no error.
            IngestOutcome::Empty => Ok(()),
            IngestOutcome::Failed => {
                self.pending.push(Pending::WriteFailed);
                Ok(())
            }
            IngestOutcome::Stored(sync) => {
                bump(&self.inner.counters.ingest_bytes, payload.len() as u64);
                if let Some(file) = sync {
                    if !self.touched.iter().any(|f| Arc::ptr_eq(f, &file)) {
                        self.touched.push(file);
                    }
                }
                if self.silenced {
                    return Ok(());
                }
                match self.inner.faults.ingest_post(self.id) {
                    IngestPost::Ack => self.pending.push(Pending::Ack(h.batch_id)),
                    IngestPost::Withhold => {}
                    IngestPost::QuorumFail => {
                        self.pending.push(Pending::QuorumFail);
                        self.silenced = true;
                    }
                }
                Ok(())
            }
        }
    }

    /// The chunk's ACK phase (§1.2, §4.6): durability first, then every ACK of the
    /// chunk in FIFO order in one write.
    fn finish_chunk(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            self.touched.clear();
            return Ok(());
        }
        // §4.6: ACK only after the data is fsynced.
        for file in self.touched.drain(..) {
            file.sync_data()?;
        }
        let mut delay = match self.inner.cfg.ack_policy {
            AckPolicy::Immediate => Duration::ZERO,
            AckPolicy::Delayed(d) => d,
        };
        if let Some(extra) = self.inner.faults.ack_delay(self.id) {
            delay += extra;
        }
        if !delay.is_zero() && !self.ctl.sleep(delay) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let mut acks = std::mem::take(&mut self.acks);
        acks.clear();
        let mut count = 0;
        let mut tail = None;
        for p in self.pending.drain(..) {
            match p {
                Pending::Ack(batch) => {
                    let at = acks.len();
                    acks.extend_from_slice(&ack_frame(self.checksum, batch));
                    if self.inner.faults.corrupt_frame(self.id) {
                        acks[at + 8] ^= 0xFF;
                    }
                    count += 1;
                }
                other => {
                    tail = Some(other);
                    break;
                }
            }
        }
        self.pending.clear();
        let mut result = Ok(());
        if !acks.is_empty() {
            result = self.send(&acks);
            bump(&self.inner.counters.acks, count);
        }
        self.acks = acks;
        result?;
        match tail {
            // §4.7: the error after the streamed prefix; the connection stays open.
            Some(Pending::QuorumFail) => self.error(QUORUM_FAILURE_TEXT),
            // §4.7: a local write failure closes the connection after the prefix.
            Some(Pending::WriteFailed) => Err(io::Error::other("ingest write failed")),
            _ => Ok(()),
        }
    }

    /// docs/protocol.md §6: exactly one reply per control frame, written inline.
    fn control(&mut self, code: ControlCode, p: &[u8]) -> io::Result<()> {
        let cluster = self.inner.cfg.cluster;
        match code {
            ControlCode::CREATE_TOPIC => {
                // §6.4: no length prefix, lossy UTF-8, empty ⇒ "Topic name required".
                let name = String::from_utf8_lossy(p);
                if name.is_empty() {
                    return self.error("Topic name required");
                }
                let r = self.inner.state().create_topic(&name, None, cluster);
                self.topic_reply(r.map(|(_, json)| json))
            }
            ControlCode::CREATE_TOPIC_WITH_RETENTION => {
                // §6.5: u16 name length; lenient about trailing bytes.
                if p.len() < 18 {
                    return self.error("Invalid create topic payload");
                }
                let n = usize::from(u16::from_le_bytes([p[0], p[1]]));
                if p.len() < 2 + n + 16 {
                    return self.error("Invalid payload length");
                }
                let name = String::from_utf8_lossy(&p[2..2 + n]);
                let retention = Retention {
                    max_age_secs: le_u64(&p[2 + n..]),
                    max_bytes: le_u64(&p[10 + n..]),
                };
                let r = self
                    .inner
                    .state()
                    .create_topic(&name, Some(retention), cluster);
                self.topic_reply(r.map(|(_, json)| json))
            }
            ControlCode::LIST_TOPICS => {
                let json = self.inner.state().list_json();
                self.reply(&Response::Topic(json.as_bytes()))
            }
            ControlCode::GET_TOPIC => {
                // §6.7: shorter payload ⇒ topic 0 (never found).
                let r = self.inner.state().get_json(lenient_topic(p));
                self.topic_reply(r.ok_or_else(|| "Topic not found".to_owned()))
            }
            ControlCode::DELETE_TOPIC => {
                let r = self.inner.state().delete_topic(lenient_topic(p));
                self.topic_reply(r)
            }
            ControlCode::SET_RETENTION => {
                if p.len() < 20 {
                    return self.error("Invalid set retention payload");
                }
                let Ok(Request::SetRetention {
                    topic_id,
                    retention,
                }) = Request::parse(code, p)
                else {
                    return self.error("Invalid set retention payload");
                };
                let r = self.inner.state().set_retention(topic_id, retention);
                self.topic_reply(r)
            }
            ControlCode::GET_CLUSTER_STATUS => {
                // §6.10: exact key order (alphabetical, compact).
                let json: &[u8] = if cluster {
                    br#"{"current_term":1,"healthy_nodes":1,"is_leader":true,"leader_id":0,"node_count":1,"node_id":0,"peer_states":{},"quorum_available":true}"#
                } else {
                    br#"{"current_term":0,"healthy_nodes":1,"is_leader":true,"leader_id":0,"mode":"standalone","node_count":1,"node_id":0,"peer_states":{},"quorum_available":true}"#
                };
                self.reply(&Response::ClusterStatus(json))
            }
            ControlCode::AUTHENTICATE => self.authenticate(p),
            ControlCode::AUTHENTICATE_RESPONSE => {
                self.error("Authentication handled at connection level")
            }
            ControlCode::FETCH => self.fetch(p),
            ControlCode::SUBSCRIBE => {
                let Ok(Request::Subscribe(s)) = Request::parse(code, p) else {
                    return self.error("Invalid subscribe payload");
                };
                let r = self
                    .inner
                    .state()
                    .subscribe(s.topic_id, s.start_offset, s.consumer_id);
                match r {
                    Ok(start_offset) => self.reply(&Response::SubscribeAck(SubscribeAck {
                        consumer_id: s.consumer_id,
                        start_offset,
                    })),
                    Err(text) => self.error(&text),
                }
            }
            ControlCode::UNSUBSCRIBE => {
                let Ok(Request::Unsubscribe {
                    topic_id,
                    consumer_id,
                }) = Request::parse(code, p)
                else {
                    return self.error("Invalid unsubscribe payload");
                };
                self.inner.state().unsubscribe(topic_id, consumer_id);
                // §6.14: an Ack frame whose batch id is the consumer id.
                self.reply(&Response::Unsubscribed { consumer_id })
            }
            ControlCode::COMMIT_OFFSET => {
                let Ok(Request::CommitOffset {
                    topic_id,
                    consumer_id,
                    offset,
                }) = Request::parse(code, p)
                else {
                    return self.error("Invalid commit offset payload");
                };
                self.inner.state().commit(topic_id, consumer_id, offset);
                self.reply(&Response::CommitAck(CommitAck {
                    consumer_id,
                    committed_offset: offset,
                }))
            }
            // §6.2: server-only codes and unknown low bytes.
            _ => self.error("Invalid client command"),
        }
    }

    fn topic_reply(&mut self, r: Result<String, String>) -> io::Result<()> {
        match r {
            Ok(json) => self.reply(&Response::Topic(json.as_bytes())),
            Err(text) => self.error(&text),
        }
    }

    /// §6.11: never closes, never resets an earlier success.
    fn authenticate(&mut self, p: &[u8]) -> io::Result<()> {
        let (success, message) = if p.is_empty() {
            (false, "No token provided")
        } else {
            match std::str::from_utf8(p) {
                Err(_) => (false, "Invalid token encoding"),
                // Auth disabled: every token is valid.
                Ok(token)
                    if !self.inner.cfg.auth_enabled() || self.inner.cfg.tokens.contains(token) =>
                {
                    self.authenticated = true;
                    (true, "Authenticated")
                }
                Ok(_) => (false, "Invalid token"),
            }
        };
        self.reply(&Response::Authenticate {
            success,
            message: Cow::Borrowed(message),
        })
    }

    /// §7.3.
    fn fetch(&mut self, p: &[u8]) -> io::Result<()> {
        if p.is_empty() {
            return self.error("Fetch request payload required");
        }
        let Ok(Request::Fetch(req)) = Request::parse(ControlCode::FETCH, p) else {
            return self.error("Protocol error: Fetch request payload too small");
        };
        if let Some(limiter) = &self.inner.limiter {
            if !lock(limiter).admits(u64::from(req.max_bytes)) {
                return self.error("Rate limit exceeded");
            }
        }
        let mut data = std::mem::take(&mut self.scratch);
        data.clear();
        let outcome = self.inner.state().fetch(
            req.topic_id,
            req.start_offset,
            req.max_bytes,
            self.inner.cfg.cluster,
            &mut data,
        );
        let r = match outcome {
            FetchOutcome::Data { next_offset } => self.reply(&Response::Fetch(FetchResponse {
                next_offset,
                // §7.4: a fake 0/1, not a count.
                record_count: u32::from(!data.is_empty()),
                data: &data,
            })),
            FetchOutcome::CatchingUp(size) => self.reply(&Response::CatchingUp {
                server_offset: size,
            }),
            FetchOutcome::Error(text) => self.error(&text),
        };
        // Do not keep a huge fetch buffer around.
        if data.capacity() <= 1 << 20 {
            self.scratch = data;
        }
        r
    }
}

/// GetTopic / DeleteTopic: the first 4 bytes, or topic 0 when shorter (§6.7, §6.8).
fn lenient_topic(p: &[u8]) -> u32 {
    match p.first_chunk::<4>() {
        Some(b) => u32::from_le_bytes(*b),
        None => 0,
    }
}

fn le_u64(b: &[u8]) -> u64 {
    match b.first_chunk::<8>() {
        Some(b) => u64::from_le_bytes(*b),
        None => 0,
    }
}
