//! PostgreSQL compatibility: what a stock PostgreSQL client expects to find.
//!
//! - `pg_catalog`, `pg_shape`, `pg_static`: pg_catalog and information_schema, answered per
//!   session from the catalog and what the user may see;
//! - `types`, `pg_text`, `pg_cast`: PostgreSQL types over Arrow, their text forms and casts;
//! - `names`, `dialect`, `known_queries`: PostgreSQL's names, SQL dialect and the catalog
//!   queries of known clients;
//! - `functions`, `value_limits`: the PostgreSQL functions clients call;
//! - `describe`, `pg_semantics`: result descriptions and PostgreSQL's meaning of plans.
//!
//! It may use `catalog`, `storage`, `config` and `error` (see `scripts/check-layers`).

pub mod catalog_functions;
pub mod catalog_names;
pub mod describe;
pub mod dialect;
pub mod functions;
pub mod known_queries;
pub mod names;
pub mod pg_cast;
pub mod pg_catalog;
pub mod pg_semantics;
pub mod pg_shape;
pub mod pg_static;
pub mod pg_text;
pub mod types;
pub mod value_limits;
