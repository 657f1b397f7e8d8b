//! A self-deleting temporary directory (the crate avoids a `tempfile` dependency).

use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Set to `1` to keep fixture directories (configs, data, logs) after the fixture drops.
pub(crate) const KEEP_ENV: &str = "ZKIT_KEEP_FIXTURE_DIRS";

/// A unique directory under [`env::temp_dir`], removed recursively on drop.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    pub(crate) fn new() -> io::Result<TempDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = env::temp_dir();
        let keep = env::var(KEEP_ENV).is_ok_and(|v| v == "1");
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("zkit-tc-{}-{n}-{nanos:08x}", process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path, keep }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the directory survives drop (`ZKIT_KEEP_FIXTURE_DIRS=1`).
    pub(crate) fn keep(&self) -> bool {
        self.keep
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            tracing::info!(dir = %self.path.display(), "keeping fixture directory ({KEEP_ENV}=1)");
        } else if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %e, "cannot remove fixture directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_is_unique_and_removed_on_drop() {
        let a = TempDir::new().unwrap();
        let b = TempDir::new().unwrap();
        assert_ne!(a.path(), b.path());
        fs::create_dir_all(a.path().join("x/y")).unwrap();
        fs::write(a.path().join("x/y/z"), b"data").unwrap();
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists() || env::var(KEEP_ENV).is_ok_and(|v| v == "1"));
    }
}
