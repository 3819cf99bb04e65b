//! Every record gets exactly one outcome, and the caller can always learn it: a driver
//! that dies, failures nobody waited for, flush under concurrent sends, bounded drops,
//! bounded retries, honest errors.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{backends, conn};
use lnc_uring::testkit::{AckPolicy, Fault, TestServer};
use lnc_uring::{Backend, Error, Producer, ProducerConfig};

fn producer(server: &TestServer, backend: Backend, cfg: ProducerConfig) -> Producer {
    Producer::with_config(cfg.with_connection(conn(server, backend))).expect("connect")
}

#[test]
fn a_dead_driver_fails_every_call_fast_and_resolves_every_ticket() {
    for backend in backends() {
        for panic in [false, true] {
            let server = TestServer::start().unwrap();
            let t = server.create_topic("t");
            let p = producer(
                &server,
                backend,
                ProducerConfig::default().with_linger_ms(50),
            );
            server
                .faults()
                .inject(Fault::WithholdAcks { count: u32::MAX });
            let in_flight = p.send_async(t, b"sent, never acked").unwrap();
            p.flush(Duration::from_millis(200)).unwrap_err();
            let lingering = p.send_async(t, b"still in its batch").unwrap();
            p.debug_stop_driver(panic);
            // Every pending ticket resolves, with the reason.
            for ticket in [in_flight, lingering] {
                let r = ticket
                    .wait_timeout(Duration::from_secs(5))
                    .expect("resolved, not hanging");
                assert!(r.is_err(), "{backend} panic={panic}: {r:?}");
            }
            // Every later call fails at once, twice in a row (no batch left behind).
            for _ in 0..2 {
                let start = Instant::now();
                match p.send_async(t, b"after") {
                    Err(Error::Stopped { reason }) => {
                        assert!(!reason.is_empty(), "{backend}")
                    }
                    other => panic!("{backend} panic={panic}: {other:?}"),
                }
                assert!(matches!(p.send(t, b"blocking"), Err(Error::Stopped { .. })));
                assert!(start.elapsed() < Duration::from_secs(1));
            }
            let s = p.stats();
            assert_eq!(s.records_outstanding, 0, "{backend}: memory released");
            assert_eq!(s.records_failed, 2, "{backend}");
            match p.close(Duration::from_secs(1)) {
                Err(Error::DeliveryFailed { failed: 2, .. }) => {}
                other => panic!("{backend}: {other:?}"),
            }
        }
    }
}

#[test]
fn flush_and_close_report_failures_nobody_waited_for() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let p = producer(&server, backend, ProducerConfig::default());
        for i in 0..10 {
            drop(p.send_async(4242, format!("r{i}").as_bytes()).unwrap());
        }
        match p.flush(Duration::from_secs(5)) {
            Err(Error::DeliveryFailed { failed: 10, first }) => {
                assert!(matches!(*first, Error::TopicNotFound { .. }), "{backend}")
            }
            other => panic!("{backend}: {other:?}"),
        }
        // Reported once: a second flush has nothing new to say.
        p.flush(Duration::from_secs(5)).unwrap();
        assert_eq!(p.stats().records_failed, 10);

        // The same through close alone.
        let p = producer(&server, backend, ProducerConfig::default());
        for _ in 0..10 {
            drop(p.send_async(4242, b"x").unwrap());
        }
        match p.close(Duration::from_secs(5)) {
            Err(Error::DeliveryFailed { failed: 10, first }) => {
                assert!(matches!(*first, Error::TopicNotFound { .. }), "{backend}")
            }
            other => panic!("{backend}: {other:?}"),
        }
    }
}

