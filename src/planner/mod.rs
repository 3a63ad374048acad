//! SQL to DataFusion plans. Builds each session's DataFusion context (catalog, PostgreSQL
//! functions, type names), expands stored views, and maps PostgreSQL column types to Arrow.
//! Uses `catalog`; knows nothing of the wire.

pub mod limits;
pub mod not_null;
pub mod time_travel;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast;

use crate::catalog::{Catalog, LakegateCatalog, ViewExpander};
use crate::engine::{
    adaptive_filter, compact_views, decimal_arith, deferred_build, filter_estimates, prune_only,
    semi_join, shared_subplans,
};
use crate::error::{Error, Result};
use crate::pg::{
    dialect, functions, known_queries, names, pg_cast, pg_catalog, pg_semantics, types,
    value_limits,
};
use functions::SessionValues;

/// DataFusion's physical planner, knowing Lakegate's own plan nodes: a secure scan becomes a
/// barrier no filter, dynamic filter, projection or limit crosses.
#[derive(Debug)]
struct LakegateQueryPlanner;

#[async_trait]
impl datafusion::execution::context::QueryPlanner for LakegateQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &datafusion::execution::SessionState,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::physical_planner::PhysicalPlanner;
        datafusion::physical_planner::DefaultPhysicalPlanner::with_extension_planners(vec![
            Arc::new(SecureScanPlanner),
        ])
        .create_physical_plan(logical_plan, session_state)
        .await
    }
}

#[derive(Debug)]
struct SecureScanPlanner;

#[async_trait]
impl datafusion::physical_planner::ExtensionPlanner for SecureScanPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn datafusion::physical_planner::PhysicalPlanner,
        node: &dyn datafusion::logical_expr::UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn datafusion::physical_plan::ExecutionPlan>],
        _session_state: &datafusion::execution::SessionState,
    ) -> datafusion::error::Result<Option<Arc<dyn datafusion::physical_plan::ExecutionPlan>>> {
        if node
            .as_any()
            .downcast_ref::<crate::policy::secure::SecureScan>()
            .is_none()
        {
            return Ok(None);
        }
        match physical_inputs {
            [input] => Ok(Some(crate::storage::fence(
                input.clone(),
                crate::policy::explain::SECURE_SCAN_EXEC,
            ))),
            _ => Err(datafusion::error::DataFusionError::Internal(
                "a secure scan has one input".into(),
            )),
        }
    }
}

/// Builds DataFusion contexts over the Lakegate catalog.
#[derive(Debug, Clone)]
pub struct Planner {
    catalog: Arc<Catalog>,
    database: String,
    /// One runtime for every session: the memory limit and spill folder are the server's.
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    target_partitions: Option<usize>,
    batch_size: Option<usize>,
    /// engine.datafusion, validated at startup.
    datafusion_options: Vec<(String, String)>,
    /// engine.memory_limit is set (see [`Planner::execute`]).
    memory_limited: bool,
    /// Under a memory limit, queries compute sharing it; one computed again after running
    /// out of memory computes alone (see [`Planner::execute`]).
    memory_gate: Arc<tokio::sync::RwLock<()>>,
    /// The runtime queries compute on, apart from the one connections are served on: a heavy
    /// query never keeps another session from connecting and being answered.
    compute: tokio::runtime::Handle,
}

/// A query's logical plan for [`Planner::execute`].
#[derive(Debug, Clone)]
pub enum Logical {
    /// As planned from the statement: DataFusion's analyzer and optimizer run on it.
    AsWritten(LogicalPlan),
    /// Already through them (`SessionState::optimize`, maybe for an earlier run of the same
    /// statement): only the physical planning is left.
    Optimized(LogicalPlan),
}

/// How a query holds the memory gate while its rows are computed and sent.
#[derive(Debug)]
enum Gate {
    Shared(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>),
    Alone(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>),
}

