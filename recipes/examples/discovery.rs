//! Service registry and discovery (Curator x-discovery compatible): three
//! instances register, a client balances over them and notices one leaving.
//!
//! ```text
//! cargo run -p zkit-recipes --example discovery [-- --connect HOST:PORT]
//! ```

mod common;

use zkit::Client;
use zkit_recipes::discovery::{ServiceDiscovery, ServiceInstance, ServiceProvider, Strategy};
use zkit_recipes::Sessions;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let base = format!("/zkit-example-services-{}", std::process::id());
    let sessions = || Sessions::new(Client::builder(), cs.clone());
    let mut regs = Vec::new();
    for i in 1..=3u16 {
        let d = ServiceDiscovery::<serde_json::Value>::new(sessions(), base.clone());
        let inst = ServiceInstance::new("api", "127.0.0.1", 9000 + i)
            .id(format!("api-{i}"))
            .payload(serde_json::json!({ "version": format!("1.{i}") }));
        regs.push(d.register(inst).await?);
        println!("api-{i} registered at 127.0.0.1:{}", 9000 + i);
    }
    let d = ServiceDiscovery::<serde_json::Value>::new(sessions(), base.clone());
    for i in d.query_instances("api").await? {
        println!(
            "found {} at {}:{} payload {}",
            i.id,
            i.address.unwrap_or_default(),
            i.port.unwrap_or(0),
            i.payload.unwrap_or_default()
        );
    }
    let cache = d.cache("api");
    cache.initialized().await; // loaded: no polling
    let mut p = ServiceProvider::new(cache, Strategy::RoundRobin);
    let calls: Vec<String> = (0..6).filter_map(|_| p.instance().map(|i| i.id)).collect();
    println!("round-robin: {calls:?}");
    regs.remove(1).unregister().await?;
    while p.cache().instances().iter().any(|i| i.id == "api-2") {
        p.cache().changed().await?;
    }
    let calls: Vec<String> = (0..4).filter_map(|_| p.instance().map(|i| i.id)).collect();
    println!("api-2 left; now: {calls:?}");
    Ok(())
}
