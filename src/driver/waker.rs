//! Waking a parked driver thread: an eventfd plus an "asleep" flag, so a handle makes the
//! `write(2)` only when the driver is actually parked (or about to park).
//!
//! Protocol (both sides use sequentially consistent operations):
//! * driver: `asleep = true`, re-check its command queue, then block (poll on the eventfd
//!   or a read of it armed in the ring); on wake-up `asleep = false`.
//! * handle: push the command, then `if asleep { write(eventfd) }`.
//!
//! Either the driver's re-check sees the command, or the handle sees `asleep` and
//! writes; a wake-up is never lost. A spurious wake-up only costs one loop iteration.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

/// The eventfd shared by a driver and its handles.
#[derive(Debug)]
pub(crate) struct Waker {
    file: File,
    asleep: AtomicBool,
    writes: AtomicU64,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Waker> {
        // SAFETY: eventfd(2) takes no pointers; the flags are valid constants.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd(2), is valid and owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker {
            file: File::from(owned),
            asleep: AtomicBool::new(false),
            writes: AtomicU64::new(0),
        })
    }

    /// Called by a handle after it queued work for the driver.
    pub(crate) fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.asleep.load(Ordering::SeqCst) {
            self.force_wake();
        }
    }

    /// Writes the eventfd whether or not the driver sleeps.
    pub(crate) fn force_wake(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        // The counter saturates only after 2^64 - 2 unconsumed writes.
        let _ = (&self.file).write(&1u64.to_ne_bytes());
    }

    /// Driver: about to block.
    pub(crate) fn set_asleep(&self, asleep: bool) {
        self.asleep.store(asleep, Ordering::SeqCst);
    }

    /// Driver: consume pending wake-ups. The eventfd is in blocking mode (io_uring
    /// completes a `read` on a non-blocking eventfd at once with EAGAIN instead of
    /// waiting), so call this only after `poll(2)` reported it readable.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = (&self.file).read(&mut buf);
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// eventfd writes made (for stats).
    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}
