//! Request dispatch: one request of a connected session, decoded and applied
//! under the state lock (`PrepRequestProcessor` + `FinalRequestProcessor`).

use std::borrow::Cow;

use bytes::Bytes;
use zkit_proto::codes::{err, perms, AddWatchMode, OpCode, WatcherType};
use zkit_proto::{
    Acl, AddWatchRequest, AuthPacket, Decode, Encode, GetAclResponse, GetChildren2Response,
    GetChildrenResponse, GetDataResponse, Id, IntResponse, MultiRequest, MultiResponse,
    PathRequest, PathResponse, PathWatchRequest, ReconfigRequest, ReplyHeader, RequestHeader,
    SaslToken, SetWatches, SetWatches2, StatResponse, WatchesRequest, WhoAmIResponse,
};

use crate::acl::AclPolicy;
use crate::clock::Reading;
use crate::persist::{Record, RecordKind};
use crate::state::{Conn, Out, Shared, State};
use crate::tree::{AclHook, Txn};
use crate::wire::{notification, reply_frame, reply_in};
use crate::write::{Reply, WriteRequest};
use crate::{ErrorCode, ServerResult};

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading requests.
    Continue,
    /// Flush the queued frames and close.
    Close,
}

/// The tree's ACL hooks for one connection.
struct ConnAcl<'a> {
    policy: &'a AclPolicy,
    ids: &'a [Id],
}

impl AclHook for ConnAcl<'_> {
    fn fixup<'a>(&self, _path: &str, acl: &'a [Acl]) -> ServerResult<Cow<'a, [Acl]>> {
        if acl.iter().any(|a| a.id.scheme == crate::acl::SCHEME_AUTH) {
            // `auth` expands in the order ZooKeeper iterates the
            // connection's ids (its hash set), as whoAmI lists them.
            self.policy.fixup_acl_cow(acl, &java_auth_order(self.ids))
        } else {
            self.policy.fixup_acl_cow(acl, self.ids)
        }
    }

    fn check(&self, _path: &str, acl: &[Acl], perm: i32) -> ServerResult<()> {
        self.policy.check_perm(acl, self.ids, perm)
    }
}

/// A successful reply with a body.
fn ok<T: Encode + 'static>(body: T) -> Reply {
    Ok(Some(Box::new(body)))
}

fn decode<T: Decode>(body: &mut Bytes) -> Option<T> {
    T::decode(body).ok()
}

