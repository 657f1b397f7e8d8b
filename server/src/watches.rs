//! Server-side watches (`server/watch/WatchManager` + the watch half of
//! `DataTree`), pure and synchronous.
//!
//! Like ZooKeeper, the manager keeps two tables: the *data* table (getData
//! and exists watches, persistent and recursive watches) and the *child*
//! table (getChildren watches and persistent watches; on 3.8 recursive
//! watches too). Triggers go to tables as `DataTree` sends them:
//!
//! - NodeCreated, NodeDataChanged → data table;
//! - NodeChildrenChanged → child table;
//! - NodeDeleted → data table, then the child table of the same path,
//!   without a second event for a connection the data table already served.
//!
//! A connection gets at most one event per trigger. One-shot watches are
//! removed when they fire; persistent ones stay; recursive ones match the
//! path and every descendant but never NodeChildrenChanged.
//!
//! [`Compat::V3_8`] (default) reproduces 3.8's one mode per (connection,
//! path) per table (a later watch replaces the earlier one's mode,
//! ZOOKEEPER-4466) and `containsWatcher` asking only whether the path has
//! *any* connection's watch. [`Compat::V3_9`] keeps modes independently and
//! checks per connection.

use std::collections::BTreeSet;

use zkit_proto::codes::{err, keeper_state, AddWatchMode, EventType, WatcherType};
use zkit_proto::{SetWatches2, WatcherEvent};

use crate::shards::ShardedMap;
use crate::tree::{Compat, DataTree, Trigger};
use crate::{ErrorCode, ServerResult};

/// A client connection (watches belong to connections, not sessions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// `WatcherMode` bits.
const STANDARD: u8 = 1;
const PERSISTENT: u8 = 2;
const RECURSIVE: u8 = 4;

/// One `WatchManager` of ZooKeeper (the data or the child table).
#[derive(Debug, Default, Clone)]
struct Table {
    by_path: ShardedMap<String, BTreeSet<ConnId>>,
    /// Modes per (connection, path). On 3.8 exactly one bit is set. Every
    /// change goes through `set_mode`.
    by_conn: crate::shards::FastMap<ConnId, ShardedMap<String, u8>>,
    /// Paths with a recursive watch, and how many connections have one
    /// there: a trigger looks for watches above its path only among these
    /// (when fewer than the path's ancestors), so a deep path costs no
    /// lookup per ancestor.
    recursive: crate::shards::FastMap<String, usize>,
    /// Watches of closed connections still listed in `by_path`, unlinked a
    /// slice at a time (`reap`): a connection with a million watches does
    /// not hold the server's lock for the time it takes to unlink them all.
    /// Until then `fire_at` and `contains` ignore them.
    graveyard: Vec<(ConnId, ShardedMap<String, u8>)>,
}

/// `PathParentIterator.forAll`: the path, then each ancestor up to "/".
fn path_and_parents(path: &str) -> impl Iterator<Item = (&str, bool)> {
    let mut next = Some(path);
    let mut first = true;
    std::iter::from_fn(move || {
        let cur = next?;
        next = if cur == "/" || cur.is_empty() {
            None
        } else {
            match cur.rfind('/') {
                Some(0) => Some("/"),
                Some(i) => Some(&cur[..i]),
                None => None,
            }
        };
        let at_parent = !first;
        first = false;
        Some((cur, at_parent))
    })
}

impl Table {
    fn add(&mut self, compat: Compat, conn: ConnId, path: &str, mode: u8) {
        self.by_path
            .entry(path.to_string())
            .or_default()
            .insert(conn);
        let old = self.mode(conn, path);
        let new = match compat {
            Compat::V3_8 => mode,
            Compat::V3_9 => old | mode,
        };
        self.set_mode(conn, path, new);
    }

    /// Sets the mode of (conn, path) in `by_conn` (0 removes it), keeping
    /// the recursive-watch count. `by_path` is the caller's.
    fn set_mode(&mut self, conn: ConnId, path: &str, new: u8) {
        let old = self.mode(conn, path);
        if new == 0 {
            if let Some(paths) = self.by_conn.get_mut(&conn) {
                paths.remove(path);
                if paths.is_empty() {
                    self.by_conn.remove(&conn);
                }
            }
        } else {
            self.by_conn
                .entry(conn)
                .or_default()
                .insert(path.to_string(), new);
        }
        match (old & RECURSIVE != 0, new & RECURSIVE != 0) {
            (false, true) => *self.recursive.entry(path.to_string()).or_default() += 1,
            (true, false) => self.forget_recursive(path),
            _ => {}
        }
    }

    fn forget_recursive(&mut self, path: &str) {
        if let Some(n) = self.recursive.get_mut(path) {
            *n -= 1;
            if *n == 0 {
                self.recursive.remove(path);
            }
        }
    }

    fn unlink(&mut self, conn: ConnId, path: &str) {
        if let Some(set) = self.by_path.get_mut(path) {
            set.remove(&conn);
            if set.is_empty() {
                self.by_path.remove(path);
            }
        }
        self.set_mode(conn, path, 0);
    }

    fn mode(&self, conn: ConnId, path: &str) -> u8 {
        self.by_conn
            .get(&conn)
            .and_then(|m| m.get(path))
            .copied()
            .unwrap_or(0)
    }

