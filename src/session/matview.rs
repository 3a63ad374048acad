//! Materialized views in a session: their statements (CREATE / REFRESH / DROP / ALTER
//! MATERIALIZED VIEW), a query answered from a view (mv::rewrite, with the asking user's row
//! filters applied over the view's keys), the result cache around a query's rows, and the
//! server's refresher of views that refresh by themselves.
//!
//! A view's contents are computed as its owner, under the owner's policies, and written to its
//! Delta table in one overwrite commit, so readers see the old or the new contents, never a mix.
//! A user bound by policies on a view's sources never reads the view's table directly (unless a
//! policy governs the view itself): only through the rewrite, which applies that user's row
//! filters on top and is not used when masks apply.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;

use super::{CommandTag, Outcome, Session};
use crate::catalog::{MatView, Relation, RelationKind, SourceVersion, TableEntry, TableSpec};
use crate::error::{Error, Result, SqlState};
use crate::mv::ddl::MvStatement;
use crate::policy::Action;
use crate::storage::TableFormat;

const CREATED: &str = "CREATE MATERIALIZED VIEW";

/// Carry out a materialized-view statement.
pub(super) async fn run(s: &mut Session, stmt: MvStatement) -> Result<Outcome> {
    if s.in_transaction && matches!(stmt, MvStatement::Refresh { .. }) {
        // It commits at once: computed over the block's own writes or catalog changes, it
        // would publish what the block has not committed.
        if s.has_overlays() {
            return Err(Error::unsupported(
                "REFRESH MATERIALIZED VIEW inside a transaction block that has written data or \
                 changed the catalog is not supported (the refresh commits at once): refresh \
                 after COMMIT",
            ));
        }
        s.notice("REFRESH MATERIALIZED VIEW inside a transaction block commits at once".into());
    }
    match stmt {
        MvStatement::Create {
            if_not_exists,
            name,
            options,
            query,
            with_data,
        } => create(s, if_not_exists, &name, &options, &query, with_data).await,
        MvStatement::Refresh { name, with_data } => {
            let (schema, table) = s.resolve(&name)?;
            let (entry, mv) = view_of(s, &schema, &table)?;
            may_change(s, &mv, &table)?;
            if !with_data {
                let mv = MatView {
                    populated: false,
                    ..mv
                };
                s.engine
                    .planner
                    .catalog()
                    .set_matview(&schema, &table, mv)
                    .await?;
                return Ok(Outcome::Command(CommandTag::new(
                    "REFRESH MATERIALIZED VIEW",
                )));
            }
            refresh_as_owner(s, &schema, &table, &entry).await?;
            Ok(Outcome::Command(CommandTag::new(
                "REFRESH MATERIALIZED VIEW",
            )))
        }
        MvStatement::Drop { if_exists, names } => {
            for name in &names {
                let (schema, table) = s.resolve(name)?;
                match view_of(s, &schema, &table) {
                    Ok((_, mv)) => may_change(s, &mv, &table)?,
                    Err(Error::UndefinedTable(_)) if if_exists => {
                        s.notice(format!(
                            "materialized view \"{table}\" does not exist, skipping"
                        ));
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                s.engine
                    .planner
                    .catalog()
                    .drop_relation(&schema, &table, RelationKind::Table, if_exists)
                    .await?;
            }
            Ok(Outcome::Command(CommandTag::new("DROP MATERIALIZED VIEW")))
        }
        MvStatement::Alter {
            if_exists,
            name,
            set,
            reset,
        } => {
            let (schema, table) = s.resolve(&name)?;
            let mut mv = match view_of(s, &schema, &table) {
                Ok((_, mv)) => mv,
                Err(Error::UndefinedTable(_)) if if_exists => {
                    s.notice(format!(
                        "materialized view \"{table}\" does not exist, skipping"
                    ));
                    return Ok(Outcome::Command(CommandTag::new("ALTER MATERIALIZED VIEW")));
                }
                Err(e) => return Err(e),
            };
            may_change(s, &mv, &table)?;
            crate::mv::apply_options(&mut mv, &set, &reset)?;
            s.engine
                .planner
                .catalog()
                .set_matview(&schema, &table, mv)
                .await?;
            Ok(Outcome::Command(CommandTag::new("ALTER MATERIALIZED VIEW")))
        }
    }
}

/// The table and definition of a materialized view (42809 for another relation).
fn view_of(s: &Session, schema: &str, table: &str) -> Result<(TableEntry, MatView)> {
    match s.engine.planner.catalog().relation(schema, table) {
        Some(Relation::Table(entry)) => match entry.matview.clone() {
            Some(mv) => Ok((entry, *mv)),
            None => Err(Error::Data {
                sqlstate: SqlState::WrongObjectType,
                message: format!("\"{table}\" is not a materialized view"),
            }),
        },
        Some(Relation::View(_)) => Err(Error::Data {
            sqlstate: SqlState::WrongObjectType,
            message: format!("\"{table}\" is not a materialized view"),
        }),
        None => Err(Error::UndefinedTable(format!(
            "materialized view \"{table}\" does not exist"
        ))),
    }
}

/// Only a view's owner (or an administrator) refreshes, alters or drops it.
fn may_change(s: &Session, mv: &MatView, table: &str) -> Result<()> {
    if s.principal.admin || s.principal.name == mv.owner {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "must be owner of materialized view {table}"
        )))
    }
}

