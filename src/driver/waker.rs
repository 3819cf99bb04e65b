//! Waking a parked driver thread: an eventfd plus an "asleep" flag, so a handle makes the
//! `write(2)` only when the driver is actually parked (or about to park).
//!
//! Protocol (both sides use sequentially consistent operations):
//! * driver: `asleep_until = <its wake-up time, or never>`, re-check its command queue,
//!   then block (poll on the eventfd or a read of it armed in the ring); on wake-up
//!   `asleep_until = AWAKE`.
//! * handle: push the command, then `if asleep { write(eventfd) }`. A command that needs
//!   nothing before an instant `t` (a linger timer) writes only if the driver sleeps past
//!   `t`.
//!
//! Either the driver's re-check sees the command, or the handle sees it asleep and
//! writes; a wake-up is never lost. A spurious wake-up only costs one loop iteration.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Instant;

/// `asleep_until` while the driver runs.
const AWAKE: u64 = 0;
/// `asleep_until` while it sleeps with no timer.
const FOREVER: u64 = u64::MAX;

/// The eventfd shared by a driver and its handles.
#[derive(Debug)]
pub(crate) struct Waker {
    file: File,
    /// `AWAKE`, or when the sleeping driver wakes by itself: nanoseconds after `base`
    /// (plus one, so an instant equal to `base` is not `AWAKE`), or `FOREVER`.
    asleep_until: AtomicU64,
    base: Instant,
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
            asleep_until: AtomicU64::new(AWAKE),
            base: Instant::now(),
            writes: AtomicU64::new(0),
        })
    }

    fn stamp(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.base).as_nanos() as u64).saturating_add(1)
    }

    /// Called by a handle after it queued work for the driver.
    pub(crate) fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.asleep_until.load(Ordering::SeqCst) != AWAKE {
            self.force_wake();
        }
    }

    /// Called by a handle after it queued work that needs nothing before `at`: wakes the
    /// driver only if it sleeps past `at`.
    pub(crate) fn wake_by(&self, at: Instant) {
        fence(Ordering::SeqCst);
        let until = self.asleep_until.load(Ordering::SeqCst);
        if until != AWAKE && until > self.stamp(at) {
            self.force_wake();
        }
    }

    /// Writes the eventfd whether or not the driver sleeps.
    pub(crate) fn force_wake(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        // The counter saturates only after 2^64 - 2 unconsumed writes.
        let _ = (&self.file).write(&1u64.to_ne_bytes());
    }

    /// Driver: about to block until `until` (`None`: until woken).
    pub(crate) fn set_asleep(&self, until: Option<Instant>) {
        let v = until.map_or(FOREVER, |t| self.stamp(t));
        self.asleep_until.store(v, Ordering::SeqCst);
    }

    /// Driver: running again.
    pub(crate) fn set_awake(&self) {
        self.asleep_until.store(AWAKE, Ordering::SeqCst);
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
