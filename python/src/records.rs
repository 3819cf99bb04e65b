//! TLV records (`TlvRecord`, `encode_records`, `decode_records`) and poll results, built
//! on the crate's `proto` encoders and decoders.

use lnc_uring::proto::{self, Record, RecordIter, RecordType, TLV_HEADER_LEN};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple, PyType};

use crate::buffer::with_bytes;

/// One TLV record: a type byte and a value (`type u8 | length u32 LE | value`).
///
/// The same class as the seed client's `TlvRecord`: construct it with
/// `TlvRecord(record_type, value)` or the helpers `raw`, `json`, `key_value`,
/// `timestamped`, `null`; read it back with `as_key_value` / `as_timestamped`.
#[pyclass(module = "lnc_uring", name = "TlvRecord", freelist = 1024)]
pub(crate) struct TlvRecord {
    /// The record type byte (see `RecordType`).
    #[pyo3(get, set)]
    pub(crate) record_type: u8,
    /// The value (bytes).
    #[pyo3(get, set)]
    pub(crate) value: Py<PyAny>,
}

fn tlv_err(e: proto::TlvError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

impl TlvRecord {
    fn new_bytes(py: Python<'_>, record_type: u8, value: &[u8]) -> TlvRecord {
        TlvRecord {
            record_type,
            value: PyBytes::new(py, value).into_any().unbind(),
        }
    }

    /// Appends the encoded record to `out`.
    fn encode_into(&self, py: Python<'_>, out: &mut Vec<u8>) -> PyResult<()> {
        with_bytes(self.value.bind(py), |v| {
            Record::new(RecordType(self.record_type), v).encode(out)
        })?
        .map_err(tlv_err)
    }
}

#[pymethods]
impl TlvRecord {
    #[new]
    #[pyo3(signature = (record_type, value))]
    fn py_new(record_type: u8, value: Py<PyAny>) -> TlvRecord {
        TlvRecord { record_type, value }
    }

    /// Encoded size: 5 header bytes plus the value.
    #[getter]
    fn total_size(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(TLV_HEADER_LEN + self.value.bind(py).len()?)
    }

    /// The record's wire bytes.
    fn encode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::new();
        self.encode_into(py, &mut out)?;
        Ok(PyBytes::new(py, &out))
    }

    /// A RawData (0x01) record.
    #[classmethod]
    fn raw(_cls: &Bound<'_, PyType>, data: Py<PyAny>) -> TlvRecord {
        TlvRecord {
            record_type: RecordType::RAW_DATA.0,
            value: data,
        }
    }

    /// A JSON (0x02) record from already-encoded JSON bytes.
    #[classmethod]
    fn json(_cls: &Bound<'_, PyType>, data: Py<PyAny>) -> TlvRecord {
        TlvRecord {
            record_type: RecordType::JSON.0,
            value: data,
        }
    }

    /// A KeyValue (0x10) record: `key_len u16 LE · key (UTF-8) · value`.
    #[classmethod]
    fn key_value(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        key: &str,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<TlvRecord> {
        let mut out = Vec::new();
        with_bytes(value, |v| {
            proto::encode_key_value(&mut out, key.as_bytes(), v)
        })?
        .map_err(tlv_err)?;
        Ok(TlvRecord::new_bytes(
            py,
            RecordType::KEY_VALUE.0,
            &out[TLV_HEADER_LEN..],
        ))
    }

    /// A Timestamped (0x11) record: `timestamp_ns u64 LE · data`.
    #[classmethod]
    fn timestamped(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        timestamp_ns: u64,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<TlvRecord> {
        let mut out = Vec::new();
        with_bytes(data, |v| {
            proto::encode_timestamped(&mut out, timestamp_ns, v)
        })?
        .map_err(tlv_err)?;
        Ok(TlvRecord::new_bytes(
            py,
            RecordType::TIMESTAMPED.0,
            &out[TLV_HEADER_LEN..],
        ))
    }

    /// A Null (0xFF) record. Avoid it on a released server: its crash recovery misreads
    /// type 0xFF (see the package documentation).
    #[classmethod]
    fn null(_cls: &Bound<'_, PyType>, py: Python<'_>) -> TlvRecord {
        TlvRecord::new_bytes(py, RecordType::NULL.0, b"")
    }

    /// `(key, value)` of a KeyValue record; `("", value)` when the value is too short.
    fn as_key_value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let v = self.value.bind(py);
        with_bytes(v, |b| {
            match Record::new(RecordType::KEY_VALUE, b).as_key_value() {
                Ok((k, val)) => (
                    PyString::new(py, &String::from_utf8_lossy(k)).into_any(),
                    PyBytes::new(py, val).into_any(),
                ),
                Err(_) => (
                    PyString::new(py, "").into_any(),
                    PyBytes::new(py, b).into_any(),
                ),
            }
        })
        .and_then(|t| PyTuple::new(py, [t.0, t.1]))
    }

    /// `(timestamp_ns, data)` of a Timestamped record; `(0, value)` when too short.
    fn as_timestamped<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let v = self.value.bind(py);
        with_bytes(v, |b| {
            match Record::new(RecordType::TIMESTAMPED, b).as_timestamped() {
                Ok((ts, data)) => (ts, PyBytes::new(py, data)),
                Err(_) => (0, PyBytes::new(py, b)),
            }
        })
        .and_then(|t| t.into_pyobject(py))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(other) = other.cast::<TlvRecord>() else {
            return Ok(false);
        };
        let other = other.borrow();
        Ok(
            self.record_type == other.record_type
                && self.value.bind(py).eq(other.value.bind(py))?,
        )
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "TlvRecord(record_type={}, value={})",
            self.record_type,
            self.value.bind(py).repr()?
        ))
    }
}

