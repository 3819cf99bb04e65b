//! One ring (one driver thread, one io_uring or poll set) for many handles: a thread
//! count that does not grow with handles, connections that take turns, a clean end.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{backends, stored_values};
use lnc_uring::testkit::TestServer;
use lnc_uring::{
    ConnectionConfig, ConsumerConfig, IdleStrategy, LanceClient, ProduceRecord, Producer,
    ProducerConfig, Ring, RingConfig, StandaloneConsumer,
};

/// Threads of this process whose name is `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == name)
        .count()
}

#[test]
fn a_producer_three_consumers_and_an_admin_share_one_thread() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let name = format!("ring-{}", backend.name().replace('_', ""));
        let ring = Ring::new(RingConfig::default().with_name(&name).with_backend(backend)).unwrap();
        assert_eq!(threads_named(&name), 1);
        let conn = ConnectionConfig::new(server.addr().to_string()).with_ring(&ring);
        let admin = LanceClient::with_config(conn.clone()).unwrap();
        let t = admin.create_topic("t").unwrap().id;
        let p =
            Producer::with_config(ProducerConfig::default().with_connection(conn.clone())).unwrap();
        for i in 0..100u32 {
            p.produce(t, ProduceRecord::Raw(&i.to_le_bytes())).unwrap();
        }
        p.flush(Duration::from_secs(5)).unwrap();
        let mut consumers: Vec<StandaloneConsumer> = (0..3)
            .map(|i| {
                StandaloneConsumer::connect(
                    ConsumerConfig::new(format!("c{i}"), t).with_connection(conn.clone()),
                )
                .unwrap()
            })
            .collect();
        assert_eq!(ring.connections(), 5, "{backend}");
        assert_eq!(
            threads_named(&name),
            1,
            "{backend}: one driver thread for all"
        );
        for c in &mut consumers {
            let mut n = 0;
            while n < 100 {
                let mut b = c.poll_timeout(Duration::from_secs(5)).unwrap().unwrap();
                n += b.records().count();
            }
        }
        assert_eq!(ring.backend(), p.stats().driver.backend);
        drop(consumers);
        p.close(Duration::from_secs(5)).unwrap();
        admin.close();
        assert_eq!(ring.connections(), 0, "{backend}");
        // The thread ends with the last handle or configuration holding the ring.
        drop(conn);
        drop(ring);
        assert!(common::eventually(
            Duration::from_secs(5),
            || threads_named(&name) == 0
        ));
    }
}

#[test]
fn a_saturating_producer_does_not_starve_a_consumer_on_the_same_ring() {
    for backend in backends() {
        let server = TestServer::builder().discard_data(false).start().unwrap();
        let busy = server.create_topic("busy");
        let quiet = server.create_topic("quiet");
        let ring = Ring::new(RingConfig::default().with_backend(backend)).unwrap();
        let conn = ConnectionConfig::new(server.addr().to_string()).with_ring(&ring);
        // Something to read on the quiet topic.
        let p =
            Producer::with_config(ProducerConfig::default().with_connection(conn.clone())).unwrap();
        for i in 0..2000u32 {
            p.produce(quiet, ProduceRecord::Raw(&[i as u8; 100]))
                .unwrap();
        }
        p.flush(Duration::from_secs(5)).unwrap();
        let p = Arc::new(p);
        let stop = Arc::new(AtomicBool::new(false));
        let hog = {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                let v = vec![1u8; 16 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let _ = p.produce(busy, ProduceRecord::Raw(&v));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        let mut c = StandaloneConsumer::connect(
            ConsumerConfig::new("c", quiet)
                .with_max_fetch_bytes(4096)
                .with_connection(conn),
        )
        .unwrap();
        let mut times = Vec::new();
        let mut read = 0;
        while read < 2000 {
            let t0 = Instant::now();
            let mut b = c
                .poll_timeout(Duration::from_secs(5))
                .unwrap()
                .expect("records");
            times.push(t0.elapsed());
            read += b.records().count();
        }
        stop.store(true, Ordering::Relaxed);
        hog.join().unwrap();
        times.sort();
        let median = times[times.len() / 2];
        assert!(
            p.stats().records_sent > 1000,
            "{backend}: the producer was busy"
        );
        // Each fetch waits for at most a loop turn of the producer's frames, not for its
        // whole backlog.
        assert!(
            median < Duration::from_millis(25),
            "{backend}: median fetch {median:?}"
        );
        drop(c);
        drop(p);
    }
}

#[test]
fn every_idle_strategy_delivers() {
    let server = TestServer::start().unwrap();
    let t = server.create_topic("t");
    for idle in [
        IdleStrategy::BusySpin,
        IdleStrategy::Yield,
        "backoff".parse().unwrap(),
        IdleStrategy::Block,
    ] {
        let ring = Ring::new(RingConfig::default().with_idle(idle)).unwrap();
        let conn = ConnectionConfig::new(server.addr().to_string()).with_ring(&ring);
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_connection(conn),
        )
        .unwrap();
        for _ in 0..50 {
            p.send(t, idle.name().as_bytes()).unwrap();
        }
        p.close(Duration::from_secs(5)).unwrap();
        // A handle's own ring takes the setting from its connection config.
        let own = Producer::with_config(
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_connection(ConnectionConfig::new(server.addr().to_string()).with_idle(idle)),
        )
        .unwrap();
        own.send(t, b"own").unwrap();
        own.close(Duration::from_secs(5)).unwrap();
    }
    assert_eq!(stored_values(&server, t).len(), 4 * 51);
}
