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
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};

use super::catalog_functions::{ExpandArrayRewrite, FunctionColumnNames, RegclassOfText};

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

pub(super) fn call_expr(
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
