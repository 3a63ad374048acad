//! A physical optimizer rule, run after DataFusion's own: the build side of a collect-left hash
//! join starts when the join first asks for it, not when the plan is executed.
//!
//! A collect-left join executes its build side (a `CoalescePartitionsExec` over its partitions)
//! as soon as the join itself is executed, and the coalesce starts a task per partition at once.
//! In a plan of stacked joins every build side therefore starts reading together, before the
//! joins above have built theirs, and the dynamic filters those joins push into the scans below
//! (the keys of their build sides) are still empty when the scans open their files. TPC-H q7
//! read all 150,000 customers and 1.5 M orders to keep the 12,000 and 120,000 of two nations;
//! whether a scan saw the filter was a race between its file opening and the joins above. With
//! the build side deferred to the join's first poll, which comes after every join above has
//! built its side, each scan opens its files with its filters complete.
//!
//! What this gives up is reading two build sides at the same time; each is read by as many
//! tasks as it has partitions either way.
//!
//! Upstream gap (DataFusion 53): a collect-left hash join starts its build side at execute time, so
//! builds of joins not yet probed compete for memory and cores. Drop this rule when the join's
//! build is lazy upstream.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, Statistics,
};
use futures::{StreamExt, TryStreamExt};

use crate::engine::nodes::only_child;

#[derive(Debug, Default)]
pub struct DeferBuildSides;

impl PhysicalOptimizerRule for DeferBuildSides {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.as_any().downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            if join.mode != PartitionMode::CollectLeft
                || !join.left.as_any().is::<CoalescePartitionsExec>()
            {
                return Ok(Transformed::no(node));
            }
            let deferred: Arc<dyn ExecutionPlan> = Arc::new(DeferredExec {
                properties: Arc::clone(join.left.properties()),
                input: Arc::clone(&join.left),
            });
            let right = Arc::clone(&join.right);
            Ok(Transformed::yes(
                Arc::clone(&node).with_new_children(vec![deferred, right])?,
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "lakegate_defer_build_sides"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Its input, executed when its stream is first polled. Placed after DataFusion's rules (filter
/// pushdown included), so it needs none of their hooks.
#[derive(Debug, Clone)]
struct DeferredExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for DeferredExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeferredExec")
    }
}

impl ExecutionPlan for DeferredExec {
    fn name(&self) -> &str {
        "DeferredExec"
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
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = only_child(children, "DeferredExec")?;
        Ok(Arc::new(DeferredExec {
            properties: Arc::clone(input.properties()),
            input,
        }))
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = Arc::clone(&self.input);
        let started = futures::stream::once(async move { input.execute(partition, context) });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.input.schema(),
            started.try_flatten().boxed(),
        )))
    }
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Statistics> {
        self.input.partition_statistics(partition)
    }
}
