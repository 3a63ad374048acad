//! A physical optimizer rule: an aggregation that a plan computes twice, identically, is
//! computed once and its result read by both places.
//!
//! DataFusion inlines a CTE at each place it is used. TPC-H q15 uses its `revenue` CTE twice
//! (the suppliers' revenues, and their maximum), so the aggregation over three months of
//! `lineitem` ran twice; DuckDB computes it once. Here every aggregation whose whole subtree
//! prints the same (`displayable(..).indent(true)`: operators, expressions, files, pushed
//! predicates) and has the same schema as another is replaced: the first place by a
//! [`SharedExec`] over it, the others by a [`SharedExec`] reading the same result.
//!
//! Only subtrees made of the operators listed in [`SHAREABLE`] are shared (their results
//! depend on nothing but their input), none computing a volatile expression (`random()` twice
//! is two draws), and Delta scans only of the same snapshot of a table (time travel may read
//! the same files with other deletion vectors). The rule runs before DataFusion's dynamic filter pushdown, which pushes
//! join keys into scans: a filter pushed into one place only would make the two results
//! differ, so nothing is pushed into a shared subtree from above.
//!
//! The result of each partition is held in memory (reserved from the memory pool) until every
//! place has read it. When the pool cannot hold it, each place computes its own, as without
//! the rule.
//!
//! Upstream gap (DataFusion 53): CTEs are inlined at each use and computed again; there is no
//! common-subplan reuse in physical plans. Drop this rule when DataFusion materializes or shares
//! repeated subplans.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, Statistics, displayable,
};
use futures::{StreamExt, TryStreamExt};

/// Operators whose output depends on their input only.
const SHAREABLE: &[&str] = &[
    "AggregateExec",
    "FilterExec",
    "ProjectionExec",
    "RepartitionExec",
    "CoalesceBatchesExec",
    "CoalescePartitionsExec",
    "DataSourceExec",
    "TableFilesExec",
    "DeltaScanExec",
];

#[derive(Debug, Default)]
pub struct ShareSubplans;

