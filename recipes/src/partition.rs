//! Work partitioning: a set of items shared out among the live members of a
//! party, each item owned by one member at a time (kazoo's
//! `SetPartitioner`, without its flaws).
//!
//! Every member runs a [`Partitioner`] with the same path and the same
//! items. Each computes, from the sorted member ids, the share that is its
//! own ([`RoundRobin`] by default, [`ConsistentHash`] or an [`Assign`] of
//! your own), and takes one [`Lock`] per item of its share. A
//! member that is given an item another member still holds waits for that
//! member to let go, or for its session to end: **an item is never owned
//! by two live members at once**, whatever the timing of their views of
//! the party.
//!
//! What a member may work on arrives as a [`Grant`] in
//! [`PartitionEvent::Acquired`]: its items, a generation number that grows
//! with every grant, and per item a fenced transaction
//! ([`Grant::guarded`]) that commits only while the item's lock is held.
//! When the share changes (a member joined or left), when the connection is
//! lost (the ownership is then in doubt; see
//! [`PartitionOptions::keep_working_while_suspended`]) or when the session
//! ends, the grant is revoked ([`Grant::revoked`] completes, and
//! [`PartitionEvent::Released`] says why). **Items leave only when the
//! application drops the grant**: stop the work of that generation, drop
//! the grant, and the partitioner releases what moves to other members
//! and grants the rest again under a new generation.
//!
//! # Layout
//! - `<path>/party/<member id>`: ephemeral, one per member
//!   ([`GroupMember`]);
//! - `<path>/locks/<item>/_c_<uuid>-lock-<seq>`: Curator `InterProcessMutex`
//!   nodes, one lock per item (kazoo's `SetPartitioner` keeps its locks at
//!   `<path>/locks/<item>` too).
//!
//! Item names are znode names: no `/`, not `.` or `..`, not empty.
//!
//! ```no_run
//! # async fn demo(sessions: zkit_recipes::Sessions) -> zkit::Result<()> {
//! use zkit_recipes::partition::{PartitionEvent, Partitioner};
//!
//! let items = (0..16).map(|i| format!("shard-{i}"));
//! let mut part = Partitioner::new(&sessions, "/jobs/ingest", "worker-1", items)?;
//! while let Ok(event) = part.next().await {
//!     if let PartitionEvent::Acquired(grant) = event {
//!         // Work on grant.items() until it is revoked, then drop it.
//!         tokio::select! {
//!             _ = grant.revoked() => {}
//!             _ = async {
//!                 for item in grant.items() {
//!                     let _ = grant.guarded(item).unwrap().commit().await;
//!                 }
//!                 std::future::pending::<()>().await
//!             } => {}
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Sessions
//! Built from `&Sessions`, a member joins again after its session expired
//! and takes its share again on the new session (the old session's locks
//! are reported lost first). Built from a `&Client`, the partitioner ends
//! with its session: [`Partitioner::next`] then fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use zkit::{Error, MultiWrite};

use crate::internal::protected::backoff;
use crate::lock::{Lock, LockGuard, LockState};
use crate::membership::{GroupMember, MemberSet};
use crate::sessions::SessionSource;

/// How the items are divided among the members: every member computes its
/// own share from the same sorted lists, so the shares must not depend on
/// anything else (no randomness, no clock, no process-local hash keys).
pub trait Assign: Send + Sync + fmt::Debug + 'static {
    /// The items `me` should own. `items` and `members` are sorted and
    /// without duplicates; `me` is one of the members.
    fn assign(&self, items: &[String], members: &[String], me: &str) -> BTreeSet<String>;
}

/// Item *i* of the sorted items goes to member *i mod n* of the sorted
/// members: shares differ by at most one item. A join or leave can move
/// most items.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobin;

impl Assign for RoundRobin {
    fn assign(&self, items: &[String], members: &[String], me: &str) -> BTreeSet<String> {
        let Some(i) = members.iter().position(|m| m == me) else {
            return BTreeSet::new();
        };
        items
            .iter()
            .skip(i)
            .step_by(members.len())
            .cloned()
            .collect()
    }
}

