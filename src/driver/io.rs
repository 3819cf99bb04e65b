//! What the ring's loop needs from an I/O backend, and what a backend reports back.
//!
//! One backend instance (one io_uring, or one `poll(2)` set) serves every connection of
//! a ring. Connections are known to it by a small slot number; what happens on each is
//! reported to that connection's [`Events`], found through an [`EventSink`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{Counters, ZeroCopy};
use crate::buffers::Registration;
use crate::session::TxKey;

/// A connection's index in the backend (fixed file slot, `user_data` bits).
pub(crate) type Slot = u16;

/// What a backend reports about one connection.
pub(crate) trait Events {
    fn connected(&mut self);
    fn connect_failed(&mut self, error: io::Error);
    fn data(&mut self, chunk: &[u8]);
    fn sent(&mut self, key: TxKey, bytes: usize);
    /// Where the next received bytes should go, if somewhere special: the unfilled part
    /// of the buffer a large fetch reply is destined for (pointer, length), valid until
    /// [`Events::received`] or [`Events::closed`]. A backend that can should receive
    /// straight into it, with no copy of its own.
    fn recv_target(&mut self) -> Option<(*mut u8, usize)> {
        None
    }
    /// `n` bytes were received at [`Events::recv_target`].
    fn received(&mut self, _n: usize) {}
    /// The backend stopped using a feature after the kernel refused it (for the log and
    /// the counters).
    fn feature_lost(&mut self, _feature: &'static str, _why: &str) {}
    /// The connection is closed and no operation on it is pending any more.
    fn closed(&mut self, error: Option<io::Error>);
}

/// The connections' event handlers, by slot.
pub(crate) trait EventSink {
    /// The handler of the connection in `slot` (`None` for a slot no longer in use).
    fn events(&mut self, slot: Slot) -> Option<&mut dyn Events>;
}

/// What a backend needs to know about a connection it serves.
#[derive(Clone, Debug)]
pub(crate) struct ConnIo {
    pub(crate) counters: Arc<Counters>,
    /// Receive buffers: count and size (see `DriverConfig::recv_buffers`).
    pub(crate) recv_buffers: (u16, usize),
    /// Receive large fetch replies straight into their destination.
    pub(crate) direct_receive: bool,
    pub(crate) zero_copy: ZeroCopy,
    /// Frames the session may hand over before any is written: the send queue is sized
    /// for it up front.
    pub(crate) max_frames: usize,
}

/// Connection phase as a backend sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    Idle,
    Connecting,
    Up,
    Closing,
}

/// A way to move bytes for many connections.
pub(crate) trait Io {
    /// Makes room for a connection; its slot.
    fn add(&mut self, cfg: ConnIo) -> io::Result<Slot>;
    /// Forgets an idle connection's slot (no operation references it any more).
    fn remove(&mut self, slot: Slot);
    /// Starts connecting without blocking; the outcome (connected, or failed — also after
    /// `timeout`) is reported through the slot's [`Events`].
    fn connect(&mut self, slot: Slot, addr: SocketAddr, timeout: Duration) -> io::Result<()>;
    fn link(&self, slot: Slot) -> Link;
    /// Whether another frame may be queued for sending now.
    fn can_queue(&self, slot: Slot) -> bool;
    /// Whether a write is in progress whose completion will wake the loop (data queued
    /// meanwhile waits for it anyway).
    fn write_in_flight(&self, slot: Slot) -> bool;
    /// Queues a frame of `len` bytes at `ptr`, which the session keeps valid and
    /// unchanged until `Events::sent` reports `key` or `Events::closed` is reported.
    /// `reg` is the frame buffer's registration, if it has one.
    fn queue(
        &mut self,
        slot: Slot,
        key: TxKey,
        ptr: *const u8,
        len: usize,
        reg: Option<Registration>,
    );
    /// Whether a frame of `len` bytes would be sent from a registered buffer if its
    /// buffer were registered now.
    fn wants_registration(&self, _slot: Slot, _len: usize) -> bool {
        false
    }
    /// Registers the allocation `ptr..ptr+capacity` (a frame buffer) for fixed sends.
    fn register(&mut self, _ptr: *const u8, _capacity: usize) -> Option<Registration> {
        None
    }
    /// Starts closing (or abandons a connect in progress); `Events::closed` (or
    /// `Events::connect_failed`) follows once every operation has completed.
    fn close(&mut self, slot: Slot);
    /// Before the thread exits: cancels everything and waits (at most `timeout`) until
    /// no operation references any buffer. `false` means the kernel may still use
    /// some, and the caller must leak rather than free them.
    fn quiesce(&mut self, timeout: Duration) -> bool;
    /// Submits queued work and waits up to `timeout` (zero: do not block) for events.
    fn poll(&mut self, timeout: Option<Duration>, sink: &mut dyn EventSink) -> io::Result<()>;
    /// The backend's name and features, for the log.
    fn describe(&self) -> String;
}
