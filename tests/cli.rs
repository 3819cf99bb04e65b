//! The `lnc-uring` command-line tool end to end against the embedded server.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use lnc_uring::testkit::TestServer;
use lnc_uring::{LanceClient, ProduceRecord, Producer, ProducerConfig};

fn cli(server_addr: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lnc-uring"))
        .arg("--addr")
        .arg(server_addr)
        .args(args)
        .output()
        .expect("run lnc-uring")
}

fn generated(seq: u64, size: usize) -> String {
    let mut s = format!("{seq:012}");
    s.extend(
        (0..size.saturating_sub(12)).map(|i| (b'a' + ((seq as usize + i) % 26) as u8) as char),
    );
    s
}

#[test]
fn topics_produce_consume_round_trip() {
    let server = TestServer::start().unwrap();
    let addr = server.addr().to_string();

    let out = cli(&addr, &["topics", "create", "orders"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("1\torders"));

    let out = cli(&addr, &["--json", "topics", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["name"], "orders");

    // Generated records, acknowledged, then read back byte for byte.
    let n = 20_000u64;
    let out = cli(
        &addr,
        &[
            "--json",
            "produce",
            "orders",
            "--count",
            &n.to_string(),
            "--size",
            "40",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"], n);
    let out = cli(&addr, &["consume", "orders", "--count", &n.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, n);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(*l, generated(i as u64, 40), "record {i}");
    }

    // Lines from standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lnc-uring"))
        .args(["--addr", &addr, "produce", "lines", "--create"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"alpha\nbeta\ngamma\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let out = cli(&addr, &["consume", "lines", "--idle-ms", "300"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "alpha\nbeta\ngamma\n");
    let out = cli(&addr, &["--json", "consume", "lines", "--count", "1"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["value"].as_str()),
        (Some("RawData"), Some("alpha"))
    );
    let out = cli(
        &addr,
        &["consume", "lines", "--from", "end", "--idle-ms", "200"],
    );
    assert!(out.status.success() && out.stdout.is_empty());

    // Admin and status.
    let out = cli(
        &addr,
        &["topics", "retention", "1", "--max-bytes", "1000000"],
    );
    assert!(out.status.success());
    let out = cli(&addr, &["--json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "standalone");
    assert!(cli(&addr, &["ping", "--count", "2"]).status.success());
    assert!(cli(&addr, &["topics", "delete", "2"]).status.success());
}

#[test]
fn errors_have_clear_messages_and_exit_codes() {
    let server = TestServer::start().unwrap();
    let addr = server.addr().to_string();
    let out = cli(&addr, &["consume", "missing"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("topic not found"));
    let out = cli(&addr, &["topics", "create", "bad name"]);
    assert_eq!(out.status.code(), Some(2));
    server.create_topic("t");
    let out = cli(&addr, &["topics", "retention", "1", "--max-bytes", "0"]);
    assert_eq!(out.status.code(), Some(2), "retention 0 refused");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let out = cli(&dead_addr, &["topics", "list"]);
    assert_eq!(out.status.code(), Some(4));
    // A record the server refuses: the real reason and its exit code.
    let out = cli(&addr, &["produce", "id:77", "--count", "3"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unknown topic"));
    let out = cli(&addr, &["--json", "topics", "get", "99"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(v["error"].as_str().unwrap().contains("not found"));
}

#[test]
fn bench_subcommands_print_json_results() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lnc-uring"))
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = run(&[
        "bench",
        "produce",
        "--duration-secs",
        "1",
        "--record-size",
        "256",
    ]);
    assert!(v["records_per_sec"].as_f64().unwrap() > 0.0);
    let v = run(&["bench", "latency", "--count", "200", "--backend", "poll"]);
    assert!(v["p50_us"].as_f64().unwrap() > 0.0);
    let v = run(&[
        "bench",
        "consume",
        "--count",
        "20000",
        "--record-size",
        "100",
    ]);
    assert_eq!(v["records"], 20000);
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lnc-uring"))
}

/// Waits up to `limit` for `child` to exit; kills it (and fails) when it does not.
fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the CLI with a bounded wait: (exit status, stdout, stderr).
fn cli_bounded(args: &[&str], limit: Duration) -> (ExitStatus, String, String) {
    let (status, out, err) = cli_bounded_raw(args, limit);
    (status, String::from_utf8(out).expect("UTF-8 output"), err)
}

/// [`cli_bounded`] with standard output as bytes.
fn cli_bounded_raw(args: &[&str], limit: Duration) -> (ExitStatus, Vec<u8>, String) {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(&mut child, limit, &format!("lnc-uring {args:?}"));
    (status, o.join().unwrap(), e.join().unwrap())
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on a child process this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// The first line the child writes to standard output, within `limit`.
fn first_line(child: &mut Child, limit: Duration) -> String {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(limit).expect("a line on standard output")
}

fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Issue 9, item 20: `serve` runs until SIGINT/SIGTERM whatever standard input does,
/// prints where it listens, and honours the options it lists.
#[test]
fn serve_runs_until_sigterm_and_honours_its_options() {
    let dir = std::env::temp_dir().join(format!("lnc-cli-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_s = dir.to_str().unwrap().to_owned();
    let start = |extra: &[&str]| {
        let mut child = bin()
            .args([
                "serve",
                "--port",
                "0",
                "--token",
                "secret",
                "--data-dir",
                &dir_s,
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let line = first_line(&mut child, Duration::from_secs(10));
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        (child, addr)
    };

    let (mut child, addr) = start(&[]);
    // Standard input is closed from the start: the server must still be there.
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "serve exited early");
    let admin = LanceClient::connect(&addr).unwrap();
    admin.ping().unwrap();
    admin.ensure_topic("kept").unwrap();
    admin.close();
    // --token: ingest needs it.
    let (status, _, err) = cli_bounded(
        &["--addr", &addr, "produce", "kept", "--count", "1"],
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(6), "{err}");
    let (status, _, err) = cli_bounded(
        &[
            "--addr", &addr, "--token", "secret", "produce", "kept", "--count", "2",
        ],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{err}");
    signal(&child, libc::SIGTERM);
    let status = wait_bounded(&mut child, Duration::from_secs(5), "serve after SIGTERM");
    assert_eq!(status.code(), Some(0));

    // --data-dir: a new server on the same directory has the records; SIGINT stops it.
    let (mut child, addr) = start(&[]);
    let (status, out, err) = cli_bounded(
        &["--addr", &addr, "consume", "kept", "--idle-ms", "300"],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    signal(&child, libc::SIGINT);
    let status = wait_bounded(&mut child, Duration::from_secs(5), "serve after SIGINT");
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);

    // --checksum (global: clients and server agree), --discard, --ack-delay-ms.
    let mut child = bin()
        .args([
            "--checksum",
            "castagnoli",
            "serve",
            "--port",
            "0",
            "--discard",
        ])
        .args(["--ack-delay-ms", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = first_line(&mut child, Duration::from_secs(10));
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let (status, _, err) = cli_bounded(
        &[
            "--addr",
            &addr,
            "--checksum",
            "castagnoli",
            "produce",
            "d",
            "--create",
            "--count",
            "5",
        ],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{err}");
    signal(&child, libc::SIGTERM);
    let status = wait_bounded(&mut child, Duration::from_secs(5), "serve after SIGTERM");
    assert_eq!(status.code(), Some(0));

    // Client-only options are neither listed nor silently ignored.
    let out = bin().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for listed in [
        "--token",
        "--data-dir",
        "--checksum",
        "--ack-delay-ms",
        "--discard",
        "--addr",
    ] {
        assert!(
            help.contains(listed),
            "{listed} missing from serve --help:\n{help}"
        );
    }
    for hidden in ["--backend", "--timeout-ms"] {
        assert!(
            !help.contains(hidden),
            "{hidden} listed by serve --help:\n{help}"
        );
    }
    let (status, _, err) = cli_bounded(&["serve", "--backend", "poll"], Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{err}");
}

/// Issue 9, item 21: ^C during `produce` prints what was acknowledged, failed and
/// unknown, and exits 130.
#[test]
fn ctrl_c_during_produce_prints_a_summary_and_exits_130() {
    let server = TestServer::start().unwrap();
    let topic = server.create_topic("live");
    let mut child = bin()
        .args([
            "--addr",
            &server.addr().to_string(),
            "--json",
            "produce",
            "live",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\nthree\n").unwrap();
    stdin.flush().unwrap();
    // Standard input stays open; the three records are stored (5 + 3 bytes each, and
    // 5 + 5 for "three").
    assert!(eventually(Duration::from_secs(10), || server
        .topic_size(topic)
        == 26));
    signal(&child, libc::SIGINT);
    let status = wait_bounded(&mut child, Duration::from_secs(10), "produce after SIGINT");
    drop(stdin);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(130), "stderr: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(v["interrupted"], true);
    assert_eq!(v["acknowledged"], 3);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["unknown"], 0);

    // Without --json the summary goes to standard error.
    let mut child = bin()
        .args(["--addr", &server.addr().to_string(), "produce", "live"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"four\n").unwrap();
    stdin.flush().unwrap();
    assert!(eventually(Duration::from_secs(10), || server
        .topic_size(topic)
        == 35));
    signal(&child, libc::SIGINT);
    let status = wait_bounded(&mut child, Duration::from_secs(10), "produce after SIGINT");
    drop(stdin);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(err.contains("1 acknowledged, 0 failed, 0 unknown"), "{err}");
}

/// A TCP listener that accepts connections and never answers (a frozen server).
fn frozen_server() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            match s {
                Ok(s) => held.push(s),
                Err(_) => return,
            }
        }
    });
    addr
}

/// Issue 9, item 22: a server that never answers gives a timeout (exit 5) within
/// `--timeout-ms`, for produce too, and the message says what happened.
#[test]
fn a_server_that_never_answers_times_out_with_exit_5() {
    let addr = frozen_server();
    let limit = Duration::from_secs(20);
    for args in [
        &["ping", "--count", "1"][..],
        &["topics", "list"],
        &["consume", "id:1", "--count", "1"],
        &["produce", "frozen", "--count", "1"],
        &["produce", "id:1", "--count", "10"],
    ] {
        let mut all = vec!["--addr", &addr, "--timeout-ms", "500"];
        all.extend_from_slice(args);
        let (status, _, err) = cli_bounded(&all, limit);
        assert_eq!(status.code(), Some(5), "{args:?}: {err}");
        assert!(err.contains("timed out"), "{args:?}: {err}");
        assert!(!err.contains("closed by the server"), "{args:?}: {err}");
    }
    // --delivery-timeout-ms bounds each record even with a long --timeout-ms.
    let t = Instant::now();
    let (status, _, err) = cli_bounded(
        &[
            "--addr",
            &addr,
            "--timeout-ms",
            "60000",
            "produce",
            "id:1",
            "--count",
            "3",
            "--delivery-timeout-ms",
            "300",
        ],
        limit,
    );
    assert_eq!(status.code(), Some(5), "{err}");
    assert!(err.contains("timed out"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(15));
}

/// Issue 9, item 23: a malformed address is a configuration error (exit 2), not a
/// connection failure.
#[test]
fn malformed_addresses_are_configuration_errors() {
    for bad in [
        "foo",
        "127.0.0.1:99999",
        "127.0.0.1:0",
        "::1:1992",
        "host:",
        ":1992",
    ] {
        let (status, _, err) = cli_bounded(
            &["--addr", bad, "ping", "--count", "1"],
            Duration::from_secs(20),
        );
        assert_eq!(status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("invalid configuration"), "{bad}: {err}");
    }
}

/// Issue 9, item 24: topic names that look like numbers, typed records, non-UTF-8
/// values in JSON, `--from` off a record boundary, `--size`.
#[test]
fn names_record_types_and_sizes_are_exact() {
    let server = TestServer::start().unwrap();
    let addr = server.addr().to_string();
    let with_addr = |args: &[&str]| {
        let mut all = vec!["--addr", addr.as_str()];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: &[&str]| {
        let all = with_addr(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        cli_bounded(&all, Duration::from_secs(20))
    };

    // A numeric name is a name; `id:N` is an id.
    let (status, out, err) = run(&["topics", "create", "12345"]);
    assert!(status.success(), "{err}");
    assert!(out.starts_with("1\t12345"), "{out}");
    let (status, _, err) = run(&["produce", "12345", "--count", "3", "--size", "5"]);
    assert!(status.success(), "{err}");
    // --size is the value's size: 5 bytes each (the sequence number's last 5 digits).
    assert_eq!(server.topic_size(1), 3 * (5 + 5));
    let (status, out, err) = run(&["consume", "12345", "--count", "3"]);
    assert!(status.success(), "{err}");
    assert_eq!(out, "00000\n00001\n00002\n");
    let (_, out, _) = run(&["consume", "id:1", "--count", "1"]);
    assert_eq!(out, "00000\n");
    let (status, out, err) = run(&["produce", "big", "--create", "--count", "2", "--size", "15"]);
    assert!(status.success(), "{err}{out}");
    let (_, out, _) = run(&["consume", "big"]);
    assert_eq!(out, "000000000000abc\n000000000001bcd\n");

    // Typed records, and a value that is not UTF-8.
    let typed = server.create_topic("typed");
    let p = Producer::connect(&addr, ProducerConfig::default()).unwrap();
    for r in [
        ProduceRecord::KeyValue {
            key: b"k1",
            value: b"v1",
        },
        ProduceRecord::Timestamped {
            timestamp_ns: 42,
            value: b"t",
        },
        ProduceRecord::KeyTimestamped {
            timestamp_ns: 7,
            key: b"k\xff",
            value: b"kt",
        },
        ProduceRecord::Raw(b"\xff\xfea"),
    ] {
        p.send_record(typed, r).unwrap();
    }
    p.close(Duration::from_secs(5)).unwrap();
    let all = with_addr(&["consume", "typed"]);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let (status, out, err) = cli_bounded_raw(&all, Duration::from_secs(20));
    assert!(status.success(), "{err}");
    assert_eq!(out, b"k1\tv1\n42\tt\n7\tk\xff\tkt\n\xff\xfea\n");
    let (status, out, err) = run(&["--json", "consume", "typed"]);
    assert!(status.success(), "{err}");
    let v: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 4, "{out}");
    assert_eq!(
        (
            v[0]["type"].as_str(),
            v[0]["key"].as_str(),
            v[0]["value"].as_str()
        ),
        (Some("KeyValue"), Some("k1"), Some("v1"))
    );
    assert_eq!(v[1]["timestamp_ns"], 42);
    assert_eq!(v[1]["value"], "t");
    assert_eq!(v[2]["key_b64"], "a/8=");
    assert!(v[2].get("key").is_none());
    assert_eq!(v[2]["value"], "kt");
    assert_eq!(v[3]["type"], "RawData");
    assert_eq!(v[3]["value_b64"], "//5h");
    assert!(v[3].get("value").is_none());
    for (i, rec) in v.iter().enumerate() {
        assert!(rec["offset"].is_u64(), "record {i}: {rec}");
    }
    assert_eq!(v[1]["offset"], 5 + 2 + 2 + 2);

    // --from inside a record: the offset named is the one given, not 0.
    let (status, _, err) = run(&["consume", "typed", "--from", "3"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("offset 3 "), "{err}");
    assert!(err.contains("record boundary"), "{err}");
}

/// Issue 9, item 24: the quickstart refuses settings it cannot read.
#[test]
fn quickstart_rejects_settings_it_cannot_read() {
    for (name, value) in [
        ("RECORDS", "abc"),
        ("RECORD_SIZE", "4"),
        ("RECORD_SIZE", "1k"),
    ] {
        let out = Command::new(env!("CARGO"))
            .args(["run", "--quiet", "--example", "quickstart"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env(name, value)
            .env_remove("LANCE_ADDR")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}={value}: {err}");
        assert!(err.contains(name), "{name}={value}: {err}");
    }
}

/// Issue 9, item 28: the bench's figures time the work, not its progress ticker.
#[test]
fn bench_times_the_work_not_the_ticker() {
    let t = Instant::now();
    let (status, out, err) = cli_bounded(
        &[
            "--json",
            "bench",
            "consume",
            "--count",
            "2000",
            "--record-size",
            "100",
            "--progress-ms",
            "60000",
        ],
        Duration::from_secs(50),
    );
    assert!(status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["records"], 2000);
    // A ticker that wakes every 60 s is not waited for, nor timed.
    assert!(v["seconds"].as_f64().unwrap() < 30.0, "{v}");
    assert!(t.elapsed() < Duration::from_secs(45));
}

/// Issue 11, item 6: produce→consume latency at a fixed rate, measured from each
/// record's scheduled send time; every record sent is read, the warm-up second is not
/// measured.
#[test]
fn bench_e2e_reports_scheduled_time_latency() {
    let dir = std::env::temp_dir().join(format!("lnc-uring-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for backend in ["poll", "auto"] {
        let hgrm = dir.join(format!("{backend}.hgrm"));
        let (status, out, err) = cli_bounded(
            &[
                "--json",
                "--backend",
                backend,
                "bench",
                "e2e",
                "--rate",
                "200",
                "--duration-secs",
                "2",
                "--hdr-out",
                hgrm.to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        assert!(status.success(), "{backend}: {err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["bench"], "e2e");
        assert_eq!(v["records_sent"], 400, "{v}");
        assert_eq!(v["records_received"], 400, "{v}");
        assert_eq!(v["records_unique"], 400, "{v}");
        // Records scheduled in the first second are the warm-up.
        assert_eq!(v["records_measured"], 200, "{v}");
        let keys = ["p50_us", "p99_us", "p999_us", "p9999_us", "max_us"];
        let q: Vec<f64> = keys
            .iter()
            .map(|k| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}")))
            .collect();
        assert!(q[0] > 0.0, "{v}");
        assert!(q.windows(2).all(|w| w[0] <= w[1]), "{v}");

        // The distribution in HdrHistogram's percentile text format.
        let text = std::fs::read_to_string(&hgrm).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("       Value     Percentile TotalCount 1/(1-Percentile)")
        );
        assert_eq!(lines.next(), Some(""));
        let rows: Vec<Vec<&str>> = lines
            .by_ref()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(rows.len() > 5, "{text}");
        let last = rows.last().unwrap();
        assert_eq!(last[1], "1.000000000000", "{text}");
        assert_eq!(last[2], "200", "{text}");
        let values: Vec<f64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "{text}");
        // Microseconds, as the JSON figures are (the file's are bucket tops).
        assert!(
            (values[values.len() - 1] - q[4]).abs() <= q[4] * 0.01 + 1.0,
            "{text}"
        );
        assert!(text.contains("#[Max     = "), "{text}");
        assert!(text.contains("Total count    =          200]"), "{text}");
    }

    // Send-with-ACK at a fixed rate, with its own distribution file.
    let hgrm = dir.join("latency.hgrm");
    let (status, out, err) = cli_bounded(
        &[
            "--json",
            "bench",
            "latency",
            "--rate",
            "1000",
            "--count",
            "300",
            "--hdr-out",
            hgrm.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["rate"], 1000.0, "{v}");
    assert_eq!(v["samples"], 300, "{v}");
    assert!(v["p9999_us"].as_f64().unwrap() > 0.0, "{v}");
    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(text.contains("Total count    =          300]"), "{text}");

    // Nonsense is a usage error.
    for args in [
        &["bench", "e2e", "--rate", "0"][..],
        &["bench", "e2e", "--rate", "abc"],
        &["bench", "e2e", "--duration-secs", "1"],
        &["bench", "e2e", "--record-size", "8"],
        &["bench", "latency", "--rate", "-5"],
    ] {
        let (status, _, err) = cli_bounded(args, Duration::from_secs(30));
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
