#![cfg(feature = "testkit")]
//! Storage semantics: raw byte offsets and fetch cuts (§7), topic 0 (§4.3), empty
//! ingests (§4.4), auth gating (§8), retention (§7.8), restarts with and without a
//! data directory, discard mode, the fetch rate limiter (§5.2).

mod testkit_util;

use std::time::Duration;

use lnc_uring::proto::{
    encode_raw, ControlCode, FetchRequest, FrameKind, RecordIter, Request, Response, Retention,
    SubscribeRequest,
};
use lnc_uring::testkit::TestServer;
use testkit_util::*;

fn fetch(c: &mut Client, topic: u32, start: u64, max: u32) -> Owned {
    c.request(Request::Fetch(FetchRequest {
        topic_id: topic,
        start_offset: start,
        max_bytes: max,
    }))
}

/// (next_offset, record_count, data) of a FetchResponse.
fn fetched(f: &Owned) -> (u64, u32, Vec<u8>) {
    match f.response() {
        Response::Fetch(r) => (r.next_offset, r.record_count, r.data.to_vec()),
        other => panic!("expected a FetchResponse, got {other:?}"),
    }
}

fn catching_up(f: &Owned) -> u64 {
    match f.response() {
        Response::CatchingUp { server_offset } => server_offset,
        other => panic!("expected CatchingUp, got {other:?}"),
    }
}

fn records(values: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode_raw(&mut out, v).unwrap();
    }
    out
}

#[test]
fn fetch_returns_raw_ranges_8_3() {
    let s = TestServer::start().unwrap();
    let t = s.create_topic("t");
    let mut c = Client::connect(s.addr());
    let a = records(&[b"alpha", b"beta"]);
    let b = records(&[b"gamma"]);
    c.send(&ingest(1, t, &a));
    assert!(c.recv().is_ack(1));
    c.send(&ingest(2, t, &b));
    assert!(c.recv().is_ack(2));
    let all = [a.clone(), b.clone()].concat();
    assert_eq!(s.topic_bytes(t), all);
    let size = all.len() as u64;

    // The first record ("alpha") is 10 bytes: 7 cuts it.
    let (next, count, data) = fetched(&fetch(&mut c, t, 0, 7));
    assert_eq!((next, count, data.as_slice()), (7, 1, &all[..7]));
    // Reassemble across fetches, crossing the ingest boundary.
    let mut got = data;
    let mut at = next;
    while at < size {
        let (next, _, data) = fetched(&fetch(&mut c, t, at, 6));
        assert_eq!(next, at + data.len() as u64);
        got.extend(data);
        at = next;
    }
    assert_eq!(got, all);
    let values: Vec<Vec<u8>> = RecordIter::new(&got)
        .map(|r| r.unwrap().value.to_vec())
        .collect();
    assert_eq!(values, [&b"alpha"[..], b"beta", b"gamma"]);

    // Exactly at the end: empty response, next = size.
    assert_eq!(fetched(&fetch(&mut c, t, size, 100)), (size, 0, vec![]));
    // Past the end: CatchingUp(size), even standalone.
    assert_eq!(catching_up(&fetch(&mut c, t, size + 1, 100)), size);
    // Tail sentinel.
    assert_eq!(fetched(&fetch(&mut c, t, u64::MAX, 1)), (size, 0, vec![]));
    // max_bytes = 0.
    assert_eq!(fetched(&fetch(&mut c, t, 3, 0)), (3, 0, vec![]));
    assert_eq!(catching_up(&fetch(&mut c, t, size + 5, 0)), size);
    // Offset 0 of an empty topic is "at the end", not CatchingUp.
    let e = s.create_topic("empty");
    assert_eq!(fetched(&fetch(&mut c, e, 0, 10)), (0, 0, vec![]));
    // Unknown topic.
    assert_eq!(fetch(&mut c, 77, 0, 10).error_text(), "Topic 77 not found");
}

