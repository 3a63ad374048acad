//! `pg_catalog` from `datafusion-pg-catalog` (the tables, types, procs and settings of a real
//! PostgreSQL, plus pg_class/pg_attribute/pg_namespace/... built from the session's catalogs),
//! behind our adapter: it is built over the *session's* catalog list, whose listings the
//! policies already filter (tables not readable are not there, denied columns are not in their
//! schemas), so each user's pg_catalog shows exactly what it may see. The static tables are
//! loaded once per server.

use std::sync::{Arc, OnceLock};

use datafusion::catalog::SchemaProvider;
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{
    self as pg, PgCatalogSchemaProvider, PgCatalogStaticTables,
};

use crate::error::{Error, Result};

fn static_tables() -> Result<Arc<PgCatalogStaticTables>> {
    static TABLES: OnceLock<std::result::Result<Arc<PgCatalogStaticTables>, String>> =
        OnceLock::new();
    TABLES
        .get_or_init(|| {
            PgCatalogStaticTables::try_new()
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| Error::internal(format!("pg_catalog tables: {e}")))
}

/// The `pg_catalog` schema of one session's context.
pub fn schema(ctx: &SessionContext) -> Result<Arc<dyn SchemaProvider>> {
    let provider = PgCatalogSchemaProvider::try_new(
        ctx.state().catalog_list().clone(),
        static_tables()?,
        EmptyContextProvider,
    )?;
    Ok(Arc::new(provider))
}

/// The catalog functions drivers call (format_type, pg_get_expr, pg_table_is_visible,
/// quote_ident, pg_get_keywords ...). Registered before ours, which replace the session-valued
/// ones (current_schema, current_database, pg_backend_pid, session_user).
pub fn register_functions(ctx: &SessionContext) -> Result<()> {
    use datafusion_pg_catalog::pg_catalog::{
        format_type, has_privilege_udf, pg_get_expr_udf, quote_ident_udf,
    };
    ctx.register_udf(pg::create_current_schemas_udf());
    ctx.register_udf(pg::create_pg_get_userbyid_udf());
    for name in [
        "has_table_privilege",
        "has_schema_privilege",
        "has_database_privilege",
        "has_any_column_privilege",
    ] {
        ctx.register_udf(has_privilege_udf::create_has_privilege_udf(name));
    }
    ctx.register_udf(pg::create_pg_table_is_visible());
    ctx.register_udf(format_type::create_format_type_udf());
    ctx.register_udtf("pg_get_keywords", static_tables()?.pg_get_keywords.clone());
    ctx.register_udf(pg_get_expr_udf::create_pg_get_expr_udf());
    ctx.register_udf(pg::create_pg_get_partkeydef_udf());
    ctx.register_udf(pg::create_pg_relation_is_publishable_udf());
    ctx.register_udf(pg::create_pg_get_statisticsobjdef_columns_udf());
    ctx.register_udf(pg::create_pg_encoding_to_char_udf());
    ctx.register_udf(pg::create_pg_relation_size_udf());
    ctx.register_udf(pg::create_pg_total_relation_size_udf());
    ctx.register_udf(pg::create_pg_stat_get_numscans());
    ctx.register_udf(pg::create_pg_get_constraintdef());
    ctx.register_udf(pg::create_pg_get_partition_ancestors_udf());
    ctx.register_udf(quote_ident_udf::create_quote_ident_udf());
    ctx.register_udf(quote_ident_udf::create_parse_ident_udf());
    Ok(())
}

/// The catalog-query rewrites of datafusion-pg-catalog that drivers' SQL needs: unqualified
/// pg_catalog tables (pg_catalog is always on PostgreSQL's search path), `pg_catalog.`-qualified
/// functions and types, `'t'::regclass`, `COLLATE pg_catalog.default`, `OPERATOR(pg_catalog.~)`,
/// `= ANY(array)`, array literals, ORDER BY names under a qualified wildcard, duplicate output
/// names. They change syntax only; planning and the policies come after.
pub fn rewrite(stmt: datafusion::sql::parser::Statement) -> datafusion::sql::parser::Statement {
    use datafusion::sql::parser::Statement as S;
    use datafusion_pg_catalog::sql::rules::{self as r, SqlStatementRewriteRule};
    static RULES: OnceLock<Vec<Box<dyn SqlStatementRewriteRule>>> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        vec![
            Box::new(r::AliasDuplicatedProjectionRewrite),
            Box::new(r::ResolveUnqualifiedIdentifer),
            Box::new(r::RewriteArrayAnyAllOperation),
            Box::new(r::PrependUnqualifiedPgTableName),
            Box::new(StripPgCatalog),
            Box::new(r::RewriteRegclassCastToSubquery::new()),
            Box::new(RegtypeAsName),
            Box::new(r::RemoveUnsupportedTypes::new()),
            Box::new(r::FixArrayLiteral),
            Box::new(r::FixCollate),
        ]
    });
    match stmt {
        S::Statement(s) => {
            let mut s = *s;
            for rule in rules {
                s = rule.rewrite(s);
            }
            // Correlated subqueries in a select list (psql's \d) are beyond DataFusion: in a
            // query of catalog tables only they answer NULL, as datafusion-postgres does; never
            // in a query over data, whose answers must not change.
            if only_catalog_tables(&s) {
                s = r::RemoveSubqueryFromProjection.rewrite(s);
                s = EmptyArraySubquery.rewrite(s);
                s = r::AliasDuplicatedProjectionRewrite.rewrite(s);
                alias_repeated_items(&mut s);
            }
            S::Statement(Box::new(s))
        }
        S::Explain(mut e) => {
            let inner = rewrite(e.statement.as_ref().clone());
            *e.statement = inner;
            S::Explain(e)
        }
        other => other,
    }
}

