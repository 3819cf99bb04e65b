//! The portable backend: non-blocking sockets, one `poll(2)` over all of a ring's
//! connections and the waker's eventfd, `writev` of every queued frame at once. Used
//! where io_uring is unavailable (containers under the default seccomp profile return
//! EPERM or ENOSYS) or by choice.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::io::{ConnIo, EventSink, Events, Io, Link, Slot};
use super::socket::{new_socket, sockaddr};
use super::waker::Waker;
use crate::buffers::Registration;
use crate::session::TxKey;

/// Most frames gathered into one `writev`.
const MAX_IOV: usize = 64;
/// Reads per connection per turn (fairness between connections).
const READS_PER_TURN: usize = 16;

/// A frame queued for sending: the session keeps `len` bytes at `ptr` valid and
/// unchanged until it is reported sent or the connection is closed.
#[derive(Debug)]
struct Pending {
    key: TxKey,
    ptr: *const u8,
    len: usize,
    done: usize,
}

/// One connection.
#[derive(Debug)]
struct Conn {
    cfg: ConnIo,
    sock: Option<TcpStream>,
    link: Link,
    /// A connect in progress (non-blocking) and when it times out.
    connecting: Option<(TcpStream, Instant)>,
    /// A connect that finished or failed before `poll` could report it.
    connect_result: Option<io::Result<TcpStream>>,
    pending: VecDeque<Pending>,
    /// The socket refused more data (EWOULDBLOCK): POLLOUT will wake the loop.
    blocked: bool,
    rbuf: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct PollIo {
    waker: Arc<Waker>,
    conns: Vec<Option<Conn>>,
    fds: Vec<libc::pollfd>,
    /// `fds[i + 1]` belongs to slot `owners[i]`.
    owners: Vec<Slot>,
}

impl PollIo {
    pub(crate) fn new(waker: Arc<Waker>) -> io::Result<PollIo> {
        Ok(PollIo {
            waker,
            conns: Vec::new(),
            fds: Vec::new(),
            owners: Vec::new(),
        })
    }

    fn conn(&mut self, slot: Slot) -> &mut Conn {
        self.conns[slot as usize].as_mut().expect("slot in use")
    }
}

impl Conn {
    fn shut(&mut self, events: &mut dyn Events, error: Option<io::Error>) {
        self.sock = None;
        self.pending.clear();
        self.blocked = false;
        self.link = Link::Idle;
        events.closed(error);
    }

