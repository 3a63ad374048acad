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
/// PostgreSQL's shape (planner::pg_shape).
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
    use datafusion_pg_catalog::pg_catalog::{
        format_type, has_privilege_udf, pg_get_expr_udf, quote_ident_udf,
    };
    ctx.register_udf(pg::create_current_schemas_udf());
    // Table privileges are the policies' (planner::functions); these are always held.
    for name in ["has_schema_privilege", "has_database_privilege"] {
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
            Box::new(r::RewriteRegclassCastToSubquery::new()),
            Box::new(RegtypeAsName),
            Box::new(r::RemoveUnsupportedTypes::new()),
            Box::new(r::FixArrayLiteral),
            Box::new(r::FixCollate),
            Box::new(SubscriptsAndEscapes),
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
    match compat.parse(sql) {
        Ok(theirs) if theirs.len() == ours.len() => {
            use datafusion_pg_catalog::sql::rules::SqlStatementRewriteRule;
            // Their rules can leave two NULL columns behind (removed subqueries): name them.
            let theirs: Vec<S> = theirs
                .into_iter()
                // Their parser applied their rules, not ours: ours that they lack, then the
                // catalog-only ones.
                .map(|s| S::Statement(Box::new(catalog_only(SubscriptsAndEscapes.rewrite(s)))))
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
/// identity and collation inside CASE) read pg_attrdef, pg_sequence and pg_collation rows
/// Lakegate never has for its columns: they answer NULL, as they would in PostgreSQL.
fn null_nested_subqueries(items: &mut [datafusion::sql::sqlparser::ast::SelectItem]) {
    use datafusion::sql::sqlparser::ast::{Expr, Value, visit_expressions_mut};
    for item in items {
        let _ = visit_expressions_mut(item, |e: &mut Expr| {
            if matches!(e, Expr::Subquery(_)) {
                *e = Expr::Value(Value::Null.with_empty_span());
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
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
/// ...)` empty, duplicate output names made distinct, and in each select of its top-level query
/// (union branches too) nested subqueries NULL and repeated unnamed items named.
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
                null_nested_subqueries(&mut sel.projection);
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

/// (oid, typname, typarray) of every type in the static pg_type.
fn static_types() -> Option<Vec<(i32, String, i32)>> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int32Type;
    let tables = static_tables().ok()?;
    let mut out = vec![];
    for b in tables.pg_type.data() {
        let oid = b.column_by_name("oid")?.as_primitive_opt::<Int32Type>()?;
        let name = b.column_by_name("typname")?.as_string_opt::<i32>()?;
        let array = b
            .column_by_name("typarray")?
            .as_primitive_opt::<Int32Type>()?;
        for i in 0..b.num_rows() {
            if oid.is_valid(i) && name.is_valid(i) {
                let array = if array.is_valid(i) { array.value(i) } else { 0 };
                out.push((oid.value(i), name.value(i).to_string(), array));
            }
        }
    }
    Some(out)
}

fn build_signatures() -> Option<Signatures> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int32Type;
    let tables = static_tables().ok()?;
    let types: std::collections::HashMap<i32, String> = static_types()?
        .into_iter()
        .map(|(oid, name, _)| (oid, sql_type_name(&name)))
        .collect();
    let name_of = |oid: &str| -> String {
        oid.trim()
            .parse::<i32>()
            .ok()
            .and_then(|o| types.get(&o).cloned())
            .unwrap_or_else(|| oid.trim().to_string())
    };
    let mut out = Signatures::new();
    for b in tables.pg_proc.data() {
        let oid = b.column_by_name("oid")?.as_primitive_opt::<Int32Type>()?;
        let ret = b
            .column_by_name("prorettype")?
            .as_primitive_opt::<Int32Type>()?;
        let args = b.column_by_name("proargtypes")?.as_string_opt::<i32>()?;
        let set = b.column_by_name("proretset")?.as_boolean_opt()?;
        for i in 0..b.num_rows() {
            if !oid.is_valid(i) {
                continue;
            }
            let mut result = name_of(&ret.value(i).to_string());
            if set.is_valid(i) && set.value(i) {
                result = format!("SETOF {result}");
            }
            let list = if args.is_valid(i) {
                args.value(i)
                    .split_whitespace()
                    .map(name_of)
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                String::new()
            };
            out.insert(i64::from(oid.value(i)), (result, list));
        }
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
