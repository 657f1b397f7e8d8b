//! The recipe workloads as one suite: their records, how each starts, and
//! how each is checked against the final state. The fault harness runs
//! them all at once; the simulation runs one per schedule.

use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;
use zkit::{Client, CreateOptions};

use crate::checks::{self, Violations};
use crate::workloads::{self, lock, Env};

/// The recipe workloads, by name.
pub(crate) const RECIPES: [&str; 11] = [
    "lock",
    "counter",
    "queue",
    "leader",
    "semaphore",
    "config",
    "rwlock",
    "membership",
    "discovery",
    "partition",
    "scheduler",
];

/// Nodes the workloads expect under their base (with their data), after
/// the base itself.
const NODES: [(&str, &str); 2] = [("lock-counter", "0"), ("leader-counter", "0")];

/// Creates `base` and the nodes the workloads expect under it.
pub(crate) async fn create_nodes(c: &Client, base: &str) -> Result<(), String> {
    let nodes = std::iter::once((base.to_string(), ""))
        .chain(NODES.iter().map(|(n, d)| (format!("{base}/{n}"), *d)));
    for (path, data) in nodes {
        c.create(&path, data.as_bytes(), &CreateOptions::default())
            .await
            .map_err(|e| format!("create {path}: {e}"))?;
    }
    Ok(())
}

/// What every workload of the suite records.
#[derive(Default)]
pub(crate) struct Records {
    pub(crate) lock: Arc<Mutex<workloads::LockRecord>>,
    counter: Arc<Mutex<workloads::CounterRecord>>,
    queue: Arc<Mutex<workloads::QueueRecord>>,
    leader: Arc<Mutex<workloads::LeaderRecord>>,
    semaphore: Arc<Mutex<workloads::Holds>>,
    config: Arc<Mutex<workloads::ConfigRecord>>,
    rwlock: Arc<Mutex<workloads::Holds>>,
    membership: Arc<Mutex<workloads::MembershipRecord>>,
    discovery: Arc<Mutex<workloads::DiscoveryRecord>>,
    partition: Arc<Mutex<workloads::PartitionRecord>>,
    scheduler: Arc<Mutex<workloads::SchedulerRecord>>,
}

impl Records {
    /// Starts workload `recipe`'s clients (the lock's in this process: a
    /// worker process is the harness's to start).
    pub(crate) fn spawn(&self, recipe: &str, env: &Env, seed: u64) -> Vec<JoinHandle<()>> {
        let e = || env.clone();
        let each = |n: u64, mul: u64| {
            (0..n).map(move |w| (w as usize, seed.wrapping_mul(mul).wrapping_add(w)))
        };
        match recipe {
            "lock" => each(3, 31)
                .map(|(w, s)| tokio::spawn(workloads::lock_contender(e(), w, s, self.lock.clone())))
                .collect(),
            "counter" => (0..2)
                .map(|_| tokio::spawn(workloads::counter_client(e(), self.counter.clone())))
                .collect(),
            "queue" => std::iter::once(tokio::spawn(workloads::queue_producer(
                e(),
                self.queue.clone(),
            )))
            .chain((0..2).map(|_| tokio::spawn(workloads::queue_consumer(e(), self.queue.clone()))))
            .collect(),
            "leader" => vec![tokio::spawn(workloads::leader_election(
                e(),
                3,
                self.leader.clone(),
            ))],
            "semaphore" => each(4, 37)
                .map(|(w, s)| {
                    tokio::spawn(workloads::semaphore_holder(
                        e(),
                        w,
                        s,
                        self.semaphore.clone(),
                    ))
                })
                .collect(),
            "config" => {
                std::iter::once(tokio::spawn(workloads::config_publisher(
                    e(),
                    self.config.clone(),
                )))
                .chain((0..2).map(|i| {
                    tokio::spawn(workloads::config_subscriber(e(), i, self.config.clone()))
                }))
                .collect()
            }
            "rwlock" => [0, 1, workloads::READER_IDS, workloads::READER_IDS + 1]
                .into_iter()
                .map(|w| {
                    let s = seed.wrapping_mul(43).wrapping_add(w as u64);
                    tokio::spawn(workloads::rw_contender(e(), w, s, self.rwlock.clone()))
                })
                .collect(),
            "membership" => vec![tokio::spawn(workloads::membership(
                e(),
                3,
                self.membership.clone(),
            ))],
            "partition" => vec![tokio::spawn(workloads::partition(
                e(),
                3,
                seed.wrapping_mul(47),
                self.partition.clone(),
            ))],
            "scheduler" => vec![tokio::spawn(workloads::scheduler(
                e(),
                3,
                self.scheduler.clone(),
            ))],
            _ => vec![tokio::spawn(workloads::discovery(
                e(),
                3,
                self.discovery.clone(),
            ))],
        }
    }