    /// Writes as much of the queue as the socket takes.
    fn write_pending(&mut self, events: &mut dyn Events) -> io::Result<()> {
        let Some(sock) = self.sock.as_mut() else {
            return Ok(());
        };
        while !self.pending.is_empty() {
            let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for p in self.pending.iter().take(MAX_IOV) {
                // SAFETY: the session keeps `p.len` bytes at `p.ptr` valid and unchanged
                // until this key is reported sent or the connection closes (Io::queue's
                // contract); `p.done < p.len`, so the range is inside that buffer.
                let s = unsafe { std::slice::from_raw_parts(p.ptr.add(p.done), p.len - p.done) };
                iov[n] = IoSlice::new(s);
                n += 1;
            }
            let written = match sock.write_vectored(&iov[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.blocked = false;
            self.cfg.counters.send_ops.fetch_add(1, Ordering::Relaxed);
            let mut left = written;
            while left > 0 {
                let p = self.pending.front_mut().expect("wrote more than queued");
                let rem = p.len - p.done;
                if left >= rem {
                    left -= rem;
                    let p = self.pending.pop_front().expect("front exists");
                    events.sent(p.key, p.len);
                } else {
                    p.done += left;
                    left = 0;
                }
            }
        }
        Ok(())
    }

    /// Reads what the socket has (bounded, to stay fair to other connections), straight
    /// into the session's receive target when it has one. `Ok(false)` at end of stream.
    fn read_available(&mut self, events: &mut dyn Events) -> io::Result<bool> {
        for _ in 0..READS_PER_TURN {
            let Some(sock) = self.sock.as_mut() else {
                return Ok(true);
            };
            let (dest, direct) = match events.recv_target() {
                // SAFETY: the session keeps `len` bytes at `ptr` valid, unmoved and
                // unaliased until `received` or the end of the connection
                // (`Events::recv_target`); nothing else touches them during this call.
                Some((ptr, len)) => (unsafe { std::slice::from_raw_parts_mut(ptr, len) }, true),
                None => (&mut self.rbuf[..], false),
            };
            let cap = dest.len();
            match sock.read(dest) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.cfg
                        .counters
                        .recv_events
                        .fetch_add(1, Ordering::Relaxed);
                    if direct {
                        events.received(n);
                    } else {
                        events.data(&self.rbuf[..n]);
                    }
                    if n < cap {
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reports a connect that finished; `true` if there was one to report.
    fn finish_connect(&mut self, events: &mut dyn Events) -> bool {
        if let Some(r) = self.connect_result.take() {
            match r {
                Ok(s) => {
                    self.sock = Some(s);
                    self.link = Link::Up;
                    events.connected();
                }
                Err(e) => {
                    self.link = Link::Idle;
                    events.connect_failed(e);
                }
            }
            return true;
        }
        false
    }

    /// A connect in progress: its socket became writable (or failed), or timed out.
    fn check_connect(&mut self, revents: i16, now: Instant) {
        let Some((sock, deadline)) = self.connecting.take() else {
            return;
        };
        if revents != 0 {
            self.connect_result = Some(match sock.take_error() {
                Ok(None) => Ok(sock),
                Ok(Some(e)) | Err(e) => Err(e),
            });
        } else if now >= deadline {
            self.connect_result = Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connect timed out",
            )));
        } else {
            self.connecting = Some((sock, deadline));
        }
    }
}

/// A `poll(2)` timeout in milliseconds, rounded up so a sub-millisecond wait does not
/// become a busy loop.
fn poll_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(d) => (d.as_millis().min(i32::MAX as u128) as i32)
            .saturating_add(i32::from(d.subsec_micros() % 1000 != 0)),
    }
}

impl Io for PollIo {
    fn add(&mut self, cfg: ConnIo) -> io::Result<Slot> {
        let read_len = cfg.recv_buffers.1.max(4096);
        let pending = VecDeque::with_capacity(cfg.max_frames);
        let conn = Conn {
            cfg,
            sock: None,
            link: Link::Idle,
            connecting: None,
            connect_result: None,
            pending,
            blocked: false,
            rbuf: vec![0u8; read_len],
        };
        let slot = match self.conns.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        if slot > Slot::MAX as usize {
            return Err(io::Error::other("too many connections on one ring"));
        }
        self.conns[slot] = Some(conn);
        Ok(slot as Slot)
    }

    fn remove(&mut self, slot: Slot) {
        if let Some(c) = self.conns.get_mut(slot as usize) {
            *c = None;
        }
    }

    fn connect(&mut self, slot: Slot, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
        let sock = TcpStream::from(new_socket(&addr, true)?);
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = sockaddr(&addr, &mut sa);
        // SAFETY: `sa` is an initialised socket address of `len` bytes that lives across
        // the call; the fd is the socket just created and owned by `sock`.
        let r = unsafe {
            libc::connect(
                sock.as_raw_fd(),
                (&sa as *const libc::sockaddr_storage).cast(),
                len,
            )
        };
        let c = self.conn(slot);
        c.link = Link::Connecting;
        if r == 0 {
            c.connect_result = Some(Ok(sock));
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            c.connect_result = Some(Err(e));
            return Ok(());
        }
        c.connecting = Some((sock, crate::session::after(Instant::now(), timeout)));
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
            .is_some_and(|c| c.link == Link::Up && c.pending.len() < 1024)
    }

    fn write_in_flight(&self, slot: Slot) -> bool {
        // Only data the socket refused: poll(2) waits for POLLOUT, which wakes the loop.
        // (Frames queued this turn are written before the wait, synchronously.)
        self.conns[slot as usize]
            .as_ref()
            .is_some_and(|c| c.link == Link::Up && c.blocked && !c.pending.is_empty())
    }

