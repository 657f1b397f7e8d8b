//! Pipelining against a real ZooKeeper 3.8 server: requests are sent when
//! the method is called, in call order, and replies complete in that order.

mod common;

use common::*;
use futures::future::join_all;
use futures::FutureExt as _;
use zkit::{CreateMode, CreateOptions, Version};

#[tokio::test]
async fn thousand_pipelined_reads_all_succeed() {
    let c = client().await;
    let base = base(&c, "pipeline-reads").await;
    for i in 0..10 {
        c.create(
            &format!("{base}/n{i}"),
            format!("data-{i}").as_bytes(),
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    }
    // Issue all 1000 before awaiting any.
    let futs: Vec<_> = (0..1000)
        .map(|i| c.get_data(&format!("{base}/n{}", i % 10)))
        .collect();
    let results = soon("1000 reads", join_all(futs)).await;
    for (i, r) in results.into_iter().enumerate() {
        let (data, stat) = r.unwrap_or_else(|e| panic!("read {i}: {e:?}"));
        assert_eq!(data, format!("data-{}", i % 10).as_bytes(), "read {i}");
        assert_eq!(stat.version, 0);
    }
    assert!(c.state().is_connected());
}

#[tokio::test]
async fn replies_complete_in_call_order() {
    let c = client().await;
    let base = base(&c, "pipeline-order").await;
    let mut futs: Vec<_> = (0..1000).map(|_| c.exists(&base).boxed()).collect();
    // Await the last one first: by then every earlier reply has been
    // delivered, because replies arrive (and are handed out) in order.
    let last = futs.pop().unwrap();
    soon("last reply", last).await.unwrap().unwrap();
    for (i, f) in futs.into_iter().enumerate() {
        // (unconstrained: tokio's coop budget would make the 128th poll in a
        // row pending.)
        let r = tokio::task::unconstrained(f)
            .now_or_never()
            .unwrap_or_else(|| panic!("reply {i} not complete after reply 999"));
        assert!(r.unwrap().is_some());
    }
}

#[tokio::test]
async fn pipelined_sequential_creates_are_numbered_in_call_order() {
    let c = client().await;
    let base = base(&c, "pipeline-seq").await;
    let prefix = format!("{base}/q-");
    let seq = CreateOptions::new(CreateMode::PersistentSequential);
    let futs: Vec<_> = (0..200)
        .map(|i| c.create(&prefix, format!("{i}").as_bytes(), &seq))
        .collect();
    let results = soon("200 creates", join_all(futs)).await;
    for (i, r) in results.into_iter().enumerate() {
        let (path, stat) = r.unwrap();
        assert_eq!(path, format!("{prefix}{i:010}"), "create {i}");
        assert_eq!(stat.data_length as usize, format!("{i}").len());
    }
    assert_eq!(c.get_all_children_number(&base).await.unwrap(), 200);
}

#[tokio::test]
async fn pipelined_conditional_writes_apply_in_call_order() {
    let c = client().await;
    let base = base(&c, "pipeline-cas").await;
    // Each write expects the version the previous one produced: they only
    // all succeed if the server applies them in call order.
    let futs: Vec<_> = (0..300)
        .map(|i| c.set_data(&base, format!("{i}").as_bytes(), Version::Exact(i)))
        .collect();
    for (i, r) in soon("300 writes", join_all(futs))
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.unwrap().version, i as i32 + 1, "write {i}");
    }
    let (data, stat) = c.get_data(&base).await.unwrap();
    assert_eq!((&data[..], stat.version), (&b"299"[..], 300));
}

#[tokio::test]
async fn pipelined_mixed_operations_from_clones_keep_call_order() {
    let c = client().await;
    let clone = c.clone();
    let base = base(&c, "pipeline-mixed").await;
    let p = format!("{base}/n");
    let create = c.create(&p, b"0", &CreateOptions::default());
    let set = clone.set_data(&p, b"1", Version::Exact(0));
    let read = c.get_data(&p);
    let delete = clone.delete(&p, Version::Exact(1));
    let gone = c.exists(&p);
    // Await in reverse order: each was sent when called.
    assert_eq!(soon("exists", gone).await.unwrap(), None);
    soon("delete", delete).await.unwrap();
    let (data, stat) = soon("read", read).await.unwrap();
    assert_eq!((&data[..], stat.version), (&b"1"[..], 1));
    soon("set", set).await.unwrap();
    soon("create", create).await.unwrap();
}

#[tokio::test]
async fn dropped_futures_still_apply_their_writes() {
    let c = client().await;
    let base = base(&c, "pipeline-dropped").await;
    for i in 0..20 {
        drop(c.create(&format!("{base}/n{i}"), b"", &CreateOptions::default()));
    }
    // A later request is answered after all of them.
    assert_eq!(c.get_all_children_number(&base).await.unwrap(), 20);
}

#[tokio::test]
async fn many_children_created_pipelined_are_listed() {
    let c = client().await;
    let base = base(&c, "pipeline-children").await;
    let futs: Vec<_> = (0..2000)
        .map(|i| {
            c.create(
                &format!("{base}/child-{i:05}"),
                b"",
                &CreateOptions::default(),
            )
        })
        .collect();
    for r in soon("2000 creates", join_all(futs)).await {
        r.unwrap();
    }
    let (mut kids, stat) = c.get_children(&base).await.unwrap();
    assert_eq!(
        (kids.len(), stat.num_children, stat.cversion),
        (2000, 2000, 2000)
    );
    kids.sort();
    let want: Vec<_> = (0..2000).map(|i| format!("child-{i:05}")).collect();
    assert_eq!(kids, want);
    assert_eq!(c.get_all_children_number(&base).await.unwrap(), 2000);
}

#[tokio::test]
async fn large_pipelined_replies_arrive_whole_and_in_order() {
    // Replies far beyond one write batch of the server (hundreds of KiB
    // queued at once), and values larger than a batch on their own.
    let c = client().await;
    let base = base(&c, "pipeline-large").await;
    let sizes = [4 * 1024, 100 * 1024, 17, 40 * 1024];
    for (i, size) in sizes.iter().enumerate() {
        let value: Vec<u8> = (0..*size).map(|b| (b % 251) as u8 ^ i as u8).collect();
        c.create(&format!("{base}/n{i}"), &value, &CreateOptions::default())
            .await
            .unwrap();
    }
    let futs: Vec<_> = (0..200)
        .map(|i| c.get_data(&format!("{base}/n{}", i % sizes.len())))
        .collect();
    let results = soon("200 large reads", join_all(futs)).await;
    for (i, r) in results.into_iter().enumerate() {
        let k = i % sizes.len();
        let (data, stat) = r.unwrap_or_else(|e| panic!("read {i}: {e:?}"));
        let want: Vec<u8> = (0..sizes[k]).map(|b| (b % 251) as u8 ^ k as u8).collect();
        assert_eq!(data.len(), sizes[k], "read {i}");
        assert!(data == want, "read {i}: wrong bytes");
        assert_eq!(stat.data_length as usize, sizes[k]);
    }
    assert!(c.state().is_connected());
}
