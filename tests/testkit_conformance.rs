#![cfg(feature = "testkit")]
//! The testkit answers like the released server, byte for byte: the docs/protocol.md §12
//! vectors, the §1.2 ordering, the §2.4 silent closes, §3 classification, and the §6 /
//! §10 texts.

mod testkit_util;

use lnc_uring::proto::{
    Checksum, ControlCode, FetchRequest, FrameKind, Request, Response, Retention, SubscribeRequest,
    HEADER_LEN,
};
use lnc_uring::testkit::TestServer;
use testkit_util::*;

// ---- docs/protocol.md §12 vectors (copied verbatim) ----

const KEEPALIVE: &str = "
4C 41 4E 43 01 20 00 00 06 1E 9C 53 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00";

const INGEST_TOPIC0_TEST: &str = "
4C 41 4E 43 01 04 00 00 3A F0 D8 6C 01 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00
04 00 00 00 0C 7E 7F D8 00 00 00 00 74 65 73 74";

const INGEST_TLV_TOPIC1: &str = "
4C 41 4E 43 01 04 00 00 3A F0 D8 6C 01 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00
09 00 00 00 07 AF 03 8C 01 00 00 00 01 04 00 00
00 74 65 73 74";

const ACK_1: &str = "
4C 41 4E 43 01 08 00 00 5E 09 C2 65 01 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00";

const CREATE_EVENTS: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 01 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
06 00 00 00 4A 57 87 53 00 00 00 00 65 76 65 6E
74 73";

const CREATE_EVENTS_REPLY_1700000000: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 80 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
40 00 00 00 81 34 DE E0 00 00 00 00 7B 22 63 72
65 61 74 65 64 5F 61 74 22 3A 31 37 30 30 30 30
30 30 30 30 2C 22 69 64 22 3A 31 2C 22 6E 61 6D
65 22 3A 22 65 76 65 6E 74 73 22 2C 22 74 6F 70
69 63 5F 65 70 6F 63 68 22 3A 31 7D";

const CREATE_WITH_RETENTION: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 06 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
18 00 00 00 B7 B0 A6 64 00 00 00 00 06 00 65 76
65 6E 74 73 80 51 01 00 00 00 00 00 00 00 00 40
00 00 00 00";

const LIST_TOPICS: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 03 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00";

const FETCH_1_0_65536: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 10 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
10 00 00 00 85 EB C8 5B 00 00 00 00 01 00 00 00
00 00 00 00 00 00 00 00 00 00 01 00";

const FETCH_RESPONSE_9: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 11 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
19 00 00 00 C7 EB 65 B6 00 00 00 00 09 00 00 00
00 00 00 00 09 00 00 00 01 00 00 00 01 04 00 00
00 74 65 73 74";

const CATCHING_UP_0: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 12 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
08 00 00 00 69 DF 22 65 00 00 00 00 00 00 00 00
00 00 00 00";

const ERROR_UNKNOWN_TOPIC: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B FF 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0D 00 00 00 3D 95 61 C4 00 00 00 00 55 6E 6B 6E
6F 77 6E 20 74 6F 70 69 63";

const SUBSCRIBE_1_0_65536_42: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 20 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
18 00 00 00 A7 BA 90 A5 00 00 00 00 01 00 00 00
00 00 00 00 00 00 00 00 00 00 01 00 2A 00 00 00
00 00 00 00";

const SUBSCRIBE_ACK_42_0: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 23 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
10 00 00 00 04 8A 37 0F 00 00 00 00 2A 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00";

const UNSUBSCRIBE_1_42: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 21 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0C 00 00 00 9E F4 C6 88 00 00 00 00 01 00 00 00
2A 00 00 00 00 00 00 00";

const UNSUBSCRIBE_REPLY_42: &str = "
4C 41 4E 43 01 08 00 00 5E 09 C2 65 2A 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00";

