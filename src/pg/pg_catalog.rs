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

/// The `pg_catalog` and `information_schema` schemas of one session's context, in
/// PostgreSQL's shape (pg::pg_shape).
pub fn schemas(ctx: &SessionContext) -> Result<Vec<(&'static str, Arc<dyn SchemaProvider>)>> {
    use super::pg_shape::ShapedSchema;
    let provider: Arc<dyn SchemaProvider> = Arc::new(PgCatalogSchemaProvider::try_new(
        ctx.state().catalog_list().clone(),
        static_tables()?,
        EmptyContextProvider,
    )?);
    let weak = ctx.state_weak_ref();
    let session: super::pg_shape::SessionRef =
        Arc::new(move || weak.upgrade().map(|s| s.read().clone()));
    Ok(vec![
        (
            "pg_catalog",
            Arc::new(ShapedSchema::new(
                "pg_catalog",
                Some(provider),
                session.clone(),
            )),
        ),
        (
            "information_schema",
            Arc::new(ShapedSchema::new("information_schema", None, session)),
        ),
    ])
}

/// The catalog functions drivers call (format_type, pg_get_expr, pg_table_is_visible,
/// quote_ident, pg_get_keywords ...). Registered before ours, which replace the session-valued
/// ones (current_schema, current_database, pg_backend_pid, session_user).
pub fn register_functions(ctx: &SessionContext) -> Result<()> {
    use datafusion_pg_catalog::pg_catalog::{has_privilege_udf, quote_ident_udf};
    // Table privileges are the policies' (pg::functions); these are always held.
    for name in ["has_schema_privilege", "has_database_privilege"] {
        ctx.register_udf(lenient(has_privilege_udf::create_has_privilege_udf(name)));
    }
    ctx.register_udf(lenient(pg::create_pg_table_is_visible()));
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        FormatType::default(),
    ));
    ctx.register_udtf("pg_get_keywords", Arc::new(Keywords));
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        GetExpr::default(),
    ));
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        RegProc::default(),
    ));
    ctx.register_udf(lenient(pg::create_pg_relation_is_publishable_udf()));
    ctx.register_udf(lenient(pg::create_pg_get_statisticsobjdef_columns_udf()));
    ctx.register_udf(lenient(pg::create_pg_relation_size_udf()));
    ctx.register_udf(lenient(pg::create_pg_total_relation_size_udf()));
    ctx.register_udf(lenient(pg::create_pg_stat_get_numscans()));
    ctx.register_udf(lenient(pg::create_pg_get_partition_ancestors_udf()));
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        ExpandArray::default(),
    ));
    for kind in [
        DescriptionKind::Object,
        DescriptionKind::Column,
        DescriptionKind::Shared,
    ] {
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            Description::new(kind),
        ));
    }
    ctx.register_udf(lenient(quote_ident_udf::create_quote_ident_udf()));
    ctx.register_udf(lenient(quote_ident_udf::create_parse_ident_udf()));
    for f in function_signature_udfs() {
        ctx.register_udf(f);
    }
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        ToRegtype {
            signature: datafusion::logical_expr::Signature::any(
                1,
                datafusion::logical_expr::Volatility::Stable,
            ),
        },
    ));
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
            Box::new(super::pg_shape::PrependPgCatalog),
            Box::new(StripPgCatalog),
            Box::new(RegclassOfText),
            Box::new(r::RewriteRegclassCastToSubquery::new()),
            Box::new(RegtypeAsName),
            Box::new(r::RemoveUnsupportedTypes::new()),
            Box::new(r::FixArrayLiteral),
            Box::new(r::FixCollate),
            Box::new(SubscriptsAndEscapes),
            Box::new(ExpandArrayRewrite),
            Box::new(FunctionColumnNames),
        ]
    });
    match stmt {
        S::Statement(s) => {
            let mut s = *s;
            let before = top_level_items(&s);
            for rule in rules {
                s = rule.rewrite(s);
            }
            keep_column_names(&mut s, &before);
            // Correlated subqueries in a select list (psql's \d) are beyond DataFusion: in a
            // query of catalog tables only they answer NULL, as datafusion-postgres does; never
            // in a query over data, whose answers must not change.
            if only_catalog_tables(&s) {
                s = catalog_only(r::RemoveSubqueryFromProjection.rewrite(s));
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

/// The top-level select list's unnamed items, as (their text, the name PostgreSQL gives them).
fn top_level_items(
    s: &datafusion::sql::sqlparser::ast::Statement,
) -> Vec<Option<(String, String)>> {
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr, Statement};
    let Statement::Query(q) = s else {
        return vec![];
    };
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return vec![];
    };
    sel.projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => {
                let name = super::names::pg_column_name(e).unwrap_or_else(|| match e {
                    datafusion::sql::sqlparser::ast::Expr::Identifier(i) => super::names::ident(i),
                    datafusion::sql::sqlparser::ast::Expr::CompoundIdentifier(p) => {
                        p.last().map(super::names::ident).unwrap_or_default()
                    }
                    _ => "?column?".to_string(),
                });
                Some((e.to_string(), name))
            }
            _ => None,
        })
        .collect()
}

/// The rewrites change syntax, not the names of the columns a client sees: an unnamed item a
/// rule rewrote (`x = ANY(a)` is `array_contains(a, x)` here) keeps PostgreSQL's name for it
/// (`?column?`), unless that name is another item's.
fn keep_column_names(
    s: &mut datafusion::sql::sqlparser::ast::Statement,
    before: &[Option<(String, String)>],
) {
    use datafusion::sql::sqlparser::ast::{Ident, SelectItem, SetExpr, Statement};
    let Statement::Query(q) = s else { return };
    let SetExpr::Select(sel) = q.body.as_mut() else {
        return;
    };
    if sel.projection.len() != before.len() {
        return;
    }
    let taken: Vec<String> = sel
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(super::names::ident(alias)),
            _ => None,
        })
        .collect();
    let mut used = std::collections::HashSet::new();
    for (item, was) in sel.projection.iter_mut().zip(before) {
        let (SelectItem::UnnamedExpr(e), Some((text, name))) = (&*item, was) else {
            continue;
        };
        if e.to_string() == *text || taken.contains(name) || !used.insert(name.clone()) {
            continue;
        }
        *item = SelectItem::ExprWithAlias {
            expr: e.clone(),
            alias: Ident::with_quote('"', name.clone()),
        };
    }
}

