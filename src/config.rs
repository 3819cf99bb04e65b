//! Connection settings shared by every handle.

use std::time::Duration;

use crate::driver::{Backend, DriverConfig, IdleStrategy, Ring, RingConfig, ZeroCopy};
use crate::proto::{Checksum, DEFAULT_PORT};
use crate::session::SessionConfig;
use crate::Error;

/// How a handle connects: addresses, I/O backend, thread placement, checksum,
/// authentication, timeouts.
///
/// ```
/// use std::time::Duration;
/// use lnc_uring::{Backend, Checksum, ConnectionConfig, IdleStrategy};
///
/// let c = ConnectionConfig::new("lance-1:1992")
///     .with_seed("lance-2:1992")
///     .with_backend(Backend::Poll)
///     .with_checksum(Checksum::Ieee)
///     .with_pin_cpu(1)
///     .with_idle(IdleStrategy::BusySpin);
/// assert_eq!(c.addrs.len(), 2);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// Server addresses (`host:port`, `ip:port`, `[v6]:port`), tried in order; DNS is
    /// resolved again on every reconnect. Default `127.0.0.1:1992`.
    pub addrs: Vec<String>,
    /// Checksum of headers and payloads. Default IEEE CRC-32, what servers compute.
    pub checksum: Checksum,
    /// I/O backend. Default [`Backend::Auto`]: io_uring, or `poll(2)` when io_uring is
    /// unavailable.
    pub backend: Backend,
    /// Pin the handle's own driver thread to this CPU id (ignored with a [`Ring`]: see
    /// [`crate::RingConfig::pin_cpu`]).
    pub pin_cpu: Option<usize>,
    /// How the handle's own driver thread, and threads waiting on its tickets and
    /// replies, wait. Default [`IdleStrategy::Block`]. With a [`Ring`], the ring's
    /// setting applies to both.
    pub idle: IdleStrategy,
    /// The ring to open the connection on, shared with other handles. Default: none —
    /// the handle starts a ring (a driver thread) of its own with `backend`, `pin_cpu` and
    /// `idle`.
    pub ring: Option<Ring>,
    /// Connect timeout per address. Default 10 s.
    pub connect_timeout: Duration,
    /// Timeout of control requests (admin, fetch). Default 30 s.
    pub request_timeout: Duration,
    /// Keepalive after this long without sending. Default 10 s.
    pub keepalive_interval: Duration,
    /// The connection is presumed dead when nothing arrives for this long while a reply
    /// is awaited. Default 30 s.
    pub peer_timeout: Duration,
    /// Token for Authenticate (0x08), sent first on every connection.
    pub auth_token: Option<String>,
    /// First reconnect delay (doubled per failure, with jitter). Default 100 ms.
    pub reconnect_backoff: Duration,
    /// Largest reconnect delay. Default 10 s.
    pub reconnect_backoff_max: Duration,
    /// SEND_ZC policy of the io_uring backend. Default [`ZeroCopy::Auto`].
    pub zero_copy: ZeroCopy,
    /// Follow `NOT_LEADER: redirect to <addr>` replies by connecting there. Default on.
    /// Redirects are followed at once up to three times in a row without useful traffic
    /// (or to the address already in use), then with the reconnect back-off.
    pub follow_redirects: bool,
    /// Send [`ConnectionConfig::auth_token`] to a redirect target that is not one of
    /// [`ConnectionConfig::addrs`]. Default off: such a redirect is not followed when a
    /// token is configured (the token would go to a host you did not name).
    pub auth_on_redirect: bool,
    /// Test hook: io_uring features to treat as missing (comma-separated names).
    pub(crate) masked_uring_features: String,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            addrs: vec![format!("127.0.0.1:{DEFAULT_PORT}")],
            checksum: Checksum::Ieee,
            backend: Backend::Auto,
            pin_cpu: None,
            idle: IdleStrategy::Block,
            ring: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(10),
            peer_timeout: Duration::from_secs(30),
            auth_token: None,
            reconnect_backoff: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(10),
            zero_copy: ZeroCopy::Auto,
            follow_redirects: true,
            auth_on_redirect: false,
            masked_uring_features: String::new(),
        }
    }
}

