//! The `zkit` binary against the bundled server (default) or real
//! ZooKeeper (`ZKIT_TEST_BACKEND=zookeeper`): human output snapshots (ids
//! and times normalised), JSON shapes, exit codes, dump → restore, and
//! recipe inspection of nodes made by zkit-recipes.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::{client, fresh_root, normalise, normalise_table, zkit, zkit_cmd};
use serde_json::Value;
use zkit::{CreateMode, CreateOptions};

#[tokio::test]
async fn basics_print_readable_tables() {
    let root = fresh_root("basics").await;
    let r = root.as_str();
    assert_eq!(
        zkit(r, &["create", "-p", "/app/config", "v1"]).await.ok(),
        "/app/config\n"
    );
    zkit(r, &["create", "/app/empty"]).await.ok();
    let seq = zkit(r, &["create", "-s", "/app/job-", "x"]).await.ok();
    assert_eq!(seq, "/app/job-0000000002\n");
    // An ephemeral of a session of ours, so that it lives during the test.
    let zk = client(r).await;
    zk.create(
        "/app/worker",
        b"\x00\x01\xff",
        &CreateOptions::new(CreateMode::Ephemeral),
    )
    .await
    .unwrap();

    assert_eq!(
        zkit(r, &["ls", "/app"]).await.ok(),
        "config\nempty\njob-0000000002\nworker\n"
    );
    assert_eq!(zkit(r, &["get", "/app/config"]).await.ok(), "v1\n");
    assert_eq!(
        zkit(r, &["get", "/app/worker"]).await.ok(),
        "00000000  00 01 ff                                         |...|\n"
    );
    assert_eq!(
        zkit(r, &["set", "/app/config", "v22", "--version", "0"])
            .await
            .ok(),
        "set /app/config (3 B, version 1)\n"
    );
    assert_eq!(
        normalise_table(&zkit(r, &["ls", "--stat", "/app"]).await.ok()),
        "NAME  VERSION  SIZE  CHILDREN  EPHEMERAL  MODIFIED\n\
         config  1  3 B  0  -  <time>\n\
         empty  0  0 B  0  -  <time>\n\
         job-0000000002  0  1 B  0  -  <time>\n\
         worker  0  3 B  0  <session>  <time>\n"
    );
    assert_eq!(
        zkit(r, &["ls", "-R", "/"]).await.ok(),
        "app\napp/config\napp/empty\napp/job-0000000002\napp/worker\n"
    );
    assert_eq!(
        normalise(&zkit(r, &["tree", "/"]).await.ok()),
        "/  (0 B)\n\
         └── app  (0 B)\n    \
             ├── config  (3 B)\n    \
             ├── empty  (0 B)\n    \
             ├── job-0000000002  (1 B)\n    \
             └── worker  (3 B, ephemeral <session>)\n"
    );
    let stat = normalise_table(&zkit(r, &["stat", "/app/config"]).await.ok());
    assert!(
        stat.starts_with("FIELD  VALUE\npath  /app/config\nczxid"),
        "{stat}"
    );
    assert!(stat.contains("\nversion  1\n"), "{stat}");
    assert!(stat.contains("\nephemeral_owner  none\n"), "{stat}");
    assert!(stat.contains("\ndata_length  3 (3 B)\n"), "{stat}");

    assert_eq!(
        zkit(r, &["acl", "get", "/app/config"]).await.ok(),
        "SCHEME  ID      PERMS\nworld   anyone  cdrwa\n"
    );
    zkit(r, &["acl", "set", "/app/empty", "world:anyone:r"])
        .await
        .ok();
    assert_eq!(
        zkit(r, &["acl", "get", "/app/empty"]).await.ok(),
        "SCHEME  ID      PERMS\nworld   anyone  r\n"
    );
    assert!(zkit(r, &["sync", "/app"])
        .await
        .ok()
        .starts_with("synced /app on "));

    // Deletes: version checks, non-empty, recursive.
    assert_eq!(
        zkit(r, &["delete", "/app/config", "--version", "7"])
            .await
            .code,
        1
    );
    assert_eq!(zkit(r, &["delete", "/app"]).await.code, 1);
    zk.close().await.unwrap();
    assert_eq!(
        zkit(r, &["delete", "-r", "/app"]).await.ok(),
        "deleted /app\n"
    );
    assert_eq!(zkit(r, &["ls", "/"]).await.ok(), "");
}

