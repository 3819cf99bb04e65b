//! The portable backend: one non-blocking socket, `poll(2)` on it and the waker's
//! eventfd, `writev` of every queued frame at once. Used where io_uring is unavailable
//! (containers under the default seccomp profile return EPERM or ENOSYS) or by choice.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::io::{Events, Io, Link};
use super::socket::{new_socket, sockaddr};
use super::waker::Waker;
use super::Counters;
use crate::buffers::Registration;
use crate::session::TxKey;

/// Most frames gathered into one `writev`.
const MAX_IOV: usize = 64;
/// Receive buffer: the server writes up to 256 KiB chunks of ACKs or one fetch reply.
const RECV_BUF: usize = 256 * 1024;

/// A frame queued for sending: the session keeps `len` bytes at `ptr` valid and
/// unchanged until it is reported sent or the connection is closed.
#[derive(Debug)]
struct Pending {
    key: TxKey,
    ptr: *const u8,
    len: usize,
    done: usize,
}

#[derive(Debug)]
pub(crate) struct PollIo {
    waker: Arc<Waker>,
    counters: Arc<Counters>,
    sock: Option<TcpStream>,
    link: Link,
    /// A connect in progress (non-blocking) and when it times out.
    connecting: Option<(TcpStream, Instant)>,
    /// A connect that finished or failed before `poll` could report it.
    connect_result: Option<io::Result<TcpStream>>,
    pending: VecDeque<Pending>,
    rbuf: Vec<u8>,
}

impl PollIo {
    pub(crate) fn new(waker: Arc<Waker>, counters: Arc<Counters>) -> io::Result<PollIo> {
        Ok(PollIo {
            waker,
            counters,
            sock: None,
            link: Link::Idle,
            connecting: None,
            connect_result: None,
            pending: VecDeque::new(),
            rbuf: vec![0u8; RECV_BUF],
        })
    }

    fn shut(&mut self, events: &mut dyn Events, error: Option<io::Error>) {
        self.sock = None;
        self.pending.clear();
        self.link = Link::Idle;
        events.closed(error);
    }

    /// Writes as much of the queue as the socket takes. `Ok(false)` on EOF-like errors.
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.counters.send_ops.fetch_add(1, Ordering::Relaxed);
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

    /// Reads until the socket is drained (bounded, to stay fair to sends).
    fn read_available(&mut self, events: &mut dyn Events) -> io::Result<bool> {
        for _ in 0..8 {
            let Some(sock) = self.sock.as_mut() else {
                return Ok(true);
            };
            match sock.read(&mut self.rbuf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.counters.recv_events.fetch_add(1, Ordering::Relaxed);
                    events.data(&self.rbuf[..n]);
                    if n < self.rbuf.len() {
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
}

impl PollIo {
    /// Waits (at most `timeout`, and not past the connect deadline) for a connect in
    /// progress to finish.
    fn poll_connect(
        &mut self,
        sock: TcpStream,
        deadline: Instant,
        timeout: Option<Duration>,
        events: &mut dyn Events,
    ) -> io::Result<()> {
        let now = Instant::now();
        if now >= deadline {
            self.link = Link::Idle;
            events.connect_failed(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
            return Ok(());
        }
        let left = deadline - now;
        let wait = timeout.map_or(left, |t| t.min(left));
        let mut fds = [
            libc::pollfd {
                fd: self.waker.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two initialised pollfd structs that lives
        // across the call; nfds matches its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, poll_ms(Some(wait))) };
        if n < 0 {
            let e = io::Error::last_os_error();
            self.connecting = Some((sock, deadline));
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        if fds[0].revents != 0 {
            self.waker.drain();
        }
        if fds[1].revents == 0 {
            self.connecting = Some((sock, deadline));
            return Ok(());
        }
        match sock.take_error() {
            Ok(None) => {
                self.sock = Some(sock);
                self.link = Link::Up;
                events.connected();
            }
            Ok(Some(e)) | Err(e) => {
                self.link = Link::Idle;
                events.connect_failed(e);
            }
        }
        Ok(())
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
    fn connect(&mut self, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
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
        self.link = Link::Connecting;
        if r == 0 {
            self.connect_result = Some(Ok(sock));
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            self.connect_result = Some(Err(e));
            return Ok(());
        }
        self.connecting = Some((sock, crate::session::after(Instant::now(), timeout)));
        Ok(())
    }

    fn link(&self) -> Link {
        self.link
    }

    fn can_queue(&self) -> bool {
        self.link == Link::Up && self.pending.len() < 1024
    }

    fn write_in_flight(&self) -> bool {
        // Data the socket did not take: poll(2) waits for POLLOUT, which wakes the loop.
        self.link == Link::Up && !self.pending.is_empty()
    }

    fn queue(&mut self, key: TxKey, ptr: *const u8, len: usize, _reg: Option<Registration>) {
        self.pending.push_back(Pending {
            key,
            ptr,
            len,
            done: 0,
        });
    }

    fn close(&mut self) {
        if self.connecting.take().is_some() {
            self.connect_result = Some(Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "connect abandoned (the handle is closing)",
            )));
        } else if self.link != Link::Idle {
            self.link = Link::Closing;
        }
    }

    fn quiesce(&mut self, _timeout: Duration) -> bool {
        // Nothing outlives a call here: writes copy synchronously.
        self.pending.clear();
        true
    }

    fn poll(&mut self, timeout: Option<Duration>, events: &mut dyn Events) -> io::Result<()> {
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
            return Ok(());
        }
        if self.link == Link::Closing {
            self.shut(events, None);
            return Ok(());
        }
        if let Some((sock, deadline)) = self.connecting.take() {
            return self.poll_connect(sock, deadline, timeout, events);
        }
        // Write first: usually the socket has room and no poll is needed for it.
        if self.link == Link::Up {
            if let Err(e) = self.write_pending(events) {
                self.shut(events, Some(e));
                return Ok(());
            }
        }
        let mut fds = [
            libc::pollfd {
                fd: self.waker.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.sock.as_ref().map_or(-1, |s| s.as_raw_fd()),
                events: libc::POLLIN
                    | if self.pending.is_empty() {
                        0
                    } else {
                        libc::POLLOUT
                    },
                revents: 0,
            },
        ];
        let ms = poll_ms(timeout);
        // SAFETY: `fds` is a valid array of two initialised pollfd structs that lives
        // across the call; nfds matches its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        if fds[0].revents != 0 {
            self.waker.drain();
        }
        let rev = fds[1].revents;
        if self.sock.is_some() && rev != 0 {
            if rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                match self.read_available(events) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.shut(events, None);
                        return Ok(());
                    }
                    Err(e) => {
                        self.shut(events, Some(e));
                        return Ok(());
                    }
                }
            }
            if rev & libc::POLLOUT != 0 {
                if let Err(e) = self.write_pending(events) {
                    self.shut(events, Some(e));
                }
            }
        }
        Ok(())
    }
}
