//! Offset stores: the crate's `MemoryOffsetStore` and `FileOffsetStore`, under the seed
//! API's shape (`FileOffsetStore(base_dir)` serving any number of consumer names).
//!
//! A consumer given one of these keeps its offsets through the crate (committed on
//! `commit`, on auto-commit and on close, from the thread doing the work), so the event
//! loop never waits for a file sync.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lnc_uring::{Error, FileOffsetStore, MemoryOffsetStore, OffsetStore};
use pyo3::prelude::*;

use crate::errors::to_py;

/// The crate's file store, one per consumer name, opened on first use. Each holds an
/// exclusive lock on its consumer's directory for the life of this object.
#[derive(Debug)]
pub(crate) struct MultiFileStore {
    dir: PathBuf,
    stores: Mutex<HashMap<String, Arc<FileOffsetStore>>>,
}

impl MultiFileStore {
    fn store(&self, consumer: &str) -> Result<Arc<FileOffsetStore>, Error> {
        let mut map = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(consumer) {
            return Ok(s.clone());
        }
        let s = Arc::new(FileOffsetStore::open(&self.dir, consumer)?);
        map.insert(consumer.to_owned(), s.clone());
        Ok(s)
    }
}

impl OffsetStore for MultiFileStore {
    /// The crate's file, else (for migration) the seed client's `<name>_<topic_id>.offset`
    /// JSON file in the same directory.
    fn load(&self, topic_id: u32, consumer: &str) -> Result<Option<u64>, Error> {
        match self.store(consumer)?.load(topic_id, consumer)? {
            Some(o) => Ok(Some(o)),
            None => FileOffsetStore::import_python(&self.dir, consumer, topic_id),
        }
    }

    fn save(&self, topic_id: u32, consumer: &str, offset: u64) -> Result<(), Error> {
        self.store(consumer)?.save(topic_id, consumer, offset)
    }

    fn delete(&self, topic_id: u32, consumer: &str) -> Result<(), Error> {
        self.store(consumer)?.delete(topic_id, consumer)
    }

    fn list(&self) -> Result<Vec<(u32, String, u64)>, Error> {
        let stores: Vec<_> = self
            .stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut all = Vec::new();
        for s in stores {
            all.extend(s.list()?);
        }
        all.sort();
        Ok(all)
    }
}

/// Shared store methods for both Python classes (GIL released around file I/O).
fn load(
    py: Python<'_>,
    s: &Arc<dyn OffsetStore>,
    consumer: &str,
    topic_id: u32,
) -> PyResult<Option<u64>> {
    py.detach(|| s.load(topic_id, consumer))
        .map_err(|e| to_py(py, e))
}

fn save(
    py: Python<'_>,
    s: &Arc<dyn OffsetStore>,
    consumer: &str,
    topic_id: u32,
    offset: u64,
) -> PyResult<()> {
    py.detach(|| s.save(topic_id, consumer, offset))
        .map_err(|e| to_py(py, e))
}

fn delete(py: Python<'_>, s: &Arc<dyn OffsetStore>, consumer: &str, topic_id: u32) -> PyResult<()> {
    py.detach(|| s.delete(topic_id, consumer))
        .map_err(|e| to_py(py, e))
}

/// The crate's in-memory store.
#[pyclass(frozen, module = "lnc_uring._native")]
pub(crate) struct NativeMemoryOffsetStore {
    pub(crate) store: Arc<dyn OffsetStore>,
}

#[pymethods]
impl NativeMemoryOffsetStore {
    #[new]
    fn new() -> Self {
        NativeMemoryOffsetStore {
            store: Arc::new(MemoryOffsetStore::new()),
        }
    }
    fn load(&self, py: Python<'_>, consumer: &str, topic_id: u32) -> PyResult<Option<u64>> {
        load(py, &self.store, consumer, topic_id)
    }
    fn save(&self, py: Python<'_>, consumer: &str, topic_id: u32, offset: u64) -> PyResult<()> {
        save(py, &self.store, consumer, topic_id, offset)
    }
    fn delete(&self, py: Python<'_>, consumer: &str, topic_id: u32) -> PyResult<()> {
        delete(py, &self.store, consumer, topic_id)
    }
}

/// The crate's durable file store (crash-safe writes, one lock per consumer name).
#[pyclass(frozen, module = "lnc_uring._native")]
pub(crate) struct NativeFileOffsetStore {
    pub(crate) store: Arc<dyn OffsetStore>,
}

#[pymethods]
impl NativeFileOffsetStore {
    #[new]
    fn new(base_dir: PathBuf) -> PyResult<Self> {
        std::fs::create_dir_all(&base_dir)?;
        Ok(NativeFileOffsetStore {
            store: Arc::new(MultiFileStore {
                dir: base_dir,
                stores: Mutex::new(HashMap::new()),
            }),
        })
    }
    fn load(&self, py: Python<'_>, consumer: &str, topic_id: u32) -> PyResult<Option<u64>> {
        load(py, &self.store, consumer, topic_id)
    }
    fn save(&self, py: Python<'_>, consumer: &str, topic_id: u32, offset: u64) -> PyResult<()> {
        save(py, &self.store, consumer, topic_id, offset)
    }
    fn delete(&self, py: Python<'_>, consumer: &str, topic_id: u32) -> PyResult<()> {
        delete(py, &self.store, consumer, topic_id)
    }
}

/// The crate store behind either Python class, if `obj` is one.
pub(crate) fn native_store(obj: &Bound<'_, PyAny>) -> Option<Arc<dyn OffsetStore>> {
    if let Ok(m) = obj.cast::<NativeMemoryOffsetStore>() {
        return Some(m.get().store.clone());
    }
    if let Ok(f) = obj.cast::<NativeFileOffsetStore>() {
        return Some(f.get().store.clone());
    }
    None
}
