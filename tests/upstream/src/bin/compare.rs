//! The comparison harness: in one run, against the same embedded server (immediate ACKs,
//! loopback), (a) lnc-uring, (b) the upstream Rust `lnc-client` 0.2.8 (Producer and
//! Consumer, on tokio), (c) the floor: plain blocking `std::net` clients writing
//! pre-built frames and reading ACKs, and a plain fetch loop. Prints each figure and the
//! ratios.
//!
//! Run: `cargo run --release --manifest-path tests/upstream/Cargo.toml --bin compare`
//! (env: `RECORDS=300000`, `LAT_N=5000`).

#[path = "../../../../benches/support/floor.rs"]
mod floor;

use std::time::{Duration, Instant};

use floor::us;
use hdrhistogram::Histogram;
use lnc_client::{ClientConfig, Consumer, ConsumerConfig, LanceClient, Producer, ProducerConfig, SeekPosition};
use lnc_uring::proto::encode_raw;
use lnc_uring::testkit::TestServer;
use lnc_uring::{Backend, ConnectionConfig};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn tlv(size: usize) -> Vec<u8> {
    let mut v = Vec::new();
    encode_raw(&mut v, &vec![0x5Au8; size]).unwrap();
    v
}

fn ours_produce(addr: &str, topic: u32, size: usize, n: u64) -> f64 {
    let c = ConnectionConfig::new(addr).with_backend(Backend::Auto);
    let p = lnc_uring::Producer::with_config(lnc_uring::ProducerConfig::default().with_connection(c)).unwrap();
    let v = vec![0x5Au8; size];
    let start = Instant::now();
    for _ in 0..n {
        p.send_async(topic, &v).unwrap();
    }
    p.flush(Duration::from_secs(600)).unwrap();
    let r = n as f64 / start.elapsed().as_secs_f64();
    p.close(Duration::from_secs(10)).unwrap();
    r
}

fn ours_latency(addr: &str, topic: u32, n: u64, latency_mode: bool) -> Histogram<u64> {
    let mut c = ConnectionConfig::new(addr);
    if latency_mode {
        c = c.with_busy_poll(Duration::from_millis(50)).with_spin(Duration::from_millis(1));
    }
    let p = lnc_uring::Producer::with_config(
        lnc_uring::ProducerConfig::default().with_linger(Duration::ZERO).with_connection(c),
    )
    .unwrap();
    let v = [0x5Au8; 64];
    let mut h = Histogram::<u64>::new(3).unwrap();
    for i in 0..n + 500 {
        let t = Instant::now();
        p.send(topic, &v).unwrap();
        if i >= 500 {
            h.record(t.elapsed().as_nanos() as u64).unwrap();
        }
    }
    p.close(Duration::from_secs(10)).unwrap();
    h
}

