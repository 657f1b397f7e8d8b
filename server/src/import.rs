//! Import of a real ZooKeeper 3.8 data directory (`version-2/snapshot.<zxid>`
//! and `log.<zxid>` files) into the bundled server.
//!
//! [`load_zookeeper_dir`] reads the directory as ZooKeeper's own startup does
//! (`FileTxnSnapLog.restore`, `ZooKeeperServer.loadData`), and
//! [`ImportedState::write_data_dir`] saves the result as the first snapshot of
//! a zkit data directory, which the server then recovers at start like any
//! other (`zkit-server --import-zookeeper DIR`).
//!
//! # What is read, as ZooKeeper does
//!
//! - **Snapshots** (`FileSnap`): file header (`ZKSN`, version 2, dbid), the
//!   session map (id → timeout), the ACL cache (index → ACL list; `-1` is
//!   `world:anyone` with all permissions), every znode (path, data, ACL
//!   index, `StatPersisted`) up to the `/` end marker, then the seal: the
//!   Adler-32 of every byte before it, and `/`. ZooKeeper 3.6+ appends a
//!   tree digest and a second seal, which is checked too. Snapshots are tried
//!   newest first; one that is incomplete or fails its checksum is skipped
//!   for the one before it (a warning in [`ImportedState::warnings`]), as
//!   ZooKeeper does. Compressed snapshots (`.gz`, `.snappy`) are refused.
//! - **Transaction logs** (`FileTxnLog`): header (`ZKLG`, version 2, dbid),
//!   then per transaction the Adler-32 of the entry, its length, the entry
//!   (`TxnHeader`, the txn record, an optional digest) and a `B` byte. A zero
//!   length (preallocated space), a short entry or a missing `B` ends that
//!   file (a torn write), as in ZooKeeper; a checksum mismatch on a whole
//!   entry is damage and refuses the import. The logs replayed are those
//!   from the last one starting at or before the snapshot's zxid; entries
//!   up to the snapshot's zxid are skipped.
//! - **Replay** follows `DataTree.processTxn`, including what makes fuzzy
//!   snapshots work: a create whose node already exists only updates the
//!   node's ACL and (for `create`) the parent's cversion/pzxid when larger;
//!   a delete of a missing node still raises the parent's pzxid; failed
//!   transactions and failed multis change nothing.
//! - **Sessions**: the sessions of the snapshot, plus `createSession` and
//!   minus `closeSession` of the log, are restored with their timeouts:
//!   like ZooKeeper after a restart, each expires (deleting its ephemerals)
//!   once its timeout passes without the client reconnecting. Session
//!   passwords are ZooKeeper's, so a client may reconnect to the bundled
//!   server with its session. Ephemerals of a session that is not in the
//!   map are deleted at load, at the last zxid, as `loadData` does.
//!
//! Stricter than ZooKeeper: a gap in the zxids replayed (a lost log file)
//! refuses the import instead of serving a tree with a hole.
//!
//! Decoding never panics: bad bytes are an [`ImportError`] naming the file
//! and the offset.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use zkit_proto::codes::perms;
use zkit_proto::jute::{write_i32, write_i64};
use zkit_proto::{Acl, Id};

use crate::tree::DataTree;

const SNAP_MAGIC: i32 = i32::from_be_bytes(*b"ZKSN");
const LOG_MAGIC: i32 = i32::from_be_bytes(*b"ZKLG");
const FILE_VERSION: i32 = 2;
/// `ReferenceCountedACLCache.OPEN_UNSAFE_ACL_ID`.
const OPEN_UNSAFE_ACL_ID: i64 = -1;
/// `EphemeralType.CONTAINER_EPHEMERAL_OWNER`.
const CONTAINER_OWNER: i64 = i64::MIN;
/// `EphemeralType.EXTENDED_MASK`: the high byte of a TTL node's owner.
const EXTENDED_MASK: u64 = 0xff00_0000_0000_0000;
/// ZooKeeper refuses longer buffers unless `jute.maxbuffer` was raised; a
/// larger length than this is taken as damage, not as a torn write.
const MAX_ENTRY: usize = 256 << 20;

// ---- op codes (`ZooDefs.OpCode`) ------------------------------------------------

const OP_CREATE: i32 = 1;
const OP_DELETE: i32 = 2;
const OP_SET_DATA: i32 = 5;
const OP_SET_ACL: i32 = 7;
const OP_CHECK: i32 = 13;
const OP_MULTI: i32 = 14;
const OP_CREATE2: i32 = 15;
const OP_RECONFIG: i32 = 16;
const OP_CREATE_CONTAINER: i32 = 19;
const OP_DELETE_CONTAINER: i32 = 20;
const OP_CREATE_TTL: i32 = 21;
const OP_CREATE_SESSION: i32 = -10;
const OP_CLOSE_SESSION: i32 = -11;
const OP_ERROR: i32 = -1;

// ---- errors -----------------------------------------------------------------------

