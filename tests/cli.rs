//! The `lnc-uring` command-line tool end to end against the embedded server.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use lnc_uring::testkit::TestServer;

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
    let out = cli(&addr, &["produce", "77", "--count", "3"]);
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
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(&mut child, limit, &format!("lnc-uring {args:?}"));
    (status, o.join().unwrap(), e.join().unwrap())
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
