//! Consumer offset stores: where a consumer keeps its committed position.
//!
//! An offset is a byte position in a topic (the server's topics are the concatenation of raw
//! ingest payloads) and a committed offset is always a record boundary. The server keeps no
//! durable consumer state, so the client does:
//!
//! * [`MemoryOffsetStore`]: a map in memory, for tests and consumers that start over each run.
//! * [`FileOffsetStore`]: one small text file per (topic, consumer), written crash-safely and
//!   guarded by an exclusive lock held for the store's lifetime.
//! * [`consumer_id`]: a stable 64-bit id for a consumer name (FNV-1a 64).
//!
//! [`FileOffsetStore::import_rust_seed`] and [`FileOffsetStore::import_python`] read the
//! offset files of the upstream Rust and Python clients, for migration.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::hash::Hasher;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;

use crate::error::Error;

/// Where a consumer keeps its committed position (a byte offset that is always a record
/// boundary).
///
/// Implementations are shared between threads (`Send + Sync`), so every method takes `&self`.
///
/// ```
/// use lnc_uring::{MemoryOffsetStore, OffsetStore};
///
/// fn resume(store: &dyn OffsetStore, topic_id: u32, consumer: &str) -> lnc_uring::Result<u64> {
///     // No committed offset yet: start from the beginning.
///     Ok(store.load(topic_id, consumer)?.unwrap_or(0))
/// }
///
/// let store = MemoryOffsetStore::new();
/// assert_eq!(resume(&store, 1, "billing")?, 0);
/// store.save(1, "billing", 4096)?;
/// assert_eq!(resume(&store, 1, "billing")?, 4096);
/// # Ok::<(), lnc_uring::Error>(())
/// ```
pub trait OffsetStore: Send + Sync + std::fmt::Debug {
    /// The committed offset of `consumer` on `topic_id`, or `None` if nothing was ever saved
    /// (or it was deleted).
    fn load(&self, topic_id: u32, consumer: &str) -> Result<Option<u64>, Error>;

    /// Commits `offset` for `consumer` on `topic_id`, replacing any previous value. When this
    /// returns `Ok`, the offset is as durable as the store can make it.
    fn save(&self, topic_id: u32, consumer: &str, offset: u64) -> Result<(), Error>;

    /// Forgets the offset of `consumer` on `topic_id`. Deleting an offset that is not there is
    /// not an error.
    fn delete(&self, topic_id: u32, consumer: &str) -> Result<(), Error>;

    /// Every (topic_id, consumer, offset) stored, sorted by topic id and then consumer.
    fn list(&self) -> Result<Vec<(u32, String, u64)>, Error>;
}

/// A stable, documented 64-bit id for a consumer name.
///
/// The algorithm is **FNV-1a 64** over the UTF-8 bytes of `name`, with no terminator or length
/// prefix: start from the offset basis `0xcbf29ce484222325`; for each byte, XOR it into the
/// hash, then multiply by the prime `0x100000001b3` (wrapping). A result of 0 is mapped to 1,
/// so the id is never 0.
///
/// Unlike the upstream clients' ids (Rust's `DefaultHasher`, which may change between Rust
/// releases, and Python's `hash()`, which is randomised per process), this id is the same in
/// every process, version and language.
///
/// ```
/// use lnc_uring::consumer_id;
///
/// assert_eq!(consumer_id(""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(consumer_id("a"), 0xaf63_dc4c_8601_ec8c);
/// assert_eq!(consumer_id("foobar"), 0x8594_4171_f739_67e8);
/// ```
pub fn consumer_id(name: &str) -> u64 {
    let mut h = fnv::FnvHasher::default();
    // `Hasher::write` feeds the bytes as they are (`str::hash` would append a 0xff).
    h.write(name.as_bytes());
    nonzero(h.finish())
}

fn nonzero(h: u64) -> u64 {
    if h == 0 {
        1
    } else {
        h
    }
}