/// Why a ZooKeeper data directory could not be imported.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImportError {
    /// A file or directory could not be read or written.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Bytes that are not what ZooKeeper writes there: a bad magic number, a
    /// checksum mismatch, a truncated or inconsistent record.
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Byte offset in the file where the problem is.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A file this importer does not read (a compressed snapshot, an
    /// unknown format version or transaction type).
    Unsupported {
        /// The file.
        file: PathBuf,
        /// What is not supported, and what to do about it.
        what: String,
    },
    /// No snapshot could be used: none at all, or each one is damaged.
    NoSnapshot {
        /// The directory searched.
        dir: PathBuf,
        /// Why each snapshot found was skipped (newest first).
        skipped: Vec<String>,
    },
    /// The transaction logs miss transactions between a snapshot and the
    /// rest of the log (a log file was lost or purged).
    Gap {
        /// The file where the replay resumed.
        file: PathBuf,
        /// The zxid expected next.
        expected: i64,
        /// The zxid found.
        found: i64,
    },
    /// The zkit data directory to import into already holds state.
    NotEmpty {
        /// The directory.
        dir: PathBuf,
    },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Corrupt { file, offset, what } => {
                write!(f, "{}: corrupt at offset {offset}: {what}", file.display())
            }
            Self::Unsupported { file, what } => write!(f, "{}: {what}", file.display()),
            Self::NoSnapshot { dir, skipped } if skipped.is_empty() => write!(
                f,
                "{}: no ZooKeeper snapshot (snapshot.<zxid>) found",
                dir.display()
            ),
            Self::NoSnapshot { dir, skipped } => write!(
                f,
                "{}: no usable ZooKeeper snapshot: {}",
                dir.display(),
                skipped.join("; ")
            ),
            Self::Gap {
                file,
                expected,
                found,
            } => write!(
                f,
                "{}: transactions missing: expected zxid {expected:#x}, found {found:#x} \
                 (a log file was lost or purged)",
                file.display()
            ),
            Self::NotEmpty { dir } => write!(
                f,
                "{}: already holds zkit snapshots or logs; import into an empty data directory",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImportError + '_ {
    move |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---- Adler-32 (java.util.zip.Adler32) ---------------------------------------------

/// Adler-32 of `data`, the checksum ZooKeeper uses for snapshots and log
/// entries.
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that cannot overflow `b` before the modulo.
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

// ---- a jute reader that knows its offset --------------------------------------------

/// A decoding failure at an offset of the buffer being read.
#[derive(Debug)]
struct Bad {
    offset: usize,
    /// The input ended inside the item (a torn write when it is a log's
    /// last entry).
    short: bool,
    what: String,
}

type Res<T> = Result<T, Bad>;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn bad(&self, what: impl Into<String>) -> Bad {
        Bad {
            offset: self.pos,
            short: false,
            what: what.into(),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Res<&'a [u8]> {
        if self.remaining() < n {
            return Err(Bad {
                offset: self.pos,
                short: true,
                what: format!(
                    "truncated: {what} needs {n} bytes, {} left",
                    self.remaining()
                ),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Res<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn i32(&mut self, what: &str) -> Res<i32> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self, what: &str) -> Res<i64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn bool(&mut self, what: &str) -> Res<bool> {
        Ok(self.u8(what)? != 0)
    }

    /// A jute `buffer`: length (-1 = null), bytes.
    fn buffer(&mut self, what: &str) -> Res<Option<&'a [u8]>> {
        let at = self.pos;
        let len = self.i32(what)?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 {
            self.pos = at;
            return Err(self.bad(format!("{what}: negative length {len}")));
        }
        self.take(len as usize, what).map(Some)
    }

    /// A jute `ustring`; null is refused (ZooKeeper never writes one where
    /// this is used).
    fn string(&mut self, what: &str) -> Res<String> {
        let at = self.pos;
        let Some(b) = self.buffer(what)? else {
            self.pos = at;
            return Err(self.bad(format!("{what}: null string")));
        };
        String::from_utf8(b.to_vec()).map_err(|_| Bad {
            offset: at,
            short: false,
            what: format!("{what}: not UTF-8"),
        })
    }

    /// A vector count: -1 (null) or a count that fits in what is left
    /// assuming `min` bytes per element.
    fn count(&mut self, what: &str, min: usize) -> Res<Option<usize>> {
        let at = self.pos;
        let n = self.i32(what)?;
        if n == -1 {
            return Ok(None);
        }
        if n < 0 || (n as usize).saturating_mul(min) > self.remaining() {
            self.pos = at;
            return Err(Bad {
                offset: at,
                short: n >= 0,
                what: format!("{what}: bad count {n}"),
            });
        }
        Ok(Some(n as usize))
    }

    fn acl_list(&mut self, what: &str) -> Res<Vec<Acl>> {
        let at = self.pos;
        let Some(n) = self.count(what, 12)? else {
            self.pos = at;
            return Err(self.bad(format!("{what}: null ACL list")));
        };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let perms = self.i32("ACL perms")?;
            let scheme = self.string("ACL scheme")?;
            let id = self.string("ACL id")?;
            out.push(Acl {
                perms,
                id: Id { scheme, id },
            });
        }
        Ok(out)
    }
}

// ---- the tree as ZooKeeper's DataTree keeps it ----------------------------------------

/// `StatPersisted`: the tree's own.
type StatP = crate::tree::Persisted;

impl StatP {
    fn read(r: &mut Reader<'_>) -> Res<Self> {
        Ok(Self {
            czxid: r.i64("czxid")?,
            mzxid: r.i64("mzxid")?,
            ctime: r.i64("ctime")?,
            mtime: r.i64("mtime")?,
            version: r.i32("version")?,
            cversion: r.i32("cversion")?,
            aversion: r.i32("aversion")?,
            ephemeral_owner: r.i64("ephemeralOwner")?,
            pzxid: r.i64("pzxid")?,
        })
    }
}

#[derive(Debug, Clone)]
struct ZNode {
    data: Option<Bytes>,
    acl: Arc<[Acl]>,
    stat: StatP,
    children: BTreeSet<String>,
}

/// Whether `owner` is a session (not 0, a container or a TTL node).
fn is_session_owner(owner: i64) -> bool {
    owner != 0 && owner != CONTAINER_OWNER && (owner as u64 & EXTENDED_MASK) != EXTENDED_MASK
}

/// `KeeperException.Code`s the replay distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    NoNode,
    NodeExists,
}

/// Paths are kept as ZooKeeper's `DataTree` keys them: the root is `""`
/// and a parent is everything before the last `/`.
#[derive(Debug, Default)]
struct Model {
    nodes: HashMap<String, ZNode>,
    ephemerals: HashMap<i64, BTreeSet<String>>,
    sessions: BTreeMap<i64, i32>,
}

fn split(path: &str) -> Result<(&str, &str), Fail> {
    let i = path.rfind('/').ok_or(Fail::NoNode)?;
    Ok((&path[..i], &path[i + 1..]))
}

impl Model {
    fn index(&mut self, path: &str, owner: i64) {
        if is_session_owner(owner) {
            self.ephemerals
                .entry(owner)
                .or_default()
                .insert(path.to_string());
        }
    }

    /// `DataTree.createNode`.
    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        path: &str,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        owner: i64,
        parent_cversion: i32,
        zxid: i64,
        time: i64,
    ) -> Result<(), Fail> {
        let (parent_name, child) = split(path)?;
        if !self.nodes.contains_key(parent_name) {
            return Err(Fail::NoNode);
        }
        if let Some(existing) = self.nodes.get_mut(path) {
            existing.acl = acl.into();
            return Err(Fail::NodeExists);
        }
        let parent = self.nodes.get_mut(parent_name).ok_or(Fail::NoNode)?;
        let mut cv = parent_cversion;
        if cv == -1 {
            cv = parent.stat.cversion + 1;
        }
        if cv > parent.stat.cversion {
            parent.stat.cversion = cv;
            parent.stat.pzxid = zxid;
        }
        parent.children.insert(child.to_string());
        let stat = StatP {
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            ephemeral_owner: owner,
            pzxid: zxid,
            ..StatP::default()
        };
        self.nodes.insert(
            path.to_string(),
            ZNode {
                data,
                acl: acl.into(),
                stat,
                children: BTreeSet::new(),
            },
        );
        self.index(path, owner);
        Ok(())
    }

    /// `DataTree.deleteNode`.
    fn delete(&mut self, path: &str, zxid: i64) -> Result<(), Fail> {
        let (parent_name, child) = split(path)?;
        let parent = self.nodes.get_mut(parent_name).ok_or(Fail::NoNode)?;
        parent.children.remove(child);
        if zxid > parent.stat.pzxid {
            parent.stat.pzxid = zxid;
        }
        let node = self.nodes.remove(path).ok_or(Fail::NoNode)?;
        let owner = node.stat.ephemeral_owner;
        if is_session_owner(owner) {
            if let Some(set) = self.ephemerals.get_mut(&owner) {
                set.remove(path);
            }
        }
        Ok(())
    }

    /// `DataTree.setCversionPzxid`.
    fn set_cversion_pzxid(&mut self, path: &str, cversion: i32, zxid: i64) {
        let path = path.strip_suffix('/').unwrap_or(path);
        if let Some(n) = self.nodes.get_mut(path) {
            let cv = if cversion == -1 {
                n.stat.cversion + 1
            } else {
                cversion
            };
            if cv > n.stat.cversion {
                n.stat.cversion = cv;
                n.stat.pzxid = zxid;
            }
        }
    }

    /// `DataTree.killSession`: the paths the txn names, then whatever else
    /// the session still owns.
    fn kill_session(&mut self, session: i64, zxid: i64, listed: Option<&[String]>) {
        let mut local = self.ephemerals.remove(&session).unwrap_or_default();
        if let Some(paths) = listed {
            for p in paths {
                let _ = self.delete(p, zxid);
                local.remove(p);
            }
        }
        for p in local {
            let _ = self.delete(&p, zxid);
        }
    }

    /// `DataTree.processTxn` (the outcome is only logged by ZooKeeper).
    fn apply(&mut self, h: &TxnHeader, txn: &Txn) {
        let r = match txn {
            Txn::Create {
                path,
                data,
                acl,
                ephemeral,
                parent_cversion,
            } => self.create(
                path,
                data.clone(),
                acl.clone(),
                if *ephemeral { h.client_id } else { 0 },
                *parent_cversion,
                h.zxid,
                h.time,
            ),
            Txn::CreateTtl {
                path,
                data,
                acl,
                parent_cversion,
                ttl,
            } => self.create(
                path,
                data.clone(),
                acl.clone(),
                crate::tree::ttl_owner(*ttl),
                *parent_cversion,
                h.zxid,
                h.time,
            ),
            Txn::CreateContainer {
                path,
                data,
                acl,
                parent_cversion,
            } => self.create(
                path,
                data.clone(),
                acl.clone(),
                CONTAINER_OWNER,
                *parent_cversion,
                h.zxid,
                h.time,
            ),
            Txn::Delete { path } => self.delete(path, h.zxid),
            Txn::SetData {
                path,
                data,
                version,
            } => match self.nodes.get_mut(path.as_str()) {
                Some(n) => {
                    n.data = data.clone();
                    n.stat.mtime = h.time;
                    n.stat.mzxid = h.zxid;
                    n.stat.version = *version;
                    Ok(())
                }
                None => Err(Fail::NoNode),
            },
            Txn::SetAcl { path, acl, version } => match self.nodes.get_mut(path.as_str()) {
                Some(n) => {
                    n.stat.aversion = *version;
                    n.acl = acl.clone().into();
                    Ok(())
                }
                None => Err(Fail::NoNode),
            },
            Txn::CreateSession { timeout } => {
                self.sessions.insert(h.client_id, *timeout);
                Ok(())
            }
            Txn::CloseSession { paths } => {
                self.sessions.remove(&h.client_id);
                self.kill_session(h.client_id, h.zxid, paths.as_deref());
                Ok(())
            }
            Txn::Error | Txn::Check => Ok(()),
            Txn::Multi(ops) => {
                // A multi that failed was logged with an error txn per op:
                // it changes nothing.
                if !ops.iter().any(|(_, t)| matches!(t, Txn::Error)) {
                    for (op, t) in ops {
                        let sub = TxnHeader { op: *op, ..*h };
                        self.apply(&sub, t);
                    }
                }
                Ok(())
            }
        };
        // Fuzzy snapshot: the node is there already (re-created by another
        // session after its parent was serialised); take the txn's cversion.
        if r == Err(Fail::NodeExists) && h.op == OP_CREATE {
            if let Txn::Create {
                path,
                parent_cversion,
                ..
            } = txn
            {
                if let Ok((parent, _)) = split(path) {
                    self.set_cversion_pzxid(parent, *parent_cversion, h.zxid);
                }
            }
        }
    }
}

// ---- txn records ---------------------------------------------------------------------

/// `TxnHeader`.
#[derive(Debug, Clone, Copy)]
struct TxnHeader {
    client_id: i64,
    zxid: i64,
    time: i64,
    op: i32,
}

#[derive(Debug, Clone)]
enum Txn {
    Create {
        path: String,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        ephemeral: bool,
        parent_cversion: i32,
    },
    CreateTtl {
        path: String,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        parent_cversion: i32,
        ttl: i64,
    },
    CreateContainer {
        path: String,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        parent_cversion: i32,
    },
    Delete {
        path: String,
    },
    SetData {
        path: String,
        data: Option<Bytes>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    CreateSession {
        timeout: i32,
    },
    CloseSession {
        paths: Option<Vec<String>>,
    },
    Error,
    Check,
    Multi(Vec<(i32, Txn)>),
}

fn bytes_of(b: Option<&[u8]>) -> Option<Bytes> {
    b.map(Bytes::copy_from_slice)
}

/// Decodes the record of a txn of type `op` (`SerializeUtils.deserializeTxn`;
/// a trailing `TxnDigest` is ignored). `Ok(None)`: an unknown type.
fn read_txn(r: &mut Reader<'_>, op: i32, in_multi: bool) -> Res<Option<Txn>> {
    Ok(Some(match op {
        OP_CREATE | OP_CREATE2 => {
            let path = r.string("CreateTxn path")?;
            let data = bytes_of(r.buffer("CreateTxn data")?);
            let acl = r.acl_list("CreateTxn acl")?;
            let ephemeral = r.bool("CreateTxn ephemeral")?;
            // `CreateTxnV0` (before 3.3) has no parentCVersion: -1 makes
            // the replay compute it.
            let parent_cversion = if op == OP_CREATE && !in_multi && r.remaining() < 4 {
                -1
            } else {
                r.i32("CreateTxn parentCVersion")?
            };
            Txn::Create {
                path,
                data,
                acl,
                ephemeral,
                parent_cversion,
            }
        }
        OP_CREATE_TTL => Txn::CreateTtl {
            path: r.string("CreateTTLTxn path")?,
            data: bytes_of(r.buffer("CreateTTLTxn data")?),
            acl: r.acl_list("CreateTTLTxn acl")?,
            parent_cversion: r.i32("CreateTTLTxn parentCVersion")?,
            ttl: r.i64("CreateTTLTxn ttl")?,
        },
        OP_CREATE_CONTAINER => Txn::CreateContainer {
            path: r.string("CreateContainerTxn path")?,
            data: bytes_of(r.buffer("CreateContainerTxn data")?),
            acl: r.acl_list("CreateContainerTxn acl")?,
            parent_cversion: r.i32("CreateContainerTxn parentCVersion")?,
        },
        OP_DELETE | OP_DELETE_CONTAINER => Txn::Delete {
            path: r.string("DeleteTxn path")?,
        },
        OP_SET_DATA | OP_RECONFIG if !(in_multi && op == OP_RECONFIG) => Txn::SetData {
            path: r.string("SetDataTxn path")?,
            data: bytes_of(r.buffer("SetDataTxn data")?),
            version: r.i32("SetDataTxn version")?,
        },
        OP_SET_ACL if !in_multi => Txn::SetAcl {
            path: r.string("SetACLTxn path")?,
            acl: r.acl_list("SetACLTxn acl")?,
            version: r.i32("SetACLTxn version")?,
        },
        OP_CHECK => {
            r.string("CheckVersionTxn path")?;
            r.i32("CheckVersionTxn version")?;
            Txn::Check
        }
        OP_ERROR => {
            r.i32("ErrorTxn err")?;
            Txn::Error
        }
        OP_CREATE_SESSION if !in_multi => Txn::CreateSession {
            timeout: r.i32("CreateSessionTxn timeOut")?,
        },
        OP_CLOSE_SESSION if !in_multi => {
            // Before 3.6 a closeSession had no record: then every ephemeral
            // of the session goes.
            let at = r.pos;
            let paths = match read_string_vec(r) {
                Ok(p) => Some(p),
                Err(_) => {
                    r.pos = at;
                    None
                }
            };
            Txn::CloseSession { paths }
        }
        OP_MULTI if !in_multi => {
            let Some(n) = r.count("MultiTxn txns", 8)? else {
                return Err(r.bad("MultiTxn: null txn list"));
            };
            let mut ops = Vec::with_capacity(n);
            for _ in 0..n {
                let sub_op = r.i32("multi op type")?;
                let base = r.pos + 4;
                let body = r.buffer("multi op data")?.unwrap_or_default();
                let mut sub = Reader::new(body);
                let t = read_txn(&mut sub, sub_op, true)
                    .map_err(|mut b| {
                        b.offset += base;
                        b.short = false;
                        b
                    })?
                    .ok_or_else(|| Bad {
                        offset: base - 8,
                        short: false,
                        what: format!("invalid type of op in a multi: {sub_op}"),
                    })?;
                ops.push((sub_op, t));
            }
            Txn::Multi(ops)
        }
        _ => return Ok(None),
    }))
}

fn read_string_vec(r: &mut Reader<'_>) -> Res<Vec<String>> {
    let Some(n) = r.count("paths2Delete", 4)? else {
        return Err(r.bad("null list"));
    };
    (0..n).map(|_| r.string("paths2Delete path")).collect()
}

// ---- files ----------------------------------------------------------------------------

/// Snapshot or log files in `dir`: `<prefix>.<hex zxid>[.suffix]`, sorted
/// by zxid (`Util.getZxidFromName`).
fn list(dir: &Path, prefix: &str) -> Result<Vec<(i64, PathBuf)>, ImportError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let mut parts = name.split('.');
        if parts.next() != Some(prefix) {
            continue;
        }
        let Some(Ok(zxid)) = parts.next().map(|h| u64::from_str_radix(h, 16)) else {
            continue;
        };
        if name.ends_with(".tmp") {
            continue;
        }
        out.push((zxid as i64, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// A snapshot as read: its sessions and tree.
struct Snap {
    sessions: BTreeMap<i64, i32>,
    nodes: HashMap<String, ZNode>,
}

fn corrupt(file: &Path, base: usize, b: Bad) -> ImportError {
    ImportError::Corrupt {
        file: file.to_path_buf(),
        offset: (base + b.offset) as u64,
        what: b.what,
    }
}

/// Checks a seal (`SnapStream.checkSealIntegrity`) at the reader's position.
fn seal(r: &mut Reader<'_>, n: usize) -> Res<()> {
    let at = r.pos;
    let want = adler32(&r.buf[..at]);
    let got = r.i64("snapshot checksum")?;
    let slash = r.string("snapshot seal")?;
    if got != i64::from(want) {
        return Err(Bad {
            offset: at,
            short: false,
            what: format!(
                "snapshot checksum {n} mismatch: file says {got:#x}, data gives {want:#x}"
            ),
        });
    }
    if slash != "/" {
        return Err(Bad {
            offset: at + 8,
            short: false,
            what: format!("snapshot seal: expected \"/\", found {slash:?}"),
        });
    }
    Ok(())
}

fn read_snapshot(path: &Path) -> Result<Snap, ImportError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".gz") || name.ends_with(".snappy") {
        return Err(ImportError::Unsupported {
            file: path.to_path_buf(),
            what: "compressed snapshot (zookeeper.snapshot.compression.method): not supported; \
                   decompress it to snapshot.<zxid> or restart ZooKeeper without compression"
                .into(),
        });
    }
    if name.split('.').count() != 2 {
        return Err(ImportError::Unsupported {
            file: path.to_path_buf(),
            what: "unknown snapshot file suffix".into(),
        });
    }
    let raw = fs::read(path).map_err(io_err(path))?;
    let mut r = Reader::new(&raw);
    let c = |b| corrupt(path, 0, b);
    let magic = r.i32("file header magic").map_err(c)?;
    if magic != SNAP_MAGIC {
        return Err(corrupt(
            path,
            0,
            Bad {
                offset: 0,
                short: false,
                what: format!("bad magic {magic:#010x}, expected ZKSN: not a ZooKeeper snapshot"),
            },
        ));
    }
    let version = r.i32("file header version").map_err(c)?;
    if version != FILE_VERSION {
        return Err(ImportError::Unsupported {
            file: path.to_path_buf(),
            what: format!("snapshot format version {version} (only {FILE_VERSION} is known)"),
        });
    }
    r.i64("file header dbid").map_err(c)?;
    let read = |r: &mut Reader<'_>| -> Res<Snap> {
        let mut sessions = BTreeMap::new();
        let n = r.count("session count", 12)?.unwrap_or(0);
        for _ in 0..n {
            let id = r.i64("session id")?;
            let timeout = r.i32("session timeout")?;
            sessions.insert(id, timeout);
        }
        let mut acls: HashMap<i64, Arc<[Acl]>> = HashMap::new();
        let n = r.count("ACL cache size", 12)?.unwrap_or(0);
        for _ in 0..n {
            let key = r.i64("ACL cache index")?;
            let list = r.acl_list("ACL cache list")?;
            acls.insert(key, list.into());
        }
        let open: Arc<[Acl]> = vec![Acl {
            perms: perms::ALL,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }]
        .into();
        let mut nodes: HashMap<String, ZNode> = HashMap::new();
        loop {
            let at = r.pos;
            let path = r.string("znode path")?;
            if path == "/" {
                break;
            }
            let data = bytes_of(r.buffer("znode data")?);
            let acl_at = r.pos;
            let acl_key = r.i64("znode ACL index")?;
            let stat = StatP::read(r)?;
            let acl = if acl_key == OPEN_UNSAFE_ACL_ID {
                open.clone()
            } else {
                acls.get(&acl_key).cloned().ok_or_else(|| Bad {
                    offset: acl_at,
                    short: false,
                    what: format!("{path:?}: ACL index {acl_key} not in the ACL cache"),
                })?
            };
            if !path.is_empty() {
                let (parent, child) = split(&path).map_err(|_| Bad {
                    offset: at,
                    short: false,
                    what: format!("bad znode path {path:?}"),
                })?;
                let Some(p) = nodes.get_mut(parent) else {
                    return Err(Bad {
                        offset: at,
                        short: false,
                        what: format!("invalid tree: no parent {parent:?} for {path:?}"),
                    });
                };
                p.children.insert(child.to_string());
            }
            let node = ZNode {
                data,
                acl,
                stat,
                children: BTreeSet::new(),
            };
            if nodes.insert(path.clone(), node).is_some() {
                return Err(Bad {
                    offset: at,
                    short: false,
                    what: format!("duplicate znode {path:?}"),
                });
            }
        }
        if !nodes.contains_key("") {
            return Err(r.bad("no root znode"));
        }
        seal(r, 1)?;
        // 3.6+: the tree digest (ZxidDigest) and a second seal.
        if r.remaining() > 0 {
            r.i64("digest zxid")?;
            r.i32("digest version")?;
            r.i64("digest")?;
            seal(r, 2)?;
        }
        // 3.9+: the last processed zxid and a third seal.
        if r.remaining() > 0 {
            r.i64("last processed zxid")?;
            seal(r, 3)?;
        }
        Ok(Snap { sessions, nodes })
    };
    read(&mut r).map_err(c)
}

/// What one log file held from a given zxid on.
struct LogRead {
    txns: Vec<(TxnHeader, Txn, u64)>,
    /// The offset where a torn entry ends the file, if one does.
    torn_at: Option<u64>,
}

/// Reads the transactions of a log file with zxid > `after`.
fn read_log(path: &Path, after: i64) -> Result<LogRead, ImportError> {
    let raw = fs::read(path).map_err(io_err(path))?;
    let mut r = Reader::new(&raw);
    let c = |b| corrupt(path, 0, b);
    if raw.len() < 16 {
        // Created but its header never completely written.
        return Ok(LogRead {
            txns: Vec::new(),
            torn_at: Some(0),
        });
    }
    let magic = r.i32("file header magic").map_err(c)?;
    if magic != LOG_MAGIC {
        return Err(corrupt(
            path,
            0,
            Bad {
                offset: 0,
                short: false,
                what: format!(
                    "bad magic {magic:#010x}, expected ZKLG: not a ZooKeeper transaction log"
                ),
            },
        ));
    }
    let version = r.i32("file header version").map_err(c)?;
    if version != FILE_VERSION {
        return Err(ImportError::Unsupported {
            file: path.to_path_buf(),
            what: format!(
                "transaction log format version {version} (only {FILE_VERSION} is known)"
            ),
        });
    }
    r.i64("file header dbid").map_err(c)?;
    let mut out = LogRead {
        txns: Vec::new(),
        torn_at: None,
    };
    loop {
        let start = r.pos;
        // `Util.readTxnBytes`: an empty entry (preallocated zeros) or one
        // cut short is the end of the file.
        let Ok(crc) = r.i64("entry checksum") else {
            if r.remaining() > 0 {
                out.torn_at = Some(start as u64);
            }
            break;
        };
        let len_at = r.pos;
        let Ok(len) = r.i32("entry length") else {
            out.torn_at = Some(start as u64);
            break;
        };
        if len == 0 {
            break;
        }
        if len < 0 || len as usize > MAX_ENTRY {
            return Err(corrupt(
                path,
                0,
                Bad {
                    offset: len_at,
                    short: false,
                    what: format!("unreasonable entry length {len}"),
                },
            ));
        }
        let Ok(entry) = r.take(len as usize, "entry") else {
            out.torn_at = Some(start as u64);
            break;
        };
        match r.u8("entry end marker") {
            Ok(b'B') => {}
            _ => {
                out.torn_at = Some(start as u64);
                break;
            }
        }
        let want = adler32(entry);
        if crc != i64::from(want) {
            return Err(corrupt(
                path,
                0,
                Bad {
                    offset: start,
                    short: false,
                    what: format!(
                        "transaction checksum mismatch: entry says {crc:#x}, data gives {want:#x}"
                    ),
                },
            ));
        }
        let body = len_at + 4;
        let mut e = Reader::new(entry);
        let hdr = (|| -> Res<TxnHeader> {
            let client_id = e.i64("TxnHeader clientId")?;
            e.i32("TxnHeader cxid")?;
            let zxid = e.i64("TxnHeader zxid")?;
            let time = e.i64("TxnHeader time")?;
            let op = e.i32("TxnHeader type")?;
            Ok(TxnHeader {
                client_id,
                zxid,
                time,
                op,
            })
        })()
        .map_err(|b| corrupt(path, body, b))?;
        if hdr.zxid <= after {
            continue;
        }
        let txn = read_txn(&mut e, hdr.op, false)
            .map_err(|b| corrupt(path, body, b))?
            .ok_or_else(|| ImportError::Unsupported {
                file: path.to_path_buf(),
                what: format!(
                    "unsupported transaction type {} (zxid {:#x}) at offset {start}",
                    hdr.op, hdr.zxid
                ),
            })?;
        out.txns.push((hdr, txn, start as u64));
    }
    Ok(out)
}

// ---- the import ---------------------------------------------------------------------------

/// A ZooKeeper data directory loaded into memory: the tree and the sessions
/// ZooKeeper would serve after starting on it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ImportedState {
    /// The last zxid processed (the server continues after it).
    pub zxid: i64,
    /// The snapshot the state was built from.
    pub snapshot: PathBuf,
    /// Transactions replayed from the logs after it.
    pub replayed: usize,
    /// Live sessions and their negotiated timeouts (ms).
    pub sessions: BTreeMap<i64, i32>,
    /// The znodes.
    pub tree: DataTree,
    /// What was tolerated on the way: snapshots skipped, torn log tails.
    pub warnings: Vec<String>,
}