    fn queue(
        &mut self,
        slot: Slot,
        key: TxKey,
        ptr: *const u8,
        len: usize,
        _reg: Option<Registration>,
    ) {
        self.conn(slot).pending.push_back(Pending {
            key,
            ptr,
            len,
            done: 0,
        });
    }

    fn close(&mut self, slot: Slot) {
        let c = self.conn(slot);
        if c.connecting.take().is_some() {
            c.connect_result = Some(Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "connect abandoned (the handle is closing)",
            )));
        } else if c.link != Link::Idle && c.connect_result.is_none() {
            c.link = Link::Closing;
        }
    }

    fn quiesce(&mut self, _timeout: Duration) -> bool {
        // Nothing outlives a call here: writes copy synchronously.
        for c in self.conns.iter_mut().flatten() {
            c.pending.clear();
        }
        true
    }

    fn poll(&mut self, timeout: Option<Duration>, sink: &mut dyn EventSink) -> io::Result<()> {
        // Work that needs no waiting: finished connects, closes, and writes (usually the
        // socket has room and no poll is needed for it).
        let mut did = false;
        for (i, slot) in self.conns.iter_mut().enumerate() {
            let Some(c) = slot.as_mut() else { continue };
            let Some(events) = sink.events(i as Slot) else {
                continue;
            };
            if c.finish_connect(events) {
                did = true;
                continue;
            }
            if c.link == Link::Closing {
                c.shut(events, None);
                did = true;
                continue;
            }
            if c.link == Link::Up && !c.pending.is_empty() {
                if let Err(e) = c.write_pending(events) {
                    c.shut(events, Some(e));
                    did = true;
                }
            }
        }
        let timeout = if did { Some(Duration::ZERO) } else { timeout };
        self.fds.clear();
        self.owners.clear();
        self.fds.push(libc::pollfd {
            fd: self.waker.fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        let mut wait = timeout;
        let now = Instant::now();
        for (i, slot) in self.conns.iter().enumerate() {
            let Some(c) = slot.as_ref() else { continue };
            let (fd, ev) = if let Some((s, deadline)) = &c.connecting {
                let left = deadline.saturating_duration_since(now);
                wait = Some(wait.map_or(left, |w| w.min(left)));
                (s.as_raw_fd(), libc::POLLOUT)
            } else if let Some(s) = &c.sock {
                let out = if c.pending.is_empty() {
                    0
                } else {
                    libc::POLLOUT
                };
                (s.as_raw_fd(), libc::POLLIN | out)
            } else {
                continue;
            };
            self.fds.push(libc::pollfd {
                fd,
                events: ev,
                revents: 0,
            });
            self.owners.push(i as Slot);
        }
        // SAFETY: `fds` is a valid array of initialised pollfd structs that lives across
        // the call; nfds matches its length.
        let n = unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                poll_ms(wait),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        if self.fds[0].revents != 0 {
            self.waker.drain();
        }
        let now = Instant::now();
        for k in 0..self.owners.len() {
            let (slot, rev) = (self.owners[k], self.fds[k + 1].revents);
            let Some(c) = self.conns[slot as usize].as_mut() else {
                continue;
            };
            let Some(events) = sink.events(slot) else {
                continue;
            };
            if c.connecting.is_some() {
                c.check_connect(rev, now);
                c.finish_connect(events);
                continue;
            }
            if c.sock.is_none() || rev == 0 {
                continue;
            }
            if rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                match c.read_available(events) {
                    Ok(true) => {}
                    Ok(false) => {
                        c.shut(events, None);
                        continue;
                    }
                    Err(e) => {
                        c.shut(events, Some(e));
                        continue;
                    }
                }
            }
            if rev & libc::POLLOUT != 0 {
                if let Err(e) = c.write_pending(events) {
                    c.shut(events, Some(e));
                }
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "poll(2)".into()
    }
}