/// `x::regtype` shows the type's name in PostgreSQL: `format_type(x, NULL)`. (Other reg* casts
/// become the plain oid, or for `'name'::regclass::oid` a pg_class lookup, by the rules above.)
#[derive(Debug)]
struct RegtypeAsName;

impl datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule for RegtypeAsName {
    fn rewrite(
        &self,
        mut s: datafusion::sql::sqlparser::ast::Statement,
    ) -> datafusion::sql::sqlparser::ast::Statement {
        use datafusion::sql::sqlparser::ast::{
            Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments,
            Ident, ObjectName, ObjectNamePart, Value, VisitMut, VisitorMut,
        };
        struct V;
        impl VisitorMut for V {
            type Break = ();
            fn post_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
                if let Expr::Cast {
                    expr, data_type, ..
                } = e
                {
                    let t = data_type.to_string().to_ascii_lowercase();
                    if t == "regtype" || t == "pg_catalog.regtype" {
                        let arg = |x: Expr| FunctionArg::Unnamed(FunctionArgExpr::Expr(x));
                        *e = Expr::Function(Function {
                            name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(
                                "format_type",
                            ))]),
                            uses_odbc_syntax: false,
                            parameters: FunctionArguments::None,
                            args: FunctionArguments::List(FunctionArgumentList {
                                duplicate_treatment: None,
                                args: vec![
                                    arg(expr.as_ref().clone()),
                                    arg(Expr::Value(Value::Null.with_empty_span())),
                                ],
                                clauses: vec![],
                            }),
                            filter: None,
                            null_treatment: None,
                            over: None,
                            within_group: vec![],
                        });
                    }
                }
                std::ops::ControlFlow::Continue(())
            }
        }
        let _ = s.visit(&mut V);
        s
    }
}

