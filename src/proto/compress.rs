//! LZ4 compression that survives the released server.
//!
//! The server ignores the header's Compressed flag (0x01): it stores the payload bytes
//! verbatim, and Fetch returns byte ranges with no batch boundaries and no flag
//! (docs/protocol.md §4.5). A payload compressed as a whole and flagged would be unreadable to
//! every consumer. Instead this crate writes one self-describing record:
//!
//! ```text
//! record type 0xFE (COMPRESSED_BATCH) | length u32 LE | value:
//!     codec u8 (1 = LZ4 block) | uncompressed_len u32 LE | LZ4 block (lz4_flex / LZ4 block format)
//! ```
//!
//! The uncompressed bytes are a sequence of complete ordinary TLV records (never another
//! compressed batch), at most 16 MiB. The frame flags stay `0x04`. A consumer that does
//! not know the type sees one opaque record; this crate's iterators expand it
//! transparently ([`ExpandedRecords`]). Because it is a complete record, the server's
//! crash recovery reads past it correctly.

use super::tlv::{Record, RecordIter, RecordType, MAX_VALUE_LEN, TLV_HEADER_LEN};
use super::TlvError;

/// The codec byte for an LZ4 block.
pub const CODEC_LZ4: u8 = 1;
/// Bytes of the value before the LZ4 block: codec and uncompressed length.
pub const COMPRESSED_PREFIX_LEN: usize = 5;

/// Appends a compressed batch record holding `records` (complete TLV records) to `out`.
///
/// Returns `false`, appending `records` uncompressed instead, when compression would not
/// make the data smaller: the output is readable the same way either way.
///
/// ```
/// use lnc_uring::proto::{compress_records, encode_raw, ExpandedRecords};
///
/// let mut records = Vec::new();
/// for _ in 0..100 {
///     encode_raw(&mut records, b"a fairly repetitive record value").unwrap();
/// }
/// let mut payload = Vec::new();
/// assert!(compress_records(&records, &mut payload).unwrap());
/// assert!(payload.len() < records.len() / 4);
///
/// let mut scratch = Vec::new();
/// let values: Vec<_> = ExpandedRecords::new(&payload, &mut scratch)
///     .map(|r| r.unwrap().value.to_vec())
///     .collect();
/// assert_eq!(values.len(), 100);
/// ```
pub fn compress_records(records: &[u8], out: &mut Vec<u8>) -> Result<bool, TlvError> {
    if records.len() > MAX_VALUE_LEN {
        return Err(TlvError::ValueTooLarge {
            offset: 0,
            length: records.len(),
            max: MAX_VALUE_LEN,
        });
    }
    let start = out.len();
    let bound = lz4_flex::block::get_maximum_output_size(records.len());
    out.resize(start + TLV_HEADER_LEN + COMPRESSED_PREFIX_LEN + bound, 0);
    let body = start + TLV_HEADER_LEN + COMPRESSED_PREFIX_LEN;
    let written = match lz4_flex::block::compress_into(records, &mut out[body..]) {
        Ok(n) => n,
        Err(e) => {
            out.truncate(start);
            return Err(TlvError::Compression {
                offset: start,
                reason: e.to_string(),
            });
        }
    };
    let value_len = COMPRESSED_PREFIX_LEN + written;
    if TLV_HEADER_LEN + value_len >= records.len() || value_len > MAX_VALUE_LEN {
        out.truncate(start);
        out.extend_from_slice(records);
        return Ok(false);
    }
    out.truncate(body + written);
    out[start] = RecordType::COMPRESSED_BATCH.0;
    out[start + 1..start + 5].copy_from_slice(&(value_len as u32).to_le_bytes());
    out[start + 5] = CODEC_LZ4;
    out[start + 6..start + 10].copy_from_slice(&(records.len() as u32).to_le_bytes());
    Ok(true)
}

