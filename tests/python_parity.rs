//! The 39 behaviours of the Python client's `test_protocol.py` (25) and `test_tlv.py`
//! (14), as inventoried in the published Python client's test suite, with IEEE CRC-32 values and with
//! "incomplete tail" reported where Python silently truncates (37).

use lnc_uring::proto::*;

const C: Checksum = Checksum::Ieee;

fn control_frame(req: Request<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    req.encode(C, &mut v).unwrap();
    v
}

fn decode(bytes: &[u8]) -> Frame<'_> {
    Frame::decode(bytes, C, MAX_PAYLOAD_LEN).unwrap().0
}

// ---- test_protocol.py: TestLwpHeader ----

#[test]
fn p01_header_size() {
    assert_eq!(HEADER_LEN, 44);
    assert_eq!(Header::default().to_bytes(C).len(), 44);
}

#[test]
fn p02_roundtrip_defaults() {
    let bytes = Header::default().to_bytes(C);
    assert_eq!(bytes[4], PROTOCOL_VERSION);
    assert_eq!(PROTOCOL_VERSION, 1);
    let h = Header::decode(&bytes, C).unwrap();
    assert_eq!((h.flags, h.batch_id, h.topic_id), (Flags::NONE, 0, 0));
}

#[test]
fn p03_roundtrip_ingest() {
    let h = Header {
        flags: Flags::BATCH,
        batch_id: 42,
        timestamp_ns: 1_234_567_890,
        record_count: 10,
        payload_length: 4096,
        payload_crc: 0xDEAD_BEEF,
        topic_id: 3,
    };
    assert_eq!(Header::decode(&h.to_bytes(C), C).unwrap(), h);
}

#[test]
fn p04_magic_bytes() {
    assert_eq!(&Header::default().to_bytes(C)[0..4], b"LANC");
}

#[test]
fn p05_header_crc_validation() {
    let mut k = keepalive_frame(C);
    k[5] ^= 0x01;
    let e = Header::decode(&k, C).unwrap_err();
    assert!(matches!(e, FrameError::HeaderCrc { .. }));
    assert!(e.to_string().contains("CRC mismatch"), "{e}");
}

#[test]
fn p06_invalid_magic_checked_before_crc() {
    let mut b = vec![0u8; 44];
    b[..4].copy_from_slice(b"XYZW");
    let e = Header::decode(&b, C).unwrap_err();
    assert_eq!(e, FrameError::BadMagic { found: *b"XYZW" });
    assert!(e.to_string().contains("invalid magic"), "{e}");
}

#[test]
fn p07_buffer_too_small() {
    let e = Header::decode(&[0u8; 10], C).unwrap_err();
    assert_eq!(
        e,
        FrameError::Truncated {
            needed: 44,
            available: 10
        }
    );
    assert!(e.to_string().contains("buffer too small"));
}

#[test]
fn p08_flag_properties() {
    let f = Flags::BATCH | Flags::COMPRESSED;
    assert!(f.is_batch() && f.is_compressed());
    assert!(!f.is_ack() && !f.is_keepalive() && !f.is_control());
    let list = decode(&control_frame(Request::ListTopics)).header;
    assert!(list.flags.is_control());
    assert_eq!(
        FrameKind::of(&list),
        FrameKind::Control(ControlCode::LIST_TOPICS)
    );
}

// ---- TestKeepaliveFrame ----

#[test]
fn p09_keepalive_frame_structure() {
    let k = keepalive_frame(C);
    assert_eq!(k.len(), 44);
    let h = decode(&k).header;
    assert!(h.flags.is_keepalive());
    assert_eq!((h.batch_id, h.payload_length), (0, 0));
}

#[test]
fn p10_keepalive_crc_is_crc32_of_first_8_bytes() {
    let k = keepalive_frame(C);
    let crc = u32::from_le_bytes(k[8..12].try_into().unwrap());
    assert_eq!(crc, crc32fast::hash(&k[..8]));
    assert_eq!(&k[8..12], &[0x06, 0x1E, 0x9C, 0x53]);
}

// ---- TestIngestFrame ----

#[test]
fn p11_ingest_frame_structure() {
    let mut out = Vec::new();
    encode_frame(C, ingest_header(1, 0, 1, 5), b"hello world", &mut out);
    let f = decode(&out);
    assert!(f.header.flags.is_batch());
    assert_eq!(f.header.batch_id, 1);
    assert_eq!(f.header.record_count, 1);
    assert_eq!(f.header.payload_length, 11);
    assert_eq!(f.header.topic_id, 5);
    assert_eq!(f.header.payload_crc, crc32fast::hash(b"hello world"));
    assert_eq!(f.payload, b"hello world");
}

#[test]
fn p12_compressed_flag() {
    // Our producer never sets 0x01 (the server ignores it), but the header carries it.
    let mut h = ingest_header(1, 0, 1, 5);
    h.flags |= Flags::COMPRESSED;
    let bytes = h.to_bytes(C);
    assert_eq!(bytes[5], 0x05);
    assert_eq!(&bytes[8..12], &[0x0D, 0x9A, 0x1A, 0x6D]);
}

