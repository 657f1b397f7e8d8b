//! Durability: an append-only transaction log with group commit, periodic
//! snapshots and recovery (ZooKeeper's `FileTxnLog`, `FileSnap` and
//! `SyncRequestProcessor`, in zkit's own file format).
//!
//! # How a write becomes durable
//!
//! Every request that takes a zxid (a write, a failed write, a session
//! created or closed, a container reaped) is appended as a [`Record`] to an
//! in-memory batch while the server's state lock is held, so the log order is
//! the zxid order. One writer thread takes the whole batch, writes it and
//! `fdatasync`s the file, then publishes the batch's last zxid as *durable*.
//! Writes arriving while a sync is in flight form the next batch: that is
//! the group commit.
//!
//! Replies and watch notifications are tagged with the last zxid logged when
//! they were produced, and a connection writes a frame only once that zxid is
//! durable (see `connection.rs`). So no client observes anything — a write's
//! reply, a read of its data, a notification — before the write is on disk,
//! which is what ZooKeeper's `SyncRequestProcessor` → `FinalRequestProcessor`
//! pipeline guarantees: a `kill -9` or a power cut loses no acknowledged write.
//!
//! # Files
//!
//! In the log directory, `log.<first zxid, 16 hex digits>` segments: an
//! 8-byte header (`ZKLG`, format version), then records framed as
//! `[u32 length][u32 CRC-32][payload]`, then zeros up to the preallocated
//! size (so that `fdatasync` does not have to update the file size). A
//! length of 0 marks the end; a record cut short, or a bad CRC in the last
//! record, is a torn write of a batch that was never acknowledged, and is
//! where reading stops. A bad CRC with a valid record after it is damage,
//! not a torn write: recovery refuses to start rather than drop the rest
//! (as ZooKeeper refuses a log whose CRC check fails). So is a gap in the
//! zxids (a lost or damaged older segment). A damaged snapshot is skipped
//! for the one before it, whose log segments are kept; with none left,
//! the gap check refuses.
//!
//! In the data directory, `snapshot.<zxid, 16 hex digits>`: `ZKSN`, format
//! version, the zxid, the sessions with their timeouts, the tree image
//! ([`DataTree::encode_image`](crate::tree::DataTree::encode_image)), and a
//! CRC-32 of all of it. A snapshot is written to a temporary file, synced
//! and renamed into place, so a crash leaves either no file or a whole one.
//! Every `snap_count` transactions the state is serialised under the lock,
//! the log is rolled to a new segment, and a background thread writes the
//! snapshot; then all but the newest `snap_retain_count` snapshots and the
//! log segments only they needed are deleted.
//!
//! Recovery loads the newest snapshot that reads back whole and replays the
//! logged records after its zxid; a gap in the zxid sequence refuses to start
//! rather than serve a wrong tree.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zkit_proto::jute::{read_i32, read_i64, read_string, write_i32, write_i64, write_string};
use zkit_proto::{Decode, DecodeError, Encode, Id};

const LOG_MAGIC: &[u8; 4] = b"ZKLG";
const SNAP_MAGIC: &[u8; 4] = b"ZKSN";
const FORMAT_VERSION: i32 = 1;
const LOG_HEADER_LEN: u64 = 8;
/// Records larger than this are refused when reading (a corrupt length).
const MAX_RECORD: usize = 64 << 20;

// ---- CRC-32 (IEEE 802.3, reflected, as zlib) ----------------------------------

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 of `data` (the zlib / PNG checksum).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

// ---- records --------------------------------------------------------------------

/// One logged transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The zxid it took.
    pub(crate) zxid: i64,
    /// Its time, ms since the epoch (ctime / mtime of what it changes).
    pub(crate) time_ms: i64,
    /// The session issuing it (or the session created / closed).
    pub(crate) session: i64,
    /// What it did.
    pub(crate) kind: RecordKind,
}

/// What a [`Record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// A write request that succeeded, as received (op code and body after
    /// the request header) with the auth ids of its connection: replayed
    /// through the tree, with ACL expansion from those ids and no
    /// permission checks (it passed them when it ran).
    Request { op: i32, ids: Vec<Id>, body: Bytes },
    /// A write that failed, or a reconfig: it only consumed its zxid.
    Error,
    /// A session was created with this negotiated timeout.
    CreateSession { timeout: i32 },
    /// A session was closed or expired: its ephemerals were deleted.
    CloseSession,
    /// The reaper deleted an empty container or an expired TTL node.
    DeleteContainer { path: String },
}

