//! What the driver loop needs from an I/O backend, and what a backend reports back.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::buffers::Registration;
use crate::session::TxKey;

/// What a backend reports to the loop.
pub(crate) trait Events {
    fn connected(&mut self);
    fn connect_failed(&mut self, error: io::Error);
    fn data(&mut self, chunk: &[u8]);
    fn sent(&mut self, key: TxKey, bytes: usize);
    /// The backend stopped using a feature after the kernel refused it (for the log and
    /// the counters).
    fn feature_lost(&mut self, _feature: &'static str, _why: &str) {}
    /// The connection is closed and no operation on it is pending any more.
    fn closed(&mut self, error: Option<io::Error>);
}

/// Connection phase as a backend sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    Idle,
    Connecting,
    Up,
    Closing,
}

/// A way to move bytes for one connection.
pub(crate) trait Io {
    /// Starts connecting without blocking; the outcome (connected, or failed — also after
    /// `timeout`) is reported through [`Events`].
    fn connect(&mut self, addr: SocketAddr, timeout: Duration) -> io::Result<()>;
    fn link(&self) -> Link;
    /// Whether another frame may be queued for sending now.
    fn can_queue(&self) -> bool;
    /// Whether a write is in progress whose completion will wake the loop (data queued
    /// meanwhile waits for it anyway).
    fn write_in_flight(&self) -> bool;
    /// Queues a frame of `len` bytes at `ptr`, which the session keeps valid and
    /// unchanged until `Events::sent` reports `key` or `Events::closed` is reported.
    /// `reg` is the frame buffer's registration, if it has one.
    fn queue(&mut self, key: TxKey, ptr: *const u8, len: usize, reg: Option<Registration>);
    /// Whether a frame of `len` bytes would be sent from a registered buffer if its
    /// buffer were registered now.
    fn wants_registration(&self, _len: usize) -> bool {
        false
    }
    /// Registers the allocation `ptr..ptr+capacity` (a frame buffer) for fixed sends.
    fn register(&mut self, _ptr: *const u8, _capacity: usize) -> Option<Registration> {
        None
    }
    /// Starts closing (or abandons a connect in progress); `Events::closed` (or
    /// `Events::connect_failed`) follows once every operation has completed.
    fn close(&mut self);
    /// Before the thread exits: cancels everything and waits (at most `timeout`) until
    /// no operation references any buffer. `false` means the kernel may still use
    /// some, and the caller must leak rather than free them.
    fn quiesce(&mut self, timeout: Duration) -> bool;
    /// Submits queued work and waits up to `timeout` (zero: do not block) for events.
    fn poll(&mut self, timeout: Option<Duration>, events: &mut dyn Events) -> io::Result<()>;
}
