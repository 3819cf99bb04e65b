//! Topics, their byte logs, and consumer positions: the testkit's model of the server's
//! `TopicRegistry`, segment writers and `SubscriptionManager`.
//!
//! A topic's data is a list of segments; offsets are byte positions in their
//! concatenation (docs/protocol.md §7.2). Ingest payloads are appended verbatim (§7.1). The
//! last segment is the active one; [`State::close_active_segments`] (called on restart,
//! as the server closes the active segment during startup recovery, §7.1) closes it,
//! and [`State::run_retention`] deletes closed segments exactly as the server's
//! retention cycle does (§7.8), shifting every later offset down.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::proto::{validate_topic_name, Retention, TopicInfo};

/// Where topic data lives.
#[derive(Clone, Debug)]
pub(crate) enum StoreMode {
    /// In memory; kept across restarts of the same [`super::TestServer`].
    Memory,
    /// Nothing kept: offsets advance, reads of data fail (see `discard_data`).
    Discard,
    /// Files under this directory, laid out like the server's `data/segments/`.
    Dir(PathBuf),
}

/// What a fetch produced (docs/protocol.md §7.3).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FetchOutcome {
    /// A FetchResponse; the data is in the caller's buffer.
    Data {
        /// `start + len`, or the size for the tail sentinel.
        next_offset: u64,
    },
    /// CatchingUp with this size.
    CatchingUp(u64),
    /// An ErrorResponse with this text.
    Error(String),
}

/// The result of one ingest against the registry (docs/protocol.md §4.2 steps 3–5).
#[derive(Debug)]
pub(crate) enum IngestOutcome {
    /// Appended; the file to fsync before the ACK, when storage is on disk.
    Stored(Option<Arc<File>>),
    /// `payload_length == 0`: nothing written, nothing answered (§4.4).
    Empty,
    /// The topic does not exist.
    UnknownTopic,
    /// The write failed: the server ACKs the prefix and closes (§4.7).
    Failed,
}

/// What a retention cycle deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionRun {
    /// Closed segments deleted.
    pub segments_deleted: u64,
    /// Bytes they held; every later offset of their topic moved down by this much.
    pub bytes_deleted: u64,
}

#[derive(Debug)]
enum Body {
    Mem(Vec<u8>),
    Discard,
    File { path: PathBuf, file: Arc<File> },
}

#[derive(Debug)]
struct Segment {
    index: u64,
    start_ns: u64,
    /// `None` while active.
    end_ns: Option<u64>,
    len: u64,
    body: Body,
}

/// One topic's byte log.
#[derive(Debug)]
struct Log {
    segments: Vec<Segment>,
    /// Directory of the segment files when storage is on disk.
    dir: Option<PathBuf>,
    discard: bool,
    next_index: u64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn segment_name(index: u64, start_ns: u64, end_ns: Option<u64>) -> String {
    // docs/protocol.md §7.1: `{start_index}_{start_ts_ns}.lnc`, closed `…-{end_ts_ns}.lnc`.
    match end_ns {
        None => format!("{index}_{start_ns}.lnc"),
        Some(end) => format!("{index}_{start_ns}-{end}.lnc"),
    }
}

fn parse_segment_name(name: &str) -> Option<(u64, u64, Option<u64>)> {
    let stem = name.strip_suffix(".lnc")?;
    let (start, end) = match stem.split_once('-') {
        Some((s, e)) => (s, Some(e.parse().ok()?)),
        None => (stem, None),
    };
    let (index, ts) = start.split_once('_')?;
    Some((index.parse().ok()?, ts.parse().ok()?, end))
}

impl Log {
    fn new(dir: Option<PathBuf>, discard: bool) -> Log {
        Log {
            segments: Vec::new(),
            dir,
            discard,
            next_index: 0,
        }
    }

