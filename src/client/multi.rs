//! Multi (atomic transaction) and multiRead builders.

use bytes::Bytes;

use super::{await_reply, decode, Client};
use crate::error::{Error, Result};
use crate::proto::codes::OpCode;
use crate::proto::{
    CheckVersionRequest, DeleteRequest, MultiOp, MultiRequest, MultiResponse, MultiResult,
    PathWatchRequest, SetDataRequest, Stat,
};
use crate::types::{CreateOptions, Version};

/// The result of one op of a successful multi.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpResult {
    /// A create: the actual path and, from ZooKeeper 3.9 on, the Stat
    /// (3.8 returns the path only).
    Create {
        /// Actual path (relative to the chroot).
        path: String,
        /// Stat of the new node (3.9+ servers).
        stat: Option<Stat>,
    },
    /// A delete.
    Delete,
    /// A setData, with the new Stat.
    SetData(Stat),
    /// A version check.
    Check,
}

/// An atomic transaction being built (see [`Client::multi`]). Nothing is
/// sent until [`commit`](Self::commit).
#[derive(Debug)]
#[must_use = "a multi does nothing until committed"]
pub struct MultiWrite {
    client: Client,
    ops: Vec<MultiOp>,
    error: Option<Error>,
    /// Indexes of fence ops, with their client paths.
    fences: Vec<(usize, String)>,
}

impl MultiWrite {
    pub(super) fn new(client: Client) -> Self {
        Self {
            client,
            ops: Vec::new(),
            error: None,
            fences: Vec::new(),
        }
    }

    fn path(&mut self, path: &str, sequential: bool) -> Option<String> {
        match self.client.server_path(path, sequential) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    /// Adds a version check: the transaction fails unless `path` exists with
    /// this version (`Version::Any`: just exists).
    pub fn check(mut self, path: &str, version: Version) -> Self {
        if let Some(path) = self.path(path, false) {
            self.ops.push(MultiOp::Check(CheckVersionRequest {
                path,
                version: version.as_i32(),
            }));
        }
        self
    }

    /// Adds a fence: a version check like [`check`](Self::check), whose
    /// failure the commit reports as [`Error::Fenced`] (naming the fence)
    /// rather than as [`Error::MultiFailed`] at some index. Put it first:
    /// the transaction writes only while the fence holds (a lock node still
    /// ours, a leadership or lease node, a config version).
    ///
    /// ```no_run
    /// # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
    /// use zkit::Version;
    /// let r = zk
    ///     .multi()
    ///     .fence("/locks/job/_c_1234-lock-0000000007", Version::Any)
    ///     .set_data("/jobs/state", b"done", Version::Any)
    ///     .commit()
    ///     .await;
    /// if matches!(&r, Err(e) if e.is_fenced()) {
    ///     println!("lost the lock: nothing written");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn fence(mut self, path: &str, version: Version) -> Self {
        let index = self.ops.len();
        self = self.check(path, version);
        if self.ops.len() > index {
            self.fences.push((index, path.to_string()));
        }
        self
    }

