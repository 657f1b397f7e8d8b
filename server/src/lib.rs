//! zkit-server: a ZooKeeper-compatible single-node server.
//!
//! This crate is being built in layers. What exists today are its pure,
//! synchronous building blocks, each unit-tested against ZooKeeper 3.8's
//! semantics (PROTOCOL.md §4.8–4.10, §4.16):
//!
//! - [`tree::DataTree`]: znodes with full Stat bookkeeping, every create mode,
//!   sequence numbers, ephemerals, containers and TTL nodes, atomic multi;
//! - [`watches::WatchManager`]: one-shot, persistent and persistent-recursive
//!   watches per connection, triggers and SetWatches re-registration;
//! - [`sessions::SessionTracker`]: timeout negotiation, tick-bucket expiry,
//!   session ids and passwords;
//! - [`acl`]: ACL schemes (world, auth, digest, ip, super) and permission checks.
//!
//! The network server that puts them behind ZooKeeper's wire protocol comes
//! next (issue 4).
#![deny(missing_docs, missing_debug_implementations)]

pub mod acl;
pub mod sessions;
pub mod tree;
pub mod watches;

/// A ZooKeeper error code (`KeeperException.Code`, values in
/// [`zkit::proto::codes::err`]) returned by a server-side operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub i32);

/// Result of a server-side operation.
pub type OpResult<T> = Result<T, ErrorCode>;
