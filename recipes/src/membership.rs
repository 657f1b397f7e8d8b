//! Group membership in Curator's `GroupMember` layout: each member is an
//! ephemeral `<path>/<member id>` holding its payload.
//!
//! ```no_run
//! # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
//! use zkit_recipes::{GroupMember, MemberSet};
//!
//! let me = GroupMember::join(&zk, "/groups/workers", "worker-1", b"10.0.0.5").await?;
//! let mut members = MemberSet::watch(&zk, "/groups/workers");
//! members.changed().await.ok();
//! println!("members: {:?}", members.borrow().keys().collect::<Vec<_>>());
//! me.leave().await?;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use zkit::{AddWatchMode, Bytes, Client, CreateMode, Error, EventType, SessionState, Version};

use crate::internal::held::Held;
use crate::internal::protected::{
    backoff, create_or_adopt, delete_in_background, delete_retrying, join, Claimed,
};
use crate::internal::set_if_changed;

/// Our membership in a group: leave with [`leave`](Self::leave), or drop
/// it to leave in the background; it also ends with the session.
///
/// Dropping it sends the delete at once, so joining again under the same
/// id right after a drop keeps the new membership.
#[derive(Debug)]
pub struct GroupMember {
    client: Client,
    node: String,
    left: bool,
    _held: Held,
}

impl GroupMember {
    /// Joins the group at `path` as `id` with `payload`.
    ///
    /// Dropping the future before it resolves (or a join that fails after
    /// its create may have been applied) removes our node in the
    /// background: a read sent at once, behind the create, finds it, and it
    /// is deleted only if this session owns it and nobody adopted it since.
    ///
    /// # Errors
    /// [`Error::NodeExists`] when another live session is a member under
    /// this id (never taken over), or another `GroupMember` of this session
    /// still holds it; session and ACL errors.
    pub async fn join(
        client: &Client,
        path: &str,
        id: &str,
        payload: &[u8],
    ) -> Result<Self, Error> {
        let node = join(path, id);
        let session = client.session_id().0;
        // Session ids are 64-bit; on 32-bit targets a collision only refuses.
        let held = Held::take(session as usize, &node).ok_or(Error::NodeExists)?;
        let mut undo = UndoJoin {
            client: client.clone(),
            node: node.clone(),
            session,
            armed: true,
        };
        match create_or_adopt(client, &node, payload, CreateMode::Ephemeral).await? {
            Claimed::Ours(_) => undo.armed = false,
            Claimed::Taken(_) => return Err(Error::NodeExists),
        }
        Ok(Self {
            client: client.clone(),
            node,
            left: false,
            _held: held,
        })
    }

    /// Our member node.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Replaces our payload.
    ///
    /// # Errors
    /// Session errors; NoNode if our membership ended.
    pub async fn update(&self, payload: &[u8]) -> Result<(), Error> {
        self.client
            .set_data(&self.node, payload, Version::Any)
            .await
            .map(drop)
    }

    /// Leaves the group.
    ///
    /// # Errors
    /// Session errors (the node is gone with the session anyway).
    pub async fn leave(mut self) -> Result<(), Error> {
        self.left = true;
        delete_retrying(&self.client, &self.node).await
    }
}

/// Removes the node of a join that did not complete (dropped or failed).
struct UndoJoin {
    client: Client,
    node: String,
    session: i64,
    armed: bool,
}

impl Drop for UndoJoin {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Sent now: it is answered after any create of ours in flight and
        // before a join that starts after this one ended.
        let probe = self.client.exists(&self.node);
        let (client, node, session) = (self.client.clone(), self.node.clone(), self.session);
        rt.spawn(async move {
            if let Ok(Some(s)) = probe.await {
                if s.ephemeral_owner == session {
                    // At the version read: a join that adopted the node
                    // since (its payload write bumps the version) keeps it.
                    let r = client.delete(&node, Version::Exact(s.version)).await;
                    tracing::debug!(%node, ?r, "removed the node of an unfinished join");
                }
            }
        });
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        if !self.left {
            delete_in_background(self.client.clone(), self.node.clone());
        }
    }
}

/// The live members of a group (id -> payload), kept current by a
/// background task on one persistent recursive watch of the group: joins,
/// leaves and payload updates (a member's `update`, Curator's
/// `setThisData`) each change the map; after a reconnect the members are
/// listed again, as events missed while disconnected are not replayed.
///
/// Dropping it stops the task; the client removes the watch when its last
/// watcher is gone.
#[derive(Debug)]
pub struct MemberSet {
    rx: watch::Receiver<BTreeMap<String, Bytes>>,
    ready: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl MemberSet {
    /// Starts watching the group at `path` (an absent group has no
    /// members until it appears).
    pub fn watch(client: &Client, path: &str) -> Self {
        let (tx, rx) = watch::channel(BTreeMap::new());
        let (ready_tx, ready) = watch::channel(false);
        let task = tokio::spawn(follow(client.clone(), path.to_string(), tx, ready_tx));
        Self { rx, ready, task }
    }

    /// Waits until the group has been listed once: [`borrow`](Self::borrow)
    /// is then the group's members, not merely empty because nothing was
    /// read.
    ///
    /// # Errors
    /// [`Error::Closed`] when the session ended before the first listing.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn initialized(&self) -> Result<(), Error> {
        let mut r = self.ready.clone();
        r.wait_for(|ok| *ok)
            .await
            .map(drop)
            .map_err(|_| Error::Closed)
    }

