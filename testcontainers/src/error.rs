//! The fixture's error type.

use std::io;
use std::net::SocketAddr;

/// Everything that can go wrong while launching or controlling a ZooKeeper fixture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// Java or the ZooKeeper jars could not be found. The message names what is missing.
    ///
    /// Run `scripts/install-zookeeper.sh` (Debian/Ubuntu) or point `ZKIT_ZOOKEEPER_CLASSPATH`,
    /// `ZOOKEEPER_HOME` and `JAVA_HOME` at an existing installation.
    #[error("{0}; run scripts/install-zookeeper.sh to install Java and Apache ZooKeeper")]
    NotInstalled(String),

    /// The builder was given a setting the fixture cannot honour (for example `size(0)`).
    #[error("invalid ZooKeeper fixture configuration: {0}")]
    InvalidConfig(String),

    /// A member exited or did not start serving within the start timeout.
    ///
    /// `log_tail` holds the last lines of the member's ZooKeeper log and of its captured
    /// stdout/stderr, so the error message alone usually explains the failure.
    #[error("ZooKeeper member {member} ({addr}) failed to start: {reason}{log_tail}")]
    Start {
        /// 0-based index of the member (its `myid` is `member + 1`).
        member: usize,
        /// Client address of the member.
        addr: SocketAddr,
        /// What went wrong: exit status, timeout and the last readiness observation.
        reason: String,
        /// Tail of the member's log files, formatted for display (may be empty).
        log_tail: String,
    },

    /// The operation needs a running member, but the member is stopped or killed.
    #[error("ZooKeeper member {0} is not running")]
    NotRunning(usize),

    /// A four-letter-word reply could not be understood.
    #[error("unexpected ZooKeeper four-letter-word reply: {0}")]
    Protocol(String),

    /// An I/O operation (files, process control, four-letter-word socket) failed.
    #[error("{context}: {source}")]
    Io {
        /// What the fixture was doing.
        context: String,
        /// The underlying error. Four-letter-word timeouts use [`io::ErrorKind::TimedOut`].
        #[source]
        source: io::Error,
    },
}

impl FixtureError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        FixtureError::Io {
            context: context.into(),
            source,
        }
    }
}
