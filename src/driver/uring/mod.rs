//! The io_uring backend: one ring for every connection of a driver thread.
//!
//! What the kernel offers is found by trying it once per process ([`probe`]); each
//! feature that is missing (or masked for a test) has a plainer replacement, and a feature
//! the kernel refuses at run time is dropped for the rest of the driver's life, logged
//! and counted (`DriverStats::features_lost`):
//!
//! | feature | used for | without it |
//! |---|---|---|
//! | SINGLE_ISSUER + DEFER_TASKRUN (6.1) | completions only when this thread asks | a plain ring |
//! | registered files (5.19) | the socket as fixed file 0 | the raw descriptor |
//! | provided-buffer ring (5.19) + multishot receive (6.0) | one receive armed for the connection's life | a single-shot receive into one buffer, re-armed after each completion |
//! | SEND_ZC (6.0) with usage reports (6.2) | large frames sent without copying, until the kernel says it copies anyway (always on loopback) | copying `sendmsg` |
//! | sparse registered buffers (5.19) | SEND_ZC from fixed buffers, registered as frames first pass | SEND_ZC from plain memory |
//! | cancel by file (5.19) | closing with one cancel | a cancel per operation |
//!
//! Timed waits need 5.11 (a timeout argument to `io_uring_enter`); without it, or
//! without the basic opcodes, the driver uses the `poll(2)` backend.
//!
//! * Each connection has a slot: its registered file index and the bits of `user_data`
//!   that route its completions. Multishot receives of every connection share one
//!   provided-buffer ring; a consumer's connection receives single-shot, large fetch
//!   replies straight into their destination.
//! * Sends are ordered: one send operation in flight at a time per connection (unlinked sends on one TCP
//!   socket can reorder). Queued frames go out together in one `sendmsg` (copying); a
//!   large frame goes out with SEND_ZC. A frame is reported sent only after every
//!   notification of every ZC send that covered part of it ([`send`]).
//! * The waker's eventfd has a `read` kept armed in the ring, so a handle's write wakes a
//!   thread blocked in `io_uring_enter`.
//! * Closing cancels every operation on the socket and reports the connection closed only
//!   when every completion (and ZC notification) has arrived: no buffer is freed while
//!   the kernel may still use it.

mod bufs;
pub(crate) mod probe;
mod send;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::io::{ConnIo, EventSink, Events, Io, Link, Slot};
use super::socket::{new_socket, sockaddr};
use super::waker::Waker;
use super::ZeroCopy;
use crate::buffers::Registration;
use crate::session::TxKey;
use bufs::{BufRing, RawBuf, RegTable};
use probe::Features;
use send::{Pending, SendQueue};

// user_data: operation kind in bits 0..8, the connection's slot in bits 8..24, a
// sequence number (ZC sends) above.
const UD_EVENTFD: u64 = 1;
const UD_CONNECT: u64 = 2;
const UD_CONNECT_TIMEOUT: u64 = 3;
const UD_RECV: u64 = 4;
const UD_SEND: u64 = 5;
const UD_SEND_ZC: u64 = 6;
const UD_CANCEL: u64 = 7;

fn ud(op: u64, slot: Slot, seq: u64) -> u64 {
    op | u64::from(slot) << 8 | seq << 24
}

const BUF_GROUP: u16 = 7;
/// Registered file slots (connections per ring).
const MAX_SLOTS: u32 = 1024;
/// Frames gathered into one `sendmsg`.
const MAX_IOV: usize = 64;
/// Frames at least this large go out with SEND_ZC while it pays.
const ZC_THRESHOLD: usize = 16 * 1024;
/// ZC sends observed before deciding whether the kernel copies them anyway.
const ZC_PROBE_SENDS: u64 = 8;
/// Registered send buffer slots per ring.
const REG_SLOTS: u32 = 64;

/// `IORING_SEND_ZC_REPORT_USAGE` (6.2) and the notification bit it sets; the crate's
/// `sys` module is private, so they are restated from `linux/io_uring.h`.
pub(super) const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
const IORING_NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;
/// `IORING_ENTER_GETEVENTS`, likewise.
pub(super) const IORING_ENTER_GETEVENTS: u32 = 1 << 0;

/// Identifies rings, so a buffer registered with one is never used as fixed by another.
static NEXT_RING_ID: AtomicU32 = AtomicU32::new(1);

/// `sendmsg` arguments; boxed so their address is stable while the kernel reads them.
struct MsgState {
    hdr: libc::msghdr,
    iov: [libc::iovec; MAX_IOV],
}

