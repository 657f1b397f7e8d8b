//! Write requests: decoded once from an op code and a body, and applied to
//! the tree within one transaction. Live requests ([`dispatch`]) and the
//! replay of the transaction log at start-up go through the same two steps,
//! so a logged write is re-applied exactly as it first ran.
//!
//! [`dispatch`]: crate::dispatch

use bytes::Bytes;
use zkit_proto::codes::{err, OpCode};
use zkit_proto::{
    CheckVersionRequest, Create2Response, CreateRequest, CreateResponse, CreateTtlRequest, Decode,
    DecodeResult, DeleteRequest, Encode, MultiRequest, MultiResponse, MultiResult, SetAclRequest,
    SetDataRequest, StatResponse,
};

use crate::tree::{DataTree, Trigger, Txn};
use crate::ErrorCode;

/// A reply: an error code, or success with an optional body.
pub(crate) type Reply = Result<Option<Box<dyn Encode>>, ErrorCode>;

/// One decoded write: every request that takes a zxid and changes (or
/// checks) the tree.
#[derive(Debug)]
pub(crate) enum WriteRequest {
    /// create (1), create2 (15) or createContainer (19).
    Create {
        /// Which of the three.
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
    /// setACL (7).
    SetAcl(SetAclRequest),
    /// check (13).
    Check(CheckVersionRequest),
    /// multi (14).
    Multi(MultiRequest),
}

/// What applying a write did.
pub(crate) struct WriteOutcome {
    /// The reply to send.
    pub(crate) reply: Reply,
    /// Watches to fire, in ZooKeeper's order (none when it failed).
    pub(crate) triggers: Vec<Trigger>,
    /// `None`: the transaction committed. Else the error code that failed
    /// it (for a multi: the code of the failing op).
    pub(crate) failure: Option<i32>,
}

impl WriteRequest {
    /// Decodes the body of `op` if it is a write; `Ok(None)` for any other op.
    ///
    /// # Errors
    /// The body does not decode as `op`'s request record.
    pub(crate) fn decode(op: OpCode, body: &mut Bytes) -> DecodeResult<Option<Self>> {
        Ok(Some(match op {
            OpCode::Create | OpCode::Create2 | OpCode::CreateContainer => Self::Create {
                op,
                req: CreateRequest::decode(body)?,
            },
            OpCode::CreateTtl => Self::CreateTtl(CreateTtlRequest::decode(body)?),
            OpCode::Delete => Self::Delete(DeleteRequest::decode(body)?),
            OpCode::SetData => Self::SetData(SetDataRequest::decode(body)?),
            OpCode::SetAcl => Self::SetAcl(SetAclRequest::decode(body)?),
            OpCode::Check => Self::Check(CheckVersionRequest::decode(body)?),
            OpCode::Multi => Self::Multi(MultiRequest::decode(body)?),
            _ => return Ok(None),
        }))
    }

    /// Applies the write to `tree` as transaction `txn` (its zxid, time,
    /// session and ACL hooks).
    pub(crate) fn apply(self, tree: &mut DataTree, txn: &Txn<'_>) -> WriteOutcome {
        fn done<T>(
            r: Result<(T, Vec<Trigger>), ErrorCode>,
            body: impl FnOnce(T) -> Reply,
        ) -> WriteOutcome {
            match r {
                Ok((result, triggers)) => WriteOutcome {
                    reply: body(result),
                    triggers,
                    failure: None,
                },
                Err(e) => WriteOutcome {
                    reply: Err(e),
                    triggers: Vec::new(),
                    failure: Some(e.0),
                },
            }
        }
        fn boxed<T: Encode + 'static>(body: T) -> Reply {
            Ok(Some(Box::new(body)))
        }
        match self {
            Self::Create { op, req } => done(
                tree.create(op, &req, txn).map(|a| (a.result, a.triggers)),
                |c| {
                    if op == OpCode::Create {
                        boxed(CreateResponse { path: c.path })
                    } else {
                        boxed(Create2Response {
                            path: c.path,
                            stat: c.stat,
                        })
                    }
                },
            ),
            Self::CreateTtl(req) => done(
                tree.create_ttl(&req, txn).map(|a| (a.result, a.triggers)),
                |c| {
                    boxed(Create2Response {
                        path: c.path,
                        stat: c.stat,
                    })
                },
            ),
            Self::Delete(req) => done(
                tree.delete(&req.path, req.version, txn)
                    .map(|a| (a.result, a.triggers)),
                |()| Ok(None),
            ),
            Self::SetData(req) => done(
                tree.set_data(&req.path, req.data, req.version, txn)
                    .map(|a| (a.result, a.triggers)),
                |stat| boxed(StatResponse { stat }),
            ),
            Self::SetAcl(req) => done(
                tree.set_acl(&req.path, &req.acl, req.version, txn)
                    .map(|stat| (stat, Vec::new())),
                |stat| boxed(StatResponse { stat }),
            ),
            Self::Check(req) => done(
                tree.check(&req.path, req.version, txn)
                    .map(|stat| (stat, Vec::new())),
                |stat| boxed(StatResponse { stat }),
            ),
            Self::Multi(req) => {
                let a = tree.multi(&req.ops, txn);
                // A failed multi answers every op: 0 before the failing one,
                // its code, RuntimeInconsistency after.
                let failed = a.result.iter().any(|r| matches!(r, MultiResult::Error(_)));
                let failure = failed.then(|| {
                    a.result
                        .iter()
                        .find_map(|r| match r {
                            MultiResult::Error(c)
                                if *c != 0 && *c != err::RUNTIME_INCONSISTENCY =>
                            {
                                Some(*c)
                            }
                            _ => None,
                        })
                        .unwrap_or(err::RUNTIME_INCONSISTENCY)
                });
                WriteOutcome {
                    reply: boxed(MultiResponse { results: a.result }),
                    triggers: a.triggers,
                    failure,
                }
            }
        }
    }
}
