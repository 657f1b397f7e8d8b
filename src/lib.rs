//! zkit: a ZooKeeper client for tokio.
#![deny(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

mod client;
mod digest;
mod error;
mod path;
pub mod proto;
pub mod session;
mod types;

pub use error::{Error, Result};
pub use types::*;

pub use bytes::Bytes;
pub use client::{
    Client, ClientBuilder, MultiRead, MultiWrite, OneshotWatcher, OpResult, PersistentWatcher,
    ReadResult, StateStream, CONFIG_NODE, MAX_TTL,
};
pub use path::validate_path;
