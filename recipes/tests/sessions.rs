//! Recipes built from one long-lived `Sessions` handle keep working across
//! session expiry with no user code: each test expires the recipe's session
//! mid-use and checks that what the old session owned is reported lost
//! (never carried over), that the recipe works again on a new session, and
//! that its invariant held throughout.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{base, client, connect_string, eventually, SOON};
use zkit::{Client, Error, SessionState, Version};
use zkit_recipes::leader::TermEnd;
use zkit_recipes::{
    Barrier, GroupMember, IdGenerator, LeaderLatch, LeaderSelector, Leadership, Lock, LockState,
    MemberSet, Queue, Semaphore, SessionEvent, Sessions, SharedCount,
};

fn sessions() -> Sessions {
    Sessions::new(
        Client::builder().session_timeout(Duration::from_secs(6)),
        connect_string(),
    )
}

/// Expires the live session of `s` on the server and waits until its
/// client knows.
async fn expire_live(s: &Sessions) -> Client {
    let c = s.current().expect("a live session");
    common::expire(&c).await;
    let mut states = c.state_stream();
    tokio::time::timeout(SOON, async {
        while let Some(st) = states.next_state().await {
            if st == SessionState::Expired {
                return;
            }
        }
    })
    .await
    .expect("the client sees its session expire");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_spans_sessions_and_close_never_opens_one() {
    let s = sessions();
    let mut events = s.events();
    let first = s.client().await.unwrap();
    assert_eq!(
        events.next().await,
        Some(SessionEvent::Connected {
            session: first.session_id()
        })
    );
    let old = expire_live(&s).await;
    // The server cuts the connection (Suspended), then answers the resume
    // with "expired" (Lost).
    assert_eq!(
        events.next().await,
        Some(SessionEvent::Suspended {
            session: old.session_id()
        })
    );
    assert_eq!(
        events.next().await,
        Some(SessionEvent::Lost {
            session: old.session_id()
        })
    );
    let second = s.client().await.unwrap();
    assert_ne!(second.session_id(), first.session_id());
    assert_eq!(
        events.next().await,
        Some(SessionEvent::Reconnected {
            session: second.session_id(),
            new_session: true
        })
    );
    s.close().await.unwrap();
    assert_eq!(events.next().await, Some(SessionEvent::Closed));
    assert_eq!(second.state(), SessionState::Closed);
    assert_eq!(s.client().await.unwrap_err(), Error::Closed);
    assert!(s.is_closed() && s.current().is_none());

    // Closing a handle that never connected opens no session.
    let idle = sessions();
    let mut events = idle.events();
    idle.close().await.unwrap();
    assert_eq!(events.next().await, Some(SessionEvent::Closed));
    assert!(idle.current().is_none());
    assert_eq!(idle.client().await.unwrap_err(), Error::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_works_again_after_expiry_and_the_old_guard_is_lost() {
    let setup = client().await;
    let dir = base(&setup, "sesslock").await;
    let path = format!("{dir}/lock");
    let target = format!("{dir}/target");
    setup
        .create(&target, b"0", &zkit::CreateOptions::default())
        .await
        .unwrap();
    let s = sessions();
    let lock = Lock::new(&s, path.clone());
    let guard = lock.acquire().await.unwrap();
    let old_session = guard.session_id();
    // A contender on a plain client waits behind us.
    let other = client().await;
    let contender = Lock::new(&other, path.clone());
    let waiting = tokio::spawn(async move { contender.acquire().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "one holder at a time");

    expire_live(&s).await;
    tokio::time::timeout(SOON, guard.lost())
        .await
        .expect("the old guard reports Lost");
    assert_eq!(guard.state(), LockState::Lost);
    // The expired holder's fenced write is refused; the new holder's works.
    let stale = guard
        .guarded()
        .set_data(&target, b"stale", Version::Any)
        .commit()
        .await;
    assert!(stale.is_err(), "{stale:?}");
    let theirs = tokio::time::timeout(SOON, waiting)
        .await
        .expect("the contender gets the lock")
        .unwrap()
        .unwrap();
    theirs
        .guarded()
        .set_data(&target, b"theirs", Version::Any)
        .commit()
        .await
        .unwrap();
    // The same Lock, no user code: queued behind the contender on a new
    // session, held once the contender releases.
    let again = tokio::spawn({
        let lock = lock.clone();
        async move { lock.acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!again.is_finished(), "one holder at a time");
    theirs.release().await.unwrap();
    let mine = tokio::time::timeout(SOON, again)
        .await
        .expect("acquired again")
        .unwrap()
        .unwrap();
    assert_ne!(mine.session_id(), old_session);
    assert_eq!(mine.state(), LockState::Held);
    let (d, _) = setup.get_data(&target).await.unwrap();
    assert_eq!(&d[..], b"theirs");
    mine.release().await.unwrap();
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_lease_is_lost_with_its_session_and_the_semaphore_works_again() {
    let setup = client().await;
    let dir = base(&setup, "sesssem").await;
    let s = sessions();
    let pool = Semaphore::new(&s, format!("{dir}/sem"), 1);
    let lease = pool.acquire().await.unwrap();
    expire_live(&s).await;
    tokio::time::timeout(SOON, lease.lost()).await.unwrap();
    let again = pool.acquire_timeout(SOON).await.unwrap().expect("a lease");
    assert_ne!(again.session_id(), lease.session_id());
    assert_eq!(
        pool.leases().await.unwrap().len(),
        1,
        "never two leases of 1"
    );
    again.release().await.unwrap();
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latch_loses_leadership_with_its_session_and_joins_again() {
    let setup = client().await;
    let dir = base(&setup, "sesslatch").await;
    let path = format!("{dir}/election");
    let s = sessions();
    let a = LeaderLatch::start(&s, path.clone(), "a").await.unwrap();
    a.await_leadership().await.unwrap();
    let other = client().await;
    let b = LeaderLatch::start(&other, path.clone(), "b").await.unwrap();
    assert!(a.is_leader() && !b.is_leader());

    expire_live(&s).await;
    // b leads; a's leadership ended (not closed: it joins again).
    tokio::time::timeout(SOON, b.await_leadership())
        .await
        .unwrap()
        .unwrap();
    assert!(!a.is_leader(), "two leaders");
    assert_ne!(a.leadership(), Leadership::Closed);
    eventually("a joins again", SOON, || async {
        b.participants().await.unwrap() == ["b", "a"]
    })
    .await;
    assert!(b.is_leader() && !a.is_leader());
    // When b leaves, a leads again, on its new session.
    b.close().await.unwrap();
    tokio::time::timeout(SOON, a.await_leadership())
        .await
        .unwrap()
        .unwrap();
    assert!(a.is_leader());
    a.close().await.unwrap();
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_with_requeue_leads_again_on_a_new_session() {
    let setup = client().await;
    let dir = base(&setup, "sesssel").await;
    let s = sessions();
    let (ends_tx, mut ends) = tokio::sync::mpsc::unbounded_channel();
    let selector = LeaderSelector::new(&s, format!("{dir}/sel"), "me")
        .auto_requeue(true)
        .on_term_end(move |end| {
            let _ = ends_tx.send(end);
        });
    let (terms_tx, mut terms) = tokio::sync::mpsc::unbounded_channel();
    let runner = tokio::spawn(async move {
        selector
            .run(|leader| {
                let terms_tx = terms_tx.clone();
                async move {
                    let _ = terms_tx.send(leader.fencing_token());
                    std::future::pending::<()>().await; // lead until lost
                }
            })
            .await
    });
    let first = tokio::time::timeout(SOON, terms.recv())
        .await
        .unwrap()
        .unwrap();
    expire_live(&s).await;
    let second = tokio::time::timeout(SOON, terms.recv())
        .await
        .expect("a second term on a new session")
        .unwrap();
    assert!(second > first, "fencing tokens grow: {first} then {second}");
    // The hook heard how the first term ended (suspended when the server
    // cut the connection, or lost).
    let end = ends.try_recv().expect("the first term's end was reported");
    assert!(
        matches!(end, TermEnd::Lost { token } | TermEnd::Suspended { token } if token == first),
        "{end:?}"
    );
    assert!(!runner.is_finished());
    runner.abort();
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_consumer_carries_on_and_nothing_is_lost_or_done_twice() {
    let setup = client().await;
    let dir = base(&setup, "sessq").await;
    let path = format!("{dir}/q");
    let producer = Queue::new(&setup, path.clone());
    for i in 0..10 {
        producer.put(format!("job-{i}").as_bytes()).await.unwrap();
    }
    let s = sessions();
    let q = Queue::new(&s, path.clone());
    let mut done = Vec::new();
    for _ in 0..3 {
        let c = q.take_claimed().await.unwrap();
        done.push(String::from_utf8(c.data().to_vec()).unwrap());
        c.complete().await.unwrap();
    }
    // Expire while holding a claim: its completion is refused.
    let held = q.take_claimed().await.unwrap();
    let held_item = String::from_utf8(held.data().to_vec()).unwrap();
    expire_live(&s).await;
    assert!(
        held.complete().await.is_err(),
        "a claim of an expired session"
    );
    // The same Queue, no user code: the rest, the released item included.
    while let Some(c) = q.poll_claimed(Duration::from_secs(2)).await.unwrap() {
        done.push(String::from_utf8(c.data().to_vec()).unwrap());
        c.complete().await.unwrap();
    }
    let unique: HashSet<_> = done.iter().cloned().collect();
    assert_eq!(unique.len(), done.len(), "completed twice: {done:?}");
    assert_eq!(done.len(), 10, "lost: {done:?}");
    assert!(unique.contains(&held_item));
    assert!(producer.is_empty().await.unwrap());
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_and_an_id_generator_stay_exact_across_expiry() {
    let setup = client().await;
    let dir = base(&setup, "sesscount").await;
    let s = sessions();
    let count = SharedCount::new(&s, format!("{dir}/count"), 0);
    let mut ids = IdGenerator::new(&s, format!("{dir}/ids"), 4);
    let mut acknowledged = 0;
    let mut seen = Vec::new();
    for round in 0..2 {
        for _ in 0..10 {
            if count.add(1).await.is_ok() {
                acknowledged += 1;
            }
            seen.push(ids.next_id().await.unwrap());
        }
        if round == 0 {
            expire_live(&s).await;
        }
    }
    // The first add after the expiry may fail (its session was gone); the
    // counter holds exactly the acknowledged ones.
    assert!(acknowledged >= 19, "{acknowledged}");
    assert_eq!(count.get().await.unwrap().value, acknowledged);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_wait_survives_expiry() {
    let setup = client().await;
    let dir = base(&setup, "sessbar").await;
    let path = format!("{dir}/gate");
    let s = sessions();
    let gate = Barrier::new(&s, path.clone());
    gate.set().await.unwrap();
    let waiter = tokio::spawn({
        let gate = Barrier::new(&s, path.clone());
        async move { gate.wait().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    expire_live(&s).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the barrier is still up");
    Barrier::new(&setup, path).remove().await.unwrap();
    tokio::time::timeout(SOON, waiter)
        .await
        .expect("released")
        .unwrap()
        .unwrap();
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_rejoins_and_the_member_set_follows_across_expiry() {
    let setup = client().await;
    let dir = base(&setup, "sessgroup").await;
    let path = format!("{dir}/members");
    let s = sessions();
    let me = GroupMember::join(&s, &path, "me", b"v1").await.unwrap();
    let watcher = sessions();
    let set = MemberSet::watch(&watcher, &path);
    set.initialized().await.unwrap();
    me.update(b"v2").await.unwrap();
    // Expire both: the member joins again with its latest payload, the set
    // follows on its own new session.
    let old = expire_live(&s).await;
    expire_live(&watcher).await;
    eventually("joined again on a new session", SOON, || async {
        match setup.exists(&format!("{path}/me")).await.unwrap() {
            Some(st) => st.ephemeral_owner != old.session_id().0 && st.ephemeral_owner != 0,
            None => false,
        }
    })
    .await;
    let (d, _) = setup.get_data(&format!("{path}/me")).await.unwrap();
    assert_eq!(&d[..], b"v2");
    let other = client().await;
    let _late = GroupMember::join(&other, &path, "late", b"x")
        .await
        .unwrap();
    eventually("the set sees both", SOON, || async {
        set.borrow().keys().cloned().collect::<Vec<_>>() == ["late", "me"]
    })
    .await;
    me.leave().await.unwrap();
    eventually("the set sees me leave", SOON, || async {
        set.borrow().keys().cloned().collect::<Vec<_>>() == ["late"]
    })
    .await;
    s.close().await.unwrap();
    watcher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_cache_converges_again_after_its_session_expired() {
    use zkit_recipes::cache::TreeCache;
    let setup = client().await;
    let dir = base(&setup, "sesscache").await;
    let root = format!("{dir}/tree");
    setup
        .create(&root, b"r", &zkit::CreateOptions::default())
        .await
        .unwrap();
    let s = sessions();
    let cache = TreeCache::start(s.clone(), root.clone());
    cache.initialized().await;
    expire_live(&s).await;
    // Changes made while the cache has no session, then after.
    setup
        .create(&format!("{root}/a"), b"1", &zkit::CreateOptions::default())
        .await
        .unwrap();
    setup.set_data(&root, b"r2", Version::Any).await.unwrap();
    eventually("the cache converges on a new session", SOON, || async {
        cache.get(&format!("{root}/a")).map(|n| n.data.to_vec()) == Some(b"1".to_vec())
            && cache.get(&root).map(|n| n.data.to_vec()) == Some(b"r2".to_vec())
    })
    .await;
    setup
        .create(&format!("{root}/b"), b"2", &zkit::CreateOptions::default())
        .await
        .unwrap();
    eventually("and keeps following", SOON, || async {
        cache.children(&root) == ["a", "b"]
    })
    .await;
    assert!(s.current().is_some(), "a live session");
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_barrier_member_enters_again_on_a_new_session() {
    use zkit_recipes::DoubleBarrier;
    let setup = client().await;
    let dir = base(&setup, "sessdbar").await;
    let path = format!("{dir}/batch");
    let s = sessions();
    let a = DoubleBarrier::new(&s, path.clone(), 2);
    let entering = tokio::spawn(async move {
        a.enter().await?;
        Ok::<_, Error>(a)
    });
    // a is waiting for a second member; its session expires meanwhile.
    eventually("a is in", SOON, || async {
        setup
            .get_children(&path)
            .await
            .map(|(c, _)| c.len())
            .unwrap_or(0)
            == 1
    })
    .await;
    expire_live(&s).await;
    let other = client().await;
    let b = DoubleBarrier::new(&other, path.clone(), 2);
    // The barrier opens only with two live members: a must have entered
    // again on its new session.
    tokio::time::timeout(SOON, b.enter())
        .await
        .expect("the barrier opens")
        .unwrap();
    let a = tokio::time::timeout(SOON, entering)
        .await
        .expect("a gets in")
        .unwrap()
        .unwrap();
    let (leaving_a, leaving_b) = tokio::join!(a.leave(), b.leave());
    leaving_a.unwrap();
    leaving_b.unwrap();
    s.close().await.unwrap();
}
