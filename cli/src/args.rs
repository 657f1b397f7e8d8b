//! Command-line arguments (clap derive): global connection options and one
//! struct per subcommand.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  ZooKeeper error (no node, node exists, bad version, not empty, not authorised, ...)
  2  usage error (bad arguments, invalid path, unreadable file)
  3  connection error (no server reachable, connection lost, session expired, authentication refused)

Environment:
  ZKIT_SERVER         connect string, as --server
  ZKIT_AUTH           digest credentials user:password, as --auth
  ZKIT_SASL_PASSWORD  SASL password, as --sasl-password";

/// A ZooKeeper command-line tool: basics with readable output, recipe
/// inspection (locks, leaders, queues, semaphores, barriers, delay queues,
/// services, members, jobs) and dump/restore of subtrees.
#[derive(Debug, Parser)]
#[command(
    name = "zkit",
    version,
    after_help = AFTER_HELP,
    max_term_width = 110,
    args_override_self = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options of every command: where to connect, how, and the output format.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection and output (every command)")]
pub(crate) struct Global {
    /// Connect string: `host:port[,host:port...][/chroot]`.
    #[arg(
        long,
        env = "ZKIT_SERVER",
        default_value = "127.0.0.1:2181",
        global = true
    )]
    pub(crate) server: String,

    /// Bound on connecting and on each request, e.g. `10s`, `500ms`, `2m`
    /// (a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration, global = true)]
    pub(crate) timeout: Duration,

    /// Digest credentials `user:password` added to the session (zkCli's
    /// `addauth digest`); may be repeated.
    #[arg(
        long,
        env = "ZKIT_AUTH",
        value_name = "USER:PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub(crate) auth: Vec<String>,

    /// PEM bundle of the CAs the servers' certificates chain to; connects
    /// over TLS (the servers' `secureClientPort`).
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) tls_ca: Option<PathBuf>,

    /// Client certificate chain (PEM) for mutual TLS; needs `--tls-key`.
    #[arg(long, value_name = "FILE", requires = "tls_key", global = true)]
    pub(crate) tls_cert: Option<PathBuf>,

    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert", global = true)]
    pub(crate) tls_key: Option<PathBuf>,

    /// Name to verify the servers' certificates against instead of the host
    /// dialled (ensembles reached by IP with one shared certificate name).
    #[arg(long, value_name = "NAME", global = true)]
    pub(crate) tls_server_name: Option<String>,

    /// SASL DIGEST-MD5 user (a JAAS `DigestLoginModule` user); needs
    /// `--sasl-password`.
    #[arg(long, value_name = "USER", requires = "sasl_password", global = true)]
    pub(crate) sasl_user: Option<String>,

    /// Password of `--sasl-user`.
    #[arg(
        long,
        env = "ZKIT_SASL_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub(crate) sasl_password: Option<String>,

    /// Machine-readable JSON on stdout instead of tables (stable field names).
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List the children of a node.
    Ls(LsArgs),
    /// Print a node's data (UTF-8 when printable, else hex).
    Get(GetArgs),
    /// Set a node's data.
    Set(SetArgs),
    /// Create a node.
    Create(CreateArgs),
    /// Delete a node (or a subtree with -r).
    Delete(DeleteArgs),
    /// Print a node's metadata.
    Stat(PathArg),
    /// Read or replace a node's ACL.
    #[command(subcommand)]
    Acl(AclCommand),
    /// Wait until the connected server has caught up with the leader for a path.
    Sync(PathArg),
    /// Print a subtree as an indented tree with data sizes and ephemeral owners.
    Tree(TreeArgs),
    /// Wait for a change of a node (one-shot), or stream every change under
    /// it (-r) until Ctrl-C.
    Watch(WatchArgs),
    /// Show a lock: holder and waiters in order, with their sessions (zkit,
    /// Curator and kazoo mutexes and read/write locks).
    Locks(PathArg),
    /// Show who leads an election and who takes part (leader latch and
    /// selector layouts).
    Leader(PathArg),
    /// Show a queue: depth, oldest item and its age, claims, waiting consumers.
    Queue(QueueArgs),
    /// Show a semaphore: leases held, the client taking one, the clients
    /// waiting, with their sessions.
    #[command(after_help = SEMAPHORE_AFTER_HELP)]
    Semaphore(SemaphoreArgs),
    /// Show a barrier (set or clear), or a double barrier's members and
    /// whether it is ready.
    #[command(after_help = BARRIER_AFTER_HELP)]
    Barrier(PathArg),
    /// Show a delay queue: items with their due times, how many are due
    /// now, the oldest, claims, waiting consumers.
    #[command(after_help = DELAY_QUEUE_AFTER_HELP)]
    DelayQueue(QueueArgs),
    /// Show registered services and their instances (Curator x-discovery layout).
    Services(ServicesArgs),
    /// Show the members of a group (Curator GroupMember layout).
    Members(PathArg),
    /// Show a scheduler's jobs: spec, paused/disabled shards, instances, last runs.
    Jobs(JobsArgs),
    /// Write a subtree (data, ACLs, stats, modes) as JSON to stdout.
    Dump(DumpArgs),
    /// Create a dumped subtree again, each node in its recorded mode
    /// (idempotent: existing nodes are updated).
    Restore(RestoreArgs),
}