async fn create(
    s: &mut Session,
    if_not_exists: bool,
    name: &ast::ObjectName,
    options: &[(String, String)],
    query: &ast::Query,
    with_data: bool,
) -> Result<Outcome> {
    let (schema, table) = s.resolve(name)?;
    let catalog = s.engine.planner.catalog().clone();
    if catalog.relation(&schema, &table).is_some() {
        if if_not_exists {
            s.notice(format!("relation \"{table}\" already exists, skipping"));
            return Ok(Outcome::Command(CommandTag::new(CREATED)));
        }
        return Err(Error::DuplicateTable(format!(
            "relation \"{table}\" already exists"
        )));
    }
    s.authorize(&format!("{schema}.{table}"), Action::Write)?;
    // Bound at creation: its bare names are stored qualified (as a view's are).
    let mut query = query.clone();
    let current = s.current_schema();
    crate::pg::names::qualify_relations(&mut query, &current, &|t| {
        catalog.relation(&current, t).is_some()
    });
    let query = &query;
    let stmt = DfStatement::Statement(Box::new(ast::Statement::Query(Box::new(query.clone()))));
    // Planned (and governed) as its creator, its owner.
    let plan = s.plan(&stmt).await?;
    let names = super::query::output_names(&stmt, plan.schema().as_arrow());
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(Error::Data {
                sqlstate: SqlState::DuplicateColumn,
                message: format!("column \"{n}\" specified more than once: name it with AS"),
            });
        }
    }
    // What is stored: the query's columns, and the hidden sums and counts behind its averages
    // when they can be kept (appends then refresh them incrementally).
    let (stored, stored_names) = match avg_state_plan(s, query, &plan).await {
        Some(state) => state,
        None => (plan.clone(), names.clone()),
    };
    let avg_state = stored_names.len() > names.len();
    let mut fields = Vec::with_capacity(stored_names.len());
    for (n, f) in stored_names.iter().zip(stored.schema().fields()) {
        let mut field = Field::new(n, super::ddl::storable(f.data_type())?, true);
        if let Some(t) = crate::pg::types::field_pg_type(f) {
            field = field
                .with_metadata([(crate::storage::PG_TYPE_KEY.to_string(), t.to_string())].into());
        }
        fields.push(field);
    }
    let spec = TableSpec {
        format: TableFormat::Delta,
        ..TableSpec::default()
    };
    if !catalog
        .create_table(&schema, &table, &Schema::new(fields), if_not_exists, &spec)
        .await?
    {
        return Ok(Outcome::Command(CommandTag::new(CREATED)));
    }
    let mut mv = MatView {
        sql: query.to_string(),
        schema: s.current_schema(),
        owner: s.principal.name.clone(),
        sources: vec![],
        populated: false,
        refreshed_at_ms: None,
        refresh_ms: None,
        incremental: false,
        refresh: crate::mv::RefreshPolicy::Manual.text(),
        max_staleness_secs: None,
        avg_state,
        computed_under: None,
    };
    let made = async {
        crate::mv::apply_options(&mut mv, options, &[])?;
        catalog.set_matview(&schema, &table, mv).await?;
        // The view's columns carry the classification tags of what they are made from.
        let tags = s.inherited_tags(&plan, &names)?;
        if !tags.is_empty() {
            catalog.set_tags(&schema, &table, &tags, &[]).await?;
        }
        if with_data {
            let entry = match catalog.relation(&schema, &table) {
                Some(Relation::Table(e)) => e,
                _ => return Err(Error::internal("the new materialized view is gone")),
            };
            let rows = refresh(s, &schema, &table, &entry).await?;
            return Ok(Outcome::Command(CommandTag::rows("SELECT", rows)));
        }
        Ok(Outcome::Command(CommandTag::new(CREATED)))
    }
    .await;
    if made.is_err() {
        // One statement: no half-made view stays behind.
        let _ = catalog
            .drop_relation(&schema, &table, RelationKind::Table, true)
            .await;
    }
    made
}

