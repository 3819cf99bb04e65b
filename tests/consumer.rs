//! The consumer against the embedded server, on both backends.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{backends, conn};
use lnc_uring::proto::{encode_raw, ingest_header, seal_frame, Checksum, HEADER_LEN};
use lnc_uring::testkit::{Fault, TestServer};
use lnc_uring::{
    Backend, ConsumerConfig, Error, MemoryOffsetStore, OffsetStore, Producer, ProducerConfig,
    SeekPosition, StandaloneConsumer,
};

fn produce(server: &TestServer, backend: Backend, topic: u32, values: &[Vec<u8>]) {
    let p = Producer::with_config(
        ProducerConfig::default()
            .with_linger_ms(1)
            .with_connection(conn(server, backend)),
    )
    .unwrap();
    let tickets: Vec<_> = values
        .iter()
        .map(|v| p.send_async(topic, v).unwrap())
        .collect();
    for t in tickets {
        t.wait().unwrap();
    }
    p.close(Duration::from_secs(5)).unwrap();
}

fn consumer(server: &TestServer, backend: Backend, cfg: ConsumerConfig) -> StandaloneConsumer {
    StandaloneConsumer::connect(cfg.with_connection(conn(server, backend))).unwrap()
}

/// Reads until `n` records or a quiet second; returns the values.
fn read_n(c: &mut StandaloneConsumer, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while out.len() < n {
        match c.poll_timeout(Duration::from_secs(2)).unwrap() {
            Some(mut r) => {
                assert_eq!(r.end_offset(), c.current_offset());
                for rec in r.records() {
                    out.push(rec.unwrap().value.to_vec());
                }
            }
            None => break,
        }
    }
    out
}

fn values(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut v = format!("{i:08}").into_bytes();
            v.resize(size.max(8), (i % 251) as u8);
            v
        })
        .collect()
}

#[test]
fn reads_everything_in_order() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let vals = values(3000, 100);
        produce(&server, backend, t, &vals);
        let mut c = consumer(&server, backend, ConsumerConfig::new("c", t));
        assert_eq!(read_n(&mut c, 3000), vals, "{backend}");
        assert!(c.poll().unwrap().is_none(), "nothing more");
        c.close().unwrap();
    }
}

#[test]
fn a_fetch_cut_at_every_byte_position_loses_nothing() {
    // Records of 1..40 bytes; max_fetch_bytes from 1 to 23 cuts them at every position.
    let server = TestServer::start().unwrap();
    let t = server.create_topic("t");
    let vals: Vec<Vec<u8>> = (1..40).map(|n| vec![n as u8; n]).collect();
    produce(&server, Backend::Poll, t, &vals);
    for backend in backends() {
        for max in 1..=23u32 {
            let cfg = ConsumerConfig::new(format!("c{max}"), t).with_max_fetch_bytes(max);
            let mut c = consumer(&server, backend, cfg);
            let got = read_n(&mut c, vals.len());
            assert_eq!(got, vals, "{backend}, max_fetch_bytes {max}");
            c.close().unwrap();
        }
    }
}

#[test]
fn a_record_larger_than_a_fetch_is_assembled() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let big = vec![vec![9u8; 300_000], b"small".to_vec()];
        produce(&server, backend, t, &big);
        let mut c = consumer(
            &server,
            backend,
            ConsumerConfig::new("c", t).with_max_fetch_bytes(4096),
        );
        assert_eq!(read_n(&mut c, 2), big);
        c.close().unwrap();
    }
}

#[test]
fn seek_rewind_end_and_lag() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let vals = values(100, 50);
        produce(&server, backend, t, &vals);
        let cfg = ConsumerConfig::new("c", t).with_max_fetch_bytes(1000);
        let mut c = consumer(&server, backend, cfg);
        let mut first = c.poll_timeout(Duration::from_secs(2)).unwrap().unwrap();
        let n = first.records().count();
        assert!(n > 0 && n < 100);
        assert_eq!(
            first.lag(),
            100 * 55 - first.end_offset(),
            "lag = end of log - position"
        );
        c.rewind().unwrap();
        assert_eq!(read_n(&mut c, 100), vals);
        let end = c.seek_to_end().unwrap();
        assert_eq!(end, 100 * 55);
        assert!(c.poll().unwrap().is_none());
        produce(&server, backend, t, &values(1, 50));
        assert_eq!(read_n(&mut c, 1).len(), 1);
        // Seek to a boundary in the middle.
        c.seek(SeekPosition::Offset(55 * 10)).unwrap();
        assert_eq!(read_n(&mut c, 90)[0], vals[10]);
        // Past the end: CatchingUp is "nothing yet", not an error.
        c.seek(SeekPosition::Offset(1_000_000)).unwrap();
        assert!(c
            .poll_timeout(Duration::from_millis(120))
            .unwrap()
            .is_none());
        c.close().unwrap();
    }
}

