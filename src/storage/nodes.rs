//! Pass-through plan nodes the table formats need around their scans and writes:
//! - [`annotate`]: how many files a scan skipped. Above a table scan it shows, in EXPLAIN and
//!   EXPLAIN ANALYZE, the table's file count, the files the scan reads, and the files pruned by
//!   partition values and min/max statistics. Filters, projections and limits pass through it.
//!   It reports the scan's statistics, completed with the table's column statistics where the
//!   scan has none (see `storage::delta::column_statistics`).
//! - [`fence`]: nothing passes. Below a table format's write plan it keeps DataFusion from
//!   merging the format's own projections into the input's (iceberg-datafusion 0.10 computes
//!   partition values with an expression that hides which columns it reads, so a merged
//!   projection handed it the wrong batch: a panic on `INSERT INTO t (some, columns)`).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::common::Result as DfResult;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::{Precision, Statistics};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use super::TableStats;

/// Wrap `scan` (which read `scanned` of the table's `total` files), with the table's column
/// statistics when known.
pub fn annotate(
    scan: Arc<dyn ExecutionPlan>,
    total: usize,
    table_stats: Option<Arc<TableStats>>,
) -> Arc<dyn ExecutionPlan> {
    let scanned = scan
        .metrics()
        .and_then(|m| m.sum_by_name("count_files_scanned"))
        .map(|v| v.as_usize());
    let Some(scanned) = scanned else {
        return scan;
    };
    let metrics = ExecutionPlanMetricsSet::new();
    MetricBuilder::new(&metrics)
        .global_counter("files_total")
        .add(total);
    MetricBuilder::new(&metrics)
        .global_counter("files_pruned")
        .add(total.saturating_sub(scanned));
    Arc::new(FilesExec {
        properties: scan.properties().clone(),
        input: scan,
        total,
        scanned,
        metrics,
        table_stats,
        statistics: Default::default(),
    })
}

/// Which table snapshot a scan wrapped by [`annotate`] reads, comparable within one plan:
/// the scans of one provider (one version of one table) answer the same, others differ
/// (the address of the table's statistics, which the plan holds). None for any other node,
/// and for a scan without the table's statistics.
pub fn scan_source(plan: &dyn ExecutionPlan) -> Option<usize> {
    let files = plan.as_any().downcast_ref::<FilesExec>()?;
    files.table_stats.as_ref().map(|s| Arc::as_ptr(s) as usize)
}

#[derive(Debug, Clone)]
struct FilesExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    total: usize,
    scanned: usize,
    metrics: ExecutionPlanMetricsSet,
    table_stats: Option<Arc<TableStats>>,
    /// The whole scan's statistics, computed once: DataFusion's physical optimizer asks every
    /// join and projection above for theirs, each asking its inputs, down to the table
    /// format's scan, whose answer (per file, projected) was a twentieth of planning a
    /// seven-table join.
    statistics: std::sync::OnceLock<Statistics>,
}

impl FilesExec {
    /// `stats` of the scan with the column statistics it lacks taken from the table's, and its
    /// size in bytes as the sum of its columns' (fixed-width columns: width times rows; others:
    /// the table's estimate scaled to the scan's rows). A table format that reports statistics
    /// for only some columns reports as its size the bytes of whole files on disk, whatever the
    /// columns read: when a column's size stays unknown that size is dropped, so that DataFusion
    /// compares the two sides of a join by their row counts, not by one side's file sizes
    /// against the other's in-memory column sizes.
    fn complete(&self, mut stats: Statistics) -> Statistics {
        let Some(table) = &self.table_stats else {
            return stats;
        };
        let schema = self.input.schema();
        let rows = stats.num_rows;
        let mut total = Precision::Exact(0);
        for (column, field) in stats.column_statistics.iter_mut().zip(schema.fields()) {
            let known = table.columns.get(field.name());
            if column.byte_size.get_value().is_none() {
                column.byte_size = match (field.data_type().primitive_width(), known) {
                    (Some(width), _) => rows.multiply(&Precision::Exact(width)).to_inexact(),
                    (None, Some(known)) => scaled(known.byte_size, rows, table.rows),
                    (None, None) => Precision::Absent,
                };
            }
            total = total.add(&column.byte_size);
            let Some(known) = known else {
                continue;
            };
            if column.min_value.get_value().is_none() {
                column.min_value = known.min_value.clone();
            }
            if column.max_value.get_value().is_none() {
                column.max_value = known.max_value.clone();
            }
            if column.null_count.get_value().is_none() {
                column.null_count = known.null_count;
            }
        }
        stats.total_byte_size = total.to_inexact();
        stats
    }
}

