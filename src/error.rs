//! The one error type of the zkit client.

use crate::proto::codes::err;

/// Everything a zkit operation can fail with.
///
/// Variants are grouped by blame: errors the **server** returned (named as
/// ZooKeeper's `KeeperException.Code` names them), **session and connection**
/// conditions, and errors the **client** detected before sending anything.
///
/// Every transport failure (EOF, I/O error, read timeout, malformed frame) is
/// reported as [`Error::ConnectionLoss`]; the underlying cause is logged with
/// `tracing`. The type is `Clone` because one terminal error is handed to every
/// pending request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- server codes ----------------------------------------------------
    /// The node does not exist (-101).
    #[error("node does not exist")]
    NoNode,
    /// The node already exists (-110).
    #[error("node already exists")]
    NodeExists,
    /// The expected version did not match (-103).
    #[error("version mismatch")]
    BadVersion,
    /// The node has children (-111).
    #[error("node has children")]
    NotEmpty,
    /// Not authorised by the node's ACL (-102).
    #[error("not authorised")]
    NoAuth,
    /// The ACL is invalid, e.g. empty or an unknown scheme (-114).
    #[error("invalid ACL")]
    InvalidAcl,
    /// Ephemeral nodes cannot have children (-108).
    #[error("ephemeral nodes cannot have children")]
    NoChildrenForEphemerals,
    /// The server rejected an argument, e.g. a bad TTL (-8).
    #[error("bad arguments")]
    BadArguments,
    /// The server does not implement the operation, e.g. TTL nodes without
    /// extended types (-6). The server closes the connection after it.
    #[error("operation not implemented by the server")]
    Unimplemented,
    /// The server could not decode the request (-5).
    #[error("marshalling error")]
    MarshallingError,
    /// checkWatches / removeWatches found no such watch (-121).
    #[error("no such watcher")]
    NoWatcher,
    /// A write sent to a read-only server (-119).
    #[error("server is read-only")]
    NotReadOnly,
    /// Ephemeral node on a local session (-120).
    #[error("ephemeral node on a local session")]
    EphemeralOnLocalSession,
    /// reconfig while another is in progress (-14).
    #[error("reconfiguration in progress")]
    ReconfigInProgress,
    /// reconfig without a quorum of the new config (-13).
    #[error("new configuration has no quorum")]
    NewConfigNoQuorum,
    /// reconfig is disabled on the server (-123).
    #[error("reconfiguration disabled")]
    ReconfigDisabled,
    /// A quota was exceeded (-125).
    #[error("quota exceeded")]
    QuotaExceeded,
    /// The server throttled the request (-127); retry later.
    #[error("request throttled")]
    Throttled,
    /// The server requires authentication this client did not provide
    /// (-124): ZooKeeper's `sessionRequireClientSASLAuth`, or
    /// `enforce.auth.enabled` with `enforce.auth.schemes` naming schemes
    /// (`sasl`, `x509`, ...) the connection is not authenticated with, or a
    /// failed SASL exchange on such a server. The server closes the
    /// connection; zkit ends the session as
    /// [`SessionState::AuthFailed`](crate::SessionState::AuthFailed) (the
    /// same credentials would be refused again), so every pending and later
    /// call fails with this error. Fix: [`sasl_digest`](crate::ClientBuilder::sasl_digest)
    /// credentials, or a client certificate over TLS.
    #[error("session closed: the server requires authentication (SASL or a required scheme)")]
    SessionClosedRequireSaslAuth,
    /// A multi op after the one that failed (-2).
    #[error("runtime inconsistency")]
    RuntimeInconsistency,
    /// Data inconsistency (-3).
    #[error("data inconsistency")]
    DataInconsistency,
    /// Server-side system error (-1).
    #[error("system error")]
    SystemError,
    /// Operation timed out (-7, the C client's ZOPERATIONTIMEOUT).
    #[error("operation timed out")]
    OperationTimeout,
    /// The session is unknown to the server (-12, server-internal).
    #[error("unknown session")]
    UnknownSession,
    /// API error range marker (-100); not returned by servers.
    #[error("API error")]
    ApiError,
    /// Invalid callback (-113); not returned by servers.
    #[error("invalid callback")]
    InvalidCallback,
    /// Request timed out on the server side (-122).
    #[error("request timed out")]
    RequestTimeout,
    /// A server code zkit does not name.
    #[error("server error code {0}")]
    ServerCode(i32),
    /// A multi transaction failed: nothing was applied. `index` is the op that
    /// failed and `source` its error.
    #[error("multi op {index} failed: {source}")]
    MultiFailed {
        /// Index of the failing op.
        index: usize,
        /// Its error.
        source: Box<Error>,
    },
    /// A fenced transaction was refused: its fence (added with
    /// [`MultiWrite::fence`](crate::MultiWrite::fence), as the recipes'
    /// `guarded()` writes do) failed, so nothing was written. `source` says
    /// why: usually [`Error::NoNode`] (the lock, lease or leadership node is
    /// gone: ownership was lost) or [`Error::BadVersion`].
    #[error("fenced out by {path}: {source}")]
    Fenced {
        /// The fence's path (relative to the chroot).
        path: String,
        /// Why the fence failed.
        source: Box<Error>,
    },

    // ---- session and connection --------------------------------------------
    /// The connection was lost before the reply arrived (-4). For a write the
    /// outcome is unknown: it may or may not have been applied.
    #[error("connection lost")]
    ConnectionLoss,
    /// The session expired (-112). Terminal: build a new client.
    #[error("session expired")]
    SessionExpired,
    /// The session moved to another server (-118).
    #[error("session moved")]
    SessionMoved,
    /// Authentication failed (-115). Terminal.
    #[error("authentication failed")]
    AuthFailed,
    /// The client was closed.
    #[error("client closed")]
    Closed,
    /// No session could be established in time.
    #[error("timed out")]
    Timeout,
    /// The connect string lists no usable host.
    #[error("no hosts to connect to: {0}")]
    NoHosts(String),

    // ---- client-side validation -----------------------------------------------
    /// The path is not a valid ZooKeeper path.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An argument was refused before sending.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The request would exceed the server's frame limit (`jute.maxbuffer`),
    /// which would make the server drop the connection; it was not sent.
    #[error("request of {size} bytes exceeds the limit of {limit} bytes (jute.maxbuffer)")]
    RequestTooLarge {
        /// Encoded request size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// A reply exceeded this client's frame limit (twice
    /// [`ClientBuilder::max_frame`](crate::ClientBuilder::max_frame)): it was
    /// read past and dropped, and its request failed; the connection and
    /// the session go on. Typically the child list of a node with very many
    /// children: raise the limit, or count them with
    /// `get_all_children_number`. A watch the request asked for is not set
    /// on this side.
    #[error("reply of {size} bytes exceeds this client's limit of {limit} bytes (raise ClientBuilder::max_frame)")]
    ResponseTooLarge {
        /// The reply's size.
        size: usize,
        /// This client's limit.
        limit: usize,
    },
    /// No session could be established within the connect timeout: no
    /// server answered. `attempts` names every host tried, with the last
    /// failure seen for it (refused, name resolution, time-out, closed
    /// during the handshake, a connector's own error such as TLS).
    #[error(
        "no ZooKeeper server reachable within {timeout:?}: {}",
        DialFailure::list(attempts)
    )]
    NoServerReachable {
        /// The connect timeout that passed.
        timeout: std::time::Duration,
        /// Each host tried, in the order first tried, with its last failure.
        attempts: Vec<DialFailure>,
    },
    /// The server sent something the client could not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Why connecting to one host failed (see [`Error::NoServerReachable`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DialFailure {
    /// The host, as `host:port`.
    pub host: String,
    /// The last failure seen for it.
    pub cause: String,
}

