//! Machinery shared by the recipes: protected creation, container parents,
//! background deletes, sequence parsing and ordering.

pub(crate) mod protected;
pub(crate) mod sequence;
