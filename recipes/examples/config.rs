//! Configuration subscription: subscribers follow a typed value; a
//! compare-and-set publish refuses a stale writer.
//!
//! ```text
//! cargo run -p zkit-recipes --example config [-- --connect HOST:PORT]
//! ```

mod common;

use serde::{Deserialize, Serialize};
use zkit::{Client, Version};
use zkit_recipes::{config, ConfigSubscription, Sessions};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Features {
    dark_mode: bool,
    max_upload_mb: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cs, _server) = common::server().await?;
    let path = format!("/zkit-example-config-{}/features", std::process::id());
    let admin = Client::connect(&cs).await?;
    let v0 = config::publish(
        &admin,
        &path,
        &Features {
            dark_mode: false,
            max_upload_mb: 10,
        },
        Version::Any,
    )
    .await?;
    let mut sub = ConfigSubscription::<Features>::start(
        Sessions::new(Client::builder(), cs.clone()),
        path.clone(),
    );
    sub.initialized().await; // read once: current() is the value
    println!("subscriber sees {:?}", sub.current().map(|v| v.value));
    config::publish(
        &admin,
        &path,
        &Features {
            dark_mode: true,
            max_upload_mb: 10,
        },
        Version::Exact(v0),
    )
    .await?;
    while !sub.current().is_some_and(|v| v.value.dark_mode) {
        sub.changed().await?;
    }
    println!("after the change: {:?}", sub.current().map(|v| v.value));
    let stale = config::publish(
        &admin,
        &path,
        &Features {
            dark_mode: false,
            max_upload_mb: 1,
        },
        Version::Exact(v0),
    )
    .await;
    println!("a writer still at version {v0} is refused: {stale:?}");
    admin.close().await?;
    Ok(())
}
