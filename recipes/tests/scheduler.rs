//! `Scheduler`: every fire of every shard runs once across instances, a
//! fire whose owner died runs again elsewhere (and the dead owner's late
//! completion is fenced out), and the operator znodes (pause, trigger,
//! disabled shards) with both misfire policies.

#[path = "../../tests/common/mod.rs"]
mod common;
mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{base, client, soon, SOON};
use procs::now_ms;
use tokio::sync::broadcast;
use zkit::{CreateOptions, Error};
use zkit_recipes::scheduler::{
    JobSpec, Jobs, Misfire, Outcome, RunRecord, Scheduler, SchedulerEvent, SchedulerOptions,
};

#[derive(Debug, Clone)]
struct Run {
    fire: i64,
    shard: u32,
    instance: String,
    start: Instant,
    end: Instant,
}

fn fast() -> SchedulerOptions {
    SchedulerOptions::default().resync(Duration::from_millis(500))
}

/// Waits for an event matching `pred`.
async fn event(
    rx: &mut broadcast::Receiver<SchedulerEvent>,
    what: &str,
    pred: impl Fn(&SchedulerEvent) -> bool,
) -> SchedulerEvent {
    soon(what, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{what}: {e}"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_run_every_fire_of_every_shard_once() {
    let c = client().await;
    let root = base(&c, "sched").await;
    let effects = format!("{root}/effects");
    c.create(&effects, b"", &CreateOptions::default())
        .await
        .unwrap();
    let jobs = Jobs::new(&c, &root);
    jobs.define(
        &JobSpec::every("tick", Duration::from_millis(250))
            .unwrap()
            .shards(4)
            .history(1000),
    )
    .await
    .unwrap();
    let log: Arc<Mutex<Vec<Run>>> = Arc::default();
    let mut instances = Vec::new();
    let mut clients = Vec::new();
    for i in 0..3 {
        let ci = client().await;
        let log = log.clone();
        let effects = effects.clone();
        let s = Scheduler::new(&ci, &root, &format!("i{i}"))
            .options(fast())
            .handle("tick", move |ctx| {
                let log = log.clone();
                let effects = effects.clone();
                async move {
                    let start = Instant::now();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    // The job's effect, fenced: a second run of the same
                    // (fire, shard) would fail here with NodeExists.
                    ctx.guarded()
                        .create(
                            &format!("{effects}/{}-{}", ctx.fire_ms(), ctx.shard()),
                            ctx.instance().as_bytes(),
                            &CreateOptions::default(),
                        )
                        .commit()
                        .await?;
                    log.lock().unwrap().push(Run {
                        fire: ctx.fire_ms(),
                        shard: ctx.shard(),
                        instance: ctx.instance().to_string(),
                        start,
                        end: Instant::now(),
                    });
                    Ok::<(), Error>(())
                }
            })
            .start()
            .unwrap();
        instances.push(Some(s));
        clients.push(ci);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // One instance leaves: its shards move to the others.
    instances[1].take().unwrap().close().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for s in instances.into_iter().flatten() {
        s.close().await;
    }
    let runs = log.lock().unwrap().clone();
    let history = jobs.history("tick").await.unwrap();
    // Every record is complete and Ok, one per (fire, shard), and matches
    // one logged run.
    let mut by_key: BTreeMap<(i64, u32), Vec<&Run>> = BTreeMap::new();
    for r in &runs {
        by_key.entry((r.fire, r.shard)).or_default().push(r);
    }
    assert!(
        by_key.values().all(|v| v.len() == 1),
        "a (fire, shard) ran twice: {:?}",
        by_key.values().filter(|v| v.len() > 1).collect::<Vec<_>>()
    );
    let recorded: BTreeSet<(i64, u32)> = history.iter().map(|r| (r.fire_ms, r.shard)).collect();
    assert_eq!(recorded.len(), history.len());
    for r in &history {
        assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
        assert!(by_key.contains_key(&(r.fire_ms, r.shard)), "{r:?} not run");
    }
    // Runs cut short by the closes are not recorded; every other run is.
    assert!(
        recorded.len() + 8 >= by_key.len(),
        "{} recorded of {}",
        recorded.len(),
        by_key.len()
    );
    // Every shard fired at every 250 ms step from its first fire to its last:
    // no fire lost in the handover.
    for shard in 0..4 {
        let fires: Vec<i64> = recorded
            .iter()
            .filter(|(_, s)| *s == shard)
            .map(|(f, _)| *f)
            .collect();
        assert!(fires.len() >= 12, "shard {shard}: {} fires", fires.len());
        for w in fires.windows(2) {
            assert_eq!(w[1] - w[0], 250, "shard {shard}: a gap in {fires:?}");
        }
    }
    // All three instances ran fires; the one that left ran none after.
    let by_instance: BTreeSet<&str> = runs.iter().map(|r| r.instance.as_str()).collect();
    assert_eq!(by_instance.len(), 3, "{by_instance:?}");
    let (effect_names, _) = c.get_children(&effects).await.unwrap();
    assert_eq!(effect_names.len(), runs.len(), "one effect per run");
    // Runs of one shard never overlap in time.
    for shard in 0..4 {
        let mut rs: Vec<&Run> = runs.iter().filter(|r| r.shard == shard).collect();
        rs.sort_by_key(|r| r.start);
        for w in rs.windows(2) {
            assert!(
                w[0].end <= w[1].start,
                "shard {shard}: overlapping runs {w:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_whose_owner_died_runs_again_elsewhere_and_the_dead_owner_is_fenced() {
    let c = client().await;
    let root = base(&c, "sched-failover").await;
    let jobs = Jobs::new(&c, &root);
    // Fires only when triggered.
    jobs.define(&JobSpec::cron("once", "0 0 1 1 *").unwrap())
        .await
        .unwrap();
    let doomed = client().await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    let (rerun_tx, rerun_rx) = tokio::sync::watch::channel(false);
    let late_write: Arc<Mutex<Option<Result<(), String>>>> = Arc::default();
    let a = {
        let late_write = late_write.clone();
        let late_path = format!("{root}/late");
        Scheduler::new(&doomed, &root, "a")
            .options(fast())
            .handle("once", move |ctx| {
                let started = started_tx.lock().unwrap().take();
                let mut rerun = rerun_rx.clone();
                let late_write = late_write.clone();
                let late_path = late_path.clone();
                async move {
                    if let Some(s) = started {
                        let _ = s.send(());
                    }
                    // Stuck: finishes only after the fire ran elsewhere.
                    let _ = rerun.wait_for(|r| *r).await;
                    let r = ctx
                        .guarded()
                        .create(&late_path, b"", &CreateOptions::default())
                        .commit()
                        .await;
                    *late_write.lock().unwrap() = Some(r.map(|_| ()).map_err(|e| format!("{e:?}")));
                    Ok::<(), Error>(())
                }
            })
            .start()
            .unwrap()
    };
    let mut a_events = a.events();
    event(
        &mut a_events,
        "a owns the shard",
        |e| matches!(e, SchedulerEvent::Acquired { shards, .. } if shards == &[0]),
    )
    .await;
    let fire = jobs.trigger("once").await.unwrap();
    soon("a starts the fire", started_rx).await.unwrap();
    // B joins while A runs: B gets nothing (one shard, A holds it).
    let cb = client().await;
    let b_attempts: Arc<Mutex<Vec<(i64, u32)>>> = Arc::default();
    let b = {
        let b_attempts = b_attempts.clone();
        Scheduler::new(&cb, &root, "b")
            .options(fast())
            .handle("once", move |ctx| {
                let b_attempts = b_attempts.clone();
                async move {
                    b_attempts
                        .lock()
                        .unwrap()
                        .push((ctx.fire_ms(), ctx.attempt()));
                    Ok::<(), Error>(())
                }
            })
            .start()
            .unwrap()
    };
    let mut b_events = b.events();
    // A's process "dies": its session expires on the server.
    common::expire(&doomed).await;
    let e = event(&mut b_events, "b runs the fire again", |e| {
        matches!(e, SchedulerEvent::Finished { .. })
    })
    .await;
    assert_eq!(
        e,
        SchedulerEvent::Finished {
            job: "once".into(),
            shard: 0,
            fire_ms: fire,
            outcome: Outcome::Ok,
            recorded: true
        }
    );
    assert_eq!(*b_attempts.lock().unwrap(), vec![(fire, 2)], "attempt 2");
    let history = jobs.history("once").await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    let rec: &RunRecord = &history[0];
    assert_eq!(
        (
            rec.fire_ms,
            rec.instance.as_str(),
            rec.attempt,
            rec.trigger,
            &rec.outcome
        ),
        (fire, "b", 2, true, &Outcome::Ok)
    );
    // A's stuck run now ends: its own write and its completion are refused.
    rerun_tx.send(true).unwrap();
    let e = event(&mut a_events, "a's run ends", |e| {
        matches!(e, SchedulerEvent::Finished { .. })
    })
    .await;
    assert!(
        matches!(
            e,
            SchedulerEvent::Finished {
                recorded: false,
                ..
            }
        ),
        "{e:?}"
    );
    let late = late_write
        .lock()
        .unwrap()
        .clone()
        .expect("a tried its write");
    assert!(late.is_err(), "a stale owner's write went through");
    assert_eq!(jobs.history("once").await.unwrap(), history, "unchanged");
    // The trigger node is retired once every shard ran it.
    common::eventually("the trigger is retired", SOON, || async {
        let (names, _) = c.get_children(&format!("{root}/jobs/once")).await.unwrap();
        !names.iter().any(|n| n.starts_with("trigger-"))
    })
    .await;
    drop(a);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_pause_trigger_and_disable_through_znodes() {
    let c = client().await;
    let root = base(&c, "sched-ops").await;
    let jobs = Jobs::new(&c, &root);
    for (name, policy) in [("once", Misfire::FireOnce), ("skip", Misfire::Skip)] {
        jobs.define(
            &JobSpec::every(name, Duration::from_millis(200))
                .unwrap()
                .shards(2)
                .misfire(policy)
                .misfire_threshold(Duration::from_millis(100))
                .history(1000),
        )
        .await
        .unwrap();
    }
    let ci = client().await;
    let s = Scheduler::new(&ci, &root, "solo")
        .options(fast())
        .handle("once", |_ctx| async { Ok::<(), Error>(()) })
        .handle("skip", |_ctx| async { Ok::<(), Error>(()) })
        .start()
        .unwrap();
    let mut events = s.events();
    for job in ["once", "skip"] {
        event(
            &mut events,
            "fires",
            |e| matches!(e, SchedulerEvent::Finished { job: j, .. } if j == job),
        )
        .await;
    }
    // Pause both, as an operator would in zkCli.
    for job in ["once", "skip"] {
        c.create(
            &format!("{root}/jobs/{job}/paused"),
            b"",
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // runs in flight end
    let paused_at = now_ms();
    let before: BTreeMap<&str, usize> = {
        let mut m = BTreeMap::new();
        for job in ["once", "skip"] {
            m.insert(job, jobs.history(job).await.unwrap().len());
        }
        m
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for job in ["once", "skip"] {
        assert_eq!(
            jobs.history(job).await.unwrap().len(),
            before[job],
            "{job}: no fire while paused"
        );
    }
    let resumed_at = now_ms();
    jobs.resume("once").await.unwrap();
    jobs.resume("skip").await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    for job in ["once", "skip"] {
        let h = jobs.history(job).await.unwrap();
        for shard in 0..2 {
            let missed: Vec<i64> = h
                .iter()
                .filter(|r| r.shard == shard && r.fire_ms > paused_at && r.fire_ms < resumed_at)
                .map(|r| r.fire_ms)
                .collect();
            match job {
                // The latest missed fire, once; none of the older ones.
                "once" => assert_eq!(missed.len(), 1, "{job} shard {shard}: {missed:?}"),
                _ => assert!(missed.is_empty(), "{job} shard {shard}: {missed:?}"),
            }
            let after = h
                .iter()
                .filter(|r| r.shard == shard && r.fire_ms >= resumed_at)
                .count();
            assert!(after >= 2, "{job} shard {shard}: fires again after resume");
        }
    }
    // Disable shard 1 of "once": only shard 0 fires.
    jobs.disable_shard("once", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let disabled_at = now_ms();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let h = jobs.history("once").await.unwrap();
    assert!(h.iter().any(|r| r.shard == 0 && r.fire_ms > disabled_at));
    assert!(
        !h.iter().any(|r| r.shard == 1 && r.fire_ms > disabled_at),
        "a disabled shard fired"
    );
    // Trigger "skip" (paused, so only the trigger runs), as zkCli would.
    jobs.pause("skip").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (trigger, stat) = c
        .create(
            &format!("{root}/jobs/skip/trigger-now"),
            b"",
            &CreateOptions::default(),
        )
        .await
        .unwrap();
    let _ = trigger;
    // Paused: the trigger waits.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!jobs
        .history("skip")
        .await
        .unwrap()
        .iter()
        .any(|r| r.trigger));
    jobs.resume("skip").await.unwrap();
    common::eventually("both shards run the trigger", SOON, || async {
        let h = jobs.history("skip").await.unwrap();
        h.iter()
            .filter(|r| r.trigger && r.fire_ms == stat.ctime && r.outcome == Outcome::Ok)
            .count()
            == 2
    })
    .await;
    common::eventually("the trigger node is retired", SOON, || async {
        c.exists(&format!("{root}/jobs/skip/trigger-now"))
            .await
            .unwrap()
            .is_none()
    })
    .await;
    assert_eq!(
        jobs.history("skip")
            .await
            .unwrap()
            .iter()
            .filter(|r| r.trigger)
            .count(),
        2,
        "a trigger runs once per shard"
    );
    // Removing a job stops it.
    jobs.remove("once").await.unwrap();
    assert_eq!(jobs.list().await.unwrap(), vec!["skip".to_string()]);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_is_bounded() {
    let c = client().await;
    let root = base(&c, "sched-history").await;
    let jobs = Jobs::new(&c, &root);
    jobs.define(
        &JobSpec::every("fast", Duration::from_millis(20))
            .unwrap()
            .history(3),
    )
    .await
    .unwrap();
    let s = Scheduler::new(&c, &root, "solo")
        .options(fast())
        .handle("fast", |_ctx| async { Ok::<(), Error>(()) })
        .start()
        .unwrap();
    let mut events = s.events();
    let mut runs = 0;
    while runs < 60 {
        if let SchedulerEvent::Finished { recorded: true, .. } = event(&mut events, "a fire", |e| {
            matches!(e, SchedulerEvent::Finished { .. })
        })
        .await
        {
            runs += 1;
        }
    }
    s.close().await;
    let h = jobs.history("fast").await.unwrap();
    assert!(
        (3..=3 + 16).contains(&h.len()),
        "{} records kept of {runs}+ runs",
        h.len()
    );
    // The newest are the ones kept, one fire after another.
    for w in h.windows(2) {
        assert_eq!(w[1].fire_ms - w[0].fire_ms, 20, "{h:?}");
    }
}
