//! `lnc-uring consume`: records to standard output, one per line.

use std::io::{BufWriter, Write};
use std::time::Duration;

use lnc_uring::proto::{Record, RecordType, TlvError};
use lnc_uring::{ConsumerConfig, Error, SeekPosition, StandaloneConsumer};
use serde_json::{Map, Value};

use crate::{connection, fail, Cli, ConsumeArgs};

pub(crate) const AFTER_HELP: &str = "\
Output, one line per record: the value's bytes as they are; KeyValue records as
KEY<TAB>VALUE, Timestamped as TIMESTAMP_NS<TAB>VALUE, KeyTimestamped as
TIMESTAMP_NS<TAB>KEY<TAB>VALUE (nothing is escaped: use --json for values that may hold
newlines or tabs).

With --json, one object per record: {\"offset\", \"type\", \"type_code\", \"value\"}, plus
\"key\" and \"timestamp_ns\" for the typed records that have them. \"offset\" is the
record's byte offset in the log (a record boundary, usable with --from; records of a
compressed batch carry the batch's offset). A key or value that is not valid UTF-8 is
given as \"key_b64\" / \"value_b64\" (standard base64, padded) instead, so nothing is lost.
A typed record whose value does not have its type's layout is given whole, with
\"malformed\": the reason.

--from OFFSET must be a record boundary. When the bytes at OFFSET are not a record (they
declare a value over 16 MiB), consume stops with exit 2 and names OFFSET; bytes inside a
record that happen to look like one cannot be told apart and are printed as records.";

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `field` as a string when it is UTF-8, else `field_b64`.
fn put_bytes(obj: &mut Map<String, Value>, field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => obj.insert(field.to_owned(), Value::from(s)),
        Err(_) => obj.insert(format!("{field}_b64"), Value::from(base64(bytes))),
    };
}

/// A record's parts: (timestamp, key, value), or the whole value and why it could not be
/// split.
type Parts<'a> = Result<(Option<u64>, Option<&'a [u8]>, &'a [u8]), TlvError>;

fn parts<'a>(rec: &Record<'a>) -> Parts<'a> {
    Ok(match rec.record_type {
        RecordType::KEY_VALUE => {
            let (k, v) = rec.as_key_value()?;
            (None, Some(k), v)
        }
        RecordType::TIMESTAMPED => {
            let (ts, v) = rec.as_timestamped()?;
            (Some(ts), None, v)
        }
        RecordType::KEY_TIMESTAMPED => {
            let (ts, k, v) = rec.as_key_timestamped()?;
            (Some(ts), Some(k), v)
        }
        _ => (None, None, rec.value),
    })
}

fn write_plain(out: &mut impl Write, rec: &Record<'_>) -> std::io::Result<()> {
    let (ts, key, value) = parts(rec).unwrap_or((None, None, rec.value));
    if let Some(ts) = ts {
        write!(out, "{ts}\t")?;
    }
    if let Some(k) = key {
        out.write_all(k)?;
        out.write_all(b"\t")?;
    }
    out.write_all(value)?;
    out.write_all(b"\n")
}

fn write_json(out: &mut impl Write, rec: &Record<'_>, offset: u64) -> std::io::Result<()> {
    let mut obj = Map::new();
    obj.insert("offset".into(), offset.into());
    obj.insert("type".into(), rec.record_type.name().into());
    obj.insert("type_code".into(), rec.record_type.0.into());
    match parts(rec) {
        Ok((ts, key, value)) => {
            if let Some(ts) = ts {
                obj.insert("timestamp_ns".into(), ts.into());
            }
            if let Some(k) = key {
                put_bytes(&mut obj, "key", k);
            }
            put_bytes(&mut obj, "value", value);
        }
        Err(e) => {
            put_bytes(&mut obj, "value", rec.value);
            obj.insert("malformed".into(), e.to_string().into());
        }
    }
    writeln!(out, "{}", Value::Object(obj))
}

pub(crate) fn run(cli: &Cli, a: &ConsumeArgs) -> Result<u8, Error> {
    let from = match a.from.as_str() {
        "beginning" | "begin" | "start" => SeekPosition::Beginning,
        "end" | "tail" => SeekPosition::End,
        o => SeekPosition::Offset(o.parse().map_err(|_| {
            Error::Config(format!(
                "--from must be beginning, end or an offset, not {o:?}"
            ))
        })?),
    };
    let mut cfg = ConsumerConfig::new("lnc-uring-cli", 0)
        .with_start(from)
        .with_max_fetch_bytes(a.max_fetch_bytes)
        .with_auto_commit(None)
        .with_connection(connection(cli));
    cfg.topic = a.topic.clone();
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
    let mut code = 0;
    'outer: while n < limit {
        let mut batch = match consumer.poll_timeout(idle) {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(Error::CorruptRecord { offset: at, reason }) => {
                let _ = out.flush();
                let what = format!("no record at offset {at} of the log: {reason}");
                code = if from == SeekPosition::Offset(at) {
                    fail(
                        cli,
                        &format!("{what}; --from {at} is not a record boundary"),
                        2,
                    )
                } else {
                    fail(cli, &what, 1)
                };
                break;
            }
            Err(e) => return Err(e),
        };
        let base = batch.start_offset();
        let mut records = batch.records();
        let mut at = 0;
        loop {
            let before = records.offset();
            let Some(rec) = records.next() else {
                break;
            };
            // A new outer record was consumed: this one (or the compressed batch holding it).
            if records.offset() != before {
                at = before;
            }
            let rec = match rec {
                Ok(r) => r,
                Err(TlvError::Compression { offset, reason }) => {
                    let _ = out.flush();
                    let at = base + offset as u64;
                    code = fail(
                        cli,
                        &format!("compressed batch at offset {at}: {reason}"),
                        1,
                    );
                    break 'outer;
                }
                Err(e) => return Err(e.into()),
            };
            let w = if cli.json {
                write_json(&mut out, &rec, base + at as u64)
            } else {
                write_plain(&mut out, &rec)
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
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
        assert_eq!(base64(b"\xff\xfea"), "//5h");
    }
}
