//! Header encoding and name checks from the crate's `proto` module, for the seed API's
//! `LwpHeader` and `validate_topic_name`.

use lnc_uring::proto::{Checksum, Flags, Header, HEADER_LEN};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::buffer::with_bytes;

/// Encodes a 44-byte header (IEEE CRC-32 of the first 8 bytes, as every released server).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_header<'py>(
    py: Python<'py>,
    flags: u8,
    batch_id: u64,
    timestamp_ns: u64,
    record_count: u32,
    payload_length: u32,
    payload_crc: u32,
    topic_id: u32,
) -> Bound<'py, PyBytes> {
    let h = Header {
        flags: Flags::from_bits(flags),
        batch_id,
        timestamp_ns,
        record_count,
        payload_length,
        payload_crc,
        topic_id,
    };
    PyBytes::new(py, &h.to_bytes(Checksum::Ieee))
}

/// `LwpHeader` fields in declaration order.
type HeaderFields = (u8, u8, u32, u64, u64, u32, u32, u32, u32);

/// Decodes and validates a header: `(version, flags, header_crc, batch_id, timestamp_ns,
/// record_count, payload_length, payload_crc, topic_id)`; raises `ValueError` (wrapped by
/// the Python side into `InvalidFrameError`) for a short buffer, bad magic or bad CRC.
#[pyfunction]
pub(crate) fn decode_header(buf: &Bound<'_, PyAny>) -> PyResult<HeaderFields> {
    with_bytes(buf, |b| {
        let h =
            Header::decode(b, Checksum::Ieee).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let crc = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let version = b[4];
        debug_assert!(b.len() >= HEADER_LEN);
        Ok((
            version,
            h.flags.bits(),
            crc,
            h.batch_id,
            h.timestamp_ns,
            h.record_count,
            h.payload_length,
            h.payload_crc,
            h.topic_id,
        ))
    })?
}

/// The crate's topic-name check: `None` when valid, else the reason.
#[pyfunction]
pub(crate) fn check_topic_name(name: &str) -> Option<&'static str> {
    lnc_uring::proto::validate_topic_name(name).err()
}

/// The stable consumer id of a name (FNV-1a 64), as sent to the server.
#[pyfunction]
pub(crate) fn consumer_id(name: &str) -> u64 {
    lnc_uring::consumer_id(name)
}
