//! Numeric codes of the ZooKeeper protocol: op codes, reserved xids, error
//! codes, watch event types and keeper states (`ZooDefs.OpCode`,
//! `KeeperException.Code`, `Watcher.Event`).

/// Reserved request/reply xids (`ClientCnxn`).
pub mod xid {
    /// Watch notification (server to client).
    pub const NOTIFICATION: i32 = -1;
    /// Ping request and reply.
    pub const PING: i32 = -2;
    /// Auth packet (`AuthPacket`).
    pub const AUTH: i32 = -4;
    /// SetWatches as the C client sends it; the server echoes any xid.
    pub const SET_WATCHES: i32 = -8;
}

macro_rules! op_codes {
    ($($(#[$doc:meta])* $name:ident = $val:expr,)*) => {
        /// ZooKeeper operation codes (`ZooDefs.OpCode`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum OpCode {
            $($(#[$doc])* $name,)*
        }

        impl OpCode {
            /// The wire value.
            pub const fn code(self) -> i32 {
                match self { $(Self::$name => $val,)* }
            }

            /// The op code for a wire value, if known.
            pub const fn from_code(code: i32) -> Option<Self> {
                match code { $($val => Some(Self::$name),)* _ => None }
            }

            /// The variant's name (`"GetData"`, `"Create2"`): a stable
            /// label for logs and metrics.
            pub const fn name(self) -> &'static str {
                match self { $(Self::$name => stringify!($name),)* }
            }
        }
    };
}

op_codes! {
    /// Watch notification (`xid -1`).
    Notification = 0,
    /// create.
    Create = 1,
    /// delete.
    Delete = 2,
    /// exists.
    Exists = 3,
    /// getData.
    GetData = 4,
    /// setData.
    SetData = 5,
    /// getACL.
    GetAcl = 6,
    /// setACL.
    SetAcl = 7,
    /// getChildren.
    GetChildren = 8,
    /// sync.
    Sync = 9,
    /// ping.
    Ping = 11,
    /// getChildren2 (children + Stat).
    GetChildren2 = 12,
    /// check (version check, inside multi).
    Check = 13,
    /// multi (atomic transaction).
    Multi = 14,
    /// create2 (create returning Stat), 3.5+.
    Create2 = 15,
    /// reconfig, 3.5+.
    Reconfig = 16,
    /// checkWatches, 3.5+.
    CheckWatches = 17,
    /// removeWatches, 3.5+.
    RemoveWatches = 18,
    /// createContainer, 3.5.1+.
    CreateContainer = 19,
    /// deleteContainer (server-internal).
    DeleteContainer = 20,
    /// createTTL, 3.5.3+ (server needs extended types).
    CreateTtl = 21,
    /// multiRead, 3.6+.
    MultiRead = 22,
    /// auth (`xid -4`).
    Auth = 100,
    /// setWatches.
    SetWatches = 101,
    /// sasl.
    Sasl = 102,
    /// getEphemerals, 3.6+.
    GetEphemerals = 103,
    /// getAllChildrenNumber, 3.6+.
    GetAllChildrenNumber = 104,
    /// setWatches2 (with persistent watches), 3.6+.
    SetWatches2 = 105,
    /// addWatch (persistent / persistent-recursive), 3.6+.
    AddWatch = 106,
    /// whoAmI, 3.7+.
    WhoAmI = 107,
    /// createSession (server-internal).
    CreateSession = -10,
    /// closeSession.
    CloseSession = -11,
    /// Error result inside a multi response.
    Error = -1,
}

/// ZooKeeper error codes (`KeeperException.Code`) as wire values.
#[allow(missing_docs)]
pub mod err {
    pub const OK: i32 = 0;
    pub const SYSTEM_ERROR: i32 = -1;
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    pub const DATA_INCONSISTENCY: i32 = -3;
    pub const CONNECTION_LOSS: i32 = -4;
    pub const MARSHALLING_ERROR: i32 = -5;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const OPERATION_TIMEOUT: i32 = -7;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const UNKNOWN_SESSION: i32 = -12;
    pub const NEW_CONFIG_NO_QUORUM: i32 = -13;
    pub const RECONFIG_IN_PROGRESS: i32 = -14;
    pub const API_ERROR: i32 = -100;
    pub const NO_NODE: i32 = -101;
    pub const NO_AUTH: i32 = -102;
    pub const BAD_VERSION: i32 = -103;
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const SESSION_EXPIRED: i32 = -112;
    pub const INVALID_CALLBACK: i32 = -113;
    pub const INVALID_ACL: i32 = -114;
    pub const AUTH_FAILED: i32 = -115;
    pub const SESSION_MOVED: i32 = -118;
    pub const NOT_READ_ONLY: i32 = -119;
    pub const EPHEMERAL_ON_LOCAL_SESSION: i32 = -120;
    pub const NO_WATCHER: i32 = -121;
    pub const REQUEST_TIMEOUT: i32 = -122;
    pub const RECONFIG_DISABLED: i32 = -123;
    pub const SESSION_CLOSED_REQUIRE_SASL_AUTH: i32 = -124;
    pub const QUOTA_EXCEEDED: i32 = -125;
    pub const THROTTLED_OP: i32 = -127;
}

/// Watch event types (`Watcher.Event.EventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventType {
    /// No node event: a connection-state change.
    None,
    /// The node was created.
    NodeCreated,
    /// The node was deleted.
    NodeDeleted,
    /// The node's data changed.
    NodeDataChanged,
    /// The node's children changed.
    NodeChildrenChanged,
    /// A data watch was removed (client-local).
    DataWatchRemoved,
    /// A child watch was removed (client-local).
    ChildWatchRemoved,
    /// A persistent watch was removed (client-local).
    PersistentWatchRemoved,
}

impl EventType {
    /// The wire value.
    pub const fn code(self) -> i32 {
        match self {
            Self::None => -1,
            Self::NodeCreated => 1,
            Self::NodeDeleted => 2,
            Self::NodeDataChanged => 3,
            Self::NodeChildrenChanged => 4,
            Self::DataWatchRemoved => 5,
            Self::ChildWatchRemoved => 6,
            Self::PersistentWatchRemoved => 7,
        }
    }

    /// The event type for a wire value, if known.
    pub const fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            -1 => Self::None,
            1 => Self::NodeCreated,
            2 => Self::NodeDeleted,
            3 => Self::NodeDataChanged,
            4 => Self::NodeChildrenChanged,
            5 => Self::DataWatchRemoved,
            6 => Self::ChildWatchRemoved,
            7 => Self::PersistentWatchRemoved,
            _ => return None,
        })
    }
}

