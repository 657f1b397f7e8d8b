//! Every single operation against a real ZooKeeper 3.8 server: success
//! paths with their Stat fields, and the errors the server (or the client,
//! before sending) returns.

mod common;

use std::time::Duration;

use common::*;
use zkit::{Acl, Bytes, CreateMode, CreateOptions, Error, Version, MAX_TTL};

fn opts(mode: CreateMode) -> CreateOptions {
    CreateOptions::new(mode)
}

#[tokio::test]
async fn create_returns_path_and_fresh_stat() {
    let c = client().await;
    let base = base(&c, "create-stat").await;
    let path = format!("{base}/node");

    let (created, stat) = c
        .create(&path, b"hello", &CreateOptions::default())
        .await
        .unwrap();
    assert_eq!(created, path);
    assert!(stat.czxid > 0);
    assert_eq!(stat.mzxid, stat.czxid);
    assert_eq!(stat.pzxid, stat.czxid);
    assert_eq!(stat.ctime, stat.mtime);
    assert!(
        stat.ctime > 1_600_000_000_000,
        "ctime is ms since the epoch"
    );
    assert_eq!(stat.version, 0);
    assert_eq!(stat.cversion, 0);
    assert_eq!(stat.aversion, 0);
    assert_eq!(stat.ephemeral_owner, 0);
    assert_eq!(stat.data_length, 5);
    assert_eq!(stat.num_children, 0);
    assert!(c.last_zxid() >= stat.czxid);

    // Every read reports the same Stat.
    assert_eq!(c.exists(&path).await.unwrap(), Some(stat.clone()));
    let (data, s2) = c.get_data(&path).await.unwrap();
    assert_eq!(&data[..], b"hello");
    assert_eq!(s2, stat);
    let (children, s3) = c.get_children(&path).await.unwrap();
    assert!(children.is_empty());
    assert_eq!(s3, stat);
}

#[tokio::test]
async fn create_updates_parent_children_count_cversion_and_pzxid() {
    let c = client().await;
    let base = base(&c, "parent-stat").await;
    let before = c.exists(&base).await.unwrap().unwrap();
    assert_eq!((before.num_children, before.cversion), (0, 0));

    let (_, a) = c
        .create(&format!("{base}/a"), b"", &CreateOptions::default())
        .await
        .unwrap();
    let (_, b) = c
        .create(&format!("{base}/b"), b"", &CreateOptions::default())
        .await
        .unwrap();
    let after = c.exists(&base).await.unwrap().unwrap();
    assert_eq!(after.num_children, 2);
    assert_eq!(after.cversion, 2);
    assert_eq!(after.pzxid, b.czxid);
    assert!(b.czxid > a.czxid);
    // Children changes do not touch the data version or mzxid.
    assert_eq!(after.version, before.version);
    assert_eq!(after.mzxid, before.mzxid);

    c.delete(&format!("{base}/a"), Version::Any).await.unwrap();
    let after_delete = c.exists(&base).await.unwrap().unwrap();
    assert_eq!(after_delete.num_children, 1);
    // Client-visible cversion counts deletes too.
    assert_eq!(after_delete.cversion, 3);
    assert!(after_delete.pzxid > after.pzxid);

    let (mut children, stat) = c.get_children(&base).await.unwrap();
    children.sort();
    assert_eq!(children, vec!["b".to_string()]);
    assert_eq!(stat, after_delete);
}

#[tokio::test]
async fn set_data_increments_version_and_returns_new_stat() {
    let c = client().await;
    let base = base(&c, "set-data").await;
    let (_, created) = c
        .create(&format!("{base}/n"), b"v0", &opts(CreateMode::Persistent))
        .await
        .unwrap();
    let path = format!("{base}/n");

    let s1 = c
        .set_data(&path, b"version-1", Version::Exact(0))
        .await
        .unwrap();
    assert_eq!(s1.version, 1);
    assert_eq!(s1.data_length, 9);
    assert_eq!(s1.czxid, created.czxid);
    assert!(s1.mzxid > created.mzxid);
    assert!(s1.mtime >= created.mtime);
    assert_eq!(s1.ctime, created.ctime);
    // setData does not touch the children or the ACL version.
    assert_eq!((s1.cversion, s1.aversion, s1.pzxid), (0, 0, created.pzxid));

    let s2 = c.set_data(&path, b"", Version::Any).await.unwrap();
    assert_eq!(s2.version, 2);
    assert_eq!(s2.data_length, 0);

    let (data, s3) = c.get_data(&path).await.unwrap();
    assert!(data.is_empty());
    assert_eq!(s3, s2);
}