/// DataFusion's physical optimizer rules, [`prune_only::PruneOnly`] first (before the filter
/// pushdown rules it must precede) with [`filter_estimates::FilterEstimates`] (before the join
/// selection that reads its estimates), Lakegate's rules after them (they adjust the
/// pushdown and execution order DataFusion's rules have settled).
fn physical_rules()
-> Vec<Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>> {
    let mut rules: Vec<
        Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>,
    > = vec![
        Arc::new(prune_only::PruneOnly),
        Arc::new(filter_estimates::FilterEstimates),
    ];
    for rule in datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules {
        let name = rule.name().to_owned();
        match name.as_str() {
            // Before the dynamic filters are pushed (see semi_join, shared_subplans).
            "FilterPushdown(Post)" => {
                rules.push(Arc::new(semi_join::SemiJoinAsInner));
                rules.push(Arc::new(shared_subplans::ShareSubplans));
            }
            // Semi joins' estimates, for join selection only (see semi_join).
            "join_selection" => rules.push(Arc::new(semi_join::SemiJoinEstimates)),
            _ => {}
        }
        rules.push(rule);
        if name == "join_selection" {
            rules.push(Arc::new(semi_join::SemiJoinEstimatesDone));
        }
    }
    rules.push(Arc::new(prune_only::DynamicRowFilter));
    rules.push(Arc::new(deferred_build::DeferBuildSides));
    rules.push(Arc::new(compact_views::CompactViews));
    rules.push(Arc::new(decimal_arith::DecimalArithmetic));
    rules.push(Arc::new(adaptive_filter::AdaptiveFilters));
    rules
}

/// Tries of a query that runs out of memory before its first row (see [`Planner::execute`]).
const MEMORY_TRIES: usize = 6;

fn out_of_memory(e: &datafusion::error::DataFusionError) -> bool {
    matches!(
        e.find_root(),
        datafusion::error::DataFusionError::ResourcesExhausted(_)
    )
}

/// Whether a plan reads a table (a table function counts; pg_catalog and information_schema,
/// in memory, do not: a BI tool browsing them never waits behind heavy queries).
pub fn reads_tables(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut found = false;
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p
            && !matches!(
                scan.table_name.schema(),
                Some("pg_catalog" | "information_schema")
            )
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The rows of the stream `start` makes, made and computed on `runtime` (DataFusion's own
/// tasks spawn there too) and handed over in batches: the caller's runtime only passes them
/// on. The computation stops when the returned stream is dropped (a cancel, a client gone); a
/// panic in it ends the stream with an XX000 error, never with rows silently missing.
pub async fn computed_on<F>(
    runtime: &tokio::runtime::Handle,
    start: F,
) -> Result<datafusion::execution::SendableRecordBatchStream>
where
    F: std::future::Future<Output = Result<datafusion::execution::SendableRecordBatchStream>>
        + Send
        + 'static,
{
    use futures::StreamExt;
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let (tx, rx) = tokio::sync::mpsc::channel::<datafusion::error::Result<RecordBatchOf>>(2);
    let task = runtime.spawn(async move {
        let mut stream = match start.await {
            Ok(s) => s,
            Err(e) => {
                let _ = first_tx.send(Err(e));
                return;
            }
        };
        if first_tx.send(Ok(stream.schema())).is_err() {
            return;
        }
        while let Some(batch) = stream.next().await {
            if tx.send(batch).await.is_err() {
                return;
            }
        }
    });
    let abort = AbortOnDrop(task.abort_handle());
    let schema = match first_rx.await {
        Ok(r) => r?,
        Err(_) => return Err(stopped(task).await),
    };
    let state = (rx, Some(task), abort);
    let stream = futures::stream::unfold(state, |(mut rx, task, abort)| async move {
        match rx.recv().await {
            Some(batch) => Some((batch, (rx, task, abort))),
            None => match task {
                // The computation ended: normally (the end of the rows), or on a panic.
                Some(t) => match t.await {
                    Err(e) if e.is_panic() => Some((
                        Err(datafusion::error::DataFusionError::from(Error::internal(
                            format!("the query's computation failed on a bug: {}", panic_of(e)),
                        ))),
                        (rx, None, abort),
                    )),
                    _ => None,
                },
                None => None,
            },
        }
    });
    Ok(Box::pin(
        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream),
    ))
}

type RecordBatchOf = datafusion::arrow::record_batch::RecordBatch;

/// Aborts a computation when its rows are no longer wanted.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a computation stopped before its first rows: a panic (XX000), else it was stopped.
async fn stopped(task: tokio::task::JoinHandle<()>) -> Error {
    match task.await {
        Err(e) if e.is_panic() => Error::internal(format!(
            "the query's computation failed on a bug: {}",
            panic_of(e)
        )),
        _ => Error::Cancelled,
    }
}

fn panic_of(e: tokio::task::JoinError) -> String {
    let p = e.into_panic();
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// `stream`, holding `guard` until it is dropped.
pub fn hold<G: Send + 'static>(
    stream: datafusion::execution::SendableRecordBatchStream,
    guard: G,
) -> datafusion::execution::SendableRecordBatchStream {
    use futures::StreamExt;
    let schema = stream.schema();
    let holding = stream.map(move |b| {
        let _held = &guard;
        b
    });
    Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, holding))
}

