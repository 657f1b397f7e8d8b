//! Scheduled jobs: a job of six shards, every 500 ms, shared by three
//! workers; one worker dies and its shards move to the other two; an
//! operator triggers a run and pauses the job; every (fire, shard) ran once.
//!
//! ```text
//! cargo run -p zkit-recipes --example scheduler [-- --connect HOST:PORT]
//! ```

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zkit::{Client, CreateOptions, Error};
use zkit_recipes::scheduler::{JobSpec, Jobs, Outcome, RunningScheduler, Scheduler};

/// Who ran each shard of each fire.
type Ran = Arc<Mutex<BTreeMap<i64, BTreeMap<u32, String>>>>;

fn worker(zk: &Client, root: &str, name: &str, ran: Ran) -> Result<RunningScheduler, Error> {
    let out = format!("{root}/out");
    Scheduler::new(zk, root, name)
        .handle("report", move |ctx| {
            let (ran, out) = (ran.clone(), out.clone());
            async move {
                // The work: one output node per (fire, shard), written only
                // while this worker owns the shard.
                let node = format!("{out}/{}-{}", ctx.fire_ms(), ctx.shard());
                ctx.guarded()
                    .create(&node, ctx.instance().as_bytes(), &CreateOptions::default())
                    .commit()
                    .await?;
                ran.lock()
                    .unwrap()
                    .entry(ctx.fire_ms())
                    .or_default()
                    .insert(ctx.shard(), ctx.instance().to_string());
                Ok::<(), Error>(())
            }
        })
        .start()
}

/// Prints the owners of the fires since the last call.
fn show(ran: &Ran, seen: &mut BTreeSet<i64>) {
    for (fire, shards) in ran.lock().unwrap().iter() {
        if shards.len() == 6 && seen.insert(*fire) {
            let owners: Vec<&str> = shards.values().map(String::as_str).collect();
            println!("  fire {fire}: shards 0-5 ran on {owners:?}");
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let root = format!("/zkit-example-scheduler-{}", std::process::id());
    let admin = Client::connect(&cs).await?;
    admin
        .create_all(&format!("{root}/out"), b"", &CreateOptions::default())
        .await?;
    let jobs = Jobs::new(&admin, &root);
    jobs.define(
        &JobSpec::every("report", Duration::from_millis(500))?
            .shards(6)
            .history(100),
    )
    .await?;
    println!("defined job 'report': every 500 ms, 6 shards");

    let ran: Ran = Arc::default();
    let mut seen = BTreeSet::new();
    let mut workers = Vec::new();
    for name in ["worker-a", "worker-b", "worker-c"] {
        let zk = Client::builder()
            .session_timeout(Duration::from_secs(4))
            .connect(&cs)
            .await?;
        let s = worker(&zk, &root, name, ran.clone())?;
        workers.push((name, zk, s));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    show(&ran, &mut seen);

    // worker-b's process dies: its session ends and its shard locks with it.
    let (name, zk, s) = workers.remove(1);
    drop(s);
    zk.close().await?;
    println!("-- {name} died: its shards move to the others");
    tokio::time::sleep(Duration::from_secs(3)).await;
    show(&ran, &mut seen);

    // An operator (this, or `create <root>/jobs/report/trigger-now` in zkCli).
    let fire = jobs.trigger("report").await?;
    println!("-- triggered a run now (fire {fire}, between two scheduled fires)");
    tokio::time::sleep(Duration::from_millis(300)).await;
    show(&ran, &mut seen);
    jobs.pause("report").await?;
    println!("-- paused (`create <root>/jobs/report/paused`)");
    tokio::time::sleep(Duration::from_millis(300)).await;
    show(&ran, &mut seen);
    let before = seen.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    show(&ran, &mut seen);
    println!("  no fire while paused: {}", seen.len() == before);

    for (_, zk, s) in workers {
        s.close().await;
        zk.close().await?;
    }
    let history = jobs.history("report").await?;
    let mut per: BTreeMap<(i64, u32), usize> = BTreeMap::new();
    for r in &history {
        *per.entry((r.fire_ms, r.shard)).or_default() += 1;
    }
    let (out, _) = admin.get_children(&format!("{root}/out")).await?;
    let ok = history.iter().filter(|r| r.outcome == Outcome::Ok).count();
    let retried = history.iter().filter(|r| r.attempt > 1).count();
    println!(
        "{} run records ({ok} ok, {retried} run again after their owner died), {} outputs, \
         each (fire, shard) recorded once: {}",
        history.len(),
        out.len(),
        per.values().all(|n| *n == 1)
    );
    admin.delete_all(&root).await?;
    admin.close().await?;
    Ok(())
}
