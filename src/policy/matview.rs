//! A materialized view governed by its sources' policies. Its rows were computed past them
//! (as an administrator, or a user no policy bound), so each reader gets, over the view's
//! columns, what its own policies on each source would have made of them:
//!
//! - a row filter on a source applies to the view's rows through the view's columns that carry
//!   the columns it reads unchanged (plain columns, grouping keys): exact, since such a row (or
//!   group) of the view holds only source rows with those values. A view that does not carry
//!   them, or computes window functions (over rows the filter would hide), is refused to that
//!   reader (42501);
//! - a mask on a source column applies to the view's columns that carry it unchanged, when the
//!   view computes nothing with it (no predicate, join, grouping, aggregate or expression reads
//!   it: those saw the raw values); otherwise the view is refused to that reader.
//!
//! The rules come out as a secure scan's over the view (`secure::TableRules`), so a direct read
//! and a query the materialized-view rewrite answers from the view are governed alike.

use std::collections::BTreeSet;

use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::{Expr, LogicalPlan};

use super::access::Names;
use super::lineage::{Origin, Source};
use super::secure::TableRules;
use crate::error::{Error, Result};

/// Where a view's columns come from.
#[derive(Debug, Clone, Default)]
pub struct ViewLineage {
    /// Each column of the view's result, in order.
    pub columns: Vec<Origin>,
    /// The source columns it computes with (see `lineage::computed_with`).
    pub computed: BTreeSet<Source>,
    pub windowed: bool,
    /// The tables it reads.
    pub sources: BTreeSet<String>,
}

/// The lineage of a view's defining plan (as planned, views inlined).
pub fn lineage(plan: &LogicalPlan, names: Names<'_>) -> Result<ViewLineage> {
    Ok(ViewLineage {
        columns: super::lineage::origins(plan, names)?,
        computed: super::lineage::computed_with(plan, names)?,
        windowed: super::lineage::has_window(plan),
        sources: super::access::of_plan(plan, names)?.reads,
    })
}

/// A reader's rules on a view (`view`: its name for messages) whose columns are `columns`,
/// from its rules on each source (`source_rules(object)`, expressions over the source's bare
/// column names). The result's expressions are over the view's bare column names. Refused
/// (42501) where the view cannot carry them (see the module doc).
pub fn derive(
    view: &str,
    columns: &[String],
    lineage: &ViewLineage,
    source_rules: &mut dyn FnMut(&str) -> Result<Option<TableRules>>,
) -> Result<Option<TableRules>> {
    let refuse = |why: String| {
        Error::PermissionDenied(format!(
            "permission denied for materialized view {view}: {why}"
        ))
    };
    let mut out = TableRules::default();
    for source in &lineage.sources {
        let Some(rules) = source_rules(source)? else {
            continue;
        };
        // The view column carrying `source.c` unchanged.
        let carried = |c: &str| {
            lineage
                .columns
                .iter()
                .zip(columns)
                .find(|(o, _)| o.plain.as_ref().is_some_and(|(s, n)| s == source && n == c))
                .map(|(_, v)| v.clone())
        };
        let over_view = |e: Expr| -> Result<Expr> {
            let mut missing = None;
            let e = e
                .transform(|x| match x {
                    Expr::Column(c) => match carried(&c.name) {
                        Some(v) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(v)))),
                        None => {
                            missing = Some(c.name.clone());
                            Ok(Transformed::no(Expr::Column(c)))
                        }
                    },
                    other => Ok(Transformed::no(other)),
                })?
                .data;
            match missing {
                Some(c) => Err(refuse(format!(
                    "your policies on {source} read its column {c}, which the view does not carry"
                ))),
                None => Ok(e),
            }
        };
        if let Some(f) = rules.filter {
            if lineage.windowed {
                return Err(refuse(format!(
                    "a row filter binds you on {source} and the view computes window functions over all its rows"
                )));
            }
            let f = over_view(f)?;
            out.filter = Some(match out.filter.take() {
                Some(prev) => prev.and(f),
                None => f,
            });
        }
        for (c, mask) in rules.masks {
            let key = (source.clone(), c.clone());
            if lineage.computed.contains(&key) {
                return Err(refuse(format!(
                    "column {c} of {source} is masked for you and the view computes with its values"
                )));
            }
            let holders: Vec<&String> = lineage
                .columns
                .iter()
                .zip(columns)
                .filter(|(o, _)| o.sources.contains(&key))
                .map(|(_, v)| v)
                .collect();
            for v in holders {
                let m = over_view(mask.clone())?;
                if let Some(existing) = out.masks.iter_mut().find(|(n, _)| n == v) {
                    // Two masks on one column: nothing of it shows.
                    existing.1 = Expr::Literal(datafusion::common::ScalarValue::Null, None);
                } else {
                    out.masks.push((v.clone(), m));
                }
                if rules.denied.contains(&c) {
                    out.denied.push(v.clone());
                }
            }
        }
        out.applied.extend(rules.applied);
    }
    Ok(if out.applied.is_empty() {
        None
    } else {
        Some(out)
    })
}
