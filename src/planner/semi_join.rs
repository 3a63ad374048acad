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

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::JoinType;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, HashJoinExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;

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
