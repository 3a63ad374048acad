//! Which classification tags each output column of a plan carries: the tags of every table
//! column it is computed from, through projections, aggregates, joins, unions and views. A new
//! table made from a query (CREATE TABLE AS) inherits them, so a mask by tag follows the data.
//! Where a node's column mapping is not known here, every output column gets every input
//! column's tags: over-tagging only masks more, it never lets a value out unmasked.

use std::collections::BTreeSet;

use datafusion::catalog::view::ViewTable;
use datafusion::common::tree_node::TreeNode;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan};

use super::access::Names;
use crate::error::Result;

type Tags = BTreeSet<String>;

/// The tags of each output column of `plan`; `tags_of(object, column)` answers a table's.
pub fn tags(
    plan: &LogicalPlan,
    names: Names<'_>,
    tags_of: &dyn Fn(&str, &str) -> Vec<String>,
) -> Result<Vec<Tags>> {
    let width = plan.schema().fields().len();
    let out = match plan {
        LogicalPlan::TableScan(scan) => {
            let view = source_as_provider(&scan.source).ok().and_then(|t| {
                t.as_any()
                    .downcast_ref::<ViewTable>()
                    .map(|v| v.logical_plan().clone())
            });
            let object = names.scan(scan);
            match (view, object) {
                (Some(v), object) => {
                    let (schema, name) = object
                        .as_deref()
                        .and_then(|o| o.split_once('.'))
                        .map(|(s, n)| (s.to_string(), n.to_string()))
                        .unwrap_or_else(|| {
                            (
                                names.schema.to_string(),
                                scan.table_name.table().to_string(),
                            )
                        });
                    let inner = (names.view_schema)(&schema, &name).unwrap_or(schema);
                    let all = tags(
                        &v,
                        Names {
                            schema: &inner,
                            ..names
                        },
                        tags_of,
                    )?;
                    match &scan.projection {
                        Some(p) => p
                            .iter()
                            .map(|i| all.get(*i).cloned().unwrap_or_default())
                            .collect(),
                        None => all,
                    }
                }
                (None, Some(object)) => scan
                    .projected_schema
                    .fields()
                    .iter()
                    .map(|f| tags_of(&object, f.name()).into_iter().collect())
                    .collect(),
                (None, None) => vec![Tags::new(); width],
            }
        }
        LogicalPlan::Projection(p) => {
            let input = tags(&p.input, names, tags_of)?;
            p.expr
                .iter()
                .map(|e| expr_tags(e, &p.input, &input, names, tags_of))
                .collect::<Result<_>>()?
        }
        LogicalPlan::Aggregate(a) => {
            let input = tags(&a.input, names, tags_of)?;
            a.group_expr
                .iter()
                .chain(a.aggr_expr.iter())
                .map(|e| expr_tags(e, &a.input, &input, names, tags_of))
                .collect::<Result<_>>()?
        }
        LogicalPlan::Window(w) => {
            let mut input = tags(&w.input, names, tags_of)?;
            for e in &w.window_expr {
                let t = expr_tags(e, &w.input, &input, names, tags_of)?;
                input.push(t);
            }
            input
        }
        LogicalPlan::Join(j) => {
            let left = tags(&j.left, names, tags_of)?;
            let right = tags(&j.right, names, tags_of)?;
            match j.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti => left,
                JoinType::RightSemi | JoinType::RightAnti => right,
                _ => left.into_iter().chain(right).collect(),
            }
        }
        LogicalPlan::Union(u) => {
            let mut out = vec![Tags::new(); width];
            for input in &u.inputs {
                for (i, t) in tags(input, names, tags_of)?.into_iter().enumerate() {
                    if let Some(o) = out.get_mut(i) {
                        o.extend(t);
                    }
                }
            }
            out
        }
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => vec![Tags::new(); width],
        other => {
            let inputs = other.inputs();
            match inputs.as_slice() {
                // Filters, sorts, limits, aliases, the secure scan: the same columns.
                [one] if one.schema().fields().len() == width => tags(one, names, tags_of)?,
                _ => {
                    let mut all = Tags::new();
                    for input in inputs {
                        all.extend(tags(input, names, tags_of)?.into_iter().flatten());
                    }
                    vec![all; width]
                }
            }
        }
    };
    // A mapping that lost track of a column falls back to everything the plan reads.
    if out.len() != width {
        let mut all = Tags::new();
        for input in plan.inputs() {
            all.extend(tags(input, names, tags_of)?.into_iter().flatten());
        }
        return Ok(vec![all; width]);
    }
    Ok(out)
}

/// The tags an expression over `input` carries: those of the columns it reads, and of every
/// column of any subquery inside it.
fn expr_tags(
    e: &Expr,
    input: &LogicalPlan,
    input_tags: &[Tags],
    names: Names<'_>,
    tags_of: &dyn Fn(&str, &str) -> Vec<String>,
) -> Result<Tags> {
    let mut out = Tags::new();
    for c in e.column_refs() {
        match input.schema().index_of_column(c) {
            Ok(i) => out.extend(input_tags.get(i).cloned().unwrap_or_default()),
            // An outer reference or a name not found: everything the input carries.
            Err(_) => out.extend(input_tags.iter().flatten().cloned()),
        }
    }
    let mut subqueries = vec![];
    e.apply(|x| {
        match x {
            Expr::ScalarSubquery(s) => subqueries.push(s.subquery.as_ref().clone()),
            Expr::InSubquery(s) => subqueries.push(s.subquery.subquery.as_ref().clone()),
            Expr::Exists(s) => subqueries.push(s.subquery.subquery.as_ref().clone()),
            _ => {}
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    for s in subqueries {
        out.extend(tags(&s, names, tags_of)?.into_iter().flatten());
    }
    Ok(out)
}
