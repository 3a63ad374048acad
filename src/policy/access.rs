//! The tables a plan reads and writes, named as the policies name them: `schema.table` for
//! this database's tables, `catalog.schema.table` for attached catalogs. Every scan counts,
//! wherever it is (subqueries, CTEs, UNION arms, join sides, the source of an INSERT or CTAS),
//! and a view counts as the tables it reads. System schemas are not tables of anyone's.

use std::collections::BTreeSet;

use datafusion::catalog::view::ViewTable;
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;

use crate::error::Result;

/// The hidden schema time-travel reads go through (`catalog::versions::SCHEMA`).
const VERSIONS_SCHEMA: &str = "__lakegate_versions";

/// The catalog a COPY FROM's incoming rows are read from (session::copy): not a table of anyone's.
pub const COPY_SOURCE_CATALOG: &str = "__lakegate_copy";

/// The catalogs through which UPDATE, DELETE and MERGE read their target's rows with their row
/// identity start so (`__lakegate_dml_<id>.schema.table` reads `schema.table`).
pub const DML_CATALOG: &str = "__lakegate_dml";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Access {
    pub reads: BTreeSet<String>,
    pub writes: BTreeSet<String>,
    /// Of `writes`, those only UPDATEd (an `update` grant may do; its columns are checked
    /// with the assignments).
    pub updates: BTreeSet<String>,
}

/// Where unqualified names resolve: the session's database and current schema, and for a
/// view, the schema its definition was written against.
#[derive(Clone, Copy)]
pub struct Names<'a> {
    pub database: &'a str,
    pub schema: &'a str,
    /// (schema, view) -> the schema the view's definition resolves names in.
    pub view_schema: &'a dyn Fn(&str, &str) -> Option<String>,
}

impl Names<'_> {
    /// The policy name of the table a scan reads, or None for a system table or a recursive
    /// CTE's work table (the CTE's own rows, which its terms' scans govern).
    pub fn scan(&self, scan: &datafusion::logical_expr::TableScan) -> Option<String> {
        if is_work_table(scan) {
            return None;
        }
        self.object(&scan.table_name)
    }

    /// The policy name of a table reference, or None for a system table.
    pub fn object(&self, r: &TableReference) -> Option<String> {
        // A table function's scan (`generate_series(1, 3)`, `unnest(...)`) reads no table; table
        // names with parentheses cannot be created (catalog::check_free).
        if let TableReference::Bare { table } = r
            && table.contains('(')
        {
            return None;
        }
        let (catalog, schema, table) = match r {
            TableReference::Bare { table } => (self.database, self.schema, table.as_ref()),
            TableReference::Partial { schema, table } => {
                (self.database, schema.as_ref(), table.as_ref())
            }
            TableReference::Full {
                catalog,
                schema,
                table,
            } => (catalog.as_ref(), schema.as_ref(), table.as_ref()),
        };
        if matches!(schema, "information_schema" | "pg_catalog") || catalog == COPY_SOURCE_CATALOG {
            return None;
        }
        if catalog.starts_with(DML_CATALOG) {
            return Some(format!("{schema}.{table}"));
        }
        if schema == VERSIONS_SCHEMA {
            // `schema.table@v3` reads schema.table.
            let base = table.rsplit_once('@').map(|(b, _)| b).unwrap_or(table);
            return Some(base.to_string());
        }
        Some(if catalog == self.database {
            format!("{schema}.{table}")
        } else {
            format!("{catalog}.{schema}.{table}")
        })
    }
}

/// Whether a table reference reads an older version of a table (time travel).
pub fn is_time_travel(r: &TableReference) -> bool {
    r.schema() == Some(VERSIONS_SCHEMA)
}

/// Whether a scan reads a recursive CTE's work table.
pub fn is_work_table(scan: &datafusion::logical_expr::TableScan) -> bool {
    source_as_provider(&scan.source).is_ok_and(|p| {
        p.as_any()
            .downcast_ref::<datafusion::catalog::cte_worktable::CteWorkTable>()
            .is_some()
    })
}

/// The tables `plan` reads and writes.
pub fn of_plan(plan: &LogicalPlan, names: Names<'_>) -> Result<Access> {
    let mut access = Access::default();
    collect(plan, names, &mut access)?;
    Ok(access)
}

fn collect(plan: &LogicalPlan, names: Names<'_>, access: &mut Access) -> Result<()> {
    let mut views: Vec<(LogicalPlan, String)> = vec![];
    plan.apply_with_subqueries(|p| {
        match p {
            LogicalPlan::TableScan(scan) => {
                let view = source_as_provider(&scan.source).ok().and_then(|t| {
                    t.as_any()
                        .downcast_ref::<ViewTable>()
                        .map(|v| v.logical_plan().clone())
                });
                match view {
                    Some(v) => {
                        // Names inside the view resolve in its own schema; unknown: deny-safe
                        // default of the view's schema.
                        let (schema, name) = match names.scan(scan) {
                            Some(o) => match o.split_once('.') {
                                Some((s, n)) => (s.to_string(), n.to_string()),
                                None => (names.schema.to_string(), o),
                            },
                            None => (
                                names.schema.to_string(),
                                scan.table_name.table().to_string(),
                            ),
                        };
                        let inner = (names.view_schema)(&schema, &name).unwrap_or(schema);
                        views.push((v, inner));
                    }
                    None => {
                        if let Some(o) = names.scan(scan) {
                            access.reads.insert(o);
                        }
                    }
                }
            }
            LogicalPlan::Dml(dml) => {
                if let Some(o) = names.object(&dml.table_name) {
                    if dml.op == datafusion::logical_expr::WriteOp::Update {
                        access.updates.insert(o.clone());
                    }
                    access.writes.insert(o);
                }
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    for (v, schema) in views {
        let inner = Names {
            schema: &schema,
            ..names
        };
        collect(&v, inner, access)?;
    }
    Ok(())
}

impl super::PolicySet {
    /// A row filter, mask or tag of the policy files that binds `old` and would not bind `new`
    /// (its name): renaming a table past it would unbind it, so the rename is refused until
    /// the policy files follow. Grants may differ: a name's grants are what its name is for.
    pub fn shed_by_rename(&self, old: &str, new: &str) -> Option<String> {
        let shed = |re: &regex_lite::Regex| re.is_match(old) && !re.is_match(new);
        if let Some((_, f)) = self.row_filters.iter().find(|(re, _)| shed(re)) {
            return Some(
                f.name
                    .clone()
                    .unwrap_or_else(|| format!("row filter on {}", f.table)),
            );
        }
        if let Some((_, m)) = self.masks.iter().find(|(re, _)| shed(re)) {
            return Some(
                m.name
                    .clone()
                    .unwrap_or_else(|| format!("mask on {}", m.table)),
            );
        }
        self.tags
            .iter()
            .find(|(re, _)| shed(re))
            .map(|(_, t)| format!("tag {} on {}", t.tags.join(", "), t.table))
    }
}