/// Keeper states carried by watch events (`Watcher.Event.KeeperState`).
#[allow(missing_docs)]
pub mod keeper_state {
    pub const DISCONNECTED: i32 = 0;
    pub const SYNC_CONNECTED: i32 = 3;
    pub const AUTH_FAILED: i32 = 4;
    pub const CONNECTED_READ_ONLY: i32 = 5;
    pub const SASL_AUTHENTICATED: i32 = 6;
    pub const EXPIRED: i32 = -112;
    pub const CLOSED: i32 = 7;
}

/// `WatcherType` values of checkWatches / removeWatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WatcherType {
    /// Child watches.
    Children,
    /// Data and exist watches.
    Data,
    /// Any watch.
    Any,
    /// Persistent watches (server 3.9+; 3.8 answers MarshallingError).
    Persistent,
    /// Persistent-recursive watches (server 3.9+; 3.8 answers MarshallingError).
    PersistentRecursive,
}

impl WatcherType {
    /// The wire value.
    pub const fn code(self) -> i32 {
        match self {
            Self::Children => 1,
            Self::Data => 2,
            Self::Any => 3,
            Self::Persistent => 4,
            Self::PersistentRecursive => 5,
        }
    }

    /// The watcher type for a wire value, if known.
    pub const fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            1 => Self::Children,
            2 => Self::Data,
            3 => Self::Any,
            4 => Self::Persistent,
            5 => Self::PersistentRecursive,
            _ => return None,
        })
    }
}

/// `AddWatchMode` of addWatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AddWatchMode {
    /// Data and child events on the path itself, not removed when triggered.
    Persistent,
    /// Data events on the path and every descendant, not removed when triggered.
    /// Never delivers `NodeChildrenChanged`.
    PersistentRecursive,
}

impl AddWatchMode {
    /// The wire value.
    pub const fn code(self) -> i32 {
        match self {
            Self::Persistent => 0,
            Self::PersistentRecursive => 1,
        }
    }

    /// The mode for a wire value, if known.
    pub const fn from_code(code: i32) -> Option<Self> {
        match code {
            0 => Some(Self::Persistent),
            1 => Some(Self::PersistentRecursive),
            _ => None,
        }
    }
}

/// `CreateMode` flags (`CreateMode.toFlag`).
#[allow(missing_docs)]
pub mod create_flags {
    pub const PERSISTENT: i32 = 0;
    pub const EPHEMERAL: i32 = 1;
    pub const PERSISTENT_SEQUENTIAL: i32 = 2;
    pub const EPHEMERAL_SEQUENTIAL: i32 = 3;
    pub const CONTAINER: i32 = 4;
    pub const PERSISTENT_WITH_TTL: i32 = 5;
    pub const PERSISTENT_SEQUENTIAL_WITH_TTL: i32 = 6;
}

/// ACL permission bits (`ZooDefs.Perms`).
#[allow(missing_docs)]
pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const CREATE: i32 = 4;
    pub const DELETE: i32 = 8;
    pub const ADMIN: i32 = 16;
    pub const ALL: i32 = 31;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_codes_round_trip() {
        for code in -20..200 {
            if let Some(op) = OpCode::from_code(code) {
                assert_eq!(op.code(), code);
            }
        }
        assert_eq!(OpCode::from_code(107), Some(OpCode::WhoAmI));
        assert_eq!(OpCode::from_code(999), None);
    }
}