/// Consistent hashing: each member is placed at `points` spots on a ring
/// (a stable 64-bit hash of `"<member>#<k>"`: FNV-1a
/// then MurmurHash3's finalizer), each item goes to the first member spot
/// at or after its own hash. A join or leave moves about `1/n` of the
/// items; shares are less even than [`RoundRobin`]'s.
#[derive(Debug, Clone, Copy)]
pub struct ConsistentHash {
    points: usize,
}

impl ConsistentHash {
    /// A ring with `points` spots per member (at least 1).
    pub fn new(points: usize) -> Self {
        Self {
            points: points.max(1),
        }
    }
}

/// 128 spots per member.
impl Default for ConsistentHash {
    fn default() -> Self {
        Self::new(128)
    }
}

/// FNV-1a, 64 bits, then MurmurHash3's 64-bit finalizer (FNV alone spreads
/// short, similar names badly over the ring): stable across processes,
/// builds and languages.
fn ring_hash(bytes: &[u8]) -> u64 {
    let mut h = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Assign for ConsistentHash {
    fn assign(&self, items: &[String], members: &[String], me: &str) -> BTreeSet<String> {
        let mut ring: Vec<(u64, &str)> = members
            .iter()
            .flat_map(|m| {
                (0..self.points)
                    .map(move |k| (ring_hash(format!("{m}#{k}").as_bytes()), m.as_str()))
            })
            .collect();
        ring.sort_unstable();
        if ring.is_empty() {
            return BTreeSet::new();
        }
        items
            .iter()
            .filter(|item| {
                let h = ring_hash(item.as_bytes());
                let at = ring.partition_point(|(p, _)| *p < h);
                ring[at % ring.len()].1 == me
            })
            .cloned()
            .collect()
    }
}

/// Settings of a [`Partitioner`].
#[derive(Debug, Clone)]
pub struct PartitionOptions {
    assign: Arc<dyn Assign>,
    stop_on_suspended: bool,
    partial_after: Duration,
    payload: Vec<u8>,
}

impl Default for PartitionOptions {
    fn default() -> Self {
        Self {
            assign: Arc::new(RoundRobin),
            stop_on_suspended: true,
            partial_after: Duration::from_secs(1),
            payload: Vec::new(),
        }
    }
}

impl PartitionOptions {
    /// How items are divided ([`RoundRobin`] by default). Every member must
    /// use the same.
    pub fn assign(mut self, assign: impl Assign) -> Self {
        self.assign = Arc::new(assign);
        self
    }

    /// Keep the grant while the connection is lost (Suspended), instead of
    /// revoking it. The locks may be lost meanwhile, and then another
    /// member may own an item while this one still works on it: only work
    /// whose every effect goes through [`Grant::guarded`] stays safe.
    pub fn keep_working_while_suspended(mut self) -> Self {
        self.stop_on_suspended = false;
        self
    }

    /// While some items of the share are still held by other members, a
    /// grant of those already ours is made after this long (1 s by
    /// default), then a larger one when the rest arrives.
    pub fn partial_grant_after(mut self, wait: Duration) -> Self {
        self.partial_after = wait;
        self
    }

    /// The data of our party node (empty by default).
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }
}

/// Why a grant was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Release {
    /// The share changed: a member joined or left, or more of the share
    /// became ours.
    Rebalance,
    /// The connection is lost: ownership is in doubt until it comes back.
    Suspended,
    /// A lock of the grant is lost (session ended, or its node deleted).
    Lost,
    /// [`Partitioner::close`].
    Closed,
}

/// What a [`Partitioner`] tells its member.
#[derive(Debug)]
#[non_exhaustive]
pub enum PartitionEvent {
    /// Work on these items until the grant is revoked, then drop it.
    Acquired(Grant),
    /// The grant of `generation` is revoked: stop its work and drop it.
    Released {
        /// The revoked grant's generation.
        generation: u64,
        /// Why.
        why: Release,
    },
}

/// The items a member owns for one generation (see the module docs).
///
/// Dropping it tells the partitioner the work of this generation stopped:
/// only then are its items released to other members.
pub struct Grant {
    generation: u64,
    items: BTreeMap<String, Arc<LockGuard>>,
    revoked: watch::Receiver<bool>,
    _done: oneshot::Sender<()>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("generation", &self.generation)
            .field("items", &self.items.keys().collect::<Vec<_>>())
            .field("revoked", &*self.revoked.borrow())
            .finish()
    }
}

