//! Bad input gives typed errors, never panics, and never allocates for an oversize frame.

use lnc_uring::proto::*;

const C: Checksum = Checksum::Ieee;

fn first_error(stream: &[u8], max_payload: u32) -> (Option<FrameError>, usize) {
    let mut dec = FrameDecoder::with_max_payload(C, max_payload);
    let mut frames_ok = 0;
    let mut it = dec.feed(stream);
    while let Some(f) = it.next_frame() {
        match f {
            Ok(_) => frames_ok += 1,
            Err(e) => return (Some(e), frames_ok),
        }
    }
    (None, frames_ok)
}

fn good_ingest() -> Vec<u8> {
    let mut v = Vec::new();
    encode_frame(
        C,
        ingest_header(1, 0, 1, 1),
        b"\x01\x04\x00\x00\x00test",
        &mut v,
    );
    v
}

#[test]
fn each_validation_step_in_the_servers_order() {
    // Oversize is checked first, before magic (docs/protocol.md §2.4 row 1).
    let mut f = good_ingest();
    f[..4].copy_from_slice(b"XXXX");
    f[32..36].copy_from_slice(&(MAX_PAYLOAD_LEN + 1).to_le_bytes());
    assert!(matches!(
        first_error(&f, MAX_PAYLOAD_LEN).0,
        Some(FrameError::PayloadTooLarge { length, max }) if length == MAX_PAYLOAD_LEN + 1 && max == MAX_PAYLOAD_LEN
    ));

    let mut f = good_ingest();
    f[0] = b'l';
    assert!(matches!(
        first_error(&f, MAX_PAYLOAD_LEN).0,
        Some(FrameError::BadMagic { .. })
    ));

    let mut f = good_ingest();
    f[4] = 2;
    assert_eq!(
        first_error(&f, MAX_PAYLOAD_LEN).0,
        Some(FrameError::BadVersion { found: 2 })
    );

    let mut f = good_ingest();
    f[6] = 1; // reserved byte: not validated, but inside the header CRC
    assert!(matches!(
        first_error(&f, MAX_PAYLOAD_LEN).0,
        Some(FrameError::HeaderCrc { .. })
    ));

    let mut f = good_ingest();
    *f.last_mut().unwrap() ^= 0xFF;
    assert!(matches!(
        first_error(&f, MAX_PAYLOAD_LEN).0,
        Some(FrameError::PayloadCrc { .. })
    ));

    // Exactly the limit is allowed.
    let mut f = vec![0u8; HEADER_LEN];
    f.extend(std::iter::repeat_n(7u8, 100));
    seal_frame(C, ingest_header(1, 0, 1, 1), &mut f);
    assert_eq!(first_error(&f, 100), (None, 1));
    assert!(matches!(
        first_error(&f, 99).0,
        Some(FrameError::PayloadTooLarge { .. })
    ));
}

