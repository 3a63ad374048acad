//! Physical planning and execution: the physical planner that knows the plan nodes of the
//! layers above, the order of DataFusion's physical rules with Lakegate's among them, and the
//! [`Executor`] that computes a plan's rows on the compute runtime under the memory limit
//! (again alone, with sort-merge joins, when a query runs out of memory before its first row).
//!
//! Upstream gaps: DataFusion 53's hash join cannot spill (its build side must fit in memory,
//! see [`Executor::execute`]), and its memory pool has no notion of a query computing alone.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_planner::ExtensionPlanner;
use datafusion::prelude::SessionContext;

use super::{
    adaptive_filter, compact_views, decimal_arith, deferred_build, filter_estimates, prune_only,
    semi_join, shared_subplans,
};
use crate::error::{Error, Result};

/// DataFusion's physical planner, knowing the plan nodes of the layers above (a secure scan
/// becomes a fence: `policy::secure::SecureScanPlanner`).
pub struct QueryPlanner {
    extensions: Vec<Arc<dyn ExtensionPlanner + Send + Sync>>,
}

impl std::fmt::Debug for QueryPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryPlanner")
            .field("extensions", &self.extensions.len())
            .finish()
    }
}

impl QueryPlanner {
    pub fn new(extensions: Vec<Arc<dyn ExtensionPlanner + Send + Sync>>) -> Self {
        QueryPlanner { extensions }
    }
}

#[async_trait]
impl datafusion::execution::context::QueryPlanner for QueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &datafusion::execution::SessionState,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::physical_planner::PhysicalPlanner;
        datafusion::physical_planner::DefaultPhysicalPlanner::with_extension_planners(
            self.extensions.clone(),
        )
        .create_physical_plan(logical_plan, session_state)
        .await
    }
}

/// A query's logical plan for [`Executor::execute`].
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
pub fn physical_rules()
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

/// Tries of a query that runs out of memory before its first row (see [`Executor::execute`]).
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

/// Computes the rows of optimized plans: one runtime environment (memory pool, spill folder)
/// for every session, and the runtime queries compute on.
#[derive(Debug)]
pub struct Executor {
    /// One runtime for every session: the memory limit and spill folder are the server's.
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    /// engine.memory_limit is set (see [`Executor::execute`]).
    memory_limited: bool,
    /// Under a memory limit, queries compute sharing it; one computed again after running
    /// out of memory computes alone (see [`Executor::execute`]).
    memory_gate: Arc<tokio::sync::RwLock<()>>,
    /// The runtime queries compute on, apart from the one connections are served on: a heavy
    /// query never keeps another session from connecting and being answered.
    compute: tokio::runtime::Handle,
}

impl Executor {
    /// `compute`: the runtime queries compute on (see [`Executor::execute`]).
    pub fn new(
        engine: &crate::config::EngineSettings,
        compute: tokio::runtime::Handle,
    ) -> Result<Arc<Executor>> {
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
        Ok(Arc::new(Executor {
            runtime: runtime.build_arc()?,
            memory_limited: engine.memory_limit.is_some(),
            memory_gate: Arc::new(tokio::sync::RwLock::new(())),
            compute,
        }))
    }

    /// The runtime environment every session's context uses.
    pub fn runtime(&self) -> Arc<datafusion::execution::runtime_env::RuntimeEnv> {
        self.runtime.clone()
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
        self: &Arc<Self>,
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
}
