//! The native half of the `lnc_uring` Python package: thin PyO3 classes over the
//! lnc-uring crate's blocking handles. The Python modules beside it (`lnc_uring/*.py`)
//! give them the seed client's API, in an asyncio and a blocking flavour.
//!
//! Threads: every handle's driver thread belongs to the crate. This module adds at most
//! one worker thread per client object, started on its first asyncio call, for calls that
//! block in Rust (consumer polls, admin requests, flush, close). Nothing here takes the
//! GIL on a driver or worker thread: outcomes are queued in an [`completion::Inbox`] and
//! handed to Python on the event loop's thread.

mod admin;
mod buffer;
mod completion;
mod consumer;
mod errors;
mod offsets;
mod producer;
mod protocol;
mod records;
mod testkit;
mod worker;

use pyo3::prelude::*;

/// The `lnc_uring._native` extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<completion::Completer>()?;
    m.add_class::<records::TlvRecord>()?;
    m.add_class::<records::PollResult>()?;
    m.add_class::<records::RecordList>()?;
    m.add_function(wrap_pyfunction!(records::encode_records, m)?)?;
    m.add_function(wrap_pyfunction!(records::decode_records, m)?)?;
    m.add_function(wrap_pyfunction!(protocol::encode_header, m)?)?;
    m.add_function(wrap_pyfunction!(protocol::decode_header, m)?)?;
    m.add_function(wrap_pyfunction!(protocol::check_topic_name, m)?)?;
    m.add_function(wrap_pyfunction!(protocol::consumer_id, m)?)?;
    m.add_function(wrap_pyfunction!(errors::error_for_testing, m)?)?;
    m.add_class::<producer::ProducerCore>()?;
    m.add_class::<producer::BatchSend>()?;
    m.add_class::<consumer::ConsumerCore>()?;
    m.add_class::<admin::AdminCore>()?;
    m.add_class::<offsets::NativeMemoryOffsetStore>()?;
    m.add_class::<offsets::NativeFileOffsetStore>()?;
    m.add_class::<testkit::TestServer>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
