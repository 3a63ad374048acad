//! Where each output column of a plan comes from: the table columns (`schema.table`, column)
//! it is computed from, and the one it is unchanged, through projections, filters, aggregates,
//! joins, unions and views. Two uses:
//!
//! - classification tags follow the data: a table made from a query (CREATE TABLE AS, a
//!   materialized view) inherits the tags of every column each of its columns is computed
//!   from, so a mask by tag applies to the copy too;
//! - a materialized view is governed by its sources' policies (`policy::matview`): a reader's
//!   row filter on a source applies to the view's rows through the view's columns that carry
//!   the filtered columns unchanged, and its masks through the columns that carry masked ones.
//!
//! Where a node's column mapping is not known here, every output column is taken to come from
//! every input column and none unchanged: that only tags and masks more, and refuses more.

use std::collections::BTreeSet;

use datafusion::catalog::view::ViewTable;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan};

use super::access::Names;
use crate::error::Result;

type Tags = BTreeSet<String>;

/// A table column: (`schema.table`, column).
pub type Source = (String, String);

/// Where one output column comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Every table column its values are computed from.
    pub sources: BTreeSet<Source>,
    /// The table column it is, value for value, when it is one (through projections of the
    /// plain column, filters, sorts, limits, aliases, join sides and grouping keys).
    pub plain: Option<Source>,
}

impl Origin {
    fn computed(sources: BTreeSet<Source>) -> Origin {
        Origin {
            sources,
            plain: None,
        }
    }
}

/// How deep a plan this walks (a deeper one answers 54001).
const MAX_DEPTH: usize = 2000;

/// The tags of each output column of `plan`; `tags_of(object, column)` answers a table's.
pub fn tags(
    plan: &LogicalPlan,
    names: Names<'_>,
    tags_of: &dyn Fn(&str, &str) -> Vec<String>,
) -> Result<Vec<Tags>> {
    Ok(origins(plan, names)?
        .into_iter()
        .map(|o| {
            o.sources
                .iter()
                .flat_map(|(object, column)| tags_of(object, column))
                .collect()
        })
        .collect())
}

/// Where each output column of `plan` comes from.
pub fn origins(plan: &LogicalPlan, names: Names<'_>) -> Result<Vec<Origin>> {
    walk(plan, names, 0)
}

/// The table columns `plan` computes with anywhere (predicates, join conditions, grouping
/// keys, aggregate and window arguments, expressions of its result, ordering, subqueries):
/// every source that is not only carried unchanged to its result.
pub fn computed_with(plan: &LogicalPlan, names: Names<'_>) -> Result<BTreeSet<Source>> {
    let mut out = BTreeSet::new();
    computed_in(plan, names, 0, &mut out)?;
    Ok(out)
}