impl DialFailure {
    /// `host: cause; host: cause`, for messages and logs.
    pub(crate) fn list(attempts: &[DialFailure]) -> String {
        if attempts.is_empty() {
            return "no host tried".into();
        }
        attempts
            .iter()
            .map(|a| format!("{}: {}", a.host, a.cause))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The server codes with a variant of their own: one table, from which both
/// [`Error::from_code`] and [`Error::code`] are generated, so the two
/// directions cannot drift apart. The wire values are `zkit_proto::codes::err`.
macro_rules! server_codes {
    ($($variant:ident = $code:ident,)*) => {
        impl Error {
            /// The error for a ZooKeeper error code (`0` is not an error and maps to
            /// `ServerCode(0)`).
            pub fn from_code(code: i32) -> Self {
                match code {
                    $(err::$code => Self::$variant,)*
                    other => Self::ServerCode(other),
                }
            }

            /// The ZooKeeper error code of this error, if it has one.
            pub fn code(&self) -> Option<i32> {
                Some(match self {
                    $(Self::$variant => err::$code,)*
                    Self::ServerCode(c) => *c,
                    Self::MultiFailed { source, .. } | Self::Fenced { source, .. } => {
                        return source.code()
                    }
                    _ => return None,
                })
            }
        }
    };
}

server_codes! {
    SystemError = SYSTEM_ERROR,
    RuntimeInconsistency = RUNTIME_INCONSISTENCY,
    DataInconsistency = DATA_INCONSISTENCY,
    ConnectionLoss = CONNECTION_LOSS,
    MarshallingError = MARSHALLING_ERROR,
    Unimplemented = UNIMPLEMENTED,
    BadArguments = BAD_ARGUMENTS,
    OperationTimeout = OPERATION_TIMEOUT,
    UnknownSession = UNKNOWN_SESSION,
    ApiError = API_ERROR,
    InvalidCallback = INVALID_CALLBACK,
    NewConfigNoQuorum = NEW_CONFIG_NO_QUORUM,
    ReconfigInProgress = RECONFIG_IN_PROGRESS,
    NoNode = NO_NODE,
    NoAuth = NO_AUTH,
    BadVersion = BAD_VERSION,
    NoChildrenForEphemerals = NO_CHILDREN_FOR_EPHEMERALS,
    NodeExists = NODE_EXISTS,
    NotEmpty = NOT_EMPTY,
    SessionExpired = SESSION_EXPIRED,
    InvalidAcl = INVALID_ACL,
    AuthFailed = AUTH_FAILED,
    SessionMoved = SESSION_MOVED,
    NotReadOnly = NOT_READ_ONLY,
    EphemeralOnLocalSession = EPHEMERAL_ON_LOCAL_SESSION,
    NoWatcher = NO_WATCHER,
    RequestTimeout = REQUEST_TIMEOUT,
    ReconfigDisabled = RECONFIG_DISABLED,
    SessionClosedRequireSaslAuth = SESSION_CLOSED_REQUIRE_SASL_AUTH,
    QuotaExceeded = QUOTA_EXCEEDED,
    Throttled = THROTTLED_OP,
}

impl Error {
    /// Whether retrying the same call may succeed: connection loss (the
    /// session may resume) and throttling.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::ConnectionLoss | Self::Throttled)
    }

    /// Whether the session is over: nothing on this client will succeed again.
    pub fn is_session_terminal(&self) -> bool {
        matches!(self, Self::SessionExpired | Self::AuthFailed | Self::Closed)
    }

    /// Whether a fenced write was refused because its fence failed
    /// ([`Error::Fenced`]): the caller no longer holds what fenced it.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }

    /// Whether a write's outcome is unknown (it may have been applied): the
    /// caller must check before retrying a non-idempotent write.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::ConnectionLoss)
    }
}

/// Result with a zkit [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

const _: () = {
    const fn assert_bounds<T: Send + Sync + Clone + 'static + std::error::Error>() {}
    assert_bounds::<Error>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in -130..=0 {
            let e = Error::from_code(code);
            assert_eq!(e.code(), Some(code), "{e:?}");
        }
    }

    #[test]
    fn every_java_keeper_exception_code_has_a_name() {
        // KeeperException.Code, all but OK.
        let named = [
            -1, -2, -3, -4, -5, -6, -7, -8, -12, -13, -14, -100, -101, -102, -103, -108, -110,
            -111, -112, -113, -114, -115, -118, -119, -120, -121, -122, -123, -124, -125, -127,
        ];
        for code in named {
            assert!(
                !matches!(Error::from_code(code), Error::ServerCode(_)),
                "{code} has no variant"
            );
        }
    }
}
