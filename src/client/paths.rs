//! Whole-path helpers built on the single operations: creating missing
//! parents (Curator's `creatingParentsIfNeeded`, kazoo's `makepath`) and
//! deleting a subtree (Curator's `deletingChildrenIfNeeded`, kazoo's
//! `recursive=True`).

use crate::error::{Error, Result};
use crate::proto::Acl;
use crate::types::{CreateMode, CreateOptions, Stat, Version};

use super::Client;

/// How many times a subtree delete lists a node again after finding new
/// children under it before giving up with [`Error::NotEmpty`].
const DELETE_ALL_ROUNDS: usize = 100;

/// The parent of an absolute path (`None` for `/` and top-level nodes'
/// parent `/`, which always exists).
fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

fn child(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

impl Client {
    /// Creates a node like [`create`](Self::create), first creating any
    /// missing parent as an empty persistent node with the same ACL (kazoo's
    /// `create(makepath=True)`, Curator's `creatingParentsIfNeeded`).
    ///
    /// The parents get the node's ACL, as with kazoo, so that a protected
    /// node does not sit under open parents (Curator gives them its ACL
    /// provider's, open by default). That ACL must let this client create
    /// children (`CREATE`), or the node cannot be created under a new
    /// parent ([`Error::NoAuth`]); make such parents first with
    /// [`ensure_path`](Self::ensure_path) or [`create`](Self::create).
    ///
    /// The node itself is created first: parents cost nothing when they
    /// exist. Parents that another client creates at the same time are fine,
    /// and a parent deleted between two steps is created again.
    ///
    /// ```no_run
    /// # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
    /// use zkit::{CreateMode, CreateOptions};
    /// let (path, _) = zk
    ///     .create_all("/app/jobs/job-", b"x", &CreateOptions::new(CreateMode::PersistentSequential))
    ///     .await?;
    /// assert!(path.starts_with("/app/jobs/job-"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`create`](Self::create); [`Error::NoChildrenForEphemerals`] when
    /// an existing ancestor is ephemeral.
    ///
    /// # Cancel safety
    /// Each create is sent when the previous one is answered; dropping the
    /// future leaves the parents created so far (empty persistent nodes),
    /// and a create already sent is not undone.
    pub async fn create_all(
        &self,
        path: &str,
        data: &[u8],
        options: &CreateOptions,
    ) -> Result<(String, Stat)> {
        let mut rounds = 0;
        loop {
            match self.create(path, data, options).await {
                Err(Error::NoNode) if rounds < DELETE_ALL_ROUNDS => {
                    rounds += 1;
                    if let Some(p) = parent(path) {
                        self.create_parents(p, &options.acl).await?;
                    }
                }
                r => return r,
            }
        }
    }

    /// Makes sure `path` exists: creates it and any missing ancestor as
    /// empty persistent nodes with the open ACL (Curator's `ZKPaths.mkdirs`,
    /// kazoo's `ensure_path`). An existing node is left as it is.
    ///
    /// ```no_run
    /// # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
    /// zk.ensure_path("/app/config/flags").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidPath`], [`Error::NoAuth`],
    /// [`Error::NoChildrenForEphemerals`], session errors.
    ///
    /// # Cancel safety
    /// Dropping the future leaves the nodes created so far.
    pub async fn ensure_path(&self, path: &str) -> Result<()> {
        crate::path::validate_path(path, false)?;
        if path == "/" || self.exists(path).await?.is_some() {
            return Ok(());
        }
        self.create_parents(path, &Acl::open_unsafe()).await
    }

    /// Creates `path` and its missing ancestors (empty persistent nodes with
    /// `acl`): walks up to the first node that exists (or could be
    /// created), then creates the missing ones top down. An ancestor deleted
    /// meanwhile starts it again.
    async fn create_parents(&self, path: &str, acl: &[Acl]) -> Result<()> {
        let opts = CreateOptions::new(CreateMode::Persistent).acl(acl.to_vec());
        for _ in 0..DELETE_ALL_ROUNDS {
            let mut missing: Vec<&str> = Vec::new();
            let mut at = Some(path);
            while let Some(p) = at {
                match self.create(p, b"", &opts).await {
                    Ok(_) | Err(Error::NodeExists) => break,
                    Err(Error::NoNode) => {
                        missing.push(p);
                        at = parent(p);
                    }
                    Err(e) => return Err(e),
                }
            }
            let mut raced = false;
            for p in missing.into_iter().rev() {
                match self.create(p, b"", &opts).await {
                    Ok(_) | Err(Error::NodeExists) => {}
                    Err(Error::NoNode) => {
                        raced = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !raced {
                return Ok(());
            }
        }
        Err(Error::NoNode)
    }

    /// Deletes `path` and everything below it, children first (Curator's
    /// `deletingChildrenIfNeeded`, kazoo's `delete(recursive=True)`). A node
    /// that is already gone counts as deleted; a node that gains children
    /// while the subtree is being deleted is listed again.
    ///
    /// Not atomic: other clients may see a partly deleted subtree, and a
    /// failure leaves the part not yet deleted.
    ///
    /// ```no_run
    /// # async fn demo(zk: zkit::Client) -> zkit::Result<()> {
    /// zk.delete_all("/app/scratch").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `/` (the whole tree);
    /// [`Error::InvalidPath`], [`Error::NoAuth`]; [`Error::NotEmpty`] when
    /// children keep appearing under a node; session errors.
    ///
    /// # Cancel safety
    /// Dropping the future stops between two requests: part of the subtree
    /// may be deleted.
    pub async fn delete_all(&self, path: &str) -> Result<()> {
        crate::path::validate_path(path, false)?;
        if path == "/" {
            return Err(Error::InvalidArgument(
                "delete_all(\"/\") would delete the whole tree".into(),
            ));
        }
        // Depth first: (node, children listed?).
        let mut stack = vec![(path.to_string(), false)];
        let mut relists = 0;
        while let Some((node, listed)) = stack.pop() {
            if !listed {
                match self.get_children(&node).await {
                    Ok((children, _)) => {
                        stack.push((node.clone(), true));
                        stack.extend(children.iter().map(|c| (child(&node, c), false)));
                    }
                    Err(Error::NoNode) => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            match self.delete(&node, Version::Any).await {
                Ok(()) | Err(Error::NoNode) => {}
                Err(Error::NotEmpty) if relists < DELETE_ALL_ROUNDS => {
                    relists += 1;
                    stack.push((node, false));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{child, parent};

    #[test]
    fn parents_and_children() {
        assert_eq!(parent("/a/b/c"), Some("/a/b"));
        assert_eq!(parent("/a"), None);
        assert_eq!(parent("/"), None);
        assert_eq!(child("/", "a"), "/a");
        assert_eq!(child("/a", "b"), "/a/b");
    }
}
