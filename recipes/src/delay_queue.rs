//! Delay queue in the layout of Curator's `DistributedDelayQueue`: an item
//! is handed to a consumer only once its due time has passed, and items
//! are taken in due-time order, not in the order they were put. Java
//! processes using Curator's delay queue can share it (both ways).
//!
//! **Layout.** Items are PERSISTENT_SEQUENTIAL nodes
//! `<path>/queue-|<due>|<seq>`, `<due>` being the due time in milliseconds
//! since the Unix epoch as uppercase hex (`%08X`: at least 8 digits, 11
//! today), e.g. `queue-|18BCFE56800|0000000000` for 2023-11-14T22:13:20Z.
//! The data is Curator's item framing: `00 01 00 01`, then per item `01`,
//! a big-endian `i32` length and the bytes, then `02`. A node Curator wrote
//! with `putMulti` holds several items; see [`DelayClaim::items`]. Within
//! one due millisecond items come in sequence order. Children of `<path>`
//! whose names do not parse as items are skipped (logged at debug level),
//! as are item nodes whose data is not that framing (logged once per
//! [`DelayQueue`] value, left in place). The queue node itself is
//! PERSISTENT (as Curator's consumers create it), its ancestors containers:
//! a reaped queue node would leave Curator's consumers watching nothing.
//! Tools that inspect a queue find the names and the framing in
//! [`layout`].
//!
//! **Claims and waiting.** Like [`Queue`](crate::Queue): a consumer claims
//! an item with an ephemeral `<path>/_claims|FFFFFFFFFFFF|/<item>`;
//! consumers with nothing to take line up in a [`Lock`] at
//! `<path>/_waiters|FFFFFFFFFFFF|` and only the first in line watches the
//! queue: it sleeps until the earliest item is due, and a put (an earlier
//! item) or a released claim wakes it early. The `|FFFFFFFFFFFF|` in those
//! names is there for Curator: its consumer reads a due time between the
//! last two `|` of *every* child and sorts on it. A plain `_claims` reads as
//! due at 1970, sorts first and stops Curator's consumer from sleeping
//! until its first real item is due (it then waits for the next child
//! change instead); with the suffix it reads as due in the year 10889,
//! sorts last, and is skipped as a foreign node.
//!
//! **Delivery.** [`take_claimed`](DelayQueue::take_claimed) is
//! at-least-once: process the item, then [`DelayClaim::complete`] deletes
//! item and claim in one transaction fenced on the claim (CURATOR-605: a
//! consumer whose session ended meanwhile removes nothing, and the item is
//! delivered again). A consumer that dies or drops its claim gives the item
//! back. [`take`](DelayQueue::take) is the at-most-once convenience:
//! claim, read and complete before returning the bytes.
//!
//! **Clocks.** A due time is the *producer's* wall clock (a delay is added
//! to it at [`put`](DelayQueue::put)), compared with the *consumer's* wall
//! clock: a consumer whose clock runs ahead of the producer's delivers
//! early by the difference, one behind delivers late. ZooKeeper offers no
//! shared clock, and Curator does the same; keep hosts NTP-synchronised.
//! A sleeping consumer re-reads its clock at least once a minute, so a
//! clock step is noticed within a minute.
//!
//! **With Curator.** Curator's default consumer (no `lockPath`) reads and
//! deletes an item without looking at claims, so an item a zkit consumer
//! has claimed can also go to a Curator consumer; the zkit consumer's
//! [`complete`](DelayClaim::complete) then fails (the item is gone). Curator
//! consumers with a `lockPath` keep their own item locks elsewhere, which
//! zkit does not see. Puts are not protected (as in Curator): a put whose
//! reply was lost may or may not have created the item, and retrying may
//! duplicate it.
//!
//! ```no_run
//! # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
//! use std::time::Duration;
//! use zkit_recipes::DelayQueue;
//!
//! let q = DelayQueue::new(&zk, "/queues/reminders");
//! q.put(b"ping", Duration::from_secs(30)).await?; // due in 30 s
//! let claim = q.take_claimed().await?;             // waits until it is due
//! println!("due at {:?}: {:?}", claim.due(), claim.data());
//! claim.complete().await?;
//! # Ok(())
//! # }
//! ```

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use zkit::{Bytes, Client, CreateMode, CreateOptions, Error, OneshotWatcher};

use crate::internal::claim::{detached, ItemClaim};
use crate::internal::protected::{backoff, ensure_parent_containers, join};
use crate::lock::Lock;
use crate::sessions::SessionSource;

use self::layout::{encode, framed_items, item_name_prefix, parse_item, CLAIMS, WAITERS};

/// The delay queue's znode layout and item framing (Curator's
/// `DistributedDelayQueue`), for tools that inspect a queue without taking
/// part: which children of the queue's node are items and when they are
/// due, zkit's two helper nodes among them, and the items an item node's
/// data holds. The module docs of [`delay_queue`](super) describe the
/// layout as a whole.
///
/// ```
/// use zkit_recipes::delay_queue::layout;
///
/// let children = ["queue-|18BCFE56800|0000000007", layout::CLAIMS, layout::WAITERS];
/// let items: Vec<_> = children.iter().filter_map(|c| layout::parse_item(c)).collect();
/// assert_eq!(items.len(), 1);
/// assert_eq!((items[0].due_ms, items[0].seq), (1_700_000_000_000, 7));
/// ```
pub mod layout {
    /// The prefix of every item's name (Curator's
    /// `DistributedQueue.QUEUE_ITEM_NAME`). An item is
    /// `queue-|<due>|<seq>`: see [`parse_item`].
    pub const ITEM_PREFIX: &str = "queue-";

