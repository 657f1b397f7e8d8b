//! Coordination recipes on the [`zkit`] ZooKeeper client, with the znode
//! layouts of Apache Curator (and kazoo's names understood), so Rust, Java and
//! Python processes can share them.
//!
//! | recipe | type | layout |
//! |---|---|---|
//! | exclusive lock | [`Lock`] | Curator `InterProcessMutex`: `<path>/_c_<uuid>-lock-<seq>` |
//! | several locks at once | [`MultiLock`] | Curator `InterProcessMultiLock`: a mutex per path (taken in sorted order) |
//! | read/write lock | [`ReadWriteLock`] | Curator: `<path>/_c_<uuid>-__READ__<seq>`, `…-__WRIT__<seq>` |
//! | leader latch | [`LeaderLatch`] | Curator `LeaderLatch`: `<path>/_c_<uuid>-latch-<seq>` (data: id) |
//! | run while leader | [`LeaderSelector`] | Curator `LeaderSelector`: `<path>/_c_<uuid>-lock-<seq>` |
//! | who leads (observe only) | [`LeaderObserver`] | either layout above |
//! | barrier / double barrier | [`Barrier`], [`DoubleBarrier`] | Curator: `<path>`; `<path>/<uuid>` + `<path>/ready` |
//! | FIFO queue | [`Queue`] | Curator `SimpleDistributedQueue`: `<path>/qn-<seq>` (+ `_claims/`, `_waiters/`) |
//! | delay queue | [`DelayQueue`] | Curator `DistributedDelayQueue`: `<path>/queue-\|<due ms %08X>\|<seq>` (framed; + `_claims\|…\|/`, `_waiters\|…\|/`) |
//! | priority queue | [`Queue::priority`] | kazoo `Queue`: `<path>/entry-<prio %03d>-<seq>` |
//! | group membership | [`GroupMember`], [`MemberSet`] | Curator `GroupMember`: `<path>/<id>` (ephemeral, payload) |
//! | self-healing node | [`PersistentNode`] | Curator `PersistentNode`: `<path>` in any mode (sequential: `_c_<uuid>-<name><seq>`), re-created when lost |
//! | node alive while touched | [`PersistentTtlNode`] | Curator `PersistentTtlNode`: container `<path>` (data) + TTL child `<path>/touch` |
//! | config subscription | [`ConfigSubscription`], [`config::publish`] | `<path>` holding JSON (serde) |
//! | service registry / discovery | [`discovery::ServiceDiscovery`] | Curator x-discovery: `<base>/<service>/<id>`, `ServiceInstance` JSON |
//! | node / tree cache | [`cache::NodeCache`], [`cache::TreeCache`] | any subtree, on a persistent recursive watch |
//! | distributed atomic long | [`AtomicLong`] | Curator `DistributedAtomicLong`: `<path>` holding 8-byte big-endian `i64` (+ `PromotedToLock` mutex) |
//! | shared counter | [`SharedCount`] | Curator `SharedCount`: 4-byte big-endian `i32` |
//! | ID generator | [`IdGenerator`] | `<path>/_c_<uuid>-block-<seq>` (protected ephemeral, deleted at once) |
//! | work partitioning | [`Partitioner`] | kazoo `SetPartitioner`: `<path>/party/<id>`, a lock per item at `<path>/locks/<item>` |
//! | scheduled jobs, sharded | [`Scheduler`], [`Jobs`] | `<root>/jobs/<job>` (JSON definition), `runs/<shard>/<fire>` records, a [`Partitioner`] per job |
//! | counting semaphore | [`Semaphore`] | Curator `InterProcessSemaphoreV2`: `<path>/locks/…`, `<path>/leases/_c_<uuid>-lease-<seq>` |
//!
//! # Faults
//!
//! Every recipe handles what ZooKeeper can do to it: lost replies to
//! sequential creates (protected names: a GUID in the name and an owner check,
//! orphans deleted in the background), parents reaped as containers
//! (re-created), sequence wrap-around (wrap-safe ordering), spurious and
//! connection-only wake-ups (re-check), and losing a held lock (the guard's
//! [`LockState`] and fenced writes with [`LockGuard::guarded`]).
//!
//! # Sessions
//!
//! Every recipe is built from a [`SessionSource`]: `&client` or
//! `&sessions`. A zkit [`Client`](zkit::Client)'s session expiry is final,
//! and recipes built from it end with it. A [`Sessions`] (what a
//! long-running service should keep) builds a new session when the old one
//! expired. Ownership is never carried over: guards, leases, claims and
//! terms of leadership of the old session report the loss as always. The
//! recipes themselves work again on the new session without user code. See
//! the [`sessions`] module for which to pick, and [`Sessions::events`] for
//! the sessions' life.
//!
//! # Cancellation
//!
//! Dropping an acquire future leaves no znode behind; dropping a guard
//! releases in the background. Both need a tokio runtime.
#![deny(missing_docs, missing_debug_implementations)]

pub mod atomic;
pub mod barrier;
pub mod cache;
pub mod config;
pub mod counter;
pub mod delay_queue;
pub mod discovery;
mod internal;
pub mod leader;
pub mod lock;
pub mod membership;
pub mod multilock;
pub mod partition;
pub mod persistent;
pub mod queue;
pub mod random;
pub mod rwlock;
pub mod scheduler;
pub mod semaphore;
pub mod sessions;

pub use atomic::{AtomicLong, AtomicOutcome};
pub use barrier::{Barrier, DoubleBarrier};
pub use config::{ConfigSubscription, Versioned};
pub use counter::{IdGenerator, SharedCount, VersionedCount};
pub use delay_queue::{DelayClaim, DelayQueue, Due};
pub use leader::{Leader, LeaderLatch, LeaderObserver, LeaderSelector, Leadership, ObservedLeader};
pub use lock::{Lock, LockGuard, LockOptions, LockState};
pub use membership::{GroupMember, MemberSet};
pub use multilock::{MultiLock, MultiLockGuard};
pub use partition::{Grant, PartitionEvent, Partitioner};
pub use persistent::{
    NodeState, PersistentNode, PersistentNodeOptions, PersistentTtlNode, PersistentTtlNodeOptions,
    TtlParent,
};
pub use queue::{Claim, Queue};
pub use rwlock::ReadWriteLock;
pub use scheduler::{JobContext, JobSpec, Jobs, Scheduler};
pub use semaphore::{Lease, Semaphore};
pub use sessions::{SessionEvent, SessionEvents, SessionSource, Sessions};
