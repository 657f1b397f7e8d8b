//! A `sh` helper that SIGKILLs the fixture's JVMs if the test process dies without dropping
//! the [`Ensemble`](crate::Ensemble): killed by a signal, `std::process::exit`, or an
//! `Ensemble` kept in a `static` (statics are never dropped).
//!
//! The helper reads `add <pid>` lines from a pipe. A clean drop writes `done` and it exits
//! doing nothing; end-of-file (the test process is gone, the kernel closed the pipe) makes it
//! kill every recorded pid whose command line still names the fixture directory (pids are
//! recycled) and delete the directory.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};

const SCRIPT: &str = r#"
dir=$1 keep=$2 pids=
while read -r cmd arg; do
  case $cmd in
    add) pids="$pids $arg" ;;
    done) exit 0 ;;
  esac
done
for p in $pids; do
  case $(ps -ww -o args= -p "$p" 2>/dev/null) in
    *"$dir"*) kill -9 "$p" 2>/dev/null ;;
  esac
done
if [ "$keep" != 1 ]; then sleep 1; rm -rf "$dir"; fi
"#;

#[derive(Debug)]
pub(crate) struct Watchdog {
    process: Mutex<Child>,
}

impl Watchdog {
    pub(crate) fn spawn(dir: &Path, keep: bool) -> io::Result<Watchdog> {
        let process = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("zkit-testcontainers-watchdog")
            .arg(dir)
            .arg(if keep { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Watchdog {
            process: Mutex::new(process),
        })
    }

    /// Records a JVM to kill should the test process die.
    pub(crate) fn watch(&self, pid: u32) {
        let mut process = self.process.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stdin) = process.stdin.as_mut() {
            if let Err(e) = writeln!(stdin, "add {pid}") {
                tracing::warn!(error = %e, "fixture watchdog is gone; JVMs may leak if the test process dies");
            }
        }
    }

    /// Tells the helper the fixture cleaned up after itself, and reaps it.
    pub(crate) fn disarm(&self) {
        let mut process = self.process.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut stdin) = process.stdin.take() {
            let _ = stdin.write_all(b"done\n");
        }
        let _ = process.wait();
    }
}
