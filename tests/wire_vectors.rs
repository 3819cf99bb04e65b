//! Every byte-exact vector of docs/protocol.md §12, encoded and decoded.
//!
//! The hex below is copied from the document (which was checked against a running
//! server); if any byte of an encoder changes, these fail.

use lnc_uring::proto::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

const C: Checksum = Checksum::Ieee;

fn encode(req: Request<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    req.encode(C, &mut out).unwrap();
    out
}

fn decode_one(bytes: &[u8]) -> Frame<'_> {
    let (frame, used) = Frame::decode(bytes, C, MAX_PAYLOAD_LEN).unwrap();
    assert_eq!(used, bytes.len(), "one whole frame");
    frame
}

fn reply(r: Response<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    r.encode(C, &mut out);
    out
}

const KEEPALIVE: &str = "4C 41 4E 43 01 20 00 00 06 1E 9C 53 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00";

#[test]
fn v17_1_keepalive() {
    let v = hex(KEEPALIVE);
    assert_eq!(keepalive_frame(C).to_vec(), v);
    let f = decode_one(&v);
    assert_eq!(f.kind(), FrameKind::Keepalive);
    assert_eq!(
        f.header,
        Header {
            flags: Flags::KEEPALIVE,
            ..Header::default()
        }
    );
    // The spec's E3 A5 B4 5C is wrong under every CRC; CRC-32C gives 0B 8B A2 A3.
    assert_eq!(
        &keepalive_frame(Checksum::Castagnoli)[8..12],
        &[0x0B, 0x8B, 0xA2, 0xA3]
    );
}

const INGEST_RAW: &str = "4C 41 4E 43 01 04 00 00 3A F0 D8 6C 01 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00
04 00 00 00 0C 7E 7F D8 00 00 00 00 74 65 73 74";

#[test]
fn v17_2_ingest_raw_payload_topic_0() {
    let v = hex(INGEST_RAW);
    let mut out = Vec::new();
    encode_frame(C, ingest_header(1, 0, 1, 0), b"test", &mut out);
    assert_eq!(out, v);
    let f = decode_one(&v);
    assert_eq!(f.kind(), FrameKind::Ingest);
    assert_eq!(
        (f.header.batch_id, f.header.record_count, f.header.topic_id),
        (1, 1, 0)
    );
    assert_eq!(f.payload, b"test");
    // Same frame for topic 1 differs only in bytes 40..43.
    let mut t1 = Vec::new();
    encode_frame(C, ingest_header(1, 0, 1, 1), b"test", &mut t1);
    let diff: Vec<usize> = (0..v.len()).filter(|&i| v[i] != t1[i]).collect();
    assert_eq!(diff, [40]);
}

const INGEST_TLV: &str = "4C 41 4E 43 01 04 00 00 3A F0 D8 6C 01 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00
09 00 00 00 07 AF 03 8C 01 00 00 00 01 04 00 00
00 74 65 73 74";

#[test]
fn v17_3_ingest_tlv_built_in_place() {
    let v = hex(INGEST_TLV);
    let mut frame = vec![0u8; HEADER_LEN];
    encode_raw(&mut frame, b"test").unwrap();
    seal_frame(C, ingest_header(1, 0, 1, 1), &mut frame);
    assert_eq!(frame, v);
    let f = decode_one(&v);
    let recs: Vec<_> = RecordIter::new(f.payload)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recs, [Record::new(RecordType::RAW_DATA, b"test")]);
}

const ACK1: &str = "4C 41 4E 43 01 08 00 00 5E 09 C2 65 01 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00";

#[test]
fn v17_4_ack() {
    let v = hex(ACK1);
    assert_eq!(ack_frame(C, 1).to_vec(), v);
    let f = decode_one(&v);
    assert_eq!((f.kind(), f.header.batch_id), (FrameKind::Ack, 1));
}

