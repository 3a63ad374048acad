//! BEGIN ... COMMIT: the writes of a transaction block are held by the session and carried out
//! at COMMIT, so other sessions see nothing before COMMIT and ROLLBACK (or a dropped
//! connection) leaves no trace. INSERTed rows are computed and checked (NOT NULL, types) when
//! the INSERT runs, like PostgreSQL, and kept; consecutive INSERTs into one table become one
//! commit. UPDATE, DELETE and MERGE are carried out when sent into files that are not
//! committed (storage::delta_rows::staged), over the table as the block left it (its pending
//! rows written into such files first); from then on all of that table's writes in the block
//! (later INSERTs, TRUNCATE) are one commit at COMMIT, checked against what others committed
//! meanwhile (40001). TRUNCATE alone waits for COMMIT as one commit. The block's own reads see
//! all of it (`overlays`, catalog::overlay) and its catalog changes (catalog::draft). The
//! tables' commits happen one after the other, then the catalog's (a failure part-way leaves
//! the earlier ones committed; COMMIT then reports the error and the block ends).

use std::sync::Arc;

use datafusion::arrow::compute::cast;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;

use super::{CommandTag, Outcome, Session, query::bind};
use crate::catalog::TableEntry;
use crate::error::{Error, Result, SqlState};
use crate::storage::delta_rows::{self, Rows, Staged, Statement};

use datafusion::sql::sqlparser::ast::{self};

/// A write waiting for COMMIT.
#[derive(Debug, Clone)]
pub enum Pending {
    /// Rows for one table.
    Rows {
        entry: TableEntry,
        name: String,
        /// (schema, table), for the block's own reads (catalog::overlay).
        key: (String, String),
        batches: Vec<RecordBatch>,
    },
    /// A TRUNCATE of one table: (schema, table).
    Truncate(TableEntry, (String, String)),
    /// A Delta table the block changed rows of: all its writes since.
    Staged(Box<StagedTable>),
}

impl Pending {
    fn key(&self) -> &(String, String) {
        match self {
            Pending::Rows { key, .. } | Pending::Truncate(_, key) => key,
            Pending::Staged(t) => &t.key,
        }
    }
}

/// A Delta table's writes in a block from its first UPDATE, DELETE or MERGE on.
#[derive(Debug, Clone)]
pub struct StagedTable {
    entry: TableEntry,
    key: (String, String),
    /// Its rows at the version the block first changed them at (what COMMIT checks against).
    base: Arc<Rows>,
    /// The files written and removed since.
    staged: Staged,
    /// `base` with `staged` made: the table as the block sees it, but for `batches`.
    current: Arc<Rows>,
    /// Rows INSERTed since the last row change, not in files yet.
    batches: Vec<RecordBatch>,
    /// The commit's operation: the statement's, or MERGE when several kinds changed rows.
    statement: Statement,
    /// The statements, for the commit's record.
    text: String,
}

impl StagedTable {
    /// Write the pending rows into (uncommitted) files.
    async fn flush(&mut self) -> Result<()> {
        if self.batches.iter().all(|b| b.num_rows() == 0) {
            self.batches.clear();
            return Ok(());
        }
        let adds = delta_rows::write_rows(&self.current, &self.batches).await?;
        self.batches.clear();
        self.absorb(Staged {
            removes: vec![],
            adds,
        });
        Ok(())
    }

    fn absorb(&mut self, next: Staged) {
        self.staged.absorb(next);
        self.current = self.base.with_staged(&self.staged);
    }

    /// TRUNCATE: every file goes, and the pending rows.
    fn truncate(&mut self) {
        self.batches.clear();
        let all = self.current.emptied();
        self.absorb(all);
    }
}

/// What a savepoint remembers: the block's pending writes and catalog changes then.
#[derive(Debug, Clone)]
pub struct Mark {
    pending: Vec<Pending>,
    draft: crate::catalog::DraftMark,
}

pub fn mark(pending: &[Pending], draft: &crate::catalog::Draft) -> Mark {
    Mark {
        pending: pending.to_vec(),
        draft: draft.mark(),
    }
}

/// The session's catalog draft (transactional DDL, catalog::draft). When the session goes
/// with a block open, the tables the block made are removed in the background.
pub struct BlockDraft {
    pub draft: crate::catalog::Draft,
    catalog: std::sync::Arc<crate::catalog::Catalog>,
}

impl BlockDraft {
    pub fn new(
        catalog: std::sync::Arc<crate::catalog::Catalog>,
        overlays: crate::catalog::overlay::Overlays,
    ) -> BlockDraft {
        BlockDraft {
            draft: crate::catalog::Draft::new(overlays),
            catalog,
        }
    }

    /// The block ends without committing: its catalog changes go, with the tables it made.
    pub async fn discard(&self) {
        self.catalog.discard_draft(&self.draft).await;
    }
}

impl Drop for BlockDraft {
    fn drop(&mut self) {
        self.catalog
            .discard_draft_later(std::mem::take(&mut self.draft));
    }
}

/// ROLLBACK TO SAVEPOINT: forget what was done since `m`.
pub fn rollback_to(pending: &mut Vec<Pending>, draft: &crate::catalog::Draft, m: &Mark) {
    draft.rollback_to(&m.draft);
    *pending = m.pending.clone();
}

/// An UPDATE, DELETE or MERGE in a block: carried out now into uncommitted files, over the
/// table as the block left it; its tag counts the rows it changed.
pub async fn defer_change(session: &mut Session, change: super::dml::RowChange) -> Result<Outcome> {
    let key = change.target();
    let mut table = staged_table(session, &change).await?;
    table.flush().await?;
    let (staged, rows) = change.stage(session, table.current.clone()).await?;
    table.absorb(staged);
    if table.statement != change.statement() {
        table.statement = Statement::Merge;
    }
    table.text = match table.text.as_str() {
        "" => change.command().to_string(),
        was => format!("{was}; {}", change.command()),
    };
    session.pending.retain(|p| p.key() != &key);
    session.pending.push(Pending::Staged(Box::new(table)));
    Ok(Outcome::Command(CommandTag::rows(change.command(), rows)))
}

