//! `lnc-uring`: topic administration, produce, consume and ping for Lance servers.
//!
//! ```text
//! lnc-uring --addr 127.0.0.1:1992 topics create orders
//! seq 1 1000 | lnc-uring produce orders
//! lnc-uring produce orders --count 1000000 --size 100
//! lnc-uring consume orders --from beginning --count 10
//! lnc-uring --json topics list
//! ```
//!
//! Exit codes: 0 success, 1 other failure, 2 usage error, 3 topic not found,
//! 4 cannot connect, 5 timeout, 6 authentication failed.

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use lnc_uring::proto::{Retention, TopicInfo};
use lnc_uring::{
    Backend, ConnectionConfig, ConsumerConfig, Error, LanceClient, Producer, ProducerConfig,
    SeekPosition, StandaloneConsumer, TopicRef,
};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(name = "lnc-uring", version, about = "Lance Wire Protocol client: topics, produce, consume", long_about = None)]
struct Cli {
    /// Server address (host:port, ip:port or [v6]:port).
    #[arg(
        long,
        env = "LANCE_ADDR",
        default_value = "127.0.0.1:1992",
        global = true
    )]
    addr: String,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// I/O backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto, global = true)]
    backend: BackendArg,
    /// Authentication token (command 0x08), sent first on every connection.
    #[arg(long, env = "LANCE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Request timeout in milliseconds.
    #[arg(long, default_value_t = 30_000, global = true)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BackendArg {
    Auto,
    IoUring,
    Poll,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Topic administration.
    #[command(subcommand)]
    Topics(TopicsCmd),
    /// Cluster status of the node answering.
    Status,
    /// Keepalive round trips.
    Ping {
        /// How many.
        #[arg(long, default_value_t = 3)]
        count: u32,
    },
    /// Produce records, acknowledged: one per line of standard input, or generated.
    Produce(ProduceArgs),
    /// Consume records to standard output, one per line.
    Consume(ConsumeArgs),
    /// Benchmarks (an embedded server unless --server names one).
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Run the embedded Lance-compatible test server until standard input closes.
    Serve {
        /// Port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 1992)]
        port: u16,
    },
}