#[test]
fn flush_waits_for_the_records_before_it_not_for_a_global_zero() {
    for backend in backends() {
        // Every ACK takes 20 ms, so a steady sender always has records outstanding.
        let server = TestServer::builder()
            .ack_policy(AckPolicy::Delayed(Duration::from_millis(20)))
            .start()
            .unwrap();
        let t = server.create_topic("t");
        let p = Arc::new(producer(
            &server,
            backend,
            ProducerConfig::default().with_linger_ms(1),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let bg = {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = p.send_async(t, b"background");
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let mine: Vec<_> = (0..10).map(|_| p.send_async(t, b"mine").unwrap()).collect();
        let start = Instant::now();
        p.flush(Duration::from_secs(3)).unwrap();
        assert!(start.elapsed() < Duration::from_secs(2), "{backend}");
        for t in mine {
            assert!(t
                .try_wait()
                .expect("acknowledged before flush returned")
                .is_ok());
        }
        assert!(
            p.stats().records_outstanding > 0,
            "{backend}: the sender kept going"
        );
        stop.store(true, Ordering::Relaxed);
        bg.join().unwrap();
    }
}

#[test]
fn drop_is_bounded_and_says_what_was_not_delivered() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        server
            .faults()
            .inject(Fault::WithholdAcks { count: u32::MAX });
        let p = producer(
            &server,
            backend,
            ProducerConfig::default().with_drop_timeout(Duration::from_millis(300)),
        );
        let tickets: Vec<_> = (0..10)
            .map(|_| p.send_async(t, b"undeliverable").unwrap())
            .collect();
        let start = Instant::now();
        drop(p);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{backend}: {:?}",
            start.elapsed()
        );
        for t in tickets {
            match t.try_wait() {
                // Written, never acknowledged: the server may have it.
                Some(Err(Error::OutcomeUnknown { attempts: 1, .. })) => {}
                other => panic!("{backend}: {other:?}"),
            }
        }
    }
    assert_eq!(
        ProducerConfig::default().drop_timeout,
        Duration::from_secs(5),
        "the documented default"
    );
}

#[test]
fn retries_are_bounded_and_keep_the_batch_id() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        // Three retryable refusals, then success: four sends of one batch, one id.
        server.faults().inject(Fault::RejectIngest {
            text: "FORWARD_FAILED: Leader address unknown".into(),
            skip: 0,
            count: 3,
        });
        let p = producer(
            &server,
            backend,
            ProducerConfig::default().with_linger_ms(0),
        );
        let m = p.send(t, b"persistent").unwrap();
        assert_eq!((m.batch_id, m.attempts), (1, 4), "{backend}");
        // Driver counters are published after each event the driver handles.
        assert!(
            common::eventually(Duration::from_secs(2), || p.stats().driver.batches_retried
                == 3),
            "{backend}: {:?}",
            p.stats().driver
        );

        // With the limit reached, the batch fails with the server's reason.
        server.faults().inject(Fault::RejectIngest {
            text: "FORWARD_FAILED: Leader address unknown".into(),
            skip: 0,
            count: u32::MAX,
        });
        let p = producer(
            &server,
            backend,
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_max_retries(2),
        );
        let before = server.stats().ingest_frames;
        match p.send(t, b"refused") {
            Err(Error::Server(e)) => assert!(e.is_retryable(), "{backend}"),
            other => panic!("{backend}: {other:?}"),
        }
        assert_eq!(
            server.stats().ingest_frames - before,
            3,
            "{backend}: 1 + 2 retries"
        );
        server.faults().clear();
    }
}

