//! Jute records (`zookeeper.jute`), in wire order.

use bytes::{Buf, Bytes, BytesMut};

use super::codes::OpCode;
use super::jute::{self, DecodeError, DecodeResult};
use super::{Decode, Encode};

/// A value that can be a field of a jute record.
pub trait Field: Sized {
    /// The fewest bytes an encoded value takes (bounds hostile vector counts).
    const MIN_LEN: usize;
    /// Reads the value.
    ///
    /// # Errors
    /// Any [`DecodeError`].
    fn read(buf: &mut Bytes) -> DecodeResult<Self>;
    /// Writes the value.
    fn write(&self, buf: &mut BytesMut);
}

impl Field for i32 {
    const MIN_LEN: usize = 4;
    fn read(buf: &mut Bytes) -> DecodeResult<Self> {
        jute::read_i32(buf)
    }
    fn write(&self, buf: &mut BytesMut) {
        jute::write_i32(buf, *self);
    }
}

impl Field for i64 {
    const MIN_LEN: usize = 8;
    fn read(buf: &mut Bytes) -> DecodeResult<Self> {
        jute::read_i64(buf)
    }
    fn write(&self, buf: &mut BytesMut) {
        jute::write_i64(buf, *self);
    }
}

impl Field for bool {
    const MIN_LEN: usize = 1;
    fn read(buf: &mut Bytes) -> DecodeResult<Self> {
        jute::read_bool(buf)
    }
    fn write(&self, buf: &mut BytesMut) {
        jute::write_bool(buf, *self);
    }
}

/// A jute `ustring`; null reads as "".
impl Field for String {
    const MIN_LEN: usize = 4;
    fn read(buf: &mut Bytes) -> DecodeResult<Self> {
        jute::read_string(buf)
    }
    fn write(&self, buf: &mut BytesMut) {
        jute::write_string(buf, self);
    }
}

/// A jute `buffer`; null reads as empty.
impl Field for Bytes {
    const MIN_LEN: usize = 4;
    fn read(buf: &mut Bytes) -> DecodeResult<Self> {
        jute::read_buffer_or_empty(buf)
    }
    fn write(&self, buf: &mut BytesMut) {
        jute::write_buffer(buf, self);
    }
}

/// A nullable jute `buffer` (-1 = null), for node data where ZooKeeper keeps
/// the difference between null and empty.
impl Field for Option<Bytes> {
    const MIN_LEN: usize = 4;
    fn read(buf: &mut Bytes) -> DecodeResult<Self> {
        jute::read_buffer(buf)
    }
    fn write(&self, buf: &mut BytesMut) {
        match self {
            Some(b) => jute::write_buffer(buf, b),
            None => jute::write_i32(buf, -1),
        }
    }
}

/// A jute `vector<T>`; null reads as empty.
impl<T: Field> Field for Vec<T> {
    const MIN_LEN: usize = 4;
    fn read(buf: &mut Bytes) -> DecodeResult<Self> {
        jute::read_vec(buf, T::MIN_LEN, T::read)
    }
    fn write(&self, buf: &mut BytesMut) {
        jute::write_i32(buf, i32::try_from(self.len()).unwrap_or(i32::MAX));
        for v in self {
            v.write(buf);
        }
    }
}

/// `Encode` and `Decode` for a record whose `Field` impl is written by hand.
macro_rules! codec_from_field {
    ($name:ident) => {
        impl Encode for $name {
            fn encode(&self, buf: &mut BytesMut) {
                Field::write(self, buf);
            }
        }

        impl Decode for $name {
            fn decode(buf: &mut Bytes) -> DecodeResult<Self> {
                Field::read(buf)
            }
        }
    };
}

macro_rules! record {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)*
        }

        impl Field for $name {
            const MIN_LEN: usize = 0 $(+ <$t as Field>::MIN_LEN)*;
            fn read(buf: &mut Bytes) -> DecodeResult<Self> {
                Ok(Self { $($f: Field::read(buf)?,)* })
            }
            #[allow(unused_variables)]
            fn write(&self, buf: &mut BytesMut) {
                $(Field::write(&self.$f, buf);)*
            }
        }

        codec_from_field!($name);
    };
}

