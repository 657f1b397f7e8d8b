//! `zkit-server`: runs the bundled ZooKeeper-compatible server, durable with
//! a data directory, in-memory without.
//!
//! ```text
//! zkit-server [--listen ADDR] [--tick-time MS] [--config zoo.cfg]
//!             [--four-letter-words LIST] [--data-dir DIR]
//!             [--import-zookeeper ZK_DATA_DIR]
//! ```
//!
//! Flags override the config file. Prints `listening on ADDR` once bound,
//! and shuts down gracefully on SIGINT/SIGTERM (exit status 0).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use zkit_server::{Config, ConfigError, FourLetterWords, ServerBuilder};

/// The binary's allocator. Every request allocates a few small buffers
/// (its path, its reply frame, a node's name and data), freed soon after,
/// often on another worker thread: glibc's malloc and free were a quarter
/// of the server's instructions under a create/delete load, mimalloc's
/// cost a fraction of that (README, "Client efficiency"). Built without
/// transparent huge pages (`no_thp`): with them, memory mimalloc gave back
/// was zeroed again 2 MiB at a time when reused, inside a request holding
/// the server's lock. A program that embeds the server library keeps its
/// own allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
Usage: zkit-server [OPTIONS]

Runs a single-node ZooKeeper-compatible server: durable with a data
directory, in-memory without one.

Options:
  --listen ADDR               address to listen on, e.g. 127.0.0.1:2181
                              (default: clientPortAddress:clientPort from the
                              config, else 0.0.0.0:2181 like ZooKeeper)
  --tick-time MS              tickTime in milliseconds (default 2000)
  --config FILE               read settings from a ZooKeeper zoo.cfg
  --four-letter-words LIST    comma-separated 4lw whitelist, `*` = all
                              (default: srvr)
  --jaas FILE                 SASL DIGEST-MD5 users from this JAAS file's
                              Server section (ZooKeeper's
                              -Djava.security.auth.login.config)
  --data-dir DIR              persist here (snapshots and transaction log;
                              recovered at start); default: in-memory
  --import-zookeeper DIR      start from a copy of a ZooKeeper 3.8 data
                              directory (its dataDir, holding version-2/:
                              newest snapshot + transaction logs); into
                              --data-dir when given (which must hold no
                              zkit state yet), else into a temporary
                              directory removed at exit
  -h, --help                  print this help

Flags override the config file. Log verbosity: RUST_LOG (default info).
";

/// Parsed command line.
#[derive(Debug, Default)]
struct Args {
    listen: Option<SocketAddr>,
    tick_time: Option<u64>,
    config: Option<PathBuf>,
    four_letter_words: Option<String>,
    data_dir: Option<PathBuf>,
    jaas: Option<PathBuf>,
    import_zookeeper: Option<PathBuf>,
    help: bool,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args::default();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            args.help = true;
            continue;
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                args.listen = Some(
                    v.parse()
                        .map_err(|_| format!("--listen: not an IP:port address: {v:?}"))?,
                );
            }
            "--tick-time" => {
                let v = value()?;
                let ms: u64 = v
                    .parse()
                    .ok()
                    .filter(|&ms| ms > 0 && ms <= i32::MAX as u64)
                    .ok_or_else(|| format!("--tick-time: not a positive number of ms: {v:?}"))?;
                args.tick_time = Some(ms);
            }
            "--config" => args.config = Some(PathBuf::from(value()?)),
            "--four-letter-words" => args.four_letter_words = Some(value()?),
            "--data-dir" => args.data_dir = Some(PathBuf::from(value()?)),
            "--jaas" => args.jaas = Some(PathBuf::from(value()?)),
            "--import-zookeeper" => args.import_zookeeper = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// The config file (if any) with the flags applied on top.