    /// The child holding zkit's claims: a consumer claims an item with an
    /// ephemeral `<path>/_claims|FFFFFFFFFFFF|/<item name>`. The
    /// `|FFFFFFFFFFFF|` makes Curator's consumer read it as due in the year
    /// 10889, sort it last and skip it (see the [module docs](super)).
    pub const CLAIMS: &str = "_claims|FFFFFFFFFFFF|";

    /// The child holding zkit's line of waiting consumers: an exclusive
    /// [`Lock`](crate::Lock) whose holder alone watches the queue. The
    /// suffix is there for Curator, as in [`CLAIMS`].
    pub const WAITERS: &str = "_waiters|FFFFFFFFFFFF|";

    /// Curator's `ItemSerializer`: version, item opcode, end opcode.
    const FRAME_VERSION: [u8; 4] = [0x00, 0x01, 0x00, 0x01];
    const FRAME_ITEM: u8 = 0x01;
    const FRAME_END: u8 = 0x02;

    /// An item node's name, parsed by [`parse_item`].
    ///
    /// Items are delivered by due time, then (within one due millisecond)
    /// in wrap-safe sequence order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    pub struct ItemName {
        /// When the item falls due, in milliseconds since the Unix epoch by
        /// the producer's clock (at most `i64::MAX`: a Java `long`).
        pub due_ms: u64,
        /// The sequence number ZooKeeper appended (`%010d` of a signed
        /// counter: negative once the queue node's counter has wrapped).
        pub seq: i32,
    }

    /// Parses a child name of the queue's node as Curator's delay queue
    /// reads it: the [`ITEM_PREFIX`], the due time in hex between the last
    /// two `|` (1 to 16 digits, at most `i64::MAX`; written as `%08X`),
    /// then the sequence number (10 digits, or `-` and 9 or 10 digits).
    /// `None` for anything else, such as [`CLAIMS`], [`WAITERS`] or an item
    /// `queue-<seq>` of Curator's plain `DistributedQueue`.
    ///
    /// ```
    /// use zkit_recipes::delay_queue::layout::parse_item;
    ///
    /// // Due at 2023-11-14T22:13:20Z, sequence number 7.
    /// let item = parse_item("queue-|18BCFE56800|0000000007").unwrap();
    /// assert_eq!((item.due_ms, item.seq), (1_700_000_000_000, 7));
    /// // After the sequence counter wrapped.
    /// assert_eq!(parse_item("queue-|1|-2147483648").map(|i| i.seq), Some(i32::MIN));
    /// assert_eq!(parse_item("queue-0000000001"), None);
    /// ```
    pub fn parse_item(name: &str) -> Option<ItemName> {
        let rest = name.strip_prefix(ITEM_PREFIX)?;
        let last = rest.rfind('|')?;
        let first = rest[..last].rfind('|')?;
        let hex = &rest[first + 1..last];
        if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let due_ms = u64::from_str_radix(hex, 16)
            .ok()
            .filter(|&d| i64::try_from(d).is_ok())?;
        let tail = &rest[last + 1..];
        let digits = tail.strip_prefix('-').unwrap_or(tail);
        if !(10..=11).contains(&tail.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let seq = tail.parse().ok()?;
        Some(ItemName { due_ms, seq })
    }

    /// The name of an item due at `due_ms`, up to the sequence number
    /// ZooKeeper appends: `queue-|<due %08X>|`.
    pub(crate) fn item_name_prefix(due_ms: u64) -> String {
        format!("{ITEM_PREFIX}|{due_ms:08X}|")
    }

    /// The items framed in an item node's data, borrowed from `data`;
    /// `None` when `data` is not Curator's `ItemSerializer` framing:
    /// `00 01 00 01`, then per item `01`, a big-endian `i32` length and the
    /// bytes, then `02`. Bytes after the `02` are ignored, as by Curator. A
    /// node written by [`DelayQueue::put`](super::DelayQueue::put) (or
    /// Curator's `put`) holds one item; Curator's `putMulti` writes several.
    ///
    /// ```
    /// use zkit_recipes::delay_queue::layout::framed_items;
    ///
    /// let data = [0, 1, 0, 1, 1, 0, 0, 0, 2, b'h', b'i', 1, 0, 0, 0, 1, b'x', 2];
    /// assert_eq!(framed_items(&data), Some(vec![&b"hi"[..], &b"x"[..]]));
    /// assert_eq!(framed_items(b"raw bytes"), None);
    /// ```
    pub fn framed_items(data: &[u8]) -> Option<Vec<&[u8]>> {
        let mut rest = data.strip_prefix(&FRAME_VERSION[..])?;
        let mut items = Vec::new();
        loop {
            let (&op, tail) = rest.split_first()?;
            match op {
                FRAME_END => return Some(items),
                FRAME_ITEM => {
                    let len = i32::from_be_bytes(tail.get(..4)?.try_into().ok()?);
                    let len = usize::try_from(len).ok()?;
                    items.push(tail.get(4..4 + len)?);
                    rest = &tail[4 + len..];
                }
                _ => return None,
            }
        }
    }

    /// Curator's `ItemSerializer` framing of `items` (the inverse of
    /// [`framed_items`]).
    pub(crate) fn encode(items: &[&[u8]]) -> Vec<u8> {
        let len: usize = items.iter().map(|i| i.len() + 5).sum();
        let mut out = Vec::with_capacity(len + 5);
        out.extend_from_slice(&FRAME_VERSION);
        for item in items {
            out.push(FRAME_ITEM);
            // Items are far below 2 GiB (ZooKeeper's jute.maxbuffer).
            out.extend_from_slice(&(item.len() as u32).to_be_bytes());
            out.extend_from_slice(item);
        }
        out.push(FRAME_END);
        out
    }
}

