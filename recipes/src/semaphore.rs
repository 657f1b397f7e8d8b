//! Counting semaphore in Curator's `InterProcessSemaphoreV2` layout:
//! `<path>/locks/` (an internal [`Lock`]) and `<path>/leases/`
//! (`_c_<uuid>-lease-<seq>` nodes, one per lease held or being taken); the
//! names are in [`layout`].
//!
//! To take a lease: take the internal lock, create a lease node, then wait
//! until the lease count is at most `max_leases`, then release the internal
//! lock. Only the internal lock's holder watches the lease list, so a
//! released lease wakes one client, not every waiter. Every exit path
//! (error, timeout, cancellation) deletes the lease node it created and
//! releases the internal lock.
//!
//! ```no_run
//! # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
//! use zkit_recipes::Semaphore;
//!
//! let pool = Semaphore::new(&zk, "/semaphores/db", 4);
//! let lease = pool.acquire().await?;   // one of 4
//! // ... use the resource; lease.guarded() fences writes ...
//! lease.release().await?;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use tokio::time::Instant;
use zkit::{Client, Error};

use crate::internal::protected::{backoff, create_protected, join, NodeGuard};
use crate::lock::{Kind, Lock, LockGuard};
use crate::sessions::SessionSource;

/// The semaphore's znode layout (Curator's `InterProcessSemaphoreV2`), for
/// tools that inspect a semaphore without taking part: the names of the
/// two children of the semaphore's node.
///
/// ```
/// use zkit_recipes::semaphore::layout;
///
/// let path = "/semaphores/db";
/// assert_eq!(format!("{path}/{}", layout::LEASES), "/semaphores/db/leases");
/// assert_eq!(format!("{path}/{}", layout::LOCKS), "/semaphores/db/locks");
/// ```
pub mod layout {
    /// The lease directory: one protected ephemeral sequential
    /// `_c_<uuid>-lease-<seq>` node per lease held, or being taken by the
    /// internal lock's holder.
    pub const LEASES: &str = "leases";

    /// The internal lock's directory: an exclusive [`Lock`](crate::Lock)
    /// (`_c_<uuid>-lock-<seq>` nodes) that takers line up in; its holder is
    /// the one taking a lease.
    pub const LOCKS: &str = "locks";
}

/// A lease of a [`Semaphore`]: the same guard as a lock's (state, loss
/// signal, fencing token, fenced writes; release or drop to give it back).
pub type Lease = LockGuard;

/// A distributed counting semaphore with `max_leases` leases.
#[derive(Debug, Clone)]
pub struct Semaphore {
    source: SessionSource,
    leases: String,
    /// The internal lock's directory (taken on the session of each acquire).
    locks: String,
    max_leases: usize,
    data: Vec<u8>,
}

impl Semaphore {
    /// A semaphore at `path` allowing `max_leases` holders at once. Every
    /// participant must use the same `max_leases`.
    ///
    /// `source` is a `&Client` (the semaphore ends with its session) or
    /// `&Sessions` (each acquisition runs on the live session; see
    /// [`SessionSource`]).
    pub fn new(
        source: impl Into<SessionSource>,
        path: impl Into<String>,
        max_leases: usize,
    ) -> Self {
        let path = path.into();
        Self {
            source: source.into(),
            leases: join(&path, layout::LEASES),
            locks: join(&path, layout::LOCKS),
            max_leases: max_leases.max(1),
            data: Vec::new(),
        }
    }

    /// Data stored in our lease nodes (default empty).
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }

    /// The number of leases.
    pub fn max_leases(&self) -> usize {
        self.max_leases
    }

    /// Waits for a lease.
    ///
    /// # Errors
    /// Session errors ([`Error::SessionExpired`], [`Error::Closed`]), ACL
    /// errors; connection losses are retried while the session lives.
    ///
    /// # Cancel safety
    /// Dropping the future leaves no lease node and releases the internal
    /// lock (in the background).
    pub async fn acquire(&self) -> Result<Lease, Error> {
        match self.acquire_until(None, true).await? {
            Some(l) => Ok(l),
            None => unreachable!("a waiting acquire returns a lease or an error"),
        }
    }

    /// Takes a lease if one is free now.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn try_acquire(&self) -> Result<Option<Lease>, Error> {
        self.acquire_until(None, false).await
    }

    /// Waits at most `timeout` for a lease.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Lease>, Error> {
        self.acquire_until(Some(Instant::now() + timeout), true)
            .await
    }

    /// The lease nodes present (held, or being taken by the internal lock's
    /// holder).
    ///
    /// # Errors
    /// Connection and session errors.
    pub async fn leases(&self) -> Result<Vec<String>, Error> {
        match self.source.client().await?.get_children(&self.leases).await {
            Ok((mut c, _)) => {
                c.sort();
                Ok(c)
            }
            Err(Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Acquires on the live session; from a [`Sessions`](crate::Sessions),
    /// an acquisition whose session expired before it held a lease starts
    /// over on a new session.
    async fn acquire_until(
        &self,
        deadline: Option<Instant>,
        wait: bool,
    ) -> Result<Option<Lease>, Error> {
        loop {
            let client = self.source.client().await?;
            match self.acquire_on(&client, deadline, wait).await {
                Err(e) if self.source.retry_on_new_session(&e) => {
                    tracing::info!(path = %self.leases, "session expired while acquiring; again on a new session");
                }
                r => return r,
            }
        }
    }

    async fn acquire_on(
        &self,
        client: &Client,
        deadline: Option<Instant>,
        wait: bool,
    ) -> Result<Option<Lease>, Error> {
        // The internal lock, on the same session as the lease.
        let internal = Lock::new(client, self.locks.clone());
        let lock = match (wait, deadline) {
            (false, _) => internal.try_acquire().await?,
            (true, None) => Some(internal.acquire().await?),
            (true, Some(d)) => {
                internal
                    .acquire_timeout(d.saturating_duration_since(Instant::now()))
                    .await?
            }
        };
        let Some(lock) = lock else { return Ok(None) };
        // Holding the internal lock (released on every path below, by
        // `release` or by the guard's drop).
        let created = create_protected(client, &self.leases, "lease-", &self.data).await?;
        let mut node = NodeGuard {
            client: client.clone(),
            path: Some(created.path.clone()),
        };
        let mut delays = backoff();
        loop {
            let (children, watcher) = match client.get_children_and_watch(&self.leases).await {
                Ok((c, _, w)) => (c, w),
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !children
                .iter()
                .any(|c| created.path.ends_with(&format!("/{c}")))
            {
                // Our lease node is gone (deleted by someone): start over.
                node.disarm();
                lock.release().await?;
                return Box::pin(self.acquire_on(client, deadline, wait)).await;
            }
            if children.len() <= self.max_leases {
                let path = node.disarm();
                let lease = LockGuard::new(client, path, created.stat.czxid, Kind::Exclusive);
                // The internal lock's delete goes out now and is finished in
                // the background: nothing stands between us and the lease.
                drop(lock);
                return Ok(Some(lease));
            }
            if !wait {
                node.release().await?;
                lock.release().await?;
                return Ok(None);
            }
            let fired = match deadline {
                Some(d) => match tokio::time::timeout_at(d, watcher.changed()).await {
                    Ok(r) => r,
                    Err(_) => {
                        node.release().await?;
                        lock.release().await?;
                        return Ok(None);
                    }
                },
                None => watcher.changed().await,
            };
            if let Err(e) = fired {
                if !e.is_retryable() {
                    return Err(e);
                }
            }
        }
    }
}
