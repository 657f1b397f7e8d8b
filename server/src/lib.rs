//! zkit-server: a ZooKeeper-compatible single-node server.
#![deny(missing_docs)]