/// `generate_subscripts(a, 1)` beside `unnest(a)` in a select list (SQLAlchemy's index and key
/// reflection) is `unnest(range(1, array_length(a, 1) + 1))`: set-returning items of one select
/// list advance together in both. `LIKE p ESCAPE 'c'` with another escape than backslash (the
/// only one DataFusion takes) becomes `LIKE lakegate_like_escape(p, 'c')`, the same pattern
/// written with backslash.
#[derive(Debug)]
struct SubscriptsAndEscapes;

fn call_expr(
    name: &str,
    args: Vec<datafusion::sql::sqlparser::ast::Expr>,
) -> datafusion::sql::sqlparser::ast::Expr {
    use datafusion::sql::sqlparser::ast::{
        Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments,
        Ident, ObjectName, ObjectNamePart,
    };
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

impl datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule for SubscriptsAndEscapes {
    fn rewrite(
        &self,
        mut s: datafusion::sql::sqlparser::ast::Statement,
    ) -> datafusion::sql::sqlparser::ast::Statement {
        use datafusion::sql::sqlparser::ast::{
            BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value,
            visit_expressions_mut,
        };
        let _ = visit_expressions_mut(&mut s, |e: &mut Expr| {
            match e {
                Expr::Function(f)
                    if f.name
                        .to_string()
                        .eq_ignore_ascii_case("generate_subscripts") =>
                {
                    if let FunctionArguments::List(list) = &f.args
                        && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(array))) =
                            list.args.first()
                    {
                        let one =
                            || Expr::Value(Value::Number("1".into(), false).with_empty_span());
                        let length = call_expr("array_length", vec![array.clone(), one()]);
                        let end = Expr::BinaryOp {
                            left: Box::new(length),
                            op: BinaryOperator::Plus,
                            right: Box::new(one()),
                        };
                        let bigint = |x: Expr| Expr::Cast {
                            kind: datafusion::sql::sqlparser::ast::CastKind::Cast,
                            expr: Box::new(x),
                            data_type: datafusion::sql::sqlparser::ast::DataType::BigInt(None),
                            array: false,
                            format: None,
                        };
                        *e = call_expr(
                            "unnest",
                            vec![call_expr("range", vec![bigint(one()), bigint(end)])],
                        );
                    }
                }
                Expr::Like {
                    pattern,
                    escape_char,
                    ..
                }
                | Expr::ILike {
                    pattern,
                    escape_char,
                    ..
                } => {
                    if let Some(c) = escape_char.clone()
                        && c != Value::SingleQuotedString("\\".into())
                    {
                        let p = pattern.as_ref().clone();
                        **pattern = call_expr(
                            "lakegate_like_escape",
                            vec![p, Expr::Value(c.with_empty_span())],
                        );
                        *escape_char = None;
                    }
                }
                _ => {}
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        s
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
    use datafusion::sql::sqlparser::ast::{TableFactor, Visit, Visitor};
    // Table functions (`generate_series`, `unnest`) read no data: they do not count.
    #[derive(Default)]
    struct V {
        any: bool,
        all: bool,
    }
    impl Visitor for V {
        type Break = ();
        fn pre_visit_table_factor(&mut self, t: &TableFactor) -> std::ops::ControlFlow<()> {
            if let TableFactor::Table { name, args, .. } = t
                && args.is_none()
            {
                self.any = true;
                let first = name.0.first().map(|p| p.to_string().to_ascii_lowercase());
                if !matches!(first.as_deref(), Some("pg_catalog" | "information_schema"))
                    || name.0.len() < 2
                {
                    self.all = false;
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut v = V {
        any: false,
        all: true,
    };
    let _ = s.visit(&mut v);
    v.any && v.all
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
    // Only where their parser replaced a known query: otherwise their rewrites (which drop
    // casts and subqueries) would stand in for ours.
    let replaced = |theirs: &[datafusion::sql::sqlparser::ast::Statement]| {
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        use datafusion::sql::sqlparser::parser::Parser;
        match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
            Ok(plain) => {
                plain.len() != theirs.len()
                    || plain
                        .into_iter()
                        .zip(theirs)
                        .any(|(p, t)| compat.rewrite(p).to_string() != t.to_string())
            }
            Err(_) => true,
        }
    };
    match compat.parse(sql) {
        Ok(theirs) if theirs.len() == ours.len() && replaced(&theirs) => {
            use datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule;
            // Their rules can leave two NULL columns behind (removed subqueries): name them.
            let theirs: Vec<S> = theirs
                .into_iter()
                // Their parser applied their rules, not ours: ours that they lack, then the
                // catalog-only ones.
                .map(|s| {
                    let s = ExpandArrayRewrite
                        .rewrite(SubscriptsAndEscapes.rewrite(RegclassOfText.rewrite(s)));
                    S::Statement(Box::new(catalog_only(s)))
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

/// Scalar subqueries nested in a catalog query's select list (SQLAlchemy's column defaults,
/// identity and collation inside CASE) that DataFusion cannot plan (Planner::plan_statement
/// retries with this) read pg_attrdef, pg_sequence and pg_collation rows Lakegate never has for
/// its columns: they answer NULL, as they would in PostgreSQL.
pub fn null_select_subqueries(
    stmt: datafusion::sql::parser::Statement,
) -> Option<datafusion::sql::parser::Statement> {
    use datafusion::sql::parser::Statement as S;
    use datafusion::sql::sqlparser::ast::{Expr, SetExpr, Statement, Value, visit_expressions_mut};
    fn selects(e: &mut SetExpr, changed: &mut bool) {
        match e {
            SetExpr::Select(sel) => {
                for item in &mut sel.projection {
                    let _ = visit_expressions_mut(item, |e: &mut Expr| {
                        if matches!(e, Expr::Subquery(_)) {
                            *e = Expr::Value(Value::Null.with_empty_span());
                            *changed = true;
                        }
                        std::ops::ControlFlow::<()>::Continue(())
                    });
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                selects(left, changed);
                selects(right, changed);
            }
            SetExpr::Query(q) => selects(&mut q.body, changed),
            _ => {}
        }
    }
    let S::Statement(mut s) = stmt else {
        return None;
    };
    if !only_catalog_tables(&s) {
        return None;
    }
    let mut changed = false;
    if let Statement::Query(q) = s.as_mut() {
        selects(&mut q.body, &mut changed);
    }
    changed.then_some(S::Statement(s))
}

/// A correlated scalar subquery that selects one plain value (`(SELECT c.relkind = 'c' FROM
/// pg_class c WHERE c.oid = t.typrelid)`, psql's `\dT`) is `max(value)` over the same rows:
/// DataFusion plans correlated scalar subqueries only when they aggregate, and catalog lookups
/// by key find at most one row, where the two agree (no row: NULL).
fn aggregate_scalar_subqueries(s: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{
        Expr, GroupByExpr, SelectItem, SetExpr, VisitMut, VisitorMut,
    };
    const AGGREGATES: &[&str] = &[
        "count",
        "sum",
        "min",
        "max",
        "avg",
        "array_agg",
        "string_agg",
        "bool_and",
        "bool_or",
        "every",
        "json_agg",
        "jsonb_agg",
        "json_object_agg",
        "first_value",
        "last_value",
    ];
    fn aggregated(e: &Expr) -> bool {
        let mut found = false;
        let _ = datafusion::sql::sqlparser::ast::visit_expressions(e, |x: &Expr| {
            if let Expr::Function(f) = x
                && AGGREGATES
                    .iter()
                    .any(|a| f.name.to_string().eq_ignore_ascii_case(a))
            {
                found = true;
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        found
    }
    struct V;
    impl VisitorMut for V {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
            if let Expr::Subquery(q) = e
                && q.limit_clause.is_none()
                && q.order_by.is_none()
                && let SetExpr::Select(sel) = q.body.as_mut()
                && matches!(&sel.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
                && sel.distinct.is_none()
                && sel.having.is_none()
                && let [
                    SelectItem::UnnamedExpr(item) | SelectItem::ExprWithAlias { expr: item, .. },
                ] = sel.projection.as_mut_slice()
                && !aggregated(item)
                && !matches!(item, Expr::Subquery(_))
            {
                *item = call_expr("max", vec![item.clone()]);
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = s.visit(&mut V);
}

/// Give repeated unnamed select items (`NULL, NULL` in psql's publication query) their own
/// names, as PostgreSQL does (`?column?`); DataFusion needs output names to differ.
fn alias_repeated_items(items: &mut [datafusion::sql::sqlparser::ast::SelectItem]) {
    use datafusion::sql::sqlparser::ast::{Ident, SelectItem};
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter_mut().enumerate() {
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

/// The rewrites of a statement that reads catalog tables only, after either parser: `ARRAY(SELECT
/// ...)` empty, duplicate output names made distinct, scalar subqueries aggregated, and in each
/// select of its top-level query (union branches too) repeated unnamed items named.
fn catalog_only(
    s: datafusion::sql::sqlparser::ast::Statement,
) -> datafusion::sql::sqlparser::ast::Statement {
    use datafusion::sql::sqlparser::ast::{SetExpr, Statement};
    use datafusion_pg_catalog::sql::rules::{
        AliasDuplicatedProjectionRewrite, SqlStatementRewriteRule,
    };
    fn selects(e: &mut SetExpr) {
        match e {
            SetExpr::Select(sel) => {
                alias_repeated_items(&mut sel.projection);
            }
            SetExpr::SetOperation { left, right, .. } => {
                selects(left);
                selects(right);
            }
            SetExpr::Query(q) => selects(&mut q.body),
            _ => {}
        }
    }
    let mut s = AliasDuplicatedProjectionRewrite.rewrite(EmptyArraySubquery.rewrite(s));
    aggregate_scalar_subqueries(&mut s);
    // `N.xmin`, the system column of a catalog row (DataGrip's state number): no row of
    // Lakegate's catalog changes in place, so one transaction id serves (shown as an xid is).
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(
        &mut s,
        |e: &mut datafusion::sql::sqlparser::ast::Expr| {
            use datafusion::sql::sqlparser::ast::{Expr, Value};
            if let Expr::CompoundIdentifier(parts) = e
                && parts.len() == 2
                && parts[1].value.eq_ignore_ascii_case("xmin")
            {
                *e = Expr::Value(Value::SingleQuotedString("1".into()).with_empty_span());
            }
            std::ops::ControlFlow::<()>::Continue(())
        },
    );
    if let Statement::Query(q) = &mut s {
        selects(&mut q.body);
    }
    s
}

/// `pg_get_function_result(oid)` / `pg_get_function_arguments(oid)` / `pg_get_function_identity_arguments(oid)`
/// (psql's `\df`, DBeaver's procedure browser), answered from the static pg_proc and pg_type of
/// datafusion-pg-catalog, which has no such functions.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FunctionSignature {
    name: &'static str,
    result: bool,
    signature: datafusion::logical_expr::Signature,
}

/// Per pg_proc oid: the result type's name, and the argument list's text.
type Signatures = std::collections::HashMap<i64, (String, String)>;

fn signatures() -> &'static Signatures {
    static SIGS: OnceLock<Signatures> = OnceLock::new();
    SIGS.get_or_init(|| build_signatures().unwrap_or_default())
}

/// (oid, typname, typarray) of every built-in type (pg::pg_static).
fn static_types() -> Option<Vec<(i32, String, i32)>> {
    use super::pg_static::{ints, strings, table};
    let t = table("pg_type")?;
    Some(
        ints(t, "oid")
            .into_iter()
            .zip(strings(t, "typname"))
            .zip(ints(t, "typarray"))
            .filter_map(|((o, n), a)| Some((o?, n?, a.unwrap_or(0))))
            .collect(),
    )
}

/// Each built-in function's result type and argument list, as `pg_get_function_result` and
/// `pg_get_function_arguments` show them, from pg_proc and pg_type (PostgreSQL 15's).
fn build_signatures() -> Option<Signatures> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int32Type;
    let proc = super::pg_static::table("pg_proc")?;
    let b = &proc.batch;
    let types: std::collections::HashMap<i32, String> = static_types()?
        .into_iter()
        .map(|(oid, name, _)| (oid, sql_type_name(&name)))
        .collect();
    let name_of =
        |oid: i32| -> String { types.get(&oid).cloned().unwrap_or_else(|| oid.to_string()) };
    let oid = b.column_by_name("oid")?.as_primitive_opt::<Int32Type>()?;
    let ret = b
        .column_by_name("prorettype")?
        .as_primitive_opt::<Int32Type>()?;
    let args = b.column_by_name("proargtypes")?.as_list_opt::<i32>()?;
    let set = b.column_by_name("proretset")?.as_boolean_opt()?;
    let mut out = Signatures::new();
    for i in 0..b.num_rows() {
        if !oid.is_valid(i) {
            continue;
        }
        let mut result = name_of(ret.value(i));
        if set.is_valid(i) && set.value(i) {
            result = format!("SETOF {result}");
        }
        let list = if args.is_valid(i) {
            let v = args.value(i);
            let v = v.as_primitive_opt::<Int32Type>()?;
            v.iter()
                .flatten()
                .map(name_of)
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            String::new()
        };
        out.insert(i64::from(oid.value(i)), (result, list));
    }
    Some(out)
}

/// A pg_type name as `format_type` shows it.
fn sql_type_name(typname: &str) -> String {
    if let Some(elem) = typname.strip_prefix('_') {
        return format!("{}[]", sql_type_name(elem));
    }
    match typname {
        "int2" => "smallint",
        "int4" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "bool" => "boolean",
        "varchar" => "character varying",
        "bpchar" => "character",
        "varbit" => "bit varying",
        "timestamp" => "timestamp without time zone",
        "timestamptz" => "timestamp with time zone",
        "time" => "time without time zone",
        "timetz" => "time with time zone",
        "char" => "\"char\"",
        other => other,
    }
    .to_string()
}

impl datafusion::logical_expr::ScalarUDFImpl for FunctionSignature {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn return_type(
        &self,
        _: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
        Ok(datafusion::arrow::datatypes::DataType::Utf8)
    }
    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, StringArray};
        use datafusion::arrow::datatypes::{DataType, Int64Type};
        use datafusion::logical_expr::ColumnarValue;
        let Some(arg) = args.args.first() else {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Utf8(None),
            ));
        };
        let oids = arg.to_array(args.number_rows)?;
        let oids = datafusion::arrow::compute::cast(&oids, &DataType::Int64)?;
        let oids = oids.as_primitive::<Int64Type>();
        let sigs = signatures();
        let out: StringArray = (0..oids.len())
            .map(|i| {
                if oids.is_null(i) {
                    return None;
                }
                sigs.get(&oids.value(i)).map(|(result, list)| {
                    if self.result {
                        result.clone()
                    } else {
                        list.clone()
                    }
                })
            })
            .collect();
        Ok(ColumnarValue::Array(std::sync::Arc::new(out)))
    }
}

fn function_signature_udfs() -> Vec<datafusion::logical_expr::ScalarUDF> {
    use datafusion::logical_expr::{ScalarUDF, Signature, Volatility};
    [
        ("pg_get_function_result", true),
        ("pg_get_function_arguments", false),
        ("pg_get_function_identity_arguments", false),
    ]
    .into_iter()
    .map(|(name, result)| {
        ScalarUDF::new_from_impl(FunctionSignature {
            name,
            result,
            signature: Signature::any(1, Volatility::Stable),
        })
    })
    .collect()
}

/// Type name (`int4`, `integer`, `_int4`, `int4[]`, `pg_catalog.numeric`) -> pg_type oid, for
/// `to_regtype` (psycopg's TypeInfo, SQLAlchemy's psycopg dialect).
fn type_oids() -> &'static std::collections::HashMap<String, i32> {
    static OIDS: OnceLock<std::collections::HashMap<String, i32>> = OnceLock::new();
    OIDS.get_or_init(|| build_type_oids().unwrap_or_default())
}

fn build_type_oids() -> Option<std::collections::HashMap<String, i32>> {
    let mut out = std::collections::HashMap::new();
    let mut arrays = vec![];
    for (oid, name, array) in static_types()? {
        out.insert(name.clone(), oid);
        out.entry(sql_type_name(&name)).or_insert(oid);
        if array != 0 {
            arrays.push((name, array));
        }
    }
    for (elem, array) in arrays {
        out.entry(format!("{elem}[]")).or_insert(array);
        out.entry(format!("{}[]", sql_type_name(&elem)))
            .or_insert(array);
    }
    for (alias, name) in [
        ("int", "int4"),
        ("float", "float8"),
        ("decimal", "numeric"),
        ("char", "bpchar"),
        ("\"char\"", "char"),
        ("character", "bpchar"),
        ("timestamp", "timestamp"),
        ("time", "time"),
    ] {
        if let Some(oid) = out.get(name).copied() {
            out.insert(alias.to_string(), oid);
        }
    }
    Some(out)
}

/// `to_regtype(text)`: the type's oid, NULL when there is no such type.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ToRegtype {
    signature: datafusion::logical_expr::Signature,
}

fn regtype_of(name: &str) -> Option<i32> {
    let mut n = name.trim().to_ascii_lowercase();
    if let Some(rest) = n.strip_prefix("pg_catalog.") {
        n = rest.to_string();
    }
    // Type modifiers do not change the type: varchar(10), numeric(10,2).
    if let (Some(open), Some(close)) = (n.find('('), n.rfind(')')) {
        n = format!("{}{}", n[..open].trim_end(), &n[close + 1..]);
    }
    let oids = type_oids();
    oids.get(&n)
        .or_else(|| oids.get(n.trim_matches('"')))
        .copied()
}

impl datafusion::logical_expr::ScalarUDFImpl for ToRegtype {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &str {
        "to_regtype"
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn return_type(
        &self,
        _: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
        Ok(datafusion::arrow::datatypes::DataType::Int32)
    }
    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, Int32Array};
        use datafusion::arrow::datatypes::DataType;
        let Some(arg) = args.args.first() else {
            return Ok(datafusion::logical_expr::ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Int32(None),
            ));
        };
        let names = arg.to_array(args.number_rows)?;
        let names = datafusion::arrow::compute::cast(&names, &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let out: Int32Array = (0..names.len())
            .map(|i| {
                if names.is_null(i) {
                    None
                } else {
                    regtype_of(names.value(i))
                }
            })
            .collect();
        Ok(datafusion::logical_expr::ColumnarValue::Array(
            std::sync::Arc::new(out),
        ))
    }
}

/// `(record).field` as DataFusion spells a field access, and
/// `information_schema._pg_expandarray(a)`, the set-returning function pgjdbc's primary-key and
/// index queries call in a select list (`(_pg_expandarray(i.indkey)).n`): each element with its
/// 1-based position, as a record `(x, n)`. In an expression it becomes
/// `unnest(lakegate_expandarray(a))` (a list of such records, unnested: one row per element);
/// in FROM, the two columns of `unnest(a)` beside `unnest(range(1, n + 1))`.
#[derive(Debug)]
struct ExpandArrayRewrite;

fn is_expandarray(name: &datafusion::sql::sqlparser::ast::ObjectName) -> bool {
    name.0
        .last()
        .is_some_and(|p| p.to_string().eq_ignore_ascii_case("_pg_expandarray"))
}

impl datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule for ExpandArrayRewrite {
    fn rewrite(
        &self,
        mut s: datafusion::sql::sqlparser::ast::Statement,
    ) -> datafusion::sql::sqlparser::ast::Statement {
        use datafusion::sql::sqlparser::ast::{
            AccessExpr, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, TableAlias,
            TableFactor, Value, VisitMut, VisitorMut,
        };
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        use datafusion::sql::sqlparser::parser::Parser;
        struct V;
        impl VisitorMut for V {
            type Break = ();
            fn post_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
                // `(record).field`: DataFusion takes a field named by a string after the dot.
                // (`a.b[1]` is a column's subscript, left alone.)
                if let Expr::CompoundFieldAccess { root, access_chain } = e
                    && matches!(root.as_ref(), Expr::Nested(_))
                {
                    for a in access_chain.iter_mut() {
                        if let AccessExpr::Dot(d) = a
                            && let Expr::Identifier(i) = d
                        {
                            *d = Expr::Value(
                                Value::SingleQuotedString(super::names::ident(i)).with_empty_span(),
                            );
                        }
                    }
                }
                if let Expr::Function(f) = e
                    && is_expandarray(&f.name)
                    && let FunctionArguments::List(list) = &f.args
                    && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(a))] = list.args.as_slice()
                {
                    *e = call_expr(
                        "unnest",
                        vec![call_expr("lakegate_expandarray", vec![a.clone()])],
                    );
                }
                std::ops::ControlFlow::Continue(())
            }
            fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> std::ops::ControlFlow<()> {
                if let TableFactor::Table {
                    name,
                    args: Some(args),
                    alias,
                    ..
                } = t
                    && is_expandarray(name)
                    && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(a))] = args.args.as_slice()
                {
                    let sql = format!(
                        "SELECT unnest({a}) AS x, unnest(range(1, CAST(cardinality({a}) AS BIGINT) + 1)) AS n"
                    );
                    if let Ok(q) = Parser::new(&PostgreSqlDialect {})
                        .try_with_sql(&sql)
                        .and_then(|mut p| p.parse_query())
                    {
                        *t = TableFactor::Derived {
                            lateral: false,
                            subquery: q,
                            alias: Some(alias.clone().unwrap_or(TableAlias {
                                name: Ident::new("_pg_expandarray"),
                                columns: vec![],
                                explicit: true,
                            })),
                            sample: None,
                        };
                    }
                }
                std::ops::ControlFlow::Continue(())
            }
        }
        let _ = s.visit(&mut V);
        s
    }
}

/// `lakegate_expandarray(a)`: the list of records `(x, n)` of a list's elements and their
/// 1-based positions (see ExpandArrayRewrite).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: datafusion::logical_expr::Signature,
}

impl Default for ExpandArray {
    fn default() -> Self {
        ExpandArray {
            signature: datafusion::logical_expr::Signature::any(
                1,
                datafusion::logical_expr::Volatility::Immutable,
            ),
        }
    }
}

fn expanded_type(
    list: &datafusion::arrow::datatypes::DataType,
) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
    use datafusion::arrow::datatypes::{DataType, Field, Fields};
    let elem = match list {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            f.data_type().clone()
        }
        DataType::Null => DataType::Null,
        other => {
            return datafusion::common::plan_err!("_pg_expandarray expects an array, not {other}");
        }
    };
    let record = DataType::Struct(Fields::from(vec![
        Field::new("x", elem, true),
        Field::new("n", DataType::Int32, false),
    ]));
    Ok(DataType::List(std::sync::Arc::new(Field::new(
        "item", record, true,
    ))))
}

impl datafusion::logical_expr::ScalarUDFImpl for ExpandArray {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &str {
        "lakegate_expandarray"
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn return_type(
        &self,
        args: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
        expanded_type(
            args.first()
                .unwrap_or(&datafusion::arrow::datatypes::DataType::Null),
        )
    }
    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, Int32Array, ListArray, StructArray};
        use datafusion::arrow::datatypes::DataType;
        use std::sync::Arc;
        let Some(arg) = args.args.first() else {
            return datafusion::common::exec_err!("_pg_expandarray expects one argument");
        };
        let input = arg.to_array(args.number_rows)?;
        let out_type = expanded_type(input.data_type())?;
        let DataType::List(item) = &out_type else {
            return datafusion::common::exec_err!("_pg_expandarray: not a list");
        };
        let DataType::Struct(record) = item.data_type() else {
            return datafusion::common::exec_err!("_pg_expandarray: not a record");
        };
        let list = match input.data_type() {
            DataType::List(_) => input.as_list::<i32>().clone(),
            DataType::Null => ListArray::new_null(item.clone(), input.len()),
            other => {
                let cast = datafusion::arrow::compute::cast(
                    &input,
                    &DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new(
                        "item",
                        match other {
                            DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                                f.data_type().clone()
                            }
                            _ => DataType::Null,
                        },
                        true,
                    ))),
                )?;
                cast.as_list::<i32>().clone()
            }
        };
        let offsets = list.offsets().clone();
        let mut positions = Vec::with_capacity(list.values().len());
        for w in offsets.windows(2) {
            positions.extend(1..=(w[1] - w[0]));
        }
        let values = list.values().clone();
        let records = StructArray::try_new(
            record.clone(),
            vec![values, Arc::new(Int32Array::from(positions))],
            None,
        )?;
        let out = ListArray::try_new(
            item.clone(),
            offsets,
            Arc::new(records),
            list.nulls().cloned(),
        )?;
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
            out,
        )))
    }
}