    /// Loads a topic directory written by an earlier run. Active segments left by that
    /// run are closed, as the server's startup recovery closes them (docs/protocol.md §7.1).
    fn load(dir: PathBuf) -> io::Result<Log> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(parsed) = name.to_str().and_then(parse_segment_name) else {
                continue;
            };
            found.push((parsed, entry.path()));
        }
        // §7.2: ordered by start index, then start timestamp, then closed-before-active.
        found.sort_by_key(|&((index, start, end), _)| (index, start, end.is_none()));
        let mut log = Log::new(Some(dir), false);
        for ((index, start_ns, end_ns), mut path) in found {
            let end_ns = match end_ns {
                Some(end) => end,
                None => {
                    let end = now_ns().max(start_ns);
                    let closed = path.with_file_name(segment_name(index, start_ns, Some(end)));
                    fs::rename(&path, &closed)?;
                    path = closed;
                    end
                }
            };
            let file = OpenOptions::new().read(true).append(true).open(&path)?;
            let len = file.metadata()?.len();
            log.next_index = log.next_index.max(index + 1);
            log.segments.push(Segment {
                index,
                start_ns,
                end_ns: Some(end_ns),
                len,
                body: Body::File {
                    path,
                    file: Arc::new(file),
                },
            });
        }
        Ok(log)
    }

    fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    fn active(&mut self) -> io::Result<&mut Segment> {
        if self.segments.last().is_none_or(|s| s.end_ns.is_some()) {
            let index = self.next_index;
            let start_ns = now_ns();
            let body = if self.discard {
                Body::Discard
            } else if let Some(dir) = &self.dir {
                fs::create_dir_all(dir)?;
                let path = dir.join(segment_name(index, start_ns, None));
                let file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .open(&path)?;
                Body::File {
                    path,
                    file: Arc::new(file),
                }
            } else {
                Body::Mem(Vec::new())
            };
            self.next_index += 1;
            self.segments.push(Segment {
                index,
                start_ns,
                end_ns: None,
                len: 0,
                body,
            });
        }
        // Just ensured: the last segment exists and is active.
        self.segments
            .last_mut()
            .ok_or_else(|| io::Error::other("no active segment"))
    }

    /// Appends verbatim (docs/protocol.md §7.1). Returns the file to fsync, if any.
    fn append(&mut self, data: &[u8]) -> io::Result<Option<Arc<File>>> {
        let seg = self.active()?;
        let sync = match &mut seg.body {
            Body::Mem(v) => {
                v.extend_from_slice(data);
                None
            }
            Body::Discard => None,
            Body::File { file, .. } => {
                (&**file).write_all(data)?;
                Some(Arc::clone(file))
            }
        };
        seg.len += data.len() as u64;
        Ok(sync)
    }

    /// Reads up to `max` bytes from `start` across segment boundaries, never stopping at
    /// record boundaries (docs/protocol.md §7.3 step 5).
    fn read(&self, start: u64, max: usize, out: &mut Vec<u8>) -> io::Result<()> {
        let mut pos = 0u64;
        let end = start.saturating_add(max as u64);
        for seg in &self.segments {
            let seg_end = pos + seg.len;
            if seg_end > start && pos < end {
                let from = start.max(pos) - pos;
                let to = end.min(seg_end) - pos;
                let n = (to - from) as usize;
                match &seg.body {
                    Body::Mem(v) => out.extend_from_slice(&v[from as usize..to as usize]),
                    Body::Discard => {
                        return Err(io::Error::other(
                            "data not retained (testkit discard_data mode)",
                        ))
                    }
                    Body::File { file, .. } => {
                        let at = out.len();
                        out.resize(at + n, 0);
                        file.read_exact_at(&mut out[at..], from)?;
                    }
                }
            }
            pos = seg_end;
            if pos >= end {
                break;
            }
        }
        Ok(())
    }

    /// Closes the active segment, if it holds data; an empty one is dropped.
    fn close_active(&mut self) -> io::Result<()> {
        let Some(seg) = self.segments.last_mut() else {
            return Ok(());
        };
        if seg.end_ns.is_some() {
            return Ok(());
        }
        if seg.len == 0 {
            if let Some(Segment {
                body: Body::File { path, .. },
                ..
            }) = self.segments.pop()
            {
                let _ = fs::remove_file(path);
            }
            return Ok(());
        }
        let end = now_ns().max(seg.start_ns);
        if let Body::File { path, .. } = &mut seg.body {
            let closed = path.with_file_name(segment_name(seg.index, seg.start_ns, Some(end)));
            fs::rename(&*path, &closed)?;
            *path = closed;
        }
        seg.end_ns = Some(end);
        Ok(())
    }

    /// The server's `enforce_topic_retention` (docs/protocol.md §7.8): closed segments older
    /// than `max_age_secs`, then oldest closed segments while the topic (active segment
    /// included) is larger than `max_bytes`. Active segments are never deleted.
    fn retention(&mut self, r: Retention, now: u64) -> RetentionRun {
        let mut doomed = vec![false; self.segments.len()];
        // The server computes `max_age_secs * 1_000_000_000` unchecked; a release build
        // wraps, hence the advice to stay ≤ 18 446 744 073 s (§7.8). Mirror the wrap.
        let max_age_ns = r.max_age_secs.wrapping_mul(1_000_000_000);
        for (i, seg) in self.segments.iter().enumerate() {
            if let Some(end) = seg.end_ns {
                if now.saturating_sub(end) > max_age_ns {
                    doomed[i] = true;
                }
            }
        }
        let total: u64 = self
            .segments
            .iter()
            .zip(&doomed)
            .filter(|(_, d)| !**d)
            .map(|(s, _)| s.len)
            .sum();
        if total > r.max_bytes {
            let mut excess = total - r.max_bytes;
            for (i, seg) in self.segments.iter().enumerate() {
                if excess == 0 {
                    break;
                }
                if doomed[i] || seg.end_ns.is_none() {
                    continue;
                }
                doomed[i] = true;
                excess = excess.saturating_sub(seg.len);
            }
        }
        let mut run = RetentionRun::default();
        let mut i = 0;
        self.segments.retain(|seg| {
            let delete = doomed[i];
            i += 1;
            if delete {
                if let Body::File { path, .. } = &seg.body {
                    let _ = fs::remove_file(path);
                }
                run.segments_deleted += 1;
                run.bytes_deleted += seg.len;
            }
            !delete
        });
        run
    }

    fn sync_all(&self) {
        for seg in &self.segments {
            if let Body::File { file, .. } = &seg.body {
                let _ = file.sync_data();
            }
        }
    }
}

