//! multi (atomic transactions) and multiRead against a real ZooKeeper 3.8
//! server.

mod common;

use std::time::Duration;

use common::*;
use futures::FutureExt as _;
use zkit::{
    AddWatchMode, CreateMode, CreateOptions, Error, EventType, OpResult, ReadResult, Version,
};

/// Tests take it shared; the one that counts zxids takes it exclusively.
static SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn d() -> CreateOptions {
    CreateOptions::default()
}

#[tokio::test]
async fn multi_returns_one_result_per_op() {
    let _shared = SERVER.read().await;
    let c = client().await;
    let base = base(&c, "multi-ok").await;
    let a = format!("{base}/a");
    let gone = format!("{base}/gone");
    c.create(&gone, b"", &d()).await.unwrap();

    let results = c
        .multi()
        .check(&base, Version::Exact(0))
        .create(&a, b"A", &d())
        .set_data(&a, b"AA", Version::Exact(0))
        .create(
            &format!("{base}/seq-"),
            b"",
            &CreateOptions::new(CreateMode::PersistentSequential),
        )
        .delete(&gone, Version::Exact(0))
        .create(
            &format!("{base}/eph"),
            b"",
            &CreateOptions::new(CreateMode::Ephemeral),
        )
        .commit()
        .await
        .unwrap();
    assert_eq!(results.len(), 6, "{results:?}");
    assert_eq!(results[0], OpResult::Check);
    // ZooKeeper 3.8 answers create2 inside a multi with the path only.
    assert_eq!(
        results[1],
        OpResult::Create {
            path: a.clone(),
            stat: None
        }
    );
    let OpResult::SetData(stat) = &results[2] else {
        panic!("{:?}", results[2]);
    };
    assert_eq!(stat.version, 1);
    assert_eq!(stat.data_length, 2);
    // Every op of a multi is one transaction: one zxid.
    assert_eq!(stat.czxid, stat.mzxid);
    let OpResult::Create { path, .. } = &results[3] else {
        panic!("{:?}", results[3]);
    };
    // Sequence 2: "gone" and "a" were the parent's first creates.
    assert_eq!(path, &format!("{base}/seq-0000000002"));
    assert_eq!(results[4], OpResult::Delete);
    assert!(matches!(&results[5], OpResult::Create { path, .. } if path == &format!("{base}/eph")));

    let (data, s) = c.get_data(&a).await.unwrap();
    assert_eq!((&data[..], s), (&b"AA"[..], stat.clone()));
    assert_eq!(c.exists(&gone).await.unwrap(), None);
    let eph = c.exists(&format!("{base}/eph")).await.unwrap().unwrap();
    assert_eq!(eph.ephemeral_owner, c.session_id().0);
    assert_eq!(eph.czxid, stat.mzxid);
}

#[tokio::test]
async fn failing_check_aborts_the_whole_multi() {
    let _shared = SERVER.read().await;
    let c = client().await;
    let base = base(&c, "multi-atomic").await;
    let a = format!("{base}/a");
    let (_, w) = c.exists_and_watch(&a).await.unwrap();
    let (_, _, dw) = c.get_data_and_watch(&base).await.unwrap();

    let r = c
        .multi()
        .create(&a, b"", &d())
        .check(&base, Version::Exact(5))
        .set_data(&base, b"changed", Version::Any)
        .commit()
        .await;
    match r {
        Err(Error::MultiFailed { index, source }) => {
            assert_eq!(index, 1);
            assert_eq!(*source, Error::BadVersion);
        }
        other => panic!("expected MultiFailed, got {other:?}"),
    }
    // Nothing was applied...
    assert_eq!(c.exists(&a).await.unwrap(), None);
    let (data, stat) = c.get_data(&base).await.unwrap();
    assert!(data.is_empty());
    assert_eq!((stat.version, stat.num_children), (0, 0));
    // ...and no watch fired.
    let mut w = w.changed().boxed();
    let mut dw = dw.changed().boxed();
    assert!((&mut w).now_or_never().is_none());
    assert!((&mut dw).now_or_never().is_none());
    c.create(&a, b"", &d()).await.unwrap();
    let e = soon("exists watch", w).await.unwrap();
    assert_eq!((e.event_type, e.path), (EventType::NodeCreated, a));
    drop(dw);
}