impl Planner {
    /// Create the planner and hook it into the catalog for view expansion.
    /// `compute`: the runtime queries compute on (see [`Planner::execute`]).
    pub fn new(
        catalog: Arc<Catalog>,
        database: &str,
        engine: &crate::config::EngineSettings,
        compute: tokio::runtime::Handle,
    ) -> Result<Arc<Planner>> {
        use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
        use datafusion::execution::runtime_env::RuntimeEnvBuilder;
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = engine.memory_limit {
            // Fair shares among the spilling operators of all running queries.
            runtime = runtime.with_memory_pool(Arc::new(
                datafusion::execution::memory_pool::FairSpillPool::new(limit),
            ));
        }
        let mode = match &engine.spill_dir {
            Some(dir) => DiskManagerMode::Directories(vec![dir.clone()]),
            None => DiskManagerMode::OsTmpDirectory,
        };
        runtime = runtime.with_disk_manager_builder(DiskManagerBuilder::default().with_mode(mode));
        let p = Arc::new(Planner {
            catalog: catalog.clone(),
            database: database.to_string(),
            runtime: runtime.build_arc()?,
            target_partitions: engine.target_partitions,
            batch_size: engine.batch_size,
            datafusion_options: engine.datafusion.clone(),
            memory_limited: engine.memory_limit.is_some(),
            memory_gate: Arc::new(tokio::sync::RwLock::new(())),
            compute,
        });
        catalog.set_view_expander(p.clone());
        Ok(p)
    }

    /// The rows of `plan`, computed in `ctx`. Under a memory limit, a query that runs out of
    /// memory before its first row is computed again with sort-merge joins in place of hash
    /// joins: DataFusion 53's hash join cannot spill (its build side must fit in its share of
    /// the pool: TPC-H q18 builds 1.6 GB at scale factor 1), a sort-merge join's sorts and
    /// buffers can. Hash joins stay the first choice, being 1.5-3x faster when they fit.
    ///
    /// Computed again, such a query computes alone: it waits for the queries computing to
    /// finish, and the queries that start after it wait for it (the pool is shared fairly:
    /// 16 clients' hash tables can leave a sort too little to merge its spill files). Should
    /// it still run short while other queries hold part of the pool (it waited a minute for
    /// them and went without), it waits for the pool to drain to half before its next try, up
    /// to [`MEMORY_TRIES`] tries. An error after the first row (rows already sent) is the
    /// query's answer as before.
    pub async fn execute(
        &self,
        ctx: &SessionContext,
        plan: Logical,
    ) -> Result<datafusion::execution::SendableRecordBatchStream> {
        let tables = match &plan {
            Logical::AsWritten(p) | Logical::Optimized(p) => reads_tables(p),
        };
        // A statement that reads no table (`SELECT 1`, `SELECT version()`) computes where it
        // is asked: it never waits behind the queries computing.
        if !tables {
            return self.execute_here(ctx, plan).await;
        }
        computed_on(&self.compute, {
            let me = self.clone();
            let ctx = ctx.clone();
            async move { me.execute_here(&ctx, plan).await }
        })
        .await
    }