#[tokio::test]
async fn json_output_has_stable_fields() {
    let root = fresh_root("json").await;
    let r = root.as_str();
    let created = zkit(r, &["--json", "create", "/a", "hello"]).await.json();
    assert_eq!(created["path"], "/a");
    zkit(r, &["create", "/a/b", "--file", "/dev/null"])
        .await
        .ok();

    let got = zkit(r, &["get", "/a", "--json"]).await.json();
    assert_eq!(got["path"], "/a");
    assert_eq!(got["data"], "hello");
    assert_eq!(got["encoding"], "utf8");
    let stat = &got["stat"];
    for key in [
        "czxid",
        "mzxid",
        "pzxid",
        "ctime",
        "mtime",
        "version",
        "cversion",
        "aversion",
        "data_length",
        "num_children",
    ] {
        assert!(stat[key].is_i64(), "stat.{key}: {stat}");
    }
    assert_eq!(stat["ephemeral_owner"], Value::Null);
    assert_eq!(stat["num_children"], 1);

    let ls = zkit(r, &["ls", "--json", "-R", "--stat", "/"]).await.json();
    let children = ls["children"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    assert_eq!(children[1]["name"], "a/b");
    assert_eq!(children[1]["path"], "/a/b");
    assert!(children[1]["stat"]["version"].is_i64());

    let acl = zkit(r, &["acl", "get", "/a", "--json"]).await.json();
    assert_eq!(
        acl["acl"],
        serde_json::json!([{"scheme": "world", "id": "anyone", "perms": "cdrwa"}])
    );
    let tree = zkit(r, &["tree", "--json", "/a"]).await.json();
    assert_eq!(tree["data_length"], 5);
    assert_eq!(tree["children"][0]["name"], "b");
    assert_eq!(tree["children"][0]["children"], serde_json::json!([]));

    zkit(r, &["set", "/a", "--file", "/bin/sh"]).await.ok();
    let bin = zkit(r, &["get", "/a", "--json"]).await.json();
    assert_eq!(bin["encoding"], "base64");
}

#[tokio::test]
async fn errors_name_the_cause_and_the_host_with_exit_codes() {
    let root = fresh_root("errors").await;
    let r = root.as_str();
    let missing = zkit(r, &["get", "/missing"]).await;
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("get /missing: node does not exist (NoNode) [server 127.0.0.1:"),
        "{}",
        missing.stderr
    );

    zkit(r, &["create", "/x", "1"]).await.ok();
    assert_eq!(zkit(r, &["create", "/x"]).await.code, 1);
    let bad_version = zkit(r, &["set", "/x", "2", "--version", "5"]).await;
    assert_eq!(bad_version.code, 1);
    assert!(
        bad_version.stderr.contains("BadVersion"),
        "{}",
        bad_version.stderr
    );

    // Usage: clap's errors, invalid paths, bad ACLs.
    assert_eq!(zkit(r, &["get"]).await.code, 2);
    assert_eq!(zkit(r, &["create", "-e", "-c", "/y"]).await.code, 2);
    assert_eq!(zkit(r, &["get", "no-slash"]).await.code, 2);
    assert_eq!(
        zkit(r, &["acl", "set", "/x", "world:anyone:q"]).await.code,
        2
    );

    // Connection: a port nobody listens on, named in the message.
    let mut c = zkit_cmd("");
    c.args(["--server", "127.0.0.1:1", "--timeout", "1s", "ls", "/"]);
    let down = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(3));
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(
        err.contains("cannot connect to 127.0.0.1:1") && err.contains("127.0.0.1:1: "),
        "{err}"
    );
}

