//! ACL values: permission bits and the common ACL lists (`ZooDefs.Perms`,
//! `ZooDefs.Ids`).

use std::fmt;

use crate::codes::perms;
use crate::{Acl, Id};

/// ACL permission bits (`ZooDefs.Perms`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms(pub i32);

impl Perms {
    /// Read data and list children.
    pub const READ: Self = Self(perms::READ);
    /// Set data.
    pub const WRITE: Self = Self(perms::WRITE);
    /// Create children.
    pub const CREATE: Self = Self(perms::CREATE);
    /// Delete children.
    pub const DELETE: Self = Self(perms::DELETE);
    /// Set the ACL.
    pub const ADMIN: Self = Self(perms::ADMIN);
    /// All of the above.
    pub const ALL: Self = Self(perms::ALL);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Perms {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl fmt::Debug for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [(1, 'r'), (2, 'w'), (4, 'c'), (8, 'd'), (16, 'a')];
        let s: String = names
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, c)| *c)
            .collect();
        write!(f, "Perms({s})")
    }
}

impl Acl {
    /// An ACL entry.
    pub fn new(perms: Perms, scheme: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            perms: perms.0,
            id: Id {
                scheme: scheme.into(),
                id: id.into(),
            },
        }
    }

    /// `world:anyone` with every permission (`ZooDefs.Ids.OPEN_ACL_UNSAFE`).
    pub fn open_unsafe() -> Vec<Self> {
        vec![Self::new(Perms::ALL, "world", "anyone")]
    }

    /// `world:anyone` read-only (`ZooDefs.Ids.READ_ACL_UNSAFE`).
    pub fn read_unsafe() -> Vec<Self> {
        vec![Self::new(Perms::READ, "world", "anyone")]
    }

    /// Every permission for the identities this connection authenticated as
    /// (`ZooDefs.Ids.CREATOR_ALL_ACL`, scheme `auth`).
    pub fn creator_all() -> Vec<Self> {
        vec![Self::new(Perms::ALL, "auth", "")]
    }

    /// A `digest` entry for `user` with `password`: the id is
    /// `user:base64(sha1("user:password"))`, as ZooKeeper's
    /// `DigestAuthenticationProvider.generateDigest` makes it.
    pub fn digest(perms: Perms, user: &str, password: &str) -> Self {
        Self::new(
            perms,
            "digest",
            crate::digest::generate_digest(user, password),
        )
    }
}