// ---- data types -------------------------------------------------------------

record! {
    /// An identity: scheme and id (`Id`), e.g. `("world", "anyone")`.
    pub struct Id {
        /// Auth scheme: `world`, `auth`, `digest`, `ip`, `x509`, `sasl`, `super`.
        pub scheme: String,
        /// Scheme-specific id.
        pub id: String,
    }
}

record! {
    /// An access-control entry: permission bits for an identity (`ACL`).
    pub struct Acl {
        /// Permission bits ([`perms`](super::codes::perms)).
        pub perms: i32,
        /// Who gets them.
        pub id: Id,
    }
}

/// A znode's metadata (`Stat`, 68 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Stat {
    /// Zxid of the create.
    pub czxid: i64,
    /// Zxid of the last data change.
    pub mzxid: i64,
    /// Create time, ms since the epoch.
    pub ctime: i64,
    /// Last data change time, ms since the epoch.
    pub mtime: i64,
    /// Data version (number of setData calls).
    pub version: i32,
    /// Child version (creates + deletes of children).
    pub cversion: i32,
    /// ACL version.
    pub aversion: i32,
    /// Owning session id for ephemerals, else 0 (also 0 for container and TTL nodes).
    pub ephemeral_owner: i64,
    /// Length of the data.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// Zxid of the last change to the children.
    pub pzxid: i64,
}

/// Its encoded size.
const STAT_LEN: usize = 68;

/// The Stat is in nearly every reply: written as one 68-byte block and read
/// from one, rather than field by field.
impl Field for Stat {
    const MIN_LEN: usize = STAT_LEN;

    fn read(buf: &mut Bytes) -> DecodeResult<Self> {
        jute::need(buf, STAT_LEN, "Stat")?;
        // Read in place, then stepped over (no handle on the buffer taken).
        let b = &buf[..STAT_LEN];
        let i64_at = |at: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(v)
        };
        let i32_at = |at: usize| {
            let mut v = [0u8; 4];
            v.copy_from_slice(&b[at..at + 4]);
            i32::from_be_bytes(v)
        };
        let stat = Self {
            czxid: i64_at(0),
            mzxid: i64_at(8),
            ctime: i64_at(16),
            mtime: i64_at(24),
            version: i32_at(32),
            cversion: i32_at(36),
            aversion: i32_at(40),
            ephemeral_owner: i64_at(44),
            data_length: i32_at(52),
            num_children: i32_at(56),
            pzxid: i64_at(60),
        };
        buf.advance(STAT_LEN);
        Ok(stat)
    }

    fn write(&self, buf: &mut BytesMut) {
        let mut b = [0u8; STAT_LEN];
        b[0..8].copy_from_slice(&self.czxid.to_be_bytes());
        b[8..16].copy_from_slice(&self.mzxid.to_be_bytes());
        b[16..24].copy_from_slice(&self.ctime.to_be_bytes());
        b[24..32].copy_from_slice(&self.mtime.to_be_bytes());
        b[32..36].copy_from_slice(&self.version.to_be_bytes());
        b[36..40].copy_from_slice(&self.cversion.to_be_bytes());
        b[40..44].copy_from_slice(&self.aversion.to_be_bytes());
        b[44..52].copy_from_slice(&self.ephemeral_owner.to_be_bytes());
        b[52..56].copy_from_slice(&self.data_length.to_be_bytes());
        b[56..60].copy_from_slice(&self.num_children.to_be_bytes());
        b[60..68].copy_from_slice(&self.pzxid.to_be_bytes());
        buf.extend_from_slice(&b);
    }
}

codec_from_field!(Stat);

record! {
    /// An auth identity of a connection, as whoAmI reports it (`ClientInfo`).
    pub struct ClientInfo {
        /// Auth scheme.
        pub auth_scheme: String,
        /// User (id) within the scheme.
        pub user: String,
    }
}

