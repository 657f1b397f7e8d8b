//! `zkit`: a ZooKeeper command-line tool.
//!
//! ZooKeeper basics with readable output (`ls`, `get`, `set`, `create`,
//! `delete`, `stat`, `acl`, `sync`, `tree`, `watch`), inspection of the
//! recipes' znode layouts shared by zkit, Curator and kazoo (`locks`,
//! `leader`, `queue`, `semaphore`, `barrier`, `delay-queue`, `services`,
//! `members`, `jobs`), and `dump` / `restore` of subtrees as JSON. Human
//! tables by default, `--json` for scripts.
//!
//! Exit codes: 0 success, 1 ZooKeeper error (no node, bad version, not
//! authorised, ...), 2 usage error (bad arguments, invalid path), 3 no
//! connection (no server reachable, connection lost, session expired,
//! authentication refused).

mod args;
mod basic;
mod conn;
mod dump;
mod error;
mod inspect;
mod output;
mod watch;

use clap::Parser;

use crate::args::{AclCommand, Cli, Command};
use crate::error::CliError;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zkit: cannot start the runtime: {e}");
            return std::process::ExitCode::from(error::EXIT_CONNECTION);
        }
    };
    let result = runtime.block_on(run(cli));
    // Background tasks (the session's driver) end with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zkit: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let out = output::Out::new(cli.global.json);
    let zk = conn::connect(&cli.global).await?;
    let ctx = conn::Ctx {
        zk,
        server: cli.global.server.clone(),
        out,
    };
    let result = dispatch(&ctx, cli.command).await;
    // Close the session now so that its ephemerals (`create -e`) and
    // watches go at once, not after the session timeout.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), ctx.zk.clone().close()).await;
    result
}

async fn dispatch(ctx: &conn::Ctx, command: Command) -> Result<(), CliError> {
    match command {
        Command::Ls(a) => basic::ls(ctx, a).await,
        Command::Get(a) => basic::get(ctx, a).await,
        Command::Set(a) => basic::set(ctx, a).await,
        Command::Create(a) => basic::create(ctx, a).await,
        Command::Delete(a) => basic::delete(ctx, a).await,
        Command::Stat(a) => basic::stat(ctx, a).await,
        Command::Acl(AclCommand::Get(a)) => basic::acl_get(ctx, a).await,
        Command::Acl(AclCommand::Set(a)) => basic::acl_set(ctx, a).await,
        Command::Sync(a) => basic::sync(ctx, a).await,
        Command::Tree(a) => basic::tree(ctx, a).await,
        Command::Watch(a) => watch::watch(ctx, a).await,
        Command::Locks(a) => inspect::locks(ctx, a).await,
        Command::Leader(a) => inspect::leader(ctx, a).await,
        Command::Queue(a) => inspect::queue(ctx, a).await,
        Command::Semaphore(a) => inspect::semaphore(ctx, a).await,
        Command::Barrier(a) => inspect::barrier(ctx, a).await,
        Command::DelayQueue(a) => inspect::delay_queue(ctx, a).await,
        Command::Services(a) => inspect::services(ctx, a).await,
        Command::Members(a) => inspect::members(ctx, a).await,
        Command::Jobs(a) => inspect::jobs(ctx, a).await,
        Command::Dump(a) => dump::dump(ctx, a).await,
        Command::Restore(a) => dump::restore(ctx, a).await,
    }
}
