//! Barriers: a start gate that holds workers until it is lifted, and a
//! double barrier that starts and ends a group together.
//!
//! ```text
//! cargo run -p zkit-recipes --example barrier [-- --connect HOST:PORT]
//! ```

mod common;

use std::time::Duration;

use zkit::Client;
use zkit_recipes::{Barrier, DoubleBarrier};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let base = format!("/zkit-example-barrier-{}", std::process::id());
    let admin = Client::connect(&cs).await?;
    let gate = Barrier::new(&admin, format!("{base}/gate"));
    gate.set().await?;
    let mut tasks = Vec::new();
    for w in 0..3 {
        let zk = Client::connect(&cs).await?;
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            Barrier::new(&zk, format!("{base}/gate")).wait().await?;
            println!("worker {w}: gate open, entering the group");
            let group = DoubleBarrier::new(&zk, format!("{base}/group"), 3);
            group.enter().await?;
            println!("worker {w}: all three are in, working");
            tokio::time::sleep(Duration::from_millis(50 * (w as u64 + 1))).await;
            group.leave().await?;
            println!("worker {w}: everyone is done");
            zk.close().await?;
            Ok::<(), zkit::Error>(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("lifting the gate");
    gate.remove().await?;
    for t in tasks {
        t.await??;
    }
    admin.close().await?;
    Ok(())
}