/// Encodes records back to back into one `bytes` (one allocation).
#[pyfunction]
pub(crate) fn encode_records<'py>(
    py: Python<'py>,
    records: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = Vec::new();
    for r in records.try_iter()? {
        let r = r?;
        let r = r.cast::<TlvRecord>()?;
        r.borrow().encode_into(py, &mut out)?;
    }
    Ok(PyBytes::new(py, &out))
}

/// Decodes packed records; stops at a truncated or malformed tail, like the seed client.
#[pyfunction]
#[pyo3(signature = (payload, expected_count=None))]
pub(crate) fn decode_records<'py>(
    py: Python<'py>,
    payload: &Bound<'py, PyAny>,
    expected_count: Option<usize>,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    with_bytes(payload, |data| -> PyResult<()> {
        let limit = expected_count.unwrap_or(usize::MAX);
        for (i, r) in RecordIter::new(data).enumerate() {
            if i >= limit {
                break;
            }
            let Ok(r) = r else { break };
            list.append(TlvRecord::new_bytes(py, r.record_type.0, r.value))?;
        }
        Ok(())
    })??;
    Ok(list)
}

/// The records of one poll, created as Python objects only when first used: `len()`
/// costs nothing, and the first iteration or index builds every `TlvRecord` in one go
/// (one `bytes` per value). Behaves as a read-only list.
#[pyclass(module = "lnc_uring", name = "RecordList", frozen, sequence)]
pub(crate) struct RecordList {
    /// The poll's bytes, and the expanded values of compressed batches (if any).
    data: Py<PyBytes>,
    aux: Option<Py<PyBytes>>,
    /// (in aux, record type, start, length) of each record.
    index: Vec<(bool, u8, usize, usize)>,
    list: PyOnceLock<Py<PyList>>,
}

impl RecordList {
    fn list<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyList>> {
        self.list
            .get_or_try_init(py, || {
                let data = self.data.bind(py).as_bytes();
                let aux = self
                    .aux
                    .as_ref()
                    .map(|a| a.bind(py).as_bytes())
                    .unwrap_or(&[]);
                let list = PyList::empty(py);
                for &(in_aux, ty, start, len) in &self.index {
                    let buf = if in_aux { aux } else { data };
                    list.append(TlvRecord::new_bytes(py, ty, &buf[start..start + len]))?;
                }
                Ok::<_, PyErr>(list.unbind())
            })
            .map(|l| l.bind(py))
    }
}

