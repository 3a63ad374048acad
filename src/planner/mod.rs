//! SQL to DataFusion plans. Builds each session's DataFusion context (catalog, PostgreSQL
//! functions, type names), expands stored views, and maps PostgreSQL column types to Arrow.
//! Uses `catalog`; knows nothing of the wire.

pub mod limits;
pub mod not_null;
pub mod time_travel;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast;

use crate::catalog::{Catalog, LakegateCatalog, ViewExpander};
use crate::error::{Error, Result};
use crate::pg::{
    dialect, functions, known_queries, names, pg_cast, pg_catalog, pg_semantics, types,
    value_limits,
};
use functions::SessionValues;

/// The user a session's context plans for (a `SessionConfig` extension): what table
/// providers that act for someone read, e.g. a foreign table's user mapping.
#[derive(Debug)]
pub struct SessionUser(pub String);

/// Builds DataFusion contexts over the Lakegate catalog.
#[derive(Debug, Clone)]
pub struct Planner {
    catalog: Arc<Catalog>,
    database: String,
    /// Computes the plans' rows (one runtime environment for every session).
    executor: Arc<crate::engine::Executor>,
    target_partitions: Option<usize>,
    batch_size: Option<usize>,
    /// engine.datafusion, validated at startup.
    datafusion_options: Vec<(String, String)>,
}

impl Planner {
    /// Create the planner and hook it into the catalog for view expansion.
    /// `compute`: the runtime queries compute on (see [`crate::engine::Executor::execute`]).
    pub fn new(
        catalog: Arc<Catalog>,
        database: &str,
        engine: &crate::config::EngineSettings,
        compute: tokio::runtime::Handle,
    ) -> Result<Arc<Planner>> {
        let p = Arc::new(Planner {
            catalog: catalog.clone(),
            database: database.to_string(),
            executor: crate::engine::Executor::new(engine, compute)?,
            target_partitions: engine.target_partitions,
            batch_size: engine.batch_size,
            datafusion_options: engine.datafusion.clone(),
        });
        catalog.set_view_expander(p.clone());
        Ok(p)
    }

