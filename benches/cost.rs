//! What a client costs: records/s, GB/s, client CPU-seconds per GB and peak RSS of
//! lnc-uring (io_uring and poll backends) beside the fair floor, measured as a user would
//! run it: the server in one process, each client run in a fresh process of its own.
//!
//! Run: `cargo bench --bench cost` (options after `--`):
//!
//! ```text
//! --sizes 64,1024,16384   record sizes to produce (bytes of value per record)
//! --gb 1                  GB of record values per produce run and per read-back run
//! --runs 3                runs of each (case, client); medians with min–max are printed
//! --only floor,uring,poll clients to run
//! --cases produce,read    produce (server in discard mode) and/or read-back
//! --read-size 1024        record size of the preloaded read-back topic
//! --json                  one JSON object per run and per summary row instead of tables
//! --api produce           lnc-uring's send call: produce (no ticket; failures reported by
//!                         flush), tickets (send_async, ticket dropped), many
//!                         (produce_many of 1024 records at a time), writer (a
//!                         TopicWriter: no lock per record)
//! ```
//!
//! * Server: this binary re-executed with `--role server`: the embedded `TestServer`,
//!   discarding data for produce, or holding a topic preloaded (by the floor) with `--gb`
//!   GB of `--read-size` records for read-back. It prints its address and runs until its
//!   stdin closes.
//! * Client: this binary re-executed with `--role client` for every run. Its CPU (user +
//!   system, every thread, io_uring workers included) and peak RSS are the kernel's
//!   accounting of the whole finished process (`wait4`); it reports the wall time of its
//!   work (connect to close) itself.
//! * Clients: the fair floor (`benches/support/floor.rs`: pre-built frames, 16 per
//!   `write_all`, TCP back-pressure, ACKs read by a second thread; for read-back a fetch
//!   loop reading each reply into one buffer), and lnc-uring `Producer::send_async` of
//!   every record then `flush` and `close` (default config) or `StandaloneConsumer` with
//!   1 MiB fetches iterating every record and touching its value, on each backend.
//! * GB is 10^9 bytes of record values (TLV headers not counted), the same for every
//!   client. Clients run interleaved within a round, starting with a different one each
//!   round, so drift hits all of them.
//! * "server cores": the server process's CPU-seconds during the run over the run's wall
//!   time; near 1 the server's connection thread is the limit, not the client.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lnc_uring::testkit::TestServer;
use lnc_uring::{
    Backend, ConnectionConfig, ConsumerConfig, ProduceRecord, Producer, ProducerConfig,
    StandaloneConsumer,
};

#[path = "support/floor.rs"]
mod floor;

const CLIENTS: [&str; 3] = ["floor", "uring", "poll"];

/// The send call the lnc-uring clients use (`--api`).
static API: std::sync::OnceLock<String> = std::sync::OnceLock::new();
const MAX_FETCH: u32 = 1 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match opt(&args, "role").as_deref() {
        Some("server") => server_main(&args),
        Some("client") => client_main(&args),
        Some(other) => panic!("unknown role {other:?}"),
        None => parent_main(&args),
    }
}

/// `--name value` or `--name=value`.
fn opt(args: &[String], name: &str) -> Option<String> {
    let flag = format!("--{name}");
    let eq = format!("--{name}=");
    for (i, a) in args.iter().enumerate() {
        if *a == flag {
            return args.get(i + 1).cloned();
        }
        if let Some(v) = a.strip_prefix(&eq) {
            return Some(v.to_string());
        }
    }
    None
}

fn opt_num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    match opt(args, name) {
        Some(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("--{name}: cannot parse {v:?}")),
        None => default,
    }
}

fn need<T: std::str::FromStr>(args: &[String], name: &str) -> T {
    let v = opt(args, name).unwrap_or_else(|| panic!("--{name} missing"));
    v.parse()
        .unwrap_or_else(|_| panic!("--{name}: cannot parse {v:?}"))
}

// ---------------------------------------------------------------- OS accounting

/// User + system CPU seconds and peak RSS (KiB) of a `rusage`.
fn cpu_rss(ru: &libc::rusage) -> (f64, u64) {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss as u64)
}

fn self_cpu() -> f64 {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct, and
    // getrusage writes at most one `rusage` through the pointer, which is to a local.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    cpu_rss(&ru).0
}