const TAG_REQUEST: u8 = 1;
const TAG_ERROR: u8 = 2;
const TAG_CREATE_SESSION: u8 = 3;
const TAG_CLOSE_SESSION: u8 = 4;
const TAG_DELETE_CONTAINER: u8 = 5;

impl Record {
    /// Appends the framed record (length, CRC, payload) to `out`.
    pub(crate) fn encode_framed(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; 8]);
        let mut p = BytesMut::new();
        write_i64(&mut p, self.zxid);
        write_i64(&mut p, self.time_ms);
        write_i64(&mut p, self.session);
        match &self.kind {
            RecordKind::Request { op, ids, body } => {
                p.put_u8(TAG_REQUEST);
                write_i32(&mut p, *op);
                write_i32(&mut p, ids.len() as i32);
                for id in ids {
                    id.encode(&mut p);
                }
                p.put_slice(body);
            }
            RecordKind::Error => p.put_u8(TAG_ERROR),
            RecordKind::CreateSession { timeout } => {
                p.put_u8(TAG_CREATE_SESSION);
                write_i32(&mut p, *timeout);
            }
            RecordKind::CloseSession => p.put_u8(TAG_CLOSE_SESSION),
            RecordKind::DeleteContainer { path } => {
                p.put_u8(TAG_DELETE_CONTAINER);
                write_string(&mut p, path);
            }
        }
        out.extend_from_slice(&p);
        let len = p.len() as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc32(&p).to_be_bytes());
    }

    /// Decodes a record payload (the bytes after length and CRC).
    pub(crate) fn decode_payload(mut p: Bytes) -> Result<Self, DecodeError> {
        let zxid = read_i64(&mut p)?;
        let time_ms = read_i64(&mut p)?;
        let session = read_i64(&mut p)?;
        if p.is_empty() {
            return Err(DecodeError::Truncated {
                what: "record tag",
                needed: 1,
            });
        }
        let kind = match p.get_u8() {
            TAG_REQUEST => {
                let op = read_i32(&mut p)?;
                let n = read_i32(&mut p)?;
                if n < 0 || n as usize > p.len() {
                    return Err(DecodeError::Invalid(format!("bad id count {n}")));
                }
                let mut ids = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    ids.push(Id::decode(&mut p)?);
                }
                RecordKind::Request { op, ids, body: p }
            }
            TAG_ERROR => RecordKind::Error,
            TAG_CREATE_SESSION => RecordKind::CreateSession {
                timeout: read_i32(&mut p)?,
            },
            TAG_CLOSE_SESSION => RecordKind::CloseSession,
            TAG_DELETE_CONTAINER => RecordKind::DeleteContainer {
                path: read_string(&mut p)?,
            },
            t => return Err(DecodeError::Invalid(format!("unknown record tag {t}"))),
        };
        Ok(Self {
            zxid,
            time_ms,
            session,
            kind,
        })
    }
}

// ---- file names -----------------------------------------------------------------

fn log_name(first_zxid: i64) -> String {
    format!("log.{first_zxid:016x}")
}

fn snapshot_name(zxid: i64) -> String {
    format!("snapshot.{zxid:016x}")
}

/// Files `<prefix>.<16 hex digits>` in `dir`, sorted by their zxid.
fn list(dir: &Path, prefix: &str) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(hex) = name.strip_prefix(prefix).and_then(|s| s.strip_prefix('.')) else {
            continue;
        };
        if hex.len() != 16 {
            continue;
        }
        if let Ok(z) = u64::from_str_radix(hex, 16) {
            out.push((z as i64, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

// ---- settings -------------------------------------------------------------------

/// Where and how the server persists its state.
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    /// Snapshots (`dataDir`).
    pub(crate) data_dir: PathBuf,
    /// Log segments (`dataLogDir`, default the data dir).
    pub(crate) log_dir: PathBuf,
    /// Transactions between snapshots (`snapCount`).
    pub(crate) snap_count: u64,
    /// Snapshots kept (`autopurge.snapRetainCount`, at least 1).
    pub(crate) snap_retain_count: usize,
    /// Log preallocation step in bytes (`preAllocSize`).
    pub(crate) prealloc: u64,
    /// `fdatasync` each batch (`forceSync`); without it a power cut (not
    /// a process crash) can lose acknowledged writes.
    pub(crate) force_sync: bool,
}

/// Takes the data directory's lock file (`zkit.lock`), so that a second
/// server cannot write the same files.
///
/// # Errors
/// I/O errors, or [`io::ErrorKind::WouldBlock`] when another server holds it.
pub(crate) fn lock_dir(dir: &Path) -> io::Result<File> {
    fs::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("zkit.lock"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "data directory {} is in use by another server",
                dir.display()
            ),
        )),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

// ---- recovery -------------------------------------------------------------------

/// What [`recover`] found on disk.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The newest whole snapshot: its zxid, its sessions and its tree image.
    pub(crate) snapshot: Option<Snapshot>,
    /// Logged records after the snapshot, in zxid order.
    pub(crate) records: Vec<Record>,
}