#[test]
fn topic_zero_is_write_only_5_3() {
    let s = TestServer::start().unwrap();
    let mut c = Client::connect(s.addr());
    c.send(&ingest(9, 0, b"zero"));
    assert!(c.recv().is_ack(9));
    assert_eq!(s.topic_bytes(0), b"zero");
    assert_eq!(fetch(&mut c, 0, 0, 10).error_text(), "Topic 0 not found");
    assert_eq!(
        c.request(Request::GetTopic { topic_id: 0 }).error_text(),
        "Topic not found"
    );
    assert!(s.topics().is_empty());
}

#[test]
fn empty_ingest_gets_no_reply_5_4() {
    let s = TestServer::start().unwrap();
    let t = s.create_topic("t");
    let mut c = Client::connect(s.addr());
    let mut chunk = ingest(1, t, b"");
    chunk.extend(keepalive());
    c.send(&chunk);
    assert_eq!(c.recv().kind(), FrameKind::Keepalive);
    c.assert_nothing_pending();
    // The topic check comes first: an empty ingest to an unknown topic is an error.
    c.send(&ingest(2, 55, b""));
    assert_eq!(c.recv().error_text(), "Unknown topic");
    assert_eq!(s.topic_size(t), 0);
}

#[test]
fn auth_gates_ingest_only_10() {
    let s = TestServer::builder()
        .auth_tokens(["secret", "other"])
        .start()
        .unwrap();
    let mut c = Client::connect(s.addr());
    // Control commands are never gated.
    let t = c.request(Request::CreateTopic { name: "t" });
    assert_eq!(t.kind(), FrameKind::Control(ControlCode::TOPIC_RESPONSE));
    c.send(&ingest(1, 1, b"x"));
    assert_eq!(c.recv().error_text(), "Authentication required");
    let r = c.request(Request::Authenticate { token: "nope" });
    assert!(matches!(
        r.response(),
        Response::Authenticate { success: false, .. }
    ));
    c.send(&ingest(2, 1, b"x"));
    assert_eq!(c.recv().error_text(), "Authentication required");
    let r = c.request(Request::Authenticate { token: "other" });
    assert!(matches!(
        r.response(),
        Response::Authenticate { success: true, .. }
    ));
    c.send(&ingest(3, 1, b"x"));
    assert!(c.recv().is_ack(3));
    // A failed attempt afterwards does not revoke it.
    c.request(Request::Authenticate { token: "nope" });
    c.send(&ingest(4, 1, b"y"));
    assert!(c.recv().is_ack(4));
    // Per connection.
    let mut c2 = Client::connect(s.addr());
    c2.send(&ingest(1, 1, b"z"));
    assert_eq!(c2.recv().error_text(), "Authentication required");
    assert_eq!(s.topic_bytes(1), b"xy");

    // write_only = true disables enforcement (§8).
    let s = TestServer::builder()
        .auth_tokens(["secret"])
        .auth_write_only(true)
        .start()
        .unwrap();
    let mut c = Client::connect(s.addr());
    c.send(&ingest(1, 0, b"x"));
    assert!(c.recv().is_ack(1));
}