/// `obj_description(oid, catalog)`, `col_description(table, column)` and
/// `shobj_description(oid, catalog)`: the comments of built-in objects (pg_description and
/// pg_shdescription as dumped, pg::pg_static). Lakegate's own objects have none.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum DescriptionKind {
    Object,
    Column,
    Shared,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Description {
    kind: DescriptionKind,
    signature: datafusion::logical_expr::Signature,
}

impl Description {
    fn new(kind: DescriptionKind) -> Self {
        use datafusion::logical_expr::{Signature, TypeSignature, Volatility};
        Description {
            kind,
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Stable,
            ),
        }
    }
}

/// (objoid, classoid, objsubid) -> description, of pg_description (shared: pg_shdescription,
/// objsubid 0).
fn descriptions(shared: bool) -> &'static std::collections::HashMap<(i32, i32, i32), String> {
    use super::pg_static::{ints, strings, table};
    static OBJECTS: OnceLock<std::collections::HashMap<(i32, i32, i32), String>> = OnceLock::new();
    static SHARED: OnceLock<std::collections::HashMap<(i32, i32, i32), String>> = OnceLock::new();
    let build = |name: &str| {
        let Some(t) = table(name) else {
            return std::collections::HashMap::new();
        };
        let subs = if name == "pg_description" {
            ints(t, "objsubid")
        } else {
            vec![Some(0); t.batch.num_rows()]
        };
        ints(t, "objoid")
            .into_iter()
            .zip(ints(t, "classoid"))
            .zip(subs)
            .zip(strings(t, "description"))
            .filter_map(|(((o, c), n), d)| Some(((o?, c?, n?), d?)))
            .collect()
    };
    if shared {
        SHARED.get_or_init(|| build("pg_shdescription"))
    } else {
        OBJECTS.get_or_init(|| build("pg_description"))
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Description {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &str {
        match self.kind {
            DescriptionKind::Object => "obj_description",
            DescriptionKind::Column => "col_description",
            DescriptionKind::Shared => "shobj_description",
        }
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn return_type(
        &self,
        _: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
        Ok(datafusion::arrow::datatypes::DataType::Utf8)
    }
    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, StringArray};
        use datafusion::arrow::datatypes::{DataType, Int64Type};
        let n = args.number_rows;
        let as_ints = |i: usize| -> datafusion::common::Result<Option<Vec<Option<i64>>>> {
            let Some(a) = args.args.get(i) else {
                return Ok(None);
            };
            let a = datafusion::arrow::compute::cast(&a.to_array(n)?, &DataType::Int64)?;
            let a = a.as_primitive::<Int64Type>();
            Ok(Some(
                (0..n).map(|r| a.is_valid(r).then(|| a.value(r))).collect(),
            ))
        };
        let oids = as_ints(0)?.unwrap_or_else(|| vec![None; n]);
        let map = descriptions(self.kind == DescriptionKind::Shared);
        let out: StringArray = match self.kind {
            DescriptionKind::Column => {
                let columns = as_ints(1)?.unwrap_or_else(|| vec![None; n]);
                let class = i64::from(super::pg_shape::relation_oid("pg_catalog", "pg_class"));
                (0..n)
                    .map(|r| {
                        let (o, c) = (oids[r]?, columns[r]?);
                        map.get(&(
                            i32::try_from(o).ok()?,
                            i32::try_from(class).ok()?,
                            i32::try_from(c).ok()?,
                        ))
                        .cloned()
                    })
                    .collect()
            }
            _ => {
                let catalogs = match args.args.get(1) {
                    Some(c) => {
                        let c = datafusion::arrow::compute::cast(&c.to_array(n)?, &DataType::Utf8)?;
                        let c = c.as_string::<i32>();
                        (0..n)
                            .map(|r| c.is_valid(r).then(|| c.value(r).to_string()))
                            .collect()
                    }
                    None => vec![None; n],
                };
                (0..n)
                    .map(|r| {
                        let o = i32::try_from(oids[r]?).ok()?;
                        match &catalogs[r] {
                            Some(cat) => {
                                let class = super::pg_shape::relation_oid(
                                    "pg_catalog",
                                    cat.trim_start_matches("pg_catalog."),
                                );
                                map.get(&(o, class, 0)).cloned()
                            }
                            // The one-argument form: any catalog's comment of the object.
                            None => map
                                .iter()
                                .find(|((obj, _, sub), _)| *obj == o && *sub == 0)
                                .map(|(_, d)| d.clone()),
                        }
                    })
                    .collect()
            }
        };
        Ok(datafusion::logical_expr::ColumnarValue::Array(
            std::sync::Arc::new(out),
        ))
    }
}

