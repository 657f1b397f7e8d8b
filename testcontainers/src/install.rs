//! Locating Java and the ZooKeeper jars.
//!
//! Order, following redis-test's "binary override" idea: an explicit builder setting, then
//! `ZKIT_ZOOKEEPER_CLASSPATH`, then `ZOOKEEPER_HOME` (upstream tarball layout), then the Debian
//! `zookeeper`/`libzookeeper-java` layout under `/usr/share/java`.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::FixtureError;

/// Environment variable holding a complete Java classpath for the ZooKeeper server.
pub const CLASSPATH_ENV: &str = "ZKIT_ZOOKEEPER_CLASSPATH";

/// Directory holding the Debian jars.
const DEBIAN_JAVA_DIR: &str = "/usr/share/java";

/// `zookeeper.jar` carries a `Class-Path` manifest entry naming its other dependencies
/// (jute, netty, slf4j-api, ...). It does *not* name an slf4j binding: Debian's own
/// `zkEnv.sh` runs the server with slf4j's no-op logger. We add the log4j 1.2 binding so the
/// member log files are actually written.
const DEBIAN_REQUIRED: &[&str] = &["zookeeper.jar"];
const DEBIAN_LOGGING: &[&str] = &["slf4j-log4j12.jar", "log4j-1.2.jar"];
/// Netty jars the `Class-Path` of Debian's `zookeeper.jar` leaves out although its Netty
/// server (`serverCnxnFactory=...NettyServerCnxnFactory`, needed for TLS) uses them
/// (../shared/SECURITY.md §4.0): added when present.
const DEBIAN_NETTY: &[&str] = &["netty-codec.jar", "netty-resolver.jar"];

/// Resolved `java` executable plus classpath.
#[derive(Debug, Clone)]
pub(crate) struct Installation {
    /// `java`, or the zkit-server binary when `bundled`.
    pub(crate) java: PathBuf,
    pub(crate) classpath: OsString,
    pub(crate) bundled: bool,
}

/// Environment variable naming the `zkit-server` binary for [`crate::Backend::Bundled`].
pub const SERVER_BIN_ENV: &str = "ZKIT_SERVER_BIN";

impl Installation {
    /// The zkit-server binary: `ZKIT_SERVER_BIN`, else built from this workspace (once per
    /// process, so it is never stale), else `zkit-server` on `PATH`. Blocking.
    pub(crate) fn bundled() -> Result<Installation, FixtureError> {
        static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
        let bin = if let Some(bin) = env::var_os(SERVER_BIN_ENV).filter(|b| !b.is_empty()) {
            let bin = PathBuf::from(bin);
            if !bin.is_file() {
                return Err(FixtureError::NotInstalled(format!(
                    "{SERVER_BIN_ENV}={} does not exist",
                    bin.display()
                )));
            }
            bin
        } else {
            BUILT
                .get_or_init(build_workspace_server)
                .clone()
                .or_else(|build_error| {
                    env::var_os("PATH")
                        .iter()
                        .flat_map(env::split_paths)
                        .map(|dir| dir.join("zkit-server"))
                        .find(|bin| bin.is_file())
                        .ok_or_else(|| {
                            format!("zkit-server not found: {build_error}; set {SERVER_BIN_ENV}")
                        })
                })
                .map_err(FixtureError::NotInstalled)?
        };
        Ok(Installation {
            java: bin,
            classpath: OsString::new(),
            bundled: true,
        })
    }

    /// Resolves Java and the jars, reporting everything that is missing in one error.
    pub(crate) fn resolve(
        java: Option<&Path>,
        classpath: Option<&str>,
    ) -> Result<Installation, FixtureError> {
        let java = resolve_java(java);
        let classpath = resolve_classpath(classpath);
        match (java, classpath) {
            (Ok(java), Ok(classpath)) => Ok(Installation {
                java,
                classpath,
                bundled: false,
            }),
            (Err(a), Err(b)) => Err(FixtureError::NotInstalled(format!("{a}; {b}"))),
            (Err(e), _) | (_, Err(e)) => Err(FixtureError::NotInstalled(e)),
        }
    }
}

fn resolve_java(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(java) = explicit {
        return if java.is_file() {
            Ok(java.to_path_buf())
        } else {
            Err(format!("Java not found: {} does not exist", java.display()))
        };
    }
    if let Some(home) = env::var_os("JAVA_HOME").filter(|h| !h.is_empty()) {
        let java = Path::new(&home).join("bin").join("java");
        return if java.is_file() {
            Ok(java)
        } else {
            Err(format!(
                "Java not found: JAVA_HOME is {} but {} does not exist",
                Path::new(&home).display(),
                java.display()
            ))
        };
    }
    env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join("java"))
        .find(|java| java.is_file())
        .ok_or_else(|| "Java not found: JAVA_HOME is unset and there is no `java` on PATH".into())
}

fn resolve_classpath(explicit: Option<&str>) -> Result<OsString, String> {
    if let Some(cp) = explicit {
        return check_classpath(cp, "the builder's classpath");
    }
    if let Some(cp) = env::var(CLASSPATH_ENV).ok().filter(|cp| !cp.is_empty()) {
        return check_classpath(&cp, CLASSPATH_ENV);
    }
    if let Some(home) = env::var_os("ZOOKEEPER_HOME").filter(|h| !h.is_empty()) {
        return zookeeper_home_classpath(Path::new(&home));
    }
    debian_classpath(Path::new(DEBIAN_JAVA_DIR))
}

