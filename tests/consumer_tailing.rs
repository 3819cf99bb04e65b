//! The tailing consumer's back-off (issue 11, item 5): records are returned as soon as a
//! fetch brings them; when caught up, the consumer fetches again after tens of
//! microseconds, doubling the wait up to `poll_interval`, so that a record produced a
//! moment later is read within milliseconds while an idle consumer still sends only a
//! few fetches a second. On both backends.

mod common;

use std::time::{Duration, Instant};

use common::{backends, conn};
use lnc_uring::testkit::TestServer;
use lnc_uring::{
    Backend, ConsumerConfig, ProduceRecord, Producer, ProducerConfig, StandaloneConsumer,
};

fn consumer(server: &TestServer, backend: Backend, topic: u32) -> StandaloneConsumer {
    let cfg = ConsumerConfig::new("tail", topic).with_connection(conn(server, backend));
    assert_eq!(cfg.poll_interval, Duration::from_millis(50), "the default");
    StandaloneConsumer::connect(cfg).unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A record produced a few milliseconds into an idle spell is read within a few
/// milliseconds, not after the 50 ms poll interval (before the back-off, the consumer
/// slept the whole interval after its empty fetch: ~45 ms every time here).
#[test]
fn a_record_produced_while_idle_is_read_within_milliseconds() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let topic = server.create_topic("tail");
        let producer = Producer::with_config(
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_connection(conn(&server, backend)),
        )
        .unwrap();
        let mut c = consumer(&server, backend, topic);
        // Caught up on an empty topic.
        assert!(c.poll_timeout(Duration::from_millis(20)).unwrap().is_none());

        let mut latencies = Vec::new();
        for i in 0..7u32 {
            let value = i.to_le_bytes();
            let (got, sent_at) = std::thread::scope(|s| {
                let send = s.spawn(|| {
                    // The consumer is polling meanwhile and finds nothing.
                    std::thread::sleep(Duration::from_millis(5));
                    let t = Instant::now();
                    producer.produce(topic, ProduceRecord::Raw(&value)).unwrap();
                    t
                });
                let got = c
                    .poll_timeout(Duration::from_secs(10))
                    .unwrap()
                    .map(|mut r| {
                        let read_at = Instant::now();
                        let values: Vec<Vec<u8>> =
                            r.records().map(|x| x.unwrap().value.to_vec()).collect();
                        (values, read_at)
                    });
                (got, send.join().unwrap())
            });
            let (values, read_at) = got.expect("the record within 10 s");
            assert_eq!(values, [value.to_vec()], "{backend:?}");
            latencies.push(read_at.saturating_duration_since(sent_at));
        }
        let m = median(latencies.clone());
        eprintln!("{backend:?}: produce→read {latencies:?}, median {m:?}");
        // About a millisecond on a quiet machine; the bound leaves room for a loaded one
        // and is still half the poll interval.
        assert!(m < Duration::from_millis(25), "{backend:?}: {latencies:?}");
        producer.close(Duration::from_secs(5)).unwrap();
        c.close().unwrap();
    }
}

/// Idle, the consumer sends no more fetches than the back-off allows: about 30 in its
/// first idle second (20 µs, 40 µs, … up to the 50 ms ceiling), then one per 50 ms —
/// whether it waits in one long `poll_timeout` or in a loop of short ones.
#[test]
fn an_idle_consumer_fetches_only_as_often_as_the_back_off_allows() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let topic = server.create_topic("idle");
        let mut c = consumer(&server, backend, topic);

        let before = server.stats().control_frames;
        let t = Instant::now();
        assert!(c.poll_timeout(Duration::from_secs(1)).unwrap().is_none());
        let elapsed = t.elapsed();
        let fetches = server.stats().control_frames - before;
        eprintln!("{backend:?}: {fetches} fetches in an idle {elapsed:?}");
        assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
        // 12 growing waits (82 ms in all), then one fetch per 50 ms: 32 at most.
        assert!(
            fetches <= 40,
            "{backend:?}: {fetches} fetches in {elapsed:?}"
        );
        // It does keep asking.
        assert!(
            fetches >= 5,
            "{backend:?}: {fetches} fetches in {elapsed:?}"
        );

        // Short polls in a loop: the back-off carries over, one fetch per 50 ms at most.
        let before = server.stats().control_frames;
        let t = Instant::now();
        for _ in 0..10 {
            let p = Instant::now();
            assert!(c
                .poll_timeout(Duration::from_millis(100))
                .unwrap()
                .is_none());
            assert!(p.elapsed() < Duration::from_secs(5), "past its deadline");
        }
        let elapsed = t.elapsed();
        let fetches = server.stats().control_frames - before;
        eprintln!("{backend:?}: {fetches} fetches in 10 short polls over {elapsed:?}");
        let ceiling = (elapsed.as_secs_f64() / 0.050).floor() as u64 + 2;
        assert!(
            fetches <= ceiling,
            "{backend:?}: {fetches} fetches in {elapsed:?} (at most {ceiling})"
        );
        assert!(
            fetches >= 3,
            "{backend:?}: {fetches} fetches in {elapsed:?}"
        );

        // Data resets the back-off: read at once.
        let producer = Producer::with_config(
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_connection(conn(&server, backend)),
        )
        .unwrap();
        producer.send(topic, b"wake").unwrap();
        let mut r = c
            .poll_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("the record");
        assert_eq!(r.records().next().unwrap().unwrap().value, b"wake");
        producer.close(Duration::from_secs(5)).unwrap();
        c.close().unwrap();
    }
}
