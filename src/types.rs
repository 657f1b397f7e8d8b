//! Public value types: session ids, create modes and options, ACLs, versions,
//! watch events and session states.

use std::fmt;
use std::time::Duration;

pub use crate::proto::codes::{AddWatchMode, EventType, WatcherType};
pub use crate::proto::{Acl, ClientInfo, Id, Perms, Stat};

use crate::proto::codes::create_flags;

/// A ZooKeeper session id, printed as hex like ZooKeeper logs it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SessionId(pub i64);

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({:#x})", self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// An expected version for conditional writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Version {
    /// Any version (-1 on the wire).
    #[default]
    Any,
    /// Exactly this version.
    Exact(i32),
}

impl Version {
    /// The wire value.
    pub fn as_i32(self) -> i32 {
        match self {
            Self::Any => -1,
            Self::Exact(v) => v,
        }
    }
}

impl From<i32> for Version {
    fn from(v: i32) -> Self {
        Self::Exact(v)
    }
}

/// How a node is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CreateMode {
    /// A persistent node.
    #[default]
    Persistent,
    /// A node deleted when the session ends.
    Ephemeral,
    /// Persistent, with a 10-digit sequence suffix from the parent's counter.
    PersistentSequential,
    /// Ephemeral, with a sequence suffix.
    EphemeralSequential,
    /// A container: deleted by the server once its last child is gone
    /// (op createContainer, 3.5.3+).
    Container,
    /// Persistent, deleted by the server once it has had no children and no
    /// data change for the TTL (3.5.3+, server needs extended types).
    PersistentWithTtl(Duration),
    /// Like `PersistentWithTtl`, with a sequence suffix.
    PersistentSequentialWithTtl(Duration),
}

impl CreateMode {
    /// The wire flags.
    pub fn flags(self) -> i32 {
        match self {
            Self::Persistent => create_flags::PERSISTENT,
            Self::Ephemeral => create_flags::EPHEMERAL,
            Self::PersistentSequential => create_flags::PERSISTENT_SEQUENTIAL,
            Self::EphemeralSequential => create_flags::EPHEMERAL_SEQUENTIAL,
            Self::Container => create_flags::CONTAINER,
            Self::PersistentWithTtl(_) => create_flags::PERSISTENT_WITH_TTL,
            Self::PersistentSequentialWithTtl(_) => create_flags::PERSISTENT_SEQUENTIAL_WITH_TTL,
        }
    }

    /// Whether the node is ephemeral.
    pub fn is_ephemeral(self) -> bool {
        matches!(self, Self::Ephemeral | Self::EphemeralSequential)
    }

    /// Whether the server appends a sequence suffix.
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            Self::PersistentSequential
                | Self::EphemeralSequential
                | Self::PersistentSequentialWithTtl(_)
        )
    }

    /// The TTL, for TTL modes.
    pub fn ttl(self) -> Option<Duration> {
        match self {
            Self::PersistentWithTtl(t) | Self::PersistentSequentialWithTtl(t) => Some(t),
            _ => None,
        }
    }
}

/// Options of [`Client::create`](crate::Client::create): mode and ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateOptions {
    /// The create mode.
    pub mode: CreateMode,
    /// The node's ACL (default: `world:anyone` all, like `OPEN_ACL_UNSAFE`).
    pub acl: Vec<Acl>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            mode: CreateMode::Persistent,
            acl: Acl::open_unsafe(),
        }
    }
}

impl CreateOptions {
    /// Options for `mode` with the open ACL.
    pub fn new(mode: CreateMode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    /// Sets the ACL.
    #[must_use]
    pub fn acl(mut self, acl: Vec<Acl>) -> Self {
        self.acl = acl;
        self
    }
}

impl From<CreateMode> for CreateOptions {
    fn from(mode: CreateMode) -> Self {
        Self::new(mode)
    }
}

/// A watch notification delivered to a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchedEvent {
    /// What happened.
    pub event_type: EventType,
    /// The node's path, relative to the client's chroot.
    pub path: String,
    /// Zxid of the change (ZooKeeper 3.9+ servers; -1 otherwise).
    pub zxid: i64,
}

/// The state of a client's session as the connection-state stream reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionState {
    /// Looking for a server (initial, or after a disconnect).
    Connecting,
    /// Connected with a live session.
    Connected,
    /// Connected to a read-only server (only with `read_only(true)`).
    ConnectedReadOnly,
    /// The connection was lost; the session may still resume.
    Disconnected,
    /// The session expired. Terminal.
    Expired,
    /// Authentication failed. Terminal.
    AuthFailed,
    /// The client was closed. Terminal.
    Closed,
}

impl SessionState {
    /// Whether no further state can follow.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Expired | Self::AuthFailed | Self::Closed)
    }

    /// Whether requests can be sent now.
    pub fn is_connected(self) -> bool {
        matches!(self, Self::Connected | Self::ConnectedReadOnly)
    }
}