    /// [`Self::execute`] on the runtime it is called on.
    async fn execute_here(
        &self,
        ctx: &SessionContext,
        plan: Logical,
    ) -> Result<datafusion::execution::SendableRecordBatchStream> {
        use futures::StreamExt;
        async fn run(
            ctx: &SessionContext,
            plan: Logical,
        ) -> Result<datafusion::execution::SendableRecordBatchStream> {
            match plan {
                Logical::AsWritten(plan) => Ok(ctx
                    .execute_logical_plan(plan)
                    .await?
                    .execute_stream()
                    .await?),
                Logical::Optimized(plan) => {
                    let state = ctx.state();
                    let physical = state
                        .query_planner()
                        .create_physical_plan(&plan, &state)
                        .await?;
                    let task = Arc::new(datafusion::execution::TaskContext::from(&state));
                    Ok(datafusion::physical_plan::execute_stream(physical, task)?)
                }
            }
        }
        if !self.memory_limited {
            return run(ctx, plan).await;
        }
        let mut gate = self.gate(false).await;
        let mut tries = 1;
        let mut current = ctx.clone();
        loop {
            let mut stream = run(&current, plan.clone()).await?;
            let schema = stream.schema();
            match stream.next().await {
                Some(Err(e)) if tries < MEMORY_TRIES && out_of_memory(&e) => {
                    // (its reservations are released before the next try)
                    drop(stream);
                    tries += 1;
                    if tries == 2 {
                        tracing::info!(
                            "a query ran out of memory before its first row ({e}); computing it again alone, with sort-merge joins"
                        );
                        drop(gate);
                        gate = self.gate(true).await;
                        let mut state = ctx.state();
                        let optimizer = &mut state.config_mut().options_mut().optimizer;
                        optimizer.prefer_hash_join = false;
                        // DataFusion plans sort-merge joins only for repartitioned joins;
                        // with repartition_joins off (the 2-core default) the retry would
                        // build the same single hash table again and fail the same way.
                        optimizer.repartition_joins = true;
                        current = SessionContext::new_with_state(state);
                    } else if self.pool_shared().await {
                        tracing::info!(
                            "a query ran out of memory again ({e}); try {tries} when the pool has drained"
                        );
                        self.pool_drained().await;
                    } else {
                        // It alone needs more than the pool: trying again would not help.
                        return Err(e.into());
                    }
                }
                first => {
                    let stream = Box::pin(
                        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                            schema,
                            futures::stream::iter(first).chain(stream),
                        ),
                    );
                    return Ok(match gate {
                        Some(g) => hold(stream, g),
                        None => stream,
                    });
                }
            }
        }
    }

    /// The memory gate, shared or alone. Waiting for it is bounded by a minute, after which
    /// the query goes without (a gate can be held by a client that stopped reading its rows,
    /// a suspended portal, maybe of this very connection: it must not wait forever). A query
    /// waiting to compute alone holds back the queries that start after it.
    async fn gate(&self, alone: bool) -> Option<Gate> {
        let wait = std::time::Duration::from_secs(60);
        let gate = self.memory_gate.clone();
        let held = if alone {
            tokio::time::timeout(wait, gate.write_owned())
                .await
                .map(Gate::Alone)
        } else {
            tokio::time::timeout(wait, gate.read_owned())
                .await
                .map(Gate::Shared)
        };
        if held.is_err() {
            tracing::warn!("a query waited a minute for the memory gate and computes without it");
        }
        held.ok()
    }

    /// Other queries hold more than an eighth of the memory pool (read once the reservations
    /// of a query just stopped are released: its operators' tasks end asynchronously). Below
    /// that, the query alone needs more than the pool and trying again would not help.
    async fn pool_shared(&self) -> bool {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let pool = &self.runtime.memory_pool;
        match pool.memory_limit() {
            datafusion::execution::memory_pool::MemoryLimit::Finite(n) => pool.reserved() > n / 8,
            _ => false,
        }
    }

    /// Until the memory pool is at most half used, or ten seconds passed.
    async fn pool_drained(&self) {
        let pool = &self.runtime.memory_pool;
        let half = match pool.memory_limit() {
            datafusion::execution::memory_pool::MemoryLimit::Finite(n) => n / 2,
            _ => return,
        };
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while pool.reserved() > half && tokio::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// A DataFusion context for one session.
    pub fn new_context(&self, values: &SessionValues<'_>) -> SessionContext {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(&self.database, values.schema)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false)
            .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
            .set_bool("datafusion.sql_parser.enable_ident_normalization", true)
            // 1.5 is numeric in PostgreSQL, not double precision.
            .set_bool("datafusion.sql_parser.parse_float_as_decimal", true)
            // Strings come back as Utf8, the type PostgreSQL text maps to.
            .set_bool(
                "datafusion.execution.parquet.schema_force_view_types",
                false,
            )
            .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
            .set_usize(
                "datafusion.sql_parser.recursion_limit",
                PARSER_RECURSION_LIMIT,
            );
        let config = match self.target_partitions {
            Some(n) => config.with_target_partitions(n),
            None => config,
        };
        let mut config = match self.batch_size {
            Some(n) => config.with_batch_size(n),
            None => config,
        };
        // On two cores, a hash join builds one table from its build side and all partitions
        // probe it (DataFusion's CollectLeft), rather than hash-partitioning both sides into
        // tables of their own: TPC-H SF1 geomean 9% faster (q18 1.3x, q7 1.4x; q6, q14 a few
        // percent slower), measured with DataFusion in process and through Lakegate
        // (docs/benchmarks.md). DataFusion's default fits many cores, where a build on one
        // core is the bottleneck. engine.datafusion.optimizer.repartition_joins overrides it.
        if config.target_partitions() <= 2 {
            config.options_mut().optimizer.repartition_joins = false;
        }
        for (key, value) in &self.datafusion_options {
            // Checked when the configuration was read (config::datafusion_options).
            if let Err(e) = config.options_mut().set(key, value) {
                tracing::warn!("engine.datafusion: {key} = {value:?} not applied: {e}");
            }
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(self.runtime.clone())
            .with_default_features()
            .with_query_planner(Arc::new(LakegateQueryPlanner))
            .with_type_planner(Arc::new(PgTypePlanner))
            .with_physical_optimizer_rules(physical_rules())
            .build();
        let ctx = SessionContext::new_with_state(state);
        for a in self.catalog.attached() {
            let name = a.name.clone();
            let seen = crate::catalog::provider_visible::SessionCatalog::new(
                &name,
                a,
                values.visible.clone(),
                values.hidden.clone(),
            );
            ctx.register_catalog(name, Arc::new(seen));
        }
        let catalog = LakegateCatalog::new(
            self.catalog.clone(),
            values.visible.clone(),
            values.hidden.clone(),
        );
        let pg_slot = catalog.pg_schemas_slot();
        ctx.register_catalog(&self.database, Arc::new(catalog));
        match pg_catalog::schemas(&ctx).and_then(|s| {
            pg_catalog::register_functions(&ctx)?;
            Ok(s)
        }) {
            Ok(s) => {
                let _ = pg_slot.set(s);
            }
            // Without it pg_catalog queries answer 42P01; everything else works.
            Err(e) => tracing::error!(error = %e, "pg_catalog is not available"),
        }
        for f in functions::session_functions(values) {
            ctx.register_udf(f);
        }
        for f in value_limits::functions(&ctx) {
            ctx.register_udf(f);
        }
        for f in value_limits::aggregates(&ctx) {
            ctx.register_udaf(f);
        }
        let timezone = values
            .settings
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("timezone"))
            .map(|(_, v)| v.as_str())
            .unwrap_or("UTC");
        ctx.register_udf(pg_cast::udf(timezone));
        ctx
    }

    /// Plan one parsed statement with PostgreSQL's meaning: typed casts to uuid/json/varchar,
    /// then DataFusion's planner, then the PostgreSQL-semantics rewrites.
    pub async fn plan_statement(ctx: &SessionContext, stmt: &DFStatement) -> Result<LogicalPlan> {
        let (schema, database) = default_schema_and_catalog(ctx);
        let stmt = with_time_travel(stmt.clone(), &schema, &database)?;
        let stmt = with_pg_casts(stmt);
        let plan = match ctx.state().statement_to_plan(stmt.clone()).await {
            Ok(p) => p,
            // A catalog query whose select-list subqueries DataFusion cannot plan: they answer
            // NULL (pg_catalog::null_select_subqueries).
            Err(e) => match pg_catalog::null_select_subqueries(stmt.clone()) {
                Some(simpler) => match ctx.state().statement_to_plan(simpler).await {
                    Ok(p) => p,
                    Err(_) => {
                        return Err(not_null::explain_values_error(ctx, &stmt, e.into()).await);
                    }
                },
                None => return Err(not_null::explain_values_error(ctx, &stmt, e.into()).await),
            },
        };
        let plan = not_null::enforce(pg_semantics::apply(plan)?)?;
        // Subqueries that plan but do not decorrelate fail in the optimizer: a catalog query
        // with select-list subqueries is tried there now, and answers NULL for them if need be.
        if let Some(simpler) = pg_catalog::null_select_subqueries(stmt.clone())
            && ctx.state().optimize(&plan).is_err()
        {
            let plan = ctx.state().statement_to_plan(simpler).await?;
            return not_null::enforce(pg_semantics::apply(plan)?);
        }
        Ok(plan)
    }
}