/// The plan of `query` with the hidden sum and count of each of its averages
/// (`mv::rewrite::with_avg_state`), and its column names; None when the view has no average or
/// an average it cannot keep so (not over one table, or of a type `avg_merge` does not take).
async fn avg_state_plan(
    s: &Session,
    query: &ast::Query,
    plan: &LogicalPlan,
) -> Option<(LogicalPlan, Vec<String>)> {
    let with_state = crate::mv::rewrite::with_avg_state(query)?;
    let Some(Some(kinds)) = crate::mv::rewrite::incremental_shape(&with_state) else {
        return None;
    };
    let fields = plan.schema().fields();
    for (i, k) in kinds.iter().enumerate() {
        if let crate::mv::rewrite::Merge::Avg { .. } = k
            && !fields
                .get(i)
                .is_some_and(|f| crate::mv::avg_merge::supported(f.data_type()))
        {
            return None;
        }
    }
    let stmt = DfStatement::Statement(Box::new(ast::Statement::Query(Box::new(with_state))));
    let stored = s.plan(&stmt).await.ok()?;
    let names = super::query::output_names(&stmt, stored.schema().as_arrow());
    Some((stored, names))
}

/// The statement that computes what a view stores (its query, with the hidden columns of its
/// averages when it keeps them).
fn stored_statement(mv: &MatView) -> Result<DfStatement> {
    let stmt = parse_query(&mv.sql)?;
    if !mv.avg_state {
        return Ok(stmt);
    }
    if let DfStatement::Statement(st) = &stmt
        && let ast::Statement::Query(q) = st.as_ref()
        && let Some(with_state) = crate::mv::rewrite::with_avg_state(q)
    {
        return Ok(DfStatement::Statement(Box::new(ast::Statement::Query(
            Box::new(with_state),
        ))));
    }
    Err(Error::internal(
        "the view keeps its averages' sums and counts, its query has none",
    ))
}

/// The columns of a view's table, hidden ones included.
async fn stored_schema(
    catalog: &crate::catalog::Catalog,
    entry: &TableEntry,
) -> Result<datafusion::arrow::datatypes::SchemaRef> {
    let table = catalog.delta_table(entry).await?;
    Ok(crate::storage::delta::raw_provider(&table).await?.schema())
}

/// A session of the view's owner in the view's schema (refreshes run as the owner).
fn owner_session(s: &Session, mv: &MatView) -> Result<Session> {
    let mut owner = Session::new(s.engine.clone(), &mv.owner, None, 0);
    owner.settings.set("search_path", &mv.schema)?;
    owner.rebuild_context();
    Ok(owner)
}

async fn refresh_as_owner(
    s: &mut Session,
    schema: &str,
    table: &str,
    entry: &TableEntry,
) -> Result<usize> {
    let Some(mv) = &entry.matview else {
        return Err(Error::internal("not a materialized view"));
    };
    if s.principal.name == mv.owner && s.current_schema() == mv.schema {
        return refresh(s, schema, table, entry).await;
    }
    let mut owner = owner_session(s, mv)?;
    owner.set_client(format!("refresh of {schema}.{table}"));
    refresh(&owner, schema, table, entry).await
}

/// Bring a view up to date as `owner` (its owner's session in its schema): from its source's
/// new rows alone when it can (see `refresh_incrementally`), else by recomputing it.
async fn refresh(owner: &Session, schema: &str, table: &str, entry: &TableEntry) -> Result<usize> {
    if let Some(rows) = refresh_incrementally(owner, schema, table, entry).await? {
        return Ok(rows);
    }
    recompute(owner, schema, table, entry).await
}

