//! `--import-zookeeper`: a real ZooKeeper 3.8 data directory loaded into the
//! bundled server serves the same tree, Stats, ACLs and ephemerals; damaged
//! files are clear errors.
//!
//! The real-ZooKeeper test runs with `ZKIT_TEST_BACKEND=zookeeper` and skips
//! otherwise; the damaged-input tests build ZooKeeper-format files here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zkit::{Acl, Client, CreateMode, CreateOptions, Error, Perms, Stat, Version};
use zkit_server::import::{load_zookeeper_dir, ImportError};
use zkit_server::Server;
use zkit_testcontainers::Ensemble;

mod common;

use common::TempDir;

type Dump = BTreeMap<String, Result<(Vec<u8>, Stat, Vec<Acl>), Error>>;

/// Everything a client can see of the tree: data, Stat, ACL per path.
async fn dump(c: &Client) -> Dump {
    let mut out = BTreeMap::new();
    let mut todo = vec!["/".to_string()];
    while let Some(p) = todo.pop() {
        let (kids, _) = c.get_children(&p).await.unwrap();
        for k in kids {
            todo.push(if p == "/" {
                format!("/{k}")
            } else {
                format!("{p}/{k}")
            });
        }
        let entry = match c.get_data(&p).await {
            Ok((data, stat)) => {
                let (acl, _) = c.get_acl(&p).await.unwrap();
                Ok((data.to_vec(), stat, acl))
            }
            Err(e) => Err(e),
        };
        out.insert(p, entry);
    }
    out
}

/// A workload with every kind of transaction, long enough (snapCount 50)
/// for several snapshots and log files.
async fn workload(c: &Client, connect: &str) {
    let opts = CreateOptions::default();
    c.add_auth("digest", b"alice:secret").await.unwrap();
    c.create("/app", b"v0", &opts).await.unwrap();
    let binary: Vec<u8> = (0..=255u8).collect();
    c.create("/app/binary", &binary, &opts).await.unwrap();
    c.create("/app/empty", b"", &opts).await.unwrap();
    c.create("/many", b"", &opts).await.unwrap();
    for i in 0..120 {
        c.create(
            &format!("/many/child-{i:03}"),
            format!("{i}").as_bytes(),
            &opts,
        )
        .await
        .unwrap();
    }
    for i in (0..120).step_by(7) {
        c.delete(&format!("/many/child-{i:03}"), Version::Any)
            .await
            .unwrap();
    }
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let (p, _) = c
            .create(
                "/app/seq-",
                b"s",
                &CreateOptions::new(CreateMode::PersistentSequential),
            )
            .await
            .unwrap();
        seqs.push(p);
    }
    c.delete(&seqs[1], Version::Any).await.unwrap();
    for v in 0..4 {
        c.set_data("/app", format!("v{}", v + 1).as_bytes(), Version::Exact(v))
            .await
            .unwrap();
    }
    // ACLs: digest, world, ip, auth.
    c.create(
        "/acl-digest",
        b"d",
        &CreateOptions::default().acl(vec![
            Acl::digest(Perms::ALL, "alice", "secret"),
            Acl::new(Perms::READ, "world", "anyone"),
        ]),
    )
    .await
    .unwrap();
    c.create(
        "/acl-ip",
        b"i",
        &CreateOptions::default().acl(vec![Acl::new(Perms::ALL, "ip", "127.0.0.1")]),
    )
    .await
    .unwrap();
    c.create(
        "/acl-auth",
        b"a",
        &CreateOptions::default().acl(Acl::creator_all()),
    )
    .await
    .unwrap();
    c.create(
        "/acl-read",
        b"r",
        &CreateOptions::default().acl(Acl::read_unsafe()),
    )
    .await
    .unwrap();
    c.set_acl("/app/empty", &Acl::creator_all(), Version::Exact(0))
        .await
        .unwrap();
    c.set_acl("/app/empty", &Acl::open_unsafe(), Version::Exact(1))
        .await
        .unwrap();
    // Containers and TTL nodes.
    c.create("/box", b"", &CreateOptions::new(CreateMode::Container))
        .await
        .unwrap();
    c.create("/box/item", b"x", &opts).await.unwrap();
    c.create("/box/gone", b"x", &opts).await.unwrap();
    c.delete("/box/gone", Version::Any).await.unwrap();
    c.create(
        "/ttl",
        b"t",
        &CreateOptions::new(CreateMode::PersistentWithTtl(Duration::from_secs(3600))),
    )
    .await
    .unwrap();
    // A multi that commits and one that fails.
    c.multi()
        .create("/m1", b"one", &opts)
        .set_data("/m1", b"two", Version::Exact(0))
        .create("/m1/kid", b"", &opts)
        .delete("/many/child-001", Version::Any)
        .commit()
        .await
        .unwrap();
    assert!(c
        .multi()
        .create("/m2", b"", &opts)
        .check("/m1", Version::Exact(7))
        .commit()
        .await
        .is_err());
    assert_eq!(
        c.create("/app", b"", &opts).await.unwrap_err(),
        Error::NodeExists
    );
    // An ephemeral of a session that closes, then more writes.
    if let Ok(short) = Client::connect(connect).await {
        short
            .create(
                "/short-lived",
                b"",
                &CreateOptions::new(CreateMode::Ephemeral),
            )
            .await
            .unwrap();
        short.close().await.unwrap();
    }
    for i in 0..30 {
        c.set_data("/many/child-002", format!("{i}").as_bytes(), Version::Any)
            .await
            .unwrap();
    }
}