/// A snapshot read back.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) zxid: i64,
    pub(crate) sessions: Vec<(i64, i32)>,
    /// The tree image, for [`DataTree::decode_image`](crate::tree::DataTree::decode_image).
    pub(crate) image: Bytes,
}

/// Serialises a snapshot: header, sessions, the tree image written by
/// `image`, and the trailing CRC (computed here).
pub(crate) fn encode_snapshot(
    zxid: i64,
    sessions: impl Iterator<Item = (i64, i32)>,
    image: impl FnOnce(&mut BytesMut),
) -> BytesMut {
    let mut buf = BytesMut::with_capacity(1 << 16);
    buf.put_slice(SNAP_MAGIC);
    write_i32(&mut buf, FORMAT_VERSION);
    write_i64(&mut buf, zxid);
    let count_at = buf.len();
    write_i32(&mut buf, 0);
    let mut n = 0i32;
    for (id, timeout) in sessions {
        write_i64(&mut buf, id);
        write_i32(&mut buf, timeout);
        n += 1;
    }
    buf[count_at..count_at + 4].copy_from_slice(&n.to_be_bytes());
    image(&mut buf);
    buf
}

/// Reads a snapshot file; `None` when it is not whole (bad magic, CRC or
/// layout), which a crash while writing it cannot cause (rename is atomic)
/// but a damaged disk can.
fn read_snapshot(path: &Path) -> io::Result<Option<Snapshot>> {
    let mut raw = Vec::new();
    File::open(path)?.read_to_end(&mut raw)?;
    if raw.len() < 4 + 4 + 8 + 4 + 4 || &raw[..4] != SNAP_MAGIC {
        return Ok(None);
    }
    let (body, tail) = raw.split_at(raw.len() - 4);
    let want = u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if crc32(body) != want {
        return Ok(None);
    }
    let mut b = Bytes::copy_from_slice(&body[4..]);
    let parse = |b: &mut Bytes| -> Result<(i64, Vec<(i64, i32)>), DecodeError> {
        let version = read_i32(b)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::Invalid(format!("snapshot version {version}")));
        }
        let zxid = read_i64(b)?;
        let n = read_i32(b)?;
        if n < 0 || n as usize > b.len() / 12 {
            return Err(DecodeError::Invalid(format!("bad session count {n}")));
        }
        let mut sessions = Vec::with_capacity(n as usize);
        for _ in 0..n {
            sessions.push((read_i64(b)?, read_i32(b)?));
        }
        Ok((zxid, sessions))
    };
    match parse(&mut b) {
        Ok((zxid, sessions)) => Ok(Some(Snapshot {
            zxid,
            sessions,
            image: b,
        })),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable snapshot");
            Ok(None)
        }
    }
}

/// Reads the records of one log segment up to its end (zeros, the end of
/// the file, or a torn record).
fn read_segment(path: &Path) -> io::Result<(Vec<Record>, u64)> {
    let mut raw = Vec::new();
    File::open(path)?.read_to_end(&mut raw)?;
    if raw.len() < LOG_HEADER_LEN as usize {
        return Ok((Vec::new(), 0));
    }
    if &raw[..4] != LOG_MAGIC {
        return Err(invalid(format!(
            "{}: not a zkit log segment",
            path.display()
        )));
    }
    let version = i32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
    if version != FORMAT_VERSION {
        return Err(invalid(format!(
            "{}: log format version {version}",
            path.display()
        )));
    }
    let mut records = Vec::new();
    let mut pos = LOG_HEADER_LEN as usize;
    let raw = Bytes::from(raw);
    loop {
        if pos + 8 > raw.len() {
            break;
        }
        let len = u32::from_be_bytes([raw[pos], raw[pos + 1], raw[pos + 2], raw[pos + 3]]) as usize;
        if len == 0 {
            break;
        }
        let crc = u32::from_be_bytes([raw[pos + 4], raw[pos + 5], raw[pos + 6], raw[pos + 7]]);
        if len > MAX_RECORD || pos + 8 + len > raw.len() {
            tracing::warn!(path = %path.display(), offset = pos, "torn record at the end of the log");
            break;
        }
        let payload = raw.slice(pos + 8..pos + 8 + len);
        if crc32(&payload) != crc {
            // A record cut short by a crash is the last thing in the log. A
            // bad record with a whole, valid record after it is damage in
            // the middle of the log: dropping the rest would silently lose
            // acknowledged writes, so recovery refuses (as ZooKeeper does on
            // a CRC failure).
            if valid_record_at(&raw, pos + 8 + len) {
                return Err(invalid(format!(
                    "{}: record at offset {pos} has a bad checksum but valid records follow: \
                     the log is damaged, not torn; refusing to recover a partial tree",
                    path.display()
                )));
            }
            tracing::warn!(path = %path.display(), offset = pos, "record with a bad checksum ends the log (torn write)");
            break;
        }
        match Record::decode_payload(payload) {
            Ok(r) => records.push(r),
            Err(e) => {
                return Err(invalid(format!(
                    "{}: undecodable record at offset {pos}: {e}",
                    path.display()
                )))
            }
        }
        pos += 8 + len;
    }
    Ok((records, pos as u64))
}

