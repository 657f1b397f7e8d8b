//! [`MultiLock`]: several [`Lock`]s taken as one, all or nothing (Curator's
//! `InterProcessMultiLock`: an `InterProcessMutex` per path, so Curator
//! processes locking any of the paths exclude us and we them).
//!
//! ```no_run
//! # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
//! use zkit_recipes::MultiLock;
//!
//! let both = MultiLock::new(&zk, ["/locks/account-17", "/locks/account-42"]);
//! let guard = both.acquire().await?;
//! guard
//!     .guarded() // refused unless every lock is still ours
//!     .set_data("/accounts/transfer", b"17->42", zkit::Version::Any)
//!     .commit()
//!     .await?;
//! guard.release().await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use tokio::time::Instant;
use zkit::{Error, MultiWrite, Version};

use crate::lock::{Lock, LockGuard, LockState};
use crate::sessions::SessionSource;

/// Several locks taken as one (see the module docs).
///
/// The locks are taken one after another in **sorted path order**: two
/// `MultiLock`s over the same paths, listed in any order, never deadlock
/// each other. A path listed twice counts once. Curator's
/// `InterProcessMultiLock` takes its locks in *list* order: give it the
/// paths sorted too, or a Curator process holding one path and a zkit
/// process holding another wait for each other forever.
#[derive(Debug)]
pub struct MultiLock {
    locks: Vec<Lock>,
}

/// All the locks of a [`MultiLock`], held.
///
/// Dropping it releases every lock in the background (in reverse order).
#[derive(Debug)]
pub struct MultiLockGuard {
    guards: Vec<LockGuard>,
}

impl MultiLock {
    /// The locks at `paths`, on `source` (`&Client` or `&Sessions`).
    pub fn new(
        source: impl Into<SessionSource>,
        paths: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let source = source.into();
        let mut paths: Vec<String> = paths.into_iter().map(Into::into).collect();
        paths.sort();
        paths.dedup();
        Self {
            locks: paths
                .into_iter()
                .map(|p| Lock::new(source.clone(), p))
                .collect(),
        }
    }

    /// The lock directories, in the order they are taken.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.locks.iter().map(Lock::path)
    }

    /// Waits until every lock is ours.
    ///
    /// # Errors
    /// As [`Lock::acquire`]; the locks already taken are then released.
    /// [`Error::BadArguments`] for a multi-lock of no paths.
    ///
    /// # Cancel safety
    /// Dropping the future releases the locks already taken and leaves no
    /// node of the one being acquired.
    pub async fn acquire(&self) -> Result<MultiLockGuard, Error> {
        match self.acquire_until(None).await? {
            Some(g) => Ok(g),
            None => unreachable!("a waiting acquire returns the guard or an error"),
        }
    }

    /// Waits at most `timeout` for all the locks; `None` (and none held)
    /// when they did not all come.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<MultiLockGuard>, Error> {
        self.acquire_until(Some(Instant::now() + timeout)).await
    }

    async fn acquire_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Option<MultiLockGuard>, Error> {
        if self.locks.is_empty() {
            return Err(Error::BadArguments);
        }
        // Dropped on any early return: the guards taken so far release.
        let mut held = MultiLockGuard { guards: Vec::new() };
        for lock in &self.locks {
            let guard = match deadline {
                None => lock.acquire().await?,
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    match lock.acquire_timeout(left).await? {
                        Some(g) => g,
                        None => return Ok(None),
                    }
                }
            };
            held.guards.push(guard);
        }
        Ok(Some(held))
    }
}

impl MultiLockGuard {
    /// The locks' states, weakest first: [`LockState::Lost`] if any is
    /// lost, else Suspended if any is, else Reconfirmed if any is, else
    /// Held.
    pub fn state(&self) -> LockState {
        let states: Vec<LockState> = self.guards.iter().map(LockGuard::state).collect();
        [
            LockState::Lost,
            LockState::Suspended,
            LockState::Reconfirmed,
        ]
        .into_iter()
        .find(|s| states.contains(s))
        .unwrap_or(LockState::Held)
    }

    /// Whether every lock is (re)confirmed held right now.
    pub fn is_held(&self) -> bool {
        self.guards.iter().all(LockGuard::is_held)
    }

    /// The fencing token of each lock, in the order taken.
    pub fn fencing_tokens(&self) -> Vec<i64> {
        self.guards.iter().map(LockGuard::fencing_token).collect()
    }

    /// A transaction fenced by every lock node: committed only if we still
    /// hold all the locks, else it fails with [`Error::Fenced`] and writes
    /// nothing. Runs on the session of the first lock; with locks taken
    /// on different sessions (a `Sessions` renewed in between) the fence
    /// still checks each node exists, but only the first session's are
    /// tied to it.
    pub fn guarded(&self) -> MultiWrite {
        let mut guards = self.guards.iter();
        let first = guards
            .next()
            .expect("a multi-lock guard holds at least one lock");
        guards.fold(first.guarded(), |m, g| m.fence(g.node(), Version::Any))
    }

    /// Releases every lock, in reverse order.
    ///
    /// # Errors
    /// The first release error (the others are still released).
    ///
    /// # Cancel safety
    /// If the future is dropped, the remaining releases finish in the
    /// background.
    pub async fn release(mut self) -> Result<(), Error> {
        let mut first_err = None;
        while let Some(g) = self.guards.pop() {
            if let Err(e) = g.release().await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Dropping the guard releases every lock in the background, last first.
impl Drop for MultiLockGuard {
    fn drop(&mut self) {
        while let Some(g) = self.guards.pop() {
            drop(g);
        }
    }
}