// ---- connection ---------------------------------------------------------------

/// First frame from a client (`ConnectRequest`). `read_only` is optional on
/// the wire: old clients omit it, and then the server omits it in the reply
/// (`compat/ProtocolManager`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    /// Protocol version, always 0.
    pub protocol_version: i32,
    /// Highest zxid the client has seen (the server refuses to go back in time).
    pub last_zxid_seen: i64,
    /// Requested session timeout, ms.
    pub timeout: i32,
    /// Session to resume, or 0 for a new one.
    pub session_id: i64,
    /// Session password (16 zero bytes for a new session, as Java sends).
    pub passwd: Bytes,
    /// Whether a read-only server is acceptable; `None` if the field was absent.
    pub read_only: Option<bool>,
}

impl Encode for ConnectRequest {
    fn encode(&self, buf: &mut BytesMut) {
        self.protocol_version.write(buf);
        self.last_zxid_seen.write(buf);
        self.timeout.write(buf);
        self.session_id.write(buf);
        self.passwd.write(buf);
        if let Some(ro) = self.read_only {
            ro.write(buf);
        }
    }
}

impl Decode for ConnectRequest {
    fn decode(buf: &mut Bytes) -> DecodeResult<Self> {
        Ok(Self {
            protocol_version: Field::read(buf)?,
            last_zxid_seen: Field::read(buf)?,
            timeout: Field::read(buf)?,
            session_id: Field::read(buf)?,
            passwd: Field::read(buf)?,
            read_only: if buf.is_empty() {
                None
            } else {
                Some(Field::read(buf)?)
            },
        })
    }
}

/// The server's answer to a [`ConnectRequest`] (`ConnectResponse`), 36 or 37
/// bytes. `timeout <= 0` or `session_id == 0` means the session is expired or
/// the password was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    /// Protocol version, always 0.
    pub protocol_version: i32,
    /// Negotiated session timeout, ms.
    pub timeout: i32,
    /// Session id.
    pub session_id: i64,
    /// Session password.
    pub passwd: Bytes,
    /// Whether the server is read-only; `None` if the field was absent.
    pub read_only: Option<bool>,
}

impl Encode for ConnectResponse {
    fn encode(&self, buf: &mut BytesMut) {
        self.protocol_version.write(buf);
        self.timeout.write(buf);
        self.session_id.write(buf);
        self.passwd.write(buf);
        if let Some(ro) = self.read_only {
            ro.write(buf);
        }
    }
}

impl Decode for ConnectResponse {
    fn decode(buf: &mut Bytes) -> DecodeResult<Self> {
        Ok(Self {
            protocol_version: Field::read(buf)?,
            timeout: Field::read(buf)?,
            session_id: Field::read(buf)?,
            passwd: Field::read(buf)?,
            read_only: if buf.is_empty() {
                None
            } else {
                Some(Field::read(buf)?)
            },
        })
    }
}

record! {
    /// Header of every request after the handshake (`RequestHeader`).
    pub struct RequestHeader {
        /// Request id; replies echo it. Reserved values in [`xid`](super::codes::xid).
        pub xid: i32,
        /// [`OpCode`] wire value.
        pub op: i32,
    }
}

/// Header of every reply and notification (`ReplyHeader`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ReplyHeader {
    /// The request's xid, or -1 for a notification.
    pub xid: i32,
    /// The server's last processed zxid (-1 on notifications before 3.9).
    pub zxid: i64,
    /// Error code (0 = ok); the body follows only when 0.
    pub err: i32,
}

/// Every frame a server sends starts with one: written as one 16-byte block.
impl Field for ReplyHeader {
    const MIN_LEN: usize = 16;

    fn read(buf: &mut Bytes) -> DecodeResult<Self> {
        Ok(Self {
            xid: Field::read(buf)?,
            zxid: Field::read(buf)?,
            err: Field::read(buf)?,
        })
    }