#[pymethods]
impl RecordList {
    fn __len__(&self) -> usize {
        self.index.len()
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        idx: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.list(py)?.as_any().get_item(idx)
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.list(py)?.as_any().try_iter()?.into_any())
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.list(py)?.as_any().eq(other)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.list(py)?.repr()?.to_string())
    }
}

/// What one poll read: whole records, and where they sit in the topic's log.
///
/// Same fields as the seed client's `PollResult`. Unlike the seed, `lag` is real (the
/// bytes between `end_offset` and the end of the log as last seen) and records cut by a
/// fetch boundary are completed by the next fetch, never dropped.
#[pyclass(module = "lnc_uring", name = "PollResult", frozen)]
pub(crate) struct PollResult {
    /// The raw bytes of the records (TLV-encoded), one `bytes` for the whole poll.
    #[pyo3(get)]
    data: Py<PyBytes>,
    /// The records, in order (compressed batches expanded): a read-only list.
    #[pyo3(get)]
    records: Py<RecordList>,
    /// Log offset of the first record.
    #[pyo3(get)]
    start_offset: u64,
    /// Log offset after the last record: the consumer's new position.
    #[pyo3(get)]
    end_offset: u64,
    /// End of the log as last seen (`end_offset + lag`).
    #[pyo3(get)]
    high_water_mark: u64,
    /// Number of records.
    #[pyo3(get)]
    record_count: usize,
}

impl PollResult {
    /// Converts the crate's poll result: one copy of its bytes; record objects are made
    /// when first used.
    pub(crate) fn from_native(
        py: Python<'_>,
        mut r: lnc_uring::PollResult,
    ) -> PyResult<PollResult> {
        let data = PyBytes::new(py, r.bytes()).unbind();
        let (start, end, lag) = (r.start_offset(), r.end_offset(), r.lag());
        let base = r.bytes().as_ptr() as usize;
        let size = r.bytes().len();
        let mut index = Vec::new();
        let mut aux = Vec::new();
        for rec in r.records() {
            let rec =
                rec.map_err(|e| crate::errors::to_py(py, lnc_uring::Error::InvalidRecord(e)))?;
            let at = rec.value.as_ptr() as usize;
            let len = rec.value.len();
            if at >= base && at + len <= base + size {
                index.push((false, rec.record_type.0, at - base, len));
            } else {
                // A value expanded from a compressed batch lives in a scratch buffer.
                index.push((true, rec.record_type.0, aux.len(), len));
                aux.extend_from_slice(rec.value);
            }
        }
        let aux = (!aux.is_empty()).then(|| PyBytes::new(py, &aux).unbind());
        let count = index.len();
        let records = Py::new(
            py,
            RecordList {
                data: data.clone_ref(py),
                aux,
                index,
                list: PyOnceLock::new(),
            },
        )?;
        Ok(PollResult {
            record_count: count,
            data,
            records,
            start_offset: start,
            end_offset: end,
            high_water_mark: end + lag,
        })
    }
}
#[pymethods]
impl PollResult {
    /// Bytes between this result's end and the end of the log as last seen.
    #[getter]
    fn lag(&self) -> u64 {
        self.high_water_mark - self.end_offset
    }

    /// Whether no bytes were read.
    #[getter]
    fn is_empty(&self, py: Python<'_>) -> bool {
        self.data.bind(py).as_bytes().is_empty()
    }

    fn __len__(&self) -> usize {
        self.record_count
    }

    fn __repr__(&self) -> String {
        format!(
            "PollResult(records={}, start_offset={}, end_offset={}, lag={})",
            self.record_count,
            self.start_offset,
            self.end_offset,
            self.high_water_mark - self.end_offset
        )
    }
}