// ---- TestControlFrame ----

#[test]
fn p13_create_topic() {
    let bytes = control_frame(Request::CreateTopic { name: "my-events" });
    let f = decode(&bytes);
    assert!(f.header.flags.is_control());
    assert_eq!(f.header.batch_id, 1);
    assert_eq!(f.payload, b"my-events");
    assert_eq!(f.header.payload_length, 9);
}

#[test]
fn p14_list_topics_no_payload() {
    let f = decode(&control_frame(Request::ListTopics)).header;
    assert_eq!((f.payload_length, f.payload_crc), (0, 0));
}

// ---- TestControlPayloads ----

fn payload(req: Request<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    req.encode_payload(&mut v).unwrap();
    v
}

#[test]
fn p15_fetch_payload() {
    let p = payload(Request::Fetch(FetchRequest {
        topic_id: 3,
        start_offset: 1000,
        max_bytes: 65536,
    }));
    let mut want = Vec::new();
    want.extend(3u32.to_le_bytes());
    want.extend(1000u64.to_le_bytes());
    want.extend(65536u32.to_le_bytes());
    assert_eq!(p, want);
}

#[test]
fn p16_subscribe_payload() {
    let p = payload(Request::Subscribe(SubscribeRequest {
        topic_id: 1,
        start_offset: 2,
        max_batch_bytes: 3,
        consumer_id: 4,
    }));
    assert_eq!(p.len(), 24);
}

#[test]
fn p17_unsubscribe_payload() {
    assert_eq!(
        payload(Request::Unsubscribe {
            topic_id: 1,
            consumer_id: 2
        })
        .len(),
        12
    );
}

#[test]
fn p18_commit_offset_payload() {
    assert_eq!(
        payload(Request::CommitOffset {
            topic_id: 1,
            consumer_id: 2,
            offset: 3
        })
        .len(),
        20
    );
}

#[test]
fn p19_set_retention_payload() {
    let p = payload(Request::SetRetention {
        topic_id: 1,
        retention: Retention {
            max_age_secs: 86400,
            max_bytes: 1_073_741_824,
        },
    });
    let mut want = Vec::new();
    want.extend(1u32.to_le_bytes());
    want.extend(86400u64.to_le_bytes());
    want.extend(1_073_741_824u64.to_le_bytes());
    assert_eq!(p, want);
}

#[test]
fn p20_create_topic_with_retention_u16_name_length() {
    let p = payload(Request::CreateTopicWithRetention {
        name: "events",
        retention: Retention {
            max_age_secs: 604_800,
            max_bytes: 0,
        },
    });
    assert_eq!(&p[..2], &6u16.to_le_bytes());
    assert_eq!(&p[2..8], b"events");
    assert_eq!(&p[8..16], &604_800u64.to_le_bytes());
    assert_eq!(&p[16..24], &0u64.to_le_bytes());
}

fn fetch_reply(next: u64, count: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Response::Fetch(FetchResponse {
        next_offset: next,
        record_count: count,
        data,
    })
    .encode(C, &mut out);
    out
}

#[test]
fn p21_parse_fetch_response_16_byte_prefix() {
    let bytes = fetch_reply(200, 3, b"record data here");
    assert_eq!(
        &bytes[44 + 8..44 + 12],
        &16u32.to_le_bytes(),
        "bytes_returned = len(data)"
    );
    let Response::Fetch(f) = Response::parse(&decode(&bytes)).unwrap() else {
        panic!()
    };
    assert_eq!(
        (f.next_offset, f.record_count, f.data),
        (200, 3, &b"record data here"[..])
    );
}

#[test]
fn p22_parse_fetch_response_basic() {
    let bytes = fetch_reply(300, 1, b"abc");
    let Response::Fetch(f) = Response::parse(&decode(&bytes)).unwrap() else {
        panic!()
    };
    assert_eq!((f.next_offset, f.data), (300, &b"abc"[..]));
}

// ---- TestCrc32Vectors ----

#[test]
fn p23_crc_empty() {
    assert_eq!(C.compute(b""), 0);
}

#[test]
fn p24_crc_single_char() {
    assert_eq!(C.compute(b"a"), 0xE8B7_BE43);
}

#[test]
fn p25_crc_hello() {
    assert_eq!(C.compute(b"hello"), 0x3610_A686);
}

// ---- test_tlv.py: TestTlvRecord ----

fn one(bytes: &[u8]) -> Record<'_> {
    let mut it = RecordIter::new(bytes);
    let r = it.next().unwrap().unwrap();
    assert!(it.next().is_none());
    r
}

#[test]
fn t26_raw_record() {
    let mut b = Vec::new();
    encode_raw(&mut b, b"hello").unwrap();
    let r = one(&b);
    assert_eq!(
        (r.record_type, r.value, r.encoded_len()),
        (RecordType::RAW_DATA, &b"hello"[..], 10)
    );
}

