//! `lnc-uring`: topic administration, produce, consume and ping for Lance servers, and an
//! embedded test server.
//!
//! ```text
//! lnc-uring --addr 127.0.0.1:1992 topics create orders
//! seq 1 1000 | lnc-uring produce orders
//! lnc-uring produce orders --count 1000000 --size 100
//! lnc-uring consume orders --from beginning --count 10
//! lnc-uring --json topics list
//! lnc-uring serve --port 1992 &
//! ```
//!
//! Exit codes: 0 success, 1 other failure, 2 usage or configuration error, 3 topic not
//! found, 4 cannot connect (or the connection was lost), 5 timeout, 6 authentication
//! failed; `produce` stopped by SIGINT 130, by SIGTERM 143 (after printing its summary).

use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use lnc_uring::proto::{Retention, TopicInfo};
use lnc_uring::{Backend, Checksum, ConnectionConfig, Error, LanceClient, TopicRef};
use serde_json::json;

mod bench;
mod consume;
mod produce;
mod serve;

/// Longest timeout accepted: a year, the library's limit for durations.
const MAX_MS: u64 = 365 * 86_400 * 1000;

const AFTER_HELP: &str = "\
Topics: TOPIC arguments of produce and consume are topic names, even when they are all
digits (a topic named 12345 is produced to as `12345`); write `id:N` for topic id N.

Exit codes: 0 success, 1 other failure, 2 usage or configuration error (a malformed
--addr too), 3 topic not found, 4 cannot connect or connection lost, 5 timeout (the
server did not answer within --timeout-ms, or a record was not acknowledged within the
delivery timeout), 6 authentication failed, 130/143 produce stopped by SIGINT/SIGTERM.";

#[derive(Parser, Debug)]
#[command(
    name = "lnc-uring",
    version,
    about = "Lance Wire Protocol client: topics, produce, consume; and an embedded test server",
    long_about = None,
    after_help = AFTER_HELP
)]
struct Cli {
    /// Server address (host:port, ip:port or [v6]:port; port 1-65535). A malformed
    /// address is a usage error (exit 2).
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
    /// How long to wait for the server, in milliseconds: each request's reply, the
    /// connection's liveness, and for produce each record's acknowledgement and a full
    /// buffer (unless --delivery-timeout-ms is given). Exit 5 when it passes.
    #[arg(long, default_value_t = 30_000, global = true,
          value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    timeout_ms: u64,
    /// Frame checksum: ieee (what Lance servers compute) or castagnoli.
    #[arg(long, default_value = "ieee", global = true)]
    checksum: Checksum,
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
    #[command(after_help = produce::AFTER_HELP)]
    Produce(ProduceArgs),
    /// Consume records to standard output, one per line.
    #[command(after_help = consume::AFTER_HELP)]
    Consume(ConsumeArgs),
    /// Benchmarks (an embedded server unless --server names one).
    #[command(
        subcommand,
        after_help = "Figures time the work only: from the first record to the last \
                      acknowledgement (produce) or the last record read (consume); not \
                      closing the connections, nor the progress line (--progress-ms)."
    )]
    Bench(BenchCmd),
    /// Run the embedded Lance-compatible test server until SIGINT or SIGTERM.
    #[command(after_help = serve::AFTER_HELP)]
    Serve(ServeArgs),
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
    /// Send-with-ACK round trips of small records, one at a time (back to back, or at
    /// a fixed --rate).
    Latency(bench::LatencyArgs),
    /// Consumer read-back throughput.
    Consume(BenchArgs),
    /// Produce→consume latency at a fixed rate, measured from each record's scheduled
    /// send time.
    E2e(bench::E2eArgs),
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
    /// Connections of the one producer (produce), each on a ring of its own; topics
    /// `bench-0`… are spread over them (see `--topics`, `--spread`).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Topics to send to, round robin (produce). Default: one per connection (one with
    /// `--spread`).
    #[arg(long)]
    topics: Option<usize>,
    /// Spread every topic's batches over all connections (order across them is lost).
    #[arg(long)]
    spread: bool,
    /// Pin connection i's driver thread to the i-th CPU of this comma-separated list.
    #[arg(long, value_delimiter = ',')]
    pin_cpus: Vec<usize>,
    /// How driver threads and waiting callers wait: busy-spin, yield, backoff, block.
    #[arg(long)]
    idle: Option<lnc_uring::IdleStrategy>,
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
    /// Progress line on standard error every this many milliseconds (0: none).
    #[arg(long, default_value_t = 1000)]
    progress_ms: u64,
}

#[derive(Args, Debug)]
struct ProduceArgs {
    /// Topic name (`id:N` for topic id N).
    #[arg(value_parser = parse_topic)]
    topic: TopicRef,
    /// Generate this many records instead of reading standard input.
    #[arg(long)]
    count: Option<u64>,
    /// Value size of generated records in bytes: exactly this many (see below).
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
    /// Each record is acknowledged or failed within this many milliseconds, and a full
    /// buffer waits at most this long (default: --timeout-ms).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    delivery_timeout_ms: Option<u64>,
}