/// `'name'::regclass` and `$1::regclass` (a name given as text) are `lakegate_regclass(name)`,
/// the named relation's oid (pg::functions); likewise `'array_in'::regproc` the function's
/// oid and `'int4'::regtype` the type's. A cast of anything else (an oid column) stays a cast to
/// an integer oid.
#[derive(Debug)]
struct RegclassOfText;

impl datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule for RegclassOfText {
    fn rewrite(
        &self,
        mut s: datafusion::sql::sqlparser::ast::Statement,
    ) -> datafusion::sql::sqlparser::ast::Statement {
        use datafusion::sql::sqlparser::ast::{Expr, Value, VisitMut, VisitorMut};
        struct V;
        impl VisitorMut for V {
            type Break = ();
            fn post_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
                if let Expr::Cast {
                    expr, data_type, ..
                } = e
                    && let Some(function) =
                        match data_type.to_string().to_ascii_lowercase().as_str() {
                            "regclass" | "pg_catalog.regclass" => Some("lakegate_regclass"),
                            "regproc" | "pg_catalog.regproc" => Some("lakegate_regproc"),
                            "regtype" | "pg_catalog.regtype" => Some("to_regtype"),
                            _ => None,
                        }
                    && let Expr::Value(v) = expr.as_ref()
                    && matches!(
                        v.value,
                        Value::SingleQuotedString(_)
                            | Value::EscapedStringLiteral(_)
                            | Value::Placeholder(_)
                    )
                {
                    *e = call_expr(function, vec![expr.as_ref().clone()]);
                }
                std::ops::ControlFlow::Continue(())
            }
        }
        let _ = s.visit(&mut V);
        s
    }
}

