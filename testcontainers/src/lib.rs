//! Test fixtures: real Apache ZooKeeper and the bundled zkit-server.
#![deny(missing_docs)]
