//! The PostgreSQL catalog functions drivers and BI tools call (`format_type`,
//! `pg_get_function_result`, `to_regtype`, `obj_description`, `_pg_expandarray`, `regproc`,
//! `pg_get_keywords` ...), answered from datafusion-pg-catalog's static tables, with the query
//! rewrites they need; registered per session by [`register_functions`].

use crate::pg::functions::pg_function;
use std::sync::{Arc, OnceLock};

use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog as pg;

use super::catalog_names::{FormatType, RegProc};
use super::pg_catalog::call_expr;
use crate::error::Result;

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

pg_function!(FunctionSignature, name: |f| f.name, datafusion::arrow::datatypes::DataType::Utf8);

impl FunctionSignature {
    fn invoke(
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

pg_function!(
    ToRegtype,
    "to_regtype",
    datafusion::arrow::datatypes::DataType::Int32
);

impl ToRegtype {
    fn invoke(
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
pub(super) struct ExpandArrayRewrite;

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

pg_function!(ExpandArray, "lakegate_expandarray", returns: |_f, args| expanded_type(
    args.first()
        .unwrap_or(&datafusion::arrow::datatypes::DataType::Null),
));

impl ExpandArray {
    fn invoke(
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

pg_function!(Description, name: |f| match f.kind {
            DescriptionKind::Object => "obj_description",
            DescriptionKind::Column => "col_description",
            DescriptionKind::Shared => "shobj_description",
        }, datafusion::arrow::datatypes::DataType::Utf8);

impl Description {
    fn invoke(
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
pub(super) struct RegclassOfText;

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

pg_function!(
    GetExpr,
    "pg_get_expr",
    datafusion::arrow::datatypes::DataType::Utf8
);

impl GetExpr {
    fn invoke(
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

/// A set-returning function of one column in FROM names its column as PostgreSQL does: after the
/// function (`SELECT * FROM unnest(a)` has a column `unnest`), or after the table alias when the
/// alias has no column list (`generate_series(1, 3) AS g` has a column `g`).
#[derive(Debug)]
pub(super) struct FunctionColumnNames;

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