/// Reaps the child `pid` and returns its exit status and its whole-process
/// (CPU seconds, peak RSS KiB).
fn reap(pid: u32) -> (i32, f64, u64) {
    let mut status = 0;
    // SAFETY: as in `self_cpu`; wait4 writes the status and one `rusage` through
    // pointers to locals. The child is ours and not reaped elsewhere (`Child::wait` is
    // never called on it).
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        let r = libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru);
        assert_eq!(
            r,
            pid as libc::pid_t,
            "wait4: {}",
            std::io::Error::last_os_error()
        );
        ru
    };
    let (cpu, rss) = cpu_rss(&ru);
    (status, cpu, rss)
}

/// CPU seconds a live process has used so far (all its threads), from /proc.
fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of stat(5), utime and stime; `after` starts at field 3.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

// ---------------------------------------------------------------- server role

fn server_main(args: &[String]) {
    let preload: u64 = opt_num(args, "preload-records", 0);
    let size: usize = opt_num(args, "size", 1024);
    let server = TestServer::builder()
        .discard_data(preload == 0)
        .start()
        .unwrap();
    let topic = server.create_topic("cost");
    let mut records = 0;
    if preload > 0 {
        let p = floor::produce_frames(
            server.addr(),
            topic,
            size,
            floor::BATCH_SIZE,
            floor::Stop::Records(preload),
        );
        records = p.records;
    }
    println!(
        "READY {} {topic} {records} {}",
        server.addr(),
        server.topic_size(topic)
    );
    std::io::stdout().flush().unwrap();
    // Serve until the parent closes our stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    server.stop();
}

struct Server {
    child: Child,
    addr: SocketAddr,
    topic: u32,
    records: u64,
    bytes: u64,
}

