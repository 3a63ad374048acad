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
use datafusion::common::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;

use datafusion::prelude::SessionContext;

use crate::policy::Action;

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

impl Session {
    /// A column this session may not see, when named, is refused (42501) rather than reported
    /// missing, as PostgreSQL refuses a column without privilege.
    pub(super) fn hidden_column_named(&self, e: Error, stmt: &DfStatement) -> Error {
        use datafusion::common::SchemaError;
        use datafusion::error::DataFusionError;
        let missing = match &e {
            Error::DataFusion(d) => match d.as_ref().find_root() {
                DataFusionError::SchemaError(f, _) => match f.as_ref() {
                    SchemaError::FieldNotFound { field, .. } => Some(field.name.clone()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        };
        let Some(column) = missing else {
            return e;
        };
        if self.principal.admin {
            return e;
        }
        let policies = self.engine.policies();
        let subject = self.subject();
        let named = self.with_names(|names| {
            let mut tables = vec![];
            if let DfStatement::Statement(s) = stmt {
                let _ = datafusion::sql::sqlparser::ast::visit_relations(s.as_ref(), |r| {
                    tables.push(r.clone());
                    std::ops::ControlFlow::<()>::Continue(())
                });
            }
            tables.into_iter().any(|r| {
                let parts: Vec<String> =
                    r.0.iter()
                        .map(|p| p.to_string().trim_matches('"').to_string())
                        .collect();
                let reference = match parts.as_slice() {
                    [t] => datafusion::common::TableReference::bare(t.as_str()),
                    [s, t] => datafusion::common::TableReference::partial(s.as_str(), t.as_str()),
                    [c, s, t] => {
                        datafusion::common::TableReference::full(c.as_str(), s.as_str(), t.as_str())
                    }
                    _ => return false,
                };
                names.object(&reference).is_some_and(|o| {
                    policies
                        .denied_columns(&subject, &o, &self.stored_tags(&o))
                        .contains(&column)
                })
            })
        });
        if named {
            Error::PermissionDenied(format!("permission denied for column {column}"))
        } else {
            e
        }
    }

    /// Put every scan of a table with row filters or masks for this principal behind a secure
    /// scan (crate::policy::secure).
    ///
    /// Two more checks keep a table's policies meaning what their authors meant (fail closed):
    /// a table lacking a column its policies name exactly is not readable (42501, and
    /// `policy_status()` tells administrators); and an older version read through time travel
    /// shows a bound principal none of the columns the table no longer has under that name (a
    /// column renamed since, whose policies name it by its new name, is NULL there).
    pub(super) async fn secure_plan(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        if self.principal.admin {
            return Ok(plan);
        }
        let policies = self.engine.policies();
        let subject = self.subject();
        self.refuse_governed_history(&plan, &policies, &subject)?;
        let current = self.current_columns_of_versions(&plan).await?;
        let views = self.view_rules(&plan).await?;
        let ctx = &self.ctx;
        let rules_for = |object: &str,
                         table: &datafusion::common::DFSchemaRef,
                         reading: crate::policy::secure::Reading| {
            let parse = |sql: &str| -> Result<datafusion::logical_expr::Expr> {
                Ok(ctx.parse_sql_expr(sql, table)?)
            };
            let stored = self.stored_tags(object);
            if reading == crate::policy::secure::Reading::Current {
                self.check_named_columns(&policies, object, table, &stored)?;
            }
            let mut rules = policies.rules_for(&subject, object, table, &stored, &parse)?;
            if let Some(view) = views.get(object) {
                let owed = self.rules_of_view(&policies, object, table, view)?;
                rules = both(rules, owed, table);
            }
            if reading == crate::policy::secure::Reading::Version
                && policies.binds(&subject, object, &stored)
                && let Some(now) = current.get(object)
            {
                let r = rules.get_or_insert_with(Default::default);
                for f in table.fields() {
                    if !now.contains(f.name()) && !r.masks.iter().any(|(c, _)| c == f.name()) {
                        r.masks.push((
                            f.name().clone(),
                            datafusion::logical_expr::cast(
                                datafusion::logical_expr::lit(ScalarValue::Null),
                                f.data_type().clone(),
                            ),
                        ));
                        r.applied
                            .push(format!("{} not in the current table", f.name()));
                    }
                }
            }
            if let Some(r) = &rules {
                self.seen().policies.extend(r.applied.iter().cloned());
            }
            Ok(rules)
        };
        self.with_names(|names| {
            let plan = crate::policy::secure::check_insert(plan, &rules_for, names)?;
            crate::policy::secure::apply(plan, names, &rules_for)
        })
    }

    /// A table's history (`table_history`: operations, their parameters, row and file counts)
    /// is refused to a principal its row filters or masks bind.
    pub(super) fn refuse_governed_history(
        &self,
        plan: &LogicalPlan,
        policies: &crate::policy::PolicySet,
        subject: &crate::policy::Subject,
    ) -> Result<()> {
        use datafusion::common::tree_node::TreeNodeRecursion;
        let mut refused = None;
        self.with_names(|names| {
            plan.apply_with_subqueries(|p| {
                if let LogicalPlan::TableScan(scan) = p
                    && scan.table_name.table().ends_with("@history")
                    && let Some(object) = names.scan(scan)
                    && self
                        .governing_objects(&object)
                        .iter()
                        .any(|o| policies.binds(subject, o, &self.stored_tags(o)))
                {
                    refused = Some(object);
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        match refused {
            Some(object) => Err(Error::PermissionDenied(format!(
                "permission denied for the history of table {}: its policies filter or mask what you see",
                object.rsplit('.').next().unwrap_or(&object)
            ))),
            None => Ok(()),
        }
    }

    /// The tables whose policies govern what `object` shows: itself, and for a materialized
    /// view its sources (whose policies its readers' secure scans carry).
    pub(super) fn governing_objects(&self, object: &str) -> Vec<String> {
        let mut out = vec![object.to_string()];
        if let Some((schema, table)) = object.split_once('.')
            && let Some(crate::catalog::Relation::Table(t)) =
                self.engine.planner.catalog().relation(schema, table)
            && let Some(mv) = t.matview
        {
            out.extend(mv.sources.into_iter().map(|s| s.object));
        }
        out
    }

    /// Who decides for this session: the role it took, else the user.
    pub(super) fn subject(&self) -> crate::policy::Subject {
        self.principal.subject()
    }

    /// The classification tags the columns of `plan`'s result carry (policy::lineage), by the
    /// names `columns` they get in a new table.
    pub(crate) fn inherited_tags(
        &self,
        plan: &LogicalPlan,
        columns: &[String],
    ) -> Result<crate::policy::StoredTags> {
        let policies = self.engine.policies();
        let tags_of = |object: &str, column: &str| {
            policies.tags_of(object, column, &self.stored_tags(object))
        };
        let per_column =
            self.with_names(|names| crate::policy::lineage::tags(plan, names, &tags_of))?;
        Ok(columns
            .iter()
            .zip(per_column)
            .filter(|(_, t)| !t.is_empty())
            .map(|(c, t)| (c.clone(), t.into_iter().collect()))
            .collect())
    }

    /// The classification tags the catalog keeps for `object` (`schema.table`).
    pub(crate) fn stored_tags(&self, object: &str) -> crate::policy::StoredTags {
        match object
            .split_once('.')
            .and_then(|(schema, table)| self.engine.planner.catalog().relation(schema, table))
        {
            Some(crate::catalog::Relation::Table(t)) => t.tags,
            _ => Default::default(),
        }
    }

    /// Run `f` with the policy names of this session (database, current schema, views' schemas).
    pub(super) fn with_names<T>(&self, f: impl FnOnce(crate::policy::access::Names<'_>) -> T) -> T {
        let catalog = self.engine.planner.catalog().clone();
        let view_schema = move |schema: &str, name: &str| match catalog.relation(schema, name) {
            Some(crate::catalog::Relation::View(v)) if !v.schema.is_empty() => Some(v.schema),
            _ => None,
        };
        let schema = self.current_schema();
        f(crate::policy::access::Names {
            database: self.engine.planner.database(),
            schema: &schema,
            view_schema: &view_schema,
        })
    }

    /// The row filter and masks binding this session's UPDATE/DELETE/MERGE on a table, as
    /// expressions over its bare column names (None: not bound).
    pub(crate) async fn write_rules(
        &self,
        entry: &crate::catalog::TableEntry,
        object: &str,
    ) -> Result<Option<crate::policy::secure::TableRules>> {
        if self.principal.admin {
            return Ok(None);
        }
        let provider = self.engine.planner.catalog().table_provider(entry).await?;
        let table = Arc::new(datafusion::common::DFSchema::try_from(
            provider.schema().as_ref().clone(),
        )?);
        let subject = self.subject();
        let parse = |sql: &str| -> Result<datafusion::logical_expr::Expr> {
            Ok(self.ctx.parse_sql_expr(sql, &table)?)
        };
        self.engine.policies().rules_for(
            &subject,
            object,
            &table,
            &self.stored_tags(object),
            &parse,
        )
    }

    /// The columns of `object` this session does not see at all (masks of kind `deny`).
    pub(crate) fn hidden_columns(&self, object: &str) -> Vec<String> {
        if self.principal.admin {
            return vec![];
        }
        self.engine
            .policies()
            .denied_columns(&self.subject(), object, &self.stored_tags(object))
    }

    /// This session's context, also knowing `catalog.schema.table` as `provider` (a catalog
    /// of a statement's own; the session's context is left as it is).
    pub(crate) fn context_with_table(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
        provider: Arc<dyn datafusion::catalog::TableProvider>,
    ) -> Result<SessionContext> {
        use datafusion::catalog::{
            CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
            MemorySchemaProvider, SchemaProvider,
        };
        let state = self.ctx.state();
        let list = MemoryCatalogProviderList::new();
        for name in state.catalog_list().catalog_names() {
            if let Some(c) = state.catalog_list().catalog(&name) {
                list.register_catalog(name, c);
            }
        }
        let tables = MemorySchemaProvider::new();
        tables.register_table(table.to_string(), provider)?;
        let own = MemoryCatalogProvider::new();
        own.register_schema(schema, Arc::new(tables))?;
        list.register_catalog(catalog.to_string(), Arc::new(own));
        let state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_catalog_list(Arc::new(list))
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// An UPDATE of `object` assigning `columns`: with only `update` grants (no `write`), each
    /// column must be one they name (42501 naming the first that is not).
    pub(crate) fn authorize_columns(&self, object: &str, columns: &[String]) -> Result<()> {
        if self.principal.admin || self.authorize(object, Action::Write).is_ok() {
            return Ok(());
        }
        let allowed = self
            .engine
            .policies()
            .updatable_columns(&self.subject(), object);
        match columns.iter().find(|c| !allowed.contains(c)) {
            Some(c) => Err(Error::PermissionDenied(format!(
                "permission denied for column {c} of table {}",
                object.rsplit('.').next().unwrap_or(object)
            ))),
            None => Ok(()),
        }
    }

    /// Every table the plan reads needs `read`, every table it writes `write` (42501 if not).
    pub(super) fn authorize_plan(&self, plan: &LogicalPlan) -> Result<()> {
        if self.principal.admin {
            return Ok(());
        }
        let access = self.with_names(|names| crate::policy::access::of_plan(plan, names))?;
        {
            let mut seen = self.seen();
            seen.reads.extend(access.reads.iter().cloned());
            seen.writes.extend(access.writes.iter().cloned());
        }
        for t in &access.reads {
            self.authorize(t, Action::Read)?;
        }
        for t in &access.writes {
            let only_updated = access.updates.contains(t);
            self.authorize(
                t,
                if only_updated {
                    Action::Update
                } else {
                    Action::Write
                },
            )?;
        }
        Ok(())
    }

    /// May this session do `action` on `object` (`schema.table`, or `schema.*` for the schema)?
    pub(crate) fn authorize(&self, object: &str, action: Action) -> Result<()> {
        // The session's own temporary tables (see temp.rs).
        if self.principal.admin || self.owns_temp(object) {
            return Ok(());
        }
        let subject = &self.subject();
        let policies = self.engine.policies();
        // Administering a table includes reading and writing it; writing includes updating.
        if policies.allows(subject, object, action)
            || (action == Action::Update && policies.allows(subject, object, Action::Write))
            || (action != Action::Admin && policies.allows(subject, object, Action::Admin))
        {
            return Ok(());
        }
        let (kind, name) = match object.rsplit_once('.') {
            Some((schema, "*")) => ("schema", schema),
            Some((_, table)) => ("table", table),
            None => ("table", object),
        };
        Err(Error::PermissionDenied(format!(
            "permission denied for {kind} {name}"
        )))
    }
}