const COMMIT_1_42_9: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 22 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
14 00 00 00 B1 7A 71 96 00 00 00 00 01 00 00 00
2A 00 00 00 00 00 00 00 09 00 00 00 00 00 00 00";

const COMMIT_ACK_42_9: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 24 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
10 00 00 00 2F 91 78 10 00 00 00 00 2A 00 00 00
00 00 00 00 09 00 00 00 00 00 00 00";

const SET_RETENTION_1: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 05 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
14 00 00 00 DA CB D1 C4 00 00 00 00 01 00 00 00
80 51 01 00 00 00 00 00 00 00 00 40 00 00 00 00";

const GET_TOPIC_1: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 04 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
04 00 00 00 79 B8 F8 99 00 00 00 00 01 00 00 00";

const AUTH_SECRET: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 08 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
06 00 00 00 E5 E8 A2 5C 00 00 00 00 73 65 63 72
65 74";

const AUTH_OK: &str = "
4C 41 4E 43 01 40 00 00 26 D5 4B 1B 09 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0E 00 00 00 92 F8 61 A4 00 00 00 00 01 41 75 74
68 65 6E 74 69 63 61 74 65 64";

const STANDALONE_STATUS: &str = r#"{"current_term":0,"healthy_nodes":1,"is_leader":true,"leader_id":0,"mode":"standalone","node_count":1,"node_id":0,"peer_states":{},"quorum_available":true}"#;

fn setup() -> (TestServer, Client) {
    let server = TestServer::start().unwrap();
    let client = Client::connect(server.addr());
    (server, client)
}

/// Creates "events" (id 1) over the wire with the §12.5 bytes.
fn create_events(c: &mut Client) -> Owned {
    c.roundtrip(&hex(CREATE_EVENTS))
}

// ---- §12 byte-exact ----

#[test]
fn keepalive_echo_17_1() {
    let (_s, mut c) = setup();
    c.send(&hex(KEEPALIVE));
    assert_eq!(c.read_raw(44), hex(KEEPALIVE));
}

#[test]
fn ack_for_batch_1_17_4() {
    let (s, mut c) = setup();
    // §12.2: topic 0 accepts writes and ACKs them (§4.3).
    c.send(&hex(INGEST_TOPIC0_TEST));
    assert_eq!(c.read_raw(44), hex(ACK_1));
    assert_eq!(s.topic_bytes(0), b"test");
    // §12.3 into a real topic.
    create_events(&mut c);
    c.send(&hex(INGEST_TLV_TOPIC1));
    assert_eq!(c.read_raw(44), hex(ACK_1));
    assert_eq!(s.topic_bytes(1), hex(INGEST_TLV_TOPIC1)[HEADER_LEN..]);
}