#[test]
fn a_frozen_server_gets_the_window_once_not_on_every_reconnect() {
    // A server that accepts connections (the kernel does) and never reads nor answers:
    // the peer timeout drops each connection; the window must not be written again on
    // connections where the server never showed a sign of life.
    use std::io::Read;
    for backend in backends() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let received = Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
        let acceptor = {
            let received = received.clone();
            std::thread::spawn(move || {
                l.set_nonblocking(true).unwrap();
                let until = Instant::now() + Duration::from_millis(2500);
                let mut conns = Vec::new();
                while Instant::now() < until {
                    if let Ok((s, _)) = l.accept() {
                        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
                        conns.push((s, 0usize));
                    }
                    // Count what arrives (the kernel would buffer it anyway).
                    for (s, n) in conns.iter_mut() {
                        let mut buf = [0u8; 65536];
                        while let Ok(k) = s.read(&mut buf) {
                            if k == 0 {
                                break;
                            }
                            *n += k;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                *received.lock().unwrap() = conns.iter().map(|(_, n)| *n).collect();
            })
        };
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_drop_timeout(Duration::from_millis(200))
                .with_connection(
                    lnc_uring::ConnectionConfig::new(addr)
                        .with_backend(backend)
                        .with_peer_timeout(Duration::from_millis(300))
                        .with_reconnect_backoff(
                            Duration::from_millis(10),
                            Duration::from_millis(50),
                        ),
                ),
        )
        .unwrap();
        for _ in 0..5 {
            drop(p.send_async(1, &[7u8; 1000]).unwrap());
        }
        acceptor.join().unwrap();
        let per_conn = received.lock().unwrap().clone();
        drop(p);
        assert!(per_conn.len() >= 3, "{backend}: reconnected: {per_conn:?}");
        // The first connection got the window (5 frames of 1049 bytes); later ones only
        // their 44-byte probe keepalive.
        assert!(per_conn[0] >= 5 * 1049, "{backend}: {per_conn:?}");
        for n in &per_conn[1..] {
            assert!(
                *n <= 44,
                "{backend}: window resent to a silent server: {per_conn:?}"
            );
        }
    }
}

#[test]
fn a_silent_server_is_reported_as_silent_not_as_closed() {
    // Accepts and never answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().take(20) {
            held.push(s);
        }
    });
    for backend in backends() {
        let admin = lnc_uring::LanceClient::with_config(
            lnc_uring::ConnectionConfig::new(addr.clone())
                .with_backend(backend)
                .with_peer_timeout(Duration::from_millis(200))
                .with_request_timeout(Duration::from_millis(800)),
        )
        .unwrap();
        let e = admin.list_topics().unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, Error::PeerTimeout { .. }) || text.contains("timed out"),
            "{backend}: {e:?}"
        );
        assert!(!text.contains("closed by the server"), "{backend}: {text}");
    }
}

#[test]
fn close_does_not_wait_for_a_connect_that_hangs() {
    // A listener whose accept queue is full: further connects hang (SYNs are dropped),
    // like a host that does not answer.
    let hang = {
        // SAFETY (test): plain socket calls with valid arguments; the fd is kept open
        // for the test's life by the OwnedFd below.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            assert_eq!(
                libc::bind(
                    fd,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of_val(&sa) as u32
                ),
                0
            );
            assert_eq!(libc::listen(fd, 0), 0);
            let mut len = std::mem::size_of_val(&sa) as libc::socklen_t;
            libc::getsockname(fd, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len);
            let port = u16::from_be(sa.sin_port);
            (std::os::fd::FromRawFd::from_raw_fd(fd), port)
        }
    };
    let (_hang_fd, hang_port): (std::os::fd::OwnedFd, u16) = hang;
    let hang_addr = format!("127.0.0.1:{hang_port}");
    // Fill the accept queue.
    let fillers: Vec<_> = (0..4)
        .filter_map(|_| {
            let s = std::net::TcpStream::connect_timeout(
                &hang_addr.parse().unwrap(),
                Duration::from_millis(200),
            );
            s.ok()
        })
        .collect();
    assert!(!fillers.is_empty());
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let p = Producer::with_config(
            ProducerConfig::default().with_linger_ms(0).with_connection(
                lnc_uring::ConnectionConfig::new(server.addr().to_string())
                    .with_seed(hang_addr.clone())
                    .with_backend(backend)
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_reconnect_backoff(Duration::from_millis(10), Duration::from_millis(20)),
            ),
        )
        .unwrap();
        p.send(t, b"first").unwrap();
        server.stop();
        let ticket = p.send_async(t, b"waits for a connection").unwrap();
        // Let the driver get stuck connecting to the hanging seed.
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        let r = p.close(Duration::from_millis(300));
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{backend}: {:?}",
            start.elapsed()
        );
        assert!(
            matches!(r, Err(Error::DeliveryFailed { failed: 1, .. })),
            "{backend}: {r:?}"
        );
        let e = ticket.try_wait().unwrap().unwrap_err().to_string();
        assert!(!e.contains("connect timed out"), "{backend}: {e}");
    }
}