/// The ZooKeeper member's `dataDir`.
fn zk_data_dir(zk: &Ensemble) -> PathBuf {
    zk.member_dir(0).join("data")
}

#[tokio::test(flavor = "current_thread")]
async fn a_real_zookeeper_data_dir_serves_the_same_tree() {
    let Some(zk) = Ensemble::builder()
        .size(1)
        .jvm_prop("zookeeper.snapCount", "50")
        .jvm_prop("znode.container.checkIntervalMs", "3600000")
        .start_or_skip()
        .await
    else {
        return;
    };
    let c = Client::connect(&zk.connect_string()).await.unwrap();
    workload(&c, &zk.connect_string()).await;
    // A session kept alive while ZooKeeper dies: its ephemeral is in the
    // data directory with the session.
    let keeper = Client::builder()
        .session_timeout(Duration::from_secs(4))
        .connect(&zk.connect_string())
        .await
        .unwrap();
    keeper
        .create("/lock", b"held", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    let keeper_id = keeper.session_id().0;
    let keeper_timeout = keeper.session_timeout();
    let before = dump(&c).await;
    c.close().await.unwrap();
    zk.kill(0).await.unwrap();
    drop(keeper);

    let dir = zk_data_dir(&zk);
    let files: Vec<String> = std::fs::read_dir(dir.join("version-2"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().filter(|f| f.starts_with("snapshot.")).count() >= 2
            && files.iter().any(|f| f.starts_with("log.")),
        "{files:?}"
    );
    let state = load_zookeeper_dir(&dir).unwrap();
    assert!(state.replayed > 0, "the logs after the snapshot replayed");
    assert_eq!(
        state.sessions.get(&keeper_id).copied(),
        Some(keeper_timeout.as_millis() as i32),
        "the live session is restored with its timeout"
    );

    let target = TempDir::new("import");
    state.write_data_dir(&target.0, None).unwrap();
    // A second import into the same directory is refused.
    assert!(matches!(
        state.write_data_dir(&target.0, None),
        Err(ImportError::NotEmpty { .. })
    ));
    let server = Server::builder()
        .tick_time(Duration::from_millis(200))
        .container_check_interval(Duration::from_secs(3600))
        .data_dir(&target.0)
        .start()
        .await
        .unwrap();
    assert_eq!(server.last_zxid(), state.zxid);
    let c = Client::connect(&server.connect_string()).await.unwrap();
    c.add_auth("digest", b"alice:secret").await.unwrap();
    let after = dump(&c).await;
    for (path, want) in &before {
        assert_eq!(after.get(path), Some(want), "{path}");
    }
    assert_eq!(after, before, "the whole tree as a client sees it");
    // ZooKeeper restores the sessions of its data directory at startup and
    // expires each after its timeout unless its client reconnects; so does
    // the import: the ephemeral is there, owned by the session, then gone.
    let (_, stat) = c.get_data("/lock").await.unwrap();
    assert_eq!(stat.ephemeral_owner, keeper_id);
    let deadline = Instant::now() + keeper_timeout * 3 + Duration::from_secs(5);
    while c.exists("/lock").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the ephemeral never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // New writes continue after the imported zxid.
    let (_, stat) = c
        .create("/after", b"", &CreateOptions::default())
        .await
        .unwrap();
    assert!(stat.czxid > state.zxid);
    c.close().await.unwrap();
    server.shutdown().await;
}

// ---- damaged input, on files built here in ZooKeeper's format ----------------------

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn put_i32(v: &mut Vec<u8>, x: i32) {
    v.extend_from_slice(&x.to_be_bytes());
}

fn put_i64(v: &mut Vec<u8>, x: i64) {
    v.extend_from_slice(&x.to_be_bytes());
}

fn put_buf(v: &mut Vec<u8>, b: &[u8]) {
    put_i32(v, b.len() as i32);
    v.extend_from_slice(b);
}

/// `DataNode` with `StatPersisted` created at `zxid`.
fn put_node(v: &mut Vec<u8>, path: &str, data: &[u8], acl: i64, zxid: i64, cversion: i32) {
    put_buf(v, path.as_bytes());
    put_buf(v, data);
    put_i64(v, acl);
    for x in [zxid, zxid, 1000, 1000] {
        put_i64(v, x);
    }
    for x in [0, cversion, 0] {
        put_i32(v, x);
    }
    put_i64(v, 0);
    put_i64(v, zxid);
}

fn seal(v: &mut Vec<u8>) {
    let sum = adler32(v);
    put_i64(v, i64::from(sum));
    put_buf(v, b"/");
}

/// A ZooKeeper 3.8 snapshot at zxid 2: `/`, `/zookeeper`, `/a` (ACL cache
/// index 1 = world:anyone READ), digest and both seals.
fn snapshot() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"ZKSN");
    put_i32(&mut v, 2);
    put_i64(&mut v, -1);
    put_i32(&mut v, 1); // one session
    put_i64(&mut v, 0x77);
    put_i32(&mut v, 4000);
    put_i32(&mut v, 1); // ACL cache: one list
    put_i64(&mut v, 1);
    put_i32(&mut v, 1);
    put_i32(&mut v, 1);
    put_buf(&mut v, b"world");
    put_buf(&mut v, b"anyone");
    put_node(&mut v, "", b"", -1, 0, 1);
    put_node(&mut v, "/zookeeper", b"", -1, 0, 0);
    put_node(&mut v, "/a", b"hello", 1, 2, 0);
    put_buf(&mut v, b"/");
    seal(&mut v);
    put_i64(&mut v, 2);
    put_i32(&mut v, 2);
    put_i64(&mut v, 12345);
    seal(&mut v);
    v
}