    fn write(&self, buf: &mut BytesMut) {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.xid.to_be_bytes());
        b[4..12].copy_from_slice(&self.zxid.to_be_bytes());
        b[12..16].copy_from_slice(&self.err.to_be_bytes());
        buf.extend_from_slice(&b);
    }
}

codec_from_field!(ReplyHeader);

record! {
    /// A watch notification body (`WatcherEvent`).
    pub struct WatcherEvent {
        /// [`EventType`](super::codes::EventType) wire value.
        pub event_type: i32,
        /// Keeper state (always SyncConnected from a server).
        pub state: i32,
        /// Server-side path of the node.
        pub path: String,
    }
}

record! {
    /// `AuthPacket`: `add_auth` (xid -4, op 100).
    pub struct AuthPacket {
        /// Always 0.
        pub auth_type: i32,
        /// Scheme, e.g. `digest`.
        pub scheme: String,
        /// Credentials, e.g. `user:password` for digest.
        pub auth: Bytes,
    }
}

record! {
    /// Re-registers one-shot watches after a reconnect (op 101).
    pub struct SetWatches {
        /// Last zxid the client saw; changes after it fire at once.
        pub relative_zxid: i64,
        /// Data watch paths.
        pub data_watches: Vec<String>,
        /// Exist watch paths.
        pub exist_watches: Vec<String>,
        /// Child watch paths.
        pub child_watches: Vec<String>,
    }
}

record! {
    /// Re-registers one-shot and persistent watches after a reconnect (op 105, 3.6+).
    pub struct SetWatches2 {
        /// Last zxid the client saw; changes after it fire at once (one-shot only).
        pub relative_zxid: i64,
        /// Data watch paths.
        pub data_watches: Vec<String>,
        /// Exist watch paths.
        pub exist_watches: Vec<String>,
        /// Child watch paths.
        pub child_watches: Vec<String>,
        /// Persistent watch paths.
        pub persistent_watches: Vec<String>,
        /// Persistent-recursive watch paths.
        pub persistent_recursive_watches: Vec<String>,
    }
}

// ---- requests -----------------------------------------------------------------

record! {
    /// create / create2 / createContainer request (`CreateRequest`, ops 1, 15, 19).
    pub struct CreateRequest {
        /// Node path.
        pub path: String,
        /// Initial data (null allowed).
        pub data: Option<Bytes>,
        /// ACL, non-empty.
        pub acl: Vec<Acl>,
        /// [`create_flags`](super::codes::create_flags).
        pub flags: i32,
    }
}

record! {
    /// createTTL request (`CreateTTLRequest`, op 21).
    pub struct CreateTtlRequest {
        /// Node path.
        pub path: String,
        /// Initial data (null allowed).
        pub data: Option<Bytes>,
        /// ACL, non-empty.
        pub acl: Vec<Acl>,
        /// 5 or 6 (persistent or persistent-sequential, with TTL).
        pub flags: i32,
        /// TTL in ms, `0 < ttl <= 2^40 - 1`.
        pub ttl: i64,
    }
}

record! {
    /// delete request (`DeleteRequest`, op 2).
    pub struct DeleteRequest {
        /// Node path.
        pub path: String,
        /// Expected version, -1 = any.
        pub version: i32,
    }
}

record! {
    /// A path and a watch flag: exists (3), getData (4), getChildren (8), getChildren2 (12).
    pub struct PathWatchRequest {
        /// Node path.
        pub path: String,
        /// Whether to leave a one-shot watch.
        pub watch: bool,
    }
}

record! {
    /// A lone path: getACL (6), sync (9), getEphemerals (103, prefix),
    /// getAllChildrenNumber (104), deleteContainer (20).
    pub struct PathRequest {
        /// Node path (or prefix for getEphemerals).
        pub path: String,
    }
}

record! {
    /// setData request (`SetDataRequest`, op 5).
    pub struct SetDataRequest {
        /// Node path.
        pub path: String,
        /// New data (null allowed).
        pub data: Option<Bytes>,
        /// Expected version, -1 = any.
        pub version: i32,
    }
}

