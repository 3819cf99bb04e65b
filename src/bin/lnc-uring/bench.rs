//! `lnc-uring bench`: produce throughput, send-with-ACK latency (back to back or at a
//! fixed rate), consume throughput, produce→consume latency at a fixed rate (`e2e`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use lnc_uring::testkit::TestServer;
use lnc_uring::{ConsumerConfig, Error, LanceClient, Producer, ProducerConfig, StandaloneConsumer};
use serde_json::json;

use crate::{connection, BenchArgs, BenchCmd, Cli};

mod e2e;
mod hgrm;

pub(crate) use e2e::E2eArgs;
use hgrm::Latencies;

/// The server to use: an embedded one (kept alive by the returned guard) or `addr`.
fn server(a: &BenchArgs, discard: bool) -> Result<(Option<TestServer>, String), Error> {
    server_for(&a.server, discard)
}

fn server_for(server: &str, discard: bool) -> Result<(Option<TestServer>, String), Error> {
    if server == "embedded" {
        let s = TestServer::builder().discard_data(discard).start()?;
        let addr = s.addr().to_string();
        Ok((Some(s), addr))
    } else {
        Ok((None, server.to_owned()))
    }
}

fn conn(cli: &Cli, a: &BenchArgs, addr: &str) -> lnc_uring::ConnectionConfig {
    let c = conn_for(cli, addr, a.pin_cpu, a.busy_poll_us);
    match a.idle {
        Some(idle) => c.with_idle(idle),
        None => c,
    }
}

fn conn_for(
    cli: &Cli,
    addr: &str,
    pin_cpu: Option<usize>,
    busy_poll_us: Option<u64>,
) -> lnc_uring::ConnectionConfig {
    let mut c = connection(cli);
    c.addrs = vec![addr.to_owned()];
    if let Some(cpu) = pin_cpu {
        c = c.with_pin_cpu(cpu);
    }
    if let Some(us) = busy_poll_us {
        c = c
            .with_busy_poll(Duration::from_micros(us))
            .with_spin(Duration::from_micros(us));
    }
    c
}

/// `--rate`: records per second, a positive finite number.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 10_000_000.0 => Ok(r),
        _ => Err(format!(
            "expected records per second, a number in (0, 10000000], got {s:?}"
        )),
    }
}

/// Returns at `t` or at once when `t` has passed: sleeps while more than 200 µs are
/// left (waking 100 µs early, as sleeps overshoot), then spins.
fn wait_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// `bench latency`'s options.
#[derive(Args, Debug, Clone)]
pub(crate) struct LatencyArgs {
    #[command(flatten)]
    common: BenchArgs,
    /// Send at this fixed rate (records per second) instead of back to back, and measure
    /// each round trip from the record's scheduled send time, so that a stall delays the
    /// records after it and counts in their latency.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Write the latency distribution (µs) to this file in HdrHistogram's percentile
    /// text format (.hgrm).
    #[arg(long)]
    hdr_out: Option<PathBuf>,
}