    /// Adds a create (any mode, TTL and container included).
    pub fn create(mut self, path: &str, data: &[u8], options: &CreateOptions) -> Self {
        match self.client.create_op(path, data, options) {
            Ok(op) => self.ops.push(op),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Adds a setData.
    pub fn set_data(mut self, path: &str, data: &[u8], version: Version) -> Self {
        if let Some(path) = self.path(path, false) {
            self.ops.push(MultiOp::SetData(SetDataRequest {
                path,
                data: Some(Bytes::copy_from_slice(data)),
                version: version.as_i32(),
            }));
        }
        self
    }

    /// Adds a delete.
    pub fn delete(mut self, path: &str, version: Version) -> Self {
        if let Some(path) = self.path(path, false) {
            self.ops.push(MultiOp::Delete(DeleteRequest {
                path,
                version: version.as_i32(),
            }));
        }
        self
    }

    /// Number of ops so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no op was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Sends the transaction. Either every op is applied, or none is.
    ///
    /// # Errors
    /// [`Error::MultiFailed`] with the index and error of the first failing
    /// op (nothing was applied); a validation error of any op (nothing was
    /// sent); connection and session errors (a `ConnectionLoss` leaves the
    /// outcome unknown).
    ///
    /// # Cancel safety
    /// The request is sent when `commit` is called; dropping the future does
    /// not cancel it.
    pub fn commit(
        self,
    ) -> impl std::future::Future<Output = Result<Vec<OpResult>>> + Send + 'static {
        let client = self.client.clone();
        let fences = self.fences;
        // `None`: an empty multi, answered locally like Java does.
        let reply = match self.error {
            Some(e) => Some(Err(e)),
            None if self.ops.is_empty() => None,
            None => Some(client.send(
                OpCode::Multi,
                super::encode(&MultiRequest { ops: self.ops }),
            )),
        };
        async move {
            let Some(reply) = reply else {
                return Ok(Vec::new());
            };
            let r: MultiResponse = decode(await_reply(reply).await?)?;
            multi_results(&client, r).map_err(|e| match e {
                Error::MultiFailed { index, source } => {
                    match fences.iter().find(|(i, _)| *i == index) {
                        Some((_, path)) => Error::Fenced {
                            path: path.clone(),
                            source,
                        },
                        None => Error::MultiFailed { index, source },
                    }
                }
                other => other,
            })
        }
    }
}

fn multi_results(client: &Client, r: MultiResponse) -> Result<Vec<OpResult>> {
    // A failed multi: every result is an error; the first non-zero code
    // (not the -2 RuntimeInconsistency of the ops after it) is the cause.
    if r.results.iter().any(|x| matches!(x, MultiResult::Error(_))) {
        let (index, code) = r
            .results
            .iter()
            .enumerate()
            .find_map(|(i, x)| match x {
                MultiResult::Error(c) if *c != 0 => Some((i, *c)),
                _ => None,
            })
            .unwrap_or((0, crate::proto::codes::err::SYSTEM_ERROR));
        return Err(Error::MultiFailed {
            index,
            source: Box::new(Error::from_code(code)),
        });
    }
    r.results
        .into_iter()
        .map(|x| match x {
            MultiResult::Create(c) => Ok(OpResult::Create {
                path: client.client_path(&c.path),
                stat: None,
            }),
            MultiResult::Create2(c) => Ok(OpResult::Create {
                path: client.client_path(&c.path),
                stat: Some(c.stat),
            }),
            MultiResult::Delete => Ok(OpResult::Delete),
            MultiResult::SetData(s) => Ok(OpResult::SetData(s.stat)),
            MultiResult::Check => Ok(OpResult::Check),
            other => Err(Error::Protocol(format!(
                "unexpected multi result {other:?}"
            ))),
        })
        .collect()
}

/// The result of one read of a multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadResult {
    /// getData: data and Stat.
    Data(Bytes, Stat),
    /// getChildren: child names.
    Children(Vec<String>),
}

/// A batch of reads being built (see [`Client::multi_read`]).
#[derive(Debug)]
#[must_use = "a multi_read does nothing until executed"]
pub struct MultiRead {
    client: Client,
    ops: Vec<MultiOp>,
    error: Option<Error>,
}

impl MultiRead {
    pub(super) fn new(client: Client) -> Self {
        Self {
            client,
            ops: Vec::new(),
            error: None,
        }
    }

    fn push(mut self, path: &str, f: fn(PathWatchRequest) -> MultiOp) -> Self {
        match self.client.server_path(path, false) {
            Ok(path) => self.ops.push(f(PathWatchRequest { path, watch: false })),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Adds a getData.
    pub fn get_data(self, path: &str) -> Self {
        self.push(path, MultiOp::GetData)
    }

    /// Adds a getChildren.
    pub fn get_children(self, path: &str) -> Self {
        self.push(path, MultiOp::GetChildren)
    }

    /// Sends the reads; one result per read, in order (e.g. `Err(NoNode)` for
    /// a missing node, without failing the others).
    ///
    /// # Errors
    /// A validation error (nothing sent), connection and session errors.
    ///
    /// # Cancel safety
    /// Sent when called; dropping the future only discards the replies.
    pub fn execute(
        self,
    ) -> impl std::future::Future<Output = Result<Vec<Result<ReadResult>>>> + Send + 'static {
        let reply = match self.error {
            Some(e) => Some(Err(e)),
            None if self.ops.is_empty() => None,
            None => Some(self.client.send(
                OpCode::MultiRead,
                super::encode(&MultiRequest { ops: self.ops }),
            )),
        };
        async move {
            let Some(reply) = reply else {
                return Ok(Vec::new());
            };
            let r: MultiResponse = decode(await_reply(reply).await?)?;
            Ok(r.results
                .into_iter()
                .map(|x| match x {
                    MultiResult::GetData(g) => {
                        Ok(ReadResult::Data(g.data.unwrap_or_default(), g.stat))
                    }
                    MultiResult::GetChildren(c) => Ok(ReadResult::Children(c.children)),
                    MultiResult::Error(code) => Err(Error::from_code(code)),
                    other => Err(Error::Protocol(format!(
                        "unexpected multiRead result {other:?}"
                    ))),
                })
                .collect())
        }
    }
}