#[derive(Subcommand, Debug)]
enum TopicsCmd {
    /// List topics.
    List,
    /// Create a topic (optionally with a retention policy; omitted limits are unlimited).
    Create {
        name: String,
        #[arg(long)]
        max_age_secs: Option<u64>,
        #[arg(long)]
        max_bytes: Option<u64>,
    },
    /// Get or create a topic by name.
    Ensure { name: String },
    /// Describe a topic.
    Get { id: u32 },
    /// Delete a topic and all its data.
    Delete { id: u32 },
    /// Set a topic's retention (omitted limits are unlimited; 0 is refused).
    Retention {
        id: u32,
        #[arg(long)]
        max_age_secs: Option<u64>,
        #[arg(long)]
        max_bytes: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Producer throughput: records/s, MB/s, batch ACK latency.
    Produce(BenchArgs),
    /// Send-with-ACK round trips of small records, one at a time.
    Latency(BenchArgs),
    /// Consumer read-back throughput.
    Consume(BenchArgs),
}

#[derive(Args, Debug, Clone)]
struct BenchArgs {
    /// `embedded` (an in-process server) or a server address.
    #[arg(long, default_value = "embedded")]
    server: String,
    /// Record size in bytes (latency: default 64 is used when not given).
    #[arg(long)]
    record_size: Option<usize>,
    /// Producer batch size.
    #[arg(long, default_value_t = 32 * 1024)]
    batch_size: usize,
    /// Producer linger in milliseconds.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Batches in flight per connection.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Parallel connections (one producer each).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Seconds to run (produce).
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    /// Round trips (latency) or records to read (consume).
    #[arg(long)]
    count: Option<u64>,
    /// Pin each driver thread to this CPU.
    #[arg(long)]
    pin_cpu: Option<usize>,
    /// Latency mode: the driver busy-polls this many microseconds after activity and
    /// waiters spin before parking.
    #[arg(long)]
    busy_poll_us: Option<u64>,
    /// LZ4 compressed batches.
    #[arg(long)]
    compression: bool,
}

#[derive(Args, Debug)]
struct ProduceArgs {
    /// Topic id or name.
    topic: String,
    /// Generate this many records instead of reading standard input.
    #[arg(long)]
    count: Option<u64>,
    /// Size of generated records in bytes (a 12-digit sequence number, then letters).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Batch size in bytes.
    #[arg(long, default_value_t = 32 * 1024)]
    batch_size: usize,
    /// Linger in milliseconds.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Compress batches (LZ4 compressed-batch records).
    #[arg(long)]
    compression: bool,
    /// Create the topic if it does not exist (names only).
    #[arg(long)]
    create: bool,
}

#[derive(Args, Debug)]
struct ConsumeArgs {
    /// Topic id or name.
    topic: String,
    /// Where to start: beginning, end, or a byte offset (a record boundary).
    #[arg(long, default_value = "beginning")]
    from: String,
    /// Stop after this many records.
    #[arg(long)]
    count: Option<u64>,
    /// Stop when nothing new arrives for this many milliseconds (0: wait forever).
    #[arg(long, default_value_t = 2000)]
    idle_ms: u64,
    /// Bytes per fetch.
    #[arg(long, default_value_t = 1 << 20)]
    max_fetch_bytes: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                eprintln!("{}", json!({ "error": e.to_string() }));
            } else {
                eprintln!("lnc-uring: {e}");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &Error) -> u8 {
    match e {
        // The cause decides: records that failed, or whose outcome is unknown.
        Error::DeliveryFailed { first, .. } => exit_code(first),
        Error::OutcomeUnknown { cause, .. } => exit_code(cause),
        Error::TopicNotFound { .. } => 3,
        Error::Connect { .. } | Error::ConnectionClosed => 4,
        Error::Timeout(_) | Error::PeerTimeout { .. } => 5,
        Error::Unreachable { .. } => 4,
        Error::Authentication { .. } => 6,
        Error::Config(_) | Error::InvalidTopicName { .. } => 2,
        _ => 1,
    }
}

fn connection(cli: &Cli) -> ConnectionConfig {
    let backend = match cli.backend {
        BackendArg::Auto => Backend::Auto,
        BackendArg::IoUring => Backend::IoUring,
        BackendArg::Poll => Backend::Poll,
    };
    let mut c = ConnectionConfig::new(cli.addr.clone())
        .with_backend(backend)
        .with_request_timeout(Duration::from_millis(cli.timeout_ms))
        .with_connect_timeout(Duration::from_millis(cli.timeout_ms.min(10_000)));
    if let Some(t) = &cli.token {
        c = c.with_auth_token(t.clone());
    }
    c
}

fn retention(max_age_secs: Option<u64>, max_bytes: Option<u64>) -> Retention {
    Retention {
        max_age_secs: max_age_secs.unwrap_or(Retention::UNLIMITED.max_age_secs),
        max_bytes: max_bytes.unwrap_or(Retention::UNLIMITED.max_bytes),
    }
}

fn topic_json(t: &TopicInfo) -> serde_json::Value {
    json!({
        "id": t.id, "name": t.name, "created_at": t.created_at, "topic_epoch": t.topic_epoch,
        "max_age_secs": t.max_age_secs, "max_bytes": t.max_bytes,
    })
}

fn print_topic(cli: &Cli, t: &TopicInfo) {
    if cli.json {
        println!("{}", topic_json(t));
    } else {
        println!("{}\t{}\tcreated_at={}", t.id, t.name, t.created_at);
    }
}

/// A topic argument: digits are an id, anything else a name.
fn resolve(admin: &LanceClient, topic: &str, create: bool) -> Result<u32, Error> {
    if let Ok(id) = topic.parse::<u32>() {
        return Ok(id);
    }
    if create {
        return Ok(admin.ensure_topic(topic)?.id);
    }
    admin
        .list_topics()?
        .into_iter()
        .find(|t| t.name == topic)
        .map(|t| t.id)
        .ok_or_else(|| Error::TopicNotFound {
            message: format!("no topic named {topic:?}"),
        })
}

fn run(cli: &Cli) -> Result<(), Error> {
    match &cli.command {
        Command::Serve { port } => {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
            let server = lnc_uring::testkit::TestServer::builder()
                .addr(addr)
                .start()
                .map_err(Error::from)?;
            println!("listening on {}", server.addr());
            // Serve until standard input closes.
            let mut sink = String::new();
            while std::io::stdin()
                .read_line(&mut sink)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                sink.clear();
            }
            Ok(())
        }
        Command::Topics(cmd) => {
            let admin = LanceClient::with_config(connection(cli))?;
            match cmd {
                TopicsCmd::List => {
                    let mut topics = admin.list_topics()?;
                    topics.sort_by_key(|t| t.id);
                    if cli.json {
                        let v: Vec<_> = topics.iter().map(topic_json).collect();
                        println!("{}", serde_json::Value::Array(v));
                    } else {
                        for t in &topics {
                            print_topic(cli, t);
                        }
                    }
                }
                TopicsCmd::Create {
                    name,
                    max_age_secs,
                    max_bytes,
                } => {
                    let t = if max_age_secs.is_some() || max_bytes.is_some() {
                        admin.create_topic_with_retention(
                            name,
                            retention(*max_age_secs, *max_bytes),
                        )?
                    } else {
                        admin.create_topic(name)?
                    };
                    print_topic(cli, &t);
                }
                TopicsCmd::Ensure { name } => print_topic(cli, &admin.ensure_topic(name)?),
                TopicsCmd::Get { id } => print_topic(cli, &admin.get_topic(*id)?),
                TopicsCmd::Delete { id } => {
                    let d = admin.delete_topic(*id)?;
                    if cli.json {
                        println!("{}", json!({ "deleted": d }));
                    } else {
                        println!("deleted {d}");
                    }
                }
                TopicsCmd::Retention {
                    id,
                    max_age_secs,
                    max_bytes,
                } => {
                    let r = admin.set_retention(*id, retention(*max_age_secs, *max_bytes))?;
                    if cli.json {
                        println!(
                            "{}",
                            json!({ "topic_id": r.topic_id, "max_age_secs": r.max_age_secs, "max_bytes": r.max_bytes })
                        );
                    } else {
                        println!(
                            "{}\tmax_age_secs={}\tmax_bytes={}",
                            r.topic_id, r.max_age_secs, r.max_bytes
                        );
                    }
                }
            }
            admin.close();
            Ok(())
        }
        Command::Status => {
            let admin = LanceClient::with_config(connection(cli))?;
            let s = admin.cluster_status()?;
            let v = serde_json::to_value(&s).map_err(|e| Error::Protocol(e.to_string()))?;
            if cli.json {
                println!("{v}");
            } else {
                println!(
                    "node {} {} leader={} nodes={} healthy={} term={} quorum={}",
                    s.node_id,
                    s.mode.as_deref().unwrap_or("cluster"),
                    s.is_leader,
                    s.node_count,
                    s.healthy_nodes,
                    s.current_term,
                    s.quorum_available
                );
            }
            admin.close();
            Ok(())
        }
        Command::Ping { count } => {
            let admin = LanceClient::with_config(connection(cli))?;
            for _ in 0..*count {
                let d = admin.ping()?;
                if cli.json {
                    println!("{}", json!({ "rtt_us": d.as_micros() as u64 }));
                } else {
                    println!("keepalive round trip {:.1} µs", d.as_secs_f64() * 1e6);
                }
            }
            admin.close();
            Ok(())
        }
        Command::Produce(a) => produce(cli, a),
        Command::Consume(a) => consume(cli, a),
        Command::Bench(b) => bench::run(cli, b),
    }
}

