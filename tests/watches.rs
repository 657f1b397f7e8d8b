//! Watches against a real ZooKeeper 3.8 server: one-shot data / exists /
//! child watches, persistent and persistent-recursive watches, removal and
//! checking.

mod common;

use common::*;
use futures::{FutureExt as _, StreamExt as _};
use zkit::{
    AddWatchMode, Client, CreateMode, CreateOptions, Error, EventType, PersistentWatcher, Version,
    WatchedEvent, WatcherType,
};

fn d() -> CreateOptions {
    CreateOptions::default()
}

fn kind(e: &WatchedEvent) -> (EventType, String) {
    (e.event_type, e.path.clone())
}

fn ev(t: EventType, path: &str) -> (EventType, String) {
    (t, path.to_string())
}

async fn next(w: &mut PersistentWatcher) -> WatchedEvent {
    soon("persistent watch event", w.changed())
        .await
        .expect("watch event")
}

/// Collects events until (and including) `last`.
async fn collect_until(
    w: &mut PersistentWatcher,
    last: (EventType, String),
) -> Vec<(EventType, String)> {
    let mut got = Vec::new();
    loop {
        let e = kind(&next(w).await);
        got.push(e.clone());
        if e == last {
            return got;
        }
        assert!(got.len() < 100, "runaway events: {got:?}");
    }
}

#[tokio::test]
async fn data_watch_fires_once_on_data_change() {
    let c = client().await;
    let writer = client().await;
    let base = base(&c, "data-watch").await;
    let p = format!("{base}/n");
    c.create(&p, b"0", &d()).await.unwrap();

    let (data, stat, w) = c.get_data_and_watch(&p).await.unwrap();
    assert_eq!((&data[..], stat.version), (&b"0"[..], 0));
    c.check_watches(&p, WatcherType::Data).await.unwrap();
    assert_err(
        c.check_watches(&p, WatcherType::Children).await,
        Error::NoWatcher,
    );

    writer.set_data(&p, b"1", Version::Any).await.unwrap();
    let e = soon("data watch", w.changed()).await.unwrap();
    assert_eq!(kind(&e), ev(EventType::NodeDataChanged, &p));
    // ZooKeeper 3.8 sends notifications with zxid -1.
    assert_eq!(e.zxid, -1);

    // One-shot: the server-side watch is gone, a second change has no watch
    // to fire.
    assert_err(
        c.check_watches(&p, WatcherType::Data).await,
        Error::NoWatcher,
    );
    writer.set_data(&p, b"2", Version::Any).await.unwrap();
    assert_err(
        c.check_watches(&p, WatcherType::Any).await,
        Error::NoWatcher,
    );

    // A new watch sees only what happens after it was set.
    let (data, _, w2) = c.get_data_and_watch(&p).await.unwrap();
    assert_eq!(&data[..], b"2");
    never("fresh watch without a change", QUIET, w2.changed().boxed()).await;
}

#[tokio::test]
async fn data_watch_fires_node_deleted_on_delete() {
    let c = client().await;
    let writer = client().await;
    let base = base(&c, "data-watch-delete").await;
    let p = format!("{base}/n");
    c.create(&p, b"", &d()).await.unwrap();
    let (_, _, w) = c.get_data_and_watch(&p).await.unwrap();
    writer.delete(&p, Version::Any).await.unwrap();
    let e = soon("data watch", w.changed()).await.unwrap();
    assert_eq!(kind(&e), ev(EventType::NodeDeleted, &p));
}

#[tokio::test]
async fn exists_watch_on_missing_node_fires_node_created() {
    let c = client().await;
    let writer = client().await;
    let base = base(&c, "exists-watch").await;
    let p = format!("{base}/later");
    let (stat, w) = c.exists_and_watch(&p).await.unwrap();
    assert_eq!(stat, None);
    // The watch is set although the node does not exist.
    c.check_watches(&p, WatcherType::Data).await.unwrap();

    writer.create(&p, b"x", &d()).await.unwrap();
    let e = soon("exists watch", w.changed()).await.unwrap();
    assert_eq!(kind(&e), ev(EventType::NodeCreated, &p));
    assert_err(
        c.check_watches(&p, WatcherType::Data).await,
        Error::NoWatcher,
    );
}