/// One connection's state in the ring.
struct Conn {
    cfg: ConnIo,
    msg: Box<MsgState>,
    addr: Box<libc::sockaddr_storage>,
    connect_ts: Box<types::Timespec>,
    /// Single-shot receive buffer (consumers, or every connection without multishot).
    scratch: Option<RawBuf>,
    sock: Option<OwnedFd>,
    link: Link,
    recv_armed: bool,
    /// The receive in flight writes straight into the session's target.
    recv_direct: bool,
    /// Operations in the kernel that reference the socket (a ZC send counts until its
    /// notification).
    sock_ops: usize,
    sendq: SendQueue,
    send_inflight: bool,
    zc_seq: u64,
    zc_enabled: bool,
    zc_sends: u64,
    zc_copied: u64,
    closing: bool,
    cancel_sent: bool,
    close_error: Option<io::Error>,
}

impl Conn {
    fn raw_fd(&self) -> RawFd {
        self.sock.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    fn begin_close(&mut self, error: Option<io::Error>) {
        if !self.closing {
            self.closing = true;
            self.close_error = error;
            self.link = Link::Closing;
        }
    }

    /// Aborts the TCP connection (`connect` with AF_UNSPEC: the kernel drops queued
    /// data and resets the peer), so that sends blocked on a stalled peer fail at once
    /// and SEND_ZC notifications, which wait for the data to be released, arrive.
    fn abort_socket(&self) {
        if let Some(sock) = &self.sock {
            // SAFETY: an all-zero sockaddr is valid; only its family (AF_UNSPEC) is read.
            let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
            sa.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
            // SAFETY: `sa` lives across the call and the length is its size; the fd is
            // the open socket owned by `self.sock`.
            unsafe {
                libc::connect(
                    sock.as_raw_fd(),
                    &sa,
                    std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
                );
            }
        }
    }

    /// Keeps the memory the kernel may still use for ever.
    fn leak(&mut self) {
        if let Some(b) = self.scratch.as_mut() {
            b.leak();
        }
        // SAFETY: all-zero is a valid MsgState / sockaddr_storage.
        let msg = Box::new(unsafe { std::mem::zeroed::<MsgState>() });
        std::mem::forget(std::mem::replace(&mut self.msg, msg));
        // SAFETY: as above.
        let addr = Box::new(unsafe { std::mem::zeroed::<libc::sockaddr_storage>() });
        std::mem::forget(std::mem::replace(&mut self.addr, addr));
        std::mem::forget(std::mem::replace(
            &mut self.connect_ts,
            Box::new(types::Timespec::new()),
        ));
    }
}

pub(crate) struct Uring {
    // Dropped first: destroying the ring ends every kernel reference to the memory below.
    ring: IoUring,
    /// Provided buffers shared by the multishot receives of every connection.
    bufring: Option<BufRing>,
    efd_buf: Box<[u8; 8]>,
    conns: Vec<Option<Conn>>,
    waker: Arc<Waker>,
    features: Features,
    ring_id: u32,
    efd_armed: bool,
    regs: RegTable,
    cqes: Vec<(u64, i32, u32)>,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring")
            .field("features", &self.features)
            .field("connections", &self.conns.iter().flatten().count())
            .finish()
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        if !self.quiesce(Duration::from_secs(2)) {
            // The kernel may still write into or read from this memory: leak it rather
            // than free memory it uses. (Destroying the ring is asynchronous.)
            if let Some(b) = self.bufring.as_mut() {
                b.leak();
            }
            for c in self.conns.iter_mut().flatten() {
                c.leak();
            }
            std::mem::forget(std::mem::replace(&mut self.efd_buf, Box::new([0; 8])));
        }
    }
}

/// Builds an operation on a connection's socket: its fixed file slot, or the raw
/// descriptor.
macro_rules! on_sock {
    ($features:expr, $slot:expr, $conn:expr, |$fd:ident| $build:expr) => {
        if $features.has(probe::FIXED_FILES) {
            let $fd = types::Fixed(u32::from($slot));
            $build
        } else {
            let $fd = types::Fd($conn.raw_fd());
            $build
        }
    };
}