/// The layout `semaphore` reads.
const SEMAPHORE_AFTER_HELP: &str = "\
Layout (zkit-recipes' Semaphore, Curator's InterProcessSemaphoreV2): a node per lease held or being
taken, PATH/leases/_c_<uuid>-lease-<seq>, and an internal lock, PATH/locks, whose holder is taking
a lease (its lease node waits until the count allows it) and whose other contenders wait. The number
of leases is not recorded in the layout: give it with --max-leases to see how many are free.";

/// The layouts `barrier` reads.
const BARRIER_AFTER_HELP: &str = "\
Layouts: a barrier (zkit-recipes' Barrier, Curator's DistributedBarrier) is set while the node PATH
exists. A double barrier (DoubleBarrier; Curator's DistributedDoubleBarrier, kazoo's) has an
ephemeral node per member under PATH and PATH/ready once the members it waits for have entered
(their number is not recorded). A node that had children and has none left is a double barrier
everyone left; one that never had any is a barrier that is set.";

/// The layout `delay-queue` reads.
const DELAY_QUEUE_AFTER_HELP: &str = "\
Layout (zkit-recipes' DelayQueue, Curator's DistributedDelayQueue): items
PATH/queue-|<due time, epoch ms in hex>|<seq>, taken in due-time order, holding Curator's item
framing (several items in a node from Curator's putMulti); zkit's claims
PATH/_claims|FFFFFFFFFFFF|/<item> and waiting consumers under PATH/_waiters|FFFFFFFFFFFF|. The
oldest is the item due first. Due times are the producers' clocks, compared with this host's.";

/// A single path.
#[derive(Debug, Args)]
pub(crate) struct PathArg {
    /// The node's path (relative to the chroot, if any).
    pub(crate) path: String,
}

/// `ls`.
#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// The node whose children to list.
    #[arg(default_value = "/")]
    pub(crate) path: String,
    /// List every descendant, as paths relative to PATH.
    #[arg(short = 'R', long)]
    pub(crate) recursive: bool,
    /// Show each child's version, size, children, owner and change time.
    #[arg(long)]
    pub(crate) stat: bool,
}

/// How `get` prints data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DataFormat {
    /// UTF-8 text when printable, else hex.
    Auto,
    /// Raw bytes, unchanged.
    Raw,
    /// Hex dump.
    Hex,
    /// Base64.
    Base64,
}

/// `get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The node to read.
    pub(crate) path: String,
    /// Also print the node's metadata (after the data).
    #[arg(long)]
    pub(crate) stat: bool,
    /// How to print the data.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) format: DataFormat,
}

/// Data given on the command line, from a file or from stdin.
#[derive(Debug, Args)]
pub(crate) struct DataArgs {
    /// The data as text (`-` reads stdin); empty when absent.
    pub(crate) data: Option<String>,
    /// Read the data from a file instead.
    #[arg(long, short = 'f', value_name = "FILE", conflicts_with = "data")]
    pub(crate) file: Option<PathBuf>,
}

/// `set`.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// The node to write.
    pub(crate) path: String,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Only if the node's data version is V (else exit 1, BadVersion).
    #[arg(long, short = 'v', value_name = "V")]
    pub(crate) version: Option<i32>,
}

/// `create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The node to create (for -s, the name prefix).
    pub(crate) path: String,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// Ephemeral: removed when this command's session ends, that is when
    /// zkit exits (useful to test ACLs and watches).
    #[arg(short = 'e', long, conflicts_with_all = ["container", "ttl"])]
    pub(crate) ephemeral: bool,
    /// Sequential: the server appends a 10-digit counter to the name.
    #[arg(short = 's', long, conflicts_with = "container")]
    pub(crate) sequential: bool,
    /// Container: removed by the server once its last child is gone.
    #[arg(short = 'c', long, conflicts_with = "ttl")]
    pub(crate) container: bool,
    /// Time to live in milliseconds: removed once unmodified and childless
    /// that long (needs `zookeeper.extendedTypesEnabled=true`).
    #[arg(long, value_name = "MS")]
    pub(crate) ttl: Option<u64>,
    /// Create missing parents (as persistent empty nodes).
    #[arg(short = 'p', long)]
    pub(crate) parents: bool,
    /// ACL, as `scheme:id:perms[,scheme:id:perms...]`
    /// (e.g. `world:anyone:r,digest:bob:Xg...=:cdrwa`,
    /// `x509:CN=app,O=corp:cdrwa`, `sasl:bob:cdrwa`); default open.
    #[arg(long, value_name = "ACL")]
    pub(crate) acl: Option<String>,
}

/// `delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The node to delete.
    pub(crate) path: String,
    /// Delete the node and every descendant.
    #[arg(short = 'r', long, conflicts_with = "version")]
    pub(crate) recursive: bool,
    /// Only if the node's data version is V (else exit 1, BadVersion).
    #[arg(long, short = 'v', value_name = "V")]
    pub(crate) version: Option<i32>,
}

