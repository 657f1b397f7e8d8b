//! [`AtomicLong`]: a distributed `i64` in Curator's `DistributedAtomicLong`
//! format (a persistent node holding 8 big-endian bytes; absent or empty
//! reads as 0), so Rust and Java processes can update one value.
//!
//! Every update is optimistic first: read the value and its version, write
//! the new value at that version, and on a conflict (another writer came
//! between) try again, up to [`AtomicLong::optimistic_tries`] times. With
//! [`AtomicLong::promoted_to_lock`], an update that lost that many races
//! then takes a [`Lock`] (Curator's `PromotedToLock`, an `InterProcessMutex`
//! at the given path, so Curator processes promoted there exclude us too)
//! and tries again under it, where only writers that were not promoted can
//! still interfere.
//!
//! ```no_run
//! # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
//! use zkit_recipes::AtomicLong;
//!
//! let orders = AtomicLong::new(&zk, "/counters/orders").promoted_to_lock("/counters/orders-lock");
//! let r = orders.increment().await?;
//! if r.succeeded {
//!     println!("{} -> {}", r.pre_value, r.post_value);
//! }
//! # Ok(()) }
//! ```
//!
//! # Unknown outcomes
//! A write whose reply is lost (ConnectionLoss) may or may not have been
//! applied; ZooKeeper cannot tell afterwards, so the update returns the
//! error instead of trying again (which could apply it twice). Curator
//! retries there; zkit does not.

use std::time::Duration;

use zkit::{Client, CreateOptions, Error, Version};

use crate::internal::protected::{backoff, ensure_parent_containers};
use crate::lock::Lock;
use crate::sessions::SessionSource;

/// What an update did (Curator's `AtomicValue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AtomicOutcome {
    /// Whether the new value was written. `false`: every try met another
    /// writer (or, for [`AtomicLong::compare_and_set`], the value was not
    /// the expected one).
    pub succeeded: bool,
    /// The value before: the one the write replaced, or the last one seen.
    pub pre_value: i64,
    /// The value after: the one written, or the last one seen.
    pub post_value: i64,
    /// Optimistic tries made.
    pub optimistic_tries: u32,
    /// Tries made under the promoted lock (0 when not promoted).
    pub promoted_tries: u32,
}

/// A distributed `i64` (see the module docs).
#[derive(Debug, Clone)]
pub struct AtomicLong {
    source: SessionSource,
    path: String,
    tries: u32,
    promoted: Option<String>,
}

fn decode(data: &[u8]) -> Result<i64, Error> {
    match <[u8; 8]>::try_from(data) {
        Ok(b) => Ok(i64::from_be_bytes(b)),
        Err(_) if data.is_empty() => Ok(0),
        Err(_) => Err(Error::InvalidArgument(format!(
            "not a DistributedAtomicLong: {} bytes, expected 8",
            data.len()
        ))),
    }
}

/// The value and the version to write at (`None`: the node is absent).
type Current = (i64, Option<i32>);