/// Handles one request frame of an established session, arrived at `arrival`.
pub(crate) fn handle(conn: &mut Conn, frame: Bytes, shared: &Shared, arrival: &Reading) -> Flow {
    let mut body = frame;
    let Ok(hdr) = RequestHeader::decode(&mut body) else {
        tracing::warn!("undecodable request header, closing connection");
        return Flow::Close;
    };
    if let Some(flow) = enforce_auth(conn, &hdr, shared) {
        return flow;
    }
    let raw = body.clone();
    let now = arrival.wall_ms;
    let mut st = shared.lock();
    let zxid_before = st.zxid;
    let mut failed = false;
    if !st.sessions.touch(conn.session, arrival.monotonic_ms) {
        // Expired or closing: ZooKeeper drops the request; the expirer
        // closes the connection.
        return Flow::Continue;
    }
    if st.session_conn.get(&conn.session) != Some(&conn.id) {
        // The session moved to a newer connection, and ZooKeeper closed
        // this one then: bytes that still arrive here (an old connection's
        // late requests) are not applied after the new connection's.
        return Flow::Close;
    }
    let xid = hdr.xid;
    let Some(op) = OpCode::from_code(hdr.op) else {
        return unimplemented(conn, xid, hdr.op);
    };
    let write = match WriteRequest::decode(op, &mut body) {
        Ok(w) => w,
        Err(_) => return bad_request(xid, op),
    };
    let mut flow = Flow::Continue;
    let reply: Option<Reply> = if let Some(write) = write {
        let zxid = st.next_zxid();
        let hook = ConnAcl {
            policy: &shared.policy,
            ids: conn.auth.ids(),
        };
        let txn = Txn::new(zxid, now, conn.session).with_acl(&hook);
        let out = write.apply(&mut st.tree, &txn);
        st.fire(&out.triggers);
        failed = out.failure.is_some();
        Some(out.reply)
    } else {
        match op {
            OpCode::Ping => Some(Ok(None)),
            OpCode::MultiRead => {
                let Some(req) = decode::<MultiRequest>(&mut body) else {
                    return bad_request(xid, op);
                };
                let hook = ConnAcl {
                    policy: &shared.policy,
                    ids: conn.auth.ids(),
                };
                let results = st.tree.multi_read(&req.ops, &hook);
                Some(ok(MultiResponse { results }))
            }
            OpCode::Exists => {
                let Some(req) = decode::<PathWatchRequest>(&mut body) else {
                    return bad_request(xid, op);
                };
                if let Err(e) = valid(&req.path) {
                    Some(Err(e))
                } else {
                    if req.watch {
                        st.watches.add_exist_watch(conn.id, &req.path);
                    }
                    Some(match st.tree.stat(&req.path) {
                        Some(stat) => ok(StatResponse { stat }),
                        None => Err(ErrorCode(err::NO_NODE)),
                    })
                }
            }
            OpCode::GetData => {
                let Some(req) = decode::<PathWatchRequest>(&mut body) else {
                    return bad_request(xid, op);
                };
                let r = read_checked(&st, shared, conn, &req.path).and_then(|()| {
                    let (data, stat) = st.tree.get_data(&req.path)?;
                    Ok(GetDataResponse { data, stat })
                });
                if r.is_ok() && req.watch {
                    st.watches.add_data_watch(conn.id, &req.path);
                }
                Some(r.and_then(ok))
            }
            OpCode::GetChildren | OpCode::GetChildren2 => {
                let Some(req) = decode::<PathWatchRequest>(&mut body) else {
                    return bad_request(xid, op);
                };
                let r = read_checked(&st, shared, conn, &req.path)
                    .and_then(|()| st.tree.get_children(&req.path));
                if r.is_ok() && req.watch {
                    st.watches.add_child_watch(conn.id, &req.path);
                }
                Some(r.and_then(|(children, stat)| {
                    if op == OpCode::GetChildren {
                        ok(GetChildrenResponse { children })
                    } else {
                        ok(GetChildren2Response { children, stat })
                    }
                }))
            }
            OpCode::GetAcl => {
                let Some(req) = decode::<PathRequest>(&mut body) else {
                    return bad_request(xid, op);
                };
                Some(valid(&req.path).and_then(|()| {
                    let (acl, stat) = st.tree.get_acl(&req.path)?;
                    let acl = shared.policy.get_acl(&acl, conn.auth.ids())?;
                    ok(GetAclResponse { acl, stat })
                }))
            }
            OpCode::Sync => {
                let Some(req) = decode::<PathRequest>(&mut body) else {
                    return bad_request(xid, op);
                };
                Some(ok(PathResponse { path: req.path }))
            }
            OpCode::GetAllChildrenNumber => {
                let Some(req) = decode::<PathRequest>(&mut body) else {
                    return bad_request(xid, op);
                };
                Some(
                    read_checked(&st, shared, conn, &req.path)
                        .and_then(|()| st.tree.all_children_number(&req.path))
                        .and_then(|value| ok(IntResponse { value })),
                )
            }
            OpCode::GetEphemerals => {
                let Some(req) = decode::<PathRequest>(&mut body) else {
                    return bad_request(xid, op);
                };
                let eph = st.tree.get_ephemerals(conn.session, &req.path);
                Some(ok(GetChildrenResponse { children: eph }))
            }
            OpCode::CheckWatches | OpCode::RemoveWatches => {
                let Some(req) = decode::<WatchesRequest>(&mut body) else {
                    return bad_request(xid, op);
                };
                let r = match WatcherType::from_code(req.watcher_type) {
                    None => Err(ErrorCode(err::MARSHALLING_ERROR)),
                    Some(t) if op == OpCode::CheckWatches => {
                        st.watches.check_watches(conn.id, &req.path, t)
                    }
                    Some(t) => st.watches.remove_watches(conn.id, &req.path, t),
                };
                Some(r.map(|()| None))
            }
            OpCode::AddWatch => {
                let Some(req) = decode::<AddWatchRequest>(&mut body) else {
                    return bad_request(xid, op);
                };
                match AddWatchMode::from_code(req.mode) {
                    Some(mode) => {
                        st.watches.add_watch(conn.id, &req.path, mode);
                        Some(ok(IntResponse { value: 0 }))
                    }
                    None => Some(Err(ErrorCode(err::MARSHALLING_ERROR))),
                }
            }
            OpCode::SetWatches | OpCode::SetWatches2 => {
                let req = if op == OpCode::SetWatches {
                    let Some(r) = decode::<SetWatches>(&mut body) else {
                        return bad_request(xid, op);
                    };
                    SetWatches2 {
                        relative_zxid: r.relative_zxid,
                        data_watches: r.data_watches,
                        exist_watches: r.exist_watches,
                        child_watches: r.child_watches,
                        persistent_watches: Vec::new(),
                        persistent_recursive_watches: Vec::new(),
                    }
                } else {
                    let Some(r) = decode::<SetWatches2>(&mut body) else {
                        return bad_request(xid, op);
                    };
                    r
                };
                let State { watches, tree, .. } = &mut *st;
                let events = watches.set_watches(conn.id, &req, tree);
                for ev in events {
                    let _ = conn.tx.send(Out::Frame(notification(&ev, -1), st.gate()));
                }
                Some(Ok(None))
            }
            OpCode::WhoAmI => Some(ok(WhoAmIResponse {
                client_info: shared.policy.who_am_i(&java_auth_order(conn.auth.ids())),
            })),
            OpCode::Auth => {
                let Some(req) = decode::<AuthPacket>(&mut body) else {
                    return bad_request(xid, op);
                };
                let r = shared
                    .policy
                    .add_auth(&mut conn.auth, &req.scheme, &req.auth);
                let code = match r {
                    Ok(_) => 0,
                    Err(e) => {
                        tracing::info!(scheme = %req.scheme, "auth failed, closing connection");
                        flow = Flow::Close;
                        e.0
                    }
                };
                let hdr = ReplyHeader {
                    xid,
                    zxid: 0,
                    err: code,
                };
                let _ = conn.tx.send(Out::Frame(reply_frame(hdr, None), st.gate()));
                None
            }
            OpCode::Sasl => {
                let Some(req) = decode::<SaslToken>(&mut body) else {
                    return bad_request(xid, op);
                };
                let (code, token) = match &shared.settings.sasl_users {
                    // No JAAS Server section: ZooKeeper answers every token
                    // with success and a null token (SECURITY.md §3.2).
                    None => (0, None),
                    Some(users) => match conn.sasl.step(users, &req.token, &sasl_nonce()) {
                        crate::sasl::Outcome::Reply(t) => (0, Some(t)),
                        crate::sasl::Outcome::Authenticated { user, token } => {
                            tracing::debug!(%user, "SASL authenticated");
                            if shared.settings.sasl_super_users.contains(&user) {
                                conn.auth.insert(Id {
                                    scheme: "super".into(),
                                    id: String::new(),
                                });
                            }
                            conn.auth.insert(Id {
                                scheme: "sasl".into(),
                                id: user,
                            });
                            (0, Some(token))
                        }
                        crate::sasl::Outcome::Failed(why) => {
                            tracing::info!(%why, "SASL authentication failed, closing connection");
                            flow = Flow::Close;
                            if shared.settings.sasl_required() {
                                (err::SESSION_CLOSED_REQUIRE_SASL_AUTH, None)
                            } else {
                                (err::AUTH_FAILED, None)
                            }
                        }
                    },
                };
                let hdr = ReplyHeader {
                    xid,
                    zxid: 0,
                    err: code,
                };
                let frame = match token {
                    Some(t) => reply_frame(
                        hdr,
                        Some(&SaslToken {
                            token: Bytes::from(t),
                        }),
                    ),
                    // A null buffer: length -1.
                    None => reply_frame(hdr, Some(&NullBuffer)),
                };
                let _ = conn.tx.send(Out::Frame(frame, st.gate()));
                None
            }
            OpCode::CloseSession => {
                // This connection closes itself after the reply.
                if st.session_conn.get(&conn.session) == Some(&conn.id) {
                    st.session_conn.remove(&conn.session);
                }
                st.kill_session(conn.session, now);
                flow = Flow::Close;
                Some(Ok(None))
            }
            OpCode::Reconfig => {
                // Standalone 3.8: reconfigEnabled=false; the error txn still
                // consumes a zxid.
                if decode::<ReconfigRequest>(&mut body).is_none() {
                    return bad_request(xid, op);
                }
                st.next_zxid();
                Some(Err(ErrorCode(err::RECONFIG_DISABLED)))
            }
            _ => return unimplemented(conn, xid, hdr.op),
        }
    };
    if op != OpCode::CloseSession && st.zxid != zxid_before && st.log.is_some() {
        // The request took a zxid: log it before anything it caused can
        // reach a client (replies and notifications wait for the log).
        let ok = matches!(reply, Some(Ok(_))) && !failed;
        let kind = if ok {
            RecordKind::Request {
                op: hdr.op,
                ids: conn.auth.ids().to_vec(),
                body: raw,
            }
        } else {
            RecordKind::Error
        };
        st.log(now, conn.session, kind);
    }
    if let Some(reply) = reply {
        let zxid = st.zxid;
        let frame = match reply {
            Ok(body) => reply_in(
                &mut conn.frames,
                ReplyHeader { xid, zxid, err: 0 },
                body.as_deref(),
            ),
            Err(e) => reply_in(
                &mut conn.frames,
                ReplyHeader {
                    xid,
                    zxid,
                    err: e.0,
                },
                None,
            ),
        };
        let _ = conn.tx.send(Out::Frame(frame, st.gate()));
    }
    flow
}