#[derive(Args, Debug)]
struct ConsumeArgs {
    /// Topic name (`id:N` for topic id N).
    #[arg(value_parser = parse_topic)]
    topic: TopicRef,
    /// Where to start: beginning, end, or a byte offset, which must be a record
    /// boundary (0, or an end offset reported before).
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

/// `serve`'s options. `--addr`, `--token`, `--backend` and `--timeout-ms` are declared
/// here again so that the client's global ones are not listed: `--addr` is the listen
/// address, `--token` the token required, the other two are refused.
#[derive(Args, Debug)]
struct ServeArgs {
    /// Listen address: an IP address, or IP:PORT (default 127.0.0.1; LANCE_ADDR is not
    /// read by serve).
    #[arg(long)]
    addr: Option<String>,
    /// Listen port (default 1992; 0: any free port).
    #[arg(long)]
    port: Option<u16>,
    /// Keep topic data in this directory (a restart on it keeps every acknowledged
    /// byte); default: in memory.
    #[arg(long, conflicts_with = "discard")]
    data_dir: Option<std::path::PathBuf>,
    /// Keep no data at all (for benchmarks): offsets advance, fetches of data fail.
    #[arg(long)]
    discard: bool,
    /// Delay each read chunk's ACKs by this many milliseconds (a stand-in for fsync and
    /// quorum waits).
    #[arg(long)]
    ack_delay_ms: Option<u64>,
    /// Largest payload_length accepted (default 16777216).
    #[arg(long)]
    max_payload: Option<u32>,
    /// Answer as the leader of a one-node cluster instead of a standalone server.
    #[arg(long)]
    cluster: bool,
    /// Require token auth: ingest on a connection that has not authenticated with this
    /// token is refused (other requests are not gated).
    #[arg(long, env = "LANCE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long, hide = true, value_enum)]
    backend: Option<BackendArg>,
    #[arg(long, hide = true)]
    timeout_ms: Option<u64>,
}

/// A topic argument: a name, or `id:N`.
fn parse_topic(s: &str) -> Result<TopicRef, String> {
    match s.strip_prefix("id:") {
        Some(n) => n
            .parse()
            .map(TopicRef::Id)
            .map_err(|_| format!("{s:?}: id:N needs a topic id 0..=4294967295")),
        None if s.is_empty() => Err("empty topic name".into()),
        None => Ok(TopicRef::Name(s.to_owned())),
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(&cli, &matches) {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(fail(&cli, &message(&cli, &e), exit_code(&e))),
    }
}

/// Reports a failure on standard error (a JSON object with --json); returns `code`.
fn fail(cli: &Cli, msg: &str, code: u8) -> u8 {
    if cli.json {
        eprintln!("{}", json!({ "error": msg, "exit_code": code }));
    } else {
        eprintln!("lnc-uring: {msg}");
    }
    code
}

/// The error's text, with what the command waited for when it timed out.
fn message(cli: &Cli, e: &Error) -> String {
    match e {
        Error::Timeout(what) if !matches!(cli.command, Command::Produce(_)) => format!(
            "timed out: {what} (no reply from {} within --timeout-ms {})",
            cli.addr, cli.timeout_ms
        ),
        _ => e.to_string(),
    }
}

fn exit_code(e: &Error) -> u8 {
    match e {
        // The cause decides: records that failed, or whose outcome is unknown.
        Error::DeliveryFailed { first, .. } => exit_code(first),
        Error::OutcomeUnknown { cause, .. } => exit_code(cause),
        Error::TopicNotFound { .. } => 3,
        Error::Connect { .. } | Error::ConnectionClosed | Error::Unreachable { .. } => 4,
        Error::Timeout(_) | Error::Backpressure(_) | Error::PeerTimeout { .. } => 5,
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
    let timeout = Duration::from_millis(cli.timeout_ms);
    let mut c = ConnectionConfig::new(cli.addr.clone())
        .with_backend(backend)
        .with_checksum(cli.checksum)
        .with_request_timeout(timeout)
        // The connection is not declared dead before --timeout-ms has passed: a silent
        // server is a timeout (exit 5), not a lost connection.
        .with_peer_timeout((timeout + Duration::from_secs(1)).min(Duration::from_millis(MAX_MS)))
        .with_connect_timeout(timeout.min(Duration::from_secs(10)));
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

/// The id of a topic argument; a name is looked up (or created with `create`).
fn resolve(admin: &LanceClient, topic: &TopicRef, create: bool) -> Result<u32, Error> {
    let name = match topic {
        TopicRef::Id(id) if create => {
            return Err(Error::Config(format!(
                "--create needs a topic name, not id:{id}"
            )))
        }
        TopicRef::Id(id) => return Ok(*id),
        TopicRef::Name(name) => name,
    };
    if create {
        return Ok(admin.ensure_topic(name)?.id);
    }
    admin
        .list_topics()?
        .into_iter()
        .find(|t| &t.name == name)
        .map(|t| t.id)
        .ok_or_else(|| Error::TopicNotFound {
            message: format!("no topic named {name:?}"),
        })
}

fn run(cli: &Cli, matches: &ArgMatches) -> Result<u8, Error> {
    match &cli.command {
        Command::Serve(a) => {
            let m = matches.subcommand_matches("serve").expect("serve matched");
            serve::run(cli, a, m)
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
            Ok(0)
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
            Ok(0)
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
            Ok(0)
        }
        Command::Produce(a) => produce::run(cli, a),
        Command::Consume(a) => consume::run(cli, a),
        Command::Bench(b) => bench::run(cli, b).map(|()| 0),
    }
}
