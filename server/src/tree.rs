//! The znode tree (`DataTree` + the validation half of
//! `PrepRequestProcessor`), pure and synchronous.
//!
//! Every write takes its zxid and time from the caller (a [`Txn`]); nothing
//! here reads a clock or does I/O. Writes return the watch [`Trigger`]s they
//! cause, in the order ZooKeeper fires them, for
//! [`WatchManager::trigger`](crate::watches::WatchManager::trigger).
//!
//! Facts copied from ZooKeeper 3.8.0's source:
//!
//! - The *stored* `cversion` counts child creates only; clients see
//!   `stored * 2 - numChildren` (`DataNode.copyStat`). A create sets the
//!   parent's stored cversion to `old + 1` and its pzxid to the zxid; a delete
//!   sets the parent's pzxid only (`DataTree.createNode` / `deleteNode`).
//! - The sequential suffix is `%010d` of the parent's stored cversion before
//!   the create (`PrepRequestProcessor.pRequest2TxnCreate`), so plain creates
//!   advance it and deletes never rewind it; it is a signed 32-bit counter.
//! - `ephemeralOwner` is stored as the session id (ephemeral), `i64::MIN`
//!   (container) or `0xFF00_0000_0000_0000 | ttl` (TTL); clients see 0 for
//!   container and TTL nodes (`DataNode.getClientEphemeralOwner`).
//! - The initial tree: `/`, `/zookeeper`, `/zookeeper/quota` (world:anyone
//!   ALL, all-zero stat) and `/zookeeper/config` (world:anyone READ, aversion
//!   -1 because `DataTree.addConfigNode` calls `setACL(.., -1)`).
//!
//! ACLs are stored as given. Permission checks and ACL expansion belong to
//! [`crate::acl`]; the tree only calls the [`AclHook`] hooks of the
//! [`Txn`] at the points where ZooKeeper checks, so that error precedence is
//! ZooKeeper's.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use zkit_proto::codes::{err, perms, EventType, OpCode};
use zkit_proto::DecodeError;
use zkit_proto::{
    Acl, Create2Response, CreateRequest, CreateResponse, CreateTtlRequest, GetChildrenResponse,
    GetDataResponse, Id, MultiOp, MultiResult, Stat, StatResponse,
};

use crate::shards::{FastSet, ShardedMap};
use crate::{ErrorCode, ServerResult};

/// Which ZooKeeper release's observable behaviour to reproduce where
/// releases differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compat {
    /// ZooKeeper 3.8: a create2 op inside a multi is answered with the path
    /// only; one watch mode per (connection, path) (ZOOKEEPER-4466);
    /// checkWatches sees any connection's watches; WatcherType 4/5 unknown.
    #[default]
    V3_8,
    /// ZooKeeper 3.9: create2 in a multi returns a Stat (ZOOKEEPER-4026);
    /// independent watch modes per path; WatcherType Persistent /
    /// PersistentRecursive.
    V3_9,
}

/// `EphemeralType.CONTAINER_EPHEMERAL_OWNER`.
pub const CONTAINER_OWNER: i64 = i64::MIN;
/// `EphemeralType.EXTENDED_MASK`: the top byte marks an extended type (TTL).
const EXTENDED_MASK: i64 = 0xFF00_0000_0000_0000_u64 as i64;
/// `EphemeralType.RESERVED_BITS_MASK`.
const RESERVED_BITS_MASK: i64 = 0x00FF_FF00_0000_0000;
/// The largest TTL (`EphemeralType.TTL.maxValue()`, 2^40 - 1 ms).
pub const MAX_TTL_MS: i64 = 0xFF_FFFF_FFFF;

/// Stored `ephemeralOwner` of a TTL node.
pub fn ttl_owner(ttl_ms: i64) -> i64 {
    EXTENDED_MASK | ttl_ms
}

/// A watch trigger caused by a write: fire `event` for `path`
/// (`DataTree` calls `triggerWatch` with exactly these).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Trigger {
    /// The path the event is about.
    pub path: String,
    /// NodeCreated, NodeDeleted, NodeDataChanged or NodeChildrenChanged.
    pub event: EventType,
}

impl Trigger {
    fn new(path: &str, event: EventType) -> Self {
        Self {
            path: path.to_string(),
            event,
        }
    }
}

/// A successful write: its result and the watch triggers it causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<T> {
    /// The operation's result.
    pub result: T,
    /// Watch triggers, in ZooKeeper's firing order.
    pub triggers: Vec<Trigger>,
}

/// A created node: actual path (with any sequence suffix) and its Stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The node's path.
    pub path: String,
    /// The new node's client-visible Stat.
    pub stat: Stat,
}

/// ACL hooks the tree calls where `PrepRequestProcessor` / `FinalRequestProcessor`
/// do, so that error precedence matches ZooKeeper. Implemented by the ACL
/// module; [`NoAcl`] allows everything.
pub trait AclHook {
    /// `PrepRequestProcessor.fixupACL`: validate and expand an ACL given to
    /// create / setACL. The default removes duplicates and rejects an empty
    /// list with InvalidAcl (-114).
    ///
    /// # Errors
    /// InvalidAcl.
    fn fixup<'a>(&self, path: &str, acl: &'a [Acl]) -> ServerResult<Cow<'a, [Acl]>> {
        let _ = path;
        if acl.is_empty() {
            return Err(ErrorCode(err::INVALID_ACL));
        }
        Ok(dedup_acl(acl))
    }

    /// `ZooKeeperServer.checkACL`: may the caller use `perm` on a node with
    /// this ACL? The default allows everything.
    ///
    /// # Errors
    /// NoAuth (-102).
    fn check(&self, path: &str, acl: &[Acl], perm: i32) -> ServerResult<()> {
        let _ = (path, acl, perm);
        Ok(())
    }
}

/// `acl` without repeated entries (the first of each kept, in order):
/// borrowed when there are none, the usual case.
pub(crate) fn dedup_acl(acl: &[Acl]) -> Cow<'_, [Acl]> {
    let repeats = acl.iter().enumerate().any(|(i, a)| acl[..i].contains(a));
    if !repeats {
        return Cow::Borrowed(acl);
    }
    let mut out: Vec<Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    Cow::Owned(out)
}

/// An [`AclHook`] that allows everything (only rejects empty ACLs).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAcl;

impl AclHook for NoAcl {}

/// Context of one transaction: its zxid and time (ms since the epoch), the
/// session issuing it, and the ACL policy for that session's connection.
#[derive(Clone, Copy)]
pub struct Txn<'a> {
    /// The zxid of the transaction.
    pub zxid: i64,
    /// The transaction time, ms since the epoch.
    pub time_ms: i64,
    /// The issuing session (owner of ephemerals it creates).
    pub session: i64,
    /// ACL hooks.
    pub acl: &'a dyn AclHook,
}

impl std::fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn")
            .field("zxid", &self.zxid)
            .field("time_ms", &self.time_ms)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Txn<'static> {
    /// A transaction without ACL checks.
    pub fn new(zxid: i64, time_ms: i64, session: i64) -> Self {
        Self {
            zxid,
            time_ms,
            session,
            acl: &NoAcl,
        }
    }
}

impl<'a> Txn<'a> {
    /// The same transaction with these ACL hooks.
    pub fn with_acl(self, acl: &'a dyn AclHook) -> Txn<'a> {
        Txn { acl, ..self }
    }
}

/// `StatPersisted`: what ZooKeeper stores (no dataLength / numChildren; the
/// stored cversion counts creates only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Persisted {
    pub(crate) czxid: i64,
    pub(crate) mzxid: i64,
    pub(crate) ctime: i64,
    pub(crate) mtime: i64,
    pub(crate) version: i32,
    pub(crate) cversion: i32,
    pub(crate) aversion: i32,
    pub(crate) ephemeral_owner: i64,
    pub(crate) pzxid: i64,
}

impl Persisted {
    /// `DataTree.createStat`.
    fn create(zxid: i64, time: i64, owner: i64) -> Self {
        Self {
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: zxid,
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    data: Option<Bytes>,
    /// Shared with every znode that has an equal ACL ([`AclTable`]).
    acl: Arc<[Acl]>,
    stat: Persisted,
    children: FastSet<String>,
}

/// `EphemeralType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Void,
    Normal,
    Container,
    Ttl(i64),
}

/// The undo log of a multi in progress.
#[derive(Debug)]
enum Undo {
    Created {
        path: String,
        parent: String,
        parent_stat: Persisted,
    },
    Deleted {
        path: String,
        node: Box<Node>,
        parent: String,
        parent_stat: Persisted,
    },
    Data {
        path: String,
        data: Option<Bytes>,
        stat: Persisted,
    },
}

/// How a create is carried out (the txn type ZooKeeper makes of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CreateTxnKind {
    /// CreateTxn: persistent or ephemeral by the mode.
    Plain,
    /// CreateContainerTxn.
    Container,
    /// CreateTTLTxn.
    Ttl,
}

/// `CreateMode` decoded from flags.
#[derive(Debug, Clone, Copy)]
struct Mode {
    ephemeral: bool,
    sequential: bool,
    container: bool,
    ttl: bool,
}

/// `CreateMode.fromFlag`: BadArguments for an unknown flag.
fn mode_from_flags(flags: i32) -> ServerResult<Mode> {
    let m = |ephemeral, sequential, container, ttl| Mode {
        ephemeral,
        sequential,
        container,
        ttl,
    };
    Ok(match flags {
        0 => m(false, false, false, false),
        1 => m(true, false, false, false),
        2 => m(false, true, false, false),
        3 => m(true, true, false, false),
        4 => m(false, false, true, false),
        5 => m(false, false, false, true),
        6 => m(false, true, false, true),
        _ => return Err(ErrorCode(err::BAD_ARGUMENTS)),
    })
}

/// The parent of `path` as `DataTree` computes it (`path[..lastSlash]`, with
/// "" meaning the root); `None` without a '/'.
fn parent_of(path: &str) -> Option<&str> {
    let i = path.rfind('/')?;
    Some(if i == 0 { "/" } else { &path[..i] })
}

/// Values up to this size are copied into an allocation of their own when
/// stored (see [`stored`]).
const COPY_DATA_UP_TO: usize = 16 * 1024;

/// The data a node keeps of a request's `data`. A request's bytes are a
/// slice of its connection's read buffer, which holds many requests: kept
/// as they are, one small node would pin the whole buffer for its lifetime
/// (and the connection could never reuse it). Small values are copied
/// (as ZooKeeper keeps a `byte[]` per node); a large value came in a
/// buffer grown to its own frame, and is kept without a copy.
fn stored(data: &Option<Bytes>) -> Option<Bytes> {
    data.as_ref().map(|d| {
        if d.len() <= COPY_DATA_UP_TO {
            Bytes::copy_from_slice(d)
        } else {
            d.clone()
        }
    })
}

fn code(c: i32) -> ErrorCode {
    ErrorCode(c)
}

/// Interned ACL lists: znodes with equal ACLs share one allocation, as
/// ZooKeeper's `ReferenceCountedACLCache` does (most trees use a handful
/// of distinct ACLs). Lists no znode uses any more are dropped when the
/// table has doubled since the last sweep.
#[derive(Debug, Clone, Default)]
struct AclTable {
    lists: FastSet<Arc<[Acl]>>,
    sweep_at: usize,
    /// The list interned last: most creates in a row give the same ACL,
    /// found by one comparison instead of hashing the list.
    last: Option<Arc<[Acl]>>,
}

impl AclTable {
    fn intern(&mut self, acl: &[Acl]) -> Arc<[Acl]> {
        if let Some(last) = &self.last {
            if **last == *acl {
                return last.clone();
            }
        }
        let shared = self.lookup_or_insert(acl);
        self.last = Some(shared.clone());
        shared
    }