#[test]
fn create_topic_reply_17_5() {
    let (_s, mut c) = setup();
    let reply = create_events(&mut c);
    let json = reply.json();
    let created_at: u64 = json
        .strip_prefix(r#"{"created_at":"#)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad JSON {json}"));
    assert_eq!(
        json,
        format!(r#"{{"created_at":{created_at},"id":1,"name":"events","topic_epoch":1}}"#)
    );
    // The same bytes as the vector, apart from the ten timestamp digits and the CRC.
    let expected = hex(CREATE_EVENTS_REPLY_1700000000);
    assert_eq!(reply.bytes.len(), expected.len());
    assert_eq!(reply.bytes[..36], expected[..36]);
    assert_eq!(reply.bytes[40..58], expected[40..58]);
    assert_eq!(reply.bytes[68..], expected[68..]);
    let mut again = Vec::new();
    Response::Topic(json.as_bytes()).encode(Checksum::Ieee, &mut again);
    assert_eq!(reply.bytes, again);
}

#[test]
fn create_with_retention_and_list_17_6() {
    let (_s, mut c) = setup();
    let empty = c.roundtrip(&hex(LIST_TOPICS));
    assert_eq!(empty.header.batch_id, 0x80);
    assert_eq!(empty.json(), r#"{"topics":[]}"#);

    let reply = c.roundtrip(&hex(CREATE_WITH_RETENTION));
    let json = reply.json();
    let ts = json[14..].split(',').next().unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"created_at":{ts},"id":1,"max_age_secs":86400,"max_bytes":1073741824,"name":"events","topic_epoch":1}}"#
        )
    );
    let list = c.roundtrip(&hex(LIST_TOPICS));
    assert_eq!(
        list.json(),
        format!(r#"{{"topics":[{{"id":1,"name":"events","created_at":{ts},"topic_epoch":1}}]}}"#)
    );
    // GetTopic carries no retention (§6.7).
    let get = c.roundtrip(&hex(GET_TOPIC_1));
    assert_eq!(
        get.json(),
        format!(r#"{{"created_at":{ts},"id":1,"name":"events","topic_epoch":1}}"#)
    );
}

#[test]
fn cluster_status_exact_bytes_7_10() {
    let (_s, mut c) = setup();
    let mut req = hex(LIST_TOPICS);
    req[12] = 0x07; // §12.6: identical except byte 12.
    let reply = c.roundtrip(&req);
    let mut expected = Vec::new();
    Response::ClusterStatus(STANDALONE_STATUS.as_bytes()).encode(Checksum::Ieee, &mut expected);
    assert_eq!(reply.bytes, expected);
    assert_eq!(reply.header.batch_id, 0x81);
}

#[test]
fn fetch_response_17_6() {
    let (_s, mut c) = setup();
    create_events(&mut c);
    c.send(&hex(INGEST_TLV_TOPIC1));
    assert!(c.recv().is_ack(1));
    c.send(&hex(FETCH_1_0_65536));
    assert_eq!(c.read_raw(69), hex(FETCH_RESPONSE_9));
}

#[test]
fn catching_up_and_unknown_topic_17_6() {
    let (_s, mut c) = setup();
    create_events(&mut c);
    // Offset 5 on an empty topic: past the end ⇒ CatchingUp(size = 0) (§7.3 step 6).
    c.send(&control(Request::Fetch(FetchRequest {
        topic_id: 1,
        start_offset: 5,
        max_bytes: 100,
    })));
    assert_eq!(c.read_raw(52), hex(CATCHING_UP_0));
    // Ingest to a topic that does not exist (§4.2 step 3).
    c.send(&ingest(1, 7, b"x"));
    assert_eq!(c.read_raw(57), hex(ERROR_UNKNOWN_TOPIC));
}

#[test]
fn subscribe_unsubscribe_commit_17_6() {
    let (_s, mut c) = setup();
    create_events(&mut c);
    c.send(&hex(SUBSCRIBE_1_0_65536_42));
    assert_eq!(c.read_raw(60), hex(SUBSCRIBE_ACK_42_0));
    c.send(&hex(UNSUBSCRIBE_1_42));
    assert_eq!(c.read_raw(44), hex(UNSUBSCRIBE_REPLY_42));
    c.send(&hex(COMMIT_1_42_9));
    assert_eq!(c.read_raw(60), hex(COMMIT_ACK_42_9));
}

#[test]
fn set_retention_17_6() {
    let (s, mut c) = setup();
    create_events(&mut c);
    let reply = c.roundtrip(&hex(SET_RETENTION_1));
    assert_eq!(reply.header.batch_id, 0x80);
    assert_eq!(
        reply.json(),
        r#"{"max_age_secs":86400,"max_bytes":1073741824,"topic_id":1}"#
    );
    assert_eq!(
        s.topics()[0].retention(),
        Some(Retention {
            max_age_secs: 86400,
            max_bytes: 1 << 30
        })
    );
}

#[test]
fn authenticate_17_6() {
    // Auth disabled: any non-empty UTF-8 token is accepted (§6.11).
    let (_s, mut c) = setup();
    c.send(&hex(AUTH_SECRET));
    assert_eq!(c.read_raw(58), hex(AUTH_OK));
    // Enabled with that token.
    let s = TestServer::builder()
        .auth_tokens(["secret"])
        .start()
        .unwrap();
    let mut c = Client::connect(s.addr());
    c.send(&hex(AUTH_SECRET));
    assert_eq!(c.read_raw(58), hex(AUTH_OK));
}

// ---- §1.2 ordering ----

#[test]
fn inline_replies_overtake_deferred_acks() {
    let (_s, mut c) = setup();
    create_events(&mut c);
    let mut chunk = hex(INGEST_TLV_TOPIC1);
    chunk.extend(hex(FETCH_1_0_65536));
    c.send(&chunk);
    let first = c.recv();
    assert_eq!(
        first.kind(),
        FrameKind::Control(ControlCode::FETCH_RESPONSE)
    );
    assert!(c.recv().is_ack(1));

    let mut chunk = ingest(1, 1, b"a");
    chunk.extend(ingest(2, 99, b"b"));
    chunk.extend(ingest(3, 1, b"c"));
    c.send(&chunk);
    assert_eq!(c.recv().error_text(), "Unknown topic");
    assert!(c.recv().is_ack(1));
    assert!(c.recv().is_ack(3));

    let mut chunk = ingest(4, 1, b"d");
    chunk.extend(keepalive());
    c.send(&chunk);
    assert_eq!(c.recv().kind(), FrameKind::Keepalive);
    assert!(c.recv().is_ack(4));
}

#[test]
fn acks_are_fifo() {
    let (s, mut c) = setup();
    create_events(&mut c);
    let mut chunk = Vec::new();
    for b in 1..=100u64 {
        chunk.extend(ingest(b * 7, 1, &[b as u8; 3]));
    }
    c.send(&chunk);
    for b in 1..=100u64 {
        assert!(c.recv().is_ack(b * 7));
    }
    assert_eq!(s.topic_size(1), 300);
}

// ---- §2.4 malformed frames: close, no reply ----

fn assert_closes(server: &TestServer, frame: &[u8]) {
    let mut c = Client::connect(server.addr());
    c.send(frame);
    c.assert_closed_silently();
}

#[test]
fn malformed_frames_close_silently() {
    let s = TestServer::builder().max_payload(1024).start().unwrap();
    let good = keepalive();

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert_closes(&s, &bad_magic);

    let mut bad_version = good.clone();
    bad_version[4] = 2;
    assert_closes(&s, &bad_version);

    let mut bad_header_crc = good.clone();
    bad_header_crc[8] ^= 1;
    assert_closes(&s, &bad_header_crc);

    let mut bad_payload_crc = ingest(1, 0, b"test");
    bad_payload_crc[36] ^= 1;
    assert_closes(&s, &bad_payload_crc);

    // Oversize: rejected from the 44 header bytes alone, before any payload (and even
    // before the magic is looked at).
    let oversize = ingest(1, 0, &[0u8; 1025]);
    assert_closes(&s, &oversize[..HEADER_LEN]);
    let mut oversize_bad_magic = oversize[..HEADER_LEN].to_vec();
    oversize_bad_magic[..4].copy_from_slice(b"JUNK");
    assert_closes(&s, &oversize_bad_magic);

    // Exactly the limit is fine (§2.4: "exactly 16 MiB is allowed").
    let mut c = Client::connect(s.addr());
    c.send(&ingest(1, 0, &[0u8; 1024]));
    assert!(c.recv().is_ack(1));
    assert_eq!(s.stats().malformed_closes, 6);

    // A Castagnoli client against the IEEE server: header CRC mismatch.
    assert_closes(&s, &ingest_with(Checksum::Castagnoli, 1, 0, b"x"));
}

#[test]
fn malformed_frame_mid_chunk_drops_the_chunks_acks() {
    let (s, mut c) = setup();
    create_events(&mut c);
    let mut chunk = ingest(1, 1, b"stored");
    chunk.extend(keepalive());
    let mut bad = keepalive();
    bad[0] = 0;
    chunk.extend(bad);
    c.send(&chunk);
    // The inline keepalive echo went out; the deferred ACK never does.
    let rest = c.wait_closed();
    assert_eq!(rest, keepalive());
    assert_eq!(s.topic_bytes(1), b"stored");
}

#[test]
fn oversize_frame_behind_others_closes_after_the_next_read() {
    let s = TestServer::builder().max_payload(64).start().unwrap();
    s.create_topic("t");
    let mut c = Client::connect(s.addr());
    let mut chunk = ingest(1, 1, b"ok");
    chunk.extend_from_slice(&ingest(2, 1, &[0u8; 65])[..HEADER_LEN]);
    c.send(&chunk);
    // The server took the oversize frame for an incomplete one: ACKs go out.
    assert!(c.recv().is_ack(1));
    // Its next read sees the oversize header first and closes.
    c.send(&[0]);
    c.assert_closed_silently();
}

// ---- §3 classification ----

#[test]
fn classification_4_2() {
    let (s, mut c) = setup();
    create_events(&mut c);
    // Client-sent Ack, Backpressure and Unknown frames are ignored.
    let mut chunk = with_flags(0x08, 5, b"");
    chunk.extend(with_flags(0x10, 6, b""));
    chunk.extend(with_flags(0x00, 7, b""));
    chunk.extend(with_flags(0x80, 8, b""));
    c.send(&chunk);
    c.assert_nothing_pending();
    // Flags 0x00 / 0x01 / 0x02 with a payload are ingest (topic 0 here).
    for (i, flags) in [0x00u8, 0x01, 0x02].into_iter().enumerate() {
        c.send(&with_flags(flags, 10 + i as u64, b"p"));
        assert!(c.recv().is_ack(10 + i as u64));
    }
    assert_eq!(s.topic_bytes(0), b"ppp");
    // Only the low byte of batch_id is the command: 0x0103 is ListTopics.
    let r = c.roundtrip(&raw_control(0x0103, b""));
    assert!(r.json().starts_with(r#"{"topics":[{"id":1,"#));
    // Control wins over keepalive; keepalive over ack.
    let r = c.roundtrip(&with_flags(0x60, 0x03, b""));
    assert_eq!(r.kind(), FrameKind::Control(ControlCode::TOPIC_RESPONSE));
    let r = c.roundtrip(&with_flags(0x28, 0, b""));
    assert_eq!(r.kind(), FrameKind::Keepalive);
    // A keepalive may carry a payload: CRC-checked, ignored.
    let r = c.roundtrip(&with_flags(0x20, 0, b"ignored"));
    assert_eq!(r.bytes, keepalive());
}

#[test]
fn castagnoli_server() {
    let s = TestServer::builder()
        .checksum(Checksum::Castagnoli)
        .start()
        .unwrap();
    let mut c = Client::connect_with(s.addr(), Checksum::Castagnoli);
    let ka = lnc_uring::proto::keepalive_frame(Checksum::Castagnoli);
    c.send(&ka);
    assert_eq!(c.read_raw(44), ka);
    c.send(&ingest_with(Checksum::Castagnoli, 3, 0, b"x"));
    assert!(c.recv().is_ack(3));
    let mut ieee = Client::connect(s.addr());
    ieee.send(&keepalive());
    ieee.assert_closed_silently();
}

// ---- §6 / §10 texts ----

#[test]
fn control_error_texts() {
    let (_s, mut c) = setup();
    let mut err = |bytes: Vec<u8>| c.roundtrip(&bytes).error_text();

    assert_eq!(err(raw_control(0x01, b"")), "Topic name required");
    assert_eq!(
        err(raw_control(0x01, b"bad_name")),
        "Invalid data: Topic name 'bad_name' contains invalid characters. Only alphanumeric characters (a-z, A-Z, 0-9) and dashes (-) are allowed"
    );
    // Lossy UTF-8 (§6.4).
    assert_eq!(
        err(raw_control(0x01, b"a\xFFb")),
        "Invalid data: Topic name 'a\u{FFFD}b' contains invalid characters. Only alphanumeric characters (a-z, A-Z, 0-9) and dashes (-) are allowed"
    );
    assert!(err(raw_control(0x01, &[b'a'; 256])).starts_with("I/O error: "));
    assert_eq!(
        err(raw_control(0x06, &[0u8; 17])),
        "Invalid create topic payload"
    );
    let mut p = 10u16.to_le_bytes().to_vec();
    p.extend([b'a'; 16]);
    assert_eq!(err(raw_control(0x06, &p)), "Invalid payload length");
    assert_eq!(
        err(raw_control(0x06, &[0u8; 18])),
        "Invalid data: Topic name must not be empty"
    );
    // GetTopic / DeleteTopic: short payload ⇒ topic 0 (§6.7, §6.8).
    assert_eq!(err(raw_control(0x04, b"")), "Topic not found");
    assert_eq!(err(raw_control(0x04, &[1, 0])), "Topic not found");
    assert_eq!(
        err(raw_control(0x02, b"")),
        "Configuration error: Topic 0 not found"
    );
    assert_eq!(
        err(raw_control(0x02, &9u32.to_le_bytes())),
        "Configuration error: Topic 9 not found"
    );
    assert_eq!(
        err(raw_control(0x05, &[0u8; 19])),
        "Invalid set retention payload"
    );
    let mut p = 9u32.to_le_bytes().to_vec();
    p.extend([0u8; 16]);
    assert_eq!(
        err(raw_control(0x05, &p)),
        "Configuration error: Topic 9 not found"
    );
    assert_eq!(
        err(raw_control(0x10, b"")),
        "Fetch request payload required"
    );
    assert_eq!(
        err(raw_control(0x10, &[0u8; 15])),
        "Protocol error: Fetch request payload too small"
    );
    assert_eq!(err(raw_control(0x10, &[0u8; 16])), "Topic 0 not found");
    assert_eq!(
        err(raw_control(0x20, &[0u8; 23])),
        "Invalid subscribe payload"
    );
    let mut p = 9u32.to_le_bytes().to_vec();
    p.extend([0u8; 20]);
    assert_eq!(err(raw_control(0x20, &p)), "Topic not found");
    assert_eq!(
        err(raw_control(0x21, &[0u8; 11])),
        "Invalid unsubscribe payload"
    );
    assert_eq!(
        err(raw_control(0x22, &[0u8; 19])),
        "Invalid commit offset payload"
    );
    assert_eq!(
        err(raw_control(0x09, b"")),
        "Authentication handled at connection level"
    );
    for code in [0x00, 0x11, 0x12, 0x23, 0x24, 0x30, 0x80, 0x81, 0x99, 0xFF] {
        assert_eq!(
            err(raw_control(code, b"")),
            "Invalid client command",
            "code {code:#x}"
        );
    }
}

#[test]
fn topic_lifecycle_texts() {
    let (_s, mut c) = setup();
    create_events(&mut c);
    assert_eq!(
        c.roundtrip(&hex(CREATE_EVENTS)).error_text(),
        "Topic 'events' already exists"
    );
    let t2 = c.request(Request::CreateTopic { name: "b-2" });
    assert!(t2.json().contains(r#""id":2,"name":"b-2""#));
    // Trailing bytes are ignored (§6.1).
    let mut p = 2u32.to_le_bytes().to_vec();
    p.extend(b"junk");
    assert!(c
        .roundtrip(&raw_control(0x04, &p))
        .json()
        .contains(r#""id":2"#));
    let mut del = hex(GET_TOPIC_1);
    del[12] = 0x02;
    assert_eq!(c.roundtrip(&del).json(), r#"{"deleted":1}"#);
    assert_eq!(
        c.roundtrip(&hex(GET_TOPIC_1)).error_text(),
        "Topic not found"
    );
    assert_eq!(
        c.roundtrip(&del).error_text(),
        "Configuration error: Topic 1 not found"
    );
    // Ids are not reused.
    let t3 = c.request(Request::CreateTopic { name: "events" });
    assert!(t3.json().contains(r#""id":3,"#));
}

#[test]
fn authenticate_texts_7_11() {
    let s = TestServer::builder()
        .auth_tokens(["secret"])
        .start()
        .unwrap();
    let mut c = Client::connect(s.addr());
    let mut auth = |payload: &[u8]| match c.roundtrip(&raw_control(0x08, payload)).response() {
        Response::Authenticate { success, message } => (success, message.into_owned()),
        other => panic!("{other:?}"),
    };
    assert_eq!(auth(b""), (false, "No token provided".into()));
    assert_eq!(auth(b"\xFF"), (false, "Invalid token encoding".into()));
    assert_eq!(auth(b"wrong"), (false, "Invalid token".into()));
    assert_eq!(auth(b"secret"), (true, "Authenticated".into()));
}

#[test]
fn subscribe_rules_9() {
    let (_s, mut c) = setup();
    create_events(&mut c);
    let sub = |c: &mut Client, topic, offset| match c
        .request(Request::Subscribe(SubscribeRequest {
            topic_id: topic,
            start_offset: offset,
            max_batch_bytes: 0,
            consumer_id: 7,
        }))
        .response()
    {
        Response::SubscribeAck(a) => (a.consumer_id, a.start_offset),
        other => panic!("{other:?}"),
    };
    assert_eq!(sub(&mut c, 1, 0), (7, 0));
    assert_eq!(sub(&mut c, 1, u64::MAX), (7, u64::MAX));
    assert_eq!(sub(&mut c, 1, 12), (7, 12));
    // Topic 0 may be subscribed (§4.3).
    assert_eq!(sub(&mut c, 0, 3), (7, 3));
    // Commit has no topic validation; subscribe at 0 resumes from the commit.
    let r = c.request(Request::CommitOffset {
        topic_id: 1,
        consumer_id: 7,
        offset: 99,
    });
    assert!(matches!(r.response(), Response::CommitAck(a) if a.committed_offset == 99));
    let r = c.request(Request::CommitOffset {
        topic_id: 4242,
        consumer_id: 7,
        offset: 5,
    });
    assert!(matches!(r.response(), Response::CommitAck(_)));
    assert_eq!(sub(&mut c, 1, 0), (7, 99));
    // Unsubscribe answers an Ack (batch id = consumer id) even when not subscribed.
    let r = c.request(Request::Unsubscribe {
        topic_id: 3,
        consumer_id: 1234,
    });
    assert!(r.is_ack(1234));
}

#[test]
fn cluster_mode_texts() {
    let s = TestServer::builder().cluster_mode(true).start().unwrap();
    let mut c = Client::connect(s.addr());
    c.send(&ingest(1, 5, b"x"));
    assert_eq!(
        c.recv().error_text(),
        "FORWARD_FAILED: Unknown topic (metadata convergence)"
    );
    c.send(&hex(FETCH_1_0_65536));
    assert_eq!(c.read_raw(52), hex(CATCHING_UP_0));
    let a = create_events(&mut c).json();
    let b = create_events(&mut c).json();
    assert_eq!(a, b, "duplicate create is idempotent in a cluster");
    let r = c.roundtrip(&hex(CREATE_WITH_RETENTION)).json();
    assert!(r.contains(r#""id":1,"max_age_secs":86400,"max_bytes":1073741824,"#));
    let mut req = hex(LIST_TOPICS);
    req[12] = 0x07;
    assert_eq!(
        c.roundtrip(&req).json(),
        r#"{"current_term":1,"healthy_nodes":1,"is_leader":true,"leader_id":0,"node_count":1,"node_id":0,"peer_states":{},"quorum_available":true}"#
    );
}