/// One framed log entry: a `create` of `path` at `zxid`.
fn create_entry(zxid: i64, path: &str) -> Vec<u8> {
    let mut e = Vec::new();
    put_i64(&mut e, 0x77); // clientId
    put_i32(&mut e, 1); // cxid
    put_i64(&mut e, zxid);
    put_i64(&mut e, 5000); // time
    put_i32(&mut e, 1); // create
    put_buf(&mut e, path.as_bytes());
    put_buf(&mut e, b"data");
    put_i32(&mut e, 1);
    put_i32(&mut e, 31);
    put_buf(&mut e, b"world");
    put_buf(&mut e, b"anyone");
    e.push(0); // not ephemeral
    put_i32(&mut e, 2); // parentCVersion
    let mut v = Vec::new();
    put_i64(&mut v, i64::from(adler32(&e)));
    put_buf(&mut v, &e);
    v.push(b'B');
    v
}

fn log(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"ZKLG");
    put_i32(&mut v, 2);
    put_i64(&mut v, 0);
    for e in entries {
        v.extend_from_slice(e);
    }
    v.extend_from_slice(&[0u8; 64]); // preallocated
    v
}

/// A `dataDir` with `version-2/` holding the given files.
fn data_dir(files: &[(&str, Vec<u8>)]) -> TempDir {
    let dir = TempDir::new("zkdata");
    let v2 = dir.0.join("version-2");
    std::fs::create_dir_all(&v2).unwrap();
    for (name, bytes) in files {
        std::fs::write(v2.join(name), bytes).unwrap();
    }
    dir
}

fn good_log() -> Vec<u8> {
    log(&[create_entry(3, "/b"), create_entry(4, "/a/c")])
}

fn err_of(dir: &Path) -> String {
    load_zookeeper_dir(dir).unwrap_err().to_string()
}

#[test]
fn a_snapshot_and_its_log_load() {
    let dir = data_dir(&[
        ("snapshot.2", snapshot()),
        ("log.1", good_log()),
        ("snapshot.1.tmp", vec![1, 2, 3]),
    ]);
    let state = load_zookeeper_dir(&dir.0).unwrap();
    assert_eq!(state.zxid, 4);
    assert_eq!(state.replayed, 2);
    assert_eq!(state.sessions.get(&0x77), Some(&4000));
    let (data, stat) = state.tree.get_data("/a").unwrap();
    assert_eq!(data.unwrap().as_ref(), b"hello");
    // Stored cversion 2 (creates), shown as changes: 2 * 2 - 1 child.
    assert_eq!((stat.czxid, stat.cversion, stat.pzxid), (2, 3, 4));
    let (acl, _) = state.tree.get_acl("/a").unwrap();
    assert_eq!(acl[0].perms, 1);
    let (_, root) = state.tree.get_data("/").unwrap();
    assert_eq!((root.cversion, root.pzxid, root.num_children), (1, 3, 3));
    assert!(state.tree.contains("/a/c"));
    assert!(state.warnings.is_empty(), "{:?}", state.warnings);
}