/// The staged state of `change`'s table: the block's, or a new one made of its committed rows
/// and the block's earlier writes to it (INSERTed rows, TRUNCATE).
async fn staged_table(session: &Session, change: &super::dml::RowChange) -> Result<StagedTable> {
    let key = change.target();
    let mut earlier = vec![];
    for p in &session.pending {
        match p {
            Pending::Staged(t) if t.key == key => return Ok(t.as_ref().clone()),
            p if p.key() == &key => earlier.push(p),
            _ => {}
        }
    }
    let entry = change.entry().clone();
    let catalog = session.engine.planner.catalog();
    let delta = catalog.delta_table(&entry).await?;
    let shown = catalog.table_provider(&entry).await?.schema();
    let base = Rows::open(&key.1, delta, shown).await?;
    let mut table = StagedTable {
        entry,
        key,
        current: base.clone(),
        base,
        staged: Staged::default(),
        batches: vec![],
        statement: change.statement(),
        text: String::new(),
    };
    for p in earlier {
        match p {
            Pending::Rows { batches, .. } => table.batches.extend(batches.iter().cloned()),
            Pending::Truncate(..) => table.truncate(),
            Pending::Staged(_) => {}
        }
    }
    Ok(table)
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
    let key = (schema.to_string(), table.to_string());
    if let Some(Pending::Staged(t)) = session.pending.iter_mut().find(|p| p.key() == &key) {
        t.batches.extend(batches);
        return Ok(rows);
    }
    match session.pending.last_mut() {
        Some(Pending::Rows {
            entry: e,
            batches: b,
            ..
        }) if e.location == entry.location => b.extend(batches),
        _ => session.pending.push(Pending::Rows {
            entry,
            name: format!("{schema}.{table}"),
            key,
            batches,
        }),
    }
    Ok(rows)
}

/// TRUNCATE of a table in a block: part of the table's staged writes when it has them, else
/// kept for COMMIT.
pub fn truncate_later(session: &mut Session, entry: TableEntry, key: (String, String)) {
    match session.pending.iter_mut().find(|p| p.key() == &key) {
        Some(Pending::Staged(t)) => t.truncate(),
        _ => session.pending.push(Pending::Truncate(entry, key)),
    }
}

/// What the block's own reads see of its pending writes, by table: the rows its INSERTs hold
/// (after a TRUNCATE, only those), over the files its row changes left when it made some.
pub fn overlays(
    pending: &[Pending],
) -> std::collections::HashMap<(String, String), crate::catalog::overlay::Overlay> {
    use crate::catalog::overlay::Overlay;
    let mut out: std::collections::HashMap<(String, String), Overlay> = Default::default();
    for p in pending {
        match p {
            Pending::Rows { key, batches, .. } => out
                .entry(key.clone())
                .or_default()
                .batches
                .extend(batches.iter().cloned()),
            Pending::Truncate(_, key) => {
                out.insert(
                    key.clone(),
                    Overlay {
                        replaces: true,
                        ..Default::default()
                    },
                );
            }
            Pending::Staged(t) => {
                out.insert(
                    t.key.clone(),
                    Overlay {
                        replaces: false,
                        base: Some(t.current.reader()),
                        batches: t.batches.clone(),
                    },
                );
            }
        }
    }
    out
}

/// Carry out the pending writes in order: an append commit per run of INSERTs into one table
/// (through the table's own INSERT path, Delta or Iceberg alike), a commit per TRUNCATE, and
/// one commit per table with staged row changes (its files, and its rows since).
pub async fn commit(session: &mut Session) -> Result<()> {
    let pending = std::mem::take(&mut session.pending);
    // What is applied is read as committed from now on.
    session.sync_overlays();
    let catalog = session.engine.planner.catalog().clone();
    for p in pending {
        match p {
            Pending::Rows {
                entry,
                name,
                batches,
                ..
            } => append(session, &entry, &name, batches).await?,
            Pending::Truncate(entry, _) => super::dml::truncate_now(session, &entry).await?,
            Pending::Staged(mut t) => {
                t.flush().await?;
                if t.staged.is_empty() {
                    continue;
                }
                let table =
                    delta_rows::commit_staged(t.base.table(), t.staged, t.statement, &t.text)
                        .await?;
                catalog.remember(&t.entry, table).await;
            }
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
            self.draft.draft.open();
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
        let m = mark(&self.pending, &self.draft.draft);
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
        let m = self.savepoints[i].1.clone();
        rollback_to(&mut self.pending, &self.draft.draft, &m);
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
        // The tables' data first (what the block's statements read and wrote through its
        // draft), then its catalog changes in one catalog commit.
        if let Err(e) = commit(self).await {
            self.draft.discard().await;
            return Err(e);
        }
        let catalog = self.engine.planner.catalog().clone();
        catalog.commit_draft(&self.draft.draft).await?;
        Ok(Outcome::Commit(CommandTag::new("COMMIT")))
    }

    /// ROLLBACK: the block's pending writes are dropped (a warning names the writes that
    /// committed when they ran).
    pub(super) async fn rollback(&mut self) -> Result<Outcome> {
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
                    "ROLLBACK discarded this transaction's writes and catalog changes but cannot \
                     undo its {n} ALTER TABLE statement(s) changing columns: those committed when \
                     they ran"
                ),
            );
        }
        self.pending.clear();
        self.draft.discard().await;
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
