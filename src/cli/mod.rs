//! The `verdict` command line.
