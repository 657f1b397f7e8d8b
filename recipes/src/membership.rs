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
use zkit::{Bytes, Client, CreateMode, Error, Version};

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
/// background task that watches the group's children. Reading it never
/// misses the latest set: after every change (and after reconnecting) the
/// members are listed again.
#[derive(Debug)]
pub struct MemberSet {
    rx: watch::Receiver<BTreeMap<String, Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl MemberSet {
    /// Starts watching the group at `path` (an absent group has no
    /// members until it appears).
    pub fn watch(client: &Client, path: &str) -> Self {
        let (tx, rx) = watch::channel(BTreeMap::new());
        let task = tokio::spawn(follow(client.clone(), path.to_string(), tx));
        Self { rx, task }
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

impl Drop for MemberSet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow(client: Client, path: String, tx: watch::Sender<BTreeMap<String, Bytes>>) {
    let mut delays = backoff();
    loop {
        let listed = async {
            match client.get_children_and_watch(&path).await {
                Ok((children, _, w)) => {
                    let mut set = BTreeMap::new();
                    for c in children {
                        match client.get_data(&join(&path, &c)).await {
                            Ok((d, _)) => {
                                set.insert(c, d);
                            }
                            Err(Error::NoNode) => {} // left meanwhile
                            Err(e) => return Err(e),
                        }
                    }
                    Ok((set, Some(w)))
                }
                Err(Error::NoNode) => {
                    // No group yet: wait for it to appear.
                    let (s, w) = client.exists_and_watch(&path).await?;
                    if s.is_some() {
                        return Ok((BTreeMap::new(), None));
                    }
                    Ok((BTreeMap::new(), Some(w)))
                }
                Err(e) => Err(e),
            }
        }
        .await;
        match listed {
            Ok((set, watcher)) => {
                set_if_changed(&tx, set);
                if let Some(w) = watcher {
                    if let Err(e) = w.changed().await {
                        if !e.is_retryable() {
                            return; // session over: the receivers see Closed
                        }
                    }
                }
            }
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
            }
            Err(_) => return,
        }
    }
}
