//! The checkers: each turns a workload's records (and ZooKeeper's final
//! state) into violations by kind. A workload that made no progress is a
//! violation too: a schedule that tested nothing must not pass.

use std::collections::{BTreeMap, BTreeSet};

use crate::workloads::{
    ConfigRecord, CounterRecord, DiscoveryRecord, FencedLog, Hold, Holds, LeaderRecord, LockRecord,
    MembershipRecord, PartitionRecord, QueueRecord,
};

/// Violations by kind, with one example each.
#[derive(Debug, Default)]
pub(crate) struct Violations {
    pub(crate) by_kind: BTreeMap<String, (u64, String)>,
}

impl Violations {
    pub(crate) fn add(&mut self, kind: &str, example: String) {
        let e = self.by_kind.entry(kind.to_string()).or_insert((0, example));
        e.0 += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }
}

/// Fenced increments of one node: every acknowledged value is distinct,
/// the final value lies between the acknowledged count and that plus the
/// unknown outcomes, and tokens never go back as values go up.
pub(crate) fn fenced(name: &str, log: &FencedLog, final_value: i64, v: &mut Violations) {
    let mut acked = log.acked.clone();
    acked.sort_by_key(|f| f.value);
    for w in acked.windows(2) {
        if w[0].value == w[1].value {
            v.add(
                &format!("{name}: value acknowledged twice"),
                format!("value {}", w[0].value),
            );
        }
        if w[1].token < w[0].token {
            v.add(
                &format!("{name}: fencing token went back"),
                format!(
                    "value {} under token {:#x}, then value {} under token {:#x}",
                    w[0].value, w[0].token, w[1].value, w[1].token
                ),
            );
        }
    }
    let n = acked.len() as i64;
    let unknown = i64::try_from(log.unknown).unwrap_or(i64::MAX);
    if final_value < n || final_value > n.saturating_add(unknown) {
        v.add(
            &format!("{name}: counter != acknowledged writes"),
            format!("final {final_value}, acknowledged {n}, unknown {unknown}"),
        );
    }
}

/// Where a hold stops counting: when its holder was told Suspended/Lost,
/// or its end.
fn unwarned_end(h: &Hold) -> u64 {
    h.warned.map_or(h.end, |w| w.min(h.end))
}

/// Holds whose session the nemesis expired from outside (a second client
/// resuming it and closing it) count as warned from that moment: the server
/// deletes the holder's node and closes its connection at once, and who
/// hears first — the holder of its loss, or a waiter of the free lock — is
/// a race no client can win. (A real expiry comes after the holder has been
/// silent for the session timeout, two thirds of which made it Suspended.)
pub(crate) fn warn_expired(holds: &mut [Hold], expiries: &[(i64, u64)]) {
    for h in holds {
        for &(session, at) in expiries {
            if h.session == session && h.start <= at && at < h.end {
                h.warned = Some(h.warned.map_or(at, |w| w.min(at)));
            }
        }
    }
}

/// Pairs of holds by different contenders, which `exclusive` says may not
/// overlap, whose unwarned parts overlap: both overlapped while neither had
/// been told Suspended/Lost.
fn unwarned_overlaps(
    holds: &[Hold],
    exclusive: impl Fn(&Hold, &Hold) -> bool,
) -> Vec<(Hold, Hold)> {
    let mut holds = holds.to_vec();
    holds.sort_by_key(|h| h.start);
    let mut out = Vec::new();
    for (i, a) in holds.iter().enumerate() {
        for b in &holds[i + 1..] {
            // Sorted by start: no later hold begins before `a` stops counting.
            if b.start >= unwarned_end(a) {
                break;
            }
            if a.who != b.who && b.start < unwarned_end(b) && exclusive(a, b) {
                out.push((*a, *b));
            }
        }
    }
    out
}

