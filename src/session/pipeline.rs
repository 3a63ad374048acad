//! The statements of the pipelines that write into tables on their own (`CREATE | ALTER | DROP
//! SUBSCRIPTION`): recognised here, before the SQL parser (which takes none of them), checked
//! for an administrator, and handed to the [`Pipelines`] the server installed (`src/ingest`,
//! a layer above this one: it is reached through this trait, never imported).

use std::sync::Arc;

use super::{CommandTag, Outcome, Session};
use crate::error::{Error, Result};

/// What runs the pipeline statements (installed once at startup; see `Engine::set_pipelines`).
#[async_trait::async_trait]
pub trait Pipelines: Send + Sync {
    /// Carry out `sql` (a statement [`parse`] recognised) for `session`'s administrator; the
    /// command tag and the warnings for the client.
    async fn run(&self, session: &mut Session, sql: &str) -> Result<(CommandTag, Vec<String>)>;
}

/// `sql`, when it is a pipeline statement (by its first words): CREATE / ALTER / DROP
/// SUBSCRIPTION, and postgres_fdw's CREATE / DROP SERVER, USER MAPPING, FOREIGN TABLE and
/// IMPORT FOREIGN SCHEMA.
pub fn parse(sql: &str) -> Option<String> {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(3)
        .map(|w| w.trim_end_matches(';').to_ascii_uppercase())
        .collect();
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    matches!(
        (w(0), w(1), w(2)),
        ("CREATE" | "ALTER" | "DROP", "SUBSCRIPTION", _)
            | ("CREATE" | "DROP", "SERVER", _)
            | ("CREATE" | "DROP", "USER", "MAPPING")
            | ("CREATE" | "DROP", "FOREIGN", "TABLE")
            | ("IMPORT", "FOREIGN", "SCHEMA")
    )
    .then(|| sql.to_string())
}

/// Run a pipeline statement: administrators only (42501), outside transaction blocks (25001,
/// as PostgreSQL does for CREATE/DROP SUBSCRIPTION: a slot on another server cannot be
/// rolled back).
pub(super) async fn run(s: &mut Session, sql: &str) -> Result<Outcome> {
    if !s.principal.admin {
        return Err(Error::PermissionDenied(
            "must be an administrator to manage subscriptions, servers and foreign tables".into(),
        ));
    }
    if s.in_transaction {
        return Err(Error::Data {
            sqlstate: crate::error::SqlState::ActiveSqlTransaction,
            message: "subscriptions, servers and foreign tables cannot be managed inside a transaction block"
                .into(),
        });
    }
    let Some(p) = s.engine.pipelines() else {
        return Err(Error::unsupported(
            "subscriptions are not available in this server",
        ));
    };
    let (tag, warnings) = p.run(s, sql).await?;
    for w in warnings {
        s.warn(crate::error::SqlState::Warning, w);
    }
    Ok(Outcome::Command(tag))
}

/// The engine's slot for its pipelines.
#[derive(Default)]
pub struct Slot(std::sync::OnceLock<Arc<dyn Pipelines>>);

impl Slot {
    pub fn set(&self, p: Arc<dyn Pipelines>) {
        let _ = self.0.set(p);
    }
    pub fn get(&self) -> Option<Arc<dyn Pipelines>> {
        self.0.get().cloned()
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Pipelines(installed)"
        } else {
            "Pipelines(none)"
        })
    }
}
