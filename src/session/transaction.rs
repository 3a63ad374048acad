//! BEGIN ... COMMIT: the writes of a transaction block are held by the session and carried out
//! at COMMIT, in the order they were sent, so other sessions see nothing before COMMIT and
//! ROLLBACK (or a dropped connection) leaves no trace. INSERTed rows are computed and checked
//! (NOT NULL, types) when the INSERT runs, like PostgreSQL, and consecutive INSERTs into one
//! table become one commit; UPDATE and DELETE are planned (and their rows counted) when sent and
//! applied at COMMIT, each one commit, so a concurrent change still answers 40001 there.
//! TRUNCATE waits for COMMIT too (one commit per table). The block's own reads see its pending
//! INSERTs and TRUNCATEs (`overlays`, catalog::overlay); a table with a pending UPDATE, DELETE
//! or MERGE is read as committed until COMMIT. The commits happen one after the other (a
//! failure part-way leaves the earlier ones committed; COMMIT then reports the error and the
//! block ends).

use datafusion::arrow::compute::cast;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;

use super::{CommandTag, Outcome, Session, query::bind};
use crate::catalog::TableEntry;
use crate::error::{Error, Result, SqlState};

use datafusion::sql::sqlparser::ast::{self};

/// A write waiting for COMMIT.
#[derive(Debug)]
pub enum Pending {
    /// Rows for one table.
    Rows {
        entry: TableEntry,
        name: String,
        /// (schema, table), for the block's own reads (catalog::overlay).
        key: (String, String),
        batches: Vec<RecordBatch>,
    },
    /// An UPDATE or DELETE.
    Change(super::dml::RowChange),
    /// A TRUNCATE of one table: (schema, table).
    Truncate(TableEntry, (String, String)),
}

/// How much was pending when a SAVEPOINT was set: entries, and rows batches of the last entry
/// (consecutive INSERTs into one table share an entry).
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    entries: usize,
    last_batches: usize,
}

pub fn mark(pending: &[Pending]) -> Mark {
    Mark {
        entries: pending.len(),
        last_batches: match pending.last() {
            Some(Pending::Rows { batches, .. }) => batches.len(),
            _ => 0,
        },
    }
}

/// ROLLBACK TO SAVEPOINT: forget what was added since `m`.
pub fn rollback_to(pending: &mut Vec<Pending>, m: Mark) {
    pending.truncate(m.entries);
    if let Some(Pending::Rows { batches, .. }) = pending.last_mut() {
        batches.truncate(m.last_batches);
    }
}

/// Keep an UPDATE or DELETE for COMMIT; its tag counts the rows it would change now.
pub async fn defer_change(session: &mut Session, change: super::dml::RowChange) -> Result<Outcome> {
    let rows = change.count(session).await?;
    let command = change.command();
    session.pending.push(Pending::Change(change));
    Ok(Outcome::Command(CommandTag::rows(command, rows)))
}

/// The planned INSERT of a statement in a block, and the table it writes: (insert, schema,
/// table, catalog entry).
pub fn insert_target<'a>(
    session: &Session,
    plan: &'a LogicalPlan,
) -> Result<(
    &'a datafusion::logical_expr::DmlStatement,
    String,
    String,
    TableEntry,
)> {
    let LogicalPlan::Dml(dml) = plan else {
        return Err(Error::internal("INSERT did not plan as an insert"));
    };
    let (schema, table) = match (dml.table_name.schema(), dml.table_name.table()) {
        (Some(s), t) => (s.to_string(), t.to_string()),
        (None, t) => (session.current_schema(), t.to_string()),
    };
    let entry = session.writable_target_named(&schema, &table, "INSERT")?;
    if entry.external {
        return Err(Error::unsupported(format!(
            "INSERT into the external table \"{table}\" inside a transaction block is not supported"
        )));
    }
    Ok((dml, schema, table, entry))
}

/// Run an INSERT's source query now and keep its rows for COMMIT.
pub async fn buffer_insert(
    session: &mut Session,
    stmt: &DfStatement,
    params: Vec<ScalarValue>,
) -> Result<Outcome> {
    let plan = bind(session.plan(stmt).await?, params)?;
    let (dml, schema, table, entry) = insert_target(session, &plan)?;
    let target = dml.target.schema();
    let batches = match session
        .context()
        .execute_logical_plan(dml.input.as_ref().clone())
        .await
    {
        Ok(df) => df.collect().await,
        Err(e) => Err(e),
    };
    let batches = match batches {
        Ok(b) => b,
        Err(e) => {
            let ctx = session.context();
            return Err(crate::planner::not_null::explain_values_error(ctx, stmt, e.into()).await);
        }
    };
    let rows = keep_rows(session, entry, &schema, &table, &target, batches)?;
    Ok(Outcome::Command(CommandTag::rows("INSERT", rows)))
}

