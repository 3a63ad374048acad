//! Lakegate: a governed SQL gateway to the lakehouse.
//!
//! ```text
//! client ──pg wire──▶ wire/      decode messages, auth, TLS, portals, encode rows
//!                      ▼
//!                   session/     who is asking, settings, transaction state, statement dispatch
//!                      ▼
//!                   planner/     SQL ─▶ LogicalPlan (DataFusion), views inlined, pg functions
//!                      ▼
//!                   policy/      secure scans (row filters, masks), grants, audit
//!                      ▼
//!                   mv/          materialized-view rewrite, result cache
//!                      ▼
//!                   DataFusion   optimize ─▶ physical plan ─▶ execute
//!                      ▼
//!                   catalog/     names ─▶ tables (persistent catalog, attached Iceberg catalogs)
//!                   storage/     the warehouse (local, S3, Azure, GCS); Delta, Iceberg, files
//! ```
//! Data flows down; nothing below imports from above.

pub mod catalog;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod mv;
pub mod pg;
pub mod planner;
pub mod policy;
pub mod server;
pub mod session;
pub mod storage;
pub mod wire;
