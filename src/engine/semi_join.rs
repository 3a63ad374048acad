//! A physical optimizer rule, run before DataFusion's dynamic filter pushdown: a right semi
//! hash join whose build side has unique join keys becomes an inner join keeping the probe
//! side's columns, so that its build side's key set filters the probe side's scans.
//!
//! DataFusion gives only inner hash joins a dynamic filter. `o_orderkey IN (SELECT l_orderkey
//! FROM lineitem GROUP BY l_orderkey HAVING ...)` (TPC-H q18) is a right semi join whose build
//! side is the 57 keys the subquery keeps; its probe side joined all 1.5 M orders with their
//! 6 M line items to keep 399 rows. When every build row has a distinct key (the build side
//! is an aggregation grouped by a subset of the join keys, seen through filters, projections of
//! columns and repartitioning), each probe row matches at most one build row, so the inner join
//! outputs each probe row the semi join keeps exactly once, in the same order: the same
//! answer, and a dynamic filter for the probe side.
//!
//! Upstream gap (DataFusion 53): dynamic filter pushdown covers inner hash joins but not right semi
//! joins, and join selection has no estimate for semi joins with unique build keys. Drop this rule
//! when semi joins push dynamic filters upstream.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::JoinType;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, HashJoinExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, Statistics,
};

use crate::engine::nodes::only_child;

#[derive(Debug, Default)]
pub struct SemiJoinAsInner;