#[tokio::test]
async fn dump_then_restore_gives_the_same_tree_and_is_idempotent() {
    let root = fresh_root("dump").await;
    let r = root.as_str();
    let zk = client(r).await;
    zk.create_all("/src/a/deep/leaf", b"leaf", &CreateOptions::default())
        .await
        .unwrap();
    zk.create("/src/bin", &[0, 159, 255, 10], &CreateOptions::default())
        .await
        .unwrap();
    let locked = vec![
        zkit::Acl::new(zkit::Perms::READ, "world", "anyone"),
        zkit::Acl::digest(zkit::Perms::ALL, "bob", "secret"),
    ];
    zk.create("/src/locked", b"ro", &CreateOptions::default().acl(locked))
        .await
        .unwrap();
    zk.create("/src/eph", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();

    let dumped = zkit(r, &["dump", "/src"]).await.ok();
    let file = std::env::temp_dir().join(format!("zkit-dump-{}.json", std::process::id()));
    std::fs::write(&file, &dumped).unwrap();
    let doc: Value = serde_json::from_str(&dumped).unwrap();
    assert_eq!(doc["format"], "zkit-dump");
    assert_eq!(doc["nodes"].as_array().unwrap().len(), 7);
    // Each node's mode: the ephemeral as such, the rest persistent (no
    // container or TTL node was declared).
    for n in doc["nodes"].as_array().unwrap() {
        let expected = if n["path"] == "/src/eph" {
            "ephemeral"
        } else {
            "persistent"
        };
        assert_eq!(n["mode"], expected, "{n}");
        assert!(n.get("ttl_ms").is_none(), "{n}");
    }

    let f = file.to_str().unwrap();
    let first = zkit(r, &["restore", f, "--to", "/copy", "--json"])
        .await
        .json();
    assert_eq!(first["created"], 6);
    assert_eq!(first["skipped_ephemeral"], 1);
    let second = zkit(
        r,
        &["restore", f, "--to", "/copy", "--json", "--rate", "200"],
    )
    .await
    .json();
    assert_eq!(
        (second["created"].as_i64(), second["updated"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(second["unchanged"], 6);

    // The copy, dumped, matches the source (paths relative, data, ACLs).
    let copy: Value = serde_json::from_str(&zkit(r, &["dump", "/copy"]).await.ok()).unwrap();
    let shape = |doc: &Value, root: &str| -> Vec<(String, Value, Value)> {
        doc["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["stat"]["ephemeral_owner"].is_null())
            .map(|n| {
                let p = n["path"]
                    .as_str()
                    .unwrap()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string();
                (p, n["data"].clone(), n["acl"].clone())
            })
            .collect()
    };
    assert_eq!(shape(&doc, "/src"), shape(&copy, "/copy"));
    // A change in the copy is undone by restoring again.
    zk.set_data("/copy/a/deep/leaf", b"changed", zkit::Version::Any)
        .await
        .unwrap();
    let third = zkit(r, &["restore", f, "--to", "/copy", "--json"])
        .await
        .json();
    assert_eq!(third["updated"], 1);
    assert_eq!(
        zk.get_data("/copy/a/deep/leaf").await.unwrap().0.as_ref(),
        b"leaf"
    );
    let _ = std::fs::remove_file(&file);
    zk.close().await.unwrap();
}

#[tokio::test]
async fn watch_streams_recursive_events() {
    let root = fresh_root("watch").await;
    let r = root.to_string();
    zkit(&r, &["create", "/w"]).await.ok();
    let mut c = zkit_cmd(&r);
    c.args(["watch", "-r", "/w", "--count", "3", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    // Wait for the watch to be registered.
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stderr).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert!(
        ready.starts_with("watching /w and its descendants"),
        "{ready}"
    );
    let zk = client(&r).await;
    zk.create("/w/a", b"", &CreateOptions::default())
        .await
        .unwrap();
    zk.set_data("/w/a", b"1", zkit::Version::Any).await.unwrap();
    zk.delete("/w/a", zkit::Version::Any).await.unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()),
    )
    .await
    .expect("watch exits after --count events")
    .unwrap();
    assert!(out.status.success());
    let events: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["type"].as_str().unwrap().to_string(),
                v["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("NodeCreated".to_string(), "/w/a".to_string()),
            ("NodeDataChanged".into(), "/w/a".into()),
            ("NodeDeleted".into(), "/w/a".into()),
        ]
    );
    zk.close().await.unwrap();
}

#[tokio::test]
async fn one_shot_watch_reports_the_first_change() {
    let root = fresh_root("watch1").await;
    let r = root.to_string();
    let mut c = zkit_cmd(&r);
    c.args(["watch", "/later"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stderr).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert!(ready.starts_with("watching /later (absent)"), "{ready}");
    let zk = client(&r).await;
    zk.create("/later", b"", &CreateOptions::default())
        .await
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        normalise(&String::from_utf8_lossy(&out.stdout))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>(),
        ["NodeCreated", "/later"]
    );
    zk.close().await.unwrap();
}
