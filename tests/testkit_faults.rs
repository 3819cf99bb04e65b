#![cfg(feature = "testkit")]
//! Every scripted fault, at least once.

mod testkit_util;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use lnc_uring::proto::{FetchRequest, FrameError, FrameKind, Request, Response};
use lnc_uring::testkit::{AckPolicy, Fault, Target, TestServer, QUORUM_FAILURE_TEXT};
use testkit_util::*;

fn server_with_topic() -> (TestServer, Client) {
    let s = TestServer::start().unwrap();
    s.create_topic("t");
    let c = Client::connect(s.addr());
    (s, c)
}

fn three_ingests() -> Vec<u8> {
    let mut chunk = ingest(1, 1, b"one");
    chunk.extend(ingest(2, 1, b"two"));
    chunk.extend(ingest(3, 1, b"three"));
    chunk
}

#[test]
fn delay_acks() {
    let (s, mut c) = server_with_topic();
    s.faults().inject(Fault::DelayAcks {
        delay: Duration::from_millis(200),
        chunks: 1,
    });
    let t0 = Instant::now();
    let mut chunk = ingest(1, 1, b"x");
    chunk.extend(keepalive());
    c.send(&chunk);
    // The inline echo is not held back; the ACK is.
    assert_eq!(c.recv().kind(), FrameKind::Keepalive);
    assert!(c.recv().is_ack(1));
    assert!(t0.elapsed() >= Duration::from_millis(150));
    assert_eq!(s.faults().armed(), 0);
}

#[test]
fn delayed_ack_policy() {
    let s = TestServer::builder()
        .ack_policy(AckPolicy::Delayed(Duration::from_millis(100)))
        .start()
        .unwrap();
    let mut c = Client::connect(s.addr());
    let t0 = Instant::now();
    c.send(&ingest(1, 0, b"x"));
    assert!(c.recv().is_ack(1));
    assert!(t0.elapsed() >= Duration::from_millis(80));
}

#[test]
fn withhold_acks() {
    let (s, mut c) = server_with_topic();
    s.faults().inject(Fault::WithholdAcks { count: 1 });
    c.send(&three_ingests());
    assert!(c.recv().is_ack(2));
    assert!(c.recv().is_ack(3));
    c.assert_nothing_pending();
    assert_eq!(s.topic_bytes(1), b"onetwothree");
}

#[test]
fn quorum_failure_drops_the_ack_tail_5_7() {
    let (s, mut c) = server_with_topic();
    s.faults().inject(Fault::FailQuorum { nth: 2 });
    c.send(&three_ingests());
    assert!(c.recv().is_ack(1));
    assert_eq!(c.recv().error_text(), QUORUM_FAILURE_TEXT);
    // Nothing for batch 3, and the connection stays open.
    c.assert_nothing_pending();
    // Their writes happened nonetheless.
    assert_eq!(s.topic_bytes(1), b"onetwothree");
    // The next chunk is normal again.
    c.send(&ingest(4, 1, b"four"));
    assert!(c.recv().is_ack(4));
}

#[test]
fn injected_errors_are_inline() {
    let (s, mut c) = server_with_topic();
    let leader = "10.0.0.2:1992".parse().unwrap();
    for (fault, text) in [
        (
            Fault::forward_failed("Forward operation timed out"),
            "FORWARD_FAILED: Forward operation timed out",
        ),
        (
            Fault::not_leader(leader),
            "NOT_LEADER: redirect to 10.0.0.2:1992",
        ),
        (Fault::rate_limited(), "Rate limit exceeded"),
        (Fault::reject_ingest("anything at all"), "anything at all"),
    ] {
        // The second ingest of the chunk is refused: the error overtakes Ack(1).
        s.faults().inject(fault.after(1));
        c.send(&three_ingests());
        assert_eq!(c.recv().error_text(), text);
        assert!(c.recv().is_ack(1));
        assert!(c.recv().is_ack(3));
    }
    assert_eq!(s.topic_bytes(1), b"onethree".repeat(4));
}