/// Generated record `seq`: 12 digits, then letters, `size` bytes in all (at least 12).
fn generated(seq: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(format!("{seq:012}").as_bytes());
    out.extend((0..size.saturating_sub(12)).map(|i| b'a' + ((seq as usize + i) % 26) as u8));
}

fn produce(cli: &Cli, a: &ProduceArgs) -> Result<(), Error> {
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

fn consume(cli: &Cli, a: &ConsumeArgs) -> Result<(), Error> {
    let from = match a.from.as_str() {
        "beginning" | "begin" | "start" => SeekPosition::Beginning,
        "end" | "tail" => SeekPosition::End,
        o => SeekPosition::Offset(o.parse().map_err(|_| {
            Error::Config(format!(
                "--from must be beginning, end or an offset, not {o:?}"
            ))
        })?),
    };
    let topic = match a.topic.parse::<u32>() {
        Ok(id) => TopicRef::Id(id),
        Err(_) => TopicRef::Name(a.topic.clone()),
    };
    let mut cfg = ConsumerConfig::new("lnc-uring-cli", 0)
        .with_start(from)
        .with_max_fetch_bytes(a.max_fetch_bytes)
        .with_auto_commit(None)
        .with_connection(connection(cli));
    cfg.topic = topic;
    let mut consumer = StandaloneConsumer::connect(cfg)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let limit = a.count.unwrap_or(u64::MAX);
    let idle = if a.idle_ms == 0 {
        Duration::from_secs(365 * 86_400)
    } else {
        Duration::from_millis(a.idle_ms)
    };
    let mut n = 0u64;
    'outer: while n < limit {
        let Some(mut batch) = consumer.poll_timeout(idle)? else {
            break;
        };
        for rec in batch.records() {
            let rec = rec?;
            let w = if cli.json {
                let v = json!({ "type": rec.record_type.name(), "value": String::from_utf8_lossy(rec.value) });
                writeln!(out, "{v}")
            } else {
                out.write_all(rec.value).and_then(|()| out.write_all(b"\n"))
            };
            if w.is_err() {
                // Broken pipe (e.g. `| head`): stop quietly.
                break 'outer;
            }
            n += 1;
            if n >= limit {
                break 'outer;
            }
        }
    }
    let _ = out.flush();
    drop(out);
    consumer.close()?;
    Ok(())
}

