//! FIFO queue in the layout of Curator's `SimpleDistributedQueue` (and
//! ZooKeeper's queue recipe): items are PERSISTENT_SEQUENTIAL nodes
//! `<path>/qn-<seq>`, taken in sequence order. Java and Python processes
//! using those recipes can share the queue.
//!
//! **Herd.** Curator's consumers all watch the queue's children, so every
//! put wakes every idle consumer. Here a consumer that finds the queue empty
//! waits its turn in a [`Lock`] at `<path>/_waiters`; only the turn holder
//! watches the queue, so a put wakes one consumer (the others watch only
//! their predecessor in the line).
//!
//! **Delivery.** [`take`](Queue::take) is at-most-once (read, then delete:
//! a consumer that crashes after the delete loses the item).
//! [`take_claimed`](Queue::take_claimed) is at-least-once: the item is
//! claimed with an ephemeral `<path>/_claims/<item>`, processed, then
//! [`Claim::complete`] deletes item and claim in one transaction that
//! re-checks the claim; a consumer that dies (or drops the claim) releases
//! it, so the item is delivered again, and a completed item is never
//! delivered again.
//!
//! ```no_run
//! # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
//! use zkit_recipes::Queue;
//!
//! let q = Queue::new(&zk, "/queues/jobs");
//! q.put(b"job-1").await?;
//! let claim = q.take_claimed().await?;
//! println!("working on {:?}", claim.data());
//! claim.complete().await?;     // gone for good only now
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;
use zkit::{Bytes, Client, CreateMode, CreateOptions, Error, Version};

use crate::internal::claim::ItemClaim;
use crate::internal::protected::{backoff, ensure_containers, join};
use crate::internal::sequence::{compare, parse_sequence};
use crate::lock::Lock;
use crate::sessions::SessionSource;

const PREFIX: &str = "qn-";
/// kazoo's `Queue` items: `entry-<priority %03d>-<seq>`.
const PRIORITY_PREFIX: &str = "entry-";
/// kazoo's default priority.
pub const DEFAULT_PRIORITY: u16 = 100;
const CLAIMS: &str = "_claims";
const WAITERS: &str = "_waiters";

/// A distributed FIFO queue (see the module docs).
///
/// A `Queue` value caches the item names it listed last and works through
/// them before listing again (a listing costs as much as the queue is
/// long); clones share the cache.
#[derive(Debug, Clone)]
pub struct Queue {
    source: SessionSource,
    path: String,
    claims: String,
    /// The line of waiting consumers (a [`Lock`] taken on each take's session).
    waiters: String,
    cache: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
    priority: bool,
}

/// An item taken with [`Queue::take_claimed`]: complete it when processed.
/// Dropping it (or the session ending) gives the item back to the queue.
#[derive(Debug)]
pub struct Claim {
    node: ItemClaim,
    item: String,
    data: Bytes,
}

impl Claim {
    /// The item's data.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The item's node path.
    pub fn item(&self) -> &str {
        &self.item
    }

    /// Removes the item for good, in one transaction with our claim (which
    /// must still exist, the transaction's fence): a claim lost in the
    /// meantime (session expired) fails and the item stays for another
    /// consumer.
    ///
    /// A lost reply (ConnectionLoss) is resolved here, not handed to the
    /// caller: our claim tells whether the transaction applied (it deletes
    /// the claim, and nobody else deletes a claim of a live session), so
    /// the transaction is sent again while the claim is still ours, and the
    /// item counts as completed once the claim is gone. So `Ok` means the
    /// item is gone for good, and an item is never left claimed by a live
    /// session with no handle to finish it.
    ///
    /// # Errors
    /// [`Error::Fenced`] when our claim was lost (the item goes to
    /// another consumer); [`Error::MultiFailed`] with [`Error::NoNode`]
    /// when the item was removed by someone who does not look at claims (a
    /// Curator or kazoo consumer, a manual delete); [`Error::SessionExpired`] and other session
    /// errors when the session ended before the outcome was known: the
    /// claim ended with it, and the item is delivered again unless the
    /// transaction had applied just before (the outcome is unknown; an
    /// item that must run exactly once needs an idempotent effect).
    ///
    /// # Cancel safety
    /// Dropping the future before it resolves deletes our claim in the
    /// background (after anything already sent): if the transaction had not
    /// applied, the item is delivered again, never lost.
    pub async fn complete(mut self) -> Result<(), Error> {
        self.node.complete(&self.item).await
    }