fn only_catalog_tables(s: &datafusion::sql::sqlparser::ast::Statement) -> bool {
    let mut any = false;
    let mut all = true;
    let _ = datafusion::sql::sqlparser::ast::visit_relations(s, |r| {
        any = true;
        let first = r.0.first().map(|p| p.to_string().to_ascii_lowercase());
        if !matches!(first.as_deref(), Some("pg_catalog" | "information_schema")) || r.0.len() < 2 {
            all = false;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    any && all
}

/// In a catalog query, `ARRAY(SELECT ...)` (psql's reloptions, DBeaver's ACL lists) answers an
/// empty array: Lakegate's catalog rows have no options or ACLs to list, and DataFusion has no
/// array constructor over a subquery.
#[derive(Debug)]
struct EmptyArraySubquery;

impl datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule for EmptyArraySubquery {
    fn rewrite(
        &self,
        mut s: datafusion::sql::sqlparser::ast::Statement,
    ) -> datafusion::sql::sqlparser::ast::Statement {
        use datafusion::sql::sqlparser::ast::{
            Array, Expr, FunctionArguments, VisitMut, VisitorMut,
        };
        struct V;
        impl VisitorMut for V {
            type Break = ();
            fn post_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
                if let Expr::Function(f) = e
                    && f.name.to_string().eq_ignore_ascii_case("array")
                    && matches!(f.args, FunctionArguments::Subquery(_))
                {
                    *e = Expr::Array(Array {
                        elem: vec![],
                        named: true,
                    });
                }
                std::ops::ControlFlow::Continue(())
            }
        }
        let _ = s.visit(&mut V);
        s
    }
}

/// `pg_catalog.f(...)` and `FROM pg_catalog.f(...)` are the built-in `f`; other qualified
/// functions (`lakegate.policy_status()`) keep their names.
#[derive(Debug)]
struct StripPgCatalog;

impl datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule for StripPgCatalog {
    fn rewrite(
        &self,
        mut s: datafusion::sql::sqlparser::ast::Statement,
    ) -> datafusion::sql::sqlparser::ast::Statement {
        use datafusion::sql::sqlparser::ast::{
            Expr, ObjectName, TableFactor, VisitMut, VisitorMut,
        };
        fn strip(name: &mut ObjectName) {
            if name.0.len() == 2
                && name.0[0].to_string().eq_ignore_ascii_case("pg_catalog")
                && let Some(last) = name.0.pop()
            {
                *name = ObjectName(vec![last]);
            }
        }
        struct V;
        impl VisitorMut for V {
            type Break = ();
            fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> std::ops::ControlFlow<()> {
                if let TableFactor::Table {
                    name,
                    args: Some(_),
                    ..
                } = t
                {
                    strip(name);
                }
                std::ops::ControlFlow::Continue(())
            }
            fn pre_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
                if let Expr::Function(f) = e {
                    strip(&mut f.name);
                }
                std::ops::ControlFlow::Continue(())
            }
        }
        let _ = s.visit(&mut V);
        s
    }
}

/// Statements that read catalog tables only are taken as datafusion-pg-catalog's own parser
/// gives them: it also replaces the known client queries DataFusion cannot plan (psql's `\d`
/// statistics and policy queries, pgcli's) with equivalents. Anything that reads data keeps
/// Lakegate's parse.
pub fn known_catalog_queries(
    sql: &str,
    ours: Vec<datafusion::sql::parser::Statement>,
) -> Vec<datafusion::sql::parser::Statement> {
    use datafusion::sql::parser::Statement as S;
    let all_catalog = !ours.is_empty()
        && ours
            .iter()
            .all(|s| matches!(s, S::Statement(s) if only_catalog_tables(s)));
    if !all_catalog {
        return ours;
    }
    static COMPAT: OnceLock<datafusion_pg_catalog::sql::PostgresCompatibilityParser> =
        OnceLock::new();
    let compat = COMPAT.get_or_init(datafusion_pg_catalog::sql::PostgresCompatibilityParser::new);
    match compat.parse(sql) {
        Ok(theirs) if theirs.len() == ours.len() => {
            use datafusion_pg_catalog::sql::rules::{
                AliasDuplicatedProjectionRewrite, SqlStatementRewriteRule,
            };
            // Their rules can leave two NULL columns behind (removed subqueries): name them.
            let theirs: Vec<S> = theirs
                .into_iter()
                .map(|s| {
                    let mut s = AliasDuplicatedProjectionRewrite.rewrite(s);
                    alias_repeated_items(&mut s);
                    S::Statement(Box::new(s))
                })
                .collect();
            // Theirs must still read catalog tables only.
            if theirs
                .iter()
                .all(|s| matches!(s, S::Statement(s) if only_catalog_tables(s) || no_tables(s)))
            {
                theirs
            } else {
                ours
            }
        }
        _ => ours,
    }
}

fn no_tables(s: &datafusion::sql::sqlparser::ast::Statement) -> bool {
    let mut any = false;
    let _ = datafusion::sql::sqlparser::ast::visit_relations(s, |_| {
        any = true;
        std::ops::ControlFlow::<()>::Break(())
    });
    !any
}

/// Give repeated unnamed select items (`NULL, NULL` in psql's publication query) their own
/// names, as PostgreSQL does (`?column?`); DataFusion needs output names to differ.
fn alias_repeated_items(s: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{Ident, SelectItem, SetExpr, Statement};
    fn set(e: &mut SetExpr) {
        match e {
            SetExpr::Select(sel) => {
                let mut seen = std::collections::HashSet::new();
                for (i, item) in sel.projection.iter_mut().enumerate() {
                    if let SelectItem::UnnamedExpr(expr) = item {
                        let text = expr.to_string();
                        if !seen.insert(text) {
                            *item = SelectItem::ExprWithAlias {
                                expr: expr.clone(),
                                alias: Ident::new(format!("?column{i}?")),
                            };
                        }
                    }
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                set(left);
                set(right);
            }
            SetExpr::Query(q) => set(&mut q.body),
            _ => {}
        }
    }
    if let Statement::Query(q) = s {
        set(&mut q.body);
    }
}
