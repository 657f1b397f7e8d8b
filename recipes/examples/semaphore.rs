//! Counting semaphore: six jobs share three slots of a resource.
//!
//! ```text
//! cargo run -p zkit-recipes --example semaphore [-- --connect HOST:PORT]
//! ```

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zkit::Client;
use zkit_recipes::Semaphore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let path = format!("/zkit-example-semaphore-{}", std::process::id());
    let busy = Arc::new(AtomicUsize::new(0));
    let mut jobs = Vec::new();
    for j in 0..6 {
        let zk = Client::connect(&cs).await?;
        let sem = Semaphore::new(&zk, path.clone(), 3);
        let busy = busy.clone();
        jobs.push(tokio::spawn(async move {
            let lease = sem.acquire().await?;
            let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
            println!("job {j} got a slot ({now} of 3 in use)");
            tokio::time::sleep(Duration::from_millis(150)).await;
            busy.fetch_sub(1, Ordering::SeqCst);
            println!("job {j} gives its slot back");
            lease.release().await?;
            zk.close().await?;
            Ok::<(), zkit::Error>(())
        }));
    }
    for j in jobs {
        j.await??;
    }
    println!("all six jobs ran, never more than three at once");
    Ok(())
}
