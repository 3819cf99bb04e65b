//! Ingest throughput of the testkit server against a raw TCP sink, measured in the
//! same run with the same blocking client.
//!
//! The client pipelines pre-built 64 KiB ingest frames over one connection: a writer
//! thread keeps a window of 16 frames in flight, a reader thread counts ACKs and
//! reopens the window. Against the raw sink (reads and discards, sends nothing) the
//! writer just writes. The testkit runs with immediate ACKs and `discard_data(true)`.
//!
//! Run: `cargo bench --features testkit --bench testkit_ingest`
//! (`TESTKIT_BENCH_SECS` sets the duration of each run, default 3).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use lnc_uring::proto::{ingest_header, seal_frame, Checksum, HEADER_LEN};
use lnc_uring::testkit::TestServer;

const PAYLOAD: usize = 64 * 1024;
const WINDOW: usize = 16;

fn frames(topic: u32) -> Vec<Vec<u8>> {
    (0..WINDOW as u64)
        .map(|i| {
            let mut f = vec![0u8; HEADER_LEN + PAYLOAD];
            for (j, b) in f[HEADER_LEN..].iter_mut().enumerate() {
                *b = (j as u64).wrapping_mul(31).wrapping_add(i) as u8;
            }
            seal_frame(Checksum::Ieee, ingest_header(i + 1, 0, 1, topic), &mut f);
            f
        })
        .collect()
}

/// Writes frames for `secs`, keeping at most `WINDOW` unacknowledged when `acks`.
/// Returns (bytes delivered, elapsed).
fn client(addr: SocketAddr, topic: u32, secs: f64, acks: bool) -> (u64, Duration) {
    let frames = frames(topic);
    let frame_len = frames[0].len() as u64;
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_nodelay(true).ok();
    let acked = Arc::new(AtomicU64::new(0));
    let (permit_tx, permit_rx) = mpsc::sync_channel::<()>(WINDOW);
    let reader = acks.then(|| {
        let mut rd = sock.try_clone().expect("clone");
        let acked = Arc::clone(&acked);
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut carry = 0usize;
            loop {
                let n = match rd.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                carry += n;
                let k = carry / HEADER_LEN;
                carry %= HEADER_LEN;
                for _ in 0..k {
                    let _ = permit_tx.send(());
                }
                acked.fetch_add(k as u64, Ordering::Release);
            }
        })
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    let mut in_flight = 0usize;
    while Instant::now() < deadline {
        for f in &frames {
            if acks {
                if in_flight == WINDOW {
                    permit_rx.recv().expect("reader gone");
                    in_flight -= 1;
                }
                while permit_rx.try_recv().is_ok() {
                    in_flight -= 1;
                }
                in_flight += 1;
            }
            sock.write_all(f).expect("write");
            sent += 1;
        }
    }
    if acks {
        while acked.load(Ordering::Acquire) < sent {
            thread::sleep(Duration::from_micros(50));
        }
        let elapsed = start.elapsed();
        sock.shutdown(Shutdown::Both).ok();
        if let Some(r) = reader {
            r.join().ok();
        }
        (sent * frame_len, elapsed)
    } else {
        sock.shutdown(Shutdown::Write).ok();
        // Wait for the sink to read everything (it closes on EOF).
        let mut b = [0u8; 1];
        let _ = sock.read(&mut b);
        (sent * frame_len, start.elapsed())
    }
}

fn raw_sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            s.set_nodelay(true).ok();
            thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn main() {
    let secs: f64 = std::env::var("TESTKIT_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);

    let sink = raw_sink();
    // Warm-up, then the measured runs.
    client(sink, 1, 0.3, false);
    let (sink_bytes, sink_time) = client(sink, 1, secs, false);
    let sink_rate = gbps(sink_bytes, sink_time);
    println!("raw sink : {sink_rate:.3} GB/s ({sink_bytes} bytes in {sink_time:.2?})");

    let server = TestServer::builder()
        .discard_data(true)
        .start()
        .expect("testkit");
    let topic = server.create_topic("bench");
    client(server.addr(), topic, 0.3, true);
    let (tk_bytes, tk_time) = client(server.addr(), topic, secs, true);
    let tk_rate = gbps(tk_bytes, tk_time);
    println!(
        "testkit  : {tk_rate:.3} GB/s ({tk_bytes} bytes in {tk_time:.2?}, {} frames of {PAYLOAD} B, window {WINDOW})",
        tk_bytes / (HEADER_LEN + PAYLOAD) as u64
    );
    println!(
        "ratio    : {:.0}% of the raw sink",
        100.0 * tk_rate / sink_rate
    );
    let stats = server.stats();
    assert_eq!(stats.ingest_bytes, server.topic_size(topic));
    assert_eq!(stats.acks_sent, stats.ingest_frames);
}
