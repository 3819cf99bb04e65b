//! Producer against the embedded server, on both backends.

use std::time::Duration;

use lnc_uring::proto::{RecordIter, RecordType};
mod common;

use common::backends;
use lnc_uring::testkit::TestServer;
use lnc_uring::{Backend, ConnectionConfig, ProduceRecord, Producer, ProducerConfig};

fn producer(server: &TestServer, backend: Backend, cfg: ProducerConfig) -> Producer {
    let conn = ConnectionConfig::new(server.addr().to_string()).with_backend(backend);
    Producer::with_config(cfg.with_connection(conn)).expect("connect")
}

#[test]
fn send_and_read_back_every_record() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let topic = server.create_topic("t");
        let p = producer(
            &server,
            backend,
            ProducerConfig::default().with_linger_ms(1),
        );
        let m = p.send(topic, b"first").unwrap();
        assert_eq!(m.topic_id, topic);
        let tickets: Vec<_> = (0..1000u32)
            .map(|i| {
                p.send_async(topic, format!("record-{i}").as_bytes())
                    .unwrap()
            })
            .collect();
        for t in tickets {
            t.wait().unwrap();
        }
        p.send_record(
            topic,
            ProduceRecord::KeyValue {
                key: b"k",
                value: b"v",
            },
        )
        .unwrap();
        p.flush(Duration::from_secs(5)).unwrap();
        let stats = p.stats();
        assert_eq!(stats.records_outstanding, 0);
        let data = server.topic_bytes(topic);
        let recs: Vec<_> = RecordIter::new(&data).collect::<Result<_, _>>().unwrap();
        assert_eq!(recs.len(), 1002, "{backend}");
        assert_eq!(recs[0].value, b"first");
        for (i, r) in recs[1..1001].iter().enumerate() {
            assert_eq!(r.value, format!("record-{i}").as_bytes());
        }
        assert_eq!(recs[1001].record_type, RecordType::KEY_VALUE);
        p.close(Duration::from_secs(5)).unwrap();
        eprintln!("{backend}: {:?}", stats.driver);
    }
}
