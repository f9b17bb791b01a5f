//! Access analysis: who can use a resource, what a principal can reach, and
//! what a change to a bundle grants or takes away.
//!
//! Every answer is computed by deciding requests with the evaluator that
//! serves Authorize, over a finite universe the bundle speaks about
//! ([`Universe`]): its principals, actions, resources and classes of request
//! context. An answer is therefore exact for every request of the universe,
//! and says so: the universe's size, and what a bound cut from it, are part
//! of every result.

mod change;
pub mod query;
mod relevance;
pub mod universe;

pub use query::{
    Access, Budget, Change, Denial, Diff, Exhausted, Side, diff, what_can, what_can_each, who_can,
    who_can_each,
};
pub use universe::{Bounds, ContextClass, Universe};
