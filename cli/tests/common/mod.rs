//! Fixture for the CLI tests: one server per test binary, chosen by
//! `ZKIT_TEST_BACKEND` ([`zkit_testcontainers::TestBackend`]): the
//! in-process `zkit_server` by default, a real ZooKeeper 3.8 standalone
//! process with `zookeeper`. Each test works under its own root, reached
//! through a chroot, so outputs name stable paths.
#![allow(dead_code, unreachable_pub)]

use std::process::{ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use zkit::{Client, CreateOptions};
use zkit_testcontainers::{Ensemble, TestBackend};

const TICK: Duration = Duration::from_millis(200);

struct Shared {
    connect: String,
    /// Real ZooKeeper: closing this pipe at exit makes a watchdog kill it.
    _watchdog: Option<Mutex<ChildStdin>>,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

fn shared() -> &'static Shared {
    match SHARED.get_or_init(start) {
        Ok(s) => s,
        Err(e) => panic!("cannot start the test server: {e}"),
    }
}

fn start() -> Result<Shared, String> {
    let real = TestBackend::from_env() == TestBackend::ZooKeeper;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("zk-fixture".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("fixture runtime");
            rt.block_on(async move {
                if real {
                    match Ensemble::builder().size(1).tick_time(TICK).start().await {
                        Ok(zk) => {
                            let pid = zk.pid(0).expect("running");
                            let dir = zk.root_dir().to_path_buf();
                            let _ = tx.send(Ok((zk.connect_string(), Some((pid, dir)))));
                            std::future::pending::<()>().await;
                            drop(zk);
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                } else {
                    match zkit_server::Server::builder().tick_time(TICK).start().await {
                        Ok(server) => {
                            let _ = tx.send(Ok((server.connect_string(), None)));
                            std::future::pending::<()>().await;
                            drop(server);
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                }
            });
        })
        .map_err(|e| format!("spawn fixture thread: {e}"))?;
    let (connect, process) = rx.recv().map_err(|_| "fixture thread died".to_string())??;
    let watchdog = match process {
        None => None,
        Some((pid, dir)) => {
            let mut child = Command::new("sh")
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
            Some(Mutex::new(child.stdin.take().expect("piped")))
        }
    };
    Ok(Shared {
        connect,
        _watchdog: watchdog,
    })
}

/// `host:port` of the server.
pub fn hosts() -> String {
    shared().connect.clone()
}

/// A fresh, empty root for one test: `/cli-<name>-<nanos>`.
pub async fn fresh_root(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let root = format!("/cli-{name}-{nanos}");
    let zk = client("").await;
    zk.create(&root, b"", &CreateOptions::default())
        .await
        .unwrap();
    zk.close().await.unwrap();
    root
}

/// A session on the server, under `chroot` (`""` for none).
pub async fn client(chroot: &str) -> Client {
    tokio::time::timeout(
        Duration::from_secs(10),
        Client::connect(&format!("{}{chroot}", hosts())),
    )
    .await
    .expect("connect in time")
    .expect("connect")
}

/// The result of one `zkit` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "zkit failed: {self:#?}");
        self.stdout
    }

    /// Parses stdout as JSON, asserting success.
    #[track_caller]
    pub fn json(self) -> serde_json::Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

/// The `zkit` command against the server under `chroot`.
pub fn zkit_cmd(chroot: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zkit"));
    c.env("ZKIT_SERVER", format!("{}{chroot}", hosts()))
        .env_remove("ZKIT_AUTH")
        .env_remove("ZKIT_SASL_PASSWORD")
        .arg("--timeout")
        .arg("10s");
    c
}

/// Runs `zkit args...` under `chroot` (stdin empty), off the async runtime.
pub async fn zkit(chroot: &str, args: &[&str]) -> Run {
    let mut c = zkit_cmd(chroot);
    c.args(args);
    run(c).await
}

/// The `zkit` command with no server given and no `ZKIT_*` variable
/// inherited, for tests that bring their own server (`--server`).
pub fn zkit_bare() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zkit"));
    for var in ["ZKIT_SERVER", "ZKIT_AUTH", "ZKIT_SASL_PASSWORD"] {
        c.env_remove(var);
    }
    c
}

/// Runs a `zkit` command (stdin empty), off the async runtime.
pub async fn run(mut c: Command) -> Run {
    c.stdin(Stdio::null());
    tokio::task::spawn_blocking(move || Run::from(c.output().expect("run zkit")))
        .await
        .unwrap()
}

/// Replaces what changes between runs: session ids (`0x` and 6+ hex
/// digits) by `<session>`, timestamps by `<time>`, ages (`12s`, `850ms`,
/// `5m3s`) by `<age>`; then collapses runs of spaces to two (column widths
/// follow the replaced values) and trims line ends.
pub fn normalise_table(text: &str) -> String {
    normalise_with(text, true)
}

/// As [`normalise_table`], keeping spaces as they are (trees).
pub fn normalise(text: &str) -> String {
    normalise_with(text, false)
}

fn normalise_with(text: &str, collapse: bool) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let words: Vec<String> = line
            .split(' ')
            .map(|w| {
                let (lead, core, tail) = split_punct(w);
                let replaced = if is_session(core) {
                    "<session>".to_string()
                } else if is_time(core) {
                    "<time>".to_string()
                } else if is_age(core) {
                    "<age>".to_string()
                } else {
                    core.to_string()
                };
                format!("{lead}{replaced}{tail}")
            })
            .collect();
        let mut joined = words.join(" ");
        while collapse && joined.contains("   ") {
            joined = joined.replace("   ", "  ");
        }
        out.push_str(joined.trim_end());
        out.push('\n');
    }
    out
}

/// Opening bracket, word, trailing punctuation.
fn split_punct(w: &str) -> (&str, &str, &str) {
    let start = w.len() - w.trim_start_matches('(').len();
    let (lead, rest) = w.split_at(start);
    let end = rest.trim_end_matches([',', ')', ';']).len();
    let (core, tail) = rest.split_at(end);
    (lead, core, tail)
}

fn is_session(w: &str) -> bool {
    w.strip_prefix("0x")
        .is_some_and(|h| h.len() >= 6 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_time(w: &str) -> bool {
    w.len() == 24 && w.ends_with('Z') && w.as_bytes()[10] == b'T'
}

fn is_age(w: &str) -> bool {
    let units = w.trim_start_matches(|c: char| c.is_ascii_digit());
    w.len() > units.len() && matches!(units, "ms" | "s")
        || (w.contains('m')
            && w.ends_with('s')
            && w.bytes().next().is_some_and(|b| b.is_ascii_digit())
            && w.trim_end_matches('s')
                .split('m')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
}
