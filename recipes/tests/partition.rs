//! The partitioner shares items out among live members, never grants an item
//! to two members at once, rebalances on join, leave and expiry, and stops
//! work while a member's connection is lost.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{base, client, connect_string, eventually};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zkit::{Client, Error, Version};
use zkit_recipes::partition::{ConsistentHash, PartitionOptions, Release};
use zkit_recipes::{Grant, PartitionEvent, Partitioner, Sessions};

/// What every member works on now, checked at each change: an item granted
/// to a member while another still works on it is an overlap.
#[derive(Debug, Default)]
struct Board {
    active: BTreeMap<String, (u64, BTreeSet<String>)>,
    overlaps: Vec<String>,
    releases: Vec<(String, Release)>,
}

impl Board {
    fn start(&mut self, id: &str, g: &Grant) {
        let items: BTreeSet<String> = g.items().map(str::to_string).collect();
        for (other, (_, theirs)) in &self.active {
            for item in theirs.intersection(&items) {
                self.overlaps.push(format!("{item}: {id} while {other}"));
            }
        }
        if let Some((last, _)) = self.active.get(id) {
            assert!(g.generation() > *last, "generations grow");
        }
        self.active.insert(id.to_string(), (g.generation(), items));
    }

    fn stop(&mut self, id: &str, why: Release) {
        self.active.remove(id);
        self.releases.push((id.to_string(), why));
    }

    fn shares(&self) -> BTreeMap<String, usize> {
        self.active
            .iter()
            .map(|(id, (_, items))| (id.clone(), items.len()))
            .collect()
    }

    fn owned(&self) -> BTreeSet<String> {
        self.active
            .values()
            .flat_map(|(_, items)| items.iter().cloned())
            .collect()
    }
}

