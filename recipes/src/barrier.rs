//! Barriers, in Curator's layouts.
//!
//! [`Barrier`] (Curator `DistributedBarrier`): the barrier is up while the
//! node `<path>` exists; waiters block until it is removed.
//!
//! [`DoubleBarrier`] (Curator `DistributedDoubleBarrier`, ZooKeeper's
//! recipe): members enter by creating an ephemeral `<path>/<uuid>`; when
//! `count` members are in, the last one creates `<path>/ready`
//! ([`layout::READY`]) and everyone proceeds; to leave, members delete
//! their nodes and wait until all have left. Waiters watch a single node
//! (`ready` to enter, one member to leave), and every wake-up — a spurious
//! one, a connection-only event — is re-checked against the server (the
//! bug Curator fixed only in 2026, GH-1290).
//!
//! ```no_run
//! # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
//! use zkit_recipes::DoubleBarrier;
//!
//! let barrier = DoubleBarrier::new(&zk, "/barriers/batch-7", 5);
//! barrier.enter().await?;   // all 5 workers start together
//! // ... work ...
//! barrier.leave().await?;   // and finish together
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use zkit::{Client, CreateMode, CreateOptions, Error, Version};

use crate::internal::protected::{
    backoff, delete_retrying, ensure_containers, ensure_parent_containers, join, new_guid,
    NodeGuard,
};
use crate::sessions::SessionSource;

use self::layout::READY;

/// The double barrier's znode layout (Curator's `DistributedDoubleBarrier`,
/// ZooKeeper's recipe), for tools that inspect a barrier without taking
/// part. Members are the other children of the barrier's node, one
/// ephemeral `<path>/<uuid>` each. (A plain [`Barrier`] has no children:
/// it is up while its node exists.)
///
/// ```
/// use zkit_recipes::barrier::layout;
///
/// let children = ["9f1c0e4a-2b7d-4c1e-8f3a-5d6b7c8d9e0f", layout::READY];
/// let members = children.iter().filter(|c| **c != layout::READY).count();
/// assert_eq!(members, 1);
/// ```
pub mod layout {
    /// The child that opens a [`DoubleBarrier`](super::DoubleBarrier):
    /// `<path>/ready`, created by the member that completes the count and
    /// deleted once every member has left. Not a member.
    pub const READY: &str = "ready";
}

/// A barrier that is up while its node exists.
#[derive(Debug, Clone)]
pub struct Barrier {
    source: SessionSource,
    path: String,
}