#[derive(Debug)]
struct Topic {
    id: u32,
    name: String,
    created_at: u64,
    retention: Option<Retention>,
    log: Log,
}

impl Topic {
    fn info(&self) -> TopicInfo {
        let mut info = TopicInfo::new(self.id, self.name.clone(), self.created_at);
        if let Some(r) = self.retention {
            info.max_age_secs = Some(r.max_age_secs);
            info.max_bytes = Some(r.max_bytes);
        }
        info
    }

    /// `{"created_at":…,"id":…,"name":"…","topic_epoch":1}`, optionally with the
    /// retention keys in their alphabetical places (docs/protocol.md §6.3, §6.4, §6.5, §6.16).
    fn json(&self, retention: Option<Retention>) -> String {
        let mut s = String::with_capacity(96);
        let _ = write!(s, r#"{{"created_at":{},"id":{},"#, self.created_at, self.id);
        if let Some(r) = retention {
            let _ = write!(
                s,
                r#""max_age_secs":{},"max_bytes":{},"#,
                r.max_age_secs, r.max_bytes
            );
        }
        s.push_str(r#""name":"#);
        json_string(&mut s, &self.name);
        s.push_str(r#","topic_epoch":1}"#);
        s
    }

    fn write_metadata(&self) -> io::Result<()> {
        let Some(dir) = &self.log.dir else {
            return Ok(());
        };
        let meta = serde_json::json!({
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "topic_epoch": 1,
            "retention": self.retention.map(|r| serde_json::json!({
                "max_age_secs": r.max_age_secs,
                "max_bytes": r.max_bytes,
            })),
        });
        fs::create_dir_all(dir)?;
        let tmp = dir.join("metadata.json.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(meta.to_string().as_bytes())?;
        f.sync_all()?;
        fs::rename(tmp, dir.join("metadata.json"))
    }
}

/// Appends `v` as a JSON string. Server topic names are `[A-Za-z0-9-]+`, so this never
/// escapes anything in practice; it is here so no input can produce invalid JSON.
fn json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The server's `validate_topic_name` texts (docs/protocol.md §6.4, §10), prefixed as the
/// server's `LanceError::InvalidData` displays them. Names over 255 bytes pass the
/// server's check and then fail creating their directory (§6.4), so they get the
/// `I/O error` the server would send.
fn check_name(name: &str) -> Result<(), String> {
    if validate_topic_name(name).is_ok() {
        return Ok(());
    }
    if name.is_empty() {
        return Err("Invalid data: Topic name must not be empty".into());
    }
    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        // ENAMETOOLONG, as `create_dir_all` reports it.
        return Err("I/O error: File name too long (os error 36)".into());
    }
    Err(format!(
        "Invalid data: Topic name '{name}' contains invalid characters. Only alphanumeric \
         characters (a-z, A-Z, 0-9) and dashes (-) are allowed"
    ))
}

/// Topic registry, storage and subscription tables of one server.
#[derive(Debug)]
pub(crate) struct State {
    mode: StoreMode,
    topics: BTreeMap<u32, Topic>,
    /// Topic 0: accepts writes, can never be read (docs/protocol.md §4.3).
    topic0: Log,
    next_id: u32,
    /// (topic, consumer) → current offset (docs/protocol.md §6.13).
    subscriptions: HashMap<(u32, u64), u64>,
    /// (topic, consumer) → committed offset.
    committed: HashMap<(u32, u64), u64>,
}

impl State {
    /// A registry; with on-disk storage, everything an earlier run left is loaded.
    pub(crate) fn open(mode: StoreMode) -> io::Result<State> {
        let discard = matches!(mode, StoreMode::Discard);
        let root = match &mode {
            StoreMode::Dir(d) => Some(d.join("segments")),
            _ => None,
        };
        let mut state = State {
            topic0: Log::new(root.as_ref().map(|r| r.join("0")), discard),
            mode,
            topics: BTreeMap::new(),
            next_id: 1,
            subscriptions: HashMap::new(),
            committed: HashMap::new(),
        };
        if let Some(root) = root {
            fs::create_dir_all(&root)?;
            state.load(&root)?;
        }
        Ok(state)
    }

    fn load(&mut self, root: &Path) -> io::Result<()> {
        for entry in fs::read_dir(root)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let dir = entry.path();
            let meta = dir.join("metadata.json");
            if meta.exists() {
                let v: serde_json::Value = serde_json::from_slice(&fs::read(&meta)?)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let (Some(id), Some(name)) = (v["id"].as_u64(), v["name"].as_str()) else {
                    continue;
                };
                let retention = v["retention"].as_object().map(|r| Retention {
                    max_age_secs: r["max_age_secs"].as_u64().unwrap_or(0),
                    max_bytes: r["max_bytes"].as_u64().unwrap_or(0),
                });
                let id = u32::try_from(id).unwrap_or(0);
                if id == 0 {
                    continue;
                }
                self.next_id = self.next_id.max(id.saturating_add(1));
                self.topics.insert(
                    id,
                    Topic {
                        id,
                        name: name.to_owned(),
                        created_at: v["created_at"].as_u64().unwrap_or(0),
                        retention,
                        log: Log::load(dir)?,
                    },
                );
            } else if entry.file_name() == "0" {
                self.topic0 = Log::load(dir)?;
            }
        }
        Ok(())
    }

    /// Whether on-disk storage is in use.
    pub(crate) fn on_disk(&self) -> bool {
        matches!(self.mode, StoreMode::Dir(_))
    }

    fn topic_dir(&self, name: &str) -> Option<PathBuf> {
        match &self.mode {
            StoreMode::Dir(d) => Some(d.join("segments").join(name)),
            _ => None,
        }
    }

    /// CreateTopic / CreateTopicWithRetention (docs/protocol.md §6.4, §6.5). `Ok` is the
    /// TopicResponse JSON, `Err` the ErrorResponse text. `cluster`: a duplicate name is
    /// idempotent instead of an error (§6.4, §9).
    pub(crate) fn create_topic(
        &mut self,
        name: &str,
        retention: Option<Retention>,
        cluster: bool,
    ) -> Result<(u32, String), String> {
        if let Some(t) = self.topics.values_mut().find(|t| t.name == name) {
            if !cluster {
                return Err(format!("Topic '{name}' already exists"));
            }
            if let Some(r) = retention {
                t.retention = Some(r);
                t.write_metadata().map_err(|e| format!("I/O error: {e}"))?;
            }
            return Ok((t.id, t.json(retention)));
        }
        check_name(name)?;
        let id = self.next_id;
        let topic = Topic {
            id,
            name: name.to_owned(),
            created_at: now_secs(),
            retention,
            log: Log::new(
                self.topic_dir(name),
                matches!(self.mode, StoreMode::Discard),
            ),
        };
        topic
            .write_metadata()
            .map_err(|e| format!("I/O error: {e}"))?;
        self.next_id += 1;
        let json = topic.json(retention);
        self.topics.insert(id, topic);
        Ok((id, json))
    }

    /// ListTopics JSON: struct field order id, name, created_at, topic_epoch (§6.6).
    /// The server's order is HashMap order (unspecified); this lists by id.
    pub(crate) fn list_json(&self) -> String {
        let mut s = String::from(r#"{"topics":["#);
        for (i, t) in self.topics.values().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, r#"{{"id":{},"name":"#, t.id);
            json_string(&mut s, &t.name);
            let _ = write!(s, r#","created_at":{},"topic_epoch":1}}"#, t.created_at);
        }
        s.push_str("]}");
        s
    }

    /// GetTopic JSON (no retention keys, §6.7).
    pub(crate) fn get_json(&self, id: u32) -> Option<String> {
        self.topics.get(&id).map(|t| t.json(None))
    }

    /// DeleteTopic: removes the topic and all its data (§6.8).
    pub(crate) fn delete_topic(&mut self, id: u32) -> Result<String, String> {
        let Some(t) = self.topics.remove(&id) else {
            return Err(format!("Configuration error: Topic {id} not found"));
        };
        if let Some(dir) = &t.log.dir {
            if let Err(e) = fs::remove_dir_all(dir) {
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(format!("I/O error: {e}"));
                }
            }
        }
        Ok(format!(r#"{{"deleted":{id}}}"#))
    }

    /// SetRetention (§6.9): both values stored as given, 0 included (§7.8).
    pub(crate) fn set_retention(&mut self, id: u32, r: Retention) -> Result<String, String> {
        let Some(t) = self.topics.get_mut(&id) else {
            return Err(format!("Configuration error: Topic {id} not found"));
        };
        t.retention = Some(r);
        t.write_metadata().map_err(|e| format!("I/O error: {e}"))?;
        Ok(format!(
            r#"{{"max_age_secs":{},"max_bytes":{},"topic_id":{}}}"#,
            r.max_age_secs, r.max_bytes, id
        ))
    }

    /// Ingest steps 3–5 of docs/protocol.md §4.2.
    pub(crate) fn ingest(&mut self, topic_id: u32, payload: &[u8]) -> IngestOutcome {
        let log = if topic_id == 0 {
            &mut self.topic0
        } else {
            match self.topics.get_mut(&topic_id) {
                Some(t) => &mut t.log,
                None => return IngestOutcome::UnknownTopic,
            }
        };
        if payload.is_empty() {
            return IngestOutcome::Empty;
        }
        match log.append(payload) {
            Ok(sync) => IngestOutcome::Stored(sync),
            Err(_) => IngestOutcome::Failed,
        }
    }

    /// Fetch steps 3–8 of docs/protocol.md §7.3; data is appended to `out`.
    pub(crate) fn fetch(
        &self,
        topic_id: u32,
        start: u64,
        max_bytes: u32,
        cluster: bool,
        out: &mut Vec<u8>,
    ) -> FetchOutcome {
        let Some(t) = self.topics.get(&topic_id) else {
            return if cluster {
                FetchOutcome::CatchingUp(0)
            } else {
                FetchOutcome::Error(format!("Topic {topic_id} not found"))
            };
        };
        let size = t.log.size();
        if start == u64::MAX {
            return FetchOutcome::Data { next_offset: size };
        }
        let before = out.len();
        if let Err(e) = t.log.read(start, max_bytes as usize, out) {
            out.truncate(before);
            return FetchOutcome::Error(format!("I/O error: {e}"));
        }
        let len = (out.len() - before) as u64;
        if len == 0 && start > 0 && start > size {
            return FetchOutcome::CatchingUp(size);
        }
        FetchOutcome::Data {
            next_offset: start + len,
        }
    }

    /// Subscribe (§6.13): `Err` is the error text, `Ok` the start offset to echo.
    pub(crate) fn subscribe(
        &mut self,
        topic: u32,
        offset: u64,
        consumer: u64,
    ) -> Result<u64, String> {
        if topic != 0 && !self.topics.contains_key(&topic) {
            return Err("Topic not found".into());
        }
        let start = match offset {
            u64::MAX => u64::MAX,
            0 => self.committed.get(&(topic, consumer)).copied().unwrap_or(0),
            other => other,
        };
        self.subscriptions.insert((topic, consumer), start);
        Ok(start)
    }

    /// Unsubscribe (§6.14): always succeeds.
    pub(crate) fn unsubscribe(&mut self, topic: u32, consumer: u64) {
        self.subscriptions.remove(&(topic, consumer));
    }

    /// CommitOffset (§6.15): no topic validation.
    pub(crate) fn commit(&mut self, topic: u32, consumer: u64, offset: u64) {
        self.committed.insert((topic, consumer), offset);
        if let Some(cur) = self.subscriptions.get_mut(&(topic, consumer)) {
            if offset > *cur {
                *cur = offset;
            }
        }
    }

    /// What a server start does to a clean shutdown's leftovers: every active segment
    /// closed (§7.1), subscriptions and commits forgotten (§6.13: memory only).
    pub(crate) fn restart_in_memory(&mut self) -> io::Result<()> {
        self.close_active_segments()?;
        self.subscriptions.clear();
        self.committed.clear();
        Ok(())
    }

    /// Closes every active segment (their data becomes eligible for retention).
    pub(crate) fn close_active_segments(&mut self) -> io::Result<()> {
        self.topic0.close_active()?;
        for t in self.topics.values_mut() {
            t.log.close_active()?;
        }
        Ok(())
    }

    /// One retention cycle over every topic with a policy (§7.8).
    pub(crate) fn run_retention(&mut self) -> RetentionRun {
        let now = now_ns();
        let mut total = RetentionRun::default();
        for t in self.topics.values_mut() {
            if let Some(r) = t.retention {
                let run = t.log.retention(r, now);
                total.segments_deleted += run.segments_deleted;
                total.bytes_deleted += run.bytes_deleted;
            }
        }
        total
    }

    /// Every topic, by id.
    pub(crate) fn topics(&self) -> Vec<TopicInfo> {
        self.topics.values().map(Topic::info).collect()
    }

    /// A topic's size in bytes (topic 0 included); 0 when unknown.
    pub(crate) fn size(&self, id: u32) -> u64 {
        if id == 0 {
            return self.topic0.size();
        }
        self.topics.get(&id).map_or(0, |t| t.log.size())
    }

    /// All bytes of a topic (topic 0 included); empty when unknown or not retained.
    pub(crate) fn bytes(&self, id: u32) -> Vec<u8> {
        let log = if id == 0 {
            &self.topic0
        } else {
            match self.topics.get(&id) {
                Some(t) => &t.log,
                None => return Vec::new(),
            }
        };
        let mut out = Vec::new();
        if log.read(0, log.size() as usize, &mut out).is_err() {
            out.clear();
        }
        out
    }

    /// fsyncs everything (used before a restart reloads from disk).
    pub(crate) fn sync(&self) {
        self.topic0.sync_all();
        for t in self.topics.values() {
            t.log.sync_all();
        }
    }

    /// The storage mode.
    pub(crate) fn mode(&self) -> &StoreMode {
        &self.mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(parse_segment_name("3_17.lnc"), Some((3, 17, None)));
        assert_eq!(parse_segment_name("3_17-20.lnc"), Some((3, 17, Some(20))));
        assert_eq!(parse_segment_name("x.lnc"), None);
        assert_eq!(parse_segment_name("3_17.idx"), None);
        assert_eq!(segment_name(3, 17, Some(20)), "3_17-20.lnc");
    }

    #[test]
    fn names_follow_the_server_rule() {
        assert!(check_name("a-B-9").is_ok());
        assert_eq!(
            check_name("").unwrap_err(),
            "Invalid data: Topic name must not be empty"
        );
        assert!(check_name("a_b").unwrap_err().starts_with(
            "Invalid data: Topic name 'a_b' contains invalid characters. Only alphanumeric"
        ));
        assert!(check_name(&"a".repeat(256))
            .unwrap_err()
            .starts_with("I/O error:"));
    }

    #[test]
    fn reads_span_segments_and_retention_shifts_offsets() {
        let mut s = State::open(StoreMode::Memory).unwrap();
        let (id, _) = s.create_topic("t", None, false).unwrap();
        assert!(matches!(s.ingest(id, b"abc"), IngestOutcome::Stored(None)));
        s.close_active_segments().unwrap();
        assert!(matches!(s.ingest(id, b"defg"), IngestOutcome::Stored(None)));
        let mut out = Vec::new();
        assert_eq!(
            s.fetch(id, 1, 4, false, &mut out),
            FetchOutcome::Data { next_offset: 5 }
        );
        assert_eq!(out, b"bcde");
        s.set_retention(id, Retention::UNLIMITED.with_max_bytes(0))
            .unwrap();
        let run = s.run_retention();
        assert_eq!((run.segments_deleted, run.bytes_deleted), (1, 3));
        assert_eq!(s.bytes(id), b"defg");
    }
}
