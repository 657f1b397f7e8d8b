//! Client-side path validation: ZooKeeper's rules live in `zkit_proto` (the
//! server checks the same ones); here they become [`Error::InvalidPath`].

use crate::error::Error;

/// Checks a ZooKeeper path before it is sent. `sequential` allows a trailing
/// `/` (the server appends the sequence number to it).
///
/// ```
/// assert!(zkit::validate_path("/app/config", false).is_ok());
/// assert!(zkit::validate_path("/app/", false).is_err());
/// ```
///
/// # Errors
/// [`Error::InvalidPath`] naming the rule that failed.
pub fn validate_path(path: &str, sequential: bool) -> Result<(), Error> {
    crate::proto::validate_path(path, sequential).map_err(|e| Error::InvalidPath {
        path: e.path,
        reason: e.reason,
    })
}
