//! The crate's embedded Lance-compatible server, for tests without a real server.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use lnc_uring::testkit::{Fault, TestServer as Server};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// An embedded LWP server on 127.0.0.1 (a free port unless one is given), behaving like
/// the released Lance server. Stop it with `stop()` (or use it as a context manager from
/// `lnc_uring.testkit`).
#[pyclass(frozen, module = "lnc_uring._native")]
pub(crate) struct TestServer {
    server: Mutex<Option<Server>>,
    addr: SocketAddr,
}

impl TestServer {
    fn with<T>(&self, f: impl FnOnce(&Server) -> T) -> PyResult<T> {
        let g = self.server.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .map(f)
            .ok_or_else(|| PyRuntimeError::new_err("the test server is stopped"))
    }
}

#[pymethods]
impl TestServer {
    /// Starts a server on `127.0.0.1:port` (0: any free port). `ack_delay_ms` delays
    /// every ACK (a stand-in for a real server's fsync); `discard_data` keeps no data.
    #[new]
    #[pyo3(signature = (port=0, ack_delay_ms=0, discard_data=false))]
    fn new(py: Python<'_>, port: u16, ack_delay_ms: u64, discard_data: bool) -> PyResult<Self> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let server = py.detach(|| {
            let mut b = Server::builder().addr(addr).discard_data(discard_data);
            if ack_delay_ms > 0 {
                b = b.ack_policy(lnc_uring::testkit::AckPolicy::Delayed(
                    Duration::from_millis(ack_delay_ms),
                ));
            }
            b.start()
        })?;
        let addr = server.addr();
        Ok(TestServer {
            server: Mutex::new(Some(server)),
            addr,
        })
    }

    /// `"127.0.0.1:<port>"`.
    #[getter]
    fn address(&self) -> String {
        self.addr.to_string()
    }

    /// `"127.0.0.1"`.
    #[getter]
    fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    /// The port.
    #[getter]
    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Creates a topic directly on the server; returns its id.
    fn create_topic(&self, name: &str) -> PyResult<u32> {
        self.with(|s| s.try_create_topic(name))?
            .map_err(PyRuntimeError::new_err)
    }

    /// Every byte stored in a topic, as the server keeps it.
    fn topic_bytes<'py>(&self, py: Python<'py>, topic_id: u32) -> PyResult<Bound<'py, PyBytes>> {
        let b = self.with(|s| s.topic_bytes(topic_id))?;
        Ok(PyBytes::new(py, &b))
    }

    /// The size of a topic's log in bytes.
    fn topic_size(&self, topic_id: u32) -> PyResult<u64> {
        self.with(|s| s.topic_size(topic_id))
    }

    /// Makes the server refuse the next ingest (after `after` more) with error `text`,
    /// e.g. `"Unknown topic"` or `"Authentication required"`.
    #[pyo3(signature = (text, after=0))]
    fn reject_ingest(&self, text: &str, after: u32) -> PyResult<()> {
        self.with(|s| s.faults().inject(Fault::reject_ingest(text).after(after)))
    }

    /// Stops reading from clients until `resume_reads` (their sends back up).
    fn pause_reads(&self) -> PyResult<()> {
        self.with(|s| s.faults().inject(Fault::PauseReads))
    }

    /// Resumes reading after `pause_reads`.
    fn resume_reads(&self) -> PyResult<()> {
        self.with(|s| s.faults().resume_reads())
    }

    /// Counters: connections, frames, ACKs, errors, bytes.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.with(|s| s.stats())?;
        let d = PyDict::new(py);
        d.set_item("connections_accepted", s.connections_accepted)?;
        d.set_item("connections_open", s.connections_open)?;
        d.set_item("ingest_frames", s.ingest_frames)?;
        d.set_item("ingest_bytes", s.ingest_bytes)?;
        d.set_item("control_frames", s.control_frames)?;
        d.set_item("acks_sent", s.acks_sent)?;
        d.set_item("errors_sent", s.errors_sent)?;
        Ok(d)
    }

    /// Stops the server (idempotent).
    fn stop(&self, py: Python<'_>) {
        let s = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(s) = s {
            py.detach(move || s.stop());
        }
    }

    /// Whether the server is running.
    #[getter]
    fn running(&self) -> bool {
        self.server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}