/// Checks that every entry of an explicit classpath exists (`dir/*` wildcards: the directory).
fn check_classpath(cp: &str, origin: &str) -> Result<OsString, String> {
    let missing: Vec<&str> = cp
        .split(':')
        .filter(|raw| !raw.is_empty())
        .filter(|raw| {
            let path = Path::new(raw);
            let path = match raw.strip_suffix("/*") {
                Some(dir) => Path::new(dir),
                None => path,
            };
            !path.exists()
        })
        .collect();
    if missing.is_empty() {
        Ok(cp.into())
    } else {
        Err(format!(
            "ZooKeeper jars not found: {} entries do not exist: {}",
            origin,
            missing.join(", ")
        ))
    }
}

/// Upstream binary tarball: `$ZOOKEEPER_HOME/lib/*.jar` (server, jute, netty, slf4j, logback)
/// and `$ZOOKEEPER_HOME/*.jar` (some layouts keep the server jar at the top).
pub(crate) fn zookeeper_home_classpath(home: &Path) -> Result<OsString, String> {
    let mut jars = Vec::new();
    for dir in [home.to_path_buf(), home.join("lib")] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        jars.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "jar") && p.is_file()),
        );
    }
    jars.sort();
    let has_server = jars.iter().any(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("zookeeper") && !n.starts_with("zookeeper-jute"))
    });
    if !has_server {
        return Err(format!(
            "ZooKeeper jars not found: ZOOKEEPER_HOME is {} but neither it nor its lib/ holds a zookeeper*.jar",
            home.display()
        ));
    }
    env::join_paths(jars).map_err(|e| format!("ZOOKEEPER_HOME classpath: {e}"))
}

pub(crate) fn debian_classpath(dir: &Path) -> Result<OsString, String> {
    let missing: Vec<String> = DEBIAN_REQUIRED
        .iter()
        .map(|jar| dir.join(jar))
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "ZooKeeper jars not found: {} missing (Debian package `zookeeper`), and neither {} nor ZOOKEEPER_HOME is set",
            missing.join(", "),
            CLASSPATH_ENV
        ));
    }
    let jars = DEBIAN_REQUIRED
        .iter()
        .chain(DEBIAN_LOGGING)
        .chain(DEBIAN_NETTY)
        .map(|jar| dir.join(jar))
        .filter(|p| p.is_file());
    env::join_paths(jars).map_err(|e| format!("Debian classpath: {e}"))
}

/// Builds `zkit-server` from the workspace this crate sits in (debug profile) and returns
/// the binary's path.
fn build_workspace_server() -> Result<PathBuf, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = workspace.join("Cargo.toml");
    if !workspace.join("server").join("Cargo.toml").is_file() {
        return Err("not inside the zkit workspace".into());
    }
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "zkit-server",
            "--bin",
            "zkit-server",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build -p zkit-server failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_absolute() {
                t
            } else {
                workspace.join(t)
            }
        })
        .unwrap_or_else(|| workspace.join("target"));
    let bin = target.join("debug").join("zkit-server");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "built zkit-server, but {} is missing",
            bin.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_java_that_does_not_exist_is_reported() {
        let err = resolve_java(Some(Path::new("/nonexistent/bin/java"))).unwrap_err();
        assert!(err.contains("/nonexistent/bin/java"), "{err}");
    }

    #[test]
    fn explicit_classpath_names_missing_entries() {
        let err = check_classpath("/nonexistent/a.jar:/tmp:/nonexistent/lib/*", "X").unwrap_err();
        assert!(err.contains("/nonexistent/a.jar"), "{err}");
        assert!(err.contains("/nonexistent/lib/*"), "{err}");
        assert!(!err.contains("/tmp,"), "{err}");
        assert!(check_classpath("/tmp:/tmp/*", "X").is_ok());
    }

    #[test]
    fn zookeeper_home_collects_lib_jars() {
        let dir = crate::tempdir::TempDir::new().unwrap();
        let home = dir.path();
        fs::create_dir(home.join("lib")).unwrap();
        assert!(zookeeper_home_classpath(home).is_err());
        fs::write(home.join("lib/zookeeper-jute-3.8.4.jar"), b"").unwrap();
        assert!(zookeeper_home_classpath(home).is_err());
        fs::write(home.join("lib/zookeeper-3.8.4.jar"), b"").unwrap();
        fs::write(home.join("lib/netty-handler.jar"), b"").unwrap();
        fs::write(home.join("lib/README.txt"), b"").unwrap();
        let cp = zookeeper_home_classpath(home).unwrap();
        let cp = cp.to_str().unwrap();
        assert_eq!(cp.split(':').count(), 3, "{cp}");
        assert!(!cp.contains("README"));
    }

    #[test]
    fn debian_layout_requires_the_server_jar() {
        let dir = crate::tempdir::TempDir::new().unwrap();
        let err = debian_classpath(dir.path()).unwrap_err();
        assert!(err.contains("zookeeper.jar"), "{err}");
        fs::write(dir.path().join("zookeeper.jar"), b"").unwrap();
        fs::write(dir.path().join("log4j-1.2.jar"), b"").unwrap();
        let cp = debian_classpath(dir.path()).unwrap();
        assert_eq!(cp.to_str().unwrap().split(':').count(), 2);
    }
}
