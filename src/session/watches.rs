//! The local watch registry: which watcher is interested in which
//! (path, kind), fan-out of notifications (`ZKWatchManager.materialize`), and
//! the re-registration batches sent after a reconnect (`ClientCnxn.primeConnection`).
//!
//! Paths here are server paths (chroot included), exactly as the server
//! reports them in notifications and expects them in SetWatches.

use std::collections::{BTreeMap, HashMap};

use crate::proto::codes::EventType;
use crate::proto::SetWatches2;

/// Identifies one local watcher (allocated by the caller of the session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct WatcherId(pub u64);

/// The kind of a registered watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum WatchKind {
    /// One-shot data watch (getData, or exists on an existing node).
    Data,
    /// One-shot exist watch (exists on a missing node).
    Exist,
    /// One-shot child watch (getChildren).
    Child,
    /// Persistent watch on one path (addWatch mode 0).
    Persistent,
    /// Persistent-recursive watch on a subtree (addWatch mode 1).
    PersistentRecursive,
}

impl WatchKind {
    /// Whether the watch stays after firing.
    pub(crate) fn is_persistent(self) -> bool {
        matches!(self, Self::Persistent | Self::PersistentRecursive)
    }
}

/// Java's `SET_WATCHES_MAX_LENGTH`: a batch closes once its paths add up to
/// at least this many bytes.
pub(crate) const SET_WATCHES_MAX_LENGTH: usize = 128 * 1024;

/// Registered watches and their local watchers.
#[derive(Debug, Default)]
pub(crate) struct WatchRegistry {
    // BTreeMap keeps replay order deterministic.
    by_key: BTreeMap<(WatchKind, String), Vec<WatcherId>>,
    by_id: HashMap<WatcherId, (WatchKind, String)>,
    /// Paths with a recursive watch (keys of that kind in `by_key`).
    recursive_paths: usize,
}

impl WatchRegistry {
    /// Registers `id` for (`kind`, `path`).
    pub(crate) fn register(&mut self, id: WatcherId, kind: WatchKind, path: &str) {
        let ids = self.by_key.entry((kind, path.to_string())).or_default();
        if ids.is_empty() && kind == WatchKind::PersistentRecursive {
            self.recursive_paths += 1;
        }
        ids.push(id);
        self.by_id.insert(id, (kind, path.to_string()));
    }

    /// Removes watcher `id`. Returns its (kind, path) and whether it was the
    /// last local watcher of that kind on that path.
    pub(crate) fn unregister(&mut self, id: WatcherId) -> Option<(WatchKind, String, bool)> {
        let (kind, path) = self.by_id.remove(&id)?;
        let key = (kind, path);
        let mut last = false;
        if let Some(v) = self.by_key.get_mut(&key) {
            v.retain(|w| *w != id);
            if v.is_empty() {
                self.by_key.remove(&key);
                last = true;
                if key.0 == WatchKind::PersistentRecursive {
                    self.recursive_paths -= 1;
                }
            }
        }
        Some((key.0, key.1, last))
    }

    /// Removes every watcher of the given kinds on `path`, returning them.
    pub(crate) fn remove_path(
        &mut self,
        path: &str,
        kinds: &[WatchKind],
    ) -> Vec<(WatcherId, WatchKind)> {
        let mut out = Vec::new();
        for kind in kinds {
            if let Some(ids) = self.by_key.remove(&(*kind, path.to_string())) {
                if *kind == WatchKind::PersistentRecursive {
                    self.recursive_paths -= 1;
                }
                for id in ids {
                    self.by_id.remove(&id);
                    out.push((id, *kind));
                }
            }
        }
        out
    }

    /// Whether a watcher of `kind` is registered on exactly `path`.
    pub(crate) fn has(&self, kind: WatchKind, path: &str) -> bool {
        self.by_key.contains_key(&(kind, path.to_string()))
    }

    /// Whether any watcher of any kind remains on `path`.
    pub(crate) fn has_path(&self, path: &str) -> bool {
        [
            WatchKind::Data,
            WatchKind::Exist,
            WatchKind::Child,
            WatchKind::Persistent,
            WatchKind::PersistentRecursive,
        ]
        .into_iter()
        .any(|k| self.has(k, path))
    }

    /// Number of registered local watchers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no watcher is registered.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Removes everything, returning every watcher id.
    pub(crate) fn clear(&mut self) -> Vec<WatcherId> {
        self.by_key.clear();
        self.recursive_paths = 0;
        self.by_id.drain().map(|(id, _)| id).collect()
    }