/// `bytes` of a table of `of` rows, for `rows` of them.
fn scaled(
    bytes: Precision<usize>,
    rows: Precision<usize>,
    of: Precision<usize>,
) -> Precision<usize> {
    match (bytes.get_value(), rows.get_value(), of.get_value()) {
        (Some(&b), Some(&r), Some(&n)) if n > 0 => {
            let share = b as u128 * r as u128 / n as u128;
            Precision::Inexact(usize::try_from(share).unwrap_or(usize::MAX))
        }
        _ => Precision::Absent,
    }
}

impl DisplayAs for FilesExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TableFilesExec: files_total={}, files_scanned={}, files_pruned={}",
            self.total,
            self.scanned,
            self.total.saturating_sub(self.scanned)
        )
    }
}

impl ExecutionPlan for FilesExec {
    fn name(&self) -> &str {
        "TableFilesExec"
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
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = only_child(children, "TableFilesExec")?;
        Ok(Arc::new(FilesExec {
            properties: input.properties().clone(),
            input,
            statistics: Default::default(),
            ..self.as_ref().clone()
        }))
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
    fn partition_statistics(&self, partition: Option<usize>) -> DfResult<Statistics> {
        if partition.is_some() {
            return Ok(self.complete(self.input.partition_statistics(partition)?));
        }
        if let Some(s) = self.statistics.get() {
            return Ok(s.clone());
        }
        let s = self.complete(self.input.partition_statistics(None)?);
        Ok(self.statistics.get_or_init(|| s).clone())
    }
    fn supports_limit_pushdown(&self) -> bool {
        true
    }
    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::Equal
    }
    fn try_swapping_with_projection(
        &self,
        projection: &ProjectionExec,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        match self.input.try_swapping_with_projection(projection)? {
            Some(new_input) => Ok(Some(
                Arc::new(self.clone()).with_new_children(vec![new_input])?,
            )),
            None => Ok(None),
        }
    }
    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> DfResult<FilterDescription> {
        FilterDescription::from_children(parent_filters, &self.children())
    }
    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> DfResult<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::if_all(child_pushdown_result))
    }
}

/// The one child a single-input node is given in `with_new_children`; an internal error
/// naming `node` for any other number.
pub fn only_child(
    mut children: Vec<Arc<dyn ExecutionPlan>>,
    node: &str,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    match (children.pop(), children.is_empty()) {
        (Some(input), true) => Ok(input),
        _ => Err(datafusion::error::DataFusionError::Internal(format!(
            "{node} takes exactly one child"
        ))),
    }
}

/// Wrap `input` so that no optimizer rewrite moves anything across it (`name` shows in EXPLAIN:
/// `WriteInputExec` below a write, `SecureScanExec` above a governed scan).
pub fn fence(input: Arc<dyn ExecutionPlan>, name: &'static str) -> Arc<dyn ExecutionPlan> {
    Arc::new(Fence {
        properties: input.properties().clone(),
        input,
        name,
    })
}

#[derive(Debug, Clone)]
struct Fence {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    name: &'static str,
}

impl DisplayAs for Fence {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)
    }
}

impl ExecutionPlan for Fence {
    fn name(&self) -> &str {
        self.name
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
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(fence(only_child(children, self.name)?, self.name))
    }
    /// The input's statistics, inexact: they guide the planning of joins above a governed
    /// scan, and no rule answers a query from them (as it may from exact ones, e.g. `count(*)`
    /// from row counts) across the fence.
    fn partition_statistics(&self, partition: Option<usize>) -> DfResult<Statistics> {
        Ok(self.input.partition_statistics(partition)?.to_inexact())
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}
