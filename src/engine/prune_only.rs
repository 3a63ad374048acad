//! A physical optimizer rule: Parquet scans use their predicate to skip row groups and pages
//! (statistics, page index, bloom filters), never to filter row by row while decoding.
//!
//! deltalake 0.32 hands a Delta scan's filter to its Parquet source only together with
//! row-level pushdown (`with_predicate(..).with_pushdown_filters(true)`), and DataFusion then
//! pushes the FilterExec above into the same source a second time: TPC-H q6 at SF1 took 400 ms
//! that way, 206 ms with the filter run once above the scan. Without the predicate, a point
//! lookup reads every page of the table. This rule, run before DataFusion's own filter
//! pushdown, keeps the predicate for pruning and turns the row-level filter off, as
//! DataFusion's default is for its own Parquet tables; the filter above the scan (deltalake
//! marks its pushed filters Inexact) stays and gives the exact answer.
//!
//! Upstream gap (deltalake 0.32): a Delta scan hands its filter to the Parquet source only together
//! with row-level pushdown, which decodes filter columns twice; there is no 'prune only' mode. Drop
//! this rule when deltalake separates pruning from row filtering.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, DynamicFilterPhysicalExpr};
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_expr::utils::reassign_expr_columns;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;

use super::dynamic_filter::DynamicFilterExec;

#[derive(Debug, Default)]
pub struct PruneOnly;

impl PhysicalOptimizerRule for PruneOnly {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // A session that asked for row-level pushdown keeps it.
        if config.execution.parquet.pushdown_filters {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let Some(exec) = node.as_any().downcast_ref::<DataSourceExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some(files) = exec.data_source().as_any().downcast_ref::<FileScanConfig>() else {
                return Ok(Transformed::no(node));
            };
            let Some(parquet) = files.file_source().as_any().downcast_ref::<ParquetSource>() else {
                return Ok(Transformed::no(node));
            };
            if !parquet.table_parquet_options().global.pushdown_filters {
                return Ok(Transformed::no(node));
            }
            let source = parquet.clone().with_pushdown_filters(false);
            let files = FileScanConfigBuilder::from(files.clone())
                .with_source(Arc::new(source))
                .build();
            let exec: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(files);
            Ok(Transformed::yes(exec))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "lakegate_parquet_prune_only"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A physical optimizer rule, run after DataFusion's own: a Parquet scan whose only predicate
/// is a dynamic filter (the key set of a hash join's build side, a TopK's current bound) applies
/// it row by row while decoding, as DataFusion does when `pushdown_filters` is on.
///
/// Such a filter has no FilterExec above the scan to apply it, so without this it only skips
/// row groups whose min/max exclude every key: TPC-H q17 aggregated all 6 M rows of `lineitem`
/// by part to join 6 K of them. Scans with a static predicate keep [`PruneOnly`]'s choice
/// (their FilterExec applies it once) and get their dynamic filters applied by a
/// [`DynamicFilterExec`] directly above them.
#[derive(Debug, Default)]
pub struct DynamicRowFilter;

impl PhysicalOptimizerRule for DynamicRowFilter {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if config.execution.parquet.pushdown_filters {
            return Ok(plan);
        }
        plan.transform_down(|node| {
            if node.as_any().is::<FilterExec>()
                && let Some(scan) = scan_under(&node)
                && let Some((dynamic, true)) = dynamic_filters(scan)
                && let Some(dynamic) = on_output(dynamic, &node)
            {
                let exec: Arc<dyn ExecutionPlan> = Arc::new(DynamicFilterExec::new(node, dynamic)?);
                return Ok(Transformed::new(exec, true, TreeNodeRecursion::Jump));
            }
            match dynamic_filters(&node) {
                Some((dynamic, true)) => match on_output(dynamic, &node) {
                    Some(dynamic) => {
                        let exec: Arc<dyn ExecutionPlan> =
                            Arc::new(DynamicFilterExec::new(node, dynamic)?);
                        Ok(Transformed::new(exec, true, TreeNodeRecursion::Jump))
                    }
                    None => Ok(Transformed::no(node)),
                },
                Some((_, false)) => row_filter(&node).map(Transformed::yes),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "lakegate_parquet_dynamic_row_filter"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The Parquet source of a scan with row-level pushdown off.
fn parquet_scan(node: &Arc<dyn ExecutionPlan>) -> Option<(&FileScanConfig, &ParquetSource)> {
    let exec = node.as_any().downcast_ref::<DataSourceExec>()?;
    let files = exec
        .data_source()
        .as_any()
        .downcast_ref::<FileScanConfig>()?;
    let parquet = files
        .file_source()
        .as_any()
        .downcast_ref::<ParquetSource>()?;
    (!parquet.table_parquet_options().global.pushdown_filters).then_some((files, parquet))
}

/// The dynamic filters of a Parquet scan's predicate (on the table's columns) and whether the
/// predicate has static parts too; None for other nodes and scans without dynamic filters.
fn dynamic_filters(node: &Arc<dyn ExecutionPlan>) -> Option<(Vec<Arc<dyn PhysicalExpr>>, bool)> {
    let (files, _) = parquet_scan(node)?;
    let predicate = files.file_source().filter()?;
    let (dynamic, fixed): (Vec<_>, Vec<_>) = split_conjunction(&predicate)
        .into_iter()
        .cloned()
        .partition(|e| e.as_any().is::<DynamicFilterPhysicalExpr>());
    // Dynamic filters on the table's columns are applied above the scan, to its output, by
    // name; a scan outputting computed columns could have one named as a table column.
    let plain = files.file_source().projection().is_none_or(|p| {
        p.iter().all(|e| {
            e.expr
                .as_any()
                .downcast_ref::<Column>()
                .is_some_and(|c| c.name() == e.alias)
        })
    });
    (!dynamic.is_empty() && (plain || fixed.is_empty())).then_some((dynamic, !fixed.is_empty()))
}

/// `filters` on the output columns of `node` (by name); None if it does not output them all.
fn on_output(
    filters: Vec<Arc<dyn PhysicalExpr>>,
    node: &Arc<dyn ExecutionPlan>,
) -> Option<Vec<Arc<dyn PhysicalExpr>>> {
    let schema = node.schema();
    filters
        .into_iter()
        .map(|e| reassign_expr_columns(e, &schema).ok())
        .collect()
}

/// The scan under a FilterExec, through the nodes that only pass its rows on (Lakegate's and
/// deltalake's scan wrappers, repartitioning, coalescing).
fn scan_under(filter: &Arc<dyn ExecutionPlan>) -> Option<&Arc<dyn ExecutionPlan>> {
    let mut node = *filter.children().first()?;
    while let [child] = node.children()[..]
        && matches!(
            node.name(),
            "TableFilesExec" | "DeltaScanExec" | "RepartitionExec" | "CoalesceBatchesExec"
        )
    {
        node = child;
    }
    node.as_any().is::<DataSourceExec>().then_some(node)
}

/// A Parquet scan whose only predicate is dynamic, filtering row by row while decoding.
fn row_filter(node: &Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let Some((files, parquet)) = parquet_scan(node) else {
        return Ok(Arc::clone(node));
    };
    let source = parquet.clone().with_pushdown_filters(true);
    let files = FileScanConfigBuilder::from(files.clone())
        .with_source(Arc::new(source))
        .build();
    Ok(DataSourceExec::from_data_source(files))
}