    /// The watchers a notification fires, consuming the one-shot ones.
    ///
    /// Follows `ZKWatchManager.materialize`: NodeCreated / NodeDataChanged
    /// fire data + exist watches; NodeChildrenChanged fires child watches;
    /// NodeDeleted fires data + exist + child watches. Persistent watches on
    /// the path always fire; recursive ones on the path or an ancestor fire for
    /// everything except NodeChildrenChanged.
    pub(crate) fn on_notification(&mut self, event: EventType, path: &str) -> Vec<WatcherId> {
        let one_shot: &[WatchKind] = match event {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                &[WatchKind::Data, WatchKind::Exist]
            }
            EventType::NodeChildrenChanged => &[WatchKind::Child],
            EventType::NodeDeleted => &[WatchKind::Data, WatchKind::Exist, WatchKind::Child],
            _ => &[],
        };
        let mut fired: Vec<WatcherId> = self
            .remove_path(path, one_shot)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if let Some(ids) = self.by_key.get(&(WatchKind::Persistent, path.to_string())) {
            fired.extend(ids);
        }
        if event != EventType::NodeChildrenChanged {
            // Recursive watches on the path or above: with fewer recursive
            // paths than the path has ancestors (a deep path), each is
            // checked against the path (their keys sort last, a range);
            // else a lookup per ancestor.
            let depth = path.bytes().filter(|&b| b == b'/').count();
            if self.recursive_paths <= depth {
                let mut covering: Vec<(&str, &Vec<WatcherId>)> = self
                    .by_key
                    .range((WatchKind::PersistentRecursive, String::new())..)
                    .filter(|((_, root), _)| covers(root, path))
                    .map(|((_, root), ids)| (root.as_str(), ids))
                    .collect();
                // Nearest first, as the walk up below finds them.
                covering.sort_by_key(|(root, _)| std::cmp::Reverse(root.len()));
                for (_, ids) in covering {
                    fired.extend(ids);
                }
            } else {
                let mut at = path;
                loop {
                    let key = (WatchKind::PersistentRecursive, at.to_string());
                    if let Some(ids) = self.by_key.get(&key) {
                        fired.extend(ids);
                    }
                    if at == "/" {
                        break;
                    }
                    at = crate::proto::parent(at);
                }
            }
        }
        fired
    }

    /// SetWatches2 batches that re-register every watch after a reconnect,
    /// each with `relative_zxid`. Paths are added in the order data, exist,
    /// child, persistent, recursive until their lengths add up to at least
    /// `max_len` (the last path may overshoot, as in Java).
    pub(crate) fn replay(&self, relative_zxid: i64, max_len: usize) -> Vec<SetWatches2> {
        let mut batches = Vec::new();
        let mut cur = SetWatches2 {
            relative_zxid,
            ..SetWatches2::default()
        };
        let mut len = 0;
        // by_key is ordered by (kind, path) and WatchKind's order is the
        // Java order, so one pass visits kinds in the right sequence.
        for (kind, path) in self.by_key.keys() {
            let list = match kind {
                WatchKind::Data => &mut cur.data_watches,
                WatchKind::Exist => &mut cur.exist_watches,
                WatchKind::Child => &mut cur.child_watches,
                WatchKind::Persistent => &mut cur.persistent_watches,
                WatchKind::PersistentRecursive => &mut cur.persistent_recursive_watches,
            };
            list.push(path.clone());
            len += path.len();
            if len >= max_len {
                batches.push(std::mem::replace(
                    &mut cur,
                    SetWatches2 {
                        relative_zxid,
                        ..SetWatches2::default()
                    },
                ));
                len = 0;
            }
        }
        if len > 0 {
            batches.push(cur);
        }
        batches
    }
}

