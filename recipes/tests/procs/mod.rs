//! Worker processes for the multi-process proofs: the test binary runs
//! itself again with one ignored test selected (the worker), which reads
//! its settings from an environment variable and reports on stdout.
#![allow(dead_code, unreachable_pub)]

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Wall-clock epoch milliseconds (one machine: one clock for every worker).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .try_into()
        .unwrap()
}

/// In a worker: its settings `(connect string, root path, id)` from `env`
/// (`None` when this is not a worker run: the test then does nothing).
pub fn worker_settings(env: &str) -> Option<(String, String, String)> {
    let cfg = std::env::var(env).ok()?;
    let mut parts = cfg.splitn(3, '|').map(str::to_string);
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// Worker processes by index, their stdout lines merged into one channel
/// as `(index, line)`.
pub struct Workers {
    /// The ignored test that is the worker.
    test: &'static str,
    /// The environment variable that carries its settings.
    env: &'static str,
    children: Vec<Option<Child>>,
    lines: mpsc::UnboundedSender<(usize, String)>,
}

impl Workers {
    /// Room for `n` workers; their lines arrive on the returned receiver.
    pub fn new(
        test: &'static str,
        env: &'static str,
        n: usize,
    ) -> (Self, mpsc::UnboundedReceiver<(usize, String)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let w = Self {
            test,
            env,
            children: (0..n).map(|_| None).collect(),
            lines: tx,
        };
        (w, rx)
    }

    /// Starts worker `i` with `settings` in its environment variable.
    pub fn spawn(&mut self, i: usize, settings: &str) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                self.test,
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(self.env, settings)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn a worker");
        let out = child.stdout.take().unwrap();
        let tx = self.lines.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                // libtest prints "test <name> ... " before the worker's first
                // line, on the same line.
                let l = match l.split_once(" ... ") {
                    Some((head, rest)) if head.starts_with("test ") => rest.to_string(),
                    _ => l,
                };
                let _ = tx.send((i, l));
            }
        });
        self.children[i] = Some(child);
    }

    /// Sends `sig` (`-STOP`, `-CONT`, `-TERM`) to worker `i`, if running.
    pub fn signal(&self, i: usize, sig: &str) {
        if let Some(pid) = self.children[i].as_ref().and_then(Child::id) {
            let ok = std::process::Command::new("kill")
                .args([sig, &pid.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "kill {sig} {pid}");
        }
    }

    /// SIGKILLs worker `i`.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill().await;
        }
    }

    /// SIGTERMs worker `i` and waits (up to 10 s) for it to exit.
    pub async fn terminate(&mut self, i: usize) {
        self.signal(i, "-TERM");
        if let Some(mut c) = self.children[i].take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
        }
    }
}
