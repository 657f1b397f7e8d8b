//! `PersistentNode` and `PersistentTtlNode`: kept in place (re-created after
//! an outside delete, after session expiry from `Sessions`), data kept
//! across re-creation, owner-aware (another live session's node is never
//! adopted), deleted on close and drop; the TTL node's child is touched and
//! outlives its TTL while open, and both nodes expire after close.
//!
//! The TTL tests need the server's container/TTL check to run often, so
//! they start a server of their own (`znode.container.checkIntervalMs` =
//! 200 ms instead of the shared fixture's 60 s default).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{base, client, connect_string, eventually, never, soon, QUIET, SOON, TICK};
use tokio::sync::watch;
use zkit::{Client, CreateMode, CreateOptions, Error, SessionState, Version};
use zkit_recipes::persistent::{PersistentNodeOptions, PersistentTtlNodeOptions, TtlParent};
use zkit_recipes::{NodeState, PersistentNode, PersistentTtlNode, Sessions};
use zkit_testcontainers::{FaultMode, FaultProxy};

/// Waits (at most [`SOON`]) for a state matching `f` and returns it.
async fn state_where(
    mut rx: watch::Receiver<NodeState>,
    what: &str,
    f: impl FnMut(&NodeState) -> bool,
) -> NodeState {
    soon(what, rx.wait_for(f))
        .await
        .expect("state sender")
        .clone()
}

async fn created(node: &PersistentNode) -> String {
    match state_where(node.states(), "created", NodeState::is_created).await {
        NodeState::Created(p) => p,
        other => unreachable!("{other:?}"),
    }
}

/// The node's data and ephemeral owner, `None` when absent.
async fn read(c: &Client, path: &str) -> Option<(Vec<u8>, i64)> {
    match c.get_data(path).await {
        Ok((d, s)) => Some((d.to_vec(), s.ephemeral_owner)),
        Err(Error::NoNode) => None,
        Err(e) => panic!("read {path}: {e:?}"),
    }
}