#[tokio::test]
async fn empty_data_reads_back_empty() {
    let c = client().await;
    let base = base(&c, "empty-data").await;
    let (_, stat) = c
        .create(&format!("{base}/e"), b"", &CreateOptions::default())
        .await
        .unwrap();
    assert_eq!(stat.data_length, 0);
    let (data, _) = c.get_data(&format!("{base}/e")).await.unwrap();
    assert_eq!(data, Bytes::new());
}

#[tokio::test]
async fn binary_data_round_trips_unchanged() {
    let c = client().await;
    let base = base(&c, "binary").await;
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let path = format!("{base}/bin");
    let (_, stat) = c
        .create(&path, &data, &CreateOptions::default())
        .await
        .unwrap();
    assert_eq!(stat.data_length, 70_000);
    let (got, _) = c.get_data(&path).await.unwrap();
    assert_eq!(&got[..], &data[..]);
}

#[tokio::test]
async fn exists_returns_none_for_missing_node() {
    let c = client().await;
    let base = base(&c, "exists-none").await;
    assert_eq!(c.exists(&format!("{base}/missing")).await.unwrap(), None);
    assert_eq!(
        c.exists(&format!("{base}/missing/deeper")).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn delete_removes_node_with_matching_version() {
    let c = client().await;
    let base = base(&c, "delete").await;
    let path = format!("{base}/d");
    c.create(&path, b"x", &CreateOptions::default())
        .await
        .unwrap();
    c.set_data(&path, b"y", Version::Any).await.unwrap();

    assert_err(c.delete(&path, Version::Exact(0)).await, Error::BadVersion);
    assert!(
        c.exists(&path).await.unwrap().is_some(),
        "BadVersion deleted nothing"
    );
    c.delete(&path, Version::Exact(1)).await.unwrap();
    assert_eq!(c.exists(&path).await.unwrap(), None);
    assert_err(c.delete(&path, Version::Any).await, Error::NoNode);
}

#[tokio::test]
async fn node_errors_nonode_nodeexists_notempty_noephemeralchildren() {
    let c = client().await;
    let base = base(&c, "errors").await;
    let d = CreateOptions::default();

    // NoNode: missing parent, and reads / writes of a missing node.
    assert_err(
        c.create(&format!("{base}/no/child"), b"", &d).await,
        Error::NoNode,
    );
    assert_err(c.get_data(&format!("{base}/no")).await, Error::NoNode);
    assert_err(
        c.set_data(&format!("{base}/no"), b"", Version::Any).await,
        Error::NoNode,
    );
    assert_err(c.get_children(&format!("{base}/no")).await, Error::NoNode);
    assert_err(c.get_acl(&format!("{base}/no")).await, Error::NoNode);
    assert_err(
        c.set_acl(&format!("{base}/no"), &Acl::open_unsafe(), Version::Any)
            .await,
        Error::NoNode,
    );
    assert_err(
        c.get_all_children_number(&format!("{base}/no")).await,
        Error::NoNode,
    );

    // NodeExists.
    c.create(&format!("{base}/x"), b"", &d).await.unwrap();
    assert_err(
        c.create(&format!("{base}/x"), b"", &d).await,
        Error::NodeExists,
    );
    assert_err(c.create(&base, b"", &d).await, Error::NodeExists);

    // NotEmpty.
    assert_err(c.delete(&base, Version::Any).await, Error::NotEmpty);

    // NoChildrenForEphemerals, for every kind of child.
    let eph = format!("{base}/eph");
    c.create(&eph, b"", &opts(CreateMode::Ephemeral))
        .await
        .unwrap();
    for mode in [
        CreateMode::Persistent,
        CreateMode::Ephemeral,
        CreateMode::PersistentSequential,
        CreateMode::EphemeralSequential,
    ] {
        assert_err(
            c.create(&format!("{eph}/child"), b"", &opts(mode)).await,
            Error::NoChildrenForEphemerals,
        );
    }
}

#[tokio::test]
async fn set_data_with_wrong_version_is_bad_version() {
    let c = client().await;
    let base = base(&c, "setdata-badversion").await;
    let path = format!("{base}/n");
    c.create(&path, b"a", &CreateOptions::default())
        .await
        .unwrap();
    assert_err(
        c.set_data(&path, b"b", Version::Exact(1)).await,
        Error::BadVersion,
    );
    assert_err(
        c.set_data(&path, b"b", Version::Exact(-2)).await,
        Error::BadVersion,
    );
    let (data, stat) = c.get_data(&path).await.unwrap();
    assert_eq!(
        (&data[..], stat.version),
        (&b"a"[..], 0),
        "nothing was written"
    );
}

#[tokio::test]
async fn ephemeral_node_is_owned_by_the_session() {
    let c = client().await;
    let base = base(&c, "ephemeral-owner").await;
    let (_, stat) = c
        .create(&format!("{base}/e"), b"", &opts(CreateMode::Ephemeral))
        .await
        .unwrap();
    assert_ne!(c.session_id().0, 0);
    assert_eq!(stat.ephemeral_owner, c.session_id().0);

    let (path, stat) = c
        .create(
            &format!("{base}/es-"),
            b"",
            &opts(CreateMode::EphemeralSequential),
        )
        .await
        .unwrap();
    assert_eq!(stat.ephemeral_owner, c.session_id().0);
    assert!(path.starts_with(&format!("{base}/es-")));

    // Another session sees the same owner.
    let other = client().await;
    let seen = other.exists(&format!("{base}/e")).await.unwrap().unwrap();
    assert_eq!(seen.ephemeral_owner, c.session_id().0);
}

fn sequence_of(path: &str, prefix: &str) -> i32 {
    let suffix = path
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{path} does not start with {prefix}"));
    assert_eq!(suffix.len(), 10, "suffix of {path} is %010d");
    assert!(suffix.bytes().all(|b| b.is_ascii_digit()), "{path}");
    suffix.parse().unwrap()
}

#[tokio::test]
async fn sequential_nodes_get_increasing_ten_digit_suffixes() {
    let c = client().await;
    let base = base(&c, "sequential").await;
    let prefix = format!("{base}/job-");

    let mut seqs = Vec::new();
    for mode in [
        CreateMode::PersistentSequential,
        CreateMode::EphemeralSequential,
        CreateMode::PersistentSequential,
    ] {
        let (path, _) = c.create(&prefix, b"", &opts(mode)).await.unwrap();
        seqs.push(sequence_of(&path, &prefix));
    }
    assert_eq!(seqs, vec![0, 1, 2]);

    // The counter is the parent's create count: plain creates advance it,
    // deletes do not rewind it.
    c.create(&format!("{base}/plain"), b"", &CreateOptions::default())
        .await
        .unwrap();
    c.delete(&format!("{prefix}0000000000"), Version::Any)
        .await
        .unwrap();
    let (path, _) = c
        .create(&prefix, b"", &opts(CreateMode::PersistentSequential))
        .await
        .unwrap();
    assert_eq!(sequence_of(&path, &prefix), 4);

    // A trailing '/' is allowed for sequential nodes: the name is the number.
    let dir = format!("{base}/dir");
    c.create(&dir, b"", &CreateOptions::default())
        .await
        .unwrap();
    let (path, _) = c
        .create(
            &format!("{dir}/"),
            b"",
            &opts(CreateMode::PersistentSequential),
        )
        .await
        .unwrap();
    assert_eq!(path, format!("{dir}/0000000000"));
}

#[tokio::test]
async fn container_and_ttl_nodes_report_ephemeral_owner_zero() {
    let c = client().await;
    let base = base(&c, "container-ttl").await;

    let (path, stat) = c
        .create(
            &format!("{base}/container"),
            b"c",
            &opts(CreateMode::Container),
        )
        .await
        .unwrap();
    assert_eq!(path, format!("{base}/container"));
    assert_eq!(stat.ephemeral_owner, 0);
    // A container can have children.
    c.create(&format!("{path}/child"), b"", &CreateOptions::default())
        .await
        .unwrap();

    let (path, stat) = c
        .create(
            &format!("{base}/ttl"),
            b"t",
            &opts(CreateMode::PersistentWithTtl(Duration::from_secs(60))),
        )
        .await
        .unwrap();
    assert_eq!(path, format!("{base}/ttl"));
    assert_eq!(stat.ephemeral_owner, 0);
    assert_eq!(c.exists(&path).await.unwrap().unwrap().ephemeral_owner, 0);

    let prefix = format!("{base}/ttlseq-");
    let (path, stat) = c
        .create(
            &prefix,
            b"",
            &opts(CreateMode::PersistentSequentialWithTtl(
                Duration::from_millis(1),
            )),
        )
        .await
        .unwrap();
    // Container, ttl and this one are the parent's 1st..3rd creates (the
    // container's child counts for the container).
    assert_eq!(sequence_of(&path, &prefix), 2);
    assert_eq!(stat.ephemeral_owner, 0);

    // The largest TTL ZooKeeper accepts works.
    c.create(
        &format!("{base}/ttl-max"),
        b"",
        &opts(CreateMode::PersistentWithTtl(MAX_TTL)),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn ttl_out_of_range_is_rejected_before_sending() {
    let c = client().await;
    let base = base(&c, "ttl-range").await;
    let zxid = c.last_zxid();
    for ttl in [Duration::ZERO, MAX_TTL + Duration::from_millis(1)] {
        for mode in [
            CreateMode::PersistentWithTtl(ttl),
            CreateMode::PersistentSequentialWithTtl(ttl),
        ] {
            match c.create(&format!("{base}/ttl"), b"", &opts(mode)).await {
                Err(Error::InvalidArgument(_)) => {}
                other => panic!("{mode:?}: expected InvalidArgument, got {other:?}"),
            }
        }
    }
    // No reply came back (every reply, even an error, carries the
    // server's zxid) ...
    assert_eq!(c.last_zxid(), zxid, "nothing reached the server");
    // ... and nothing was created.
    assert_eq!(c.exists(&format!("{base}/ttl")).await.unwrap(), None);
}

/// TTLs travel in whole milliseconds: a TTL under 1 ms is out of range
/// (1 ms ..= 2^40-1 ms) and must be refused like zero, not truncated to
/// 0 ms and sent (the server then answers BadArguments).
#[tokio::test]
async fn sub_millisecond_ttl_is_rejected_before_sending() {
    let c = client().await;
    let base = base(&c, "ttl-sub-ms").await;
    let ttl = Duration::from_micros(500);
    for mode in [
        CreateMode::PersistentWithTtl(ttl),
        CreateMode::PersistentSequentialWithTtl(ttl),
    ] {
        match c.create(&format!("{base}/ttl"), b"", &opts(mode)).await {
            Err(Error::InvalidArgument(_)) => {}
            other => panic!("{mode:?}: expected InvalidArgument, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn invalid_paths_are_rejected_client_side_and_nothing_is_sent() {
    let c = client().await;
    let base = base(&c, "invalid-paths").await;
    let sid = c.session_id();
    let zxid = c.last_zxid();
    let bad = [
        "".to_string(),
        "relative".to_string(),
        format!("{base}/"),
        format!("{base}//x"),
        format!("{base}/."),
        format!("{base}/../x"),
        format!("{base}/a\u{0}b"),
        format!("{base}/tab\there"),
        format!("{base}/\u{7f}"),
        format!("{base}/\u{e000}"),
        format!("{base}/\u{fff0}"),
        format!("{base}/emoji-😀"),
    ];
    let d = CreateOptions::default();
    for p in &bad {
        assert_invalid_path(c.create(p, b"", &d).await, p);
        assert_invalid_path(c.delete(p, Version::Any).await, p);
        assert_invalid_path(c.exists(p).await, p);
        assert_invalid_path(c.exists_and_watch(p).await, p);
        assert_invalid_path(c.get_data(p).await, p);
        assert_invalid_path(c.get_data_and_watch(p).await, p);
        assert_invalid_path(c.set_data(p, b"", Version::Any).await, p);
        assert_invalid_path(c.get_children(p).await, p);
        assert_invalid_path(c.get_children_and_watch(p).await, p);
        assert_invalid_path(c.get_acl(p).await, p);
        assert_invalid_path(c.set_acl(p, &Acl::open_unsafe(), Version::Any).await, p);
        assert_invalid_path(c.sync(p).await, p);
        assert_invalid_path(c.get_ephemerals(p).await, p);
        assert_invalid_path(c.get_all_children_number(p).await, p);
        assert_invalid_path(c.add_watch(p, zkit::AddWatchMode::Persistent).await, p);
        assert_invalid_path(c.remove_watches(p, zkit::WatcherType::Any).await, p);
        assert_invalid_path(c.check_watches(p, zkit::WatcherType::Any).await, p);
    }
    // A sequential create may end in '/', but not in '//'.
    assert_invalid_path(
        c.create(
            &format!("{base}//"),
            b"",
            &opts(CreateMode::PersistentSequential),
        )
        .await,
        &format!("{base}//"),
    );
    assert_eq!(c.session_id(), sid);
    assert_eq!(c.last_zxid(), zxid, "nothing reached the server");
    assert!(c.state().is_connected());
    // The session still works, and nothing was created.
    let (children, _) = c.get_children(&base).await.unwrap();
    assert!(children.is_empty(), "{children:?}");
    c.create(&format!("{base}/ok"), b"", &d).await.unwrap();
    assert_eq!(c.session_id(), sid);
}

#[tokio::test]
async fn non_ascii_paths_within_the_bmp_work() {
    let c = client().await;
    let base = base(&c, "unicode").await;
    let path = format!("{base}/grüße-日本-ü");
    let (created, _) = c
        .create(&path, b"u", &CreateOptions::default())
        .await
        .unwrap();
    assert_eq!(created, path);
    let (children, _) = c.get_children(&base).await.unwrap();
    assert_eq!(children, vec!["grüße-日本-ü".to_string()]);
}

#[tokio::test]
async fn oversized_request_is_refused_and_session_survives() {
    let c = client().await;
    let base = base(&c, "too-large").await;
    let sid = c.session_id();
    let path = format!("{base}/big");
    let big = vec![7u8; 1_048_576 + 1];

    match c.create(&path, &big, &CreateOptions::default()).await {
        Err(Error::RequestTooLarge { size, limit }) => {
            assert_eq!(limit, 1_048_575);
            assert!(size > limit, "{size}");
        }
        other => panic!("expected RequestTooLarge, got {other:?}"),
    }
    c.create(&path, b"small", &CreateOptions::default())
        .await
        .unwrap();
    match c.set_data(&path, &big, Version::Any).await {
        Err(Error::RequestTooLarge { .. }) => {}
        other => panic!("expected RequestTooLarge, got {other:?}"),
    }
    match c.multi().set_data(&path, &big, Version::Any).commit().await {
        Err(Error::RequestTooLarge { .. }) => {}
        other => panic!("expected RequestTooLarge, got {other:?}"),
    }
    // Same session, still connected, nothing changed.
    assert!(c.state().is_connected());
    let (data, stat) = c.get_data(&path).await.unwrap();
    assert_eq!(&data[..], b"small");
    assert_eq!(stat.version, 0);
    assert_eq!(c.session_id(), sid);
}

/// The frame-size check is exact: the largest request the server accepts
/// (frame length == jute.maxbuffer == 1,048,575) goes through, and its
/// slightly larger reply is accepted too.
#[tokio::test]
async fn request_of_exactly_jute_maxbuffer_is_accepted() {
    let c = client().await;
    let base = base(&c, "max-frame").await;
    let path = format!("{base}/m");
    c.create(&path, b"", &CreateOptions::default())
        .await
        .unwrap();
    // setData frame: xid 4 + type 4 + path (4 + len) + data (4 + n) + version 4.
    let overhead = 4 + 4 + 4 + path.len() + 4 + 4;
    let n = 1_048_575 - overhead;
    let data = vec![b'z'; n];
    let stat = c.set_data(&path, &data, Version::Any).await.unwrap();
    assert_eq!(stat.data_length as usize, n);
    let (got, _) = c.get_data(&path).await.unwrap();
    assert_eq!(got.len(), n);
    // One byte more is refused locally.
    let data = vec![b'z'; n + 1];
    match c.set_data(&path, &data, Version::Any).await {
        Err(Error::RequestTooLarge { size, limit }) => {
            assert_eq!((size, limit), (1_048_576, 1_048_575))
        }
        other => panic!("expected RequestTooLarge, got {other:?}"),
    }
    assert!(c.state().is_connected());
}

#[tokio::test]
async fn get_all_children_number_counts_every_descendant() {
    let c = client().await;
    let base = base(&c, "all-children").await;
    assert_eq!(c.get_all_children_number(&base).await.unwrap(), 0);
    let d = CreateOptions::default();
    for p in ["a", "a/b", "a/b/c", "a/d", "e"] {
        c.create(&format!("{base}/{p}"), b"", &d).await.unwrap();
    }
    assert_eq!(c.get_all_children_number(&base).await.unwrap(), 5);
    assert_eq!(
        c.get_all_children_number(&format!("{base}/a"))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        c.get_all_children_number(&format!("{base}/a/b/c"))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn get_ephemerals_lists_only_this_sessions_nodes() {
    let c = client().await;
    let other = client().await;
    let base = base(&c, "get-ephemerals").await;
    c.create(&format!("{base}/sub"), b"", &CreateOptions::default())
        .await
        .unwrap();
    c.create(&format!("{base}/mine"), b"", &opts(CreateMode::Ephemeral))
        .await
        .unwrap();
    let (seq, _) = c
        .create(
            &format!("{base}/sub/mine-"),
            b"",
            &opts(CreateMode::EphemeralSequential),
        )
        .await
        .unwrap();
    c.create(
        &format!("{base}/persistent"),
        b"",
        &CreateOptions::default(),
    )
    .await
    .unwrap();
    other
        .create(&format!("{base}/theirs"), b"", &opts(CreateMode::Ephemeral))
        .await
        .unwrap();

    let mut mine = c.get_ephemerals(&base).await.unwrap();
    mine.sort();
    assert_eq!(mine, vec![format!("{base}/mine"), seq.clone()]);
    // "/" lists all of this session's ephemerals.
    let mut all = c.get_ephemerals("/").await.unwrap();
    all.sort();
    assert_eq!(all, mine);
    // The prefix is a plain string prefix filter.
    assert_eq!(
        c.get_ephemerals(&format!("{base}/sub")).await.unwrap(),
        vec![seq]
    );
    assert_eq!(
        other.get_ephemerals("/").await.unwrap(),
        vec![format!("{base}/theirs")]
    );
    assert!(client().await.get_ephemerals("/").await.unwrap().is_empty());
}

#[tokio::test]
async fn sync_succeeds_for_existing_and_missing_paths() {
    let c = client().await;
    let base = base(&c, "sync").await;
    c.sync(&base).await.unwrap();
    c.sync("/").await.unwrap();
    // ZooKeeper does not check that the node exists.
    c.sync(&format!("{base}/missing")).await.unwrap();
    // A read after sync sees a write made by another session.
    let other = client().await;
    other
        .create(&format!("{base}/w"), b"1", &CreateOptions::default())
        .await
        .unwrap();
    c.sync(&base).await.unwrap();
    assert!(c.exists(&format!("{base}/w")).await.unwrap().is_some());
}

/// A standalone 3.8 server has a `/zookeeper/config` node with no data
/// (dynamic reconfiguration is off, so no config is stored).
#[tokio::test]
async fn get_config_on_standalone_returns_empty_config_node() {
    // Through a chroot: the config node is never chrooted.
    let c = connect_with(zkit::Client::builder(), &unique_path("config-chroot")).await;
    let (config, stat) = c.get_config().await.unwrap();
    assert!(config.is_empty(), "{config:?}");
    // The node is made in memory at startup, outside any transaction:
    // zero zxids and times, and aversion -1.
    assert_eq!(stat.data_length, 0);
    assert_eq!((stat.czxid, stat.mzxid, stat.ctime), (0, 0, 0));
    assert_eq!((stat.version, stat.aversion), (0, -1));
    assert_eq!(stat.ephemeral_owner, 0);
    // The same node read directly (no chroot).
    let plain = client().await;
    let (data, stat2) = plain.get_data(zkit::CONFIG_NODE).await.unwrap();
    assert_eq!(data, config);
    assert_eq!(stat2, stat);
}

#[tokio::test]
async fn who_am_i_reports_the_ip_identity() {
    let c = client().await;
    let ids = c.who_am_i().await.unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(ids[0].auth_scheme, "ip");
    assert_eq!(ids[0].user, "127.0.0.1");
}

#[tokio::test]
async fn root_and_zookeeper_nodes_are_readable() {
    let c = client().await;
    let root = c.exists("/").await.unwrap().expect("root exists");
    assert!(root.num_children >= 1);
    let (children, _) = c.get_children("/zookeeper").await.unwrap();
    assert!(children.contains(&"quota".to_string()), "{children:?}");
    assert!(children.contains(&"config".to_string()), "{children:?}");
    // The root cannot be deleted or re-created.
    // The root and /zookeeper are special paths: BadArguments.
    assert_err(c.delete("/", Version::Any).await, Error::BadArguments);
    assert_err(
        c.delete("/zookeeper", Version::Any).await,
        Error::BadArguments,
    );
    assert_err(
        c.create("/", b"", &CreateOptions::default()).await,
        Error::NodeExists,
    );
}

/// A reply larger than the client accepts (twice jute.maxbuffer by default)
/// is read past: that request fails with ResponseTooLarge, and the
/// connection and the session go on (no reconnect).
#[tokio::test]
async fn oversized_reply_fails_alone_and_the_connection_goes_on() {
    let c = client().await;
    let base = base(&c, "big-reply").await;
    let data = vec![b'a'; 1_000_000];
    for i in 0..3 {
        c.create(&format!("{base}/n{i}"), &data, &CreateOptions::default())
            .await
            .unwrap();
    }
    let sid = c.session_id();
    let mut states = c.state_stream();
    assert_eq!(
        states.next_state().await,
        Some(zkit::SessionState::Connected)
    );
    let r = c
        .multi_read()
        .get_data(&format!("{base}/n0"))
        .get_data(&format!("{base}/n1"))
        .get_data(&format!("{base}/n2"))
        .execute()
        .await;
    match r {
        Err(Error::ResponseTooLarge { size, limit }) => {
            assert!(size > 3_000_000 && limit == 2 * 1_048_575, "{size} {limit}");
        }
        other => panic!("expected ResponseTooLarge, got {other:?}"),
    }
    never(
        "a state change",
        Duration::from_millis(300),
        states.next_state(),
    )
    .await;
    assert_eq!(c.get_data(&base).await.unwrap().1.num_children, 3);
    assert_eq!(c.session_id(), sid);
    // Two of them fit.
    let r = c
        .multi_read()
        .get_data(&format!("{base}/n0"))
        .get_data(&format!("{base}/n1"))
        .execute()
        .await
        .unwrap();
    assert!(r
        .iter()
        .all(|x| matches!(x, Ok(zkit::ReadResult::Data(d, _)) if d.len() == 1_000_000)));
}

#[tokio::test]
async fn create_all_and_ensure_path_create_missing_parents() {
    let c = client().await;
    let dir = base(&c, "mkdirs").await;
    // Parents made with the node's ACL; the node with its data and mode.
    let acl = vec![Acl::new(
        zkit::Perms::READ | zkit::Perms::CREATE | zkit::Perms::DELETE,
        "world",
        "anyone",
    )];
    let (path, stat) = c
        .create_all(
            &format!("{dir}/a/b/job-"),
            b"payload",
            &CreateOptions::new(CreateMode::PersistentSequential).acl(Acl::open_unsafe()),
        )
        .await
        .unwrap();
    assert!(path.starts_with(&format!("{dir}/a/b/job-")), "{path}");
    assert_eq!(stat.data_length, 7);
    let (data, _) = c.get_data(&format!("{dir}/a")).await.unwrap();
    assert!(data.is_empty());
    // Existing parents: only the node is created.
    let (before, _) = c.get_children(&format!("{dir}/a")).await.unwrap();
    c.create_all(&format!("{dir}/a/c"), b"x", &CreateOptions::default())
        .await
        .unwrap();
    let (after, _) = c.get_children(&format!("{dir}/a")).await.unwrap();
    assert_eq!(after.len(), before.len() + 1);
    // The node itself existing is still an error.
    assert_err(
        c.create_all(&format!("{dir}/a/c"), b"x", &CreateOptions::default())
            .await,
        Error::NodeExists,
    );
    // The parents get the node's ACL.
    c.create_all(
        &format!("{dir}/ro/leaf"),
        b"",
        &CreateOptions::default().acl(acl.clone()),
    )
    .await
    .unwrap();
    let (parent_acl, _) = c.get_acl(&format!("{dir}/ro")).await.unwrap();
    assert_eq!(parent_acl, acl);
    // So an ACL without CREATE cannot get a node under a new parent.
    assert_err(
        c.create_all(
            &format!("{dir}/ro2/leaf"),
            b"",
            &CreateOptions::default().acl(Acl::read_unsafe()),
        )
        .await,
        Error::NoAuth,
    );
    // An ephemeral ancestor cannot have children.
    c.create(
        &format!("{dir}/eph"),
        b"",
        &CreateOptions::new(CreateMode::Ephemeral),
    )
    .await
    .unwrap();
    assert_err(
        c.create_all(&format!("{dir}/eph/x/y"), b"", &CreateOptions::default())
            .await,
        Error::NoChildrenForEphemerals,
    );

    c.ensure_path(&format!("{dir}/p/q/r")).await.unwrap();
    assert!(c.exists(&format!("{dir}/p/q/r")).await.unwrap().is_some());
    // Existing: nothing changes.
    c.set_data(&format!("{dir}/p/q"), b"keep", Version::Any)
        .await
        .unwrap();
    c.ensure_path(&format!("{dir}/p/q")).await.unwrap();
    let (d, _) = c.get_data(&format!("{dir}/p/q")).await.unwrap();
    assert_eq!(&d[..], b"keep");
    c.ensure_path("/").await.unwrap();
    assert_invalid_path(c.ensure_path("no-slash").await, "no-slash");
}

#[tokio::test]
async fn delete_all_removes_a_subtree_children_first() {
    let c = client().await;
    let dir = base(&c, "rmr").await;
    for p in ["t/a/x", "t/a/y", "t/b", "t/c/d/e", "keep/z"] {
        c.create_all(&format!("{dir}/{p}"), b"", &CreateOptions::default())
            .await
            .unwrap();
    }
    c.delete_all(&format!("{dir}/t")).await.unwrap();
    assert!(c.exists(&format!("{dir}/t")).await.unwrap().is_none());
    assert!(c.exists(&format!("{dir}/keep/z")).await.unwrap().is_some());
    // Already gone: fine.
    c.delete_all(&format!("{dir}/t")).await.unwrap();
    assert!(matches!(
        c.delete_all("/").await,
        Err(Error::InvalidArgument(_))
    ));
    assert_invalid_path(c.delete_all("/bad/").await, "/bad/");
}

#[tokio::test]
async fn a_child_list_beyond_the_clients_limit_fails_alone_and_the_session_goes_on() {
    // The reply limit is twice max_frame: 64 KiB here. 4,000 children with
    // 24-byte names make a reply of about 112 KiB.
    let small = connect_with(zkit::Client::builder().max_frame(32 * 1024), "").await;
    let c = client().await;
    let parent = base(&c, "crowd").await;
    let creates: Vec<_> = (0..4_000)
        .map(|i| {
            c.create(
                &format!("{parent}/child-{i:018}"),
                b"",
                &CreateOptions::default(),
            )
        })
        .collect();
    for r in futures::future::join_all(creates).await {
        r.unwrap();
    }
    let mut states = small.state_stream();
    let _ = states.next_state().await; // the current state
    match small.get_children(&parent).await {
        Err(Error::ResponseTooLarge { size, limit }) => {
            assert_eq!(limit, 64 * 1024);
            assert!(size > limit, "{size}");
        }
        other => panic!("expected ResponseTooLarge, got {other:?}"),
    }
    // Same session, same connection: later requests are answered, the
    // count is there for the asking, and nothing was disconnected.
    assert_eq!(small.get_all_children_number(&parent).await.unwrap(), 4_000);
    let (data, _) = small.get_data(&parent).await.unwrap();
    assert!(data.is_empty());
    never(
        "a state change",
        Duration::from_millis(300),
        states.next_state(),
    )
    .await;
    assert_eq!(c.get_children(&parent).await.unwrap().0.len(), 4_000);
}
