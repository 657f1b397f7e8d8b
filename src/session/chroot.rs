//! Chroot prefixing and stripping on segment boundaries (PROTOCOL.md §4.12).

/// A validated chroot such as `/app` (never "/" and never a trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chroot(Option<String>);

impl Chroot {
    pub(crate) fn new(root: Option<String>) -> Self {
        Self(root.filter(|r| r != "/"))
    }

    /// Client path -> server path, as two parts to concatenate (the chroot,
    /// the rest), for callers that write it without building a `String`:
    /// "/" maps to the chroot itself, except as the parent of a sequential
    /// create, where it is "<chroot>/" (its children, not a sibling of the
    /// chroot as Java's client makes).
    pub(crate) fn server_parts<'a>(
        &'a self,
        path: &'a str,
        sequential: bool,
    ) -> (&'a str, &'a str) {
        match (&self.0, path) {
            (None, _) => ("", path),
            (Some(root), "/") if sequential => (root, "/"),
            (Some(root), "/") => (root, ""),
            (Some(root), _) => (root, path),
        }
    }

    /// Server path -> client path. Paths outside the chroot (e.g. the config
    /// node `/zookeeper/config`) are returned unchanged, as Java does.
    pub(crate) fn to_client(&self, path: &str) -> String {
        match &self.0 {
            None => path.to_string(),
            Some(root) => match path.strip_prefix(root.as_str()) {
                Some("") => "/".to_string(),
                // Segment boundary: "/app" must not strip "/apple".
                Some(rest) if rest.starts_with('/') => rest.to_string(),
                _ => path.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_strip_on_segment_boundaries() {
        let c = Chroot::new(Some("/app".into()));
        assert_eq!(c.server_parts("/", false), ("/app", ""));
        assert_eq!(c.server_parts("/", true), ("/app", "/"));
        assert_eq!(c.server_parts("/x/y", false), ("/app", "/x/y"));
        assert_eq!(c.to_client("/app"), "/");
        assert_eq!(c.to_client("/app/x"), "/x");
        assert_eq!(c.to_client("/apple"), "/apple");
        assert_eq!(c.to_client("/zookeeper/config"), "/zookeeper/config");
        let none = Chroot::new(None);
        assert_eq!(none.server_parts("/a", false), ("", "/a"));
        assert_eq!(none.server_parts("/", true), ("", "/"));
        assert_eq!(none.to_client("/a"), "/a");
    }
}
