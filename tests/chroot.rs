//! Chrooted clients (`host:port/chroot`) against a real ZooKeeper 3.8
//! server: every path the application sees is relative to the chroot.

mod common;

use common::*;
use zkit::{
    AddWatchMode, Client, CreateMode, CreateOptions, Error, EventType, OpResult, ReadResult,
    Version, WatcherType,
};

fn d() -> CreateOptions {
    CreateOptions::default()
}

/// A plain client, a chroot node for this test, and a client chrooted there.
async fn setup(name: &str) -> (Client, String, Client) {
    let plain = client().await;
    let root = base(&plain, name).await;
    let chrooted = connect_with(Client::builder(), &root).await;
    assert_eq!(chrooted.chroot(), Some(root.as_str()));
    (plain, root, chrooted)
}

#[tokio::test]
async fn chrooted_create_lands_under_the_chroot_and_returns_relative_paths() {
    let (plain, root, c) = setup("chroot-create").await;

    let (path, stat) = c.create("/a", b"A", &d()).await.unwrap();
    assert_eq!(path, "/a");
    let (data, plain_stat) = plain.get_data(&format!("{root}/a")).await.unwrap();
    assert_eq!((&data[..], plain_stat), (&b"A"[..], stat));
    assert_eq!(
        plain.exists("/a").await.unwrap(),
        None,
        "nothing at the real /a"
    );

    let (path, _) = c
        .create(
            "/a/s-",
            b"",
            &CreateOptions::new(CreateMode::PersistentSequential),
        )
        .await
        .unwrap();
    assert_eq!(path, "/a/s-0000000000");
    let (path, _) = c
        .create(
            "/e-",
            b"",
            &CreateOptions::new(CreateMode::EphemeralSequential),
        )
        .await
        .unwrap();
    assert_eq!(path, "/e-0000000001");

    // Reads through the chroot.
    assert_eq!(&c.get_data("/a").await.unwrap().0[..], b"A");
    let (mut kids, _) = c.get_children("/").await.unwrap();
    kids.sort();
    assert_eq!(kids, vec!["a".to_string(), "e-0000000001".to_string()]);
    assert_eq!(c.get_all_children_number("/").await.unwrap(), 3);
    // "/" is the chroot node itself.
    assert_eq!(
        c.exists("/").await.unwrap(),
        plain.exists(&root).await.unwrap()
    );
    c.sync("/").await.unwrap();
    c.sync("/a").await.unwrap();

    c.set_data("/a", b"B", Version::Exact(0)).await.unwrap();
    assert_eq!(
        &plain.get_data(&format!("{root}/a")).await.unwrap().0[..],
        b"B"
    );
    c.delete("/a/s-0000000000", Version::Any).await.unwrap();
    c.delete("/a", Version::Any).await.unwrap();
    assert_eq!(plain.exists(&format!("{root}/a")).await.unwrap(), None);
    assert_err(c.get_data("/a").await, Error::NoNode);
}

#[tokio::test]
async fn chrooted_get_ephemerals_returns_relative_paths() {
    let (plain, root, c) = setup("chroot-ephemerals").await;
    c.create("/dir", b"", &d()).await.unwrap();
    c.create("/dir/e", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    c.create("/top", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    let mut all = c.get_ephemerals("/").await.unwrap();
    all.sort();
    assert_eq!(all, vec!["/dir/e".to_string(), "/top".to_string()]);
    assert_eq!(
        c.get_ephemerals("/dir").await.unwrap(),
        vec!["/dir/e".to_string()]
    );
    // The nodes really are under the chroot, owned by this session.
    let stat = plain
        .exists(&format!("{root}/dir/e"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stat.ephemeral_owner, c.session_id().0);
}

#[tokio::test]
async fn chrooted_watch_events_carry_relative_paths() {
    let (plain, root, c) = setup("chroot-watch").await;
    c.create("/a", b"", &d()).await.unwrap();

    let (_, _, dw) = c.get_data_and_watch("/a").await.unwrap();
    let (_, _, cw) = c.get_children_and_watch("/").await.unwrap();
    let (_, ew) = c.exists_and_watch("/later").await.unwrap();
    // (Not on "/": on ZooKeeper 3.8 a recursive watch would replace the
    // child watch of the same path, see watches.rs.)
    let mut rw = c
        .add_watch("/a", AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    c.check_watches("/a", WatcherType::Data).await.unwrap();
    plain
        .check_watches(&format!("{root}/a"), WatcherType::Data)
        .await
        .unwrap();

    plain
        .set_data(&format!("{root}/a"), b"x", Version::Any)
        .await
        .unwrap();
    plain
        .create(&format!("{root}/later"), b"", &d())
        .await
        .unwrap();

    let e = soon("data watch", dw.changed()).await.unwrap();
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeDataChanged, "/a")
    );
    let e = soon("child watch", cw.changed()).await.unwrap();
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeChildrenChanged, "/")
    );
    let e = soon("exists watch", ew.changed()).await.unwrap();
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeCreated, "/later")
    );
    let e = soon("recursive watch", rw.changed()).await.unwrap();
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeDataChanged, "/a")
    );
    plain
        .create(&format!("{root}/a/b"), b"", &d())
        .await
        .unwrap();
    let e = soon("recursive watch", rw.changed()).await.unwrap();
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeCreated, "/a/b")
    );
    c.remove_watches("/a", WatcherType::Any).await.unwrap();
    let e = soon("removed", rw.changed()).await.unwrap();
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::PersistentWatchRemoved, "/a")
    );

    // An event on the chroot node itself is "/".
    let mut pw = c.add_watch("/", AddWatchMode::Persistent).await.unwrap();
    plain.set_data(&root, b"r", Version::Any).await.unwrap();
    let e = soon("persistent watch on the chroot", pw.changed())
        .await
        .unwrap();
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeDataChanged, "/")
    );
    plain.create(&format!("{root}/c"), b"", &d()).await.unwrap();
    let e = soon("persistent watch on the chroot", pw.changed())
        .await
        .unwrap();
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeChildrenChanged, "/")
    );
}