/// Mutual exclusion: two holds by different contenders that overlap, where
/// neither had been told Suspended/Lost before the overlap began. A worker
/// process's hold that spans one of its `pauses` (SIGSTOP) is exempt: a
/// frozen process cannot be told anything, which is what fencing is for
/// (its fenced writes are checked with everyone's).
pub(crate) fn lock(
    rec: &LockRecord,
    final_counter: i64,
    pauses: &[(u64, u64)],
    v: &mut Violations,
) {
    let frozen = |h: &Hold| {
        h.who >= crate::workloads::WORKER_IDS
            && pauses.iter().any(|&(s, e)| h.start <= e && h.end >= s)
    };
    for (a, b) in unwarned_overlaps(&rec.holds, |a, b| !frozen(a) && !frozen(b)) {
        v.add(
            "lock: unsafe overlap",
            format!(
                "contender {} held [{}, {}] µs (token {:#x}) and contender {} [{}, {}] µs (token {:#x}), neither warned",
                a.who, a.start, a.end, a.token, b.who, b.start, b.end, b.token
            ),
        );
    }
    fenced("lock", &rec.fenced, final_counter, v);
    if rec.holds.is_empty() || rec.fenced.acked.is_empty() {
        v.add(
            "lock: no progress",
            format!(
                "{} holds, {} fenced writes",
                rec.holds.len(),
                rec.fenced.acked.len()
            ),
        );
    }
}

pub(crate) fn counter(rec: &CounterRecord, final_value: i64, v: &mut Violations) {
    let acked = i64::try_from(rec.acked).unwrap_or(i64::MAX);
    let unknown = i64::try_from(rec.unknown).unwrap_or(i64::MAX);
    if final_value < acked || final_value > acked.saturating_add(unknown) {
        v.add(
            "counter: final != acknowledged increments",
            format!("final {final_value}, acknowledged {acked}, unknown {unknown}"),
        );
    }
    if rec.acked == 0 {
        v.add("counter: no progress", String::new());
    }
}

/// At least once, never completed twice: every acknowledged put is either
/// completed or still in the queue; no completion acknowledged twice; no
/// completed item still queued; nothing queued that was never put.
pub(crate) fn queue(rec: &QueueRecord, remaining: &[String], v: &mut Violations) {
    let left: BTreeSet<&String> = remaining.iter().collect();
    for item in &rec.put {
        if !rec.completed.contains_key(item)
            && !left.contains(item)
            && !rec.complete_unknown.contains(item)
        {
            v.add("queue: acknowledged item lost", item.clone());
        }
    }
    for (item, n) in &rec.completed {
        if *n > 1 {
            v.add("queue: item completed twice", format!("{item} ×{n}"));
        }
        if left.contains(item) {
            v.add("queue: completed item still queued", item.clone());
        }
    }
    let known: BTreeSet<&String> = rec.put.iter().chain(&rec.put_unknown).collect();
    for item in remaining {
        if !known.contains(item) {
            v.add("queue: item never put", item.clone());
        }
    }
    if rec.completed.is_empty() {
        v.add(
            "queue: no progress",
            format!("{} put, {} delivered", rec.put.len(), rec.delivered),
        );
    }
}

pub(crate) fn leader(rec: &LeaderRecord, final_counter: i64, v: &mut Violations) {
    for (at, n) in &rec.double {
        v.add(
            "leader: two leaders in one sample",
            format!("{n} leaders at {at} µs"),
        );
    }
    fenced("leader", &rec.fenced, final_counter, v);
    if rec.led == 0 || rec.fenced.acked.is_empty() {
        v.add(
            "leader: no progress",
            format!(
                "{} samples with a leader, {} fenced writes",
                rec.led,
                rec.fenced.acked.len()
            ),
        );
    }
}

