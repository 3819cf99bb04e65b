//! Counters a driver thread keeps, and the public snapshot of them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use crossbeam_utils::CachePadded;

/// Counters of one driver thread. Read with [`DriverStats`] snapshots.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) backend: AtomicU8,
    pub(crate) connects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) send_ops: AtomicU64,
    pub(crate) zc_sends: AtomicU64,
    pub(crate) zc_copied: AtomicU64,
    pub(crate) zc_fixed: AtomicU64,
    pub(crate) recv_events: AtomicU64,
    pub(crate) buffer_shortages: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) batches_acked: AtomicU64,
    pub(crate) batches_failed: AtomicU64,
    pub(crate) batches_retried: AtomicU64,
    pub(crate) keepalives_sent: AtomicU64,
    pub(crate) unattributed_errors: AtomicU64,
    pub(crate) records_acked: AtomicU64,
    pub(crate) batches_in_flight: AtomicU64,
    pub(crate) features_lost: AtomicU64,
    /// Why the last connection was dropped.
    pub(crate) last_error: Mutex<Option<String>>,
    /// A connection is up. (On a cache line of its own, as `stopped`: handles read these
    /// on every record, and must not miss the cache each time the thread counts bytes.)
    pub(crate) connected: CachePadded<AtomicBool>,
    /// While the ring sleeps: a write of this connection is in flight, and its completion
    /// will wake the ring (more data needs no wake-up: it cannot go out before that write
    /// is done, and the ring looks at its queue when it wakes).
    pub(crate) write_due: AtomicBool,
    /// The thread has stopped (set once, before anything it held is failed).
    pub(crate) stopped: CachePadded<AtomicBool>,
    /// Why it stopped.
    pub(crate) stop_reason: Mutex<Option<String>>,
    /// ACK latency, µs (merged from the thread's own histogram every 100 ms at most).
    pub(crate) ack_latency: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

impl DriverStats {
    /// Adds another connection's counters to these (the backend name is kept).
    pub(crate) fn add(&mut self, o: &DriverStats) {
        self.connects += o.connects;
        self.connect_failures += o.connect_failures;
        self.disconnects += o.disconnects;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.send_ops += o.send_ops;
        self.zc_sends += o.zc_sends;
        self.zc_copied += o.zc_copied;
        self.zc_fixed += o.zc_fixed;
        self.recv_events += o.recv_events;
        self.buffer_shortages += o.buffer_shortages;
        self.waits += o.waits;
        self.wakeups += o.wakeups;
        self.batches_in_flight += o.batches_in_flight;
        self.batches_acked += o.batches_acked;
        self.batches_failed += o.batches_failed;
        self.batches_retried += o.batches_retried;
        self.keepalives_sent += o.keepalives_sent;
        self.unattributed_errors += o.unattributed_errors;
        self.features_lost += o.features_lost;
    }
}

impl Counters {
    /// A snapshot; `wakeups` comes from the waker.
    pub(crate) fn snapshot(&self, wakeups: u64) -> DriverStats {
        let c = self;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DriverStats {
            backend: match c.backend.load(Ordering::Relaxed) {
                BACKEND_URING => "io_uring",
                BACKEND_POLL => "poll",
                _ => "",
            },
            connects: l(&c.connects),
            connect_failures: l(&c.connect_failures),
            disconnects: l(&c.disconnects),
            bytes_sent: l(&c.bytes_sent),
            bytes_received: l(&c.bytes_received),
            send_ops: l(&c.send_ops),
            zc_sends: l(&c.zc_sends),
            zc_copied: l(&c.zc_copied),
            zc_fixed: l(&c.zc_fixed),
            recv_events: l(&c.recv_events),
            buffer_shortages: l(&c.buffer_shortages),
            waits: l(&c.waits),
            wakeups,
            batches_in_flight: l(&c.batches_in_flight),
            batches_acked: l(&c.batches_acked),
            batches_failed: l(&c.batches_failed),
            batches_retried: l(&c.batches_retried),
            keepalives_sent: l(&c.keepalives_sent),
            unattributed_errors: l(&c.unattributed_errors),
            features_lost: l(&c.features_lost),
        }
    }
}

pub(crate) const BACKEND_URING: u8 = 1;
pub(crate) const BACKEND_POLL: u8 = 2;

/// A snapshot of a driver thread's counters.
///
/// The thread publishes them after each event it handles, so they can trail the
/// outcomes that event delivered by a moment (a `flush` may return before
/// `batches_acked` counts the last ACK).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverStats {
    /// `"io_uring"` or `"poll"` (empty before the thread started).
    pub backend: &'static str,
    /// Connections established.
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Connections lost or reset.
    pub disconnects: u64,
    /// Bytes written to sockets.
    pub bytes_sent: u64,
    /// Bytes read from sockets.
    pub bytes_received: u64,
    /// Send operations (syscalls or SQEs).
    pub send_ops: u64,
    /// Zero-copy sends submitted.
    pub zc_sends: u64,
    /// Zero-copy sends the kernel reported it copied anyway (loopback does).
    pub zc_copied: u64,
    /// Zero-copy sends from registered (fixed) buffers.
    pub zc_fixed: u64,
    /// Receive completions.
    pub recv_events: u64,
    /// Times the receive buffers ran out (ENOBUFS) and receive was re-armed.
    pub buffer_shortages: u64,
    /// Times the driver blocked waiting for events.
    pub waits: u64,
    /// eventfd writes by handles to wake the driver.
    pub wakeups: u64,
    /// Batches sent or queued in the driver and not yet resolved.
    pub batches_in_flight: u64,
    /// Batches acknowledged.
    pub batches_acked: u64,
    /// Batches failed.
    pub batches_failed: u64,
    /// Batch resends (each may duplicate data on the server).
    pub batches_retried: u64,
    /// Keepalives sent.
    pub keepalives_sent: u64,
    /// Ingest errors that arrived without a batch id.
    pub unattributed_errors: u64,
    /// io_uring features given up at run time because the kernel refused them (each is
    /// logged; the backend falls back to a plainer operation).
    pub features_lost: u64,
}