/// Where the snapshots and logs are: `dir/version-2` when it exists (a
/// `dataDir`), else `dir` itself.
fn version_dir(dir: &Path) -> PathBuf {
    let v2 = dir.join("version-2");
    if v2.is_dir() {
        v2
    } else {
        dir.to_path_buf()
    }
}

/// Loads a ZooKeeper 3.8 data directory (`dataDir`, holding `version-2/`,
/// or the `version-2` directory itself) whose transaction logs are there
/// too. See the [module docs](self) for what is read and how.
///
/// # Errors
/// Unreadable files, no usable snapshot, a damaged log, a gap in the
/// transactions, an unsupported format: each names the file (and the
/// offset for damage).
pub fn load_zookeeper_dir(dir: impl AsRef<Path>) -> Result<ImportedState, ImportError> {
    let dir = dir.as_ref();
    load_zookeeper_dirs(dir, dir)
}

/// [`load_zookeeper_dir`] with snapshots in `data_dir` and transaction logs
/// in `data_log_dir` (ZooKeeper's `dataDir` and `dataLogDir`).
///
/// # Errors
/// As [`load_zookeeper_dir`].
pub fn load_zookeeper_dirs(
    data_dir: impl AsRef<Path>,
    data_log_dir: impl AsRef<Path>,
) -> Result<ImportedState, ImportError> {
    let snap_dir = version_dir(data_dir.as_ref());
    let log_dir = version_dir(data_log_dir.as_ref());
    let snaps = list(&snap_dir, "snapshot")?;
    let mut warnings = Vec::new();
    let mut skipped = Vec::new();
    let mut chosen = None;
    for (zxid, path) in snaps.iter().rev() {
        match read_snapshot(path) {
            Ok(s) => {
                chosen = Some((*zxid, path.clone(), s));
                break;
            }
            Err(e @ ImportError::Io { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "ZooKeeper snapshot skipped");
                skipped.push(e.to_string());
            }
        }
    }
    let Some((snap_zxid, snap_path, snap)) = chosen else {
        return Err(ImportError::NoSnapshot {
            dir: snap_dir,
            skipped,
        });
    };
    warnings.extend(skipped.into_iter().map(|s| format!("skipped {s}")));
    let mut model = Model {
        nodes: snap.nodes,
        ephemerals: HashMap::new(),
        sessions: snap.sessions,
    };
    let owners: Vec<(String, i64)> = model
        .nodes
        .iter()
        .map(|(p, n)| (p.clone(), n.stat.ephemeral_owner))
        .collect();
    for (p, o) in owners {
        model.index(&p, o);
    }

    // `FileTxnLog.getLogFiles`: from the last log starting at or before the
    // snapshot on.
    let logs = list(&log_dir, "log")?;
    let first = logs
        .iter()
        .filter(|(z, _)| *z <= snap_zxid)
        .map(|(z, _)| *z)
        .max()
        .unwrap_or(0);
    let mut last = snap_zxid;
    let mut replayed = 0;
    for (_, path) in logs.iter().filter(|(z, _)| *z >= first) {
        let read = read_log(path, last)?;
        if let Some(at) = read.torn_at {
            let w = format!(
                "{}: ends with a torn transaction at offset {at} (ignored, as ZooKeeper does)",
                path.display()
            );
            tracing::warn!("{w}");
            warnings.push(w);
        }
        for (hdr, txn, _) in read.txns {
            let same_epoch = hdr.zxid >> 32 == last >> 32;
            if same_epoch && hdr.zxid != last + 1 {
                return Err(ImportError::Gap {
                    file: path.clone(),
                    expected: last + 1,
                    found: hdr.zxid,
                });
            }
            model.apply(&hdr, &txn);
            last = hdr.zxid;
            replayed += 1;
        }
    }
    // `ZooKeeperServer.loadData`: ephemerals of sessions that are gone.
    let dead: Vec<i64> = model
        .ephemerals
        .iter()
        .filter(|(s, paths)| !paths.is_empty() && !model.sessions.contains_key(s))
        .map(|(s, _)| *s)
        .collect();
    for s in dead {
        model.kill_session(s, last, None);
    }
    let mut image = BytesMut::new();
    encode_image(&model, &mut image);
    let mut tree = DataTree::new();
    tree.decode_image(&mut image.freeze())
        .map_err(|e| ImportError::Corrupt {
            file: snap_path.clone(),
            offset: 0,
            what: format!("the resulting tree is inconsistent: {e}"),
        })?;
    Ok(ImportedState {
        zxid: last,
        snapshot: snap_path,
        replayed,
        sessions: model.sessions,
        tree,
        warnings,
    })
}

