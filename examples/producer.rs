//! Produce records, as in the seed clients' quick start, in blocking Rust.
//!
//! ```sh
//! cargo run --example producer                      # embedded server
//! LANCE_ADDR=127.0.0.1:1992 cargo run --example producer
//! ```

use std::time::Duration;

use lnc_uring::testkit::TestServer;
use lnc_uring::{LanceClient, ProduceRecord, Producer, ProducerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_server, addr) = match std::env::var("LANCE_ADDR") {
        Ok(a) => (None, a),
        Err(_) => {
            let s = TestServer::start()?;
            let a = s.addr().to_string();
            (Some(s), a)
        }
    };
    let topic = LanceClient::connect(&addr)?.ensure_topic("events")?.id;

    let producer = Producer::connect(
        &addr,
        ProducerConfig::default()
            .with_batch_size(32 * 1024)
            .with_linger_ms(5),
    )?;

    // Wait for the acknowledgement of one record.
    let meta = producer.send(topic, br#"{"event": "signup", "user": 42}"#)?;
    println!(
        "acknowledged in batch {} of topic {}",
        meta.batch_id, meta.topic_id
    );

    // Many records without waiting, then one flush.
    for i in 0..1000 {
        producer.send_async(topic, format!("event {i}").as_bytes())?;
    }
    producer.send_record(
        topic,
        ProduceRecord::KeyValue {
            key: b"user-42",
            value: b"active",
        },
    )?;
    producer.flush(Duration::from_secs(10))?;
    println!("{:?}", producer.stats());
    producer.close(Duration::from_secs(10))?;
    Ok(())
}
