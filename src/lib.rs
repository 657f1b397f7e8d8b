//! zkit: a ZooKeeper client for tokio.
#![deny(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

mod digest;
mod error;
pub mod proto;
mod types;

pub use error::{Error, Result};
pub use types::*;
