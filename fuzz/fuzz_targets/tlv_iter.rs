//! Iterates arbitrary bytes as TLV records, plain and with compressed batches expanded,
//! and checks that `complete_prefix` agrees with the iterator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lnc_uring::proto::{complete_prefix, ExpandedRecords, RecordIter, TlvError};

fuzz_target!(|data: &[u8]| {
    let max = 1 << 20;
    let mut it = RecordIter::with_max_value(data, max);
    let mut count = 0;
    let mut tail_ok = true;
    for r in it.by_ref() {
        match r {
            Ok(rec) => {
                count += 1;
                let _ = (rec.as_key_value(), rec.as_timestamped(), rec.as_key_timestamped());
            }
            Err(TlvError::Incomplete { .. }) => {}
            Err(_) => tail_ok = false,
        }
    }
    if tail_ok {
        assert_eq!(complete_prefix(data, max).unwrap(), (it.offset(), count));
    }
    let mut scratch = Vec::new();
    for rec in ExpandedRecords::new(data, &mut scratch).flatten() {
        let _ = rec.as_str();
    }
});
