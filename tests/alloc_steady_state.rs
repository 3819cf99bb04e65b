//! Zero heap allocations per record in steady state: a counting global allocator
//! around the producer, on both backends, against a minimal ACK server that allocates
//! nothing in its loop (so every allocation counted is the client's).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lnc_uring::proto::{
    ack_frame, control_header, encode_raw, Checksum, ControlCode, Header, Request, HEADER_LEN,
};
use lnc_uring::{
    Backend, ConnectionConfig, ConsumerConfig, ProduceRecord, Producer, ProducerConfig,
    StandaloneConsumer,
};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY (test allocator): forwards every call unchanged to the system allocator and
// only counts; the contract of GlobalAlloc is the system allocator's.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is process-wide: the tests of this binary take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Acknowledges every ingest frame; buffers allocated once, before the loop.
fn ack_server(stop: Arc<AtomicBool>) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; 4 << 20];
        let mut acks = vec![0u8; 64 * 1024 * HEADER_LEN / 64];
        let mut have = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let n = match s.read(&mut buf[have..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            have += n;
            let mut pos = 0;
            let mut out = 0;
            while have - pos >= HEADER_LEN {
                let h = Header::decode(&buf[pos..have], Checksum::Ieee).unwrap();
                let total = HEADER_LEN + h.payload_length as usize;
                if have - pos < total {
                    break;
                }
                if h.flags.is_batch() {
                    if out + HEADER_LEN > acks.len() {
                        s.write_all(&acks[..out]).unwrap();
                        out = 0;
                    }
                    acks[out..out + HEADER_LEN]
                        .copy_from_slice(&ack_frame(Checksum::Ieee, h.batch_id));
                    out += HEADER_LEN;
                }
                pos += total;
            }
            if out > 0 {
                s.write_all(&acks[..out]).unwrap();
            }
            buf.copy_within(pos..have, 0);
            have -= pos;
        }
    });
    addr
}

/// How the records are sent.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// `send_async`, lingering 1 ms.
    Async,
    /// `send` (linger 0, each record waits for its ACK).
    Blocking,
    /// A `TopicWriter` (no lock), handing its batch over after each round.
    Writer,
}

fn run(backend: Backend, mode: Mode) -> (u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let addr = ack_server(stop.clone());
    let conn = ConnectionConfig::new(addr.to_string())
        .with_backend(backend)
        .with_keepalive_interval(Duration::from_secs(3600));
    let linger = if mode == Mode::Blocking {
        Duration::ZERO
    } else {
        Duration::from_millis(1)
    };
    // Buffers come from a pool that allocates at most `buffer_memory / buffer size`
    // buffers in its life; a budget the warm-up is sure to exhaust makes the steady state
    // allocation-free by construction, however the threads are scheduled.
    let p = Producer::with_config(
        ProducerConfig::default()
            .with_linger(linger)
            .with_buffer_memory(2 << 20)
            .with_connection(conn),
    )
    .unwrap();
    let value = [7u8; 1000];
    let mut writer = p.writer(1);
    let mut send = |n: usize| {
        for _ in 0..n {
            match mode {
                Mode::Blocking => drop(p.send(1, &value).unwrap()),
                Mode::Async => drop(p.send_async(1, &value).unwrap()),
                Mode::Writer => writer.produce(ProduceRecord::Raw(&value)).unwrap(),
            }
        }
        writer.submit().unwrap();
        p.flush(Duration::from_secs(30)).unwrap();
    };
    // Warm up: pools, queues and buffers reach their working size.
    let records = if mode == Mode::Blocking {
        3_000
    } else {
        20_000
    };
    send(records);
    let before = ALLOCS.load(Ordering::Relaxed);
    send(records);
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    drop(writer);
    stop.store(true, Ordering::Relaxed);
    assert_eq!(p.stats().records_sent, 2 * records as u64);
    p.close(Duration::from_secs(5)).unwrap();
    (allocs, records as u64)
}