#[tokio::test]
async fn exists_watch_on_existing_node_fires_on_change_and_delete() {
    let c = client().await;
    let writer = client().await;
    let base = base(&c, "exists-watch-existing").await;
    let p = format!("{base}/n");
    c.create(&p, b"", &d()).await.unwrap();

    let (stat, w) = c.exists_and_watch(&p).await.unwrap();
    assert!(stat.is_some());
    writer.set_data(&p, b"x", Version::Any).await.unwrap();
    let e = soon("exists watch", w.changed()).await.unwrap();
    assert_eq!(kind(&e), ev(EventType::NodeDataChanged, &p));

    let (_, w) = c.exists_and_watch(&p).await.unwrap();
    writer.delete(&p, Version::Any).await.unwrap();
    let e = soon("exists watch", w.changed()).await.unwrap();
    assert_eq!(kind(&e), ev(EventType::NodeDeleted, &p));
}

#[tokio::test]
async fn child_watch_fires_on_child_create_not_on_data_change() {
    let c = client().await;
    let writer = client().await;
    let base = base(&c, "child-watch").await;

    // A data watch and a child watch on the same node: a data change must
    // reach only the data watcher.
    let (children, stat, cw) = c.get_children_and_watch(&base).await.unwrap();
    assert!(children.is_empty());
    assert_eq!(stat.num_children, 0);
    let (_, _, dw) = c.get_data_and_watch(&base).await.unwrap();
    c.check_watches(&base, WatcherType::Children).await.unwrap();

    writer.set_data(&base, b"x", Version::Any).await.unwrap();
    let e = soon("data watch", dw.changed()).await.unwrap();
    assert_eq!(kind(&e), ev(EventType::NodeDataChanged, &base));
    // The child watch is still armed on the server.
    c.check_watches(&base, WatcherType::Children).await.unwrap();

    writer
        .create(&format!("{base}/kid"), b"", &d())
        .await
        .unwrap();
    let e = soon("child watch", cw.changed()).await.unwrap();
    assert_eq!(kind(&e), ev(EventType::NodeChildrenChanged, &base));
    assert_err(
        c.check_watches(&base, WatcherType::Children).await,
        Error::NoWatcher,
    );

    // Deleting a child fires a new child watch too; a grandchild does not.
    let (_, _, cw) = c.get_children_and_watch(&base).await.unwrap();
    writer
        .create(&format!("{base}/kid/grandkid"), b"", &d())
        .await
        .unwrap();
    writer
        .set_data(&format!("{base}/kid"), b"y", Version::Any)
        .await
        .unwrap();
    c.check_watches(&base, WatcherType::Children).await.unwrap();
    writer
        .delete(&format!("{base}/kid/grandkid"), Version::Any)
        .await
        .unwrap();
    writer
        .delete(&format!("{base}/kid"), Version::Any)
        .await
        .unwrap();
    let e = soon("child watch", cw.changed()).await.unwrap();
    assert_eq!(kind(&e), ev(EventType::NodeChildrenChanged, &base));
}

#[tokio::test]
async fn child_watch_fires_node_deleted_when_the_node_is_deleted() {
    let c = client().await;
    let base = base(&c, "child-watch-delete").await;
    let p = format!("{base}/n");
    c.create(&p, b"", &d()).await.unwrap();
    let (_, _, w) = c.get_children_and_watch(&p).await.unwrap();
    client().await.delete(&p, Version::Any).await.unwrap();
    let e = soon("child watch", w.changed()).await.unwrap();
    assert_eq!(kind(&e), ev(EventType::NodeDeleted, &p));
}

