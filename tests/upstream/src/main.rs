//! Cross-check: the lnc-uring testkit server driven by the upstream Rust client
//! (`lnc-client` 0.2.8), an independent implementation of the protocol. Every result is
//! compared with what the released server gives (docs/protocol.md).
//!
//! Run: `cargo run --release --manifest-path tests/upstream/Cargo.toml`
//! Prints one PASS/FAIL line per check and `N passed, M failed`; exits 1 on failure.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use lnc_client::{
    ClientConfig, ClientError, Consumer, ConsumerConfig, LanceClient, Producer, ProducerConfig,
    SeekPosition,
};
use lnc_uring::proto::encode_raw;
use lnc_uring::testkit::TestServer;

/// Upstream retries forever on retryable errors: bound every call.
async fn bounded<T>(
    what: &str,
    f: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(10), f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e:?}")),
        Err(_) => Err(format!("{what}: timed out")),
    }
}

/// Expects an upstream error; returns it.
async fn bounded_err<T: std::fmt::Debug>(
    what: &str,
    f: impl Future<Output = Result<T, ClientError>>,
) -> Result<ClientError, String> {
    match tokio::time::timeout(Duration::from_secs(10), f).await {
        Ok(Ok(v)) => Err(format!("{what}: expected an error, got {v:?}")),
        Ok(Err(e)) => Ok(e),
        Err(_) => Err(format!("{what}: timed out")),
    }
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn record(&mut self, name: &str, r: Result<(), String>) {
        match r {
            Ok(()) => {
                self.passed += 1;
                println!("PASS {name}");
            }
            Err(e) => {
                self.failed += 1;
                println!("FAIL {name}: {e}");
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let server = match TestServer::start() {
        Ok(s) => s,
        Err(e) => {
            println!("FAIL start testkit: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = server.addr().to_string();
    println!("testkit listening on {addr}");
    let mut report = Report {
        passed: 0,
        failed: 0,
    };

    let mut client = match bounded("connect", LanceClient::connect(ClientConfig::new(&addr))).await
    {
        Ok(c) => c,
        Err(e) => {
            report.record("connect", Err(e));
            println!("{} passed, {} failed", report.passed, report.failed);
            return ExitCode::FAILURE;
        }
    };
    report.record("connect", Ok(()));

    // §5.1: keepalive echoed, and it is the very next frame.
    let r = bounded("ping", client.ping()).await.map(|_| ());
    report.record("ping", r);

    // §4.3 / §6.4: ids from 1, name echoed.
    let r = async {
        let a = bounded("create_topic", client.create_topic("upstream-a")).await?;
        ensure(
            a.id == 1 && a.name == "upstream-a" && a.topic_epoch == 1,
            || format!("first topic {a:?}"),
        )?;
        let b = bounded("create_topic", client.create_topic("upstream-b")).await?;
        ensure(b.id == 2, || format!("second topic {b:?}"))
    }
    .await;
    report.record("create_topic ids from 1", r);

    let r = async {
        let topics = bounded("list_topics", client.list_topics()).await?;
        let mut names: Vec<(u32, String)> = topics.into_iter().map(|t| (t.id, t.name)).collect();
        names.sort();
        ensure(
            names == [(1, "upstream-a".to_owned()), (2, "upstream-b".to_owned())],
            || format!("list {names:?}"),
        )
    }
    .await;
    report.record("list_topics", r);

    let r = async {
        let t = bounded("get_topic", client.get_topic(1)).await?;
        ensure(
            t.id == 1 && t.name == "upstream-a" && t.retention.is_none(),
            || format!("{t:?}"),
        )
    }
    .await;
    report.record("get_topic", r);

    let r = async {
        let s = bounded("get_cluster_status", client.get_cluster_status()).await?;
        ensure(
            s.is_leader && s.node_count == 1 && s.leader_id == Some(0) && s.peer_states.is_empty(),
            || format!("{s:?}"),
        )
    }
    .await;
    report.record("get_cluster_status", r);

    // Ingest through the upstream Producer: raw bytes, concatenated verbatim (§4, §7.1).
    let mut tlv = Vec::new();
    encode_raw(&mut tlv, b"record").expect("tlv");
    let mut expected = b"hello".to_vec();
    expected.extend_from_slice(b"world");
    expected.extend_from_slice(&tlv);
    let r = async {
        let producer = bounded(
            "Producer::connect",
            Producer::connect(&addr, ProducerConfig::new().with_linger_ms(1)),
        )
        .await?;
        for part in [&b"hello"[..], b"world", &tlv] {
            bounded("Producer::send", producer.send(1, part)).await?;
        }
        bounded("Producer::flush", producer.flush()).await?;
        ensure(server.topic_bytes(1) == expected, || {
            format!("stored {:?}", server.topic_bytes(1))
        })?;
        // Unknown topic: not retryable upstream, so it surfaces. (The Producer re-wraps
        // the server's text with the error's Display, hence the prefix.)
        let e = bounded_err("send to unknown topic", producer.send(99, b"x")).await?;
        ensure(
            matches!(&e, ClientError::ServerError(t) if t == "Server error: Unknown topic"),
            || format!("{e:?}"),
        )?;
        let _ = tokio::time::timeout(Duration::from_secs(5), producer.close()).await;
        Ok(())
    }
    .await;
    report.record("Producer::send + flush stores bytes verbatim", r);

    let size = expected.len() as u64;
    let r = async {
        let f = bounded("fetch", client.fetch(1, 0, 65536)).await?;
        ensure(
            f.data.as_ref() == expected.as_slice()
                && f.next_offset == size
                && f.bytes_returned as u64 == size
                && f.record_count == 1,
            || format!("{f:?}"),
        )?;
        // A cut in the middle of the TLV record (§7.3 step 5).
        let f = bounded("fetch cut", client.fetch(1, 3, 9)).await?;
        ensure(
            f.data.as_ref() == &expected[3..12] && f.next_offset == 12,
            || format!("{f:?}"),
        )?;
        // At the end: empty, record_count 0.
        let f = bounded("fetch at end", client.fetch(1, size, 100)).await?;
        ensure(
            f.data.is_empty() && f.next_offset == size && f.record_count == 0,
            || format!("{f:?}"),
        )?;
        // Tail sentinel.
        let f = bounded("fetch tail", client.fetch(1, u64::MAX, 1)).await?;
        ensure(f.data.is_empty() && f.next_offset == size, || {
            format!("{f:?}")
        })?;
        // Past the end: CatchingUp(size).
        let e = bounded_err("fetch past end", client.fetch(1, size + 100, 100)).await?;
        ensure(
            matches!(e, ClientError::ServerCatchingUp { server_offset } if server_offset == size),
            || format!("{e:?}"),
        )?;
        let e = bounded_err("fetch unknown", client.fetch(42, 0, 100)).await?;
        ensure(
            matches!(&e, ClientError::ServerError(t) if t == "Topic 42 not found"),
            || format!("{e:?}"),
        )
    }
    .await;
    report.record("LanceClient::fetch offsets, cuts, end, tail, CatchingUp", r);

    let r = async {
        let c = bounded(
            "consumer connect",
            LanceClient::connect(ClientConfig::new(&addr)),
        )
        .await?;
        let mut consumer = Consumer::new(
            c,
            &addr,
            ConsumerConfig::new(1).with_start_position(SeekPosition::Beginning),
        );
        let batch = bounded("next_batch", consumer.next_batch()).await?;
        let batch = batch.ok_or("no batch")?;
        ensure(
            batch.data.as_ref() == expected.as_slice() && batch.current_offset == size,
            || format!("{batch:?}"),
        )?;
        let next = bounded("next_batch at end", consumer.next_batch()).await?;
        ensure(next.is_none(), || format!("{next:?}"))?;
        let c = bounded(
            "consumer connect",
            LanceClient::connect(ClientConfig::new(&addr)),
        )
        .await?;
        let mut tail = Consumer::new(
            c,
            &addr,
            ConsumerConfig::new(1).with_start_position(SeekPosition::End),
        );
        let none = bounded("next_batch from End", tail.next_batch()).await?;
        ensure(none.is_none(), || format!("{none:?}"))
    }
    .await;
    report.record("Consumer from Beginning and End", r);

    let r = async {
        let s = bounded("subscribe", client.subscribe(1, 0, 65536, 42)).await?;
        ensure(s.consumer_id == 42 && s.start_offset == 0, || {
            format!("{s:?}")
        })?;
        let c = bounded("commit_offset", client.commit_offset(1, 42, size)).await?;
        ensure(c.consumer_id == 42 && c.committed_offset == size, || {
            format!("{c:?}")
        })?;
        let s = bounded("subscribe again", client.subscribe(1, 0, 65536, 42)).await?;
        ensure(s.start_offset == size, || format!("resume {s:?}"))?;
        let s = bounded("subscribe at end", client.subscribe(1, u64::MAX, 0, 43)).await?;
        ensure(s.start_offset == u64::MAX, || format!("{s:?}"))?;
        bounded("unsubscribe", client.unsubscribe(1, 42)).await
    }
    .await;
    report.record("subscribe / commit_offset / unsubscribe", r);

    let r = async {
        bounded("set_retention", client.set_retention(1, 86_400, u64::MAX)).await?;
        let t = bounded(
            "create_topic_with_retention",
            client.create_topic_with_retention("upstream-r", 86_400, 1 << 30),
        )
        .await?;
        ensure(t.id == 3 && t.name == "upstream-r", || format!("{t:?}"))?;
        let info = server.topics();
        let r = info.iter().find(|t| t.id == 3).and_then(|t| t.retention());
        ensure(
            r.map(|r| (r.max_age_secs, r.max_bytes)) == Some((86_400, 1 << 30)),
            || format!("{r:?}"),
        )
    }
    .await;
    report.record("set_retention / create_topic_with_retention", r);

    let r = async {
        bounded("delete_topic", client.delete_topic(2)).await?;
        let e = bounded_err("get deleted", client.get_topic(2)).await?;
        ensure(
            matches!(&e, ClientError::ServerError(t) if t == "Topic not found"),
            || format!("{e:?}"),
        )?;
        let e = bounded_err("delete again", client.delete_topic(2)).await?;
        ensure(
            matches!(&e, ClientError::ServerError(t) if t == "Configuration error: Topic 2 not found"),
            || format!("{e:?}"),
        )
    }
    .await;
    report.record("delete_topic", r);

    // The testkit restarts: upstream reconnects and finds the data.
    let r = async {
        server.restart().map_err(|e| format!("restart: {e}"))?;
        let mut c = bounded("reconnect", LanceClient::connect(ClientConfig::new(&addr))).await?;
        let f = bounded("fetch after restart", c.fetch(1, 0, 65536)).await?;
        ensure(f.data.as_ref() == expected.as_slice(), || format!("{f:?}"))
    }
    .await;
    report.record("data survives a restart", r);

    server.stop();
    println!("{} passed, {} failed", report.passed, report.failed);
    if report.failed == 0 {
        println!("PASS: upstream lnc-client 0.2.8 agrees with the testkit");
        ExitCode::SUCCESS
    } else {
        println!("FAIL: upstream lnc-client 0.2.8 disagrees with the testkit");
        ExitCode::FAILURE
    }
}