/// Appends the uncompressed records of a compressed batch `value` to `out`.
/// `offset` is the record's position, for error reports.
pub fn decompress_batch(value: &[u8], offset: usize, out: &mut Vec<u8>) -> Result<(), TlvError> {
    let err = |reason: String| TlvError::Compression { offset, reason };
    let Some((&codec, rest)) = value.split_first() else {
        return Err(err("empty value".into()));
    };
    if codec != CODEC_LZ4 {
        return Err(err(format!("unknown codec {codec}")));
    }
    let Some((len, block)) = rest.split_first_chunk::<4>() else {
        return Err(err("value shorter than its uncompressed length".into()));
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len > MAX_VALUE_LEN {
        return Err(err(format!(
            "uncompressed length {len} over the 16 MiB limit"
        )));
    }
    let start = out.len();
    out.resize(start + len, 0);
    match lz4_flex::block::decompress_into(block, &mut out[start..]) {
        Ok(n) if n == len => Ok(()),
        Ok(n) => {
            out.truncate(start);
            Err(err(format!("block holds {n} bytes, header says {len}")))
        }
        Err(e) => {
            out.truncate(start);
            Err(err(e.to_string()))
        }
    }
}

/// Iterates records like [`RecordIter`], expanding compressed batches in place.
///
/// Every compressed batch in `data` is decompressed into `scratch` when the iterator is
/// built; records are then views into `data` or `scratch`. An invalid batch (or nested
/// batch, or incomplete inner record) is reported as an error at its position in the
/// sequence, after every record before it.
#[derive(Debug)]
pub struct ExpandedRecords<'a> {
    outer: RecordIter<'a>,
    scratch: &'a [u8],
    /// Per compressed batch, in order: the range of `scratch` or the error.
    batches: std::vec::IntoIter<Result<(usize, usize), TlvError>>,
    inner: Option<RecordIter<'a>>,
    failed: bool,
}

impl<'a> ExpandedRecords<'a> {
    /// Expands `data`, using `scratch` (cleared first) for decompressed bytes.
    pub fn new(data: &'a [u8], scratch: &'a mut Vec<u8>) -> ExpandedRecords<'a> {
        scratch.clear();
        let mut batches = Vec::new();
        let mut it = RecordIter::new(data);
        while let Some(Ok(rec)) = it.next() {
            if rec.record_type == RecordType::COMPRESSED_BATCH {
                let at = it.offset() - rec.encoded_len();
                let start = scratch.len();
                batches.push(
                    decompress_batch(rec.value, at, scratch)
                        .and_then(|()| check_inner(&scratch[start..], at))
                        .map(|()| (start, scratch.len())),
                );
            }
        }
        ExpandedRecords {
            outer: RecordIter::new(data),
            scratch: &scratch[..],
            batches: batches.into_iter(),
            inner: None,
            failed: false,
        }
    }

    /// Offset in `data` after the last outer record consumed.
    pub fn offset(&self) -> usize {
        self.outer.offset()
    }
}

/// Inner records must be complete and must not nest.
fn check_inner(inner: &[u8], at: usize) -> Result<(), TlvError> {
    for rec in RecordIter::new(inner) {
        match rec {
            Ok(r) if r.record_type == RecordType::COMPRESSED_BATCH => {
                return Err(TlvError::Compression {
                    offset: at,
                    reason: "nested compressed batch".into(),
                })
            }
            Ok(_) => {}
            Err(e) => {
                return Err(TlvError::Compression {
                    offset: at,
                    reason: format!("inner records: {e}"),
                })
            }
        }
    }
    Ok(())
}

impl<'a> Iterator for ExpandedRecords<'a> {
    type Item = Result<Record<'a>, TlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(inner) = &mut self.inner {
                match inner.next() {
                    Some(r) => return Some(r),
                    None => self.inner = None,
                }
            }
            match self.outer.next()? {
                Ok(rec) if rec.record_type == RecordType::COMPRESSED_BATCH => {
                    match self.batches.next() {
                        Some(Ok((a, b))) => self.inner = Some(RecordIter::new(&self.scratch[a..b])),
                        Some(Err(e)) => {
                            self.failed = true;
                            return Some(Err(e));
                        }
                        // new() scanned the same records, so this cannot happen; fail
                        // rather than panic if it ever does.
                        None => {
                            self.failed = true;
                            return Some(Err(TlvError::Compression {
                                offset: self.outer.offset(),
                                reason: "batch missing from the pre-scan".into(),
                            }));
                        }
                    }
                }
                other => return Some(other),
            }
        }
    }
}