#[tokio::test]
async fn delete_fires_every_kind_of_oneshot_watch_once() {
    let c = client().await;
    let base = base(&c, "delete-all-kinds").await;
    let p = format!("{base}/n");
    c.create(&p, b"", &d()).await.unwrap();
    let (_, _, data1) = c.get_data_and_watch(&p).await.unwrap();
    let (_, _, data2) = c.get_data_and_watch(&p).await.unwrap();
    let (_, exists) = c.exists_and_watch(&p).await.unwrap();
    let (_, _, child) = c.get_children_and_watch(&p).await.unwrap();

    client().await.delete(&p, Version::Any).await.unwrap();
    for (name, w) in [
        ("data1", data1),
        ("data2", data2),
        ("exists", exists),
        ("child", child),
    ] {
        let e = soon(name, w.changed()).await.unwrap();
        assert_eq!(kind(&e), ev(EventType::NodeDeleted, &p), "{name}");
    }
    assert_err(
        c.check_watches(&p, WatcherType::Any).await,
        Error::NoWatcher,
    );
}

#[tokio::test]
async fn failed_watch_read_leaves_no_watch() {
    let c = client().await;
    let base = base(&c, "failed-watch-read").await;
    let p = format!("{base}/missing");
    assert_err(c.get_data_and_watch(&p).await, Error::NoNode);
    assert_err(c.get_children_and_watch(&p).await, Error::NoNode);
    assert_err(
        c.check_watches(&p, WatcherType::Any).await,
        Error::NoWatcher,
    );
}

#[tokio::test]
async fn watch_event_arrives_before_the_reply_of_the_triggering_write() {
    let c = client().await;
    let base = base(&c, "event-before-reply").await;
    let p = format!("{base}/n");
    c.create(&p, b"", &d()).await.unwrap();

    let (_, _, w) = c.get_data_and_watch(&p).await.unwrap();
    c.set_data(&p, b"new", Version::Any).await.unwrap();
    // ZooKeeper guarantee: a client sees the watch event before the result
    // of the change that triggered it.
    let e = w
        .changed()
        .now_or_never()
        .expect("event delivered before the setData reply")
        .unwrap();
    assert_eq!(kind(&e), ev(EventType::NodeDataChanged, &p));

    let (_, w) = c.exists_and_watch(&format!("{p}/kid")).await.unwrap();
    let (_, _, cw) = c.get_children_and_watch(&p).await.unwrap();
    c.create(&format!("{p}/kid"), b"", &d()).await.unwrap();
    assert_eq!(
        kind(
            &w.changed()
                .now_or_never()
                .expect("NodeCreated before reply")
                .unwrap()
        ),
        ev(EventType::NodeCreated, &format!("{p}/kid"))
    );
    assert_eq!(
        kind(
            &cw.changed()
                .now_or_never()
                .expect("NodeChildrenChanged before reply")
                .unwrap()
        ),
        ev(EventType::NodeChildrenChanged, &p)
    );
}

#[tokio::test]
async fn dropped_oneshot_watcher_does_not_disturb_a_newer_one() {
    let c = client().await;
    let base = base(&c, "dropped-oneshot").await;
    let p = format!("{base}/n");
    c.create(&p, b"", &d()).await.unwrap();
    let (_, _, w1) = c.get_data_and_watch(&p).await.unwrap();
    drop(w1);
    let (_, _, w2) = c.get_data_and_watch(&p).await.unwrap();
    client()
        .await
        .set_data(&p, b"x", Version::Any)
        .await
        .unwrap();
    let e = soon("second watcher", w2.changed()).await.unwrap();
    assert_eq!(kind(&e), ev(EventType::NodeDataChanged, &p));

    // A dropped watcher whose event arrives later is simply skipped.
    let (_, _, w3) = c.get_data_and_watch(&p).await.unwrap();
    drop(w3);
    c.set_data(&p, b"y", Version::Any).await.unwrap();
    assert!(c.state().is_connected());
    c.get_data(&p).await.unwrap();
}