/// ACL hooks for replaying a logged request: the request passed its
/// permission checks when it ran, and its `auth` ACL entries expand to the
/// digest ids its connection had then (independent of today's settings).
struct ReplayAcl<'a> {
    ids: &'a [Id],
}

impl AclHook for ReplayAcl<'_> {
    fn fixup<'a>(&self, _path: &str, acl: &'a [Acl]) -> ServerResult<Cow<'a, [Acl]>> {
        let mut out: Vec<Acl> = Vec::with_capacity(acl.len());
        let mut push = |a: Acl| {
            if !out.contains(&a) {
                out.push(a);
            }
        };
        for a in acl {
            if a.id.scheme == "auth" {
                for id in self.ids.iter().filter(|id| id.scheme == "digest") {
                    push(Acl {
                        perms: a.perms,
                        id: id.clone(),
                    });
                }
            } else {
                push(a.clone());
            }
        }
        if out.is_empty() {
            return Err(ErrorCode(err::INVALID_ACL));
        }
        Ok(Cow::Owned(out))
    }
}

/// Re-applies one logged transaction at start-up (`ZKDatabase.processTxn`);
/// `now_ms` (monotonic) starts the expiry clock of sessions it restores.
pub(crate) fn replay(st: &mut State, rec: Record, now_ms: u64) {
    let Record {
        zxid,
        time_ms,
        session,
        kind,
    } = rec;
    st.zxid = zxid;
    match kind {
        RecordKind::Request { op, ids, mut body } => {
            let hook = ReplayAcl { ids: &ids };
            let txn = Txn::new(zxid, time_ms, session).with_acl(&hook);
            let write = OpCode::from_code(op)
                .ok_or_else(|| format!("unknown op {op}"))
                .and_then(|code| match WriteRequest::decode(code, &mut body) {
                    Ok(Some(w)) => Ok(w),
                    Ok(None) => Err(format!("{code:?} is not a logged write")),
                    Err(e) => Err(e.to_string()),
                });
            let problem = match write {
                Ok(w) => w
                    .apply(&mut st.tree, &txn)
                    .failure
                    .map(|c| format!("error code {c}")),
                Err(e) => Some(e),
            };
            if let Some(e) = problem {
                tracing::warn!(
                    zxid = format_args!("{zxid:#x}"),
                    op,
                    error = %e,
                    "a logged write does not apply again"
                );
            }
        }
        RecordKind::Error => {}
        RecordKind::CreateSession { timeout } => st.sessions.restore(session, timeout, now_ms),
        RecordKind::CloseSession => {
            st.tree.kill_session(session, zxid);
            st.sessions.close(session);
        }
        RecordKind::DeleteContainer { path } => {
            let _ = st.tree.delete_container(&path, zxid);
        }
    }
}