/// Whether a recursive watch on `root` covers `path` (itself or below).
fn covers(root: &str, path: &str) -> bool {
    path == root || crate::proto::is_ancestor(root, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<WatcherId> {
        v.iter().map(|i| WatcherId(*i)).collect()
    }

    #[test]
    fn one_shot_watches_fire_once() {
        let mut r = WatchRegistry::default();
        r.register(WatcherId(1), WatchKind::Data, "/a");
        r.register(WatcherId(2), WatchKind::Exist, "/a");
        r.register(WatcherId(3), WatchKind::Child, "/a");
        assert_eq!(
            r.on_notification(EventType::NodeDataChanged, "/a"),
            ids(&[1, 2])
        );
        assert!(r
            .on_notification(EventType::NodeDataChanged, "/a")
            .is_empty());
        assert_eq!(r.on_notification(EventType::NodeDeleted, "/a"), ids(&[3]));
        assert!(r.is_empty());
    }

    #[test]
    fn recursive_watches_fire_for_deep_and_shallow_paths_alike() {
        let mut r = WatchRegistry::default();
        r.register(WatcherId(1), WatchKind::PersistentRecursive, "/a");
        r.register(WatcherId(2), WatchKind::PersistentRecursive, "/a/b/c");
        r.register(WatcherId(3), WatchKind::PersistentRecursive, "/x");
        r.register(WatcherId(4), WatchKind::PersistentRecursive, "/a");
        assert_eq!(r.recursive_paths, 3);
        // Deeper than there are recursive paths: they are scanned.
        let deep = "/a/b/c/d/e/f";
        assert_eq!(
            r.on_notification(EventType::NodeCreated, deep),
            ids(&[2, 1, 4])
        );
        // Shallower: the ancestors are looked up.
        assert_eq!(
            r.on_notification(EventType::NodeCreated, "/a/q"),
            ids(&[1, 4])
        );
        assert!(r
            .on_notification(EventType::NodeCreated, "/ab/c/d/e/f")
            .is_empty());
        r.unregister(WatcherId(2));
        r.unregister(WatcherId(1));
        assert_eq!(r.recursive_paths, 2);
        assert_eq!(r.on_notification(EventType::NodeCreated, deep), ids(&[4]));
        assert_eq!(
            r.remove_path("/a", &[WatchKind::PersistentRecursive]).len(),
            1
        );
        assert_eq!(r.recursive_paths, 1);
        assert!(r.on_notification(EventType::NodeCreated, deep).is_empty());
        assert!(r.has_path("/x") && !r.has_path("/a"));
        r.clear();
        assert_eq!(r.recursive_paths, 0);
    }

    #[test]
    fn persistent_and_recursive_fan_out() {
        let mut r = WatchRegistry::default();
        r.register(WatcherId(1), WatchKind::Persistent, "/a");
        r.register(WatcherId(2), WatchKind::PersistentRecursive, "/");
        r.register(WatcherId(3), WatchKind::PersistentRecursive, "/a");
        r.register(WatcherId(4), WatchKind::PersistentRecursive, "/a/b/c");
        assert_eq!(
            r.on_notification(EventType::NodeChildrenChanged, "/a"),
            ids(&[1])
        );
        assert_eq!(
            r.on_notification(EventType::NodeCreated, "/a/b"),
            ids(&[3, 2])
        );
        assert_eq!(
            r.on_notification(EventType::NodeDataChanged, "/a"),
            ids(&[1, 3, 2])
        );
        // still registered
        assert_eq!(r.len(), 4);
        assert_eq!(r.on_notification(EventType::NodeDeleted, "/ab"), ids(&[2]));
    }

    #[test]
    fn unregister_reports_last_watcher() {
        let mut r = WatchRegistry::default();
        r.register(WatcherId(1), WatchKind::Persistent, "/a");
        r.register(WatcherId(2), WatchKind::Persistent, "/a");
        assert_eq!(
            r.unregister(WatcherId(1)),
            Some((WatchKind::Persistent, "/a".into(), false))
        );
        assert_eq!(
            r.unregister(WatcherId(2)),
            Some((WatchKind::Persistent, "/a".into(), true))
        );
        assert_eq!(r.unregister(WatcherId(2)), None);
    }

    #[test]
    fn replay_covers_every_kind_including_persistent() {
        // The kz bug (PROTOCOL.md §3.1): persistent lists never re-sent.
        let mut r = WatchRegistry::default();
        r.register(WatcherId(1), WatchKind::Data, "/d");
        r.register(WatcherId(2), WatchKind::Exist, "/e");
        r.register(WatcherId(3), WatchKind::Child, "/c");
        r.register(WatcherId(4), WatchKind::Persistent, "/p");
        r.register(WatcherId(5), WatchKind::PersistentRecursive, "/r");
        r.register(WatcherId(6), WatchKind::PersistentRecursive, "/r");
        let b = r.replay(42, SET_WATCHES_MAX_LENGTH);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].relative_zxid, 42);
        assert_eq!(b[0].data_watches, vec!["/d"]);
        assert_eq!(b[0].exist_watches, vec!["/e"]);
        assert_eq!(b[0].child_watches, vec!["/c"]);
        assert_eq!(b[0].persistent_watches, vec!["/p"]);
        assert_eq!(
            b[0].persistent_recursive_watches,
            vec!["/r"],
            "one path per kind"
        );
    }

    #[test]
    fn replay_splits_batches_by_path_length() {
        let mut r = WatchRegistry::default();
        let long = |i: usize| format!("/{}{i:05}", "x".repeat(1000));
        for i in 0..300 {
            r.register(WatcherId(i as u64), WatchKind::Data, &long(i));
        }
        for i in 0..50 {
            r.register(
                WatcherId(1000 + i as u64),
                WatchKind::PersistentRecursive,
                &long(i),
            );
        }
        let batches = r.replay(7, SET_WATCHES_MAX_LENGTH);
        assert!(batches.len() >= 3, "{}", batches.len());
        let total: usize = batches
            .iter()
            .map(|b| b.data_watches.len() + b.persistent_recursive_watches.len())
            .sum();
        assert_eq!(total, 350, "every path exactly once");
        for b in &batches[..batches.len() - 1] {
            let len: usize = b
                .data_watches
                .iter()
                .chain(&b.persistent_recursive_watches)
                .map(String::len)
                .sum();
            assert!((SET_WATCHES_MAX_LENGTH..SET_WATCHES_MAX_LENGTH + 1100).contains(&len));
        }
        assert!(batches
            .iter()
            .any(|b| !b.persistent_recursive_watches.is_empty()));
    }
}