#[test]
fn backpressure_frames() {
    let (s, mut c) = server_with_topic();
    s.faults().inject(Fault::Backpressure {
        count: 1,
        replace_ingest: false,
    });
    c.send(&ingest(1, 1, b"kept"));
    let bp = c.recv();
    assert_eq!(bp.kind(), FrameKind::Backpressure);
    assert_eq!(bp.bytes[5], 0x10);
    assert!(c.recv().is_ack(1));

    s.faults().inject(Fault::Backpressure {
        count: 1,
        replace_ingest: true,
    });
    c.send(&ingest(2, 1, b"dropped"));
    assert_eq!(c.recv().kind(), FrameKind::Backpressure);
    c.assert_nothing_pending();
    assert_eq!(s.topic_bytes(1), b"kept");
}

#[test]
fn close_after_frames() {
    let (s, mut c) = server_with_topic();
    s.faults().inject(Fault::CloseAfterFrames { frames: 2 });
    c.send(&three_ingests());
    let rest = c.wait_closed();
    let mut expected = lnc_uring::proto::ack_frame(s.checksum(), 1).to_vec();
    expected.extend(lnc_uring::proto::ack_frame(s.checksum(), 2));
    assert_eq!(rest, expected);
    assert_eq!(s.topic_bytes(1), b"onetwo");

    // frames: 0 closes at the next frame, unhandled.
    s.faults().inject(Fault::CloseAfterFrames { frames: 0 });
    let mut c = Client::connect(s.addr());
    c.send(&ingest(9, 1, b"never"));
    c.assert_closed_silently();
    assert_eq!(s.topic_bytes(1), b"onetwo");
}

#[test]
fn close_after_bytes() {
    let (s, mut c) = server_with_topic();
    let chunk = three_ingests();
    let first = ingest(1, 1, b"one").len() as u64;
    s.faults()
        .inject(Fault::CloseAfterBytes { bytes: first + 10 });
    c.send(&chunk);
    let rest = c.wait_closed();
    assert_eq!(rest, lnc_uring::proto::ack_frame(s.checksum(), 1));
    assert_eq!(s.topic_bytes(1), b"one");
}

#[test]
fn close_on_accept_and_targets() {
    let (s, mut first) = server_with_topic();
    first.assert_nothing_pending(); // accepted before the fault is armed
    s.faults().inject(Fault::CloseOnAccept { count: 1 });
    let mut refused = Client::connect(s.addr());
    refused.assert_closed_silently();
    let mut ok = Client::connect(s.addr());
    ok.assert_nothing_pending();

    // Target::Next hits only the connection accepted next.
    s.faults()
        .inject_for(Target::Next, Fault::CloseAfterFrames { frames: 1 });
    first.assert_nothing_pending();
    first.assert_nothing_pending();
    let mut next = Client::connect(s.addr());
    next.send(&keepalive());
    assert_eq!(next.wait_closed(), keepalive());
    // Target::Conn by accept index: `first` was connection 0.
    s.faults()
        .inject_for(Target::Conn(0), Fault::CloseAfterFrames { frames: 0 });
    ok.assert_nothing_pending();
    first.send(&keepalive());
    first.assert_closed_silently();
    assert_eq!(s.faults().armed(), 0);
}

#[test]
fn stall_reads() {
    let (s, mut c) = server_with_topic();
    s.faults().inject(Fault::StallReads {
        duration: Duration::from_millis(300),
    });
    let t0 = Instant::now();
    c.send(&keepalive());
    assert_eq!(c.recv().kind(), FrameKind::Keepalive);
    assert!(t0.elapsed() >= Duration::from_millis(250));
}