mod bench {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use hdrhistogram::Histogram;
    use lnc_uring::testkit::TestServer;
    use lnc_uring::{
        ConsumerConfig, Error, LanceClient, Producer, ProducerConfig, StandaloneConsumer,
    };
    use serde_json::json;

    use super::{connection, BenchArgs, BenchCmd, Cli};

    /// The server to use: an embedded one (kept alive by the returned guard) or `addr`.
    fn server(a: &BenchArgs, discard: bool) -> Result<(Option<TestServer>, String), Error> {
        if a.server == "embedded" {
            let s = TestServer::builder().discard_data(discard).start()?;
            let addr = s.addr().to_string();
            Ok((Some(s), addr))
        } else {
            Ok((None, a.server.clone()))
        }
    }

    fn conn(cli: &Cli, a: &BenchArgs, addr: &str) -> lnc_uring::ConnectionConfig {
        let mut c = connection(cli);
        c.addrs = vec![addr.to_owned()];
        if let Some(cpu) = a.pin_cpu {
            c = c.with_pin_cpu(cpu);
        }
        if let Some(us) = a.busy_poll_us {
            c = c
                .with_busy_poll(Duration::from_micros(us))
                .with_spin(Duration::from_micros(us));
        }
        c
    }

    /// Prints a progress line every second while `running`.
    fn progress(
        counter: Arc<AtomicU64>,
        running: Arc<AtomicBool>,
        what: &'static str,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut last = 0;
            let mut t = Instant::now();
            while running.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if t.elapsed() >= Duration::from_secs(1) {
                    let now = counter.load(Ordering::Relaxed);
                    eprint!(
                        "\r{what}: {:>12.0}/s   total {now:>12}   ",
                        (now - last) as f64 / t.elapsed().as_secs_f64()
                    );
                    last = now;
                    t = Instant::now();
                }
            }
            eprintln!();
        })
    }

    pub(super) fn run(cli: &Cli, cmd: &BenchCmd) -> Result<(), Error> {
        match cmd {
            BenchCmd::Produce(a) => produce(cli, a),
            BenchCmd::Latency(a) => latency(cli, a),
            BenchCmd::Consume(a) => consume(cli, a),
        }
    }

    fn producer(cli: &Cli, a: &BenchArgs, addr: &str) -> Result<Producer, Error> {
        Producer::with_config(
            ProducerConfig::default()
                .with_batch_size(a.batch_size)
                .with_linger_ms(a.linger_ms)
                .with_max_pending_acks(a.window)
                .with_compression(a.compression)
                .with_connection(conn(cli, a, addr)),
        )
    }

    fn produce(cli: &Cli, a: &BenchArgs) -> Result<(), Error> {
        let (_guard, addr) = server(a, true)?;
        let topic = LanceClient::with_config(conn(cli, a, &addr))?
            .ensure_topic("bench")?
            .id;
        let size = a.record_size.unwrap_or(1024);
        let count = Arc::new(AtomicU64::new(0));
        let running = Arc::new(AtomicBool::new(true));
        let ticker = progress(count.clone(), running.clone(), "records");
        let start = Instant::now();
        let until = start + Duration::from_secs(a.duration_secs);
        let results: Vec<Result<lnc_uring::ProducerStats, Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..a.connections.max(1))
                .map(|_| {
                    let addr = addr.clone();
                    let count = count.clone();
                    s.spawn(move || -> Result<lnc_uring::ProducerStats, Error> {
                        let p = producer(cli, a, &addr)?;
                        let v = vec![0x5Au8; size];
                        while Instant::now() < until {
                            for _ in 0..256 {
                                p.send_async(topic, &v)?;
                            }
                            count.fetch_add(256, Ordering::Relaxed);
                        }
                        p.flush(Duration::from_secs(120))?;
                        let st = p.stats();
                        p.close(Duration::from_secs(10))?;
                        Ok(st)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("bench thread"))
                .collect()
        });
        running.store(false, Ordering::Relaxed);
        let _ = ticker.join();
        let secs = start.elapsed().as_secs_f64();
        let stats: Vec<_> = results.into_iter().collect::<Result<_, _>>()?;
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

    fn latency(cli: &Cli, a: &BenchArgs) -> Result<(), Error> {
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
        let mut h = Histogram::<u64>::new(3).map_err(|e| Error::Config(e.to_string()))?;
        for i in 0..n + 1000 {
            let t = Instant::now();
            p.send(topic, &v)?;
            if i >= 1000 {
                let _ = h.record(t.elapsed().as_nanos() as u64);
            }
        }
        p.close(Duration::from_secs(10))?;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        if cli.json {
            println!(
                "{}",
                json!({ "bench": "latency", "samples": n, "record_size": size, "p50_us": us(0.5),
                        "p99_us": us(0.99), "p999_us": us(0.999), "max_us": h.max() as f64 / 1000.0 })
            );
        } else {
            println!(
                "send with ACK ({size} B, {n} samples): p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs",
                us(0.5),
                us(0.99),
                us(0.999),
                h.max() as f64 / 1000.0
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
        let running = Arc::new(AtomicBool::new(true));
        let ticker = progress(count.clone(), running.clone(), "records read");
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
        running.store(false, Ordering::Relaxed);
        let _ = ticker.join();
        let secs = start.elapsed().as_secs_f64();
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
}
