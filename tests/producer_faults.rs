//! The producer against the embedded server's faults, on both backends: ACK ordering,
//! errors without batch ids, dropped ACK tails, connection cuts mid-window, a server
//! that stops reading, keepalives, deadlines.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{backends, conn, eventually, stored_values};
use lnc_uring::testkit::{AckPolicy, Fault, Target, TestServer};
use lnc_uring::{BufferLimit, Error, FullBufferPolicy, ProduceRecord, Producer, ProducerConfig};

fn producer(server: &TestServer, backend: lnc_uring::Backend, cfg: ProducerConfig) -> Producer {
    Producer::with_config(cfg.with_connection(conn(server, backend))).expect("connect")
}

/// Counts of each value in the topic.
fn counts(server: &TestServer, topic: u32) -> HashMap<Vec<u8>, usize> {
    let mut m = HashMap::new();
    for v in stored_values(server, topic) {
        *m.entry(v).or_insert(0) += 1;
    }
    m
}

fn value(i: usize) -> Vec<u8> {
    format!("record-{i:06}").into_bytes()
}

#[test]
fn error_overtaking_acks_fails_only_its_batch() {
    for backend in backends() {
        // ACKs delayed so that all three frames share a read chunk on the server.
        let server = TestServer::builder()
            .ack_policy(AckPolicy::Delayed(Duration::from_millis(20)))
            .start()
            .unwrap();
        let good = server.create_topic("good");
        let p = producer(
            &server,
            backend,
            ProducerConfig::default().with_linger_ms(0),
        );
        let a = p.send_async(good, b"a").unwrap();
        let b = p.send_async(999, b"b").unwrap();
        let c = p.send_async(good, b"c").unwrap();
        assert!(a.wait().is_ok(), "{backend}");
        assert!(
            matches!(b.wait(), Err(Error::TopicNotFound { .. })),
            "{backend}"
        );
        assert!(c.wait().is_ok(), "{backend}");
        assert_eq!(stored_values(&server, good), [b"a".to_vec(), b"c".to_vec()]);
        // `close` reports what failed even to a caller that waited on no ticket.
        match p.close(Duration::from_secs(5)) {
            Err(Error::DeliveryFailed { failed: 1, first }) => {
                assert!(matches!(*first, Error::TopicNotFound { .. }), "{backend}")
            }
            other => panic!("{backend}: {other:?}"),
        }
    }
}

