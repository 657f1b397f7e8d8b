//! Shared counters and ID generation.
//!
//! [`SharedCount`] is byte-compatible with Curator's `SharedCount` (and
//! kazoo's `Counter(support_curator=True)`): a persistent node holding a
//! 4-byte big-endian `i32`, updated by compare-and-set on the node version.
//!
//! [`IdGenerator`] hands out unique, increasing 64-bit IDs in blocks: each
//! block is the sequence number of a sequential node created under a
//! persistent (never reaped) parent, so no two blocks are ever equal.
//!
//! ```no_run
//! # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
//! use zkit_recipes::{IdGenerator, SharedCount};
//!
//! let hits = SharedCount::new(&zk, "/counters/hits", 0);
//! let now = hits.add(1).await?;            // CAS loop, returns the new value
//!
//! let mut ids = IdGenerator::new(&zk, "/ids/orders", 1000);
//! let id = ids.next_id().await?;           // one round trip per 1000 IDs
//! # let _ = (now, id);
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use zkit::{Client, CreateMode, CreateOptions, Error, Version};

use crate::internal::protected::{
    backoff, create_protected_under, delete_in_background, ensure_parent_containers,
};
use crate::internal::sequence::parse_sequence;
use crate::sessions::SessionSource;

/// A value read from a [`SharedCount`] with the version it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct VersionedCount {
    /// The count.
    pub value: i32,
    /// The node's data version, for [`SharedCount::try_set`].
    pub version: i32,
}

/// A shared `i32` counter in Curator's `SharedCount` format.
#[derive(Debug, Clone)]
pub struct SharedCount {
    source: SessionSource,
    path: String,
    seed: i32,
}

fn decode(data: &[u8]) -> Result<i32, Error> {
    match data.len() {
        0 => Ok(0),
        4 => Ok(i32::from_be_bytes([data[0], data[1], data[2], data[3]])),
        n => Err(Error::InvalidArgument(format!(
            "not a SharedCount: {n} bytes, expected 4"
        ))),
    }
}

impl SharedCount {
    /// The counter at `path`; it is created with `seed` on first use.
    ///
    /// `source` is a `&Client` (the counter's operations end with its
    /// session) or `&Sessions` (each operation runs on the live session; see
    /// [`SessionSource`]).
    pub fn new(source: impl Into<SessionSource>, path: impl Into<String>, seed: i32) -> Self {
        Self {
            source: source.into(),
            path: path.into(),
            seed,
        }
    }

    /// Reads the count (creating the node with the seed if absent).
    ///
    /// # Errors
    /// Session errors; [`Error::InvalidArgument`] when the node does not
    /// hold 4 bytes.
    pub async fn get(&self) -> Result<VersionedCount, Error> {
        self.get_on(&self.source.client().await?).await
    }

    async fn get_on(&self, client: &Client) -> Result<VersionedCount, Error> {
        let mut delays = backoff();
        loop {
            match client.get_data(&self.path).await {
                Ok((data, stat)) => {
                    return Ok(VersionedCount {
                        value: decode(&data)?,
                        version: stat.version,
                    })
                }
                Err(Error::NoNode) => self.create_seeded(client).await?,
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn create_seeded(&self, client: &Client) -> Result<(), Error> {
        ensure_parent_containers(client, &self.path).await?;
        match client
            .create(
                &self.path,
                &self.seed.to_be_bytes(),
                &CreateOptions::default(),
            )
            .await
        {
            Ok(_) | Err(Error::NodeExists) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets the count if nobody changed it since `previous` was read;
    /// `false` (nothing written) otherwise.
    ///
    /// # Errors
    /// Session errors. A ConnectionLoss leaves the outcome unknown.
    pub async fn try_set(&self, previous: VersionedCount, value: i32) -> Result<bool, Error> {
        self.try_set_on(&self.source.client().await?, previous, value)
            .await
    }

    async fn try_set_on(
        &self,
        client: &Client,
        previous: VersionedCount,
        value: i32,
    ) -> Result<bool, Error> {
        match client
            .set_data(
                &self.path,
                &value.to_be_bytes(),
                Version::Exact(previous.version),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::BadVersion) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets the count unconditionally.
    ///
    /// # Errors
    /// Session errors.
    pub async fn set(&self, value: i32) -> Result<(), Error> {
        let client = self.source.client().await?;
        self.get_on(&client).await?;
        client
            .set_data(&self.path, &value.to_be_bytes(), Version::Any)
            .await
            .map(drop)
    }

    /// Adds `delta` (wrapping) with a compare-and-set loop and returns the
    /// new count. Every successful call is applied exactly once: the loop
    /// retries only on a conflict (BadVersion), never after an ambiguous
    /// ConnectionLoss, which is returned.
    ///
    /// # Errors
    /// Session errors, ConnectionLoss (outcome unknown).
    pub async fn add(&self, delta: i32) -> Result<i32, Error> {
        // One session for the whole loop: a retry on another session could
        // apply the same delta twice.
        let client = self.source.client().await?;
        loop {
            let cur = self.get_on(&client).await?;
            let next = cur.value.wrapping_add(delta);
            if self.try_set_on(&client, cur, next).await? {
                return Ok(next);
            }
        }
    }
}

/// Unique, increasing 64-bit IDs, `block_size` per round trip.
///
/// An ID is `block << 32 | index`: `block` is the sequence number of an
/// ephemeral sequential node `_c_<uuid>-block-<seq>` created under `path`
/// (protected, then deleted), `index` counts within the block. IDs from one generator increase; IDs from
/// different generators never collide, and a block taken later is larger.
/// The parent is created persistent (a container could be reaped and
/// restart the sequence); deleting it restarts the sequence, and IDs
/// handed out before may then come again.
#[derive(Debug)]
pub struct IdGenerator {
    source: SessionSource,
    path: String,
    block_size: u32,
    block: Option<(i64, u32)>,
}

impl IdGenerator {
    /// A generator at `path` handing out `block_size` IDs per block (at
    /// least 1).
    ///
    /// `source` is a `&Client` or `&Sessions` (blocks are taken on the live
    /// session; see [`SessionSource`]).
    pub fn new(source: impl Into<SessionSource>, path: impl Into<String>, block_size: u32) -> Self {
        Self {
            source: source.into(),
            path: path.into(),
            block_size: block_size.max(1),
            block: None,
        }
    }

    /// The next ID.
    ///
    /// # Errors
    /// Session errors; [`Error::InvalidArgument`] once the parent's sequence
    /// counter has wrapped (2^31 blocks).
    ///
    /// # Cancel safety
    /// A dropped call may skip IDs (never repeat them).
    pub async fn next_id(&mut self) -> Result<i64, Error> {
        if let Some((block, used)) = self.block.as_mut() {
            if *used < self.block_size {
                *used += 1;
                return Ok((*block << 32) | i64::from(*used - 1));
            }
        }
        let block = self.next_block().await?;
        self.block = Some((block, 1));
        Ok(block << 32)
    }

    async fn next_block(&self) -> Result<i64, Error> {
        // Protected: a lost reply or a cancelled call leaves no block node.
        let client = self.source.client().await?;
        let created =
            create_protected_under(&client, &self.path, CreateMode::Persistent, "block-", b"")
                .await?;
        delete_in_background(client, created.path.clone());
        let seq = parse_sequence(&created.path).ok_or_else(|| {
            Error::InvalidArgument(format!("unexpected block node {}", created.path))
        })?;
        if seq < 0 {
            return Err(Error::InvalidArgument(format!(
                "the ID sequence under {} has wrapped",
                self.path
            )));
        }
        Ok(i64::from(seq))
    }
}