/// Offsets kept in memory: fast, and lost when the process exits.
///
/// ```
/// use lnc_uring::{MemoryOffsetStore, OffsetStore};
///
/// let store = MemoryOffsetStore::new();
/// assert_eq!(store.load(7, "indexer")?, None);
/// store.save(7, "indexer", 1_000)?;
/// store.save(7, "indexer", 2_500)?;
/// assert_eq!(store.load(7, "indexer")?, Some(2_500));
/// assert_eq!(store.list()?, vec![(7, "indexer".to_string(), 2_500)]);
/// store.delete(7, "indexer")?;
/// assert_eq!(store.load(7, "indexer")?, None);
/// # Ok::<(), lnc_uring::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryOffsetStore {
    offsets: Mutex<HashMap<(u32, String), u64>>,
}

impl MemoryOffsetStore {
    /// An empty store.
    pub fn new() -> MemoryOffsetStore {
        MemoryOffsetStore::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(u32, String), u64>> {
        // A panic while holding the lock cannot leave a map of integers half-updated.
        self.offsets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl OffsetStore for MemoryOffsetStore {
    fn load(&self, topic_id: u32, consumer: &str) -> Result<Option<u64>, Error> {
        Ok(self.map().get(&(topic_id, consumer.to_owned())).copied())
    }

    fn save(&self, topic_id: u32, consumer: &str, offset: u64) -> Result<(), Error> {
        self.map().insert((topic_id, consumer.to_owned()), offset);
        Ok(())
    }

    fn delete(&self, topic_id: u32, consumer: &str) -> Result<(), Error> {
        self.map().remove(&(topic_id, consumer.to_owned()));
        Ok(())
    }

    fn list(&self) -> Result<Vec<(u32, String, u64)>, Error> {
        let mut all: Vec<_> = self
            .map()
            .iter()
            .map(|((t, c), o)| (*t, c.clone(), *o))
            .collect();
        all.sort();
        Ok(all)
    }
}

/// The lock file's name inside a consumer's directory.
const LOCK_FILE: &str = ".lock";
/// Every temporary file starts with this; leftovers from a crash are removed on open.
const TMP_PREFIX: &str = ".tmp.";
/// Longest sanitized name kept whole (file names are limited to 255 bytes).
const MAX_NAME: usize = 200;

/// Offsets kept in files, one per (topic, consumer), written crash-safely, with an exclusive
/// lock so that two consumers of the same name cannot clobber one offset.
///
/// # Layout
///
/// ```text
/// <dir>/
/// └── <sanitized consumer>/
///     ├── .lock                 exclusive lock, held while the store is open (holds the pid)
///     ├── topic-1.offset        "4096\n": the offset in decimal, then a newline
///     └── topic-42.offset
/// ```
///
/// The consumer name is made safe for the file system: ASCII letters, digits, `.`, `_` and `-`
/// are kept and every other character becomes `_`. When anything was replaced, or the name is
/// empty, `.` or `..`, longer than 200 bytes, or already ends like a suffixed name (`-` and 16
/// lowercase hex digits), `-` and the 16 hex digits of [`consumer_id`] are appended (after
/// truncating to 200 bytes), so distinct names get distinct directories: `"orders"` stays
/// `orders`, `"team/orders"` becomes `team_orders-<hex>`.
///
/// # Durability
///
/// [`save`](OffsetStore::save) writes a temporary file in the consumer's directory, syncs it,
/// renames it over `topic-<id>.offset` and syncs the directory, so after a crash or power loss
/// the file holds either the old or the new offset, never a torn one. Temporary files left by
/// a crash are removed by [`open`](FileOffsetStore::open). [`delete`](OffsetStore::delete)
/// also syncs the directory.
///
/// # Errors
///
/// [`load`](OffsetStore::load) and [`list`](OffsetStore::list) fail with [`Error::Config`]
/// when an offset file does not hold a decimal `u64`, rather than pretend it is absent: a lost
/// offset would replay or skip data. Fix or delete the file (deleting it makes the consumer
/// start from its configured start position). Each method fails with [`Error::Config`] when
/// asked about a consumer other than the one the store was opened for.
///
/// ```
/// use lnc_uring::{FileOffsetStore, OffsetStore};
///
/// let dir = std::env::temp_dir().join(format!("lnc-offset-doc-{}", std::process::id()));
/// {
///     let store = FileOffsetStore::open(&dir, "billing")?;
///     assert_eq!(store.load(3, "billing")?, None);
///     store.save(3, "billing", 8_192)?;
///
///     // A second store for the same consumer is refused while the first is open.
///     assert!(FileOffsetStore::open(&dir, "billing").is_err());
/// }
/// // Dropping the store released the lock; the offset survived.
/// let store = FileOffsetStore::open(&dir, "billing")?;
/// assert_eq!(store.load(3, "billing")?, Some(8_192));
/// assert_eq!(
///     std::fs::read_to_string(store.consumer_dir().join("topic-3.offset"))?,
///     "8192\n"
/// );
/// # drop(store);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FileOffsetStore {
    dir: PathBuf,
    consumer: String,
    consumer_dir: PathBuf,
    /// Holds the exclusive lock; closing the file on drop releases it.
    _lock: File,
    /// Makes temporary file names unique among concurrent saves of this store.
    tmp_seq: AtomicU64,
}

impl FileOffsetStore {
    /// Opens (creating it and its parents) `dir` for the consumer named `consumer`, and takes
    /// an exclusive lock for the store's lifetime: a second open of the same (`dir`,
    /// `consumer`), in this or another process, fails with [`Error::Config`] ("… is locked by
    /// another consumer") instead of two consumers clobbering one offset. The lock is an
    /// advisory file lock (`flock` on Linux) on `<dir>/<sanitized consumer>/.lock`; it is
    /// released when the store is dropped or the process dies.
    ///
    /// Temporary files left by a crash during [`save`](OffsetStore::save) are removed.
    /// Other I/O failures are [`Error::Io`].
    ///
    /// See the [type documentation](FileOffsetStore) for an example.
    pub fn open(dir: impl AsRef<Path>, consumer: &str) -> Result<FileOffsetStore, Error> {
        let dir = dir.as_ref().to_path_buf();
        let consumer_dir = dir.join(sanitize(consumer));
        create_dirs_durably(&consumer_dir)?;

        let lock_path = consumer_dir.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)?;
        let locked = lock.try_lock();
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                let holder = match holder.trim().parse::<u32>() {
                    Ok(pid) => format!(" (pid {pid})"),
                    Err(_) => String::new(),
                };
                return Err(Error::Config(format!(
                    "offset store {} is locked by another consumer{holder}: a FileOffsetStore \
                     for {consumer:?} is already open in this or another process",
                    consumer_dir.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(e.into()),
        }
        // For the error message of whoever tries next; not needed for correctness.
        lock.set_len(0)?;
        writeln!(lock, "{}", std::process::id())?;

        // We hold the lock, so no one else is writing: temporary files are leftovers.
        for entry in fs::read_dir(&consumer_dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                match fs::remove_file(entry.path()) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
        }

        Ok(FileOffsetStore {
            dir,
            consumer: consumer.to_owned(),
            consumer_dir,
            _lock: lock,
            tmp_seq: AtomicU64::new(0),
        })
    }

    /// The directory given to [`open`](FileOffsetStore::open).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The consumer this store was opened for.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The consumer's own directory, `<dir>/<sanitized consumer>`, which holds its offset files.
    pub fn consumer_dir(&self) -> &Path {
        &self.consumer_dir
    }

    /// Reads an offset written by the upstream Rust client's `LockFileOffsetStore`, for
    /// migration: `<dir>/<consumer_name>/topic-<topic_id>-consumer-<consumer_numeric_id>.offset`,
    /// holding the offset in decimal and a newline. `consumer_name` is used unchanged, as
    /// upstream does; `consumer_numeric_id` is the id the upstream consumer used (its
    /// `DefaultHasher` hash of the name, or the id given to it).
    ///
    /// A missing file is `Ok(None)`; a file that does not hold a decimal `u64` is
    /// [`Error::Config`]. Stop the upstream consumer first: its lock is not honoured.
    ///
    /// ```
    /// use lnc_uring::{FileOffsetStore, OffsetStore};
    ///
    /// let base = std::env::temp_dir().join(format!("lnc-import-rs-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(base.join("old/svc"))?;
    /// std::fs::write(base.join("old/svc/topic-5-consumer-77.offset"), "1234\n")?;
    ///
    /// let store = FileOffsetStore::open(base.join("new"), "svc")?;
    /// if let Some(off) = FileOffsetStore::import_rust_seed(base.join("old"), "svc", 5, 77)? {
    ///     store.save(5, "svc", off)?;
    /// }
    /// assert_eq!(store.load(5, "svc")?, Some(1234));
    /// # drop(store);
    /// # std::fs::remove_dir_all(&base)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn import_rust_seed(
        dir: impl AsRef<Path>,
        consumer_name: &str,
        topic_id: u32,
        consumer_numeric_id: u64,
    ) -> Result<Option<u64>, Error> {
        let path = dir.as_ref().join(consumer_name).join(format!(
            "topic-{topic_id}-consumer-{consumer_numeric_id}.offset"
        ));
        match read_optional(&path)? {
            None => Ok(None),
            Some(text) => parse_offset(&text)
                .map(Some)
                .map_err(|why| corrupt(&path, &why)),
        }
    }

    /// Reads an offset written by the upstream Python client's `FileOffsetStore`, for
    /// migration: `<dir>/<name>_<topic_id>.offset`, where `<name>` is `consumer_name` with
    /// every `/` and `\` replaced by `_`, holding JSON
    /// `{"consumer": "<consumer_name>", "topic_id": <topic_id>, "offset": <offset>}`.
    ///
    /// A missing file is `Ok(None)`. A file that is not such JSON, has no non-negative integer
    /// `offset`, or names another consumer or topic (`"a/b"` and `"a_b"` share one file in
    /// that layout) is [`Error::Config`]. (The Python client itself returns `None` for a
    /// corrupt file.) Stop the Python consumer first.
    ///
    /// ```
    /// use lnc_uring::FileOffsetStore;
    ///
    /// let dir = std::env::temp_dir().join(format!("lnc-import-py-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// std::fs::write(
    ///     dir.join("my-app_3.offset"),
    ///     r#"{"consumer": "my-app", "topic_id": 3, "offset": 42000}"#,
    /// )?;
    /// assert_eq!(FileOffsetStore::import_python(&dir, "my-app", 3)?, Some(42000));
    /// assert_eq!(FileOffsetStore::import_python(&dir, "my-app", 4)?, None);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn import_python(
        dir: impl AsRef<Path>,
        consumer_name: &str,
        topic_id: u32,
    ) -> Result<Option<u64>, Error> {
        #[derive(Deserialize)]
        struct PythonOffset {
            consumer: Option<String>,
            topic_id: Option<u64>,
            offset: u64,
        }

        let safe = consumer_name.replace(['/', '\\'], "_");
        let path = dir.as_ref().join(format!("{safe}_{topic_id}.offset"));
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        let rec: PythonOffset = serde_json::from_str(&text)
            .map_err(|e| corrupt(&path, &format!("not a Python offset record: {e}")))?;
        if let Some(c) = rec.consumer.as_deref().filter(|c| *c != consumer_name) {
            return Err(corrupt(
                &path,
                &format!("it belongs to consumer {c:?}, not {consumer_name:?}"),
            ));
        }
        if let Some(t) = rec.topic_id.filter(|t| *t != u64::from(topic_id)) {
            return Err(corrupt(
                &path,
                &format!("it belongs to topic {t}, not {topic_id}"),
            ));
        }
        Ok(Some(rec.offset))
    }

    fn check_consumer(&self, consumer: &str) -> Result<(), Error> {
        if consumer == self.consumer {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "offset store {} was opened for consumer {:?}, not {consumer:?}",
                self.consumer_dir.display(),
                self.consumer
            )))
        }
    }

    fn offset_path(&self, topic_id: u32) -> PathBuf {
        self.consumer_dir.join(offset_file_name(topic_id))
    }
}

