//! The consumer commits only what the caller had the chance to process, delivers every
//! good record before a damaged one, and retries what the server says to retry; the
//! admin client reports the true outcome of a create or delete whose reply was lost.

mod common;
mod testkit_util;

use std::sync::Arc;
use std::time::Duration;

use common::{backends, conn};
use lnc_uring::proto::{encode_raw, MAX_VALUE_LEN};
use lnc_uring::testkit::{Fault, TestServer};
use lnc_uring::{
    Backend, ConnectionConfig, ConsumerConfig, Error, LanceClient, MemoryOffsetStore, OffsetStore,
    Producer, ProducerConfig, StandaloneConsumer,
};
use testkit_util::{ingest, Client};

/// Ten records of 100 bytes (105 encoded), in one batch.
fn ten_records(server: &TestServer, topic: u32) {
    let p = Producer::connect(&server.addr().to_string(), ProducerConfig::default()).unwrap();
    let tickets: Vec<_> = (0..10u8)
        .map(|i| p.send_async(topic, &[i; 100]).unwrap())
        .collect();
    for t in tickets {
        t.wait().unwrap();
    }
    p.close(Duration::from_secs(5)).unwrap();
}

fn consumer(
    server: &TestServer,
    backend: Backend,
    topic: u32,
    store: &Arc<MemoryOffsetStore>,
    auto_commit: Option<Duration>,
) -> StandaloneConsumer {
    let cfg = ConsumerConfig::new("c", topic)
        .with_max_fetch_bytes(3 * 105) // three records per poll
        .with_auto_commit(auto_commit)
        .with_offset_store(store.clone())
        .with_connection(conn(server, backend));
    StandaloneConsumer::connect(cfg).unwrap()
}

#[test]
fn dropping_a_consumer_commits_only_what_was_processed() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        ten_records(&server, t);
        let hour = Some(Duration::from_secs(3600));

        // Two polls, then an early return: the second batch may not have been processed.
        let store = Arc::new(MemoryOffsetStore::new());
        let mut c = consumer(&server, backend, t, &store, hour);
        let first = c.poll_timeout(Duration::from_secs(5)).unwrap().unwrap();
        let second = c.poll_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(second.start_offset(), first.end_offset());
        drop((first, second));
        drop(c);
        assert_eq!(store.load(t, "c").unwrap(), Some(3 * 105), "{backend}");

        // A panic while handling a batch commits nothing.
        let store = Arc::new(MemoryOffsetStore::new());
        let (s2, srv) = (store.clone(), server.addr().to_string());
        let r = std::thread::spawn(move || {
            let cfg = ConsumerConfig::new("c", t)
                .with_max_fetch_bytes(3 * 105)
                .with_auto_commit(Some(Duration::from_secs(3600)))
                .with_offset_store(s2)
                .with_connection(ConnectionConfig::new(srv).with_backend(backend));
            let mut c = StandaloneConsumer::connect(cfg).unwrap();
            let _a = c.poll_timeout(Duration::from_secs(5)).unwrap().unwrap();
            let _b = c.poll_timeout(Duration::from_secs(5)).unwrap().unwrap();
            panic!("the application failed on this batch");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(
            store.load(t, "c").unwrap(),
            None,
            "{backend}: nothing while panicking"
        );

        // close() commits everything returned.
        let store = Arc::new(MemoryOffsetStore::new());
        let mut c = consumer(&server, backend, t, &store, hour);
        c.poll_timeout(Duration::from_secs(5)).unwrap().unwrap();
        c.poll_timeout(Duration::from_secs(5)).unwrap().unwrap();
        c.close().unwrap();
        assert_eq!(store.load(t, "c").unwrap(), Some(6 * 105), "{backend}");

        // Auto-commit on the next poll covers the batches before it, never the new one.
        let store = Arc::new(MemoryOffsetStore::new());
        let mut c = consumer(&server, backend, t, &store, Some(Duration::ZERO));
        c.poll_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert!(
            store.load(t, "c").unwrap().unwrap_or(0) == 0,
            "nothing returned yet"
        );
        c.poll_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(store.load(t, "c").unwrap(), Some(3 * 105), "{backend}");
        drop(c);
    }
}