#[test]
fn v17_5_create_topic_and_reply() {
    let v = hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 01 00 00 00
         00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
         06 00 00 00 4A 57 87 53 00 00 00 00 65 76 65 6E
         74 73");
    assert_eq!(encode(Request::CreateTopic { name: "events" }), v);
    let f = decode_one(&v);
    assert_eq!(f.kind(), FrameKind::Control(ControlCode::CREATE_TOPIC));
    assert_eq!(
        Request::parse(ControlCode::CREATE_TOPIC, f.payload).unwrap(),
        Request::CreateTopic { name: "events" }
    );

    let r = hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 80 00 00 00
         00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
         40 00 00 00 81 34 DE E0 00 00 00 00 7B 22 63 72
         65 61 74 65 64 5F 61 74 22 3A 31 37 30 30 30 30
         30 30 30 30 2C 22 69 64 22 3A 31 2C 22 6E 61 6D
         65 22 3A 22 65 76 65 6E 74 73 22 2C 22 74 6F 70
         69 63 5F 65 70 6F 63 68 22 3A 31 7D");
    let json = br#"{"created_at":1700000000,"id":1,"name":"events","topic_epoch":1}"#;
    assert_eq!(reply(Response::Topic(json)), r);
    let f = decode_one(&r);
    let Response::Topic(body) = Response::parse(&f).unwrap() else {
        panic!("not a topic response")
    };
    assert_eq!(
        TopicInfo::from_json(body).unwrap(),
        TopicInfo::new(1, "events", 1_700_000_000)
    );
}

/// Each control vector of §12.6: (request, its frame).
fn request_vectors() -> Vec<(Request<'static>, Vec<u8>)> {
    let ret = Retention {
        max_age_secs: 86_400,
        max_bytes: 1 << 30,
    };
    vec![
        (
            Request::CreateTopicWithRetention {
                name: "events",
                retention: ret,
            },
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 06 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 18 00 00 00 B7 B0 A6 64 00 00 00 00 06 00 65 76
                 65 6E 74 73 80 51 01 00 00 00 00 00 00 00 00 40
                 00 00 00 00"),
        ),
        (
            Request::ListTopics,
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 03 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00"),
        ),
        (
            Request::GetClusterStatus,
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 07 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00"),
        ),
        (
            Request::Fetch(FetchRequest {
                topic_id: 1,
                start_offset: 0,
                max_bytes: 65_536,
            }),
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 10 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 10 00 00 00 85 EB C8 5B 00 00 00 00 01 00 00 00
                 00 00 00 00 00 00 00 00 00 00 01 00"),
        ),
        (
            Request::Subscribe(SubscribeRequest {
                topic_id: 1,
                start_offset: 0,
                max_batch_bytes: 65_536,
                consumer_id: 42,
            }),
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 20 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 18 00 00 00 A7 BA 90 A5 00 00 00 00 01 00 00 00
                 00 00 00 00 00 00 00 00 00 00 01 00 2A 00 00 00
                 00 00 00 00"),
        ),
        (
            Request::Unsubscribe {
                topic_id: 1,
                consumer_id: 42,
            },
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 21 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 0C 00 00 00 9E F4 C6 88 00 00 00 00 01 00 00 00
                 2A 00 00 00 00 00 00 00"),
        ),
        (
            Request::CommitOffset {
                topic_id: 1,
                consumer_id: 42,
                offset: 9,
            },
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 22 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 14 00 00 00 B1 7A 71 96 00 00 00 00 01 00 00 00
                 2A 00 00 00 00 00 00 00 09 00 00 00 00 00 00 00"),
        ),
        (
            Request::SetRetention {
                topic_id: 1,
                retention: ret,
            },
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 05 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 14 00 00 00 DA CB D1 C4 00 00 00 00 01 00 00 00
                 80 51 01 00 00 00 00 00 00 00 00 40 00 00 00 00"),
        ),
        (
            Request::GetTopic { topic_id: 1 },
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 04 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 04 00 00 00 79 B8 F8 99 00 00 00 00 01 00 00 00"),
        ),
        (
            Request::DeleteTopic { topic_id: 1 },
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 02 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 04 00 00 00 79 B8 F8 99 00 00 00 00 01 00 00 00"),
        ),
        (
            Request::Authenticate { token: "secret" },
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 08 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 06 00 00 00 E5 E8 A2 5C 00 00 00 00 73 65 63 72
                 65 74"),
        ),
    ]
}

#[test]
fn v17_6_requests_encode_and_parse() {
    for (req, bytes) in request_vectors() {
        assert_eq!(encode(req), bytes, "{req:?}");
        let f = decode_one(&bytes);
        let FrameKind::Control(code) = f.kind() else {
            panic!("{req:?} not control")
        };
        assert_eq!(code, req.code());
        assert_eq!(Request::parse(code, f.payload).unwrap(), req);
    }
}

