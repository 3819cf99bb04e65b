//! Micro-benchmarks of the protocol core: header encode/decode, both CRCs, TLV encode
//! and iterate, the LZ4 compressed batch, and the frame decoder on a mixed stream.
//!
//! Run: `cargo bench --bench proto`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lnc_uring::proto::*;

fn header(c: &mut Criterion) {
    let h = ingest_header(42, 1_700_000_000_000_000_000, 64, 7);
    let mut g = c.benchmark_group("header");
    g.throughput(Throughput::Elements(1));
    for ck in [Checksum::Ieee, Checksum::Castagnoli] {
        g.bench_function(BenchmarkId::new("encode", ck), |b| {
            let mut out = [0u8; HEADER_LEN];
            b.iter(|| black_box(h).encode(ck, &mut out))
        });
        let bytes = h.to_bytes(ck);
        g.bench_function(BenchmarkId::new("decode", ck), |b| {
            b.iter(|| Header::decode(black_box(&bytes), ck).unwrap())
        });
    }
    g.finish();
}

fn crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc");
    for size in [44usize, 1024, 64 * 1024, 1024 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        for ck in [Checksum::Ieee, Checksum::Castagnoli] {
            g.bench_with_input(BenchmarkId::new(ck.name(), size), &data, |b, d| {
                b.iter(|| ck.compute(black_box(d)))
            });
        }
    }
    g.finish();
}

fn tlv(c: &mut Criterion) {
    let value = vec![0xABu8; 100];
    let mut g = c.benchmark_group("tlv");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("encode_1000x100B", |b| {
        let mut buf = Vec::with_capacity(1000 * 105);
        b.iter(|| {
            buf.clear();
            for _ in 0..1000 {
                encode_raw(&mut buf, black_box(&value)).unwrap();
            }
        })
    });
    let mut buf = Vec::new();
    for _ in 0..1000 {
        encode_raw(&mut buf, &value).unwrap();
    }
    g.bench_function("iterate_1000x100B", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for r in RecordIter::new(black_box(&buf)) {
                n += r.unwrap().value.len();
            }
            n
        })
    });
    g.bench_function("complete_prefix_1000x100B", |b| {
        b.iter(|| complete_prefix(black_box(&buf), MAX_VALUE_LEN).unwrap())
    });
    g.finish();
}

fn lz4(c: &mut Criterion) {
    // JSON-like market events, about 64 KiB of records.
    let mut records = Vec::new();
    let mut i = 0u64;
    while records.len() < 64 * 1024 {
        let v = format!(
            r#"{{"seq":{i},"sym":"ABC{}","px":{}.{},"qty":{},"side":"{}"}}"#,
            i % 50,
            100 + i % 17,
            i % 100,
            i % 1000,
            if i.is_multiple_of(2) { "buy" } else { "sell" }
        );
        encode_record(&mut records, RecordType::JSON, &[v.as_bytes()]).unwrap();
        i += 1;
    }
    let mut g = c.benchmark_group("lz4_batch");
    g.throughput(Throughput::Bytes(records.len() as u64));
    g.bench_function("compress_64KiB", |b| {
        let mut out = Vec::with_capacity(records.len());
        b.iter(|| {
            out.clear();
            compress_records(black_box(&records), &mut out).unwrap()
        })
    });
    let mut compressed = Vec::new();
    compress_records(&records, &mut compressed).unwrap();
    g.bench_function("expand_and_iterate_64KiB", |b| {
        let mut scratch = Vec::with_capacity(records.len());
        b.iter(|| ExpandedRecords::new(black_box(&compressed), &mut scratch).count())
    });
    g.finish();
}

fn decoder(c: &mut Criterion) {
    // A mixed stream: ACKs, keepalives, fetch replies of 4 KiB, errors.
    let ck = Checksum::Ieee;
    let data = vec![7u8; 4096];
    let mut stream = Vec::new();
    let mut frames = 0u64;
    for i in 0..256u64 {
        stream.extend_from_slice(&ack_frame(ck, i));
        if i % 8 == 0 {
            stream.extend_from_slice(&keepalive_frame(ck));
            frames += 1;
        }
        if i % 4 == 0 {
            Response::Fetch(FetchResponse {
                next_offset: i,
                record_count: 1,
                data: &data,
            })
            .encode(ck, &mut stream);
            frames += 1;
        }
        if i % 64 == 0 {
            Response::Error("Unknown topic".into()).encode(ck, &mut stream);
            frames += 1;
        }
        frames += 1;
    }
    let mut g = c.benchmark_group("frame_decoder");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    for chunk in [1500usize, 64 * 1024] {
        g.bench_with_input(
            BenchmarkId::new("mixed_stream_chunk", chunk),
            &chunk,
            |b, &chunk| {
                let mut dec = FrameDecoder::new(ck);
                b.iter(|| {
                    let mut n = 0u64;
                    for piece in stream.chunks(chunk) {
                        let mut it = dec.feed(piece);
                        while let Some(f) = it.next_frame() {
                            black_box(f.unwrap());
                            n += 1;
                        }
                    }
                    assert_eq!(n, frames);
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, header, crc, tlv, lz4, decoder);
criterion_main!(benches);
