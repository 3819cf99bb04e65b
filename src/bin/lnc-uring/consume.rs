//! `lnc-uring consume`.

use std::io::{BufWriter, Write};
use std::time::Duration;

use lnc_uring::{ConsumerConfig, Error, SeekPosition, StandaloneConsumer, TopicRef};
use serde_json::json;

use crate::{connection, Cli, ConsumeArgs};

pub(crate) fn run(cli: &Cli, a: &ConsumeArgs) -> Result<(), Error> {
    let from = match a.from.as_str() {
        "beginning" | "begin" | "start" => SeekPosition::Beginning,
        "end" | "tail" => SeekPosition::End,
        o => SeekPosition::Offset(o.parse().map_err(|_| {
            Error::Config(format!(
                "--from must be beginning, end or an offset, not {o:?}"
            ))
        })?),
    };
    let topic = match a.topic.parse::<u32>() {
        Ok(id) => TopicRef::Id(id),
        Err(_) => TopicRef::Name(a.topic.clone()),
    };
    let mut cfg = ConsumerConfig::new("lnc-uring-cli", 0)
        .with_start(from)
        .with_max_fetch_bytes(a.max_fetch_bytes)
        .with_auto_commit(None)
        .with_connection(connection(cli));
    cfg.topic = topic;
    let mut consumer = StandaloneConsumer::connect(cfg)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let limit = a.count.unwrap_or(u64::MAX);
    let idle = if a.idle_ms == 0 {
        Duration::from_secs(365 * 86_400)
    } else {
        Duration::from_millis(a.idle_ms)
    };
    let mut n = 0u64;
    'outer: while n < limit {
        let Some(mut batch) = consumer.poll_timeout(idle)? else {
            break;
        };
        for rec in batch.records() {
            let rec = rec?;
            let w = if cli.json {
                let v = json!({ "type": rec.record_type.name(), "value": String::from_utf8_lossy(rec.value) });
                writeln!(out, "{v}")
            } else {
                out.write_all(rec.value).and_then(|()| out.write_all(b"\n"))
            };
            if w.is_err() {
                // Broken pipe (e.g. `| head`): stop quietly.
                break 'outer;
            }
            n += 1;
            if n >= limit {
                break 'outer;
            }
        }
    }
    let _ = out.flush();
    drop(out);
    consumer.close()?;
    Ok(())
}
