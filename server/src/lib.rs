//! zkit-server: a ZooKeeper-compatible single-node server.
//!
//! Durable with a data directory ([`ServerBuilder::data_dir`]: a
//! transaction log synced before each acknowledgement, snapshots, recovery
//! of the tree, sessions and ephemerals at start), in-memory without. It
//! reads a standard `zoo.cfg` ([`config`]) and ships as the `zkit-server`
//! binary. It is built in layers; the pure, synchronous
//! building blocks are each unit-tested against ZooKeeper 3.8's semantics:
//!
//! - [`tree::DataTree`]: znodes with full Stat bookkeeping, every create mode,
//!   sequence numbers, ephemerals, containers and TTL nodes, atomic multi;
//! - [`watches::WatchManager`]: one-shot, persistent and persistent-recursive
//!   watches per connection, triggers and SetWatches re-registration;
//! - [`sessions::SessionTracker`]: timeout negotiation, tick-bucket expiry,
//!   session ids and passwords;
//! - [`acl`]: ACL schemes (world, auth, digest, ip, super) and permission checks.
//!
//! On top of them, [`Server`] puts the blocks behind ZooKeeper's wire
//! protocol: one tokio task per connection, the shared state behind a
//! `std::sync::Mutex` never held across an `.await`, a session expirer and a
//! container/TTL reaper.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = zkit_server::Server::builder().start().await?; // in-memory
//! println!("connect to {}", server.connect_string());
//! server.shutdown().await;
//!
//! let durable = zkit_server::Server::builder()
//!     .data_dir("/var/lib/zkit")
//!     .start()
//!     .await?; // recovers what an earlier run left there
//! durable.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs, missing_debug_implementations)]

pub mod acl;
mod admin;
mod clock;
pub mod config;
mod connection;
mod dispatch;
mod fourlw;
pub mod import;
mod metrics;
mod persist;
pub mod sasl;
mod server;
pub mod sessions;
mod shards;
mod state;
#[cfg(feature = "tls")]
pub mod tls;
pub mod tree;
pub mod watches;
mod wire;
mod write;
#[cfg(feature = "tls")]
mod x509;

pub use config::{Config, ConfigError, FourLetterWords};
pub use sasl::SaslUsers;
pub use server::{RunningServer, Server, ServerBuilder};
#[cfg(feature = "tls")]
pub use tls::{ClientAuth, ServerTls, TlsVersion};
pub use tree::Compat;

/// The version string the four-letter words report; clients parse it as 3.8.
pub const VERSION: &str = "3.8.0-zkit";

/// A ZooKeeper error code (`KeeperException.Code`, values in
/// [`zkit_proto::codes::err`]) returned by a server-side operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub i32);

/// Result of a server-side operation.
pub type ServerResult<T> = Result<T, ErrorCode>;
