//! The read/write lock: readers share, writers exclude everyone, a queued
//! writer keeps later readers out, downgrade keeps writers out.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{base, client, SOON};
use zkit_recipes::ReadWriteLock;

/// 4 readers and 3 writers, 20 rounds each: a writer is never inside with
/// anyone; readers do overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_exclude_everyone_and_readers_share() {
    let setup = client().await;
    let dir = base(&setup, "rw").await;
    let path = format!("{dir}/rw");
    // > 0: readers inside; -1: a writer inside.
    let inside = Arc::new(AtomicI64::new(0));
    let violations = Arc::new(AtomicUsize::new(0));
    let max_readers = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for i in 0..7 {
        let c = client().await;
        let rw = ReadWriteLock::new(&c, path.clone());
        let (inside, violations, max_readers) =
            (inside.clone(), violations.clone(), max_readers.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                if i < 4 {
                    let g = rw.read().acquire().await.unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst);
                    if now < 0 {
                        violations.fetch_add(1, Ordering::SeqCst);
                    }
                    max_readers.fetch_max(now + 1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(15)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    g.release().await.unwrap();
                } else {
                    let g = rw.write().acquire().await.unwrap();
                    if inside
                        .compare_exchange(0, -1, Ordering::SeqCst, Ordering::SeqCst)
                        .is_err()
                    {
                        violations.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let _ = inside.compare_exchange(-1, 0, Ordering::SeqCst, Ordering::SeqCst);
                    g.release().await.unwrap();
                }
            }
            c.close().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(violations.load(Ordering::SeqCst), 0);
    assert!(
        max_readers.load(Ordering::SeqCst) >= 2,
        "readers never shared"
    );
}

/// A reader that arrives while a writer waits queues behind that writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_writer_keeps_later_readers_out() {
    let setup = client().await;
    let dir = base(&setup, "rwq").await;
    let path = format!("{dir}/rw");
    let c = client().await;
    let rw = ReadWriteLock::new(&c, path.clone());
    let r1 = rw.read().acquire().await.unwrap();
    let r2 = rw
        .read()
        .try_acquire()
        .await
        .unwrap()
        .expect("readers share");
    let writer = tokio::spawn({
        let rw = rw.clone();
        async move { rw.write().acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!writer.is_finished(), "writer got in beside readers");
    assert!(
        rw.read().try_acquire().await.unwrap().is_none(),
        "a later reader overtook the waiting writer"
    );
    r1.release().await.unwrap();
    r2.release().await.unwrap();
    let w = tokio::time::timeout(SOON, writer)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(rw.read().try_acquire().await.unwrap().is_none());
    w.release().await.unwrap();
    c.close().await.unwrap();
}

/// Downgrade: the write lock becomes a read lock with no gap for a waiting
/// writer; other readers may join, writers wait until the reader leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrade_keeps_writers_out() {
    let setup = client().await;
    let dir = base(&setup, "down").await;
    let path = format!("{dir}/rw");
    let a = client().await;
    let b = client().await;
    let rw_a = ReadWriteLock::new(&a, path.clone());
    let rw_b = ReadWriteLock::new(&b, path.clone());
    let w = rw_a.write().acquire().await.unwrap();
    let waiting_writer = tokio::spawn({
        let rw_b = rw_b.clone();
        async move { rw_b.write().acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = w.downgrade().await.unwrap();
    assert!(r.is_held());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting_writer.is_finished(),
        "a writer slipped in at the downgrade"
    );
    // The downgraded reader sorts at the old writer's slot: its name
    // carries the writer's sequence number.
    assert!(r.node().contains("__READ__"), "{}", r.node());
    r.release().await.unwrap();
    let w2 = tokio::time::timeout(SOON, waiting_writer)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    w2.release().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}