/// The longest a waiting consumer sleeps before reading the clock again.
const MAX_NAP: Duration = Duration::from_secs(60);

/// When an item becomes due: at a wall-clock time, or after a delay from
/// the [`put`](DelayQueue::put). Built from a [`SystemTime`] or a
/// [`Duration`].
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use zkit_recipes::delay_queue::Due;
///
/// let later: Due = Duration::from_secs(5).into();
/// let at: Due = (SystemTime::now() + Duration::from_secs(5)).into();
/// assert!(matches!(later, Due::After(_)) && matches!(at, Due::At(_)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Due {
    /// At this wall-clock time (kept to the millisecond, rounded up).
    At(SystemTime),
    /// This long after the put, by the producer's clock.
    After(Duration),
}

impl From<SystemTime> for Due {
    fn from(t: SystemTime) -> Self {
        Self::At(t)
    }
}

impl From<Duration> for Due {
    fn from(d: Duration) -> Self {
        Self::After(d)
    }
}

impl Due {
    /// Milliseconds since the epoch, rounded up (never due early); Curator
    /// refuses 0 and it must fit a Java `long`.
    fn epoch_ms(self) -> Result<u64, Error> {
        let at = match self {
            Self::At(t) => t,
            Self::After(d) => SystemTime::now()
                .checked_add(d)
                .ok_or_else(|| Error::InvalidArgument("delay out of range".into()))?,
        };
        let since = at
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::InvalidArgument("due time before 1970".into()))?;
        let ms = since.as_millis() + u128::from(since.subsec_nanos() % 1_000_000 != 0);
        u64::try_from(ms)
            .ok()
            .filter(|&m| m > 0 && i64::try_from(m).is_ok())
            .ok_or_else(|| Error::InvalidArgument("due time out of range".into()))
    }
}

/// A distributed delay queue (see the module docs).
///
/// Clones share the state kept locally (items of a multi-item node not yet
/// returned by [`take`](Self::take), nodes known to hold bad data).
///
/// ```no_run
/// # async fn demo(sessions: zkit_recipes::Sessions) -> zkit::Result<()> {
/// use std::time::Duration;
/// use zkit_recipes::DelayQueue;
///
/// // From a `Sessions`: the queue outlives session expiry.
/// let q = DelayQueue::new(&sessions, "/queues/retry");
/// q.put(b"job-7", Duration::from_secs(10)).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DelayQueue {
    source: SessionSource,
    path: String,
    claims: String,
    waiters: String,
    /// Items of a multi-item node taken by `take`, handed out one by one.
    pending: Arc<Mutex<VecDeque<Vec<u8>>>>,
    /// Item nodes whose data is not Curator's framing: skipped.
    bad: Arc<Mutex<HashSet<String>>>,
}

/// An item taken with [`DelayQueue::take_claimed`]: complete it when
/// processed. Dropping it (or the session ending) gives the item back to
/// the queue, due as before.
///
/// ```no_run
/// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
/// let claim = q.take_claimed().await?;
/// if claim.data() == b"poison" {
///     claim.abandon().await?; // back in the queue at once
/// } else {
///     claim.complete().await?; // gone for good
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct DelayClaim {
    node: ItemClaim,
    item: String,
    due: SystemTime,
    items: Vec<Vec<u8>>,
}

impl DelayClaim {
    /// The item's data: the only item of a node zkit (or Curator's `put`)
    /// wrote; for a node holding several items, the first of
    /// [`items`](Self::items); empty for a node holding none.
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// let claim = q.take_claimed().await?;
    /// let text = String::from_utf8_lossy(claim.data()).into_owned();
    /// # Ok(())
    /// # }
    /// ```
    pub fn data(&self) -> &[u8] {
        self.items.first().map_or(&[], Vec::as_slice)
    }