/// Pushes an SQE, submitting first if the queue is full.
///
/// # Safety
///
/// Every buffer and pointer the entry references must stay valid until its completion
/// (and for SEND_ZC, its notification) has been reaped.
unsafe fn push(ring: &mut IoUring, entry: squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: forwarded from the caller's contract.
        if unsafe { ring.submission().push(&entry) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

impl Uring {
    /// Creates the ring in the calling (driver) thread with the features this kernel has
    /// (less `masked`). Fails with the kernel's error (ENOSYS, EPERM under seccomp, a
    /// kernel too old) so the caller can fall back to `poll`. Only the creating thread
    /// submits (the ring is set up SINGLE_ISSUER when the kernel has it).
    pub(crate) fn new(waker: Arc<Waker>, masked: u32) -> io::Result<Uring> {
        let mut features = probe::features()?.without(masked);
        if !features.has(probe::EXT_ARG) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring without timed waits (kernel before 5.11)",
            ));
        }
        let ring = probe::build_ring(256, 4096, features.has(probe::DEFER_TASKRUN))?;
        if !ring.params().is_setup_single_issuer() {
            features = features.without(probe::DEFER_TASKRUN);
        }
        if features.has(probe::FIXED_FILES)
            && ring.submitter().register_files_sparse(MAX_SLOTS).is_err()
        {
            features = features.without(probe::FIXED_FILES);
        }
        let regs = if features.has(probe::SEND_ZC)
            && features.has(probe::SPARSE_BUFFERS)
            && ring.submitter().register_buffers_sparse(REG_SLOTS).is_ok()
        {
            RegTable::with_slots(REG_SLOTS as usize)
        } else {
            features = features.without(probe::SPARSE_BUFFERS);
            RegTable::default()
        };
        Ok(Uring {
            ring,
            bufring: None,
            efd_buf: Box::new([0u8; 8]),
            conns: Vec::new(),
            waker,
            features,
            ring_id: NEXT_RING_ID.fetch_add(1, Ordering::Relaxed),
            efd_armed: false,
            regs,
            cqes: Vec::with_capacity(256),
        })
    }

    fn arm_eventfd(&mut self) -> io::Result<()> {
        if self.efd_armed {
            return Ok(());
        }
        let e = opcode::Read::new(types::Fd(self.waker.fd()), self.efd_buf.as_mut_ptr(), 8)
            .build()
            .user_data(UD_EVENTFD);
        // SAFETY: `efd_buf` is a boxed 8-byte buffer owned by `self`, which outlives the
        // ring; the eventfd is owned by the waker, which `self` keeps alive.
        unsafe { push(&mut self.ring, e)? };
        self.efd_armed = true;
        Ok(())
    }

    /// Registers the shared provided-buffer ring on first use (sized by the first
    /// connection that needs it); `false` if multishot receive is not to be used.
    fn ensure_bufring(&mut self, count: u16, size: usize) -> bool {
        if !self.features.has(probe::BUF_RING | probe::RECV_MULTISHOT) {
            return false;
        }
        if self.bufring.is_some() {
            return true;
        }
        let Ok(mut bufs) = BufRing::new(count, size) else {
            return false;
        };
        // SAFETY: the entry array is a live page-aligned allocation of `count` entries
        // owned by `self`, which drops the ring first, so it outlives its registration.
        let registered = unsafe {
            self.ring.submitter().register_buf_ring_with_flags(
                bufs.entries_addr(),
                bufs.count(),
                BUF_GROUP,
                0,
            )
        };
        if registered.is_err() {
            self.features = self
                .features
                .without(probe::RECV_MULTISHOT | probe::BUF_RING);
            return false;
        }
        for bid in 0..bufs.count() {
            bufs.push(bid);
        }
        bufs.publish();
        self.bufring = Some(bufs);
        true
    }

    fn arm_recv(&mut self, slot: Slot, events: &mut dyn Events) -> io::Result<()> {
        let f = self.features;
        let Some(c) = self.conns[slot as usize].as_mut() else {
            return Ok(());
        };
        if c.recv_armed || c.link != Link::Up || c.closing {
            return Ok(());
        }
        c.recv_direct = false;
        let e = match (&c.scratch, events.recv_target()) {
            (_, Some((p, len))) if c.cfg.direct_receive => {
                // Straight into the destination, all of it in one completion.
                c.recv_direct = true;
                let len = len.min(u32::MAX as usize) as u32;
                on_sock!(f, slot, c, |fd| opcode::Recv::new(fd, p, len)
                    .flags(libc::MSG_WAITALL)
                    .build())
            }
            (Some(b), _) => {
                let (p, len) = (b.as_ptr(), b.len() as u32);
                on_sock!(f, slot, c, |fd| opcode::Recv::new(fd, p, len).build())
            }
            (None, _) => {
                on_sock!(f, slot, c, |fd| opcode::RecvMulti::new(fd, BUF_GROUP)
                    .build())
            }
        }
        .user_data(ud(UD_RECV, slot, 0));
        c.recv_armed = true;
        c.sock_ops += 1;
        // SAFETY: the receive writes only into the shared provided buffer ring or the
        // connection's scratch buffer, both owned by `self` and outliving the ring, or
        // into the session's receive target, which it keeps valid and unmoved until
        // `received` or the end of the connection (`Events::recv_target`); none is read
        // until this receive completes. The socket stays open until every operation on
        // it has completed.
        unsafe { push(&mut self.ring, e) }
    }

    /// Starts the next send of the connection in `slot` if none is in flight.
    fn start_send(&mut self, slot: Slot) -> io::Result<()> {
        let f = self.features;
        let Some(c) = self.conns[slot as usize].as_mut() else {
            return Ok(());
        };
        if c.send_inflight || c.sendq.is_empty() || c.link != Link::Up || c.closing {
            return Ok(());
        }
        let head = c.sendq.front().expect("not empty");
        let head_rem = head.remaining();
        let e = if c.zc_enabled && head_rem >= ZC_THRESHOLD {
            c.zc_seq += 1;
            let seq = c.zc_seq;
            let ptr = head.ptr.wrapping_add(head.done);
            let len = head_rem.min(u32::MAX as usize) as u32;
            // Use the registered buffer only if the range really lies inside it.
            let fixed = head
                .fixed
                .filter(|&i| self.regs.covers(i, ptr, len as usize));
            if fixed.is_some() {
                c.cfg.counters.zc_fixed.fetch_add(1, Ordering::Relaxed);
            }
            let usage = if f.has(probe::ZC_REPORT_USAGE) {
                IORING_SEND_ZC_REPORT_USAGE
            } else {
                0
            };
            c.sendq.zc_submitted(seq);
            c.zc_sends += 1;
            c.cfg.counters.zc_sends.fetch_add(1, Ordering::Relaxed);
            on_sock!(f, slot, c, |fd| opcode::SendZc::new(fd, ptr, len)
                .buf_index(fixed)
                .flags(libc::MSG_NOSIGNAL)
                .zc_flags(usage)
                .build())
            .user_data(ud(UD_SEND_ZC, slot, seq))
        } else {
            let mut n = 0;
            for p in c.sendq.iter().take(MAX_IOV) {
                c.msg.iov[n] = libc::iovec {
                    iov_base: p.ptr.wrapping_add(p.done) as *mut libc::c_void,
                    iov_len: p.remaining(),
                };
                n += 1;
            }
            let msg = &mut *c.msg;
            msg.hdr.msg_iov = msg.iov.as_mut_ptr();
            msg.hdr.msg_iovlen = n as _;
            let hdr: *const libc::msghdr = &msg.hdr;
            on_sock!(f, slot, c, |fd| opcode::SendMsg::new(fd, hdr)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build())
            .user_data(ud(UD_SEND, slot, 0))
        };
        c.send_inflight = true;
        c.sock_ops += 1;
        c.cfg.counters.send_ops.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a ZC send's range lies inside a queued frame, which the session keeps
        // valid until it is reported sent; the send queue reports it only after this
        // send's notification, or after close when every completion has arrived; with a
        // buffer index, the range was checked to lie inside that registered buffer, whose
        // pages stay pinned until the ring is destroyed. A `sendmsg`'s msghdr and iovec
        // array are boxed in the connection and not touched until this send completes
        // (one send in flight), and each iovec points into a queued frame that stays
        // valid until reported sent (after this completion).
        unsafe { push(&mut self.ring, e) }
    }

    /// Asks the kernel to cancel every operation on the connection in `slot`.
    fn cancel_conn(&mut self, slot: Slot) -> io::Result<()> {
        let f = self.features;
        let Some(c) = self.conns[slot as usize].as_ref() else {
            return Ok(());
        };
        if f.has(probe::CANCEL_FD) {
            let builder = on_sock!(f, slot, c, |fd| types::CancelBuilder::fd(fd));
            let e = opcode::AsyncCancel2::new(builder.all())
                .build()
                .user_data(UD_CANCEL);
            // SAFETY: a cancel request references no memory.
            return unsafe { push(&mut self.ring, e) };
        }
        // One by one; a ZC send's user data carries a sequence number, but the aborted
        // socket makes it complete anyway.
        for op in [UD_RECV, UD_SEND, UD_CONNECT] {
            let e = opcode::AsyncCancel::new(ud(op, slot, 0))
                .build()
                .user_data(UD_CANCEL);
            // SAFETY: a cancel request references no memory.
            unsafe { push(&mut self.ring, e)? };
        }
        Ok(())
    }

    /// Operations still in the kernel.
    fn outstanding(&self) -> usize {
        self.conns
            .iter()
            .flatten()
            .map(|c| c.sock_ops)
            .sum::<usize>()
            + usize::from(self.efd_armed)
    }

    /// Cancels every operation and waits (at most `timeout`) until the kernel holds no
    /// reference to any buffer. Returns whether it got there.
    pub(crate) fn quiesce(&mut self, timeout: Duration) -> bool {
        if self.outstanding() == 0 {
            return true;
        }
        for c in self.conns.iter().flatten() {
            c.abort_socket();
        }
        if self.features.has(probe::CANCEL_FD) {
            let e = opcode::AsyncCancel2::new(types::CancelBuilder::any().all())
                .build()
                .user_data(UD_CANCEL);
            // SAFETY: a cancel request references no memory.
            if unsafe { push(&mut self.ring, e) }.is_err() {
                return false;
            }
        } else {
            let slots: Vec<Slot> = (0..self.conns.len() as Slot).collect();
            for s in slots {
                if self.cancel_conn(s).is_err() {
                    return false;
                }
            }
            // The eventfd read completes when the eventfd is written.
            self.waker.force_wake();
        }
        let until = std::time::Instant::now() + timeout;
        while self.outstanding() > 0 && std::time::Instant::now() < until {
            if self.enter(Some(Duration::from_millis(10))).is_err() {
                return false;
            }
            let done: Vec<(u64, u32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.flags()))
                .collect();
            for (u, flags) in done {
                if u & 0xFF == UD_EVENTFD {
                    self.efd_armed = false;
                    continue;
                }
                let Some(c) = self
                    .conns
                    .get_mut(((u >> 8) & 0xFFFF) as usize)
                    .and_then(Option::as_mut)
                else {
                    continue;
                };
                match u & 0xFF {
                    UD_RECV if !cqueue::more(flags) => c.sock_ops -= 1,
                    UD_SEND | UD_CONNECT => c.sock_ops -= 1,
                    UD_SEND_ZC if cqueue::notif(flags) || !cqueue::more(flags) => c.sock_ops -= 1,
                    _ => {}
                }
            }
        }
        self.outstanding() == 0
    }

    /// Cancels what is in flight on a closing connection, and once nothing references
    /// its socket, closes it.
    fn progress_close(&mut self, slot: Slot, events: &mut dyn Events) -> io::Result<()> {
        let Some(c) = self.conns[slot as usize].as_mut() else {
            return Ok(());
        };
        if !c.closing {
            return Ok(());
        }
        if c.sock_ops > 0 {
            if !c.cancel_sent {
                c.abort_socket();
                c.cancel_sent = true;
                self.cancel_conn(slot)?;
            }
            return Ok(());
        }
        // Nothing in the kernel references the socket or any queued frame any more.
        if self.features.has(probe::FIXED_FILES) {
            self.ring
                .submitter()
                .register_files_update(u32::from(slot), &[-1])?;
        }
        let c = self.conns[slot as usize].as_mut().expect("checked");
        c.sock = None;
        c.sendq.clear();
        c.send_inflight = false;
        c.recv_armed = false;
        c.closing = false;
        c.cancel_sent = false;
        c.link = Link::Idle;
        events.closed(c.close_error.take());
        Ok(())
    }

    fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let r = match timeout {
            Some(d) if d.is_zero() => {
                let to_submit = self.ring.submission().len() as u32;
                // SAFETY: no argument struct is passed (None), so there is nothing for
                // the kernel to read; GETEVENTS runs deferred task work without waiting.
                unsafe {
                    self.ring.submitter().enter::<libc::sigset_t>(
                        to_submit,
                        0,
                        IORING_ENTER_GETEVENTS,
                        None,
                    )
                }
            }
            Some(d) => {
                let ts = types::Timespec::from(d);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submitter().submit_and_wait(1),
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn handle(&mut self, u: u64, res: i32, flags: u32, sink: &mut dyn EventSink) -> io::Result<()> {
        let op = u & 0xFF;
        if op == UD_EVENTFD {
            self.efd_armed = false;
            return Ok(());
        }
        if op == UD_CANCEL || op == UD_CONNECT_TIMEOUT {
            return Ok(());
        }
        let slot = ((u >> 8) & 0xFFFF) as Slot;
        if self
            .conns
            .get(slot as usize)
            .and_then(Option::as_ref)
            .is_none()
        {
            return Ok(());
        }
        let Some(events) = sink.events(slot) else {
            return Ok(());
        };
        match op {
            UD_CONNECT => self.handle_connect(slot, res, events)?,
            UD_RECV => self.handle_recv(slot, res, flags, events)?,
            UD_SEND => {
                let c = self.conns[slot as usize].as_mut().expect("checked");
                c.send_inflight = false;
                c.sock_ops -= 1;
                if res < 0 {
                    if res != -libc::ECANCELED {
                        c.begin_close(Some(io::Error::from_raw_os_error(-res)));
                    }
                } else {
                    c.sendq.advance(res as usize, events);
                }
            }
            UD_SEND_ZC => self.handle_send_zc(slot, u >> 24, res, flags, events),
            _ => {}
        }
        Ok(())
    }

    fn handle_connect(&mut self, slot: Slot, res: i32, events: &mut dyn Events) -> io::Result<()> {
        let f = self.features;
        let c = self.conns[slot as usize].as_mut().expect("checked");
        c.sock_ops -= 1;
        if res == 0 && !c.closing {
            c.link = Link::Up;
            c.zc_enabled = f.has(probe::SEND_ZC) && c.cfg.zero_copy != ZeroCopy::Never;
            c.zc_sends = 0;
            c.zc_copied = 0;
            events.connected();
            return self.arm_recv(slot, events);
        }
        let e = if c.closing {
            io::Error::new(
                io::ErrorKind::Interrupted,
                "connect abandoned (the handle is closing)",
            )
        } else if res == -libc::ECANCELED {
            io::Error::new(io::ErrorKind::TimedOut, "connect timed out")
        } else {
            io::Error::from_raw_os_error(-res)
        };
        c.sock = None;
        c.link = Link::Idle;
        c.closing = false;
        c.cancel_sent = false;
        if f.has(probe::FIXED_FILES) {
            self.ring
                .submitter()
                .register_files_update(u32::from(slot), &[-1])?;
        }
        events.connect_failed(e);
        Ok(())
    }

    fn handle_recv(
        &mut self,
        slot: Slot,
        res: i32,
        flags: u32,
        events: &mut dyn Events,
    ) -> io::Result<()> {
        let c = self.conns[slot as usize].as_mut().expect("checked");
        c.cfg.counters.recv_events.fetch_add(1, Ordering::Relaxed);
        let multishot = c.scratch.is_none();
        let more = multishot && cqueue::more(flags);
        if res > 0 {
            if c.recv_direct {
                events.received(res as usize);
            } else if let Some(buf) = &c.scratch {
                if !c.closing {
                    // SAFETY: the single-shot receive into `buf` has completed and the
                    // next one is armed only after the slice is gone.
                    events.data(unsafe { buf.slice(0, res as usize) });
                }
            } else if let (Some(bid), Some(bufs)) =
                (cqueue::buffer_select(flags), self.bufring.as_mut())
            {
                if !c.closing {
                    // SAFETY: the kernel completed this receive into `bid`, and the
                    // buffer is pushed back only after the slice is gone.
                    events.data(unsafe { bufs.data(bid, res as usize) });
                }
                bufs.push(bid);
                bufs.publish();
            }
        }
        if more {
            return Ok(());
        }
        c.recv_armed = false;
        c.sock_ops -= 1;
        if res == 0 {
            c.begin_close(None);
        } else if res == -libc::ENOBUFS {
            // Every buffer was in use; they are back now, re-arm.
            c.cfg
                .counters
                .buffer_shortages
                .fetch_add(1, Ordering::Relaxed);
        } else if res == -libc::EINVAL && multishot {
            // The kernel refuses multishot receive after all: receive one at a time.
            events.feature_lost("multishot receive", "EINVAL");
            self.features = self
                .features
                .without(probe::RECV_MULTISHOT | probe::BUF_RING);
            let len = c.cfg.recv_buffers.1.max(64 << 10);
            c.scratch = Some(RawBuf::new(len)?);
        } else if res < 0 && res != -libc::ECANCELED {
            c.begin_close(Some(io::Error::from_raw_os_error(-res)));
        }
        self.arm_recv(slot, events)
    }

    fn handle_send_zc(
        &mut self,
        slot: Slot,
        seq: u64,
        res: i32,
        flags: u32,
        events: &mut dyn Events,
    ) {
        let usage = self.features.has(probe::ZC_REPORT_USAGE);
        let c = self.conns[slot as usize].as_mut().expect("checked");
        if cqueue::notif(flags) {
            c.sock_ops -= 1;
            if usage && (res as u32) & IORING_NOTIF_USAGE_ZC_COPIED != 0 {
                c.zc_copied += 1;
                c.cfg.counters.zc_copied.fetch_add(1, Ordering::Relaxed);
            }
            c.sendq.zc_notified(seq, events);
            // Switch back to copying sends when the kernel copies anyway.
            if c.cfg.zero_copy == ZeroCopy::Auto
                && c.zc_sends >= ZC_PROBE_SENDS
                && c.zc_copied * 4 >= c.zc_sends * 3
            {
                c.zc_enabled = false;
            }
            return;
        }
        c.send_inflight = false;
        if !cqueue::more(flags) {
            // No notification follows (the send failed before sending anything).
            c.sock_ops -= 1;
            c.sendq.zc_abandoned(seq, events);
        }
        if res >= 0 {
            c.sendq.advance(res as usize, events);
        } else if matches!(-res, libc::EOPNOTSUPP | libc::EINVAL) {
            // Refused for this socket or kernel: nothing was sent; copy from now on.
            let why = if -res == libc::EINVAL {
                "EINVAL"
            } else {
                "EOPNOTSUPP"
            };
            events.feature_lost("SEND_ZC", why);
            c.zc_enabled = false;
            self.features = self
                .features
                .without(probe::SEND_ZC | probe::ZC_REPORT_USAGE);
        } else if res != -libc::ECANCELED {
            c.begin_close(Some(io::Error::from_raw_os_error(-res)));
        }
    }

    fn conn(&mut self, slot: Slot) -> &mut Conn {
        self.conns[slot as usize].as_mut().expect("slot in use")
    }
}

impl Io for Uring {
    fn add(&mut self, cfg: ConnIo) -> io::Result<Slot> {
        let slot = match self.conns.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        if slot >= MAX_SLOTS as usize {
            return Err(io::Error::other("too many connections on one ring"));
        }
        let (count, size) = cfg.recv_buffers;
        let scratch = if cfg.direct_receive {
            // Headers and small replies only: large fetch replies go to their target.
            Some(RawBuf::new(size.max(4096))?)
        } else if self.ensure_bufring(count.max(16), size) {
            None
        } else {
            Some(RawBuf::new(
                (count as usize * size).clamp(64 << 10, 1 << 20),
            )?)
        };
        let sendq = SendQueue::with_capacity(cfg.max_frames);
        self.conns[slot] = Some(Conn {
            cfg,
            // SAFETY: all-zero is a valid msghdr / iovec / sockaddr_storage bit pattern.
            msg: Box::new(unsafe { std::mem::zeroed::<MsgState>() }),
            // SAFETY: as above.
            addr: Box::new(unsafe { std::mem::zeroed::<libc::sockaddr_storage>() }),
            connect_ts: Box::new(types::Timespec::new()),
            scratch,
            sock: None,
            link: Link::Idle,
            recv_armed: false,
            recv_direct: false,
            sock_ops: 0,
            sendq,
            send_inflight: false,
            zc_seq: 0,
            zc_enabled: false,
            zc_sends: 0,
            zc_copied: 0,
            closing: false,
            cancel_sent: false,
            close_error: None,
        });
        Ok(slot as Slot)
    }

    fn remove(&mut self, slot: Slot) {
        if let Some(c) = self.conns.get_mut(slot as usize) {
            if c.as_ref().is_some_and(|c| c.sock_ops == 0) {
                *c = None;
            }
        }
    }

    fn connect(&mut self, slot: Slot, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
        let f = self.features;
        let sock = new_socket(&addr, false)?;
        if f.has(probe::FIXED_FILES) {
            self.ring
                .submitter()
                .register_files_update(u32::from(slot), &[sock.as_raw_fd()])?;
        }
        let c = self.conn(slot);
        c.sock = Some(sock);
        let len = sockaddr(&addr, &mut c.addr);
        *c.connect_ts = types::Timespec::from(timeout);
        let sa: *const libc::sockaddr = (&*c.addr as *const libc::sockaddr_storage).cast();
        let connect = on_sock!(f, slot, c, |fd| opcode::Connect::new(fd, sa, len).build())
            .flags(squeue::Flags::IO_LINK)
            .user_data(ud(UD_CONNECT, slot, 0));
        let to = opcode::LinkTimeout::new(&*c.connect_ts)
            .build()
            .user_data(ud(UD_CONNECT_TIMEOUT, slot, 0));
        c.sock_ops += 1;
        c.link = Link::Connecting;
        // SAFETY: the sockaddr and the timespec are boxed in the connection and not
        // modified until the connect completes (one connect at a time); the socket stays
        // open until it completes.
        unsafe {
            push(&mut self.ring, connect)?;
            push(&mut self.ring, to)?;
        }
        Ok(())
    }

    fn link(&self, slot: Slot) -> Link {
        self.conns[slot as usize]
            .as_ref()
            .map_or(Link::Idle, |c| c.link)
    }

    fn can_queue(&self, slot: Slot) -> bool {
        self.conns[slot as usize]
            .as_ref()
            .is_some_and(|c| c.link == Link::Up && !c.closing && c.sendq.len() < 4096)
    }

    fn write_in_flight(&self, slot: Slot) -> bool {
        self.conns[slot as usize]
            .as_ref()
            .is_some_and(|c| c.send_inflight)
    }

    fn queue(
        &mut self,
        slot: Slot,
        key: TxKey,
        ptr: *const u8,
        len: usize,
        reg: Option<Registration>,
    ) {
        let ring_id = self.ring_id;
        let fixed = reg.filter(|r| r.ring == ring_id).map(|r| r.index);
        self.conn(slot).sendq.push(Pending {
            key,
            ptr,
            len,
            done: 0,
            fixed,
        });
    }

    fn wants_registration(&self, slot: Slot, len: usize) -> bool {
        len >= ZC_THRESHOLD
            && self.regs.free_slot().is_some()
            && self.conns[slot as usize]
                .as_ref()
                .is_some_and(|c| c.zc_enabled)
    }

    fn register(&mut self, ptr: *const u8, capacity: usize) -> Option<Registration> {
        let index = self.regs.free_slot()?;
        let iov = libc::iovec {
            iov_base: ptr as *mut libc::c_void,
            iov_len: capacity,
        };
        // SAFETY: `ptr..ptr+capacity` is the whole allocation of a frame buffer. The kernel
        // pins its pages until the ring is destroyed; a buffer freed earlier leaves pinned
        // pages behind but is never sent from as fixed again, because a frame names this
        // index only while it is that same allocation (`FrameBuf::registration`).
        match unsafe {
            self.ring
                .submitter()
                .register_buffers_update(u32::from(index), &[iov], None)
        } {
            Ok(()) => {
                self.regs.set(index, ptr as usize, capacity);
                Some(Registration {
                    ring: self.ring_id,
                    index,
                    addr: ptr as usize,
                    cap: capacity,
                })
            }
            Err(_) => {
                // Stop trying; ZC sends go on from plain memory.
                self.regs = RegTable::default();
                None
            }
        }
    }

    fn close(&mut self, slot: Slot) {
        let c = self.conn(slot);
        if c.link == Link::Up || c.link == Link::Connecting {
            c.begin_close(None);
        }
    }

    fn quiesce(&mut self, timeout: Duration) -> bool {
        Uring::quiesce(self, timeout)
    }

    fn poll(&mut self, timeout: Option<Duration>, sink: &mut dyn EventSink) -> io::Result<()> {
        self.arm_eventfd()?;
        let slots = self.conns.len() as Slot;
        for slot in 0..slots {
            if self.conns[slot as usize].is_none() {
                continue;
            }
            let Some(events) = sink.events(slot) else {
                continue;
            };
            self.progress_close(slot, events)?;
            self.arm_recv(slot, events)?;
            self.start_send(slot)?;
        }
        self.enter(timeout)?;
        loop {
            self.cqes.clear();
            self.cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            if self.cqes.is_empty() {
                break;
            }
            let cqes = std::mem::take(&mut self.cqes);
            for &(u, res, flags) in &cqes {
                self.handle(u, res, flags, sink)?;
            }
            self.cqes = cqes;
            // Keep the pipes full: start the next sends before looking for more CQEs.
            for slot in 0..slots {
                self.start_send(slot)?;
            }
        }
        for slot in 0..slots {
            if self.conns[slot as usize].is_none() {
                continue;
            }
            let Some(events) = sink.events(slot) else {
                continue;
            };
            self.progress_close(slot, events)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("io_uring ({})", self.features)
    }
}