/// Keep rows computed for `schema.table` (an INSERT's, a COPY FROM's) for COMMIT, after the
/// checks PostgreSQL makes when the rows are sent (NOT NULL); their count.
pub fn keep_rows(
    session: &mut Session,
    entry: TableEntry,
    schema: &str,
    table: &str,
    target: &datafusion::arrow::datatypes::SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<usize> {
    // NOT NULL is checked now, as PostgreSQL does, not at COMMIT.
    for b in &batches {
        for (i, f) in target.fields().iter().enumerate() {
            if !f.is_nullable() && b.column(i).null_count() > 0 {
                return Err(Error::NotNull(format!(
                    "null value in column \"{}\" of relation \"{table}\" violates not-null constraint",
                    f.name()
                )));
            }
        }
    }
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    match session.pending.last_mut() {
        Some(Pending::Rows {
            entry: e,
            batches: b,
            ..
        }) if e.location == entry.location => b.extend(batches),
        _ => session.pending.push(Pending::Rows {
            entry,
            name: format!("{schema}.{table}"),
            key: (schema.to_string(), table.to_string()),
            batches,
        }),
    }
    Ok(rows)
}

/// What the block's own reads see of its pending writes, by table: the rows its INSERTs hold
/// (after a TRUNCATE, only those). A table with a pending UPDATE, DELETE or MERGE is read as
/// committed (those are planned again at COMMIT, over what is committed then).
pub fn overlays(
    pending: &[Pending],
) -> std::collections::HashMap<(String, String), crate::catalog::overlay::Overlay> {
    use crate::catalog::overlay::Overlay;
    let mut out: std::collections::HashMap<(String, String), Overlay> = Default::default();
    let mut changed = std::collections::HashSet::new();
    for p in pending {
        match p {
            Pending::Rows { key, batches, .. } if !changed.contains(key) => out
                .entry(key.clone())
                .or_default()
                .batches
                .extend(batches.iter().cloned()),
            Pending::Rows { .. } => {}
            Pending::Truncate(_, key) if !changed.contains(key) => {
                out.insert(
                    key.clone(),
                    Overlay {
                        replaces: true,
                        batches: vec![],
                    },
                );
            }
            Pending::Truncate(..) => {}
            Pending::Change(change) => {
                let key = change.target();
                out.remove(&key);
                changed.insert(key);
            }
        }
    }
    out
}

/// Carry out the pending writes in order: an append commit per run of INSERTs into one table
/// (through the table's own INSERT path, Delta or Iceberg alike), a commit per UPDATE/DELETE.
pub async fn commit(session: &mut Session) -> Result<()> {
    let pending = std::mem::take(&mut session.pending);
    // What is applied is read as committed from now on.
    session.sync_overlays();
    for p in pending {
        match p {
            Pending::Rows {
                entry,
                name,
                batches,
                ..
            } => append(session, &entry, &name, batches).await?,
            Pending::Change(change) => {
                change.apply(session).await?;
            }
            Pending::Truncate(entry, _) => super::dml::truncate_now(session, &entry).await?,
        }
    }
    Ok(())
}

async fn append(
    session: &Session,
    entry: &TableEntry,
    name: &str,
    batches: Vec<RecordBatch>,
) -> Result<()> {
    use datafusion::datasource::provider_as_source;
    use datafusion::logical_expr::LogicalPlanBuilder;
    use datafusion::logical_expr::dml::InsertOp;
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(());
    }
    let catalog = session.engine.planner.catalog().clone();
    let provider = catalog.table_provider(entry).await?;
    let schema = provider.schema();
    let batches = batches
        .iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| cast(c, f.data_type()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let ctx = session.context();
    let input = ctx.read_batches(batches)?.into_unoptimized_plan();
    let plan = LogicalPlanBuilder::insert_into(
        input,
        name,
        provider_as_source(provider),
        InsertOp::Append,
    )?
    .build()?;
    ctx.execute_logical_plan(plan).await?.collect().await?;
    Ok(())
}

impl Session {
    /// The newest savepoint called `name` (3B001 if none; 25P01 outside a block).
    /// The end of a transaction block (COMMIT, ROLLBACK): its savepoints and cursors without
    /// HOLD go, and the next transaction's isolation level is the session's default again.
    pub(super) fn close_block(&mut self) {
        self.in_transaction = false;
        self.savepoints.clear();
        self.cursors.end_of_block();
        if let Ok(level) = self.settings.get("default_transaction_isolation") {
            let _ = self.settings.set("transaction_isolation", &level);
        }
    }

    pub(super) fn find_savepoint(&self, name: &str, what: &str) -> Result<usize> {
        if !self.in_transaction {
            return Err(Error::Data {
                sqlstate: SqlState::NoActiveSqlTransaction,
                message: format!("{what} can only be used in transaction blocks"),
            });
        }
        self.savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| Error::Data {
                sqlstate: SqlState::InvalidSavepointSpecification,
                message: format!("savepoint \"{name}\" does not exist"),
            })
    }

    /// BEGIN / START TRANSACTION (a warning when a block is already open).
    pub(super) fn begin(&mut self, modes: &[ast::TransactionMode]) -> Result<Outcome> {
        for m in modes {
            if let ast::TransactionMode::IsolationLevel(level) = m {
                self.settings
                    .set("transaction_isolation", isolation_name(level))?;
            }
        }
        if self.in_transaction {
            self.warn(
                SqlState::ActiveSqlTransaction,
                "there is already a transaction in progress".into(),
            );
        } else {
            self.writes_in_transaction = 0;
            self.pending.clear();
        }
        self.in_transaction = true;
        self.savepoints.clear();
        Ok(Outcome::Begin)
    }

    /// SAVEPOINT name: how much of the block's pending writes is there now.
    pub(super) fn savepoint(&mut self, name: &str) -> Result<Outcome> {
        if !self.in_transaction {
            return Err(Error::Data {
                sqlstate: SqlState::NoActiveSqlTransaction,
                message: "SAVEPOINT can only be used in transaction blocks".into(),
            });
        }
        let m = mark(&self.pending);
        self.savepoints.push((name.to_string(), m));
        Ok(Outcome::Command(CommandTag::new("SAVEPOINT")))
    }

    /// RELEASE SAVEPOINT name: it and the later ones go, their writes stay.
    pub(super) fn release_savepoint(&mut self, name: &str) -> Result<Outcome> {
        let i = self.find_savepoint(name, "RELEASE SAVEPOINT")?;
        self.savepoints.truncate(i);
        Ok(Outcome::Command(CommandTag::new("RELEASE")))
    }

    /// ROLLBACK TO SAVEPOINT name: the writes sent since it are dropped; it stays.
    pub(super) fn rollback_to_savepoint(&mut self, name: &str) -> Result<Outcome> {
        let i = self.find_savepoint(name, "ROLLBACK TO SAVEPOINT")?;
        let m = self.savepoints[i].1;
        rollback_to(&mut self.pending, m);
        self.savepoints.truncate(i + 1);
        Ok(Outcome::RolledBack)
    }

    /// COMMIT: the block's pending writes are carried out, in order.
    pub(super) async fn commit(&mut self) -> Result<Outcome> {
        if !self.in_transaction {
            self.warn(
                SqlState::NoActiveSqlTransaction,
                "there is no transaction in progress".into(),
            );
        }
        self.close_block();
        commit(self).await?;
        Ok(Outcome::Commit(CommandTag::new("COMMIT")))
    }

    /// ROLLBACK: the block's pending writes are dropped (a warning names the writes that
    /// committed when they ran).
    pub(super) fn rollback(&mut self) -> Result<Outcome> {
        if !self.in_transaction {
            self.warn(
                SqlState::NoActiveSqlTransaction,
                "there is no transaction in progress".into(),
            );
        } else if self.writes_in_transaction > 0 {
            let n = self.writes_in_transaction;
            self.warn(
                SqlState::Warning,
                format!(
                    "ROLLBACK discarded this transaction's INSERT, UPDATE and DELETE statements but \
                     cannot undo its {n} other write statement(s): those committed when they ran"
                ),
            );
        }
        self.pending.clear();
        self.close_block();
        Ok(Outcome::Commit(CommandTag::new("ROLLBACK")))
    }
}

/// An isolation level as `transaction_isolation` spells it.
pub(super) fn isolation_name(level: &ast::TransactionIsolationLevel) -> &'static str {
    match level {
        ast::TransactionIsolationLevel::ReadUncommitted => "read uncommitted",
        ast::TransactionIsolationLevel::ReadCommitted => "read committed",
        ast::TransactionIsolationLevel::RepeatableRead => "repeatable read",
        _ => "serializable",
    }
}
