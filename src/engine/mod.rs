//! What Lakegate adds to DataFusion's execution: physical optimizer rules and execution nodes.
//!
//! Each rule's own header says what upstream DataFusion lacks that makes it necessary, so it
//! can be dropped when the engine set moves. It may use `pg`, `catalog`, `storage`, `config`
//! and `error` (see `scripts/check-layers`).

pub mod adaptive_filter;
pub mod compact_views;
pub mod decimal_arith;
pub mod deferred_build;
pub mod dynamic_filter;
pub mod execute;
pub mod filter_estimates;
pub mod nodes;
pub mod prune_only;
pub mod semi_join;
pub mod shared_subplans;

pub use execute::{Executor, Logical, computed_on, hold, reads_tables};