impl ConnectionConfig {
    /// Settings for one address.
    pub fn new(addr: impl Into<String>) -> Self {
        ConnectionConfig {
            addrs: vec![addr.into()],
            ..ConnectionConfig::default()
        }
    }
    /// Adds a seed address tried after the others.
    pub fn with_seed(mut self, addr: impl Into<String>) -> Self {
        self.addrs.push(addr.into());
        self
    }
    /// Sets [`ConnectionConfig::checksum`].
    pub fn with_checksum(mut self, c: Checksum) -> Self {
        self.checksum = c;
        self
    }
    /// Sets [`ConnectionConfig::backend`].
    pub fn with_backend(mut self, b: Backend) -> Self {
        self.backend = b;
        self
    }
    /// Sets [`ConnectionConfig::pin_cpu`].
    pub fn with_pin_cpu(mut self, cpu: usize) -> Self {
        self.pin_cpu = Some(cpu);
        self
    }
    /// Sets [`ConnectionConfig::idle`].
    pub fn with_idle(mut self, idle: IdleStrategy) -> Self {
        self.idle = idle;
        self
    }
    /// Latency mode, as a duration: threads spin about this long after their last work
    /// before they sleep. Shorthand for `with_idle(IdleStrategy::spin_then_block(d))`.
    pub fn with_busy_poll(self, d: Duration) -> Self {
        self.with_idle(IdleStrategy::spin_then_block(d))
    }
    /// The same as [`ConnectionConfig::with_busy_poll`] (waiting callers and the driver
    /// thread share one idle strategy).
    pub fn with_spin(self, d: Duration) -> Self {
        self.with_busy_poll(d)
    }
    /// Sets [`ConnectionConfig::ring`].
    pub fn with_ring(mut self, ring: &Ring) -> Self {
        self.ring = Some(ring.clone());
        self
    }
    /// Sets [`ConnectionConfig::connect_timeout`].
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Sets [`ConnectionConfig::request_timeout`].
    pub fn with_request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// Sets [`ConnectionConfig::keepalive_interval`].
    pub fn with_keepalive_interval(mut self, d: Duration) -> Self {
        self.keepalive_interval = d;
        self
    }
    /// Sets [`ConnectionConfig::peer_timeout`].
    pub fn with_peer_timeout(mut self, d: Duration) -> Self {
        self.peer_timeout = d;
        self
    }
    /// Sets [`ConnectionConfig::auth_token`].
    pub fn with_auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = Some(token.into());
        self
    }
    /// Sets [`ConnectionConfig::zero_copy`].
    pub fn with_zero_copy(mut self, z: ZeroCopy) -> Self {
        self.zero_copy = z;
        self
    }
    /// Sets [`ConnectionConfig::follow_redirects`].
    pub fn with_follow_redirects(mut self, on: bool) -> Self {
        self.follow_redirects = on;
        self
    }
    /// Sets [`ConnectionConfig::auth_on_redirect`].
    pub fn with_auth_on_redirect(mut self, on: bool) -> Self {
        self.auth_on_redirect = on;
        self
    }
    /// Test hook: the io_uring backend behaves as if the kernel lacked these features
    /// (comma-separated: `defer-taskrun`, `fixed-files`, `buffer-ring`, `multishot-recv`,
    /// `send-zc`, `zc-report-usage`, `sparse-buffers`, `cancel-fd`, `ext-arg`), so every
    /// fallback can be exercised on a kernel that has them all.
    #[doc(hidden)]
    pub fn with_masked_uring_features(mut self, names: &str) -> Self {
        self.masked_uring_features = names.to_owned();
        self
    }
    /// Sets the reconnect back-off range.
    pub fn with_reconnect_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.reconnect_backoff = first;
        self.reconnect_backoff_max = max;
        self
    }

    /// How threads waiting on this connection's outcomes wait: the ring's setting, or
    /// this one's for a ring of its own.
    pub(crate) fn effective_idle(&self) -> IdleStrategy {
        self.ring.as_ref().map_or(self.idle, |r| r.inner.idle)
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.addrs.is_empty() {
            return Err(Error::Config("no server address".into()));
        }
        for a in &self.addrs {
            check_addr(a)?;
        }
        if self.keepalive_interval.is_zero() || self.peer_timeout.is_zero() {
            return Err(Error::Config(
                "keepalive_interval and peer_timeout must be positive".into(),
            ));
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("keepalive_interval", self.keepalive_interval),
            ("peer_timeout", self.peer_timeout),
            ("reconnect_backoff", self.reconnect_backoff),
            ("reconnect_backoff_max", self.reconnect_backoff_max),
        ] {
            check_duration(name, d)?;
        }
        self.uring_mask()?;
        Ok(())
    }

    fn uring_mask(&self) -> Result<u32, Error> {
        #[cfg(target_os = "linux")]
        {
            crate::driver::uring::probe::Features::parse_mask(&self.masked_uring_features)
                .map_err(Error::Config)
        }
        #[cfg(not(target_os = "linux"))]
        {
            Ok(0)
        }
    }

    pub(crate) fn driver_config(&self, name: &str) -> DriverConfig {
        DriverConfig {
            addrs: self.addrs.clone(),
            session: SessionConfig {
                checksum: self.checksum,
                keepalive_interval: self.keepalive_interval,
                peer_timeout: self.peer_timeout,
                auth_token: self.auth_token.clone(),
                ..SessionConfig::default()
            },
            name: name.to_owned(),
            connect_timeout: self.connect_timeout,
            backoff_base: self.reconnect_backoff,
            backoff_max: self.reconnect_backoff_max,
            ring: self.ring.clone(),
            own_ring: RingConfig {
                name: name.to_owned(),
                backend: self.backend,
                pin_cpu: self.pin_cpu,
                idle: self.idle,
                masked_uring_features: self.uring_mask().unwrap_or(0),
            },
            zero_copy: self.zero_copy,
            follow_redirects: self.follow_redirects,
            auth_on_redirect: self.auth_on_redirect,
            ..DriverConfig::default()
        }
    }
}