impl Grant {
    /// This grant's generation: larger than every earlier grant's of this
    /// partitioner.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The items granted, sorted.
    pub fn items(&self) -> impl Iterator<Item = &str> {
        self.items.keys().map(String::as_str)
    }

    /// Whether `item` is granted.
    pub fn contains(&self, item: &str) -> bool {
        self.items.contains_key(item)
    }

    /// A transaction that commits only while we hold `item`'s lock (else
    /// it fails with [`Error::Fenced`] and writes nothing); `None` if the
    /// item is not granted.
    pub fn guarded(&self, item: &str) -> Option<MultiWrite> {
        self.items.get(item).map(|g| g.guarded())
    }

    /// The fencing token of `item` (its lock node's creation zxid: every
    /// later owner's is larger); `None` if the item is not granted.
    pub fn fencing_token(&self, item: &str) -> Option<i64> {
        self.items.get(item).map(|g| g.fencing_token())
    }

    /// The session whose locks back the grant (`None` for a grant of no
    /// items): the grant ends with it.
    pub fn session_id(&self) -> Option<zkit::SessionId> {
        self.items.values().next().map(|g| g.session_id())
    }

    /// The client of the session that holds `item` (for reads next to
    /// fenced writes).
    pub(crate) fn client_of(&self, item: &str) -> Option<&zkit::Client> {
        self.items.get(item).map(|g| g.client())
    }

    /// Whether the grant has been revoked.
    pub fn is_revoked(&self) -> bool {
        *self.revoked.borrow()
    }

    /// Completes once the grant is revoked (or the partitioner is gone).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn revoked(&self) {
        let mut rx = self.revoked.clone();
        let _ = rx.wait_for(|r| *r).await;
    }
}

/// A member of a partitioned set of items (see the module docs).
///
/// Dropping it stops the member: the locks of items not in a live [`Grant`]
/// are released and the party left in the background; a grant still held
/// keeps its items' locks until it is dropped.
#[derive(Debug)]
pub struct Partitioner {
    rx: mpsc::Receiver<Result<PartitionEvent, Error>>,
    close: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

fn valid_item(item: &str) -> bool {
    !item.is_empty() && item != "." && item != ".." && !item.contains('/') && !item.contains('\0')
}

impl Partitioner {
    /// Joins the party at `path` as `id` and starts taking this member's
    /// share of `items`, with [`PartitionOptions::default`].
    ///
    /// # Errors
    /// [`Error::BadArguments`] for an item or id that is not a znode name.
    pub fn new(
        source: impl Into<SessionSource>,
        path: &str,
        id: &str,
        items: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, Error> {
        Self::with_options(source, path, id, items, PartitionOptions::default())
    }

    /// As [`new`](Self::new), with `options`.
    ///
    /// # Errors
    /// [`Error::BadArguments`] for an item or id that is not a znode name.
    pub fn with_options(
        source: impl Into<SessionSource>,
        path: &str,
        id: &str,
        items: impl IntoIterator<Item = impl Into<String>>,
        options: PartitionOptions,
    ) -> Result<Self, Error> {
        let items: BTreeSet<String> = items.into_iter().map(Into::into).collect();
        if !valid_item(id) || !items.iter().all(|i| valid_item(i)) {
            return Err(Error::BadArguments);
        }
        let (tx, rx) = mpsc::channel(16);
        let (close_tx, close_rx) = oneshot::channel();
        let member = Member {
            source: source.into(),
            path: path.trim_end_matches('/').to_string(),
            id: id.to_string(),
            items: items.into_iter().collect(),
            options,
            tx,
        };
        let task = tokio::spawn(member.run(close_rx));
        Ok(Self {
            rx,
            close: Some(close_tx),
            task,
        })
    }

    /// The next event.
    ///
    /// # Errors
    /// [`Error::Closed`] once the partitioner has stopped (closed, or built
    /// from a `&Client` whose session ended); the error that stopped it
    /// (e.g. [`Error::NodeExists`]: another live member has our id).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn next(&mut self) -> Result<PartitionEvent, Error> {
        match self.rx.recv().await {
            Some(r) => r,
            None => Err(Error::Closed),
        }
    }