#[tokio::test]
async fn multi_failure_reports_the_index_and_error_of_the_failing_op() {
    let _shared = SERVER.read().await;
    let c = client().await;
    let base = base(&c, "multi-index").await;
    let x = format!("{base}/x");
    c.create(&x, b"", &d()).await.unwrap();

    let cases: Vec<(zkit::MultiWrite, usize, Error)> = vec![
        (c.multi().create(&x, b"", &d()), 0, Error::NodeExists),
        (
            c.multi()
                .check(&x, Version::Any)
                .delete(&format!("{base}/none"), Version::Any),
            1,
            Error::NoNode,
        ),
        (
            c.multi()
                .check(&x, Version::Exact(0))
                .set_data(&x, b"", Version::Exact(0))
                .delete(&base, Version::Any),
            2,
            Error::NotEmpty,
        ),
        (
            c.multi()
                .set_data(&x, b"", Version::Any)
                .check(&x, Version::Exact(0)),
            1,
            Error::BadVersion,
        ),
        (
            c.multi().delete(&x, Version::Exact(3)),
            0,
            Error::BadVersion,
        ),
        (
            c.multi()
                .create(&format!("{base}/empty-acl"), b"", &d().acl(vec![])),
            0,
            Error::InvalidAcl,
        ),
    ];
    for (i, (multi, index, err)) in cases.into_iter().enumerate() {
        match multi.commit().await {
            Err(Error::MultiFailed { index: got, source }) => {
                assert_eq!((got, *source), (index, err), "case {i}");
            }
            other => panic!("case {i}: expected MultiFailed, got {other:?}"),
        }
    }
    // Nothing of any of them was applied.
    let (children, stat) = c.get_children(&base).await.unwrap();
    assert_eq!(children, vec!["x".to_string()]);
    assert_eq!(c.exists(&x).await.unwrap().unwrap().version, 0);
    assert_eq!(stat.num_children, 1);
}

#[tokio::test]
async fn empty_multi_succeeds_without_results() {
    let _shared = SERVER.read().await;
    let c = client().await;
    let m = c.multi();
    assert!(m.is_empty());
    assert_eq!(m.commit().await.unwrap(), vec![]);
    let r = c.multi_read().execute().await.unwrap();
    assert!(r.is_empty());
}