/// A progress line on standard error every `every` (none when zero) until stopped.
/// Stopping does not wait for the next tick.
struct Ticker {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(counter: Arc<AtomicU64>, every: Duration, what: &'static str) -> Ticker {
        if every.is_zero() {
            return Ticker {
                stop: None,
                thread: None,
            };
        }
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::spawn(move || {
            let mut last = 0;
            let mut t = Instant::now();
            let mut printed = false;
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(every)
            {
                let now = counter.load(Ordering::Relaxed);
                eprint!(
                    "\r{what}: {:>12.0}/s   total {now:>12}   ",
                    (now - last) as f64 / t.elapsed().as_secs_f64()
                );
                printed = true;
                last = now;
                t = Instant::now();
            }
            if printed {
                eprintln!();
            }
        });
        Ticker {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the ticker (call after the clock is read: its exit is not part of the run).
    fn stop(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(super) fn run(cli: &Cli, cmd: &BenchCmd) -> Result<(), Error> {
    match cmd {
        BenchCmd::Produce(a) => produce(cli, a),
        BenchCmd::Latency(a) => latency(cli, a),
        BenchCmd::Consume(a) => consume(cli, a),
        BenchCmd::E2e(a) => e2e::run(cli, a),
    }
}

fn producer(cli: &Cli, a: &BenchArgs, addr: &str) -> Result<Producer, Error> {
    Producer::with_config(
        ProducerConfig::default()
            .with_batch_size(a.batch_size)
            .with_linger_ms(a.linger_ms)
            .with_max_pending_acks(a.window)
            .with_compression(a.compression)
            .with_connections(a.connections.max(1), &a.pin_cpus)
            .with_spread(a.spread)
            .with_connection(conn(cli, a, addr)),
    )
}

fn produce(cli: &Cli, a: &BenchArgs) -> Result<(), Error> {
    let (_guard, addr) = server(a, true)?;
    let admin = LanceClient::with_config(conn(cli, a, &addr))?;
    let n_topics = a
        .topics
        .unwrap_or(if a.spread { 1 } else { a.connections.max(1) })
        .max(1);
    let topics: Vec<u32> = (0..n_topics)
        .map(|i| admin.ensure_topic(&format!("bench-{i}")).map(|t| t.id))
        .collect::<Result<_, _>>()?;
    admin.close();
    let size = a.record_size.unwrap_or(1024);
    let count = Arc::new(AtomicU64::new(0));
    let ticker = Ticker::start(
        count.clone(),
        Duration::from_millis(a.progress_ms),
        "records",
    );
    let start = Instant::now();
    let until = start + Duration::from_secs(a.duration_secs);
    // Each connection's stats and the moment its last record was acknowledged.
    type Done = (lnc_uring::ProducerStats, Instant);
    // One producer (striped over --connections), one sending thread, no tickets (the
    // flush reports any failure), topics round robin.
    let results: Vec<Result<Done, Error>> = vec![(|| -> Result<Done, Error> {
        let p = producer(cli, a, &addr)?;
        let v = vec![0x5Au8; size];
        let mut k = 0usize;
        while Instant::now() < until {
            for _ in 0..256 {
                p.produce(topics[k % topics.len()], lnc_uring::ProduceRecord::Raw(&v))?;
                k += 1;
            }
            count.fetch_add(256, Ordering::Relaxed);
        }
        p.flush(Duration::from_secs(120))?;
        let done = Instant::now();
        let st = p.stats();
        p.close(Duration::from_secs(10))?;
        Ok((st, done))
    })()];
    // The work ended when the last connection's last record was acknowledged: neither
    // closing the producers nor stopping the ticker is timed.
    ticker.stop();
    let done: Vec<Done> = results.into_iter().collect::<Result<_, _>>()?;
    let end = done.iter().map(|d| d.1).max().unwrap_or(start);
    let secs = end.duration_since(start).as_secs_f64();
    let stats: Vec<_> = done.into_iter().map(|d| d.0).collect();
    let n = count.load(Ordering::Relaxed) as f64;
    let mb = n * (size + 5) as f64 / 1e6;
    let lat = stats[0].ack_latency;
    if cli.json {
        println!(
            "{}",
            json!({ "bench": "produce", "records_per_sec": n / secs, "mb_per_sec": mb / secs,
                    "record_size": size, "connections": a.connections, "seconds": secs,
                    "ack_p50_us": lat.p50_us, "ack_p99_us": lat.p99_us, "ack_p999_us": lat.p999_us,
                    "ack_max_us": lat.max_us, "backend": stats[0].driver.backend })
        );
    } else {
        println!(
            "produce: {:.0} records/s, {:.1} MB/s ({size} B records, {} connection(s), {:.1} s, {})",
            n / secs,
            mb / secs,
            a.connections,
            secs,
            stats[0].driver.backend
        );
        println!(
            "batch ack latency: p50 {} µs  p99 {} µs  p99.9 {} µs  max {} µs",
            lat.p50_us, lat.p99_us, lat.p999_us, lat.max_us
        );
    }
    Ok(())
}

fn latency(cli: &Cli, la: &LatencyArgs) -> Result<(), Error> {
    let a = &la.common;
    let (_guard, addr) = server(a, true)?;
    let topic = LanceClient::with_config(conn(cli, a, &addr))?
        .ensure_topic("bench")?
        .id;
    let size = a.record_size.unwrap_or(64);
    let n = a.count.unwrap_or(20_000);
    let mut args = a.clone();
    args.linger_ms = 0;
    let p = producer(cli, &args, &addr)?;
    let v = vec![0x5Au8; size];
    let mut lat = Latencies::new();
    // Unmeasured warm-up: 1000 round trips, or at a fixed rate its first second's.
    let warmup = la.rate.map_or(1000, |r| (r.ceil() as u64).min(1000));
    let t0 = Instant::now();
    for i in 0..n + warmup {
        let t = match la.rate {
            Some(r) => {
                let at = t0 + Duration::from_nanos((i as f64 * 1e9 / r).round() as u64);
                wait_until(at);
                at
            }
            None => Instant::now(),
        };
        p.send(topic, &v)?;
        if i >= warmup {
            lat.record(t.elapsed().as_nanos() as u64);
        }
    }
    p.close(Duration::from_secs(10))?;
    if let Some(path) = &la.hdr_out {
        lat.write_hgrm(path)?;
    }
    if cli.json {
        let mut v = json!({ "bench": "latency", "samples": n, "record_size": size,
                            "rate": la.rate });
        lat.add_json(v.as_object_mut().expect("an object"));
        println!("{v}");
    } else {
        let how = match la.rate {
            Some(r) => format!("{r} records/s, from the scheduled send time"),
            None => "back to back".to_owned(),
        };
        println!(
            "send with ACK ({size} B, {n} samples, {how}): {}",
            lat.line()
        );
    }
    Ok(())
}

fn consume(cli: &Cli, a: &BenchArgs) -> Result<(), Error> {
    let (_guard, addr) = server(a, false)?;
    let admin = LanceClient::with_config(conn(cli, a, &addr))?;
    let topic = admin.ensure_topic("bench-consume")?.id;
    let size = a.record_size.unwrap_or(1024);
    let want = a.count.unwrap_or(500_000);
    // Fill the topic first if it holds too little.
    let have = admin.end_offset(topic)?;
    let need = want * (size as u64 + 5);
    if have < need {
        let p = producer(cli, a, &addr)?;
        let v = vec![0x5Au8; size];
        for _ in 0..(need - have).div_ceil(size as u64 + 5) {
            p.send_async(topic, &v)?;
        }
        p.close(Duration::from_secs(120))?;
    }
    let cfg = ConsumerConfig::new("lnc-uring-bench", topic)
        .with_max_fetch_bytes(1 << 20)
        .with_auto_commit(None)
        .with_connection(conn(cli, a, &addr));
    let mut c = StandaloneConsumer::connect(cfg)?;
    let count = Arc::new(AtomicU64::new(0));
    let ticker = Ticker::start(
        count.clone(),
        Duration::from_millis(a.progress_ms),
        "records read",
    );
    let start = Instant::now();
    let mut bytes = 0u64;
    let mut n = 0u64;
    while n < want {
        let Some(mut r) = c.poll_timeout(Duration::from_secs(5))? else {
            break;
        };
        bytes += r.bytes().len() as u64;
        n += r.records().count() as u64;
        count.store(n, Ordering::Relaxed);
    }
    // The work is done: read the clock before the ticker is stopped.
    let secs = start.elapsed().as_secs_f64();
    ticker.stop();
    c.close()?;
    if cli.json {
        println!(
            "{}",
            json!({ "bench": "consume", "records": n, "records_per_sec": n as f64 / secs,
                    "mb_per_sec": bytes as f64 / secs / 1e6, "seconds": secs })
        );
    } else {
        println!(
            "consume: {n} records in {secs:.2} s: {:.0} records/s, {:.1} MB/s",
            n as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    }
    Ok(())
}