#[test]
fn committed_offsets_resume_at_a_record_boundary() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let vals = values(200, 30);
        produce(&server, backend, t, &vals);
        let store: Arc<dyn OffsetStore> = Arc::new(MemoryOffsetStore::default());
        let cfg = || {
            ConsumerConfig::new("resumer", t)
                .with_max_fetch_bytes(333) // cuts records
                .with_offset_store(store.clone())
                .with_auto_commit(None)
        };
        let mut c = consumer(&server, backend, cfg());
        let mut r = c.poll_timeout(Duration::from_secs(2)).unwrap().unwrap();
        let got: Vec<Vec<u8>> = r.records().map(|x| x.unwrap().value.to_vec()).collect();
        c.commit().unwrap();
        let committed = c.committed_offset().unwrap();
        assert_eq!(committed % 35, 0, "a record boundary");
        drop(c);
        let mut c = consumer(&server, backend, cfg());
        assert_eq!(c.current_offset(), committed);
        let rest = read_n(&mut c, 200 - got.len());
        let all: Vec<Vec<u8>> = got.into_iter().chain(rest).collect();
        assert_eq!(all, vals, "{backend}: no record skipped or repeated");
        c.close().unwrap();
    }
}

#[test]
fn reconnect_resumes_without_skipping_or_repeating() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let vals = values(2000, 64);
        produce(&server, backend, t, &vals);
        let cfg = ConsumerConfig::new("c", t).with_max_fetch_bytes(1000);
        let mut c = consumer(&server, backend, cfg);
        let mut got = Vec::new();
        let mut polls = 0;
        while got.len() < vals.len() {
            polls += 1;
            if polls % 10 == 0 {
                server.restart().unwrap();
            }
            match c.poll_timeout(Duration::from_secs(5)).unwrap() {
                Some(mut r) => got.extend(r.records().map(|x| x.unwrap().value.to_vec())),
                None => break,
            }
        }
        assert_eq!(got, vals, "{backend}");
        assert!(c.stats().connects >= 2);
        c.close().unwrap();
    }
}

#[test]
fn split_and_corrupt_replies() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let vals = values(300, 40);
        produce(&server, backend, t, &vals);
        server.faults().inject(Fault::SplitWrites {
            max_piece: 5,
            pause: Duration::ZERO,
        });
        let mut c = consumer(
            &server,
            backend,
            ConsumerConfig::new("c", t).with_max_fetch_bytes(2000),
        );
        let mut got = read_n(&mut c, 50);
        server.faults().clear();
        server.faults().inject(Fault::CorruptNextFrame);
        got.extend(read_n(&mut c, 250));
        assert_eq!(got, vals, "{backend}");
        c.close().unwrap();
    }
}

#[test]
fn server_tracking_subscribes_commits_and_unsubscribes() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        produce(&server, backend, t, &values(10, 10));
        let cfg = ConsumerConfig::new("tracked", t).with_server_tracking(true);
        let mut c = consumer(&server, backend, cfg);
        assert_eq!(read_n(&mut c, 10).len(), 10);
        c.commit().unwrap();
        assert_eq!(c.committed_offset(), Some(150));
        let before = server.stats().control_frames;
        c.close().unwrap();
        assert!(server.stats().control_frames > before, "unsubscribed");
    }
}

#[test]
fn errors_are_typed() {
    let server = TestServer::start().unwrap();
    let e = StandaloneConsumer::connect(
        ConsumerConfig::with_topic_name("c", "missing")
            .with_connection(conn(&server, Backend::Poll)),
    )
    .unwrap_err();
    assert!(matches!(e, Error::TopicNotFound { .. }), "{e}");
    let e = StandaloneConsumer::connect(
        ConsumerConfig::new("c", 42).with_connection(conn(&server, Backend::Poll)),
    )
    .unwrap()
    .poll()
    .unwrap_err();
    assert!(matches!(e, Error::TopicNotFound { .. }), "{e}");
    // Bytes that are not TLV records (another client wrote raw bytes): a typed error,
    // the position stays put.
    let t = server.create_topic("raw");
    let mut frame = vec![0u8; HEADER_LEN];
    frame.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0x7F]);
    seal_frame(Checksum::Ieee, ingest_header(1, 0, 1, t), &mut frame);
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    s.write_all(&frame).unwrap();
    let mut ack = [0u8; HEADER_LEN];
    s.read_exact(&mut ack).unwrap();
    let mut c = StandaloneConsumer::connect(
        ConsumerConfig::with_topic_name("c", "raw").with_connection(conn(&server, Backend::Poll)),
    )
    .unwrap();
    assert!(matches!(
        c.poll_timeout(Duration::from_secs(1)),
        Err(Error::CorruptRecord { offset: 0, .. })
    ));
    assert_eq!(c.current_offset(), 0);
    let _ = encode_raw;
}