record! {
    /// setACL request (`SetACLRequest`, op 7).
    pub struct SetAclRequest {
        /// Node path.
        pub path: String,
        /// New ACL.
        pub acl: Vec<Acl>,
        /// Expected ACL version, -1 = any.
        pub version: i32,
    }
}

record! {
    /// check request (`CheckVersionRequest`, op 13).
    pub struct CheckVersionRequest {
        /// Node path.
        pub path: String,
        /// Expected version, -1 = any (node must exist).
        pub version: i32,
    }
}

record! {
    /// addWatch request (`AddWatchRequest`, op 106).
    pub struct AddWatchRequest {
        /// Node path (need not exist).
        pub path: String,
        /// [`AddWatchMode`](super::codes::AddWatchMode) wire value.
        pub mode: i32,
    }
}

record! {
    /// checkWatches (17) / removeWatches (18) request.
    pub struct WatchesRequest {
        /// Node path.
        pub path: String,
        /// [`WatcherType`](super::codes::WatcherType) wire value.
        pub watcher_type: i32,
    }
}

record! {
    /// reconfig request (`ReconfigRequest`, op 16).
    pub struct ReconfigRequest {
        /// Servers to add (comma-separated server specs), or "".
        pub joining_servers: String,
        /// Server ids to remove (comma-separated), or "".
        pub leaving_servers: String,
        /// A whole new member list (non-incremental), or "".
        pub new_members: String,
        /// Expected current config version, -1 = any.
        pub cur_config_id: i64,
    }
}

// ---- responses ----------------------------------------------------------------

record! {
    /// create response (`CreateResponse`).
    pub struct CreateResponse {
        /// Actual path (with the sequence suffix).
        pub path: String,
    }
}

record! {
    /// create2 / createContainer / createTTL response (`Create2Response`).
    pub struct Create2Response {
        /// Actual path (with the sequence suffix).
        pub path: String,
        /// Stat of the new node.
        pub stat: Stat,
    }
}

record! {
    /// A lone Stat: exists (`ExistsResponse`), setData (`SetDataResponse`), setACL (`SetACLResponse`).
    pub struct StatResponse {
        /// The node's Stat.
        pub stat: Stat,
    }
}

record! {
    /// getData response (`GetDataResponse`); also reconfig / getConfig.
    pub struct GetDataResponse {
        /// Data (null if the node was created with null data).
        pub data: Option<Bytes>,
        /// The node's Stat.
        pub stat: Stat,
    }
}

record! {
    /// getACL response (`GetACLResponse`).
    pub struct GetAclResponse {
        /// The ACL.
        pub acl: Vec<Acl>,
        /// The node's Stat.
        pub stat: Stat,
    }
}

record! {
    /// getChildren response (`GetChildrenResponse`), unsorted;
    /// also getEphemerals (`GetEphemeralsResponse`).
    pub struct GetChildrenResponse {
        /// Child names (or, for getEphemerals, full paths).
        pub children: Vec<String>,
    }
}

record! {
    /// getChildren2 response (`GetChildren2Response`).
    pub struct GetChildren2Response {
        /// Child names, unsorted.
        pub children: Vec<String>,
        /// The parent's Stat.
        pub stat: Stat,
    }
}

record! {
    /// A lone path: sync response (`SyncResponse`).
    pub struct PathResponse {
        /// The path.
        pub path: String,
    }
}

record! {
    /// A lone int: getAllChildrenNumber (`GetAllChildrenNumberResponse`),
    /// addWatch and multi error results (`ErrorResponse`).
    pub struct IntResponse {
        /// The number (or error code).
        pub value: i32,
    }
}

record! {
    /// whoAmI response (`WhoAmIResponse`).
    pub struct WhoAmIResponse {
        /// The connection's auth identities.
        pub client_info: Vec<ClientInfo>,
    }
}

record! {
    /// SASL token (`GetSASLRequest` / `SetSASLResponse`).
    pub struct SaslToken {
        /// Opaque token.
        pub token: Bytes,
    }
}

// ---- multi --------------------------------------------------------------------