/// An incremental refresh: for a view over one unpartitioned Delta table that only had appends
/// since the view's version of it, and that is a filter/project (its new rows are appended to
/// the view) or an aggregate of SUM/COUNT/MIN/MAX (the view's rows and the new rows'
/// aggregates are aggregated again, one overwrite commit). Only the source's new files are
/// read. None when the view or its source's history does not allow it.
async fn refresh_incrementally(
    owner: &Session,
    schema: &str,
    table: &str,
    entry: &TableEntry,
) -> Result<Option<usize>> {
    let Some(mut mv) = entry.matview.clone() else {
        return Ok(None);
    };
    let ([src], true) = (mv.sources.as_slice(), mv.populated) else {
        return Ok(None);
    };
    let (Some(recorded), Some((sc, tb))) = (src.version, src.object.split_once('.')) else {
        return Ok(None);
    };
    let catalog = owner.engine.planner.catalog().clone();
    let Some(Relation::Table(source)) = catalog.relation(sc, tb) else {
        return Ok(None);
    };
    if source.format != TableFormat::Delta || source.external {
        return Ok(None);
    }
    let stmt = stored_statement(&mv)?;
    let DfStatement::Statement(st) = &stmt else {
        return Ok(None);
    };
    let ast::Statement::Query(q) = st.as_ref() else {
        return Ok(None);
    };
    let Some(shape) = crate::mv::rewrite::incremental_shape(q) else {
        return Ok(None);
    };
    let started = std::time::Instant::now();
    let delta = catalog.delta_table(&source).await?;
    if crate::storage::delta::partitioned(&delta) {
        return Ok(None);
    }
    let Some(current) = delta.version().and_then(|v| i64::try_from(v).ok()) else {
        return Ok(None);
    };
    let Some(added) = crate::storage::delta::added_since(&delta, recorded).await? else {
        return Ok(None);
    };
    // The definition, its scan of the source pointed at the new files only.
    let plan = owner.plan(&stmt).await?;
    // The old rows and the new ones must have been computed under the same policies.
    let under = computed_under(owner, &plan);
    if under != mv.computed_under {
        return Ok(None);
    }
    let Some(source_schema) = scanned_schema(owner, &plan, &src.object) else {
        return Ok(None);
    };
    let new_files = files_provider(owner, &catalog, &added, source_schema)?;
    let fresh_rows = scanning(plan, owner, &src.object, new_files)?;
    let view_table = catalog.delta_table(entry).await?;
    // The view's own rows, hidden columns included.
    let stored = crate::storage::delta::raw_provider(&view_table).await?;
    let target = stored.schema();
    let fresh_rows = cast_to(fresh_rows, &target)?;
    let counted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let write = |plan: LogicalPlan| {
        let owner = &owner;
        let counted = counted.clone();
        async move {
            let stream = owner
                .context()
                .execute_logical_plan(plan)
                .await?
                .execute_stream()
                .await?;
            let input = LogicalPlanBuilder::scan(
                "refresh",
                datafusion::datasource::provider_as_source(crate::engine::nodes::stream_table(
                    stream, counted,
                )?),
                None,
            )?
            .build()?;
            Ok::<_, Error>(input)
        }
    };
    let written = match shape {
        // New rows of the view, appended.
        None => {
            let input = write(fresh_rows).await?;
            crate::storage::delta::append(view_table, input, "REFRESH MATERIALIZED VIEW").await?
        }
        // The view's rows and the new rows' aggregates, aggregated again.
        Some(kinds) => {
            let old_rows = LogicalPlanBuilder::scan(
                datafusion::common::TableReference::partial(schema, table),
                datafusion::datasource::provider_as_source(stored),
                None,
            )?
            .build()?;
            let merged =
                crate::mv::incremental::merged_again(old_rows, fresh_rows, &kinds, &target)?;
            let input = write(cast_to(merged, &target)?).await?;
            crate::storage::delta::rewrite(view_table, input, vec![], "REFRESH MATERIALIZED VIEW")
                .await?
        }
    };
    catalog.remember(entry, written).await;
    mv.sources = vec![SourceVersion {
        object: src.object.clone(),
        version: Some(current),
    }];
    mv.incremental = true;
    mv.refreshed_at_ms = Some(chrono::Utc::now().timestamp_millis());
    mv.refresh_ms = Some(started.elapsed().as_millis() as u64);
    catalog.set_matview(schema, table, *mv).await?;
    Ok(Some(counted.load(std::sync::atomic::Ordering::SeqCst)))
}