    /// What computes the rows of the plans made here.
    pub fn executor(&self) -> &Arc<crate::engine::Executor> {
        &self.executor
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// A DataFusion context for one session.
    pub fn new_context(&self, values: &SessionValues<'_>) -> SessionContext {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(&self.database, values.schema)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false)
            .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
            .set_bool("datafusion.sql_parser.enable_ident_normalization", true)
            // 1.5 is numeric in PostgreSQL, not double precision.
            .set_bool("datafusion.sql_parser.parse_float_as_decimal", true)
            // Strings come back as Utf8, the type PostgreSQL text maps to.
            .set_bool(
                "datafusion.execution.parquet.schema_force_view_types",
                false,
            )
            .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
            .set_usize(
                "datafusion.sql_parser.recursion_limit",
                PARSER_RECURSION_LIMIT,
            );
        let config = config.with_extension(Arc::new(SessionUser(values.user.to_string())));
        let config = match self.target_partitions {
            Some(n) => config.with_target_partitions(n),
            None => config,
        };
        let mut config = match self.batch_size {
            Some(n) => config.with_batch_size(n),
            None => config,
        };
        // On two cores, a hash join builds one table from its build side and all partitions
        // probe it (DataFusion's CollectLeft), rather than hash-partitioning both sides into
        // tables of their own: TPC-H SF1 geomean 9% faster (q18 1.3x, q7 1.4x; q6, q14 a few
        // percent slower), measured with DataFusion in process and through Lakegate
        // (docs/benchmarks.md). DataFusion's default fits many cores, where a build on one
        // core is the bottleneck. engine.datafusion.optimizer.repartition_joins overrides it.
        if config.target_partitions() <= 2 {
            config.options_mut().optimizer.repartition_joins = false;
        }
        for (key, value) in &self.datafusion_options {
            // Checked when the configuration was read (config::datafusion_options).
            if let Err(e) = config.options_mut().set(key, value) {
                tracing::warn!("engine.datafusion: {key} = {value:?} not applied: {e}");
            }
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(self.executor.runtime())
            .with_default_features()
            .with_query_planner(Arc::new(crate::engine::execute::QueryPlanner::new(vec![
                Arc::new(crate::policy::secure::SecureScanPlanner),
            ])))
            .with_type_planner(Arc::new(PgTypePlanner))
            .with_physical_optimizer_rules(crate::engine::execute::physical_rules())
            .build();
        let ctx = SessionContext::new_with_state(state);
        for a in self.catalog.attached() {
            let name = a.name.clone();
            let seen = crate::catalog::provider_visible::SessionCatalog::new(
                &name,
                a,
                values.visible.clone(),
                values.hidden.clone(),
            );
            ctx.register_catalog(name, Arc::new(seen));
        }
        let catalog = LakegateCatalog::new(
            self.catalog.clone(),
            values.visible.clone(),
            values.hidden.clone(),
            crate::catalog::temp_schema(values.backend_pid),
            values.overlays.clone(),
        );
        let pg_slot = catalog.pg_schemas_slot();
        ctx.register_catalog(&self.database, Arc::new(catalog));
        match pg_catalog::schemas(&ctx).and_then(|s| {
            crate::pg::catalog_functions::register_functions(&ctx)?;
            Ok(s)
        }) {
            Ok(s) => {
                let _ = pg_slot.set(s);
            }
            // Without it pg_catalog queries answer 42P01; everything else works.
            Err(e) => tracing::error!(error = %e, "pg_catalog is not available"),
        }
        for f in functions::session_functions(values) {
            ctx.register_udf(f);
        }
        for f in value_limits::functions(&ctx) {
            ctx.register_udf(f);
        }
        for f in value_limits::aggregates(&ctx) {
            ctx.register_udaf(f);
        }
        let timezone = values
            .settings
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("timezone"))
            .map(|(_, v)| v.as_str())
            .unwrap_or("UTC");
        ctx.register_udf(pg_cast::udf(timezone));
        ctx
    }

    /// Plan one parsed statement with PostgreSQL's meaning: typed casts to uuid/json/varchar,
    /// then DataFusion's planner, then the PostgreSQL-semantics rewrites.
    pub async fn plan_statement(ctx: &SessionContext, stmt: &DFStatement) -> Result<LogicalPlan> {
        let (schema, database) = default_schema_and_catalog(ctx);
        let stmt = with_time_travel(stmt.clone(), &schema, &database)?;
        let stmt = with_pg_casts(stmt);
        let plan = match ctx.state().statement_to_plan(stmt.clone()).await {
            Ok(p) => p,
            // A catalog query whose select-list subqueries DataFusion cannot plan: they answer
            // NULL (pg_catalog::null_select_subqueries).
            Err(e) => match pg_catalog::null_select_subqueries(stmt.clone()) {
                Some(simpler) => match ctx.state().statement_to_plan(simpler).await {
                    Ok(p) => p,
                    Err(_) => {
                        return Err(not_null::explain_values_error(ctx, &stmt, e.into()).await);
                    }
                },
                None => return Err(not_null::explain_values_error(ctx, &stmt, e.into()).await),
            },
        };
        let plan = not_null::enforce(pg_semantics::apply(plan)?)?;
        // Subqueries that plan but do not decorrelate fail in the optimizer: a catalog query
        // with select-list subqueries is tried there now, and answers NULL for them if need be.
        if let Some(simpler) = pg_catalog::null_select_subqueries(stmt.clone())
            && ctx.state().optimize(&plan).is_err()
        {
            let plan = ctx.state().statement_to_plan(simpler).await?;
            return not_null::enforce(pg_semantics::apply(plan)?);
        }
        Ok(plan)
    }
}

/// The session's default schema and default catalog, read in place: `SessionContext::state`
/// clones the whole state (every function registry), which costs more than planning a small
/// query.
pub fn default_schema_and_catalog(ctx: &SessionContext) -> (String, String) {
    let state = ctx.state_ref();
    let state = state.read();
    let c = &state.config().options().catalog;
    (c.default_schema.clone(), c.default_catalog.clone())
}

fn with_time_travel(stmt: DFStatement, schema: &str, database: &str) -> Result<DFStatement> {
    Ok(match stmt {
        DFStatement::Statement(mut s) => {
            time_travel::rewrite(&mut s, schema, database)?;
            DFStatement::Statement(s)
        }
        DFStatement::Explain(mut e) => {
            let inner = with_time_travel(e.statement.as_ref().clone(), schema, database)?;
            *e.statement = inner;
            DFStatement::Explain(e)
        }
        other => other,
    })
}

/// How deep the parser recurses (parentheses, subqueries): DataFusion's default of 50 refuses
/// a few dozen nested parentheses that PostgreSQL takes; the parser's recursion is guarded
/// (it grows its stack on the heap), and `limits::check` bounds the depth of everything after.
const PARSER_RECURSION_LIMIT: usize = 1000;

/// Parse SQL text (PostgreSQL dialect plus table versions) into statements.
pub fn parse_sql(sql: &str) -> Result<Vec<DFStatement>> {
    limits::check(sql)?;
    let dialect = dialect::LakegateDialect::default();
    let sql = dialect::normalize(known_queries::replace(sql).unwrap_or(sql))?;
    let mut parser = datafusion::sql::parser::DFParserBuilder::new(sql.as_str())
        .with_dialect(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .build()?;
    let stmts: Vec<DFStatement> = parser
        .parse_statements()?
        .into_iter()
        .map(pg_catalog::rewrite)
        .collect();
    Ok(pg_catalog::known_catalog_queries(sql.as_str(), stmts))
}

fn with_pg_casts(stmt: DFStatement) -> DFStatement {
    match stmt {
        DFStatement::Statement(mut s) => {
            pg_cast::rewrite_statement(&mut s);
            DFStatement::Statement(s)
        }
        DFStatement::Explain(mut e) => {
            let inner = with_pg_casts(e.statement.as_ref().clone());
            *e.statement = inner;
            DFStatement::Explain(e)
        }
        other => other,
    }
}

tokio::task_local! {
    /// The summed depth of the view definitions being expanded around this point.
    static VIEW_DEPTH: usize;
}

#[async_trait]
impl ViewExpander for Planner {
    async fn expand(&self, schema: &str, sql: &str, columns: &[String]) -> Result<LogicalPlan> {
        let values = SessionValues {
            user: "lakegate",
            database: &self.database,
            schema,
            backend_pid: 0,
            settings: vec![],
            visible: None,
            // A view's plan sees every column; the secure scan on its tables nulls the denied.
            hidden: None,
            privilege: None,
            pending_settings: Default::default(),
            check_setting: None,
            cancel_backend: None,
            schema_names: None,
            // A view read inside a transaction block sees the block's own writes.
            overlays: crate::catalog::scoped_overlays(),
        };
        let ctx = self.new_context(&values);
        let mut stmt = parse_sql(sql)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal("empty view definition"))?;
        // Its names mean what they meant in its own schema (views made before their
        // definitions were stored qualified).
        if let DFStatement::Statement(st) = &mut stmt
            && let ast::Statement::Query(q) = st.as_mut()
        {
            let catalog = &self.catalog;
            names::qualify_relations(q, schema, &|t| catalog.relation(schema, t).is_some());
        }
        // Views over views: their definitions' depths add up, bounded like one statement's
        // (each view alone passed the check when it was made; a chain of them must not build a
        // plan deeper than any statement may).
        let depth = VIEW_DEPTH.try_with(|d| *d).unwrap_or(0) + limits::depth(sql);
        if depth > limits::MAX_DEPTH {
            return Err(crate::error::stack_depth());
        }
        let plan = VIEW_DEPTH
            .scope(depth, Self::plan_statement(&ctx, &stmt))
            .await?;
        if columns.is_empty() {
            return Ok(plan);
        }
        let exprs = plan
            .schema()
            .columns()
            .into_iter()
            .zip(columns)
            .map(|(c, name)| datafusion::prelude::Expr::Column(c).alias(name))
            .collect::<Vec<_>>();
        Ok(datafusion::logical_expr::LogicalPlanBuilder::from(plan)
            .project(exprs)?
            .build()?)
    }
}

/// PostgreSQL type names DataFusion does not know natively.
#[derive(Debug)]
struct PgTypePlanner;

impl TypePlanner for PgTypePlanner {
    fn plan_type(&self, sql_type: &ast::DataType) -> DfResult<Option<DataType>> {
        Ok(types::extra_sql_type(sql_type))
    }
}
