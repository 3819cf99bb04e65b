//! The fair floor: plain blocking `std::net` clients that no client library can beat by
//! much. Shared by `benches/cost.rs`, `benches/producer.rs` and the comparison harness in
//! `tests/upstream`.
//!
//! * Produce: the ingest frames are built once (the same TLV records in batches of the
//!   same size the producer seals), written 16 frames per `write_all`, with no window of
//!   its own: TCP back-pressure paces the writer. A second thread reads every ACK and
//!   checks its flags. No encoding and no CRC per send.
//! * Read-back: send Fetch, read the 44-byte header, then the payload into one reused
//!   buffer; nothing is parsed beyond the 16-byte fetch prefix.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lnc_uring::proto::{
    encode_raw, ingest_header, offset, seal_frame, Checksum, FetchRequest, Flags, Request,
    HEADER_LEN, TLV_HEADER_LEN,
};

/// The producer's default batch size (`ProducerConfig::batch_size`).
pub const BATCH_SIZE: usize = 32 * 1024;

/// Frames per `write_all`.
pub const WRITE_FRAMES: usize = 16;

/// Records of `size` bytes in one batch: the producer seals a batch as soon as its payload
/// reaches `batch` bytes.
pub fn records_per_frame(size: usize, batch: usize) -> usize {
    batch.div_ceil(size + TLV_HEADER_LEN).max(1)
}

/// One ingest frame of `records` RawData records of `size` bytes, built once.
pub fn frame(topic: u32, records: usize, size: usize) -> Vec<u8> {
    frames(topic, records, size, 1)
}

/// `count` ingest frames of `records` RawData records of `size` bytes each, back to back,
/// batch ids 1..=count.
pub fn frames(topic: u32, records: usize, size: usize, count: usize) -> Vec<u8> {
    let v = vec![0x5Au8; size];
    let mut out = Vec::new();
    for id in 1..=count {
        let mut f = vec![0u8; HEADER_LEN];
        for _ in 0..records {
            encode_raw(&mut f, &v).unwrap();
        }
        seal_frame(
            Checksum::Ieee,
            ingest_header(id as u64, 0, records as u32, topic),
            &mut f,
        );
        out.extend_from_slice(&f);
    }
    out
}

/// When [`produce_frames`] stops writing.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// After at least this many records (whole frames).
    Records(u64),
    /// After the first write that ends this long after the start.
    Time(Duration),
}

/// What [`produce_frames`] did.
#[derive(Clone, Copy, Debug)]
pub struct Produced {
    /// Records written and acknowledged.
    pub records: u64,
    /// Frames written and acknowledged.
    pub frames: u64,
    /// From the first write to the last ACK.
    pub elapsed: Duration,
}

