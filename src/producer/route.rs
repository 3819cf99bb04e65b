//! A producer's connections: one, or several striped over rings of their own, and which
//! one gets each batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::driver::{Command, Driver, DriverStats};
use crate::session::Batch;
use crate::Error;

/// The connections of one producer.
#[derive(Debug)]
pub(crate) struct Connections {
    drivers: Vec<Driver>,
    /// Batches of one topic go to every connection in turn (order across them is lost).
    spread: bool,
    next: AtomicUsize,
}

impl Connections {
    pub(crate) fn new(drivers: Vec<Driver>, spread: bool) -> Connections {
        assert!(!drivers.is_empty(), "at least one connection");
        Connections {
            drivers,
            spread,
            next: AtomicUsize::new(0),
        }
    }

    /// The connection that owns `topic_id` (its linger timer, and its batches unless
    /// spread): topics are spread over connections by id, each on one connection.
    pub(crate) fn of_topic(&self, topic_id: u32) -> &Driver {
        &self.drivers[topic_id as usize % self.drivers.len()]
    }

    /// Hands a sealed batch of `topic_id` to its connection (or the next one, spread).
    pub(crate) fn submit_batch(&self, topic_id: u32, b: Batch) {
        let d = if self.spread && self.drivers.len() > 1 {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.drivers.len();
            &self.drivers[i]
        } else {
            self.of_topic(topic_id)
        };
        d.submit_batch(b);
    }

    /// A linger timer of `topic_id`.
    pub(crate) fn linger(&self, at: Instant, topic_id: u32, gen: u64) {
        self.of_topic(topic_id)
            .submit_by(Command::Linger { at, topic_id, gen }, at);
    }

    /// Why a connection's driver stopped, if one did (the producer then fails fast).
    #[inline]
    pub(crate) fn stopped(&self) -> Option<Error> {
        self.drivers.iter().find_map(Driver::stopped)
    }

    /// Whether any connection is up.
    pub(crate) fn any_connected(&self) -> bool {
        self.drivers.iter().any(Driver::is_connected)
    }

    /// The last connection error of any connection.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.drivers.iter().find_map(Driver::last_error)
    }

    /// Closes every connection.
    pub(crate) fn shutdown(&self, deadline: Instant) {
        for d in &self.drivers {
            d.shutdown(deadline);
        }
    }

    /// The connections' counters, summed.
    pub(crate) fn stats(&self) -> DriverStats {
        let mut s = self.drivers[0].stats();
        for d in &self.drivers[1..] {
            s.add(&d.stats());
        }
        s
    }

    /// Each connection's counters.
    pub(crate) fn each_stats(&self) -> Vec<DriverStats> {
        self.drivers.iter().map(Driver::stats).collect()
    }

    /// ACK latencies of every connection.
    pub(crate) fn ack_latency(&self) -> hdrhistogram::Histogram<u64> {
        let mut h = self.drivers[0].ack_latency();
        for d in &self.drivers[1..] {
            let _ = h.add(d.ack_latency());
        }
        h
    }

    /// Test hook.
    pub(crate) fn debug_stop(&self, panic: bool) {
        self.drivers[0].debug_stop(panic);
    }
}