/// `pg_get_expr(tree, relation [, pretty])`: the expression a node tree stands for. Lakegate's
/// catalog keeps no compiled expressions (no column defaults, index predicates or partition
/// bounds; the built-in rows' trees are not kept): NULL for NULL, as PostgreSQL answers for an
/// absent tree.
#[derive(Debug, PartialEq, Eq, Hash)]
struct GetExpr {
    signature: datafusion::logical_expr::Signature,
}

impl Default for GetExpr {
    fn default() -> Self {
        GetExpr {
            signature: datafusion::logical_expr::Signature::variadic_any(
                datafusion::logical_expr::Volatility::Stable,
            ),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for GetExpr {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &str {
        "pg_get_expr"
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn return_type(
        &self,
        _: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
        Ok(datafusion::arrow::datatypes::DataType::Utf8)
    }
    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::datatypes::DataType;
        let Some(tree) = args.args.first() else {
            return Ok(datafusion::logical_expr::ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Utf8(None),
            ));
        };
        let text =
            datafusion::arrow::compute::cast(&tree.to_array(args.number_rows)?, &DataType::Utf8)?;
        Ok(datafusion::logical_expr::ColumnarValue::Array(text))
    }
}

/// `format_type(type_oid, typmod)`: a type's name as PostgreSQL's catalogs show it (`integer`,
/// `character varying(12)`, `numeric(10,2)`, `timestamp(3) with time zone`, `text[]`,
/// `information_schema.character_data`), from the built-in pg_type; `???` for an unknown oid.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FormatType {
    signature: datafusion::logical_expr::Signature,
}

impl Default for FormatType {
    fn default() -> Self {
        FormatType {
            signature: datafusion::logical_expr::Signature::any(
                2,
                datafusion::logical_expr::Volatility::Stable,
            ),
        }
    }
}

/// oid -> (typname, namespace name, typelem, typcategory) of the built-in types.
fn type_rows() -> &'static std::collections::HashMap<i32, (String, String, i32, String)> {
    use super::pg_static::{ints, strings, table};
    static ROWS: OnceLock<std::collections::HashMap<i32, (String, String, i32, String)>> =
        OnceLock::new();
    ROWS.get_or_init(|| {
        let (Some(t), Some(n)) = (table("pg_type"), table("pg_namespace")) else {
            return std::collections::HashMap::new();
        };
        let spaces: std::collections::HashMap<i32, String> = ints(n, "oid")
            .into_iter()
            .zip(strings(n, "nspname"))
            .filter_map(|(o, n)| Some((o?, n?)))
            .collect();
        ints(t, "oid")
            .into_iter()
            .zip(strings(t, "typname"))
            .zip(ints(t, "typnamespace"))
            .zip(ints(t, "typelem"))
            .zip(strings(t, "typcategory"))
            .filter_map(|((((o, name), ns), elem), cat)| {
                let space = spaces.get(&ns?).cloned().unwrap_or_default();
                Some((
                    o?,
                    (name?, space, elem.unwrap_or(0), cat.unwrap_or_default()),
                ))
            })
            .collect()
    })
}