/// The session's default schema and default catalog, read in place: `SessionContext::state`
/// clones the whole state (every function registry), which costs more than planning a small
/// query.
pub fn default_schema_and_catalog(ctx: &SessionContext) -> (String, String) {
    let state = ctx.state_ref();
    let state = state.read();
    let c = &state.config().options().catalog;
    (c.default_schema.clone(), c.default_catalog.clone())
}

fn with_time_travel(stmt: DFStatement, schema: &str, database: &str) -> Result<DFStatement> {
    Ok(match stmt {
        DFStatement::Statement(mut s) => {
            time_travel::rewrite(&mut s, schema, database)?;
            DFStatement::Statement(s)
        }
        DFStatement::Explain(mut e) => {
            let inner = with_time_travel(e.statement.as_ref().clone(), schema, database)?;
            *e.statement = inner;
            DFStatement::Explain(e)
        }
        other => other,
    })
}

/// How deep the parser recurses (parentheses, subqueries): DataFusion's default of 50 refuses
/// a few dozen nested parentheses that PostgreSQL takes; the parser's recursion is guarded
/// (it grows its stack on the heap), and `limits::check` bounds the depth of everything after.
const PARSER_RECURSION_LIMIT: usize = 1000;

/// Parse SQL text (PostgreSQL dialect plus table versions) into statements.
pub fn parse_sql(sql: &str) -> Result<Vec<DFStatement>> {
    limits::check(sql)?;
    let dialect = dialect::LakegateDialect::default();
    let sql = dialect::normalize(known_queries::replace(sql).unwrap_or(sql))?;
    let mut parser = datafusion::sql::parser::DFParserBuilder::new(sql.as_str())
        .with_dialect(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .build()?;
    let stmts: Vec<DFStatement> = parser
        .parse_statements()?
        .into_iter()
        .map(pg_catalog::rewrite)
        .collect();
    Ok(pg_catalog::known_catalog_queries(sql.as_str(), stmts))
}

fn with_pg_casts(stmt: DFStatement) -> DFStatement {
    match stmt {
        DFStatement::Statement(mut s) => {
            pg_cast::rewrite_statement(&mut s);
            DFStatement::Statement(s)
        }
        DFStatement::Explain(mut e) => {
            let inner = with_pg_casts(e.statement.as_ref().clone());
            *e.statement = inner;
            DFStatement::Explain(e)
        }
        other => other,
    }
}

tokio::task_local! {
    /// The summed depth of the view definitions being expanded around this point.
    static VIEW_DEPTH: usize;
}

#[async_trait]
impl ViewExpander for Planner {
    async fn expand(&self, schema: &str, sql: &str, columns: &[String]) -> Result<LogicalPlan> {
        let values = SessionValues {
            user: "lakegate",
            database: &self.database,
            schema,
            backend_pid: 0,
            settings: vec![],
            visible: None,
            // A view's plan sees every column; the secure scan on its tables nulls the denied.
            hidden: None,
            privilege: None,
            pending_settings: Default::default(),
            check_setting: None,
            cancel_backend: None,
        };
        let ctx = self.new_context(&values);
        let mut stmt = parse_sql(sql)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal("empty view definition"))?;
        // Its names mean what they meant in its own schema (views made before their
        // definitions were stored qualified).
        if let DFStatement::Statement(st) = &mut stmt
            && let ast::Statement::Query(q) = st.as_mut()
        {
            let catalog = &self.catalog;
            names::qualify_relations(q, schema, &|t| catalog.relation(schema, t).is_some());
        }
        // Views over views: their definitions' depths add up, bounded like one statement's
        // (each view alone passed the check when it was made; a chain of them must not build a
        // plan deeper than any statement may).
        let depth = VIEW_DEPTH.try_with(|d| *d).unwrap_or(0) + limits::depth(sql);
        if depth > limits::MAX_DEPTH {
            return Err(crate::error::stack_depth());
        }
        let plan = VIEW_DEPTH
            .scope(depth, Self::plan_statement(&ctx, &stmt))
            .await?;
        if columns.is_empty() {
            return Ok(plan);
        }
        let exprs = plan
            .schema()
            .columns()
            .into_iter()
            .zip(columns)
            .map(|(c, name)| datafusion::prelude::Expr::Column(c).alias(name))
            .collect::<Vec<_>>();
        Ok(datafusion::logical_expr::LogicalPlanBuilder::from(plan)
            .project(exprs)?
            .build()?)
    }
}

/// PostgreSQL type names DataFusion does not know natively.
#[derive(Debug)]
struct PgTypePlanner;

impl TypePlanner for PgTypePlanner {
    fn plan_type(&self, sql_type: &ast::DataType) -> DfResult<Option<DataType>> {
        Ok(types::extra_sql_type(sql_type))
    }
}