/// Writes the model in [`DataTree::encode_image`]'s format.
fn encode_image(m: &Model, buf: &mut BytesMut) {
    write_i32(buf, crate::tree::IMAGE_VERSION);
    write_i64(buf, m.nodes.len() as i64);
    let mut paths: Vec<&String> = m.nodes.keys().collect();
    paths.sort();
    for path in paths {
        let n = &m.nodes[path];
        let path = if path.is_empty() { "/" } else { path };
        crate::tree::write_image_node(buf, path, n.data.as_ref(), &n.acl, &n.stat);
    }
}

impl ImportedState {
    /// Saves the state as the first snapshot of a zkit data directory
    /// (created if missing), for
    /// [`ServerBuilder::data_dir`](crate::ServerBuilder::data_dir) to recover
    /// at start; `log_dir` is the
    /// server's `dataLogDir` when it has a separate one.
    ///
    /// # Errors
    /// The directory already holds zkit snapshots or logs
    /// ([`ImportError::NotEmpty`]), is in use by a running server, or
    /// cannot be written.
    pub fn write_data_dir(&self, dir: &Path, log_dir: Option<&Path>) -> Result<(), ImportError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let log_dir = log_dir.unwrap_or(dir);
        match crate::persist::write_initial_snapshot(
            dir,
            log_dir,
            self.zxid,
            self.sessions.iter().map(|(&id, &t)| (id, t)),
            |buf| self.tree.encode_image(buf),
        ) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ImportError::NotEmpty {
                dir: dir.to_path_buf(),
            }),
            Err(e) => Err(ImportError::Io {
                path: dir.to_path_buf(),
                source: e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_matches_zlib() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        let big = vec![0xffu8; 100_000];
        // Reference computed bytewise with the modulo at every step.
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &big {
            a = (a + u64::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        assert_eq!(u64::from(adler32(&big)), (b << 16) | a);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut seed = 0x1234_5678u32;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (seed >> 16) as u8
                })
                .collect();
            for op in [OP_CREATE, OP_MULTI, OP_CLOSE_SESSION, OP_SET_ACL, 99] {
                let _ = read_txn(&mut Reader::new(&bytes), op, false);
            }
        }
    }
}