#[test]
fn oversize_length_rejected_from_the_header_alone() {
    // A header claiming 4 GiB - 1 arrives; nothing is buffered for its payload.
    let mut h = ingest_header(1, 0, 1, 1).to_bytes(C);
    h[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut dec = FrameDecoder::new(C);
    // Split the header so it goes through the carry path too.
    assert!(dec.feed(&h[..30]).next_frame().is_none());
    assert_eq!(dec.buffered(), 30);
    let mut it = dec.feed(&h[30..]);
    assert!(matches!(
        it.next_frame(),
        Some(Err(FrameError::PayloadTooLarge { .. }))
    ));
    drop(it);
    assert!(dec.is_poisoned());
    assert_eq!(dec.buffered(), 0);
}

#[test]
fn payload_crc_zero_length_is_not_checked() {
    // The server checks the payload CRC only when there is a payload.
    let mut h = Header {
        flags: Flags::CONTROL,
        batch_id: 3,
        ..Header::default()
    }
    .to_bytes(C);
    h[36..40].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
    assert_eq!(first_error(&h, MAX_PAYLOAD_LEN), (None, 1));
}

#[test]
fn poisoned_decoder_yields_nothing_more() {
    let mut bad = good_ingest();
    bad[0] = 0;
    let mut dec = FrameDecoder::new(C);
    {
        let mut it = dec.feed(&bad);
        assert!(it.next_frame().unwrap().is_err());
        assert!(it.next_frame().is_none());
    }
    assert!(dec.feed(&good_ingest()).next_frame().is_none());
    dec.reset();
    assert!(dec.feed(&good_ingest()).next_frame().unwrap().is_ok());
}

#[test]
fn stopping_early_keeps_the_rest() {
    let mut stream = good_ingest();
    stream.extend(keepalive_frame(C));
    stream.extend(ack_frame(C, 9));
    let mut dec = FrameDecoder::new(C);
    {
        let mut it = dec.feed(&stream);
        assert_eq!(it.next_frame().unwrap().unwrap().kind(), FrameKind::Ingest);
        // Drop the iterator with two frames unread.
    }
    assert_eq!(dec.buffered(), 88);
    let mut kinds = Vec::new();
    let mut it = dec.feed(&[]);
    while let Some(f) = it.next_frame() {
        kinds.push(f.unwrap().kind());
    }
    assert_eq!(kinds, [FrameKind::Keepalive, FrameKind::Ack]);
}

#[test]
fn frame_kind_priority_matches_the_server() {
    let k = |flags: u8, batch: u64, len: u32| {
        FrameKind::of(&Header {
            flags: Flags::from_bits(flags),
            batch_id: batch,
            payload_length: len,
            ..Header::default()
        })
    };
    assert_eq!(
        k(0x40 | 0x20 | 0x08, 0x1_03, 0),
        FrameKind::Control(ControlCode::LIST_TOPICS)
    );
    assert_eq!(k(0x20 | 0x08, 0, 0), FrameKind::Keepalive);
    assert_eq!(k(0x08 | 0x10, 0, 0), FrameKind::Ack);
    assert_eq!(k(0x10 | 0x04, 0, 0), FrameKind::Backpressure);
    assert_eq!(k(0x04, 0, 0), FrameKind::Ingest);
    assert_eq!(k(0x01, 0, 5), FrameKind::Ingest);
    assert_eq!(k(0x01, 0, 0), FrameKind::Unknown);
    assert_eq!(k(0x80, 0, 0), FrameKind::Unknown);
    // Unknown control codes are kept.
    assert_eq!(k(0x40, 0x99, 0), FrameKind::Control(ControlCode(0x99)));
}

#[test]
fn short_replies_are_typed_errors() {
    for (code, n) in [
        (ControlCode::FETCH_RESPONSE, 15),
        (ControlCode::CATCHING_UP, 7),
        (ControlCode::SUBSCRIBE_ACK, 15),
        (ControlCode::COMMIT_ACK, 15),
        (ControlCode::AUTHENTICATE_RESPONSE, 0),
    ] {
        let mut v = Vec::new();
        encode_frame(C, control_header(code), &vec![0u8; n], &mut v);
        let (f, _) = Frame::decode(&v, C, MAX_PAYLOAD_LEN).unwrap();
        assert!(
            matches!(Response::parse(&f), Err(PayloadError::TooShort { .. })),
            "{code:?}"
        );
    }
    // bytes_returned disagreeing with the data is an error, not a panic.
    let mut p = vec![0u8; 16];
    p[8..12].copy_from_slice(&100u32.to_le_bytes());
    let mut v = Vec::new();
    encode_frame(C, control_header(ControlCode::FETCH_RESPONSE), &p, &mut v);
    let (f, _) = Frame::decode(&v, C, MAX_PAYLOAD_LEN).unwrap();
    assert!(matches!(
        Response::parse(&f),
        Err(PayloadError::Invalid { .. })
    ));
}

#[test]
fn short_requests_are_typed_errors() {
    for (code, n) in [
        (ControlCode::FETCH, 15),
        (ControlCode::SUBSCRIBE, 23),
        (ControlCode::UNSUBSCRIBE, 11),
        (ControlCode::COMMIT_OFFSET, 19),
        (ControlCode::SET_RETENTION, 19),
        (ControlCode::GET_TOPIC, 3),
        (ControlCode::CREATE_TOPIC_WITH_RETENTION, 1),
    ] {
        assert!(
            matches!(
                Request::parse(code, &vec![0u8; n]),
                Err(PayloadError::TooShort { .. })
            ),
            "{code:?}"
        );
    }
    // A name length running past the payload.
    let mut p = 10u16.to_le_bytes().to_vec();
    p.extend_from_slice(b"abc");
    assert!(Request::parse(ControlCode::CREATE_TOPIC_WITH_RETENTION, &p).is_err());
    assert!(Request::parse(ControlCode::CREATE_TOPIC, &[0xFF, 0xFE]).is_err());
    assert!(Request::parse(ControlCode::TOPIC_RESPONSE, &[]).is_err());
}

#[test]
fn bad_json_replies_are_typed_errors() {
    assert!(matches!(
        TopicInfo::from_json(b"not json"),
        Err(PayloadError::Json { .. })
    ));
    assert!(matches!(
        parse_topic_list(br#"{"topics":5}"#),
        Err(PayloadError::Json { .. })
    ));
    assert!(ClusterStatus::from_json(br#"{"node_id":"x"}"#).is_err());
    // Missing keys default; big u64 values are exact.
    let t = TopicInfo::from_json(br#"{"id":3,"max_bytes":18446744073709551615,"max_age_secs":1}"#)
        .unwrap();
    assert_eq!(t.retention().unwrap().max_bytes, u64::MAX);
}

#[test]
fn oversize_values_and_bad_typed_records() {
    let mut out = Vec::new();
    let big = vec![0u8; MAX_VALUE_LEN + 1];
    assert!(matches!(
        encode_raw(&mut out, &big),
        Err(TlvError::ValueTooLarge { .. })
    ));
    assert!(out.is_empty(), "nothing written on failure");
    let key = vec![0u8; 70_000];
    assert!(encode_key_value(&mut out, &key, b"v").is_err());

    // A header declaring 16 MiB + 1 is rejected before looking for the value.
    let mut hdr = vec![0x01];
    hdr.extend(((MAX_VALUE_LEN + 1) as u32).to_le_bytes());
    assert!(matches!(
        RecordIter::new(&hdr).next(),
        Some(Err(TlvError::ValueTooLarge { .. }))
    ));
    assert!(complete_prefix(&hdr, MAX_VALUE_LEN).is_err());

    let r = Record::new(RecordType::KEY_VALUE, &[5, 0, b'a']);
    assert!(matches!(r.as_key_value(), Err(TlvError::Malformed { .. })));
    let r = Record::new(RecordType::TIMESTAMPED, &[1, 2, 3]);
    assert!(r.as_timestamped().is_err());
    let r = Record::new(RecordType::KEY_TIMESTAMPED, &[0; 9]);
    assert!(r.as_key_timestamped().is_err());
    let mut ok = Vec::new();
    encode_key_timestamped(&mut ok, 77, b"k", b"value").unwrap();
    let rec = RecordIter::new(&ok).next().unwrap().unwrap();
    assert_eq!(
        rec.as_key_timestamped().unwrap(),
        (77, &b"k"[..], &b"value"[..])
    );
}

#[test]
fn corrupt_compressed_batches_are_errors_after_the_good_records() {
    let mut payload = Vec::new();
    encode_raw(&mut payload, b"before").unwrap();
    // Unknown codec.
    encode_record(
        &mut payload,
        RecordType::COMPRESSED_BATCH,
        &[&[9, 0, 0, 0, 0]],
    )
    .unwrap();
    encode_raw(&mut payload, b"after").unwrap();
    let mut scratch = Vec::new();
    let got: Vec<_> = ExpandedRecords::new(&payload, &mut scratch).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].as_ref().unwrap().value, b"before");
    assert!(matches!(
        got[1],
        Err(TlvError::Compression { offset: 11, .. })
    ));

    // Declared length larger than the limit; garbage block; nested batch.
    let mut len = vec![1];
    len.extend(((MAX_VALUE_LEN + 1) as u32).to_le_bytes());
    let mut inner = Vec::new();
    encode_raw(&mut inner, &[b'x'; 500]).unwrap();
    let mut once = Vec::new();
    assert!(compress_records(&inner, &mut once).unwrap());
    let mut nested = vec![1];
    nested.extend((once.len() as u32).to_le_bytes());
    nested.extend(lz4_flex::block::compress(&once));
    for value in [len, vec![1, 10, 0, 0, 0, 0xFF, 0xFF], nested] {
        let mut p = Vec::new();
        encode_record(&mut p, RecordType::COMPRESSED_BATCH, &[&value]).unwrap();
        let mut scratch = Vec::new();
        let r: Vec<_> = ExpandedRecords::new(&p, &mut scratch).collect();
        assert!(
            matches!(r.as_slice(), [Err(TlvError::Compression { .. })]),
            "{r:?}"
        );
    }
}

#[test]
fn incompressible_data_is_written_plain() {
    let mut inner = Vec::new();
    encode_raw(&mut inner, &[1, 2, 3]).unwrap();
    let mut out = Vec::new();
    assert!(!compress_records(&inner, &mut out).unwrap());
    assert_eq!(out, inner);
}