    /// `WatchManager.triggerWatch`: the connections to notify.
    fn trigger(&mut self, compat: Compat, path: &str, event: EventType) -> BTreeSet<ConnId> {
        let mut out = BTreeSet::new();
        if self.by_path.is_empty() {
            // No watch in this table (recursive ones are in `by_path` too).
            return out;
        }
        self.fire_at(compat, path, false, event, &mut out);
        // Above the path only recursive watches count: look among them, or
        // walk the ancestors, whichever is less work.
        if !self.recursive.is_empty() {
            let ancestors = path.bytes().filter(|&b| b == b'/').count();
            if self.recursive.len() < ancestors {
                let above: Vec<String> = self
                    .recursive
                    .keys()
                    .filter(|r| zkit_proto::is_ancestor(r, path))
                    .cloned()
                    .collect();
                for a in above {
                    self.fire_at(compat, &a, true, event, &mut out);
                }
            } else {
                for (local, _) in path_and_parents(path).skip(1) {
                    if self.recursive.contains_key(local) {
                        self.fire_at(compat, local, true, event, &mut out);
                    }
                }
            }
        }
        out
    }

    /// The watches at `local` (the triggered path, or an ancestor of it
    /// with `at_parent`).
    fn fire_at(
        &mut self,
        compat: Compat,
        local: &str,
        at_parent: bool,
        event: EventType,
        out: &mut BTreeSet<ConnId>,
    ) {
        let Some(conns) = self.by_path.get(local) else {
            return;
        };
        let conns: Vec<ConnId> = conns.iter().copied().collect();
        for conn in conns {
            let mode = self.mode(conn, local);
            if mode == 0 {
                // A closed connection's watch, not yet reaped.
                continue;
            }
            match compat {
                Compat::V3_8 => {
                    if mode & RECURSIVE != 0 {
                        if event != EventType::NodeChildrenChanged {
                            out.insert(conn);
                        }
                    } else if !at_parent {
                        out.insert(conn);
                        if mode & PERSISTENT == 0 {
                            self.unlink(conn, local);
                        }
                    }
                }
                Compat::V3_9 => {
                    if !at_parent {
                        out.insert(conn);
                        let left = mode & !STANDARD;
                        if left == 0 {
                            self.unlink(conn, local);
                        } else if left != mode {
                            self.set_mode(conn, local, left);
                        }
                    } else if mode & RECURSIVE != 0 {
                        out.insert(conn);
                    }
                }
            }
        }
    }

    /// `WatchManager.containsWatcher`.
    fn contains(&self, compat: Compat, conn: ConnId, path: &str, mode: Option<u8>) -> bool {
        match compat {
            // Any (open) connection's watch at the path counts.
            Compat::V3_8 => self
                .by_path
                .get(path)
                .is_some_and(|conns| conns.iter().any(|c| self.mode(*c, path) != 0)),
            Compat::V3_9 => {
                let m = self.mode(conn, path);
                m != 0 && mode.is_none_or(|want| m & want != 0)
            }
        }
    }

    /// `WatchManager.removeWatcher(path, watcher[, mode])`.
    fn remove(&mut self, conn: ConnId, path: &str, mode: Option<u8>) -> bool {
        let old = self.mode(conn, path);
        if old == 0 {
            return false;
        }
        match mode {
            None => {
                self.unlink(conn, path);
                true
            }
            Some(m) => {
                let left = old & !m;
                if left == old {
                    return false;
                }
                if left == 0 {
                    self.unlink(conn, path);
                } else {
                    self.set_mode(conn, path, left);
                }
                true
            }
        }
    }

    /// The connection's watches stop counting now; `reap` unlinks them.
    fn drop_conn(&mut self, conn: ConnId) {
        if let Some(paths) = self.by_conn.remove(&conn) {
            self.graveyard.push((conn, paths));
        }
    }

    /// Unlinks at most `max` watches of closed connections; returns how
    /// many are left.
    fn reap(&mut self, max: usize) -> usize {
        let mut budget = max;
        while budget > 0 {
            let Some((conn, paths)) = self.graveyard.last_mut() else {
                break;
            };
            let conn = *conn;
            // What is not taken stays in the map for the next slice.
            let slice = paths.take(budget);
            if paths.is_empty() {
                self.graveyard.pop();
            }
            budget -= slice.len();
            for (p, mode) in slice {
                // Connection ids are never reused: what `by_path` lists for
                // this one is this dead watch.
                if let Some(set) = self.by_path.get_mut(&p) {
                    set.remove(&conn);
                    if set.is_empty() {
                        self.by_path.remove(&p);
                    }
                }
                if mode & RECURSIVE != 0 {
                    self.forget_recursive(&p);
                }
            }
        }
        self.graveyard.iter().map(|(_, p)| p.len()).sum()
    }

    fn count(&self) -> usize {
        self.by_conn.values().map(ShardedMap::len).sum()
    }
}

fn event(t: EventType, path: &str) -> WatcherEvent {
    WatcherEvent {
        event_type: t.code(),
        state: keeper_state::SYNC_CONNECTED,
        path: path.to_string(),
    }
}

/// All watches of a server, per connection.
#[derive(Debug, Default, Clone)]
pub struct WatchManager {
    compat: Compat,
    data: Table,
    child: Table,
}

