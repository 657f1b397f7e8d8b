//! # zkit: ZooKeeper coordination for tokio
//!
//! An async client for Apache ZooKeeper 3.5–3.9 that keeps its promises under
//! faults: one session per [`Client`], failover across the ensemble's hosts,
//! session resume, re-registration of every watch after a reconnect (one-shot
//! **and** persistent), a visible connection-state stream, and session expiry
//! that is final and visible.
//!
//! ```no_run
//! use zkit::{Client, CreateMode, CreateOptions, Version};
//!
//! # async fn demo() -> zkit::Result<()> {
//! let zk = Client::connect("127.0.0.1:2181,127.0.0.1:2182/app").await?;
//! zk.create("/config", b"v1", &CreateOptions::default()).await?;
//! let (data, stat, watcher) = zk.get_data_and_watch("/config").await?;
//! zk.set_data("/config", b"v2", Version::Exact(stat.version)).await?;
//! let event = watcher.changed().await?;   // NodeDataChanged on /config
//! let (me, _) = zk
//!     .create("/workers/w-", b"", &CreateOptions::new(CreateMode::EphemeralSequential))
//!     .await?;
//! # let _ = (data, event, me);
//! zk.close().await?;                      // ephemerals are gone now
//! # Ok(()) }
//! ```
//!
//! ## Architecture
//!
//! ```text
//!  Client (clone) ──Command──▶ driver task (tokio) ──bytes──▶ Connect ──▶ ZooKeeper
//!                                   │   ▲                  (TcpConnector,
//!                          handle_* │   │ poll_event /      or your own)
//!                                   ▼   │ poll_transmit / poll_timeout
//!                          Session (sans-IO state machine, src/session)
//!                                   │
//!                          zkit-proto (jute records, framing, codes, paths; proto/)
//! ```
//!
//! Every protocol rule lives in the session, a deterministic state machine
//! (`src/session`) fed with bytes and instants and unit-tested without
//! sockets; the driver only moves bytes, time and messages, and is itself
//! tested over in-memory streams with paused time. Connections come from a
//! [`Connect`] ([`TcpConnector`] by default; [`ClientBuilder::connector`]
//! takes another, e.g. for TLS or fault injection). The wire protocol is the
//! `zkit-proto` crate, re-exported as [`proto`] and shared with the bundled
//! server `zkit-server`.
//!
//! ## Guarantees
//!
//! - **Call order is wire order.** Each operation is queued when the method is
//!   called (not when its future is polled); replies complete in that order.
//!   Issue many calls before awaiting them to pipeline.
//! - **Transport failures are `ConnectionLoss`.** EOF, I/O errors, read
//!   timeouts and malformed frames all surface as [`Error::ConnectionLoss`]
//!   for in-flight requests; for a write that means *outcome unknown*
//!   ([`Error::outcome_unknown`]). The session then moves to the next host at
//!   once and resumes with the same session id.
//! - **Requests issued while disconnected** wait (at most the request
//!   timeout, default the session timeout) and are sent after the session
//!   resumes; otherwise they fail with `ConnectionLoss` or `SessionExpired`.
//!   Nothing hangs.
//! - **Watches survive reconnects.** After a resume the client re-sends its
//!   credentials, then SetWatches/SetWatches2 with the last zxid it saw, so a
//!   one-shot watch whose node changed while disconnected fires on reconnect
//!   (as the server decides), and persistent and persistent-recursive watches
//!   keep working. ZooKeeper does not replay events missed by *persistent*
//!   watches while disconnected: re-read after a `Disconnected` state.
//! - **Expiry is final.** When the server reports the session expired, or no
//!   server answered for 4/3 of the session timeout, the state becomes
//!   [`SessionState::Expired`], every pending and later request fails with
//!   [`Error::SessionExpired`], and no new session is created behind your
//!   back. Build a new [`Client`] to continue (ephemerals and watches of the
//!   old session are gone).
//! - **Cancel safety.** Dropping a request future does not cancel the
//!   request on the server; dropping a watcher unregisters it; dropping the
//!   last `Client` closes the session.
//! - **Oversized requests are refused locally** with
//!   [`Error::RequestTooLarge`] (ZooKeeper would drop the connection), and
//!   an **oversized reply** (a child list beyond the limit) fails its own
//!   request with [`Error::ResponseTooLarge`] while the connection and the
//!   session go on.
//!
//! ## After `Expired`: build a new client
//!
//! Expiry is final for a [`Client`]: it never opens a new session on its
//! own, because the old session's ephemerals and watches are gone and only
//! the application knows what to rebuild. To carry on:
//!
//! 1. Notice the expiry: the state stream ends with `Expired`, and every
//!    request fails with [`Error::SessionExpired`].
//! 2. Connect a new `Client` (new session id and password) and replace every
//!    clone of the old handle.
//! 3. Re-create the ephemerals. The old session's node may still exist if the
//!    client declared the expiry on its own clock before the server did (no
//!    server reachable for 4/3 of the timeout, or a leader election that
//!    reset the server's session timers). Remove it only if the old session
//!    owns it. After a `ConnectionLoss` the create may have been applied, so a
//!    node owned by the new session is already yours.
//! 4. Re-read and re-watch: the old watchers ended with `SessionExpired`, and
//!    events in between were not recorded.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use zkit::{AddWatchMode, Client, CreateMode, CreateOptions, Error, SessionState, Version};
//! # async fn demo(old: Client, hosts: &str, path: &str, data: &[u8]) -> zkit::Result<()> {
//! let mut states = old.state_stream();
//! while let Some(state) = states.next_state().await {
//!     if state == SessionState::Expired { break; }
//! }
//! let old_session = old.session_id();
//! let zk = Client::builder().session_timeout(Duration::from_secs(10)).connect(hosts).await?;
//! loop {
//!     match zk.create(path, data, &CreateOptions::new(CreateMode::Ephemeral)).await {
//!         Ok(_) => break,
//!         Err(Error::ConnectionLoss) => continue, // outcome unknown: look again
//!         Err(Error::NodeExists) => match zk.exists(path).await? {
//!             Some(s) if s.ephemeral_owner == zk.session_id().0 => break, // ours after all
//!             Some(s) if s.ephemeral_owner == old_session.0 => {
//!                 match zk.delete(path, Version::Exact(s.version)).await {
//!                     Ok(()) | Err(Error::NoNode) => {}
//!                     Err(e) => return Err(e),
//!                 }
//!             }
//!             Some(_) => return Err(Error::NodeExists), // held by another session
//!             None => {}                                // gone meanwhile: retry
//!         },
//!         Err(e) => return Err(e),
//!     }
//! }
//! let (_data, _stat, _watcher) = zk.get_data_and_watch("/config").await?;
//! let _tree = zk.add_watch("/jobs", AddWatchMode::PersistentRecursive).await?;
//! # Ok(()) }
//! ```
//!
//! ## One watch mode per path (ZOOKEEPER-4466)
//! ZooKeeper before 3.9 keeps one watch mode per (session, path): a one-shot
//! watch added on a path that has a persistent or persistent-recursive watch
//! of the same session replaces it, and the persistent watch silently stops
//! after its next event. zkit never sends such a one-shot watch: the read
//! goes without its watch flag and the watcher is served from the persistent
//! watch's events (a child watch beside a recursive watch gets its
//! `NodeChildrenChanged` from the child's creation or deletion). So recipes
//! and caches can share a path and a session safely. Adding a `Persistent`
//! watch on a path that already has a `PersistentRecursive` one of the same
//! session still downgrades it on those servers: don't mix those two.
#![deny(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

mod client;
mod error;
#[cfg(feature = "gssapi")]
mod gssapi;
mod observe;
mod path;
#[doc(inline)]
pub use zkit_proto as proto;
mod sasl;
mod session;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
mod types;

pub use error::{DialFailure, Error, Result};
pub use types::*;

pub use bytes::Bytes;
pub use client::{
    Client, ClientBuilder, MultiRead, MultiWrite, OneshotWatcher, OpResult, PersistentWatcher,
    ReadResult, StateStream, CONFIG_NODE, MAX_TTL,
};
#[cfg(feature = "gssapi")]
pub use gssapi::GssapiConfig;
pub use path::validate_path;
pub use proto::digest_id;
pub use session::{ConnectString, HostAddr, DEFAULT_PORT};
#[cfg(feature = "tls")]
pub use tls::TlsConfig;
pub use transport::{BoxedIo, Connect, ConnectFuture, Io, TcpConnector};