/// Checks the form of a server address, without resolving it: `host:port`, `ip:port` or
/// `[v6]:port`, with a port in 1..=65535 and a host name of letters, digits, `-`, `_` and
/// `.`. A malformed address is a configuration error (not retryable), not a failure to
/// connect.
fn check_addr(addr: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::Config(format!(
            "server address {addr:?} {why} (expected host:port, ip:port or [v6]:port)"
        )))
    };
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let Some((v6, port)) = rest.split_once("]:") else {
            return bad("has no port after the bracketed IPv6 address");
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("has an invalid IPv6 address in brackets");
        }
        (None, port)
    } else {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return bad("has no port");
        };
        (Some(host), port)
    };
    if let Some(host) = host {
        if host.is_empty() {
            return bad("has no host");
        }
        if host.contains(':') {
            return bad("is an IPv6 address without brackets");
        }
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if host.len() > 253 || !host.chars().all(name_char) {
            return bad("has an invalid host name");
        }
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => bad("has an invalid port (1..=65535)"),
    }
}

/// Longest duration accepted in a configuration: a year (anything longer means "never"
/// in practice and risks overflowing clock arithmetic).
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

pub(crate) fn check_duration(name: &str, d: Duration) -> Result<(), Error> {
    if d > MAX_DURATION {
        return Err(Error::Config(format!(
            "{name} must be at most a year, got {d:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_for_form_without_resolving() {
        for good in [
            "127.0.0.1:1992",
            "localhost:1",
            "lance-1.example.internal:65535",
            "node_2:1992",
            "[::1]:1992",
            "[fe80::1]:8080",
        ] {
            assert!(check_addr(good).is_ok(), "{good}");
            assert!(ConnectionConfig::new(good).validate().is_ok(), "{good}");
        }
        for bad in [
            "foo",
            "127.0.0.1:99999",
            "127.0.0.1:0",
            "127.0.0.1:",
            "127.0.0.1:+80",
            ":1992",
            "::1:1992",
            "[::1]",
            "[not-v6]:1992",
            "host name:1992",
            "",
        ] {
            let e = ConnectionConfig::new(bad).validate().unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{bad}: {e:?}");
            assert!(!e.is_retryable(), "{bad}");
        }
        let seeds = ConnectionConfig::new("127.0.0.1:1992").with_seed("bad");
        assert!(matches!(seeds.validate(), Err(Error::Config(_))));
    }
}