impl PhysicalOptimizerRule for ShareSubplans {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // How many times each candidate subtree occurs: by its shape first (cheap), then, for
        // shapes that occur more than once, by its text.
        let mut shapes: HashMap<String, usize> = HashMap::new();
        plan.apply(|node| {
            if let Some(shape) = candidate_shape(node) {
                *shapes.entry(shape).or_default() += 1;
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        shapes.retain(|_, n| *n > 1);
        if shapes.is_empty() {
            return Ok(plan);
        }
        // The texts, by node (the rewrite below meets the same nodes: it replaces a subtree
        // before visiting what is under it).
        let address = |node: &Arc<dyn ExecutionPlan>| Arc::as_ptr(node) as *const () as usize;
        let mut texts: HashMap<usize, String> = HashMap::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        plan.apply(|node| {
            if let Some(shape) = candidate_shape(node)
                && shapes.contains_key(&shape)
            {
                let text = candidate_text(node, &shape);
                *seen.entry(text.clone()).or_default() += 1;
                texts.insert(address(node), text);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        seen.retain(|_, n| *n > 1);
        if seen.is_empty() {
            return Ok(plan);
        }
        let mut shared: HashMap<String, Arc<Shared>> = HashMap::new();
        plan.transform_down(|node| {
            let Some(key) = texts.get(&address(&node)).cloned() else {
                return Ok(Transformed::no(node));
            };
            if !seen.contains_key(&key) {
                return Ok(Transformed::no(node));
            }
            let (state, first) = match shared.get(&key) {
                Some(s) => (Arc::clone(s), false),
                None => {
                    let s = Arc::new(Shared {
                        input: Mutex::new(Arc::clone(&node)),
                        places: AtomicUsize::new(0),
                        partitions: Mutex::new(HashMap::new()),
                    });
                    shared.insert(key, Arc::clone(&s));
                    (s, true)
                }
            };
            // Counted as placed (an occurrence inside another shared subtree is not a place).
            state.places.fetch_add(1, Ordering::SeqCst);
            let exec: Arc<dyn ExecutionPlan> = Arc::new(SharedExec {
                properties: Arc::clone(node.properties()),
                state,
                shown: first.then(|| Arc::clone(&node)),
            });
            // The subtree is replaced whole: nothing below it is visited again.
            Ok(Transformed::new(exec, true, TreeNodeRecursion::Jump))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "lakegate_share_subplans"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The shape of `node`'s subtree when it may be shared (a final aggregation made of
/// [`SHAREABLE`] operators with no volatile expression): its operators in order and the table
/// snapshots it reads. Equal subtrees have equal shapes; [`candidate_text`] tells them apart.
/// (The text, the whole subtree displayed, was a sixth of planning TPC-H q15 when made for
/// every aggregation.)
fn candidate_shape(node: &Arc<dyn ExecutionPlan>) -> Option<String> {
    let agg = node.as_any().downcast_ref::<AggregateExec>()?;
    if matches!(agg.mode(), AggregateMode::Partial) {
        return None;
    }
    let mut ok = true;
    // deltalake's scan does not print what besides its files it applies (deletion vectors,
    // column mapping): each must sit under Lakegate's annotation of its table's snapshot, and
    // the snapshots are part of the key.
    let (mut delta_scans, mut snapshots, mut names) = (0, Vec::new(), Vec::new());
    node.apply(|n| {
        if !SHAREABLE.contains(&n.name()) || has_volatile(n.as_ref()) {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        names.push(n.name().to_owned());
        if n.name() == "DeltaScanExec" {
            delta_scans += 1;
        }
        if n.children().iter().any(|c| c.name() == "DeltaScanExec")
            && let Some(s) = crate::storage::nodes::scan_source(n.as_ref())
        {
            snapshots.push(s);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .ok()?;
    if !ok || snapshots.len() != delta_scans {
        return None;
    }
    Some(format!("{names:?}\n{snapshots:?}"))
}

/// The text identifying a candidate subtree of shape `shape` (see [`candidate_shape`]).
fn candidate_text(node: &Arc<dyn ExecutionPlan>, shape: &str) -> String {
    format!(
        "{}\n{:?}\n{shape}",
        displayable(node.as_ref()).indent(true),
        node.schema()
    )
}

fn has_volatile(node: &dyn ExecutionPlan) -> bool {
    let any = node.as_any();
    if let Some(f) = any.downcast_ref::<FilterExec>() {
        return is_volatile(f.predicate());
    }
    if let Some(p) = any.downcast_ref::<ProjectionExec>() {
        return p.expr().iter().any(|e| is_volatile(&e.expr));
    }
    if let Some(a) = any.downcast_ref::<AggregateExec>() {
        let group = a.group_expr();
        return group
            .expr()
            .iter()
            .chain(group.null_expr())
            .any(|(e, _)| is_volatile(e))
            || a.aggr_expr()
                .iter()
                .flat_map(|f| f.expressions())
                .any(|e| is_volatile(&e))
            || a.filter_expr().iter().flatten().any(is_volatile);
    }
    false
}

/// What the places of one shared subtree have in common.
#[derive(Debug)]
struct Shared {
    /// The subtree (as the first place's child was last rewritten by the rules after this one).
    input: Mutex<Arc<dyn ExecutionPlan>>,
    /// How many places read it.
    places: AtomicUsize,
    /// Each partition's result while some place has not executed it yet, and how many have.
    partitions: Mutex<HashMap<usize, (Arc<Partition>, usize)>>,
}

/// One partition's result, computed by the first place that reads it.
#[derive(Debug, Default)]
struct Partition {
    result: tokio::sync::OnceCell<Outcome>,
}

#[derive(Debug)]
enum Outcome {
    /// The batches, and their memory reserved in the pool until the last place is done.
    Batches(Vec<RecordBatch>, #[allow(dead_code)] MemoryReservation),
    /// Too large for the memory pool, or it failed: each place computes its own.
    Unshared,
}

impl Shared {
    fn input(&self) -> Arc<dyn ExecutionPlan> {
        Arc::clone(&self.input.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A place executes `partition`: the result it shares with the other places.
    fn partition(&self, partition: usize) -> Arc<Partition> {
        let mut parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let entry = parts.entry(partition).or_default();
        entry.1 += 1;
        let part = Arc::clone(&entry.0);
        if entry.1 >= self.places.load(Ordering::SeqCst) {
            // Every place has it now; a later execution of the plan computes afresh.
            parts.remove(&partition);
        }
        part
    }
}

/// One place reading a shared subtree's result. The first place shows the subtree as its
/// child (EXPLAIN, and the rules after this one rewrite it there); the others are leaves.
#[derive(Debug)]
pub struct SharedExec {
    properties: Arc<PlanProperties>,
    state: Arc<Shared>,
    /// The subtree, at the first place only.
    shown: Option<Arc<dyn ExecutionPlan>>,
}

impl DisplayAs for SharedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shown.is_some() {
            let places = self.state.places.load(Ordering::SeqCst);
            write!(f, "SharedExec: computed once for {places} places")
        } else {
            write!(f, "SharedExec: reads the result computed above")
        }
    }
}

impl ExecutionPlan for SharedExec {
    fn name(&self) -> &str {
        "SharedExec"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn maintains_input_order(&self) -> Vec<bool> {
        self.children().iter().map(|_| true).collect()
    }
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        self.children().iter().map(|_| false).collect()
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        match &self.shown {
            Some(input) => vec![input],
            None => vec![],
        }
    }
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (self.shown.is_some(), children.pop(), children.is_empty()) {
            (false, None, _) => Ok(self),
            (true, Some(input), true) => {
                // A rule after this one rewrote the subtree: every place reads the new one.
                *self.state.input.lock().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&input);
                Ok(Arc::new(SharedExec {
                    properties: Arc::clone(&self.properties),
                    state: Arc::clone(&self.state),
                    shown: Some(input),
                }))
            }
            _ => Err(DataFusionError::Internal(
                "SharedExec: wrong number of children".into(),
            )),
        }
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let part = self.state.partition(partition);
        let input = self.state.input();
        let schema = input.schema();
        let stream = futures::stream::once(async move {
            let outcome = part
                .result
                .get_or_init(|| compute(Arc::clone(&input), partition, Arc::clone(&context)))
                .await;
            match outcome {
                Outcome::Batches(batches, _) => {
                    let batches: Vec<Result<RecordBatch>> =
                        batches.iter().cloned().map(Ok).collect();
                    Ok(futures::stream::iter(batches).boxed())
                }
                Outcome::Unshared => input.execute(partition, context).map(|s| s.boxed()),
            }
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Statistics> {
        self.state.input().partition_statistics(partition)
    }
}

/// `input`'s partition, collected within the memory pool; Unshared when it does not fit or
/// fails (each place then computes it itself, and sees the error itself).
async fn compute(
    input: Arc<dyn ExecutionPlan>,
    partition: usize,
    context: Arc<TaskContext>,
) -> Outcome {
    let reservation = MemoryConsumer::new("SharedExec").register(context.memory_pool());
    let Ok(mut stream) = input.execute(partition, context) else {
        return Outcome::Unshared;
    };
    let mut batches = Vec::new();
    while let Some(b) = stream.next().await {
        let Ok(b) = b else {
            return Outcome::Unshared;
        };
        if reservation.try_grow(b.get_array_memory_size()).is_err() {
            return Outcome::Unshared;
        }
        batches.push(b);
    }
    Outcome::Batches(batches, reservation)
}