impl Barrier {
    /// The barrier at `path`, on `source` (`&Client` or `&Sessions`; a
    /// wait whose session expired carries on with a new one when built from
    /// `&Sessions`; see [`SessionSource`]).
    pub fn new(source: impl Into<SessionSource>, path: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            path: path.into(),
        }
    }

    /// Raises the barrier (creates the node; already up is fine).
    ///
    /// # Errors
    /// Session and ACL errors.
    pub async fn set(&self) -> Result<(), Error> {
        let client = self.source.client().await?;
        ensure_parent_containers(&client, &self.path).await?;
        match client
            .create(&self.path, b"", &CreateOptions::default())
            .await
        {
            Ok(_) | Err(Error::NodeExists) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the barrier, releasing every waiter.
    ///
    /// # Errors
    /// Session and ACL errors.
    pub async fn remove(&self) -> Result<(), Error> {
        delete_retrying(&self.source.client().await?, &self.path).await
    }

    /// Waits until the barrier is down (returns at once if it is).
    ///
    /// # Errors
    /// Session errors.
    ///
    /// # Cancel safety
    /// Cancel safe (the watch is removed when dropped).
    pub async fn wait(&self) -> Result<(), Error> {
        loop {
            let client = self.source.client().await?;
            match self.wait_on(&client).await {
                Err(e) if self.source.retry_on_new_session(&e) => {}
                r => return r,
            }
        }
    }

    async fn wait_on(&self, client: &Client) -> Result<(), Error> {
        let mut delays = backoff();
        loop {
            match client.exists_and_watch(&self.path).await {
                Ok((None, _)) => return Ok(()),
                Ok((Some(_), w)) => match w.changed().await {
                    Ok(_) => {} // re-check
                    Err(e) if e.is_retryable() => {}
                    Err(e) => return Err(e),
                },
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A double barrier for `count` members (see the module docs).
#[derive(Debug)]
pub struct DoubleBarrier {
    source: SessionSource,
    /// The session we entered on (our member node is its ephemeral).
    entered: std::sync::Mutex<Option<Client>>,
    path: String,
    count: usize,
    /// Our member node, `<path>/<uuid>`.
    me: String,
}

impl DoubleBarrier {
    /// A member of the double barrier at `path` for `count` members.
    ///
    /// `source` is a `&Client` or `&Sessions` (see [`SessionSource`]): from
    /// `&Sessions`, an `enter` whose session expired before the barrier
    /// opened enters again on a new session.
    pub fn new(source: impl Into<SessionSource>, path: impl Into<String>, count: usize) -> Self {
        let path = path.into();
        // A plain UUID, as Curator names members.
        let guid = new_guid();
        let uuid = &guid[3..guid.len() - 1];
        Self {
            source: source.into(),
            entered: std::sync::Mutex::new(None),
            me: join(&path, uuid),
            path,
            count: count.max(1),
        }
    }

    /// Enters, then waits until `count` members have entered.
    ///
    /// # Errors
    /// Session and ACL errors; connection losses are retried.
    ///
    /// # Cancel safety
    /// If dropped (or failing) before the barrier opens, our member node
    /// is deleted in the background: we withdraw and are not counted.
    /// Once `enter` returned, the node stays until [`leave`](Self::leave)
    /// or the session ends.
    pub async fn enter(&self) -> Result<(), Error> {
        loop {
            let client = self.source.client().await?;
            match self.enter_on(&client).await {
                Ok(()) => {
                    *self
                        .entered
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(client);
                    return Ok(());
                }
                Err(e) if self.source.retry_on_new_session(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn enter_on(&self, client: &Client) -> Result<(), Error> {
        let ready = join(&self.path, READY);
        let mut delays = backoff();
        // Withdraws our member node unless we get in. Its name is a fresh
        // UUID: nobody else's node can have it.
        let mut withdraw = NodeGuard {
            client: client.clone(),
            path: Some(self.me.clone()),
        };
        // Join (idempotent: an existing node of our session is us).
        loop {
            match client
                .create(&self.me, b"", &CreateOptions::new(CreateMode::Ephemeral))
                .await
            {
                Ok(_) | Err(Error::NodeExists) => break,
                Err(Error::NoNode) => ensure_containers(client, &self.path).await?,
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
                Err(e) => return Err(e),
            }
        }
        loop {
            let step = async {
                let (exists, watcher) = client.exists_and_watch(&ready).await?;
                if exists.is_some() {
                    return Ok::<_, Error>(None);
                }
                let (children, _) = client.get_children(&self.path).await?;
                let members = children.iter().filter(|c| *c != READY).count();
                if members >= self.count {
                    match client.create(&ready, b"", &CreateOptions::default()).await {
                        Ok(_) | Err(Error::NodeExists) => return Ok(None),
                        Err(e) => return Err(e),
                    }
                }
                Ok(Some(watcher))
            }
            .await;
            match step {
                Ok(None) => {
                    withdraw.disarm();
                    return Ok(());
                }
                // Any wake-up: look again (spurious and connection events too).
                Ok(Some(w)) => {
                    let _ = w.changed().await;
                }
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Leaves, then waits until every member has left (ZooKeeper's recipe:
    /// the lowest member waits for the highest, the others delete
    /// themselves and wait for the lowest).
    ///
    /// # Errors
    /// Session and ACL errors; connection losses are retried.
    pub async fn leave(&self) -> Result<(), Error> {
        // On the session we entered on (our node is its), else the live one.
        let entered = self
            .entered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let client = match entered {
            Some(c) => c,
            None => self.source.client().await?,
        };
        let client = &client;
        let me = self.me.rsplit('/').next().unwrap_or_default().to_string();
        let mut delays = backoff();
        loop {
            let step = async {
                let (mut children, _) = match client.get_children(&self.path).await {
                    Ok(c) => c,
                    Err(Error::NoNode) => return Ok(None),
                    Err(e) => return Err(e),
                };
                children.retain(|c| c != READY);
                children.sort();
                if children.is_empty() {
                    return Ok(None);
                }
                let mine = children.contains(&me);
                // The lowest member leaves last: it waits for the highest.
                let lowest_waits = mine && children[0] == me && children.len() > 1;
                if mine && !lowest_waits {
                    match client.delete(&self.me, Version::Any).await {
                        Ok(()) | Err(Error::NoNode) => {}
                        Err(e) => return Err(e),
                    }
                    if children.len() == 1 {
                        return Ok(None);
                    }
                }
                let target = if lowest_waits {
                    children.last().cloned().unwrap_or_default()
                } else {
                    children[0].clone()
                };
                match client.exists_and_watch(&join(&self.path, &target)).await? {
                    (Some(_), w) => Ok(Some(w)),
                    // Gone already: look again at once.
                    (None, _) => Ok(None),
                }
            }
            .await;
            match step {
                Ok(None) => {
                    // Everyone left (or we re-check): done when empty.
                    if self.all_left(client).await? {
                        let _ = client.delete(&join(&self.path, READY), Version::Any).await;
                        return Ok(());
                    }
                }
                Ok(Some(w)) => {
                    let _ = w.changed().await;
                }
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn all_left(&self, client: &Client) -> Result<bool, Error> {
        match client.get_children(&self.path).await {
            Ok((children, _)) => Ok(children.iter().all(|c| c == READY)),
            Err(Error::NoNode) => Ok(true),
            Err(e) => Err(e),
        }
    }
}