    /// Stops: revokes the live grant ([`Release::Closed`]), waits until the
    /// application has dropped it (drop it before, or from another task
    /// while this runs), releases every lock and leaves the party.
    ///
    /// # Cancel safety
    /// If the future is dropped, the partitioner is dropped (see the type's
    /// docs).
    pub async fn close(mut self) {
        if let Some(c) = self.close.take() {
            let _ = c.send(());
        }
        // Events go on until the task ends: they are dropped here, and a
        // grant among them with them.
        while self.rx.recv().await.is_some() {}
        let _ = (&mut self.task).await;
    }
}

impl Drop for Partitioner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The grant the application holds now.
struct Outstanding {
    generation: u64,
    items: BTreeSet<String>,
    revoke: watch::Sender<bool>,
    done: oneshot::Receiver<()>,
}

struct Member {
    source: SessionSource,
    path: String,
    id: String,
    items: Vec<String>,
    options: PartitionOptions,
    tx: mpsc::Sender<Result<PartitionEvent, Error>>,
}

/// A lock acquisition's end: the item, and the guard or why not.
type Acquired = (String, Result<LockGuard, Error>);

impl Member {
    async fn run(self, mut close: oneshot::Receiver<()>) {
        let party = format!("{}/party", self.path);
        let member = tokio::select! {
            m = self.join(&party) => m,
            _ = &mut close => return,
        };
        let member = match member {
            Ok(m) => m,
            Err(e) => {
                let _ = self.tx.send(Err(e)).await;
                return;
            }
        };
        let mut members = MemberSet::watch(self.source.clone(), &party);
        let mut party_gone = tokio::select! {
            r = members.initialized() => r.is_err(),
            _ = &mut close => return,
        };
        if party_gone {
            let _ = self.tx.send(Err(Error::SessionExpired)).await;
            return;
        }
        let mut held: BTreeMap<String, Arc<LockGuard>> = BTreeMap::new();
        let mut acquiring: HashMap<String, JoinHandle<()>> = HashMap::new();
        let (got_tx, mut got_rx) = mpsc::unbounded_channel::<Acquired>();
        let mut grant: Option<Outstanding> = None;
        let mut generation = 0u64;
        let mut closing = false;
        let mut partial_ok = false;
        let mut partial_timer: Option<tokio::time::Instant> = None;
        loop {
            // The locks' states, as seen from here on: a change after this
            // point wakes the wait below (a clone of a guard's receiver
            // would otherwise report every change since the guard began).
            let states: Vec<watch::Receiver<LockState>> = held
                .values()
                .map(|g| {
                    let mut rx = g.state_watch();
                    rx.borrow_and_update();
                    rx
                })
                .collect();
            let ids: Vec<String> = members.borrow().keys().cloned().collect();
            // Until our own join is listed we are no member: nothing to own.
            let in_party = ids.contains(&self.id);
            let target: BTreeSet<String> = if closing || !in_party {
                BTreeSet::new()
            } else {
                self.options.assign.assign(&self.items, &ids, &self.id)
            };
            held.retain(|_, g| g.state() != LockState::Lost);
            let suspended = held.values().any(|g| g.state() == LockState::Suspended);
            let may_grant = !closing && in_party && !(suspended && self.options.stop_on_suspended);
            let grantable: BTreeSet<String> = held
                .keys()
                .filter(|i| target.contains(*i))
                .cloned()
                .collect();
            // Revoke the live grant when it no longer matches, and wait for
            // the application to let go of it.
            if let Some(g) = &grant {
                let why = if closing {
                    Some(Release::Closed)
                } else if g.items.iter().any(|i| !held.contains_key(i)) {
                    Some(Release::Lost)
                } else if !in_party {
                    // Our party node is gone (deleted, or not listed again
                    // yet): our share is empty until we are listed.
                    Some(Release::Rebalance)
                } else if !may_grant {
                    Some(Release::Suspended)
                } else if g.items != grantable
                    && (grantable == target || partial_ok || !g.items.is_subset(&grantable))
                {
                    Some(Release::Rebalance)
                } else {
                    None
                };
                if let Some(why) = why {
                    let Some(g) = grant.take() else { continue };
                    let _ = g.revoke.send(true);
                    let _ = self
                        .tx
                        .send(Ok(PartitionEvent::Released {
                            generation: g.generation,
                            why,
                        }))
                        .await;
                    // The application stops the work and drops the grant.
                    let _ = g.done.await;
                    continue;
                }
            }
            // What is no longer ours, and not in the live grant, goes.
            let granted: BTreeSet<String> =
                grant.as_ref().map(|g| g.items.clone()).unwrap_or_default();
            let leaving: Vec<String> = held
                .keys()
                .filter(|i| !target.contains(*i) && !granted.contains(*i))
                .cloned()
                .collect();
            for item in leaving {
                if let Some(g) = held.remove(&item) {
                    release(g);
                }
            }
            acquiring.retain(|item, task| {
                let keep = target.contains(item);
                if !keep {
                    task.abort(); // an acquire dropped leaves no lock node
                }
                keep
            });
            if closing && grant.is_none() && held.is_empty() {
                break;
            }
            for item in &target {
                if !held.contains_key(item) && !acquiring.contains_key(item) {
                    acquiring.insert(item.clone(), self.acquire(item, got_tx.clone(), false));
                }
            }
            // Grant: the whole share, or what we have of it once the rest
            // has been awaited long enough.
            if grant.is_none()
                && may_grant
                && (grantable == target || (partial_ok && !grantable.is_empty()))
            {
                generation += 1;
                let (revoke, revoked) = watch::channel(false);
                let (done_tx, done) = oneshot::channel();
                let items = grantable
                    .iter()
                    .map(|i| (i.clone(), held[i].clone()))
                    .collect();
                let event = PartitionEvent::Acquired(Grant {
                    generation,
                    items,
                    revoked,
                    _done: done_tx,
                });
                if self.tx.send(Ok(event)).await.is_err() {
                    break; // the partitioner is gone
                }
                grant = Some(Outstanding {
                    generation,
                    items: grantable.clone(),
                    revoke,
                    done,
                });
            }
            if grantable == target {
                partial_ok = false;
                partial_timer = None;
            } else if partial_timer.is_none() && !partial_ok {
                partial_timer = Some(tokio::time::Instant::now() + self.options.partial_after);
            }
            tokio::select! {
                changed = members.changed(), if !party_gone => {
                    if changed.is_err() {
                        // The party's session ended for good (a Client
                        // source): everything of ours went with it.
                        let _ = self.tx.send(Err(Error::SessionExpired)).await;
                        party_gone = true;
                        closing = true;
                    }
                }
                Some((item, r)) = got_rx.recv() => {
                    acquiring.remove(&item);
                    match r {
                        Ok(g) if target.contains(&item) && !closing => {
                            held.insert(item, Arc::new(g));
                        }
                        Ok(g) => drop(g), // no longer ours: released in the background
                        Err(Error::Closed) => closing = true,
                        Err(e) => {
                            tracing::debug!(path = %self.path, %item, error = %e, "taking an item failed; trying again");
                            acquiring.insert(item.clone(), self.acquire(&item, got_tx.clone(), true));
                        }
                    }
                }
                () = any_change(states) => {}
                () = sleep_until(partial_timer) => {
                    partial_ok = true;
                    partial_timer = None;
                }
                _ = &mut close, if !closing => closing = true,
            }
        }
        for (_, task) in acquiring {
            task.abort();
        }
        for (_, g) in std::mem::take(&mut held) {
            release(g);
        }
        let _ = member.leave().await;
    }

