//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use lnc_uring::proto::RecordIter;
use lnc_uring::testkit::TestServer;
use lnc_uring::{Backend, ConnectionConfig};

/// The backends every client test runs on: `poll` always, io_uring where the kernel
/// allows it (a test run under a seccomp profile that blocks io_uring says so).
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Poll];
    if Backend::io_uring_available() {
        v.push(Backend::IoUring);
    } else {
        eprintln!("io_uring unavailable here: testing the poll backend only");
    }
    v
}

pub fn conn(server: &TestServer, backend: Backend) -> ConnectionConfig {
    ConnectionConfig::new(server.addr().to_string())
        .with_backend(backend)
        .with_reconnect_backoff(Duration::from_millis(10), Duration::from_millis(200))
}

/// The values of every record stored in `topic`.
pub fn stored_values(server: &TestServer, topic: u32) -> Vec<Vec<u8>> {
    let data = server.topic_bytes(topic);
    RecordIter::new(&data)
        .map(|r| r.expect("complete records").value.to_vec())
        .collect()
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}