/// Never more than `max` holders at once, counting a hold only until its
/// holder was told Suspended/Lost.
pub(crate) fn semaphore(rec: &Holds, max: usize, v: &mut Violations) {
    let mut events: Vec<(u64, i32, usize)> = Vec::new();
    for h in &rec.holds {
        let end = unwarned_end(h);
        if end > h.start {
            events.push((h.start, 1, h.who));
            events.push((end, -1, h.who));
        }
    }
    // Ends before starts at the same instant.
    events.sort_by_key(|e| (e.0, e.1));
    let mut held = 0i32;
    for (at, delta, _) in events {
        held += delta;
        if held > i32::try_from(max).unwrap_or(i32::MAX) {
            v.add(
                "semaphore: more leases than allowed",
                format!("{held} unwarned holders at {at} µs (max {max})"),
            );
        }
    }
    if rec.holds.is_empty() {
        v.add("semaphore: no progress", String::new());
    }
}

/// Config subscription: every subscriber saw values only go up (the
/// publisher only raises them) and reached the final value.
pub(crate) fn config(rec: &ConfigRecord, v: &mut Violations) {
    for (i, seen) in rec.observed.iter().enumerate() {
        for w in seen.windows(2) {
            if w[1] < w[0] {
                v.add(
                    "config: value went backwards",
                    format!("subscriber {i} saw {} then {}", w[0], w[1]),
                );
            }
        }
        if !rec.reached.get(i).copied().unwrap_or(false) {
            v.add(
                "config: final value not reached",
                format!("subscriber {i} last saw {:?}", seen.last()),
            );
        }
        if seen.is_empty() {
            v.add("config: no progress", format!("subscriber {i} saw nothing"));
        }
    }
    if rec.published.is_empty() || rec.observed.is_empty() {
        v.add(
            "config: no progress",
            format!("{} published", rec.published.len()),
        );
    }
}

/// Read/write lock: a writer's hold never overlaps another hold (reader
/// or writer) unless one of the two had been told Suspended/Lost first;
/// readers may overlap each other.
pub(crate) fn rwlock(rec: &Holds, v: &mut Violations) {
    let writer = |h: &Hold| h.who < crate::workloads::READER_IDS;
    for (a, b) in unwarned_overlaps(&rec.holds, |a, b| writer(a) || writer(b)) {
        v.add(
            "rwlock: writer overlaps another holder",
            format!(
                "{} [{}, {}] and {} [{}, {}] µs",
                a.who, a.start, a.end, b.who, b.start, b.end
            ),
        );
    }
    let writes = rec.holds.iter().filter(|h| writer(h)).count();
    if writes == 0 || writes == rec.holds.len() {
        v.add(
            "rwlock: no progress",
            format!("{} holds, {writes} by writers", rec.holds.len()),
        );
    }
}

/// Work partitioning: no item worked on by two members at once unless one
/// had been told (its grant revoked, or its session expired from outside);
/// after the heal every item granted and the shares even.
pub(crate) fn partition(rec: &PartitionRecord, v: &mut Violations) {
    for (item, holds) in &rec.holds {
        for (a, b) in unwarned_overlaps(holds, |_, _| true) {
            v.add(
                "partition: an item owned by two members",
                format!(
                    "{item}: {} [{}, {}] and {} [{}, {}] µs",
                    a.who, a.start, a.end, b.who, b.start, b.end
                ),
            );
        }
    }
    match rec.settled {
        Some(true) => {}
        Some(false) => v.add(
            "partition: shares did not settle after the heal",
            format!("last shares (member: items) {:?}", rec.last_shares),
        ),
        None => v.add("partition: no progress", format!("{} grants", rec.grants)),
    }
    if rec.grants == 0 {
        v.add("partition: no progress", "no grant".to_string());
    }
}

/// Membership: after the heal the observer's view equals the truth, every
/// member present.
pub(crate) fn membership(rec: &MembershipRecord, v: &mut Violations) {
    match rec.converged {
        Some(true) => {}
        Some(false) => v.add(
            "membership: view did not converge after the heal",
            format!("view {:?}, truth {:?}", rec.last_view, rec.truth),
        ),
        None => v.add("membership: no progress", format!("{} joined", rec.joined)),
    }
}

