//! Lakegate: a governed SQL gateway to the lakehouse.
//!
//! ```text
//! client ──pg wire──▶ wire/      decode messages, auth, TLS, portals, encode rows
//!                      ▼
//!                   session/     who is asking, settings, transaction state, statement dispatch
//!                      ▼
//!                   planner/     SQL ─▶ LogicalPlan (DataFusion), views inlined, time travel
//!                      ▼
//!                   policy/      secure scans (row filters, masks), grants, audit
//!                      ▼
//!                   mv/          materialized-view rewrite, result cache
//!                      ▼
//!                   engine/      DataFusion optimize ─▶ physical plan (Lakegate's rules and
//!                      ▼         nodes) ─▶ execute on the compute runtime
//!                   pg/          PostgreSQL compatibility: pg_catalog, types, text, casts, functions
//!                      ▼
//!                   catalog/     names ─▶ tables (persistent catalog, attached Iceberg catalogs)
//!                   storage/     the warehouse (local, S3, Azure, GCS); Delta, Iceberg, files
//! ```
//! Data flows down; nothing below imports from above. The layer order, top to bottom, is
//! checked by `scripts/check-layers` (the one list of it): cli, server, wire (and ingest),
//! session, observe, planner, policy, mv, engine, pg, catalog, storage, config, error.

pub mod catalog;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod ingest;
pub mod mv;
pub mod pg;
pub mod planner;
pub mod policy;
pub mod server;
pub mod session;
pub mod storage;
pub mod wire;