/// PostgreSQL's format_type of one type and modifier.
pub fn format_type(oid: i32, typmod: Option<i32>) -> String {
    let Some((name, space, elem, category)) = type_rows().get(&oid) else {
        return "???".into();
    };
    if category == "A" && *elem != 0 && name.starts_with('_') {
        return format!("{}[]", format_type(*elem, typmod));
    }
    let m = typmod.filter(|m| *m >= 0);
    let with_precision = |base: &str, suffix: &str| match m {
        Some(p) => format!("{base}({p}){suffix}"),
        None => format!("{base}{suffix}"),
    };
    match name.as_str() {
        "int2" => "smallint".into(),
        "int4" => "integer".into(),
        "int8" => "bigint".into(),
        "float4" => "real".into(),
        "float8" => "double precision".into(),
        "bool" => "boolean".into(),
        "char" => "\"char\"".into(),
        "varchar" => match m {
            Some(m) if m >= 4 => format!("character varying({})", m - 4),
            _ => "character varying".into(),
        },
        "bpchar" => match m {
            Some(m) if m >= 4 => format!("character({})", m - 4),
            _ => "bpchar".into(),
        },
        "numeric" => match m {
            Some(m) if m >= 4 => {
                let m = m - 4;
                format!("numeric({},{})", (m >> 16) & 0xffff, m & 0xffff)
            }
            _ => "numeric".into(),
        },
        "bit" | "varbit" => {
            let base = if name == "bit" { "bit" } else { "bit varying" };
            with_precision(base, "")
        }
        "time" => with_precision("time", " without time zone"),
        "timetz" => with_precision("time", " with time zone"),
        "timestamp" => with_precision("timestamp", " without time zone"),
        "timestamptz" => with_precision("timestamp", " with time zone"),
        "interval" => with_precision("interval", ""),
        other if space != "pg_catalog" => format!("{space}.{other}"),
        other => other.to_string(),
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for FormatType {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &str {
        "format_type"
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn return_type(
        &self,
        _: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
        Ok(datafusion::arrow::datatypes::DataType::Utf8)
    }
    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, StringArray};
        use datafusion::arrow::datatypes::{DataType, Int64Type};
        let n = args.number_rows;
        let ints = |i: usize| -> datafusion::common::Result<Vec<Option<i64>>> {
            let Some(a) = args.args.get(i) else {
                return Ok(vec![None; n]);
            };
            let a = datafusion::arrow::compute::cast(&a.to_array(n)?, &DataType::Int64)?;
            let a = a.as_primitive::<Int64Type>();
            Ok((0..n).map(|r| a.is_valid(r).then(|| a.value(r))).collect())
        };
        let (oids, mods) = (ints(0)?, ints(1)?);
        let out: StringArray = (0..n)
            .map(|r| {
                let oid = i32::try_from(oids[r]?).ok()?;
                Some(format_type(
                    oid,
                    mods[r].and_then(|m| i32::try_from(m).ok()),
                ))
            })
            .collect();
        Ok(datafusion::logical_expr::ColumnarValue::Array(
            std::sync::Arc::new(out),
        ))
    }
}

/// A set-returning function of one column in FROM names its column as PostgreSQL does: after the
/// function (`SELECT * FROM unnest(a)` has a column `unnest`), or after the table alias when the
/// alias has no column list (`generate_series(1, 3) AS g` has a column `g`).
#[derive(Debug)]
struct FunctionColumnNames;

impl datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule for FunctionColumnNames {
    fn rewrite(
        &self,
        mut s: datafusion::sql::sqlparser::ast::Statement,
    ) -> datafusion::sql::sqlparser::ast::Statement {
        use datafusion::sql::sqlparser::ast::{
            Ident, TableAlias, TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
        };
        fn name_column(alias: &mut Option<TableAlias>, function: &str) {
            match alias {
                None => {
                    *alias = Some(TableAlias {
                        explicit: true,
                        name: Ident::new(function),
                        columns: vec![TableAliasColumnDef::from_name(function)],
                    })
                }
                Some(a) if a.columns.is_empty() => {
                    a.columns = vec![TableAliasColumnDef {
                        name: a.name.clone(),
                        data_type: None,
                    }]
                }
                Some(_) => {}
            }
        }
        struct V;
        impl VisitorMut for V {
            type Break = ();
            fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> std::ops::ControlFlow<()> {
                match t {
                    TableFactor::UNNEST {
                        alias,
                        array_exprs,
                        with_offset: false,
                        ..
                    } if array_exprs.len() == 1 => name_column(alias, "unnest"),
                    TableFactor::Table {
                        name,
                        args: Some(_),
                        alias,
                        ..
                    } if name
                        .0
                        .last()
                        .is_some_and(|p| p.to_string().eq_ignore_ascii_case("generate_series")) =>
                    {
                        name_column(alias, "generate_series")
                    }
                    _ => {}
                }
                std::ops::ControlFlow::Continue(())
            }
        }
        let _ = s.visit(&mut V);
        s
    }
}

/// `lakegate_regproc(name)`: the oid of the built-in function of that name (`array_in`,
/// `pg_catalog.array_in`), NULL when there is none.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegProc {
    signature: datafusion::logical_expr::Signature,
}

