//! Scheduled jobs shared out across live instances: every fire of every
//! shard runs once, on one instance, with a durable record that it ran.
//!
//! A job is a schedule (a cron expression or a fixed interval) and a number
//! of shards. Its definition lives in ZooKeeper ([`Jobs::define`]), so every
//! instance agrees on it, and any instance (or an operator with zkCli) can
//! define, pause, trigger or remove it. Each instance runs a [`Scheduler`]
//! with a handler per job it can run; the shards of a job are shared out
//! among the live instances that can run it by a [`Partitioner`] (a lock
//! per shard), and the owner of a shard runs each of its fires.
//!
//! **Exactly once, durably.** A fire of a shard starts by creating its run
//! record, fenced by the shard's lock, and ends by completing that record,
//! fenced again: a record exists at most once per (job, fire time, shard),
//! a fire whose record says it ran is never run again, and a stale owner
//! (an instance paused past its session timeout) can neither start nor
//! complete a fire. A fire whose owner died mid-run (its record still says
//! running) is run again by the shard's next owner as soon as it takes the
//! shard: within the session timeout plus a scheduling tick of the death.
//! The job's own writes go through the same fence
//! ([`JobContext::guarded`]).
//!
//! **Misfires.** A fire is missed when no instance could run it in time
//! (all down, the job paused, the shard disabled, the owner dead): more than
//! [`JobSpec::misfire_threshold`] late. [`Misfire::FireOnce`] (the default)
//! runs the latest missed fire once, at once, and forgets older ones;
//! [`Misfire::Skip`] forgets them all and waits for the next fire.
//!
//! **Clocks.** Fire times are wall-clock milliseconds (UTC; cron
//! expressions are read in UTC). Instances should run NTP: a shard's owner
//! fires by its own clock, and a handover between owners with skewed
//! clocks moves the fire by the skew (never runs it twice: the record is
//! keyed by the fire time, which every instance computes alike).
//!
//! # Layout (under the scheduler's root)
//! - `jobs/<job>`: the definition, JSON:
//!   `{"cron":"*/5 * * * * *"}` or `{"every_ms":1000}`, plus `shards`,
//!   `payloads` (one string per shard, optional), `misfire`
//!   (`"fire_once"`/`"skip"`), `misfire_threshold_ms`, `history`,
//!   `anchor_ms` (fires are those strictly after it);
//! - `jobs/<job>/paused`: present ⇒ no fire starts (operator:
//!   `create /root/jobs/<job>/paused`, resume with `delete`);
//! - `jobs/<job>/disabled-<shard>`: present ⇒ that shard does not fire;
//! - `jobs/<job>/trigger-<anything>`: run every shard once now (fire time =
//!   the node's creation time); deleted once every enabled shard ran it;
//! - `jobs/<job>/runs/<shard>/<fire ms, 13 digits>` (`…-t` for a trigger):
//!   the run records, JSON [`RunRecord`]; the newest
//!   [`JobSpec::history`] per shard are kept;
//! - `jobs/<job>/shards/party/<instance>`, `jobs/<job>/shards/locks/<shard>`:
//!   the job's [`Partitioner`].
//!
//! ```no_run
//! # async fn demo(sessions: zkit_recipes::Sessions) -> zkit::Result<()> {
//! use std::time::Duration;
//! use zkit_recipes::scheduler::{JobSpec, Jobs, Scheduler};
//!
//! // Any instance (or a deploy script) defines the job once.
//! let spec = JobSpec::every("rollup", Duration::from_secs(60))?.shards(4);
//! Jobs::new(&sessions, "/zkit/scheduler").define(&spec).await?;
//!
//! // Every instance that can run it:
//! let running = Scheduler::new(&sessions, "/zkit/scheduler", "host-a")
//!     .handle("rollup", |ctx| async move {
//!         // shard ctx.shard() of the fire at ctx.fire_ms()
//!         ctx.guarded().set_data("/rollup/progress", b"done", zkit::Version::Any)
//!             .commit().await?;
//!         Ok::<(), zkit::Error>(())
//!     })
//!     .start()?;
//! # running.close().await;
//! # Ok(()) }
//! ```
//!
//! # Sessions
//! Built from `&Sessions`, an instance whose session expired joins again
//! on a new session and takes shards again; built from a `&Client`, the
//! scheduler stops with its session.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;
use zkit::{Client, CreateOptions, Error, MultiWrite, Version};

use crate::partition::{Grant, PartitionEvent, PartitionOptions, Partitioner, Release};
use crate::sessions::SessionSource;

/// Run records beyond a job's history are deleted once this many more
/// have piled up (one listing and a few deletes every so often, not a
/// delete per fire).
const PRUNE_SLACK: usize = 16;

/// At most this many shards per job.
pub const MAX_SHARDS: u32 = 4096;

/// When a job fires.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Schedule {
    /// A cron expression, read in UTC: five fields (minute hour day month
    /// weekday) or six (seconds first); `L`, `W`, `#` as in the `croner`
    /// crate.
    Cron(String),
    /// Every interval, counted from the job's anchor (its definition time).
    Every(Duration),
}

/// What to do with fires missed by more than the misfire threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Misfire {
    /// Run the latest missed fire once, now; forget the older ones.
    #[default]
    FireOnce,
    /// Forget every missed fire; wait for the next one.
    Skip,
}

/// A job's definition (see the module docs for its JSON form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    name: String,
    schedule: Schedule,
    shards: u32,
    payloads: Vec<String>,
    misfire: Misfire,
    misfire_threshold: Duration,
    history: u32,
    anchor_ms: Option<i64>,
}

impl JobSpec {
    /// A job of one shard firing on the cron expression `expr` (UTC).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad expression or job name.
    pub fn cron(name: &str, expr: &str) -> Result<Self, Error> {
        parse_cron(expr)?;
        Self::with(name, Schedule::Cron(expr.trim().to_string()))
    }

    /// A job of one shard firing every `interval` (at least 1 ms, whole
    /// milliseconds).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a shorter interval or a bad name.
    pub fn every(name: &str, interval: Duration) -> Result<Self, Error> {
        if interval < Duration::from_millis(1) {
            return Err(Error::InvalidArgument(
                "a job's interval is at least 1 ms".into(),
            ));
        }
        Self::with(name, Schedule::Every(interval))
    }

    fn with(name: &str, schedule: Schedule) -> Result<Self, Error> {
        if !valid_name(name) {
            return Err(Error::InvalidArgument(format!(
                "job name {name:?} is not a znode name"
            )));
        }
        Ok(Self {
            name: name.to_string(),
            schedule,
            shards: 1,
            payloads: Vec::new(),
            misfire: Misfire::FireOnce,
            misfire_threshold: Duration::from_secs(1),
            history: 10,
            anchor_ms: None,
        })
    }

    /// `n` shards (1 to [`MAX_SHARDS`]; clamped).
    pub fn shards(mut self, n: u32) -> Self {
        self.shards = n.clamp(1, MAX_SHARDS);
        self
    }

    /// A payload per shard, in shard order ([`JobContext::payload`]).
    pub fn payloads(mut self, payloads: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.payloads = payloads.into_iter().map(Into::into).collect();
        self
    }

    /// The misfire policy (default [`Misfire::FireOnce`]).
    pub fn misfire(mut self, policy: Misfire) -> Self {
        self.misfire = policy;
        self
    }

