//! `lnc-uring produce`: records from standard input or generated, every one acknowledged,
//! failed or reported unknown; SIGINT/SIGTERM stop it with a summary.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use lnc_uring::{Error, FullBufferPolicy, LanceClient, Producer, ProducerConfig};
use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::{connection, resolve, Cli, ProduceArgs};

pub(crate) const AFTER_HELP: &str = "\
Input: one record per line of standard input, without its newline (a last line without
one is a record too). With --count N, N generated records instead: record SEQ (0, 1, …)
has a value of exactly --size bytes: SEQ mod 10^12 as 12 zero-padded decimal digits,
then letters (byte 12+i is 'a' + (SEQ + i) mod 26); under 12 bytes, the last --size of
those digits.

Every record is acknowledged or failed within the delivery timeout (--delivery-timeout-ms,
default --timeout-ms); a full buffer waits as long, then fails with exit 5. Production
stops at the first failed record. The summary counts records acknowledged, failed, and
unknown (accepted but not answered in time: they may or may not be stored); it goes to
standard error, or as JSON to standard output with --json.

SIGINT (^C) or SIGTERM: stop reading, wait up to 3 s for the acknowledgements of what was
sent (a second signal stops waiting), print the summary, exit 130 (SIGINT) or 143.";

/// How long one blocking attempt lasts (a full buffer, a flush) between signal checks.
const SLICE: Duration = Duration::from_millis(100);
/// How long acknowledgements are awaited after SIGINT/SIGTERM.
const AFTER_SIGNAL: Duration = Duration::from_secs(3);
/// Stdin lines are handed over in chunks of about this many bytes.
const CHUNK: usize = 64 * 1024;

/// SIGINT/SIGTERM seen so far, and the last one; `wake` receives one message per signal.
struct Watch {
    count: Arc<AtomicUsize>,
    last: Arc<AtomicI32>,
    wake: Receiver<()>,
}

impl Watch {
    fn start() -> Result<Watch, Error> {
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(Error::from)?;
        let count = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(AtomicI32::new(0));
        let (tx, wake) = crossbeam_channel::unbounded();
        let (c, l) = (count.clone(), last.clone());
        std::thread::Builder::new()
            .name("lnc-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    l.store(sig, Ordering::SeqCst);
                    c.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send(());
                }
            })
            .map_err(Error::from)?;
        Ok(Watch { count, last, wake })
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn caught(&self) -> Option<i32> {
        (self.count() > 0).then(|| self.last.load(Ordering::SeqCst))
    }
}

/// Why input stopped.
enum Stop {
    End,
    Signal(i32),
    Failed(Error),
}

struct Sender<'a> {
    producer: &'a Producer,
    topic: u32,
    delivery: Duration,
    watch: &'a Watch,
    records: u64,
    bytes: u64,
}

impl Sender<'_> {
    /// Sends one record; a full buffer is waited for up to the delivery timeout, in
    /// slices so that a signal is noticed.
    fn send(&mut self, value: &[u8]) -> Result<(), Stop> {
        let give_up = Instant::now() + self.delivery;
        loop {
            if let Some(sig) = self.watch.caught() {
                return Err(Stop::Signal(sig));
            }
            match self.producer.send_async(self.topic, value) {
                Ok(_ticket) => break,
                Err(Error::Backpressure(_)) if Instant::now() < give_up => continue,
                Err(Error::Backpressure(limit)) => {
                    return Err(Stop::Failed(Error::Timeout(format!(
                        "buffer full ({limit:?}) for {} ms: sent records were not acknowledged",
                        self.delivery.as_millis()
                    ))))
                }
                Err(e) => return Err(Stop::Failed(e)),
            }
        }
        self.records += 1;
        self.bytes += value.len() as u64;
        if self.records.is_multiple_of(1024) {
            self.check_failures()?;
        }
        Ok(())
    }

    /// Stops at the first record that failed.
    fn check_failures(&self) -> Result<(), Stop> {
        match self.producer.first_failure() {
            Some(e) => Err(Stop::Failed(e)),
            None => Ok(()),
        }
    }
}