impl Default for RegProc {
    fn default() -> Self {
        RegProc {
            signature: datafusion::logical_expr::Signature::any(
                1,
                datafusion::logical_expr::Volatility::Immutable,
            ),
        }
    }
}

fn proc_oids() -> &'static std::collections::HashMap<String, i32> {
    use super::pg_static::{ints, strings, table};
    static OIDS: OnceLock<std::collections::HashMap<String, i32>> = OnceLock::new();
    OIDS.get_or_init(|| {
        let Some(t) = table("pg_proc") else {
            return std::collections::HashMap::new();
        };
        let mut out = std::collections::HashMap::new();
        for (o, n) in ints(t, "oid").into_iter().zip(strings(t, "proname")) {
            if let (Some(o), Some(n)) = (o, n) {
                // Overloaded names: the lowest oid, as regproc's input takes a unique name.
                out.entry(n)
                    .and_modify(|e: &mut i32| *e = (*e).min(o))
                    .or_insert(o);
            }
        }
        out
    })
}

impl datafusion::logical_expr::ScalarUDFImpl for RegProc {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &str {
        "lakegate_regproc"
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn return_type(
        &self,
        _: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
        Ok(datafusion::arrow::datatypes::DataType::Int32)
    }
    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, Int32Array};
        use datafusion::arrow::datatypes::DataType;
        let Some(arg) = args.args.first() else {
            return Ok(datafusion::logical_expr::ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Int32(None),
            ));
        };
        let names =
            datafusion::arrow::compute::cast(&arg.to_array(args.number_rows)?, &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let out: Int32Array = (0..names.len())
            .map(|i| {
                if names.is_null(i) {
                    return None;
                }
                let n = names.value(i).trim();
                if n == "-" {
                    return Some(0);
                }
                let n = n.strip_prefix("pg_catalog.").unwrap_or(n).trim_matches('"');
                n.parse().ok().or_else(|| proc_oids().get(n).copied())
            })
            .collect();
        Ok(datafusion::logical_expr::ColumnarValue::Array(
            std::sync::Arc::new(out),
        ))
    }
}

