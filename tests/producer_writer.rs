//! `TopicWriter`: a topic's records from one thread, without a lock.

mod common;

use std::time::{Duration, Instant};

use common::{backends, conn, eventually, stored_values};
use lnc_uring::proto::RecordIter;
use lnc_uring::testkit::TestServer;
use lnc_uring::{Error, ProduceRecord, Producer, ProducerConfig};

fn producer(server: &TestServer, cfg: ProducerConfig) -> Producer {
    Producer::with_config(cfg.with_connection(conn(server, lnc_uring::Backend::Auto))).unwrap()
}

#[test]
fn a_writer_stores_exact_bytes_in_order() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("w");
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_batch_size(4096)
                .with_connection(conn(&server, backend)),
        )
        .unwrap();
        let mut expect = Vec::new();
        let mut w = p.writer(t);
        assert_eq!(w.topic_id(), t);
        for i in 0..5_000u32 {
            let v: Vec<u8> = (0..i % 300).map(|k| (i + k) as u8).collect();
            w.produce(ProduceRecord::Raw(&v)).unwrap();
            expect.push(v);
        }
        w.claim(12, |v| v.copy_from_slice(b"in-place-abc")).unwrap();
        expect.push(b"in-place-abc".to_vec());
        // Records larger than a batch buffer, copied and in place.
        let big = vec![9u8; 40_000];
        w.produce(ProduceRecord::Raw(&big)).unwrap();
        expect.push(big);
        w.claim(50_000, |v| v.fill(7)).unwrap();
        expect.push(vec![7; 50_000]);
        w.produce(ProduceRecord::Raw(b"last")).unwrap();
        expect.push(b"last".to_vec());
        w.submit().unwrap();
        assert_eq!(w.held(), (0, 0));
        p.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(stored_values(&server, t), expect, "{backend}");
        assert_eq!(p.stats().records_sent, expect.len() as u64, "{backend}");
        drop(w);
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn typed_records_keep_their_type() {
    let server = TestServer::start().unwrap();
    let t = server.create_topic("typed");
    let p = producer(&server, ProducerConfig::default());
    let mut w = p.writer(t);
    w.produce(ProduceRecord::KeyValue {
        key: b"k",
        value: b"v",
    })
    .unwrap();
    w.produce(ProduceRecord::Timestamped {
        timestamp_ns: 42,
        value: b"ts",
    })
    .unwrap();
    drop(w);
    p.flush(Duration::from_secs(5)).unwrap();
    let data = server.topic_bytes(t);
    let types: Vec<u8> = RecordIter::new(&data)
        .map(|r| r.unwrap().record_type.0)
        .collect();
    assert_eq!(types, [0x10, 0x11]);
    p.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_writer_holds_records_until_submit_or_drop_and_never_lingers() {
    let server = TestServer::start().unwrap();
    let t = server.create_topic("held");
    let p = producer(&server, ProducerConfig::default().with_linger_ms(1));
    let mut w = p.writer(t);
    for v in [b"a", b"b", b"c"] {
        w.produce(ProduceRecord::Raw(v)).unwrap();
    }
    assert_eq!(w.held(), (3, 18));
    // Far past the producer's linger: nothing was handed over.
    std::thread::sleep(Duration::from_millis(100));
    assert!(stored_values(&server, t).is_empty());
    assert_eq!(
        p.stats().records_sent,
        0,
        "held records are not the producer's yet"
    );
    w.submit().unwrap();
    p.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(stored_values(&server, t).len(), 3);
    w.produce(ProduceRecord::Raw(b"d")).unwrap();
    w.produce(ProduceRecord::Raw(b"e")).unwrap();
    drop(w);
    p.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(
        stored_values(&server, t),
        [b"a", b"b", b"c", b"d", b"e"].map(|v| v.to_vec())
    );
    p.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_writer_hands_over_each_batch_as_it_fills() {
    let server = TestServer::start().unwrap();
    let t = server.create_topic("full");
    // 1024-byte batches; records of 100 value bytes encode to 105: ten fill a batch.
    let p = producer(&server, ProducerConfig::default().with_batch_size(1024));
    let mut w = p.writer(t);
    for _ in 0..100 {
        w.produce(ProduceRecord::Raw(&[1; 100])).unwrap();
    }
    assert_eq!(w.held(), (0, 0), "ten full batches, all handed over");
    let stored = || stored_values(&server, t).len();
    assert!(eventually(Duration::from_secs(5), || stored() == 100));
    assert_eq!(p.stats().batches_sealed, 10);
    drop(w);
    p.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn writers_on_many_threads_keep_each_ones_order() {
    let server = TestServer::start().unwrap();
    let t = server.create_topic("threads");
    let p = producer(&server, ProducerConfig::default());
    const PER: u32 = 20_000;
    std::thread::scope(|s| {
        for id in 0..4u32 {
            let p = &p;
            s.spawn(move || {
                let mut w = p.writer(t);
                for seq in 0..PER {
                    let mut v = [0u8; 8];
                    v[..4].copy_from_slice(&id.to_le_bytes());
                    v[4..].copy_from_slice(&seq.to_le_bytes());
                    w.produce(ProduceRecord::Raw(&v)).unwrap();
                }
            });
        }
    });
    p.flush(Duration::from_secs(10)).unwrap();
    let mut next = [0u32; 4];
    for v in stored_values(&server, t) {
        let id = u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
        let seq = u32::from_le_bytes(v[4..].try_into().unwrap());
        assert_eq!(seq, next[id], "writer {id} out of order");
        next[id] += 1;
    }
    assert_eq!(next, [PER; 4]);
    p.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn bad_records_are_refused_and_nothing_is_lost() {
    let server = TestServer::start().unwrap();
    let t = server.create_topic("bad");
    let p = producer(&server, ProducerConfig::default());
    let mut w = p.writer(t);
    w.produce(ProduceRecord::Raw(b"before")).unwrap();
    let huge = vec![0u8; 17 << 20];
    assert!(matches!(
        w.produce(ProduceRecord::Raw(&huge)),
        Err(Error::RecordTooLarge { .. })
    ));
    assert!(matches!(
        w.claim(17 << 20, |_| {}),
        Err(Error::RecordTooLarge { .. })
    ));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        w.claim(8, |_| panic!("the caller's code failed")).unwrap();
    }));
    assert!(r.is_err());
    assert_eq!(w.held(), (1, 11), "only the good record is held");
    w.produce(ProduceRecord::Raw(b"after")).unwrap();
    drop(w);
    p.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(
        stored_values(&server, t),
        [b"before".to_vec(), b"after".to_vec()]
    );
    p.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_writer_fails_fast_when_the_connection_thread_stops_and_its_records_fail() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("stop");
        // A long linger keeps the probe in its batch until the thread stops.
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_linger(Duration::from_secs(60))
                .with_connection(conn(&server, backend)),
        )
        .unwrap();
        let mut w = p.writer(t);
        w.produce(ProduceRecord::Raw(b"held 1")).unwrap();
        w.produce(ProduceRecord::Raw(b"held 2")).unwrap();
        let probe = p.send_async(t, b"probe").unwrap();
        p.debug_stop_driver(false);
        let failed = probe
            .wait_timeout(Duration::from_secs(5))
            .expect("resolved");
        assert!(failed.is_err(), "{backend}: {failed:?}");
        let start = Instant::now();
        assert!(matches!(
            w.produce(ProduceRecord::Raw(b"refused")),
            Err(Error::Stopped { .. })
        ));
        assert!(matches!(w.claim(4, |_| {}), Err(Error::Stopped { .. })));
        // Handing over the held records fails them, and says why.
        assert!(matches!(w.submit(), Err(Error::Stopped { .. })));
        assert!(start.elapsed() < Duration::from_secs(1));
        drop(w);
        // A batch handed over while the thread was exiting fails when it lets go of its
        // queue, a moment later.
        assert!(eventually(Duration::from_secs(5), || p
            .stats()
            .records_outstanding
            == 0));
        let s = p.stats();
        assert_eq!(
            (s.records_failed, s.records_outstanding),
            (3, 0),
            "{backend}"
        );
        match p.close(Duration::from_secs(1)) {
            Err(Error::DeliveryFailed { failed: 3, .. }) => {}
            other => panic!("{backend}: {other:?}"),
        }
    }
}
