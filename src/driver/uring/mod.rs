//! The io_uring backend.
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
//! * Sends are ordered: one send operation in flight at a time (unlinked sends on one TCP
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

use super::io::{Events, Io, Link};
use super::socket::{new_socket, sockaddr};
use super::waker::Waker;
use super::{Counters, DriverConfig, ZeroCopy};
use crate::buffers::Registration;
use crate::session::TxKey;
use bufs::{BufRing, RawBuf, RegTable};
use probe::Features;
use send::{Pending, SendQueue};

// user_data: operation kind in the low byte, a sequence number above it.
const UD_EVENTFD: u64 = 1;
const UD_CONNECT: u64 = 2;
const UD_CONNECT_TIMEOUT: u64 = 3;
const UD_RECV: u64 = 4;
const UD_SEND: u64 = 5;
const UD_SEND_ZC: u64 = 6;
const UD_CANCEL: u64 = 7;

const BUF_GROUP: u16 = 7;
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

/// How the connection receives.
enum Recv {
    /// One multishot receive into a provided-buffer ring.
    Multishot(BufRing),
    /// A single-shot receive into one buffer, re-armed after each completion.
    Single(RawBuf),
}

/// `sendmsg` arguments; boxed so their address is stable while the kernel reads them.
struct MsgState {
    hdr: libc::msghdr,
    iov: [libc::iovec; MAX_IOV],
}

pub(crate) struct Uring {
    // Dropped first: destroying the ring ends every kernel reference to the memory below.
    ring: IoUring,
    recv: Recv,
    msg: Box<MsgState>,
    efd_buf: Box<[u8; 8]>,
    addr: Box<libc::sockaddr_storage>,
    connect_ts: Box<types::Timespec>,
    waker: Arc<Waker>,
    counters: Arc<Counters>,
    features: Features,
    ring_id: u32,
    /// Receive buffer size in single-shot mode (after multishot is lost).
    single_len: usize,

    efd_armed: bool,
    sock: Option<OwnedFd>,
    link: Link,
    recv_armed: bool,
    /// Operations in the kernel that reference the socket (a ZC send counts until its
    /// notification).
    sock_ops: usize,
    sendq: SendQueue,
    send_inflight: bool,
    zc_seq: u64,
    zc_enabled: bool,
    zc_policy: ZeroCopy,
    zc_sends: u64,
    zc_copied: u64,
    regs: RegTable,
    closing: bool,
    cancel_sent: bool,
    close_error: Option<io::Error>,
    cqes: Vec<(u64, i32, u32)>,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring")
            .field("features", &self.features)
            .field("link", &self.link)
            .field("sock_ops", &self.sock_ops)
            .field("pending", &self.sendq.len())
            .field("zc_enabled", &self.zc_enabled)
            .finish()
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        if !self.quiesce(Duration::from_secs(2)) {
            // The kernel may still write into or read from this memory: leak it rather
            // than free memory it uses. (Destroying the ring is asynchronous.)
            match &mut self.recv {
                Recv::Multishot(b) => b.leak(),
                Recv::Single(b) => b.leak(),
            }
            std::mem::forget(std::mem::replace(&mut self.efd_buf, Box::new([0; 8])));
            // SAFETY: all-zero is a valid MsgState.
            let fresh = Box::new(unsafe { std::mem::zeroed::<MsgState>() });
            std::mem::forget(std::mem::replace(&mut self.msg, fresh));
        }
    }
}

/// Builds an operation on the connection's socket: fixed file 0, or the raw descriptor.
macro_rules! on_sock {
    ($self:expr, |$fd:ident| $build:expr) => {
        if $self.features.has(probe::FIXED_FILES) {
            let $fd = types::Fixed(0);
            $build
        } else {
            let $fd = types::Fd($self.raw_fd());
            $build
        }
    };
}