    /// How late a fire may start before it counts as missed (default 1 s).
    pub fn misfire_threshold(mut self, threshold: Duration) -> Self {
        self.misfire_threshold = threshold;
        self
    }

    /// How many run records to keep per shard (default 10, at least 1;
    /// up to 16 more pile up between two prunes).
    pub fn history(mut self, k: u32) -> Self {
        self.history = k.max(1);
        self
    }

    /// Fires are those strictly after `anchor_ms` (epoch ms); default: the
    /// time of the first [`Jobs::define`]. Intervals count from it.
    pub fn anchor_ms(mut self, anchor_ms: i64) -> Self {
        self.anchor_ms = Some(anchor_ms);
        self
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The number of shards.
    pub fn shard_count(&self) -> u32 {
        self.shards
    }

    /// The misfire policy.
    pub fn misfire_policy(&self) -> Misfire {
        self.misfire
    }

    /// The anchor, once defined.
    pub fn anchor(&self) -> Option<i64> {
        self.anchor_ms
    }

    fn to_doc(&self, anchor_ms: i64) -> SpecDoc {
        let (cron, every_ms) = match &self.schedule {
            Schedule::Cron(c) => (Some(c.clone()), None),
            Schedule::Every(d) => (None, Some(d.as_millis().try_into().unwrap_or(u64::MAX))),
        };
        SpecDoc {
            cron,
            every_ms,
            shards: self.shards,
            payloads: self.payloads.clone(),
            misfire: self.misfire,
            misfire_threshold_ms: self
                .misfire_threshold
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
            history: self.history,
            anchor_ms,
        }
    }

    fn from_doc(name: &str, doc: SpecDoc) -> Result<Self, Error> {
        let schedule = match (doc.cron, doc.every_ms) {
            (Some(c), None) => {
                parse_cron(&c)?;
                Schedule::Cron(c)
            }
            (None, Some(ms)) if ms >= 1 => Schedule::Every(Duration::from_millis(ms)),
            _ => {
                return Err(Error::InvalidArgument(
                    "a job has either \"cron\" or \"every_ms\" (>= 1)".into(),
                ))
            }
        };
        if doc.shards == 0 || doc.shards > MAX_SHARDS {
            return Err(Error::InvalidArgument(format!(
                "a job has 1 to {MAX_SHARDS} shards"
            )));
        }
        Ok(Self {
            name: name.to_string(),
            schedule,
            shards: doc.shards,
            payloads: doc.payloads,
            misfire: doc.misfire,
            misfire_threshold: Duration::from_millis(doc.misfire_threshold_ms),
            history: doc.history.max(1),
            anchor_ms: Some(doc.anchor_ms),
        })
    }

    fn plan(&self) -> Plan {
        let anchor = self.anchor_ms.unwrap_or(0);
        match &self.schedule {
            Schedule::Cron(c) => Plan::Cron {
                cron: Box::new(parse_cron(c).expect("checked when built")),
                anchor,
            },
            Schedule::Every(d) => Plan::Every {
                anchor,
                every: i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1),
            },
        }
    }
}

/// The definition as stored.
#[derive(Debug, Serialize, Deserialize)]
struct SpecDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    every_ms: Option<u64>,
    #[serde(default = "one")]
    shards: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    payloads: Vec<String>,
    #[serde(default)]
    misfire: Misfire,
    #[serde(default = "second")]
    misfire_threshold_ms: u64,
    #[serde(default = "ten")]
    history: u32,
    anchor_ms: i64,
}

fn one() -> u32 {
    1
}
fn ten() -> u32 {
    10
}
fn second() -> u64 {
    1000
}

fn parse_cron(expr: &str) -> Result<croner::Cron, Error> {
    croner::Cron::from_str(expr.trim())
        .map_err(|e| Error::InvalidArgument(format!("cron expression {expr:?}: {e}")))
}

/// Fire times, as epoch milliseconds.
enum Plan {
    Cron {
        cron: Box<croner::Cron>,
        anchor: i64,
    },
    Every {
        anchor: i64,
        every: i64,
    },
}

fn to_datetime(ms: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(ms)
}

impl Plan {
    /// The first fire strictly after `t` (and after the anchor).
    fn next_after(&self, t: i64) -> Option<i64> {
        match self {
            Self::Cron { cron, anchor } => {
                let from = to_datetime(t.max(*anchor))?;
                cron.find_next_occurrence(&from, false)
                    .ok()
                    .map(|d| d.timestamp_millis())
            }
            Self::Every { anchor, every } => {
                let t = t.max(*anchor);
                let k = (t - anchor) / every + 1;
                anchor.checked_add(k.checked_mul(*every)?)
            }
        }
    }

    /// The latest fire at or before `t` (after the anchor), if any.
    fn latest_until(&self, t: i64) -> Option<i64> {
        match self {
            Self::Cron { cron, anchor } => {
                let at = to_datetime(t)?;
                let prev = cron
                    .find_previous_occurrence(&at, true)
                    .ok()?
                    .timestamp_millis();
                (prev > *anchor).then_some(prev)
            }
            Self::Every { anchor, every } => {
                let k = (t - anchor).div_euclid(*every);
                (k >= 1).then(|| anchor + k * every)
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && name != "zookeeper"
}

/// How a run ended, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "error")]
#[non_exhaustive]
pub enum Outcome {
    /// Started, not (yet) completed: its instance is running it, or died
    /// (then the shard's next owner runs it again).
    Running,
    /// The job returned `Ok`.
    Ok,
    /// The job returned this error (it is not run again).
    Failed(String),
}

/// One run of one shard of one fire: `jobs/<job>/runs/<shard>/<fire>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The fire time (epoch ms).
    pub fire_ms: i64,
    /// The shard.
    pub shard: u32,
    /// Whether the fire was a trigger (`trigger-*` node), not the schedule.
    #[serde(default)]
    pub trigger: bool,
    /// The instance that ran it (the last attempt's).
    pub instance: String,
    /// Attempts: more than 1 when an owner died mid-run.
    pub attempt: u32,
    /// When the last attempt started (epoch ms, the instance's clock).
    pub start_ms: i64,
    /// When it completed.
    #[serde(default)]
    pub end_ms: Option<i64>,
    /// How it ended.
    pub outcome: Outcome,
    /// The fencing token the attempt ran under.
    pub token: i64,
}

fn record_name(fire_ms: i64, trigger: bool) -> String {
    if trigger {
        format!("{fire_ms:013}-t")
    } else {
        format!("{fire_ms:013}")
    }
}

fn parse_record_name(name: &str) -> Option<(i64, bool)> {
    let (digits, trigger) = match name.strip_suffix("-t") {
        Some(d) => (d, true),
        None => (name, false),
    };
    if digits.len() < 13 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(|f| (f, trigger))
}

/// What an instance's [`Scheduler`] reports ([`RunningScheduler::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchedulerEvent {
    /// These shards of `job` are now ours.
    Acquired {
        /// The job.
        job: String,
        /// Its shards we own.
        shards: Vec<u32>,
        /// The grant's generation.
        generation: u64,
    },
    /// Our shards of `job` were given up.
    Released {
        /// The job.
        job: String,
        /// Why.
        why: Release,
    },
    /// A fire of a shard started here.
    Started {
        /// The job.
        job: String,
        /// The shard.
        shard: u32,
        /// The fire time.
        fire_ms: i64,
        /// The attempt.
        attempt: u32,
    },
    /// A fire of a shard ended here.
    Finished {
        /// The job.
        job: String,
        /// The shard.
        shard: u32,
        /// The fire time.
        fire_ms: i64,
        /// How.
        outcome: Outcome,
        /// Whether its completion was recorded (else it is run again by the
        /// shard's next owner).
        recorded: bool,
    },
    /// Missed fires were forgotten under the misfire policy.
    Misfired {
        /// The job.
        job: String,
        /// The shard.
        shard: u32,
        /// The latest missed fire.
        latest_ms: i64,
        /// Whether that one is run now ([`Misfire::FireOnce`]).
        fired: bool,
    },
}

/// What a job's handler gets for one run of one shard.
pub struct JobContext {
    job: String,
    shard: u32,
    fire_ms: i64,
    trigger: bool,
    attempt: u32,
    payload: Option<String>,
    instance: String,
    item: String,
    grant: Arc<Grant>,
    cancel: watch::Receiver<bool>,
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("job", &self.job)
            .field("shard", &self.shard)
            .field("fire_ms", &self.fire_ms)
            .field("attempt", &self.attempt)
            .field("instance", &self.instance)
            .finish()
    }
}

