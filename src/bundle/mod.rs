//! Bundles: a directory or `.tar.gz` holding policies and what they are
//! attached to, loaded whole or not at all (`bundle.md`).

pub mod err;
