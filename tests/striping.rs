//! One producer over several connections, each on a ring of its own.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{backends, conn, stored_values};
use lnc_uring::testkit::TestServer;
use lnc_uring::{ProduceRecord, Producer, ProducerConfig};

#[test]
fn topics_keep_their_order_across_striped_connections() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let topics: Vec<u32> = (0..8)
            .map(|i| server.create_topic(&format!("t{i}")))
            .collect();
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_batch_size(4096)
                .with_connections(4, &[])
                .with_connection(conn(&server, backend)),
        )
        .unwrap();
        for i in 0..2000u32 {
            let t = topics[(i % 8) as usize];
            p.produce(t, ProduceRecord::Raw(&i.to_le_bytes())).unwrap();
        }
        p.flush(Duration::from_secs(10)).unwrap();
        for (k, &t) in topics.iter().enumerate() {
            let got: Vec<u32> = stored_values(&server, t)
                .iter()
                .map(|v| u32::from_le_bytes(v[..4].try_into().unwrap()))
                .collect();
            let want: Vec<u32> = (0..2000).filter(|i| i % 8 == k as u32).collect();
            assert_eq!(got, want, "{backend}: topic {t} in order");
        }
        // The counters are published after the outcomes they count: wait a moment.
        let all_acked = || p.connection_stats().iter().all(|s| s.batches_acked > 0);
        assert!(
            common::eventually(Duration::from_secs(5), all_acked),
            "{backend}: {:?}",
            p.connection_stats()
        );
        let per = p.connection_stats();
        assert_eq!(per.len(), 4);
        assert_eq!(
            p.stats().driver.batches_acked,
            per.iter().map(|s| s.batches_acked).sum::<u64>()
        );
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn spread_mode_uses_every_connection_for_one_topic() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_batch_size(1024)
                .with_connections(3, &[])
                .with_spread(true)
                .with_connection(conn(&server, backend)),
        )
        .unwrap();
        for i in 0..3000u32 {
            p.produce(t, ProduceRecord::Raw(&[(i % 251) as u8; 100]))
                .unwrap();
        }
        p.flush(Duration::from_secs(10)).unwrap();
        // Every record once; the order of batches across connections is not kept.
        let mut counts: HashMap<u8, usize> = HashMap::new();
        for v in stored_values(&server, t) {
            *counts.entry(v[0]).or_default() += 1;
        }
        assert_eq!(counts.values().sum::<usize>(), 3000, "{backend}");
        assert!(
            p.connection_stats().iter().all(|s| s.batches_acked > 0),
            "{backend}: every connection carried batches"
        );
        p.close(Duration::from_secs(5)).unwrap();
    }
    assert!(Producer::with_config(ProducerConfig::default().with_connections(0, &[])).is_err());
}