record! {
    /// Header before each multi op / result (`MultiHeader`).
    pub struct MultiHeader {
        /// Op code of the op or result (-1 for an error result or the end marker).
        pub op: i32,
        /// True only on the end marker.
        pub done: bool,
        /// Error code (-1 in requests and on the end marker).
        pub err: i32,
    }
}

const MULTI_END: MultiHeader = MultiHeader {
    op: -1,
    done: true,
    err: -1,
};

/// One operation of a multi (op 14) or multiRead (op 22).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultiOp {
    /// create (1), create2 (15) or createContainer (19); `op` says which.
    Create {
        /// One of [`OpCode::Create`], [`OpCode::Create2`], [`OpCode::CreateContainer`].
        op: OpCode,
        /// The request.
        req: CreateRequest,
    },
    /// createTTL (21).
    CreateTtl(CreateTtlRequest),
    /// delete (2).
    Delete(DeleteRequest),
    /// setData (5).
    SetData(SetDataRequest),
    /// check (13).
    Check(CheckVersionRequest),
    /// getData (4), multiRead only.
    GetData(PathWatchRequest),
    /// getChildren (8), multiRead only.
    GetChildren(PathWatchRequest),
}

impl MultiOp {
    /// The op code this op is sent with.
    pub fn op_code(&self) -> OpCode {
        match self {
            Self::Create { op, .. } => *op,
            Self::CreateTtl(_) => OpCode::CreateTtl,
            Self::Delete(_) => OpCode::Delete,
            Self::SetData(_) => OpCode::SetData,
            Self::Check(_) => OpCode::Check,
            Self::GetData(_) => OpCode::GetData,
            Self::GetChildren(_) => OpCode::GetChildren,
        }
    }

    /// The path the op acts on.
    pub fn path(&self) -> &str {
        match self {
            Self::Create { req, .. } => &req.path,
            Self::CreateTtl(r) => &r.path,
            Self::Delete(r) => &r.path,
            Self::SetData(r) => &r.path,
            Self::Check(r) => &r.path,
            Self::GetData(r) | Self::GetChildren(r) => &r.path,
        }
    }

    /// Mutable access to the path (for chroot prefixing).
    pub fn path_mut(&mut self) -> &mut String {
        match self {
            Self::Create { req, .. } => &mut req.path,
            Self::CreateTtl(r) => &mut r.path,
            Self::Delete(r) => &mut r.path,
            Self::SetData(r) => &mut r.path,
            Self::Check(r) => &mut r.path,
            Self::GetData(r) | Self::GetChildren(r) => &mut r.path,
        }
    }
}

/// A multi / multiRead request (`MultiOperationRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiRequest {
    /// The operations, in order.
    pub ops: Vec<MultiOp>,
}

impl Encode for MultiRequest {
    fn encode(&self, buf: &mut BytesMut) {
        for op in &self.ops {
            MultiHeader {
                op: op.op_code().code(),
                done: false,
                err: -1,
            }
            .write(buf);
            match op {
                MultiOp::Create { req, .. } => req.write(buf),
                MultiOp::CreateTtl(r) => r.write(buf),
                MultiOp::Delete(r) => r.write(buf),
                MultiOp::SetData(r) => r.write(buf),
                MultiOp::Check(r) => r.write(buf),
                MultiOp::GetData(r) | MultiOp::GetChildren(r) => r.write(buf),
            }
        }
        MULTI_END.write(buf);
    }
}

