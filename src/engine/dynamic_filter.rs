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
//! work: when a filter keeps most rows it costs a hash per row for little, so a stream stops
//! applying it after [`SAMPLE_ROWS`] rows of which it kept more than [`KEEP_LIMIT`] percent,
//! until the filter changes again. Of several filters (one per join above the scan), the one
//! keeping the smallest share goes first and the others see only the rows it kept.
//!
//! Upstream gap (DataFusion 53 / deltalake 0.32): a Parquet scan applies the dynamic filters a hash
//! join hands it only for pruning when its static predicate is not pushed row by row (see
//! `prune_only`); nothing applies them to rows. Drop this node when dynamic filters are evaluated
//! row by row independently of the static predicate.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, prep_null_mask_filter};
use datafusion::common::ScalarValue;
use datafusion::common::cast::as_boolean_array;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{DynamicFilterPhysicalExpr, Literal};
use datafusion::physical_expr_common::physical_expr::snapshot_generation;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, Statistics,
};
use futures::StreamExt;

use crate::engine::nodes::only_child;

/// Rows a stream filters before judging whether the filters are worth their cost.
const SAMPLE_ROWS: usize = 65_536;
/// Share of rows kept (in percent) above which a stream stops applying the filters.
const KEEP_LIMIT: usize = 80;

/// Keeps the rows of its input that its dynamic filters keep; see the module's doc.
#[derive(Debug)]
pub struct DynamicFilterExec {
    input: Arc<dyn ExecutionPlan>,
    /// Conjuncts of the scan's predicate that are [`DynamicFilterPhysicalExpr`]s, on the
    /// scan's output columns.
    filters: Vec<Arc<dyn PhysicalExpr>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl DynamicFilterExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, filters: Vec<Arc<dyn PhysicalExpr>>) -> Self {
        Self {
            properties: input.properties().clone(),
            input,
            filters,
            metrics: ExecutionPlanMetricsSet::new(),
        }
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
        Ok(Arc::new(Self::new(input, self.filters.clone())))
    }
    /// A reset plan (a recursive query's next round) gets new filters from its joins, which
    /// this node would not see: it forgets its filters rather than apply stale ones.
    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(Arc::clone(&self.input), Vec::new())))
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
        let mut state = FilterState {
            filters: self
                .filters
                .iter()
                .map(|expr| Filter {
                    expr: Arc::clone(expr),
                    generation: None,
                    seen: 0,
                    kept: 0,
                })
                .collect(),
            baseline: BaselineMetrics::new(&self.metrics, partition),
            filtered: MetricBuilder::new(&self.metrics).counter("rows_filtered", partition),
        };
        let stream = input.map(move |batch| batch.and_then(|b| state.apply(b)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// One filter of a stream and what it kept so far.
struct Filter {
    expr: Arc<dyn PhysicalExpr>,
    /// The filter's generation the counts are for.
    generation: Option<u64>,
    seen: usize,
    kept: usize,
}

impl Filter {
    /// Whether the filter has kept so many of the rows it saw that it is not worth applying.
    fn off(&self) -> bool {
        self.seen >= SAMPLE_ROWS && self.kept * 100 > self.seen * KEEP_LIMIT
    }

    /// The share of the rows it saw that it kept (1 before it saw any).
    fn kept_share(&self) -> f64 {
        if self.seen == 0 {
            1.0
        } else {
            self.kept as f64 / self.seen as f64
        }
    }

    /// The rows of `batch` the filter keeps; None when it cannot filter anything yet (a
    /// join's filter is `true` until its build side is complete) or is not worth applying.
    fn mask(&mut self, batch: &RecordBatch) -> Result<Option<BooleanArray>> {
        let generation = snapshot_generation(&self.expr);
        if self.generation != Some(generation) {
            (self.generation, self.seen, self.kept) = (Some(generation), 0, 0);
        }
        if self.off() {
            return Ok(None);
        }
        let current = match self
            .expr
            .as_any()
            .downcast_ref::<DynamicFilterPhysicalExpr>()
        {
            Some(dynamic) => dynamic.current()?,
            None => Arc::clone(&self.expr),
        };
        if current
            .as_any()
            .downcast_ref::<Literal>()
            .is_some_and(|l| l.value() == &ScalarValue::Boolean(Some(true)))
        {
            return Ok(None);
        }
        let values = current.evaluate(batch)?.into_array(batch.num_rows())?;
        let mask = as_boolean_array(&values)?;
        let mask = if mask.null_count() > 0 {
            prep_null_mask_filter(mask)
        } else {
            mask.clone()
        };
        self.seen += batch.num_rows();
        self.kept += mask.true_count();
        Ok(Some(mask))
    }
}

/// One stream's filters, applied one after the other, the one keeping the smallest share of
/// rows first, each to the rows the ones before it kept.
struct FilterState {
    filters: Vec<Filter>,
    baseline: BaselineMetrics,
    filtered: Count,
}

impl FilterState {
    fn apply(&mut self, mut batch: RecordBatch) -> Result<RecordBatch> {
        let _timer = self.baseline.elapsed_compute().timer();
        let rows = batch.num_rows();
        for filter in &mut self.filters {
            if batch.num_rows() == 0 {
                break;
            }
            if let Some(mask) = filter.mask(&batch)?
                && mask.true_count() < batch.num_rows()
            {
                batch = filter_record_batch(&batch, &mask)?;
            }
        }
        self.filters
            .sort_by(|a, b| a.kept_share().total_cmp(&b.kept_share()));
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

    fn state(filters: Vec<Arc<dyn PhysicalExpr>>) -> FilterState {
        let metrics = ExecutionPlanMetricsSet::new();
        FilterState {
            filters: filters
                .into_iter()
                .map(|expr| Filter {
                    expr,
                    generation: None,
                    seen: 0,
                    kept: 0,
                })
                .collect(),
            baseline: BaselineMetrics::new(&metrics, 0),
            filtered: MetricBuilder::new(&metrics).counter("rows_filtered", 0),
        }
    }

    #[test]
    fn the_most_selective_filter_goes_first_and_a_useless_one_stops() {
        let mut s = state(vec![keeps(90), keeps(10)]);
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
        // The 10 % filter is first; the 90 % one saw only what it kept, all of which it keeps,
        // and is off.
        assert!(s.filters[0].kept_share() < 0.12);
        assert!(s.filters[1].off());
        assert!(!s.filters[0].off());
    }
}