impl AtomicLong {
    /// The value at `path`, created (with its parents as containers) by
    /// the first update. 10 optimistic tries, no promotion.
    ///
    /// `source` is a `&Client` or `&Sessions` (each update runs on the live
    /// session; see [`SessionSource`]).
    pub fn new(source: impl Into<SessionSource>, path: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            path: path.into(),
            tries: 10,
            promoted: None,
        }
    }

    /// How many optimistic tries an update makes before giving up or being
    /// promoted (at least 1).
    pub fn optimistic_tries(mut self, tries: u32) -> Self {
        self.tries = tries.max(1);
        self
    }

    /// After the optimistic tries, take the [`Lock`] at `lock_path` and try
    /// as many times again under it (Curator's `PromotedToLock`).
    pub fn promoted_to_lock(mut self, lock_path: impl Into<String>) -> Self {
        self.promoted = Some(lock_path.into());
        self
    }

    /// The node's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The current value (0 when the node is absent or empty).
    ///
    /// # Errors
    /// Session errors; [`Error::InvalidArgument`] when the node does not
    /// hold 8 bytes.
    pub async fn get(&self) -> Result<i64, Error> {
        let client = self.source.client().await?;
        Ok(read(&client, &self.path).await?.0)
    }

    /// Adds `delta` (wrapping, as Java's `long`).
    ///
    /// # Errors
    /// Session errors, ConnectionLoss (outcome unknown: see the module
    /// docs), [`Error::InvalidArgument`] for a node that is not 8 bytes.
    ///
    /// # Cancel safety
    /// Dropped after its write was sent, the update may or may not apply.
    pub async fn add(&self, delta: i64) -> Result<AtomicOutcome, Error> {
        self.update(|v| Some(v.wrapping_add(delta))).await
    }

    /// Subtracts `delta` (wrapping). As [`add`](Self::add).
    ///
    /// # Errors
    /// As [`add`](Self::add).
    pub async fn subtract(&self, delta: i64) -> Result<AtomicOutcome, Error> {
        self.update(|v| Some(v.wrapping_sub(delta))).await
    }

    /// Adds 1. As [`add`](Self::add).
    ///
    /// # Errors
    /// As [`add`](Self::add).
    pub async fn increment(&self) -> Result<AtomicOutcome, Error> {
        self.add(1).await
    }

    /// Subtracts 1. As [`add`](Self::add).
    ///
    /// # Errors
    /// As [`add`](Self::add).
    pub async fn decrement(&self) -> Result<AtomicOutcome, Error> {
        self.add(-1).await
    }

    /// Sets `value` if the current value is `expected` (absent counts as
    /// 0); `succeeded: false` with the value seen otherwise.
    ///
    /// # Errors
    /// As [`add`](Self::add).
    pub async fn compare_and_set(&self, expected: i64, value: i64) -> Result<AtomicOutcome, Error> {
        self.update(|v| (v == expected).then_some(value)).await
    }

    /// Sets `value` whatever the current value, through the same
    /// optimistic (then promoted) tries as an update: `succeeded: false`
    /// when every try met another writer.
    ///
    /// # Errors
    /// As [`add`](Self::add).
    pub async fn try_set(&self, value: i64) -> Result<AtomicOutcome, Error> {
        self.update(|_| Some(value)).await
    }

    /// Writes `value` unconditionally (no version check).
    ///
    /// # Errors
    /// Session errors, ConnectionLoss (outcome unknown).
    pub async fn force_set(&self, value: i64) -> Result<(), Error> {
        let client = self.source.client().await?;
        loop {
            match client
                .set_data(&self.path, &value.to_be_bytes(), Version::Any)
                .await
            {
                Ok(_) => return Ok(()),
                Err(Error::NoNode) => match create(&client, &self.path, value).await {
                    Ok(true) => return Ok(()),
                    Ok(false) => {} // created meanwhile: set it
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates the node with `value` if it does not exist; `false` (nothing
    /// written) if it does.
    ///
    /// # Errors
    /// Session errors, ConnectionLoss (outcome unknown).
    pub async fn initialize(&self, value: i64) -> Result<bool, Error> {
        let client = self.source.client().await?;
        create(&client, &self.path, value).await
    }

    /// The optimistic tries, then (if configured) the promoted ones.
    /// `next` maps the current value to the one to write, `None` to give
    /// up (compare-and-set with another value).
    async fn update(&self, next: impl Fn(i64) -> Option<i64>) -> Result<AtomicOutcome, Error> {
        // One session for all tries: a try on another session could apply
        // an update twice.
        let client = self.source.client().await?;
        let mut out = AtomicOutcome {
            succeeded: false,
            pre_value: 0,
            post_value: 0,
            optimistic_tries: 0,
            promoted_tries: 0,
        };
        if self.tries_into(&client, &next, &mut out, false).await? {
            return Ok(out);
        }
        let Some(lock_path) = &self.promoted else {
            return Ok(out);
        };
        let guard = Lock::new(&client, lock_path.clone()).acquire().await?;
        let result = self.tries_into(&client, &next, &mut out, true).await;
        let _ = guard.release().await;
        result.map(|_| out)
    }

    /// Up to [`optimistic_tries`](Self::optimistic_tries) tries, counted as
    /// promoted or not; `true` once one is done (see [`try_once`](Self::try_once)).
    async fn tries_into(
        &self,
        client: &Client,
        next: &impl Fn(i64) -> Option<i64>,
        out: &mut AtomicOutcome,
        promoted: bool,
    ) -> Result<bool, Error> {
        for _ in 0..self.tries {
            if promoted {
                out.promoted_tries += 1;
            } else {
                out.optimistic_tries += 1;
            }
            if self.try_once(client, next, out).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One read and conditional write: `true` when written (or, for a
    /// refused compare-and-set, when there is nothing more to try).
    async fn try_once(
        &self,
        client: &Client,
        next: &impl Fn(i64) -> Option<i64>,
        out: &mut AtomicOutcome,
    ) -> Result<bool, Error> {
        let (value, version) = read(client, &self.path).await?;
        out.pre_value = value;
        out.post_value = value;
        let Some(new) = next(value) else {
            return Ok(true); // not the expected value: done, not written
        };
        let written = match version {
            Some(v) => match client
                .set_data(&self.path, &new.to_be_bytes(), Version::Exact(v))
                .await
            {
                Ok(_) => true,
                Err(Error::BadVersion | Error::NoNode) => false,
                Err(e) => return Err(e),
            },
            None => create(client, &self.path, new).await?,
        };
        if written {
            out.succeeded = true;
            out.post_value = new;
        }
        Ok(written)
    }
}

/// The value and version at `path`, retrying reads through connection
/// losses (a read is safe to repeat).
async fn read(client: &Client, path: &str) -> Result<Current, Error> {
    let mut delays = backoff();
    loop {
        match client.get_data(path).await {
            Ok((data, stat)) => return Ok((decode(&data)?, Some(stat.version))),
            Err(Error::NoNode) => return Ok((0, None)),
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates `path` holding `value` (parents as containers); `false` if it
/// exists.
async fn create(client: &Client, path: &str, value: i64) -> Result<bool, Error> {
    loop {
        match client
            .create(path, &value.to_be_bytes(), &CreateOptions::default())
            .await
        {
            Ok(_) => return Ok(true),
            Err(Error::NodeExists) => return Ok(false),
            Err(Error::NoNode) => ensure_parent_containers(client, path).await?,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curator_format() {
        assert_eq!(decode(&[]).unwrap(), 0);
        assert_eq!(decode(&5i64.to_be_bytes()).unwrap(), 5);
        assert_eq!(decode(&[0, 0, 0, 0, 0, 0, 0, 5]).unwrap(), 5);
        assert_eq!(decode(&(-2i64).to_be_bytes()).unwrap(), -2);
        assert!(matches!(
            decode(&[0, 0, 0, 5]),
            Err(Error::InvalidArgument(_))
        ));
    }
}