#[tokio::test]
async fn chrooted_multi_and_multi_read_use_relative_paths() {
    let (plain, root, c) = setup("chroot-multi").await;
    let results = c
        .multi()
        .create("/m", b"", &d())
        .create(
            "/m/s-",
            b"",
            &CreateOptions::new(CreateMode::PersistentSequential),
        )
        .set_data("/m", b"data", Version::Any)
        .check("/", Version::Any)
        .commit()
        .await
        .unwrap();
    assert_eq!(
        results[0],
        OpResult::Create {
            path: "/m".into(),
            stat: None
        }
    );
    assert_eq!(
        results[1],
        OpResult::Create {
            path: "/m/s-0000000000".into(),
            stat: None
        }
    );
    assert!(plain
        .exists(&format!("{root}/m/s-0000000000"))
        .await
        .unwrap()
        .is_some());

    let reads = c
        .multi_read()
        .get_data("/m")
        .get_children("/")
        .get_data("/none")
        .execute()
        .await
        .unwrap();
    assert!(matches!(&reads[0], Ok(ReadResult::Data(d, _)) if &d[..] == b"data"));
    assert_eq!(reads[1], Ok(ReadResult::Children(vec!["m".to_string()])));
    assert_eq!(reads[2], Err(Error::NoNode));

    match c.multi().delete("/m", Version::Any).commit().await {
        Err(Error::MultiFailed { index: 0, source }) => assert_eq!(*source, Error::NotEmpty),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn nested_chroot_and_missing_chroot() {
    let (plain, root, _) = setup("chroot-nested").await;
    plain
        .create(&format!("{root}/inner"), b"in", &d())
        .await
        .unwrap();
    let nested = connect_with(Client::builder(), &format!("{root}/inner")).await;
    assert_eq!(&nested.get_data("/").await.unwrap().0[..], b"in");
    nested.create("/x", b"", &d()).await.unwrap();
    assert!(plain
        .exists(&format!("{root}/inner/x"))
        .await
        .unwrap()
        .is_some());

    // A chroot that does not exist: the session works, every path is NoNode
    // until someone creates the chroot node.
    let missing = format!("{root}/missing");
    let m = connect_with(Client::builder(), &missing).await;
    assert_eq!(m.exists("/").await.unwrap(), None);
    assert_err(m.create("/x", b"", &d()).await, Error::NoNode);
    plain.create(&missing, b"", &d()).await.unwrap();
    assert_eq!(m.create("/x", b"", &d()).await.unwrap().0, "/x");
}

/// The config node is never chrooted.
#[tokio::test]
async fn chrooted_get_config_reads_the_real_config_node() {
    let (plain, _root, c) = setup("chroot-config").await;
    assert_eq!(
        c.get_config().await.unwrap(),
        plain.get_config().await.unwrap()
    );
    // While an explicit path is chrooted.
    assert_err(c.get_data(zkit::CONFIG_NODE).await, Error::NoNode);
}

/// A sequential create of "/" in a chrooted client must stay inside the
/// chroot. Without a chroot, create("/", sequential) makes "/0000000042";
/// prefixing the chroot naively gives "/app" + suffix = "/app0000000042", a
/// sibling of the chroot (Java's prependChroot has the same flaw).
#[tokio::test]
async fn sequential_create_of_the_chroot_root_stays_inside_the_chroot() {
    let (plain, root, c) = setup("chroot-seq-root").await;
    let r = c
        .create(
            "/",
            b"",
            &CreateOptions::new(CreateMode::PersistentSequential),
        )
        .await;
    let (top, _) = plain.get_children("/").await.unwrap();
    let name = &root[1..];
    let escaped: Vec<_> = top
        .iter()
        .filter(|k| k.starts_with(name) && k.as_str() != name)
        .collect();
    assert!(
        escaped.is_empty(),
        "created outside the chroot {root}: {escaped:?} (create returned {r:?})"
    );
    match r {
        Err(Error::InvalidPath { .. }) => {}
        Ok((path, _)) => {
            assert_eq!(path.len(), 11, "{path}");
            assert!(plain
                .exists(&format!("{root}{path}"))
                .await
                .unwrap()
                .is_some());
        }
        Err(e) => panic!("unexpected {e:?}"),
    }
}
