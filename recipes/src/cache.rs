//! Caches of znodes, kept current from watches: [`TreeCache`] (a whole
//! subtree, on one persistent recursive watch, like Curator's
//! `CuratorCache`) and [`NodeCache`] (one node, on a persistent watch).
//!
//! A cache loads everything first (then sends [`CacheEvent::Initialized`]),
//! applies each change event as it comes, and after a reconnect or a new
//! session (missed events are not replayed by ZooKeeper) loads everything
//! again and sends the differences as events, so it always converges to the
//! server's state.
//!
//! ```no_run
//! # async fn demo() -> zkit::Result<()> {
//! use zkit_recipes::{cache::TreeCache, Sessions};
//!
//! let sessions = Sessions::new(zkit::Client::builder(), "zk1:2181");
//! let cache = TreeCache::start(sessions, "/app/flags");
//! cache.initialized().await;
//! for (path, node) in cache.snapshot() {
//!     println!("{path} = {:?}", node.data);
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use zkit::{AddWatchMode, Bytes, Client, Error, EventType, SessionState, Stat};

use crate::internal::protected::{backoff, join};
use crate::sessions::Sessions;

/// A cached node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CachedNode {
    /// Its data.
    pub data: Bytes,
    /// Its Stat when read.
    pub stat: Stat,
}

/// What changed in a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheEvent {
    /// The first complete load is done.
    Initialized,
    /// A node appeared.
    Added(String),
    /// A node's data (or Stat) changed.
    Updated(String),
    /// A node went away.
    Removed(String),
}

type Tree = BTreeMap<String, CachedNode>;

/// A cache of the subtree at a path (the root included).
#[derive(Debug)]
pub struct TreeCache {
    tree: Arc<RwLock<Tree>>,
    events: broadcast::Sender<CacheEvent>,
    ready: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl TreeCache {
    /// Starts caching the subtree at `path`, with sessions from `sessions`.
    pub fn start(sessions: Sessions, path: impl Into<String>) -> Self {
        let tree = Arc::new(RwLock::new(Tree::new()));
        let (events, _) = broadcast::channel(4096);
        let (ready_tx, ready) = watch::channel(false);
        let task = tokio::spawn(follow_tree(
            sessions,
            path.into(),
            tree.clone(),
            events.clone(),
            ready_tx,
        ));
        Self {
            tree,
            events,
            ready,
            task,
        }
    }

    /// Waits until the first load is complete.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn initialized(&self) {
        let mut r = self.ready.clone();
        let _ = r.wait_for(|ok| *ok).await;
    }

    /// A node of the subtree.
    pub fn get(&self, path: &str) -> Option<CachedNode> {
        read(&self.tree).get(path).cloned()
    }

    /// The children's names of a cached node, sorted.
    pub fn children(&self, path: &str) -> Vec<String> {
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        read(&self.tree)
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| !p[prefix.len()..].contains('/') && p.len() > prefix.len())
            .map(|(p, _)| p[prefix.len()..].to_string())
            .collect()
    }

    /// Every cached node.
    pub fn snapshot(&self) -> BTreeMap<String, CachedNode> {
        read(&self.tree).clone()
    }

    /// A receiver of change events from now on (lagging receivers skip
    /// events; re-read [`snapshot`](Self::snapshot) then).
    pub fn events(&self) -> broadcast::Receiver<CacheEvent> {
        self.events.subscribe()
    }
}

/// Dropping the cache stops its background task; the client removes the
/// persistent watch when its last watcher is gone. Snapshots taken before
/// stay as they are.
impl Drop for TreeCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn read(tree: &RwLock<Tree>) -> std::sync::RwLockReadGuard<'_, Tree> {
    tree.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(tree: &RwLock<Tree>) -> std::sync::RwLockWriteGuard<'_, Tree> {
    tree.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads the whole subtree (depth first).
