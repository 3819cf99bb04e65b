//! The ways to send: tickets, no tickets, many at once, and records written in place.

mod common;

use std::time::Duration;

use common::{backends, conn, stored_values};
use lnc_uring::testkit::TestServer;
use lnc_uring::{Error, ProduceRecord, Producer, ProducerConfig};

#[test]
fn every_send_call_stores_exact_bytes_in_order() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_batch_size(1024)
                .with_connection(conn(&server, backend)),
        )
        .unwrap();
        let mut expect = Vec::new();
        p.send_async(t, b"ticket").unwrap();
        expect.push(b"ticket".to_vec());
        p.produce(t, ProduceRecord::Raw(b"no ticket")).unwrap();
        expect.push(b"no ticket".to_vec());
        let many: Vec<Vec<u8>> = (0..500u32).map(|i| i.to_le_bytes().repeat(20)).collect();
        let recs: Vec<ProduceRecord<'_>> = many.iter().map(|v| ProduceRecord::Raw(v)).collect();
        p.produce_many(t, &recs).unwrap();
        expect.extend(many.iter().cloned());
        let ticket = p
            .claim(t, 12, |v| v.copy_from_slice(b"in-place-abc"))
            .unwrap();
        expect.push(b"in-place-abc".to_vec());
        p.claim_nowait(t, 3, |v| v.copy_from_slice(b"xyz")).unwrap();
        expect.push(b"xyz".to_vec());
        // A record larger than a batch buffer, in place.
        p.claim_nowait(t, 50_000, |v| v.fill(7)).unwrap();
        expect.push(vec![7; 50_000]);
        p.flush(Duration::from_secs(10)).unwrap();
        assert!(ticket.try_wait().unwrap().is_ok());
        assert_eq!(stored_values(&server, t), expect, "{backend}");
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn a_claim_abandoned_by_a_panic_leaves_nothing_behind() {
    let server = TestServer::start().unwrap();
    let t = server.create_topic("t");
    let p = Producer::connect(&server.addr().to_string(), ProducerConfig::default()).unwrap();
    p.produce(t, ProduceRecord::Raw(b"before")).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.claim_nowait(t, 8, |_| panic!("the writer failed")).unwrap();
    }));
    assert!(r.is_err());
    p.produce(t, ProduceRecord::Raw(b"after")).unwrap();
    p.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(
        stored_values(&server, t),
        [b"before".to_vec(), b"after".to_vec()]
    );
    // Nothing left open either: an abandoned claim never becomes an empty frame.
    p.claim_nowait(t, 0, |_| {}).unwrap();
    p.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn records_without_tickets_report_failures_through_flush() {
    let server = TestServer::start().unwrap();
    let p = Producer::connect(&server.addr().to_string(), ProducerConfig::default()).unwrap();
    let recs = [ProduceRecord::Raw(b"a"), ProduceRecord::Raw(b"b")];
    p.produce_many(404, &recs).unwrap();
    p.produce(404, ProduceRecord::Raw(b"c")).unwrap();
    match p.flush(Duration::from_secs(5)) {
        Err(Error::DeliveryFailed { failed: 3, first }) => {
            assert!(matches!(*first, Error::TopicNotFound { .. }))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        p.claim(1, 17 << 20, |_| {}),
        Err(Error::RecordTooLarge { .. })
    ));
}
