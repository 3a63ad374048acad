//! The governed plan's inputs a statement needs before its secure scans are made: what each
//! materialized view it reads owes to its sources' policies, the columns each table read at an
//! older version has now, and the check that a table has every column its policies name.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef};
use datafusion::logical_expr::{Expr, LogicalPlan};

use super::Session;
use crate::catalog::Relation;
use crate::error::{Error, Result};
use crate::policy::PolicySet;
use crate::policy::matview::ViewLineage;
use crate::policy::secure::TableRules;

/// What a materialized view read in a statement owes to policies.
pub(super) enum ViewRules {
    /// Computed past no policy: each reader's rules on its sources, over its columns.
    Sources {
        lineage: Arc<ViewLineage>,
        /// Each source's columns (bare names), to plan its policies' expressions over.
        schemas: HashMap<String, DFSchemaRef>,
    },
    /// Computed under the policies that bound its owner (their version): the owner's alone.
    Owners { owner: String, under: String },
}

impl Session {
    /// The materialized views `plan` reads (by object), with what they owe to policies.
    pub(super) async fn view_rules(
        &self,
        plan: &LogicalPlan,
    ) -> Result<HashMap<String, ViewRules>> {
        let catalog = self.engine.planner.catalog().clone();
        let mut views = vec![];
        self.with_names(|names| {
            plan.apply_with_subqueries(|p| {
                if let LogicalPlan::TableScan(scan) = p
                    && let Some(o) = names.scan(scan)
                    && let Some((sc, t)) = o.split_once('.')
                    && let Some(Relation::Table(entry)) = catalog.relation(sc, t)
                    && let Some(mv) = entry.matview
                {
                    views.push((o, mv));
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        let mut out = HashMap::new();
        for (object, mv) in views {
            if out.contains_key(&object) {
                continue;
            }
            match &mv.computed_under {
                Some(under) if !self.engine.is_admin(&mv.owner) => {
                    out.insert(
                        object,
                        ViewRules::Owners {
                            owner: mv.owner.clone(),
                            under: under.clone(),
                        },
                    );
                    continue;
                }
                _ => {}
            }
            let lineage = self.view_lineage(&object, &mv).await?;
            let mut schemas = HashMap::new();
            for source in &lineage.sources {
                if let Some((sc, t)) = source.split_once('.')
                    && let Some(Relation::Table(entry)) = catalog.relation(sc, t)
                {
                    let provider = catalog.table_provider(&entry).await?;
                    schemas.insert(
                        source.clone(),
                        Arc::new(datafusion::common::DFSchema::try_from(
                            provider.schema().as_ref().clone(),
                        )?),
                    );
                }
            }
            out.insert(object, ViewRules::Sources { lineage, schemas });
        }
        Ok(out)
    }

    /// The lineage of a materialized view's definition (kept while the catalog is unchanged).
    async fn view_lineage(
        &self,
        object: &str,
        mv: &crate::catalog::MatView,
    ) -> Result<Arc<ViewLineage>> {
        let generation = self.engine.planner.catalog().generation();
        let key = format!("{object}\0{}", mv.sql);
        if let Some((g, l)) = self
            .engine
            .view_lineage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && *g == generation
        {
            return Ok(l.clone());
        }
        use crate::catalog::ViewExpander;
        let plan = self.engine.planner.expand(&mv.schema, &mv.sql, &[]).await?;
        let catalog = self.engine.planner.catalog().clone();
        let view_schema = move |schema: &str, name: &str| match catalog.relation(schema, name) {
            Some(Relation::View(v)) if !v.schema.is_empty() => Some(v.schema),
            _ => None,
        };
        let names = crate::policy::access::Names {
            database: self.engine.planner.database(),
            schema: &mv.schema,
            view_schema: &view_schema,
        };
        let lineage = Arc::new(crate::policy::matview::lineage(&plan, names)?);
        self.engine
            .view_lineage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (generation, lineage.clone()));
        Ok(lineage)
    }

    /// This session's rules on the materialized view `object` as the scan with columns `table`
    /// reads it (besides any policy on the view itself).
    pub(super) fn rules_of_view(
        &self,
        policies: &PolicySet,
        object: &str,
        table: &DFSchemaRef,
        view: &ViewRules,
    ) -> Result<Option<TableRules>> {
        let name = object.rsplit('.').next().unwrap_or(object);
        match view {
            ViewRules::Owners { owner, under } => {
                if &self.principal.name != owner {
                    return Err(Error::PermissionDenied(format!(
                        "permission denied for materialized view {name}: it was computed under the \
                         policies that bind its owner {owner}, and only {owner} reads it"
                    )));
                }
                if under != &policies.version {
                    return Err(Error::PermissionDenied(format!(
                        "permission denied for materialized view {name}: it was computed under \
                         other policies than those in force; REFRESH MATERIALIZED VIEW {name}"
                    )));
                }
                Ok(None)
            }
            ViewRules::Sources { lineage, schemas } => {
                let columns: Vec<String> =
                    table.fields().iter().map(|f| f.name().clone()).collect();
                if columns.len() != lineage.columns.len() {
                    return Err(Error::PermissionDenied(format!(
                        "permission denied for materialized view {name}: its columns no longer \
                         match its query; REFRESH it"
                    )));
                }
                let subject = self.subject();
                let mut source_rules = |source: &str| -> Result<Option<TableRules>> {
                    let Some(schema) = schemas.get(source) else {
                        return Err(Error::PermissionDenied(format!(
                            "permission denied for materialized view {name}: its source {source} is gone"
                        )));
                    };
                    let parse = |sql: &str| -> Result<Expr> {
                        Ok(self.context().parse_sql_expr(sql, schema)?)
                    };
                    let stored = self.stored_tags(source);
                    let rules = policies.rules_for(&subject, source, schema, &stored, &parse)?;
                    if let Some(r) = &rules {
                        self.seen().policies.extend(r.applied.iter().cloned());
                    }
                    Ok(rules)
                };
                let derived =
                    crate::policy::matview::derive(name, &columns, lineage, &mut source_rules)?;
                derived.map(|r| over_scan(r, table)).transpose()
            }
        }
    }
}

/// Rules over bare column names as rules over the scan's (qualified) columns, each mask of its
/// column's type.
fn over_scan(rules: TableRules, table: &DFSchemaRef) -> Result<TableRules> {
    let qualify = |e: Expr| -> Result<Expr> {
        Ok(e.transform(|x| match x {
            Expr::Column(c) if c.relation.is_none() => {
                match table.qualified_field_with_unqualified_name(&c.name) {
                    Ok((q, f)) => Ok(Transformed::yes(Expr::Column(Column::new(
                        q.cloned(),
                        f.name(),
                    )))),
                    Err(_) => Ok(Transformed::no(Expr::Column(c))),
                }
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
    };
    let filter = rules.filter.map(qualify).transpose()?;
    let mut masks = Vec::with_capacity(rules.masks.len());
    for (c, m) in rules.masks {
        let t = table
            .field_with_unqualified_name(&c)
            .map(|f| f.data_type().clone())
            .map_err(|_| Error::internal(format!("a view's mask names no column {c}")))?;
        masks.push((c, datafusion::logical_expr::cast(qualify(m)?, t)));
    }
    Ok(TableRules {
        filter,
        masks,
        applied: rules.applied,
        denied: rules.denied,
    })
}

/// Both rules of one table (`table`: its columns): filters ANDed, a column with masks from
/// both nulled.
pub(super) fn both(
    a: Option<TableRules>,
    b: Option<TableRules>,
    table: &DFSchemaRef,
) -> Option<TableRules> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(mut a), Some(b)) => {
            a.filter = match (a.filter.take(), b.filter) {
                (Some(x), Some(y)) => Some(x.and(y)),
                (x, y) => x.or(y),
            };
            for (c, m) in b.masks {
                match a.masks.iter_mut().find(|(n, _)| *n == c) {
                    Some(existing) => {
                        let t = table
                            .field_with_unqualified_name(&c)
                            .map(|f| f.data_type().clone())
                            .unwrap_or(datafusion::arrow::datatypes::DataType::Null);
                        existing.1 = datafusion::logical_expr::cast(
                            Expr::Literal(datafusion::common::ScalarValue::Null, None),
                            t,
                        );
                    }
                    None => a.masks.push((c, m)),
                }
            }
            a.applied.extend(b.applied);
            a.denied.extend(b.denied);
            Some(a)
        }
    }
}

impl Session {
    /// The columns each table read at an older version in `plan` has now (by name).
    pub(super) async fn current_columns_of_versions(
        &self,
        plan: &LogicalPlan,
    ) -> Result<HashMap<String, std::collections::HashSet<String>>> {
        use datafusion::common::tree_node::TreeNodeRecursion;
        let mut objects = std::collections::BTreeSet::new();
        self.with_names(|names| {
            plan.apply_with_subqueries(|p| {
                if let LogicalPlan::TableScan(scan) = p
                    && crate::policy::access::is_time_travel(&scan.table_name)
                    && let Some(o) = names.scan(scan)
                {
                    objects.insert(o);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        let catalog = self.engine.planner.catalog();
        let mut out = HashMap::new();
        for object in objects {
            let Some((schema, table)) = object.split_once('.') else {
                continue;
            };
            if let Some(crate::catalog::Relation::Table(entry)) = catalog.relation(schema, table) {
                let provider = catalog.table_provider(&entry).await?;
                let names = provider
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                out.insert(object, names);
            }
        }
        Ok(out)
    }

    /// 42501 when `object` lacks a column its policies name exactly (`PolicySet::named_columns`;
    /// a column hidden from this principal is there, only not shown).
    pub(super) fn check_named_columns(
        &self,
        policies: &PolicySet,
        object: &str,
        table: &datafusion::common::DFSchemaRef,
        stored: &crate::policy::StoredTags,
    ) -> Result<()> {
        let hidden = policies.denied_columns(&self.subject(), object, stored);
        for (policy, column) in policies.named_columns(object) {
            if table.fields().iter().any(|f| f.name() == &column) || hidden.contains(&column) {
                continue;
            }
            let problem = format!(
                "{object}: the policy \"{policy}\" names column \"{column}\", which the table does not have"
            );
            tracing::error!("{problem}: the table is not readable past its policies");
            self.engine.policy_problem(object, problem);
            return Err(Error::PermissionDenied(format!(
                "permission denied for table {}: its policies name a column it does not have",
                object.rsplit('.').next().unwrap_or(object)
            )));
        }
        Ok(())
    }
}
