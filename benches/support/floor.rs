//! The floor: plain blocking `std::net` clients that no client library can beat by much.
//! Shared by `benches/producer.rs` and the comparison harness in `tests/upstream`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lnc_uring::proto::{
    encode_raw, ingest_header, seal_frame, Checksum, FetchRequest, Request, HEADER_LEN,
};

/// One ingest frame of `records` RawData records of `size` bytes, built once.
pub fn frame(topic: u32, records: usize, size: usize) -> Vec<u8> {
    let mut f = vec![0u8; HEADER_LEN];
    let v = vec![0x5Au8; size];
    for _ in 0..records {
        encode_raw(&mut f, &v).unwrap();
    }
    seal_frame(
        Checksum::Ieee,
        ingest_header(1, 0, records as u32, topic),
        &mut f,
    );
    f
}

/// Pipelines pre-built 32 KiB frames of `size`-byte records (64 in flight, ACKs read by
/// a second thread) until `records` are acknowledged. Returns (records/s, MB/s).
pub fn produce(addr: SocketAddr, topic: u32, size: usize, records: u64) -> (f64, f64) {
    let per_frame = (32 * 1024 / (size + 5)).max(1);
    let f = frame(topic, per_frame, size);
    let frames = records.div_ceil(per_frame as u64);
    let mut w = TcpStream::connect(addr).unwrap();
    w.set_nodelay(true).unwrap();
    let mut r = w.try_clone().unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let reader = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending = 0usize;
            while acked.load(Ordering::Acquire) < frames {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        pending += n;
                        acked.fetch_add((pending / HEADER_LEN) as u64, Ordering::Release);
                        pending %= HEADER_LEN;
                    }
                }
            }
        })
    };
    let start = Instant::now();
    for sent in 0..frames {
        while sent - acked.load(Ordering::Acquire) >= 64 {
            std::hint::spin_loop();
        }
        w.write_all(&f).unwrap();
    }
    reader.join().unwrap();
    let el = start.elapsed().as_secs_f64();
    let n = (frames * per_frame as u64) as f64;
    (n / el, n * (size + 5) as f64 / el / 1e6)
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

/// A blocking fetch loop from offset 0 until `total` bytes are read, `max_bytes` per
/// fetch. Returns bytes/s.
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
