//! `dump` / `restore` of container and TTL nodes, on a server of this
//! file's own whose reaper runs every 200 ms (so that a container or TTL
//! node shows what it is by being deleted): the bundled `zkit-server` (a
//! process, from zkit-testcontainers) by default, real ZooKeeper 3.8 with
//! `ZKIT_TEST_BACKEND=zookeeper` (the fixture enables
//! `zookeeper.extendedTypesEnabled` for TTL nodes).
//!
//! ZooKeeper shows clients no difference between a container, a TTL node
//! and a persistent node (the Stat's `ephemeralOwner` is 0 for all three),
//! so the dump is told which nodes are containers and TTL nodes
//! (`--container`, `--ttl`), and the restored copies are checked by how
//! the server treats them once childless.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{run, zkit_bare, Run};
use serde_json::Value;
use zkit::{Client, CreateMode, CreateOptions, Version};
use zkit_testcontainers::{Backend, Ensemble, TestBackend};

/// How often the server deletes empty containers and expired TTL nodes.
const REAP_EVERY_MS: &str = "200";
/// The TTL of the test's TTL node.
const TTL_MS: i64 = 3_000;

/// A server of this run's backend reaping every [`REAP_EVERY_MS`].
async fn fixture() -> Ensemble {
    let backend = if TestBackend::from_env() == TestBackend::ZooKeeper {
        Backend::ZooKeeper
    } else {
        Backend::Bundled
    };
    Ensemble::builder()
        .backend(backend)
        // Real ZooKeeper reads it as a system property, zkit-server from
        // zoo.cfg.
        .jvm_prop("znode.container.checkIntervalMs", REAP_EVERY_MS)
        .config("znode.container.checkIntervalMs", REAP_EVERY_MS)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{backend:?}: the fixture starts: {e}"))
}

/// Runs `zkit --server <zk> args...`.
async fn zkit_at(zk: &Ensemble, args: &[&str]) -> Run {
    let mut c = zkit_bare();
    c.arg("--server")
        .arg(zk.connect_string())
        .args(["--timeout", "10s"])
        .args(args);
    run(c).await
}

