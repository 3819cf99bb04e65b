//! `lnc-uring bench e2e`: produce→consume latency at a fixed rate.
//!
//! A producer sends record `i` at its scheduled time `t0 + i/rate`; a consumer in another
//! thread reads the topic and measures, for every record, `now − scheduled`. Measuring
//! from the schedule, not from the moment the record was actually sent, keeps a stall
//! (of the producer, the server, the consumer or the machine) in the figures: the
//! records that should have been sent meanwhile are late, and counted as late
//! (coordinated-omission correction).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use lnc_uring::{
    ConsumerConfig, Error, LanceClient, ProduceRecord, Producer, ProducerConfig, SeekPosition,
    StandaloneConsumer,
};
use serde_json::json;

use super::hgrm::Latencies;
use super::{conn_for, server_for, wait_until};
use crate::Cli;

/// Bytes of a record's value that carry its sequence number and scheduled time.
const STAMP_LEN: usize = 16;

#[derive(Args, Debug, Clone)]
pub(crate) struct E2eArgs {
    /// `embedded` (an in-process server) or a server address.
    #[arg(long, default_value = "embedded")]
    server: String,
    /// Records per second.
    #[arg(long, default_value = "1000", value_parser = super::parse_rate)]
    rate: f64,
    /// Seconds of sending, the warm-up included.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Seconds at the start whose records are not measured.
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,
    /// Record size in bytes (at least 16: sequence and scheduled time).
    #[arg(long, default_value_t = 64)]
    record_size: usize,
    /// Producer linger in milliseconds.
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
    /// The consumer's poll interval in milliseconds: the ceiling of its back-off when
    /// caught up (default: the consumer's, 50 ms).
    #[arg(long)]
    poll_interval_ms: Option<u64>,
    /// The consumer's bytes per fetch (default: the consumer's default).
    #[arg(long)]
    max_fetch_bytes: Option<u32>,
    /// Pin each driver thread to this CPU.
    #[arg(long)]
    pin_cpu: Option<usize>,
    /// Latency mode: the drivers busy-poll this many microseconds after activity and
    /// waiters spin before parking.
    #[arg(long)]
    busy_poll_us: Option<u64>,
    /// Write the latency distribution (µs) to this file in HdrHistogram's percentile
    /// text format (.hgrm).
    #[arg(long)]
    hdr_out: Option<PathBuf>,
    /// How long the consumer may take, once the producer is done, to read what is left,
    /// in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    drain_ms: u64,
}

/// What the consumer thread saw.
struct Received {
    lat: Latencies,
    records: u64,
    unique: u64,
    backend: &'static str,
}

pub(crate) fn run(cli: &Cli, a: &E2eArgs) -> Result<(), Error> {
    if a.record_size < STAMP_LEN {
        return Err(Error::Config(format!(
            "--record-size must be at least {STAMP_LEN} (sequence and scheduled time), got {}",
            a.record_size
        )));
    }
    if a.duration_secs <= a.warmup_secs {
        return Err(Error::Config(format!(
            "--duration-secs ({}) must be longer than --warmup-secs ({})",
            a.duration_secs, a.warmup_secs
        )));
    }
    let total = (a.rate * a.duration_secs as f64).floor() as u64;
    if total == 0 || total > 100_000_000 {
        return Err(Error::Config(format!(
            "--rate × --duration-secs must be 1..=100000000 records, got {total}"
        )));
    }
    let (_guard, addr) = server_for(&a.server, false)?;
    let conn = conn_for(cli, &addr, a.pin_cpu, a.busy_poll_us);
    let topic = LanceClient::with_config(conn.clone())?
        .ensure_topic("bench-e2e")?
        .id;

    let mut ccfg = ConsumerConfig::new("lnc-uring-bench-e2e", topic)
        .with_start(SeekPosition::End)
        .with_connection(conn.clone());
    if let Some(ms) = a.poll_interval_ms {
        ccfg = ccfg.with_poll_interval(Duration::from_millis(ms));
    }
    if let Some(n) = a.max_fetch_bytes {
        ccfg = ccfg.with_max_fetch_bytes(n);
    }
    // Positioned at the end before the first record is sent.
    let consumer = StandaloneConsumer::connect(ccfg)?;
    let producer = Producer::with_config(
        ProducerConfig::default()
            .with_linger_ms(a.linger_ms)
            .with_connection(conn),
    )?;

    let warmup = Duration::from_secs(a.warmup_secs);
    let t0 = Instant::now() + Duration::from_millis(20);
    let sent = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let drain = Duration::from_millis(a.drain_ms);

    let (produced, received) = std::thread::scope(|s| {
        let consumer_thread = s.spawn(|| consume(consumer, t0, warmup, total, &sent, &done, drain));
        let produced = produce(&producer, topic, a.record_size, t0, a.rate, total, &sent);
        let flushed = producer.flush(Duration::from_secs(60));
        done.store(true, Ordering::Release);
        let received = consumer_thread.join().expect("consumer thread");
        (produced.and_then(|l| flushed.map(|()| l)), received)
    });
    let closed = producer.close(Duration::from_secs(10));
    let late = produced?;
    closed?;
    let r = received?;
    let sent = sent.load(Ordering::Acquire);

    if let Some(path) = &a.hdr_out {
        r.lat.write_hgrm(path)?;
    }
    if cli.json {
        let mut v = json!({
            "bench": "e2e", "rate": a.rate, "duration_secs": a.duration_secs,
            "warmup_secs": a.warmup_secs, "record_size": a.record_size,
            "linger_ms": a.linger_ms, "records_sent": sent, "records_received": r.records,
            "records_unique": r.unique, "records_measured": r.lat.count(),
            "send_late_max_us": late.max_us, "sends_late_1ms": late.over_1ms,
            "backend": r.backend,
        });
        r.lat.add_json(v.as_object_mut().expect("an object"));
        println!("{v}");
    } else {
        println!(
            "e2e: {} records/s for {} s ({} B records, linger {} ms, {}): sent {sent}, received {} ({} distinct), measured {} after {} s of warm-up",
            a.rate, a.duration_secs, a.record_size, a.linger_ms, r.backend, r.records, r.unique,
            r.lat.count(), a.warmup_secs
        );
        println!("latency from scheduled send to read: {}", r.lat.line());
        println!(
            "producer: latest send {:.1} µs after its schedule, {} sends more than 1 ms late",
            late.max_us, late.over_1ms
        );
    }
    if r.unique < sent {
        return Err(Error::Timeout(format!(
            "{} of {sent} records were not read within {} ms of the last send",
            sent - r.unique,
            a.drain_ms
        )));
    }
    Ok(())
}

