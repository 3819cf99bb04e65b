//! The io_uring backend.
//!
//! * The ring is created inside the driver thread with SINGLE_ISSUER | DEFER_TASKRUN |
//!   COOP_TASKRUN (the creating thread is the only submitter; completions run only when
//!   this thread enters the kernel), falling back to fewer flags on older kernels.
//! * The socket is a registered file (slot 0), connected with IORING_OP_CONNECT linked to
//!   a timeout.
//! * Receive is one multishot `recv` into a provided buffer ring of 64 × 64 KiB; ENOBUFS
//!   and a completion without IORING_CQE_F_MORE re-arm it.
//! * Sends are ordered: one send operation in flight at a time (unlinked sends on one TCP
//!   socket can reorder). Queued frames go out together in one `sendmsg` (copying); a
//!   large frame goes out with SEND_ZC and IORING_SEND_ZC_REPORT_USAGE. Its buffer is
//!   reported free only after the notification CQE. When notifications say the kernel
//!   copied anyway (loopback does), the connection switches back to plain sends.
//! * The waker's eventfd has a `read` kept armed in the ring, so a handle's write wakes a
//!   thread blocked in `io_uring_enter`.
//! * Closing cancels every operation on the socket and reports the connection closed only
//!   when every CQE (and ZC notification) has arrived: no buffer is freed while the
//!   kernel may still use it.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::io::{Events, Io, Link};
use super::socket::{new_socket, sockaddr};
use super::waker::Waker;
use super::{Counters, DriverConfig, ZeroCopy};
use crate::session::TxKey;

// user_data: operation kind in the low byte, a sequence number above it.
const UD_EVENTFD: u64 = 1;
const UD_CONNECT: u64 = 2;
const UD_CONNECT_TIMEOUT: u64 = 3;
const UD_RECV: u64 = 4;
const UD_SEND: u64 = 5;
const UD_SEND_ZC: u64 = 6;
const UD_CANCEL: u64 = 7;

/// Provided receive buffers: count (a power of two) and size.
const BUF_ENTRIES: u16 = 64;
const BUF_SIZE: usize = 64 * 1024;
const BUF_GROUP: u16 = 7;
/// Frames gathered into one `sendmsg`.
const MAX_IOV: usize = 64;
/// Frames at least this large go out with SEND_ZC while it pays.
const ZC_THRESHOLD: usize = 16 * 1024;
/// ZC sends observed before deciding whether the kernel copies them anyway.
const ZC_PROBE_SENDS: u64 = 8;

/// `IORING_SEND_ZC_REPORT_USAGE` (6.2) and the notification bit it sets; the crate's
/// `sys` module is private, so they are restated from `linux/io_uring.h`.
const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
const IORING_NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;
/// `IORING_ENTER_GETEVENTS`, likewise.
const IORING_ENTER_GETEVENTS: u32 = 1 << 0;

/// A provided buffer ring: a page-aligned, mmap'd array of `io_uring_buf` entries and the
/// buffers they point to. Both outlive their registration: the ring is unregistered
/// (destroyed) before this is dropped ([`Uring`] declares `ring` first).
struct BufRing {
    entries: *mut types::BufRingEntry,
    map_len: usize,
    bufs: Box<[u8]>,
    /// Local copy of the tail, published with a release store.
    tail: u16,
    /// Never unmap (the kernel may still use the ring after a failed shutdown).
    leak: bool,
}

impl BufRing {
    fn new() -> io::Result<BufRing> {
        let map_len = (BUF_ENTRIES as usize * std::mem::size_of::<types::BufRingEntry>()).max(4096);
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(BufRing {
            entries: ptr.cast(),
            map_len,
            bufs: vec![0u8; BUF_ENTRIES as usize * BUF_SIZE].into_boxed_slice(),
            tail: 0,
            leak: false,
        })
    }

