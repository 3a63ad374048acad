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

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

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
/// (their FilterExec applies it once).
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
            let only_dynamic = files.file_source().filter().is_some_and(|p| {
                split_conjunction(&p)
                    .iter()
                    .all(|e| e.as_any().is::<DynamicFilterPhysicalExpr>())
            });
            if !only_dynamic || parquet.table_parquet_options().global.pushdown_filters {
                return Ok(Transformed::no(node));
            }
            let source = parquet.clone().with_pushdown_filters(true);
            let files = FileScanConfigBuilder::from(files.clone())
                .with_source(Arc::new(source))
                .build();
            let exec: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(files);
            Ok(Transformed::yes(exec))
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