/// A jute null buffer (length -1), the token of a SASL reply that has none.
struct NullBuffer;

impl Encode for NullBuffer {
    fn encode(&self, buf: &mut bytes::BytesMut) {
        bytes::BufMut::put_i32(buf, -1);
    }
}

/// A fresh DIGEST-MD5 nonce: 48 hex digits from the standard library's
/// randomly seeded hasher keys (unpredictable enough for a nonce, which
/// only has to be fresh; no random-number crate needed).
fn sasl_nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    (0..3)
        .map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(i);
            format!("{:016x}", h.finish())
        })
        .collect()
}

/// The only path check of ZooKeeper's read ops: a NUL is BadArguments;
/// any other malformed path simply is not found.
fn valid(path: &str) -> ServerResult<()> {
    if path.contains('\0') {
        return Err(ErrorCode(err::BAD_ARGUMENTS));
    }
    Ok(())
}

/// READ permission on an existing node (NoNode first, like
/// `FinalRequestProcessor`).
fn read_checked(st: &State, shared: &Shared, conn: &Conn, path: &str) -> ServerResult<()> {
    valid(path)?;
    let acl = st.tree.acl(path)?;
    shared.policy.check_perm(acl, conn.auth.ids(), perms::READ)
}

/// An undecodable request body: logged, and the connection is closed.
fn bad_request(xid: i32, op: OpCode) -> Flow {
    tracing::warn!(xid, ?op, "undecodable request, closing connection");
    Flow::Close
}