impl WatchManager {
    /// An empty manager with 3.8 semantics.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty manager reproducing the given release.
    pub fn with_compat(compat: Compat) -> Self {
        Self {
            compat,
            ..Self::default()
        }
    }

    /// The release whose behaviour is reproduced.
    pub fn compat(&self) -> Compat {
        self.compat
    }

    /// A one-shot data watch (getData with watch = true, only on success).
    pub fn add_data_watch(&mut self, conn: ConnId, path: &str) {
        self.data.add(self.compat, conn, path, STANDARD);
    }

    /// A one-shot exist watch (exists with watch = true, **also when the node
    /// is missing**). Same table as data watches.
    pub fn add_exist_watch(&mut self, conn: ConnId, path: &str) {
        self.add_data_watch(conn, path);
    }

    /// A one-shot child watch (getChildren with watch = true, on success).
    pub fn add_child_watch(&mut self, conn: ConnId, path: &str) {
        self.child.add(self.compat, conn, path, STANDARD);
    }

    /// addWatch (106): a persistent watch sits in the data and child tables;
    /// a recursive one in the data table (3.8: in the child table too, where
    /// it replaces a one-shot child watch of the same connection and path).
    pub fn add_watch(&mut self, conn: ConnId, path: &str, mode: AddWatchMode) {
        match mode {
            AddWatchMode::Persistent => {
                self.data.add(self.compat, conn, path, PERSISTENT);
                self.child.add(self.compat, conn, path, PERSISTENT);
            }
            _ => {
                self.data.add(self.compat, conn, path, RECURSIVE);
                if self.compat == Compat::V3_8 {
                    self.child.add(self.compat, conn, path, RECURSIVE);
                }
            }
        }
    }

    /// Fires the watches a write triggered: at most one event per
    /// connection, one-shot watches removed. Events are ordered by
    /// connection id.
    pub fn trigger(&mut self, path: &str, event_type: EventType) -> Vec<(ConnId, WatcherEvent)> {
        let mut out = Vec::new();
        self.trigger_into(path, event_type, &mut out);
        out
    }

    /// [`trigger`](Self::trigger), appending the events to `out`.
    fn trigger_into(
        &mut self,
        path: &str,
        event_type: EventType,
        out: &mut Vec<(ConnId, WatcherEvent)>,
    ) {
        let conns = match event_type {
            EventType::NodeChildrenChanged => self.child.trigger(self.compat, path, event_type),
            EventType::NodeDeleted => {
                let mut served = self.data.trigger(self.compat, path, event_type);
                // The child table fires too; connections already served are
                // suppressed (their one-shot child watch is still consumed).
                let more = self.child.trigger(self.compat, path, event_type);
                served.extend(more);
                served
            }
            _ => self.data.trigger(self.compat, path, event_type),
        };
        out.extend(conns.into_iter().map(|c| (c, event(event_type, path))));
    }

    /// Fires every trigger of a write, in order.
    pub fn trigger_all(&mut self, triggers: &[Trigger]) -> Vec<(ConnId, WatcherEvent)> {
        let mut out = Vec::new();
        if self.data.by_path.is_empty() && self.child.by_path.is_empty() {
            // No watch anywhere (recursive ones are in `by_path` too).
            return out;
        }
        for t in triggers {
            self.trigger_into(&t.path, t.event, &mut out);
        }
        out
    }

    fn type_modes(&self, t: WatcherType) -> ServerResult<(bool, bool, Option<u8>)> {
        // (data table, child table, mode filter)
        Ok(match (self.compat, t) {
            (Compat::V3_8, WatcherType::Children) => (false, true, None),
            (Compat::V3_8, WatcherType::Data) => (true, false, None),
            (Compat::V3_8, WatcherType::Any) => (true, true, None),
            (Compat::V3_8, _) => return Err(ErrorCode(err::MARSHALLING_ERROR)),
            (Compat::V3_9, WatcherType::Children) => (false, true, Some(STANDARD)),
            (Compat::V3_9, WatcherType::Data) => (true, false, Some(STANDARD)),
            (Compat::V3_9, WatcherType::Persistent) => (true, true, Some(PERSISTENT)),
            (Compat::V3_9, WatcherType::PersistentRecursive) => (true, false, Some(RECURSIVE)),
            (Compat::V3_9, _) => (true, true, None),
        })
    }

    /// checkWatches (17). On 3.8 any connection's watch of that table on the
    /// path counts (`WatchManager.containsWatcher`); types 4/5 are
    /// MarshallingError. On 3.9 only this connection's, by mode.
    ///
    /// # Errors
    /// NoWatcher (-121), MarshallingError (-5).
    pub fn check_watches(&self, conn: ConnId, path: &str, t: WatcherType) -> ServerResult<()> {
        let (data, child, mode) = self.type_modes(t)?;
        // 3.9 checks Persistent in the data table only.
        let child = child && !(self.compat == Compat::V3_9 && t == WatcherType::Persistent);
        let found = (child && self.child.contains(self.compat, conn, path, mode))
            || (data && self.data.contains(self.compat, conn, path, mode));
        if found {
            Ok(())
        } else {
            Err(ErrorCode(err::NO_WATCHER))
        }
    }

