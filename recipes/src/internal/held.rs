//! Fixed-name nodes held by live handles of this process.
//!
//! A recipe that creates a node under a caller-chosen name (a group member
//! id, a service instance id) adopts a node of its own session after a lost
//! reply. Two live handles of one session for one name would then share
//! the node and either one's leave would end the other's. This registry
//! lets the second one be refused instead.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// (scope, path) pairs taken by live handles; the scope is whatever owns
/// the session(s) behind the handle (a session id, a `Sessions`).
static HELD: Mutex<BTreeSet<(usize, String)>> = Mutex::new(BTreeSet::new());

/// One entry of the registry, given back when dropped.
#[derive(Debug)]
pub(crate) struct Held((usize, String));

impl Held {
    /// Takes `path` in `scope`, or `None` when a live handle has it.
    pub(crate) fn take(scope: usize, path: &str) -> Option<Self> {
        let key = (scope, path.to_string());
        let fresh = HELD
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone());
        // Built only when fresh: a `Held` removes its entry when dropped.
        if fresh {
            Some(Self(key))
        } else {
            None
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_held_once_per_scope_until_dropped() {
        let a = Held::take(1, "/held/a").expect("free");
        assert!(Held::take(1, "/held/a").is_none());
        let other_scope = Held::take(2, "/held/a").expect("other scope");
        drop(a);
        let again = Held::take(1, "/held/a").expect("given back");
        drop((again, other_scope));
    }
}