#[test]
fn t27_json_record() {
    let mut b = Vec::new();
    let v = br#"{"key": "value"}"#;
    encode_record(&mut b, RecordType::JSON, &[v]).unwrap();
    let r = one(&b);
    assert_eq!((r.record_type.0, r.value), (0x02, &v[..]));
}

#[test]
fn t28_null_record() {
    let mut b = Vec::new();
    encode_null(&mut b);
    let r = one(&b);
    assert_eq!(
        (r.record_type.0, r.value.len(), r.encoded_len()),
        (0xFF, 0, 5)
    );
}

#[test]
fn t29_key_value_record() {
    let mut b = Vec::new();
    encode_key_value(&mut b, b"mykey", b"myvalue").unwrap();
    let r = one(&b);
    assert_eq!(r.record_type.0, 0x10);
    assert_eq!(&r.value[..2], &5u16.to_le_bytes());
    assert_eq!(&r.value[2..7], b"mykey");
    assert_eq!(r.as_key_value().unwrap(), (&b"mykey"[..], &b"myvalue"[..]));
}

#[test]
fn t30_timestamped_record() {
    let ts = 1_706_918_400_000_000_000u64;
    let mut b = Vec::new();
    encode_timestamped(&mut b, ts, b"event data").unwrap();
    let r = one(&b);
    assert_eq!(r.record_type.0, 0x11);
    assert_eq!(&r.value[..8], &ts.to_le_bytes());
    assert_eq!(r.as_timestamped().unwrap(), (ts, &b"event data"[..]));
}

#[test]
fn t31_encode_single() {
    let mut b = Vec::new();
    encode_raw(&mut b, b"test").unwrap();
    assert_eq!(b, [0x01, 4, 0, 0, 0, b't', b'e', b's', b't']);
}

// ---- TestEncodeDecodeRoundtrip ----

#[test]
fn t32_spec_example() {
    let mut b = Vec::new();
    encode_raw(&mut b, b"hello").unwrap();
    encode_raw(&mut b, b"world").unwrap();
    assert_eq!(
        b,
        [
            0x01, 0x05, 0x00, 0x00, 0x00, 0x68, 0x65, 0x6C, 0x6C, 0x6F, 0x01, 0x05, 0x00, 0x00,
            0x00, 0x77, 0x6F, 0x72, 0x6C, 0x64
        ]
    );
}

#[test]
fn t33_roundtrip_single() {
    let mut b = Vec::new();
    encode_record(&mut b, RecordType::MSGPACK, &[b"\x81\xa1a\x01"]).unwrap();
    assert_eq!(one(&b), Record::new(RecordType::MSGPACK, b"\x81\xa1a\x01"));
}

#[test]
fn t34_roundtrip_multiple() {
    let mut b = Vec::new();
    encode_raw(&mut b, b"first").unwrap();
    encode_record(&mut b, RecordType::JSON, &[br#"{"n":1}"#]).unwrap();
    encode_key_value(&mut b, b"k", b"v").unwrap();
    encode_null(&mut b);
    let recs: Vec<Record<'_>> = RecordIter::new(&b).collect::<Result<_, _>>().unwrap();
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[0], Record::new(RecordType::RAW_DATA, b"first"));
    assert_eq!(recs[1], Record::new(RecordType::JSON, br#"{"n":1}"#));
    assert_eq!(recs[2].as_key_value().unwrap(), (&b"k"[..], &b"v"[..]));
    assert_eq!(recs[3], Record::new(RecordType::NULL, b""));
}

#[test]
fn t35_roundtrip_large() {
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut b = Vec::new();
    encode_raw(&mut b, &big).unwrap();
    assert_eq!(one(&b).value, &big[..]);
}

#[test]
fn t36_decode_with_expected_count() {
    let mut b = Vec::new();
    for v in [b"a", b"b", b"c"] {
        encode_raw(&mut b, v).unwrap();
    }
    let two: Vec<_> = RecordIter::new(&b)
        .take(2)
        .map(|r| r.unwrap().value)
        .collect();
    assert_eq!(two, [b"a", b"b"]);
}

#[test]
fn t37_decode_truncated_reports_incomplete_tail() {
    let mut b = Vec::new();
    encode_raw(&mut b, b"hello").unwrap();
    let cut = &b[..b.len() - 1];
    let mut it = RecordIter::new(cut);
    assert_eq!(
        it.next(),
        Some(Err(TlvError::Incomplete {
            offset: 0,
            needed: 10,
            available: 9
        }))
    );
    assert_eq!(it.next(), None);
    assert_eq!(it.remainder(), cut, "the tail is kept for the next fetch");
    assert_eq!(complete_prefix(cut, MAX_VALUE_LEN).unwrap(), (0, 0));
}

#[test]
fn t38_empty_payload() {
    assert!(RecordIter::new(b"").next().is_none());
}

#[test]
fn t39_contiguous_packing() {
    let mut b = Vec::new();
    encode_raw(&mut b, b"ab").unwrap();
    encode_raw(&mut b, b"cde").unwrap();
    assert_eq!(b.len(), 15);
    assert_eq!(&b[7..], &[0x01, 3, 0, 0, 0, b'c', b'd', b'e']);
}
