//! Shared fixture for the integration tests: one server per test binary,
//! started on first use, chosen by `ZKIT_TEST_BACKEND`
//! ([`zkit_testcontainers::TestBackend`]): by default the in-process
//! `zkit_server` (so plain `cargo test` needs nothing installed; tests that
//! need process control, [`own_server`], get the `zkit-server` binary as a
//! process), `bundled-durable` the same with a data directory, `zookeeper` a
//! real Apache ZooKeeper 3.8 standalone server (same tickTime).
//!
//! With `ZKIT_TEST_SECURE=1` the server is a fixture process (the selected
//! backend) with a TLS port (`ssl.clientAuth=need`) and a SASL DIGEST-MD5
//! user, and [`client`]/[`connect_with`] sessions use mutual TLS + SASL;
//! [`connect_string`] stays the plain port (four-letter words, proxies).
//!
//! The server is owned by a dedicated thread (with its own tokio runtime), so
//! it outlives every `#[tokio::test]` runtime. Statics are never dropped, so a
//! small watchdog process (`sh`) kills the server and deletes its directory
//! as soon as the test binary exits: it blocks reading a pipe whose only
//! writer is this process.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use zkit::{Client, ClientBuilder, CreateOptions, Error};
use zkit_testcontainers::{Ensemble, TestBackend};

/// The fixture's tickTime: session timeouts are clamped to 2..=20 ticks.
pub const TICK: Duration = Duration::from_millis(200);

/// Generous bound for anything that should happen "now".
pub const SOON: Duration = Duration::from_secs(5);

/// How long we wait to conclude that something did not happen.
pub const QUIET: Duration = Duration::from_millis(300);

struct Shared {
    connect: String,
    /// `ZKIT_TEST_SECURE=1`: the TLS connect string and the certificates.
    secure: Option<(String, zkit_testcontainers::TlsFiles)>,
    /// Closing this pipe (at process exit) makes the watchdog kill the server
    /// (real ZooKeeper only).
    _watchdog: Option<Mutex<ChildStdin>>,
}

/// Whether the tests run against the bundled `zkit_server` (the default, or
/// `ZKIT_TEST_BACKEND=bundled-durable` for one with a data directory, so that
/// every reply waits for the transaction log) instead of a real ZooKeeper
/// (`ZKIT_TEST_BACKEND=zookeeper`).
pub fn bundled() -> bool {
    TestBackend::from_env() != TestBackend::ZooKeeper
}