    /// Joins the party, retrying through connection losses (and, from
    /// `Sessions`, expiry). Our id still taken by one of our own sessions
    /// (an expired one whose node the server has not removed yet, or a
    /// member of this process leaving) is waited out; taken by anyone else,
    /// it is an error.
    async fn join(&self, party: &str) -> Result<GroupMember, Error> {
        let mut delays = backoff();
        loop {
            let e = match GroupMember::join(
                self.source.clone(),
                party,
                &self.id,
                &self.options.payload,
            )
            .await
            {
                Ok(m) => return Ok(m),
                Err(e) => e,
            };
            if e == Error::NodeExists {
                let node = format!("{party}/{}", self.id);
                let owner = match self.source.client().await {
                    Ok(c) => c.exists(&node).await.map(|s| s.map(|s| s.ephemeral_owner)),
                    Err(e) => Err(e),
                };
                if let Ok(Some(owner)) = owner {
                    if !self.source.was_ours(owner) {
                        return Err(e);
                    }
                }
            } else {
                // A new session of a `Sessions` that could not connect yet
                // is tried again too.
                let unreachable =
                    self.source.renews() && matches!(e, Error::NoServerReachable { .. });
                if !(e.is_retryable() || self.source.retry_on_new_session(&e) || unreachable) {
                    return Err(e);
                }
            }
            tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
        }
    }

