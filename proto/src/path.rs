//! ZooKeeper path rules (`PathUtils.validatePath`), shared by the client
//! (checked before sending) and the server (checked on receipt).

use std::fmt;

/// A path that breaks one of ZooKeeper's path rules.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PathError {
    /// The offending path.
    pub path: String,
    /// Which rule it breaks.
    pub reason: &'static str,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid path {:?}: {}", self.path, self.reason)
    }
}

impl std::error::Error for PathError {}

/// Checks a ZooKeeper path. `sequential` allows a trailing `/` (the server
/// appends the sequence number to it).
///
/// ```
/// assert!(zkit_proto::validate_path("/app/lock-", false).is_ok());
/// assert_eq!(
///     zkit_proto::validate_path("/app//x", false).unwrap_err().reason,
///     "empty path segment ('//')"
/// );
/// ```
///
/// # Errors
/// A [`PathError`] naming the rule that failed.
pub fn validate_path(path: &str, sequential: bool) -> Result<(), PathError> {
    let fail = |reason| {
        Err(PathError {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return fail("path must not be empty");
    }
    if !path.starts_with('/') {
        return fail("path must start with '/'");
    }
    if path == "/" {
        return Ok(());
    }
    // A sequential create may end in '/': the server appends the number.
    let body = match path.strip_suffix('/') {
        Some(b) if sequential => b,
        Some(_) => return fail("path must not end with '/'"),
        None => path,
    };
    // Characters first: a branch-free pass the compiler vectorizes finds
    // an all-printable-ASCII path (the usual one) without decoding it.
    let printable = path
        .bytes()
        .fold(true, |ok, c| ok & (c.wrapping_sub(0x20) < 0x5f));
    if !printable {
        for c in path.chars() {
            let bad = c == '\u{0}'
                || ('\u{1}'..='\u{1f}').contains(&c)
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || ('\u{e000}'..='\u{f8ff}').contains(&c)
                || ('\u{fff0}'..='\u{ffff}').contains(&c)
                || (c as u32) > 0xffff;
            if bad {
                return fail("invalid character");
            }
        }
    }
    // Every '/' starts a segment, which must not be empty, "." or "..":
    // one pass over the bytes, looking ahead at each '/'.
    let b = body.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'/' {
            match &b[i + 1..] {
                [] | [b'/', ..] => return fail("empty path segment ('//')"),
                [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..] => {
                    return fail("relative segment '.' or '..'")
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The parent of `path` (`"/"` for top-level nodes and for `"/"`).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Whether `ancestor` is a proper ancestor of `path` (`"/"` is one of every
/// other path; `"/a"` is not one of `"/ab"`).
pub fn is_ancestor(ancestor: &str, path: &str) -> bool {
    if ancestor == "/" {
        return path != "/";
    }
    path.len() > ancestor.len()
        && path.starts_with(ancestor)
        && path.as_bytes()[ancestor.len()] == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_are_whole_components() {
        for (a, p, want) in [
            ("/", "/a", true),
            ("/", "/", false),
            ("/a", "/a/b/c", true),
            ("/a", "/a", false),
            ("/a", "/ab", false),
            ("/a/b", "/a", false),
        ] {
            assert_eq!(is_ancestor(a, p), want, "{a} {p}");
        }
    }

    #[test]
    fn valid_and_invalid_paths() {
        for ok in ["/", "/a", "/a/b", "/a.b/..c", "/zookeeper/config", "/ü"] {
            assert!(validate_path(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "/a/",
            "//",
            "/a//b",
            "/.",
            "/a/..",
            "/a\u{0}",
            "/\u{1f}",
            "/\u{ffff}",
            "/😀",
        ] {
            assert!(validate_path(bad, false).is_err(), "{bad:?}");
        }
        assert!(validate_path("/a/", true).is_ok());
        assert!(validate_path("/a//", true).is_err());
    }

    #[test]
    fn parents() {
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(parent("/"), "/");
    }
}
