//! Consumer offset stores: memory and file, locking, crash safety, name mapping, consumer ids,
//! and import of the upstream Rust and Python clients' offset files.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use lnc_uring::{consumer_id, Error, FileOffsetStore, MemoryOffsetStore, OffsetStore};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "lnc-offset-test-{}-{}-{label}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config_message(e: Error) -> String {
    match e {
        Error::Config(m) => m,
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

/// The contract every store keeps, for one consumer.
fn basic_contract(store: &dyn OffsetStore, consumer: &str) {
    assert_eq!(store.load(1, consumer).unwrap(), None);
    store.save(1, consumer, 100).unwrap();
    assert_eq!(store.load(1, consumer).unwrap(), Some(100));
    store.save(1, consumer, 250).unwrap();
    assert_eq!(store.load(1, consumer).unwrap(), Some(250));
    store.save(2, consumer, 0).unwrap();
    store.save(u32::MAX, consumer, u64::MAX).unwrap();
    assert_eq!(store.load(2, consumer).unwrap(), Some(0));
    assert_eq!(store.load(u32::MAX, consumer).unwrap(), Some(u64::MAX));
    assert_eq!(
        store.list().unwrap(),
        vec![
            (1, consumer.to_string(), 250),
            (2, consumer.to_string(), 0),
            (u32::MAX, consumer.to_string(), u64::MAX),
        ]
    );
    store.delete(1, consumer).unwrap();
    assert_eq!(store.load(1, consumer).unwrap(), None);
    store.delete(1, consumer).unwrap(); // already gone
    store.delete(99, consumer).unwrap(); // never there
    assert_eq!(store.load(2, consumer).unwrap(), Some(0));
    store.delete(2, consumer).unwrap();
    store.delete(u32::MAX, consumer).unwrap();
    assert!(store.list().unwrap().is_empty());
}

// ---- MemoryOffsetStore ----

#[test]
fn memory_basic_contract() {
    basic_contract(&MemoryOffsetStore::new(), "app");
}

#[test]
fn memory_several_consumers_and_topics() {
    let store = MemoryOffsetStore::default();
    store.save(1, "a", 10).unwrap();
    store.save(1, "b", 20).unwrap();
    store.save(2, "a", 30).unwrap();
    assert_eq!(store.load(1, "a").unwrap(), Some(10));
    assert_eq!(store.load(1, "b").unwrap(), Some(20));
    assert_eq!(store.load(2, "a").unwrap(), Some(30));
    assert_eq!(store.load(2, "b").unwrap(), None);
    store.delete(1, "a").unwrap();
    assert_eq!(store.load(1, "b").unwrap(), Some(20));
    assert_eq!(
        store.list().unwrap(),
        vec![(1, "b".to_string(), 20), (2, "a".to_string(), 30)]
    );
}

#[test]
fn memory_is_shareable_across_threads() {
    let store = std::sync::Arc::new(MemoryOffsetStore::new());
    let handles: Vec<_> = (0..4u32)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || s.save(t, "c", u64::from(t) * 10).unwrap())
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(store.list().unwrap().len(), 4);
}

// ---- FileOffsetStore ----

#[test]
fn file_basic_contract() {
    let tmp = TempDir::new("basic");
    let store = FileOffsetStore::open(tmp.path(), "app").unwrap();
    assert_eq!(store.dir(), tmp.path());
    assert_eq!(store.consumer(), "app");
    assert_eq!(store.consumer_dir(), tmp.path().join("app"));
    basic_contract(&store, "app");
}