/// The nodes of a dump document by path.
fn by_path(doc: &Value) -> BTreeMap<String, Value> {
    doc["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| (n["path"].as_str().unwrap().to_string(), n.clone()))
        .collect()
}

/// Waits until `path` is gone (at most `within`); returns when it went,
/// by this host's clock in epoch milliseconds.
async fn gone(zk: &Client, path: &str, within: Duration) -> Option<i64> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if zk.exists(path).await.unwrap().is_none() {
            return Some(now_ms());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// This host's clock, epoch milliseconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn declared_containers_and_ttl_nodes_are_restored_in_their_mode() {
    let zk = fixture().await;
    let c = Client::connect(&zk.connect_string()).await.unwrap();
    let plain = CreateOptions::default();
    c.create("/src", b"root", &plain).await.unwrap();
    c.create(
        "/src/box",
        b"box",
        &CreateOptions::new(CreateMode::Container),
    )
    .await
    .unwrap();
    c.create("/src/box/item", b"i", &plain).await.unwrap();
    let ttl = CreateMode::PersistentWithTtl(Duration::from_millis(TTL_MS as u64));
    c.create("/src/ttl", b"ttl", &CreateOptions::new(ttl))
        .await
        .unwrap();
    // Children keep the source's container and TTL node alive.
    c.create("/src/ttl/keep", b"k", &plain).await.unwrap();
    c.create("/src/dir", b"dir", &plain).await.unwrap();
    c.create("/src/dir/x", b"x", &plain).await.unwrap();
    c.create("/src/eph", b"e", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    // The server shows containers and TTL nodes as persistent nodes.
    for p in ["/src/box", "/src/ttl", "/src/dir"] {
        assert_eq!(
            c.exists(p).await.unwrap().unwrap().ephemeral_owner,
            0,
            "{p}"
        );
    }

    let dumped = zkit_at(
        &zk,
        &[
            "dump",
            "/src",
            "--container",
            "/src/box",
            // `*` stays within a segment: /src/ttl/keep is not matched.
            "--ttl",
            &format!("/src/t*={TTL_MS}"),
            // Declarations never override what the server shows.
            "--container",
            "/src/eph",
            "--container",
            "/src/nothing",
        ],
    )
    .await;
    assert_eq!(dumped.code, 0, "{dumped:#?}");
    assert!(
        dumped
            .stderr
            .contains("dumped 8 nodes under /src (1 container, 1 TTL as declared)"),
        "{}",
        dumped.stderr
    );
    assert!(
        dumped
            .stderr
            .contains("zkit: /src/eph is ephemeral (owner 0x"),
        "{}",
        dumped.stderr
    );
    assert!(
        dumped
            .stderr
            .contains("zkit: --container /src/nothing matched no node"),
        "{}",
        dumped.stderr
    );
    let doc: Value = serde_json::from_str(&dumped.stdout).unwrap();
    let nodes = by_path(&doc);
    let modes: Vec<(&str, &str, Value)> = nodes
        .iter()
        .map(|(p, n)| {
            (
                p.as_str(),
                n["mode"].as_str().unwrap(),
                n.get("ttl_ms").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    assert_eq!(
        modes,
        [
            ("/src", "persistent", Value::Null),
            ("/src/box", "container", Value::Null),
            ("/src/box/item", "persistent", Value::Null),
            ("/src/dir", "persistent", Value::Null),
            ("/src/dir/x", "persistent", Value::Null),
            ("/src/eph", "ephemeral", Value::Null),
            ("/src/ttl", "ttl", Value::from(TTL_MS)),
            ("/src/ttl/keep", "persistent", Value::Null),
        ]
    );

    let file = std::env::temp_dir().join(format!("zkit-modes-{}.json", std::process::id()));
    std::fs::write(&file, &dumped.stdout).unwrap();
    let f = file.to_str().unwrap();
    let first = zkit_at(&zk, &["restore", f, "--to", "/copy", "--json"])
        .await
        .json();
    assert_eq!(
        (
            &first["created"],
            &first["created_containers"],
            &first["created_ttl"],
            &first["skipped_ephemeral"]
        ),
        (
            &Value::from(7),
            &Value::from(1),
            &Value::from(1),
            &Value::from(1)
        ),
        "{first}"
    );
    // Idempotent: nothing to do the second time (modes included).
    let human = zkit_at(&zk, &["restore", f, "--to", "/copy"]).await.ok();
    assert_eq!(
        human,
        "restored 8 nodes under /copy: 0 created, 0 updated, 7 unchanged, 1 ephemeral skipped\n"
    );
    // The same data everywhere.
    for (p, n) in &nodes {
        if n["mode"] == "ephemeral" {
            continue;
        }
        let copy = p.replacen("/src", "/copy", 1);
        assert_eq!(
            c.get_data(&copy).await.unwrap().0,
            c.get_data(p).await.unwrap().0,
            "{copy}"
        );
    }
    assert!(c.exists("/copy/eph").await.unwrap().is_none());

    // A dump made before modes were recorded: no `mode`, no `ttl_ms`.
    let mut old = doc.clone();
    for n in old["nodes"].as_array_mut().unwrap() {
        let n = n.as_object_mut().unwrap();
        n.remove("mode");
        n.remove("ttl_ms");
    }
    let old_file = std::env::temp_dir().join(format!("zkit-modes-old-{}.json", std::process::id()));
    std::fs::write(&old_file, serde_json::to_string(&old).unwrap()).unwrap();
    let restored_old = zkit_at(
        &zk,
        &[
            "restore",
            old_file.to_str().unwrap(),
            "--to",
            "/old",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(
        (
            &restored_old["created"],
            &restored_old["created_containers"],
            &restored_old["created_ttl"],
            &restored_old["skipped_ephemeral"]
        ),
        (
            &Value::from(7),
            &Value::from(0),
            &Value::from(0),
            &Value::from(1)
        ),
        "{restored_old}"
    );
    assert_eq!(c.get_data("/old/ttl/keep").await.unwrap().0.as_ref(), b"k");
    assert!(c.exists("/old/eph").await.unwrap().is_none());

    // What the server does once they are childless tells the modes apart:
    // the container goes at the next sweep, the TTL node once its TTL
    // (counted from the restore) has passed, persistent nodes stay.
    let ttl_created = c.exists("/copy/ttl").await.unwrap().unwrap().ctime;
    for p in [
        "/copy/box/item",
        "/copy/ttl/keep",
        "/copy/dir/x",
        "/old/box/item",
        "/old/ttl/keep",
    ] {
        c.delete(p, Version::Any).await.unwrap();
    }
    assert!(
        gone(&c, "/copy/box", Duration::from_secs(5))
            .await
            .is_some(),
        "the restored container is deleted once empty"
    );
    let ttl_gone = gone(&c, "/copy/ttl", Duration::from_secs(15))
        .await
        .expect("the restored TTL node is deleted once expired");
    assert!(
        ttl_gone - ttl_created >= TTL_MS - 100,
        "deleted {} ms after it was made: before its TTL",
        ttl_gone - ttl_created
    );
    // Sweeps enough for the old dump's copies to have gone had they been
    // made a container or a TTL node.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    for p in [
        "/copy",
        "/copy/dir",
        "/old/box",
        "/old/ttl",
        "/src/box",
        "/src/ttl",
    ] {
        assert!(c.exists(p).await.unwrap().is_some(), "{p} is still there");
    }
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&old_file);
    c.close().await.unwrap();
}

#[tokio::test]
async fn malformed_declarations_and_modes_are_usage_errors() {
    let zk = fixture().await;
    let c = Client::connect(&zk.connect_string()).await.unwrap();
    c.create("/m", b"", &CreateOptions::default())
        .await
        .unwrap();
    for args in [
        &["dump", "/m", "--ttl", "/m=0"][..],
        &["dump", "/m", "--ttl", "/m"],
        &["dump", "/m", "--container", "m"],
        &["dump", "/m", "--container", "/m", "--ttl", "/m=5000"],
    ] {
        let r = zkit_at(&zk, args).await;
        assert_eq!(r.code, 2, "{args:?}: {r:#?}");
        assert!(r.stdout.is_empty(), "{args:?}: no dump on stdout");
    }
    // A `ttl` node without its TTL: refused before anything is written.
    let doc = serde_json::json!({
        "format": "zkit-dump", "version": 1, "root": "/m",
        "nodes": [
            {"path": "/m", "mode": "persistent", "data": "", "acl": [{"scheme": "world", "id": "anyone", "perms": "cdrwa"}]},
            {"path": "/m/t", "mode": "ttl", "data": "", "acl": [{"scheme": "world", "id": "anyone", "perms": "cdrwa"}]}
        ]
    });
    let file = std::env::temp_dir().join(format!("zkit-modes-bad-{}.json", std::process::id()));
    std::fs::write(&file, doc.to_string()).unwrap();
    let r = zkit_at(&zk, &["restore", file.to_str().unwrap(), "--to", "/n"]).await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr
            .contains("node /m/t: mode \"ttl\" needs \"ttl_ms\""),
        "{}",
        r.stderr
    );
    assert!(c.exists("/n").await.unwrap().is_none());
    let _ = std::fs::remove_file(&file);
    c.close().await.unwrap();
}
