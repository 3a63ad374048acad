//! UPDATE and DELETE on Delta tables (MERGE in `merge.rs`), each one atomic Delta commit;
//! planned when they are sent, carried out then or, in a transaction block, at COMMIT.
//!
//! One mechanism for every row-level write (`storage::delta_rows`): the statement becomes a
//! query over its target, read with each row's identity, and whatever else it names (UPDATE
//! ... FROM, DELETE ... USING, subqueries anywhere), planned by DataFusion and governed like
//! any query (every table behind its secure scan). Its WHERE picks the target rows and its SET
//! expressions compute their new values above the barrier, from the values the writer may
//! see: a predicate or an expression never meets a hidden row or a masked value, so neither its
//! answer nor its errors can tell one. The query's rows (the changes, by row identity) are then
//! made in the files by position.

use datafusion::arrow::array::UInt64Array;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast, col};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{self, AssignmentTarget, FromTable, TableFactor};

use super::{CommandTag, Outcome, Session, parse, query::bind};
use crate::catalog::TableEntry;
use crate::error::{Error, Result, SqlState};
use crate::pg::names::last_ident;
use crate::storage::delta_rows::{self, ACTION, FILE, NEW_PREFIX, ROW, Statement};
use datafusion::sql::parser::Statement as DfStatement;

use super::transaction;
use crate::policy::Action;
use crate::storage::TableFormat;

/// A planned row-level write: run now, or at COMMIT inside a transaction block.
#[derive(Debug, Clone)]
pub struct RowChange {
    statement: Statement,
    entry: TableEntry,
    schema: String,
    table: String,
    /// The catalog the change list query reads the target's rows with identity from (a name
    /// of its own: no user statement can name it).
    catalog: String,
    /// The change list query (see the module doc).
    sql: String,
    params: Vec<ScalarValue>,
    /// The statement as its commit records it.
    text: &'static str,
}

impl RowChange {
    /// The table it changes: (schema, table).
    pub fn target(&self) -> (String, String) {
        (self.schema.clone(), self.table.clone())
    }

    pub fn command(&self) -> &'static str {
        match self.statement {
            Statement::Update => "UPDATE",
            Statement::Delete => "DELETE",
            Statement::Merge => "MERGE",
        }
    }

    pub fn statement(&self) -> Statement {
        self.statement
    }

    /// The table it changes, as the catalog has it.
    pub fn entry(&self) -> &TableEntry {
        &self.entry
    }

    /// The change list: the rows of the target (`rows`, else its latest version) and the
    /// query's plan, governed, with its new values cast to the columns' types and sorted by
    /// row identity, in the context it runs in.
    async fn plan(
        &self,
        session: &Session,
        rows: Option<Arc<delta_rows::Rows>>,
    ) -> Result<(Arc<delta_rows::Rows>, LogicalPlan, SessionContext)> {
        let (rows, plan, ctx) = self.governed(session, rows).await?;
        let plan = sorted_changes(bind(plan, self.params.clone())?)?;
        Ok((rows, plan, ctx))
    }

    /// The change list query, governed, its parameters not bound (what a prepared statement's
    /// parameter types are read from).
    pub async fn unbound_plan(&self, session: &Session) -> Result<LogicalPlan> {
        Ok(self.governed(session, None).await?.1)
    }

    async fn governed(
        &self,
        session: &Session,
        rows: Option<Arc<delta_rows::Rows>>,
    ) -> Result<(Arc<delta_rows::Rows>, LogicalPlan, SessionContext)> {
        let rows = match rows {
            Some(r) => r,
            None => {
                let catalog = session.engine.planner.catalog();
                let delta = catalog.delta_table(&self.entry).await?;
                let shown = catalog.table_provider(&self.entry).await?.schema();
                delta_rows::Rows::open(&self.table, delta, shown).await?
            }
        };
        let object = format!("{}.{}", self.schema, self.table);
        let provider = rows.provider(&session.hidden_columns(&object));
        let ctx = session.context_with_table(&self.catalog, &self.schema, &self.table, provider)?;
        let stmt = parse(&self.sql)?
            .pop()
            .ok_or_else(|| Error::internal("empty change list query"))?;
        let plan = session.plan_in(&ctx, &stmt).await?;
        let plan = typed_new_values(plan, &rows.shown())?;
        Ok((rows, plan, ctx))
    }

    async fn changes(
        &self,
        session: &Session,
        rows: Option<Arc<delta_rows::Rows>>,
    ) -> Result<(
        Arc<delta_rows::Rows>,
        datafusion::execution::SendableRecordBatchStream,
    )> {
        let (rows, plan, ctx) = self.plan(session, rows).await?;
        let stream = session
            .engine
            .planner
            .executor()
            .execute(&ctx, crate::engine::Logical::AsWritten(plan))
            .await?;
        Ok((rows, stream))
    }

    /// Check that it plans (names, types, grants and policies), as when it is sent.
    pub async fn check(&self, session: &Session) -> Result<()> {
        self.governed(session, None).await.map(|_| ())
    }

    /// Carry it out: one Delta commit. Returns the rows changed.
    pub async fn apply(self, session: &Session) -> Result<usize> {
        let (rows, stream) = self.changes(session, None).await?;
        let (table, changed) = delta_rows::apply(&rows, stream, self.statement, self.text).await?;
        session
            .engine
            .planner
            .catalog()
            .remember(&self.entry, table)
            .await;
        Ok(changed)
    }

    /// Carry it out over `rows` (the table as a transaction block left it) into files that
    /// are not committed: what it removed and wrote, and the rows it changed.
    pub async fn stage(
        &self,
        session: &Session,
        rows: Arc<delta_rows::Rows>,
    ) -> Result<(delta_rows::Staged, usize)> {
        let (rows, stream) = self.changes(session, Some(rows)).await?;
        delta_rows::stage(&rows, stream, self.statement).await
    }
}