impl OffsetStore for FileOffsetStore {
    fn load(&self, topic_id: u32, consumer: &str) -> Result<Option<u64>, Error> {
        self.check_consumer(consumer)?;
        let path = self.offset_path(topic_id);
        match read_optional(&path)? {
            None => Ok(None),
            Some(text) => parse_offset(&text)
                .map(Some)
                .map_err(|why| corrupt(&path, &why)),
        }
    }

    fn save(&self, topic_id: u32, consumer: &str, offset: u64) -> Result<(), Error> {
        self.check_consumer(consumer)?;
        let target = self.offset_path(topic_id);
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .consumer_dir
            .join(format!("{TMP_PREFIX}{}.{seq}", offset_file_name(topic_id)));

        let written = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(format!("{offset}\n").as_bytes())?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &target)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        // Make the rename itself durable.
        sync_dir(&self.consumer_dir)?;
        Ok(())
    }

    fn delete(&self, topic_id: u32, consumer: &str) -> Result<(), Error> {
        self.check_consumer(consumer)?;
        match fs::remove_file(self.offset_path(topic_id)) {
            Ok(()) => {
                sync_dir(&self.consumer_dir)?;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn list(&self) -> Result<Vec<(u32, String, u64)>, Error> {
        let mut all = Vec::new();
        for entry in fs::read_dir(&self.consumer_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(topic_id) = name.to_str().and_then(parse_offset_file_name) else {
                continue;
            };
            let path = entry.path();
            // A file deleted since read_dir is simply no longer there.
            if let Some(text) = read_optional(&path)? {
                let offset = parse_offset(&text).map_err(|why| corrupt(&path, &why))?;
                all.push((topic_id, self.consumer.clone(), offset));
            }
        }
        all.sort();
        Ok(all)
    }
}

/// `topic-<id>.offset`.
fn offset_file_name(topic_id: u32) -> String {
    format!("topic-{topic_id}.offset")
}

/// The topic id of a file named exactly like [`offset_file_name`] writes it.
fn parse_offset_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("topic-")?.strip_suffix(".offset")?;
    let id: u32 = digits.parse().ok()?;
    (offset_file_name(id) == name).then_some(id)
}

/// The file-system-safe directory name of a consumer; see [`FileOffsetStore`].
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let suffix = out != name
        || name.is_empty()
        || name == "."
        || name == ".."
        || out.len() > MAX_NAME
        || looks_suffixed(&out);
    if suffix {
        // `out` is ASCII, so any byte index is a char boundary.
        out.truncate(MAX_NAME);
        out.push_str(&format!("-{:016x}", consumer_id(name)));
    }
    out
}

