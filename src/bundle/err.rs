//! Bundle diagnostics.
