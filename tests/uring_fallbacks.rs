//! Every io_uring fallback path, exercised on a kernel that has every feature: the test
//! hook masks features so the backend behaves as it would on an older kernel (or under a
//! policy that refuses an operation). Each configuration produces large and small
//! records through a server restart, reads them back, and must lose nothing.

mod common;

use std::time::Duration;

use common::stored_values;
use lnc_uring::testkit::TestServer;
use lnc_uring::{
    Backend, ConnectionConfig, ConsumerConfig, Producer, ProducerConfig, StandaloneConsumer,
    ZeroCopy,
};

fn values() -> Vec<Vec<u8>> {
    // Small records, and records over 16 KiB so batches take the SEND_ZC path.
    (0..120)
        .map(|i: usize| {
            let len = if i.is_multiple_of(10) {
                40_000
            } else {
                100 + i
            };
            let mut v = format!("{i:06}").into_bytes();
            v.resize(len, (i % 251) as u8);
            v
        })
        .collect()
}

fn round_trip(mask: &str, zero_copy: ZeroCopy) -> &'static str {
    let dir = std::env::temp_dir().join(format!(
        "lnc-uring-fallback-{}-{}",
        std::process::id(),
        mask.replace(',', "+")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let server = TestServer::builder().data_dir(&dir).start().unwrap();
    let topic = server.create_topic("t");
    let conn = ConnectionConfig::new(server.addr().to_string())
        .with_backend(Backend::Auto)
        .with_zero_copy(zero_copy)
        .with_masked_uring_features(mask)
        .with_reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100));
    let vals = values();
    let p = Producer::with_config(
        ProducerConfig::default()
            .with_linger_ms(1)
            .with_batch_size(64 * 1024)
            .with_connection(conn.clone()),
    )
    .unwrap();
    let backend = p.stats().driver.backend;
    let (first, second) = vals.split_at(60);
    for v in first {
        p.send_async(topic, v).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    // A reconnect on the same path: cancel, close, connect again.
    server.restart().unwrap();
    for v in second {
        p.send_async(topic, v).unwrap();
    }
    p.flush(Duration::from_secs(20)).unwrap();
    p.close(Duration::from_secs(5)).unwrap();
    // Duplicates are allowed (at-least-once across the restart); loss and reordering
    // within each half are not.
    let stored = stored_values(&server, topic);
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<Vec<u8>> = stored
        .into_iter()
        .filter(|v| seen.insert(v.clone()))
        .collect();
    assert_eq!(unique, vals, "mask {mask:?}");

    let mut c = StandaloneConsumer::connect(
        ConsumerConfig::new("reader", topic)
            .with_max_fetch_bytes(100_000)
            .with_connection(conn),
    )
    .unwrap();
    let mut read = Vec::new();
    while read.len() < unique.len() {
        let Some(mut batch) = c.poll_timeout(Duration::from_secs(5)).unwrap() else {
            break;
        };
        for r in batch.records() {
            read.push(r.unwrap().value.to_vec());
        }
    }
    let mut seen = std::collections::HashSet::new();
    read.retain(|v| seen.insert(v.clone()));
    assert_eq!(read, vals, "mask {mask:?}: read back");
    c.close().unwrap();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    backend
}

#[test]
fn each_missing_feature_falls_back_and_loses_nothing() {
    if !Backend::io_uring_available() {
        eprintln!("io_uring unavailable here: nothing to mask");
        return;
    }
    for (mask, zc) in [
        ("", ZeroCopy::Always),
        ("multishot-recv", ZeroCopy::Auto),
        ("buffer-ring", ZeroCopy::Auto),
        ("fixed-files", ZeroCopy::Always),
        ("cancel-fd", ZeroCopy::Always),
        ("defer-taskrun", ZeroCopy::Auto),
        ("sparse-buffers", ZeroCopy::Always),
        // SEND_ZC without usage reports: only with `Always` (nothing tells when it copies).
        ("zc-report-usage", ZeroCopy::Always),
        ("zc-report-usage", ZeroCopy::Auto),
        ("send-zc", ZeroCopy::Always),
        (
            "defer-taskrun,fixed-files,buffer-ring,multishot-recv,send-zc,zc-report-usage,sparse-buffers,cancel-fd",
            ZeroCopy::Always,
        ),
    ] {
        assert_eq!(round_trip(mask, zc), "io_uring", "mask {mask:?}");
    }
}

#[test]
fn without_timed_waits_the_poll_backend_takes_over() {
    if !Backend::io_uring_available() {
        return;
    }
    assert_eq!(round_trip("ext-arg", ZeroCopy::Auto), "poll");
}

#[test]
fn an_unknown_feature_name_is_a_configuration_error() {
    let server = TestServer::start().unwrap();
    let r = Producer::with_config(ProducerConfig::default().with_connection(
        ConnectionConfig::new(server.addr().to_string()).with_masked_uring_features("warp"),
    ));
    assert!(matches!(r, Err(lnc_uring::Error::Config(_))));
}