#[test]
fn good_records_before_a_damaged_one_are_delivered_and_it_can_be_skipped() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        // good-1, good-2, then a header declaring one byte more than any record can
        // have, the bytes it claims, and good-3.
        let mut payload = Vec::new();
        encode_raw(&mut payload, b"good-1").unwrap();
        encode_raw(&mut payload, b"good-2").unwrap();
        let bad_at = payload.len() as u64;
        let declared = MAX_VALUE_LEN as u32 + 1;
        payload.push(0x01);
        payload.extend_from_slice(&declared.to_le_bytes());
        let mut client = Client::connect(server.addr());
        assert!(client.roundtrip(&ingest(1, t, &payload)).is_ack(1));
        let chunk = vec![0xEEu8; 1 << 20];
        let mut left = declared as usize;
        let mut id = 2;
        while left > 0 {
            let n = left.min(chunk.len());
            assert!(client.roundtrip(&ingest(id, t, &chunk[..n])).is_ack(id));
            left -= n;
            id += 1;
        }
        let mut tail = Vec::new();
        encode_raw(&mut tail, b"good-3").unwrap();
        assert!(client.roundtrip(&ingest(id, t, &tail)).is_ack(id));

        let mut c = StandaloneConsumer::connect(
            ConsumerConfig::new("c", t).with_connection(conn(&server, backend)),
        )
        .unwrap();
        let mut b = c.poll_timeout(Duration::from_secs(5)).unwrap().unwrap();
        let vals: Vec<Vec<u8>> = b.records().map(|r| r.unwrap().value.to_vec()).collect();
        assert_eq!(vals, [b"good-1".to_vec(), b"good-2".to_vec()], "{backend}");
        drop(b);
        for _ in 0..2 {
            match c.poll_timeout(Duration::from_secs(5)) {
                Err(Error::CorruptRecord { offset, .. }) => assert_eq!(offset, bad_at),
                other => panic!("{backend}: {other:?}"),
            }
        }
        let after = c.skip_bad_record().unwrap();
        assert_eq!(after, bad_at + 5 + u64::from(declared));
        let mut b = c.poll_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(
            b.records().next().unwrap().unwrap().value,
            b"good-3",
            "{backend}"
        );
        drop(b);
        assert!(c.skip_bad_record().is_err(), "nothing left to skip");
    }
}

#[test]
fn fetches_refused_with_a_retryable_error_are_retried() {
    for backend in backends() {
        // 2 KiB per second for every fetch: most fetches meet "Rate limit exceeded".
        let server = TestServer::builder()
            .fetch_rate_limit(2048)
            .start()
            .unwrap();
        let t = server.create_topic("t");
        ten_records(&server, t);
        let mut c = StandaloneConsumer::connect(
            ConsumerConfig::new("c", t)
                .with_max_fetch_bytes(105)
                .with_connection(conn(&server, backend)),
        )
        .unwrap();
        let mut n = 0;
        while n < 10 {
            let mut b = c
                .poll_timeout(Duration::from_secs(5))
                .expect("rate limits are waited out")
                .expect("records");
            n += b.records().count();
        }
        assert_eq!(n, 10, "{backend}");
    }
}

#[test]
fn a_create_or_delete_whose_reply_was_lost_reports_its_success() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let admin = LanceClient::with_config(
            conn(&server, backend).with_request_timeout(Duration::from_secs(5)),
        )
        .unwrap();
        // The reply to the create is damaged in transit: the client drops the connection
        // and asks again, and the server (which did create it) says it exists.
        server.faults().inject(Fault::CorruptNextFrame);
        let t = admin
            .create_topic("orders")
            .expect("created, not 'already exists'");
        assert_eq!(t.name, "orders");
        server.faults().inject(Fault::CorruptNextFrame);
        assert_eq!(
            admin.delete_topic(t.id).expect("deleted, not 'not found'"),
            t.id
        );
        // Without a lost reply, an existing name is still an error.
        admin.create_topic("again").unwrap();
        assert!(admin.create_topic("again").is_err(), "{backend}");
    }
}

#[test]
fn subscriptions_through_the_admin_client() {
    let server = TestServer::start().unwrap();
    let admin = LanceClient::connect(&server.addr().to_string()).unwrap();
    let t = admin.create_topic("t").unwrap().id;
    assert_eq!(admin.subscribe(t, 42, 0, 65536).unwrap(), 0);
    assert_eq!(admin.commit_offset(t, 42, 9).unwrap(), 9);
    // A subscribe from 0 resumes at the committed offset (on this node).
    assert_eq!(admin.subscribe(t, 42, 0, 65536).unwrap(), 9);
    admin.unsubscribe(t, 42).unwrap();
}

#[test]
fn one_value_limit_stated_and_enforced() {
    let server = TestServer::start().unwrap();
    let t = server.create_topic("t");
    let p = Producer::connect(&server.addr().to_string(), ProducerConfig::default()).unwrap();
    // The largest value a frame can carry is accepted and stored; one byte more is not.
    let big = vec![9u8; MAX_VALUE_LEN];
    p.send(t, &big).unwrap();
    match p.send_async(t, &[0u8; MAX_VALUE_LEN + 1]) {
        Err(Error::RecordTooLarge { size, max }) => {
            assert_eq!((size, max), (MAX_VALUE_LEN + 6, MAX_VALUE_LEN + 5))
        }
        other => panic!("{other:?}"),
    }
    p.close(Duration::from_secs(5)).unwrap();
    assert_eq!(common::stored_values(&server, t), [big]);
}