#[tokio::test]
async fn persistent_watch_keeps_firing_for_data_and_children_of_its_path() {
    let c = client().await;
    let writer = client().await;
    let base = base(&c, "persistent").await;
    let p = format!("{base}/p");

    // The node need not exist.
    let mut w = c.add_watch(&p, AddWatchMode::Persistent).await.unwrap();
    c.check_watches(&p, WatcherType::Any).await.unwrap();

    writer.create(&p, b"", &d()).await.unwrap();
    writer.set_data(&p, b"1", Version::Any).await.unwrap();
    writer.set_data(&p, b"2", Version::Any).await.unwrap();
    writer.create(&format!("{p}/kid"), b"", &d()).await.unwrap();
    // Neither a child's data nor a grandchild concern a persistent watch.
    writer
        .set_data(&format!("{p}/kid"), b"k", Version::Any)
        .await
        .unwrap();
    writer
        .create(&format!("{p}/kid/grand"), b"", &d())
        .await
        .unwrap();
    writer
        .delete(&format!("{p}/kid/grand"), Version::Any)
        .await
        .unwrap();
    writer
        .delete(&format!("{p}/kid"), Version::Any)
        .await
        .unwrap();
    writer.delete(&p, Version::Any).await.unwrap();
    writer.create(&p, b"", &d()).await.unwrap();

    let got = collect_until(&mut w, ev(EventType::NodeCreated, &p)).await;
    assert_eq!(got, vec![ev(EventType::NodeCreated, &p)]);
    let got = collect_until(&mut w, ev(EventType::NodeCreated, &p)).await;
    assert_eq!(
        got,
        vec![
            ev(EventType::NodeDataChanged, &p),
            ev(EventType::NodeDataChanged, &p),
            ev(EventType::NodeChildrenChanged, &p),
            ev(EventType::NodeChildrenChanged, &p),
            ev(EventType::NodeDeleted, &p),
            ev(EventType::NodeCreated, &p),
        ]
    );
    // Still registered after all of that.
    c.check_watches(&p, WatcherType::Any).await.unwrap();
}

#[tokio::test]
async fn recursive_watch_sees_descendants_but_never_children_changed() {
    let c = client().await;
    let writer = client().await;
    let base = base(&c, "recursive").await;
    let mut w = c
        .add_watch(&base, AddWatchMode::PersistentRecursive)
        .await
        .unwrap();

    let a = format!("{base}/a");
    let b = format!("{a}/b");
    writer.create(&a, b"", &d()).await.unwrap();
    writer.create(&b, b"", &d()).await.unwrap();
    writer.set_data(&b, b"x", Version::Any).await.unwrap();
    writer.delete(&b, Version::Any).await.unwrap();
    writer
        .create(
            &format!("{a}/s-"),
            b"",
            &CreateOptions::new(CreateMode::EphemeralSequential),
        )
        .await
        .unwrap();
    writer.set_data(&base, b"end", Version::Any).await.unwrap();

    let got = collect_until(&mut w, ev(EventType::NodeDataChanged, &base)).await;
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(
        got[..4],
        [
            ev(EventType::NodeCreated, &a),
            ev(EventType::NodeCreated, &b),
            ev(EventType::NodeDataChanged, &b),
            ev(EventType::NodeDeleted, &b),
        ]
    );
    assert_eq!(got[4].0, EventType::NodeCreated);
    assert!(got[4].1.starts_with(&format!("{a}/s-")), "{got:?}");
    assert!(got.iter().all(|e| e.0 != EventType::NodeChildrenChanged));
}

