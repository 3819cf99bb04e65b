//! Producer throughput and send-with-ACK latency against the embedded server
//! (immediate ACKs), beside a raw blocking-socket baseline measured in the same run.
//!
//! Run: `cargo bench --bench producer` (optional env: `SECS=3`, `RECORD=1024`,
//! `LAT_N=20000`).
//!
//! * Baseline throughput: the fair floor of `benches/support/floor.rs`: one blocking
//!   `std::net` socket, frames pre-built once (the same 32 KiB batches of TLV records the
//!   producer makes), written 16 per `write_all` with TCP back-pressure as the only
//!   pacing, and a reader thread reading every ACK. No encoding, no CRC per send.
//!   Client CPU per GB, peak RSS and read-back are in `benches/cost.rs`.
//! * Baseline latency: write one frame with one 64-byte record, read its ACK, repeat.
//! * lnc-uring: `Producer::send_async` of records in a loop, then `flush`; `Producer::send`
//!   of one 64-byte record at a time with `linger` 0, once per idle strategy (the same
//!   strategy for the driver thread and the waiting caller): `block` (the default),
//!   `backoff` (spin ~50 µs, then park 50 µs..1 ms), `busy-spin` (two threads never sleep).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lnc_uring::testkit::TestServer;
use lnc_uring::{Backend, ConnectionConfig, IdleStrategy, Producer, ProducerConfig};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[path = "support/floor.rs"]
mod floor;

fn raw_throughput(server: &TestServer, topic: u32, size: usize, secs: f64) -> (f64, f64) {
    let p = floor::produce_frames(
        server.addr(),
        topic,
        size,
        floor::BATCH_SIZE,
        floor::Stop::Time(Duration::from_secs_f64(secs)),
    );
    let el = p.elapsed.as_secs_f64();
    let n = p.records as f64;
    (n / el, n * size as f64 / el / 1e6)
}

fn raw_latency(server: &TestServer, topic: u32, n: u64) -> Histogram<u64> {
    floor::send_with_ack(server.addr(), topic, 64, n)
}

fn producer(
    server: &TestServer,
    backend: Backend,
    cfg: ProducerConfig,
    idle: IdleStrategy,
) -> Producer {
    let c = ConnectionConfig::new(server.addr().to_string())
        .with_backend(backend)
        .with_idle(idle);
    Producer::with_config(cfg.with_connection(c)).unwrap()
}

fn our_throughput(
    server: &TestServer,
    topic: u32,
    backend: Backend,
    size: usize,
    secs: f64,
) -> (f64, f64, String) {
    let p = producer(
        server,
        backend,
        ProducerConfig::default(),
        IdleStrategy::Block,
    );
    let v = vec![0x5Au8; size];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..256 {
            p.send_async(topic, &v).unwrap();
        }
        n += 256;
    }
    p.flush(Duration::from_secs(60)).unwrap();
    let el = start.elapsed().as_secs_f64();
    let s = p.stats();
    let info = format!(
        "backend {}, {} batches, ack p50 {} µs, {} send ops",
        s.driver.backend, s.batches_sealed, s.ack_latency.p50_us, s.driver.send_ops
    );
    p.close(Duration::from_secs(10)).unwrap();
    (n as f64 / el, n as f64 * size as f64 / el / 1e6, info)
}

fn our_latency(
    server: &TestServer,
    topic: u32,
    backend: Backend,
    n: u64,
    idle: IdleStrategy,
) -> Histogram<u64> {
    let p = producer(
        server,
        backend,
        ProducerConfig::default().with_linger(Duration::ZERO),
        idle,
    );
    let v = [0x5Au8; 64];
    let mut h = Histogram::<u64>::new(3).unwrap();
    for i in 0..n + 1000 {
        let t = Instant::now();
        p.send(topic, &v).unwrap();
        if i >= 1000 {
            h.record(t.elapsed().as_nanos() as u64).unwrap();
        }
    }
    p.close(Duration::from_secs(10)).unwrap();
    h
}

use floor::us;

fn idle_strategies() -> [(&'static str, IdleStrategy); 3] {
    [
        ("block", IdleStrategy::Block),
        (
            "backoff",
            IdleStrategy::Backoff {
                spins: 1000,
                yields: 0,
                min_park: Duration::from_micros(50),
                max_park: Duration::from_millis(1),
            },
        ),
        ("busy-spin", IdleStrategy::BusySpin),
    ]
}

fn main() {
    let secs = env("SECS", 3) as f64;
    let size = env("RECORD", 1024) as usize;
    let lat_n = env("LAT_N", 20_000);
    let server = TestServer::builder().discard_data(true).start().unwrap();
    let topic = server.create_topic("bench");
    let mut backends = vec![Backend::Poll];
    if Backend::io_uring_available() {
        backends.insert(0, Backend::IoUring);
    }
    println!(
        "machine: {} CPUs; record {size} B; {secs} s per throughput run; {lat_n} latency samples",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    println!("\n== producer throughput ({size} B records, one connection, immediate ACKs)");
    let (brec, bmb) = raw_throughput(&server, topic, size, secs);
    println!(
        "{:<28} {:>12.0} rec/s {:>9.1} MB/s",
        "fair floor (raw socket)", brec, bmb
    );
    for &b in &backends {
        let (rec, mb, info) = our_throughput(&server, topic, b, size, secs);
        println!(
            "{:<28} {:>12.0} rec/s {:>9.1} MB/s   {:.2}x floor   ({info})",
            format!("lnc-uring {b}"),
            rec,
            mb,
            rec / brec
        );
    }

    println!("\n== send-with-ACK round trip (64 B record, one at a time)");
    let base = raw_latency(&server, topic, lat_n);
    println!(
        "{:<36} p50 {:>8.1} µs  p99 {:>8.1} µs  p99.9 {:>8.1} µs",
        "raw blocking ping-pong (floor)",
        us(&base, 0.5),
        us(&base, 0.99),
        us(&base, 0.999)
    );
    for &b in &backends {
        for (name, idle) in idle_strategies() {
            let h = our_latency(&server, topic, b, lat_n, idle);
            println!(
                "{:<36} p50 {:>8.1} µs  p99 {:>8.1} µs  p99.9 {:>8.1} µs   p50 {:.2}x  p99 {:.2}x floor",
                format!("lnc-uring {b}, {name}"),
                us(&h, 0.5),
                us(&h, 0.99),
                us(&h, 0.999),
                us(&h, 0.5) / us(&base, 0.5),
                us(&h, 0.99) / us(&base, 0.99),
            );
        }
    }
}