#[test]
fn v17_6_replies_encode_and_parse() {
    let data = hex("01 04 00 00 00 74 65 73 74");
    let cases: Vec<(Response<'_>, Vec<u8>)> = vec![
        (
            Response::Fetch(FetchResponse {
                next_offset: 9,
                record_count: 1,
                data: &data,
            }),
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 11 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 19 00 00 00 C7 EB 65 B6 00 00 00 00 09 00 00 00
                 00 00 00 00 09 00 00 00 01 00 00 00 01 04 00 00
                 00 74 65 73 74"),
        ),
        (
            Response::CatchingUp { server_offset: 0 },
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 12 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 08 00 00 00 69 DF 22 65 00 00 00 00 00 00 00 00
                 00 00 00 00"),
        ),
        (
            Response::Error("Unknown topic".into()),
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B FF 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 0D 00 00 00 3D 95 61 C4 00 00 00 00 55 6E 6B 6E
                 6F 77 6E 20 74 6F 70 69 63"),
        ),
        (
            Response::SubscribeAck(SubscribeAck {
                consumer_id: 42,
                start_offset: 0,
            }),
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 23 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 10 00 00 00 04 8A 37 0F 00 00 00 00 2A 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00"),
        ),
        (
            Response::Unsubscribed { consumer_id: 42 },
            hex("4C 41 4E 43 01 08 00 00 5E 09 C2 65 2A 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00"),
        ),
        (
            Response::CommitAck(CommitAck {
                consumer_id: 42,
                committed_offset: 9,
            }),
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 24 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 10 00 00 00 2F 91 78 10 00 00 00 00 2A 00 00 00
                 00 00 00 00 09 00 00 00 00 00 00 00"),
        ),
        (
            Response::Authenticate {
                success: true,
                message: "Authenticated".into(),
            },
            hex("4C 41 4E 43 01 40 00 00 26 D5 4B 1B 09 00 00 00
                 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                 0E 00 00 00 92 F8 61 A4 00 00 00 00 01 41 75 74
                 68 65 6E 74 69 63 61 74 65 64"),
        ),
    ];
    for (resp, bytes) in cases {
        assert_eq!(reply(resp.clone()), bytes, "{resp:?}");
        assert_eq!(Response::parse(&decode_one(&bytes)).unwrap(), resp);
    }
}

#[test]
fn v3_2_header_crc_per_flag() {
    let table = [
        (0x04, [0x3A, 0xF0, 0xD8, 0x6C], [0x05, 0xD4, 0x38, 0xDC]),
        (0x05, [0x0D, 0x9A, 0x1A, 0x6D], [0x7B, 0x46, 0x79, 0x79]),
        (0x08, [0x5E, 0x09, 0xC2, 0x65], [0xDA, 0x4E, 0xB7, 0x7A]),
        (0x10, [0x96, 0xFB, 0xF7, 0x77], [0x95, 0x0D, 0x44, 0x32]),
        (0x20, [0x06, 0x1E, 0x9C, 0x53], [0x0B, 0x8B, 0xA2, 0xA3]),
        (0x40, [0x26, 0xD5, 0x4B, 0x1B], [0xC6, 0xF0, 0x83, 0x85]),
    ];
    for (flags, ieee, castagnoli) in table {
        let f = Flags::from_bits(flags);
        assert_eq!(
            Header::header_crc(Checksum::Ieee, f).to_le_bytes(),
            ieee,
            "{flags:#x}"
        );
        assert_eq!(
            Header::header_crc(Checksum::Castagnoli, f).to_le_bytes(),
            castagnoli,
            "{flags:#x}"
        );
    }
}

#[test]
fn the_whole_conversation_through_the_streaming_decoder() {
    // Every server-sent vector back to back, fed one byte at a time.
    let mut stream = hex(KEEPALIVE);
    stream.extend(hex(ACK1));
    let data = hex("01 04 00 00 00 74 65 73 74");
    stream.extend(reply(Response::Fetch(FetchResponse {
        next_offset: 9,
        record_count: 1,
        data: &data,
    })));
    stream.extend(reply(Response::Error("Unknown topic".into())));
    let mut dec = FrameDecoder::new(C);
    let mut seen = Vec::new();
    for b in stream.chunks(1) {
        let mut frames = dec.feed(b);
        while let Some(f) = frames.next_frame() {
            let f = f.unwrap();
            seen.push((f.kind(), f.payload.len()));
        }
    }
    assert_eq!(
        seen,
        [
            (FrameKind::Keepalive, 0),
            (FrameKind::Ack, 0),
            (FrameKind::Control(ControlCode::FETCH_RESPONSE), 25),
            (FrameKind::Control(ControlCode::ERROR_RESPONSE), 13),
        ]
    );
    assert_eq!(dec.buffered(), 0);
}