/// Generated record `seq`: exactly `size` bytes (see `AFTER_HELP`).
fn generated(seq: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    let digits = format!("{:012}", seq % 1_000_000_000_000);
    if size < 12 {
        out.extend_from_slice(&digits.as_bytes()[12 - size..]);
    } else {
        out.extend_from_slice(digits.as_bytes());
        out.extend((0..size - 12).map(|i| b'a' + ((seq as usize).wrapping_add(i) % 26) as u8));
    }
}

/// Lines of standard input, in chunks: `data` holds them without their newlines, `ends`
/// where each one ends. A chunk is handed over when it is large, or when no more input is
/// buffered (so a line typed by hand is sent at once).
#[derive(Default)]
struct Chunk {
    data: Vec<u8>,
    ends: Vec<usize>,
}

/// Reads standard input on its own thread (a blocked read must not keep a signal from
/// being handled); the channel disconnects at end of input.
fn read_stdin() -> Receiver<std::io::Result<Chunk>> {
    let (tx, rx) = crossbeam_channel::bounded(4);
    std::thread::spawn(move || {
        let mut input = BufReader::with_capacity(CHUNK, std::io::stdin().lock());
        loop {
            let mut chunk = Chunk::default();
            let mut eof = false;
            loop {
                match input.read_until(b'\n', &mut chunk.data) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(_) => {
                        if chunk.data.last() == Some(&b'\n') {
                            chunk.data.pop();
                        }
                        chunk.ends.push(chunk.data.len());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
                if chunk.data.len() >= CHUNK || input.buffer().is_empty() {
                    break;
                }
            }
            if !chunk.ends.is_empty() && tx.send(Ok(chunk)).is_err() {
                return;
            }
            if eof {
                return;
            }
        }
    });
    rx
}

fn send_generated(s: &mut Sender<'_>, count: u64, size: usize) -> Stop {
    let mut v = Vec::with_capacity(size);
    for seq in 0..count {
        generated(seq, size, &mut v);
        if let Err(stop) = s.send(&v) {
            return stop;
        }
    }
    match s.check_failures() {
        Err(stop) => stop,
        Ok(()) => Stop::End,
    }
}

fn send_stdin(s: &mut Sender<'_>) -> Stop {
    let lines = read_stdin();
    loop {
        select! {
            recv(lines) -> msg => match msg {
                Ok(Ok(chunk)) => {
                    let mut from = 0;
                    for &end in &chunk.ends {
                        if let Err(stop) = s.send(&chunk.data[from..end]) {
                            return stop;
                        }
                        from = end;
                    }
                    if let Err(stop) = s.check_failures() {
                        return stop;
                    }
                }
                Ok(Err(e)) => return Stop::Failed(Error::from(e)),
                Err(_) => return Stop::End,
            },
            recv(s.watch.wake) -> _ => {
                if let Some(sig) = s.watch.caught() {
                    return Stop::Signal(sig);
                }
            }
        }
    }
}

/// Waits up to `bound` for every record sent to be acknowledged or failed. A signal cuts
/// the wait to [`AFTER_SIGNAL`]; a second one ends it. Returns the signal, if any.
fn settle(
    producer: &Producer,
    watch: &Watch,
    mut signal: Option<i32>,
    bound: Duration,
) -> Option<i32> {
    let mut deadline = Instant::now() + bound;
    let mut seen = watch.count();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return signal;
        }
        match producer.flush((deadline - now).min(SLICE)) {
            Ok(()) => return signal,
            Err(Error::Timeout(_)) => {}
            Err(Error::Closed) => return signal,
            // Some records failed (counted in the summary); wait for the others.
            Err(_) if producer.stats().records_outstanding > 0 => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return signal,
        }
        if watch.count() > seen {
            seen = watch.count();
            if signal.is_some() {
                return signal;
            }
            signal = watch.caught();
            deadline = deadline.min(Instant::now() + AFTER_SIGNAL);
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    if sig == SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}

pub(crate) fn run(cli: &Cli, a: &ProduceArgs) -> Result<u8, Error> {
    let delivery = Duration::from_millis(a.delivery_timeout_ms.unwrap_or(cli.timeout_ms));
    let bound_flag = if a.delivery_timeout_ms.is_some() {
        "--delivery-timeout-ms"
    } else {
        "--timeout-ms"
    };
    let admin = LanceClient::with_config(connection(cli))?;
    let topic = resolve(&admin, &a.topic, a.create)?;
    admin.close();
    // From here on SIGINT/SIGTERM end the run with a summary instead of killing it.
    let watch = Watch::start()?;
    let cfg = ProducerConfig::default()
        .with_batch_size(a.batch_size)
        .with_linger_ms(a.linger_ms)
        .with_compression(a.compression)
        .with_delivery_timeout(delivery)
        .with_full_buffer(FullBufferPolicy::Block(SLICE.min(delivery)))
        .with_connection(connection(cli));
    let producer = Producer::with_config(cfg)?;
    let start = Instant::now();
    let mut sender = Sender {
        producer: &producer,
        topic,
        delivery,
        watch: &watch,
        records: 0,
        bytes: 0,
    };
    let stop = match a.count {
        Some(count) => send_generated(&mut sender, count, a.size),
        None => send_stdin(&mut sender),
    };
    let (records, bytes) = (sender.records, sender.bytes);
    let (signal, mut failure) = match stop {
        Stop::End => (None, None),
        Stop::Signal(sig) => (Some(sig), None),
        Stop::Failed(e) => (None, Some(e)),
    };
    // Every record sent resolves within the delivery timeout; after a signal, wait less.
    let bound = match signal {
        Some(_) => AFTER_SIGNAL.min(delivery),
        None => delivery + Duration::from_secs(1),
    };
    let signal = settle(&producer, &watch, signal, bound);
    let secs = start.elapsed().as_secs_f64();
    let stats = producer.stats();
    let failed = stats.records_failed;
    let unknown = stats.records_outstanding;
    let acked = stats.records_sent.saturating_sub(failed + unknown);
    if failure.is_none() {
        failure = producer.first_failure();
    }
    let last_error = producer.last_error();
    // Records still unanswered fail now; they were counted as unknown.
    let _ = producer.close(Duration::from_millis(200));

    if cli.json {
        println!(
            "{}",
            json!({ "topic_id": topic, "records": records, "acknowledged": acked,
                    "failed": failed, "unknown": unknown, "bytes": bytes, "seconds": secs,
                    "records_per_sec": acked as f64 / secs,
                    "ack_p50_us": stats.ack_latency.p50_us,
                    "ack_p99_us": stats.ack_latency.p99_us, "backend": stats.driver.backend,
                    "interrupted": signal.is_some(), "signal": signal.map(signal_name) })
        );
    } else {
        let counts = format!(
            "topic {topic}: {acked} acknowledged, {failed} failed, {unknown} unknown \
             of {records} records ({bytes} bytes) in {secs:.2} s"
        );
        match signal {
            Some(sig) => eprintln!("lnc-uring: interrupted by {}: {counts}", signal_name(sig)),
            None => eprintln!(
                "produced to {counts}: {:.0} records/s, ack p50 {} µs p99 {} µs ({})",
                acked as f64 / secs,
                stats.ack_latency.p50_us,
                stats.ack_latency.p99_us,
                stats.driver.backend
            ),
        }
    }
    let context = |what: String| {
        let last = last_error
            .as_deref()
            .map(|e| format!("; last connection error: {e}"))
            .unwrap_or_default();
        format!(
            "{what} (server {}, {bound_flag} {}{last})",
            cli.addr,
            delivery.as_millis()
        )
    };
    if let Some(sig) = signal {
        if let Some(e) = failure {
            eprintln!("lnc-uring: first failure: {e}");
        }
        return Ok(128 + sig as u8);
    }
    match failure {
        Some(Error::Timeout(what)) => Err(Error::Timeout(context(what))),
        Some(e) => Err(e),
        None if unknown > 0 => Err(Error::Timeout(context(format!(
            "{unknown} records were not acknowledged in time"
        )))),
        None => Ok(0),
    }
}
