//! Property tests of the protocol core: round trips, random chunkings, random garbage.

use lnc_uring::proto::*;
use proptest::prelude::*;

fn checksum() -> impl Strategy<Value = Checksum> {
    prop_oneof![Just(Checksum::Ieee), Just(Checksum::Castagnoli)]
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u8>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(f, b, t, r, l, c, topic)| Header {
            flags: Flags::from_bits(f),
            batch_id: b,
            timestamp_ns: t,
            record_count: r,
            payload_length: l,
            payload_crc: c,
            topic_id: topic,
        })
}

/// A frame as (header fields that survive encoding, payload).
fn frame() -> impl Strategy<Value = (Header, Vec<u8>)> {
    (header(), prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(mut h, p)| {
        h.payload_length = p.len() as u32;
        (h, p)
    })
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9-]{1,40}"
}

fn retention() -> impl Strategy<Value = Retention> {
    (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Retention {
        max_age_secs: a,
        max_bytes: b,
    })
}

#[derive(Debug, Clone)]
enum OwnedRequest {
    Create(String),
    CreateRet(String, Retention),
    List,
    Get(u32),
    Delete(u32),
    SetRet(u32, Retention),
    Status,
    Auth(String),
    Fetch(FetchRequest),
    Sub(SubscribeRequest),
    Unsub(u32, u64),
    Commit(u32, u64, u64),
}

impl OwnedRequest {
    fn as_request(&self) -> Request<'_> {
        match self {
            OwnedRequest::Create(n) => Request::CreateTopic { name: n },
            OwnedRequest::CreateRet(n, r) => Request::CreateTopicWithRetention {
                name: n,
                retention: *r,
            },
            OwnedRequest::List => Request::ListTopics,
            OwnedRequest::Get(t) => Request::GetTopic { topic_id: *t },
            OwnedRequest::Delete(t) => Request::DeleteTopic { topic_id: *t },
            OwnedRequest::SetRet(t, r) => Request::SetRetention {
                topic_id: *t,
                retention: *r,
            },
            OwnedRequest::Status => Request::GetClusterStatus,
            OwnedRequest::Auth(t) => Request::Authenticate { token: t },
            OwnedRequest::Fetch(f) => Request::Fetch(*f),
            OwnedRequest::Sub(s) => Request::Subscribe(*s),
            OwnedRequest::Unsub(t, c) => Request::Unsubscribe {
                topic_id: *t,
                consumer_id: *c,
            },
            OwnedRequest::Commit(t, c, o) => Request::CommitOffset {
                topic_id: *t,
                consumer_id: *c,
                offset: *o,
            },
        }
    }
}

fn request() -> impl Strategy<Value = OwnedRequest> {
    prop_oneof![
        name().prop_map(OwnedRequest::Create),
        (name(), retention()).prop_map(|(n, r)| OwnedRequest::CreateRet(n, r)),
        Just(OwnedRequest::List),
        any::<u32>().prop_map(OwnedRequest::Get),
        any::<u32>().prop_map(OwnedRequest::Delete),
        (any::<u32>(), retention()).prop_map(|(t, r)| OwnedRequest::SetRet(t, r)),
        Just(OwnedRequest::Status),
        "[ -~]{1,64}".prop_map(OwnedRequest::Auth),
        (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(t, o, m)| OwnedRequest::Fetch(
            FetchRequest {
                topic_id: t,
                start_offset: o,
                max_bytes: m
            }
        )),
        (any::<u32>(), any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(t, o, m, c)| {
            OwnedRequest::Sub(SubscribeRequest {
                topic_id: t,
                start_offset: o,
                max_batch_bytes: m,
                consumer_id: c,
            })
        }),
        (any::<u32>(), any::<u64>()).prop_map(|(t, c)| OwnedRequest::Unsub(t, c)),
        (any::<u32>(), any::<u64>(), any::<u64>())
            .prop_map(|(t, c, o)| OwnedRequest::Commit(t, c, o)),
    ]
}

fn records() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    prop::collection::vec(
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..200)),
        0..20,
    )
}

/// Splits `data` at the given (sorted, deduplicated) cut points.
fn chunks<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut prev = 0;
    for p in points {
        out.push(&data[prev..p]);
        prev = p;
    }
    out.push(&data[prev..]);
    out
}