/// The schema of the scan of `object` in `plan` (the refresh's source).
fn scanned_schema(
    owner: &Session,
    plan: &LogicalPlan,
    object: &str,
) -> Option<datafusion::arrow::datatypes::SchemaRef> {
    let mut schema = None;
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p
            && owner.with_names(|n| n.scan(scan)).as_deref() == Some(object)
        {
            schema = Some(scan.source.schema());
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    schema
}

/// A provider over the source's files added since the view's version (Parquet files of the
/// Delta table, read as a listing table), or an empty table when there are none.
fn files_provider(
    owner: &Session,
    catalog: &crate::catalog::Catalog,
    added: &[String],
    source_schema: datafusion::arrow::datatypes::SchemaRef,
) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
    Ok(if added.is_empty() {
        Arc::new(datafusion::datasource::empty::EmptyTable::new(
            source_schema,
        ))
    } else {
        use datafusion::datasource::file_format::parquet::ParquetFormat;
        use datafusion::datasource::listing::{
            ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
        };
        let mut urls = vec![];
        for f in added {
            let url = ListingTableUrl::parse(f)?;
            if url.scheme() != "file" {
                let mut bucket = url::Url::parse(f)
                    .map_err(|e| Error::Storage(format!("bad file location: {e}")))?;
                bucket.set_path("");
                owner
                    .context()
                    .runtime_env()
                    .register_object_store(&bucket, catalog.warehouse().store_for(&bucket)?);
            }
            urls.push(url);
        }
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(ListingOptions::new(Arc::new(ParquetFormat::default())))
            .with_schema(source_schema);
        Arc::new(ListingTable::try_new(config)?)
    })
}