impl PhysicalOptimizerRule for SemiJoinAsInner {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !config.optimizer.enable_join_dynamic_filter_pushdown {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let Some(join) = node.as_any().downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            if *join.join_type() != JoinType::RightSemi || join.null_aware {
                return Ok(Transformed::no(node));
            }
            let keys: Option<Vec<usize>> = join
                .on()
                .iter()
                .map(|(l, _)| l.as_any().downcast_ref::<Column>().map(|c| c.index()))
                .collect();
            if !keys.is_some_and(|k| unique(join.left(), &k)) {
                return Ok(Transformed::no(node));
            }
            // The semi join's output is the probe side's columns (or a projection of them);
            // the inner join's are the build side's, then the probe side's.
            let offset = join.left().schema().fields().len();
            let right = join.right().schema().fields().len();
            let projection: Vec<usize> = match &join.projection {
                Some(p) => p.iter().map(|i| offset + i).collect(),
                None => (offset..offset + right).collect(),
            };
            let inner = HashJoinExecBuilder::from(join)
                .with_type(JoinType::Inner)
                .with_projection(Some(projection))
                .build()?;
            Ok(Transformed::yes(Arc::new(inner) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "lakegate_semi_join_as_inner"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether no two rows of `plan` agree on all of the columns `keys` (output indices).
fn unique(plan: &Arc<dyn ExecutionPlan>, keys: &[usize]) -> bool {
    let any = plan.as_any();
    if let Some(aggregate) = any.downcast_ref::<AggregateExec>() {
        // Output rows of a complete aggregation have distinct group keys, which come first.
        let complete = matches!(
            aggregate.mode(),
            AggregateMode::Final
                | AggregateMode::FinalPartitioned
                | AggregateMode::Single
                | AggregateMode::SinglePartitioned
        );
        let groups = aggregate.group_expr();
        return complete
            && !groups.has_grouping_set()
            && !groups.is_empty()
            && (0..groups.expr().len()).all(|g| keys.contains(&g));
    }
    if let Some(filter) = any.downcast_ref::<FilterExec>() {
        let keys = match filter.projection() {
            Some(p) => match keys.iter().map(|k| p.get(*k).copied()).collect() {
                Some(k) => k,
                None => return false,
            },
            None => keys.to_vec(),
        };
        return unique(filter.input(), &keys);
    }
    if let Some(projection) = any.downcast_ref::<ProjectionExec>() {
        let keys: Option<Vec<usize>> = keys
            .iter()
            .map(|k| {
                projection
                    .expr()
                    .get(*k)
                    .and_then(|e| e.expr.as_any().downcast_ref::<Column>())
                    .map(|c| c.index())
            })
            .collect();
        return keys.is_some_and(|k| unique(projection.input(), &k));
    }
    // Nodes that pass their input's rows on, as they are.
    match (plan.name(), plan.children().as_slice()) {
        (
            "CoalescePartitionsExec"
            | "RepartitionExec"
            | "CoalesceBatchesExec"
            | "SortExec"
            | "SortPreservingMergeExec",
            [input],
        ) => unique(input, keys),
        _ => false,
    }
}

/// A physical optimizer rule, run before DataFusion's join selection: the estimated rows of a
/// semi join scale with the share of its other side's table that side keeps, until
/// [`SemiJoinEstimatesDone`] (right after join selection) takes the estimates away again.
///
/// DataFusion estimates a semi join's output as all of its preserved side's rows. In TPC-H
/// q20, `partsupp` semi-joined with the 1 % of `part` whose name starts with "forest" was
/// estimated at all 800,000 rows of `partsupp`, and the join above it built its hash table
/// on the other side, a year of `lineitem` aggregated by (part, supplier), so that side's scan
/// got no key set to filter by (q20: 154 ms, 70 ms with the build on `partsupp`). Where the
/// other side is a filtered scan of one table (no join or aggregation under it), the semi
/// join keeps about the share of rows that filter keeps (its keys are that share of the
/// table's): the usual estimate of a join along a foreign key.
#[derive(Debug, Default)]
pub struct SemiJoinEstimates;

impl PhysicalOptimizerRule for SemiJoinEstimates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let semi = node
                .as_any()
                .downcast_ref::<HashJoinExec>()
                .is_some_and(|j| matches!(j.join_type(), JoinType::LeftSemi | JoinType::RightSemi));
            if !semi {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(Arc::new(EstimateExec {
                properties: node.properties().clone(),
                input: node,
            }) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "lakegate_semi_join_estimates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Removes the nodes [`SemiJoinEstimates`] placed: the plan runs as DataFusion built it.
#[derive(Debug, Default)]
pub struct SemiJoinEstimatesDone;

impl PhysicalOptimizerRule for SemiJoinEstimatesDone {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match node.as_any().downcast_ref::<EstimateExec>() {
            Some(estimate) => Ok(Transformed::yes(Arc::clone(&estimate.input))),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "lakegate_semi_join_estimates_done"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The share of its table's rows a plan is estimated to keep, if it is a scan of one table
/// under filters, projections and repartitioning only.
fn kept_share(plan: &Arc<dyn ExecutionPlan>) -> Option<f64> {
    let estimated = *plan.partition_statistics(None).ok()?.num_rows.get_value()?;
    let mut node = plan;
    loop {
        match node.children().as_slice() {
            [] => break,
            [child]
                if node.as_any().is::<FilterExec>()
                    || node.as_any().is::<ProjectionExec>()
                    || matches!(
                        node.name(),
                        "RepartitionExec"
                            | "CoalescePartitionsExec"
                            | "CoalesceBatchesExec"
                            | "TableFilesExec"
                            | "DeltaScanExec"
                    ) =>
            {
                node = child
            }
            _ => return None,
        }
    }
    let table = *node.partition_statistics(None).ok()?.num_rows.get_value()?;
    (table > 0).then(|| (estimated as f64 / table as f64).min(1.0))
}

/// A semi join with the estimates of [`SemiJoinEstimates`]; it runs as the join.
#[derive(Debug)]
struct EstimateExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for EstimateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SemiJoinEstimateExec")
    }
}

impl ExecutionPlan for EstimateExec {
    fn name(&self) -> &str {
        "SemiJoinEstimateExec"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = only_child(children, "SemiJoinEstimateExec")?;
        Ok(Arc::new(Self {
            properties: input.properties().clone(),
            input,
        }))
    }
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Statistics> {
        let mut stats = self.input.partition_statistics(partition)?;
        let Some(join) = self.input.as_any().downcast_ref::<HashJoinExec>() else {
            return Ok(stats);
        };
        let other = match join.join_type() {
            JoinType::LeftSemi => join.right(),
            JoinType::RightSemi => join.left(),
            _ => return Ok(stats),
        };
        let Some(share) = kept_share(other) else {
            return Ok(stats);
        };
        let scale =
            |p: Precision<usize>| p.map(|v| (v as f64 * share).ceil() as usize).to_inexact();
        stats.num_rows = scale(stats.num_rows);
        stats.total_byte_size = scale(stats.total_byte_size);
        for c in &mut stats.column_statistics {
            c.byte_size = scale(c.byte_size);
        }
        Ok(stats)
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}