    /// Puts buffer `bid` back at the tail (not yet visible to the kernel).
    fn push(&mut self, bid: u16) {
        let idx = (self.tail & (BUF_ENTRIES - 1)) as usize;
        let addr = self.bufs.as_ptr() as u64 + bid as u64 * BUF_SIZE as u64;
        // SAFETY: `idx < BUF_ENTRIES` and the mapping holds BUF_ENTRIES entries; the
        // kernel reads only entries before the published tail, and this one is at or
        // after it, so no one else accesses it now.
        let e = unsafe { &mut *self.entries.add(idx) };
        e.set_addr(addr);
        e.set_len(BUF_SIZE as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes pushed buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: `entries` is the ring base (page-aligned mmap); the tail field is the
        // `resv` of entry 0, which the kernel reads with acquire semantics. An atomic
        // release store orders the entry writes before the new tail.
        unsafe {
            let tail =
                types::BufRingEntry::tail(self.entries) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn data(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * BUF_SIZE;
        &self.bufs[start..start + len.min(BUF_SIZE)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: the mapping was created in `new` with this length and is not used any
        // more: the ring that referenced it has been dropped (field order of `Uring`).
        unsafe {
            libc::munmap(self.entries.cast(), self.map_len);
        }
    }
}

/// A frame queued for sending; `len` bytes at `ptr` stay valid until reported sent
/// or the connection is reported closed (the session's contract, [`Io::queue`]).
#[derive(Debug)]
struct Pending {
    key: TxKey,
    ptr: *const u8,
    len: usize,
    done: usize,
    /// Sequence of the last ZC send that covered part of this frame.
    zc_seq: Option<u64>,
    /// Registered buffer holding the frame.
    fixed: Option<u16>,
}

/// `sendmsg` arguments; boxed so their address is stable while the kernel reads them.
struct MsgState {
    hdr: libc::msghdr,
    iov: [libc::iovec; MAX_IOV],
}

pub(crate) struct Uring {
    // Dropped first: destroying the ring ends every kernel reference to the buffers below.
    ring: IoUring,
    bufs: BufRing,
    msg: Box<MsgState>,
    efd_buf: Box<[u8; 8]>,
    addr: Box<libc::sockaddr_storage>,
    connect_ts: Box<types::Timespec>,
    waker: Arc<Waker>,
    counters: Arc<Counters>,

    efd_armed: bool,
    sock: Option<OwnedFd>,
    link: Link,
    recv_armed: bool,
    /// Operations in the kernel that reference the socket (a ZC send counts until its
    /// notification).
    sock_ops: usize,
    connect_pending: bool,
    connect_error: Option<io::Error>,
    pending: VecDeque<Pending>,
    send_inflight: bool,
    /// Frames fully sent by ZC, waiting for the notification of their last send.
    zc_held: VecDeque<(u64, TxKey, usize)>,
    /// ZC sends whose notification has not arrived, oldest first.
    zc_open: VecDeque<u64>,
    zc_seq: u64,
    zc_enabled: bool,
    zc_supported: bool,
    zc_policy: ZeroCopy,
    /// Registered send buffers: address and length of each, by index.
    registered: Vec<(usize, usize)>,
    zc_sends: u64,
    zc_copied: u64,
    closing: bool,
    cancel_sent: bool,
    close_error: Option<io::Error>,
    cqes: Vec<(u64, i32, u32)>,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring")
            .field("link", &self.link)
            .field("sock_ops", &self.sock_ops)
            .field("pending", &self.pending.len())
            .field("zc_enabled", &self.zc_enabled)
            .finish()
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        if !self.quiesce(Duration::from_secs(2)) {
            // The kernel may still write into or read from these buffers: leak them
            // rather than free memory it uses. (Destroying the ring is asynchronous.)
            std::mem::forget(std::mem::replace(&mut self.bufs.bufs, Box::new([])));
            self.bufs.leak = true;
            std::mem::forget(std::mem::replace(&mut self.efd_buf, Box::new([0; 8])));
            // SAFETY: all-zero is a valid MsgState.
            let fresh = Box::new(unsafe { std::mem::zeroed::<MsgState>() });
            std::mem::forget(std::mem::replace(&mut self.msg, fresh));
        }
    }
}

fn build_ring() -> io::Result<IoUring> {
    let full = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_cqsize(1024)
        .build(256);
    match full {
        Ok(r) => Ok(r),
        // Kernels before 6.1 reject DEFER_TASKRUN; before 5.19 COOP_TASKRUN.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            IoUring::builder().setup_cqsize(1024).build(256)
        }
        Err(e) => Err(e),
    }
}

impl Uring {
    /// Creates the ring in the calling (driver) thread, and `send_buffers.0` registered
    /// send buffers of `send_buffers.1` bytes, returned for the handle to fill. Fails with
    /// the kernel's error (ENOSYS, EPERM under seccomp, …) so the caller can fall back to
    /// `poll`.
    pub(crate) fn new(
        waker: Arc<Waker>,
        counters: Arc<Counters>,
        cfg: &DriverConfig,
    ) -> io::Result<Uring> {
        let zc_policy = cfg.zero_copy;
        let ring = build_ring()?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for code in [
            opcode::RecvMulti::CODE,
            opcode::SendMsg::CODE,
            opcode::Connect::CODE,
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "io_uring lacks a needed opcode",
                ));
            }
        }
        let zc_supported = probe.is_supported(opcode::SendZc::CODE) && zc_policy != ZeroCopy::Never;
        ring.submitter().register_files_sparse(1)?;
        let mut bufs = BufRing::new()?;
        // SAFETY: the entry array is a live page-aligned mapping of BUF_ENTRIES entries and
        // stays mapped until after the ring is destroyed (drop order of `Uring`).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries as u64,
                BUF_ENTRIES,
                BUF_GROUP,
                0,
            )?;
        }
        for bid in 0..BUF_ENTRIES {
            bufs.push(bid);
        }
        bufs.publish();
        let registered = Vec::new();
        // SAFETY: all-zero is a valid msghdr / iovec / sockaddr_storage bit pattern.
        let msg = Box::new(unsafe { std::mem::zeroed::<MsgState>() });
        // SAFETY: as above.
        let addr = Box::new(unsafe { std::mem::zeroed::<libc::sockaddr_storage>() });
        let uring = Uring {
            ring,
            bufs,
            msg,
            efd_buf: Box::new([0u8; 8]),
            addr,
            connect_ts: Box::new(types::Timespec::new()),
            waker,
            counters,
            efd_armed: false,
            sock: None,
            link: Link::Idle,
            recv_armed: false,
            sock_ops: 0,
            connect_pending: false,
            connect_error: None,
            pending: VecDeque::new(),
            send_inflight: false,
            zc_held: VecDeque::new(),
            zc_open: VecDeque::new(),
            zc_seq: 0,
            zc_enabled: zc_supported,
            zc_supported,
            zc_policy,
            registered,
            zc_sends: 0,
            zc_copied: 0,
            closing: false,
            cancel_sent: false,
            close_error: None,
            cqes: Vec::with_capacity(256),
        };
        Ok(uring)
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
        let e = opcode::RecvMulti::new(types::Fixed(0), BUF_GROUP)
            .build()
            .user_data(UD_RECV);
        // SAFETY: the receive writes only into provided buffers of group BUF_GROUP, which
        // live as long as the ring; the fixed file slot 0 holds the connected socket.
        unsafe { self.push(e)? };
        self.recv_armed = true;
        self.sock_ops += 1;
        Ok(())
    }

    /// Starts the next send if none is in flight.
    fn start_send(&mut self) -> io::Result<()> {
        if self.send_inflight || self.pending.is_empty() || self.link != Link::Up || self.closing {
            return Ok(());
        }
        let head = &self.pending[0];
        let head_rem = head.len - head.done;
        if self.zc_enabled && head_rem >= ZC_THRESHOLD {
            self.zc_seq += 1;
            let seq = self.zc_seq;
            let ptr = head.ptr.wrapping_add(head.done);
            let len = head_rem.min(u32::MAX as usize) as u32;
            // Use the registered buffer only if the range really lies inside it.
            let fixed = head.fixed.filter(|&i| {
                self.registered
                    .get(i as usize)
                    .is_some_and(|&(base, blen)| {
                        let a = ptr as usize;
                        a >= base && a + len as usize <= base + blen
                    })
            });
            if fixed.is_some() {
                self.counters.zc_fixed.fetch_add(1, Ordering::Relaxed);
            }
            let e = opcode::SendZc::new(types::Fixed(0), ptr, len)
                .buf_index(fixed)
                .flags(libc::MSG_NOSIGNAL)
                .zc_flags(IORING_SEND_ZC_REPORT_USAGE)
                .build()
                .user_data(UD_SEND_ZC | seq << 8);
            // SAFETY: `ptr..ptr+len` lies inside a queued frame, which the session keeps
            // valid until it is reported sent; it is reported only after this send's
            // notification CQE (`zc_held`), or after close when every CQE has arrived.
            // With a buffer index, the range was checked to lie inside that registered
            // buffer, whose pages stay pinned until the ring is destroyed.
            unsafe { self.push(e)? };
            self.pending[0].zc_seq = Some(seq);
            self.zc_open.push_back(seq);
            self.zc_sends += 1;
            self.counters.zc_sends.fetch_add(1, Ordering::Relaxed);
        } else {
            let mut n = 0;
            for p in self.pending.iter().take(MAX_IOV) {
                self.msg.iov[n] = libc::iovec {
                    iov_base: p.ptr.wrapping_add(p.done) as *mut libc::c_void,
                    iov_len: p.len - p.done,
                };
                n += 1;
            }
            let msg = &mut *self.msg;
            msg.hdr.msg_iov = msg.iov.as_mut_ptr();
            msg.hdr.msg_iovlen = n as _;
            let e = opcode::SendMsg::new(types::Fixed(0), &msg.hdr)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
                .user_data(UD_SEND);
            // SAFETY: the msghdr and iovec array are boxed in `self` and not touched
            // until this send completes (one send in flight); each iovec points into a
            // queued frame that stays valid until reported sent (after this CQE).
            unsafe { self.push(e)? };
        }
        self.send_inflight = true;
        self.sock_ops += 1;
        self.counters.send_ops.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Accounts `n` bytes written from the front of the queue.
    fn advance(&mut self, mut n: usize, events: &mut dyn Events) {
        while n > 0 {
            let Some(p) = self.pending.front_mut() else {
                break;
            };
            let rem = p.len - p.done;
            if n < rem {
                p.done += n;
                break;
            }
            n -= rem;
            let p = self.pending.pop_front().expect("front exists");
            match p.zc_seq {
                Some(seq) if self.zc_open.contains(&seq) => {
                    self.zc_held.push_back((seq, p.key, p.len))
                }
                _ => events.sent(p.key, p.len),
            }
        }
    }

    /// Releases frames whose ZC notifications have all arrived.
    fn release_zc(&mut self, events: &mut dyn Events) {
        let oldest_open = self.zc_open.front().copied();
        while let Some(&(seq, key, len)) = self.zc_held.front() {
            if oldest_open.is_some_and(|o| o <= seq) {
                break;
            }
            self.zc_held.pop_front();
            events.sent(key, len);
        }
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

    /// Operations still in the kernel.
    fn outstanding(&self) -> usize {
        self.sock_ops + usize::from(self.efd_armed)
    }

    /// The features in use, for the log.
    pub(crate) fn features(&self) -> String {
        format!(
            "zero-copy sends {}",
            if self.zc_supported {
                "available"
            } else {
                "off"
            }
        )
    }

    /// Cancels every operation and waits (at most `timeout`) until the kernel holds no
    /// reference to any buffer. Returns whether it got there.
    pub(crate) fn quiesce(&mut self, timeout: Duration) -> bool {
        if self.outstanding() == 0 {
            return true;
        }
        self.abort_socket();
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::any().all())
            .build()
            .user_data(UD_CANCEL);
        // SAFETY: a cancel request references no memory.
        if unsafe { self.push(e) }.is_err() {
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
                let e = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fixed(0)).all())
                    .build()
                    .user_data(UD_CANCEL);
                // SAFETY: a cancel request references no memory.
                unsafe { self.push(e)? };
                self.cancel_sent = true;
            }
            return Ok(());
        }
        // Nothing in the kernel references the socket or any queued frame any more.
        self.ring.submitter().register_files_update(0, &[-1])?;
        self.sock = None;
        self.pending.clear();
        self.zc_held.clear();
        self.zc_open.clear();
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
                self.connect_pending = false;
                self.sock_ops -= 1;
                if res == 0 {
                    self.link = Link::Up;
                    self.zc_enabled = self.zc_supported;
                    self.zc_sends = 0;
                    self.zc_copied = 0;
                    events.connected();
                    self.arm_recv()?;
                } else {
                    let e = if res == -libc::ECANCELED {
                        io::Error::new(io::ErrorKind::TimedOut, "connect timed out")
                    } else {
                        io::Error::from_raw_os_error(-res)
                    };
                    self.ring.submitter().register_files_update(0, &[-1])?;
                    self.sock = None;
                    self.link = Link::Idle;
                    self.closing = false;
                    self.cancel_sent = false;
                    events.connect_failed(e);
                }
            }
            UD_CONNECT_TIMEOUT | UD_CANCEL => {}
            UD_RECV => {
                self.counters.recv_events.fetch_add(1, Ordering::Relaxed);
                if res > 0 {
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        if !self.closing {
                            events.data(self.bufs.data(bid, res as usize));
                        }
                        self.bufs.push(bid);
                        self.bufs.publish();
                    }
                }
                if !cqueue::more(flags) {
                    self.recv_armed = false;
                    self.sock_ops -= 1;
                    if res == 0 {
                        self.begin_close(None);
                    } else if res == -libc::ENOBUFS {
                        // Every buffer was in use; they are back now, re-arm.
                        self.counters
                            .buffer_shortages
                            .fetch_add(1, Ordering::Relaxed);
                    } else if res < 0 && res != -libc::ECANCELED {
                        self.begin_close(Some(io::Error::from_raw_os_error(-res)));
                    }
                    self.arm_recv()?;
                }
            }
            UD_SEND => {
                self.send_inflight = false;
                self.sock_ops -= 1;
                if res < 0 {
                    if res != -libc::ECANCELED {
                        self.begin_close(Some(io::Error::from_raw_os_error(-res)));
                    }
                } else {
                    self.advance(res as usize, events);
                }
            }
            UD_SEND_ZC => {
                let seq = ud >> 8;
                if cqueue::notif(flags) {
                    self.sock_ops -= 1;
                    if (res as u32) & IORING_NOTIF_USAGE_ZC_COPIED != 0 {
                        self.zc_copied += 1;
                        self.counters.zc_copied.fetch_add(1, Ordering::Relaxed);
                    }
                    self.zc_open.retain(|&s| s != seq);
                    // Switch back to copying sends when the kernel copies anyway.
                    if self.zc_policy == ZeroCopy::Auto
                        && self.zc_sends >= ZC_PROBE_SENDS
                        && self.zc_copied * 4 >= self.zc_sends * 3
                    {
                        self.zc_enabled = false;
                    }
                    self.release_zc(events);
                } else {
                    self.send_inflight = false;
                    if !cqueue::more(flags) {
                        // No notification follows (the send failed early).
                        self.sock_ops -= 1;
                        self.zc_open.retain(|&s| s != seq);
                    }
                    if res < 0 {
                        if res == -libc::EOPNOTSUPP {
                            self.zc_enabled = false;
                            self.zc_supported = false;
                        } else if res != -libc::ECANCELED {
                            self.begin_close(Some(io::Error::from_raw_os_error(-res)));
                        }
                    } else {
                        self.advance(res as usize, events);
                    }
                    self.release_zc(events);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Io for Uring {
    fn connect(&mut self, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
        let sock = new_socket(&addr, false)?;
        self.ring
            .submitter()
            .register_files_update(0, &[sock.as_raw_fd()])?;
        self.sock = Some(sock);
        let len = sockaddr(&addr, &mut self.addr);
        *self.connect_ts = types::Timespec::from(timeout);
        let connect = opcode::Connect::new(
            types::Fixed(0),
            (&*self.addr as *const libc::sockaddr_storage).cast(),
            len,
        )
        .build()
        .flags(squeue::Flags::IO_LINK)
        .user_data(UD_CONNECT);
        let to = opcode::LinkTimeout::new(&*self.connect_ts)
            .build()
            .user_data(UD_CONNECT_TIMEOUT);
        // SAFETY: the sockaddr and the timespec are boxed in `self` and not modified
        // until the connect completes (one connect at a time); slot 0 holds the socket.
        unsafe {
            self.push(connect)?;
            self.push(to)?;
        }
        self.sock_ops += 1;
        self.connect_pending = true;
        self.connect_error = None;
        self.link = Link::Connecting;
        Ok(())
    }

    fn link(&self) -> Link {
        self.link
    }

    fn can_queue(&self) -> bool {
        self.link == Link::Up && !self.closing && self.pending.len() < 4096
    }

    fn queue(&mut self, key: TxKey, bytes: &[u8], fixed: Option<u16>) {
        self.pending.push_back(Pending {
            key,
            ptr: bytes.as_ptr(),
            len: bytes.len(),
            done: 0,
            zc_seq: None,
            fixed,
        });
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