#[test]
fn retryable_error_without_batch_id_is_resent() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let p = producer(
            &server,
            backend,
            ProducerConfig::default().with_linger_ms(0),
        );
        // The 3rd ingest from now is refused with FORWARD_FAILED (nothing stored).
        server
            .faults()
            .inject(Fault::forward_failed("Forward operation timed out").after(2));
        let tickets: Vec<_> = (0..10)
            .map(|i| p.send_async(t, &value(i)).unwrap())
            .collect();
        for tk in tickets {
            tk.wait().unwrap();
        }
        let c = counts(&server, t);
        for i in 0..10 {
            assert_eq!(
                c.get(&value(i)),
                Some(&1),
                "{backend}: record {i} stored exactly once"
            );
        }
        // Driver counters are published after each event the driver handles.
        assert!(common::eventually(Duration::from_secs(2), || {
            let d = p.stats().driver;
            d.batches_retried >= 1 && d.unattributed_errors >= 1
        }));
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn quorum_failure_drops_the_ack_tail_and_everything_is_resent() {
    for backend in backends() {
        let server = TestServer::builder()
            .ack_policy(AckPolicy::Delayed(Duration::from_millis(10)))
            .start()
            .unwrap();
        let t = server.create_topic("t");
        let p = producer(
            &server,
            backend,
            ProducerConfig::default().with_linger_ms(0),
        );
        server.faults().inject(Fault::FailQuorum { nth: 2 });
        let tickets: Vec<_> = (0..20)
            .map(|i| p.send_async(t, &value(i)).unwrap())
            .collect();
        for tk in tickets {
            tk.wait().unwrap();
        }
        // At-least-once: every record is there; the failed one and the tail of its
        // chunk may be there twice (they were stored but not acknowledged).
        let c = counts(&server, t);
        for i in 0..20 {
            assert!(
                c.get(&value(i)).is_some_and(|&n| (1..=2).contains(&n)),
                "{backend}: {i}"
            );
        }
        assert!(
            common::eventually(Duration::from_secs(2), || p.stats().driver.batches_retried
                >= 1),
            "{backend}"
        );
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn connection_cut_mid_window_loses_no_record() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let cfg = ProducerConfig::default()
            .with_linger_ms(1)
            .with_batch_size(2048);
        let p = producer(&server, backend, cfg);
        server
            .faults()
            .inject_for(Target::Conn(0), Fault::CloseAfterFrames { frames: 5 });
        let tickets: Vec<_> = (0..2000)
            .map(|i| p.send_async(t, &value(i)).unwrap())
            .collect();
        for tk in tickets {
            tk.wait().unwrap();
        }
        let c = counts(&server, t);
        for i in 0..2000 {
            assert!(c.contains_key(&value(i)), "{backend}: record {i} lost");
        }
        let s = p.stats().driver;
        assert!(s.connects >= 2 && s.disconnects >= 1, "{backend}: {s:?}");
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn server_restart_is_survived() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let p = producer(
            &server,
            backend,
            ProducerConfig::default().with_linger_ms(0),
        );
        p.send(t, b"before").unwrap();
        server.restart().unwrap();
        p.send(t, b"after").unwrap();
        let vals = stored_values(&server, t);
        assert!(vals.contains(&b"before".to_vec()) && vals.contains(&b"after".to_vec()));
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn full_buffer_against_a_server_that_stops_reading() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let cap = 256 * 1024;
        let cfg = ProducerConfig::default()
            .with_linger_ms(0)
            .with_buffer_memory(cap)
            .with_full_buffer(FullBufferPolicy::Fail);
        let p = producer(&server, backend, cfg);
        p.send(t, b"warm-up").unwrap();
        server.faults().inject(Fault::PauseReads);
        let big = vec![7u8; 8 * 1024];
        let mut accepted = Vec::new();
        let mut refused = None;
        for _ in 0..10_000 {
            match p.send_async(t, &big) {
                Ok(tk) => accepted.push(tk),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
            assert!(
                p.stats().bytes_outstanding <= cap as u64,
                "memory stays bounded"
            );
        }
        assert!(
            matches!(refused, Some(Error::Backpressure(BufferLimit::Memory { max_bytes })) if max_bytes == cap),
            "{backend}: {refused:?}"
        );
        // A blocking send waits for room, then times out with the same typed error.
        let start = Instant::now();
        let e = Producer::send_async(&p, t, &big);
        assert!(e.is_err() && start.elapsed() < Duration::from_secs(1));
        server.faults().resume_reads();
        for tk in accepted {
            tk.wait().unwrap();
        }
        assert_eq!(p.stats().records_outstanding, 0);
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn blocking_policy_waits_for_room() {
    for backend in backends() {
        let server = TestServer::builder()
            .ack_policy(AckPolicy::Delayed(Duration::from_millis(5)))
            .start()
            .unwrap();
        let t = server.create_topic("t");
        let cfg = ProducerConfig::default()
            .with_linger_ms(0)
            .with_buffer_memory(64 * 1024)
            .with_full_buffer(FullBufferPolicy::Block(Duration::from_secs(10)));
        let p = producer(&server, backend, cfg);
        let v = vec![1u8; 4096];
        let tickets: Vec<_> = (0..200).map(|_| p.send_async(t, &v).unwrap()).collect();
        for tk in tickets {
            tk.wait().unwrap();
        }
        assert_eq!(stored_values(&server, t).len(), 200);
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn keepalive_when_idle_is_never_answered() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let c = conn(&server, backend).with_keepalive_interval(Duration::from_millis(30));
        let p = Producer::with_config(ProducerConfig::default().with_connection(c)).unwrap();
        p.send(t, b"x").unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let ka = server.stats().keepalives;
        // About one per 30 ms of idleness: no ping-pong storm (the Python client's bug).
        assert!((3..=40).contains(&ka), "{backend}: {ka} keepalives");
        assert!(p.stats().driver.keepalives_sent >= ka);
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn dead_peer_is_detected_and_the_batch_resent() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let c = conn(&server, backend)
            .with_keepalive_interval(Duration::from_millis(50))
            .with_peer_timeout(Duration::from_millis(300));
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_connection(c),
        )
        .unwrap();
        p.send(t, b"first").unwrap();
        // The first connection goes silent for longer than the peer timeout.
        server.faults().inject_for(
            Target::Conn(0),
            Fault::StallReads {
                duration: Duration::from_secs(2),
            },
        );
        let m = p.send(t, b"second").unwrap();
        assert!(m.attempts >= 2, "{backend}: resent on a new connection");
        assert!(p.stats().driver.connects >= 2);
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn delivery_timeout_gives_every_record_an_outcome() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let cfg = ProducerConfig::default()
            .with_linger_ms(0)
            .with_delivery_timeout(Duration::from_millis(300));
        let p = producer(&server, backend, cfg);
        server
            .faults()
            .inject(Fault::WithholdAcks { count: u32::MAX });
        let start = Instant::now();
        let r = p.send(t, b"never acked");
        // It was written, so the server may have it: the outcome is unknown.
        match &r {
            Err(Error::OutcomeUnknown { attempts: 1, cause }) => {
                assert!(matches!(**cause, Error::Timeout(_)), "{backend}: {r:?}")
            }
            _ => panic!("{backend}: {r:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(p.stats().records_failed, 1);
        p.close(Duration::from_millis(200)).ok();
    }
}

#[test]
fn immediate_errors_for_bad_input() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let p = producer(&server, backend, ProducerConfig::default());
        let huge = vec![0u8; 16 * 1024 * 1024];
        assert!(matches!(
            p.send_async(t, &huge),
            Err(Error::RecordTooLarge { .. })
        ));
        let key = vec![0u8; 70_000];
        assert!(p
            .send_record_async(
                t,
                ProduceRecord::KeyValue {
                    key: &key,
                    value: b"v"
                }
            )
            .is_err());
        assert_eq!(
            p.stats().bytes_outstanding,
            0,
            "nothing leaked into the gauge"
        );
        p.send(t, b"still fine").unwrap();
        p.close(Duration::from_secs(5)).unwrap();
    }
    // Nobody listening: connect fails with a typed error.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    assert!(matches!(
        Producer::connect(&addr, ProducerConfig::default()),
        Err(Error::Connect { .. })
    ));
}

