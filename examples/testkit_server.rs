//! A standalone testkit LWP server, for trying clients by hand.
//!
//! ```text
//! cargo run --features testkit --example testkit_server -- [options]
//!
//!   --addr IP          listen address (default 127.0.0.1)
//!   --port N           listen port (default 0: a free port)
//!   --data-dir DIR     keep data in DIR (restarts keep every acknowledged byte)
//!   --checksum NAME    ieee (default) or castagnoli
//!   --ack-delay-ms N   delay each chunk's ACKs by N ms
//!   --token TOKEN      enable token auth with TOKEN (repeatable)
//!   --max-payload N    largest payload_length accepted (default 16777216)
//!   --discard          keep no data (offsets advance; fetches of data fail)
//!   --cluster          cluster-flavoured replies
//! ```
//!
//! Prints `listening on 127.0.0.1:PORT` on standard output and serves until SIGINT
//! (Ctrl-C) or SIGTERM — standard input is not read, so `… testkit_server &` in a script
//! keeps running — then prints the counters on standard error and exits 0. Like
//! `lnc-uring serve`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use lnc_uring::proto::Checksum;
use lnc_uring::testkit::{AckPolicy, TestServer};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: testkit_server [--addr IP] [--port N] [--data-dir DIR] \
    [--checksum ieee|castagnoli] [--ack-delay-ms N] [--token TOKEN]... [--max-payload N] \
    [--discard] [--cluster]";

fn usage(err: &str) -> ExitCode {
    eprintln!("testkit_server: {err}");
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut port = 0u16;
    let mut builder = TestServer::builder();
    let mut tokens = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--cluster" {
            builder = builder.cluster_mode(true);
            continue;
        }
        if flag == "--discard" {
            builder = builder.discard_data(true);
            continue;
        }
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        const WITH_VALUE: [&str; 7] = [
            "--addr",
            "--port",
            "--data-dir",
            "--checksum",
            "--ack-delay-ms",
            "--token",
            "--max-payload",
        ];
        if !WITH_VALUE.contains(&flag.as_str()) {
            return usage(&format!("unknown flag {flag}"));
        }
        let Some(value) = args.next() else {
            return usage(&format!("{flag} needs a value"));
        };
        let bad = |what: &str| usage(&format!("invalid {what}: {value:?}"));
        match flag.as_str() {
            "--addr" => match value.parse() {
                Ok(v) => ip = v,
                Err(_) => return bad("address"),
            },
            "--port" => match value.parse() {
                Ok(v) => port = v,
                Err(_) => return bad("port"),
            },
            "--data-dir" => builder = builder.data_dir(&value),
            "--checksum" => match value.parse::<Checksum>() {
                Ok(c) => builder = builder.checksum(c),
                Err(_) => return bad("checksum"),
            },
            "--ack-delay-ms" => match value.parse() {
                Ok(ms) => {
                    builder = builder.ack_policy(AckPolicy::Delayed(Duration::from_millis(ms)))
                }
                Err(_) => return bad("delay"),
            },
            "--token" => tokens.push(value),
            "--max-payload" => match value.parse() {
                Ok(v) => builder = builder.max_payload(v),
                Err(_) => return bad("size"),
            },
            other => return usage(&format!("unknown flag {other}")),
        }
    }
    // Before the server starts: from here on a signal stops it cleanly.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("testkit_server: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match builder
        .addr(SocketAddr::new(ip, port))
        .auth_tokens(tokens)
        .start()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("testkit_server: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", server.addr());
    let signal = signals.forever().next().unwrap_or(SIGTERM);
    let stats = server.stats();
    server.stop();
    let name = if signal == SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    eprintln!("testkit_server: stopped by {name}; {stats:?}");
    ExitCode::SUCCESS
}
