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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use zkit::{AddWatchMode, Bytes, Client, CreateMode, Error, EventType, SessionState, Version};

use crate::internal::held::Held;
use crate::internal::protected::{
    backoff, create_or_adopt, delete_in_background, delete_retrying, join, Claimed,
};
use crate::internal::set_if_changed;
use crate::sessions::SessionSource;

/// Our membership in a group: leave with [`leave`](Self::leave), or drop
/// it to leave in the background.
///
/// Joined from a `&Client`, the membership ends with its session. Joined
/// from `&Sessions` (see [`SessionSource`]), it outlives expiry: after the
/// session expired, a background task joins again on a new session with
/// the latest payload (Curator's `GroupMember` does the same), waiting for
/// the server to remove the old session's node first.
///
/// Dropping it sends the delete at once, so joining again under the same
/// id right after a drop keeps the new membership.
#[derive(Debug)]
pub struct GroupMember {
    shared: Arc<MemberShared>,
    keeper: Option<tokio::task::JoinHandle<()>>,
    left: bool,
    _held: Held,
}

#[derive(Debug)]
struct MemberShared {
    node: String,
    /// The session our node belongs to now.
    client: Mutex<Client>,
    /// The latest payload, for joining again.
    payload: Mutex<Vec<u8>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl GroupMember {
    /// Joins the group at `path` as `id` with `payload`, on `source`
    /// (`&Client` or `&Sessions`).
    ///
    /// Dropping the future before it resolves (or a join that fails after
    /// its create may have been applied) removes our node in the
    /// background: a read sent at once, behind the create, finds it, and it
    /// is deleted only if this session owns it and nobody adopted it since.
    ///
    /// # Errors
    /// [`Error::NodeExists`] when another live session is a member under
    /// this id (never taken over), or another `GroupMember` of this session
    /// (or of these `Sessions`) still holds it; session and ACL errors.
    pub async fn join(
        source: impl Into<SessionSource>,
        path: &str,
        id: &str,
        payload: &[u8],
    ) -> Result<Self, Error> {
        let source = source.into();
        let client = source.client().await?;
        let node = join(path, id);
        let session = client.session_id().0;
        let held = Held::take(source.scope(&client), &node).ok_or(Error::NodeExists)?;
        let mut undo = UndoJoin {
            client: client.clone(),
            node: node.clone(),
            session,
            armed: true,
        };
        match create_or_adopt(&client, &node, payload, CreateMode::Ephemeral).await? {
            Claimed::Ours(_) => undo.armed = false,
            Claimed::Taken(_) => return Err(Error::NodeExists),
        }
        let shared = Arc::new(MemberShared {
            node,
            client: Mutex::new(client),
            payload: Mutex::new(payload.to_vec()),
        });
        let keeper = source
            .renews()
            .then(|| tokio::spawn(keep_member(source, shared.clone())));
        Ok(Self {
            shared,
            keeper,
            left: false,
            _held: held,
        })
    }

    /// Our member node.
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    /// Replaces our payload (kept for joining again on a new session).
    ///
    /// # Errors
    /// Session errors; NoNode if our membership ended.
    pub async fn update(&self, payload: &[u8]) -> Result<(), Error> {
        *locked(&self.shared.payload) = payload.to_vec();
        let client = locked(&self.shared.client).clone();
        client
            .set_data(&self.shared.node, payload, Version::Any)
            .await
            .map(drop)
    }

    /// Leaves the group.
    ///
    /// # Errors
    /// Session errors (the node is gone with the session anyway).
    pub async fn leave(mut self) -> Result<(), Error> {
        self.left = true;
        if let Some(k) = self.keeper.take() {
            k.abort();
        }
        let client = locked(&self.shared.client).clone();
        delete_retrying(&client, &self.shared.node).await
    }
}

/// Joins again after each expiry, on a new session of `source`.
async fn keep_member(source: SessionSource, shared: Arc<MemberShared>) {
    loop {
        // Wait for the session our node belongs to to end.
        let client = locked(&shared.client).clone();
        let mut states = client.state_stream();
        while let Some(s) = states.next_state().await {
            if s.is_terminal() {
                break;
            }
        }
        if !source.retry_on_new_session(&Error::SessionExpired)
            || client.state() != SessionState::Expired
        {
            return; // closed: the membership ends
        }
        let mut delays = backoff();
        let new = loop {
            let Ok(new) = source.client_retrying().await else {
                return;
            };
            let payload = locked(&shared.payload).clone();
            match create_or_adopt(&new, &shared.node, &payload, CreateMode::Ephemeral).await {
                Ok(Claimed::Ours(_)) => break new,
                // Our old session's node, not yet expired on the server (the
                // client can declare expiry first): it goes within that
                // session's timeout. Never deleted (CURATOR-164).
                Ok(Claimed::Taken(s)) if source.was_ours(s.ephemeral_owner) => {}
                Ok(Claimed::Taken(_)) => {
                    tracing::warn!(node = %shared.node, "another session took our member id; not joining again");
                    return;
                }
                Err(e) => tracing::debug!(node = %shared.node, error = %e, "joining again failed"),
            }
            tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
        };
        tracing::info!(node = %shared.node, session = %new.session_id(), "joined again on a new session");
        *locked(&shared.client) = new;
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

/// Dropping the membership leaves the group: the delete is sent at once
/// and finished in the background, and a membership joined from `Sessions`
/// stops joining again.
impl Drop for GroupMember {
    fn drop(&mut self) {
        if let Some(k) = self.keeper.take() {
            k.abort();
        }
        if !self.left {
            let client = locked(&self.shared.client).clone();
            delete_in_background(client, self.shared.node.clone());
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
    ///
    /// From a `&Client` the set stops when its session ends ([`changed`]
    /// then fails with [`Error::Closed`]); from `&Sessions` (see
    /// [`SessionSource`]) it carries on with a new session.
    ///
    /// [`changed`]: Self::changed
    pub fn watch(source: impl Into<SessionSource>, path: &str) -> Self {
        let (tx, rx) = watch::channel(BTreeMap::new());
        let (ready_tx, ready) = watch::channel(false);
        let task = tokio::spawn(follow_sessions(
            source.into(),
            path.to_string(),
            tx,
            ready_tx,
        ));
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
/// [`follow`] on each session of `source` in turn.
async fn follow_sessions(
    source: SessionSource,
    path: String,
    tx: watch::Sender<BTreeMap<String, Bytes>>,
    ready: watch::Sender<bool>,
) {
    loop {
        let Ok(client) = source.client_retrying().await else {
            return;
        };
        follow(&client, &path, &tx, &ready).await;
        if !source.retry_on_new_session(&Error::SessionExpired)
            || client.state() != SessionState::Expired
        {
            return; // the receivers see Closed
        }
        tracing::info!(%path, "member set: session expired; following on a new session");
    }
}

async fn follow(
    client: &Client,
    path: &str,
    tx: &watch::Sender<BTreeMap<String, Bytes>>,
    ready: &watch::Sender<bool>,
) {
    let mut delays = backoff();
    let mut states = client.state_stream();
    let mut events = loop {
        match client
            .add_watch(path, AddWatchMode::PersistentRecursive)
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
        match list(client, path).await {
            Ok(set) => {
                set_if_changed(tx, set);
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
                            EventType::NodeDeleted => set_if_changed(tx, BTreeMap::new()),
                            _ => {}
                        }
                        continue;
                    }
                    // Only direct children are members.
                    let Some(name) = ev
                        .path
                        .strip_prefix(path)
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