fn effective_config(args: &Args) -> Result<Config, String> {
    let mut cfg = match &args.config {
        Some(path) => Config::from_file(path).map_err(|e| match e {
            ConfigError::Io { .. } => e.to_string(),
            ConfigError::Invalid { .. } => format!("{}: {e}", path.display()),
        })?,
        None => Config::default(),
    };
    if let Some(addr) = args.listen {
        cfg.client_port_address = Some(addr.ip());
        cfg.client_port = Some(addr.port());
    }
    if let Some(ms) = args.tick_time {
        cfg.tick_time = Some(Duration::from_millis(ms));
    }
    if let Some(list) = &args.four_letter_words {
        cfg.four_letter_words = Some(FourLetterWords::parse(list));
    }
    if let Some(dir) = &args.data_dir {
        cfg.data_dir = Some(dir.clone());
    }
    Ok(cfg)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("zkit-server: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut cfg = match effective_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zkit-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Removed at exit when the import went to a temporary directory.
    let mut scratch = None;
    if let Some(zk_dir) = &args.import_zookeeper {
        match import_zookeeper(zk_dir, &mut cfg) {
            Ok(tmp) => scratch = tmp,
            Err(e) => {
                eprintln!("zkit-server: --import-zookeeper: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let code = run(&args, &cfg).await;
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    code
}

/// Loads a ZooKeeper data directory into the configured data directory, or
/// into a new temporary one (returned, and set in `cfg`).
fn import_zookeeper(zk_dir: &std::path::Path, cfg: &mut Config) -> Result<Option<PathBuf>, String> {
    let state = zkit_server::import::load_zookeeper_dir(zk_dir).map_err(|e| e.to_string())?;
    for w in &state.warnings {
        tracing::warn!("import: {w}");
    }
    let mut scratch = None;
    let target = match &cfg.data_dir {
        Some(d) => d.clone(),
        None => {
            let d = std::env::temp_dir().join(format!("zkit-import-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            cfg.data_dir = Some(d.clone());
            scratch = Some(d.clone());
            d
        }
    };
    let written = state.write_data_dir(&target, cfg.data_log_dir.as_deref());
    if let Err(e) = written {
        if let Some(d) = &scratch {
            let _ = std::fs::remove_dir_all(d);
        }
        return Err(e.to_string());
    }
    tracing::info!(
        from = %state.snapshot.display(),
        replayed = state.replayed,
        zxid = format_args!("{:#x}", state.zxid),
        znodes = state.tree.node_count(),
        sessions = state.sessions.len(),
        into = %target.display(),
        "imported ZooKeeper data"
    );
    Ok(scratch)
}

async fn run(args: &Args, cfg: &Config) -> ExitCode {
    let mut builder = ServerBuilder::from_config(cfg);
    if let Some(jaas) = &args.jaas {
        match zkit_server::SaslUsers::from_jaas_file(jaas) {
            Ok(users) => builder = builder.sasl(users),
            Err(e) => {
                eprintln!("zkit-server: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let server = match builder.start().await {
        Ok(s) => s,
        Err(e) => {
            match &cfg.data_dir {
                Some(dir) => eprintln!(
                    "zkit-server: cannot start on {} with data directory {}: {e}",
                    cfg.listen_addr(),
                    dir.display()
                ),
                None => eprintln!("zkit-server: cannot listen on {}: {e}", cfg.listen_addr()),
            }
            return ExitCode::FAILURE;
        }
    };
    println!("zkit-server listening on {}", server.local_addr());
    if let Some(secure) = server.secure_addr() {
        println!("zkit-server listening on {secure} (TLS)");
    }
    let _ = std::io::stdout().flush();
    match &cfg.data_dir {
        Some(dir) => tracing::info!(
            addr = %server.local_addr(),
            data_dir = %dir.display(),
            "durable server started"
        ),
        None => tracing::info!(
            addr = %server.local_addr(),
            "in-memory server started (data is lost at exit)"
        ),
    }
    let failed = tokio::select! {
        () = shutdown_signal() => false,
        () = server.stopped() => true,
    };
    if failed {
        tracing::error!("the server stopped: its transaction log could not be written; exiting");
        server.shutdown().await;
        eprintln!("zkit-server: stopped: the transaction log could not be written (see the log)");
        return ExitCode::FAILURE;
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_parse_and_override_defaults() {
        let a = args(&["--listen", "127.0.0.1:2999", "--tick-time=50"]).unwrap();
        let cfg = effective_config(&a).unwrap();
        assert_eq!(cfg.listen_addr(), "127.0.0.1:2999".parse().unwrap());
        assert_eq!(cfg.tick_time, Some(Duration::from_millis(50)));
        assert!(args(&["--help"]).unwrap().help);
        assert!(args(&["--bogus"]).is_err());
        assert!(args(&["--listen"]).is_err());
        assert!(args(&["--tick-time", "0"]).is_err());
    }

    #[test]
    fn data_dir_flag_overrides_the_config() {
        let a = args(&["--data-dir", "/tmp/zk"]).unwrap();
        let cfg = effective_config(&a).unwrap();
        assert_eq!(cfg.data_dir, Some(PathBuf::from("/tmp/zk")));
    }

    #[test]
    fn import_flag_parses() {
        let a = args(&["--import-zookeeper", "/var/lib/zookeeper"]).unwrap();
        assert_eq!(
            a.import_zookeeper,
            Some(PathBuf::from("/var/lib/zookeeper"))
        );
        assert!(args(&["--import-zookeeper"]).is_err());
    }
}