/// Unknown op: `(xid, -1, Unimplemented)`, then close.
fn unimplemented(conn: &Conn, xid: i32, op: i32) -> Flow {
    tracing::warn!(xid, op, "unknown op code, closing connection");
    let hdr = ReplyHeader {
        xid,
        zxid: -1,
        err: err::UNIMPLEMENTED,
    };
    // Gate 0: the reply reveals nothing, and the connection writes its
    // frames in order anyway.
    let _ = conn.tx.send(Out::Frame(reply_frame(hdr, None), 0));
    Flow::Close
}

/// `enforce.auth` (ZooKeeper's `AuthenticationHelper`): a request other than
/// auth (100) or SASL (102) from a connection with no id of an enforced
/// scheme gets a header-only `(xid, 0, -124)` and the connection closes.
/// Pings are requests too. `None`: the request may go on.
fn enforce_auth(conn: &Conn, hdr: &RequestHeader, shared: &Shared) -> Option<Flow> {
    let schemes = &shared.settings.enforce_auth_schemes;
    if schemes.is_empty()
        || hdr.op == OpCode::Auth.code()
        || hdr.op == OpCode::Sasl.code()
        || conn
            .auth
            .ids()
            .iter()
            .any(|id| schemes.contains(&id.scheme))
    {
        return None;
    }
    tracing::warn!(
        schemes = ?conn.auth.ids().iter().map(|id| id.scheme.as_str()).collect::<Vec<_>>(),
        required = ?schemes,
        "client is not authenticated with a required scheme, closing connection"
    );
    let hdr = ReplyHeader {
        xid: hdr.xid,
        zxid: 0,
        err: err::SESSION_CLOSED_REQUIRE_SASL_AUTH,
    };
    let _ = conn.tx.send(Out::Frame(reply_frame(hdr, None), 0));
    Some(Flow::Close)
}

/// The auth ids in the order ZooKeeper reports them: its `ServerCnxn.authInfo`
/// is a `ConcurrentHashMap`-backed set, iterated bucket by bucket (`Id`'s
/// jute `hashCode`, spread, masked by the table size), insertion order within
/// a bucket. So whoAmI lists e.g. `digest` before the connection's `ip`.
fn java_auth_order(ids: &[Id]) -> Vec<Id> {
    fn java_string_hash(s: &str) -> i32 {
        s.encode_utf16()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
    }
    // Default capacity 16, doubled whenever the size reaches 3/4 of it.
    let mut table = 16usize;
    while ids.len() > table * 3 / 4 {
        table *= 2;
    }
    let bucket = |id: &Id| {
        let h = 17i32
            .wrapping_mul(37)
            .wrapping_add(java_string_hash(&id.scheme))
            .wrapping_mul(37)
            .wrapping_add(java_string_hash(&id.id));
        #[allow(clippy::cast_sign_loss)]
        let spread = ((h ^ ((h as u32) >> 16) as i32) & 0x7fff_ffff) as usize;
        spread & (table - 1)
    };
    let mut out = ids.to_vec();
    out.sort_by_key(bucket); // stable: insertion order within a bucket
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(scheme: &str, id: &str) -> Id {
        Id {
            scheme: scheme.into(),
            id: id.into(),
        }
    }

    #[test]
    fn who_am_i_order_follows_zookeepers_hash_set() {
        // Seen against ZooKeeper 3.8 (zkCli `addauth digest bob:pw; whoami`):
        // digest (bucket 0) before the connection's ip (bucket 12).
        let ip = id("ip", "127.0.0.1");
        let digest = id("digest", "bob:ikIaKsbtGweaHnb/jKn7OHqbunM=");
        assert_eq!(
            java_auth_order(&[ip.clone(), digest.clone()]),
            vec![digest, ip]
        );
    }
}