#[test]
fn backpressure_frames_are_tolerated() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let p = producer(
            &server,
            backend,
            ProducerConfig::default().with_linger_ms(0),
        );
        server.faults().inject(Fault::Backpressure {
            count: 3,
            replace_ingest: false,
        });
        for i in 0..5 {
            p.send(t, &value(i)).unwrap();
        }
        assert_eq!(stored_values(&server, t).len(), 5);
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn corrupt_and_split_replies() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let p = producer(
            &server,
            backend,
            ProducerConfig::default().with_linger_ms(0),
        );
        server.faults().inject(Fault::SplitWrites {
            max_piece: 7,
            pause: Duration::ZERO,
        });
        for i in 0..20 {
            p.send(t, &value(i)).unwrap();
        }
        server.faults().clear();
        // A corrupted ACK: the client drops the connection and resends.
        server.faults().inject(Fault::CorruptNextFrame);
        let m = p.send(t, b"after corruption").unwrap();
        assert!(m.attempts >= 2, "{backend}");
        assert!(eventually(Duration::from_secs(2), || stored_values(
            &server, t
        )
        .len()
            >= 21));
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn many_threads_one_producer() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let p = producer(
            &server,
            backend,
            ProducerConfig::default().with_linger_ms(1),
        );
        std::thread::scope(|s| {
            for th in 0..4 {
                let p = &p;
                s.spawn(move || {
                    for i in 0..500 {
                        p.send_async(t, format!("{th}-{i}").as_bytes()).unwrap();
                    }
                    p.flush(Duration::from_secs(10)).unwrap();
                });
            }
        });
        let vals = stored_values(&server, t);
        assert_eq!(vals.len(), 2000);
        // Per thread, order is preserved.
        for th in 0..4 {
            let mine: Vec<_> = vals
                .iter()
                .filter(|v| v.starts_with(format!("{th}-").as_bytes()))
                .collect();
            let expect: Vec<Vec<u8>> = (0..500).map(|i| format!("{th}-{i}").into_bytes()).collect();
            assert_eq!(mine.len(), 500);
            assert!(
                mine.iter().zip(&expect).all(|(a, b)| *a == b),
                "{backend}: order of thread {th}"
            );
        }
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn compression_round_trips_through_the_server() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let p = producer(
            &server,
            backend,
            ProducerConfig::default().with_compression(true),
        );
        let tickets: Vec<_> = (0..500)
            .map(|i| {
                p.send_async(
                    t,
                    format!("compressible record number {i:06} ...........").as_bytes(),
                )
                .unwrap()
            })
            .collect();
        for tk in tickets {
            tk.wait().unwrap();
        }
        let data = server.topic_bytes(t);
        let mut scratch = Vec::new();
        let vals: Vec<_> = lnc_uring::proto::ExpandedRecords::new(&data, &mut scratch)
            .map(|r| r.unwrap().value.to_vec())
            .collect();
        assert_eq!(vals.len(), 500);
        assert!(
            data.len() < 500 * 40 / 2,
            "{backend}: stored {} bytes",
            data.len()
        );
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn closed_producer_and_drop_deliver_everything() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let tickets = {
            let p = producer(
                &server,
                backend,
                ProducerConfig::default().with_linger_ms(50),
            );
            (0..100)
                .map(|i| p.send_async(t, &value(i)).unwrap())
                .collect::<Vec<_>>()
            // Dropped here with records still lingering.
        };
        for tk in tickets {
            tk.wait().unwrap();
        }
        assert_eq!(stored_values(&server, t).len(), 100);
    }
}