#[test]
fn file_layout_is_documented_text() {
    let tmp = TempDir::new("layout");
    let store = FileOffsetStore::open(tmp.path(), "my-app").unwrap();
    store.save(3, "my-app", 42_000).unwrap();
    let file = tmp.path().join("my-app").join("topic-3.offset");
    assert_eq!(fs::read_to_string(&file).unwrap(), "42000\n");
    assert!(tmp.path().join("my-app").join(".lock").is_file());
    // Only the lock and the offset file: no temporary file left behind by save.
    let mut names: Vec<_> = fs::read_dir(tmp.path().join("my-app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".lock", "topic-3.offset"]);
}

#[test]
fn file_creates_nested_parents_and_syncs_directories() {
    let tmp = TempDir::new("nested");
    let deep = tmp.path().join("a").join("b").join("c");
    let store = FileOffsetStore::open(&deep, "svc").unwrap();
    // save: temp file, fsync, rename, directory fsync; then delete (also a directory fsync).
    for off in [1, 2, 3] {
        store.save(9, "svc", off).unwrap();
    }
    assert_eq!(store.load(9, "svc").unwrap(), Some(3));
    store.delete(9, "svc").unwrap();
    assert_eq!(store.load(9, "svc").unwrap(), None);
}

#[test]
fn file_persists_across_reopen() {
    let tmp = TempDir::new("reopen");
    {
        let store = FileOffsetStore::open(tmp.path(), "app").unwrap();
        store.save(1, "app", 111).unwrap();
        store.save(7, "app", 777).unwrap();
    }
    let store = FileOffsetStore::open(tmp.path(), "app").unwrap();
    assert_eq!(store.load(1, "app").unwrap(), Some(111));
    assert_eq!(store.load(7, "app").unwrap(), Some(777));
    assert_eq!(
        store.list().unwrap(),
        vec![(1, "app".to_string(), 111), (7, "app".to_string(), 777)]
    );
}

#[test]
fn file_several_consumers_and_topics() {
    let tmp = TempDir::new("several");
    let a = FileOffsetStore::open(tmp.path(), "a").unwrap();
    let b = FileOffsetStore::open(tmp.path(), "b").unwrap();
    a.save(1, "a", 10).unwrap();
    b.save(1, "b", 20).unwrap();
    a.save(2, "a", 30).unwrap();
    assert_eq!(a.load(1, "a").unwrap(), Some(10));
    assert_eq!(b.load(1, "b").unwrap(), Some(20));
    assert_eq!(a.load(2, "a").unwrap(), Some(30));
    assert_eq!(b.load(2, "b").unwrap(), None);
    a.delete(1, "a").unwrap();
    assert_eq!(b.load(1, "b").unwrap(), Some(20));
    // Each store lists its own consumer only.
    assert_eq!(a.list().unwrap(), vec![(2, "a".to_string(), 30)]);
    assert_eq!(b.list().unwrap(), vec![(1, "b".to_string(), 20)]);
}

#[test]
fn file_refuses_another_consumer() {
    let tmp = TempDir::new("other");
    let store = FileOffsetStore::open(tmp.path(), "a").unwrap();
    let msg = config_message(store.save(1, "b", 5).unwrap_err());
    assert!(msg.contains("\"a\"") && msg.contains("\"b\""), "{msg}");
    assert!(matches!(store.load(1, "b"), Err(Error::Config(_))));
    assert!(matches!(store.delete(1, "b"), Err(Error::Config(_))));
    assert!(!tmp.path().join("b").exists());
}

#[test]
fn file_lock_is_exclusive_and_released_on_drop() {
    let tmp = TempDir::new("lock");
    let first = FileOffsetStore::open(tmp.path(), "app").unwrap();
    let msg = config_message(FileOffsetStore::open(tmp.path(), "app").unwrap_err());
    assert!(msg.contains("is locked by another consumer"), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    // Another consumer in the same directory is independent.
    let other = FileOffsetStore::open(tmp.path(), "other").unwrap();
    drop(other);
    drop(first);
    let again = FileOffsetStore::open(tmp.path(), "app").unwrap();
    again.save(1, "app", 1).unwrap();
}

#[test]
fn file_concurrent_saves_from_threads() {
    let tmp = TempDir::new("threads");
    let store = std::sync::Arc::new(FileOffsetStore::open(tmp.path(), "app").unwrap());
    let handles: Vec<_> = (0..4u32)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                for off in 0..20 {
                    s.save(t % 2, "app", off).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(store.load(0, "app").unwrap(), Some(19));
    assert_eq!(store.load(1, "app").unwrap(), Some(19));
}

const CHILD_DIR: &str = "LNC_OFFSET_LOCK_CHILD_DIR";
const CHILD_EXPECT: &str = "LNC_OFFSET_LOCK_CHILD_EXPECT";

/// Runs only as the child of `file_lock_holds_across_processes`.
#[test]
fn lock_child_helper() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let expect = std::env::var(CHILD_EXPECT).unwrap();
    match FileOffsetStore::open(&dir, "app") {
        Ok(store) => {
            assert_eq!(expect, "free");
            assert_eq!(store.load(1, "app").unwrap(), Some(5));
        }
        Err(e) => {
            assert_eq!(expect, "locked", "{e}");
            assert!(
                e.to_string().contains("is locked by another consumer"),
                "{e}"
            );
        }
    }
    println!("CHILD-CHECKED-{expect}");
}

fn run_child(dir: &Path, expect: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_EXPECT, expect)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("CHILD-CHECKED-{expect}")),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn file_lock_holds_across_processes() {
    let tmp = TempDir::new("xproc");
    let store = FileOffsetStore::open(tmp.path(), "app").unwrap();
    store.save(1, "app", 5).unwrap();
    run_child(tmp.path(), "locked");
    drop(store);
    run_child(tmp.path(), "free");
}

#[test]
fn file_stale_temp_files_are_ignored_and_cleaned() {
    let tmp = TempDir::new("stale");
    {
        let store = FileOffsetStore::open(tmp.path(), "app").unwrap();
        store.save(4, "app", 400).unwrap();
    }
    // What a crash between creating and renaming the temp file leaves behind.
    let dir = tmp.path().join("app");
    fs::write(dir.join(".tmp.topic-4.offset.0"), "99").unwrap();
    fs::write(dir.join(".tmp.topic-5.offset.3"), "").unwrap();
    let store = FileOffsetStore::open(tmp.path(), "app").unwrap();
    assert!(!dir.join(".tmp.topic-4.offset.0").exists());
    assert!(!dir.join(".tmp.topic-5.offset.3").exists());
    assert_eq!(store.load(4, "app").unwrap(), Some(400));
    assert_eq!(store.load(5, "app").unwrap(), None);
    // A stale temp file appearing while open does not confuse load or list either.
    fs::write(dir.join(".tmp.topic-4.offset.9"), "garbage").unwrap();
    assert_eq!(store.load(4, "app").unwrap(), Some(400));
    assert_eq!(store.list().unwrap(), vec![(4, "app".to_string(), 400)]);
    // Unrelated files are ignored by list.
    fs::write(dir.join("notes.txt"), "hello").unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn file_corrupt_offset_is_an_error() {
    let tmp = TempDir::new("corrupt");
    let store = FileOffsetStore::open(tmp.path(), "app").unwrap();
    let file = tmp.path().join("app").join("topic-2.offset");
    for bad in ["", "abc\n", "-5\n", "12 34\n", "99999999999999999999\n"] {
        fs::write(&file, bad).unwrap();
        let msg = config_message(store.load(2, "app").unwrap_err());
        assert!(
            msg.contains("corrupt") && msg.contains("topic-2.offset"),
            "{msg}"
        );
        assert!(matches!(store.list(), Err(Error::Config(_))));
    }
    fs::write(&file, [0xff, 0xfe]).unwrap();
    assert!(matches!(store.load(2, "app"), Err(Error::Config(_))));
    // Saving over a corrupt file repairs it.
    store.save(2, "app", 8).unwrap();
    assert_eq!(store.load(2, "app").unwrap(), Some(8));
}

#[test]
fn file_names_map_to_distinct_safe_directories() {
    let tmp = TempDir::new("names");
    let names = [
        "plain",
        "team/orders",
        "team_orders",
        "team orders",
        "naïve-ünïcödé",
        "日本語",
        "",
        " ",
        "_",
        ".",
        "..",
        "../escape",
        "a\\b",
        "a_-0000000000000000",
    ];
    let mut dirs = HashSet::new();
    let mut stores = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let store = FileOffsetStore::open(tmp.path(), name).unwrap();
        let dir = store.consumer_dir().to_path_buf();
        assert_eq!(dir.parent(), Some(tmp.path()), "{name:?} -> {dir:?}");
        let leaf = dir.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            leaf.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "{name:?} -> {leaf:?}"
        );
        assert!(leaf != "." && leaf != ".." && !leaf.is_empty());
        assert!(dirs.insert(leaf.clone()), "{name:?} collides at {leaf:?}");
        store.save(1, name, i as u64).unwrap();
        stores.push(store);
    }
    let relock = FileOffsetStore::open(tmp.path(), "plain").unwrap_err();
    assert!(config_message(relock).contains("locked"));
    for (i, (name, store)) in names.iter().zip(&stores).enumerate() {
        assert_eq!(store.load(1, name).unwrap(), Some(i as u64), "{name:?}");
    }
    // Exactly one directory per name, nothing escaped the base directory.
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), names.len());
    assert_eq!(
        stores[0].consumer_dir().file_name().unwrap(),
        "plain",
        "safe names are kept as they are"
    );
    let hex = format!("{:016x}", consumer_id("team/orders"));
    assert_eq!(
        stores[1].consumer_dir().file_name().unwrap().to_str(),
        Some(format!("team_orders-{hex}").as_str())
    );
}