impl Decode for MultiRequest {
    fn decode(buf: &mut Bytes) -> DecodeResult<Self> {
        let mut ops = Vec::new();
        loop {
            let h = MultiHeader::read(buf)?;
            if h.done {
                return Ok(Self { ops });
            }
            let op = match OpCode::from_code(h.op) {
                Some(op @ (OpCode::Create | OpCode::Create2 | OpCode::CreateContainer)) => {
                    MultiOp::Create {
                        op,
                        req: Field::read(buf)?,
                    }
                }
                Some(OpCode::CreateTtl) => MultiOp::CreateTtl(Field::read(buf)?),
                Some(OpCode::Delete) => MultiOp::Delete(Field::read(buf)?),
                Some(OpCode::SetData) => MultiOp::SetData(Field::read(buf)?),
                Some(OpCode::Check) => MultiOp::Check(Field::read(buf)?),
                Some(OpCode::GetData) => MultiOp::GetData(Field::read(buf)?),
                Some(OpCode::GetChildren) => MultiOp::GetChildren(Field::read(buf)?),
                _ => {
                    return Err(DecodeError::Invalid(format!(
                        "op {} is not allowed in a multi",
                        h.op
                    )))
                }
            };
            ops.push(op);
        }
    }
}

/// One result of a multi / multiRead response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultiResult {
    /// create (type 1): path only. ZooKeeper 3.8 answers create2 ops this way too.
    Create(CreateResponse),
    /// create2 / createContainer / createTTL (3.9+): path and Stat.
    Create2(Create2Response),
    /// delete succeeded.
    Delete,
    /// setData succeeded.
    SetData(StatResponse),
    /// check succeeded.
    Check,
    /// getData (multiRead).
    GetData(GetDataResponse),
    /// getChildren (multiRead).
    GetChildren(GetChildrenResponse),
    /// The op failed with this code (for a failed multi: 0 before the failing
    /// op, its code, then -2 RuntimeInconsistency after it).
    Error(i32),
}

/// A multi / multiRead response (`MultiResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiResponse {
    /// One result per op, in order.
    pub results: Vec<MultiResult>,
}

impl Encode for MultiResponse {
    fn encode(&self, buf: &mut BytesMut) {
        for r in &self.results {
            let (op, err) = match r {
                MultiResult::Create(_) => (OpCode::Create.code(), 0),
                MultiResult::Create2(_) => (OpCode::Create2.code(), 0),
                MultiResult::Delete => (OpCode::Delete.code(), 0),
                MultiResult::SetData(_) => (OpCode::SetData.code(), 0),
                MultiResult::Check => (OpCode::Check.code(), 0),
                MultiResult::GetData(_) => (OpCode::GetData.code(), 0),
                MultiResult::GetChildren(_) => (OpCode::GetChildren.code(), 0),
                MultiResult::Error(e) => (-1, *e),
            };
            MultiHeader {
                op,
                done: false,
                err,
            }
            .write(buf);
            match r {
                MultiResult::Create(c) => c.write(buf),
                MultiResult::Create2(c) => c.write(buf),
                MultiResult::SetData(s) => s.write(buf),
                MultiResult::GetData(g) => g.write(buf),
                MultiResult::GetChildren(g) => g.write(buf),
                MultiResult::Error(e) => e.write(buf),
                MultiResult::Delete | MultiResult::Check => {}
            }
        }
        MULTI_END.write(buf);
    }
}

impl Decode for MultiResponse {
    fn decode(buf: &mut Bytes) -> DecodeResult<Self> {
        let mut results = Vec::new();
        loop {
            let h = MultiHeader::read(buf)?;
            if h.done {
                return Ok(Self { results });
            }
            let r = match OpCode::from_code(h.op) {
                Some(OpCode::Create) => MultiResult::Create(Field::read(buf)?),
                Some(OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl) => {
                    MultiResult::Create2(Field::read(buf)?)
                }
                Some(OpCode::Delete) => MultiResult::Delete,
                Some(OpCode::SetData) => MultiResult::SetData(Field::read(buf)?),
                Some(OpCode::Check) => MultiResult::Check,
                Some(OpCode::GetData) => MultiResult::GetData(Field::read(buf)?),
                Some(OpCode::GetChildren) => MultiResult::GetChildren(Field::read(buf)?),
                Some(OpCode::Error) => MultiResult::Error(i32::read(buf)?),
                _ => {
                    return Err(DecodeError::Invalid(format!(
                        "unexpected multi result type {}",
                        h.op
                    )))
                }
            };
            results.push(r);
        }
    }
}