/// `pg_get_keywords()`: PostgreSQL 15's keywords (pg::pg_static).
#[derive(Debug)]
struct Keywords;

impl datafusion::catalog::TableFunctionImpl for Keywords {
    fn call(
        &self,
        _args: &[datafusion::logical_expr::Expr],
    ) -> datafusion::common::Result<Arc<dyn datafusion::catalog::TableProvider>> {
        let t = super::pg_static::table("pg_get_keywords").ok_or_else(|| {
            datafusion::error::DataFusionError::Plan("pg_get_keywords: no keyword list".into())
        })?;
        Ok(Arc::new(datafusion::datasource::MemTable::try_new(
            t.batch.schema(),
            vec![vec![t.batch.clone()]],
        )?))
    }
}

/// One of datafusion-pg-catalog's functions, taking what PostgreSQL takes: their signatures are
/// exact (`Int32` oids), while clients pass integer literals (bigint here) and untyped
/// parameters. Arguments are coerced to the first exact signature of their arity they fit.
fn lenient(inner: datafusion::logical_expr::ScalarUDF) -> datafusion::logical_expr::ScalarUDF {
    datafusion::logical_expr::ScalarUDF::new_from_impl(Lenient {
        signature: datafusion::logical_expr::Signature::user_defined(inner.signature().volatility),
        inner,
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Lenient {
    inner: datafusion::logical_expr::ScalarUDF,
    signature: datafusion::logical_expr::Signature,
}

fn exact_variants(
    s: &datafusion::logical_expr::TypeSignature,
) -> Vec<Vec<datafusion::arrow::datatypes::DataType>> {
    use datafusion::logical_expr::TypeSignature as T;
    match s {
        T::Exact(v) => vec![v.clone()],
        T::OneOf(v) => v.iter().flat_map(exact_variants).collect(),
        T::Uniform(n, types) => types.iter().map(|t| vec![t.clone(); *n]).collect(),
        _ => vec![],
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Lenient {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn coerce_types(
        &self,
        args: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::common::Result<Vec<datafusion::arrow::datatypes::DataType>> {
        use datafusion::arrow::datatypes::DataType as D;
        let fits = |have: &D, want: &D| {
            have == want
                || matches!(have, D::Null)
                || (have.is_integer() && want.is_integer())
                || (matches!(have, D::Utf8 | D::Utf8View | D::LargeUtf8)
                    && matches!(want, D::Utf8 | D::Utf8View | D::LargeUtf8))
        };
        let variants = exact_variants(&self.inner.signature().type_signature);
        if variants.is_empty() {
            return Ok(args.to_vec());
        }
        variants
            .into_iter()
            .find(|v| v.len() == args.len() && args.iter().zip(v).all(|(a, w)| fits(a, w)))
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Plan(format!(
                    "function {}({}) does not exist",
                    self.inner.name(),
                    args.iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
    fn return_type(
        &self,
        args: &[datafusion::arrow::datatypes::DataType],
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::DataType> {
        self.inner.return_type(args)
    }
    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        self.inner.invoke_with_args(args)
    }
}