impl Server {
    fn spawn(preload_records: u64, size: usize) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--role", "server", "--size", &size.to_string()])
            .args(["--preload-records", &preload_records.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.first(), Some(&"READY"), "server said {line:?}");
        Server {
            addr: f[1].parse().unwrap(),
            topic: f[2].parse().unwrap(),
            records: f[3].parse().unwrap(),
            bytes: f[4].parse().unwrap(),
            child,
        }
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- client role

fn backend(client: &str) -> Backend {
    match client {
        "uring" => Backend::IoUring,
        "poll" => Backend::Poll,
        other => panic!("no backend for client {other:?}"),
    }
}

fn client_main(args: &[String]) {
    let client: String = need(args, "client");
    let op: String = need(args, "op");
    let addr: SocketAddr = need(args, "addr");
    let topic: u32 = need(args, "topic");
    let size: usize = need(args, "size");
    let records: u64 = need(args, "records");
    let bytes: u64 = opt_num(args, "bytes", 0);
    let cpu0 = self_cpu();
    let start = Instant::now();
    let done = match (op.as_str(), client.as_str()) {
        ("produce", "floor") => {
            floor::produce_frames(
                addr,
                topic,
                size,
                floor::BATCH_SIZE,
                floor::Stop::Records(records),
            )
            .records
        }
        ("produce", c) => produce(
            addr,
            topic,
            backend(c),
            size,
            records,
            &opt(args, "api").unwrap_or_else(|| "produce".into()),
        ),
        ("read", "floor") => {
            floor::fetch_all(addr, topic, MAX_FETCH, bytes);
            records
        }
        ("read", c) => read(addr, topic, backend(c), records),
        other => panic!("unknown client {other:?}"),
    };
    let wall = start.elapsed().as_secs_f64();
    let cpu = self_cpu() - cpu0;
    println!("RESULT {done} {wall} {cpu}");
}

fn produce(addr: SocketAddr, topic: u32, backend: Backend, size: usize, n: u64, api: &str) -> u64 {
    let mut cfg = ProducerConfig::default()
        .with_connection(ConnectionConfig::new(addr.to_string()).with_backend(backend));
    if let Ok(m) = std::env::var("XMEM") {
        cfg = cfg.with_buffer_memory(m.parse().unwrap());
    }
    let p = Producer::with_config(cfg).unwrap();
    let v = vec![0x5Au8; size];
    match api {
        "tickets" => {
            for _ in 0..n {
                p.send_async(topic, &v).unwrap();
            }
        }
        "writer" => {
            let mut w = p.writer(topic);
            for _ in 0..n {
                w.produce(ProduceRecord::Raw(&v)).unwrap();
            }
        }
        "many" => {
            let chunk = vec![ProduceRecord::Raw(&v); 1024];
            let mut left = n as usize;
            while left > 0 {
                let k = left.min(chunk.len());
                p.produce_many(topic, &chunk[..k]).unwrap();
                left -= k;
            }
        }
        _ => {
            for _ in 0..n {
                p.produce(topic, ProduceRecord::Raw(&v)).unwrap();
            }
        }
    }
    p.flush(Duration::from_secs(300)).unwrap();
    let s = p.stats();
    assert_eq!(
        (s.records_sent, s.records_failed, s.records_outstanding),
        (n, 0, 0)
    );
    assert_eq!(s.driver.backend, backend.name(), "backend");
    p.close(Duration::from_secs(10)).unwrap();
    n
}

fn read(addr: SocketAddr, topic: u32, backend: Backend, n: u64) -> u64 {
    let cfg = ConsumerConfig::new("cost", topic)
        .with_max_fetch_bytes(MAX_FETCH)
        .with_auto_commit(None)
        .with_connection(ConnectionConfig::new(addr.to_string()).with_backend(backend));
    let mut c = StandaloneConsumer::connect(cfg).unwrap();
    let mut seen = 0u64;
    let mut touched = 0u64;
    while seen < n {
        let mut batch = c
            .poll_timeout(Duration::from_secs(30))
            .unwrap()
            .expect("records");
        for r in batch.records() {
            let r = r.unwrap();
            touched = touched.wrapping_add(r.value.first().copied().unwrap_or(0) as u64);
            seen += 1;
        }
    }
    std::hint::black_box(touched);
    c.close().unwrap();
    assert_eq!(seen, n, "read-back count");
    seen
}

// ---------------------------------------------------------------- parent

#[derive(Clone, Copy, Debug)]
struct Sample {
    records: u64,
    value_bytes: u64,
    /// Wall seconds of the client's work (connect to close).
    wall: f64,
    /// Whole-process CPU seconds (wait4).
    cpu: f64,
    /// CPU seconds over the work alone, as the client measured itself.
    cpu_work: f64,
    rss_kib: u64,
    server_cpu: f64,
}

impl Sample {
    fn rec_s(&self) -> f64 {
        self.records as f64 / self.wall
    }
    fn gb_s(&self) -> f64 {
        self.value_bytes as f64 / 1e9 / self.wall
    }
    fn cpu_gb(&self) -> f64 {
        self.cpu / (self.value_bytes as f64 / 1e9)
    }
    fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
    fn server_cores(&self) -> f64 {
        self.server_cpu / self.wall
    }
}

struct Case {
    name: String,
    op: &'static str,
    size: usize,
    runs: BTreeMap<&'static str, Vec<Sample>>,
}

// The child is reaped by `reap` (wait4, for its resource usage), not `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run_client(server: &Server, client: &str, op: &str, size: usize, records: u64) -> Sample {
    let srv0 = proc_cpu(server.child.id());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--role", "client", "--client", client, "--op", op])
        .args(["--api", API.get().map_or("produce", |s| s.as_str())])
        .args(["--addr", &server.addr.to_string()])
        .args(["--topic", &server.topic.to_string()])
        .args(["--size", &size.to_string()])
        .args(["--records", &records.to_string()])
        .args(["--bytes", &server.bytes.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let (status, cpu, rss_kib) = reap(child.id());
    let server_cpu = proc_cpu(server.child.id()) - srv0;
    assert_eq!(status, 0, "client {client} {op} {size} failed: {out}");
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("client {client} said {out:?}"));
    let f: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let records = f[0] as u64;
    Sample {
        records,
        value_bytes: records * size as u64,
        wall: f[1],
        cpu,
        cpu_work: f[2],
        rss_kib,
        server_cpu,
    }
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (med, v[0], v[n - 1])
}

type Metric = fn(&Sample) -> f64;

const METRICS: [(&str, Metric); 5] = [
    ("records_per_s", Sample::rec_s),
    ("gb_per_s", Sample::gb_s),
    ("cpu_s_per_gb", Sample::cpu_gb),
    ("peak_rss_mib", Sample::rss_mib),
    ("server_cores", Sample::server_cores),
];

fn stat(samples: &[Sample], m: Metric) -> (f64, f64, f64) {
    median(samples.iter().map(m).collect())
}

fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.0}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn parent_main(args: &[String]) {
    let sizes: Vec<usize> = opt(args, "sizes")
        .unwrap_or_else(|| "64,1024,16384".into())
        .split(',')
        .map(|s| s.trim().parse().expect("--sizes"))
        .collect();
    let gb: f64 = opt_num(args, "gb", 1.0);
    let runs: usize = opt_num(args, "runs", 3).max(1);
    let read_size: usize = opt_num(args, "read-size", 1024);
    let json = args.iter().any(|a| a == "--json");
    API.set(opt(args, "api").unwrap_or_else(|| "produce".into()))
        .expect("set once");
    let only = opt(args, "only").unwrap_or_else(|| CLIENTS.join(","));
    let cases_opt = opt(args, "cases").unwrap_or_else(|| "produce,read".into());
    let mut clients: Vec<&'static str> = CLIENTS
        .into_iter()
        .filter(|c| only.split(',').any(|o| o.trim() == *c))
        .collect();
    if !Backend::io_uring_available() && clients.contains(&"uring") {
        eprintln!("io_uring is not available here: skipping the io_uring client");
        clients.retain(|c| *c != "uring");
    }
    let loadavg = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let header = format!(
        "{} CPUs, Linux {}; {gb} GB of record values per run, {runs} runs; load average before: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        loadavg()
    );
    eprintln!("{header}");

    let mut cases: Vec<Case> = Vec::new();
    let rounds = |cases: &mut Vec<Case>,
                  server: &Server,
                  name: String,
                  op: &'static str,
                  size: usize,
                  n: u64| {
        let mut case = Case {
            name,
            op,
            size,
            runs: BTreeMap::new(),
        };
        for round in 0..runs {
            for i in 0..clients.len() {
                let client = clients[(i + round) % clients.len()];
                let s = run_client(server, client, op, size, n);
                eprintln!(
                    "  {:<16} {client:<6} run {}: {} rec/s, {:.2} GB/s, {:.3} CPU-s/GB, {:.1} MiB",
                    case.name,
                    round + 1,
                    si(s.rec_s()),
                    s.gb_s(),
                    s.cpu_gb(),
                    s.rss_mib()
                );
                case.runs.entry(client).or_default().push(s);
            }
        }
        cases.push(case);
    };
    if cases_opt.contains("produce") {
        let server = Server::spawn(0, 0);
        for &size in &sizes {
            let n = (gb * 1e9 / size as f64).ceil() as u64;
            rounds(
                &mut cases,
                &server,
                format!("produce {}", bytes_name(size)),
                "produce",
                size,
                n,
            );
        }
        server.stop();
    }
    if cases_opt.contains("read") {
        let n = (gb * 1e9 / read_size as f64).ceil() as u64;
        eprintln!("preloading {n} records of {read_size} B for read-back");
        let server = Server::spawn(n, read_size);
        let n = server.records;
        rounds(
            &mut cases,
            &server,
            format!("read {}", bytes_name(read_size)),
            "read",
            read_size,
            n,
        );
        server.stop();
    }
    let after = loadavg();

    if json {
        print_json(&cases);
    } else {
        println!("{header}; after: {after}");
        print_table(&cases);
        print_targets(&cases);
    }
}

fn bytes_name(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn print_json(cases: &[Case]) {
    for c in cases {
        let floor = c.runs.get("floor");
        for (client, samples) in &c.runs {
            for (i, s) in samples.iter().enumerate() {
                let row = serde_json::json!({
                    "case": c.name, "op": c.op, "size": c.size, "client": client, "run": i + 1,
                    "records": s.records, "value_bytes": s.value_bytes, "wall_s": s.wall,
                    "cpu_s": s.cpu, "cpu_work_s": s.cpu_work, "peak_rss_kib": s.rss_kib,
                    "server_cpu_s": s.server_cpu, "records_per_s": s.rec_s(),
                    "gb_per_s": s.gb_s(), "cpu_s_per_gb": s.cpu_gb(),
                });
                println!("{row}");
            }
            let mut row = serde_json::json!({
                "summary": true, "case": c.name, "op": c.op, "size": c.size,
                "client": client, "runs": samples.len(),
            });
            for (name, m) in METRICS {
                let (med, lo, hi) = stat(samples, m);
                row[name] = serde_json::json!({"median": med, "min": lo, "max": hi});
                if let Some(f) = floor {
                    row[format!("{name}_vs_floor")] = serde_json::json!(med / stat(f, m).0);
                }
            }
            println!("{row}");
        }
    }
}

fn print_table(cases: &[Case]) {
    println!(
        "\n{:<14} {:<6} {:>22} {:>18} {:>20} {:>20} {:>7} | {:>7} {:>7} {:>7}",
        "case",
        "client",
        "records/s",
        "GB/s",
        "CPU-s/GB",
        "peak RSS MiB",
        "server",
        "rec/s",
        "CPU/GB",
        "RSS"
    );
    println!(
        "{:<14} {:<6} {:>22} {:>18} {:>20} {:>20} {:>7} | {:>25}",
        "", "", "median [min–max]", "", "", "", "cores", "× floor (medians)"
    );
    for c in cases {
        let floor = c.runs.get("floor");
        for client in CLIENTS {
            let Some(samples) = c.runs.get(client) else {
                continue;
            };
            let cell = |m: Metric, f: &dyn Fn(f64) -> String| {
                let (med, lo, hi) = stat(samples, m);
                format!("{} [{}–{}]", f(med), f(lo), f(hi))
            };
            let ratio = |m: Metric| match floor {
                Some(f) => format!("{:.2}×", stat(samples, m).0 / stat(f, m).0),
                None => "—".into(),
            };
            println!(
                "{:<14} {:<6} {:>22} {:>18} {:>20} {:>20} {:>7.2} | {:>7} {:>7} {:>7}",
                c.name,
                client,
                cell(Sample::rec_s, &si),
                cell(Sample::gb_s, &|x| format!("{x:.2}")),
                cell(Sample::cpu_gb, &|x| format!("{x:.3}")),
                cell(Sample::rss_mib, &|x| format!("{x:.1}")),
                stat(samples, Sample::server_cores).0,
                ratio(Sample::rec_s),
                ratio(Sample::cpu_gb),
                ratio(Sample::rss_mib),
            );
        }
    }
}

/// The targets of issue 10, item 1, checked on the medians.
fn print_targets(cases: &[Case]) {
    println!("\ntargets (medians):");
    let med = |c: &Case, client: &str, m: Metric| c.runs.get(client).map(|s| stat(s, m).0);
    let check = |what: String, value: Option<f64>, limit: f64, at_most: bool| {
        if let Some(v) = value {
            let ok = if at_most { v <= limit } else { v >= limit };
            println!(
                "  {:<58} {v:>6.2}× {} {limit:.1}×  {}",
                what,
                if at_most { "≤" } else { "≥" },
                if ok { "met" } else { "NOT met" }
            );
        }
    };
    for c in cases {
        for client in ["uring", "poll"] {
            let vs = |m: Metric| Some(med(c, client, m)? / med(c, "floor", m)?);
            if c.op == "produce" {
                let limit = if c.size < 1024 { 1.3 } else { 1.0 };
                check(
                    format!("{}: {client} CPU/GB vs floor", c.name),
                    vs(Sample::cpu_gb),
                    limit,
                    true,
                );
                if c.size <= 1024 {
                    check(
                        format!("{}: {client} records/s vs floor", c.name),
                        vs(Sample::rec_s),
                        1.0,
                        false,
                    );
                }
            } else {
                check(
                    format!("{}: {client} throughput vs floor", c.name),
                    vs(Sample::gb_s),
                    1.0,
                    false,
                );
                check(
                    format!("{}: {client} CPU/GB vs floor", c.name),
                    vs(Sample::cpu_gb),
                    1.2,
                    true,
                );
            }
        }
        let vs_poll = |m: Metric| Some(med(c, "uring", m)? / med(c, "poll", m)?);
        check(
            format!("{}: io_uring CPU/GB vs poll", c.name),
            vs_poll(Sample::cpu_gb),
            1.0,
            true,
        );
        check(
            format!("{}: io_uring peak RSS vs poll", c.name),
            vs_poll(Sample::rss_mib),
            1.2,
            true,
        );
    }
}