/// Service discovery: the observer's cache converges to every instance
/// with its data, and no acknowledged update is lost.
pub(crate) fn discovery(rec: &DiscoveryRecord, v: &mut Violations) {
    if rec.registered == 0 || rec.acked.is_empty() {
        v.add(
            "discovery: no progress",
            format!("{} registered, {} updated", rec.registered, rec.acked.len()),
        );
        return;
    }
    if rec.converged != Some(true) {
        v.add(
            "discovery: the cache did not converge to the registered instances",
            format!("cache {:?}, truth {:?}", rec.last_view, rec.truth),
        );
    }
    for (id, &version) in &rec.acked {
        let now = rec.truth.iter().find(|(i, _)| i == id).map(|(_, p)| *p);
        if now.is_none_or(|p| p < version) {
            v.add(
                "discovery: an acknowledged update was lost",
                format!("{id}: update to {version} acknowledged, registered now {now:?}"),
            );
        }
    }
}

/// Scheduled jobs: no (fire, shard) run by two instances at once unless
/// one had been told (its run cancelled, or its session expired from
/// outside); every run recorded `Ok` is a run whose fenced effect went
/// through (same instance and attempt); after the heal every shard fires
/// again.
pub(crate) fn scheduler(rec: &crate::workloads::SchedulerRecord, v: &mut Violations) {
    for ((fire, shard), runs) in &rec.runs {
        for (a, b) in unwarned_overlaps(runs, |_, _| true) {
            v.add(
                "scheduler: a fire of a shard run twice at once",
                format!(
                    "{fire}/{shard}: {} [{}, {}] and {} [{}, {}] µs",
                    a.who, a.start, a.end, b.who, b.start, b.end
                ),
            );
        }
    }
    for r in &rec.records {
        if r.outcome != zkit_recipes::scheduler::Outcome::Ok {
            continue;
        }
        let who = r
            .instance
            .strip_prefix('s')
            .and_then(|w| w.parse::<usize>().ok());
        let effective =
            who.is_some_and(|w| rec.effective.contains(&(r.fire_ms, r.shard, r.attempt, w)));
        if !effective {
            v.add(
                "scheduler: a run recorded done without its fenced effect",
                format!("{r:?}"),
            );
        }
    }
    match rec.progressed {
        Some(true) => {}
        Some(false) => v.add(
            "scheduler: no fire after the heal",
            format!(
                "{} records, {} runs started",
                rec.records.len(),
                rec.started
            ),
        ),
        None => v.add(
            "scheduler: no progress",
            format!("{} runs started", rec.started),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::{Fenced, Hold};

    fn hold(who: usize, start: u64, end: u64, warned: Option<u64>) -> Hold {
        Hold {
            who,
            start,
            end,
            warned,
            token: 1,
            session: who as i64,
        }
    }

    fn fenced_log(pairs: &[(i64, i64)], unknown: u64) -> FencedLog {
        FencedLog {
            acked: pairs
                .iter()
                .map(|&(value, token)| Fenced { value, token })
                .collect(),
            refused: 0,
            unknown,
        }
    }

    #[test]
    fn overlapping_holds_violate_unless_one_was_warned_first() {
        let mut rec = LockRecord {
            holds: vec![hold(0, 0, 100, None), hold(1, 50, 150, None)],
            fenced: fenced_log(&[(1, 10), (2, 20)], 0),
        };
        let mut v = Violations::default();
        lock(&rec, 2, &[], &mut v);
        assert!(v.by_kind.contains_key("lock: unsafe overlap"), "{v:?}");
        // The first holder had been told Suspended before the overlap.
        rec.holds[0].warned = Some(40);
        let mut v = Violations::default();
        lock(&rec, 2, &[], &mut v);
        assert!(v.is_empty(), "{v:?}");
        // Told only after the other began: still unsafe.
        rec.holds[0].warned = Some(60);
        let mut v = Violations::default();
        lock(&rec, 2, &[], &mut v);
        assert!(v.by_kind.contains_key("lock: unsafe overlap"));
        // The same contender twice (release then acquire) is no overlap.
        rec.holds = vec![hold(0, 0, 100, None), hold(0, 50, 150, None)];
        let mut v = Violations::default();
        lock(&rec, 2, &[], &mut v);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn fenced_counters_tokens_and_progress() {
        let mut v = Violations::default();
        fenced("x", &fenced_log(&[(1, 10), (2, 5)], 0), 2, &mut v);
        assert!(v.by_kind.contains_key("x: fencing token went back"));
        let mut v = Violations::default();
        fenced("x", &fenced_log(&[(1, 10), (1, 10)], 0), 2, &mut v);
        assert!(v.by_kind.contains_key("x: value acknowledged twice"));
        // Final between acknowledged and acknowledged + unknown.
        for (final_value, ok) in [(2, true), (3, true), (4, false), (1, false)] {
            let mut v = Violations::default();
            fenced(
                "x",
                &fenced_log(&[(1, 10), (2, 20)], 1),
                final_value,
                &mut v,
            );
            assert_eq!(v.is_empty(), ok, "final {final_value}: {v:?}");
        }
        let mut v = Violations::default();
        lock(&LockRecord::default(), 0, &[], &mut v);
        assert!(v.by_kind.contains_key("lock: no progress"));
        let mut v = Violations::default();
        counter(
            &CounterRecord {
                acked: 5,
                unknown: 0,
            },
            4,
            &mut v,
        );
        assert!(v
            .by_kind
            .contains_key("counter: final != acknowledged increments"));
    }

    #[test]
    fn queue_items_lost_or_completed_twice() {
        let rec = QueueRecord {
            put: vec!["a".into(), "b".into(), "c".into()],
            put_unknown: vec!["d".into()],
            completed: [("a".to_string(), 2), ("b".to_string(), 1)]
                .into_iter()
                .collect(),
            delivered: 3,
            complete_unknown: Default::default(),
        };
        let mut v = Violations::default();
        queue(&rec, &["b".into(), "d".into(), "z".into()], &mut v);
        for kind in [
            "queue: item completed twice",
            "queue: completed item still queued",
            "queue: acknowledged item lost",
            "queue: item never put",
        ] {
            assert!(v.by_kind.contains_key(kind), "{kind}: {v:?}");
        }
        let mut v = Violations::default();
        queue(&rec, &["c".into()], &mut v);
        assert_eq!(v.by_kind.len(), 1, "only a's double completion: {v:?}");
    }

    #[test]
    fn two_leaders_in_a_sample() {
        let rec = LeaderRecord {
            fenced: fenced_log(&[(1, 10)], 0),
            double: vec![(5, 2)],
            samples: 10,
            led: 9,
        };
        let mut v = Violations::default();
        leader(&rec, 1, &mut v);
        assert!(v.by_kind.contains_key("leader: two leaders in one sample"));
    }

    #[test]
    fn an_expiry_from_outside_warns_the_holds_of_that_session() {
        let mut holds = vec![hold(0, 0, 100, None), hold(1, 90, 200, None)];
        let mut v = Violations::default();
        rwlock(
            &Holds {
                holds: holds.clone(),
            },
            &mut v,
        );
        assert!(v
            .by_kind
            .contains_key("rwlock: writer overlaps another holder"));
        // Session 0 was expired at 89 µs: its hold ends counting there.
        warn_expired(&mut holds, &[(0, 89), (7, 10)]);
        assert_eq!(holds[0].warned, Some(89));
        assert_eq!(holds[1].warned, None);
        let mut v = Violations::default();
        rwlock(&Holds { holds }, &mut v);
        assert!(
            !v.by_kind
                .contains_key("rwlock: writer overlaps another holder"),
            "{v:?}"
        );
        // An expiry outside the hold changes nothing.
        let mut late = vec![hold(0, 0, 100, None)];
        warn_expired(&mut late, &[(0, 150)]);
        assert_eq!(late[0].warned, None);
    }

    #[test]
    fn discovery_violations_fire() {
        let good = DiscoveryRecord {
            registered: 2,
            acked: [("i0".to_string(), 5), ("i1".to_string(), 6)].into(),
            updates: 6,
            changes: 9,
            converged: Some(true),
            last_view: vec![("i0".into(), 5), ("i1".into(), 7)],
            truth: vec![("i0".into(), 5), ("i1".into(), 7)],
        };
        let mut v = Violations::default();
        discovery(&good, &mut v);
        assert!(v.is_empty(), "{v:?}");
        let bad = DiscoveryRecord {
            converged: Some(false),
            last_view: vec![("i0".into(), 5)],
            truth: vec![("i0".into(), 4), ("i1".into(), 7)],
            ..good
        };
        let mut v = Violations::default();
        discovery(&bad, &mut v);
        assert_eq!(
            v.by_kind.keys().collect::<Vec<_>>(),
            [
                "discovery: an acknowledged update was lost",
                "discovery: the cache did not converge to the registered instances"
            ]
        );
        let mut v = Violations::default();
        discovery(&DiscoveryRecord::default(), &mut v);
        assert!(v.by_kind.contains_key("discovery: no progress"));
    }

    #[test]
    fn semaphore_counts_unwarned_holders() {
        let rec = Holds {
            holds: vec![
                hold(0, 0, 100, None),
                hold(1, 10, 100, None),
                hold(2, 20, 100, Some(15)),
            ],
        };
        let mut v = Violations::default();
        semaphore(&rec, 2, &mut v);
        assert!(v.is_empty(), "a warned third holder is fine: {v:?}");
        let mut rec = rec;
        rec.holds[2].warned = Some(50);
        let mut v = Violations::default();
        semaphore(&rec, 2, &mut v);
        assert!(v
            .by_kind
            .contains_key("semaphore: more leases than allowed"));
        // Back to back at the same instant is not an overlap.
        let rec = Holds {
            holds: vec![hold(0, 0, 10, None), hold(1, 10, 20, None)],
        };
        let mut v = Violations::default();
        semaphore(&rec, 1, &mut v);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn config_values_only_go_up_and_arrive() {
        let mut rec = ConfigRecord {
            published: vec![1, 2, 3],
            observed: vec![vec![1, 3], vec![2, 1, 3]],
            reached: vec![true, false],
        };
        let mut v = Violations::default();
        config(&rec, &mut v);
        assert!(v.by_kind.contains_key("config: value went backwards"));
        assert!(v.by_kind.contains_key("config: final value not reached"));
        rec.observed[1] = vec![2, 3];
        rec.reached[1] = true;
        let mut v = Violations::default();
        config(&rec, &mut v);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn a_frozen_worker_hold_is_exempt_but_only_while_paused() {
        let rec = LockRecord {
            holds: vec![hold(100, 0, 5000, None), hold(1, 3000, 4000, None)],
            fenced: fenced_log(&[(1, 10)], 0),
        };
        let mut v = Violations::default();
        lock(&rec, 1, &[(1000, 3500)], &mut v);
        assert!(v.is_empty(), "{v:?}");
        let mut v = Violations::default();
        lock(&rec, 1, &[(6000, 7000)], &mut v);
        assert!(v.by_kind.contains_key("lock: unsafe overlap"));
    }

    #[test]
    fn rwlock_writers_exclude_everyone_readers_share() {
        let rec = Holds {
            holds: vec![
                hold(10, 0, 100, None),
                hold(11, 50, 150, None),
                hold(0, 200, 300, None),
            ],
        };
        let mut v = Violations::default();
        rwlock(&rec, &mut v);
        assert!(v.is_empty(), "{v:?}");
        let rec = Holds {
            holds: vec![hold(10, 0, 100, None), hold(0, 50, 150, None)],
        };
        let mut v = Violations::default();
        rwlock(&rec, &mut v);
        assert!(v
            .by_kind
            .contains_key("rwlock: writer overlaps another holder"));
    }

    #[test]
    fn membership_must_converge() {
        let rec = MembershipRecord {
            converged: Some(false),
            ..MembershipRecord::default()
        };
        let mut v = Violations::default();
        membership(&rec, &mut v);
        assert!(v
            .by_kind
            .contains_key("membership: view did not converge after the heal"));
    }
}
