//! `AdminCore`: the crate's `LanceClient` (topic administration, ping) for both Python
//! flavours. Each call exists twice: blocking with the GIL released, and `*_future`,
//! run on the object's worker thread and resolved on the event loop.
//!
//! Results are plain tuples; `lnc_uring/client.py` turns them into `TopicInfo`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lnc_uring::proto::{Retention, TopicInfo};
use lnc_uring::{ConnectionConfig, Error, LanceClient};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::completion::{Build, Completer, Deliver};
use crate::errors::to_py;
use crate::worker::Worker;

/// Seconds from Python as a `Duration` (finite, not negative).
pub(crate) fn secs(s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| PyValueError::new_err(format!("invalid duration: {s} s")))
}

/// One admin request.
#[derive(Clone, Debug)]
enum Op {
    CreateTopic(String),
    EnsureTopic(String),
    CreateTopicWithRetention(String, u64, u64),
    SetRetention(u32, u64, u64),
    ListTopics,
    GetTopic(u32),
    DeleteTopic(u32),
    Ping,
    EndOffset(u32),
    Subscribe(u32, u64, u32, u64),
    Unsubscribe(u32, u64),
    CommitOffset(u32, u64, u64),
}

/// A finished request's value, converted to Python on the calling (or loop) thread.
#[derive(Debug)]
enum Value {
    Topic(TopicInfo),
    Topics(Vec<TopicInfo>),
    Retention(u32, u64, u64),
    Id(u32),
    Seconds(f64),
    Offset(u64),
    Pair(u64, u64),
    Unit,
}

type TopicTuple = (u32, String, u64, u64, Option<u64>, Option<u64>);

fn topic_tuple(t: TopicInfo) -> TopicTuple {
    (
        t.id,
        t.name,
        t.created_at,
        t.topic_epoch,
        t.max_age_secs,
        t.max_bytes,
    )
}

impl Value {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(match self {
            Value::Topic(t) => topic_tuple(t).into_pyobject(py)?.into_any().unbind(),
            Value::Topics(ts) => ts
                .into_iter()
                .map(topic_tuple)
                .collect::<Vec<_>>()
                .into_pyobject(py)?
                .into_any()
                .unbind(),
            Value::Retention(id, age, bytes) => PyTuple::new(py, [id as u64, age, bytes])?
                .into_any()
                .unbind(),
            Value::Id(id) => id.into_pyobject(py)?.into_any().unbind(),
            Value::Seconds(s) => s.into_pyobject(py)?.into_any().unbind(),
            Value::Offset(o) => o.into_pyobject(py)?.into_any().unbind(),
            Value::Pair(a, b) => (a, b).into_pyobject(py)?.into_any().unbind(),
            Value::Unit => py.None(),
        })
    }
}

/// 0 means "no limit on this axis" (the seed's default). The server reads a literal 0 as
/// "delete every closed segment", which the crate refuses.
fn retention(max_age_secs: u64, max_bytes: u64) -> Retention {
    let mut r = Retention::UNLIMITED;
    if max_age_secs > 0 {
        r = r.with_max_age(Duration::from_secs(max_age_secs));
    }
    if max_bytes > 0 {
        r = r.with_max_bytes(max_bytes);
    }
    r
}

struct State {
    client: Mutex<Option<Arc<LanceClient>>>,
}

impl State {
    fn client(&self) -> Result<Arc<LanceClient>, Error> {
        self.client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Error::Closed)
    }

    fn call(&self, op: Op) -> Result<Value, Error> {
        let c = self.client()?;
        Ok(match op {
            Op::CreateTopic(name) => Value::Topic(c.create_topic(&name)?),
            Op::EnsureTopic(name) => Value::Topic(c.ensure_topic(&name)?),
            Op::CreateTopicWithRetention(name, age, bytes) => {
                Value::Topic(c.create_topic_with_retention(&name, retention(age, bytes))?)
            }
            Op::SetRetention(id, age, bytes) => {
                let r = c.set_retention(id, retention(age, bytes))?;
                Value::Retention(r.topic_id, r.max_age_secs, r.max_bytes)
            }
            Op::ListTopics => Value::Topics(c.list_topics()?),
            Op::GetTopic(id) => Value::Topic(c.get_topic(id)?),
            Op::DeleteTopic(id) => Value::Id(c.delete_topic(id)?),
            Op::Ping => Value::Seconds(c.ping()?.as_secs_f64()),
            Op::EndOffset(id) => Value::Offset(c.end_offset(id)?),
            Op::Subscribe(topic, start, max, consumer) => {
                Value::Pair(consumer, c.subscribe(topic, consumer, start, max)?)
            }
            Op::Unsubscribe(topic, consumer) => {
                c.unsubscribe(topic, consumer)?;
                Value::Unit
            }
            Op::CommitOffset(topic, consumer, offset) => {
                Value::Pair(consumer, c.commit_offset(topic, consumer, offset)?)
            }
        })
    }
}

