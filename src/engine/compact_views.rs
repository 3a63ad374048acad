//! A physical optimizer rule, run after DataFusion's own: the string and binary view columns a
//! hash join outputs are copied out of the build side's buffers when they use little of them.
//!
//! DataFusion reads Parquet strings as views (`Utf8View`): a value is a pointer into a shared
//! buffer. A hash join concatenates its build side into one batch, and every batch it outputs
//! points into that batch's buffers, so each 8,192-row output batch holds (and the memory pool
//! counts) all of them, hundreds of megabytes for a build side of customers' names and
//! addresses. arrow's batch coalescer, which copies sparse views, lets batches of half the
//! target size or more through untouched, which join outputs are. Above the join, a
//! repartition that buffers a few such batches "holds" gigabytes: TPC-H q10 at SF10 under a
//! 4 GiB limit spilled 5.9 GB (copies of the same buffers) and took 18.6 s instead of 2. Here
//! each view column whose buffers are more than twice the bytes its rows point to (arrow's own
//! rule for copying) is copied into compact buffers, as arrow's `gc` does.
//!
//! Upstream gap (DataFusion 53): a hash join's output keeps view columns pointing into the whole
//! build-side buffers (no garbage collection of views after a join), so a small result can pin a
//! large build side. Drop this rule when joins compact their view output.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, Statistics,
};
use futures::StreamExt;

use crate::engine::nodes::only_child;

#[derive(Debug, Default)]
pub struct CompactViews;

impl PhysicalOptimizerRule for CompactViews {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.as_any().downcast_ref::<HashJoinExec>().is_none()
                || !node
                    .schema()
                    .fields()
                    .iter()
                    .any(|f| is_view(f.data_type()))
            {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(Arc::new(CompactViewsExec {
                properties: node.properties().clone(),
                input: node,
            }) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "lakegate_compact_views"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn is_view(t: &DataType) -> bool {
    matches!(t, DataType::Utf8View | DataType::BinaryView)
}

/// `column` with its views in buffers of their own when it uses less than half of the ones it
/// points into; otherwise itself.
fn compact(column: &ArrayRef) -> ArrayRef {
    let sparse = |data: usize, used: usize| used > 0 && data > used * 2;
    match column.data_type() {
        DataType::Utf8View => {
            let a = column.as_string_view();
            let data: usize = a.data_buffers().iter().map(|b| b.len()).sum();
            if sparse(data, a.total_buffer_bytes_used()) {
                return Arc::new(a.gc());
            }
        }
        DataType::BinaryView => {
            let a = column.as_binary_view();
            let data: usize = a.data_buffers().iter().map(|b| b.len()).sum();
            if sparse(data, a.total_buffer_bytes_used()) {
                return Arc::new(a.gc());
            }
        }
        _ => {}
    }
    Arc::clone(column)
}

fn compact_batch(batch: RecordBatch) -> Result<RecordBatch> {
    if !batch.columns().iter().any(|c| is_view(c.data_type())) {
        return Ok(batch);
    }
    let columns = batch.columns().iter().map(compact).collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

#[derive(Debug)]
struct CompactViewsExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for CompactViewsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompactViewsExec")
    }
}

impl ExecutionPlan for CompactViewsExec {
    fn name(&self) -> &str {
        "CompactViewsExec"
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
        let input = only_child(children, "CompactViewsExec")?;
        Ok(Arc::new(Self {
            properties: input.properties().clone(),
            input,
        }))
    }
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Statistics> {
        self.input.partition_statistics(partition)
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let stream = input.map(|b| b.and_then(compact_batch));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringViewArray;

    #[test]
    fn a_few_views_into_a_large_buffer_are_copied_out() {
        let long = |i: usize| format!("a value long enough not to be inlined, number {i}");
        let big = StringViewArray::from_iter_values((0..10_000).map(long));
        // 10 rows that point into the buffers of all 10,000
        let few: ArrayRef = Arc::new(big.slice(0, 10));
        let compacted = compact(&few);
        let data = |a: &ArrayRef| -> usize {
            a.as_string_view()
                .data_buffers()
                .iter()
                .map(|b| b.len())
                .sum()
        };
        assert!(data(&compacted) < data(&few) / 100);
        assert_eq!(compacted.as_string_view().value(3), long(3));
        // All of them: nothing to gain, the same array.
        let all: ArrayRef = Arc::new(big);
        assert!(Arc::ptr_eq(&compact(&all), &all));
    }
}
