//! Test fixtures: real Apache ZooKeeper and the bundled zkit-server.
//!
//! [`Ensemble`] launches real Apache ZooKeeper 3.8 servers as local Java processes on free
//! `127.0.0.1` ports (no Docker): one standalone `ZooKeeperServerMain`, or a
//! `QuorumPeerMain` ensemble with generated `zoo.cfg` and `myid` files. Tests and benchmarks
//! connect with [`Ensemble::connect_string`] and inject faults with [`Ensemble::kill`],
//! [`Ensemble::pause`]/[`Ensemble::resume`] (SIGSTOP/SIGCONT), [`Ensemble::stop`] and
//! [`Ensemble::restart`].
//!
//! ```no_run
//! # async fn example() -> Result<(), zkit_testcontainers::FixtureError> {
//! use std::time::Duration;
//! use zkit_testcontainers::Ensemble;
//!
//! let zk = Ensemble::builder()
//!     .size(3)
//!     .tick_time(Duration::from_millis(200))
//!     .config("maxSessionTimeout", "60000")
//!     .start()
//!     .await?;
//! println!("ZooKeeper {} at {}", zk.server_version().await?, zk.connect_string());
//!
//! let leader = zk.leader().await.expect("a serving ensemble has a leader");
//! zk.kill(leader).await?; // crash the leader; the others elect a new one
//! zk.restart(leader).await?; // it rejoins as a follower
//! # Ok(())
//! # }
//! ```
//!
//! # Finding Java and ZooKeeper
//!
//! - Java: `$JAVA_HOME/bin/java`, else `java` on `PATH`.
//! - Jars: `ZKIT_ZOOKEEPER_CLASSPATH` (used verbatim), else every jar in `$ZOOKEEPER_HOME` and
//!   `$ZOOKEEPER_HOME/lib` (upstream tarball, logback), else the Debian layout:
//!   `/usr/share/java/zookeeper.jar` (whose manifest `Class-Path` pulls in its dependencies)
//!   plus `slf4j-log4j12.jar` and `log4j-1.2.jar` for logging.
//!
//! When something is missing, [`EnsembleBuilder::start`] fails with
//! [`FixtureError::NotInstalled`], naming what is missing; `scripts/install-zookeeper.sh`
//! installs the Debian packages.
//!
//! # Choosing the backend of a test suite
//!
//! [`TestBackend::from_env`] reads `ZKIT_TEST_BACKEND`: unset or `bundled` means the
//! in-process zkit-server (so `cargo test` needs nothing installed), `bundled-durable` the
//! same with a data directory, `zookeeper` real Apache ZooKeeper. Tests that can only run
//! against real ZooKeeper processes (ensembles, Java and Python peers) call
//! [`skip_without_real_zookeeper`] or [`EnsembleBuilder::start_or_skip`]: they print
//! `SKIPPED: ...` unless `ZKIT_TEST_BACKEND=zookeeper`, and under that backend a missing
//! installation fails them. Tests that drive other clients (Curator, kazoo, zkCli.sh, the C
//! client) as peers run only with `ZKIT_TEST_PEERS=1` ([`skip_without_peers`]).
//!
//! # Server settings
//!
//! `zoo.cfg` gets `clientPortAddress=127.0.0.1`, `maxClientCnxns=0`, `forceSync=no`,
//! `4lw.commands.whitelist=*` and `admin.enableServer=false` (all overridable with
//! [`EnsembleBuilder::config`]); the JVM runs with `-Xmx256m -XX:+UseSerialGC` and
//! `-Dzookeeper.extendedTypesEnabled=true` so TTL nodes work. Each member logs to
//! `zookeeper.log` in its directory and its stdout/stderr go to `stdout.log`; a failed start
//! quotes the tail of both.
//!
//! # Cleanup
//!
//! Dropping an [`Ensemble`] (also while unwinding from a panic) SIGKILLs every server, waits
//! for it and deletes the fixture directory. A small `sh` watchdog per fixture does the same
//! if the test process dies without dropping it (killed, `process::exit`, a fixture kept in a
//! `static`).
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

mod config;
mod ensemble;
mod error;
mod expire;
mod four_letter;
mod install;
mod kdc;
mod proxy;
mod security;
mod tempdir;
mod watchdog;

pub use ensemble::{
    skip_without_peers, skip_without_real_zookeeper, Backend, Ensemble, EnsembleBuilder,
    TestBackend, DEFAULT_START_TIMEOUT, DEFAULT_TICK_TIME, TEST_BACKEND_ENV, TEST_PEERS_ENV,
};
pub use error::FixtureError;
pub use expire::expire_session;
pub use four_letter::{Mode, ServerVersion};
pub use install::{CLASSPATH_ENV, SERVER_BIN_ENV};
pub use kdc::{Kdc, TEST_REALM};
pub use proxy::{proxy_connect_string, FaultMode, FaultProxy};
pub use security::{ClientAuth, TlsFiles, CLIENT_DN};

/// Starts one standalone ZooKeeper server with the default settings:
/// `Ensemble::builder().start().await`.
///
/// # Errors
///
/// As [`EnsembleBuilder::start`].
pub async fn standalone() -> Result<Ensemble, FixtureError> {
    Ensemble::builder().start().await
}