#[test]
fn retention_zero_deletes_closed_segments_8_8() {
    let s = TestServer::start().unwrap();
    let t = s.create_topic("t");
    let mut c = Client::connect(s.addr());
    c.send(&ingest(1, t, b"old-data"));
    assert!(c.recv().is_ack(1));
    let r = c.request(Request::SetRetention {
        topic_id: t,
        retention: Retention {
            max_age_secs: 0,
            max_bytes: 0,
        },
    });
    assert_eq!(r.json(), r#"{"max_age_secs":0,"max_bytes":0,"topic_id":1}"#);
    // The active segment is never deleted.
    assert_eq!(s.run_retention().segments_deleted, 0);
    assert_eq!(s.topic_size(t), 8);
    // A restart closes it; 0 then means "delete it", not "unlimited".
    s.restart().unwrap();
    let mut c = Client::connect(s.addr());
    c.send(&ingest(2, t, b"new"));
    assert!(c.recv().is_ack(2));
    assert_eq!(s.topic_bytes(t), b"old-datanew");
    let run = s.run_retention();
    assert_eq!((run.segments_deleted, run.bytes_deleted), (1, 8));
    // Offsets shifted: "new" is now at 0, and a saved offset of 11 is past the end.
    assert_eq!(fetched(&fetch(&mut c, t, 0, 100)), (3, 1, b"new".to_vec()));
    assert_eq!(catching_up(&fetch(&mut c, t, 11, 100)), 3);
}

#[test]
fn retention_by_size_keeps_the_newest_8_8() {
    let s = TestServer::start().unwrap();
    let t = s.create_topic("t");
    let mut c = Client::connect(s.addr());
    for (i, part) in [&b"aaaa"[..], b"bbbb", b"cccc"].iter().enumerate() {
        c.send(&ingest(i as u64, t, part));
        assert!(c.recv().is_ack(i as u64));
        s.roll_segments().unwrap();
    }
    s.set_retention(t, Retention::UNLIMITED.with_max_bytes(5))
        .unwrap();
    let run = s.run_retention();
    assert_eq!((run.segments_deleted, run.bytes_deleted), (2, 8));
    assert_eq!(s.topic_bytes(t), b"cccc");
    s.set_retention(t, Retention::UNLIMITED).unwrap();
    assert_eq!(s.run_retention().segments_deleted, 0);
}

#[test]
fn restart_keeps_data_in_memory() {
    let s = TestServer::start().unwrap();
    let t = s.create_topic("t");
    let addr = s.addr();
    let mut c = Client::connect(addr);
    c.send(&ingest(1, t, b"kept"));
    assert!(c.recv().is_ack(1));
    c.request(Request::CommitOffset {
        topic_id: t,
        consumer_id: 5,
        offset: 4,
    });
    s.restart().unwrap();
    // The old connection is cut.
    assert!(c.wait_closed().is_empty());
    assert_eq!(s.addr(), addr);
    let mut c = Client::connect(addr);
    assert_eq!(fetched(&fetch(&mut c, t, 0, 100)), (4, 1, b"kept".to_vec()));
    // Committed offsets are memory only (§6.13).
    let r = c.request(Request::Subscribe(SubscribeRequest {
        topic_id: t,
        start_offset: 0,
        max_batch_bytes: 0,
        consumer_id: 5,
    }));
    assert!(matches!(r.response(), Response::SubscribeAck(a) if a.start_offset == 0));
    // Ids keep counting.
    assert_eq!(s.create_topic("u"), 2);
    assert_eq!(s.stats().restarts, 1);
}

#[test]
fn data_dir_keeps_every_acknowledged_byte() {
    let dir = TempDir::new("restart");
    let payload = records(&[b"durable", b"bytes"]);
    {
        let s = TestServer::builder().data_dir(&dir.0).start().unwrap();
        let mut c = Client::connect(s.addr());
        let r = c.request(Request::CreateTopicWithRetention {
            name: "d",
            retention: Retention::UNLIMITED,
        });
        assert!(r.json().contains(r#""id":1,"#));
        c.send(&ingest(1, 1, &payload));
        assert!(c.recv().is_ack(1));
        c.send(&ingest(2, 0, b"zero"));
        assert!(c.recv().is_ack(2));
        // Same server restarted: reloaded from disk.
        s.restart().unwrap();
        let mut c = Client::connect(s.addr());
        assert_eq!(
            fetched(&fetch(&mut c, 1, 0, 1000)),
            (payload.len() as u64, 1, payload.clone())
        );
        c.send(&ingest(3, 1, b"more"));
        assert!(c.recv().is_ack(3));
        s.stop();
    }
    // A new server on the same directory.
    let s = TestServer::builder().data_dir(&dir.0).start().unwrap();
    let topics = s.topics();
    assert_eq!(topics.len(), 1);
    assert_eq!((topics[0].id, topics[0].name.as_str()), (1, "d"));
    assert_eq!(topics[0].retention(), Some(Retention::UNLIMITED));
    assert_eq!(s.topic_bytes(1), [payload.as_slice(), b"more"].concat());
    assert_eq!(s.topic_bytes(0), b"zero");
    assert_eq!(s.create_topic("e"), 2);
    // Segment files are named like the server's (§7.1), all closed by now.
    let mut names: Vec<String> = std::fs::read_dir(dir.0.join("segments/d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], "metadata.json");
    assert!(names[..2]
        .iter()
        .all(|n| n.ends_with(".lnc") && n.contains('-')));
    // Delete removes the directory.
    let mut c = Client::connect(s.addr());
    c.request(Request::DeleteTopic { topic_id: 1 });
    assert!(!dir.0.join("segments/d").exists());
}

#[test]
fn data_dir_retention_deletes_files() {
    let dir = TempDir::new("retention");
    let s = TestServer::builder().data_dir(&dir.0).start().unwrap();
    let t = s.create_topic("r");
    let mut c = Client::connect(s.addr());
    c.send(&ingest(1, t, b"first"));
    assert!(c.recv().is_ack(1));
    s.roll_segments().unwrap();
    c.send(&ingest(2, t, b"second"));
    assert!(c.recv().is_ack(2));
    s.set_retention(
        t,
        Retention {
            max_age_secs: 0,
            max_bytes: 0,
        },
    )
    .unwrap();
    assert_eq!(s.run_retention().bytes_deleted, 5);
    assert_eq!(fetched(&fetch(&mut c, t, 0, 100)).2, b"second");
}

#[test]
fn discard_mode() {
    let s = TestServer::builder().discard_data(true).start().unwrap();
    let t = s.create_topic("t");
    let mut c = Client::connect(s.addr());
    c.send(&ingest(1, t, b"gone"));
    assert!(c.recv().is_ack(1));
    assert_eq!(s.topic_size(t), 4);
    assert!(s.topic_bytes(t).is_empty());
    assert_eq!(fetched(&fetch(&mut c, t, u64::MAX, 1)), (4, 0, vec![]));
    assert_eq!(fetched(&fetch(&mut c, t, 4, 10)), (4, 0, vec![]));
    assert_eq!(catching_up(&fetch(&mut c, t, 9, 10)), 4);
    assert_eq!(
        fetch(&mut c, t, 0, 10).error_text(),
        "I/O error: data not retained (testkit discard_data mode)"
    );
    assert!(TestServer::builder()
        .discard_data(true)
        .data_dir("/nonexistent")
        .start()
        .is_err());
}

#[test]
fn fetch_rate_limit_6_2() {
    // 1 byte/s: the bucket starts with 1 token and refills after a whole second.
    let s = TestServer::builder().fetch_rate_limit(1).start().unwrap();
    let t = s.create_topic("t");
    let mut c = Client::connect(s.addr());
    // The first fetch is served in full although only 1 token was there.
    assert_eq!(fetched(&fetch(&mut c, t, 0, 1000)), (0, 0, vec![]));
    assert_eq!(
        fetch(&mut c, t, 0, 1000).error_text(),
        "Rate limit exceeded"
    );
    // The bucket is shared by all connections.
    let mut c2 = Client::connect(s.addr());
    assert_eq!(fetch(&mut c2, t, 0, 1).error_text(), "Rate limit exceeded");
    // Framing errors come before the limiter.
    assert_eq!(
        c2.roundtrip(&raw_control(0x10, b"")).error_text(),
        "Fetch request payload required"
    );
    // It refills.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(fetched(&fetch(&mut c2, t, 0, 1)), (0, 0, vec![]));
}

#[test]
fn many_connections_and_stats() {
    let s = TestServer::start().unwrap();
    let t = s.create_topic("t");
    let threads: Vec<_> = (0..8u8)
        .map(|i| {
            let addr = s.addr();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for b in 0..50u64 {
                    c.send(&ingest(b, t, &[i; 10]));
                    assert!(c.recv().is_ack(b));
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert_eq!(s.topic_size(t), 8 * 50 * 10);
    assert!(s.wait_for(Duration::from_secs(5), |st| st.connections_open == 0));
    let st = s.stats();
    assert_eq!(st.connections_accepted, 8);
    assert_eq!(
        (st.ingest_frames, st.acks_sent, st.ingest_bytes),
        (400, 400, 4000)
    );
    assert_eq!(st.bytes_received, 400 * (44 + 10));
    assert_eq!(st.bytes_sent, 400 * 44);
}