/// The crate's admin client, for `lnc_uring.LanceClient` and its blocking twin.
#[pyclass(frozen, module = "lnc_uring._native")]
pub(crate) struct AdminCore {
    state: Arc<State>,
    worker: Worker,
}

impl AdminCore {
    fn blocking(&self, py: Python<'_>, op: Op) -> PyResult<Py<PyAny>> {
        let state = self.state.clone();
        let v = py
            .detach(move || state.call(op))
            .map_err(|e| to_py(py, e))?;
        v.into_py(py)
    }

    fn future(&self, completer: &Completer, fut: Py<PyAny>, op: Op) -> PyResult<()> {
        let state = self.state.clone();
        self.worker.run(completer, fut, move || {
            let v = state.call(op)?;
            Ok(Box::new(Build(move |py: Python<'_>| v.into_py(py))) as Box<dyn Deliver>)
        })
    }

    fn op(name: &str, args: &Bound<'_, PyTuple>) -> PyResult<Op> {
        Ok(match name {
            "create_topic" => Op::CreateTopic(args.get_item(0)?.extract()?),
            "ensure_topic" => Op::EnsureTopic(args.get_item(0)?.extract()?),
            "create_topic_with_retention" => Op::CreateTopicWithRetention(
                args.get_item(0)?.extract()?,
                args.get_item(1)?.extract()?,
                args.get_item(2)?.extract()?,
            ),
            "set_retention" => Op::SetRetention(
                args.get_item(0)?.extract()?,
                args.get_item(1)?.extract()?,
                args.get_item(2)?.extract()?,
            ),
            "list_topics" => Op::ListTopics,
            "get_topic" => Op::GetTopic(args.get_item(0)?.extract()?),
            "delete_topic" => Op::DeleteTopic(args.get_item(0)?.extract()?),
            "ping" => Op::Ping,
            "end_offset" => Op::EndOffset(args.get_item(0)?.extract()?),
            "subscribe" => Op::Subscribe(
                args.get_item(0)?.extract()?,
                args.get_item(1)?.extract()?,
                args.get_item(2)?.extract()?,
                args.get_item(3)?.extract()?,
            ),
            "unsubscribe" => {
                Op::Unsubscribe(args.get_item(0)?.extract()?, args.get_item(1)?.extract()?)
            }
            "commit_offset" => Op::CommitOffset(
                args.get_item(0)?.extract()?,
                args.get_item(1)?.extract()?,
                args.get_item(2)?.extract()?,
            ),
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown admin call {other:?}"
                )))
            }
        })
    }
}

#[pymethods]
impl AdminCore {
    /// Connects (GIL released). Durations in seconds.
    #[staticmethod]
    fn connect(
        py: Python<'_>,
        address: String,
        connect_timeout_s: f64,
        request_timeout_s: f64,
        keepalive_interval_s: f64,
    ) -> PyResult<AdminCore> {
        let cfg = ConnectionConfig::new(address)
            .with_connect_timeout(secs(connect_timeout_s)?)
            .with_request_timeout(secs(request_timeout_s)?)
            .with_keepalive_interval(secs(keepalive_interval_s)?);
        let client = py
            .detach(move || LanceClient::with_config(cfg))
            .map_err(|e| to_py(py, e))?;
        Ok(AdminCore {
            state: Arc::new(State {
                client: Mutex::new(Some(Arc::new(client))),
            }),
            worker: Worker::new("lnc-py-admin"),
        })
    }

    /// Runs admin call `name` with `args` and returns its value (GIL released meanwhile).
    fn call(&self, py: Python<'_>, name: &str, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        let op = AdminCore::op(name, args)?;
        self.blocking(py, op)
    }

    /// Runs admin call `name` on the worker thread and resolves `fut` with its value.
    fn call_future(
        &self,
        completer: &Completer,
        fut: Py<PyAny>,
        name: &str,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let op = AdminCore::op(name, args)?;
        self.future(completer, fut, op)
    }

    /// Stops the driver thread once calls in progress are done. Idempotent.
    fn close(&self) {
        let c = self
            .state
            .client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(c);
    }
}
