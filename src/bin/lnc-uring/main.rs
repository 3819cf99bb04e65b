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

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use lnc_uring::proto::{Retention, TopicInfo};
use lnc_uring::{Backend, ConnectionConfig, Error, LanceClient};
use serde_json::json;

mod bench;
mod consume;
mod produce;

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
        Error::TopicNotFound { .. } => 3,
        Error::Connect { .. } | Error::ConnectionClosed => 4,
        Error::Timeout(_) => 5,
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
        Command::Produce(a) => produce::run(cli, a),
        Command::Consume(a) => consume::run(cli, a),
        Command::Bench(b) => bench::run(cli, b),
    }
}
