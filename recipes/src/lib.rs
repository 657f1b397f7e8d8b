//! zkit recipes (see issue 5/6).
#![deny(missing_docs)]
