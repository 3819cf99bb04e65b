//! Record values from Python: `bytes` and `bytearray` are read in place, with no copy
//! before the one into the producer's batch; other buffer objects (`memoryview`, arrays)
//! are copied once, because the buffer protocol is not part of the 3.10 stable ABI this
//! wheel is built for.

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

/// Calls `f` with the bytes of `obj` (bytes, bytearray, or any object `bytes()` accepts).
///
/// `f` must not run Python code or release the GIL: for a `bytearray` the slice points
/// into the object's own storage.
pub(crate) fn with_bytes<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    if let Ok(ba) = obj.cast::<PyByteArray>() {
        // SAFETY: the slice is used only inside `f`, which runs with the GIL held and
        // calls no Python code, so nothing can resize or free the bytearray meanwhile.
        let data = unsafe { ba.as_bytes() };
        return Ok(f(data));
    }
    if obj.is_instance_of::<pyo3::types::PyString>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "record values are bytes-like (bytes, bytearray, memoryview), not str: encode it first",
        ));
    }
    let copy = obj.py().get_type::<PyBytes>().call1((obj,))?;
    let copy = copy.cast::<PyBytes>()?;
    Ok(f(copy.as_bytes()))
}
