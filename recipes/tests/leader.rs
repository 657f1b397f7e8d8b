//! Leader election: exactly one leader at a time, failover when the
//! leader's session closes or expires, a selector's task cancelled when its
//! leadership is lost.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{base, client, eventually, expire, SOON};
use zkit::Client;
use zkit_recipes::{LeaderLatch, LeaderSelector, Leadership};

async fn leaders(latches: &[Option<LeaderLatch>]) -> Vec<usize> {
    latches
        .iter()
        .enumerate()
        .filter(|(_, l)| l.as_ref().is_some_and(LeaderLatch::is_leader))
        .map(|(i, _)| i)
        .collect()
}

/// Three participants `p0`..`p2`, each with its own session, once `p0`
/// leads.
async fn three_latches(path: &str) -> (Vec<Client>, Vec<Option<LeaderLatch>>) {
    let mut clients = Vec::new();
    let mut latches = Vec::new();
    for i in 0..3 {
        let c = client().await;
        latches.push(Some(
            LeaderLatch::start(&c, path, &format!("p{i}"))
                .await
                .unwrap(),
        ));
        clients.push(c);
    }
    latches[0]
        .as_ref()
        .unwrap()
        .await_leadership()
        .await
        .unwrap();
    (clients, latches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_latch_leader_at_a_time_and_failover() {
    let setup = client().await;
    let dir = base(&setup, "latch").await;
    let path = format!("{dir}/election");
    let (clients, mut latches) = three_latches(&path).await;
    for _ in 0..20 {
        assert_eq!(leaders(&latches).await, vec![0]);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ids = latches[1].as_ref().unwrap().participants().await.unwrap();
    assert_eq!(ids, vec!["p0", "p1", "p2"]);
    let first_token = latches[0].as_ref().unwrap().fencing_token().unwrap();

    // The leader's session closes: the next participant takes over.
    let mut watch0 = latches[0].as_ref().unwrap().leadership_watch();
    clients[0].clone().close().await.unwrap();
    tokio::time::timeout(SOON, watch0.wait_for(|s| *s == Leadership::Closed))
        .await
        .unwrap()
        .unwrap();
    latches[1]
        .as_ref()
        .unwrap()
        .await_leadership()
        .await
        .unwrap();
    assert_eq!(leaders(&latches).await, vec![1]);
    assert!(latches[1].as_ref().unwrap().fencing_token().unwrap() > first_token);

    // The new leader's session expires: the last one leads.
    expire(&clients[1]).await;
    tokio::time::timeout(SOON, latches[2].as_ref().unwrap().await_leadership())
        .await
        .unwrap()
        .unwrap();
    eventually("expired latch closed", SOON, || async {
        latches[1].as_ref().unwrap().leadership() == Leadership::Closed
    })
    .await;
    assert_eq!(leaders(&latches).await, vec![2]);
    // Fenced writes: only a live participant's pass.
    let target = format!("{dir}/target");
    setup
        .create(&target, b"", &zkit::CreateOptions::default())
        .await
        .unwrap();
    latches[2]
        .as_ref()
        .unwrap()
        .guarded()
        .unwrap()
        .set_data(&target, b"2", zkit::Version::Any)
        .commit()
        .await
        .unwrap();
    let closing = latches[2].take().unwrap();
    closing.close().await.unwrap();
    let (kids, _) = setup.get_children(&path).await.unwrap();
    assert!(kids.is_empty(), "{kids:?}");
    for c in clients.into_iter().skip(2) {
        c.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_terms_never_overlap_and_a_lost_term_is_cancelled() {
    let setup = client().await;
    let dir = base(&setup, "selector").await;
    let path = format!("{dir}/election");
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let terms = Arc::new(AtomicUsize::new(0));
    let mut runs = Vec::new();
    let mut clients = Vec::new();
    for i in 0..3 {
        let c = client().await;
        let sel = LeaderSelector::new(&c, path.clone(), &format!("s{i}")).auto_requeue(true);
        let (inside, overlaps, terms) = (inside.clone(), overlaps.clone(), terms.clone());
        runs.push(tokio::spawn(async move {
            sel.run(|leader| {
                let (inside, overlaps, terms) = (inside.clone(), overlaps.clone(), terms.clone());
                async move {
                    assert!(leader.fencing_token() > 0);
                    if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    terms.fetch_add(1, Ordering::SeqCst);
                }
            })
            .await
        }));
        clients.push(c);
    }
    eventually("15 terms", Duration::from_secs(20), || async {
        terms.load(Ordering::SeqCst) >= 15
    })
    .await;
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    for r in &runs {
        r.abort();
    }

    // A leader whose task never ends loses its session: the task is
    // dropped and another selector leads.
    let stuck = client().await;
    let cancelled = Arc::new(AtomicBool::new(false));
    struct OnDrop(Arc<AtomicBool>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let path2 = format!("{dir}/election2");
    let leading = Arc::new(AtomicBool::new(false));
    let stuck_run = tokio::spawn({
        let sel = LeaderSelector::new(&stuck, path2.clone(), "stuck");
        let (cancelled, leading) = (cancelled.clone(), leading.clone());
        async move {
            sel.run(|_| {
                let guard = OnDrop(cancelled.clone());
                let leading = leading.clone();
                async move {
                    leading.store(true, Ordering::SeqCst);
                    let _guard = guard;
                    std::future::pending::<()>().await;
                }
            })
            .await
        }
    });
    eventually("stuck leads", SOON, || async {
        leading.load(Ordering::SeqCst)
    })
    .await;
    let other = client().await;
    let took_over = Arc::new(AtomicBool::new(false));
    let other_run = tokio::spawn({
        let sel = LeaderSelector::new(&other, path2.clone(), "other");
        let took_over = took_over.clone();
        async move {
            sel.run(|_| {
                let took_over = took_over.clone();
                async move { took_over.store(true, Ordering::SeqCst) }
            })
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!took_over.load(Ordering::SeqCst));
    expire(&stuck).await;
    eventually("stuck task cancelled", SOON, || async {
        cancelled.load(Ordering::SeqCst)
    })
    .await;
    eventually("other leads", SOON, || async {
        took_over.load(Ordering::SeqCst)
    })
    .await;
    let _ = tokio::time::timeout(SOON, stuck_run).await.unwrap();
    tokio::time::timeout(SOON, other_run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    other.close().await.unwrap();
    for c in clients {
        c.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_participant_leaving_moves_nobody_ahead_of_the_leader() {
    let setup = client().await;
    let dir = base(&setup, "latch-middle").await;
    let path = format!("{dir}/election");
    let (clients, mut latches) = three_latches(&path).await;
    // Let the third settle on watching the second (nothing shows it).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The second in line goes: the third now waits for the leader, and
    // must not lead while the leader lives.
    clients[1].clone().close().await.unwrap();
    for _ in 0..30 {
        assert_eq!(leaders(&latches).await, vec![0]);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The leader goes: the third (now second in line) takes over at once.
    let mut watch0 = latches[0].as_ref().unwrap().leadership_watch();
    clients[0].clone().close().await.unwrap();
    // Its session is over: no longer leader, whatever its task has seen.
    assert_eq!(
        latches[0].as_ref().unwrap().leadership(),
        Leadership::Closed
    );
    tokio::time::timeout(SOON, latches[2].as_ref().unwrap().await_leadership())
        .await
        .unwrap()
        .unwrap();
    // The closed leader's latch learns of its session's end on its own.
    tokio::time::timeout(SOON, watch0.wait_for(|s| *s == Leadership::Closed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leaders(&latches).await, vec![2]);
    assert_eq!(
        latches[2].as_ref().unwrap().participants().await.unwrap(),
        vec!["p2"]
    );
    latches[2].take().unwrap().close().await.unwrap();
    clients[2].clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_term_end_hook_hears_a_returned_term() {
    let setup = client().await;
    let dir = base(&setup, "termend").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let selector = zkit_recipes::LeaderSelector::new(&setup, format!("{dir}/sel"), "me")
        .on_term_end(move |end| {
            let _ = tx.send(end);
        });
    let (tok_tx, mut tok_rx) = tokio::sync::mpsc::unbounded_channel();
    selector
        .run(|leader| {
            let tok_tx = tok_tx.clone();
            async move {
                let _ = tok_tx.send(leader.fencing_token());
            }
        })
        .await
        .unwrap();
    let token = tok_rx.recv().await.unwrap();
    assert_eq!(
        rx.recv().await,
        Some(zkit_recipes::leader::TermEnd::Returned { token })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_follows_who_leads_without_taking_part() {
    let c = client().await;
    let path = format!("{}/election", base(&c, "observe").await);
    let mut observer = zkit_recipes::LeaderObserver::observe(&c, path.clone());
    observer.initialized().await.unwrap();
    assert_eq!(observer.current(), None, "nobody leads an empty election");
    let (clients, mut latches) = three_latches(&path).await;
    let lead = |o: &zkit_recipes::LeaderObserver| o.current().map(|l| l.id);
    eventually("the observer sees p0", SOON, || {
        let ok = lead(&observer).as_deref() == Some("p0");
        async move { ok }
    })
    .await;
    let first = observer.current().unwrap();
    assert_eq!(
        Some(first.fencing_token),
        latches[0].as_ref().unwrap().fencing_token(),
        "the leader's own token"
    );
    // The leader leaves: the next one is seen, with a larger token.
    latches[0].take().unwrap().close().await.unwrap();
    let next = tokio::time::timeout(SOON, async {
        loop {
            if let Some(l) = observer.changed().await.unwrap() {
                if l.id != "p0" {
                    return l;
                }
            }
        }
    })
    .await
    .expect("a new leader seen");
    assert_eq!(next.id, "p1");
    assert!(next.fencing_token > first.fencing_token);
    // p1's latch learns it leads from its own watch, which may come after
    // the observer's: it gets there, and the observer took no part.
    eventually("p1's latch leads", SOON, || {
        let latches = &latches;
        async move { leaders(latches).await == vec![1] }
    })
    .await;
    // Its session expires: p2 leads, and the observer says so.
    expire(&clients[1]).await;
    eventually("the observer sees p2", Duration::from_secs(15), || {
        let ok = lead(&observer).as_deref() == Some("p2");
        async move { ok }
    })
    .await;
    // A selector's nodes (Curator's "-lock-" layout) are seen too.
    let sel_path = format!("{path}-selector");
    let mut sel_observer = zkit_recipes::LeaderObserver::observe(&c, sel_path.clone());
    let selector = LeaderSelector::new(&c, sel_path, "s0");
    let running = tokio::spawn(async move {
        let _ = selector
            .run(|_leader| async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
            })
            .await;
    });
    let seen = tokio::time::timeout(SOON, async {
        loop {
            if let Some(l) = sel_observer.changed().await.unwrap() {
                return l;
            }
        }
    })
    .await
    .expect("the selector's leader seen");
    assert_eq!(seen.id, "s0");
    running.abort();
    for l in latches.into_iter().flatten() {
        let _ = l.close().await;
    }
}