fn ours_consume(addr: &str, topic: u32, total: u64) -> f64 {
    let cfg = lnc_uring::ConsumerConfig::new("compare", topic)
        .with_max_fetch_bytes(1 << 20)
        .with_auto_commit(None)
        .with_connection(ConnectionConfig::new(addr));
    let mut c = lnc_uring::StandaloneConsumer::connect(cfg).unwrap();
    let start = Instant::now();
    let mut records = 0u64;
    while c.current_offset() < total {
        let mut r = c.poll_timeout(Duration::from_secs(10)).unwrap().expect("data");
        records += r.records().count() as u64;
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    assert!(records > 0);
    c.close().unwrap();
    rate
}

async fn upstream_produce_async(addr: &str, topic: u32, size: usize, n: u64) -> f64 {
    let cfg = ProducerConfig::new().with_batch_size(32 * 1024).with_linger_ms(5).with_buffer_memory(256 << 20);
    let p = Producer::connect(addr, cfg).await.unwrap();
    let v = tlv(size);
    let start = Instant::now();
    for _ in 0..n {
        p.send_async(topic, &v).await.unwrap();
    }
    p.flush().await.unwrap();
    let r = n as f64 / start.elapsed().as_secs_f64();
    let _ = p.close().await;
    r
}

async fn upstream_produce_acked(addr: &str, topic: u32, size: usize, n: u64) -> f64 {
    let cfg = ProducerConfig::new().with_batch_size(32 * 1024).with_linger_ms(1);
    let p = Producer::connect(addr, cfg).await.unwrap();
    let v = tlv(size);
    let start = Instant::now();
    for _ in 0..n {
        p.send(topic, &v).await.unwrap();
    }
    let r = n as f64 / start.elapsed().as_secs_f64();
    let _ = p.close().await;
    r
}

async fn upstream_latency(addr: &str, topic: u32, n: u64) -> Histogram<u64> {
    let p = Producer::connect(addr, ProducerConfig::new().with_linger_ms(1)).await.unwrap();
    let v = tlv(64);
    let mut h = Histogram::<u64>::new(3).unwrap();
    for i in 0..n + 100 {
        let t = Instant::now();
        p.send(topic, &v).await.unwrap();
        if i >= 100 {
            h.record(t.elapsed().as_nanos() as u64).unwrap();
        }
    }
    let _ = p.close().await;
    h
}

async fn upstream_consume(addr: &str, topic: u32, total: u64) -> f64 {
    let client = LanceClient::connect(ClientConfig::new(addr)).await.unwrap();
    let mut c = Consumer::new(
        client,
        addr,
        ConsumerConfig::new(topic).with_start_position(SeekPosition::Beginning).with_max_fetch_bytes(1 << 20),
    );
    let start = Instant::now();
    let mut read = 0u64;
    while read < total {
        let b = c.next_batch().await.unwrap().expect("data");
        read += b.data.len() as u64;
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn row(name: &str, value: f64, unit: &str, base: f64, vs: &str) {
    println!("  {name:<44} {value:>14.0} {unit:<6} {:>7.2}x {vs}", value / base);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env("RECORDS", 300_000);
    let lat_n = env("LAT_N", 5_000);
    let size = 1024;
    println!("lnc-uring vs upstream lnc-client 0.2.8 vs the floor, one run, embedded server, loopback");

    // Producer throughput: a server that keeps no data.
    let sink = TestServer::builder().discard_data(true).start().unwrap();
    let addr = sink.addr().to_string();
    let t = sink.create_topic("produce");
    let (floor_rec, _) = tokio::task::spawn_blocking({
        let a = sink.addr();
        move || floor::produce(a, t, size, n)
    })
    .await
    .unwrap();
    let ours = tokio::task::spawn_blocking({
        let a = addr.clone();
        move || ours_produce(&a, t, size, n)
    })
    .await
    .unwrap();
    let up_async = upstream_produce_async(&addr, t, size, n).await;
    let up_acked = upstream_produce_acked(&addr, t, size, (n / 50).max(1000)).await;
    println!("\nproducer throughput, {size} B records, one connection");
    row("floor: raw socket, pre-built frames", floor_rec, "rec/s", floor_rec, "floor");
    row("lnc-uring Producer::send_async + flush", ours, "rec/s", floor_rec, "floor");
    row("upstream Producer::send_async + flush", up_async, "rec/s", floor_rec, "floor");
    row("upstream Producer::send (each acked)", up_acked, "rec/s", floor_rec, "floor");
    println!(
        "  lnc-uring / upstream: {:.1}x (send_async), {:.1}x (acked send)",
        ours / up_async,
        ours / up_acked
    );

    // Send-with-ACK round trip, 64 B.
    let base = tokio::task::spawn_blocking({
        let a = sink.addr();
        move || floor::send_with_ack(a, t, 64, lat_n)
    })
    .await
    .unwrap();
    let ours_h = tokio::task::spawn_blocking({
        let a = addr.clone();
        move || ours_latency(&a, t, lat_n, false)
    })
    .await
    .unwrap();
    let ours_fast = tokio::task::spawn_blocking({
        let a = addr.clone();
        move || ours_latency(&a, t, lat_n, true)
    })
    .await
    .unwrap();
    let up_h = upstream_latency(&addr, t, (lat_n / 5).max(200)).await;
    println!("\nsend with ACK, 64 B record, one at a time (p50 / p99 µs, ratio to the floor)");
    for (name, h) in [
        ("floor: raw blocking ping-pong", &base),
        ("lnc-uring Producer::send", &ours_h),
        ("lnc-uring latency mode (busy-poll + spin)", &ours_fast),
        ("upstream Producer::send (linger 1 ms)", &up_h),
    ] {
        println!(
            "  {name:<44} {:>9.1} / {:>9.1}   {:>6.2}x / {:>6.2}x",
            us(h, 0.5),
            us(h, 0.99),
            us(h, 0.5) / us(&base, 0.5),
            us(h, 0.99) / us(&base, 0.99)
        );
    }
    drop(sink);

    // Consumer read-back of the same log.
    let store = TestServer::start().unwrap();
    let addr = store.addr().to_string();
    let t = store.create_topic("consume");
    let fill = (n / 2).max(1000);
    tokio::task::spawn_blocking({
        let a = addr.clone();
        move || ours_produce(&a, t, size, fill)
    })
    .await
    .unwrap();
    let total = store.topic_size(t);
    let floor_bps = tokio::task::spawn_blocking({
        let a = store.addr();
        move || floor::fetch_all(a, t, 1 << 20, total)
    })
    .await
    .unwrap();
    let ours_bps = tokio::task::spawn_blocking({
        let a = addr.clone();
        move || ours_consume(&a, t, total)
    })
    .await
    .unwrap();
    let up_bps = upstream_consume(&addr, t, total).await;
    println!("\nconsumer read-back of {:.0} MB, 1 MiB fetches", total as f64 / 1e6);
    row("floor: raw blocking fetch loop", floor_bps / 1e6, "MB/s", floor_bps / 1e6, "floor");
    row("lnc-uring StandaloneConsumer (whole records)", ours_bps / 1e6, "MB/s", floor_bps / 1e6, "floor");
    row("upstream Consumer (raw bytes)", up_bps / 1e6, "MB/s", floor_bps / 1e6, "floor");
    println!("  lnc-uring / upstream: {:.1}x", ours_bps / up_bps);
}
