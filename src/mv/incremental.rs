//! The plan of an aggregate materialized view's incremental refresh: its stored rows and the
//! aggregates of its source's new rows, aggregated again (see `session::matview`).

use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use super::rewrite::Merge;
use crate::error::{Error, Result};

/// An aggregate view's rows and its new rows' aggregates, aggregated again by the view's key
/// columns (sums and counts added, minima and maxima taken, averages merged from their hidden
/// sums and counts), in the view's column order.
pub fn merged_again(
    old_rows: LogicalPlan,
    fresh_rows: LogicalPlan,
    kinds: &[Merge],
    target: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<LogicalPlan> {
    let both = LogicalPlanBuilder::from(old_rows)
        .union(fresh_rows)?
        .build()?;
    let columns = both.schema().columns();
    let group: Vec<Expr> = kinds
        .iter()
        .zip(&columns)
        .filter(|(k, _)| **k == Merge::Key)
        .map(|(_, c)| Expr::Column(c.clone()))
        .collect();
    let column = |i: usize| {
        columns
            .get(i)
            .map(|c| Expr::Column(c.clone()))
            .ok_or_else(|| Error::internal("a view column is missing"))
    };
    let aggregates: Vec<Expr> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| **k != Merge::Key)
        .map(|(i, k)| {
            Ok(match k {
                Merge::Min => min(column(i)?),
                Merge::Max => max(column(i)?),
                Merge::Avg { sum, count } => {
                    crate::mv::avg_merge::avg_merge(target.field(i).data_type().clone())?
                        .call(vec![column(*sum)?, column(*count)?])
                }
                Merge::Key | Merge::Sum => sum(column(i)?),
            })
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .enumerate()
        .map(|(i, e)| e.alias(format!("lakegate_merged_{i}")))
        .collect();
    let merged = LogicalPlanBuilder::from(both)
        .aggregate(group, aggregates)?
        .build()?;
    // Back in the view's column order.
    let out = merged.schema().columns();
    let (mut key_at, mut agg_at) = (0, kinds.iter().filter(|k| **k == Merge::Key).count());
    let ordered = kinds
        .iter()
        .map(|k| {
            let i = if *k == Merge::Key {
                key_at += 1;
                key_at - 1
            } else {
                agg_at += 1;
                agg_at - 1
            };
            out.get(i)
                .map(|c| Expr::Column(c.clone()))
                .ok_or_else(|| Error::internal("a merged view column is missing"))
        })
        .collect::<Result<Vec<Expr>>>()?;
    Ok(LogicalPlanBuilder::from(merged).project(ordered)?.build()?)
}