fn lock(b: &Mutex<Board>) -> std::sync::MutexGuard<'_, Board> {
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A member's application: records its grant, stops (records, then drops
/// the grant) when told. `stop` closes the partitioner.
struct Driver {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

fn drive(mut p: Partitioner, id: &str, board: Arc<Mutex<Board>>) -> Driver {
    let (stop, mut stop_rx) = oneshot::channel::<()>();
    let id = id.to_string();
    let task = tokio::spawn(async move {
        let mut grant: Option<Grant> = None;
        loop {
            tokio::select! {
                ev = p.next() => match ev {
                    Ok(PartitionEvent::Acquired(g)) => {
                        lock(&board).start(&id, &g);
                        grant = Some(g);
                    }
                    Ok(PartitionEvent::Released { why, .. }) => {
                        lock(&board).stop(&id, why);
                        grant = None;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        lock(&board).active.remove(&id);
                        return;
                    }
                },
                _ = &mut stop_rx => {
                    lock(&board).active.remove(&id);
                    drop(grant.take());
                    p.close().await;
                    return;
                }
            }
        }
    });
    Driver {
        stop: Some(stop),
        task,
    }
}

impl Driver {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

fn items(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("item-{i:02}")).collect()
}

async fn settled(board: &Arc<Mutex<Board>>, members: usize, n_items: usize, limit: Duration) {
    let all: BTreeSet<String> = items(n_items).into_iter().collect();
    eventually(
        &format!("{members} members share {n_items} items evenly"),
        limit,
        || {
            let b = lock(board);
            let shares = b.shares();
            let ok = shares.len() == members
                && b.owned() == all
                && shares.values().max().unwrap_or(&0) - shares.values().min().unwrap_or(&0) <= 1
                && shares.values().sum::<usize>() == n_items;
            async move { ok }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_are_shared_evenly_and_follow_joins_and_leaves() {
    let c = client().await;
    let path = base(&c, "partition").await;
    let board = Arc::new(Mutex::new(Board::default()));
    let mut clients = Vec::new();
    let mut drivers = Vec::new();
    for i in 0..3 {
        let m = client().await;
        let p = Partitioner::new(&m, &path, &format!("m{i}"), items(10)).unwrap();
        drivers.push(drive(p, &format!("m{i}"), board.clone()));
        clients.push(m);
    }
    settled(&board, 3, 10, Duration::from_secs(15)).await;
    // The layout: a party node per member, a lock per item.
    let (party, _) = c.get_children(&format!("{path}/party")).await.unwrap();
    assert_eq!(party.len(), 3);
    let (locks, _) = c.get_children(&format!("{path}/locks")).await.unwrap();
    assert_eq!(locks.len(), 10);

    // A fourth member joins: 3, 3, 2, 2.
    let m = client().await;
    let p = Partitioner::new(&m, &path, "m3", items(10)).unwrap();
    drivers.push(drive(p, "m3", board.clone()));
    clients.push(m);
    settled(&board, 4, 10, Duration::from_secs(15)).await;

    // One leaves (closes): the other three share everything again.
    let gone = drivers.remove(0);
    gone.stop().await;
    settled(&board, 3, 10, Duration::from_secs(15)).await;
    let (party, _) = c.get_children(&format!("{path}/party")).await.unwrap();
    assert_eq!(party.len(), 3, "the closed member left the party");

    {
        let b = lock(&board);
        assert!(
            b.overlaps.is_empty(),
            "an item granted twice: {:?}",
            b.overlaps
        );
        assert!(
            b.releases
                .iter()
                .all(|(_, why)| matches!(why, Release::Rebalance | Release::Closed)),
            "{:?}",
            b.releases
        );
    }
    for d in drivers {
        d.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_session_expired_loses_its_items_and_takes_a_share_again() {
    let c = client().await;
    let path = base(&c, "partition-expiry").await;
    let board = Arc::new(Mutex::new(Board::default()));
    let sessions = Sessions::new(
        Client::builder().session_timeout(Duration::from_secs(6)),
        connect_string(),
    );
    let other = client().await;
    // Member a is driven by hand here: its grant is kept across the expiry.
    let mut a = Partitioner::new(&sessions, &path, "a", items(4)).unwrap();
    let b = Partitioner::new(&other, &path, "b", items(4)).unwrap();
    let db = drive(b, "b", board.clone());
    let first = loop {
        match a.next().await.unwrap() {
            PartitionEvent::Acquired(g) if g.items().count() == 2 => break g,
            _ => {}
        }
    };
    let item = first.items().next().unwrap().to_string();
    let guarded = first
        .guarded(&item)
        .unwrap()
        .set_data(&path, b"a1", Version::Any);
    guarded.commit().await.expect("a fenced write while held");

    let old = sessions.current().unwrap();
    common::expire(&old).await;
    // The grant is revoked as lost; the old session's writes are refused.
    tokio::time::timeout(Duration::from_secs(10), first.revoked())
        .await
        .expect("revoked after expiry");
    let r = first
        .guarded(&item)
        .unwrap()
        .set_data(&path, b"stale", Version::Any)
        .commit()
        .await;
    assert!(r.is_err(), "a write of the lost grant: {r:?}");
    let gen1 = first.generation();
    drop(first);
    let mut why = None;
    let second = loop {
        match tokio::time::timeout(Duration::from_secs(20), a.next())
            .await
            .expect("a event")
            .unwrap()
        {
            PartitionEvent::Released { why: w, .. } => why = Some(w),
            PartitionEvent::Acquired(g) if g.items().count() == 2 => break g,
            _ => {}
        }
    };
    // The server closes the expired session's connection before the client
    // learns of the expiry: the grant goes as Suspended, or as Lost.
    assert!(
        matches!(why, Some(Release::Suspended | Release::Lost)),
        "{why:?}"
    );
    assert!(second.generation() > gen1);
    assert!(
        second.contains(&item),
        "the same share again (a sorts first)"
    );
    // Meanwhile b never worked on what a was granted.
    {
        let b = lock(&board);
        let theirs = b
            .active
            .get("b")
            .map(|(_, i)| i.clone())
            .unwrap_or_default();
        assert!(second.items().all(|i| !theirs.contains(i)));
        assert!(b.overlaps.is_empty(), "{:?}", b.overlaps);
    }
    let (data, _) = c.get_data(&path).await.unwrap();
    assert_eq!(&data[..], b"a1", "the stale write was refused");
    drop(second);
    a.close().await;
    db.stop().await;
    sessions.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_members_items_move_within_its_session_timeout() {
    let c = client().await;
    let path = base(&c, "partition-crash").await;
    let board = Arc::new(Mutex::new(Board::default()));
    let doomed = Client::builder()
        .session_timeout(Duration::from_secs(4))
        .connect(&connect_string())
        .await
        .unwrap();
    let survivor = client().await;
    let dd = drive(
        Partitioner::new(&doomed, &path, "doomed", items(6)).unwrap(),
        "doomed",
        board.clone(),
    );
    let ds = drive(
        Partitioner::new(&survivor, &path, "survivor", items(6)).unwrap(),
        "survivor",
        board.clone(),
    );
    settled(&board, 2, 6, Duration::from_secs(15)).await;
    // The doomed member's session ends without it letting go (as a crash
    // past the session timeout would).
    let began = tokio::time::Instant::now();
    common::expire(&doomed).await;
    settled(&board, 1, 6, Duration::from_secs(5)).await;
    assert!(began.elapsed() < Duration::from_secs(5));
    assert!(lock(&board).overlaps.is_empty());
    dd.stop().await;
    ds.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_member_stops_work_until_its_connection_is_back() {
    let server = common::own_server().await;
    let board = Arc::new(Mutex::new(Board::default()));
    let mut clients = Vec::new();
    let mut drivers = Vec::new();
    for id in ["p", "q"] {
        let m = Client::builder()
            .session_timeout(Duration::from_secs(8))
            .connect(&server.connect_string())
            .await
            .unwrap();
        let p = Partitioner::with_options(
            &m,
            "/part",
            id,
            items(4),
            PartitionOptions::default().assign(ConsistentHash::default()),
        )
        .unwrap();
        drivers.push(drive(p, id, board.clone()));
        clients.push(m);
    }
    eventually("all items owned", Duration::from_secs(15), || {
        let ok = lock(&board).owned().len() == 4;
        async move { ok }
    })
    .await;
    // The server stops answering long enough for the clients to give the
    // connection up, but not for their sessions to expire.
    server.pause(0).unwrap();
    eventually("both members stop work", Duration::from_secs(10), || {
        let ok = lock(&board).active.is_empty();
        async move { ok }
    })
    .await;
    server.resume(0).unwrap();
    eventually("all items owned again", Duration::from_secs(15), || {
        let ok = lock(&board).owned().len() == 4;
        async move { ok }
    })
    .await;
    {
        let b = lock(&board);
        assert!(
            b.releases.iter().any(|(_, why)| *why == Release::Suspended),
            "{:?}",
            b.releases
        );
        assert!(b.overlaps.is_empty(), "{:?}", b.overlaps);
    }
    for d in drivers {
        d.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_items_and_a_taken_id_are_refused() {
    let c = client().await;
    let path = base(&c, "partition-bad").await;
    assert!(matches!(
        Partitioner::new(&c, &path, "m", ["ok", "a/b"]),
        Err(Error::BadArguments)
    ));
    assert!(matches!(
        Partitioner::new(&c, &path, "", ["ok"]),
        Err(Error::BadArguments)
    ));
    let mut first = Partitioner::new(&c, &path, "same", ["x"]).unwrap();
    let g = match first.next().await.unwrap() {
        PartitionEvent::Acquired(g) => g,
        other => panic!("{other:?}"),
    };
    assert!(g.contains("x"));
    let other = client().await;
    let mut second = Partitioner::new(&other, &path, "same", ["x"]).unwrap();
    assert!(matches!(second.next().await, Err(Error::NodeExists)));
    drop(g);
    first.close().await;
}