impl Uring {
    /// Creates the ring in the calling (driver) thread with the features this kernel has
    /// (less the configuration's mask). Fails with the kernel's error (ENOSYS, EPERM under
    /// seccomp, a kernel too old) so the caller can fall back to `poll`.
    pub(crate) fn new(
        waker: Arc<Waker>,
        counters: Arc<Counters>,
        cfg: &DriverConfig,
    ) -> io::Result<Uring> {
        let mut features = probe::features()?.without(cfg.masked_features);
        if !features.has(probe::EXT_ARG) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring without timed waits (kernel before 5.11)",
            ));
        }
        let ring = probe::build_ring(256, 1024, features.has(probe::DEFER_TASKRUN))?;
        if !ring.params().is_setup_single_issuer() {
            features = features.without(probe::DEFER_TASKRUN);
        }
        if features.has(probe::FIXED_FILES) && ring.submitter().register_files_sparse(1).is_err() {
            features = features.without(probe::FIXED_FILES);
        }
        let (count, size) = cfg.recv_buffers;
        let single_len = (count as usize * size).clamp(64 << 10, 1 << 20);
        let recv = match setup_multishot(&ring, features, count, size) {
            Some(b) => Recv::Multishot(b),
            None => {
                features = features.without(probe::RECV_MULTISHOT | probe::BUF_RING);
                Recv::Single(RawBuf::new(single_len)?)
            }
        };
        let zc_policy = cfg.zero_copy;
        let zc_possible = features.has(probe::SEND_ZC)
            && zc_policy != ZeroCopy::Never
            && (features.has(probe::ZC_REPORT_USAGE) || zc_policy == ZeroCopy::Always);
        if !zc_possible {
            features = features.without(probe::SEND_ZC | probe::ZC_REPORT_USAGE);
        }
        let regs = if zc_possible
            && features.has(probe::SPARSE_BUFFERS)
            && ring.submitter().register_buffers_sparse(REG_SLOTS).is_ok()
        {
            RegTable::with_slots(REG_SLOTS as usize)
        } else {
            features = features.without(probe::SPARSE_BUFFERS);
            RegTable::default()
        };
        // SAFETY: all-zero is a valid msghdr / iovec / sockaddr_storage bit pattern.
        let msg = Box::new(unsafe { std::mem::zeroed::<MsgState>() });
        // SAFETY: as above.
        let addr = Box::new(unsafe { std::mem::zeroed::<libc::sockaddr_storage>() });
        Ok(Uring {
            ring,
            recv,
            msg,
            efd_buf: Box::new([0u8; 8]),
            addr,
            connect_ts: Box::new(types::Timespec::new()),
            waker,
            counters,
            features,
            ring_id: NEXT_RING_ID.fetch_add(1, Ordering::Relaxed),
            single_len,
            efd_armed: false,
            sock: None,
            link: Link::Idle,
            recv_armed: false,
            sock_ops: 0,
            sendq: SendQueue::default(),
            send_inflight: false,
            zc_seq: 0,
            zc_enabled: zc_possible,
            zc_policy,
            zc_sends: 0,
            zc_copied: 0,
            regs,
            closing: false,
            cancel_sent: false,
            close_error: None,
            cqes: Vec::with_capacity(256),
        })
    }

    /// The features in use, for the log.
    pub(crate) fn features(&self) -> Features {
        self.features
    }

    fn raw_fd(&self) -> RawFd {
        self.sock.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Pushes an SQE, submitting first if the queue is full.
    ///
    /// # Safety
    ///
    /// Every buffer and pointer the entry references must stay valid until its
    /// completion (and for SEND_ZC, its notification) has been reaped.
    unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: forwarded from the caller's contract.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
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
        unsafe { self.push(e)? };
        self.efd_armed = true;
        Ok(())
    }

    fn arm_recv(&mut self) -> io::Result<()> {
        if self.recv_armed || self.link != Link::Up || self.closing {
            return Ok(());
        }
        let e = match &self.recv {
            Recv::Multishot(_) => {
                on_sock!(self, |fd| opcode::RecvMulti::new(fd, BUF_GROUP).build())
            }
            Recv::Single(b) => {
                let (p, len) = (b.as_ptr(), b.len() as u32);
                on_sock!(self, |fd| opcode::Recv::new(fd, p, len).build())
            }
        }
        .user_data(UD_RECV);
        // SAFETY: the receive writes only into the provided buffer ring or the single
        // receive buffer, both owned by `self` and outliving the ring; the buffer is not
        // read until this receive completes. The socket stays open until every operation
        // on it has completed.
        unsafe { self.push(e)? };
        self.recv_armed = true;
        self.sock_ops += 1;
        Ok(())
    }

    /// Starts the next send if none is in flight.
    fn start_send(&mut self) -> io::Result<()> {
        if self.send_inflight || self.sendq.is_empty() || self.link != Link::Up || self.closing {
            return Ok(());
        }
        let head = self.sendq.front().expect("not empty");
        let head_rem = head.remaining();
        if self.zc_enabled && head_rem >= ZC_THRESHOLD {
            self.zc_seq += 1;
            let seq = self.zc_seq;
            let ptr = head.ptr.wrapping_add(head.done);
            let len = head_rem.min(u32::MAX as usize) as u32;
            // Use the registered buffer only if the range really lies inside it.
            let fixed = head
                .fixed
                .filter(|&i| self.regs.covers(i, ptr, len as usize));
            if fixed.is_some() {
                self.counters.zc_fixed.fetch_add(1, Ordering::Relaxed);
            }
            let usage = if self.features.has(probe::ZC_REPORT_USAGE) {
                IORING_SEND_ZC_REPORT_USAGE
            } else {
                0
            };
            let e = on_sock!(self, |fd| opcode::SendZc::new(fd, ptr, len)
                .buf_index(fixed)
                .flags(libc::MSG_NOSIGNAL)
                .zc_flags(usage)
                .build())
            .user_data(UD_SEND_ZC | seq << 8);
            // SAFETY: `ptr..ptr+len` lies inside a queued frame, which the session keeps
            // valid until it is reported sent; the send queue reports it only after this
            // send's notification, or after close when every completion has arrived. With
            // a buffer index, the range was checked to lie inside that registered buffer,
            // whose pages stay pinned until the ring is destroyed.
            unsafe { self.push(e)? };
            self.sendq.zc_submitted(seq);
            self.zc_sends += 1;
            self.counters.zc_sends.fetch_add(1, Ordering::Relaxed);
        } else {
            let mut n = 0;
            for p in self.sendq.iter().take(MAX_IOV) {
                self.msg.iov[n] = libc::iovec {
                    iov_base: p.ptr.wrapping_add(p.done) as *mut libc::c_void,
                    iov_len: p.remaining(),
                };
                n += 1;
            }
            let msg = &mut *self.msg;
            msg.hdr.msg_iov = msg.iov.as_mut_ptr();
            msg.hdr.msg_iovlen = n as _;
            let hdr: *const libc::msghdr = &msg.hdr;
            let e = on_sock!(self, |fd| opcode::SendMsg::new(fd, hdr)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build())
            .user_data(UD_SEND);
            // SAFETY: the msghdr and iovec array are boxed in `self` and not touched
            // until this send completes (one send in flight); each iovec points into a
            // queued frame that stays valid until reported sent (after this completion).
            unsafe { self.push(e)? };
        }
        self.send_inflight = true;
        self.sock_ops += 1;
        self.counters.send_ops.fetch_add(1, Ordering::Relaxed);
        Ok(())
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
    fn abort_socket(&mut self) {
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

    /// Asks the kernel to cancel every operation on the socket (`all`: and the eventfd
    /// read too).
    fn cancel_ops(&mut self, all: bool) -> io::Result<()> {
        if self.features.has(probe::CANCEL_FD) {
            let builder = if all {
                types::CancelBuilder::any()
            } else {
                on_sock!(self, |fd| types::CancelBuilder::fd(fd))
            };
            let e = opcode::AsyncCancel2::new(builder.all())
                .build()
                .user_data(UD_CANCEL);
            // SAFETY: a cancel request references no memory.
            return unsafe { self.push(e) };
        }
        // One by one; a ZC send's user data carries a sequence number, but the aborted
        // socket makes it complete anyway.
        for ud in [UD_RECV, UD_SEND, UD_CONNECT] {
            let e = opcode::AsyncCancel::new(ud).build().user_data(UD_CANCEL);
            // SAFETY: a cancel request references no memory.
            unsafe { self.push(e)? };
        }
        if all {
            // The eventfd read completes when the eventfd is written.
            self.waker.force_wake();
        }
        Ok(())
    }

    /// Operations still in the kernel.
    fn outstanding(&self) -> usize {
        self.sock_ops + usize::from(self.efd_armed)
    }

    /// Cancels every operation and waits (at most `timeout`) until the kernel holds no
    /// reference to any buffer. Returns whether it got there.
    pub(crate) fn quiesce(&mut self, timeout: Duration) -> bool {
        if self.outstanding() == 0 {
            return true;
        }
        self.abort_socket();
        if self.cancel_ops(true).is_err() {
            return false;
        }
        let until = std::time::Instant::now() + timeout;
        while self.outstanding() > 0 && std::time::Instant::now() < until {
            if self.enter(Some(Duration::from_millis(10))).is_err() {
                return false;
            }
            for c in self.ring.completion() {
                let (ud, flags) = (c.user_data(), c.flags());
                match ud & 0xFF {
                    UD_EVENTFD => self.efd_armed = false,
                    UD_RECV if !cqueue::more(flags) => self.sock_ops -= 1,
                    UD_SEND | UD_CONNECT => self.sock_ops -= 1,
                    UD_SEND_ZC if cqueue::notif(flags) || !cqueue::more(flags) => {
                        self.sock_ops -= 1
                    }
                    _ => {}
                }
            }
        }
        self.outstanding() == 0
    }

    /// Cancels what is in flight, and once nothing references the socket, closes it.
    fn progress_close(&mut self, events: &mut dyn Events) -> io::Result<()> {
        if !self.closing {
            return Ok(());
        }
        if self.sock_ops > 0 {
            if !self.cancel_sent {
                self.abort_socket();
                self.cancel_ops(false)?;
                self.cancel_sent = true;
            }
            return Ok(());
        }
        // Nothing in the kernel references the socket or any queued frame any more.
        if self.features.has(probe::FIXED_FILES) {
            self.ring.submitter().register_files_update(0, &[-1])?;
        }
        self.sock = None;
        self.sendq.clear();
        self.send_inflight = false;
        self.recv_armed = false;
        self.closing = false;
        self.cancel_sent = false;
        self.link = Link::Idle;
        events.closed(self.close_error.take());
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

    fn handle(&mut self, ud: u64, res: i32, flags: u32, events: &mut dyn Events) -> io::Result<()> {
        match ud & 0xFF {
            UD_EVENTFD => self.efd_armed = false,
            UD_CONNECT => {
                self.sock_ops -= 1;
                if res == 0 && !self.closing {
                    self.link = Link::Up;
                    self.zc_enabled = self.features.has(probe::SEND_ZC);
                    self.zc_sends = 0;
                    self.zc_copied = 0;
                    events.connected();
                    self.arm_recv()?;
                } else {
                    let e = if self.closing {
                        io::Error::new(
                            io::ErrorKind::Interrupted,
                            "connect abandoned (the handle is closing)",
                        )
                    } else if res == -libc::ECANCELED {
                        io::Error::new(io::ErrorKind::TimedOut, "connect timed out")
                    } else {
                        io::Error::from_raw_os_error(-res)
                    };
                    if self.features.has(probe::FIXED_FILES) {
                        self.ring.submitter().register_files_update(0, &[-1])?;
                    }
                    self.sock = None;
                    self.link = Link::Idle;
                    self.closing = false;
                    self.cancel_sent = false;
                    events.connect_failed(e);
                }
            }
            UD_CONNECT_TIMEOUT | UD_CANCEL => {}
            UD_RECV => self.handle_recv(res, flags, events)?,
            UD_SEND => {
                self.send_inflight = false;
                self.sock_ops -= 1;
                if res < 0 {
                    if res != -libc::ECANCELED {
                        self.begin_close(Some(io::Error::from_raw_os_error(-res)));
                    }
                } else {
                    self.sendq.advance(res as usize, events);
                }
            }
            UD_SEND_ZC => self.handle_send_zc(ud >> 8, res, flags, events),
            _ => {}
        }
        Ok(())
    }

    fn handle_recv(&mut self, res: i32, flags: u32, events: &mut dyn Events) -> io::Result<()> {
        self.counters.recv_events.fetch_add(1, Ordering::Relaxed);
        let more = matches!(self.recv, Recv::Multishot(_)) && cqueue::more(flags);
        if res > 0 {
            match &mut self.recv {
                Recv::Multishot(bufs) => {
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        if !self.closing {
                            // SAFETY: the kernel completed this receive into `bid`, and
                            // the buffer is pushed back only after the slice is gone.
                            events.data(unsafe { bufs.data(bid, res as usize) });
                        }
                        bufs.push(bid);
                        bufs.publish();
                    }
                }
                Recv::Single(buf) => {
                    if !self.closing {
                        // SAFETY: the single-shot receive into `buf` has completed and
                        // the next one is armed only after the slice is gone.
                        events.data(unsafe { buf.slice(0, res as usize) });
                    }
                }
            }
        }
        if more {
            return Ok(());
        }
        self.recv_armed = false;
        self.sock_ops -= 1;
        if res == 0 {
            self.begin_close(None);
        } else if res == -libc::ENOBUFS {
            // Every buffer was in use; they are back now, re-arm.
            self.counters
                .buffer_shortages
                .fetch_add(1, Ordering::Relaxed);
        } else if res == -libc::EINVAL && matches!(self.recv, Recv::Multishot(_)) {
            // The kernel refuses multishot receive after all: receive one at a time.
            events.feature_lost("multishot receive", "EINVAL");
            self.features = self
                .features
                .without(probe::RECV_MULTISHOT | probe::BUF_RING);
            let old =
                std::mem::replace(&mut self.recv, Recv::Single(RawBuf::new(self.single_len)?));
            // The buffer ring stays registered with the ring; keep its memory.
            if let Recv::Multishot(mut b) = old {
                b.leak();
            }
        } else if res < 0 && res != -libc::ECANCELED {
            self.begin_close(Some(io::Error::from_raw_os_error(-res)));
        }
        self.arm_recv()
    }

    fn handle_send_zc(&mut self, seq: u64, res: i32, flags: u32, events: &mut dyn Events) {
        if cqueue::notif(flags) {
            self.sock_ops -= 1;
            if self.features.has(probe::ZC_REPORT_USAGE)
                && (res as u32) & IORING_NOTIF_USAGE_ZC_COPIED != 0
            {
                self.zc_copied += 1;
                self.counters.zc_copied.fetch_add(1, Ordering::Relaxed);
            }
            self.sendq.zc_notified(seq, events);
            // Switch back to copying sends when the kernel copies anyway.
            if self.zc_policy == ZeroCopy::Auto
                && self.zc_sends >= ZC_PROBE_SENDS
                && self.zc_copied * 4 >= self.zc_sends * 3
            {
                self.zc_enabled = false;
            }
            return;
        }
        self.send_inflight = false;
        if !cqueue::more(flags) {
            // No notification follows (the send failed before sending anything).
            self.sock_ops -= 1;
            self.sendq.zc_abandoned(seq, events);
        }
        if res >= 0 {
            self.sendq.advance(res as usize, events);
        } else if matches!(-res, libc::EOPNOTSUPP | libc::EINVAL) {
            // Refused for this socket or kernel: nothing was sent; copy from now on.
            events.feature_lost(
                "SEND_ZC",
                if -res == libc::EINVAL {
                    "EINVAL"
                } else {
                    "EOPNOTSUPP"
                },
            );
            self.features = self
                .features
                .without(probe::SEND_ZC | probe::ZC_REPORT_USAGE);
            self.zc_enabled = false;
        } else if res != -libc::ECANCELED {
            self.begin_close(Some(io::Error::from_raw_os_error(-res)));
        }
    }
}

/// Registers a provided-buffer ring for multishot receive, if the features allow.
fn setup_multishot(ring: &IoUring, f: Features, count: u16, size: usize) -> Option<BufRing> {
    if !f.has(probe::BUF_RING | probe::RECV_MULTISHOT) {
        return None;
    }
    let mut bufs = BufRing::new(count, size).ok()?;
    // SAFETY: the entry array is a live page-aligned allocation of `count` entries owned by
    // `Uring`, which drops the ring first, so it outlives its registration.
    let registered = unsafe {
        ring.submitter().register_buf_ring_with_flags(
            bufs.entries_addr(),
            bufs.count(),
            BUF_GROUP,
            0,
        )
    };
    if registered.is_err() {
        return None;
    }
    for bid in 0..bufs.count() {
        bufs.push(bid);
    }
    bufs.publish();
    Some(bufs)
}

impl Io for Uring {
    fn connect(&mut self, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
        let sock = new_socket(&addr, false)?;
        if self.features.has(probe::FIXED_FILES) {
            self.ring
                .submitter()
                .register_files_update(0, &[sock.as_raw_fd()])?;
        }
        self.sock = Some(sock);
        let len = sockaddr(&addr, &mut self.addr);
        *self.connect_ts = types::Timespec::from(timeout);
        let sa: *const libc::sockaddr = (&*self.addr as *const libc::sockaddr_storage).cast();
        let connect = on_sock!(self, |fd| opcode::Connect::new(fd, sa, len).build())
            .flags(squeue::Flags::IO_LINK)
            .user_data(UD_CONNECT);
        let to = opcode::LinkTimeout::new(&*self.connect_ts)
            .build()
            .user_data(UD_CONNECT_TIMEOUT);
        // SAFETY: the sockaddr and the timespec are boxed in `self` and not modified
        // until the connect completes (one connect at a time); the socket stays open
        // until it completes.
        unsafe {
            self.push(connect)?;
            self.push(to)?;
        }
        self.sock_ops += 1;
        self.link = Link::Connecting;
        Ok(())
    }

    fn link(&self) -> Link {
        self.link
    }

    fn can_queue(&self) -> bool {
        self.link == Link::Up && !self.closing && self.sendq.len() < 4096
    }

    fn write_in_flight(&self) -> bool {
        self.send_inflight
    }

    fn queue(&mut self, key: TxKey, ptr: *const u8, len: usize, reg: Option<Registration>) {
        let fixed = reg.filter(|r| r.ring == self.ring_id).map(|r| r.index);
        self.sendq.push(Pending {
            key,
            ptr,
            len,
            done: 0,
            fixed,
        });
    }

    fn wants_registration(&self, len: usize) -> bool {
        self.zc_enabled && len >= ZC_THRESHOLD && self.regs.free_slot().is_some()
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

    fn close(&mut self) {
        if self.link == Link::Up || self.link == Link::Connecting {
            self.begin_close(None);
        }
    }

    fn quiesce(&mut self, timeout: Duration) -> bool {
        Uring::quiesce(self, timeout)
    }

    fn poll(&mut self, timeout: Option<Duration>, events: &mut dyn Events) -> io::Result<()> {
        self.arm_eventfd()?;
        self.progress_close(events)?;
        self.arm_recv()?;
        self.start_send()?;
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
            for &(ud, res, flags) in &cqes {
                self.handle(ud, res, flags, events)?;
            }
            self.cqes = cqes;
            // Keep the pipe full: start the next send before looking for more CQEs.
            self.start_send()?;
        }
        self.progress_close(events)?;
        Ok(())
    }
}