proptest! {
    #[test]
    fn header_roundtrip(h in header(), c in checksum()) {
        prop_assert_eq!(Header::decode(&h.to_bytes(c), c).unwrap(), h);
    }

    #[test]
    fn header_crc_detects_any_single_bit_flip_in_first_8_bytes(h in header(), bit in 0usize..64) {
        let mut b = h.to_bytes(Checksum::Ieee);
        b[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(Header::decode(&b, Checksum::Ieee).is_err());
    }

    #[test]
    fn control_request_roundtrip(r in request(), c in checksum()) {
        let req = r.as_request();
        let mut bytes = Vec::new();
        req.encode(c, &mut bytes).unwrap();
        let (f, used) = Frame::decode(&bytes, c, MAX_PAYLOAD_LEN).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(f.kind(), FrameKind::Control(req.code()));
        prop_assert_eq!(Request::parse(req.code(), f.payload).unwrap(), req);
    }

    #[test]
    fn tlv_batch_roundtrip(recs in records()) {
        let mut buf = Vec::new();
        for (t, v) in &recs {
            encode_record(&mut buf, RecordType(*t), &[v]).unwrap();
        }
        let back: Vec<(u8, Vec<u8>)> = RecordIter::new(&buf)
            .map(|r| r.map(|r| (r.record_type.0, r.value.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(&back, &recs);
        prop_assert_eq!(complete_prefix(&buf, MAX_VALUE_LEN).unwrap(), (buf.len(), recs.len()));
    }

    #[test]
    fn tlv_cut_anywhere_then_carry_loses_nothing(recs in records(), cut in any::<usize>()) {
        let mut buf = Vec::new();
        for (t, v) in &recs {
            encode_record(&mut buf, RecordType(*t), &[v]).unwrap();
        }
        let cut = cut % (buf.len() + 1);
        // First fetch: buf[..cut]; keep the incomplete tail and prepend it to the rest.
        let (done, n1) = complete_prefix(&buf[..cut], MAX_VALUE_LEN).unwrap();
        let mut carried = buf[done..cut].to_vec();
        carried.extend_from_slice(&buf[cut..]);
        let (rest, n2) = complete_prefix(&carried, MAX_VALUE_LEN).unwrap();
        prop_assert_eq!(rest, carried.len());
        prop_assert_eq!(n1 + n2, recs.len());
    }

    #[test]
    fn compressed_batch_roundtrip(recs in records()) {
        let mut inner = Vec::new();
        for (t, v) in &recs {
            // Compressed batches never nest.
            let t = if *t == RecordType::COMPRESSED_BATCH.0 { 1 } else { *t };
            encode_record(&mut inner, RecordType(t), &[v]).unwrap();
        }
        let mut payload = Vec::new();
        compress_records(&inner, &mut payload).unwrap();
        let mut scratch = Vec::new();
        let mut flat = Vec::new();
        for r in ExpandedRecords::new(&payload, &mut scratch) {
            r.unwrap().encode(&mut flat).unwrap();
        }
        prop_assert_eq!(flat, inner);
    }

    #[test]
    fn decoder_any_chunking_yields_the_same_frames(
        frames in prop::collection::vec(frame(), 1..12),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
        c in checksum(),
    ) {
        let mut stream = Vec::new();
        for (h, p) in &frames {
            encode_frame(c, *h, p, &mut stream);
        }
        let mut dec = FrameDecoder::new(c);
        let mut got = Vec::new();
        for chunk in chunks(&stream, &cuts) {
            let mut it = dec.feed(chunk);
            while let Some(f) = it.next_frame() {
                let f = f.unwrap();
                got.push((f.header, f.payload.to_vec()));
            }
        }
        let want: Vec<(Header, Vec<u8>)> = frames
            .iter()
            .map(|(h, p)| {
                let mut h = *h;
                h.payload_crc = if p.is_empty() { 0 } else { c.compute(p) };
                (h, p.clone())
            })
            .collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn decoder_never_panics_on_garbage(
        data in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        valid_prefix in any::<bool>(),
    ) {
        let mut stream = Vec::new();
        if valid_prefix {
            stream.extend_from_slice(&keepalive_frame(Checksum::Ieee));
            stream.extend_from_slice(b"LANC\x01");
        }
        stream.extend_from_slice(&data);
        let mut dec = FrameDecoder::with_max_payload(Checksum::Ieee, 1024);
        let mut errors = 0;
        for chunk in chunks(&stream, &cuts) {
            let mut it = dec.feed(chunk);
            while let Some(f) = it.next_frame() {
                if f.is_err() {
                    errors += 1;
                }
            }
        }
        prop_assert!(errors <= 1, "an error poisons the decoder");
        prop_assert!(dec.buffered() <= 44 + 1024);
    }

    #[test]
    fn tlv_iterator_never_panics_on_garbage(data in prop::collection::vec(any::<u8>(), 0..1000)) {
        let mut it = RecordIter::with_max_value(&data, 256);
        let mut n = 0;
        while let Some(r) = it.next() {
            n += 1;
            if r.is_err() {
                prop_assert!(it.next().is_none());
                break;
            }
        }
        prop_assert!(n <= data.len() / 5 + 1);
        let mut scratch = Vec::new();
        for r in ExpandedRecords::new(&data, &mut scratch).flatten() {
            let _ = (r.as_key_value(), r.as_timestamped(), r.as_key_timestamped());
        }
    }
}
