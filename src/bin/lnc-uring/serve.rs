//! `lnc-uring serve`: the embedded Lance-compatible test server, until SIGINT or SIGTERM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;
use lnc_uring::proto::DEFAULT_PORT;
use lnc_uring::testkit::{AckPolicy, TestServer};
use lnc_uring::Error;
use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::{Cli, ServeArgs};

pub(crate) const AFTER_HELP: &str = "\
Prints `listening on IP:PORT` (with --json: {\"listening\":\"IP:PORT\"}) on standard output
once it accepts connections, then serves until SIGINT or SIGTERM (standard input is not
read: `lnc-uring serve --port 0 &` works in scripts), and exits 0.

--checksum sets the checksum the server computes (clients must use the same one);
--token and --checksum read the same settings as the client commands, so one
LANCE_TOKEN serves both sides.";

/// The listen address from `--addr` (IP or IP:PORT, given on the command line) and
/// `--port`.
fn listen_addr(a: &ServeArgs, m: &ArgMatches) -> Result<SocketAddr, Error> {
    let given = m.value_source("addr") == Some(ValueSource::CommandLine);
    let (ip, port) = match a.addr.as_deref().filter(|_| given) {
        None => (IpAddr::V4(Ipv4Addr::LOCALHOST), None),
        Some(s) => match (s.parse::<IpAddr>(), s.parse::<SocketAddr>()) {
            (Ok(ip), _) => (ip, None),
            (_, Ok(sa)) => (sa.ip(), Some(sa.port())),
            _ => {
                return Err(Error::Config(format!(
                    "serve --addr {s:?}: expected an IP address or IP:PORT"
                )))
            }
        },
    };
    let port = match (port, a.port) {
        (Some(p), Some(q)) if p != q => {
            return Err(Error::Config(format!(
                "serve: --addr says port {p}, --port says {q}"
            )))
        }
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => DEFAULT_PORT,
    };
    Ok(SocketAddr::new(ip, port))
}

pub(crate) fn run(cli: &Cli, a: &ServeArgs, m: &ArgMatches) -> Result<u8, Error> {
    for client_only in ["backend", "timeout_ms"] {
        if m.value_source(client_only) == Some(ValueSource::CommandLine) {
            return Err(Error::Config(format!(
                "--{} is a client option; serve does not use it",
                client_only.replace('_', "-")
            )));
        }
    }
    let addr = listen_addr(a, m)?;
    // Before the server starts: a signal from here on stops it cleanly.
    let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(Error::from)?;
    let mut builder = TestServer::builder()
        .addr(addr)
        .checksum(cli.checksum)
        .discard_data(a.discard)
        .cluster_mode(a.cluster)
        .auth_tokens(a.token.clone());
    if let Some(dir) = &a.data_dir {
        builder = builder.data_dir(dir);
    }
    if let Some(ms) = a.ack_delay_ms {
        builder = builder.ack_policy(AckPolicy::Delayed(Duration::from_millis(ms)));
    }
    if let Some(max) = a.max_payload {
        builder = builder.max_payload(max);
    }
    let server = builder.start().map_err(|e| {
        Error::Io(std::sync::Arc::new(std::io::Error::new(
            e.kind(),
            format!("cannot serve on {addr}: {e}"),
        )))
    })?;
    if cli.json {
        println!("{}", json!({ "listening": server.addr().to_string() }));
    } else {
        println!("listening on {}", server.addr());
    }
    let signal = signals.forever().next().unwrap_or(SIGTERM);
    let stats = server.stats();
    server.stop();
    let name = if signal == SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    if cli.json {
        eprintln!(
            "{}",
            json!({ "stopped": name, "connections_accepted": stats.connections_accepted,
                    "ingest_frames": stats.ingest_frames, "ingest_bytes": stats.ingest_bytes,
                    "acks_sent": stats.acks_sent, "errors_sent": stats.errors_sent })
        );
    } else {
        eprintln!("lnc-uring serve: stopped by {name}; {stats:?}");
    }
    Ok(0)
}