    /// Every item the node holds, in order: one for a put, several from
    /// Curator's `putMulti`. Completing the claim completes them all.
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// let claim = q.take_claimed().await?;
    /// for item in claim.items() {
    ///     println!("{item:?}");
    /// }
    /// claim.complete().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn items(&self) -> &[Vec<u8>] {
        &self.items
    }

    /// The item's node path.
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// let claim = q.take_claimed().await?;
    /// assert!(claim.item().contains("/queue-|"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn item(&self) -> &str {
        &self.item
    }

    /// When the item was due (by the producer's clock, to the millisecond).
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// let claim = q.take_claimed().await?;
    /// let late = std::time::SystemTime::now().duration_since(claim.due());
    /// # Ok(())
    /// # }
    /// ```
    pub fn due(&self) -> SystemTime {
        self.due
    }

    /// Removes the item for good, in one transaction with our claim (which
    /// must still exist: the transaction's fence). A claim lost in the
    /// meantime (session expired) fails the transaction and the item stays
    /// for another consumer.
    ///
    /// A lost reply (ConnectionLoss) is resolved here: while our session
    /// lives only this claim's own transaction deletes our claim, so the
    /// transaction is sent again while the claim is still there, and the
    /// item counts as completed once it is gone. `Ok` means the item is
    /// gone for good.
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// let claim = q.take_claimed().await?;
    /// // ... process claim.data() ...
    /// claim.complete().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Fenced`] when our claim was lost (the item goes to another
    /// consumer). [`Error::MultiFailed`] with [`Error::NoNode`] when the
    /// item was removed by someone who does not look at claims (a Curator
    /// consumer, a manual delete): our claim is then released. Session
    /// errors when the session ended before the outcome was known: the item
    /// is delivered again unless the transaction had applied just before.
    ///
    /// # Cancel safety
    /// Dropping the future before it resolves deletes our claim in the
    /// background (after anything already sent): if the transaction had not
    /// applied, the item is delivered again, never lost.
    pub async fn complete(mut self) -> Result<(), Error> {
        self.node.complete(&self.item).await
    }

    /// Gives the item back to the queue now (it stays due as it was).
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// let claim = q.take_claimed().await?;
    /// claim.abandon().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// Session errors.
    pub async fn abandon(mut self) -> Result<(), Error> {
        self.node.release().await
    }
}

/// An item node: its name, and the name parsed ([`parse_item`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    due_ms: u64,
    seq: i32,
}

/// The items among `children`, in delivery order: due time, then
/// sequence (wrap-safe, relative to the smallest), then name.
fn items_in_order(children: impl IntoIterator<Item = String>) -> Vec<Entry> {
    let mut items: Vec<Entry> = children
        .into_iter()
        .filter_map(|c| match parse_item(&c) {
            Some(i) => Some(Entry {
                name: c,
                due_ms: i.due_ms,
                seq: i.seq,
            }),
            None => {
                tracing::debug!(name = %c, "skipping a child that is not a delay-queue item");
                None
            }
        })
        .collect();
    let anchor = items.iter().map(|e| e.seq).reduce(|a, b| {
        if crate::internal::sequence::compare(b, a).is_lt() {
            b
        } else {
            a
        }
    });
    let anchor = anchor.unwrap_or(0);
    items.sort_by(|x, y| {
        let dx = x.seq.wrapping_sub(anchor) as u32;
        let dy = y.seq.wrapping_sub(anchor) as u32;
        x.due_ms
            .cmp(&y.due_ms)
            .then(dx.cmp(&dy))
            .then_with(|| x.name.cmp(&y.name))
    });
    items
}

/// The items of Curator-framed `data`, owned; `None` when it is not that
/// framing ([`framed_items`]).
fn decode(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    framed_items(data).map(|items| items.into_iter().map(<[u8]>::to_vec).collect())
}

/// The current wall-clock time in whole milliseconds since the epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn time_of(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Puts the raw data of an item whose take was dropped back into the queue
/// (same due time, new sequence number) when dropped armed.
struct PutBack {
    client: Client,
    parent: String,
    /// The item's name up to its sequence number.
    name: String,
    raw: Bytes,
    armed: bool,
}

impl Drop for PutBack {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(parent = %self.parent, "no tokio runtime: a dropped take's item is lost");
            return;
        };
        let (client, parent, name, raw) = (
            self.client.clone(),
            self.parent.clone(),
            self.name.clone(),
            self.raw.clone(),
        );
        rt.spawn(async move { put_back(&client, &parent, &name, &raw).await });
    }
}

/// Creates `parent/name<seq>` with `raw`, retrying through connection
/// losses (a lost reply may then put it twice).
async fn put_back(client: &Client, parent: &str, name: &str, raw: &[u8]) {
    let mut delays = backoff();
    let path = join(parent, name);
    loop {
        let opts = CreateOptions::new(CreateMode::PersistentSequential);
        match client.create(&path, raw, &opts).await {
            Ok((item, _)) => {
                tracing::debug!(%item, "put back an item whose take was dropped");
                return;
            }
            Err(Error::NoNode) => {
                if ensure_queue(client, parent).await.is_err() {
                    return;
                }
            }
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
            }
            Err(e) => {
                tracing::warn!(%parent, error = %e, "a dropped take's item could not be put back");
                return;
            }
        }
    }
}

/// A watch on the queue's children, and one on the claims (when the
/// claims node exists).
type Watches = (OneshotWatcher, Option<OneshotWatcher>);