    /// Checks workload `recipe` against the final state, read through
    /// `check` under `base`. `pauses` are the worker process's SIGSTOPs;
    /// holds whose session is in `expiries` (expired from outside) count as
    /// warned from then. Returns the workload's operation counts.
    pub(crate) async fn check(
        &self,
        recipe: &str,
        check: &Client,
        base: &str,
        pauses: &[(u64, u64)],
        expiries: &[(i64, u64)],
        v: &mut Violations,
    ) -> Map<String, Value> {
        let fenced = |name: &'static str| async move {
            let (d, _) = check.get_data(&format!("{base}/{name}")).await.ok()?;
            std::str::from_utf8(&d).ok()?.parse::<i64>().ok()
        };
        let ops = match recipe {
            "lock" => {
                let fin = fenced("lock-counter").await.unwrap_or(-1);
                let mut r = lock(&self.lock);
                checks::warn_expired(&mut r.holds, expiries);
                checks::lock(&r, fin, pauses, v);
                json!({
                    "lock_holds": r.holds.len(),
                    "lock_fenced_writes": r.fenced.acked.len(),
                    "lock_refused_writes": r.fenced.refused,
                    "lock_worker_holds": r.holds.iter().filter(|h| h.who >= workloads::WORKER_IDS).count(),
                })
            }
            "counter" => {
                let count = zkit_recipes::SharedCount::new(check, format!("{base}/counter"), 0);
                let fin = count.get().await.map_or(-1, |c| i64::from(c.value));
                let r = lock(&self.counter);
                checks::counter(&r, fin, v);
                json!({"counter_increments": r.acked, "counter_unknown": r.unknown})
            }
            "queue" => {
                let q = zkit_recipes::Queue::new(check, format!("{base}/queue"));
                let mut left = Vec::new();
                loop {
                    match q.try_take().await {
                        Ok(Some(d)) => left.push(String::from_utf8_lossy(&d).into_owned()),
                        Ok(None) => break,
                        Err(e) => {
                            v.add("harness: draining the queue failed", e.to_string());
                            break;
                        }
                    }
                }
                let r = lock(&self.queue);
                checks::queue(&r, &left, v);
                json!({
                    "queue_put": r.put.len(),
                    "queue_completed": r.completed.len(),
                    "queue_delivered": r.delivered,
                    "queue_left": left.len(),
                    "queue_complete_unknown": r.complete_unknown.len(),
                })
            }
            "leader" => {
                let fin = fenced("leader-counter").await.unwrap_or(-1);
                let r = lock(&self.leader);
                checks::leader(&r, fin, v);
                json!({"leader_samples": r.samples, "leader_fenced_writes": r.fenced.acked.len()})
            }
            "semaphore" => {
                let mut r = lock(&self.semaphore);
                checks::warn_expired(&mut r.holds, expiries);
                checks::semaphore(&r, workloads::SEMAPHORE_LEASES, v);
                json!({"semaphore_leases": r.holds.len()})
            }
            "config" => {
                let r = lock(&self.config);
                checks::config(&r, v);
                json!({
                    "config_published": r.published.len(),
                    "config_observed": r.observed.iter().map(Vec::len).collect::<Vec<_>>(),
                })
            }
            "rwlock" => {
                let mut r = lock(&self.rwlock);
                checks::warn_expired(&mut r.holds, expiries);
                checks::rwlock(&r, v);
                json!({"rwlock_holds": r.holds.len()})
            }
            "membership" => {
                let r = lock(&self.membership);
                checks::membership(&r, v);
                json!({"membership_view_changes": r.changes})
            }
            "partition" => {
                let mut r = lock(&self.partition);
                for holds in r.holds.values_mut() {
                    checks::warn_expired(holds, expiries);
                }
                checks::partition(&r, v);
                json!({
                    "partition_grants": r.grants,
                    "partition_holds": r.holds.values().map(Vec::len).sum::<usize>(),
                    "partition_leaves": r.leaves,
                })
            }
            "scheduler" => {
                let mut r = lock(&self.scheduler);
                for runs in r.runs.values_mut() {
                    checks::warn_expired(runs, expiries);
                }
                checks::scheduler(&r, v);
                json!({
                    "scheduler_runs": r.started,
                    "scheduler_records": r.records.len(),
                    "scheduler_effective": r.effective.len(),
                })
            }
            _ => {
                let r = lock(&self.discovery);
                checks::discovery(&r, v);
                json!({"discovery_updates": r.updates, "discovery_cache_changes": r.changes})
            }
        };
        match ops {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}
