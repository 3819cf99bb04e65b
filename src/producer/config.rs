//! Producer settings.

use std::time::Duration;

use crate::config::ConnectionConfig;
use crate::proto::MAX_PAYLOAD_LEN;
use crate::Error;
#[cfg(doc)]
use crate::Producer;

/// What `send` does when the buffer-memory cap is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FullBufferPolicy {
    /// Wait up to this long for acknowledgements to free room, then fail with
    /// [`Error::Backpressure`].
    Block(Duration),
    /// Fail at once with [`Error::Backpressure`].
    Fail,
}

/// Producer settings. The defaults mirror the seed clients (`batch_size` 32768,
/// `linger_ms` 5, no compression, 64 pending ACKs).
///
/// ```
/// use std::time::Duration;
/// use lnc_uring::ProducerConfig;
///
/// let cfg = ProducerConfig::default()
///     .with_batch_size(64 * 1024)
///     .with_linger(Duration::from_millis(1))
///     .with_max_pending_acks(128);
/// assert_eq!(cfg.batch_size, 65_536);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProducerConfig {
    /// A batch is sent when it reaches this many payload bytes. Default 32768.
    pub batch_size: usize,
    /// A batch that is not full is sent this long after its first record. Default 5 ms;
    /// zero sends every record at once (lowest latency).
    pub linger: Duration,
    /// Wrap each batch in an LZ4 compressed-batch record. Default off.
    pub compression: bool,
    /// Most batches sent and not yet acknowledged (the pipelining window). Default 64.
    pub max_pending_acks: usize,
    /// Memory for batch buffers: batches being filled, in flight, or waiting for their
    /// ACK. Buffers are allocated as needed up to this and reused; when all are in use,
    /// `send` waits or fails as [`ProducerConfig::full_buffer`] says. Default 32 MiB.
    pub buffer_memory: usize,
    /// What `send` does when `buffer_memory` is reached. Default: block up to 60 s.
    pub full_buffer: FullBufferPolicy,
    /// Each record is acknowledged or failed within this time. Default 120 s.
    pub delivery_timeout: Duration,
    /// Resends of a batch after a retryable error, a lost connection or a dead peer, at
    /// most (each may store the batch again: delivery is at-least-once). Default 5; the
    /// delivery timeout bounds retries too.
    pub max_retries: u32,
    /// How long dropping the producer (without [`Producer::close`]) waits for records to
    /// be acknowledged before failing them. Default 5 s. What could not be delivered is
    /// logged (`log::warn!`) and written to standard error.
    pub drop_timeout: Duration,
    /// Connections to the server, each on a ring (driver thread) of its own: topics are
    /// spread over them by id, each topic on one connection, so its records keep their
    /// order. Default 1.
    pub connections: usize,
    /// With several connections: spread every topic's batches over all of them, for raw
    /// throughput. Batches of one topic can then be stored in another order than they
    /// were sent (records within a batch keep theirs). Default off.
    pub spread: bool,
    /// With several connections: pin connection `i`'s thread to `pin_cpus[i % len]`.
    pub pin_cpus: Vec<usize>,
    /// How the connection is made (address, backend, pinning, checksum, auth, …).
    pub connection: ConnectionConfig,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            batch_size: 32 * 1024,
            linger: Duration::from_millis(5),
            compression: false,
            max_pending_acks: 64,
            buffer_memory: 32 * 1024 * 1024,
            full_buffer: FullBufferPolicy::Block(Duration::from_secs(60)),
            delivery_timeout: Duration::from_secs(120),
            max_retries: 5,
            drop_timeout: Duration::from_secs(5),
            connections: 1,
            spread: false,
            pin_cpus: Vec::new(),
            connection: ConnectionConfig::default(),
        }
    }
}

impl ProducerConfig {
    /// Sets [`ProducerConfig::batch_size`].
    pub fn with_batch_size(mut self, bytes: usize) -> Self {
        self.batch_size = bytes;
        self
    }
    /// Sets [`ProducerConfig::linger`].
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }
    /// Sets [`ProducerConfig::linger`] in milliseconds, as the seed clients do.
    pub fn with_linger_ms(self, ms: u64) -> Self {
        self.with_linger(Duration::from_millis(ms))
    }
    /// Sets [`ProducerConfig::compression`].
    pub fn with_compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }
    /// Sets [`ProducerConfig::max_pending_acks`].
    pub fn with_max_pending_acks(mut self, n: usize) -> Self {
        self.max_pending_acks = n;
        self
    }
    /// Sets [`ProducerConfig::buffer_memory`].
    pub fn with_buffer_memory(mut self, bytes: usize) -> Self {
        self.buffer_memory = bytes;
        self
    }
    /// Sets [`ProducerConfig::full_buffer`].
    pub fn with_full_buffer(mut self, policy: FullBufferPolicy) -> Self {
        self.full_buffer = policy;
        self
    }
    /// Sets [`ProducerConfig::delivery_timeout`].
    pub fn with_delivery_timeout(mut self, t: Duration) -> Self {
        self.delivery_timeout = t;
        self
    }
    /// Sets [`ProducerConfig::max_retries`].
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }
    /// Sets [`ProducerConfig::drop_timeout`].
    pub fn with_drop_timeout(mut self, t: Duration) -> Self {
        self.drop_timeout = t;
        self
    }
    /// Sets [`ProducerConfig::connections`] (and pins connection `i` to
    /// `pin_cpus[i % len]` when `pin_cpus` is not empty).
    ///
    /// ```
    /// use lnc_uring::ProducerConfig;
    ///
    /// let cfg = ProducerConfig::default().with_connections(4, &[0, 1, 2, 3]).with_spread(true);
    /// assert_eq!((cfg.connections, cfg.spread), (4, true));
    /// ```
    pub fn with_connections(mut self, n: usize, pin_cpus: &[usize]) -> Self {
        self.connections = n;
        self.pin_cpus = pin_cpus.to_vec();
        self
    }
    /// Sets [`ProducerConfig::spread`].
    pub fn with_spread(mut self, on: bool) -> Self {
        self.spread = on;
        self
    }
    /// Sets [`ProducerConfig::connection`].
    pub fn with_connection(mut self, c: ConnectionConfig) -> Self {
        self.connection = c;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.batch_size == 0 || self.batch_size > MAX_PAYLOAD_LEN as usize {
            return Err(Error::Config(format!(
                "batch_size must be 1..={MAX_PAYLOAD_LEN}, got {}",
                self.batch_size
            )));
        }
        if self.connections == 0 || self.connections > 256 {
            return Err(Error::Config(format!(
                "connections must be 1..=256, got {}",
                self.connections
            )));
        }
        if self.max_pending_acks == 0 {
            return Err(Error::Config("max_pending_acks must be at least 1".into()));
        }
        if self.buffer_memory == 0 {
            return Err(Error::Config("buffer_memory must be at least 1".into()));
        }
        crate::config::check_duration("linger", self.linger)?;
        crate::config::check_duration("delivery_timeout", self.delivery_timeout)?;
        crate::config::check_duration("drop_timeout", self.drop_timeout)?;
        if let FullBufferPolicy::Block(t) = self.full_buffer {
            crate::config::check_duration("full_buffer block time", t)?;
        }
        self.connection.validate()
    }
}