    /// Gives the item back to the queue now.
    ///
    /// # Errors
    /// Session errors.
    pub async fn abandon(mut self) -> Result<(), Error> {
        self.node.release().await
    }
}

impl Queue {
    /// The queue at `path`, on `source`: a `&Client` (the queue's
    /// operations end with its session) or `&Sessions` (each operation runs
    /// on the live session; a wait whose session expired carries on with a
    /// new one; see [`SessionSource`]). A [`Claim`] belongs to the session
    /// that made it, whatever the source.
    pub fn new(source: impl Into<SessionSource>, path: impl Into<String>) -> Self {
        let path = path.into();
        Self {
            source: source.into(),
            claims: join(&path, CLAIMS),
            waiters: join(&path, WAITERS),
            cache: std::sync::Arc::default(),
            path,
            priority: false,
        }
    }

    /// A priority queue at `path` in kazoo's `Queue` layout
    /// (`entry-<priority %03d>-<seq>`: lower priority values first, FIFO
    /// within a priority), so kazoo processes can share it. Claims and
    /// waiting work as for the FIFO queue.
    pub fn priority(source: impl Into<SessionSource>, path: impl Into<String>) -> Self {
        Self {
            priority: true,
            ..Self::new(source, path)
        }
    }

    /// Appends an item with `priority` (0 = first; at most 999) to a
    /// [`priority`](Self::priority) queue; on a FIFO queue the priority is
    /// ignored.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub async fn put_with_priority(&self, data: &[u8], priority: u16) -> Result<String, Error> {
        self.put_named(data, priority.min(999)).await
    }

    /// Appends an item; returns its node path.
    ///
    /// # Errors
    /// Session and ACL errors. [`Error::ConnectionLoss`] leaves the outcome
    /// unknown (the item may or may not be in the queue): retrying may
    /// duplicate it, as with Curator's queues.
    ///
    /// # Cancel safety
    /// Dropped after its create went out, the item may still be enqueued
    /// (a whole item; consumers see it like any other).
    pub async fn put(&self, data: &[u8]) -> Result<String, Error> {
        self.put_named(data, DEFAULT_PRIORITY).await
    }

    async fn put_named(&self, data: &[u8], priority: u16) -> Result<String, Error> {
        let client = &self.source.client().await?;
        let item = if self.priority {
            join(&self.path, &format!("{PRIORITY_PREFIX}{priority:03}-"))
        } else {
            join(&self.path, PREFIX)
        };
        loop {
            match client
                .create(
                    &item,
                    data,
                    &CreateOptions::new(CreateMode::PersistentSequential),
                )
                .await
            {
                Ok((path, _)) => return Ok(path),
                Err(Error::NoNode) => ensure_containers(client, &self.path).await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// The number of items (claimed ones included).
    ///
    /// # Errors
    /// Connection and session errors.
    pub async fn len(&self) -> Result<usize, Error> {
        let client = &self.source.client().await?;
        Ok(self.items(client).await?.0.len())
    }

    /// Whether the queue has no item.
    ///
    /// # Errors
    /// Connection and session errors.
    pub async fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len().await? == 0)
    }

    /// Takes the head item, waiting for one (at-most-once).
    ///
    /// # Errors
    /// Session errors; connection losses are retried.
    ///
    /// # Cancel safety
    /// Dropping the future loses no item: before the final delete nothing
    /// is taken, and an item whose delete had gone out is put back at the
    /// tail of the queue.
    pub async fn take(&self) -> Result<Vec<u8>, Error> {
        match self.take_until(None, true, false).await? {
            Some(Taken::Data(d)) => Ok(d),
            _ => unreachable!("a waiting take returns an item or an error"),
        }
    }

    /// Takes the head item if there is one.
    ///
    /// # Errors
    /// As [`take`](Self::take).
    pub async fn try_take(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(match self.take_until(None, false, false).await? {
            Some(Taken::Data(d)) => Some(d),
            _ => None,
        })
    }

    /// Takes the head item, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`take`](Self::take).
    ///
    /// # Cancel safety
    /// As [`take`](Self::take).
    pub async fn poll(&self, timeout: Duration) -> Result<Option<Vec<u8>>, Error> {
        Ok(
            match self
                .take_until(Some(Instant::now() + timeout), true, false)
                .await?
            {
                Some(Taken::Data(d)) => Some(d),
                _ => None,
            },
        )
    }

    /// Claims the head unclaimed item, waiting for one (at-least-once).
    ///
    /// # Errors
    /// Session errors; connection losses are retried.
    ///
    /// # Cancel safety
    /// Dropping the future leaves no claim node: a claim being made when it
    /// is dropped is deleted in the background once its create's reply
    /// arrives (a claim already made, at once), and the item stays in the
    /// queue for the next take.
    pub async fn take_claimed(&self) -> Result<Claim, Error> {
        match self.take_until(None, true, true).await? {
            Some(Taken::Claimed(c)) => Ok(c),
            _ => unreachable!("a waiting take returns an item or an error"),
        }
    }

    /// Claims the head unclaimed item, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`take_claimed`](Self::take_claimed).
    ///
    /// # Cancel safety
    /// As [`take_claimed`](Self::take_claimed).
    pub async fn poll_claimed(&self, timeout: Duration) -> Result<Option<Claim>, Error> {
        Ok(
            match self
                .take_until(Some(Instant::now() + timeout), true, true)
                .await?
            {
                Some(Taken::Claimed(c)) => Some(c),
                _ => None,
            },
        )
    }

    /// The items in queue order, and the claimed ones.
    async fn items(&self, client: &Client) -> Result<(Vec<String>, HashSet<String>), Error> {
        let children = match client.get_children(&self.path).await {
            Ok((c, _)) => c,
            Err(Error::NoNode) => return Ok((Vec::new(), HashSet::new())),
            Err(e) => return Err(e),
        };
        let prefix = if self.priority {
            PRIORITY_PREFIX
        } else {
            PREFIX
        };
        // (priority, sequence, name); FIFO items all have priority 0.
        let mut items: Vec<(u16, i32, String)> = children
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .filter_map(|c| {
                let prio = if self.priority {
                    c.get(6..9)?.parse().ok()?
                } else {
                    0
                };
                parse_sequence(&c).map(|s| (prio, s, c))
            })
            .collect();
        items.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| compare(a.1, b.1))
                .then_with(|| a.2.cmp(&b.2))
        });
        let claimed = match client.get_children(&self.claims).await {
            Ok((c, _)) => c.into_iter().collect(),
            Err(Error::NoNode) => HashSet::new(),
            Err(e) => return Err(e),
        };
        Ok((items.into_iter().map(|(_, _, c)| c).collect(), claimed))
    }

    /// Takes (or claims) the first item we can: from the cached listing,
    /// listing again when it runs out; `None` when the queue has nothing
    /// for us.
    async fn take_once(&self, client: &Client, claimed_mode: bool) -> Result<Option<Taken>, Error> {
        let mut refreshed = false;
        loop {
            let next = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop_front();
            let name = match next {
                Some(n) => n,
                None if refreshed => return Ok(None),
                None => {
                    let (items, claimed) = self.items(client).await?;
                    // A claimed item belongs to its claimant (in either mode).
                    let fresh: std::collections::VecDeque<String> =
                        items.into_iter().filter(|i| !claimed.contains(i)).collect();
                    if fresh.is_empty() {
                        return Ok(None);
                    }
                    *self
                        .cache
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                    refreshed = true;
                    continue;
                }
            };
            let item = join(&self.path, &name);
            if claimed_mode {
                if let Some(c) = self.claim(client, &item, &name).await? {
                    return Ok(Some(Taken::Claimed(c)));
                }
                continue;
            }
            let data = match client.get_data(&item).await {
                Ok((d, _)) => d,
                Err(Error::NoNode) => continue,
                Err(e) => return Err(e),
            };
            match self.delete_taken(client, &item, &name, data).await {
                Ok(data) => return Ok(Some(Taken::Data(data.to_vec()))),
                Err(Error::NoNode) => continue, // another consumer won
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes `item` (holding `data`) by deleting it. The delete's outcome
    /// is awaited by a task of its own: if the caller is dropped once the
    /// delete went out and it succeeded, the item is put back at the tail,
    /// so a dropped take never loses an item.
    async fn delete_taken(
        &self,
        client: &Client,
        item: &str,
        name: &str,
        data: Bytes,
    ) -> Result<Bytes, Error> {
        let delete = client.delete(item, Version::Any);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return delete.await.map(|()| data);
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Same priority (the name without its sequence number).
        let again = join(&self.path, &name[..name.len().saturating_sub(10)]);
        let mut handoff = Handoff {
            rx,
            client: client.clone(),
            path: self.path.clone(),
            again: again.clone(),
        };
        let (client, path) = (client.clone(), self.path.clone());
        rt.spawn(async move {
            let taken = delete.await.map(|()| data);
            // Refused once the taker is gone: ours to put back.
            if let Err(Ok(data)) = tx.send(taken) {
                put_back(&client, &path, &again, &data).await;
            }
        });
        (&mut handoff.rx).await.unwrap_or(Err(Error::Closed))
    }

    /// Claims `item`; `None` when someone else has it or it is gone.
    async fn claim(&self, client: &Client, item: &str, name: &str) -> Result<Option<Claim>, Error> {
        // The create runs on a task of its own: a take dropped meanwhile
        // leaves no claim node (it is deleted when the outcome arrives).
        let Some(mut node) = ItemClaim::create(client, &self.claims, name).await? else {
            return Ok(None);
        };
        match client.get_data(item).await {
            Ok((data, _)) => Ok(Some(Claim {
                node,
                item: item.to_string(),
                data,
            })),
            // Completed by someone between our listing and our claim.
            Err(Error::NoNode) => {
                node.release().await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Takes on the live session; from a [`Sessions`](crate::Sessions), a
    /// take whose session expired while it waited starts over on a new
    /// session (it held nothing yet).
    async fn take_until(
        &self,
        deadline: Option<Instant>,
        wait: bool,
        claimed_mode: bool,
    ) -> Result<Option<Taken>, Error> {
        let started = Instant::now();
        let r = loop {
            let client = match self.source.client().await {
                Ok(c) => c,
                Err(e) => break Err(e),
            };
            match self.take_on(&client, deadline, wait, claimed_mode).await {
                Err(e) if self.source.retry_on_new_session(&e) => {
                    tracing::info!(path = %self.path, "session expired while taking; again on a new session");
                }
                r => break r,
            }
        };
        let outcome = match &r {
            Ok(Some(_)) => "taken",
            Ok(None) => "empty",
            Err(_) => crate::internal::metrics::outcome(&r),
        };
        let mode = if claimed_mode {
            "claimed"
        } else {
            "at_most_once"
        };
        crate::internal::metrics::queue_take(mode, started.elapsed(), outcome);
        r
    }

    async fn take_on(
        &self,
        client: &Client,
        deadline: Option<Instant>,
        wait: bool,
        claimed_mode: bool,
    ) -> Result<Option<Taken>, Error> {
        let turn_lock = Lock::new(client, self.waiters.clone());
        let mut delays = backoff();
        loop {
            // Fast path: items are there, no waiting, no watch.
            match self.take_once(client, claimed_mode).await {
                Ok(Some(t)) => return Ok(Some(t)),
                Ok(None) if !wait => return Ok(None),
                Ok(None) => {}
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
            // Empty: wait in line; only the first in line watches the queue.
            let turn = match deadline {
                None => turn_lock.acquire().await?,
                Some(d) => match turn_lock
                    .acquire_timeout(d.saturating_duration_since(Instant::now()))
                    .await?
                {
                    Some(g) => g,
                    None => return Ok(None),
                },
            };
            match self.wait_for_item(client, deadline, claimed_mode).await {
                Ok(Some(t)) => {
                    // Nothing may come between us and the caller holding
                    // the item: the turn goes in the background.
                    drop(turn);
                    return Ok(Some(t));
                }
                Ok(None) => {
                    turn.release().await?;
                    return Ok(None); // deadline passed
                }
                Err(e) => {
                    turn.release().await?;
                    if !e.is_retryable() {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// As the first in line: watch the queue (and the claims) until an item
    /// can be taken.
    async fn wait_for_item(
        &self,
        client: &Client,
        deadline: Option<Instant>,
        claimed_mode: bool,
    ) -> Result<Option<Taken>, Error> {
        loop {
            let items_changed = match client.get_children_and_watch(&self.path).await {
                Ok((_, _, w)) => Some(w),
                Err(Error::NoNode) => {
                    ensure_containers(client, &self.path).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let claims_changed = if claimed_mode {
                match client.get_children_and_watch(&self.claims).await {
                    Ok((_, _, w)) => Some(w),
                    Err(Error::NoNode) => None,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            if let Some(t) = self.take_once(client, claimed_mode).await? {
                return Ok(Some(t));
            }
            let any = async {
                match (items_changed, claims_changed) {
                    (Some(a), Some(b)) => {
                        tokio::select! {
                            _ = a.changed() => {}
                            _ = b.changed() => {}
                        }
                    }
                    (Some(a), None) | (None, Some(a)) => {
                        let _ = a.changed().await;
                    }
                    (None, None) => {}
                }
            };
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, any).await.is_err() {
                        return Ok(None);
                    }
                }
                None => any.await,
            }
        }
    }
}

#[derive(Debug)]
enum Taken {
    Data(Vec<u8>),
    Claimed(Claim),
}

/// The receiving end of a take's delete. Dropped unread (the take was
/// dropped), it closes the channel so that a later outcome goes back to the
/// sending task, and puts back an item that had already arrived.
struct Handoff {
    rx: tokio::sync::oneshot::Receiver<Result<Bytes, Error>>,
    client: Client,
    path: String,
    again: String,
}

impl Drop for Handoff {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(Ok(data)) = self.rx.try_recv() {
            let (client, path, again) =
                (self.client.clone(), self.path.clone(), self.again.clone());
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { put_back(&client, &path, &again, &data).await });
            }
        }
    }
}

/// Puts the data of an item taken for a caller that stopped waiting back
/// into the queue (as `again<seq>`, at the tail), retrying through
/// connection losses (a lost reply may then put it twice).
async fn put_back(client: &Client, path: &str, again: &str, data: &[u8]) {
    let mut delays = backoff();
    loop {
        let opts = CreateOptions::new(CreateMode::PersistentSequential);
        match client.create(again, data, &opts).await {
            Ok((item, _)) => {
                tracing::debug!(%item, "put back an item whose take was dropped");
                return;
            }
            Err(Error::NoNode) => {
                if ensure_containers(client, path).await.is_err() {
                    return;
                }
            }
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
            }
            Err(e) => {
                tracing::warn!(%path, error = %e, "a dropped take's item could not be put back");
                return;
            }
        }
    }
}