async fn load(client: &Client, root: &str) -> Result<Tree, Error> {
    let mut out = Tree::new();
    let mut todo = vec![root.to_string()];
    while let Some(p) = todo.pop() {
        match client.get_data(&p).await {
            Ok((data, stat)) => {
                out.insert(p.clone(), CachedNode { data, stat });
            }
            Err(Error::NoNode) => continue,
            Err(e) => return Err(e),
        }
        match client.get_children(&p).await {
            Ok((kids, _)) => todo.extend(kids.iter().map(|k| join(&p, k))),
            Err(Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Replaces the tree with `new`, sending the differences.
fn replace(tree: &RwLock<Tree>, new: Tree, events: &broadcast::Sender<CacheEvent>) {
    let mut t = write(tree);
    for p in t.keys() {
        if !new.contains_key(p) {
            let _ = events.send(CacheEvent::Removed(p.clone()));
        }
    }
    for (p, n) in &new {
        match t.get(p) {
            None => {
                let _ = events.send(CacheEvent::Added(p.clone()));
            }
            Some(old) if old != n => {
                let _ = events.send(CacheEvent::Updated(p.clone()));
            }
            Some(_) => {}
        }
    }
    *t = new;
}

async fn follow_tree(
    sessions: Sessions,
    root: String,
    tree: Arc<RwLock<Tree>>,
    events: broadcast::Sender<CacheEvent>,
    ready: watch::Sender<bool>,
) {
    loop {
        let Ok(client) = sessions.client_retrying().await else {
            return; // closed
        };
        let mut states = client.state_stream();
        let mut watcher = match client
            .add_watch(&root, AddWatchMode::PersistentRecursive)
            .await
        {
            Ok(w) => w,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut delays = backoff();
        'reload: loop {
            match load(&client, &root).await {
                Ok(new) => {
                    replace(&tree, new, &events);
                    if !*ready.borrow() {
                        ready.send_replace(true);
                        let _ = events.send(CacheEvent::Initialized);
                    }
                }
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                    continue;
                }
                Err(_) => break,
            }
            let mut disconnected = false;
            loop {
                tokio::select! {
                    ev = watcher.changed() => {
                        let Ok(ev) = ev else { break 'reload };
                        apply(&client, &tree, &events, ev.event_type, &ev.path).await;
                    }
                    s = states.next_state() => match s {
                        Some(SessionState::Disconnected | SessionState::Connecting) => disconnected = true,
                        Some(SessionState::Connected | SessionState::ConnectedReadOnly) => {
                            if disconnected {
                                continue 'reload; // events may have been missed
                            }
                        }
                        _ => break 'reload,
                    },
                }
            }
        }
    }
}

/// Applies one change event (reading the node's current data).
async fn apply(
    client: &Client,
    tree: &RwLock<Tree>,
    events: &broadcast::Sender<CacheEvent>,
    kind: EventType,
    path: &str,
) {
    match kind {
        EventType::NodeDeleted => {
            let removed: Vec<String> = {
                let mut t = write(tree);
                let prefix = format!("{path}/");
                let gone: Vec<String> = t
                    .keys()
                    .filter(|p| *p == path || p.starts_with(&prefix))
                    .cloned()
                    .collect();
                for p in &gone {
                    t.remove(p);
                }
                gone
            };
            for p in removed {
                let _ = events.send(CacheEvent::Removed(p));
            }
        }
        EventType::NodeCreated | EventType::NodeDataChanged => {
            // An error means the node is gone again (its delete event
            // follows) or we are disconnected (a reload follows).
            let Ok((data, stat)) = client.get_data(path).await else {
                return;
            };
            let node = CachedNode { data, stat };
            let ev = {
                let mut t = write(tree);
                match t.get(path) {
                    // An older read must not overwrite a newer one.
                    Some(old) if old.stat.mzxid > node.stat.mzxid || *old == node => None,
                    Some(_) => {
                        t.insert(path.to_string(), node);
                        Some(CacheEvent::Updated(path.to_string()))
                    }
                    None => {
                        t.insert(path.to_string(), node);
                        Some(CacheEvent::Added(path.to_string()))
                    }
                }
            };
            if let Some(ev) = ev {
                let _ = events.send(ev);
            }
        }
        _ => {}
    }
}

/// A cache of one node (absent: `None`).
#[derive(Debug)]
pub struct NodeCache {
    inner: TreeCache,
    path: String,
}

impl NodeCache {
    /// Starts caching the node at `path`.
    pub fn start(sessions: Sessions, path: impl Into<String>) -> Self {
        let path = path.into();
        Self {
            inner: TreeCache::start(sessions, path.clone()),
            path,
        }
    }

    /// Waits until the first load is complete.
    pub async fn initialized(&self) {
        self.inner.initialized().await;
    }

    /// The node now.
    pub fn get(&self) -> Option<CachedNode> {
        self.inner.get(&self.path)
    }

    /// Change events of the node (and, as it is a subtree cache, of its
    /// descendants, which [`get`](Self::get) ignores).
    pub fn events(&self) -> broadcast::Receiver<CacheEvent> {
        self.inner.events()
    }
}