#[test]
fn zero_copy_sends_from_registered_buffers_deliver_exact_bytes() {
    if !lnc_uring::Backend::io_uring_available() {
        eprintln!("io_uring unavailable: skipped");
        return;
    }
    for zc in [lnc_uring::ZeroCopy::Always, lnc_uring::ZeroCopy::Auto] {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let c = conn(&server, lnc_uring::Backend::IoUring).with_zero_copy(zc);
        let cfg = ProducerConfig::default()
            .with_linger_ms(1)
            .with_connection(c);
        let p = Producer::with_config(cfg).unwrap();
        let tickets: Vec<_> = (0..3000)
            .map(|i| {
                p.send_async(t, &[value(i), vec![i as u8; 300]].concat())
                    .unwrap()
            })
            .collect();
        for tk in tickets {
            tk.wait().unwrap();
        }
        // A record larger than a registered buffer goes out from heap memory.
        let big = vec![0xABu8; 200 * 1024];
        p.send(t, &big).unwrap();
        let vals = stored_values(&server, t);
        assert_eq!(vals.len(), 3001);
        for (i, v) in vals[..3000].iter().enumerate() {
            assert_eq!(
                v,
                &[value(i), vec![i as u8; 300]].concat(),
                "{zc:?} record {i}"
            );
        }
        assert_eq!(vals[3000], big);
        let s = p.stats().driver;
        eprintln!("{zc:?}: {s:?}");
        assert!(s.zc_sends > 0, "{zc:?}");
        if zc == lnc_uring::ZeroCopy::Always {
            assert!(s.zc_fixed > 0 && s.zc_fixed <= s.zc_sends, "{s:?}");
        } else {
            // Loopback copies: Auto switches to plain sends after a few probes.
            assert!(s.zc_sends < 100, "{s:?}");
        }
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn stalled_peer_with_zero_copy_sends_in_flight_is_abandoned_promptly() {
    if !lnc_uring::Backend::io_uring_available() {
        return;
    }
    let server = TestServer::start().unwrap();
    let t = server.create_topic("t");
    let c = conn(&server, lnc_uring::Backend::IoUring)
        .with_zero_copy(lnc_uring::ZeroCopy::Always)
        .with_keepalive_interval(Duration::from_millis(100))
        .with_peer_timeout(Duration::from_millis(500));
    let p = Producer::with_config(
        ProducerConfig::default()
            .with_linger_ms(1)
            .with_connection(c),
    )
    .unwrap();
    p.send(t, b"warm").unwrap();
    // The first connection stops reading: zero-copy sends stay unreleased until the
    // client aborts the connection.
    server.faults().inject_for(
        Target::Conn(0),
        Fault::StallReads {
            duration: Duration::from_secs(30),
        },
    );
    let big = vec![3u8; 64 * 1024];
    let tickets: Vec<_> = (0..200).map(|_| p.send_async(t, &big).unwrap()).collect();
    let start = Instant::now();
    for tk in tickets {
        tk.wait().unwrap();
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(p.stats().driver.connects >= 2);
    p.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn reconnects_back_off_when_the_server_keeps_closing() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let c = conn(&server, backend)
            .with_reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200));
        let cfg = ProducerConfig::default()
            .with_linger_ms(0)
            .with_delivery_timeout(Duration::from_secs(1))
            .with_connection(c);
        let p = Producer::with_config(cfg).unwrap();
        // Every connection from now on is closed on its first frame.
        server
            .faults()
            .inject(Fault::CloseOnAccept { count: 10_000 });
        server.restart().unwrap();
        let r = p.send(t, b"doomed");
        assert!(r.is_err(), "{backend}");
        let accepted = server.stats().connections_accepted;
        // One second of 20 ms → 200 ms jittered back-off is about ten attempts, not
        // thousands.
        assert!(
            accepted < 40,
            "{backend}: {accepted} connections in a second"
        );
        drop(p);
    }
}

#[test]
fn absurd_durations_are_configuration_errors() {
    let server = TestServer::start().unwrap();
    let c = conn(&server, lnc_uring::Backend::Poll).with_keepalive_interval(Duration::MAX);
    assert!(matches!(
        Producer::with_config(ProducerConfig::default().with_connection(c)),
        Err(Error::Config(_))
    ));
    let c = conn(&server, lnc_uring::Backend::Poll);
    assert!(matches!(
        Producer::with_config(
            ProducerConfig::default()
                .with_linger(Duration::MAX)
                .with_connection(c)
        ),
        Err(Error::Config(_))
    ));
}