/// Whether `plan` has a window function (which sees rows a row filter over its result would
/// hide).
pub fn has_window(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|p| {
        if matches!(p, LogicalPlan::Window(_)) {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn computed_in(
    plan: &LogicalPlan,
    names: Names<'_>,
    depth: usize,
    out: &mut BTreeSet<Source>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(crate::error::stack_depth());
    }
    if let LogicalPlan::TableScan(scan) = plan
        && let Some((v, inner)) = view_of(scan, names)
    {
        return computed_in(
            &v,
            Names {
                schema: &inner,
                ..names
            },
            depth + 1,
            out,
        );
    }
    // The inputs' columns, to resolve what this node's expressions read.
    let inputs: Vec<Vec<Origin>> = plan
        .inputs()
        .iter()
        .map(|i| walk(i, names, depth + 1))
        .collect::<Result<_>>()?;
    let flat: Vec<Origin> = inputs.iter().flatten().cloned().collect();
    let schema_of = |i: &LogicalPlan| i.schema().clone();
    let input_schemas: Vec<_> = plan.inputs().into_iter().map(schema_of).collect();
    let resolve = |c: &datafusion::common::Column, out: &mut BTreeSet<Source>| {
        for (s, origins) in input_schemas.iter().zip(&inputs) {
            if let Ok(i) = s.index_of_column(c) {
                if let Some(o) = origins.get(i) {
                    out.extend(o.sources.iter().cloned());
                }
                return;
            }
        }
        // An outer reference or a name not found here: everything the inputs carry.
        for o in &flat {
            out.extend(o.sources.iter().cloned());
        }
    };
    let plain_projection = |e: &Expr| matches!(e.clone().unalias(), Expr::Column(_));
    let mut exprs: Vec<Expr> = match plan {
        LogicalPlan::Projection(p) => p
            .expr
            .iter()
            .filter(|e| !plain_projection(e))
            .cloned()
            .collect(),
        LogicalPlan::SubqueryAlias(_) => vec![],
        other => other.expressions(),
    };
    // A secure scan's own expressions are its policies', not the query's.
    if let LogicalPlan::Extension(e) = plan
        && e.node.name() == "SecureScan"
    {
        exprs.clear();
    }
    for e in &exprs {
        for c in e.column_refs() {
            resolve(c, out);
        }
        for s in subqueries(e) {
            for o in walk(&s, names, depth + 1)? {
                out.extend(o.sources);
            }
            computed_in(&s, names, depth + 1, out)?;
        }
    }
    for input in plan.inputs() {
        computed_in(input, names, depth + 1, out)?;
    }
    Ok(())
}

/// The view a scan reads (not inlined) and the schema its names resolve in.
fn view_of(
    scan: &datafusion::logical_expr::TableScan,
    names: Names<'_>,
) -> Option<(LogicalPlan, String)> {
    let v = source_as_provider(&scan.source).ok().and_then(|t| {
        t.as_any()
            .downcast_ref::<ViewTable>()
            .map(|v| v.logical_plan().clone())
    })?;
    let (schema, name) = names
        .scan(scan)
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
    Some((v, inner))
}

fn walk(plan: &LogicalPlan, names: Names<'_>, depth: usize) -> Result<Vec<Origin>> {
    if depth > MAX_DEPTH {
        return Err(crate::error::stack_depth());
    }
    let width = plan.schema().fields().len();
    let next = depth + 1;
    let out = match plan {
        LogicalPlan::TableScan(scan) => match view_of(scan, names) {
            Some((v, inner)) => {
                let all = walk(
                    &v,
                    Names {
                        schema: &inner,
                        ..names
                    },
                    next,
                )?;
                match &scan.projection {
                    Some(p) => p
                        .iter()
                        .map(|i| all.get(*i).cloned().unwrap_or_default())
                        .collect(),
                    None => all,
                }
            }
            None => match names.scan(scan) {
                Some(object) => scan
                    .projected_schema
                    .fields()
                    .iter()
                    .map(|f| {
                        let s = (object.clone(), f.name().clone());
                        Origin {
                            sources: BTreeSet::from([s.clone()]),
                            plain: Some(s),
                        }
                    })
                    .collect(),
                None => vec![Origin::default(); width],
            },
        },
        LogicalPlan::Projection(p) => {
            let input = walk(&p.input, names, next)?;
            p.expr
                .iter()
                .map(|e| expr_origin(e, &p.input, &input, names, next))
                .collect::<Result<_>>()?
        }
        LogicalPlan::Aggregate(a) => {
            let input = walk(&a.input, names, next)?;
            let keys = a
                .group_expr
                .iter()
                .map(|e| expr_origin(e, &a.input, &input, names, next));
            let values = a.aggr_expr.iter().map(|e| {
                expr_origin(e, &a.input, &input, names, next).map(|o| Origin::computed(o.sources))
            });
            keys.chain(values).collect::<Result<_>>()?
        }
        LogicalPlan::Window(w) => {
            let mut input = walk(&w.input, names, next)?;
            for e in &w.window_expr {
                let o = expr_origin(e, &w.input, &input, names, next)?;
                input.push(Origin::computed(o.sources));
            }
            input
        }
        LogicalPlan::Join(j) => {
            let left = walk(&j.left, names, next)?;
            let right = walk(&j.right, names, next)?;
            match j.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => left,
                JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => right,
                _ => left.into_iter().chain(right).collect(),
            }
        }
        LogicalPlan::Union(u) => {
            let mut out = vec![BTreeSet::new(); width];
            for input in &u.inputs {
                for (i, o) in walk(input, names, next)?.into_iter().enumerate() {
                    if let Some(slot) = out.get_mut(i) {
                        slot.extend(o.sources);
                    }
                }
            }
            out.into_iter().map(Origin::computed).collect()
        }
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => vec![Origin::default(); width],
        other => {
            let inputs = other.inputs();
            match inputs.as_slice() {
                // Filters, sorts, limits, aliases, distinct, the secure scan: the same columns.
                [one] if one.schema().fields().len() == width => walk(one, names, next)?,
                _ => {
                    let mut all = BTreeSet::new();
                    for input in inputs {
                        for o in walk(input, names, next)? {
                            all.extend(o.sources);
                        }
                    }
                    vec![Origin::computed(all); width]
                }
            }
        }
    };
    // A mapping that lost track of a column falls back to everything the plan reads.
    if out.len() != width {
        let mut all = BTreeSet::new();
        for input in plan.inputs() {
            for o in walk(input, names, next)? {
                all.extend(o.sources);
            }
        }
        return Ok(vec![Origin::computed(all); width]);
    }
    Ok(out)
}

/// Where an expression over `input` comes from: a plain column is its input column; anything
/// else is computed from the columns it reads and every column of any subquery inside it.
fn expr_origin(
    e: &Expr,
    input: &LogicalPlan,
    input_origins: &[Origin],
    names: Names<'_>,
    depth: usize,
) -> Result<Origin> {
    if let Expr::Column(c) = e.clone().unalias()
        && let Ok(i) = input.schema().index_of_column(&c)
    {
        return Ok(input_origins.get(i).cloned().unwrap_or_default());
    }
    let mut out = BTreeSet::new();
    for c in e.column_refs() {
        match input.schema().index_of_column(c) {
            Ok(i) => out.extend(
                input_origins
                    .get(i)
                    .map(|o| o.sources.clone())
                    .unwrap_or_default(),
            ),
            // An outer reference or a name not found: everything the input carries.
            Err(_) => out.extend(input_origins.iter().flat_map(|o| o.sources.clone())),
        }
    }
    for s in subqueries(e) {
        for o in walk(&s, names, depth + 1)? {
            out.extend(o.sources);
        }
    }
    Ok(Origin::computed(out))
}

/// The subqueries inside an expression.
fn subqueries(e: &Expr) -> Vec<LogicalPlan> {
    let mut out = vec![];
    let _ = e.apply(|x| {
        match x {
            Expr::ScalarSubquery(s) => out.push(s.subquery.as_ref().clone()),
            Expr::InSubquery(s) => out.push(s.subquery.subquery.as_ref().clone()),
            Expr::Exists(s) => out.push(s.subquery.subquery.as_ref().clone()),
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}
