//! The main job: produce records with acknowledgements, read them back, check every one.
//!
//! ```sh
//! cargo run --release --example quickstart                 # embedded server
//! LANCE_ADDR=127.0.0.1:1992 cargo run --release --example quickstart   # a real server
//! RECORDS=2000000 RECORD_SIZE=1024 cargo run --release --example quickstart
//! ```
//!
//! With no `LANCE_ADDR` it starts the embedded, Lance-compatible test server in-process.
//! It creates a topic, produces `RECORDS` records (each: a u64 sequence number and a
//! deterministic body) through a [`Producer`] that waits for every acknowledgement,
//! reads the topic back with a [`StandaloneConsumer`] (which carries records that a fetch
//! cuts in half over to the next fetch), checks every record byte for byte and in order,
//! and prints records/s, MB/s and the acknowledgement latency.
//!
//! Settings (environment): `RECORDS` (default 1000000) and `RECORD_SIZE` in bytes (default
//! 256, at least 8: each value starts with its 8-byte sequence number) are whole decimal
//! numbers; `LANCE_ADDR` is `host:port`. Unset or empty means the default. Anything else
//! is refused with a message naming the setting, and exit code 2.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use lnc_uring::testkit::TestServer;
use lnc_uring::{
    ConnectionConfig, ConsumerConfig, LanceClient, Producer, ProducerConfig, SeekPosition,
    StandaloneConsumer,
};

/// A whole-number setting: `default` when unset or empty, an error for anything else
/// that is not a decimal number.
fn env(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(std::env::VarError::NotUnicode(v)) => Err(format!("{name}={v:?} is not a number")),
        Ok(v) if v.is_empty() => Ok(default),
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a whole decimal number")),
    }
}

struct Settings {
    records: u64,
    size: usize,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let records = env("RECORDS", 1_000_000)?;
        let size = env("RECORD_SIZE", 256)?;
        if size < 8 {
            return Err(format!(
                "RECORD_SIZE={size} is too small: each value starts with its 8-byte sequence number"
            ));
        }
        let size = usize::try_from(size).map_err(|_| format!("RECORD_SIZE={size} is too large"))?;
        Ok(Settings { records, size })
    }
}

/// The value of record `seq`: its number, then `size - 8` bytes derived from it.
fn fill(seq: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend(
        (0..size.saturating_sub(8)).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8),
    );
}

fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("quickstart: {msg}");
            return ExitCode::from(2);
        }
    };
    match run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart failed: {e}");
            // A malformed LANCE_ADDR is a configuration error too.
            match e.downcast_ref::<lnc_uring::Error>() {
                Some(lnc_uring::Error::Config(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn run(Settings { records, size }: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let (_embedded, addr) = match std::env::var("LANCE_ADDR") {
        Ok(a) if !a.is_empty() => (None, a),
        _ => {
            let s = TestServer::start()?;
            let a = s.addr().to_string();
            println!("embedded Lance-compatible server on {a} (set LANCE_ADDR to use a real one)");
            (Some(s), a)
        }
    };

    let admin = LanceClient::connect(&addr)?;
    let topic = admin.ensure_topic(&format!("quickstart-{}", std::process::id()))?;
    let base = admin.end_offset(topic.id)?;
    println!(
        "topic {:?} (id {}), starting at offset {base}",
        topic.name, topic.id
    );

    // Produce, acknowledged.
    let producer = Producer::connect(&addr, ProducerConfig::default())?;
    let mut value = Vec::with_capacity(size);
    let start = Instant::now();
    for seq in 0..records {
        fill(seq, size, &mut value);
        producer.send_async(topic.id, &value)?;
    }
    producer.flush(Duration::from_secs(120))?;
    let produce_time = start.elapsed();
    let stats = producer.stats();
    producer.close(Duration::from_secs(10))?;
    if stats.records_failed > 0 {
        return Err(format!("{} records failed", stats.records_failed).into());
    }
    let bytes = records as f64 * (size + 5) as f64;
    println!(
        "produced {records} records of {size} B in {:.2} s: {:.0} records/s, {:.1} MB/s ({} backend, {} batches)",
        produce_time.as_secs_f64(),
        records as f64 / produce_time.as_secs_f64(),
        bytes / produce_time.as_secs_f64() / 1e6,
        stats.driver.backend,
        stats.batches_sealed,
    );
    let l = stats.ack_latency;
    println!(
        "batch ack latency: p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
        l.p50_us, l.p99_us, l.p999_us, l.max_us
    );

    // Read back and check every record: the consumer delivers whole records even where
    // a fetch cut one in half.
    let cfg = ConsumerConfig::new("quickstart", topic.id)
        .with_start(SeekPosition::Offset(base))
        .with_max_fetch_bytes(1 << 20)
        .with_auto_commit(None)
        .with_connection(ConnectionConfig::new(addr.clone()));
    let mut consumer = StandaloneConsumer::connect(cfg)?;
    let start = Instant::now();
    let mut next_seq = 0u64;
    let mut expected = Vec::with_capacity(size);
    while next_seq < records {
        let Some(mut batch) = consumer.poll_timeout(Duration::from_secs(10))? else {
            return Err(format!("log ended with {next_seq} of {records} records read").into());
        };
        for rec in batch.records() {
            let rec = rec?;
            fill(next_seq, size, &mut expected);
            if rec.value != expected.as_slice() {
                return Err(format!("record {next_seq} differs from what was sent").into());
            }
            next_seq += 1;
        }
    }
    consumer.close()?;
    let read_time = start.elapsed();
    println!(
        "read back and checked {records} records in {:.2} s: {:.0} records/s, {:.1} MB/s",
        read_time.as_secs_f64(),
        records as f64 / read_time.as_secs_f64(),
        bytes / read_time.as_secs_f64() / 1e6,
    );
    println!("OK: every record arrived once, in order, byte for byte");
    admin.close();
    Ok(())
}