/// What a look at the queue found.
enum Found {
    Claimed(DelayClaim),
    /// Nothing to take now; the next unclaimed item falls due then (ms).
    Nothing(Option<u64>),
}

impl DelayQueue {
    /// The delay queue at `path`, on `source`: a `&Client` (the queue's
    /// operations end with its session) or `&Sessions` (each operation runs
    /// on the live session; a wait whose session expired carries on with a
    /// new one; see [`SessionSource`]). A [`DelayClaim`] belongs to the
    /// session that made it, whatever the source.
    ///
    /// ```no_run
    /// # fn demo(zk: &zkit::Client) {
    /// let q = zkit_recipes::DelayQueue::new(zk, "/queues/reminders");
    /// assert_eq!(q.path(), "/queues/reminders");
    /// # }
    /// ```
    pub fn new(source: impl Into<SessionSource>, path: impl Into<String>) -> Self {
        let path = path.into();
        Self {
            source: source.into(),
            claims: join(&path, CLAIMS),
            waiters: join(&path, WAITERS),
            path,
            pending: Arc::default(),
            bad: Arc::default(),
        }
    }

    /// The queue's path.
    ///
    /// ```no_run
    /// # fn demo(q: zkit_recipes::DelayQueue) {
    /// println!("queue at {}", q.path());
    /// # }
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Adds an item, due at a time ([`SystemTime`]) or after a delay
    /// ([`Duration`], from now by this host's clock); returns its node
    /// path. The due time is kept to the millisecond, rounded up.
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// use std::time::{Duration, SystemTime};
    ///
    /// q.put(b"in-a-minute", Duration::from_secs(60)).await?;
    /// q.put(b"at-noon", SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a due time before 1970 or beyond a
    /// Java `long` of milliseconds; session and ACL errors.
    /// [`Error::ConnectionLoss`] leaves the outcome unknown (the item may or
    /// may not be in the queue): retrying may duplicate it, as with
    /// Curator's queues.
    ///
    /// # Cancel safety
    /// Dropped after its create went out, the item may still be enqueued
    /// (a whole item; consumers see it like any other).
    pub async fn put(&self, data: &[u8], due: impl Into<Due>) -> Result<String, Error> {
        let due = due.into().epoch_ms()?;
        let client = &self.source.client().await?;
        let item = join(&self.path, &item_name_prefix(due));
        let framed = encode(&[data]);
        loop {
            let opts = CreateOptions::new(CreateMode::PersistentSequential);
            match client.create(&item, &framed, &opts).await {
                Ok((path, _)) => return Ok(path),
                Err(Error::NoNode) => ensure_queue(client, &self.path).await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// The number of items, due or not, claimed or not.
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// println!("{} items waiting", q.len().await?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// Connection and session errors.
    pub async fn len(&self) -> Result<usize, Error> {
        let client = self.source.client().await?;
        match client.get_children(&self.path).await {
            Ok((c, _)) => Ok(c.iter().filter(|n| parse_item(n).is_some()).count()),
            Err(Error::NoNode) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Whether the queue holds no item (due or not).
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// if q.is_empty().await? {
    ///     println!("nothing scheduled");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// Connection and session errors.
    pub async fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len().await? == 0)
    }

    /// Takes the first due item, waiting until one is due (at-most-once:
    /// an item is gone from the queue before this returns, so a consumer
    /// that crashes while processing it loses it).
    ///
    /// A node holding several items (Curator's `putMulti`) is taken whole;
    /// its items are returned one per call, the later ones from this
    /// value's memory (shared by its clones) before the queue is looked at
    /// again.
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// loop {
    ///     let item = q.take().await?;
    ///     println!("{item:?}");
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// Session errors; connection losses are retried.
    ///
    /// # Cancel safety
    /// Dropping the future loses no item and leaves no claim node: a claim
    /// being made is deleted in the background, and an item whose removal
    /// had gone out is put back (same due time, at the end of its
    /// millisecond).
    pub async fn take(&self) -> Result<Vec<u8>, Error> {
        match self.take_data(None, true).await? {
            Some(d) => Ok(d),
            None => unreachable!("a waiting take returns an item or an error"),
        }
    }

    /// Takes the first due item if there is one, without waiting
    /// (at-most-once, as [`take`](Self::take)).
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// while let Some(item) = q.try_take().await? {
    ///     println!("{item:?}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`take`](Self::take).
    ///
    /// # Cancel safety
    /// As [`take`](Self::take).
    pub async fn try_take(&self) -> Result<Option<Vec<u8>>, Error> {
        self.take_data(None, false).await
    }

    /// Takes the first due item, waiting at most `timeout` for one to be
    /// due (at-most-once, as [`take`](Self::take)); `None` on timeout.
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// use std::time::Duration;
    ///
    /// match q.take_timeout(Duration::from_secs(5)).await? {
    ///     Some(item) => println!("{item:?}"),
    ///     None => println!("nothing due within 5 s"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`take`](Self::take).
    ///
    /// # Cancel safety
    /// As [`take`](Self::take).
    pub async fn take_timeout(&self, timeout: Duration) -> Result<Option<Vec<u8>>, Error> {
        self.take_data(Some(Instant::now() + timeout), true).await
    }

    /// Claims the first due unclaimed item, waiting until one is due
    /// (at-least-once; see [`DelayClaim`]).
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// let claim = q.take_claimed().await?;
    /// // ... process claim.data(); a crash here gives the item back ...
    /// claim.complete().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// Session errors; connection losses are retried.
    ///
    /// # Cancel safety
    /// Dropping the future leaves no claim node: a claim being made when it
    /// is dropped is deleted in the background once its create's reply
    /// arrives, and the item stays in the queue.
    pub async fn take_claimed(&self) -> Result<DelayClaim, Error> {
        match self.take_until(None, true).await? {
            Some(c) => Ok(c),
            None => unreachable!("a waiting take returns an item or an error"),
        }
    }

    /// Claims the first due unclaimed item, waiting at most `timeout`;
    /// `None` on timeout.
    ///
    /// ```no_run
    /// # async fn demo(q: zkit_recipes::DelayQueue) -> zkit::Result<()> {
    /// use std::time::Duration;
    ///
    /// if let Some(claim) = q.take_claimed_timeout(Duration::from_secs(1)).await? {
    ///     claim.complete().await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`take_claimed`](Self::take_claimed).
    ///
    /// # Cancel safety
    /// As [`take_claimed`](Self::take_claimed).
    pub async fn take_claimed_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<DelayClaim>, Error> {
        self.take_until(Some(Instant::now() + timeout), true).await
    }

    /// At-most-once: claim, then complete on a task of its own, so that a
    /// caller dropped once the removal went out gets its item put back.
    async fn take_data(
        &self,
        deadline: Option<Instant>,
        wait: bool,
    ) -> Result<Option<Vec<u8>>, Error> {
        if let Some(d) = self.pending().pop_front() {
            return Ok(Some(d));
        }
        loop {
            let Some(mut claim) = self.take_until(deadline, wait).await? else {
                return Ok(None);
            };
            let items = std::mem::take(&mut claim.items);
            let name = claim.item.rsplit('/').next().unwrap_or_default();
            let put_back = PutBack {
                client: claim.node.client().clone(),
                parent: self.path.clone(),
                name: name[..=name.rfind('|').unwrap_or(0)].to_string(),
                raw: encode(&items.iter().map(Vec::as_slice).collect::<Vec<_>>()).into(),
                armed: true,
            };
            let done = detached(async move {
                match claim.complete().await {
                    Ok(()) => Ok(put_back),
                    Err(e) => {
                        let mut put_back = put_back;
                        put_back.armed = false;
                        Err(e)
                    }
                }
            })
            .await;
            match done {
                Ok(mut put_back) => put_back.armed = false,
                // Not taken (the claim was lost, or the item went to a
                // consumer that ignores claims): look again.
                Err(e) if lost_race(&e) || self.source.retry_on_new_session(&e) => continue,
                Err(e) => return Err(e),
            }
            let mut items = items.into_iter();
            if let Some(first) = items.next() {
                self.pending().extend(items);
                return Ok(Some(first));
            }
            // A node with no item (Curator delivers nothing for it either).
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, VecDeque<Vec<u8>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims on the live session; from a [`Sessions`](crate::Sessions), a
    /// take whose session expired while it waited starts over on a new
    /// session (it held nothing yet).
    async fn take_until(
        &self,
        deadline: Option<Instant>,
        wait: bool,
    ) -> Result<Option<DelayClaim>, Error> {
        loop {
            let client = self.source.client().await?;
            match self.take_on(&client, deadline, wait).await {
                Err(e) if self.source.retry_on_new_session(&e) => {
                    tracing::info!(path = %self.path, "session expired while taking; again on a new session");
                }
                r => return r,
            }
        }
    }

    async fn take_on(
        &self,
        client: &Client,
        deadline: Option<Instant>,
        wait: bool,
    ) -> Result<Option<DelayClaim>, Error> {
        let line = Lock::new(client, self.waiters.clone());
        let mut delays = backoff();
        let mut queue_ready = false;
        loop {
            // Fast path: something is due and free; no line, no watch.
            match self.look(client, false).await {
                Ok((Found::Claimed(c), _)) => return Ok(Some(c)),
                Ok(_) if !wait => return Ok(None),
                Ok(_) => {}
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
            // Nothing for us now: wait in line; only the first watches.
            // The line lives under the queue node: create that node first,
            // as Curator does (persistent), not as the lock's container.
            if !queue_ready {
                ensure_queue(client, &self.path).await?;
                queue_ready = true;
            }
            let turn = match deadline {
                None => line.acquire().await?,
                Some(d) => match line
                    .acquire_timeout(d.saturating_duration_since(Instant::now()))
                    .await?
                {
                    Some(g) => g,
                    None => return Ok(None),
                },
            };
            // The turn is released in the background in every case:
            // nothing may come between us and the caller holding the item.
            match self.wait_for_item(client, deadline).await {
                Ok(found) => {
                    drop(turn);
                    return Ok(found);
                }
                Err(e) => {
                    drop(turn);
                    if !e.is_retryable() {
                        return Err(e);
                    }
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
            }
        }
    }

    /// As the first in line: sleep until the earliest item is due, waking
    /// early when the queue or the claims change; `None` at the deadline.
    async fn wait_for_item(
        &self,
        client: &Client,
        deadline: Option<Instant>,
    ) -> Result<Option<DelayClaim>, Error> {
        loop {
            let (found, watches) = self.look(client, true).await?;
            let next_due = match found {
                Found::Claimed(c) => return Ok(Some(c)),
                Found::Nothing(next) => next,
            };
            let Some((items_changed, claims_changed)) = watches else {
                continue; // the queue was just (re)created
            };
            // Until the next item is due (a millisecond late rather than
            // early), at most MAX_NAP; none: until something changes.
            let nap = next_due.map(|due| {
                time_of(due)
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .saturating_add(Duration::from_millis(1))
                    .min(MAX_NAP)
            });
            let wake = async {
                let timer = async {
                    match nap {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                };
                let claims = async {
                    match claims_changed {
                        Some(w) => {
                            let _ = w.changed().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = items_changed.changed() => {}
                    _ = claims => {}
                    () = timer => {}
                }
            };
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, wake).await.is_err() {
                        return Ok(None);
                    }
                }
                None => wake.await,
            }
        }
    }

    /// Lists the queue and its claims (watching both if `watch`) and claims
    /// the first due unclaimed item it can.
    async fn look(&self, client: &Client, watch: bool) -> Result<(Found, Option<Watches>), Error> {
        let (children, items_changed) = if watch {
            match client.get_children_and_watch(&self.path).await {
                Ok((c, _, w)) => (c, Some(w)),
                Err(Error::NoNode) => {
                    ensure_queue(client, &self.path).await?;
                    return Ok((Found::Nothing(None), None));
                }
                Err(e) => return Err(e),
            }
        } else {
            match client.get_children(&self.path).await {
                Ok((c, _)) => (c, None),
                Err(Error::NoNode) => return Ok((Found::Nothing(None), None)),
                Err(e) => return Err(e),
            }
        };
        let (claimed, claims_changed): (HashSet<String>, _) = if watch {
            match client.get_children_and_watch(&self.claims).await {
                Ok((c, _, w)) => (c.into_iter().collect(), Some(w)),
                Err(Error::NoNode) => (HashSet::new(), None),
                Err(e) => return Err(e),
            }
        } else {
            match client.get_children(&self.claims).await {
                Ok((c, _)) => (c.into_iter().collect(), None),
                Err(Error::NoNode) => (HashSet::new(), None),
                Err(e) => return Err(e),
            }
        };
        let bad: HashSet<String> = {
            let mut bad = self.bad.lock().unwrap_or_else(PoisonError::into_inner);
            if !bad.is_empty() {
                let present: HashSet<&String> = children.iter().collect();
                bad.retain(|n| present.contains(n));
            }
            bad.clone()
        };
        let watches = items_changed.map(|w| (w, claims_changed));
        let now = now_ms();
        for entry in items_in_order(children) {
            if claimed.contains(&entry.name) || bad.contains(&entry.name) {
                continue;
            }
            if entry.due_ms > now {
                // In due order: everything after it is later still.
                return Ok((Found::Nothing(Some(entry.due_ms)), watches));
            }
            if let Some(c) = self.claim(client, &entry).await? {
                return Ok((Found::Claimed(c), watches));
            }
        }
        Ok((Found::Nothing(None), watches))
    }

    /// Claims `entry` and reads it; `None` when another consumer has it,
    /// it is gone, or its data is not an item.
    async fn claim(&self, client: &Client, entry: &Entry) -> Result<Option<DelayClaim>, Error> {
        // The create runs on a task of its own: a take dropped meanwhile
        // leaves no claim node (it is deleted when the outcome arrives).
        let Some(mut node) = ItemClaim::create(client, &self.claims, &entry.name).await? else {
            return Ok(None);
        };
        let item = join(&self.path, &entry.name);
        match client.get_data(&item).await {
            Ok((raw, _)) => match decode(&raw) {
                Some(items) => Ok(Some(DelayClaim {
                    node,
                    item,
                    due: time_of(entry.due_ms),
                    items,
                })),
                None => {
                    tracing::warn!(%item, "skipping an item whose data is not Curator's framing");
                    self.bad
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(entry.name.clone());
                    node.release().await?;
                    Ok(None)
                }
            },
            // Completed by someone between our listing and our claim.
            Err(Error::NoNode) => {
                node.release().await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Creates the queue node as Curator's `DistributedQueue.start()` does:
/// PERSISTENT, its missing ancestors as containers. Not a container itself:
/// a reaped queue node would leave Curator's consumers deaf (their children
/// cache re-reads the children of a node that is gone and sets no watch).
async fn ensure_queue(client: &Client, path: &str) -> Result<(), Error> {
    loop {
        ensure_parent_containers(client, path).await?;
        let opts = CreateOptions::new(CreateMode::Persistent);
        match client.create(path, b"", &opts).await {
            Ok(_) | Err(Error::NodeExists) => return Ok(()),
            Err(Error::NoNode) => {} // a parent was reaped meanwhile
            Err(e) => return Err(e),
        }
    }
}

/// Whether a completion failed because the item was not ours to take: the
/// claim was lost, or the item was removed by someone ignoring claims.
fn lost_race(e: &Error) -> bool {
    match e {
        Error::Fenced { .. } => true,
        Error::MultiFailed { source, .. } => matches!(**source, Error::NoNode),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_matches_curator_item_serializer() {
        // Appendix A: Curator 5.4 `put("hello")` and `putMulti(m1, m2)`.
        let hello = [
            0x00, 0x01, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o',
            0x02,
        ];
        assert_eq!(encode(&[b"hello"]), hello);
        assert_eq!(decode(&hello), Some(vec![b"hello".to_vec()]));
        let multi = [
            0x00, 0x01, 0x00, 0x01, 0x01, 0, 0, 0, 2, b'm', b'1', 0x01, 0, 0, 0, 2, b'm', b'2',
            0x02,
        ];
        assert_eq!(encode(&[b"m1", b"m2"]), multi);
        assert_eq!(decode(&multi), Some(vec![b"m1".to_vec(), b"m2".to_vec()]));
        assert_eq!(decode(&encode(&[])), Some(vec![]));
        assert_eq!(decode(&encode(&[b""])), Some(vec![vec![]]));
        // Not the framing: raw bytes, wrong version, truncated, bad opcode,
        // negative length.
        assert_eq!(decode(b"hello"), None);
        assert_eq!(decode(&[0, 1, 0, 2, 2]), None);
        assert_eq!(decode(&hello[..10]), None);
        assert_eq!(decode(&[0, 1, 0, 1, 7]), None);
        assert_eq!(decode(&[0, 1, 0, 1, 1, 0xff, 0xff, 0xff, 0xff, 2]), None);
        // Bytes after the end opcode are ignored, as by Curator.
        assert_eq!(decode(&[0, 1, 0, 1, 2, 9, 9]), Some(vec![]));
    }

    #[test]
    fn names_parse_as_curator_reads_them() {
        // Appendix A: delay until 1700000000000 ms.
        let e = parse_item("queue-|18BCFE56800|0000000000").expect("item");
        assert_eq!((e.due_ms, e.seq), (1_700_000_000_000, 0));
        assert_eq!(format!("{:08X}", 1_700_000_000_000u64), "18BCFE56800");
        assert_eq!(format!("{:08X}", 0x1234u64), "00001234");
        let e = parse_item("queue-|00001234|0000000042").expect("short hex");
        assert_eq!((e.due_ms, e.seq), (0x1234, 42));
        assert_eq!(
            parse_item("queue-|18bcfe56800|-2147483648").map(|e| e.seq),
            Some(i32::MIN)
        );
        assert_eq!(parse_item("queue-|1|-000000001").map(|e| e.seq), Some(-1));
        for bad in [
            "queue-0000000001",            // plain DistributedQueue item
            "qn-0000000001",               // SimpleDistributedQueue item
            "queue-||0000000001",          // no due time
            "queue-|XYZ|0000000001",       // not hex
            "queue-|18BCFE56800|abc",      // no sequence
            "queue-|18BCFE56800|00000001", // short sequence
            "queue-|FFFFFFFFFFFFFFFFF|0000000001",
            "queue-|8000000000000000|0000000001", // beyond a Java long
            "_claims|FFFFFFFFFFFF|",
            "_waiters|FFFFFFFFFFFF|",
            "queue|18BCFE56800|0000000001",
        ] {
            assert_eq!(parse_item(bad), None, "{bad}");
        }
    }

    #[test]
    fn order_is_due_time_then_sequence() {
        let names = [
            "queue-|0000000A|0000000003",
            "queue-|00000005|0000000009",
            "junk",
            "queue-|0000000A|0000000001",
            "queue-|00000001|0000000007",
        ];
        let order: Vec<String> = items_in_order(names.iter().map(|s| s.to_string()))
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(
            order,
            [
                "queue-|00000001|0000000007",
                "queue-|00000005|0000000009",
                "queue-|0000000A|0000000001",
                "queue-|0000000A|0000000003",
            ]
        );
        // Across the sequence wrap, within one due millisecond.
        let names = [
            "queue-|0000000A|-2147483647",
            "queue-|0000000A|2147483646",
            "queue-|0000000A|-2147483648",
            "queue-|00000002|-2147483646",
            "queue-|0000000A|2147483647",
        ];
        let order: Vec<String> = items_in_order(names.iter().map(|s| s.to_string()))
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(
            order,
            [
                "queue-|00000002|-2147483646",
                "queue-|0000000A|2147483646",
                "queue-|0000000A|2147483647",
                "queue-|0000000A|-2147483648",
                "queue-|0000000A|-2147483647",
            ]
        );
    }

    #[test]
    fn due_times_round_up_to_the_millisecond() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_500);
        assert_eq!(Due::from(t).epoch_ms().unwrap(), 1_700_000_000_001);
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        assert_eq!(Due::from(t).epoch_ms().unwrap(), 1_700_000_000_000);
        assert!(Due::from(UNIX_EPOCH).epoch_ms().is_err());
        let soon = Due::from(Duration::from_secs(10)).epoch_ms().unwrap();
        assert!(soon >= now_ms() + 9_000 && soon <= now_ms() + 10_001);
    }
}
