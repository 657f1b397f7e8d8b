//! `AtomicLong`: Curator's `DistributedAtomicLong` format, optimistic
//! updates, promotion to a lock, and no lost or doubled increments under
//! contention.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;

use common::{base, client};
use zkit::{CreateOptions, Error};
use zkit_recipes::AtomicLong;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_in_the_curator_format() {
    let c = client().await;
    let dir = base(&c, "atomic").await;
    let path = format!("{dir}/deep/value");
    let a = AtomicLong::new(&c, path.clone());
    assert_eq!(a.get().await.unwrap(), 0, "absent reads as 0");
    let r = a.add(5).await.unwrap();
    assert!(r.succeeded);
    assert_eq!((r.pre_value, r.post_value, r.optimistic_tries), (0, 5, 1));
    let (raw, _) = c.get_data(&path).await.unwrap();
    assert_eq!(&raw[..], &[0, 0, 0, 0, 0, 0, 0, 5], "8 bytes, big-endian");
    assert_eq!(a.decrement().await.unwrap().post_value, 4);
    assert_eq!(a.subtract(10).await.unwrap().post_value, -6);
    let no = a.compare_and_set(7, 100).await.unwrap();
    assert!(!no.succeeded);
    assert_eq!((no.pre_value, no.post_value), (-6, -6));
    let yes = a.compare_and_set(-6, 100).await.unwrap();
    assert!(yes.succeeded);
    assert_eq!(a.get().await.unwrap(), 100);
    assert!(a.try_set(i64::MAX).await.unwrap().succeeded);
    assert_eq!(
        a.increment().await.unwrap().post_value,
        i64::MIN,
        "wraps as Java's long"
    );
    a.force_set(42).await.unwrap();
    assert_eq!(a.get().await.unwrap(), 42);
    assert!(!a.initialize(1).await.unwrap(), "exists: left alone");
    let fresh = AtomicLong::new(&c, format!("{dir}/fresh"));
    assert!(fresh.initialize(9).await.unwrap());
    assert_eq!(fresh.get().await.unwrap(), 9);
    // An empty node reads as 0; a node of another size is refused.
    c.create(&format!("{dir}/empty"), b"", &CreateOptions::default())
        .await
        .unwrap();
    let empty = AtomicLong::new(&c, format!("{dir}/empty"));
    assert_eq!(empty.increment().await.unwrap().post_value, 1);
    c.create(&format!("{dir}/bad"), b"1234", &CreateOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        AtomicLong::new(&c, format!("{dir}/bad")).increment().await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_are_neither_lost_nor_doubled() {
    let c = client().await;
    let dir = base(&c, "atomic-race").await;
    let path = format!("{dir}/value");
    const WORKERS: usize = 4;
    const EACH: usize = 60;
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let zk = client().await;
        // Half give up after one lost race, half are promoted to a lock.
        let a = if w % 2 == 0 {
            AtomicLong::new(&zk, path.clone()).optimistic_tries(1)
        } else {
            AtomicLong::new(&zk, path.clone())
                .optimistic_tries(1)
                .promoted_to_lock(format!("{dir}/lock"))
        };
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for _ in 0..EACH {
                let r = a.increment().await.unwrap();
                if r.succeeded {
                    assert_eq!(r.post_value, r.pre_value + 1);
                    won.push(r.post_value);
                }
            }
            zk.close().await.unwrap();
            won
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    let distinct: BTreeSet<i64> = won.iter().copied().collect();
    assert_eq!(distinct.len(), won.len(), "no value written twice");
    assert_eq!(
        AtomicLong::new(&c, path).get().await.unwrap(),
        won.len() as i64,
        "the final value counts exactly the successful increments"
    );
    assert!(!won.is_empty());
}