/// The change list query's new values (`__lakegate_new_c` of its select list) cast to column
/// `c`'s type where they are computed: what a parameter given as a new value is typed by
/// (`SET score = $1`), as PostgreSQL types it from the column.
fn typed_new_values(plan: LogicalPlan, table: &SchemaRef) -> Result<LogicalPlan> {
    let LogicalPlan::Projection(p) = plan else {
        return Ok(plan);
    };
    let exprs = p
        .expr
        .into_iter()
        .map(|e| match &e {
            Expr::Alias(a) => match a
                .name
                .strip_prefix(NEW_PREFIX)
                .and_then(|c| table.field_with_name(c).ok())
            {
                Some(f) => cast(a.expr.as_ref().clone(), f.data_type().clone()).alias(&a.name),
                None => e,
            },
            _ => e,
        })
        .collect::<Vec<_>>();
    Ok(LogicalPlanBuilder::from(p.input.as_ref().clone())
        .project(exprs)?
        .build()?)
}

/// `plan`'s change list sorted by row identity (inserts, which have none, last).
fn sorted_changes(plan: LogicalPlan) -> Result<LogicalPlan> {
    Ok(LogicalPlanBuilder::from(plan)
        .sort(vec![
            col(quoted(FILE)).sort(true, false),
            col(quoted(ROW)).sort(true, false),
        ])?
        .build()?)
}

/// An identifier quoted for SQL text.
pub(super) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A fresh name for the catalog a change list reads its target from.
pub(super) fn change_catalog() -> String {
    format!(
        "{}_{}",
        crate::policy::access::DML_CATALOG,
        uuid::Uuid::new_v4().simple()
    )
}

