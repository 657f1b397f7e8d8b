//! Leader election: three participants, one leads; when the leader's
//! session ends, another takes over within milliseconds. Then a
//! run-while-leader task that is cancelled when its session dies.
//!
//! ```text
//! cargo run -p zkit-recipes --example leader [-- --connect HOST:PORT]
//! ```

mod common;

use std::time::{Duration, Instant};

use zkit::Client;
use zkit_recipes::{LeaderLatch, LeaderObserver, LeaderSelector};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let path = format!("/zkit-example-leader-{}", std::process::id());
    // Someone who only watches who leads (a dashboard, a router).
    let watcher = Client::connect(&cs).await?;
    let mut observer = LeaderObserver::observe(&watcher, format!("{path}/latch"));
    let mut members = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let zk = Client::connect(&cs).await?;
        let latch = LeaderLatch::start(&zk, format!("{path}/latch"), name).await?;
        members.push((name, zk, latch));
    }
    members[0].2.await_leadership().await?;
    for (name, _, latch) in &members {
        println!("{name}: leader? {}", latch.is_leader());
    }
    while observer.current().is_none() {
        observer.changed().await?;
    }
    println!("observer: {:?} leads", observer.current().map(|l| l.id));
    let (name, zk, _latch) = members.remove(0);
    let t = Instant::now();
    zk.close().await?; // the leader's session ends (a crash would expire it)
    members[0].2.await_leadership().await?;
    println!(
        "{name}'s session closed; {} leads {:?} later (token {:?})",
        members[0].0,
        t.elapsed(),
        members[0].2.fencing_token()
    );
    while observer.current().map(|l| l.id).as_deref() != Some(members[0].0) {
        observer.changed().await?;
    }
    println!("observer: now {:?} leads", observer.current().map(|l| l.id));

    // Run-while-leader: the task runs only while its session leads.
    let zk = Client::connect(&cs).await?;
    let selector = LeaderSelector::new(&zk, format!("{path}/selector"), "worker");
    selector
        .run(|leader| async move {
            println!(
                "selector: leading with token {}; working...",
                leader.fencing_token()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            println!("selector: done, handing leadership back");
        })
        .await?;
    zk.close().await?;
    for (_, zk, latch) in members {
        latch.close().await?;
        zk.close().await?;
    }
    Ok(())
}