/// Whether `s` ends with `-` and 16 lowercase hex digits, like a suffixed name.
fn looks_suffixed(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 17
        && b[b.len() - 17] == b'-'
        && b[b.len() - 16..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// The offset in a decimal text file: ASCII digits, surrounding ASCII whitespace allowed.
fn parse_offset(text: &str) -> Result<u64, String> {
    let t = text.trim_ascii();
    if t.is_empty() {
        return Err("the file is empty".to_owned());
    }
    if !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{:?} is not a decimal offset", truncate(t, 40)));
    }
    t.parse::<u64>()
        .map_err(|_| format!("{:?} does not fit in a u64", truncate(t, 40)))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn corrupt(path: &Path, why: &str) -> Error {
    Error::Config(format!(
        "offset file {} is corrupt ({why}); fix or delete it (deleting it restarts the consumer \
         from its start position)",
        path.display()
    ))
}

/// The file's text, or `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(
            String::from_utf8(bytes).map_err(|_| corrupt(path, "not UTF-8 text"))?,
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Makes the entries of `dir` (creations, renames, removals) durable.
/// Creates `dir` and any missing parents, and makes each new directory's entry durable
/// (an fsync of the parent that holds it), so a crash cannot lose the path to offsets
/// that were saved and synced inside it.
/// Returns the directories it synced.
fn create_dirs_durably(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.is_dir() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => break,
        }
    }
    fs::create_dir_all(dir)?;
    // Top down: each parent now exists and holds the entry of the next.
    let mut synced = Vec::with_capacity(missing.len());
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
        synced.push(parent.to_path_buf());
    }
    Ok(synced)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_directory_created_for_a_store_is_made_durable() {
        let base = std::env::temp_dir().join(format!("lnc-offsets-dirs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let deep = base.join("a").join("b").join("consumer");
        let synced = create_dirs_durably(&deep).unwrap();
        // The entries of a, b and consumer live in base, a and b: all three synced.
        assert_eq!(
            synced,
            [base.clone(), base.join("a"), base.join("a").join("b")]
        );
        assert!(deep.is_dir());
        assert!(
            create_dirs_durably(&deep).unwrap().is_empty(),
            "nothing new"
        );
        fs::remove_dir_all(&base).unwrap();
    }

    /// FNV-1a 64 written out, to check the crate's hasher is fed the bytes unchanged.
    fn reference_fnv1a64(bytes: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }

    #[test]
    fn consumer_id_vectors() {
        assert_eq!(consumer_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(consumer_id("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(consumer_id("foobar"), 0x8594_4171_f739_67e8);
        for name in ["", "a", "my-app", "team/orders", "日本語", "a b c"] {
            assert_eq!(
                consumer_id(name),
                reference_fnv1a64(name.as_bytes()),
                "{name}"
            );
        }
        assert_eq!(nonzero(0), 1);
        assert_eq!(nonzero(7), 7);
    }

    #[test]
    fn sanitize_rules() {
        assert_eq!(sanitize("orders"), "orders");
        assert_eq!(sanitize("my-app_2.v1"), "my-app_2.v1");
        let id = |n: &str| format!("{:016x}", consumer_id(n));
        assert_eq!(
            sanitize("team/orders"),
            format!("team_orders-{}", id("team/orders"))
        );
        assert_eq!(sanitize(""), format!("-{}", id("")));
        assert_eq!(sanitize("."), format!(".-{}", id(".")));
        assert_eq!(sanitize(".."), format!("..-{}", id("..")));
        assert_eq!(sanitize("é"), format!("_-{}", id("é")));
        // A name that already looks suffixed is suffixed again, so it cannot collide with the
        // sanitized form of another name.
        let other = sanitize("a b");
        assert_eq!(other, format!("a_b-{}", id("a b")));
        assert_ne!(sanitize(&other), other);
        // Long names are truncated and suffixed.
        let long = "x".repeat(300);
        let s = sanitize(&long);
        assert_eq!(s.len(), MAX_NAME + 17);
        assert!(s.ends_with(&id(&long)));
    }

    #[test]
    fn offset_file_names() {
        assert_eq!(parse_offset_file_name("topic-0.offset"), Some(0));
        assert_eq!(
            parse_offset_file_name("topic-4294967295.offset"),
            Some(u32::MAX)
        );
        for bad in [
            "topic-.offset",
            "topic-01.offset",
            "topic-+1.offset",
            "topic-4294967296.offset",
            "topic-1.offset.tmp",
            ".tmp.topic-1.offset.0",
            ".lock",
            "topic-1-consumer-2.offset",
        ] {
            assert_eq!(parse_offset_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn offset_text() {
        assert_eq!(parse_offset("0\n"), Ok(0));
        assert_eq!(parse_offset("  42 \r\n"), Ok(42));
        assert_eq!(parse_offset(&format!("{}\n", u64::MAX)), Ok(u64::MAX));
        for bad in [
            "",
            "\n",
            "-1",
            "+1",
            "1 2",
            "12a",
            "18446744073709551616",
            "{}",
        ] {
            assert!(parse_offset(bad).is_err(), "{bad:?}");
        }
    }
}