#[test]
fn a_bad_snapshot_magic_is_a_clear_error() {
    let mut snap = snapshot();
    snap[..4].copy_from_slice(b"NOPE");
    let dir = data_dir(&[("snapshot.2", snap)]);
    let e = err_of(&dir.0);
    assert!(
        e.contains("snapshot.2") && e.contains("offset 0") && e.contains("magic"),
        "{e}"
    );
}

#[test]
fn a_bad_snapshot_checksum_is_a_clear_error() {
    let mut snap = snapshot();
    let at = snap.windows(5).position(|w| w == b"hello").unwrap();
    snap[at] = b'j';
    let dir = data_dir(&[("snapshot.2", snap)]);
    let e = err_of(&dir.0);
    assert!(
        e.contains("snapshot.2") && e.contains("checksum") && e.contains("offset"),
        "{e}"
    );
}

#[test]
fn a_truncated_snapshot_is_a_clear_error() {
    let snap = snapshot();
    let dir = data_dir(&[("snapshot.2", snap[..snap.len() / 2].to_vec())]);
    let e = err_of(&dir.0);
    assert!(
        e.contains("snapshot.2") && e.contains("truncated") && e.contains("offset"),
        "{e}"
    );
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_previous_one() {
    let mut newest = snapshot();
    let n = newest.len();
    newest.truncate(n - 10);
    let dir = data_dir(&[
        ("snapshot.2", snapshot()),
        ("snapshot.4", newest),
        ("log.1", good_log()),
    ]);
    let state = load_zookeeper_dir(&dir.0).unwrap();
    assert!(state.snapshot.ends_with("snapshot.2"));
    assert_eq!(state.zxid, 4);
    assert!(
        state.warnings[0].contains("snapshot.4"),
        "{:?}",
        state.warnings
    );
}

#[test]
fn a_compressed_snapshot_is_refused_by_name() {
    let dir = data_dir(&[("snapshot.2.gz", vec![0x1f, 0x8b, 0, 0])]);
    let e = err_of(&dir.0);
    assert!(
        e.contains("snapshot.2.gz") && e.contains("compressed"),
        "{e}"
    );
}

#[test]
fn a_bad_log_magic_is_a_clear_error() {
    let mut l = good_log();
    l[..4].copy_from_slice(b"JUNK");
    let dir = data_dir(&[("snapshot.2", snapshot()), ("log.1", l)]);
    let e = err_of(&dir.0);
    assert!(
        e.contains("log.1") && e.contains("offset 0") && e.contains("magic"),
        "{e}"
    );
}

#[test]
fn a_bad_log_checksum_is_a_clear_error() {
    let mut l = good_log();
    let at = l.windows(2).position(|w| w == b"/b").unwrap();
    l[at + 1] = b'x';
    let dir = data_dir(&[("snapshot.2", snapshot()), ("log.1", l)]);
    let e = err_of(&dir.0);
    assert!(
        e.contains("log.1") && e.contains("offset 16") && e.contains("checksum"),
        "{e}"
    );
}

#[test]
fn a_torn_last_log_entry_is_tolerated_as_zookeeper_does() {
    let full = log(&[create_entry(3, "/b"), create_entry(4, "/a/c")]);
    let cut = 16 + create_entry(3, "/b").len() + 20;
    let dir = data_dir(&[("snapshot.2", snapshot()), ("log.1", full[..cut].to_vec())]);
    let state = load_zookeeper_dir(&dir.0).unwrap();
    assert_eq!(state.zxid, 3);
    assert!(state.tree.contains("/b") && !state.tree.contains("/a/c"));
    assert!(state.warnings[0].contains("torn"), "{:?}", state.warnings);
}

#[test]
fn a_missing_log_is_a_gap() {
    let dir = data_dir(&[
        ("snapshot.2", snapshot()),
        ("log.5", log(&[create_entry(5, "/b")])),
    ]);
    let e = err_of(&dir.0);
    assert!(e.contains("log.5") && e.contains("missing"), "{e}");
}

#[test]
fn an_empty_dir_is_a_clear_error() {
    let dir = data_dir(&[]);
    let e = err_of(&dir.0);
    assert!(e.contains("no ZooKeeper snapshot"), "{e}");
}

#[test]
fn garbage_files_never_panic() {
    let snap = snapshot();
    let l = good_log();
    for i in 0..snap.len() {
        let mut s = snap.clone();
        s[i] ^= 0x5a;
        let dir = data_dir(&[("snapshot.2", s), ("log.1", l.clone())]);
        let _ = load_zookeeper_dir(&dir.0);
    }
    for i in 0..l.len() {
        let mut b = l.clone();
        b[i] ^= 0xa5;
        let dir = data_dir(&[("snapshot.2", snap.clone()), ("log.1", b)]);
        let _ = load_zookeeper_dir(&dir.0);
    }
}
