//! The tool's error: a message for stderr and an exit code class.

use std::fmt;

/// ZooKeeper refused the operation (no node, bad version, ...).
pub(crate) const EXIT_ZOOKEEPER: u8 = 1;
/// Bad arguments or input (clap's own usage errors also exit 2).
pub(crate) const EXIT_USAGE: u8 = 2;
/// No server reachable, connection lost, session expired, auth refused.
pub(crate) const EXIT_CONNECTION: u8 = 3;

/// Which exit code an error maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    ZooKeeper,
    Usage,
    Connection,
}

/// An error to print (`zkit: <message>`) before exiting with its class's code.
#[derive(Debug)]
pub(crate) struct CliError {
    class: Class,
    message: String,
}

impl CliError {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            class: Class::Usage,
            message: message.into(),
        }
    }

    /// Connecting to `server` failed: the message names the connect string
    /// and, for each host tried, why it failed.
    pub(crate) fn connect(server: &str, e: &zkit::Error) -> Self {
        let class = match classify(e) {
            Class::Usage => Class::Usage,
            _ => Class::Connection,
        };
        Self {
            class,
            message: format!("cannot connect to {server}: {e} ({})", variant_name(e)),
        }
    }

    /// `what` failed with `e`, talking to `server`: the message names the
    /// operation and path, the cause (with ZooKeeper's name for it) and the
    /// server.
    pub(crate) fn from_zk(what: &str, e: &zkit::Error, server: &str) -> Self {
        let class = classify(e);
        let name = variant_name(e);
        let message = match class {
            Class::Usage => format!("{what}: {e}"),
            _ => format!("{what}: {e} ({name}) [server {server}]"),
        };
        Self { class, message }
    }

    pub(crate) fn exit_code(&self) -> u8 {
        match self.class {
            Class::ZooKeeper => EXIT_ZOOKEEPER,
            Class::Usage => EXIT_USAGE,
            Class::Connection => EXIT_CONNECTION,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The class of a client error: session and transport failures are
/// connection errors, refusals of bad input are usage errors, the rest are
/// ZooKeeper's answers.
pub(crate) fn classify(e: &zkit::Error) -> Class {
    use zkit::Error as E;
    match e {
        E::ConnectionLoss
        | E::SessionExpired
        | E::SessionMoved
        | E::AuthFailed
        | E::Closed
        | E::Timeout
        | E::NoHosts(_)
        | E::NoServerReachable { .. }
        | E::SessionClosedRequireSaslAuth
        | E::Protocol(_)
        | E::OperationTimeout
        | E::RequestTimeout => Class::Connection,
        E::InvalidPath { .. } | E::InvalidArgument(_) => Class::Usage,
        E::MultiFailed { source, .. } | E::Fenced { source, .. } => classify(source),
        _ => Class::ZooKeeper,
    }
}

/// ZooKeeper's (and zkit's) name of the error: `NoNode`, `BadVersion`, ...
pub(crate) fn variant_name(e: &zkit::Error) -> String {
    let debug = format!("{e:?}");
    debug
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_names() {
        let e = CliError::from_zk("get /a", &zkit::Error::NoNode, "h:1");
        assert_eq!(e.exit_code(), EXIT_ZOOKEEPER);
        assert_eq!(
            e.to_string(),
            "get /a: node does not exist (NoNode) [server h:1]"
        );
        assert_eq!(classify(&zkit::Error::ConnectionLoss), Class::Connection);
        assert_eq!(variant_name(&zkit::Error::ServerCode(-9)), "ServerCode");
    }
}