    /// removeWatches (18): removes this connection's watches of the type on
    /// the path (on 3.8 Data / Children remove whatever mode that table
    /// holds, persistent included).
    ///
    /// # Errors
    /// NoWatcher (-121) when nothing was removed, MarshallingError (-5).
    pub fn remove_watches(&mut self, conn: ConnId, path: &str, t: WatcherType) -> ServerResult<()> {
        let (data, child, mode) = self.type_modes(t)?;
        let mut removed = false;
        if child {
            removed |= self.child.remove(conn, path, mode);
        }
        if data {
            removed |= self.data.remove(conn, path, mode);
        }
        if removed {
            Ok(())
        } else {
            Err(ErrorCode(err::NO_WATCHER))
        }
    }

    /// The connection closed: all its watches go (the session stays). They
    /// stop firing at once; [`reap`](Self::reap) frees them, a slice at a
    /// time.
    pub fn drop_connection(&mut self, conn: ConnId) {
        self.data.drop_conn(conn);
        self.child.drop_conn(conn);
    }

    /// Frees at most `max` watches of closed connections (per table);
    /// returns whether none is left.
    pub fn reap(&mut self, max: usize) -> bool {
        let left = self.data.reap(max) + self.child.reap(max);
        left == 0
    }

    /// The data-watch table as ZooKeeper's `wchs`/`wchc`/`wchp` report it
    /// (`DataTree.dataWatches`: data, exist and persistent watches; child
    /// watches are not listed): per connection, its watched paths, sorted.
    pub fn data_watches_by_conn(&self) -> Vec<(ConnId, Vec<String>)> {
        let mut out: Vec<(ConnId, Vec<String>)> = self
            .data
            .by_conn
            .iter()
            .map(|(c, paths)| {
                let mut p: Vec<String> = paths.keys().cloned().collect();
                p.sort();
                (*c, p)
            })
            .collect();
        out.sort();
        out
    }

    /// `wchs`: connections with data watches, the paths they watch, and
    /// the watches (connection, path) — counted, nothing copied.
    pub fn data_watch_summary(&self) -> (usize, usize, usize) {
        let paths = if self.data.graveyard.is_empty() {
            self.data.by_path.len()
        } else {
            // While a closed connection's watches are being freed, count
            // the paths of the open ones.
            let mut p: std::collections::HashSet<&String> = std::collections::HashSet::new();
            for m in self.data.by_conn.values() {
                p.extend(m.keys());
            }
            p.len()
        };
        (self.data.by_conn.len(), paths, self.data.count())
    }

    /// Total watches (per connection and path and table), for tests and
    /// stats.
    pub fn watch_count(&self) -> usize {
        self.data.count() + self.child.count()
    }

