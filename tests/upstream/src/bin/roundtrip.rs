//! A produce-then-consume round trip of N records, side by side in one run against the
//! same embedded server: the upstream Rust `lnc-client` 0.2.8 (tokio) and lnc-uring.
//! Both read back every record and check it byte for byte.
//!
//! Run: `cargo run --release --manifest-path tests/upstream/Cargo.toml --bin roundtrip -- [N] [SIZE]`

use std::time::{Duration, Instant};

use lnc_client::{
    ClientConfig, Consumer, ConsumerConfig, LanceClient, Producer, ProducerConfig, SeekPosition,
};
use lnc_uring::proto::{complete_prefix, encode_raw, RecordIter, MAX_VALUE_LEN};
use lnc_uring::testkit::TestServer;

fn generated(seq: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(format!("{seq:012}").as_bytes());
    out.extend((0..size.saturating_sub(12)).map(|i| b'a' + ((seq as usize + i) % 26) as u8));
}

/// Checks a stream of TLV records against the generator; returns how many were whole.
struct Checker {
    carry: Vec<u8>,
    next: u64,
    size: usize,
    expect: Vec<u8>,
}

impl Checker {
    fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        self.carry.extend_from_slice(data);
        let (done, _) = complete_prefix(&self.carry, MAX_VALUE_LEN).map_err(|e| e.to_string())?;
        for r in RecordIter::new(&self.carry[..done]) {
            let r = r.map_err(|e| e.to_string())?;
            generated(self.next, self.size, &mut self.expect);
            if r.value != self.expect.as_slice() {
                return Err(format!("record {} differs", self.next));
            }
            self.next += 1;
        }
        self.carry.drain(..done);
        Ok(())
    }
}

async fn upstream(
    addr: &str,
    topic: u32,
    n: u64,
    size: usize,
) -> Result<(Duration, Duration), String> {
    let cfg = ProducerConfig::new()
        .with_batch_size(32 * 1024)
        .with_linger_ms(5)
        .with_buffer_memory(256 << 20);
    let producer = Producer::connect(addr, cfg)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut rec = Vec::new();
    let mut tlv = Vec::new();
    let start = Instant::now();
    for seq in 0..n {
        generated(seq, size, &mut rec);
        tlv.clear();
        // Upstream sends the caller's bytes as they are: TLV-frame them here.
        encode_raw(&mut tlv, &rec).map_err(|e| e.to_string())?;
        producer
            .send_async(topic, &tlv)
            .await
            .map_err(|e| format!("{e:?}"))?;
    }
    producer.flush().await.map_err(|e| format!("{e:?}"))?;
    let produce = start.elapsed();
    let _ = producer.close().await;

    let client = LanceClient::connect(ClientConfig::new(addr))
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut consumer = Consumer::new(
        client,
        addr,
        ConsumerConfig::new(topic)
            .with_start_position(SeekPosition::Beginning)
            .with_max_fetch_bytes(1 << 20),
    );
    let mut check = Checker {
        carry: Vec::new(),
        next: 0,
        size,
        expect: Vec::new(),
    };
    let start = Instant::now();
    while check.next < n {
        match consumer.next_batch().await.map_err(|e| format!("{e:?}"))? {
            Some(b) => check.feed(&b.data)?,
            None => return Err(format!("upstream: log ended after {} records", check.next)),
        }
    }
    Ok((produce, start.elapsed()))
}

fn ours(addr: &str, topic: u32, n: u64, size: usize) -> Result<(Duration, Duration), String> {
    let producer = lnc_uring::Producer::connect(addr, lnc_uring::ProducerConfig::default())
        .map_err(|e| e.to_string())?;
    let mut rec = Vec::new();
    let start = Instant::now();
    for seq in 0..n {
        generated(seq, size, &mut rec);
        producer
            .send_async(topic, &rec)
            .map_err(|e| e.to_string())?;
    }
    producer
        .flush(Duration::from_secs(600))
        .map_err(|e| e.to_string())?;
    let produce = start.elapsed();
    producer
        .close(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;

    let cfg = lnc_uring::ConsumerConfig::new("roundtrip", topic)
        .with_max_fetch_bytes(1 << 20)
        .with_connection(lnc_uring::ConnectionConfig::new(addr));
    let mut consumer = lnc_uring::StandaloneConsumer::connect(cfg).map_err(|e| e.to_string())?;
    let mut check = Checker {
        carry: Vec::new(),
        next: 0,
        size,
        expect: Vec::new(),
    };
    let start = Instant::now();
    while check.next < n {
        match consumer
            .poll_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?
        {
            Some(r) => check.feed(r.bytes())?,
            None => return Err(format!("lnc-uring: log ended after {} records", check.next)),
        }
    }
    let consume = start.elapsed();
    consumer.close().map_err(|e| e.to_string())?;
    Ok((produce, consume))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let server = TestServer::start().expect("testkit");
    let addr = server.addr().to_string();
    let t_up = server.create_topic("upstream");
    let t_us = server.create_topic("ours");
    println!("round trip of {n} records of {size} B (TLV-framed), embedded server, one run");
    let up = upstream(&addr, t_up, n, size).await;
    let us = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || ours(&addr, t_us, n, size)
    })
    .await
    .expect("join");
    let mut ok = true;
    for (name, r) in [("upstream lnc-client 0.2.8", &up), ("lnc-uring", &us)] {
        match r {
            Ok((p, c)) => println!(
                "{name:<26} produce {:>8.2} s ({:>9.0} rec/s)   consume {:>8.2} s ({:>9.0} rec/s)   total {:>8.2} s   all {n} records checked",
                p.as_secs_f64(),
                n as f64 / p.as_secs_f64(),
                c.as_secs_f64(),
                n as f64 / c.as_secs_f64(),
                (*p + *c).as_secs_f64()
            ),
            Err(e) => {
                ok = false;
                println!("{name:<26} FAILED: {e}");
            }
        }
    }
    if let (Ok((up_p, up_c)), Ok((us_p, us_c))) = (&up, &us) {
        println!(
            "lnc-uring is {:.1}x faster producing, {:.1}x faster consuming, {:.1}x overall",
            up_p.as_secs_f64() / us_p.as_secs_f64(),
            up_c.as_secs_f64() / us_c.as_secs_f64(),
            (*up_p + *up_c).as_secs_f64() / (*us_p + *us_c).as_secs_f64()
        );
    }
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