#[tokio::test]
async fn multi_with_an_invalid_path_sends_nothing() {
    let _shared = SERVER.read().await;
    let c = client().await;
    let base = base(&c, "multi-invalid").await;
    let a = format!("{base}/a");
    let m = c
        .multi()
        .create(&a, b"", &d())
        .set_data("bad/", b"", Version::Any);
    match m.commit().await {
        Err(Error::InvalidPath { path, .. }) => assert_eq!(path, "bad/"),
        other => panic!("expected InvalidPath, got {other:?}"),
    }
    match c
        .multi()
        .create(
            &format!("{base}/ttl"),
            b"",
            &CreateOptions::new(CreateMode::PersistentWithTtl(Duration::ZERO)),
        )
        .commit()
        .await
    {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(c.exists(&a).await.unwrap(), None);
}

#[tokio::test]
async fn multi_creates_container_and_ttl_nodes() {
    let _shared = SERVER.read().await;
    let c = client().await;
    let base = base(&c, "multi-extended").await;
    let results = c
        .multi()
        .create(
            &format!("{base}/container"),
            b"",
            &CreateOptions::new(CreateMode::Container),
        )
        .create(
            &format!("{base}/ttl"),
            b"",
            &CreateOptions::new(CreateMode::PersistentWithTtl(Duration::from_secs(30))),
        )
        .commit()
        .await
        .unwrap();
    // Unlike create2 (path only on 3.8), ZooKeeper 3.8 answers
    // createContainer and createTTL inside a multi with path and Stat.
    assert_eq!(results.len(), 2);
    for (r, n) in results.iter().zip(["container", "ttl"]) {
        let OpResult::Create {
            path,
            stat: Some(stat),
        } = r
        else {
            panic!("{n}: {r:?}");
        };
        assert_eq!(path, &format!("{base}/{n}"));
        assert_eq!(stat.ephemeral_owner, 0, "{n}");
        assert_eq!(Some(stat), c.exists(path).await.unwrap().as_ref(), "{n}");
    }
}

#[tokio::test]
async fn multi_fires_recursive_watches_like_single_ops() {
    let _shared = SERVER.read().await;
    let c = client().await;
    let base = base(&c, "multi-watch").await;
    let mut w = c
        .add_watch(&base, AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let a = format!("{base}/a");
    client()
        .await
        .multi()
        .create(&a, b"", &d())
        .set_data(&a, b"x", Version::Any)
        .delete(&a, Version::Any)
        .commit()
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = soon("event", w.changed()).await.unwrap();
        got.push((e.event_type, e.path));
    }
    assert_eq!(
        got,
        vec![
            (EventType::NodeCreated, a.clone()),
            (EventType::NodeDataChanged, a.clone()),
            (EventType::NodeDeleted, a.clone()),
        ]
    );
}

#[tokio::test]
async fn multi_read_returns_a_result_per_read_including_errors() {
    let _shared = SERVER.read().await;
    let c = client().await;
    let base = base(&c, "multi-read").await;
    let a = format!("{base}/a");
    c.create(&a, b"data-a", &d()).await.unwrap();
    c.create(&format!("{a}/k1"), b"", &d()).await.unwrap();
    c.create(&format!("{a}/k2"), b"", &d()).await.unwrap();

    let results = c
        .multi_read()
        .get_data(&a)
        .get_data(&format!("{base}/missing"))
        .get_children(&a)
        .get_children(&format!("{base}/missing"))
        .get_data(&base)
        .execute()
        .await
        .unwrap();
    assert_eq!(results.len(), 5);
    match &results[0] {
        Ok(ReadResult::Data(data, stat)) => {
            assert_eq!(&data[..], b"data-a");
            assert_eq!(stat.num_children, 2);
            assert_eq!(stat, &c.exists(&a).await.unwrap().unwrap());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(results[1], Err(Error::NoNode));
    match &results[2] {
        Ok(ReadResult::Children(kids)) => {
            let mut kids = kids.clone();
            kids.sort();
            assert_eq!(kids, vec!["k1".to_string(), "k2".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(results[3], Err(Error::NoNode));
    assert!(matches!(&results[4], Ok(ReadResult::Data(d, _)) if d.is_empty()));

    match c.multi_read().get_data("nope").execute().await {
        Err(Error::InvalidPath { .. }) => {}
        other => panic!("expected InvalidPath, got {other:?}"),
    }
}

/// A failed multi consumes a zxid although nothing is applied (observed in
/// PROTOCOL.md 4.17); a following write gets the next-but-one zxid.
#[tokio::test]
async fn failed_multi_still_consumes_a_zxid() {
    let c = client().await;
    let base = base(&c, "multi-zxid").await;
    // No other test of this binary writes meanwhile.
    let _exclusive = SERVER.write().await;
    for attempt in 0..3 {
        let (_, s0) = c
            .create(&format!("{base}/n{attempt}"), b"", &d())
            .await
            .unwrap();
        let r = c.multi().check(&base, Version::Exact(99)).commit().await;
        assert!(
            matches!(r, Err(Error::MultiFailed { index: 0, .. })),
            "{r:?}"
        );
        let after_failed = c.last_zxid();
        let s1 = c
            .set_data(&format!("{base}/n{attempt}"), b"x", Version::Any)
            .await
            .unwrap();
        if after_failed == s0.czxid + 1 && s1.mzxid == s0.czxid + 2 {
            return;
        }
    }
    panic!("the failed multi never consumed exactly one zxid");
}

#[tokio::test]
async fn a_failed_fence_is_reported_as_fenced_not_by_index() {
    let _shared = SERVER.read().await;
    let c = client().await;
    let dir = base(&c, "fence").await;
    let owner = format!("{dir}/owner");
    let target = format!("{dir}/target");
    c.create(&owner, b"", &CreateOptions::default())
        .await
        .unwrap();
    c.create(&target, b"0", &CreateOptions::default())
        .await
        .unwrap();
    // Fence holds: written.
    c.multi()
        .fence(&owner, Version::Any)
        .set_data(&target, b"1", Version::Any)
        .commit()
        .await
        .unwrap();
    // Fence gone: refused as Fenced, naming it; nothing written.
    c.delete(&owner, Version::Any).await.unwrap();
    let r = c
        .multi()
        .fence(&owner, Version::Any)
        .set_data(&target, b"2", Version::Any)
        .commit()
        .await;
    match &r {
        Err(e @ Error::Fenced { path, source }) => {
            assert!(e.is_fenced());
            assert_eq!(path, &owner);
            assert_eq!(**source, Error::NoNode);
            assert_eq!(e.code(), Some(Error::NoNode.code().unwrap()));
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    let (d, _) = c.get_data(&target).await.unwrap();
    assert_eq!(&d[..], b"1");
    // Another op failing behind a holding fence is still MultiFailed.
    c.create(&owner, b"", &CreateOptions::default())
        .await
        .unwrap();
    let r = c
        .multi()
        .fence(&owner, Version::Any)
        .set_data(&target, b"3", Version::Exact(99))
        .commit()
        .await;
    assert!(
        matches!(&r, Err(Error::MultiFailed { index: 1, source }) if **source == Error::BadVersion),
        "{r:?}"
    );
    assert!(!r.unwrap_err().is_fenced());
}
