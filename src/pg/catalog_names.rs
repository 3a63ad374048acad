//! `format_type(oid, typmod)` and `regproc`: PostgreSQL's names of types and functions, from
//! datafusion-pg-catalog's static pg_type and pg_proc.

use crate::pg::functions::pg_function;
use std::sync::OnceLock;

/// `format_type(type_oid, typmod)`: a type's name as PostgreSQL's catalogs show it (`integer`,
/// `character varying(12)`, `numeric(10,2)`, `timestamp(3) with time zone`, `text[]`,
/// `information_schema.character_data`), from the built-in pg_type; `???` for an unknown oid.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct FormatType {
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

pg_function!(
    FormatType,
    "format_type",
    datafusion::arrow::datatypes::DataType::Utf8
);

impl FormatType {
    fn invoke(
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

/// `lakegate_regproc(name)`: the oid of the built-in function of that name (`array_in`,
/// `pg_catalog.array_in`), NULL when there is none.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct RegProc {
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

pg_function!(
    RegProc,
    "lakegate_regproc",
    datafusion::arrow::datatypes::DataType::Int32
);

impl RegProc {
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