// ---- consumer_id ----

#[test]
fn consumer_id_vectors_and_stability() {
    // FNV-1a 64 reference vectors.
    assert_eq!(consumer_id(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(consumer_id("a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(consumer_id("foobar"), 0x8594_4171_f739_67e8);
    // Same value on every call; different names differ; never 0.
    assert_eq!(consumer_id("my-app"), consumer_id(&String::from("my-app")));
    assert_ne!(consumer_id("my-app"), consumer_id("my-app "));
    for name in ["", "a", "b", "my-app", "日本語", "team/orders"] {
        assert_ne!(consumer_id(name), 0);
    }
}

// ---- Imports from the peers' formats ----

#[test]
fn import_rust_seed_format() {
    let tmp = TempDir::new("import-rs");
    let dir = tmp.path().join("seed").join("my-service");
    fs::create_dir_all(&dir).unwrap();
    // What the upstream LockFileOffsetStore writes: writeln!("{offset}").
    fs::write(dir.join("topic-3-consumer-12345.offset"), "42000\n").unwrap();
    fs::write(dir.join("topic-3-consumer-12345.lock"), "").unwrap();
    fs::write(dir.join("topic-4-consumer-12345.offset"), "not a number\n").unwrap();

    let seed = tmp.path().join("seed");
    assert_eq!(
        FileOffsetStore::import_rust_seed(&seed, "my-service", 3, 12345).unwrap(),
        Some(42000)
    );
    assert_eq!(
        FileOffsetStore::import_rust_seed(&seed, "my-service", 3, 999).unwrap(),
        None
    );
    assert_eq!(
        FileOffsetStore::import_rust_seed(&seed, "other", 3, 12345).unwrap(),
        None
    );
    let msg = config_message(
        FileOffsetStore::import_rust_seed(&seed, "my-service", 4, 12345).unwrap_err(),
    );
    assert!(msg.contains("corrupt"), "{msg}");

    // Migrate into our store.
    let store = FileOffsetStore::open(tmp.path().join("new"), "my-service").unwrap();
    let off = FileOffsetStore::import_rust_seed(&seed, "my-service", 3, 12345)
        .unwrap()
        .unwrap();
    store.save(3, "my-service", off).unwrap();
    assert_eq!(store.load(3, "my-service").unwrap(), Some(42000));
}

#[test]
fn import_python_format() {
    let tmp = TempDir::new("import-py");
    let dir = tmp.path();
    // json.dumps({"consumer": ..., "topic_id": ..., "offset": ...}) as the Python client writes it.
    fs::write(
        dir.join("my-app_3.offset"),
        r#"{"consumer": "my-app", "topic_id": 3, "offset": 42000}"#,
    )
    .unwrap();
    // "/" (and "\") in the name become "_"; json.dumps escapes non-ASCII characters.
    fs::write(
        dir.join("team_ordérs_7.offset"),
        r#"{"consumer": "team/ord\u00e9rs", "topic_id": 7, "offset": 5}"#,
    )
    .unwrap();
    // The newer Python client adds "topic_name" (null when saving by topic id).
    fs::write(
        dir.join("svc_8.offset"),
        r#"{"consumer": "svc", "topic_id": 8, "topic_name": null, "offset": 0}"#,
    )
    .unwrap();

    assert_eq!(
        FileOffsetStore::import_python(dir, "my-app", 3).unwrap(),
        Some(42000)
    );
    assert_eq!(
        FileOffsetStore::import_python(dir, "my-app", 4).unwrap(),
        None
    );
    assert_eq!(
        FileOffsetStore::import_python(dir, "team/ordérs", 7).unwrap(),
        Some(5)
    );
    assert_eq!(
        FileOffsetStore::import_python(dir, "svc", 8).unwrap(),
        Some(0)
    );
    // "team_ordérs" maps to the same file but the record names another consumer.
    let msg = config_message(FileOffsetStore::import_python(dir, "team_ordérs", 7).unwrap_err());
    assert!(msg.contains("team/ordérs"), "{msg}");

    // Corrupt files are errors, not None (the Python client would return None).
    for (i, bad) in [
        "",
        "{not json",
        r#"{"consumer": "x", "topic_id": 9}"#,
        r#"{"consumer": "x", "topic_id": 9, "offset": -1}"#,
        r#"{"consumer": "x", "topic_id": 9, "offset": null}"#,
        r#"{"consumer": "x", "topic_id": 10, "offset": 1}"#,
    ]
    .iter()
    .enumerate()
    {
        fs::write(dir.join("x_9.offset"), bad).unwrap();
        let msg = config_message(FileOffsetStore::import_python(dir, "x", 9).unwrap_err());
        assert!(
            msg.contains("corrupt") && msg.contains("x_9.offset"),
            "case {i}: {msg}"
        );
    }
}