    /// Takes `item`'s lock in a task of its own; aborting the task drops
    /// the acquire, which leaves no lock node behind.
    fn acquire(
        &self,
        item: &str,
        got: mpsc::UnboundedSender<Acquired>,
        after_failure: bool,
    ) -> JoinHandle<()> {
        let lock = Lock::new(self.source.clone(), format!("{}/locks/{item}", self.path));
        let item = item.to_string();
        tokio::spawn(async move {
            if after_failure {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let r = lock.acquire().await;
            let _ = got.send((item, r));
        })
    }
}

/// Releases an item's lock: at once if nothing else shares the guard.
fn release(g: Arc<LockGuard>) {
    if let Ok(g) = Arc::try_unwrap(g) {
        tokio::spawn(async move {
            let _ = g.release().await;
        });
    }
}

/// Completes when any of the locks changes state; never with none.
async fn any_change(states: Vec<watch::Receiver<LockState>>) {
    type Wait = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
    let mut waits: Vec<Wait> = states
        .into_iter()
        .map(|mut rx| -> Wait {
            Box::pin(async move {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
        })
        .collect();
    std::future::poll_fn(|cx| {
        if waits.iter_mut().any(|w| w.as_mut().poll(cx).is_ready()) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ring_hash(b"a")` as first computed: members of different versions
    /// must agree on the ring, so this never changes.
    const RING_HASH_OF_A: u64 = 0x82a2_a958_a9be_ce5b;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        v.sort();
        v
    }

    fn shares(a: &dyn Assign, items: &[String], members: &[String]) -> Vec<BTreeSet<String>> {
        members
            .iter()
            .map(|m| a.assign(items, members, m))
            .collect()
    }

    fn check_partition(shares: &[BTreeSet<String>], items: &[String]) {
        let mut all: Vec<&String> = shares.iter().flatten().collect();
        all.sort();
        assert_eq!(
            all,
            items.iter().collect::<Vec<_>>(),
            "every item exactly once"
        );
    }

    #[test]
    fn round_robin_is_a_balanced_partition() {
        let items = names("item-", 40);
        for n in 1..=7 {
            let members = names("m", n);
            let s = shares(&RoundRobin, &items, &members);
            check_partition(&s, &items);
            let (min, max) = (
                s.iter().map(BTreeSet::len).min().unwrap(),
                s.iter().map(BTreeSet::len).max().unwrap(),
            );
            assert!(max - min <= 1, "{n} members: {min}..{max}");
        }
        assert!(RoundRobin
            .assign(&items, &names("m", 3), "stranger")
            .is_empty());
    }

    #[test]
    fn consistent_hashing_is_a_partition_that_moves_little() {
        let items = names("item-", 400);
        let five = names("m", 5);
        let a = ConsistentHash::default();
        let before = shares(&a, &items, &five);
        check_partition(&before, &items);
        assert!(
            before.iter().all(|s| s.len() > 20),
            "roughly even: {:?}",
            before.iter().map(BTreeSet::len).collect::<Vec<_>>()
        );
        // A sixth member takes items only from the others; nothing else moves.
        let six = names("m", 6);
        let after = shares(&a, &items, &six);
        check_partition(&after, &items);
        let moved: usize = (0..5)
            .map(|i| before[i].difference(&after[i]).count())
            .sum();
        assert_eq!(moved, after[5].len());
        assert!(moved < items.len() / 3, "moved {moved}");
        for i in 0..5 {
            assert!(after[i].is_subset(&before[i]));
        }
        // Stable: the same inputs give the same shares in every process
        // (no RandomState): a value computed once, kept.
        assert_eq!(ring_hash(b"a"), RING_HASH_OF_A);
    }

    #[test]
    fn item_names_are_znode_names() {
        for bad in ["", ".", "..", "a/b", "nul\0"] {
            assert!(!valid_item(bad), "{bad:?}");
        }
        assert!(valid_item("shard-1") && valid_item("..."));
    }
}
