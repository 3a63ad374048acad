//! Planning a statement into the plan it runs: the extended protocol's describe, the session's
//! memo of results and cache of optimized plans, parameter types and binding, output names.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Statement as SqlStatement};

use super::{
    Outcome, Parsed, Prepared, PreparedKind, RowsKind, Seen, Session, is_dml, parse, unparsed,
};
use super::{dml, merge, settings};
use crate::error::{Error, Result, SqlState};
use crate::planner::Planner;

impl Session {
    /// Parse and describe a statement for the extended protocol.
    pub async fn prepare(&self, sql: &str, client_types: &[Option<DataType>]) -> Result<Prepared> {
        crate::planner::limits::check(sql)?;
        if let Some(kind) = unparsed(sql)? {
            return Ok(Prepared {
                sql: sql.into(),
                statement: Some(kind),
                param_types: vec![],
                schema: None,
                names: vec![],
            });
        }
        let mut stmts = parse(sql)?;
        if stmts.len() > 1 {
            return Err(Error::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        let Some(stmt) = stmts.pop() else {
            return Ok(Prepared {
                sql: sql.into(),
                statement: None,
                param_types: vec![],
                schema: None,
                names: vec![],
            });
        };
        let stmt = self.with_temp_names(&stmt)?.unwrap_or(stmt);
        let (schema, names, param_types) = if returns_rows_from_plan(&stmt) || is_dml(&stmt) {
            // Planned under the policies in force now, as a statement would be.
            let started = self.begin_statement().await?;
            // A statement refused when it is prepared never runs: its record is written now.
            let plan = match self.plan_to_describe(&stmt).await {
                Ok(p) => p,
                Err(e) => {
                    return match self.audit(sql, started, Err(e)) {
                        Err(e) => Err(e),
                        Ok(_) => Err(Error::internal("a failed statement was audited as done")),
                    };
                }
            };
            let mut params = param_types_of(&plan, client_types)?;
            crate::pg::types::mark_oid_params(&stmt, &mut params);
            if is_dml(&stmt) {
                (None, vec![], params)
            } else {
                let schema = crate::pg::describe::result_schema(&plan, &self.current_schema());
                let names = output_names(&stmt, &schema);
                (Some(schema), names, params)
            }
        } else if let Some(schema) = self.utility_schema(&stmt) {
            let names = schema.fields().iter().map(|f| f.name().clone()).collect();
            (Some(schema), names, vec![])
        } else {
            (
                None,
                vec![],
                client_types
                    .iter()
                    .map(|t| param_field(t.clone().unwrap_or(DataType::Null)))
                    .collect(),
            )
        };
        Ok(Prepared {
            sql: sql.into(),
            statement: Some(PreparedKind::Sql(Parsed::new(stmt))),
            param_types,
            schema,
            names,
        })
    }

    /// The plan a prepared statement's parameters and result are described from: a row-level
    /// write's is its change list query (`dml.rs`), anything else's its own.
    pub(super) async fn plan_to_describe(&self, stmt: &DfStatement) -> Result<LogicalPlan> {
        use SqlStatement as S;
        let change = match stmt {
            DfStatement::Statement(s) => match s.as_ref() {
                S::Update(u) => Some(dml::plan_update(self, u, vec![]).await?),
                S::Delete(d) => Some(dml::plan_delete(self, d, vec![]).await?),
                S::Merge(m) => Some(merge::plan(self, m).await?),
                _ => None,
            },
            _ => None,
        };
        match change {
            Some(c) => c.unbound_plan(self).await,
            None => self.plan(stmt).await,
        }
    }

    /// Plan a statement that DataFusion runs (queries, EXPLAIN, INSERT/UPDATE/DELETE).
    pub(super) async fn plan(&self, stmt: &DfStatement) -> Result<LogicalPlan> {
        self.plan_in(&self.ctx, stmt).await
    }

    /// [`Self::plan`] in another context of this session (one that also knows the tables of a
    /// statement's own, such as a row-level write's target with row identity).
    pub(crate) async fn plan_in(
        &self,
        ctx: &SessionContext,
        stmt: &DfStatement,
    ) -> Result<LogicalPlan> {
        let plan = match Planner::plan_statement(ctx, stmt).await {
            Ok(p) => p,
            Err(e) => return Err(self.hidden_column_named(e, stmt)),
        };
        // Only queries and DML get here; DDL is ours.
        datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_statements(false)
            .verify_plan(&plan)?;
        self.authorize_plan(&plan)?;
        self.check_view_reads(&plan)?;
        self.secure_plan(plan).await
    }

    /// Run a row-returning statement through DataFusion.
    pub(super) async fn query(
        &self,
        stmt: &DfStatement,
        params: Vec<ScalarValue>,
        command: RowsKind,
    ) -> Result<Outcome> {
        let memo_key = if command == RowsKind::Select {
            self.memo_key(stmt, &params)
        } else {
            None
        };
        if let Some(m) = memo_key
            && let Some(rows) = self.remembered_rows(m, command).await?
        {
            return Ok(rows);
        }
        // A materialized view answers it when one can (mv::rewrite), else the plan as written.
        let (plan, from_view) = match self.answer_from_view(stmt).await? {
            Some(p) => (p, true),
            None => (self.plan(stmt).await?, false),
        };
        let plan = bind(plan, params)?;
        let schema = crate::pg::describe::result_schema(&plan, &self.current_schema());
        let names = output_names(stmt, &schema);
        // The result cache: by governed plan, policy version, table locations and versions
        // (mv::cache); the session's optimized plans by the same identity.
        let identity = if command == RowsKind::Select {
            self.plan_identity(&plan)
        } else {
            None
        };
        let key = identity
            .clone()
            .filter(|_| self.engine.cache.enabled() && self.setting_on("lakegate.result_cache"));
        // Remembered for the next time, unless a view answered (whether one may depends on its
        // sources' versions too, which the view's rows do not show).
        if let (Some(m), Some((k, versions)), false) = (memo_key, &key, from_view) {
            self.remember(
                m,
                Memo {
                    key: k.clone(),
                    versions: versions.clone(),
                    schema: schema.clone(),
                    names: names.clone(),
                    seen: self.seen().clone(),
                },
            );
        }
        let key = key.map(|(k, _)| k);
        if let Some(k) = &key
            && let Some((cached, batches)) = self.engine.cache.get(k)
        {
            let stream =
                datafusion::physical_plan::memory::MemoryStream::try_new(batches, cached, None)?;
            return Ok(Outcome::Rows {
                schema,
                names,
                stream: Box::pin(stream),
                command,
            });
        }
        // (Only a plain query: DDL, writes, statements and EXPLAIN go through DataFusion's
        // own handling of them.)
        let plain = !matches!(
            plan,
            LogicalPlan::Ddl(_)
                | LogicalPlan::Dml(_)
                | LogicalPlan::Statement(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Explain(_)
                | LogicalPlan::Analyze(_)
                | LogicalPlan::DescribeTable(_)
        );
        let plan = match identity {
            Some((k, _)) if plain && self.setting_on("lakegate.plan_cache") => {
                crate::engine::Logical::Optimized(self.optimized(k, plan)?)
            }
            _ => crate::engine::Logical::AsWritten(plan),
        };
        let stream = self.run_plan(plan, command).await?;
        let stream = match key {
            Some(k) => crate::mv::cache::Filling::wrap(stream, self.engine.cache.clone(), k),
            None => stream,
        };
        Ok(Outcome::Rows {
            schema,
            names,
            stream,
            command,
        })
    }

    /// The rows of `plan`, computed once the user's turn comes (a plan reading no table runs
    /// at once); a user's EXPLAIN stops at every secure scan.
    async fn run_plan(
        &self,
        plan: crate::engine::Logical,
        command: RowsKind,
    ) -> Result<datafusion::execution::SendableRecordBatchStream> {
        // A turn for what computes over tables; `SELECT 1`, `SHOW`, settings answer at once
        // however busy the server is.
        let reads = match &plan {
            crate::engine::Logical::AsWritten(p) | crate::engine::Logical::Optimized(p) => {
                crate::engine::reads_tables(p)
            }
        };
        let turn = match reads {
            true => Some(
                self.engine
                    .admission
                    .admit(&self.principal.name, self.limits().max_running_queries)
                    .await?,
            ),
            false => None,
        };
        let stream = match plan {
            // What a user's EXPLAIN shows stops at every secure scan, whatever its format.
            crate::engine::Logical::AsWritten(plan)
                if command == RowsKind::Explain && !self.principal.admin =>
            {
                self.explain_for_user(plan).await?
            }
            plan => {
                self.engine
                    .planner
                    .executor()
                    .execute(&self.ctx, plan)
                    .await?
            }
        };
        Ok(crate::engine::hold(stream, turn))
    }

    /// `plan` through DataFusion's analyzer and optimizer, or the plan they made of the same
    /// governed plan earlier in this session (`identity`: the plan, the policy version, every
    /// table's location and version; and no DDL since). Their work is about a quarter of
    /// planning a TPC-H query (1 to 5 ms on two cores), and a dashboard or a benchmark sends
    /// the same queries again. Kept per session (the last [`OPTIMIZED_PLANS`]) and forgotten
    /// when its settings change, so a plan is only reused under the settings and role it was
    /// made with. A logical plan holds no state of a run (the physical plan, made for each
    /// run, does), and `identity` is only given for plans free of `now()`, `random()` and
    /// session functions, whose values the optimizer would have folded in.
    pub(super) fn optimized(
        &self,
        identity: crate::mv::cache::Key,
        plan: LogicalPlan,
    ) -> Result<LogicalPlan> {
        let mut plans = self
            .optimized
            .lock()
            .map_err(|_| Error::Internal("the session's optimized plans are poisoned".into()))?;
        let identity = (identity, self.engine.planner.catalog().generation());
        if let Some(at) = plans.iter().position(|(k, _)| *k == identity)
            && let Some(hit) = plans.remove(at)
        {
            let plan = hit.1.clone();
            plans.push_back(hit);
            return Ok(plan);
        }
        let optimized = self.ctx.state().optimize(&plan)?;
        if plans.len() >= OPTIMIZED_PLANS {
            plans.pop_front();
        }
        plans.push_back((identity, optimized.clone()));
        Ok(optimized)
    }

    /// The key of a query in the memo: None when its result may not be remembered (inside a
    /// transaction block, which may hold writes of its own; with the result cache off; a
    /// statement that is not a plain SQL one).
    pub(super) fn memo_key(&self, stmt: &DfStatement, params: &[ScalarValue]) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let DfStatement::Statement(st) = stmt else {
            return None;
        };
        if self.in_transaction
            || !self.engine.cache.enabled()
            || !self.setting_on("lakegate.result_cache")
        {
            return None;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        match self
            .running
            .as_ref()
            .filter(|p| std::ptr::eq(&p.stmt, stmt))
            .and_then(|p| p.hash())
        {
            Some(known) => known.hash(&mut h),
            None => st.hash(&mut h),
        }
        params.hash(&mut h);
        self.principal.role.hash(&mut h);
        self.settings.generation().hash(&mut h);
        self.engine.planner.catalog().generation().hash(&mut h);
        self.engine.policies().version.hash(&mut h);
        Some(h.finish())
    }

    pub(super) fn remember(&self, key: u64, memo: Memo) {
        let mut m = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MEMO_ENTRIES {
            m.clear();
        }
        m.insert(key, memo);
    }

    /// The rows of a remembered query, when every table it read is still at the version it
    /// read and its result is still cached; its audit record gets what its planning saw.
    pub(super) async fn remembered_rows(
        &self,
        key: u64,
        command: RowsKind,
    ) -> Result<Option<Outcome>> {
        let Some(memo) = self
            .memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()
        else {
            return Ok(None);
        };
        let catalog = self.engine.planner.catalog();
        for (object, version) in &memo.versions {
            let entry = match object
                .split_once('.')
                .and_then(|(s, t)| catalog.relation(s, t))
            {
                Some(crate::catalog::Relation::Table(e)) => e,
                _ => return Ok(None),
            };
            if catalog.current_version(&entry).await? != Some(*version) {
                return Ok(None);
            }
        }
        let Some((cached, batches)) = self.engine.cache.get(&memo.key) else {
            return Ok(None);
        };
        *self.seen() = memo.seen;
        let stream =
            datafusion::physical_plan::memory::MemoryStream::try_new(batches, cached, None)?;
        Ok(Some(Outcome::Rows {
            schema: memo.schema,
            names: memo.names,
            stream: Box::pin(stream),
            command,
        }))
    }

    pub(super) fn utility_schema(&self, stmt: &DfStatement) -> Option<SchemaRef> {
        if let DfStatement::Statement(s) = stmt
            && let SqlStatement::Fetch { name, .. } = s.as_ref()
        {
            return self.cursors.schema_of(&name.value);
        }
        if let DfStatement::Statement(s) = stmt
            && let SqlStatement::ShowVariable { variable } = s.as_ref()
        {
            let name = settings::show_name(variable);
            if name == "all" {
                return Some(Arc::new(Schema::new(vec![
                    Field::new("name", DataType::Utf8, false),
                    Field::new("setting", DataType::Utf8, false),
                ])));
            }
            return Some(Arc::new(Schema::new(vec![Field::new(
                settings::display_name(&name),
                DataType::Utf8,
                false,
            )])));
        }
        None
    }

    pub(crate) fn context(&self) -> &SessionContext {
        &self.ctx
    }
}

/// How many optimized plans a session keeps (see [`Session::optimized`]).
pub(super) const OPTIMIZED_PLANS: usize = 32;

/// What an optimized plan was made of: the governed plan's identity (`plan_identity`) and the
/// catalog's generation (after a DDL statement a name may stand for another table, of the same
/// version number).
pub(super) type OptimizedKey = (crate::mv::cache::Key, u64);

/// Where a query's result is in the result cache, found before planning: by the statement,
/// its parameter values and everything else its governed plan depends on (the session's
/// settings and role, the catalog's and the policies' versions: `Session::memo_key`); valid
/// while every table it read is at the version it read. A repeated small query (a dashboard's
/// tile, pgbench's `SELECT count(*)`) is answered with no parsing, planning, policy rewrite or
/// file listing: one version check per table and the cached rows.
#[derive(Debug, Clone)]
pub(super) struct Memo {
    key: crate::mv::cache::Key,
    versions: Vec<(String, i64)>,
    schema: SchemaRef,
    names: Vec<String>,
    /// What planning it saw (its audit record's reads and policies).
    seen: Seen,
}

/// The most statements a session remembers results of (then it forgets them all).
pub(super) const MEMO_ENTRIES: usize = 256;

/// Parameter types: the client's where given, else what DataFusion inferred, else unknown (Null).
pub(super) fn param_field(dt: DataType) -> Field {
    Field::new("", dt, true)
}

/// Types of `$n` that only appear under a cast (`$1::int`): PostgreSQL takes the cast's type.
pub(super) fn cast_placeholder_types(
    plan: &LogicalPlan,
) -> std::collections::HashMap<String, DataType> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::expr::Placeholder;
    let mut out = std::collections::HashMap::new();
    let _ = plan.apply_with_subqueries(|p| {
        p.apply_expressions(|e| {
            e.apply(|e| {
                if let datafusion::prelude::Expr::Cast(c) = e
                    && let datafusion::prelude::Expr::Placeholder(Placeholder { id, .. }) =
                        c.expr.as_ref()
                {
                    out.entry(id.clone()).or_insert_with(|| c.data_type.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    out
}

pub(super) fn param_types_of(
    plan: &LogicalPlan,
    client: &[Option<DataType>],
) -> Result<Vec<Field>> {
    let inferred = plan.get_parameter_fields()?;
    let cast = cast_placeholder_types(plan);
    let mut max = client.len();
    for k in inferred.keys().chain(cast.keys()) {
        if let Some(n) = k.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            max = max.max(n);
        }
    }
    Ok((1..=max)
        .map(|i| match client.get(i - 1).cloned().flatten() {
            Some(dt) => param_field(dt),
            None => match inferred.get(&format!("${i}")).cloned().flatten() {
                Some(f) => f.as_ref().clone(),
                None => param_field(
                    cast.get(&format!("${i}"))
                        .cloned()
                        .unwrap_or(DataType::Null),
                ),
            },
        })
        .collect())
}

/// Substitute `$n` placeholders, casting each value to the type the plan expects.
pub(super) fn bind(plan: LogicalPlan, params: Vec<ScalarValue>) -> Result<LogicalPlan> {
    let inferred = plan.get_parameter_types()?;
    if params.is_empty() && inferred.is_empty() {
        return Ok(plan);
    }
    let mut values = Vec::with_capacity(params.len());
    for (i, v) in params.into_iter().enumerate() {
        let want = inferred.get(&format!("${}", i + 1)).cloned().flatten();
        let v = match want {
            Some(t) if t != v.data_type() && !t.is_null() => v.cast_to(&t).map_err(|e| {
                Error::data(
                    SqlState::InvalidTextRepresentation,
                    format!(
                        "invalid value for parameter ${}: {}",
                        i + 1,
                        Error::from(e).client_message()
                    ),
                )
            })?,
            _ => v,
        };
        values.push(v);
    }
    if values.len() < inferred.len() {
        return Err(Error::data(
            SqlState::ProtocolViolation,
            format!(
                "bind message supplies {} parameters, but the statement requires {}",
                values.len(),
                inferred.len()
            ),
        ));
    }
    Ok(plan.with_param_values(values)?)
}

/// Column names as PostgreSQL would show them for a top-level SELECT list
/// (`count` for `count(*)`, `?column?` for an unnamed expression); DataFusion's names otherwise.
pub(super) fn output_names(stmt: &DfStatement, schema: &Schema) -> Vec<String> {
    // Names the catalog rewrites made distinct for DataFusion (pg::pg_catalog) are
    // PostgreSQL's again: `n.oid, n.*` has two `oid` columns, `NULL, NULL` two `?column?`.
    select_names(stmt, schema)
        .into_iter()
        .map(|n| {
            if let Some(original) = n.strip_prefix("__alias_") {
                original.to_string()
            } else if n.starts_with("?column") && n.ends_with('?') {
                "?column?".to_string()
            } else {
                n
            }
        })
        .collect()
}

pub(super) fn select_names(stmt: &DfStatement, schema: &Schema) -> Vec<String> {
    let df_names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let DfStatement::Statement(s) = stmt else {
        return df_names;
    };
    let SqlStatement::Query(q) = s.as_ref() else {
        return df_names;
    };
    let ast::SetExpr::Select(sel) = q.body.as_ref() else {
        return df_names;
    };
    let mut names = Vec::with_capacity(df_names.len());
    let mut i = 0;
    for item in &sel.projection {
        match item {
            ast::SelectItem::UnnamedExpr(e) => {
                if let Some(d) = df_names.get(i) {
                    names.push(crate::pg::names::pg_column_name(e).unwrap_or_else(|| d.clone()));
                }
                i += 1;
            }
            ast::SelectItem::ExprWithAlias { .. } => {
                if let Some(d) = df_names.get(i) {
                    names.push(d.clone());
                }
                i += 1;
            }
            // A wildcard expands to a number of columns we do not know here: keep DataFusion's names.
            _ => return df_names,
        }
    }
    if names.len() == df_names.len() {
        names
    } else {
        df_names
    }
}

pub(super) fn returns_rows_from_plan(stmt: &DfStatement) -> bool {
    match stmt {
        DfStatement::Statement(s) => matches!(
            s.as_ref(),
            SqlStatement::Query(_) | SqlStatement::Explain { .. }
        ),
        DfStatement::Explain(_) => true,
        _ => false,
    }
}

pub(super) async fn materialize(o: Outcome) -> Result<Outcome> {
    match o {
        Outcome::Rows {
            schema,
            names,
            stream,
            command,
        } => {
            use futures::TryStreamExt;
            let batches: Vec<RecordBatch> = stream.try_collect().await?;
            let stream = MemoryStream::try_new(batches, schema.clone(), None)?;
            Ok(Outcome::Rows {
                schema,
                names,
                stream: Box::pin(stream),
                command,
            })
        }
        other => Ok(other),
    }
}