#[test]
fn producer_allocates_nothing_per_record() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for backend in common::backends() {
        for mode in [Mode::Async, Mode::Blocking, Mode::Writer] {
            let (allocs, records) = run(backend, mode);
            eprintln!("{backend} {mode:?}: {allocs} allocations for {records} records");
            // Nothing: not per record, not per batch (20 000 records of 1 KiB are about
            // 650 batches), not per wake-up.
            assert_eq!(
                allocs, 0,
                "{backend} {mode:?}: {allocs} allocations for {records} records"
            );
        }
    }
}

/// Serves Fetch requests from a log built before the loop (no allocation in the loop).
fn fetch_server(log: Arc<Vec<u8>>) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        s.set_nodelay(true).unwrap();
        let mut req = [0u8; HEADER_LEN + 64];
        loop {
            if s.read_exact(&mut req[..HEADER_LEN]).is_err() {
                return;
            }
            let h = Header::decode(&req[..HEADER_LEN], Checksum::Ieee).unwrap();
            let len = h.payload_length as usize;
            if s.read_exact(&mut req[HEADER_LEN..HEADER_LEN + len])
                .is_err()
            {
                return;
            }
            let Ok(Request::Fetch(f)) = Request::parse(
                ControlCode(h.batch_id as u8),
                &req[HEADER_LEN..HEADER_LEN + len],
            ) else {
                continue; // the consumer sends only fetches here
            };
            let start = (f.start_offset as usize).min(log.len());
            let end = (start + f.max_bytes as usize).min(log.len());
            let data = &log[start..end];
            let mut prefix = [0u8; 16];
            prefix[..8].copy_from_slice(&(end as u64).to_le_bytes());
            prefix[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
            prefix[12..16].copy_from_slice(&u32::from(!data.is_empty()).to_le_bytes());
            let mut header = control_header(ControlCode::FETCH_RESPONSE);
            header.payload_length = (16 + data.len()) as u32;
            header.payload_crc = Checksum::Ieee.append(Checksum::Ieee.compute(&prefix), data);
            let head = header.to_bytes(Checksum::Ieee);
            if s.write_all(&head)
                .and_then(|_| s.write_all(&prefix))
                .and_then(|_| s.write_all(data))
                .is_err()
            {
                return;
            }
        }
    });
    addr
}

#[test]
fn consumer_allocates_nothing_per_record() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let records = 200_000u64;
    let mut log = Vec::new();
    for i in 0..records {
        encode_raw(&mut log, &[(i % 251) as u8; 100]).unwrap();
    }
    let log = Arc::new(log);
    for backend in common::backends() {
        let addr = fetch_server(log.clone());
        let cfg = ConsumerConfig::new("alloc", 1)
            .with_max_fetch_bytes(64 * 1024)
            .with_auto_commit(None)
            .with_connection(
                ConnectionConfig::new(addr.to_string())
                    .with_backend(backend)
                    .with_keepalive_interval(Duration::from_secs(3600)),
            );
        let mut c = StandaloneConsumer::connect(cfg).unwrap();
        let mut read = 0u64;
        let mut before = 0;
        let mut counted_from = 0;
        while read < records {
            if before == 0 && read >= records / 2 {
                before = ALLOCS.load(Ordering::Relaxed);
                counted_from = read;
            }
            let mut r = c
                .poll_timeout(Duration::from_secs(10))
                .unwrap()
                .expect("data");
            read += r.records().count() as u64;
        }
        let allocs = ALLOCS.load(Ordering::Relaxed) - before;
        let counted = read - counted_from;
        eprintln!("{backend}: {allocs} allocations for {counted} records");
        // Fetch buffers, tails and requests are reused: nothing scales with the record
        // count; a control request frame per fetch (about 1 per 600 records) is all.
        assert!(
            allocs * 100 < counted,
            "{backend}: {allocs} allocations for {counted} records"
        );
        drop(c);
    }
}