/// The fair produce floor: pre-built frames of `batch` payload bytes, 16 per `write_all`,
/// TCP back-pressure as the only pacing, every ACK read (and its flags checked) by a
/// second thread. Returns when every frame written is acknowledged.
pub fn produce_frames(
    addr: SocketAddr,
    topic: u32,
    size: usize,
    batch: usize,
    stop: Stop,
) -> Produced {
    let per_frame = records_per_frame(size, batch);
    let block = frames(topic, per_frame, size, WRITE_FRAMES);
    let frame_len = block.len() / WRITE_FRAMES;
    let mut w = TcpStream::connect(addr).unwrap();
    w.set_nodelay(true).unwrap();
    let mut r = w.try_clone().unwrap();
    // Frames the reader waits for: known up front for a record count, set when the
    // writer is done for a time limit (then the write side is shut, so the reader also
    // wakes at the server's EOF).
    let target = Arc::new(AtomicU64::new(match stop {
        Stop::Records(n) => n.div_ceil(per_frame as u64),
        Stop::Time(_) => u64::MAX,
    }));
    let reader = {
        let target = target.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut acked = 0u64;
            let mut at = 0usize; // bytes of the current ACK frame seen so far
            while acked < target.load(Ordering::Acquire) {
                let n = match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut i = 0;
                while i < n {
                    if at <= offset::FLAGS && offset::FLAGS < at + (n - i) {
                        let flags = Flags::from_bits(buf[i + offset::FLAGS - at]);
                        assert!(flags.is_ack(), "floor: a reply that is not an ACK");
                    }
                    let take = (HEADER_LEN - at).min(n - i);
                    i += take;
                    at += take;
                    if at == HEADER_LEN {
                        acked += 1;
                        at = 0;
                    }
                }
            }
            acked
        })
    };
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        let k = match stop {
            Stop::Records(_) => (target.load(Ordering::Relaxed) - sent).min(WRITE_FRAMES as u64),
            Stop::Time(d) if start.elapsed() < d => WRITE_FRAMES as u64,
            Stop::Time(_) => 0,
        };
        if k == 0 {
            break;
        }
        w.write_all(&block[..k as usize * frame_len]).unwrap();
        sent += k;
    }
    if let Stop::Time(_) = stop {
        target.store(sent, Ordering::Release);
        let _ = w.shutdown(Shutdown::Write);
    }
    let acked = reader.join().unwrap();
    let elapsed = start.elapsed();
    assert_eq!(acked, sent, "floor: ACKs missing");
    Produced {
        records: sent * per_frame as u64,
        frames: sent,
        elapsed,
    }
}

/// [`produce_frames`] of at least `records` records in default-sized batches. Returns
/// (records/s, MB/s of record values).
pub fn produce(addr: SocketAddr, topic: u32, size: usize, records: u64) -> (f64, f64) {
    let p = produce_frames(addr, topic, size, BATCH_SIZE, Stop::Records(records));
    let el = p.elapsed.as_secs_f64();
    let n = p.records as f64;
    (n / el, n * size as f64 / el / 1e6)
}

/// Ping-pong: write one frame holding one `size`-byte record, read its ACK; `n` times
/// after 1000 warm-up rounds. Latencies in nanoseconds.
pub fn send_with_ack(addr: SocketAddr, topic: u32, size: usize, n: u64) -> Histogram<u64> {
    let f = frame(topic, 1, size);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut h = Histogram::<u64>::new(3).unwrap();
    let mut ack = [0u8; HEADER_LEN];
    for i in 0..n + 1000 {
        let t = Instant::now();
        s.write_all(&f).unwrap();
        s.read_exact(&mut ack).unwrap();
        if i >= 1000 {
            h.record(t.elapsed().as_nanos() as u64).unwrap();
        }
    }
    h
}

/// The read-back floor: a blocking fetch loop from offset 0 until `total` bytes are read,
/// `max_bytes` per fetch, each reply read into one reused buffer. Returns bytes/s.
pub fn fetch_all(addr: SocketAddr, topic: u32, max_bytes: u32, total: u64) -> f64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut req = Vec::new();
    let mut reply = vec![0u8; max_bytes as usize + 64];
    let mut offset = 0u64;
    let start = Instant::now();
    while offset < total {
        req.clear();
        Request::Fetch(FetchRequest {
            topic_id: topic,
            start_offset: offset,
            max_bytes,
        })
        .encode(Checksum::Ieee, &mut req)
        .unwrap();
        s.write_all(&req).unwrap();
        s.read_exact(&mut reply[..HEADER_LEN]).unwrap();
        let len = u32::from_le_bytes(reply[32..36].try_into().unwrap()) as usize;
        s.read_exact(&mut reply[HEADER_LEN..HEADER_LEN + len])
            .unwrap();
        let next = u64::from_le_bytes(reply[HEADER_LEN..HEADER_LEN + 8].try_into().unwrap());
        assert!(next > offset, "fetch made no progress");
        offset = next;
    }
    offset as f64 / start.elapsed().as_secs_f64()
}

/// Microseconds at quantile `q` of a nanosecond histogram.
pub fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Waits until `f` is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    f()
}