impl JobContext {
    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The shard (0-based).
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The fire time (epoch ms): the same for every shard of the fire.
    pub fn fire_ms(&self) -> i64 {
        self.fire_ms
    }

    /// Whether the fire comes from a `trigger-*` node.
    pub fn is_trigger(&self) -> bool {
        self.trigger
    }

    /// 1, or more when an earlier owner died running this fire.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The shard's payload ([`JobSpec::payloads`]).
    pub fn payload(&self) -> Option<&str> {
        self.payload.as_deref()
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The shard lock's fencing token: larger for every later owner.
    pub fn fencing_token(&self) -> i64 {
        self.grant.fencing_token(&self.item).unwrap_or(0)
    }

    /// A transaction that commits only while this instance owns the shard
    /// (else [`Error::Fenced`], nothing written).
    pub fn guarded(&self) -> MultiWrite {
        self.grant
            .guarded(&self.item)
            .expect("a context's shard is in its grant")
    }

    /// The client of the session that owns the shard, for reads.
    pub fn client(&self) -> Client {
        self.grant
            .client_of(&self.item)
            .expect("a context's shard is in its grant")
            .clone()
    }

    /// Whether the run should stop: the shard's ownership is in doubt
    /// (connection lost) or lost, or the scheduler is closing.
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Completes when the run should stop (see
    /// [`is_cancelled`](Self::is_cancelled)). A run that then returns an
    /// error is left for the shard's next owner to run again; one that
    /// returns `Ok` is recorded as done if the fence still allows it.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.clone();
        let _ = rx.wait_for(|c| *c).await;
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type Handler = Arc<dyn Fn(JobContext) -> BoxFuture + Send + Sync>;

/// The time, as epoch milliseconds.
type WallClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Settings of a [`Scheduler`].
#[derive(Clone)]
pub struct SchedulerOptions {
    resync: Duration,
    cancel_grace: Duration,
    partition: PartitionOptions,
    clock: WallClock,
}

impl fmt::Debug for SchedulerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerOptions")
            .field("resync", &self.resync)
            .field("cancel_grace", &self.cancel_grace)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(5),
            cancel_grace: Duration::from_secs(30),
            partition: PartitionOptions::default(),
            clock: Arc::new(now_ms),
        }
    }
}

impl SchedulerOptions {
    /// How often job definitions and operator nodes are re-read besides
    /// their watches (which miss changes while disconnected); default 5 s.
    pub fn resync(mut self, every: Duration) -> Self {
        self.resync = every.max(Duration::from_millis(50));
        self
    }

    /// How long a cancelled run may take to return before it is dropped
    /// (default 30 s).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// The clock fires are computed from, as epoch milliseconds (default:
    /// the system's wall clock). For simulations and tests on a virtual
    /// clock: waits are tokio sleeps of the difference, so a clock that
    /// follows tokio's time (e.g. a wall time taken once plus
    /// `tokio::time::Instant` elapsed) keeps the two in step.
    pub fn clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The options of each job's [`Partitioner`] (assignment, suspension
    /// policy).
    pub fn partition(mut self, options: PartitionOptions) -> Self {
        self.partition = options;
        self
    }
}