/// A one-shot child watch on a descendant makes the server send a
/// NodeChildrenChanged; the recursive watcher on an ancestor must not get it.
#[tokio::test]
async fn recursive_watch_skips_children_changed_meant_for_a_child_watch() {
    let c = client().await;
    let base = base(&c, "recursive-skip").await;
    let a = format!("{base}/a");
    c.create(&a, b"", &d()).await.unwrap();
    let mut w = c
        .add_watch(&base, AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let (_, _, cw) = c.get_children_and_watch(&a).await.unwrap();

    let writer = client().await;
    writer.create(&format!("{a}/x"), b"", &d()).await.unwrap();
    let e = soon("child watch", cw.changed()).await.unwrap();
    assert_eq!(kind(&e), ev(EventType::NodeChildrenChanged, &a));
    writer.set_data(&base, b"end", Version::Any).await.unwrap();
    let got = collect_until(&mut w, ev(EventType::NodeDataChanged, &base)).await;
    assert_eq!(
        got,
        vec![
            ev(EventType::NodeCreated, &format!("{a}/x")),
            ev(EventType::NodeDataChanged, &base)
        ]
    );
}

#[tokio::test]
async fn persistent_watcher_is_a_stream() {
    let c = client().await;
    let base = base(&c, "stream").await;
    let w = c.add_watch(&base, AddWatchMode::Persistent).await.unwrap();
    let writer = client().await;
    for i in 0..3 {
        writer
            .set_data(&base, format!("{i}").as_bytes(), Version::Any)
            .await
            .unwrap();
    }
    let got: Vec<_> = soon("3 events", w.take(3).collect::<Vec<_>>()).await;
    assert_eq!(
        got.iter().map(kind).collect::<Vec<_>>(),
        vec![ev(EventType::NodeDataChanged, &base); 3]
    );
}

#[tokio::test]
async fn dropping_the_last_persistent_watcher_removes_the_server_watch() {
    let c = client().await;
    let base = base(&c, "drop-persistent").await;
    let mut w1 = c.add_watch(&base, AddWatchMode::Persistent).await.unwrap();
    let w2 = c.add_watch(&base, AddWatchMode::Persistent).await.unwrap();
    c.check_watches(&base, WatcherType::Any).await.unwrap();

    // Dropping one of two keeps the other working.
    drop(w2);
    c.check_watches(&base, WatcherType::Any).await.unwrap();
    c.set_data(&base, b"1", Version::Any).await.unwrap();
    assert_eq!(
        kind(&next(&mut w1).await),
        ev(EventType::NodeDataChanged, &base)
    );

    // Dropping the last one removes the watch on the server (the removal is
    // queued before anything issued later).
    drop(w1);
    assert_err(
        c.check_watches(&base, WatcherType::Any).await,
        Error::NoWatcher,
    );
    c.set_data(&base, b"2", Version::Any).await.unwrap();
    assert!(c.state().is_connected());
}

#[tokio::test]
async fn remove_watches_any_ends_a_persistent_watch_with_persistent_watch_removed() {
    let c = client().await;
    let base = base(&c, "remove-persistent").await;
    let mut w = c
        .add_watch(&base, AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    c.remove_watches(&base, WatcherType::Any).await.unwrap();

    let e = next(&mut w).await;
    assert_eq!(kind(&e), ev(EventType::PersistentWatchRemoved, &base));
    assert_err(soon("end of stream", w.changed()).await, Error::NoWatcher);

    assert_err(
        c.check_watches(&base, WatcherType::Any).await,
        Error::NoWatcher,
    );
    assert_err(
        c.remove_watches(&base, WatcherType::Any).await,
        Error::NoWatcher,
    );
    // Nothing arrives any more; a new watch works.
    c.create(&format!("{base}/x"), b"", &d()).await.unwrap();
    let mut w2 = c.add_watch(&base, AddWatchMode::Persistent).await.unwrap();
    c.set_data(&base, b"x", Version::Any).await.unwrap();
    assert_eq!(
        kind(&next(&mut w2).await),
        ev(EventType::NodeDataChanged, &base)
    );

    // As a stream: the removal event, then the end.
    c.remove_watches(&base, WatcherType::Any).await.unwrap();
    let rest: Vec<_> = soon("stream end", w2.collect::<Vec<_>>()).await;
    assert_eq!(
        rest.iter().map(kind).collect::<Vec<_>>(),
        vec![ev(EventType::PersistentWatchRemoved, &base)]
    );
}

#[tokio::test]
async fn remove_watches_by_type_ends_oneshot_watchers_with_removed_events() {
    let c = client().await;
    let base = base(&c, "remove-oneshot").await;
    let (_, _, dw) = c.get_data_and_watch(&base).await.unwrap();
    let (_, ew) = c.exists_and_watch(&base).await.unwrap();
    let (_, _, cw) = c.get_children_and_watch(&base).await.unwrap();

    c.remove_watches(&base, WatcherType::Data).await.unwrap();
    for w in [dw, ew] {
        let e = soon("data watch removed", w.changed()).await.unwrap();
        assert_eq!(kind(&e), ev(EventType::DataWatchRemoved, &base));
    }
    assert_err(
        c.check_watches(&base, WatcherType::Data).await,
        Error::NoWatcher,
    );
    c.check_watches(&base, WatcherType::Children).await.unwrap();

    c.remove_watches(&base, WatcherType::Children)
        .await
        .unwrap();
    let e = soon("child watch removed", cw.changed()).await.unwrap();
    assert_eq!(kind(&e), ev(EventType::ChildWatchRemoved, &base));
    assert_err(
        c.check_watches(&base, WatcherType::Any).await,
        Error::NoWatcher,
    );
}

#[tokio::test]
async fn check_and_remove_watches_report_no_watcher_when_none_is_set() {
    let c = client().await;
    let base = base(&c, "no-watcher").await;
    for t in [WatcherType::Data, WatcherType::Children, WatcherType::Any] {
        assert_err(c.check_watches(&base, t).await, Error::NoWatcher);
        assert_err(c.remove_watches(&base, t).await, Error::NoWatcher);
    }
}

/// ZooKeeper 3.8.0's `WatchManager.containsWatcher` only asks whether the
/// path has *any* watcher: checkWatches succeeds for a session that has no
/// watch when another session has one. removeWatches is per session.
#[tokio::test]
async fn check_watches_on_3_8_sees_watches_of_other_sessions() {
    let c = client().await;
    let other = client().await;
    let base = base(&c, "check-other-session").await;
    let (_, _, _w) = other.get_data_and_watch(&base).await.unwrap();
    other.check_watches(&base, WatcherType::Data).await.unwrap();
    // c has no watch, yet the server says it does...
    c.check_watches(&base, WatcherType::Data).await.unwrap();
    assert_err(
        c.check_watches(&base, WatcherType::Children).await,
        Error::NoWatcher,
    );
    // ...but removing it finds nothing for c, and leaves other's watch alone.
    assert_err(
        c.remove_watches(&base, WatcherType::Data).await,
        Error::NoWatcher,
    );
    other.check_watches(&base, WatcherType::Data).await.unwrap();
    other
        .remove_watches(&base, WatcherType::Data)
        .await
        .unwrap();
    assert_err(
        c.check_watches(&base, WatcherType::Data).await,
        Error::NoWatcher,
    );
}

/// ZooKeeper 3.8 does not know WatcherType Persistent (4) and
/// PersistentRecursive (5): it answers MarshallingError.
#[tokio::test]
async fn persistent_watcher_types_are_a_marshalling_error_on_3_8() {
    let c = client().await;
    let base = base(&c, "persistent-types-3-8").await;
    let mut w = c.add_watch(&base, AddWatchMode::Persistent).await.unwrap();
    for t in [WatcherType::Persistent, WatcherType::PersistentRecursive] {
        assert_err(c.remove_watches(&base, t).await, Error::MarshallingError);
        assert_err(c.check_watches(&base, t).await, Error::MarshallingError);
    }
    // The failed removals removed nothing, locally or on the server.
    c.check_watches(&base, WatcherType::Any).await.unwrap();
    c.set_data(&base, b"x", Version::Any).await.unwrap();
    assert_eq!(
        kind(&next(&mut w).await),
        ev(EventType::NodeDataChanged, &base)
    );
}

#[tokio::test]
async fn watchers_end_with_closed_when_the_client_closes() {
    let c = client().await;
    let base = base(&c, "watchers-closed").await;
    let (_, _, w) = c.get_data_and_watch(&base).await.unwrap();
    let mut pw = c.add_watch(&base, AddWatchMode::Persistent).await.unwrap();
    c.clone().close().await.unwrap();
    assert_err(soon("oneshot end", w.changed()).await, Error::Closed);
    assert_err(soon("persistent end", pw.changed()).await, Error::Closed);
    assert_err(c.get_data(&base).await, Error::Closed);
}

/// Watches set by two clients on the same node are independent.
#[tokio::test]
async fn each_session_gets_its_own_notification() {
    let a = client().await;
    let b = client().await;
    let base = base(&a, "two-sessions").await;
    let (_, _, wa) = a.get_data_and_watch(&base).await.unwrap();
    let (_, _, wb) = b.get_data_and_watch(&base).await.unwrap();
    let writer: Client = client().await;
    writer.set_data(&base, b"x", Version::Any).await.unwrap();
    for w in [wa, wb] {
        assert_eq!(
            kind(&soon("watch", w.changed()).await.unwrap()),
            ev(EventType::NodeDataChanged, &base)
        );
    }
}

/// ZooKeeper 3.8.0's `DataTree.addWatch` puts a recursive watch into the
/// child-watch table too, where a connection has one watch mode per path:
/// a one-shot child watch of the same session on the same path becomes
/// "recursive" and, as recursive watches never get NodeChildrenChanged, the
/// server never fires it (independent modes per path came with
/// ZOOKEEPER-4466 in 3.9.0). The client derives the NodeChildrenChanged
/// from the recursive watch's child events, so the child watch still fires.
#[tokio::test]
async fn on_3_8_a_child_watch_beside_a_recursive_watch_still_fires() {
    let c = client().await;
    let base = base(&c, "recursive-swallows-child").await;
    let (_, _, cw) = c.get_children_and_watch(&base).await.unwrap();
    let mut rw = c
        .add_watch(&base, AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let writer = client().await;
    writer
        .create(&format!("{base}/x"), b"", &d())
        .await
        .unwrap();
    assert_eq!(
        kind(&next(&mut rw).await),
        ev(EventType::NodeCreated, &format!("{base}/x"))
    );
    assert_eq!(
        kind(&soon("the child watch", cw.changed()).await.unwrap()),
        ev(EventType::NodeChildrenChanged, &base)
    );
    writer.set_data(&base, b"", Version::Any).await.unwrap();
    assert_eq!(
        kind(&next(&mut rw).await),
        ev(EventType::NodeDataChanged, &base)
    );

    // Another session's child watch on the same path is unaffected.
    let other = client().await;
    let (_, _, ow) = other.get_children_and_watch(&base).await.unwrap();
    writer
        .create(&format!("{base}/y"), b"", &d())
        .await
        .unwrap();
    assert_eq!(
        kind(
            &soon("other session's child watch", ow.changed())
                .await
                .unwrap()
        ),
        ev(EventType::NodeChildrenChanged, &base)
    );
}

/// Watch futures dropped before their reply: the session keeps working and
/// a fresh watcher on the same path gets the next change.
#[tokio::test]
async fn dropping_watch_futures_before_the_reply() {
    let c = client().await;
    let base = base(&c, "dropped-watch-futures").await;
    drop(c.get_data_and_watch(&base));
    drop(c.exists_and_watch(&base));
    drop(c.get_children_and_watch(&base));
    drop(c.add_watch(&base, AddWatchMode::PersistentRecursive));
    let (_, _, w) = c.get_data_and_watch(&base).await.unwrap();
    assert_eq!(
        c.check_watches(&base, WatcherType::Data).await,
        Ok(()),
        "the server has no data watch on {base} although a OneshotWatcher is live"
    );
    client()
        .await
        .set_data(&base, b"x", Version::Any)
        .await
        .unwrap();
    assert_eq!(
        kind(&soon("fresh watcher", w.changed()).await.unwrap()),
        ev(EventType::NodeDataChanged, &base)
    );
    assert!(c.state().is_connected());
}

/// add_watch's cancel safety: "if the future is dropped, the watch is
/// registered and removed again".
#[tokio::test]
async fn dropped_add_watch_future_is_removed_from_the_server() {
    let c = client().await;
    let base = base(&c, "dropped-add-watch").await;
    drop(c.add_watch(&base, AddWatchMode::PersistentRecursive));
    eventually("abandoned persistent watch removed", SOON, || async {
        c.check_watches(&base, WatcherType::Any).await == Err(Error::NoWatcher)
    })
    .await;
}

/// Same, when another watch on the path was being set up at the time (so
/// the removal had to wait): once that one has fired and no local watcher
/// needs the path any more, the abandoned persistent watch must not stay on
/// the server (it would stream every event of the subtree to the client
/// for the rest of the session).
#[tokio::test]
async fn dropped_add_watch_future_is_removed_once_other_watchers_are_done() {
    let c = client().await;
    let base = base(&c, "dropped-add-watch-later").await;
    drop(c.add_watch(&base, AddWatchMode::PersistentRecursive));
    let (_, _, w) = c.get_data_and_watch(&base).await.unwrap();
    client()
        .await
        .set_data(&base, b"x", Version::Any)
        .await
        .unwrap();
    soon("one-shot watch", w.changed()).await.unwrap();
    eventually("abandoned persistent watch removed", SOON, || async {
        c.check_watches(&base, WatcherType::Any).await == Err(Error::NoWatcher)
    })
    .await;
}

/// Dropping the last persistent watcher of a path sends removeWatches(Any)
/// (the only type 3.8 knows for persistent watches), which also removes
/// every other watch of the session on that path. A one-shot watch whose
/// registration is in flight at that moment must survive: the user set it
/// after (or while) dropping the persistent one.
#[tokio::test]
async fn dropping_a_persistent_watcher_keeps_a_oneshot_watch_set_meanwhile() {
    let c = client().await;
    let base = base(&c, "drop-persistent-keep-oneshot").await;
    let pw = c.add_watch(&base, AddWatchMode::Persistent).await.unwrap();
    let pending = c.get_data_and_watch(&base);
    drop(pw);
    let (_, _, w) = pending.await.unwrap();
    // The server must still hold a watch for the live watcher.
    assert_eq!(
        c.check_watches(&base, WatcherType::Data).await,
        Ok(()),
        "the server has no data watch on {base} although a OneshotWatcher is live"
    );
    client()
        .await
        .set_data(&base, b"x", Version::Any)
        .await
        .unwrap();
    assert_eq!(
        kind(&soon("one-shot watch", w.changed()).await.unwrap()),
        ev(EventType::NodeDataChanged, &base)
    );
}

/// ZooKeeper before 3.9 keeps one watch mode per session and path
/// (ZOOKEEPER-4466): a one-shot watch on a path with a persistent watch of
/// the same session used to replace it, so the persistent watch stopped
/// after one event. The client serves such one-shot watches from the
/// persistent watch instead of registering them on the server.
#[tokio::test]
async fn one_shot_watches_do_not_replace_a_persistent_watch_on_the_same_path() {
    let c = client().await;
    let writer = client().await;
    let base = base(&c, "onemode").await;
    let p = format!("{base}/p");
    writer.create(&p, b"0", &d()).await.unwrap();
    for mode in [AddWatchMode::PersistentRecursive, AddWatchMode::Persistent] {
        let mut w = c.add_watch(&p, mode).await.unwrap();
        let (_, _, data) = c.get_data_and_watch(&p).await.unwrap();
        let (_, exists) = c.exists_and_watch(&p).await.unwrap();
        let (_, _, children) = c.get_children_and_watch(&p).await.unwrap();

        writer.set_data(&p, b"1", Version::Any).await.unwrap();
        let e = soon("data watch", data.changed()).await.unwrap();
        assert_eq!(kind(&e), ev(EventType::NodeDataChanged, &p));
        let e = soon("exists watch", exists.changed()).await.unwrap();
        assert_eq!(kind(&e), ev(EventType::NodeDataChanged, &p));
        assert_eq!(
            kind(&next(&mut w).await),
            ev(EventType::NodeDataChanged, &p)
        );

        // The persistent watch is still there: a second change, and a child.
        writer.set_data(&p, b"2", Version::Any).await.unwrap();
        assert_eq!(
            kind(&next(&mut w).await),
            ev(EventType::NodeDataChanged, &p),
            "{mode:?}"
        );
        let kid = format!("{p}/kid-{mode:?}");
        writer.create(&kid, b"", &d()).await.unwrap();
        let e = soon("child watch", children.changed()).await.unwrap();
        assert_eq!(kind(&e), ev(EventType::NodeChildrenChanged, &p), "{mode:?}");
        let want = match mode {
            AddWatchMode::PersistentRecursive => ev(EventType::NodeCreated, &kid),
            _ => ev(EventType::NodeChildrenChanged, &p),
        };
        assert_eq!(kind(&next(&mut w).await), want, "{mode:?}");
        writer.set_data(&p, b"3", Version::Any).await.unwrap();
        assert_eq!(
            kind(&next(&mut w).await),
            ev(EventType::NodeDataChanged, &p),
            "{mode:?}"
        );
        drop(w);
        writer.delete(&kid, Version::Any).await.unwrap();
    }
}
