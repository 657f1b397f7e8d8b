//! A small service built from one long-lived [`Sessions`] handle: it
//! registers itself for discovery, produces jobs while it leads, works the
//! queue with two consumers, counts what it did, and follows a config
//! value. Halfway through, its session is expired on the server (what a
//! long GC pause or a partition beyond the session timeout does): the
//! leadership, claims and registration of the old session are lost, and
//! everything carries on with a new session, with no rebuild code.
//!
//! ```text
//! cargo run -p zkit-recipes --example service [-- --connect HOST:PORT]
//! ```

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zkit::{Client, Version};
use zkit_recipes::discovery::{ServiceDiscovery, ServiceInstance};
use zkit_recipes::{config, ConfigSubscription, LeaderSelector, Queue, Sessions, SharedCount};

#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
struct Settings {
    batch: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let base = format!("/zkit-example-service-{}", std::process::id());
    let sessions = Sessions::new(
        Client::builder().session_timeout(Duration::from_secs(4)),
        cs.clone(),
    );
    // Everything below is built once, from the same handle.
    let mut events = sessions.events();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            println!("  [sessions] {e:?}");
        }
    });
    let admin = Client::connect(&cs).await?;
    config::publish(
        &admin,
        &format!("{base}/settings"),
        &Settings { batch: 3 },
        Version::Any,
    )
    .await?;
    let settings =
        ConfigSubscription::<Settings>::start(sessions.clone(), format!("{base}/settings"));
    settings.initialized().await;
    let discovery =
        ServiceDiscovery::<serde_json::Value>::new(sessions.clone(), format!("{base}/services"));
    let _me = discovery
        .register(ServiceInstance::new("worker", "127.0.0.1", 7000).id("w-1"))
        .await?;
    let jobs = Queue::new(&sessions, format!("{base}/jobs"));
    let done = SharedCount::new(&sessions, format!("{base}/done"), 0);
    let stop = Arc::new(AtomicBool::new(false));

    // The producer: only while leading (another instance would wait).
    let producer = {
        let (jobs, settings, stop) = (jobs.clone(), settings.receiver(), stop.clone());
        let selector = LeaderSelector::new(&sessions, format!("{base}/leader"), "w-1")
            .auto_requeue(true)
            .on_term_end(|end| println!("  [leader] term ended: {end:?}"));
        tokio::spawn(async move {
            selector
                .run(|leader| {
                    let (jobs, settings, stop) = (jobs.clone(), settings.clone(), stop.clone());
                    async move {
                        println!("  [leader] leading, token {}", leader.fencing_token());
                        let mut n = 0;
                        while !stop.load(Ordering::SeqCst) {
                            let batch = settings.borrow().as_ref().map_or(1, |s| s.value.batch);
                            for _ in 0..batch {
                                n += 1;
                                let _ = jobs
                                    .put(format!("job-{}-{n}", leader.fencing_token()).as_bytes())
                                    .await;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                })
                .await
        })
    };

    // Two consumers: at-least-once, each completion counted.
    let mut workers = Vec::new();
    for w in 1..=2 {
        let (jobs, done, stop) = (jobs.clone(), done.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut handled = 0u32;
            while !stop.load(Ordering::SeqCst) {
                match jobs.poll_claimed(Duration::from_millis(200)).await {
                    Ok(Some(claim)) => {
                        tokio::time::sleep(Duration::from_millis(10)).await; // the work
                        if claim.complete().await.is_ok() && done.add(1).await.is_ok() {
                            handled += 1;
                        }
                    }
                    Ok(None) => {}
                    // The session ended under this call: the next one runs on
                    // a new session (a claim of the old one was given back).
                    Err(e) => println!("  [worker {w}] {e}; carrying on"),
                }
            }
            handled
        }));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = done.get().await?.value;
    println!("after 1 s: {before} jobs done; now expiring the service's session on the server");
    let live = sessions.current().ok_or("no live session")?;
    let addr = cs.split(',').next().ok_or("no host")?.parse()?;
    zkit_testcontainers::expire_session(addr, live.session_id().0, &live.session_password())
        .await?;

    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    producer.abort(); // leaves the election
    let mut handled = 0;
    for w in workers {
        handled += w.await?;
    }
    let after = done.get().await?.value;
    let registered = discovery.query_instances("worker").await?.len();
    println!(
        "after expiry: {after} jobs done in all ({} since), counter == completions counted: {}, \
         registered again: {}, a new session: {}",
        after - before,
        u32::try_from(after).ok() == Some(handled),
        registered == 1,
        sessions.current().map(|c| c.session_id()) != Some(live.session_id()),
    );
    sessions.close().await?;
    admin.close().await?;
    Ok(())
}
