//! `lnc-uring produce`.

use std::io::BufRead;
use std::time::{Duration, Instant};

use lnc_uring::{Error, LanceClient, Producer, ProducerConfig};
use serde_json::json;

use crate::{connection, resolve, Cli, ProduceArgs};

/// Generated record `seq`: 12 digits, then letters, `size` bytes in all (at least 12).
fn generated(seq: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(format!("{seq:012}").as_bytes());
    out.extend((0..size.saturating_sub(12)).map(|i| b'a' + ((seq as usize + i) % 26) as u8));
}

pub(crate) fn run(cli: &Cli, a: &ProduceArgs) -> Result<(), Error> {
    let admin = LanceClient::with_config(connection(cli))?;
    let topic = resolve(&admin, &a.topic, a.create)?;
    admin.close();
    let cfg = ProducerConfig::default()
        .with_batch_size(a.batch_size)
        .with_linger_ms(a.linger_ms)
        .with_compression(a.compression)
        .with_connection(connection(cli));
    let producer = Producer::with_config(cfg)?;
    let start = Instant::now();
    let mut n = 0u64;
    let mut bytes = 0u64;
    match a.count {
        Some(count) => {
            let mut v = Vec::with_capacity(a.size);
            for seq in 0..count {
                generated(seq, a.size, &mut v);
                producer.send_async(topic, &v)?;
                bytes += v.len() as u64;
                n += 1;
            }
        }
        None => {
            let stdin = std::io::stdin();
            let mut line = Vec::new();
            let mut lock = stdin.lock();
            loop {
                line.clear();
                let r = lock.read_until(b'\n', &mut line).map_err(Error::from)?;
                if r == 0 {
                    break;
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                producer.send_async(topic, &line)?;
                bytes += line.len() as u64;
                n += 1;
            }
        }
    }
    producer.flush(Duration::from_secs(300))?;
    let secs = start.elapsed().as_secs_f64();
    let stats = producer.stats();
    let failure = producer.first_failure();
    producer.close(Duration::from_secs(10))?;
    if let Some(e) = failure {
        eprintln!("lnc-uring: {} of {n} records failed", stats.records_failed);
        return Err(e);
    }
    if cli.json {
        println!(
            "{}",
            json!({ "topic_id": topic, "records": n, "bytes": bytes, "seconds": secs,
                    "records_per_sec": n as f64 / secs, "ack_p50_us": stats.ack_latency.p50_us,
                    "ack_p99_us": stats.ack_latency.p99_us, "backend": stats.driver.backend })
        );
    } else {
        eprintln!(
            "produced {n} records ({bytes} bytes) to topic {topic} in {secs:.2} s: {:.0} records/s, ack p50 {} µs p99 {} µs ({})",
            n as f64 / secs,
            stats.ack_latency.p50_us,
            stats.ack_latency.p99_us,
            stats.driver.backend
        );
    }
    Ok(())
}