/// `plan` with its scan of `object` reading `files` instead.
fn scanning(
    plan: LogicalPlan,
    owner: &Session,
    object: &str,
    files: Arc<dyn datafusion::catalog::TableProvider>,
) -> Result<LogicalPlan> {
    Ok(plan
        .transform_up_with_subqueries(|p| match p {
            LogicalPlan::TableScan(mut scan)
                if owner.with_names(|n| n.scan(&scan)).as_deref() == Some(object) =>
            {
                scan.source = datafusion::datasource::provider_as_source(files.clone());
                Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

/// `plan`'s columns cast to the view table's types and named after its columns.
fn cast_to(
    plan: LogicalPlan,
    target: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<LogicalPlan> {
    if target.fields().len() != plan.schema().fields().len() {
        return Err(Error::Data {
            sqlstate: SqlState::InvalidTableDefinition,
            message: format!(
                "the view's query now gives {} columns, its table has {}: drop and create it again",
                plan.schema().fields().len(),
                target.fields().len()
            ),
        });
    }
    let exprs: Vec<Expr> = plan
        .schema()
        .columns()
        .into_iter()
        .zip(target.fields())
        .map(|(c, f)| {
            Expr::Column(c)
                .cast_to(f.data_type(), plan.schema())
                .map(|e| e.alias(f.name()))
        })
        .collect::<datafusion::common::Result<_>>()?;
    Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
}

/// Recompute a view and replace its contents in one overwrite commit; record the versions of
/// its sources it was computed from.
async fn recompute(
    owner: &Session,
    schema: &str,
    table: &str,
    entry: &TableEntry,
) -> Result<usize> {
    let Some(mut mv) = entry.matview.clone() else {
        return Err(Error::internal("not a materialized view"));
    };
    let started = std::time::Instant::now();
    let catalog = owner.engine.planner.catalog().clone();
    let stmt = stored_statement(&mv)?;
    let plan = owner.plan(&stmt).await?;
    let under = computed_under(owner, &plan);
    let sources = owner.with_names(|names| crate::policy::access::of_plan(&plan, names))?;
    // The version of each source as read: a Delta source's provider is opened on one version
    // (pinned in the plan); of any other the version before the read starts (never newer than
    // what is read, so the view is never taken for fresher than it is).
    let pinned = pinned_versions(&plan);
    let mut versions = vec![];
    for object in &sources.reads {
        let version = match pinned.iter().find(|(o, _)| o == object) {
            Some((_, v)) => Some(*v),
            None => match object
                .split_once('.')
                .and_then(|(sc, t)| catalog.relation(sc, t))
            {
                Some(Relation::Table(e)) => catalog.current_version(&e).await?,
                _ => None,
            },
        };
        versions.push(SourceVersion {
            object: object.clone(),
            version,
        });
    }
    // The rows, cast to the view's columns, written over the old ones in one commit.
    let target = stored_schema(&catalog, entry).await?;
    let plan = cast_to(plan, &target)?;
    let stream = owner
        .context()
        .execute_logical_plan(plan)
        .await?
        .execute_stream()
        .await?;
    let counted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let source = crate::engine::nodes::stream_table(stream, counted.clone())?;
    let input = LogicalPlanBuilder::scan(
        "refresh",
        datafusion::datasource::provider_as_source(source),
        None,
    )?
    .build()?;
    let delta = catalog.delta_table(entry).await?;
    let delta =
        crate::storage::delta::rewrite(delta, input, vec![], "REFRESH MATERIALIZED VIEW").await?;
    catalog.remember(entry, delta).await;
    mv.sources = versions;
    mv.computed_under = under;
    mv.populated = true;
    mv.incremental = false;
    mv.refreshed_at_ms = Some(chrono::Utc::now().timestamp_millis());
    mv.refresh_ms = Some(started.elapsed().as_millis() as u64);
    catalog.set_matview(schema, table, *mv).await?;
    Ok(counted.load(std::sync::atomic::Ordering::SeqCst))
}

/// Whether a view's contents computed by `plan` (its owner's, governed) passed any policy:
/// the policy version that bound the owner, or None (computed past none: every reader's own
/// policies on the sources then apply to them).
fn computed_under(owner: &Session, plan: &LogicalPlan) -> Option<String> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut bound = false;
    let _ = plan.apply_with_subqueries(|p| {
        if matches!(p, LogicalPlan::Extension(e) if e.node.name() == "SecureScan") {
            bound = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    bound.then(|| owner.engine.policies().version.clone())
}

fn parse_query(sql: &str) -> Result<DfStatement> {
    let mut stmts = super::parse(sql)?;
    match (stmts.pop(), stmts.is_empty()) {
        (Some(s), true) => Ok(s),
        _ => Err(Error::internal(
            "a materialized view's query is one statement",
        )),
    }
}

/// (object, version) of every scan in `plan` that reads one fixed version.
fn pinned_versions(plan: &LogicalPlan) -> Vec<(String, i64)> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut out = vec![];
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(scan) = p
            && let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source)
            && let Some(v) = crate::catalog::pinned_version(provider.as_ref())
        {
            out.push((object_name(&scan.table_name), v));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

fn object_name(t: &datafusion::common::TableReference) -> String {
    match (t.schema(), t.table()) {
        (Some(s), n) => format!("{s}.{n}"),
        (None, n) => n.to_string(),
    }
}

impl Session {
    fn resolve(&self, name: &ast::ObjectName) -> Result<(String, String)> {
        crate::pg::names::qualified(name, &self.current_schema(), self.engine.planner.database())
    }

    pub(super) fn setting_on(&self, name: &str) -> bool {
        self.settings.get(name).map(|v| v == "on").unwrap_or(true)
    }

    /// The plan of a query answered from a materialized view, when one can answer it for this
    /// user now: fresh (or within its max_staleness), every source readable by the user, and
    /// the user's row filters on the sources expressible over the view's keys (no masks).
    pub(super) async fn answer_from_view(&self, stmt: &DfStatement) -> Result<Option<LogicalPlan>> {
        if !self.setting_on("lakegate.mv_rewrite") || self.has_overlays() {
            return Ok(None);
        }
        let (query, explain) = match stmt {
            DfStatement::Statement(st) => match st.as_ref() {
                ast::Statement::Query(q) => (q.as_ref(), None),
                _ => return Ok(None),
            },
            DfStatement::Explain(e) => match e.statement.as_ref() {
                DfStatement::Statement(st) => match st.as_ref() {
                    ast::Statement::Query(q) => (q.as_ref(), Some(e)),
                    _ => return Ok(None),
                },
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        let catalog = self.engine.planner.catalog().clone();
        let views = catalog.matviews();
        if views.is_empty() {
            return Ok(None);
        }
        let database = self.engine.planner.database().to_string();
        let now = chrono::Utc::now().timestamp_millis();
        for (schema, name, entry) in views {
            let Some(mv) = &entry.matview else { continue };
            if !mv.populated {
                continue;
            }
            let Ok(DfStatement::Statement(def)) = parse_query(&mv.sql) else {
                continue;
            };
            let ast::Statement::Query(def) = *def else {
                continue;
            };
            let definition = crate::mv::rewrite::Definition {
                schema: schema.clone(),
                name: name.clone(),
                query: *def,
                default_schema: mv.schema.clone(),
            };
            let Some(rw) =
                crate::mv::rewrite::rewrite(query, &self.current_schema(), &database, &definition)
            else {
                continue;
            };
            // Fresh, or stale within what its options allow.
            let mut current = vec![];
            for src in &mv.sources {
                current.push(
                    match src
                        .object
                        .split_once('.')
                        .and_then(|(sc, t)| catalog.relation(sc, t))
                    {
                        Some(Relation::Table(e)) => catalog.current_version(&e).await?,
                        _ => None,
                    },
                );
            }
            if !crate::mv::usable(mv, &current, now) {
                continue;
            }
            // Contents computed under the policies that bound its owner answer the owner alone,
            // under those same policies (an administrator's query included: it would miss rows).
            if let Some(under) = &mv.computed_under
                && !self.engine.is_admin(&mv.owner)
                && (self.principal.name != mv.owner || *under != self.engine.policies().version)
            {
                continue;
            }
            // The user reads the sources, not the view: their grants decide.
            if mv
                .sources
                .iter()
                .any(|src| self.authorize(&src.object, Action::Read).is_err())
            {
                return Ok(None);
            }
            let new_query =
                DfStatement::Statement(Box::new(ast::Statement::Query(Box::new(rw.query.clone()))));
            let new_stmt = match explain {
                Some(e) => {
                    let mut e = e.clone();
                    e.statement = Box::new(new_query);
                    DfStatement::Explain(e)
                }
                None => new_query,
            };
            let Ok(plan) = crate::planner::Planner::plan_statement(&self.ctx, &new_stmt).await
            else {
                continue;
            };
            // The view's secure scan carries this user's policies on its sources (and any on
            // the view itself); a view that cannot carry them does not answer (guard.rs).
            let before = self.seen().clone();
            let plan = match self.secure_plan(plan).await {
                Ok(p) => p,
                Err(Error::PermissionDenied(_)) => {
                    *self.seen() = before;
                    continue;
                }
                Err(e) => return Err(e),
            };
            {
                let mut seen = self.seen();
                seen.reads
                    .extend(mv.sources.iter().map(|s| s.object.clone()));
                seen.policies
                    .insert(format!("materialized view {schema}.{name}"));
            }
            tracing::debug!(view = %format!("{schema}.{name}"), "answered from a materialized view");
            return Ok(Some(plan));
        }
        Ok(None)
    }

    /// A direct read of a materialized view's table: refused when it is not populated.
    pub(super) fn check_view_reads(&self, plan: &LogicalPlan) -> Result<()> {
        let catalog = self.engine.planner.catalog();
        let reads = self.with_names(|names| crate::policy::access::of_plan(plan, names))?;
        for object in &reads.reads {
            let Some((schema, table)) = object.split_once('.') else {
                continue;
            };
            let Some(Relation::Table(entry)) = catalog.relation(schema, table) else {
                continue;
            };
            let Some(mv) = &entry.matview else { continue };
            if !mv.populated {
                return Err(Error::Data {
                    sqlstate: SqlState::ObjectNotInPrerequisiteState,
                    message: format!(
                        "materialized view \"{table}\" has not been populated: use REFRESH MATERIALIZED VIEW"
                    ),
                });
            }
            // What its sources' policies owe each reader is in its secure scan (guard.rs).
        }
        Ok(())
    }

    /// The identity of a governed plan, with the tables it reads at their versions, when two
    /// runs of the same identity compute the same rows: every table it reads is read at one
    /// known version, and it calls nothing whose value could change between two runs of the
    /// same plan (now(), random(), session functions). None otherwise. The result cache's key
    /// and the session's optimized plans (`Session::optimized`) are by it.
    pub(super) fn plan_identity(
        &self,
        plan: &LogicalPlan,
    ) -> Option<(crate::mv::cache::Key, Vec<(String, i64)>)> {
        use datafusion::common::tree_node::TreeNodeRecursion;
        use datafusion::logical_expr::Volatility;
        // Rows of the open block's own writes are the session's alone.
        if self.has_overlays() {
            return None;
        }
        let mut versions = vec![];
        // The same with each table's location: a table dropped and created again under its
        // name reaches the version numbers the old one had.
        let mut located = vec![];
        let mut cacheable = true;
        let _ = plan.apply_with_subqueries(|p| {
            if let LogicalPlan::TableScan(scan) = p {
                let provider = datafusion::datasource::source_as_provider(&scan.source).ok();
                match provider
                    .as_ref()
                    .and_then(|pr| crate::catalog::pinned(pr.as_ref()))
                {
                    Some(v) => {
                        // Resolved (schema.table): the plan's text may name the table as
                        // written, and `nation` on another search_path is another table.
                        let name = self
                            .with_names(|n| n.scan(scan))
                            .unwrap_or_else(|| object_name(&scan.table_name));
                        located.push((format!("{name} {}", v.location), v.version));
                        versions.push((name, v.version));
                    }
                    None => cacheable = false,
                }
            }
            if matches!(p, LogicalPlan::Extension(e) if e.node.name() != "SecureScan") {
                cacheable = false;
            }
            p.apply_expressions(|e| {
                e.apply(|x| {
                    if let Expr::ScalarFunction(f) = x
                        && f.func.signature().volatility != Volatility::Immutable
                    {
                        cacheable = false;
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })?;
            Ok(if cacheable {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Stop
            })
        });
        if !cacheable || versions.is_empty() {
            return None;
        }
        versions.sort();
        located.sort();
        let text = plan.display_indent_schema().to_string();
        let key = crate::mv::cache::Key::new(&text, &self.engine.policies().version, &located);
        Some((key, versions))
    }
}

/// The server's refresher: views with `refresh = 'auto'` are refreshed soon after a source
/// commits, views with `refresh = 'every N'` when N seconds have passed; each as its owner.
pub async fn refresher(engine: std::sync::Weak<super::Engine>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let catalog = engine.planner.catalog().clone();
        for (schema, name, entry) in catalog.matviews() {
            let Some(mv) = &entry.matview else { continue };
            let due = match crate::mv::RefreshPolicy::parse(&mv.refresh) {
                Ok(crate::mv::RefreshPolicy::Manual) | Err(_) => false,
                Ok(crate::mv::RefreshPolicy::Every(secs)) => mv.refreshed_at_ms.is_none_or(|at| {
                    chrono::Utc::now().timestamp_millis() - at >= (secs as i64) * 1000
                }),
                Ok(crate::mv::RefreshPolicy::Auto) => {
                    let mut stale = !mv.populated;
                    for src in &mv.sources {
                        let now = match src
                            .object
                            .split_once('.')
                            .and_then(|(sc, t)| catalog.relation(sc, t))
                        {
                            Some(Relation::Table(e)) => {
                                catalog.current_version(&e).await.ok().flatten()
                            }
                            _ => None,
                        };
                        stale |= now != src.version;
                    }
                    stale
                }
            };
            if !due {
                continue;
            }
            let owner = Session::new(engine.clone(), &mv.owner, None, 0);
            let result = async {
                let mut owner = owner;
                owner.settings.set("search_path", &mv.schema)?;
                owner.rebuild_context();
                owner.set_client("refresher".into());
                refresh(&owner, &schema, &name, &entry).await
            }
            .await;
            match result {
                Ok(rows) => {
                    tracing::info!(view = %format!("{schema}.{name}"), rows, "materialized view refreshed")
                }
                Err(e) => {
                    let error = crate::policy::audit::redact_message(&e.to_string());
                    tracing::warn!(view = %format!("{schema}.{name}"), %error, "materialized view refresh failed")
                }
            }
        }
    }
}