    fn lookup_or_insert(&mut self, acl: &[Acl]) -> Arc<[Acl]> {
        if let Some(shared) = self.lists.get(acl) {
            return shared.clone();
        }
        if self.lists.len() >= self.sweep_at {
            // Held by the table alone (and by `last`): no znode uses it.
            let last = self.last.as_ref();
            self.lists.retain(|a| {
                let own = 1 + usize::from(last.is_some_and(|l| Arc::ptr_eq(l, a)));
                Arc::strong_count(a) > own
            });
            self.sweep_at = (self.lists.len() * 2).max(64);
        }
        let shared: Arc<[Acl]> = acl.into();
        self.lists.insert(shared.clone());
        shared
    }
}

/// The znode tree of a ZooKeeper server.
#[derive(Debug, Clone)]
pub struct DataTree {
    /// Boxed: a table growth then moves a pointer per node, not the node.
    nodes: ShardedMap<String, Box<Node>>,
    acls: AclTable,
    ephemerals: HashMap<i64, BTreeSet<String>>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    compat: Compat,
    extended_types: bool,
    max_never_used_ms: i64,
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

/// `/zookeeper`.
pub const ZOOKEEPER_NODE: &str = "/zookeeper";
/// `/zookeeper/quota`.
pub const QUOTA_NODE: &str = "/zookeeper/quota";
/// `Quotas.limitNode`, as a path suffix.
const QUOTA_LIMIT_SUFFIX: &str = "/zookeeper_limits";
/// `Quotas.statNode`, as a path suffix.
const QUOTA_STAT_SUFFIX: &str = "/zookeeper_stats";
/// `/zookeeper/config`.
pub const CONFIG_NODE: &str = "/zookeeper/config";

fn world(perms: i32) -> Vec<Acl> {
    vec![Acl {
        perms,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

impl DataTree {
    /// The initial tree of a fresh 3.8 server (extended types enabled).
    pub fn new() -> Self {
        Self::with_compat(Compat::default())
    }

    /// The initial tree, reproducing the given release's behaviour.
    pub fn with_compat(compat: Compat) -> Self {
        let mut t = Self {
            nodes: ShardedMap::new(),
            acls: AclTable::default(),
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            compat,
            extended_types: true,
            max_never_used_ms: 0,
        };
        let empty = |acl: Vec<Acl>, aversion, kids: &[&str]| {
            Box::new(Node {
                data: Some(Bytes::new()),
                acl: acl.into(),
                stat: Persisted {
                    aversion,
                    ..Persisted::default()
                },
                children: kids.iter().map(|s| s.to_string()).collect(),
            })
        };
        t.nodes
            .insert("/".into(), empty(world(perms::ALL), 0, &["zookeeper"]));
        t.nodes.insert(
            ZOOKEEPER_NODE.into(),
            empty(world(perms::ALL), 0, &["quota", "config"]),
        );
        t.nodes
            .insert(QUOTA_NODE.into(), empty(world(perms::ALL), 0, &[]));
        t.nodes
            .insert(CONFIG_NODE.into(), empty(world(perms::READ), -1, &[]));
        t
    }

    /// The release whose behaviour is reproduced.
    pub fn compat(&self) -> Compat {
        self.compat
    }

    /// `zookeeper.extendedTypesEnabled` (default true here, as on the
    /// observed server). When false, TTL creates fail with Unimplemented.
    pub fn set_extended_types(&mut self, enabled: bool) {
        self.extended_types = enabled;
    }

    /// `znode.container.maxNeverUsedIntervalMs` (default 0 = never reap a
    /// container that never had a child).
    pub fn set_max_never_used_ms(&mut self, ms: i64) {
        self.max_never_used_ms = ms;
    }

    /// Number of znodes, including `/` and the `/zookeeper` nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// ZooKeeper's `approximate_data_size`: the lengths of every path and
    /// of its data, summed (a walk over the whole tree).
    pub fn approximate_data_size(&self) -> u64 {
        self.nodes
            .iter()
            .map(|(p, n)| (p.len() + n.data.as_ref().map_or(0, Bytes::len)) as u64)
            .sum()
    }

    /// Whether a node exists.
    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    fn kind(&self, owner: i64) -> Kind {
        if self.extended_types && owner & EXTENDED_MASK == EXTENDED_MASK {
            // Only feature 0 (TTL) exists; ZooKeeper throws on others.
            return Kind::Ttl(owner & !(EXTENDED_MASK | RESERVED_BITS_MASK));
        }
        if owner == CONTAINER_OWNER {
            Kind::Container
        } else if owner == 0 {
            Kind::Void
        } else {
            Kind::Normal
        }
    }

    /// `DataNode.copyStat`: the client-visible Stat.
    fn client_stat(&self, n: &Node) -> Stat {
        let num_children = n.children.len() as i32;
        Stat {
            czxid: n.stat.czxid,
            mzxid: n.stat.mzxid,
            ctime: n.stat.ctime,
            mtime: n.stat.mtime,
            version: n.stat.version,
            cversion: n.stat.cversion.wrapping_mul(2).wrapping_sub(num_children),
            aversion: n.stat.aversion,
            ephemeral_owner: match self.kind(n.stat.ephemeral_owner) {
                Kind::Normal => n.stat.ephemeral_owner,
                _ => 0,
            },
            data_length: n.data.as_ref().map_or(0, |d| d.len() as i32),
            num_children,
            pzxid: n.stat.pzxid,
        }
    }

    fn node(&self, path: &str) -> ServerResult<&Node> {
        self.nodes.get(path).map(|n| &**n).ok_or(code(err::NO_NODE))
    }

    fn index_add(&mut self, path: &str, owner: i64) {
        match self.kind(owner) {
            Kind::Container => {
                self.containers.insert(path.to_string());
            }
            Kind::Ttl(_) => {
                self.ttls.insert(path.to_string());
            }
            Kind::Normal => {
                self.ephemerals
                    .entry(owner)
                    .or_default()
                    .insert(path.to_string());
            }
            Kind::Void => {}
        }
    }

    fn index_remove(&mut self, path: &str, owner: i64) {
        match self.kind(owner) {
            Kind::Container => {
                self.containers.remove(path);
            }
            Kind::Ttl(_) => {
                self.ttls.remove(path);
            }
            Kind::Normal => {
                if let Some(set) = self.ephemerals.get_mut(&owner) {
                    set.remove(path);
                    if set.is_empty() {
                        self.ephemerals.remove(&owner);
                    }
                }
            }
            Kind::Void => {}
        }
    }

    // ---- reads ----------------------------------------------------------

    /// exists: the node's Stat, or `None`.
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.nodes.get(path).map(|n| self.client_stat(n))
    }

    /// getData: data (null kept apart from empty) and Stat.
    ///
    /// # Errors
    /// NoNode.
    pub fn get_data(&self, path: &str) -> ServerResult<(Option<Bytes>, Stat)> {
        let n = self.node(path)?;
        Ok((n.data.clone(), self.client_stat(n)))
    }

    /// getChildren / getChildren2: child names (sorted, which ZooKeeper does
    /// not promise) and the node's Stat.
    ///
    /// # Errors
    /// NoNode.
    pub fn get_children(&self, path: &str) -> ServerResult<(Vec<String>, Stat)> {
        let n = self.node(path)?;
        let mut kids: Vec<String> = n.children.iter().cloned().collect();
        kids.sort();
        Ok((kids, self.client_stat(n)))
    }

    /// getACL: the ACL as stored and the Stat.
    ///
    /// # Errors
    /// NoNode.
    pub fn get_acl(&self, path: &str) -> ServerResult<(Vec<Acl>, Stat)> {
        let n = self.node(path)?;
        Ok((n.acl.to_vec(), self.client_stat(n)))
    }

    /// A node's ACL, borrowed (a permission check needs no copy).
    ///
    /// # Errors
    /// NoNode.
    pub fn acl(&self, path: &str) -> ServerResult<&[Acl]> {
        Ok(&self.node(path)?.acl)
    }

    /// getEphemerals: the session's ephemeral paths starting with `prefix`
    /// (a plain string prefix; "" or "/" after trimming = all), sorted.
    pub fn get_ephemerals(&self, session: i64, prefix: &str) -> Vec<String> {
        let all = match self.ephemerals.get(&session) {
            Some(s) => s,
            None => return Vec::new(),
        };
        let trimmed = prefix.trim();
        all.iter()
            .filter(|p| trimmed.is_empty() || trimmed == "/" || p.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The sessions that own ephemeral nodes.
    pub fn sessions_with_ephemerals(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.ephemerals.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// getAllChildrenNumber: the number of descendants (for "/": every node
    /// but the root, `/zookeeper` and its children included).
    ///
    /// # Errors
    /// NoNode.
    pub fn all_children_number(&self, path: &str) -> ServerResult<i32> {
        self.node(path)?;
        if path == "/" {
            return Ok(self.nodes.len() as i32 - 1);
        }
        let prefix = format!("{path}/");
        Ok(self.nodes.keys().filter(|k| k.starts_with(&prefix)).count() as i32)
    }

    /// check (op 13, standalone or in a multi): the node exists, the caller
    /// may READ it and its data version matches (`-1` = any). Returns the
    /// node's Stat.
    ///
    /// # Errors
    /// BadArguments (invalid path), NoNode, NoAuth, BadVersion.
    pub fn check(&self, path: &str, version: i32, txn: &Txn<'_>) -> ServerResult<Stat> {
        validate(path)?;
        let n = self.node(path)?;
        txn.acl.check(path, &n.acl, perms::READ)?;
        check_version(n.stat.version, version)?;
        Ok(self.client_stat(n))
    }

    // ---- writes ---------------------------------------------------------

    /// create (1), create2 (15) or createContainer (19), as a standalone
    /// request. Op 1/15 with the container flag make a plain persistent node
    /// (only op 19 makes a container); TTL flags without a TTL are
    /// BadArguments.
    ///
    /// # Errors
    /// BadArguments, InvalidAcl, NoNode, NoAuth, NodeExists,
    /// NoChildrenForEphemerals — in ZooKeeper's order.
    pub fn create(
        &mut self,
        op: OpCode,
        req: &CreateRequest,
        txn: &Txn<'_>,
    ) -> ServerResult<Applied<Created>> {
        let kind = match op {
            OpCode::CreateContainer => CreateTxnKind::Container,
            OpCode::Create | OpCode::Create2 => CreateTxnKind::Plain,
            _ => return Err(code(err::BAD_ARGUMENTS)),
        };
        let mut triggers = Vec::new();
        let c = self.do_create(
            kind,
            &req.path,
            &req.data,
            &req.acl,
            req.flags,
            -1,
            txn,
            None,
            &mut triggers,
        )?;
        Ok(Applied {
            result: c,
            triggers,
        })
    }

    /// createTTL (21), as a standalone request.
    ///
    /// # Errors
    /// Unimplemented (extended types disabled), BadArguments (TTL out of
    /// `1..=2^40-1`, flags not 5/6), then as [`create`](Self::create).
    pub fn create_ttl(
        &mut self,
        req: &CreateTtlRequest,
        txn: &Txn<'_>,
    ) -> ServerResult<Applied<Created>> {
        let mut triggers = Vec::new();
        let c = self.do_create(
            CreateTxnKind::Ttl,
            &req.path,
            &req.data,
            &req.acl,
            req.flags,
            req.ttl,
            txn,
            None,
            &mut triggers,
        )?;
        Ok(Applied {
            result: c,
            triggers,
        })
    }

    /// `pRequest2TxnCreate` + `DataTree.createNode`.
    #[allow(clippy::too_many_arguments)]
    fn do_create(
        &mut self,
        kind: CreateTxnKind,
        path: &str,
        data: &Option<Bytes>,
        acl: &[Acl],
        flags: i32,
        ttl: i64,
        txn: &Txn<'_>,
        undo: Option<&mut Vec<Undo>>,
        triggers: &mut Vec<Trigger>,
    ) -> ServerResult<Created> {
        // validateCreateRequest
        let mode = mode_from_flags(flags)?;
        if mode.ttl && !self.extended_types {
            return Err(code(err::UNIMPLEMENTED));
        }
        // EphemeralType.validateTTL
        if mode.ttl {
            if ttl <= 0 || ttl > MAX_TTL_MS {
                return Err(code(err::BAD_ARGUMENTS));
            }
        } else if ttl >= 0 {
            return Err(code(err::BAD_ARGUMENTS));
        }
        if kind == CreateTxnKind::Ttl && !mode.ttl {
            // ZooKeeper would fail applying CreateTTLTxn with ttl -1.
            return Err(code(err::BAD_ARGUMENTS));
        }
        // validatePathForCreate
        if !path.contains('/') || path.contains('\0') {
            return Err(code(err::BAD_ARGUMENTS));
        }
        let acl = txn.acl.fixup(path, acl)?;
        let parent_path = parent_of(path).unwrap_or("/");
        let parent = self.node(parent_path)?;
        txn.acl.check(path, &parent.acl, perms::CREATE)?;
        let parent_cversion = parent.stat.cversion;
        let final_path = if mode.sequential {
            format!("{path}{parent_cversion:010}")
        } else {
            path.to_string()
        };
        validate(&final_path)?;
        if self.nodes.contains_key(&final_path) {
            return Err(code(err::NODE_EXISTS));
        }
        if self.kind(parent.stat.ephemeral_owner) == Kind::Normal {
            return Err(code(err::NO_CHILDREN_FOR_EPHEMERALS));
        }
        let owner = match kind {
            CreateTxnKind::Container => CONTAINER_OWNER,
            CreateTxnKind::Ttl => ttl_owner(ttl),
            CreateTxnKind::Plain if mode.ephemeral => txn.session,
            CreateTxnKind::Plain => 0,
        };

        // Apply.
        let name = final_path[final_path.rfind('/').map_or(0, |i| i + 1)..].to_string();
        let parent = self
            .nodes
            .get_mut(parent_path)
            .expect("parent checked above");
        let parent_stat = parent.stat;
        // createNode only moves cversion/pzxid forward: at i32::MAX the
        // counter sticks (Java int overflow gives MIN, which is not larger).
        let new_cversion = parent_cversion.wrapping_add(1);
        if new_cversion > parent.stat.cversion {
            parent.stat.cversion = new_cversion;
            parent.stat.pzxid = txn.zxid;
        }
        parent.children.insert(name);
        let node = Box::new(Node {
            data: stored(data),
            acl: self.acls.intern(&acl),
            stat: Persisted::create(txn.zxid, txn.time_ms, owner),
            children: FastSet::default(),
        });
        let stat = self.client_stat(&node);
        self.nodes.insert(final_path.clone(), node);
        self.index_add(&final_path, owner);
        let mut undo = undo;
        if let Some(u) = undo.as_deref_mut() {
            u.push(Undo::Created {
                path: final_path.clone(),
                parent: parent_path.to_string(),
                parent_stat,
            });
        }
        // DataTree.createNode's quota bookkeeping.
        if let Some(quoted) = parent_path.strip_prefix(QUOTA_NODE) {
            if quoted.starts_with('/') && final_path.ends_with(QUOTA_STAT_SUFFIX) {
                self.update_quota_for_path(quoted);
            }
        }
        let bytes = data.as_ref().map_or(0, |d| d.len() as i64);
        self.update_quota_stat(&final_path, bytes, 1, undo);
        triggers.push(Trigger::new(&final_path, EventType::NodeCreated));
        triggers.push(Trigger::new(parent_path, EventType::NodeChildrenChanged));
        Ok(Created {
            path: final_path,
            stat,
        })
    }

    /// `DataTree.getMaxPrefixWithQuota`: the longest ancestor-or-self of
    /// `path` (not `/`) with a `zookeeper_limits` node under
    /// `/zookeeper/quota`.
    fn quota_prefix(&self, path: &str) -> Option<String> {
        // Down the quota subtree along the path's components, as far as it
        // goes (ZooKeeper's PathTrie): the cost is the depth of the quota
        // tree, not a lookup per ancestor of a deep path on every write.
        let limits = &QUOTA_LIMIT_SUFFIX[1..];
        let mut node = self.nodes.get(QUOTA_NODE)?;
        if node.children.is_empty() {
            // No quota anywhere: the usual case, without a path built.
            return None;
        }
        let mut quota_path = String::from(QUOTA_NODE);
        let mut end = 0;
        let mut deepest = None;
        for comp in path.split('/').skip(1) {
            if comp.is_empty() || !node.children.contains(comp) {
                break;
            }
            quota_path.push('/');
            quota_path.push_str(comp);
            end += 1 + comp.len();
            let Some(n) = self.nodes.get(&quota_path) else {
                break;
            };
            if n.children.contains(limits) {
                deepest = Some(path[..end].to_string());
            }
            node = n;
        }
        deepest
    }

    /// `DataTree.updateQuotaForPath`: sets `path`'s `zookeeper_stats` to the
    /// node count and data bytes of its subtree (no version/mzxid change).
    fn update_quota_for_path(&mut self, path: &str) {
        let (mut count, mut bytes) = (0i64, 0i64);
        let mut stack = vec![path.to_string()];
        while let Some(p) = stack.pop() {
            let Some(n) = self.nodes.get(&p) else {
                continue;
            };
            count += 1;
            bytes += n.data.as_ref().map_or(0, |d| d.len() as i64);
            let base = if p == "/" { "" } else { p.as_str() };
            stack.extend(n.children.iter().map(|c| format!("{base}/{c}")));
        }
        let stat_path = format!("{QUOTA_NODE}{path}{QUOTA_STAT_SUFFIX}");
        if let Some(n) = self.nodes.get_mut(&stat_path) {
            n.data = Some(Bytes::from(format!("count={count},bytes={bytes}")));
        }
    }

    /// `DataTree.updateQuotaStat` for the quota root above `path`, if any
    /// (hard limits are not enforced, as with ZooKeeper's default
    /// `zookeeper.enforceQuota=false`).
    fn update_quota_stat(
        &mut self,
        path: &str,
        bytes_diff: i64,
        count_diff: i64,
        undo: Option<&mut Vec<Undo>>,
    ) {
        let Some(prefix) = self.quota_prefix(path) else {
            return;
        };
        let stat_path = format!("{QUOTA_NODE}{prefix}{QUOTA_STAT_SUFFIX}");
        let Some(n) = self.nodes.get_mut(&stat_path) else {
            return;
        };
        if let Some(u) = undo {
            u.push(Undo::Data {
                path: stat_path.clone(),
                data: n.data.clone(),
                stat: n.stat,
            });
        }
        // StatsTrack(String) / toString().
        let text = n
            .data
            .as_ref()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default();
        let mut stats: std::collections::BTreeMap<String, i64> = text
            .split([',', ';'])
            .filter_map(|kv| {
                let mut it = kv.split('=');
                let k = it.next()?.trim();
                let v = it.next()?.trim().parse().ok()?;
                (!k.is_empty()).then(|| (k.to_string(), v))
            })
            .collect();
        *stats.entry("count".into()).or_insert(0) += count_diff;
        *stats.entry("bytes".into()).or_insert(0) += bytes_diff;
        let mut out = format!("count={},bytes={}", stats["count"], stats["bytes"]);
        let rest: Vec<_> = stats
            .iter()
            .filter(|(k, _)| k.as_str() != "count" && k.as_str() != "bytes")
            .collect();
        if !rest.is_empty() {
            out.push_str("=;");
            for (k, v) in rest {
                out.push_str(&format!("{k}={v};"));
            }
        }
        n.data = Some(Bytes::from(out));
    }

    /// delete (2). `version` -1 = any. Deleting `/`, `/zookeeper`,
    /// `/zookeeper/quota` or `/zookeeper/config` is BadArguments
    /// (`DataTree.isSpecialPath`).
    ///
    /// # Errors
    /// BadArguments, NoNode, NoAuth (DELETE on the parent), BadVersion,
    /// NotEmpty — in that order.
    pub fn delete(&mut self, path: &str, version: i32, txn: &Txn<'_>) -> ServerResult<Applied<()>> {
        let mut triggers = Vec::new();
        self.do_delete(path, version, txn, None, &mut triggers)?;
        Ok(Applied {
            result: (),
            triggers,
        })
    }

    fn do_delete(
        &mut self,
        path: &str,
        version: i32,
        txn: &Txn<'_>,
        undo: Option<&mut Vec<Undo>>,
        triggers: &mut Vec<Trigger>,
    ) -> ServerResult<()> {
        let parent_path = parent_and_validate(path)?;
        let parent = self.node(parent_path)?;
        txn.acl.check(path, &parent.acl, perms::DELETE)?;
        let n = self.node(path)?;
        check_version(n.stat.version, version)?;
        if !n.children.is_empty() {
            return Err(code(err::NOT_EMPTY));
        }
        let parent_path = parent_path.to_string();
        self.remove_node(path, &parent_path, txn.zxid, undo, triggers);
        Ok(())
    }

    /// `DataTree.deleteNode`, after validation.
    fn remove_node(
        &mut self,
        path: &str,
        parent_path: &str,
        zxid: i64,
        undo: Option<&mut Vec<Undo>>,
        triggers: &mut Vec<Trigger>,
    ) {
        let name = &path[path.rfind('/').map_or(0, |i| i + 1)..];
        let parent = self.nodes.get_mut(parent_path).expect("parent exists");
        let parent_stat = parent.stat;
        parent.children.remove(name);
        if zxid > parent.stat.pzxid {
            parent.stat.pzxid = zxid;
        }
        let node = self.nodes.remove(path).expect("node exists");
        self.index_remove(path, node.stat.ephemeral_owner);
        let bytes = node.data.as_ref().map_or(0, |d| d.len() as i64);
        let mut undo = undo;
        self.update_quota_stat(path, -bytes, -1, undo.as_deref_mut());
        if let Some(u) = undo {
            u.push(Undo::Deleted {
                path: path.to_string(),
                node,
                parent: parent_path.to_string(),
                parent_stat,
            });
        }
        // dataWatches NodeDeleted, childWatches NodeDeleted (deduplicated by
        // the watch manager), parent's childWatches NodeChildrenChanged.
        triggers.push(Trigger::new(path, EventType::NodeDeleted));
        triggers.push(Trigger::new(parent_path, EventType::NodeChildrenChanged));
    }

    /// deleteContainer (20), as the container reaper issues it: no ACL or
    /// version check; NotEmpty with children; BadVersion for an ephemeral.
    ///
    /// # Errors
    /// BadArguments, NoNode, NotEmpty, BadVersion.
    pub fn delete_container(&mut self, path: &str, zxid: i64) -> ServerResult<Applied<()>> {
        let parent_path = parent_and_validate(path)?.to_string();
        let n = self.node(path)?;
        if !n.children.is_empty() {
            return Err(code(err::NOT_EMPTY));
        }
        if self.kind(n.stat.ephemeral_owner) == Kind::Normal {
            return Err(code(err::BAD_VERSION));
        }
        self.node(&parent_path)?;
        let mut triggers = Vec::new();
        self.remove_node(path, &parent_path, zxid, None, &mut triggers);
        Ok(Applied {
            result: (),
            triggers,
        })
    }

    /// setData (5): new data, version + 1, mzxid and mtime. `version` -1 =
    /// any.
    ///
    /// # Errors
    /// BadArguments (invalid path), NoNode, NoAuth (WRITE), BadVersion.
    pub fn set_data(
        &mut self,
        path: &str,
        data: Option<Bytes>,
        version: i32,
        txn: &Txn<'_>,
    ) -> ServerResult<Applied<Stat>> {
        let mut triggers = Vec::new();
        let s = self.do_set_data(path, data, version, txn, None, &mut triggers)?;
        Ok(Applied {
            result: s,
            triggers,
        })
    }

    fn do_set_data(
        &mut self,
        path: &str,
        data: Option<Bytes>,
        version: i32,
        txn: &Txn<'_>,
        undo: Option<&mut Vec<Undo>>,
        triggers: &mut Vec<Trigger>,
    ) -> ServerResult<Stat> {
        validate(path)?;
        let n = self.node(path)?;
        txn.acl.check(path, &n.acl, perms::WRITE)?;
        let new_version = check_version(n.stat.version, version)?;
        let old_len = n.data.as_ref().map_or(0, |d| d.len() as i64);
        let new_len = data.as_ref().map_or(0, |d| d.len() as i64);
        let mut undo = undo;
        self.update_quota_stat(path, new_len - old_len, 0, undo.as_deref_mut());
        let n = self.nodes.get_mut(path).expect("checked");
        if let Some(u) = undo {
            u.push(Undo::Data {
                path: path.to_string(),
                data: n.data.clone(),
                stat: n.stat,
            });
        }
        n.data = stored(&data);
        n.stat.version = new_version;
        n.stat.mzxid = txn.zxid;
        n.stat.mtime = txn.time_ms;
        let n = &self.nodes[path];
        triggers.push(Trigger::new(path, EventType::NodeDataChanged));
        Ok(self.client_stat(n))
    }

    /// setACL (7): replaces the ACL, aversion + 1. `version` -1 = any. No
    /// watch fires.
    ///
    /// # Errors
    /// BadArguments (invalid path), InvalidAcl, NoNode, NoAuth (ADMIN),
    /// BadVersion.
    pub fn set_acl(
        &mut self,
        path: &str,
        acl: &[Acl],
        version: i32,
        txn: &Txn<'_>,
    ) -> ServerResult<Stat> {
        validate(path)?;
        let acl = txn.acl.fixup(path, acl)?;
        let n = self.node(path)?;
        txn.acl.check(path, &n.acl, perms::ADMIN)?;
        let new_version = check_version(n.stat.aversion, version)?;
        let acl = self.acls.intern(&acl);
        let n = self.nodes.get_mut(path).expect("checked");
        n.acl = acl;
        n.stat.aversion = new_version;
        let n = &self.nodes[path];
        Ok(self.client_stat(n))
    }

    /// closeSession / expiry: deletes the session's ephemerals (in path
    /// order), each like a delete at `zxid`.
    pub fn kill_session(&mut self, session: i64, zxid: i64) -> Vec<Trigger> {
        let mut triggers = Vec::new();
        let paths = self.ephemerals.remove(&session).unwrap_or_default();
        for p in paths {
            if let Some(parent) = parent_of(&p) {
                if self.nodes.contains_key(&p) && self.nodes.contains_key(parent) {
                    let parent = parent.to_string();
                    self.remove_node(&p, &parent, zxid, None, &mut triggers);
                }
            }
        }
        triggers
    }

    /// Paths the container/TTL reaper (`ContainerManager.getCandidates`)
    /// would delete at `now_ms`: childless containers whose stored cversion
    /// is > 0 (or, with a max-never-used interval set, older than it), and
    /// childless TTL nodes with `now - mtime > ttl`. Sorted.
    pub fn reapable(&self, now_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.containers {
            let Some(n) = self.nodes.get(p) else { continue };
            if !n.children.is_empty() {
                continue;
            }
            let elapsed = now_ms - n.stat.mtime;
            if n.stat.cversion > 0
                || (self.max_never_used_ms != 0 && elapsed > self.max_never_used_ms)
            {
                out.push(p.clone());
            }
        }
        for p in &self.ttls {
            let Some(n) = self.nodes.get(p) else { continue };
            if !n.children.is_empty() {
                continue;
            }
            if let Kind::Ttl(ttl) = self.kind(n.stat.ephemeral_owner) {
                if ttl != 0 && now_ms - n.stat.mtime > ttl {
                    out.push(p.clone());
                }
            }
        }
        out.sort();
        out
    }

    // ---- multi ----------------------------------------------------------

    /// multi (14): all ops at one zxid, atomically. Each op sees the effects
    /// of the ops before it. On failure nothing is applied, no watch fires,
    /// and the results are ZooKeeper's failed shape: `Error(0)` for the ops
    /// before the failing one, `Error(code)` for it, `Error(-2)` after it.
    ///
    /// Result types (3.8): a create whose flags are not the container flag
    /// is answered with the path only (also for create2 and for op 19 with
    /// other flags, since 3.8 re-derives the op from the flags); flags 4 and
    /// createTTL with Stat. Under [`Compat::V3_9`] create2 also gets a Stat.
    /// Read ops (getData / getChildren) are not allowed in a multi and fail
    /// it with MarshallingError.
    pub fn multi(&mut self, ops: &[MultiOp], txn: &Txn<'_>) -> Applied<Vec<MultiResult>> {
        let mut undo = Vec::new();
        let mut triggers = Vec::new();
        let mut results = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match self.multi_op(op, txn, &mut undo, &mut triggers) {
                Ok(r) => results.push(r),
                Err(e) => {
                    self.rollback(undo);
                    let mut out = vec![MultiResult::Error(err::OK); i];
                    out.push(MultiResult::Error(e.0));
                    out.resize(ops.len(), MultiResult::Error(err::RUNTIME_INCONSISTENCY));
                    return Applied {
                        result: out,
                        triggers: Vec::new(),
                    };
                }
            }
        }
        Applied {
            result: results,
            triggers,
        }
    }

    fn multi_op(
        &mut self,
        op: &MultiOp,
        txn: &Txn<'_>,
        undo: &mut Vec<Undo>,
        triggers: &mut Vec<Trigger>,
    ) -> ServerResult<MultiResult> {
        match op {
            MultiOp::Create { op, req } => {
                let mode = mode_from_flags(req.flags).ok();
                if mode.is_some_and(|m| m.ttl) {
                    // 3.8/3.9 build a CreateTTL op without a TTL record and
                    // fail the whole request; reported here as BadArguments.
                    return Err(code(err::BAD_ARGUMENTS));
                }
                let container = mode.is_some_and(|m| m.container);
                let (kind, with_stat) = match (self.compat, container, op) {
                    (_, true, _) => (CreateTxnKind::Container, true),
                    (Compat::V3_8, false, _) => (CreateTxnKind::Plain, false),
                    (Compat::V3_9, false, OpCode::CreateContainer) => {
                        (CreateTxnKind::Container, true)
                    }
                    (Compat::V3_9, false, OpCode::Create2) => (CreateTxnKind::Plain, true),
                    (Compat::V3_9, false, _) => (CreateTxnKind::Plain, false),
                };
                let c = self.do_create(
                    kind,
                    &req.path,
                    &req.data,
                    &req.acl,
                    req.flags,
                    -1,
                    txn,
                    Some(undo),
                    triggers,
                )?;
                Ok(create_result(c, with_stat))
            }
            MultiOp::CreateTtl(req) => {
                let mode = mode_from_flags(req.flags).ok();
                if mode.is_some_and(|m| m.ttl) {
                    let c = self.do_create(
                        CreateTxnKind::Ttl,
                        &req.path,
                        &req.data,
                        &req.acl,
                        req.flags,
                        req.ttl,
                        txn,
                        Some(undo),
                        triggers,
                    )?;
                    return Ok(create_result(c, true));
                }
                // Op.create(.., flags, ttl) without a TTL mode is a plain
                // Create (or container) op; the TTL is dropped.
                let container = mode.is_some_and(|m| m.container);
                let kind = if container {
                    CreateTxnKind::Container
                } else {
                    CreateTxnKind::Plain
                };
                let c = self.do_create(
                    kind,
                    &req.path,
                    &req.data,
                    &req.acl,
                    req.flags,
                    -1,
                    txn,
                    Some(undo),
                    triggers,
                )?;
                Ok(create_result(c, container))
            }
            MultiOp::Delete(r) => {
                self.do_delete(&r.path, r.version, txn, Some(undo), triggers)?;
                Ok(MultiResult::Delete)
            }
            MultiOp::SetData(r) => {
                let stat = self.do_set_data(
                    &r.path,
                    r.data.clone(),
                    r.version,
                    txn,
                    Some(undo),
                    triggers,
                )?;
                Ok(MultiResult::SetData(StatResponse { stat }))
            }
            MultiOp::Check(r) => {
                self.check(&r.path, r.version, txn)?;
                Ok(MultiResult::Check)
            }
            _ => Err(code(err::MARSHALLING_ERROR)),
        }
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            match u {
                Undo::Created {
                    path,
                    parent,
                    parent_stat,
                } => {
                    if let Some(n) = self.nodes.remove(&path) {
                        self.index_remove(&path, n.stat.ephemeral_owner);
                    }
                    let name = &path[path.rfind('/').map_or(0, |i| i + 1)..];
                    if let Some(p) = self.nodes.get_mut(&parent) {
                        p.children.remove(name);
                        p.stat = parent_stat;
                    }
                }
                Undo::Deleted {
                    path,
                    node,
                    parent,
                    parent_stat,
                } => {
                    let name = path[path.rfind('/').map_or(0, |i| i + 1)..].to_string();
                    if let Some(p) = self.nodes.get_mut(&parent) {
                        p.children.insert(name);
                        p.stat = parent_stat;
                    }
                    self.index_add(&path, node.stat.ephemeral_owner);
                    self.nodes.insert(path, node);
                }
                Undo::Data { path, data, stat } => {
                    if let Some(n) = self.nodes.get_mut(&path) {
                        n.data = data;
                        n.stat = stat;
                    }
                }
            }
        }
    }

    /// multiRead (22): getData / getChildren per op, not atomic; a failing
    /// op gives `Error(code)` (NoNode, NoAuth) and the rest go on. Write ops
    /// are not allowed (MarshallingError).
    pub fn multi_read(&self, ops: &[MultiOp], acl: &dyn AclHook) -> Vec<MultiResult> {
        ops.iter()
            .map(|op| {
                let r = match op {
                    MultiOp::GetData(r) => self.node(&r.path).and_then(|n| {
                        acl.check(&r.path, &n.acl, perms::READ)?;
                        Ok(MultiResult::GetData(GetDataResponse {
                            data: n.data.clone(),
                            stat: self.client_stat(n),
                        }))
                    }),
                    MultiOp::GetChildren(r) => self.node(&r.path).and_then(|n| {
                        acl.check(&r.path, &n.acl, perms::READ)?;
                        let mut children: Vec<String> = n.children.iter().cloned().collect();
                        children.sort();
                        Ok(MultiResult::GetChildren(GetChildrenResponse { children }))
                    }),
                    _ => Err(code(err::MARSHALLING_ERROR)),
                };
                r.unwrap_or_else(|e| MultiResult::Error(e.0))
            })
            .collect()
    }
}

fn create_result(c: Created, with_stat: bool) -> MultiResult {
    if with_stat {
        MultiResult::Create2(Create2Response {
            path: c.path,
            stat: c.stat,
        })
    } else {
        MultiResult::Create(CreateResponse { path: c.path })
    }
}

/// `PrepRequestProcessor.validatePath`: BadArguments for an invalid path.
fn validate(path: &str) -> ServerResult<()> {
    zkit_proto::validate_path(path, false).map_err(|_| code(err::BAD_ARGUMENTS))
}

/// `getParentPathAndValidate`: no '/', a NUL or a special path →
/// BadArguments.
fn parent_and_validate(path: &str) -> ServerResult<&str> {
    if path.contains('\0') || matches!(path, "/" | ZOOKEEPER_NODE | QUOTA_NODE | CONFIG_NODE) {
        return Err(code(err::BAD_ARGUMENTS));
    }
    parent_of(path).ok_or(code(err::BAD_ARGUMENTS))
}

/// `checkAndIncVersion`.
fn check_version(current: i32, expected: i32) -> ServerResult<i32> {
    if expected != -1 && expected != current {
        return Err(code(err::BAD_VERSION));
    }
    Ok(current.wrapping_add(1))
}

/// Snapshot image format version written by [`DataTree::encode_image`].
pub(crate) const IMAGE_VERSION: i32 = 1;

/// Appends one znode's entry of the snapshot image (path, data, ACL, the
/// stored Stat), as [`DataTree::encode_image`] writes them; shared with the
/// ZooKeeper importer, which writes its tree in the same format.
pub(crate) fn write_image_node(
    buf: &mut BytesMut,
    path: &str,
    data: Option<&Bytes>,
    acl: &[Acl],
    s: &Persisted,
) {
    use zkit_proto::jute::{write_buffer, write_i32, write_i64, write_string};
    use zkit_proto::Encode;
    write_string(buf, path);
    match data {
        Some(d) => write_buffer(buf, d),
        None => write_i32(buf, -1),
    }
    write_i32(buf, acl.len() as i32);
    for a in acl {
        a.encode(buf);
    }
    for v in [s.czxid, s.mzxid, s.ctime, s.mtime] {
        write_i64(buf, v);
    }
    for v in [s.version, s.cversion, s.aversion] {
        write_i32(buf, v);
    }
    write_i64(buf, s.ephemeral_owner);
    write_i64(buf, s.pzxid);
}

impl DataTree {
    // ---- snapshots --------------------------------------------------------

    /// Appends an image of every znode (path, data, ACL and the stored
    /// Stat) to `buf`, for a snapshot. Children sets and the ephemeral,
    /// container and TTL indexes are derived data and are rebuilt by
    /// [`decode_image`](Self::decode_image).
    pub fn encode_image(&self, buf: &mut BytesMut) {
        use zkit_proto::jute::{write_i32, write_i64};
        write_i32(buf, IMAGE_VERSION);
        write_i64(buf, self.nodes.len() as i64);
        for (path, n) in self.nodes.iter() {
            write_image_node(buf, path, n.data.as_ref(), &n.acl, &n.stat);
        }
    }

    /// Replaces every znode with the image read from the front of `buf`
    /// (written by [`encode_image`](Self::encode_image)); the release
    /// compatibility and extended-types settings are kept.
    ///
    /// # Errors
    /// A truncated or inconsistent image (unknown version, a node without
    /// its parent, a duplicate path); the tree is then left unchanged.
    pub fn decode_image(&mut self, buf: &mut Bytes) -> Result<(), DecodeError> {
        use zkit_proto::jute::{read_buffer, read_i32, read_i64, read_string};
        use zkit_proto::Decode;
        let version = read_i32(buf)?;
        if version != IMAGE_VERSION {
            return Err(DecodeError::Invalid(format!(
                "unknown snapshot image version {version}"
            )));
        }
        let count = read_i64(buf)?;
        if count < 1 || count as u64 > buf.len() as u64 {
            return Err(DecodeError::Invalid(format!("bad node count {count}")));
        }
        let mut nodes: ShardedMap<String, Box<Node>> = ShardedMap::new();
        let mut acls = AclTable::default();
        for _ in 0..count {
            let path = read_string(buf)?;
            // Copied out, so that the snapshot buffer is freed after loading.
            let data = read_buffer(buf)?.map(|d| Bytes::copy_from_slice(&d));
            let n_acl = read_i32(buf)?;
            if n_acl < 0 || n_acl as usize > buf.len() {
                return Err(DecodeError::Invalid(format!("bad ACL count {n_acl}")));
            }
            let mut acl = Vec::with_capacity(n_acl as usize);
            for _ in 0..n_acl {
                acl.push(Acl::decode(buf)?);
            }
            let stat = Persisted {
                czxid: read_i64(buf)?,
                mzxid: read_i64(buf)?,
                ctime: read_i64(buf)?,
                mtime: read_i64(buf)?,
                version: read_i32(buf)?,
                cversion: read_i32(buf)?,
                aversion: read_i32(buf)?,
                ephemeral_owner: read_i64(buf)?,
                pzxid: read_i64(buf)?,
            };
            let node = Box::new(Node {
                data,
                acl: acls.intern(&acl),
                stat,
                children: FastSet::default(),
            });
            if nodes.insert(path.clone(), node).is_some() {
                return Err(DecodeError::Invalid(format!("duplicate znode {path}")));
            }
        }
        if !nodes.contains_key("/") {
            return Err(DecodeError::Invalid("no root znode".into()));
        }
        let paths: Vec<String> = nodes.keys().filter(|p| *p != "/").cloned().collect();
        for path in &paths {
            let (Some(parent), Some(i)) = (parent_of(path), path.rfind('/')) else {
                return Err(DecodeError::Invalid(format!("bad znode path {path:?}")));
            };
            let Some(p) = nodes.get_mut(parent) else {
                return Err(DecodeError::Invalid(format!("{path} has no parent")));
            };
            p.children.insert(path[i + 1..].to_string());
        }
        self.nodes = nodes;
        self.acls = acls;
        self.ephemerals.clear();
        self.containers.clear();
        self.ttls.clear();
        let owners: Vec<(String, i64)> = self
            .nodes
            .iter()
            .map(|(p, n)| (p.clone(), n.stat.ephemeral_owner))
            .collect();
        for (path, owner) in owners {
            self.index_add(&path, owner);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkit_proto::{CheckVersionRequest, DeleteRequest, PathWatchRequest, SetDataRequest};

    const S1: i64 = 0x0100_0000_0000_0001;
    const S2: i64 = 0x0100_0000_0000_0002;

    fn open() -> Vec<Acl> {
        world(perms::ALL)
    }

    fn req(path: &str, data: &[u8], flags: i32) -> CreateRequest {
        CreateRequest {
            path: path.into(),
            data: Some(Bytes::copy_from_slice(data)),
            acl: open(),
            flags,
        }
    }

    fn ttl_req(path: &str, flags: i32, ttl: i64) -> CreateTtlRequest {
        CreateTtlRequest {
            path: path.into(),
            data: Some(Bytes::new()),
            acl: open(),
            flags,
            ttl,
        }
    }

    fn t(zxid: i64) -> Txn<'static> {
        Txn::new(zxid, 1000 + zxid, S1)
    }

    fn mk(tree: &mut DataTree, path: &str, flags: i32, zxid: i64) -> Created {
        tree.create(OpCode::Create2, &req(path, b"", flags), &t(zxid))
            .unwrap()
            .result
    }

    fn e(c: i32) -> ErrorCode {
        ErrorCode(c)
    }

    #[test]
    fn a_big_tree_grows_a_shard_at_a_time() {
        // No single create moves every znode into a bigger table under the
        // server's lock (shards.rs): past SPLIT_AT the nodes are spread.
        let mut tree = DataTree::new();
        assert_eq!(tree.nodes.shard_count(), 1);
        mk(&mut tree, "/big", 0, 1);
        for i in 0..crate::shards::SPLIT_AT as i64 {
            mk(&mut tree, &format!("/big/n{i}"), 0, i + 2);
        }
        assert_eq!(tree.nodes.shard_count(), crate::shards::SHARDS);
        assert_eq!(tree.node_count(), crate::shards::SPLIT_AT + 5);
        assert!(tree.contains("/big/n0") && tree.contains("/big/n8191"));
        let mut image = BytesMut::new();
        tree.encode_image(&mut image);
        let mut back = DataTree::new();
        back.decode_image(&mut image.freeze()).unwrap();
        assert_eq!(back.node_count(), tree.node_count());
        assert_eq!(back.nodes.shard_count(), crate::shards::SHARDS);
    }

    #[test]
    fn quota_stats_track_the_subtree_like_zookeeper() {
        // zkCli `setquota -n 5 /q` creates .../zookeeper_limits, then
        // .../zookeeper_stats ("count=0,bytes=0"): ZooKeeper recounts the
        // subtree then and on every later create/delete/setData below it.
        let mut tree = DataTree::new();
        let mut z = 0;
        let mut mk = |tree: &mut DataTree, path: &str, data: &[u8]| {
            z += 1;
            tree.create(OpCode::Create, &req(path, data, 0), &t(z))
                .unwrap();
        };
        mk(&mut tree, "/q", b"ab");
        mk(&mut tree, "/q/c", b"cde");
        mk(&mut tree, "/zookeeper/quota/q", b"");
        mk(
            &mut tree,
            "/zookeeper/quota/q/zookeeper_limits",
            b"count=5,bytes=-1",
        );
        mk(
            &mut tree,
            "/zookeeper/quota/q/zookeeper_stats",
            b"count=0,bytes=0",
        );
        let stats = |tree: &DataTree| {
            let (d, s) = tree.get_data("/zookeeper/quota/q/zookeeper_stats").unwrap();
            (String::from_utf8(d.unwrap().to_vec()).unwrap(), s.version)
        };
        assert_eq!(stats(&tree), ("count=2,bytes=5".to_string(), 0));
        mk(&mut tree, "/q/d", b"xyz");
        assert_eq!(stats(&tree).0, "count=3,bytes=8");
        tree.set_data("/q/d", Some(Bytes::from_static(b"x")), -1, &t(50))
            .unwrap();
        assert_eq!(stats(&tree).0, "count=3,bytes=6");
        tree.delete("/q/c", -1, &t(51)).unwrap();
        assert_eq!(stats(&tree), ("count=2,bytes=3".to_string(), 0));
        // Outside the quota root nothing changes.
        mk(&mut tree, "/other", b"zz");
        assert_eq!(stats(&tree).0, "count=2,bytes=3");
        // The deepest quota root counts: /q/d gets a quota of its own, and
        // a write below it updates /q/d's stats, not /q's.
        mk(&mut tree, "/zookeeper/quota/q/d", b"");
        mk(
            &mut tree,
            "/zookeeper/quota/q/d/zookeeper_limits",
            b"count=9,bytes=-1",
        );
        mk(
            &mut tree,
            "/zookeeper/quota/q/d/zookeeper_stats",
            b"count=0,bytes=0",
        );
        let inner = |tree: &DataTree| {
            let (d, _) = tree
                .get_data("/zookeeper/quota/q/d/zookeeper_stats")
                .unwrap();
            String::from_utf8(d.unwrap().to_vec()).unwrap()
        };
        assert_eq!(inner(&tree), "count=1,bytes=1");
        mk(&mut tree, "/q/d/e", b"1234");
        assert_eq!(inner(&tree), "count=2,bytes=5");
        assert_eq!(stats(&tree).0, "count=2,bytes=3");
        // A quota node without limits is a way through, not a root.
        mk(&mut tree, "/q/e", b"");
        mk(&mut tree, "/q/e/f", b"55");
        assert_eq!(stats(&tree).0, "count=4,bytes=5");
        assert_eq!(tree.quota_prefix("/q/d/e/x").as_deref(), Some("/q/d"));
        assert_eq!(tree.quota_prefix("/qq/x"), None);
        assert_eq!(tree.quota_prefix("/"), None);
    }

    #[test]
    fn initial_tree_matches_a_fresh_3_8_server() {
        let tree = DataTree::new();
        assert_eq!(tree.node_count(), 4);
        let (kids, root) = tree.get_children("/").unwrap();
        assert_eq!(kids, vec!["zookeeper"]);
        assert_eq!(root.num_children, 1);
        // stored cversion 0 with one child: visible -1 (DataNode.copyStat).
        assert_eq!(root.cversion, -1);
        let (kids, _) = tree.get_children("/zookeeper").unwrap();
        assert_eq!(kids, vec!["config", "quota"]);
        let (data, stat) = tree.get_data(CONFIG_NODE).unwrap();
        assert_eq!(data, Some(Bytes::new()));
        assert_eq!(
            stat,
            Stat {
                aversion: -1,
                ..Stat::default()
            }
        );
        let (acl, _) = tree.get_acl(CONFIG_NODE).unwrap();
        assert_eq!(acl, world(perms::READ));
        let (acl, stat) = tree.get_acl(QUOTA_NODE).unwrap();
        assert_eq!(acl, world(perms::ALL));
        assert_eq!(stat, Stat::default());
        assert_eq!(tree.all_children_number("/").unwrap(), 3);
        assert_eq!(tree.all_children_number("/zookeeper").unwrap(), 2);
    }

    #[test]
    fn small_values_do_not_pin_the_buffer_they_arrived_in() {
        // A request's data is a slice of its connection's read buffer.
        let read_buffer = Bytes::from(vec![7u8; 8192]);
        let mut tree = DataTree::new();
        let mut create = req("/small", b"", 0);
        create.data = Some(read_buffer.slice(100..200));
        tree.create(OpCode::Create, &create, &t(1)).unwrap();
        let set = read_buffer.slice(300..364);
        tree.set_data("/small", Some(set), -1, &t(2)).unwrap();
        drop(create);
        // The tree kept copies: the buffer is the caller's alone again.
        assert!(read_buffer.is_unique());
        assert_eq!(tree.get_data("/small").unwrap().0.unwrap(), vec![7u8; 64]);
        // A large value came in a buffer of its own, and is kept as it is.
        let large = Bytes::from(vec![1u8; COPY_DATA_UP_TO + 1]);
        tree.set_data("/small", Some(large.clone()), -1, &t(3))
            .unwrap();
        assert!(!large.is_unique());
    }

    #[test]
    fn create_sets_a_fresh_stat_and_keeps_null_apart_from_empty() {
        let mut tree = DataTree::new();
        let a = tree
            .create(OpCode::Create, &req("/a", b"hello", 0), &t(5))
            .unwrap();
        assert_eq!(a.result.path, "/a");
        assert_eq!(
            a.result.stat,
            Stat {
                czxid: 5,
                mzxid: 5,
                ctime: 1005,
                mtime: 1005,
                version: 0,
                cversion: 0,
                aversion: 0,
                ephemeral_owner: 0,
                data_length: 5,
                num_children: 0,
                pzxid: 5,
            }
        );
        assert_eq!(
            a.triggers,
            vec![
                Trigger::new("/a", EventType::NodeCreated),
                Trigger::new("/", EventType::NodeChildrenChanged)
            ]
        );
        assert_eq!(tree.stat("/a"), Some(a.result.stat));
        let mut null = req("/null", b"", 0);
        null.data = None;
        tree.create(OpCode::Create, &null, &t(6)).unwrap();
        assert_eq!(tree.get_data("/null").unwrap().0, None);
        assert_eq!(tree.get_data("/null").unwrap().1.data_length, 0);
        mk(&mut tree, "/empty", 0, 7);
        assert_eq!(tree.get_data("/empty").unwrap().0, Some(Bytes::new()));
    }

    #[test]
    fn parent_stat_bookkeeping_step_by_step() {
        let mut tree = DataTree::new();
        mk(&mut tree, "/p", 0, 10);
        let p = tree.stat("/p").unwrap();
        assert_eq!((p.cversion, p.num_children, p.pzxid), (0, 0, 10));

        mk(&mut tree, "/p/a", 0, 11);
        mk(&mut tree, "/p/b", 0, 12);
        let p = tree.stat("/p").unwrap();
        // stored 2, 2 children: 2*2-2 = 2.
        assert_eq!((p.cversion, p.num_children, p.pzxid), (2, 2, 12));
        // Child changes touch neither version nor mzxid.
        assert_eq!((p.version, p.mzxid), (0, 10));

        let d = tree.delete("/p/a", -1, &t(13)).unwrap();
        assert_eq!(
            d.triggers,
            vec![
                Trigger::new("/p/a", EventType::NodeDeleted),
                Trigger::new("/p", EventType::NodeChildrenChanged)
            ]
        );
        let p = tree.stat("/p").unwrap();
        // stored still 2, 1 child: 2*2-1 = 3 (creates + deletes).
        assert_eq!((p.cversion, p.num_children, p.pzxid), (3, 1, 13));

        tree.delete("/p/b", -1, &t(14)).unwrap();
        let p = tree.stat("/p").unwrap();
        assert_eq!((p.cversion, p.num_children, p.pzxid), (4, 0, 14));

        // One child created and deleted: visible cversion 2, pzxid = delete.
        mk(&mut tree, "/q", 0, 20);
        mk(&mut tree, "/q/x", 0, 21);
        tree.delete("/q/x", -1, &t(22)).unwrap();
        let q = tree.stat("/q").unwrap();
        assert_eq!((q.cversion, q.num_children, q.pzxid), (2, 0, 22));
        // The root after a first create: stored 1, 2 children... etc.
        let root = tree.stat("/").unwrap();
        assert_eq!(root.num_children, 3);
        assert_eq!(root.cversion, 2 * 2 - 3);
    }

    #[test]
    fn sequence_numbers_count_creates_only() {
        let mut tree = DataTree::new();
        mk(&mut tree, "/s", 0, 1);
        let a = mk(&mut tree, "/s/job-", 2, 2);
        let b = mk(&mut tree, "/s/job-", 3, 3);
        let c = mk(&mut tree, "/s/job-", 2, 4);
        assert_eq!(
            [a.path, b.path, c.path],
            [
                "/s/job-0000000000",
                "/s/job-0000000001",
                "/s/job-0000000002"
            ]
        );
        mk(&mut tree, "/s/plain", 0, 5);
        tree.delete("/s/job-0000000000", -1, &t(6)).unwrap();
        let d = mk(&mut tree, "/s/job-", 2, 7);
        assert_eq!(d.path, "/s/job-0000000004");
        // Trailing '/' on a sequential create: the name is the number.
        mk(&mut tree, "/s/dir", 0, 8);
        assert_eq!(mk(&mut tree, "/s/dir/", 2, 9).path, "/s/dir/0000000000");
        // A trailing '/' on a plain create is a bad path (after the parent
        // lookup, which succeeds here).
        let r = tree.create(OpCode::Create, &req("/s/dir/", b"", 0), &t(10));
        assert_eq!(r.unwrap_err(), e(err::BAD_ARGUMENTS));
        // "/" sequential makes a top-level node.
        let r = mk(&mut tree, "/", 2, 11);
        assert!(r.path.starts_with("/00000000"), "{}", r.path);
    }

    #[test]
    fn sequence_suffix_is_signed_and_sticks_at_overflow() {
        let mut tree = DataTree::new();
        mk(&mut tree, "/w", 0, 1);
        tree.nodes.get_mut("/w").unwrap().stat.cversion = i32::MAX;
        let c = mk(&mut tree, "/w/n-", 2, 2);
        assert_eq!(c.path, format!("/w/n-{}", i32::MAX));
        // MAX + 1 wraps to MIN, which createNode does not store; pzxid stays.
        let w = &tree.nodes["/w"];
        assert_eq!((w.stat.cversion, w.stat.pzxid), (i32::MAX, 1));
        let r = tree.create(OpCode::Create, &req("/w/n-", b"", 2), &t(3));
        assert_eq!(r.unwrap_err(), e(err::NODE_EXISTS));
        tree.nodes.get_mut("/w").unwrap().stat.cversion = -5;
        assert_eq!(mk(&mut tree, "/w/m-", 2, 4).path, "/w/m--000000005");
    }

    #[test]
    fn create_errors_in_zookeepers_order() {
        let mut tree = DataTree::new();
        mk(&mut tree, "/x", 0, 1);
        let mut eph = req("/eph", b"", 1);
        eph.flags = 1;
        tree.create(OpCode::Create, &eph, &t(2)).unwrap();
        let c = |tree: &mut DataTree, r: CreateRequest| {
            tree.create(OpCode::Create, &r, &t(9)).unwrap_err()
        };
        assert_eq!(c(&mut tree, req("/x", b"", 0)), e(err::NODE_EXISTS));
        assert_eq!(c(&mut tree, req("/", b"", 0)), e(err::NODE_EXISTS));
        assert_eq!(c(&mut tree, req("/no/child", b"", 0)), e(err::NO_NODE));
        // Parent existence before path syntax.
        assert_eq!(c(&mut tree, req("/bad/", b"", 0)), e(err::NO_NODE));
        assert_eq!(c(&mut tree, req("/x/", b"", 0)), e(err::BAD_ARGUMENTS));
        assert_eq!(c(&mut tree, req("/x/.", b"", 0)), e(err::BAD_ARGUMENTS));
        assert_eq!(c(&mut tree, req("relative", b"", 0)), e(err::BAD_ARGUMENTS));
        assert_eq!(c(&mut tree, req("", b"", 0)), e(err::BAD_ARGUMENTS));
        assert_eq!(c(&mut tree, req("/no/a\0", b"", 0)), e(err::BAD_ARGUMENTS));
        assert_eq!(c(&mut tree, req("/x", b"", 9)), e(err::BAD_ARGUMENTS));
        // TTL flags without a TTL (op 1/15).
        assert_eq!(c(&mut tree, req("/t", b"", 5)), e(err::BAD_ARGUMENTS));
        assert_eq!(c(&mut tree, req("/t", b"", 6)), e(err::BAD_ARGUMENTS));
        // Empty ACL: InvalidAcl, even before the parent lookup.
        let mut r = req("/no/child", b"", 0);
        r.acl.clear();
        assert_eq!(c(&mut tree, r), e(err::INVALID_ACL));
        // Ephemeral parent, every kind of child; NodeExists wins over it.
        for flags in 0..4 {
            assert_eq!(
                c(&mut tree, req("/eph/c", b"", flags)),
                e(err::NO_CHILDREN_FOR_EPHEMERALS)
            );
        }
        // Nothing was changed by the failures.
        let x = tree.stat("/").unwrap();
        assert_eq!(x.num_children, 3);
    }

    #[test]
    fn ephemerals_belong_to_their_session() {
        let mut tree = DataTree::new();
        mk(&mut tree, "/b", 0, 1);
        mk(&mut tree, "/b/sub", 0, 2);
        let c = tree
            .create(OpCode::Create, &req("/b/mine", b"", 1), &t(3))
            .unwrap()
            .result;
        assert_eq!(c.stat.ephemeral_owner, S1);
        let seq = mk(&mut tree, "/b/sub/mine-", 3, 4).path;
        tree.create(
            OpCode::Create,
            &req("/b/theirs", b"", 1),
            &Txn::new(5, 5, S2),
        )
        .unwrap();
        mk(&mut tree, "/b/persistent", 0, 6);
        assert_eq!(
            tree.get_ephemerals(S1, "/b"),
            vec!["/b/mine".to_string(), seq.clone()]
        );
        assert_eq!(tree.get_ephemerals(S1, "/"), tree.get_ephemerals(S1, ""));
        assert_eq!(tree.get_ephemerals(S1, "/b/sub"), vec![seq]);
        // Plain string prefix.
        assert_eq!(tree.get_ephemerals(S1, "/b/mi").len(), 1);
        assert_eq!(tree.get_ephemerals(S2, "/"), vec!["/b/theirs".to_string()]);
        assert!(tree.get_ephemerals(77, "/").is_empty());
        assert_eq!(tree.sessions_with_ephemerals(), vec![S1, S2]);

        let trig = tree.kill_session(S1, 10);
        assert_eq!(trig.len(), 4);
        assert!(trig.contains(&Trigger::new("/b/mine", EventType::NodeDeleted)));
        assert!(!tree.contains("/b/mine"));
        assert_eq!(tree.stat("/b").unwrap().pzxid, 10);
        assert_eq!(tree.stat("/b/sub").unwrap().pzxid, 10);
        assert!(tree.get_ephemerals(S1, "/").is_empty());
        assert!(tree.contains("/b/theirs"));
        assert!(tree.kill_session(S1, 11).is_empty());
    }

    #[test]
    fn container_and_ttl_nodes() {
        let mut tree = DataTree::new();
        mk(&mut tree, "/c", 0, 1);
        let con = tree
            .create(
                OpCode::CreateContainer,
                &req("/c/container", b"c", 4),
                &t(2),
            )
            .unwrap()
            .result;
        assert_eq!(con.stat.ephemeral_owner, 0);
        assert_eq!(tree.nodes["/c/container"].stat.ephemeral_owner, i64::MIN);
        mk(&mut tree, "/c/container/child", 0, 3);
        let ttl = tree
            .create_ttl(&ttl_req("/c/ttl", 5, 60_000), &t(4))
            .unwrap();
        assert_eq!(ttl.result.stat.ephemeral_owner, 0);
        assert_eq!(
            tree.nodes["/c/ttl"].stat.ephemeral_owner,
            0xFF00_0000_0000_EA60_u64 as i64
        );
        let seq = tree
            .create_ttl(&ttl_req("/c/ttlseq-", 6, 1), &t(5))
            .unwrap();
        // container, ttl, this: the parent's 1st..3rd creates.
        assert_eq!(seq.result.path, "/c/ttlseq-0000000002");
        tree.create_ttl(&ttl_req("/c/max", 5, MAX_TTL_MS), &t(6))
            .unwrap();
        for bad in [0, -1, MAX_TTL_MS + 1] {
            let r = tree.create_ttl(&ttl_req("/c/bad", 5, bad), &t(7));
            assert_eq!(r.unwrap_err(), e(err::BAD_ARGUMENTS), "ttl {bad}");
        }
        // TTL op with non-TTL flags.
        let r = tree.create_ttl(&ttl_req("/c/bad", 0, 100), &t(7));
        assert_eq!(r.unwrap_err(), e(err::BAD_ARGUMENTS));
        // Op 1 / 15 with the container flag: a plain persistent node.
        let plain = tree
            .create(OpCode::Create, &req("/c/plain", b"", 4), &t(8))
            .unwrap();
        assert_eq!(tree.nodes["/c/plain"].stat.ephemeral_owner, 0);
        assert_eq!(plain.result.stat.ephemeral_owner, 0);
        // A container / TTL parent may have children.
        mk(&mut tree, "/c/ttl/kid", 0, 9);
        // Extended types disabled.
        tree.set_extended_types(false);
        let r = tree.create_ttl(&ttl_req("/c/x", 5, 10), &t(10));
        assert_eq!(r.unwrap_err(), e(err::UNIMPLEMENTED));
    }

    #[test]
    fn reaper_candidates_follow_container_manager() {
        let mut tree = DataTree::new();
        tree.create(
            OpCode::CreateContainer,
            &req("/never", b"", 4),
            &Txn::new(1, 0, S1),
        )
        .unwrap();
        tree.create(
            OpCode::CreateContainer,
            &req("/used", b"", 4),
            &Txn::new(2, 0, S1),
        )
        .unwrap();
        mk(&mut tree, "/used/k", 0, 3);
        tree.create_ttl(&ttl_req("/ttl", 5, 100), &Txn::new(4, 1000, S1))
            .unwrap();
        // Used container with a child, never-used one, fresh TTL node.
        assert!(tree.reapable(1100).is_empty());
        assert_eq!(tree.reapable(1101), vec!["/ttl".to_string()]);
        tree.delete("/used/k", -1, &t(5)).unwrap();
        assert_eq!(tree.reapable(1000), vec!["/used".to_string()]);
        // setData refreshes a TTL node's mtime.
        tree.set_data("/ttl", None, -1, &Txn::new(6, 2000, S1))
            .unwrap();
        assert_eq!(tree.reapable(2100), vec!["/used".to_string()]);
        // A TTL node with children is kept.
        mk(&mut tree, "/ttl/k", 0, 7);
        assert_eq!(tree.reapable(1_000_000), vec!["/used".to_string()]);
        tree.set_max_never_used_ms(500);
        assert_eq!(
            tree.reapable(1_000_000),
            vec!["/never".to_string(), "/used".to_string()]
        );
        // deleteContainer (op 20).
        let d = tree.delete_container("/used", 8).unwrap();
        assert_eq!(d.triggers[0], Trigger::new("/used", EventType::NodeDeleted));
        assert_eq!(tree.delete_container("/ttl", 9), Err(e(err::NOT_EMPTY)));
        tree.create(OpCode::Create, &req("/e", b"", 1), &t(10))
            .unwrap();
        assert_eq!(tree.delete_container("/e", 11), Err(e(err::BAD_VERSION)));
        assert_eq!(tree.delete_container("/zzz", 11), Err(e(err::NO_NODE)));
        assert_eq!(tree.delete_container("/", 11), Err(e(err::BAD_ARGUMENTS)));
        tree.delete_container("/never", 12).unwrap();
        assert!(tree.reapable(1_000_000).is_empty());
    }

    #[test]
    fn delete_errors() {
        let mut tree = DataTree::new();
        mk(&mut tree, "/d", 0, 1);
        mk(&mut tree, "/d/k", 0, 2);
        tree.set_data("/d/k", None, -1, &t(3)).unwrap();
        assert_eq!(
            tree.delete("/d/k", 0, &t(4)).unwrap_err(),
            e(err::BAD_VERSION)
        );
        assert!(tree.contains("/d/k"));
        // BadVersion is checked before NotEmpty.
        assert_eq!(
            tree.delete("/d", 5, &t(4)).unwrap_err(),
            e(err::BAD_VERSION)
        );
        assert_eq!(tree.delete("/d", -1, &t(4)).unwrap_err(), e(err::NOT_EMPTY));
        assert_eq!(tree.delete("/d", 0, &t(4)).unwrap_err(), e(err::NOT_EMPTY));
        tree.delete("/d/k", 1, &t(4)).unwrap();
        assert_eq!(tree.delete("/d/k", -1, &t(5)).unwrap_err(), e(err::NO_NODE));
        assert_eq!(
            tree.delete("/no/k", -1, &t(5)).unwrap_err(),
            e(err::NO_NODE)
        );
        for special in ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
            assert_eq!(
                tree.delete(special, -1, &t(5)).unwrap_err(),
                e(err::BAD_ARGUMENTS),
                "{special}"
            );
        }
        assert_eq!(
            tree.delete("", -1, &t(5)).unwrap_err(),
            e(err::BAD_ARGUMENTS)
        );
        assert_eq!(
            tree.delete("x", -1, &t(5)).unwrap_err(),
            e(err::BAD_ARGUMENTS)
        );
    }

    #[test]
    fn set_data_bumps_version_mzxid_mtime_only() {
        let mut tree = DataTree::new();
        let c = mk(&mut tree, "/n", 0, 1);
        let s = tree
            .set_data("/n", Some(Bytes::from_static(b"version-1")), 0, &t(2))
            .unwrap();
        assert_eq!(
            s.triggers,
            vec![Trigger::new("/n", EventType::NodeDataChanged)]
        );
        let s = s.result;
        assert_eq!(
            (s.version, s.data_length, s.mzxid, s.mtime),
            (1, 9, 2, 1002)
        );
        assert_eq!(
            (s.czxid, s.ctime, s.pzxid, s.cversion, s.aversion),
            (1, 1001, 1, 0, 0)
        );
        assert_eq!(s, tree.stat("/n").unwrap());
        assert_ne!(s, c.stat);
        for bad in [0, 2, -2] {
            let r = tree.set_data("/n", None, bad, &t(3));
            assert_eq!(r.unwrap_err(), e(err::BAD_VERSION));
        }
        assert_eq!(tree.get_data("/n").unwrap().1.version, 1);
        let r = tree.set_data("/none", None, -1, &t(3));
        assert_eq!(r.unwrap_err(), e(err::NO_NODE));
        let r = tree.set_data("/n/", None, -1, &t(3));
        assert_eq!(r.unwrap_err(), e(err::BAD_ARGUMENTS));
        // Version wraps like a Java int.
        tree.nodes.get_mut("/n").unwrap().stat.version = i32::MAX;
        let s = tree.set_data("/n", None, i32::MAX, &t(4)).unwrap().result;
        assert_eq!(s.version, i32::MIN);
    }

    #[test]
    fn acl_get_set_and_aversion() {
        let mut tree = DataTree::new();
        mk(&mut tree, "/a", 0, 1);
        let read = world(perms::READ);
        let s = tree.set_acl("/a", &read, 0, &t(2)).unwrap();
        assert_eq!((s.aversion, s.version, s.mzxid), (1, 0, 1));
        assert_eq!(tree.get_acl("/a").unwrap(), (read.clone(), s));
        assert_eq!(
            tree.set_acl("/a", &read, 0, &t(3)),
            Err(e(err::BAD_VERSION))
        );
        assert_eq!(tree.set_acl("/a", &[], -1, &t(3)), Err(e(err::INVALID_ACL)));
        assert_eq!(tree.set_acl("/b", &read, -1, &t(3)), Err(e(err::NO_NODE)));
        // Duplicates removed by the default fixup.
        let dup = [read[0].clone(), read[0].clone()];
        tree.set_acl("/a", &dup, -1, &t(4)).unwrap();
        assert_eq!(tree.get_acl("/a").unwrap().0, read);
        assert_eq!(tree.get_acl("/b"), Err(e(err::NO_NODE)));
    }

    #[test]
    fn equal_acls_share_one_list_and_unused_lists_are_swept() {
        let mut tree = DataTree::new();
        mk(&mut tree, "/a", 0, 1);
        mk(&mut tree, "/b", 0, 2);
        assert!(Arc::ptr_eq(&tree.nodes["/a"].acl, &tree.nodes["/b"].acl));
        // Many distinct lists, each used by one znode that then goes.
        for i in 0..1000i64 {
            let acl = vec![Acl {
                perms: perms::ALL,
                id: Id {
                    scheme: "digest".into(),
                    id: format!("user{i}:hash"),
                },
            }];
            tree.set_acl("/a", &acl, -1, &t(3 + i)).unwrap();
            assert_eq!(tree.get_acl("/a").unwrap().0, acl);
        }
        // Only lists still in use survive a sweep: the table stays small.
        assert!(tree.acls.lists.len() <= 130, "{}", tree.acls.lists.len());
        // A snapshot round trip shares lists again.
        let mut image = BytesMut::new();
        tree.encode_image(&mut image);
        let mut back = DataTree::new();
        back.decode_image(&mut image.freeze()).unwrap();
        assert!(Arc::ptr_eq(&back.nodes["/b"].acl, &back.nodes["/"].acl));
        assert_eq!(back.get_acl("/a"), tree.get_acl("/a"));
    }

    struct Deny(i32);
    impl AclHook for Deny {
        fn check(&self, _: &str, _: &[Acl], perm: i32) -> ServerResult<()> {
            if perm == self.0 {
                Err(ErrorCode(err::NO_AUTH))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn acl_hooks_are_called_where_zookeeper_checks() {
        let mut tree = DataTree::new();
        mk(&mut tree, "/a", 0, 1);
        let deny_create = Deny(perms::CREATE);
        let txn = t(2).with_acl(&deny_create);
        // NoNode for the parent comes first, then NoAuth, then NodeExists.
        let r = tree.create(OpCode::Create, &req("/none/x", b"", 0), &txn);
        assert_eq!(r.unwrap_err(), e(err::NO_NODE));
        let r = tree.create(OpCode::Create, &req("/a", b"", 0), &txn);
        assert_eq!(r.unwrap_err(), e(err::NO_AUTH));
        let deny_delete = Deny(perms::DELETE);
        let txn = t(2).with_acl(&deny_delete);
        assert_eq!(tree.delete("/a", 9, &txn).unwrap_err(), e(err::NO_AUTH));
        let deny_write = Deny(perms::WRITE);
        let txn = t(2).with_acl(&deny_write);
        assert_eq!(
            tree.set_data("/a", None, 9, &txn).unwrap_err(),
            e(err::NO_AUTH)
        );
        assert_eq!(
            tree.set_data("/b", None, 9, &txn).unwrap_err(),
            e(err::NO_NODE)
        );
        let deny_admin = Deny(perms::ADMIN);
        let txn = t(2).with_acl(&deny_admin);
        assert_eq!(tree.set_acl("/a", &open(), 9, &txn), Err(e(err::NO_AUTH)));
        let deny_read = Deny(perms::READ);
        let txn = t(2).with_acl(&deny_read);
        assert_eq!(tree.check("/a", 9, &txn), Err(e(err::NO_AUTH)));
        let r = tree.multi_read(
            &[MultiOp::GetData(PathWatchRequest {
                path: "/a".into(),
                watch: false,
            })],
            &deny_read,
        );
        assert_eq!(r, vec![MultiResult::Error(err::NO_AUTH)]);
    }

    #[test]
    fn check_and_all_children_number() {
        let mut tree = DataTree::new();
        mk(&mut tree, "/b", 0, 1);
        for p in ["a", "a/b", "a/b/c", "a/d", "e"] {
            mk(&mut tree, &format!("/b/{p}"), 0, 2);
        }
        assert_eq!(tree.all_children_number("/b").unwrap(), 5);
        assert_eq!(tree.all_children_number("/b/a").unwrap(), 3);
        assert_eq!(tree.all_children_number("/b/a/b/c").unwrap(), 0);
        assert_eq!(tree.all_children_number("/b/x"), Err(e(err::NO_NODE)));
        assert_eq!(tree.all_children_number("/").unwrap(), 9);
        assert!(tree.check("/b", 0, &t(3)).is_ok());
        assert!(tree.check("/b", -1, &t(3)).is_ok());
        assert_eq!(tree.check("/b", 1, &t(3)), Err(e(err::BAD_VERSION)));
        assert_eq!(tree.check("/x", -1, &t(3)), Err(e(err::NO_NODE)));
        assert_eq!(tree.check("x", -1, &t(3)), Err(e(err::BAD_ARGUMENTS)));
        assert_eq!(tree.get_children("/x"), Err(e(err::NO_NODE)));
        assert_eq!(tree.get_data("/x"), Err(e(err::NO_NODE)));
        assert_eq!(tree.stat("/x"), None);
    }

    fn mcreate(op: OpCode, path: &str, flags: i32) -> MultiOp {
        MultiOp::Create {
            op,
            req: req(path, b"", flags),
        }
    }
    fn mdelete(path: &str, version: i32) -> MultiOp {
        MultiOp::Delete(DeleteRequest {
            path: path.into(),
            version,
        })
    }
    fn mset(path: &str, data: &[u8], version: i32) -> MultiOp {
        MultiOp::SetData(SetDataRequest {
            path: path.into(),
            data: Some(Bytes::copy_from_slice(data)),
            version,
        })
    }
    fn mcheck(path: &str, version: i32) -> MultiOp {
        MultiOp::Check(CheckVersionRequest {
            path: path.into(),
            version,
        })
    }

    #[test]
    fn multi_applies_all_ops_at_one_zxid() {
        let mut tree = DataTree::new();
        mk(&mut tree, "/m", 0, 1);
        mk(&mut tree, "/m/gone", 0, 2);
        let r = tree.multi(
            &[
                mcheck("/m", 0),
                mcreate(OpCode::Create2, "/m/a", 0),
                mset("/m/a", b"AA", 0),
                mcreate(OpCode::Create, "/m/seq-", 2),
                mdelete("/m/gone", 0),
                mcreate(OpCode::Create, "/m/eph", 1),
            ],
            &t(3),
        );
        let stat = tree.stat("/m/a").unwrap();
        assert_eq!((stat.czxid, stat.mzxid, stat.version), (3, 3, 1));
        assert_eq!(
            r.result,
            vec![
                MultiResult::Check,
                // 3.8: create2 in a multi answers with the path only.
                MultiResult::Create(CreateResponse {
                    path: "/m/a".into()
                }),
                MultiResult::SetData(StatResponse { stat }),
                MultiResult::Create(CreateResponse {
                    path: "/m/seq-0000000002".into()
                }),
                MultiResult::Delete,
                MultiResult::Create(CreateResponse {
                    path: "/m/eph".into()
                }),
            ]
        );
        assert_eq!(
            r.triggers,
            vec![
                Trigger::new("/m/a", EventType::NodeCreated),
                Trigger::new("/m", EventType::NodeChildrenChanged),
                Trigger::new("/m/a", EventType::NodeDataChanged),
                Trigger::new("/m/seq-0000000002", EventType::NodeCreated),
                Trigger::new("/m", EventType::NodeChildrenChanged),
                Trigger::new("/m/gone", EventType::NodeDeleted),
                Trigger::new("/m", EventType::NodeChildrenChanged),
                Trigger::new("/m/eph", EventType::NodeCreated),
                Trigger::new("/m", EventType::NodeChildrenChanged),
            ]
        );
        assert_eq!(tree.get_ephemerals(S1, "/m"), vec!["/m/eph".to_string()]);
        assert_eq!(tree.stat("/m/eph").unwrap().czxid, 3);
        assert!(!tree.contains("/m/gone"));
        // Empty multi.
        assert_eq!(tree.multi(&[], &t(4)).result, vec![]);
    }

    #[test]
    fn multi_container_and_ttl_results_carry_a_stat_on_3_8() {
        let mut tree = DataTree::new();
        let r = tree.multi(
            &[
                mcreate(OpCode::CreateContainer, "/container", 4),
                MultiOp::CreateTtl(ttl_req("/ttl", 5, 30_000)),
                // 3.8 derives the op from the flags: op 19 with flags 0 is a
                // plain create, op 1 with flags 4 a container.
                mcreate(OpCode::CreateContainer, "/plain", 0),
                mcreate(OpCode::Create, "/c2", 4),
            ],
            &t(7),
        );
        let s = |p: &str| tree.stat(p).unwrap();
        assert_eq!(
            r.result,
            vec![
                MultiResult::Create2(Create2Response {
                    path: "/container".into(),
                    stat: s("/container"),
                }),
                MultiResult::Create2(Create2Response {
                    path: "/ttl".into(),
                    stat: s("/ttl"),
                }),
                MultiResult::Create(CreateResponse {
                    path: "/plain".into()
                }),
                MultiResult::Create2(Create2Response {
                    path: "/c2".into(),
                    stat: s("/c2"),
                }),
            ]
        );
        assert_eq!(tree.nodes["/plain"].stat.ephemeral_owner, 0);
        assert_eq!(tree.nodes["/c2"].stat.ephemeral_owner, CONTAINER_OWNER);
        assert_eq!(s("/ttl").ephemeral_owner, 0);

        let mut tree = DataTree::with_compat(Compat::V3_9);
        let r = tree.multi(
            &[
                mcreate(OpCode::Create2, "/a", 0),
                mcreate(OpCode::Create, "/b", 0),
            ],
            &t(7),
        );
        assert!(matches!(&r.result[0], MultiResult::Create2(c) if c.path == "/a"));
        assert!(matches!(&r.result[1], MultiResult::Create(c) if c.path == "/b"));
    }

    fn snapshot(tree: &DataTree) -> Vec<(String, Option<Bytes>, Stat, Vec<String>)> {
        let mut v: Vec<_> = tree
            .nodes
            .keys()
            .map(|p| {
                let (d, s) = tree.get_data(p).unwrap();
                (p.clone(), d, s, tree.get_children(p).unwrap().0)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn failed_multi_applies_nothing_and_has_zookeepers_shape() {
        let mut tree = DataTree::new();
        mk(&mut tree, "/f", 0, 1);
        mk(&mut tree, "/f/x", 0, 2);
        tree.create(OpCode::Create, &req("/f/e", b"", 1), &t(3))
            .unwrap();
        let before = snapshot(&tree);
        let eph_before = tree.get_ephemerals(S1, "/");
        let cases: Vec<(Vec<MultiOp>, usize, i32)> = vec![
            (
                vec![
                    mcreate(OpCode::Create, "/f/a", 0),
                    mcheck("/f", 5),
                    mset("/f", b"changed", -1),
                ],
                1,
                err::BAD_VERSION,
            ),
            (
                vec![mcreate(OpCode::Create, "/f/x", 0)],
                0,
                err::NODE_EXISTS,
            ),
            (
                vec![mcheck("/f/x", -1), mdelete("/f/none", -1)],
                1,
                err::NO_NODE,
            ),
            (
                vec![mcheck("/f/x", 0), mset("/f/x", b"", 0), mdelete("/f", -1)],
                2,
                err::NOT_EMPTY,
            ),
            // setData bumped the version; the check sees it.
            (
                vec![mset("/f/x", b"", -1), mcheck("/f/x", 0)],
                1,
                err::BAD_VERSION,
            ),
            (vec![mdelete("/f/x", 3)], 0, err::BAD_VERSION),
            (
                vec![MultiOp::Create {
                    op: OpCode::Create,
                    req: CreateRequest {
                        acl: vec![],
                        ..req("/f/empty-acl", b"", 0)
                    },
                }],
                0,
                err::INVALID_ACL,
            ),
            // Everything undone: creates (with sequence numbers), deletes
            // (ephemeral index too), setData, in several parents.
            (
                vec![
                    mcreate(OpCode::Create, "/f/s-", 2),
                    mcreate(OpCode::Create, "/f/s-", 3),
                    mdelete("/f/e", -1),
                    mdelete("/f/x", -1),
                    mcreate(OpCode::Create, "/f/x", 1),
                    mset("/f", b"zz", -1),
                    mcreate(OpCode::CreateContainer, "/f/c", 4),
                    MultiOp::CreateTtl(ttl_req("/f/t", 5, 10)),
                    mcreate(OpCode::Create, "/f/c/k", 0),
                    mdelete("/f/c/k", -1),
                    mcreate(OpCode::Create, "/g", 0),
                    mcheck("/g", 1),
                    mcreate(OpCode::Create, "/after", 0),
                ],
                11,
                err::BAD_VERSION,
            ),
            (
                vec![
                    mcheck("/f", -1),
                    MultiOp::GetData(PathWatchRequest {
                        path: "/f".into(),
                        watch: false,
                    }),
                ],
                1,
                err::MARSHALLING_ERROR,
            ),
            (
                vec![mcreate(OpCode::Create, "/f/ttl", 5)],
                0,
                err::BAD_ARGUMENTS,
            ),
        ];
        for (i, (ops, index, code)) in cases.into_iter().enumerate() {
            let r = tree.multi(&ops, &t(10 + i as i64));
            let mut want = vec![MultiResult::Error(0); index];
            want.push(MultiResult::Error(code));
            want.resize(ops.len(), MultiResult::Error(err::RUNTIME_INCONSISTENCY));
            assert_eq!(r.result, want, "case {i}");
            assert!(r.triggers.is_empty(), "case {i}");
            assert_eq!(snapshot(&tree), before, "case {i}");
            assert_eq!(tree.get_ephemerals(S1, "/"), eph_before, "case {i}");
            assert!(tree.reapable(i64::MAX / 2).is_empty(), "case {i}");
        }
        // The sequence counter was rolled back too.
        assert_eq!(mk(&mut tree, "/f/s-", 2, 50).path, "/f/s-0000000002");
    }

    #[test]
    fn multi_read_is_per_op() {
        let mut tree = DataTree::new();
        tree.create(OpCode::Create, &req("/r", b"data", 0), &t(1))
            .unwrap();
        mk(&mut tree, "/r/k2", 0, 2);
        mk(&mut tree, "/r/k1", 0, 3);
        let get = |p: &str| PathWatchRequest {
            path: p.into(),
            watch: true,
        };
        let r = tree.multi_read(
            &[
                MultiOp::GetData(get("/r")),
                MultiOp::GetData(get("/missing")),
                MultiOp::GetChildren(get("/r")),
                MultiOp::GetChildren(get("/missing")),
                mcheck("/r", -1),
            ],
            &NoAcl,
        );
        assert_eq!(
            r,
            vec![
                MultiResult::GetData(GetDataResponse {
                    data: Some(Bytes::from_static(b"data")),
                    stat: tree.stat("/r").unwrap()
                }),
                MultiResult::Error(err::NO_NODE),
                MultiResult::GetChildren(GetChildrenResponse {
                    children: vec!["k1".into(), "k2".into()]
                }),
                MultiResult::Error(err::NO_NODE),
                MultiResult::Error(err::MARSHALLING_ERROR),
            ]
        );
    }
}