    /// SetWatches (101) / SetWatches2 (105), `DataTree.setWatches`: returns
    /// the events to send at once (before the reply), re-arms the rest.
    ///
    /// - data: missing → NodeDeleted; `mzxid > rel` → NodeDataChanged; else
    ///   re-armed;
    /// - exist: exists → NodeCreated; else re-armed;
    /// - child: missing → NodeDeleted; `pzxid > rel` → NodeChildrenChanged;
    ///   else re-armed;
    /// - persistent / recursive: re-armed only (missed events are not
    ///   replayed).
    pub fn set_watches(
        &mut self,
        conn: ConnId,
        req: &SetWatches2,
        tree: &DataTree,
    ) -> Vec<WatcherEvent> {
        let rel = req.relative_zxid;
        let mut out = Vec::new();
        for p in &req.data_watches {
            match tree.stat(p) {
                None => out.push(event(EventType::NodeDeleted, p)),
                Some(s) if s.mzxid > rel => out.push(event(EventType::NodeDataChanged, p)),
                Some(_) => self.add_data_watch(conn, p),
            }
        }
        for p in &req.exist_watches {
            if tree.contains(p) {
                out.push(event(EventType::NodeCreated, p));
            } else {
                self.add_exist_watch(conn, p);
            }
        }
        for p in &req.child_watches {
            match tree.stat(p) {
                None => out.push(event(EventType::NodeDeleted, p)),
                Some(s) if s.pzxid > rel => out.push(event(EventType::NodeChildrenChanged, p)),
                Some(_) => self.add_child_watch(conn, p),
            }
        }
        for p in &req.persistent_watches {
            self.add_watch(conn, p, AddWatchMode::Persistent);
        }
        for p in &req.persistent_recursive_watches {
            self.add_watch(conn, p, AddWatchMode::PersistentRecursive);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Txn;
    use bytes::Bytes;
    use zkit_proto::codes::OpCode;
    use zkit_proto::{Acl, CreateRequest, Id};

    const A: ConnId = ConnId(1);
    const B: ConnId = ConnId(2);

    fn ev(conn: ConnId, t: EventType, path: &str) -> (ConnId, WatcherEvent) {
        (conn, event(t, path))
    }

    fn wm() -> WatchManager {
        WatchManager::new()
    }

    fn nowatch(r: ServerResult<()>) {
        assert_eq!(r, Err(ErrorCode(err::NO_WATCHER)));
    }

    #[test]
    fn a_big_watch_table_grows_a_shard_at_a_time_and_is_reaped() {
        // A session setting many watches never makes one insert move the
        // whole table (shards.rs); closing it frees them in slices.
        let mut w = wm();
        let n = crate::shards::SPLIT_AT + 10;
        for i in 0..n {
            w.add_exist_watch(A, &format!("/absent/{i}"));
        }
        w.add_exist_watch(B, "/absent/0");
        assert_eq!(w.data.by_path.shard_count(), crate::shards::SHARDS);
        assert_eq!(w.data.by_conn[&A].shard_count(), crate::shards::SHARDS);
        assert_eq!(w.watch_count(), n + 1);
        w.drop_connection(A);
        assert_eq!(w.watch_count(), 1, "stop counting at once");
        let mut slices = 1;
        while !w.reap(1000) {
            slices += 1;
        }
        assert_eq!(slices, n.div_ceil(1000));
        assert_eq!(w.data.by_path.len(), 1);
        assert_eq!(
            w.trigger("/absent/0", EventType::NodeCreated),
            vec![ev(B, EventType::NodeCreated, "/absent/0")]
        );
        assert!(w.trigger("/absent/1", EventType::NodeCreated).is_empty());
    }

    #[test]
    fn data_watch_is_one_shot() {
        let mut w = wm();
        w.add_data_watch(A, "/n");
        w.check_watches(A, "/n", WatcherType::Data).unwrap();
        nowatch(w.check_watches(A, "/n", WatcherType::Children));
        assert_eq!(
            w.trigger("/n", EventType::NodeDataChanged),
            vec![ev(A, EventType::NodeDataChanged, "/n")]
        );
        nowatch(w.check_watches(A, "/n", WatcherType::Any));
        assert!(w.trigger("/n", EventType::NodeDataChanged).is_empty());
        assert_eq!(w.watch_count(), 0);
        // Data watches do not see child events; NodeCreated fires exist
        // watches.
        w.add_exist_watch(A, "/later");
        assert!(w
            .trigger("/later", EventType::NodeChildrenChanged)
            .is_empty());
        assert_eq!(
            w.trigger("/later", EventType::NodeCreated),
            vec![ev(A, EventType::NodeCreated, "/later")]
        );
    }

    #[test]
    fn child_watch_sees_children_changed_and_deleted_not_data() {
        let mut w = wm();
        w.add_child_watch(A, "/p");
        w.add_data_watch(A, "/p");
        assert_eq!(
            w.trigger("/p", EventType::NodeDataChanged),
            vec![ev(A, EventType::NodeDataChanged, "/p")]
        );
        w.check_watches(A, "/p", WatcherType::Children).unwrap();
        assert_eq!(
            w.trigger("/p", EventType::NodeChildrenChanged),
            vec![ev(A, EventType::NodeChildrenChanged, "/p")]
        );
        nowatch(w.check_watches(A, "/p", WatcherType::Children));
        // A grandchild event does not reach a child watch.
        w.add_child_watch(A, "/p");
        assert!(w.trigger("/p/k", EventType::NodeChildrenChanged).is_empty());
        assert_eq!(
            w.trigger("/p", EventType::NodeDeleted),
            vec![ev(A, EventType::NodeDeleted, "/p")]
        );
        assert_eq!(w.watch_count(), 0);
    }

    #[test]
    fn delete_fires_every_kind_once_per_connection() {
        let mut w = wm();
        w.add_data_watch(A, "/n");
        w.add_exist_watch(A, "/n");
        w.add_child_watch(A, "/n");
        w.add_child_watch(B, "/n");
        assert_eq!(
            w.trigger("/n", EventType::NodeDeleted),
            vec![
                ev(A, EventType::NodeDeleted, "/n"),
                ev(B, EventType::NodeDeleted, "/n")
            ]
        );
        // A's child watch was consumed although suppressed.
        assert_eq!(w.watch_count(), 0);
        nowatch(w.check_watches(A, "/n", WatcherType::Any));
    }

    #[test]
    fn triggers_from_the_tree_reach_the_right_tables() {
        let mut tree = DataTree::new();
        let mut w = wm();
        w.add_exist_watch(A, "/p/kid");
        w.add_child_watch(B, "/p");
        let acl = vec![Acl {
            perms: 31,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }];
        let mk = |tree: &mut DataTree, p: &str, z| {
            let r = CreateRequest {
                path: p.into(),
                data: Some(Bytes::new()),
                acl: acl.clone(),
                flags: 0,
            };
            tree.create(OpCode::Create, &r, &Txn::new(z, z, 1)).unwrap()
        };
        let p = mk(&mut tree, "/p", 1);
        assert!(w.trigger_all(&p.triggers).is_empty());
        let kid = mk(&mut tree, "/p/kid", 2);
        assert_eq!(
            w.trigger_all(&kid.triggers),
            vec![
                ev(A, EventType::NodeCreated, "/p/kid"),
                ev(B, EventType::NodeChildrenChanged, "/p")
            ]
        );
    }

    #[test]
    fn persistent_watch_keeps_firing_for_its_path_only() {
        let mut w = wm();
        w.add_watch(A, "/p", AddWatchMode::Persistent);
        w.check_watches(A, "/p", WatcherType::Any).unwrap();
        let seq = [
            ("/p", EventType::NodeCreated, true),
            ("/p", EventType::NodeDataChanged, true),
            ("/p", EventType::NodeChildrenChanged, true),
            ("/p/kid", EventType::NodeCreated, false),
            ("/p/kid", EventType::NodeDataChanged, false),
            ("/p/kid", EventType::NodeDeleted, false),
            ("/p/kid", EventType::NodeChildrenChanged, false),
            ("/p", EventType::NodeDeleted, true),
            ("/p", EventType::NodeCreated, true),
        ];
        for (path, t, fires) in seq {
            let got = w.trigger(path, t);
            if fires {
                assert_eq!(got, vec![ev(A, t, path)], "{path} {t:?}");
            } else {
                assert!(got.is_empty(), "{path} {t:?}");
            }
        }
        w.check_watches(A, "/p", WatcherType::Any).unwrap();
        // removeWatches(Any) ends it.
        w.remove_watches(A, "/p", WatcherType::Any).unwrap();
        nowatch(w.remove_watches(A, "/p", WatcherType::Any));
        assert_eq!(w.watch_count(), 0);
    }

    #[test]
    fn recursive_watches_are_found_above_deep_and_shallow_paths_alike() {
        for compat in [Compat::V3_8, Compat::V3_9] {
            let mut w = WatchManager::with_compat(compat);
            w.add_watch(A, "/a", AddWatchMode::PersistentRecursive);
            w.add_watch(B, "/a/b/c", AddWatchMode::PersistentRecursive);
            w.add_watch(B, "/x", AddWatchMode::PersistentRecursive);
            // Fewer recursive paths (3) than ancestors: found by scanning them.
            let deep = "/a/b/c/d/e/f/g";
            assert_eq!(
                w.trigger(deep, EventType::NodeCreated),
                vec![
                    ev(A, EventType::NodeCreated, deep),
                    ev(B, EventType::NodeCreated, deep)
                ]
            );
            // More recursive paths than ancestors: found by walking up.
            assert_eq!(
                w.trigger("/a/q", EventType::NodeDataChanged),
                vec![ev(A, EventType::NodeDataChanged, "/a/q")]
            );
            // "/ab" is no descendant of "/a".
            assert!(w.trigger("/ab/c/d/e", EventType::NodeCreated).is_empty());
            // Removing or dropping them stops both ways of finding them.
            w.remove_watches(B, "/a/b/c", WatcherType::Any).unwrap();
            assert_eq!(
                w.trigger(deep, EventType::NodeCreated),
                vec![ev(A, EventType::NodeCreated, deep)]
            );
            w.drop_connection(A);
            assert!(w.trigger(deep, EventType::NodeCreated).is_empty());
            assert!(w.trigger("/a/q", EventType::NodeCreated).is_empty());
            w.drop_connection(B);
            assert_eq!(w.watch_count(), 0);
            assert!(w.reap(usize::MAX));
            assert!(w.data.recursive.is_empty() && w.child.recursive.is_empty());
        }
        // 3.8: a data watch on the same path replaces the recursive mode.
        let mut w = wm();
        w.add_watch(A, "/r", AddWatchMode::PersistentRecursive);
        w.add_data_watch(A, "/r");
        assert!(w.trigger("/r/a/b/c", EventType::NodeCreated).is_empty());
    }

    #[test]
    fn recursive_watch_sees_descendants_never_children_changed() {
        let mut w = wm();
        w.add_watch(A, "/b", AddWatchMode::PersistentRecursive);
        for (p, t) in [
            ("/b/a", EventType::NodeCreated),
            ("/b/a/b", EventType::NodeCreated),
            ("/b/a/b", EventType::NodeDataChanged),
            ("/b/a/b", EventType::NodeDeleted),
            ("/b", EventType::NodeDataChanged),
        ] {
            assert_eq!(w.trigger(p, t), vec![ev(A, t, p)], "{p}");
        }
        assert!(w.trigger("/b", EventType::NodeChildrenChanged).is_empty());
        assert!(w.trigger("/b/a", EventType::NodeChildrenChanged).is_empty());
        assert!(w.trigger("/bb", EventType::NodeCreated).is_empty());
        assert!(w.trigger("/", EventType::NodeDataChanged).is_empty());
        // A recursive watch on "/" matches everything.
        w.add_watch(B, "/", AddWatchMode::PersistentRecursive);
        assert_eq!(w.trigger("/x/y", EventType::NodeCreated).len(), 1);
        assert_eq!(w.trigger("/b/q", EventType::NodeCreated).len(), 2);
    }

    #[test]
    fn recursive_watch_and_a_child_watch_below_it() {
        // One event per connection: a one-shot child watch on a descendant
        // gets NodeChildrenChanged; the recursive watch never does.
        let mut w = wm();
        w.add_watch(A, "/b", AddWatchMode::PersistentRecursive);
        w.add_child_watch(A, "/b/a");
        assert!(w.trigger("/b/a/x", EventType::NodeCreated).len() == 1);
        assert_eq!(
            w.trigger("/b/a", EventType::NodeChildrenChanged),
            vec![ev(A, EventType::NodeChildrenChanged, "/b/a")]
        );
        // A data watch on a descendant plus the recursive one: one event.
        w.add_data_watch(A, "/b/a");
        assert_eq!(w.trigger("/b/a", EventType::NodeDataChanged).len(), 1);
    }

    #[test]
    fn on_3_8_a_recursive_watch_swallows_a_child_watch_on_the_same_path() {
        let mut w = wm();
        w.add_child_watch(A, "/b");
        w.add_watch(A, "/b", AddWatchMode::PersistentRecursive);
        w.add_child_watch(B, "/b");
        assert_eq!(
            w.trigger("/b", EventType::NodeChildrenChanged),
            vec![ev(B, EventType::NodeChildrenChanged, "/b")]
        );
        assert_eq!(w.trigger("/b/x", EventType::NodeCreated).len(), 1);

        // 3.9: independent modes.
        let mut w = WatchManager::with_compat(Compat::V3_9);
        w.add_child_watch(A, "/b");
        w.add_watch(A, "/b", AddWatchMode::PersistentRecursive);
        assert_eq!(
            w.trigger("/b", EventType::NodeChildrenChanged),
            vec![ev(A, EventType::NodeChildrenChanged, "/b")]
        );
        assert!(w.trigger("/b", EventType::NodeChildrenChanged).is_empty());
        assert_eq!(w.trigger("/b/x", EventType::NodeCreated).len(), 1);
    }

    #[test]
    fn on_3_8_a_data_watch_downgrades_a_recursive_watch() {
        let mut w = wm();
        w.add_watch(A, "/b", AddWatchMode::PersistentRecursive);
        w.add_data_watch(A, "/b");
        assert!(w.trigger("/b/x", EventType::NodeCreated).is_empty());
        assert_eq!(w.trigger("/b", EventType::NodeDataChanged).len(), 1);
        assert!(w.trigger("/b", EventType::NodeDataChanged).is_empty());

        let mut w = WatchManager::with_compat(Compat::V3_9);
        w.add_watch(A, "/b", AddWatchMode::PersistentRecursive);
        w.add_data_watch(A, "/b");
        assert_eq!(w.trigger("/b", EventType::NodeDataChanged).len(), 1);
        assert_eq!(w.trigger("/b", EventType::NodeDataChanged).len(), 1);
        assert_eq!(w.trigger("/b/x", EventType::NodeCreated).len(), 1);
    }

    #[test]
    fn check_watches_on_3_8_sees_watches_of_other_sessions() {
        let mut w = wm();
        w.add_data_watch(B, "/p");
        w.check_watches(B, "/p", WatcherType::Data).unwrap();
        w.check_watches(A, "/p", WatcherType::Data).unwrap();
        nowatch(w.check_watches(A, "/p", WatcherType::Children));
        nowatch(w.remove_watches(A, "/p", WatcherType::Data));
        w.remove_watches(B, "/p", WatcherType::Data).unwrap();
        nowatch(w.check_watches(A, "/p", WatcherType::Data));

        let mut w = WatchManager::with_compat(Compat::V3_9);
        w.add_data_watch(B, "/p");
        nowatch(w.check_watches(A, "/p", WatcherType::Data));
        w.check_watches(B, "/p", WatcherType::Data).unwrap();
    }

    #[test]
    fn remove_watches_by_type() {
        let mut w = wm();
        for t in [WatcherType::Data, WatcherType::Children, WatcherType::Any] {
            nowatch(w.check_watches(A, "/b", t));
            nowatch(w.remove_watches(A, "/b", t));
        }
        w.add_data_watch(A, "/b");
        w.add_child_watch(A, "/b");
        w.remove_watches(A, "/b", WatcherType::Data).unwrap();
        nowatch(w.check_watches(A, "/b", WatcherType::Data));
        w.check_watches(A, "/b", WatcherType::Children).unwrap();
        w.remove_watches(A, "/b", WatcherType::Children).unwrap();
        nowatch(w.check_watches(A, "/b", WatcherType::Any));
        // 3.8 does not know types 4 and 5.
        w.add_watch(A, "/b", AddWatchMode::Persistent);
        for t in [WatcherType::Persistent, WatcherType::PersistentRecursive] {
            let me = Err(ErrorCode(err::MARSHALLING_ERROR));
            assert_eq!(w.remove_watches(A, "/b", t), me);
            assert_eq!(w.check_watches(A, "/b", t), me);
        }
        w.check_watches(A, "/b", WatcherType::Any).unwrap();
        // Removing Data on 3.8 takes the persistent watch out of the data
        // table only; it still fires for children.
        w.remove_watches(A, "/b", WatcherType::Data).unwrap();
        assert!(w.trigger("/b", EventType::NodeDataChanged).is_empty());
        assert_eq!(w.trigger("/b", EventType::NodeChildrenChanged).len(), 1);
    }

    #[test]
    fn remove_watches_by_mode_on_3_9() {
        let mut w = WatchManager::with_compat(Compat::V3_9);
        w.add_watch(A, "/b", AddWatchMode::Persistent);
        w.add_watch(A, "/b", AddWatchMode::PersistentRecursive);
        w.add_data_watch(A, "/b");
        w.check_watches(A, "/b", WatcherType::Persistent).unwrap();
        w.check_watches(A, "/b", WatcherType::PersistentRecursive)
            .unwrap();
        w.remove_watches(A, "/b", WatcherType::PersistentRecursive)
            .unwrap();
        nowatch(w.remove_watches(A, "/b", WatcherType::PersistentRecursive));
        assert!(w.trigger("/b/x", EventType::NodeCreated).is_empty());
        w.remove_watches(A, "/b", WatcherType::Persistent).unwrap();
        nowatch(w.check_watches(A, "/b", WatcherType::Persistent));
        nowatch(w.check_watches(A, "/b", WatcherType::Children));
        w.check_watches(A, "/b", WatcherType::Data).unwrap();
        w.remove_watches(A, "/b", WatcherType::Data).unwrap();
        assert_eq!(w.watch_count(), 0);
    }

    #[test]
    fn drop_connection_removes_only_its_watches() {
        let mut w = wm();
        w.add_data_watch(A, "/x");
        w.add_child_watch(A, "/x");
        w.add_watch(A, "/", AddWatchMode::PersistentRecursive);
        w.add_data_watch(B, "/x");
        w.drop_connection(A);
        assert_eq!(w.watch_count(), 1);
        assert_eq!(
            w.trigger("/x", EventType::NodeDeleted),
            vec![ev(B, EventType::NodeDeleted, "/x")]
        );
    }

    #[test]
    fn a_closed_connections_watches_are_freed_in_slices_and_never_fire() {
        for compat in [Compat::V3_8, Compat::V3_9] {
            let mut w = WatchManager::with_compat(compat);
            for i in 0..10 {
                w.add_data_watch(A, &format!("/n{i}"));
                w.add_child_watch(A, &format!("/n{i}"));
            }
            w.add_watch(A, "/", AddWatchMode::PersistentRecursive);
            w.add_data_watch(B, "/n3");
            w.drop_connection(A);
            // Gone at once for everything that asks...
            assert_eq!(w.watch_count(), 1);
            assert_eq!(w.data_watch_summary(), (1, 1, 1));
            nowatch(w.check_watches(A, "/n5", WatcherType::Any));
            // ...and three slices of 4 free them, firing nothing meanwhile.
            assert!(!w.reap(4));
            assert!(w.trigger("/n5", EventType::NodeDataChanged).is_empty());
            assert!(w.trigger("/deep/er", EventType::NodeCreated).is_empty());
            assert_eq!(
                w.trigger("/n3", EventType::NodeDeleted),
                vec![ev(B, EventType::NodeDeleted, "/n3")]
            );
            assert!(!w.reap(4));
            assert!(w.reap(4));
            assert!(w.data.by_path.is_empty() && w.child.by_path.is_empty());
            assert!(w.data.recursive.is_empty() && w.child.recursive.is_empty());
            assert!(w.reap(4));
        }
    }

    #[test]
    fn set_watches_fires_or_rearms() {
        let mut tree = DataTree::new();
        let acl = vec![Acl {
            perms: 31,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }];
        for (p, z) in [("/old", 5), ("/old/k", 6), ("/new", 20)] {
            let r = CreateRequest {
                path: p.into(),
                data: None,
                acl: acl.clone(),
                flags: 0,
            };
            tree.create(OpCode::Create, &r, &Txn::new(z, z, 1)).unwrap();
        }
        tree.set_data("/new", None, -1, &Txn::new(21, 21, 1))
            .unwrap();
        let mut w = wm();
        let req = SetWatches2 {
            relative_zxid: 10,
            data_watches: vec!["/old".into(), "/new".into(), "/gone".into()],
            exist_watches: vec!["/old".into(), "/absent".into()],
            child_watches: vec!["/old".into(), "/old/k".into(), "/gone".into(), "/".into()],
            persistent_watches: vec!["/p".into()],
            persistent_recursive_watches: vec!["/r".into()],
        };
        let got = w.set_watches(A, &req, &tree);
        assert_eq!(
            got,
            vec![
                event(EventType::NodeDataChanged, "/new"),
                event(EventType::NodeDeleted, "/gone"),
                event(EventType::NodeCreated, "/old"),
                event(EventType::NodeDeleted, "/gone"),
                // "/" got a child at zxid 20.
                event(EventType::NodeChildrenChanged, "/"),
            ]
        );
        // Re-armed: data /old, exist /absent, child /old and /old/k,
        // persistent /p (2 tables), recursive /r (2 tables on 3.8).
        assert_eq!(w.watch_count(), 8);
        assert_eq!(w.trigger("/old", EventType::NodeDataChanged).len(), 1);
        assert_eq!(w.trigger("/absent", EventType::NodeCreated).len(), 1);
        assert_eq!(w.trigger("/old", EventType::NodeChildrenChanged).len(), 1);
        assert_eq!(w.trigger("/p", EventType::NodeChildrenChanged).len(), 1);
        assert_eq!(w.trigger("/r/x", EventType::NodeCreated).len(), 1);
        assert_eq!(w.trigger("/r/x", EventType::NodeCreated).len(), 1);
    }

    #[test]
    fn path_and_parents_walks_to_the_root() {
        let v: Vec<_> = path_and_parents("/a/b/c").collect();
        assert_eq!(
            v,
            vec![("/a/b/c", false), ("/a/b", true), ("/a", true), ("/", true)]
        );
        assert_eq!(
            path_and_parents("/").collect::<Vec<_>>(),
            vec![("/", false)]
        );
    }
}