    /// The current members.
    pub fn borrow(&self) -> watch::Ref<'_, BTreeMap<String, Bytes>> {
        self.rx.borrow()
    }

    /// Waits for the next change of the member set.
    ///
    /// # Errors
    /// [`Error::Closed`] when the session ended (no more changes).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn changed(&mut self) -> Result<(), Error> {
        self.rx.changed().await.map_err(|_| Error::Closed)
    }

    /// A receiver of the member set, for `select!` or another task.
    pub fn receiver(&self) -> watch::Receiver<BTreeMap<String, Bytes>> {
        self.rx.clone()
    }
}

/// Dropping the set stops its background task; the client removes the
/// watch when its last watcher is gone.
impl Drop for MemberSet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads every member (no watch: see [`follow`]).
async fn list(client: &Client, path: &str) -> Result<BTreeMap<String, Bytes>, Error> {
    let children = match client.get_children(path).await {
        Ok((c, _)) => c,
        Err(Error::NoNode) => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut set = BTreeMap::new();
    for c in children {
        match client.get_data(&join(path, &c)).await {
            Ok((d, _)) => {
                set.insert(c, d);
            }
            Err(Error::NoNode) => {} // left meanwhile
            Err(e) => return Err(e),
        }
    }
    Ok(set)
}

/// Keeps `tx` equal to the group's members.
///
/// One persistent recursive watch on the group sees joins (a child
/// created), leaves (deleted), payload updates (data changed) and the group
/// itself appearing or going. Nothing here sets a one-shot watch on the
/// group's path: before 3.9, ZooKeeper keeps one watch mode per session and
/// path (ZOOKEEPER-4466), and a one-shot watch would replace the persistent
/// one. After a reconnect everything is read again, as ZooKeeper does not
/// replay the events missed meanwhile.
async fn follow(
    client: Client,
    path: String,
    tx: watch::Sender<BTreeMap<String, Bytes>>,
    ready: watch::Sender<bool>,
) {
    let mut delays = backoff();
    let mut states = client.state_stream();
    let mut events = loop {
        match client
            .add_watch(&path, AddWatchMode::PersistentRecursive)
            .await
        {
            Ok(w) => break w,
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
            }
            Err(_) => return, // session over: the receivers see Closed
        }
    };
    'reload: loop {
        match list(&client, &path).await {
            Ok(set) => {
                set_if_changed(&tx, set);
                ready.send_if_modified(|r| !std::mem::replace(r, true));
            }
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                continue;
            }
            Err(_) => return,
        }
        let mut disconnected = false;
        loop {
            tokio::select! {
                ev = events.changed() => {
                    let Ok(ev) = ev else { return };
                    if ev.path == path {
                        match ev.event_type {
                            EventType::NodeCreated => continue 'reload,
                            EventType::NodeDeleted => set_if_changed(&tx, BTreeMap::new()),
                            _ => {}
                        }
                        continue;
                    }
                    // Only direct children are members.
                    let Some(name) = ev
                        .path
                        .strip_prefix(path.as_str())
                        .and_then(|rest| rest.strip_prefix('/'))
                        .filter(|name| !name.is_empty() && !name.contains('/'))
                    else {
                        continue;
                    };
                    match ev.event_type {
                        EventType::NodeDeleted => {
                            tx.send_if_modified(|set| set.remove(name).is_some());
                        }
                        EventType::NodeCreated | EventType::NodeDataChanged => {
                            match client.get_data(&ev.path).await {
                                Ok((data, _)) => {
                                    tx.send_if_modified(|set| {
                                        if set.get(name) == Some(&data) {
                                            return false;
                                        }
                                        set.insert(name.to_string(), data);
                                        true
                                    });
                                }
                                Err(Error::NoNode) => {
                                    tx.send_if_modified(|set| set.remove(name).is_some());
                                }
                                // Disconnected: the state stream says when to
                                // read everything again.
                                Err(e) if e.is_retryable() => disconnected = true,
                                Err(_) => return,
                            }
                        }
                        _ => {}
                    }
                }
                s = states.next_state() => match s {
                    Some(SessionState::Disconnected | SessionState::Connecting) => disconnected = true,
                    Some(SessionState::Connected | SessionState::ConnectedReadOnly) => {
                        if disconnected {
                            continue 'reload; // events may have been missed
                        }
                    }
                    _ => return,
                },
            }
        }
    }
}