/// How late the producer was against its schedule.
struct Lateness {
    max_us: f64,
    over_1ms: u64,
}

fn produce(
    p: &Producer,
    topic: u32,
    size: usize,
    t0: Instant,
    rate: f64,
    total: u64,
    sent: &AtomicU64,
) -> Result<Lateness, Error> {
    let mut v = vec![0x5Au8; size];
    let mut late = Lateness {
        max_us: 0.0,
        over_1ms: 0,
    };
    for i in 0..total {
        // In whole nanoseconds, so that integral rates schedule exactly.
        let offset = Duration::from_nanos((i as f64 * 1e9 / rate).round() as u64);
        let at = t0 + offset;
        // Late (a stall here, or a slow send before): send at once; the consumer still
        // measures from `at`.
        wait_until(at);
        let behind = at.elapsed();
        late.max_us = late.max_us.max(behind.as_secs_f64() * 1e6);
        if behind > Duration::from_millis(1) {
            late.over_1ms += 1;
        }
        v[..8].copy_from_slice(&i.to_le_bytes());
        v[8..16].copy_from_slice(&(offset.as_nanos() as u64).to_le_bytes());
        p.produce(topic, ProduceRecord::Raw(&v))?;
        sent.store(i + 1, Ordering::Release);
    }
    Ok(late)
}

fn consume(
    mut c: StandaloneConsumer,
    t0: Instant,
    warmup: Duration,
    total: u64,
    sent: &AtomicU64,
    done: &AtomicBool,
    drain: Duration,
) -> Result<Received, Error> {
    let warmup_ns = warmup.as_nanos() as u64;
    let mut seen = vec![false; total as usize];
    let mut r = Received {
        lat: Latencies::new(),
        records: 0,
        unique: 0,
        backend: c.stats().backend,
    };
    let mut drain_until: Option<Instant> = None;
    loop {
        if done.load(Ordering::Acquire) {
            if r.unique >= sent.load(Ordering::Acquire) {
                break;
            }
            let until = *drain_until.get_or_insert_with(|| Instant::now() + drain);
            if Instant::now() >= until {
                break;
            }
        }
        let Some(mut batch) = c.poll_timeout(Duration::from_millis(100))? else {
            continue;
        };
        for rec in batch.records() {
            let rec = rec?;
            let now = Instant::now();
            r.records += 1;
            let Some(stamp) = rec.value.get(..STAMP_LEN) else {
                continue;
            };
            let seq = u64::from_le_bytes(stamp[..8].try_into().expect("8 bytes"));
            let sched_ns = u64::from_le_bytes(stamp[8..].try_into().expect("8 bytes"));
            let Some(first) = seen.get_mut(seq as usize) else {
                continue;
            };
            if std::mem::replace(first, true) {
                continue;
            }
            r.unique += 1;
            if sched_ns >= warmup_ns {
                let at = t0 + Duration::from_nanos(sched_ns);
                r.lat
                    .record(now.saturating_duration_since(at).as_nanos() as u64);
            }
        }
    }
    c.close()?;
    Ok(r)
}