async fn gone(c: &Client, path: &str) -> bool {
    c.exists(path).await.unwrap().is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_node_is_recreated_after_an_outside_delete_with_our_latest_data() {
    let c = client().await;
    let other = client().await;
    let dir = base(&c, "pn-recreate").await;
    let path = format!("{dir}/parents/made/node");
    let node = PersistentNode::new(&c, path.clone(), CreateMode::Ephemeral, b"v1".to_vec());
    assert!(node.wait_for_initial_create(SOON).await.unwrap());
    assert_eq!(created(&node).await, path, "parents created as containers");
    assert_eq!(
        read(&c, &path).await,
        Some((b"v1".to_vec(), c.session_id().0))
    );
    assert!(!gone(&other, &format!("{dir}/parents/made")).await);

    other.delete(&path, Version::Any).await.unwrap();
    eventually("re-created after an outside delete", SOON, || async {
        read(&other, &path).await == Some((b"v1".to_vec(), c.session_id().0))
    })
    .await;

    // set_data writes into the live node, and re-creation carries it.
    node.set_data(b"v2").await.unwrap();
    assert_eq!(read(&other, &path).await.unwrap().0, b"v2");
    assert_eq!(node.data(), b"v2");
    other.delete(&path, Version::Any).await.unwrap();
    eventually("re-created with the latest data", SOON, || async {
        read(&other, &path).await == Some((b"v2".to_vec(), c.session_id().0))
    })
    .await;
    let s = state_where(node.states(), "created again", NodeState::is_created).await;
    assert_eq!(s, NodeState::Created(path.clone()));

    // Somebody else's write is left alone (no fight over the data) ...
    other
        .set_data(&path, b"theirs", Version::Any)
        .await
        .unwrap();
    never("our data written back", QUIET, async {
        loop {
            if read(&other, &path).await.unwrap().0 != b"theirs" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // ... until we set ours again.
    node.set_data(b"v3").await.unwrap();
    assert_eq!(read(&other, &path).await.unwrap().0, b"v3");

    node.close().await.unwrap();
    assert!(gone(&other, &path).await, "close deletes our node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_set_before_expiry_is_used_on_the_new_session() {
    let setup = client().await;
    let dir = base(&setup, "pn-expiry").await;
    let path = format!("{dir}/node");
    let s = Sessions::new(
        Client::builder().session_timeout(Duration::from_secs(6)),
        connect_string(),
    );
    let node = PersistentNode::new(&s, path.clone(), CreateMode::Ephemeral, b"v1".to_vec());
    assert!(node.wait_for_initial_create(SOON).await.unwrap());
    let old = s.current().expect("a live session");
    assert_eq!(read(&setup, &path).await.unwrap().1, old.session_id().0);
    node.set_data(b"v2").await.unwrap();

    common::expire(&old).await;
    eventually("re-created on a new session", SOON, || async {
        match read(&setup, &path).await {
            Some((d, owner)) => owner != 0 && owner != old.session_id().0 && d == b"v2",
            None => false,
        }
    })
    .await;
    assert_eq!(old.state(), SessionState::Expired);
    let new = s.current().expect("a new session");
    assert_eq!(read(&setup, &path).await.unwrap().1, new.session_id().0);
    state_where(node.states(), "created again", NodeState::is_created).await;

    // Dropping the handle deletes the node in the background.
    drop(node);
    eventually("dropped: deleted", SOON, || gone(&setup, &path)).await;
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_partition_the_node_is_back_with_the_data_set_meanwhile() {
    let setup = client().await;
    let dir = base(&setup, "pn-partition").await;
    let path = format!("{dir}/node");
    let server = connect_string().split(',').next().unwrap().parse().unwrap();
    let proxy = FaultProxy::start(server).await.unwrap();
    let c = soon(
        "connect through the proxy",
        Client::builder()
            .session_timeout(Duration::from_secs(4))
            .connect(&proxy.addr().to_string()),
    )
    .await
    .unwrap();
    let node = PersistentNode::new(&c, path.clone(), CreateMode::Ephemeral, b"v1".to_vec());
    assert!(node.wait_for_initial_create(SOON).await.unwrap());

    // Partitioned: the node is deleted and our data changes meanwhile.
    proxy.set_mode(FaultMode::Blackhole);
    setup.delete(&path, Version::Any).await.unwrap();
    let (r, ()) = tokio::join!(node.set_data(b"v2"), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.cut();
        proxy.set_mode(FaultMode::Pass);
    });
    r.unwrap();
    assert_eq!(c.state(), SessionState::Connected, "the same session");
    eventually("back with the data set meanwhile", SOON, || async {
        read(&setup, &path).await == Some((b"v2".to_vec(), c.session_id().0))
    })
    .await;
    node.close().await.unwrap();
    assert!(gone(&setup, &path).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_built_from_a_client_fails_with_its_session() {
    let setup = client().await;
    let dir = base(&setup, "pn-client-expiry").await;
    let path = format!("{dir}/node");
    let c = client().await;
    let node = PersistentNode::new(&c, path.clone(), CreateMode::Ephemeral, b"x".to_vec());
    assert!(node.wait_for_initial_create(SOON).await.unwrap());
    common::expire(&c).await;
    let s = state_where(node.states(), "failed", NodeState::is_terminal).await;
    assert_eq!(s, NodeState::Failed(Error::SessionExpired));
    assert_eq!(
        node.wait_for_initial_create(SOON).await,
        Err(Error::SessionExpired)
    );
    assert!(gone(&setup, &path).await);
    assert_eq!(node.set_data(b"y").await, Err(Error::SessionExpired));
    node.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_live_sessions_ephemeral_is_not_adopted_and_taken_once_it_goes() {
    let c = client().await;
    let other = client().await;
    let dir = base(&c, "pn-conflict").await;
    let path = format!("{dir}/node");
    let eph = CreateOptions::new(CreateMode::Ephemeral);
    other.create(&path, b"theirs", &eph).await.unwrap();

    let first = PersistentNode::new(&c, path.clone(), CreateMode::Ephemeral, b"ours".to_vec());
    let conflict = NodeState::Conflict {
        owner: other.session_id(),
    };
    state_where(first.states(), "conflict reported", |s| *s == conflict).await;
    assert!(!first.wait_for_initial_create(QUIET).await.unwrap());
    assert_eq!(
        read(&c, &path).await,
        Some((b"theirs".to_vec(), other.session_id().0)),
        "never written to"
    );
    // Closing a node in conflict leaves the other session's node alone.
    first.close().await.unwrap();
    assert_eq!(read(&c, &path).await.unwrap().1, other.session_id().0);

    // A persistent-mode node does not adopt a live session's ephemeral
    // either (it would vanish with that session).
    let persistent = PersistentNode::new(&c, path.clone(), CreateMode::Persistent, b"p".to_vec());
    state_where(persistent.states(), "conflict reported", |s| *s == conflict).await;
    drop(persistent);

    let second = PersistentNode::new(&c, path.clone(), CreateMode::Ephemeral, b"ours".to_vec());
    state_where(second.states(), "conflict reported", |s| *s == conflict).await;
    other.close().await.unwrap();
    assert!(second.wait_for_initial_create(SOON).await.unwrap());
    assert_eq!(
        read(&c, &path).await,
        Some((b"ours".to_vec(), c.session_id().0)),
        "taken once the other session ended"
    );
    second.close().await.unwrap();
    assert!(gone(&c, &path).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_handle_of_the_same_session_waits_for_the_first() {
    let c = client().await;
    let dir = base(&c, "pn-held").await;
    let path = format!("{dir}/node");
    let a = PersistentNode::new(&c, path.clone(), CreateMode::Ephemeral, b"a".to_vec());
    assert!(a.wait_for_initial_create(SOON).await.unwrap());
    let b = PersistentNode::new(&c, path.clone(), CreateMode::Ephemeral, b"b".to_vec());
    let own = NodeState::Conflict {
        owner: c.session_id(),
    };
    state_where(b.states(), "waits for the first handle", |s| *s == own).await;
    assert_eq!(read(&c, &path).await.unwrap().0, b"a", "not adopted");
    // Dropping the first deletes its node; then the second creates its own.
    drop(a);
    assert!(b.wait_for_initial_create(SOON).await.unwrap());
    eventually("the second handle's data", SOON, || async {
        read(&c, &path).await == Some((b"b".to_vec(), c.session_id().0))
    })
    .await;
    b.close().await.unwrap();
    assert!(gone(&c, &path).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_node_adopts_an_existing_node_and_close_deletes_it() {
    let c = client().await;
    let other = client().await;
    let dir = base(&c, "pn-persistent").await;
    let path = format!("{dir}/node");
    let (_, before) = other
        .create(&path, b"old", &CreateOptions::default())
        .await
        .unwrap();
    let node = PersistentNode::new(&c, path.clone(), CreateMode::Persistent, b"new".to_vec());
    assert!(node.wait_for_initial_create(SOON).await.unwrap());
    let (data, stat) = other.get_data(&path).await.unwrap();
    assert_eq!(&data[..], b"new", "adopted: our data written");
    assert_eq!(stat.czxid, before.czxid, "adopted, not re-created");

    other.delete(&path, Version::Any).await.unwrap();
    eventually("re-created", SOON, || async {
        read(&other, &path).await == Some((b"new".to_vec(), 0))
    })
    .await;
    // A persistent node outlives the session that made it: the recipe
    // deletes it on close.
    node.close().await.unwrap();
    assert!(gone(&other, &path).await);

    // An ephemeral of our own live session (made outside the recipe) is
    // neither adopted nor deleted by a persistent-mode node.
    let mine = format!("{dir}/mine");
    c.create(&mine, b"eph", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    let node = PersistentNode::new(&c, mine.clone(), CreateMode::Persistent, b"p".to_vec());
    let own = NodeState::Conflict {
        owner: c.session_id(),
    };
    state_where(node.states(), "conflict with our own ephemeral", |s| {
        *s == own
    })
    .await;
    node.close().await.unwrap();
    assert_eq!(
        read(&c, &mine).await,
        Some((b"eph".to_vec(), c.session_id().0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_sequential_node_is_recreated_under_the_same_name() {
    let c = client().await;
    let other = client().await;
    let dir = base(&c, "pn-seq").await;
    let options = PersistentNodeOptions::new(CreateMode::EphemeralSequential);
    let node = PersistentNode::with_options(&c, format!("{dir}/worker-"), b"s".to_vec(), options);
    let path = created(&node).await;
    let name = path.rsplit('/').next().unwrap();
    assert!(name.starts_with("_c_") && name.len() == 3 + 36 + 1 + "worker-".len() + 10);
    assert_eq!(&name[39..47], "-worker-");
    assert!(name[47..].bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(node.actual_path().as_deref(), Some(path.as_str()));

    other.delete(&path, Version::Any).await.unwrap();
    eventually("re-created under the same full name", SOON, || async {
        read(&other, &path).await == Some((b"s".to_vec(), c.session_id().0))
    })
    .await;
    let (children, _) = other.get_children(&dir).await.unwrap();
    assert_eq!(
        children,
        vec![name.to_string()],
        "no second sequential node"
    );
    node.close().await.unwrap();
    assert!(gone(&other, &path).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_parent_creation_a_missing_parent_is_waited_for() {
    let c = client().await;
    let dir = base(&c, "pn-noparent").await;
    let path = format!("{dir}/missing/node");
    let options = PersistentNodeOptions::new(CreateMode::Ephemeral).create_parents(false);
    let node = PersistentNode::with_options(&c, path.clone(), b"x".to_vec(), options);
    state_where(node.states(), "no parent", |s| *s == NodeState::NoParent).await;
    assert!(
        gone(&c, &format!("{dir}/missing")).await,
        "no parent created"
    );
    c.create(&format!("{dir}/missing"), b"", &CreateOptions::default())
        .await
        .unwrap();
    assert!(node.wait_for_initial_create(SOON).await.unwrap());
    assert_eq!(read(&c, &path).await.unwrap().0, b"x");
    node.close().await.unwrap();
}

/// A server of its own with a 200 ms container/TTL check, extended types
/// on or off: the bundled server in process, or a real ZooKeeper.
enum OwnServer {
    Bundled(#[allow(dead_code)] zkit_server::RunningServer),
    ZooKeeper(#[allow(dead_code)] zkit_testcontainers::Ensemble),
}

const CHECK_MS: u64 = 200;

async fn ttl_server(extended_types: bool) -> (OwnServer, Client) {
    let (server, connect) = if common::bundled() {
        let s = zkit_server::Server::builder()
            .tick_time(TICK)
            .extended_types(extended_types)
            .container_check_interval(Duration::from_millis(CHECK_MS))
            .start()
            .await
            .expect("bundled server");
        let cs = s.connect_string();
        (OwnServer::Bundled(s), cs)
    } else {
        // A JVM system property, not a zoo.cfg key (ZooKeeperServerMain
        // reads `znode.container.checkIntervalMs` with Integer.getInteger).
        let zk = zkit_testcontainers::Ensemble::builder()
            .size(1)
            .tick_time(TICK)
            .jvm_prop("znode.container.checkIntervalMs", CHECK_MS.to_string())
            .jvm_prop("zookeeper.extendedTypesEnabled", extended_types.to_string())
            .start()
            .await
            .expect("a ZooKeeper server");
        let cs = zk.connect_string();
        (OwnServer::ZooKeeper(zk), cs)
    };
    let c = soon("connect", Client::connect(&connect)).await.unwrap();
    (server, c)
}

const TTL: Duration = Duration::from_millis(1000);

/// Opens a TTL node with `parent`, checks that it outlives its TTL several
/// times over while open (same nodes, child touched), then that both nodes
/// expire after close.
async fn ttl_round(c: &Client, path: String, parent: TtlParent) {
    let options = PersistentTtlNodeOptions::default().parent(parent);
    let node = PersistentTtlNode::with_options(c, path.clone(), TTL, b"alive".to_vec(), options);
    assert!(node.wait_for_initial_create(SOON).await.unwrap());
    let child = node.child_path().to_string();
    assert_eq!(child, format!("{path}/touch"));
    let (data, parent_before) = c.get_data(&path).await.unwrap();
    assert_eq!(&data[..], b"alive");
    let child_before = c.exists(&child).await.unwrap().expect("touched");
    assert_eq!(
        (parent_before.ephemeral_owner, child_before.ephemeral_owner),
        (0, 0),
        "container and TTL nodes show no owner"
    );

    // Four TTLs: without touching, the child would be reaped (and the
    // parent with it) and both re-created with new czxids.
    tokio::time::sleep(TTL * 4).await;
    let parent_after = c.exists(&path).await.unwrap().expect("parent alive");
    let child_after = c.exists(&child).await.unwrap().expect("child alive");
    assert_eq!(
        parent_after.czxid, parent_before.czxid,
        "{parent:?}: parent never expired"
    );
    assert_eq!(
        child_after.czxid, child_before.czxid,
        "{parent:?}: child never expired"
    );
    assert!(
        child_after.mtime > child_before.mtime,
        "{parent:?}: child touched"
    );
    assert!(child_after.version >= 4, "{parent:?}: touched every TTL/2");

    node.close().await.unwrap();
    // Not deleted by close: it expires.
    assert!(
        c.exists(&child).await.unwrap().is_some(),
        "{parent:?}: kept by close"
    );
    eventually("both nodes expired", TTL * 3 + SOON, || async {
        gone(c, &child).await && gone(c, &path).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_node_outlives_its_ttl_while_touched_and_expires_after_close() {
    let (_server, c) = ttl_server(true).await;
    c.create("/ttl", b"", &CreateOptions::default())
        .await
        .unwrap();
    tokio::join!(
        ttl_round(&c, "/ttl/container".into(), TtlParent::Container),
        ttl_round(&c, "/ttl/deep/ttl".into(), TtlParent::Ttl),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_node_is_recreated_when_deleted_and_close_and_delete_removes_it() {
    let c = client().await;
    let dir = base(&c, "ttl-delete").await;
    let path = format!("{dir}/node");
    let node = PersistentTtlNode::new(&c, path.clone(), Duration::from_secs(30), b"d".to_vec());
    assert!(node.wait_for_initial_create(SOON).await.unwrap());
    let child = node.child_path().to_string();
    assert!(c.exists(&child).await.unwrap().is_some());
    // Deleting both: the parent is re-created, then the child touched.
    c.delete(&child, Version::Any).await.unwrap();
    c.delete(&path, Version::Any).await.unwrap();
    eventually("re-created and touched", SOON, || async {
        !gone(&c, &child).await && read(&c, &path).await == Some((b"d".to_vec(), 0))
    })
    .await;
    node.set_data(b"e").await.unwrap();
    assert_eq!(read(&c, &path).await.unwrap().0, b"e");
    node.close_and_delete().await.unwrap();
    assert!(gone(&c, &child).await && gone(&c, &path).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_node_fails_on_a_server_without_extended_types() {
    let (_server, c) = ttl_server(false).await;
    let node = PersistentTtlNode::new(&c, "/nottl", TTL, b"x".to_vec());
    let s = state_where(node.states(), "failed", NodeState::is_terminal).await;
    assert!(
        matches!(s, NodeState::Failed(Error::Unimplemented)),
        "{s:?}"
    );
    assert_eq!(
        node.wait_for_initial_create(SOON).await,
        Err(Error::Unimplemented)
    );
}
