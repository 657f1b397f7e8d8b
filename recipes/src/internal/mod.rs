//! Machinery shared by the recipes: protected creation, container parents,
//! background deletes, sequence parsing and ordering, names held by live
//! handles.

pub(crate) mod held;
pub(crate) mod protected;
pub(crate) mod sequence;
