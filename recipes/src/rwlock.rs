//! Read/write lock, herd-free, in Curator's `InterProcessReadWriteLock`
//! layout: `<path>/_c_<uuid>-__WRIT__<seq>` and `<path>/_c_<uuid>-__READ__<seq>`
//! in one directory.
//!
//! A writer waits for its immediate predecessor (reader or writer); a reader
//! waits only for the nearest earlier writer, so readers share the lock and
//! a queued writer keeps later readers out (no writer starvation). Curator's
//! mutex nodes (`-lock-`) and kazoo's locks (`__lock__`) count as writers,
//! kazoo's read locks (`__rlock__`) as readers.
//!
//! A write guard can be [downgraded](LockGuard::downgrade) to a read guard
//! without letting another writer in between (Curator 5.5's scheme: a
//! non-sequential reader node carrying the writer's sequence number).
//!
//! ```no_run
//! # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
//! use zkit_recipes::ReadWriteLock;
//!
//! let rw = ReadWriteLock::new(&zk, "/locks/catalog");
//! let w = rw.write().acquire().await?;   // exclusive
//! let r = w.downgrade().await?;          // now shared, no writer got in
//! r.release().await?;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use zkit::{CreateMode, CreateOptions, Error};

use crate::internal::protected::{backoff, join, name_of, new_guid};
use crate::internal::sequence::parse_sequence;
use crate::lock::{Kind, Lock, LockGuard, LockOptions};
use crate::sessions::SessionSource;

/// A read/write lock at a path; [`read`](Self::read) and
/// [`write`](Self::write) give the two [`Lock`]s to acquire.
#[derive(Debug, Clone)]
pub struct ReadWriteLock {
    read: Lock,
    write: Lock,
}

impl ReadWriteLock {
    /// A read/write lock at `path`, on `source` (`&Client` or `&Sessions`;
    /// see [`SessionSource`]).
    pub fn new(source: impl Into<SessionSource>, path: impl Into<String>) -> Self {
        let source = source.into();
        let path = path.into();
        let base = LockOptions::default();
        Self {
            read: Lock::with_options(
                source.clone(),
                path.clone(),
                LockOptions {
                    prefix: "__READ__".into(),
                    ..base.clone()
                },
            )
            .with_kind(Kind::Read),
            write: Lock::with_options(
                source,
                path,
                LockOptions {
                    prefix: "__WRIT__".into(),
                    ..base
                },
            ),
        }
    }

    /// The shared side: any number of readers hold it at once, unless a
    /// writer came first.
    pub fn read(&self) -> &Lock {
        &self.read
    }

    /// The exclusive side.
    pub fn write(&self) -> &Lock {
        &self.write
    }
}

impl LockGuard {
    /// Turns a write guard into a read guard without a moment where another
    /// writer could get in: creates a reader node with our writer node's
    /// sequence number (it sorts at our slot, ahead of every waiting
    /// writer), then releases the write node.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if this guard is not a write (or exclusive)
    /// guard with a sequence number; session errors. On error the write
    /// lock is still held (and released when the guard drops).
    ///
    /// # Cancel safety
    /// If the future is dropped, whatever was created is released in the
    /// background.
    pub async fn downgrade(self) -> Result<LockGuard, Error> {
        if self.kind() != Kind::Exclusive {
            return Err(Error::InvalidArgument(
                "only a write lock can be downgraded".into(),
            ));
        }
        let Some(seq) = parse_sequence(name_of(self.node())) else {
            return Err(Error::InvalidArgument(
                "the write node has no sequence number".into(),
            ));
        };
        let client = self.client().clone();
        let dir = match self.node().rsplit_once('/') {
            Some(("", _)) | None => "/".to_string(),
            Some((dir, _)) => dir.to_string(),
        };
        let path = join(&dir, &format!("{}__READ__{seq:010}", new_guid()));
        let session = client.session_id().0;
        let mut delays = backoff();
        let stat = loop {
            match client
                .create(&path, b"", &CreateOptions::new(CreateMode::Ephemeral))
                .await
            {
                Ok((_, stat)) => break stat,
                Err(e) if e.is_retryable() || e == Error::NodeExists => {
                    // Lost reply: the node may be there already, ours.
                    match client.exists(&path).await {
                        Ok(Some(stat)) if stat.ephemeral_owner == session => break stat,
                        Ok(_) => {}
                        Err(e) if e.is_retryable() => {}
                        Err(e) => return Err(e),
                    }
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
                Err(e) => return Err(e),
            }
        };
        let read = LockGuard::new(&client, path, stat.czxid, Kind::Read);
        // Now the write node can go; the reader keeps its slot.
        self.release().await?;
        Ok(read)
    }
}