/// With `ZKIT_TEST_BACKEND=bundled-durable`: a fresh data directory for
/// this test binary's bundled server (under cargo's target tmp dir).
fn durable_dir() -> Option<std::path::PathBuf> {
    if TestBackend::from_env() != TestBackend::BundledDurable {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("durable-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    Some(dir)
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

fn shared() -> &'static Shared {
    match SHARED.get_or_init(start_shared) {
        Ok(s) => s,
        Err(e) => panic!("cannot start the shared ZooKeeper server: {e}"),
    }
}

/// The bundled server, owned by a dedicated thread with its own runtime so
/// that it outlives every `#[tokio::test]` runtime; it dies with the process.
fn start_bundled() -> Result<Shared, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("zk-bundled".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("fixture runtime");
            rt.block_on(async move {
                // Like the real fixture's zoo.cfg: `4lw.commands.whitelist=*`.
                let mut builder = zkit_server::Server::builder()
                    .tick_time(TICK)
                    .four_letter_words(zkit_server::FourLetterWords::all());
                if let Some(dir) = durable_dir() {
                    builder = builder.data_dir(dir).prealloc_size(1 << 20);
                }
                match builder.start().await {
                    Ok(server) => {
                        let _ = tx.send(Ok(server.connect_string()));
                        std::future::pending::<()>().await;
                        drop(server);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        })
        .map_err(|e| format!("spawn fixture thread: {e}"))?;
    let connect = rx.recv().map_err(|_| "fixture thread died".to_string())??;
    Ok(Shared {
        connect,
        secure: None,
        _watchdog: None,
    })
}

/// `ZKIT_TEST_SECURE=1`: sessions over mutual TLS + SASL DIGEST-MD5.
pub fn secure() -> bool {
    std::env::var("ZKIT_TEST_SECURE").is_ok_and(|v| v == "1")
}

/// The SASL user of a secure fixture.
pub const SASL_USER: (&str, &str) = ("zkit", "zkit-secret");

fn start_shared() -> Result<Shared, String> {
    if bundled() && !secure() {
        return start_bundled();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("zk-fixture".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("fixture runtime");
            rt.block_on(async move {
                let mut fixture = Ensemble::builder().size(1).tick_time(TICK);
                if secure() {
                    fixture = fixture
                        .tls(zkit_testcontainers::ClientAuth::Need)
                        .sasl_digest_user(SASL_USER.0, SASL_USER.1);
                    if bundled() {
                        fixture = fixture.backend(zkit_testcontainers::Backend::Bundled);
                    }
                }
                match fixture.start().await {
                    Ok(zk) => {
                        let secure = zk
                            .tls_files()
                            .map(|f| (zk.secure_connect_string(), f.clone()));
                        let info = (
                            zk.connect_string(),
                            secure,
                            zk.pid(0).expect("server running"),
                            zk.root_dir().to_path_buf(),
                        );
                        let _ = tx.send(Ok(info));
                        // Keep the server (and this runtime) for the whole run.
                        std::future::pending::<()>().await;
                        drop(zk);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        })
        .map_err(|e| format!("spawn fixture thread: {e}"))?;
    let (connect, secure, pid, dir) =
        rx.recv().map_err(|_| "fixture thread died".to_string())??;
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(r#"read _unused; kill -9 "$1" 2>/dev/null; sleep 0.2; rm -rf "$2""#)
        .arg("zk-watchdog")
        .arg(pid.to_string())
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn watchdog: {e}"))?;
    let stdin = watchdog.stdin.take().expect("piped stdin");
    Ok(Shared {
        connect,
        secure,
        _watchdog: Some(Mutex::new(stdin)),
    })
}

/// `host:port` of the shared server.
pub fn connect_string() -> String {
    shared().connect.clone()
}

/// A new session on the shared server with default settings.
pub async fn client() -> Client {
    connect_with(Client::builder(), "").await
}

/// A new session on the shared server with `builder`'s settings and an
/// optional chroot suffix (`""` or `"/some/root"`).
pub async fn connect_with(builder: ClientBuilder, chroot: &str) -> Client {
    let (builder, hosts) = match &shared().secure {
        Some((hosts, files)) => (
            builder
                .tls(
                    zkit::TlsConfig::new()
                        .ca_file(files.ca_file())
                        .client_cert(files.client_cert(), files.client_key()),
                )
                .sasl_digest(SASL_USER.0, SASL_USER.1),
            hosts.clone(),
        ),
        None => (builder, connect_string()),
    };
    let cs = format!("{hosts}{chroot}");
    match tokio::time::timeout(SOON, builder.connect(&cs)).await {
        Ok(Ok(c)) if shared().secure.is_some() => {
            // Once per test binary: the sessions really are x509 + sasl.
            static CHECKED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !CHECKED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                let ids = c.who_am_i().await.expect("whoAmI");
                let schemes: Vec<&str> = ids.iter().map(|i| i.auth_scheme.as_str()).collect();
                assert!(
                    schemes.contains(&"x509") && schemes.contains(&"sasl"),
                    "a secure session is x509 + sasl authenticated: {schemes:?}"
                );
            }
            c
        }
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("connect to {cs}: {e:?}"),
        Err(_) => panic!("connect to {cs}: no session within {SOON:?}"),
    }
}

/// A fresh, unique top-level path for one test: `/t-<name>-<random>`.
pub fn unique_path(name: &str) -> String {
    format!("/t-{name}-{:016x}", rand::random::<u64>())
}

/// Creates a unique, empty persistent base node for one test and returns its
/// path.
pub async fn base(c: &Client, name: &str) -> String {
    let path = unique_path(name);
    let (created, _) = c
        .create(&path, b"", &CreateOptions::default())
        .await
        .unwrap_or_else(|e| panic!("create base {path}: {e:?}"));
    assert_eq!(created, path);
    path
}

/// Awaits `fut`, failing the test if it takes longer than [`SOON`].
pub async fn soon<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(SOON, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {SOON:?}"),
    }
}

/// Fails the test if `fut` completes within `wait`.
pub async fn never<F>(what: &str, wait: Duration, fut: F)
where
    F: Future,
    F::Output: std::fmt::Debug,
{
    if let Ok(v) = tokio::time::timeout(wait, fut).await {
        panic!("{what}: unexpectedly completed with {v:?}");
    }
}

/// Polls `check` every 50 ms until it returns true, failing after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `r` is the given error (by `PartialEq`), with a useful
/// message.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(r: Result<T, Error>, want: Error) {
    match r {
        Err(e) if e == want => {}
        other => panic!("expected Err({want:?}), got {other:?}"),
    }
}

/// Asserts that `r` is `Err(Error::InvalidPath { .. })` for `path`.
#[track_caller]
pub fn assert_invalid_path<T: std::fmt::Debug>(r: Result<T, Error>, path: &str) {
    match r {
        Err(Error::InvalidPath { path: p, .. }) if p == path => {}
        other => panic!("expected InvalidPath for {path:?}, got {other:?}"),
    }
}

/// A dedicated standalone server for a test that injects faults (kill,
/// pause, restart). Dropping it kills the server. A real ZooKeeper, or with
/// the bundled backends the `zkit-server` binary as a process of its own
/// (durable, like ZooKeeper, so a restart keeps the sessions).
pub async fn own_server() -> Ensemble {
    let backend = if bundled() {
        zkit_testcontainers::Backend::Bundled
    } else {
        zkit_testcontainers::Backend::ZooKeeper
    };
    match Ensemble::builder()
        .size(1)
        .tick_time(TICK)
        .backend(backend)
        .start()
        .await
    {
        Ok(zk) => zk,
        Err(e) => panic!("cannot start a ZooKeeper server: {e}"),
    }
}

/// Expires `c`'s session on the server now (as a crash beyond its timeout
/// would), through the shared server.
pub async fn expire(c: &Client) {
    let addr = connect_string()
        .split(',')
        .next()
        .expect("a host")
        .parse()
        .expect("host:port");
    zkit_testcontainers::expire_session(addr, c.session_id().0, &c.session_password())
        .await
        .expect("expire the session");
}

/// Retries `op` while it fails with ConnectionLoss (a reconnect under
/// way), for at most `limit`; the first other outcome is returned.
///
/// # Panics
/// Still ConnectionLoss after `limit`.
pub async fn past_connection_loss<T, F, Fut>(limit: Duration, mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    tokio::time::timeout(limit, async {
        loop {
            match op().await {
                Err(Error::ConnectionLoss) => tokio::time::sleep(Duration::from_millis(50)).await,
                other => return other,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("still ConnectionLoss after {limit:?}"))
}

/// The value of the sample `series` (as Prometheus renders it, labels in
/// registration order) in the exposition `text`, or 0 when absent.
pub fn prometheus_sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == series).then(|| v.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}