/// No statement may name Lakegate's own identity columns or change catalogs: they would tell
/// where rows sit in their files (and so how many hidden rows lie between visible ones).
pub(super) fn refuse_internal_names<V: ast::Visit>(stmt: &V) -> Result<()> {
    use std::ops::ControlFlow;
    let internal = |s: &str| s.to_ascii_lowercase().starts_with("__lakegate");
    let mut found = None;
    let _ = ast::visit_expressions(stmt, |e| {
        let name = match e {
            ast::Expr::Identifier(i) => Some(i.value.clone()),
            ast::Expr::CompoundIdentifier(parts) => parts
                .iter()
                .find(|p| internal(&p.value))
                .map(|p| p.value.clone()),
            _ => None,
        };
        if let Some(n) = name.filter(|n| internal(n)) {
            found = Some(Error::UndefinedColumn(format!(
                "column \"{n}\" does not exist"
            )));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    let _ = ast::visit_relations(stmt, |r| {
        if r.0.iter().any(|p| internal(&p.to_string())) {
            found = Some(Error::UndefinedTable(format!(
                "relation \"{r}\" does not exist"
            )));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    match found {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The target of UPDATE or DELETE: one table, maybe with an alias.
fn target_of(t: &ast::TableWithJoins) -> Result<(&ast::ObjectName, Option<&ast::TableAlias>)> {
    match &t.relation {
        TableFactor::Table { name, alias, .. } if t.joins.is_empty() => Ok((name, alias.as_ref())),
        _ => Err(Error::unsupported(
            "UPDATE/DELETE of a join is not supported: name one table, and the others in FROM / USING",
        )),
    }
}

/// The name the change query reads the target by: its alias, else its table's name.
fn target_alias(alias: Option<&ast::TableAlias>, table: &str) -> ast::Ident {
    alias.map_or_else(|| ast::Ident::with_quote('"', table), |a| a.name.clone())
}

/// Columns of the target named through its qualified name (`db.s.t.c`, `s.t.c`, as dbt
/// writes them) named through `alias` instead: the change query reads the target from a
/// catalog of its own, where those names do not exist.
fn through_alias<T: ast::VisitMut>(
    node: &mut T,
    (database, schema, table): (&str, &str, &str),
    alias: &ast::Ident,
) {
    use crate::pg::names::ident;
    let _ = ast::visit_expressions_mut(node, |e: &mut ast::Expr| {
        if let ast::Expr::CompoundIdentifier(parts) = e {
            let names: Vec<String> = parts.iter().map(ident).collect();
            let prefix = match names.as_slice() {
                [d, s, t, _] if d == database && s == schema && t == table => 3,
                [s, t, _] if s == schema && t == table => 2,
                _ => 0,
            };
            if prefix > 0 {
                let column = parts.split_off(prefix);
                *parts = std::iter::once(alias.clone()).chain(column).collect();
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// The change list query: `SELECT <file>, <row>, <items> FROM <target with identity> AS
/// alias [, others] [WHERE selection]`.
fn change_query(
    catalog: &str,
    (schema, table): (&str, &str),
    alias: &ast::Ident,
    items: &[String],
    others: &[ast::TableWithJoins],
    selection: Option<&ast::Expr>,
) -> String {
    let mut sql = format!("SELECT {}, {}", quoted(FILE), quoted(ROW));
    for i in items {
        sql.push_str(", ");
        sql.push_str(i);
    }
    sql.push_str(&format!(
        " FROM {}.{}.{}",
        quoted(catalog),
        quoted(schema),
        quoted(table)
    ));
    sql.push_str(&format!(" AS {alias}"));
    for o in others {
        sql.push_str(&format!(", {o}"));
    }
    if let Some(w) = selection {
        sql.push_str(&format!(" WHERE {w}"));
    }
    sql
}

pub async fn plan_delete(
    session: &Session,
    d: &ast::Delete,
    params: Vec<ScalarValue>,
) -> Result<RowChange> {
    if d.returning.is_some() || d.limit.is_some() || !d.order_by.is_empty() || !d.tables.is_empty()
    {
        return Err(Error::unsupported(
            "DELETE with RETURNING, ORDER BY, LIMIT or several target tables is not supported yet",
        ));
    }
    let tables = match &d.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    let [target] = tables.as_slice() else {
        return Err(Error::unsupported(
            "DELETE from several tables is not supported: name one, and the others in USING",
        ));
    };
    refuse_internal_names(d)?;
    let (name, alias) = target_of(target)?;
    let (schema, table, entry) = session.delta_target(name, "DELETE")?;
    governed(session, &entry, &format!("{schema}.{table}"), &[]).await?;
    let alias = target_alias(alias, &table);
    let mut selection = d.selection.clone();
    through_alias(
        &mut selection,
        (session.engine.planner.database(), &schema, &table),
        &alias,
    );
    let catalog = change_catalog();
    let items = [format!(
        "{} AS {}",
        delta_rows::ChangeKind::Delete as i64,
        quoted(ACTION)
    )];
    let sql = change_query(
        &catalog,
        (&schema, &table),
        &alias,
        &items,
        d.using.as_deref().unwrap_or_default(),
        selection.as_ref(),
    );
    let change = RowChange {
        statement: Statement::Delete,
        entry,
        schema,
        table,
        catalog,
        sql,
        params,
        text: "DELETE",
    };
    change.check(session).await?;
    Ok(change)
}

pub async fn plan_update(
    session: &Session,
    u: &ast::Update,
    params: Vec<ScalarValue>,
) -> Result<RowChange> {
    if u.returning.is_some() || u.limit.is_some() {
        return Err(Error::unsupported(
            "UPDATE with RETURNING or LIMIT is not supported yet",
        ));
    }
    refuse_internal_names(u)?;
    let (name, alias) = target_of(&u.table)?;
    let (schema, table, entry) = session.delta_target(name, "UPDATE")?;
    let alias = target_alias(alias, &table);
    let mut u = u.clone();
    through_alias(
        &mut u,
        (session.engine.planner.database(), &schema, &table),
        &alias,
    );
    let mut columns = Vec::with_capacity(u.assignments.len());
    let mut items = vec![format!(
        "{} AS {}",
        delta_rows::ChangeKind::Update as i64,
        quoted(ACTION)
    )];
    for a in &u.assignments {
        let AssignmentTarget::ColumnName(name) = &a.target else {
            return Err(Error::unsupported(
                "UPDATE of a column tuple is not supported yet",
            ));
        };
        let column = last_ident(name)?;
        if columns.contains(&column) {
            return Err(Error::Data {
                sqlstate: SqlState::SyntaxError,
                message: format!("multiple assignments to same column \"{column}\""),
            });
        }
        items.push(format!(
            "({}) AS {}",
            a.value,
            quoted(&format!("{NEW_PREFIX}{column}"))
        ));
        columns.push(column);
    }
    assignable(session, &entry, &table, &columns).await?;
    governed(session, &entry, &format!("{schema}.{table}"), &columns).await?;
    let others: Vec<ast::TableWithJoins> = match &u.from {
        Some(ast::UpdateTableFromKind::BeforeSet(f) | ast::UpdateTableFromKind::AfterSet(f)) => {
            f.clone()
        }
        None => vec![],
    };
    let catalog = change_catalog();
    let sql = change_query(
        &catalog,
        (&schema, &table),
        &alias,
        &items,
        &others,
        u.selection.as_ref(),
    );
    let change = RowChange {
        statement: Statement::Update,
        entry,
        schema,
        table,
        catalog,
        sql,
        params,
        text: "UPDATE",
    };
    change.check(session).await?;
    Ok(change)
}

/// 42703 for an assigned column the table does not have.
pub(super) async fn assignable(
    session: &Session,
    entry: &TableEntry,
    table: &str,
    assigned: &[String],
) -> Result<()> {
    let schema = session
        .engine
        .planner
        .catalog()
        .table_provider(entry)
        .await?
        .schema();
    match assigned
        .iter()
        .find(|c| schema.field_with_name(c.as_str()).is_err())
    {
        Some(c) => Err(Error::UndefinedColumn(format!(
            "column \"{c}\" of relation \"{table}\" does not exist"
        ))),
        None => Ok(()),
    }
}

/// UPDATE/DELETE under the writer's policies, besides what the secure scan does (only rows its
/// row filter shows are read, so only they can change): columns it sees masked and columns the
/// filter reads may not be assigned (no row can be moved out of its sight, and no value it
/// cannot see is overwritten by one computed from what it sees), 42501 otherwise.
pub(super) async fn governed(
    session: &Session,
    entry: &TableEntry,
    object: &str,
    assigned: &[String],
) -> Result<()> {
    let table = object.rsplit('.').next().unwrap_or(object);
    session.authorize_columns(object, assigned)?;
    let Some(rules) = session.write_rules(entry, object).await? else {
        return Ok(());
    };
    for c in assigned {
        if rules.masks.iter().any(|(m, _)| m == c) {
            return Err(Error::PermissionDenied(format!(
                "permission denied for column {c}"
            )));
        }
    }
    if let Some(filter) = rules.filter {
        for c in filter.column_refs() {
            if assigned.contains(&c.name) {
                return Err(Error::PermissionDenied(format!(
                    "new row violates row-level security policy for table \"{table}\": \
                     \"{}\" is used by the policy and may not be changed",
                    c.name
                )));
            }
        }
    }
    Ok(())
}

/// UPDATE or DELETE now: one atomic commit, the tag carrying the rows changed.
pub async fn run(session: &Session, change: RowChange) -> Result<Outcome> {
    let command = change.command();
    let rows = change.apply(session).await?;
    Ok(Outcome::Command(CommandTag::rows(command, rows)))
}

/// Empty a Delta table now: one commit.
pub(super) async fn truncate_now(session: &Session, entry: &TableEntry) -> Result<()> {
    let catalog = session.engine.planner.catalog();
    let table = crate::storage::delta::truncate(catalog.delta_table(entry).await?).await?;
    catalog.remember(entry, table).await;
    Ok(())
}

/// A MERGE's change list, planned by `merge.rs`.
pub(super) fn merge_change(
    entry: TableEntry,
    (schema, table): (String, String),
    catalog: String,
    sql: String,
) -> RowChange {
    RowChange {
        statement: Statement::Merge,
        entry,
        schema,
        table,
        catalog,
        sql,
        params: vec![],
        text: "MERGE",
    }
}

impl Session {
    /// UPDATE: the rows it changes are read through the governed path, now or at COMMIT.
    pub(super) async fn update(
        &mut self,
        u: &ast::Update,
        params: Vec<ScalarValue>,
    ) -> Result<Outcome> {
        let change = plan_update(self, u, params).await?;
        self.run_or_defer(change).await
    }

    /// DELETE: the rows it removes are read through the governed path, now or at COMMIT.
    pub(super) async fn delete(
        &mut self,
        d: &ast::Delete,
        params: Vec<ScalarValue>,
    ) -> Result<Outcome> {
        let change = plan_delete(self, d, params).await?;
        self.run_or_defer(change).await
    }

    /// MERGE: source and target read through the governed path.
    pub(super) async fn merge(&mut self, m: &ast::Merge) -> Result<Outcome> {
        let change = super::merge::plan(self, m).await?;
        self.run_or_defer(change).await
    }

    /// `TRUNCATE [TABLE] [ONLY] t [, ...] [RESTART | CONTINUE IDENTITY] [CASCADE | RESTRICT]`:
    /// one commit per table removing its files (no identities or foreign keys here, so the
    /// options change nothing), now or at COMMIT. Needs `write`; refused (42501) to a writer
    /// whose row filters or masks bind it, as it would remove rows it does not see. Iceberg
    /// tables: 0A000 (iceberg-rust writes appends only).
    pub(super) async fn truncate(&mut self, t: &ast::Truncate) -> Result<Outcome> {
        if t.partitions.is_some() {
            return Err(Error::unsupported(
                "TRUNCATE ... PARTITION is not supported",
            ));
        }
        let mut targets = Vec::with_capacity(t.table_names.len());
        for target in &t.table_names {
            let (schema, table, entry) = self.delta_target(&target.name, "TRUNCATE")?;
            let object = format!("{schema}.{table}");
            if self.write_rules(&entry, &object).await?.is_some() {
                return Err(Error::PermissionDenied(format!(
                    "permission denied for table {table}: TRUNCATE would remove rows your \
                     policies do not show you (use DELETE)"
                )));
            }
            targets.push((entry, (schema, table)));
        }
        for (entry, key) in targets {
            if self.in_transaction {
                transaction::truncate_later(self, entry, key);
            } else {
                truncate_now(self, &entry).await?;
            }
        }
        Ok(Outcome::Command(CommandTag::new("TRUNCATE TABLE")))
    }

    /// An UPDATE/DELETE now, or at COMMIT inside a transaction block.
    pub(super) async fn run_or_defer(&mut self, change: RowChange) -> Result<Outcome> {
        if self.in_transaction {
            transaction::defer_change(self, change).await
        } else {
            run(self, change).await
        }
    }

    /// INSERT / UPDATE / DELETE through DataFusion; the tag carries the affected row count.
    pub(super) async fn dml(
        &self,
        stmt: &DfStatement,
        params: Vec<ScalarValue>,
        command: &str,
    ) -> Result<Outcome> {
        let plan = self.plan(stmt).await?;
        let plan = bind(plan, params)?;
        let batches = match self.ctx.execute_logical_plan(plan).await {
            Ok(df) => df.collect().await,
            Err(e) => Err(e),
        };
        let batches = match batches {
            Ok(b) => b,
            Err(e) => {
                return Err(crate::planner::not_null::explain_values_error(
                    &self.ctx,
                    stmt,
                    e.into(),
                )
                .await);
            }
        };
        let mut rows = 0usize;
        for b in &batches {
            if let Some(c) = b
                .columns()
                .first()
                .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            {
                rows += c.iter().flatten().sum::<u64>() as usize;
            }
        }
        Ok(Outcome::Command(CommandTag::rows(command, rows)))
    }

    /// The Delta table (ours or registered) that a write or maintenance statement names:
    /// (schema, table, entry). Views and external file tables are refused.
    pub(crate) fn delta_target(
        &self,
        name: &ast::ObjectName,
        what: &str,
    ) -> Result<(String, String, crate::catalog::TableEntry)> {
        let (schema, table) = crate::pg::names::qualified(
            name,
            &self.current_schema(),
            self.engine.planner.database(),
        )?;
        self.delta_target_named(&schema, &table, what)
            .map(|e| (schema, table, e))
    }

    pub(crate) fn delta_target_named(
        &self,
        schema: &str,
        table: &str,
        what: &str,
    ) -> Result<crate::catalog::TableEntry> {
        let t = self.writable_target_named(schema, table, what)?;
        if t.format == TableFormat::Iceberg {
            return Err(Error::unsupported(format!(
                "{what} is not supported on Iceberg table \"{table}\": iceberg-rust 0.10 writes \
                 appends only (INSERT, CREATE TABLE AS), not the row-level delete files {what} needs"
            )));
        }
        Ok(t)
    }

    /// A table that this warehouse may change: a Delta or Iceberg table (ours or a registered
    /// Delta location); views and external files or Iceberg metadata files are refused.
    pub(crate) fn writable_target_named(
        &self,
        schema: &str,
        table: &str,
        what: &str,
    ) -> Result<crate::catalog::TableEntry> {
        use crate::catalog::Relation;
        let action = match what {
            "OPTIMIZE" | "VACUUM" | "ALTER TABLE" => Action::Admin,
            // Which columns it may assign is checked with the assignments (governed).
            "UPDATE" => Action::Update,
            _ => Action::Write,
        };
        self.seen().writes.insert(format!("{schema}.{table}"));
        self.authorize(&format!("{schema}.{table}"), action)?;
        match self.engine.planner.catalog().relation(schema, table) {
            Some(Relation::Table(t))
                if t.format == TableFormat::Delta
                    || (t.format == TableFormat::Iceberg && !t.external) =>
            {
                Ok(t)
            }
            Some(Relation::Table(t)) => Err(Error::unsupported(format!(
                "{what} needs a Delta or Iceberg table of this warehouse; \"{table}\" is an external {} table (read-only)",
                t.format
            ))),
            Some(Relation::View(_)) => Err(Error::Data {
                sqlstate: SqlState::ObjectNotInPrerequisiteState,
                message: format!("{what}: \"{table}\" is a view, views are read-only"),
            }),
            None => Err(Error::UndefinedTable(format!(
                "relation \"{table}\" does not exist"
            ))),
        }
    }
}