/// An instance of the scheduler (see the module docs): configure the jobs
/// it can run, then [`start`](Self::start).
pub struct Scheduler {
    source: SessionSource,
    root: String,
    instance: String,
    handlers: HashMap<String, Handler>,
    options: SchedulerOptions,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("root", &self.root)
            .field("instance", &self.instance)
            .field("jobs", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Scheduler {
    /// An instance `instance` (unique among live instances) of the
    /// scheduler rooted at `root`.
    pub fn new(source: impl Into<SessionSource>, root: &str, instance: &str) -> Self {
        Self {
            source: source.into(),
            root: root.trim_end_matches('/').to_string(),
            instance: instance.to_string(),
            handlers: HashMap::new(),
            options: SchedulerOptions::default(),
        }
    }

    /// With `options`.
    pub fn options(mut self, options: SchedulerOptions) -> Self {
        self.options = options;
        self
    }

    /// Runs shards of `job` with `f`. An `Err` is recorded as
    /// [`Outcome::Failed`] (not run again), unless the run was cancelled.
    pub fn handle<F, Fut, E>(mut self, job: &str, f: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + 'static,
    {
        let handler: Handler = Arc::new(move |ctx| {
            let fut = f(ctx);
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        });
        self.handlers.insert(job.to_string(), handler);
        self
    }

    /// Starts the instance in the background.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an instance id or job name that is not
    /// a znode name.
    pub fn start(self) -> Result<RunningScheduler, Error> {
        if !valid_name(&self.instance) || !self.handlers.keys().all(|j| valid_name(j)) {
            return Err(Error::InvalidArgument(
                "instance ids and job names are znode names".into(),
            ));
        }
        let (events, _) = broadcast::channel(1024);
        let (close_tx, close_rx) = oneshot::channel();
        let task = tokio::spawn(
            Instance {
                source: self.source,
                root: self.root,
                instance: self.instance,
                handlers: self.handlers,
                options: self.options,
                events: events.clone(),
            }
            .run(close_rx),
        );
        Ok(RunningScheduler {
            events,
            close: Some(close_tx),
            task,
        })
    }
}

/// A started [`Scheduler`].
///
/// Dropping it closes the instance in the background, as
/// [`close`](Self::close) without waiting: runs in progress are cancelled
/// (and dropped after the cancel grace; a run that did not complete is run
/// again by the shard's next owner), then the shards are released.
#[derive(Debug)]
pub struct RunningScheduler {
    events: broadcast::Sender<SchedulerEvent>,
    close: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningScheduler {
    /// A receiver of this instance's events from now on.
    pub fn events(&self) -> broadcast::Receiver<SchedulerEvent> {
        self.events.subscribe()
    }

    /// Stops: cancels runs in progress ([`JobContext::cancelled`]), waits
    /// for them (up to the cancel grace), releases every shard and leaves.
    ///
    /// # Cancel safety
    /// If the future is dropped, the scheduler is dropped (see the type).
    pub async fn close(mut self) {
        if let Some(c) = self.close.take() {
            let _ = c.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningScheduler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Instance {
    source: SessionSource,
    root: String,
    instance: String,
    handlers: HashMap<String, Handler>,
    options: SchedulerOptions,
    events: broadcast::Sender<SchedulerEvent>,
}

impl Instance {
    async fn run(self, mut close: oneshot::Receiver<()>) {
        let jobs_dir = format!("{}/jobs", self.root);
        let mut running: HashMap<String, (oneshot::Sender<()>, JoinHandle<()>)> = HashMap::new();
        let mut watcher: SessionWatch = None;
        loop {
            running.retain(|_, (_, t)| !t.is_finished());
            let client = tokio::select! {
                c = self.source.client() => c,
                _ = &mut close => break,
            };
            let mut listed = None;
            match client {
                Ok(client) => {
                    if watcher.as_ref().map(|(s, _)| *s) != Some(client.session_id()) {
                        let _ = client.ensure_path(&jobs_dir).await;
                    }
                    watch_on(&client, &jobs_dir, &mut watcher).await;
                    match client.get_children(&jobs_dir).await {
                        Ok((names, _)) => listed = Some(names),
                        Err(e) => tracing::debug!(root = %self.root, error = %e, "listing jobs"),
                    }
                }
                Err(Error::Closed) => break,
                Err(e) => {
                    tracing::debug!(root = %self.root, error = %e, "no session for the scheduler")
                }
            }
            if let Some(names) = listed {
                let names: BTreeSet<String> = names.into_iter().collect();
                running.retain(|job, _| names.contains(job)); // dropped: job removed
                for job in names {
                    if let Some(h) = self.handlers.get(&job) {
                        running.entry(job.clone()).or_insert_with(|| {
                            let (tx, rx) = oneshot::channel();
                            let runner = JobRunner {
                                source: self.source.clone(),
                                dir: format!("{jobs_dir}/{job}"),
                                job,
                                instance: self.instance.clone(),
                                handler: h.clone(),
                                options: self.options.clone(),
                                events: self.events.clone(),
                            };
                            (tx, tokio::spawn(runner.run(rx)))
                        });
                    }
                }
            }
            let resync = tokio::time::sleep(self.options.resync);
            tokio::select! {
                () = next_change(&mut watcher) => {}
                () = resync => {}
                _ = &mut close => break,
            }
            if self.source.is_finished() {
                break;
            }
        }
        // Close every job: cancels runs, releases shards.
        let mut handles = Vec::new();
        for (tx, t) in running.into_values() {
            let _ = tx.send(());
            handles.push(t);
        }
        for t in handles {
            let _ = t.await;
        }
    }
}

/// A persistent watch and the session it is on.
type SessionWatch = Option<(zkit::SessionId, zkit::PersistentWatcher)>;

/// Puts a persistent watch on `path` for `client`'s session, unless the
/// watch is already on that session (a new session needs a new watch).
async fn watch_on(client: &Client, path: &str, watcher: &mut SessionWatch) {
    if watcher.as_ref().map(|(s, _)| *s) != Some(client.session_id()) {
        *watcher = client
            .add_watch(path, zkit::AddWatchMode::Persistent)
            .await
            .ok()
            .map(|w| (client.session_id(), w));
    }
}

/// Completes on the watch's next event; never without a live watch (the
/// periodic re-read covers that).
async fn next_change(watcher: &mut SessionWatch) {
    match watcher.as_mut() {
        Some((_, w)) => {
            if w.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// What a job's runner knows of its znode and its operator children.
#[derive(Debug, Clone, Default, PartialEq)]
struct JobState {
    spec: Option<JobSpec>,
    paused: bool,
    disabled: BTreeSet<u32>,
    /// Pending triggers: fire time → node name.
    triggers: BTreeMap<i64, String>,
}

struct JobRunner {
    source: SessionSource,
    dir: String,
    job: String,
    instance: String,
    handler: Handler,
    options: SchedulerOptions,
    events: broadcast::Sender<SchedulerEvent>,
}

impl JobRunner {
    async fn run(self, mut close: oneshot::Receiver<()>) {
        let (state_tx, state_rx) = watch::channel(JobState::default());
        let mut watcher: SessionWatch = None;
        let mut part: Option<(u32, Partitioner)> = None;
        // The live grant: its shards' tasks, and the cancel switch.
        let mut live: Option<Live> = None;
        loop {
            // Re-read the job.
            if let Ok(client) = self.source.client().await {
                watch_on(&client, &self.dir, &mut watcher).await;
                match read_job(&client, &self.dir, &self.job).await {
                    Ok(Some(st)) => {
                        state_tx.send_if_modified(|cur| {
                            let changed = *cur != st;
                            *cur = st;
                            changed
                        });
                    }
                    Ok(None) => break, // the job was removed
                    Err(e) => tracing::debug!(job = %self.job, error = %e, "reading the job"),
                }
            } else if self.source.is_finished() {
                break;
            }
            let shards = state_rx.borrow().spec.as_ref().map(|s| s.shards);
            // (Re)start the partitioner for the job's shard count.
            if shards != part.as_ref().map(|(n, _)| *n) {
                if let Some((_, p)) = part.take() {
                    if let Some(l) = live.take() {
                        l.stop(true);
                    }
                    p.close().await;
                }
                if let Some(n) = shards {
                    let items = (0..n).map(|s| s.to_string());
                    match Partitioner::with_options(
                        self.source.clone(),
                        &format!("{}/shards", self.dir),
                        &self.instance,
                        items,
                        self.options.partition.clone(),
                    ) {
                        Ok(p) => part = Some((n, p)),
                        Err(e) => {
                            tracing::warn!(job = %self.job, error = %e, "cannot partition the job");
                        }
                    }
                }
            }
            let resync = tokio::time::sleep(self.options.resync);
            tokio::select! {
                ev = async {
                    match part.as_mut() {
                        Some((_, p)) => p.next().await,
                        None => std::future::pending().await,
                    }
                } => match ev {
                    Ok(PartitionEvent::Acquired(grant)) => {
                        let shards: Vec<u32> = grant.items().filter_map(|i| i.parse().ok()).collect();
                        let _ = self.events.send(SchedulerEvent::Acquired {
                            job: self.job.clone(),
                            shards,
                            generation: grant.generation(),
                        });
                        live = Some(self.start_grant(grant, state_rx.clone()));
                    }
                    Ok(PartitionEvent::Released { why, .. }) => {
                        let _ = self.events.send(SchedulerEvent::Released { job: self.job.clone(), why });
                        if let Some(l) = live.take() {
                            // A rebalance lets runs in progress finish (the
                            // shard is still ours until they do); anything
                            // else cancels them.
                            l.stop(why != Release::Rebalance);
                        }
                    }
                    Err(Error::Closed) => part = None,
                    Err(e) => {
                        tracing::warn!(job = %self.job, error = %e, "the job's partitioner stopped");
                        part = None;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                () = next_change(&mut watcher) => {}
                () = resync => {}
                _ = &mut close => break,
            }
        }
        if let Some(l) = live.take() {
            l.stop(true);
        }
        if let Some((_, p)) = part.take() {
            p.close().await;
        }
    }

    fn start_grant(&self, grant: Grant, state: watch::Receiver<JobState>) -> Live {
        let grant = Arc::new(grant);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let tasks = grant
            .items()
            .filter_map(|item| item.parse::<u32>().ok().map(|s| (item.to_string(), s)))
            .map(|(item, shard)| {
                let runner = ShardRunner {
                    job: self.job.clone(),
                    dir: self.dir.clone(),
                    instance: self.instance.clone(),
                    item,
                    shard,
                    grant: grant.clone(),
                    state: state.clone(),
                    cancel: cancel_rx.clone(),
                    handler: self.handler.clone(),
                    grace: self.options.cancel_grace,
                    events: self.events.clone(),
                    finished: BTreeSet::new(),
                    known: None,
                    clock: self.options.clock.clone(),
                };
                tokio::spawn(runner.run())
            })
            .collect();
        Live {
            cancel: cancel_tx,
            _tasks: tasks,
        }
    }
}

/// A live grant's shard tasks. They hold the grant; it is dropped (and the
/// partitioner may move the shards) once they all ended.
struct Live {
    cancel: watch::Sender<bool>,
    _tasks: Vec<JoinHandle<()>>,
}

impl Live {
    fn stop(self, cancel: bool) {
        if cancel {
            let _ = self.cancel.send(true);
        } else {
            // Keep the switch alive so the tasks' receivers stay open; it
            // goes with the last task.
            let tx = self.cancel;
            tokio::spawn(async move { tx.closed().await });
        }
    }
}

async fn read_job(client: &Client, dir: &str, job: &str) -> Result<Option<JobState>, Error> {
    let (data, _) = match client.get_data(dir).await {
        Ok(d) => d,
        Err(Error::NoNode) => return Ok(None),
        Err(e) => return Err(e),
    };
    let children = match client.get_children(dir).await {
        Ok((c, _)) => c,
        Err(Error::NoNode) => return Ok(None),
        Err(e) => return Err(e),
    };
    let spec = serde_json::from_slice::<SpecDoc>(&data)
        .map_err(|e| Error::InvalidArgument(format!("job {job}: {e}")))
        .and_then(|d| JobSpec::from_doc(job, d));
    let spec = match spec {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(%job, error = %e, "a job definition that does not parse: not run");
            None
        }
    };
    let mut st = JobState {
        spec,
        ..JobState::default()
    };
    for name in children {
        if name == "paused" {
            st.paused = true;
        } else if let Some(s) = name.strip_prefix("disabled-") {
            if let Ok(s) = s.parse() {
                st.disabled.insert(s);
            }
        } else if name.starts_with("trigger-") {
            // The fire time of a trigger is its creation time.
            if let Ok(Some(stat)) = client.exists(&format!("{dir}/{name}")).await {
                st.triggers.insert(stat.ctime, name);
            }
        }
    }
    Ok(Some(st))
}

struct ShardRunner {
    job: String,
    dir: String,
    instance: String,
    item: String,
    shard: u32,
    grant: Arc<Grant>,
    state: watch::Receiver<JobState>,
    cancel: watch::Receiver<bool>,
    handler: Handler,
    grace: Duration,
    events: broadcast::Sender<SchedulerEvent>,
    /// Record names known to be finished.
    finished: BTreeSet<String>,
    /// The shard's records (name → fire, trigger) while this task is their
    /// only writer; `None`: list them.
    known: Option<BTreeMap<String, (i64, bool)>>,
    clock: WallClock,
}

/// A record read back: its data and version.
struct Found {
    record: RunRecord,
    version: i32,
}

/// Why a shard task stops.
enum Stop {
    Revoked,
}

impl ShardRunner {
    fn client(&self) -> Client {
        self.grant
            .client_of(&self.item)
            .expect("the shard is in the grant")
            .clone()
    }

    fn runs_dir(&self) -> String {
        format!("{}/runs/{}", self.dir, self.shard)
    }

    async fn run(mut self) {
        // Runs an earlier owner left unfinished come first.
        let mut floor = i64::MIN; // fires at or before this were skipped
        loop {
            if self.grant.is_revoked() || *self.cancel.borrow() {
                return;
            }
            match self.step(&mut floor).await {
                Ok(()) => {}
                Err(Stop::Revoked) => return,
            }
        }
    }

    /// One scheduling decision: run a fire, or wait for the next reason to
    /// decide again.
    async fn step(&mut self, floor: &mut i64) -> Result<(), Stop> {
        let st = self.state.borrow_and_update().clone();
        let Some(spec) = st.spec.clone() else {
            return self.wait(None).await;
        };
        if st.paused || st.disabled.contains(&self.shard) {
            return self.wait(None).await;
        }
        if self.known.is_none() {
            // Once per grant (and after an error): list the shard's
            // records; unfinished ones of an earlier owner are run again.
            // Afterwards this task is the only writer of the shard's
            // records and keeps the list itself.
            let client = self.client();
            let names = match client.get_children(&self.runs_dir()).await {
                Ok((n, _)) => n,
                Err(Error::NoNode) => Vec::new(),
                Err(e) => return self.retry_later(e).await,
            };
            let mut records: BTreeMap<String, (i64, bool)> = names
                .into_iter()
                .filter_map(|n| parse_record_name(&n).map(|p| (n, p)))
                .collect();
            self.finished.retain(|n| records.contains_key(n));
            for (name, (fire, trigger)) in records.clone() {
                if self.finished.contains(&name) {
                    continue;
                }
                match self.read(&client, &name).await {
                    Ok(Some(found)) if found.record.outcome == Outcome::Running => {
                        // Listed again after this one (it is then finished).
                        self.fire(&spec, fire, trigger, Some(found)).await?;
                        return Ok(());
                    }
                    Ok(Some(_)) => {
                        self.finished.insert(name);
                    }
                    Ok(None) => {
                        records.remove(&name);
                    }
                    Err(e) => return self.retry_later(e).await,
                }
            }
            self.known = Some(records);
        }
        let records = self.known.clone().unwrap_or_default();
        // Triggers not yet run by this shard.
        for (&fire, _) in st.triggers.iter() {
            if !records.contains_key(&record_name(fire, true)) {
                self.fire(&spec, fire, true, None).await?;
                return Ok(());
            }
        }
        // The schedule.
        let plan = spec.plan();
        let last = records
            .values()
            .filter(|(_, t)| !*t)
            .map(|(f, _)| *f)
            .max()
            .unwrap_or(i64::MIN)
            .max(*floor);
        let Some(next) = plan.next_after(last) else {
            return self.wait(None).await; // no more fires
        };
        let now = (self.clock)();
        if next > now {
            return self.wait(Some(next)).await;
        }
        let latest = plan.latest_until(now).unwrap_or(next).max(next);
        let threshold = i64::try_from(spec.misfire_threshold.as_millis()).unwrap_or(i64::MAX);
        let fire = if now - next <= threshold {
            // Late by less than the threshold: not missed. A backlog within
            // the threshold is caught up fire by fire.
            Some(next)
        } else if now - latest <= threshold {
            // Older fires were missed; the latest is on time.
            self.misfired(latest, true);
            Some(latest)
        } else {
            match spec.misfire {
                Misfire::FireOnce => {
                    self.misfired(latest, true);
                    Some(latest)
                }
                _ => {
                    self.misfired(latest, false);
                    *floor = latest;
                    None
                }
            }
        };
        if let Some(fire) = fire {
            self.fire(&spec, fire, false, None).await?;
        }
        Ok(())
    }

    fn misfired(&self, latest_ms: i64, fired: bool) {
        crate::internal::metrics::scheduler_misfire(&self.job);
        let _ = self.events.send(SchedulerEvent::Misfired {
            job: self.job.clone(),
            shard: self.shard,
            latest_ms,
            fired,
        });
    }

    /// Waits until `until` (epoch ms), a change of the job, or revocation.
    async fn wait(&mut self, until: Option<i64>) -> Result<(), Stop> {
        let sleep = async {
            match until {
                Some(t) => {
                    let ms = u64::try_from(t - (self.clock)()).unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => Ok(()),
            r = self.state.changed() => if r.is_err() { Err(Stop::Revoked) } else { Ok(()) },
            () = self.grant.revoked() => Err(Stop::Revoked),
            () = async { let _ = self.cancel.wait_for(|c| *c).await; } => Err(Stop::Revoked),
        }
    }

    async fn retry_later(&mut self, e: Error) -> Result<(), Stop> {
        self.known = None;
        tracing::debug!(job = %self.job, shard = self.shard, error = %e, "scheduling step failed; again shortly");
        if e.is_session_terminal() {
            // The grant ends with the session: the partitioner revokes it.
            self.grant.revoked().await;
            return Err(Stop::Revoked);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => Ok(()),
            () = self.grant.revoked() => Err(Stop::Revoked),
        }
    }

    async fn read(&self, client: &Client, name: &str) -> Result<Option<Found>, Error> {
        match client
            .get_data(&format!("{}/{name}", self.runs_dir()))
            .await
        {
            Ok((data, stat)) => match serde_json::from_slice::<RunRecord>(&data) {
                Ok(record) => Ok(Some(Found {
                    record,
                    version: stat.version,
                })),
                Err(e) => {
                    tracing::warn!(job = %self.job, name, error = %e, "a run record that does not parse: taken as done");
                    Ok(Some(Found {
                        record: RunRecord {
                            fire_ms: 0,
                            shard: self.shard,
                            trigger: false,
                            instance: String::new(),
                            attempt: 0,
                            start_ms: 0,
                            end_ms: None,
                            outcome: Outcome::Failed(format!("unreadable record: {e}")),
                            token: 0,
                        },
                        version: stat.version,
                    }))
                }
            },
            Err(Error::NoNode) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs one fire: start record, the job, completion record, pruning.
    async fn fire(
        &mut self,
        spec: &JobSpec,
        fire_ms: i64,
        trigger: bool,
        earlier: Option<Found>,
    ) -> Result<(), Stop> {
        let name = record_name(fire_ms, trigger);
        let path = format!("{}/{name}", self.runs_dir());
        let token = self.grant.fencing_token(&self.item).unwrap_or(0);
        let mut record = RunRecord {
            fire_ms,
            shard: self.shard,
            trigger,
            instance: self.instance.clone(),
            attempt: earlier.as_ref().map_or(1, |f| f.record.attempt + 1),
            start_ms: (self.clock)(),
            end_ms: None,
            outcome: Outcome::Running,
            token,
        };
        let started = self.start_record(&path, &record, earlier).await?;
        if let Some(known) = self.known.as_mut() {
            known.insert(name.clone(), (fire_ms, trigger));
        }
        let Some(version) = started else {
            self.finished.insert(name);
            return Ok(()); // someone completed it meanwhile
        };
        let _ = self.events.send(SchedulerEvent::Started {
            job: self.job.clone(),
            shard: self.shard,
            fire_ms,
            attempt: record.attempt,
        });
        let ctx = JobContext {
            job: self.job.clone(),
            shard: self.shard,
            fire_ms,
            trigger,
            attempt: record.attempt,
            payload: spec.payloads.get(self.shard as usize).cloned(),
            instance: self.instance.clone(),
            item: self.item.clone(),
            grant: self.grant.clone(),
            cancel: self.cancel.clone(),
        };
        let body = (self.handler)(ctx);
        tokio::pin!(body);
        let mut cancel = self.cancel.clone();
        let result = tokio::select! {
            r = &mut body => Some(r),
            () = async { let _ = cancel.wait_for(|c| *c).await; } => {
                // Past the grace the run is dropped: run again by the next owner.
                tokio::time::timeout(self.grace, &mut body).await.ok()
            }
        };
        let cancelled = *self.cancel.borrow();
        let outcome = match result {
            Some(Ok(())) => Outcome::Ok,
            Some(Err(e)) if !cancelled => Outcome::Failed(e),
            _ => {
                let _ = self.events.send(SchedulerEvent::Finished {
                    job: self.job.clone(),
                    shard: self.shard,
                    fire_ms,
                    outcome: Outcome::Running,
                    recorded: false,
                });
                return Err(Stop::Revoked);
            }
        };
        record.end_ms = Some((self.clock)());
        record.outcome = outcome.clone();
        let recorded = self.complete_record(&path, &record, version).await;
        crate::internal::metrics::scheduler_run(
            &self.job,
            match (&record.outcome, recorded) {
                (_, false) => "unrecorded",
                (Outcome::Ok, true) => "ok",
                _ => "failed",
            },
            Duration::from_millis(u64::try_from(record.start_ms - fire_ms).unwrap_or(0)),
        );
        let _ = self.events.send(SchedulerEvent::Finished {
            job: self.job.clone(),
            shard: self.shard,
            fire_ms,
            outcome,
            recorded,
        });
        if !recorded {
            return Err(Stop::Revoked);
        }
        self.finished.insert(name);
        self.after_run(spec, trigger.then_some(fire_ms)).await;
        Ok(())
    }

    /// Creates the fire's record (or takes over an unfinished one), fenced;
    /// `None` if it turns out to be done already.
    async fn start_record(
        &self,
        path: &str,
        record: &RunRecord,
        mut earlier: Option<Found>,
    ) -> Result<Option<i32>, Stop> {
        let data = serde_json::to_vec(record).expect("a record serializes");
        let client = self.client();
        let mut created_dir = false;
        loop {
            if self.grant.is_revoked() {
                return Err(Stop::Revoked);
            }
            let tx = match &earlier {
                Some(f) => self
                    .grant
                    .guarded(&self.item)
                    .expect("the shard is in the grant")
                    .set_data(path, &data, Version::Exact(f.version)),
                None => self
                    .grant
                    .guarded(&self.item)
                    .expect("the shard is in the grant")
                    .create(path, &data, &CreateOptions::default()),
            };
            let err = match tx.commit().await {
                Ok(_) => return Ok(Some(earlier.map_or(0, |f| f.version + 1))),
                Err(e) => e,
            };
            let cause = match &err {
                Error::MultiFailed { source, .. } => Some((**source).clone()),
                _ => None,
            };
            match cause {
                Some(Error::NoNode) if earlier.is_none() && !created_dir => {
                    let _ = client.ensure_path(&self.runs_dir()).await;
                    created_dir = true;
                    continue;
                }
                Some(Error::NodeExists | Error::BadVersion | Error::NoNode) => {
                    // Another attempt's write (or our own whose reply was
                    // lost): look at the record now.
                    let name = path.rsplit('/').next().unwrap_or_default();
                    match self.read(&client, name).await {
                        Ok(Some(f)) if f.record.outcome != Outcome::Running => return Ok(None),
                        Ok(Some(f)) => {
                            if f.record.instance == record.instance
                                && f.record.token == record.token
                                && f.record.attempt == record.attempt
                                && f.record.start_ms == record.start_ms
                            {
                                return Ok(Some(f.version)); // ours
                            }
                            // An unfinished run of an earlier owner (we
                            // hold the shard now): take it over.
                            earlier = Some(f);
                            continue;
                        }
                        Ok(None) => {
                            earlier = None;
                            continue;
                        }
                        Err(_) => {}
                    }
                }
                _ => {}
            }
            if err.is_fenced() || err.is_session_terminal() {
                return Err(Stop::Revoked);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = self.grant.revoked() => return Err(Stop::Revoked),
            }
            // A lost reply: the read above tells next time.
            if err.is_retryable() {
                let name = path.rsplit('/').next().unwrap_or_default();
                if let Ok(Some(f)) = self.read(&client, name).await {
                    if f.record.instance == record.instance
                        && f.record.start_ms == record.start_ms
                        && f.record.attempt == record.attempt
                    {
                        return Ok(Some(f.version));
                    }
                    if f.record.outcome != Outcome::Running {
                        return Ok(None);
                    }
                    earlier = Some(f);
                }
            }
        }
    }

    /// Completes the record, fenced; whether it was recorded.
    async fn complete_record(&self, path: &str, record: &RunRecord, version: i32) -> bool {
        let data = serde_json::to_vec(record).expect("a record serializes");
        let client = self.client();
        for _ in 0..50 {
            let Some(tx) = self.grant.guarded(&self.item) else {
                return false;
            };
            let err = match tx
                .set_data(path, &data, Version::Exact(version))
                .commit()
                .await
            {
                Ok(_) => return true,
                Err(e) => e,
            };
            if err.is_fenced() || err.is_session_terminal() {
                return false;
            }
            // BadVersion: our own write whose reply was lost, or another's.
            let name = path.rsplit('/').next().unwrap_or_default();
            if let Ok(Some(f)) = self.read(&client, name).await {
                if f.version != version {
                    return f.record == *record;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Prunes the shard's history and retires a trigger every enabled shard
    /// ran.
    async fn after_run(&mut self, spec: &JobSpec, trigger: Option<i64>) {
        let client = self.client();
        let dir = self.runs_dir();
        let st = self.state.borrow().clone();
        // Prune in batches, from the list this task keeps.
        if let Some(known) = self.known.as_mut() {
            if known.len() > spec.history as usize + PRUNE_SLACK {
                let pending: BTreeSet<String> =
                    st.triggers.keys().map(|f| record_name(*f, true)).collect();
                let prunable: Vec<String> = known
                    .keys()
                    .filter(|n| !pending.contains(*n))
                    .cloned()
                    .collect();
                let excess = prunable.len().saturating_sub(spec.history as usize);
                for n in prunable.into_iter().take(excess) {
                    match client.delete(&format!("{dir}/{n}"), Version::Any).await {
                        Ok(()) | Err(Error::NoNode) => {
                            known.remove(&n);
                            self.finished.remove(&n);
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        let Some(fire) = trigger else { return };
        let Some(node) = st.triggers.get(&fire) else {
            return;
        };
        let name = record_name(fire, true);
        for s in 0..spec.shards {
            if st.disabled.contains(&s) {
                continue;
            }
            let p = format!("{}/runs/{s}/{name}", self.dir);
            match client.get_data(&p).await {
                Ok((data, _)) => {
                    let done = serde_json::from_slice::<RunRecord>(&data)
                        .map(|r| r.outcome != Outcome::Running)
                        .unwrap_or(true);
                    if !done {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        let _ = client
            .delete(&format!("{}/{node}", self.dir), Version::Any)
            .await;
    }
}

/// Defines, inspects and operates jobs (what an operator can also do with
/// zkCli: see the module docs' layout).
#[derive(Debug, Clone)]
pub struct Jobs {
    source: SessionSource,
    root: String,
}

impl Jobs {
    /// The jobs of the scheduler rooted at `root`.
    pub fn new(source: impl Into<SessionSource>, root: &str) -> Self {
        Self {
            source: source.into(),
            root: root.trim_end_matches('/').to_string(),
        }
    }

    fn dir(&self, job: &str) -> Result<String, Error> {
        if valid_name(job) {
            Ok(format!("{}/jobs/{job}", self.root))
        } else {
            Err(Error::InvalidArgument(format!("job name {job:?}")))
        }
    }

    /// Defines `spec`, or updates the definition of a job of that name.
    /// The anchor is kept across updates (unless the spec sets one), so
    /// fires already run are not run again.
    ///
    /// # Errors
    /// ZooKeeper errors.
    pub async fn define(&self, spec: &JobSpec) -> Result<(), Error> {
        let client = self.source.client().await?;
        let dir = self.dir(&spec.name)?;
        loop {
            match client.get_data(&dir).await {
                Ok((data, stat)) => {
                    let anchor = spec.anchor_ms.unwrap_or_else(|| {
                        serde_json::from_slice::<SpecDoc>(&data)
                            .map(|d| d.anchor_ms)
                            .unwrap_or_else(|_| now_ms())
                    });
                    let doc = serde_json::to_vec(&spec.to_doc(anchor)).expect("serializes");
                    match client
                        .set_data(&dir, &doc, Version::Exact(stat.version))
                        .await
                    {
                        Ok(_) => return Ok(()),
                        Err(Error::BadVersion | Error::NoNode) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(Error::NoNode) => {
                    let anchor = spec.anchor_ms.unwrap_or_else(now_ms);
                    let doc = serde_json::to_vec(&spec.to_doc(anchor)).expect("serializes");
                    match client
                        .create_all(&dir, &doc, &CreateOptions::default())
                        .await
                    {
                        Ok(_) => return Ok(()),
                        Err(Error::NodeExists) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The job's definition, if defined.
    ///
    /// # Errors
    /// ZooKeeper errors; [`Error::InvalidArgument`] for a definition that
    /// does not parse.
    pub async fn spec(&self, job: &str) -> Result<Option<JobSpec>, Error> {
        let client = self.source.client().await?;
        match client.get_data(&self.dir(job)?).await {
            Ok((data, _)) => {
                let doc = serde_json::from_slice::<SpecDoc>(&data)
                    .map_err(|e| Error::InvalidArgument(format!("job {job}: {e}")))?;
                JobSpec::from_doc(job, doc).map(Some)
            }
            Err(Error::NoNode) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The defined jobs' names, sorted.
    ///
    /// # Errors
    /// ZooKeeper errors.
    pub async fn list(&self) -> Result<Vec<String>, Error> {
        let client = self.source.client().await?;
        match client.get_children(&format!("{}/jobs", self.root)).await {
            Ok((mut names, _)) => {
                names.sort();
                Ok(names)
            }
            Err(Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Removes the job, its records and its operator nodes. Instances stop
    /// running it (runs in progress are cancelled).
    ///
    /// # Errors
    /// ZooKeeper errors.
    pub async fn remove(&self, job: &str) -> Result<(), Error> {
        let client = self.source.client().await?;
        client.delete_all(&self.dir(job)?).await
    }

    async fn create_flag(&self, job: &str, name: &str) -> Result<(), Error> {
        let client = self.source.client().await?;
        let p = format!("{}/{name}", self.dir(job)?);
        match client.create(&p, b"", &CreateOptions::default()).await {
            Ok(_) | Err(Error::NodeExists) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete_flag(&self, job: &str, name: &str) -> Result<(), Error> {
        let client = self.source.client().await?;
        let p = format!("{}/{name}", self.dir(job)?);
        match client.delete(&p, Version::Any).await {
            Ok(()) | Err(Error::NoNode) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Pauses the job: no fire starts until [`resume`](Self::resume);
    /// missed fires then follow the misfire policy.
    ///
    /// # Errors
    /// [`Error::NoNode`] for an undefined job; ZooKeeper errors.
    pub async fn pause(&self, job: &str) -> Result<(), Error> {
        self.create_flag(job, "paused").await
    }

    /// Resumes a paused job.
    ///
    /// # Errors
    /// ZooKeeper errors.
    pub async fn resume(&self, job: &str) -> Result<(), Error> {
        self.delete_flag(job, "paused").await
    }

    /// Disables one shard: its fires are not run (nor recorded).
    ///
    /// # Errors
    /// [`Error::NoNode`] for an undefined job; ZooKeeper errors.
    pub async fn disable_shard(&self, job: &str, shard: u32) -> Result<(), Error> {
        self.create_flag(job, &format!("disabled-{shard}")).await
    }

    /// Enables a disabled shard.
    ///
    /// # Errors
    /// ZooKeeper errors.
    pub async fn enable_shard(&self, job: &str, shard: u32) -> Result<(), Error> {
        self.delete_flag(job, &format!("disabled-{shard}")).await
    }

    /// Runs every enabled shard of the job once, now; returns the fire
    /// time the runs will carry.
    ///
    /// # Errors
    /// [`Error::NoNode`] for an undefined job; ZooKeeper errors.
    pub async fn trigger(&self, job: &str) -> Result<i64, Error> {
        let client = self.source.client().await?;
        let p = format!("{}/trigger-", self.dir(job)?);
        let (_, stat) = client
            .create(
                &p,
                b"",
                &CreateOptions::new(zkit::CreateMode::PersistentSequential),
            )
            .await?;
        Ok(stat.ctime)
    }

    /// The kept run records of the job, by fire time then shard.
    ///
    /// # Errors
    /// ZooKeeper errors.
    pub async fn history(&self, job: &str) -> Result<Vec<RunRecord>, Error> {
        let client = self.source.client().await?;
        let runs = format!("{}/runs", self.dir(job)?);
        let shards = match client.get_children(&runs).await {
            Ok((s, _)) => s,
            Err(Error::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for s in shards {
            let dir = format!("{runs}/{s}");
            let names = match client.get_children(&dir).await {
                Ok((n, _)) => n,
                Err(Error::NoNode) => continue,
                Err(e) => return Err(e),
            };
            for n in names {
                match client.get_data(&format!("{dir}/{n}")).await {
                    Ok((data, _)) => {
                        if let Ok(r) = serde_json::from_slice::<RunRecord>(&data) {
                            out.push(r);
                        }
                    }
                    Err(Error::NoNode) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        out.sort_by_key(|r| (r.fire_ms, r.shard, r.trigger));
        Ok(out)
    }

    /// Who owns each shard now (instance ids of the shard locks' holders,
    /// by shard), from the lock nodes' data... as far as the layout tells:
    /// the live instances of the job's party.
    ///
    /// # Errors
    /// ZooKeeper errors.
    pub async fn instances(&self, job: &str) -> Result<Vec<String>, Error> {
        let client = self.source.client().await?;
        match client
            .get_children(&format!("{}/shards/party", self.dir(job)?))
            .await
        {
            Ok((mut names, _)) => {
                names.sort();
                Ok(names)
            }
            Err(Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_fires_count_from_the_anchor() {
        let spec = JobSpec::every("j", Duration::from_millis(1000))
            .unwrap()
            .anchor_ms(10_000);
        let p = spec.plan();
        assert_eq!(p.next_after(i64::MIN), Some(11_000));
        assert_eq!(p.next_after(11_000), Some(12_000));
        assert_eq!(p.next_after(11_999), Some(12_000));
        assert_eq!(p.latest_until(10_999), None);
        assert_eq!(p.latest_until(12_500), Some(12_000));
        assert_eq!(p.latest_until(13_000), Some(13_000));
    }

    #[test]
    fn cron_fires_in_utc_after_the_anchor() {
        // 2026-01-01T00:00:00Z = 1767225600000
        let spec = JobSpec::cron("j", "*/15 * * * * *")
            .unwrap()
            .anchor_ms(1_767_225_600_000);
        let p = spec.plan();
        assert_eq!(p.next_after(i64::MIN), Some(1_767_225_615_000));
        assert_eq!(p.next_after(1_767_225_615_000), Some(1_767_225_630_000));
        assert_eq!(p.latest_until(1_767_225_629_999), Some(1_767_225_615_000));
        assert_eq!(p.latest_until(1_767_225_600_000), None, "not the anchor");
        let daily = JobSpec::cron("d", "30 2 * * *").unwrap().anchor_ms(0);
        assert_eq!(
            daily.plan().next_after(1_767_225_600_000),
            Some(1_767_225_600_000 + (2 * 3600 + 30 * 60) * 1000)
        );
        assert!(JobSpec::cron("j", "61 * * * *").is_err());
        assert!(JobSpec::cron("j", "not cron").is_err());
    }

    #[test]
    fn definitions_round_trip_and_refuse_nonsense() {
        let spec = JobSpec::every("j", Duration::from_secs(2))
            .unwrap()
            .shards(3)
            .payloads(["a", "b", "c"])
            .misfire(Misfire::Skip)
            .history(4);
        let doc = serde_json::to_string(&spec.to_doc(5)).unwrap();
        assert_eq!(
            doc,
            r#"{"every_ms":2000,"shards":3,"payloads":["a","b","c"],"misfire":"skip","misfire_threshold_ms":1000,"history":4,"anchor_ms":5}"#
        );
        let back = JobSpec::from_doc("j", serde_json::from_str(&doc).unwrap()).unwrap();
        assert_eq!(back, spec.anchor_ms(5));
        // What an operator may type in zkCli: the minimum.
        let min: SpecDoc = serde_json::from_str(r#"{"cron":"0 * * * *","anchor_ms":0}"#).unwrap();
        let min = JobSpec::from_doc("m", min).unwrap();
        assert_eq!(
            (min.shards, min.history, min.misfire),
            (1, 10, Misfire::FireOnce)
        );
        for bad in [
            r#"{"anchor_ms":0}"#,
            r#"{"cron":"x","anchor_ms":0}"#,
            r#"{"every_ms":0,"anchor_ms":0}"#,
            r#"{"every_ms":1000,"cron":"* * * * *","anchor_ms":0}"#,
            r#"{"every_ms":1000,"shards":0,"anchor_ms":0}"#,
        ] {
            let doc: SpecDoc = serde_json::from_str(bad).unwrap();
            assert!(JobSpec::from_doc("b", doc).is_err(), "{bad}");
        }
        assert!(JobSpec::every("a/b", Duration::from_secs(1)).is_err());
        assert!(JobSpec::every("j", Duration::from_micros(500)).is_err());
    }

    #[test]
    fn record_names_sort_by_fire_time() {
        assert_eq!(record_name(1_767_225_600_000, false), "1767225600000");
        assert_eq!(record_name(5, true), "0000000000005-t");
        assert_eq!(parse_record_name("0000000000005-t"), Some((5, true)));
        assert_eq!(
            parse_record_name("1767225600000"),
            Some((1_767_225_600_000, false))
        );
        for bad in ["", "12", "abc", "000000000000x", "1767225600000-x"] {
            assert_eq!(parse_record_name(bad), None, "{bad}");
        }
    }
}