/// Whether a whole record with a matching checksum starts at `pos`.
fn valid_record_at(raw: &[u8], pos: usize) -> bool {
    let Some(header) = raw.get(pos..pos + 8) else {
        return false;
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_RECORD {
        return false;
    }
    raw.get(pos + 8..pos + 8 + len)
        .is_some_and(|payload| crc32(payload) == crc)
}

/// Loads what `storage` holds: the newest whole snapshot and the records
/// after it.
///
/// # Errors
/// I/O errors, a log segment that is not ours, or a gap in the zxids (a
/// lost log segment): the server must not start on a tree it cannot trust.
pub(crate) fn recover(storage: &Storage) -> io::Result<Recovered> {
    fs::create_dir_all(&storage.data_dir)?;
    fs::create_dir_all(&storage.log_dir)?;
    let mut out = Recovered::default();
    for (zxid, path) in list(&storage.data_dir, "snapshot")?.into_iter().rev() {
        match read_snapshot(&path)? {
            Some(s) if s.zxid == zxid => {
                out.snapshot = Some(s);
                break;
            }
            _ => tracing::warn!(path = %path.display(), "skipping a damaged snapshot"),
        }
    }
    let base = out.snapshot.as_ref().map_or(0, |s| s.zxid);
    let mut last = base;
    for (_, path) in list(&storage.log_dir, "log")? {
        let (records, _) = read_segment(&path)?;
        for r in records {
            if r.zxid <= last {
                continue;
            }
            if r.zxid != last + 1 {
                return Err(invalid(format!(
                    "transaction log gap: zxid {:#x} follows {last:#x} in {}",
                    r.zxid,
                    path.display()
                )));
            }
            last = r.zxid;
            out.records.push(r);
        }
    }
    Ok(out)
}

// ---- the writer -----------------------------------------------------------------

/// What the state lock holder hands to the writer thread.
#[derive(Debug, Default)]
struct Queue {
    /// Framed records not yet written.
    batch: Vec<u8>,
    /// Zxid of the last record in `batch` (or written).
    last_zxid: i64,
    /// A snapshot taken after the record that ends at this offset of
    /// `batch`: roll the log to a new segment there, then write it.
    snapshot: Option<(i64, BytesMut, usize)>,
    /// Stop after writing what is queued.
    stop: bool,
}

#[derive(Debug)]
struct Inner {
    queue: Mutex<Queue>,
    wake: Condvar,
    durable: watch::Sender<i64>,
    /// A snapshot is being written: do not start another.
    snapshotting: AtomicBool,
    storage: Storage,
    /// Time to write and sync each batch (`fsynctime`).
    fsync: Arc<crate::metrics::Summary>,
}

impl Inner {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The transaction log of a running server: [`append`](Self::append) under
/// the state lock, durability published on a watch channel.
#[derive(Debug)]
pub(crate) struct TxnLog {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
    /// Appended since the last snapshot.
    since_snapshot: u64,
    /// The data directory's lock, held while the server runs.
    _lock: File,
}

impl TxnLog {
    /// Starts the writer on a new segment after `last_zxid` (the last
    /// recovered zxid, which is durable: the segments read back are synced
    /// first). I/O errors later stop the server through `cancel`.
    pub(crate) fn start(
        storage: Storage,
        last_zxid: i64,
        cancel: CancellationToken,
        lock: File,
    ) -> io::Result<Self> {
        fs::create_dir_all(&storage.data_dir)?;
        fs::create_dir_all(&storage.log_dir)?;
        // What recovery read may still be only in the page cache.
        if let Some((_, path)) = list(&storage.log_dir, "log")?.last() {
            File::open(path)?.sync_all()?;
        }
        let segment = Segment::create(&storage.log_dir, last_zxid + 1, storage.prealloc)?;
        let (durable, _) = watch::channel(last_zxid);
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue {
                last_zxid,
                ..Queue::default()
            }),
            wake: Condvar::new(),
            durable,
            snapshotting: AtomicBool::new(false),
            storage,
            fsync: Arc::default(),
        });
        let thread = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("zkit-txn-log".into())
                .spawn(move || writer(&inner, segment, &cancel))?
        };
        Ok(Self {
            inner,
            thread: Some(thread),
            since_snapshot: 0,
            _lock: lock,
        })
    }

    /// The distribution of batch write + sync times (ZooKeeper's
    /// `fsynctime`).
    pub(crate) fn fsync_time(&self) -> Arc<crate::metrics::Summary> {
        self.inner.fsync.clone()
    }

    /// A receiver of the last durable zxid.
    pub(crate) fn durable(&self) -> watch::Receiver<i64> {
        self.inner.durable.subscribe()
    }

    /// Queues a record (call under the state lock, in zxid order).
    pub(crate) fn append(&mut self, record: &Record) {
        let mut q = self.inner.queue();
        record.encode_framed(&mut q.batch);
        q.last_zxid = record.zxid;
        drop(q);
        self.inner.wake.notify_one();
        self.since_snapshot += 1;
    }

    /// Whether a snapshot is due (`snap_count` records since the last one,
    /// and none is being written).
    pub(crate) fn snapshot_due(&self) -> bool {
        self.since_snapshot >= self.inner.storage.snap_count
            && !self.inner.snapshotting.load(Ordering::SeqCst)
    }

    /// Queues a snapshot of the state after `zxid` (the last appended
    /// record): the log rolls to a new segment and a background thread
    /// writes it.
    pub(crate) fn snapshot(&mut self, zxid: i64, image: BytesMut) {
        self.inner.snapshotting.store(true, Ordering::SeqCst);
        self.since_snapshot = 0;
        let mut q = self.inner.queue();
        let at = q.batch.len();
        q.snapshot = Some((zxid, image, at));
        drop(q);
        self.inner.wake.notify_one();
    }

    /// Writes what is queued, stops the writer and waits for it (and for a
    /// snapshot being written).
    pub(crate) fn stop(&mut self) {
        self.inner.queue().stop = true;
        self.inner.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TxnLog {
    fn drop(&mut self) {
        // Non-blocking: the writer finishes the queued batch and exits.
        self.inner.queue().stop = true;
        self.inner.wake.notify_one();
    }
}

/// An open log segment.
#[derive(Debug)]
struct Segment {
    file: File,
    /// Where the next record goes.
    pos: u64,
    /// Bytes allocated (written, zeros included).
    allocated: u64,
    prealloc: u64,
}

impl Segment {
    fn create(dir: &Path, first_zxid: i64, prealloc: u64) -> io::Result<Self> {
        let path = dir.join(log_name(first_zxid));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let mut header = Vec::with_capacity(8);
        header.extend_from_slice(LOG_MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        file.write_all(&header)?;
        let seg = Self {
            file,
            pos: LOG_HEADER_LEN,
            allocated: LOG_HEADER_LEN,
            prealloc: prealloc.max(4096),
        };
        // Zero-filled space is added by the first write (see `ensure`), not
        // here: a start-up or a log roll writes only the header.
        seg.file.sync_all()?;
        sync_dir(dir)?;
        Ok(seg)
    }

    /// Makes sure `extra` more bytes fit in the allocated (zero-filled)
    /// part, growing it by whole preallocation steps.
    fn ensure(&mut self, extra: u64) -> io::Result<bool> {
        let need = self.pos + extra + 8; // room for the zero end marker
        if need <= self.allocated {
            return Ok(false);
        }
        let target = need.div_ceil(self.prealloc) * self.prealloc;
        let zeros = vec![0u8; (1 << 20).min((target - self.allocated) as usize)];
        while self.allocated < target {
            let n = zeros.len().min((target - self.allocated) as usize);
            self.file.write_all_at(&zeros[..n], self.allocated)?;
            self.allocated += n as u64;
        }
        Ok(true)
    }

    /// Writes a batch of framed records and syncs it.
    fn write(&mut self, batch: &[u8], force_sync: bool) -> io::Result<()> {
        let grew = self.ensure(batch.len() as u64)?;
        self.file.write_all_at(batch, self.pos)?;
        self.pos += batch.len() as u64;
        if force_sync {
            if grew {
                self.file.sync_all()?;
            } else {
                self.file.sync_data()?;
            }
        }
        Ok(())
    }
}

/// The writer thread: write and sync each batch, publish it as durable;
/// roll the log and hand off snapshots.
fn writer(inner: &Arc<Inner>, mut segment: Segment, cancel: &CancellationToken) {
    let mut snap_thread: Option<JoinHandle<()>> = None;
    loop {
        let (batch, last, snapshot, stop) = {
            let mut q = inner.queue();
            while q.batch.is_empty() && q.snapshot.is_none() && !q.stop {
                q = inner.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            (
                std::mem::take(&mut q.batch),
                q.last_zxid,
                q.snapshot.take(),
                q.stop,
            )
        };
        // Records before the snapshot go to the current segment, the rest
        // to the segment the snapshot starts.
        let split = snapshot.as_ref().map_or(batch.len(), |s| s.2);
        let synced = std::time::Instant::now();
        if split > 0 {
            if let Err(e) = segment.write(&batch[..split], inner.storage.force_sync) {
                fail(inner, cancel, &e);
                return;
            }
        }
        if let Some((zxid, image, _)) = snapshot {
            // Every record up to `zxid` is in the segment just written:
            // later ones go to a new segment, which the purge can keep
            // while dropping the older ones.
            match Segment::create(&inner.storage.log_dir, zxid + 1, inner.storage.prealloc) {
                Ok(s) => segment = s,
                Err(e) => {
                    fail(inner, cancel, &e);
                    return;
                }
            }
            if split < batch.len() {
                if let Err(e) = segment.write(&batch[split..], inner.storage.force_sync) {
                    fail(inner, cancel, &e);
                    return;
                }
            }
            if let Some(t) = snap_thread.take() {
                let _ = t.join();
            }
            let inner2 = inner.clone();
            let spawned = std::thread::Builder::new()
                .name("zkit-snapshot".into())
                .spawn(move || {
                    let storage = &inner2.storage;
                    match write_snapshot(storage, zxid, image).and_then(|()| purge(storage)) {
                        Ok(()) => tracing::info!(zxid = format_args!("{zxid:#x}"), "snapshot written"),
                        Err(e) => tracing::error!(error = %e, "writing a snapshot failed (the log still has everything)"),
                    }
                    inner2.snapshotting.store(false, Ordering::SeqCst);
                });
            match spawned {
                Ok(t) => snap_thread = Some(t),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the snapshot thread");
                    inner.snapshotting.store(false, Ordering::SeqCst);
                }
            }
        }
        if !batch.is_empty() {
            if inner.storage.force_sync {
                inner.fsync.record(synced.elapsed());
            }
            inner.durable.send_replace(last);
        }
        if stop && batch.is_empty() {
            break;
        }
    }
    if let Some(t) = snap_thread {
        let _ = t.join();
    }
}

fn fail(inner: &Inner, cancel: &CancellationToken, e: &io::Error) {
    tracing::error!(
        error = %e,
        log_dir = %inner.storage.log_dir.display(),
        "transaction log write failed: stopping the server (nothing unsynced was acknowledged)"
    );
    cancel.cancel();
}

/// Writes the first snapshot of a data directory (an import): `false`,
/// writing nothing, when `data_dir` or `log_dir` already holds snapshots or
/// log segments. Fails when a running server holds the directory.
pub(crate) fn write_initial_snapshot(
    data_dir: &Path,
    log_dir: &Path,
    zxid: i64,
    sessions: impl Iterator<Item = (i64, i32)>,
    image: impl FnOnce(&mut BytesMut),
) -> io::Result<bool> {
    let _lock = lock_dir(data_dir)?;
    if log_dir.exists() && !list(log_dir, "log")?.is_empty()
        || !list(data_dir, "snapshot")?.is_empty()
    {
        return Ok(false);
    }
    let storage = Storage {
        data_dir: data_dir.to_path_buf(),
        log_dir: log_dir.to_path_buf(),
        snap_count: 0,
        snap_retain_count: 1,
        prealloc: 0,
        force_sync: true,
    };
    write_snapshot(&storage, zxid, encode_snapshot(zxid, sessions, image))?;
    Ok(true)
}

/// Writes `snapshot.<zxid>` atomically (temp file, sync, rename, sync dir).
fn write_snapshot(storage: &Storage, zxid: i64, mut image: BytesMut) -> io::Result<()> {
    let crc = crc32(&image);
    image.put_u32(crc);
    let dir = &storage.data_dir;
    let tmp = dir.join(format!("{}.tmp", snapshot_name(zxid)));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&image)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(snapshot_name(zxid)))?;
    sync_dir(dir)
}

