//! Consume a topic from the beginning with a durable offset store, as in the seed
//! clients' quick start, in blocking Rust.
//!
//! ```sh
//! cargo run --example consumer                      # embedded server, some records first
//! LANCE_ADDR=127.0.0.1:1992 cargo run --example consumer
//! ```

use std::sync::Arc;
use std::time::Duration;

use lnc_uring::testkit::TestServer;
use lnc_uring::{
    ConnectionConfig, ConsumerConfig, FileOffsetStore, Producer, ProducerConfig, StandaloneConsumer,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_server, addr) = match std::env::var("LANCE_ADDR") {
        Ok(a) => (None, a),
        Err(_) => {
            let s = TestServer::start()?;
            let a = s.addr().to_string();
            let t = s.create_topic("events");
            let p = Producer::connect(&a, ProducerConfig::default())?;
            for i in 0..100 {
                p.send_async(t, format!("event {i}").as_bytes())?;
            }
            p.close(Duration::from_secs(10))?;
            (Some(s), a)
        }
    };

    // Offsets survive restarts in a directory (locked while this consumer runs).
    let dir = std::env::temp_dir().join("lnc-uring-example-offsets");
    let store = Arc::new(FileOffsetStore::open(&dir, "example-consumer")?);

    let cfg = ConsumerConfig::with_topic_name("example-consumer", "events")
        .with_offset_store(store)
        .with_auto_commit(Some(Duration::from_secs(5)))
        .with_connection(ConnectionConfig::new(addr));
    let mut consumer = StandaloneConsumer::connect(cfg)?;
    println!("starting at offset {}", consumer.current_offset());
    let mut n = 0;
    while let Some(mut batch) = consumer.poll_timeout(Duration::from_secs(1))? {
        for record in batch.records() {
            let record = record?;
            n += 1;
            if n <= 3 {
                println!(
                    "{:?}: {}",
                    record.record_type,
                    String::from_utf8_lossy(record.value)
                );
            }
        }
        println!(
            "offsets {}..{}, lag {} bytes",
            batch.start_offset(),
            batch.end_offset(),
            batch.lag()
        );
    }
    consumer.commit()?;
    println!(
        "read {n} records; committed offset {:?}",
        consumer.committed_offset()
    );
    consumer.close()?;
    Ok(())
}