/// `acl get` / `acl set`.
#[derive(Debug, Subcommand)]
pub(crate) enum AclCommand {
    /// Print a node's ACL.
    Get(PathArg),
    /// Replace a node's ACL.
    Set(AclSetArgs),
}

/// `acl set`.
#[derive(Debug, Args)]
pub(crate) struct AclSetArgs {
    /// The node.
    pub(crate) path: String,
    /// The new ACL: `scheme:id:perms[,scheme:id:perms...]`, perms from
    /// `cdrwa` (e.g. `world:anyone:r`, `digest:bob:Xg...=:cdrwa`, `auth::cdrwa`,
    /// `ip:10.0.0.0/8:r`, `sasl:bob:cdrwa`, `x509:CN=app,O=corp:cdrwa`).
    pub(crate) acl: String,
    /// Only if the node's ACL version is V (else exit 1, BadVersion).
    #[arg(long, short = 'v', value_name = "V")]
    pub(crate) version: Option<i32>,
}

/// `tree`.
#[derive(Debug, Args)]
pub(crate) struct TreeArgs {
    /// The subtree's root.
    #[arg(default_value = "/")]
    pub(crate) path: String,
    /// Descend at most this many levels below PATH.
    #[arg(long, short = 'd', value_name = "N")]
    pub(crate) depth: Option<usize>,
}

/// `watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The node to watch.
    pub(crate) path: String,
    /// Persistent recursive watch: print every change under PATH until
    /// Ctrl-C (or --count events).
    #[arg(short = 'r', long)]
    pub(crate) recursive: bool,
    /// With -r: stop after this many events.
    #[arg(long, value_name = "N", requires = "recursive")]
    pub(crate) count: Option<u64>,
}

/// `queue` and `delay-queue`.
#[derive(Debug, Args)]
pub(crate) struct QueueArgs {
    /// The queue's node.
    pub(crate) path: String,
    /// List at most this many items (from the head).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub(crate) limit: usize,
}

/// `semaphore`.
#[derive(Debug, Args)]
pub(crate) struct SemaphoreArgs {
    /// The semaphore's node.
    pub(crate) path: String,
    /// The semaphore's number of leases, to show how many are free: the
    /// layout does not record it (each participant is built with it).
    #[arg(long, value_name = "N")]
    pub(crate) max_leases: Option<usize>,
}

/// `services`.
#[derive(Debug, Args)]
pub(crate) struct ServicesArgs {
    /// The registry's base path (`<base>/<service>/<instance id>`).
    pub(crate) base: String,
    /// Show this service only.
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
}

/// `jobs`.
#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    /// The scheduler's root (`<root>/jobs/<job>`).
    pub(crate) root: String,
    /// Show this job only, with its whole kept run history.
    pub(crate) job: Option<String>,
}

/// `dump`.
#[derive(Debug, Args)]
#[command(after_help = DUMP_AFTER_HELP)]
pub(crate) struct DumpArgs {
    /// The subtree's root.
    pub(crate) path: String,
    /// Bound the reads to N operations per second.
    #[arg(long, value_name = "N")]
    pub(crate) rate: Option<u32>,
    /// Leave ephemeral nodes out (they are never restored anyway).
    #[arg(long)]
    pub(crate) no_ephemerals: bool,
    /// Record the nodes matching PATTERN as containers, for restore to
    /// create them so (`*` matches within one path segment, `**` across
    /// segments); may be repeated.
    #[arg(long = "container", value_name = "PATTERN")]
    pub(crate) containers: Vec<String>,
    /// Record the nodes matching PATTERN as TTL nodes with a TTL of MS
    /// milliseconds; may be repeated.
    #[arg(long = "ttl", value_name = "PATTERN=MS")]
    pub(crate) ttls: Vec<String>,
    /// No progress bar on stderr.
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
}

/// Why `dump` is told which nodes are containers and TTL nodes.
const DUMP_AFTER_HELP: &str = "\
Node modes: each node is recorded with its mode (\"persistent\", \"ephemeral\", \"container\" or
\"ttl\" with \"ttl_ms\"), and restore creates it in that mode. ZooKeeper shows clients a container or
TTL node as a plain persistent one (its Stat reads ephemeralOwner 0), so dump records those two
modes only for the nodes named with --container and --ttl, e.g.
  zkit dump /app --container '/app/locks/*' --ttl '/app/heartbeats/*=60000'
Ephemeral nodes are recorded (mode \"ephemeral\", with their owner in the stat) and never restored.";

/// `restore`.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The dump file (`-` reads stdin).
    pub(crate) file: PathBuf,
    /// Restore under this path instead of the dumped root.
    #[arg(long, value_name = "PATH")]
    pub(crate) to: Option<String>,
    /// Bound the writes to N operations per second.
    #[arg(long, value_name = "N")]
    pub(crate) rate: Option<u32>,
    /// No progress bar on stderr.
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
}

/// `10s`, `500ms`, `2m`, `1h` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.');
    let (num, unit) = split.map_or((s, ""), |i| s.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !(secs > 0.0 && secs < 1e9) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