/// Keeps the newest `snap_retain_count` snapshots and the log segments that
/// can hold records after the oldest of them (ZooKeeper's `PurgeTxnLog`).
fn purge(storage: &Storage) -> io::Result<()> {
    let snaps = list(&storage.data_dir, "snapshot")?;
    let keep = storage.snap_retain_count.max(1);
    if snaps.len() <= keep {
        return Ok(());
    }
    let oldest_kept = snaps[snaps.len() - keep].0;
    for (_, path) in &snaps[..snaps.len() - keep] {
        fs::remove_file(path)?;
    }
    let logs = list(&storage.log_dir, "log")?;
    for pair in logs.windows(2) {
        // Every record of pair[0] precedes pair[1]'s first zxid.
        if pair[1].0 <= oldest_kept + 1 {
            fs::remove_file(&pair[0].1)?;
        }
    }
    // Stale temp files of snapshots that never completed.
    for entry in fs::read_dir(&storage.data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("snapshot.") && n.ends_with(".tmp"))
        {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(dir: &Path) -> Storage {
        Storage {
            data_dir: dir.join("data"),
            log_dir: dir.join("log"),
            snap_count: 100_000,
            snap_retain_count: 3,
            prealloc: 64 << 10,
            force_sync: true,
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "zkit-persist-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A log starting at zxid 0 in `st`, never cancelled.
    fn fresh_log(st: &Storage) -> TxnLog {
        TxnLog::start(
            st.clone(),
            0,
            CancellationToken::new(),
            lock_dir(&st.data_dir).unwrap(),
        )
        .unwrap()
    }

    fn rec(zxid: i64) -> Record {
        Record {
            zxid,
            time_ms: 1000 + zxid,
            session: 7,
            kind: RecordKind::Request {
                op: 5,
                ids: vec![Id {
                    scheme: "digest".into(),
                    id: "u:x".into(),
                }],
                body: Bytes::from(format!("body {zxid}")),
            },
        }
    }

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_round_trip() {
        let all = [
            rec(1),
            Record {
                zxid: 2,
                time_ms: 3,
                session: 4,
                kind: RecordKind::Error,
            },
            Record {
                zxid: 3,
                time_ms: 3,
                session: 4,
                kind: RecordKind::CreateSession { timeout: 4000 },
            },
            Record {
                zxid: 4,
                time_ms: 3,
                session: 4,
                kind: RecordKind::CloseSession,
            },
            Record {
                zxid: 5,
                time_ms: 3,
                session: 0,
                kind: RecordKind::DeleteContainer { path: "/c".into() },
            },
        ];
        for r in all {
            let mut buf = Vec::new();
            r.encode_framed(&mut buf);
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            assert_eq!(len, buf.len() - 8);
            let back = Record::decode_payload(Bytes::copy_from_slice(&buf[8..])).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn garbage_payloads_are_errors_not_panics() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 56) as u8
                })
                .collect();
            let _ = Record::decode_payload(Bytes::from(bytes));
        }
    }

    #[test]
    fn log_survives_restart_and_torn_tail() {
        let dir = tempdir("torn");
        let st = storage(&dir);
        let cancel = CancellationToken::new();
        let mut log = TxnLog::start(
            st.clone(),
            0,
            cancel.clone(),
            lock_dir(&st.data_dir).unwrap(),
        )
        .unwrap();
        let mut durable = log.durable();
        for z in 1..=50 {
            log.append(&rec(z));
        }
        log.stop();
        assert_eq!(*durable.borrow_and_update(), 50);
        // A torn write after the last record: a length with missing bytes.
        let (_, seg) = list(&st.log_dir, "log").unwrap().pop().unwrap();
        let (_, end) = read_segment(&seg).unwrap();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0, 0, 1, 0, 1, 2, 3, 4, 9, 9], end)
            .unwrap();
        let got = recover(&st).unwrap();
        assert!(got.snapshot.is_none());
        assert_eq!(got.records.len(), 50);
        assert_eq!(got.records[49], rec(50));
        // Start again after the recovered zxid; appends continue.
        drop(log);
        let mut log =
            TxnLog::start(st.clone(), 50, cancel, lock_dir(&st.data_dir).unwrap()).unwrap();
        for z in 51..=60 {
            log.append(&rec(z));
        }
        log.stop();
        let got = recover(&st).unwrap();
        assert_eq!(
            got.records.iter().map(|r| r.zxid).collect::<Vec<_>>(),
            (1..=60).collect::<Vec<_>>()
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_damaged_record_mid_log_refuses_recovery_but_a_damaged_tail_is_torn() {
        let dir = tempdir("damaged");
        let st = storage(&dir);
        let mut log = fresh_log(&st);
        for z in 1..=50 {
            log.append(&rec(z));
        }
        log.stop();
        drop(log);
        let (_, seg) = list(&st.log_dir, "log").unwrap().pop().unwrap();
        let pristine = fs::read(&seg).unwrap();
        // Record offsets, walking the frames.
        let mut offsets = Vec::new();
        let mut pos = LOG_HEADER_LEN as usize;
        while offsets.len() < 50 {
            offsets.push(pos);
            let len = u32::from_be_bytes(pristine[pos..pos + 4].try_into().unwrap()) as usize;
            pos += 8 + len;
        }
        // One flipped bit in record 25's payload: valid records follow, so
        // this is damage, not a torn write: no partial tree.
        let mut raw = pristine.clone();
        raw[offsets[24] + 10] ^= 0x01;
        fs::write(&seg, &raw).unwrap();
        let e = recover(&st).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        // A flipped bit in the checksum of record 25: the same.
        let mut raw = pristine.clone();
        raw[offsets[24] + 5] ^= 0x80;
        fs::write(&seg, &raw).unwrap();
        assert!(recover(&st).is_err());
        // The same damage in the last record: a torn tail, 49 records.
        let mut raw = pristine;
        raw[offsets[49] + 10] ^= 0x01;
        fs::write(&seg, &raw).unwrap();
        let got = recover(&st).unwrap();
        assert_eq!(got.records.len(), 49);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn snapshots_roll_the_log_and_purge_old_files() {
        let dir = tempdir("snap");
        let mut st = storage(&dir);
        st.snap_retain_count = 2;
        let mut log = fresh_log(&st);
        for round in 0..4i64 {
            for z in round * 10 + 1..=round * 10 + 10 {
                log.append(&rec(z));
            }
            let zxid = round * 10 + 10;
            while log.inner.snapshotting.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let image = encode_snapshot(zxid, [(7i64, 4000)].into_iter(), |b| {
                b.put_slice(format!("image {zxid}").as_bytes());
            });
            log.snapshot(zxid, image);
        }
        for z in 41..=45 {
            log.append(&rec(z));
        }
        log.stop();
        let snaps = list(&st.data_dir, "snapshot").unwrap();
        assert_eq!(snaps.iter().map(|s| s.0).collect::<Vec<_>>(), vec![30, 40]);
        let logs = list(&st.log_dir, "log").unwrap();
        assert!(logs.iter().all(|l| l.0 >= 21), "{logs:?}");
        let got = recover(&st).unwrap();
        let snap = got.snapshot.unwrap();
        assert_eq!(snap.zxid, 40);
        assert_eq!(snap.sessions, vec![(7, 4000)]);
        assert_eq!(&snap.image[..], b"image 40");
        assert_eq!(
            got.records.iter().map(|r| r.zxid).collect::<Vec<_>>(),
            (41..=45).collect::<Vec<_>>()
        );
        // A damaged newest snapshot: the previous one and the log take over.
        let newest = &list(&st.data_dir, "snapshot").unwrap()[1].1;
        let mut raw = fs::read(newest).unwrap();
        let n = raw.len();
        raw[n - 6] ^= 0xFF;
        fs::write(newest, raw).unwrap();
        let got = recover(&st).unwrap();
        assert_eq!(got.snapshot.unwrap().zxid, 30);
        assert_eq!(got.records.first().unwrap().zxid, 31);
        assert_eq!(got.records.last().unwrap().zxid, 45);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_gap_in_the_log_refuses_recovery() {
        let dir = tempdir("gap");
        let st = storage(&dir);
        let mut log = fresh_log(&st);
        for z in [1, 2, 3, 5] {
            log.append(&rec(z));
        }
        log.stop();
        let e = recover(&st).unwrap_err();
        assert!(e.to_string().contains("gap"), "{e}");
        fs::remove_dir_all(dir).unwrap();
    }
}