#[test]
fn paused_reads_exert_tcp_backpressure() {
    let (s, mut c) = server_with_topic();
    s.faults().inject(Fault::PauseReads);
    c.send(&ingest(0, 1, b"wake"));
    // The server holds that chunk and reads nothing: the client's writes must block.
    let frame = ingest(1, 1, &[7u8; 64 * 1024]);
    c.sock.set_nonblocking(true).unwrap();
    let mut frames = 0u64;
    let mut partial = 0usize;
    'fill: for _ in 0..4096 {
        let mut at = 0;
        while at < frame.len() {
            match c.sock.write(&frame[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    partial = at;
                    break 'fill;
                }
                Err(e) => panic!("{e}"),
            }
        }
        frames += 1;
    }
    assert!(partial > 0 || frames < 4096, "writes never blocked");
    c.sock.set_nonblocking(false).unwrap();
    s.faults().resume_reads();
    if partial > 0 {
        c.sock.write_all(&frame[partial..]).unwrap();
        frames += 1;
    }
    assert!(c.recv().is_ack(0));
    for _ in 0..frames {
        assert!(c.recv().is_ack(1));
    }
    assert_eq!(s.topic_size(1), 4 + frames * 64 * 1024);
}

#[test]
fn split_writes_exercise_reassembly() {
    let (s, mut c) = server_with_topic();
    c.send(&ingest(1, 1, b"payload for the split reply"));
    assert!(c.recv().is_ack(1));
    s.faults().inject(Fault::SplitWrites {
        max_piece: 7,
        pause: Duration::from_millis(3),
    });
    let expect = {
        let mut out = Vec::new();
        Response::Fetch(lnc_uring::proto::FetchResponse {
            next_offset: 27,
            record_count: 1,
            data: b"payload for the split reply",
        })
        .encode(s.checksum(), &mut out);
        out
    };
    c.send(&control(Request::Fetch(FetchRequest {
        topic_id: 1,
        start_offset: 0,
        max_bytes: 100,
    })));
    let mut got = Vec::new();
    let mut reads = 0;
    let mut buf = [0u8; 1024];
    while got.len() < expect.len() {
        let n = c.sock.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
        reads += 1;
    }
    assert_eq!(got, expect);
    assert!(reads > 1, "the reply arrived in one piece");
    // Still in force (until cleared), for ACKs too.
    c.send(&ingest(2, 1, b"x"));
    assert!(c.recv().is_ack(2));
    assert_eq!(s.faults().armed(), 1);
    s.faults().clear();
}

#[test]
fn corrupt_next_frame() {
    let (s, mut c) = server_with_topic();
    s.faults().inject(Fault::CorruptNextFrame);
    c.send(&keepalive());
    assert!(matches!(c.try_recv(), Err(FrameError::HeaderCrc { .. })));
    c.send(&ingest(1, 1, b"data"));
    assert!(c.recv().is_ack(1));
    s.faults().inject(Fault::CorruptNextFrame);
    c.send(&control(Request::Fetch(FetchRequest {
        topic_id: 1,
        start_offset: 0,
        max_bytes: 100,
    })));
    assert!(matches!(c.try_recv(), Err(FrameError::PayloadCrc { .. })));
    s.faults().inject(Fault::CorruptNextFrame);
    c.send(&ingest(2, 1, b"data"));
    assert!(matches!(c.try_recv(), Err(FrameError::HeaderCrc { .. })));
    c.assert_nothing_pending();
}

#[test]
fn restart_cuts_connections_mid_stream() {
    let (s, mut c) = server_with_topic();
    s.faults().inject(Fault::PauseReads);
    c.send(&ingest(1, 1, b"held"));
    assert!(s.wait_for(Duration::from_secs(5), |st| st.bytes_received > 0));
    // Restart while the connection is held: it is cut without a reply.
    s.restart_with_downtime(Duration::from_millis(50)).unwrap();
    c.assert_closed_silently();
    let mut c = Client::connect(s.addr());
    c.send(&ingest(2, 1, b"after"));
    assert!(c.recv().is_ack(2));
    assert_eq!(s.topic_bytes(1), b"after");
    assert!(s.wait_for(Duration::from_secs(5), |st| st.connections_open == 1));
}
