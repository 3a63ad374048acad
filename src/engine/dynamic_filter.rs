//! Row by row application of the dynamic filters a Parquet scan was given beside a static
//! predicate (see [`super::prune_only::DynamicRowFilter`], which places [`DynamicFilterExec`]).
//!
//! A hash join hands its probe side's scan the key set of its build side as a dynamic filter;
//! DataFusion uses it there only to skip row groups unless row-level pushdown is on, which
//! Lakegate keeps off for static predicates (see [`super::prune_only`]). Without it, everything
//! between the scan and the join sees every row: TPC-H q20 aggregated 910 K `lineitem` rows by
//! (part, supplier) into 543 K groups to join 8.5 K of them. `DynamicFilterExec` sits directly
//! above the scan and keeps the rows the filters keep. Filters are conservative (a row they
//! drop cannot match), so applying one early, late or not at all changes no answer, only the
//! work: when a filter keeps most rows it costs a hash per row for little, so it is no longer
//! applied after [`SAMPLE_ROWS`] rows of which it kept more than [`KEEP_LIMIT`] percent, until
//! the filter changes again. Of several filters (one per join above the scan), the cheapest per
//! row removed goes first and the others see only the rows it kept. Both are the learnt
//! conjunct order of [`AdaptiveAnd`] (the filters are its optional conjuncts), the one
//! mechanism this node shares with a filter's predicate.
//!
//! Upstream gap (DataFusion 53 / deltalake 0.32): a Parquet scan applies the dynamic filters a hash
//! join hands it only for pruning when its static predicate is not pushed row by row (see
//! `prune_only`); nothing applies them to rows. Drop this node when dynamic filters are evaluated
//! row by row independently of the static predicate.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, Statistics,
};
use futures::StreamExt;

use super::adaptive_filter::AdaptiveAnd;
#[cfg(doc)]
use super::adaptive_filter::{KEEP_LIMIT, SAMPLE_ROWS};
use crate::engine::nodes::only_child;

/// Keeps the rows of its input that its dynamic filters keep; see the module's doc.
#[derive(Debug)]
pub struct DynamicFilterExec {
    input: Arc<dyn ExecutionPlan>,
    /// Conjuncts of the scan's predicate that are `DynamicFilterPhysicalExpr`s, on the
    /// scan's output columns.
    filters: Vec<Arc<dyn PhysicalExpr>>,
    /// The filters as optional conjuncts, with what each kept so far over all partitions.
    and: Arc<AdaptiveAnd>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl DynamicFilterExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, filters: Vec<Arc<dyn PhysicalExpr>>) -> Result<Self> {
        Ok(Self {
            properties: input.properties().clone(),
            and: Arc::new(AdaptiveAnd::optional(filters.clone())?),
            input,
            filters,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for DynamicFilterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DynamicFilterExec: ")?;
        for (i, filter) in self.filters.iter().enumerate() {
            if i > 0 {
                write!(f, " AND ")?;
            }
            write!(f, "{filter}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for DynamicFilterExec {
    fn name(&self) -> &str {
        "DynamicFilterExec"
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
        let input = only_child(children, "DynamicFilterExec")?;
        Ok(Arc::new(Self::new(input, self.filters.clone())?))
    }
    /// A reset plan (a recursive query's next round) gets new filters from its joins, which
    /// this node would not see: it forgets its filters rather than apply stale ones.
    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(Arc::clone(&self.input), Vec::new())?))
    }
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
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
        let state = FilterState {
            and: Arc::clone(&self.and),
            baseline: BaselineMetrics::new(&self.metrics, partition),
            filtered: MetricBuilder::new(&self.metrics).counter("rows_filtered", partition),
        };
        let stream = input.map(move |batch| batch.and_then(|b| state.apply(b)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// One stream's side of the filters: its metrics.
struct FilterState {
    and: Arc<AdaptiveAnd>,
    baseline: BaselineMetrics,
    filtered: Count,
}

impl FilterState {
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let _timer = self.baseline.elapsed_compute().timer();
        let rows = batch.num_rows();
        let batch = match self.and.mask(&batch)? {
            Some(mask) => filter_record_batch(&batch, &mask)?,
            None => batch,
        };
        self.filtered.add(rows - batch.num_rows());
        self.baseline.record_output(batch.num_rows());
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, lit};

    use crate::engine::adaptive_filter::SAMPLE_ROWS;

    fn batch(from: i64, rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let column = Int64Array::from_iter_values(from..from + rows);
        RecordBatch::try_new(schema, vec![Arc::new(column)]).unwrap()
    }

    /// `x % 100 < keep`: keeps `keep` percent of consecutive values.
    fn keeps(keep: i64) -> Arc<dyn PhysicalExpr> {
        let x: Arc<dyn PhysicalExpr> = Arc::new(Column::new("x", 0));
        let modulo = Arc::new(BinaryExpr::new(x, Operator::Modulo, lit(100i64)));
        Arc::new(BinaryExpr::new(modulo, Operator::Lt, lit(keep)))
    }

    #[test]
    fn the_filters_answer_is_their_conjunction_and_a_useless_one_stops() {
        let metrics = ExecutionPlanMetricsSet::new();
        let s = FilterState {
            and: Arc::new(AdaptiveAnd::optional(vec![keeps(90), keeps(10)]).unwrap()),
            baseline: BaselineMetrics::new(&metrics, 0),
            filtered: MetricBuilder::new(&metrics).counter("rows_filtered", 0),
        };
        let mut from = 0;
        let mut out = 0;
        while from < 12 * SAMPLE_ROWS as i64 {
            let b = s.apply(batch(from, 8192)).unwrap();
            assert!(
                b.column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .all(|x| x % 100 < 10)
            );
            out += b.num_rows();
            from += 8192;
        }
        assert_eq!(out, (0..from).filter(|x| x % 100 < 10).count());
        // The 90 % filter sees only what the 10 % one kept (all of which it keeps) or was
        // seen first: either way it keeps more than the limit and is left out.
        assert!(s.and.left_out(0));
        assert!(!s.and.left_out(1));
    }
}
