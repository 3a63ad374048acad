//! The built-in rows of PostgreSQL 15's system catalogs: types, functions, operators, casts,
//! descriptions, the catalog's own relations and columns, built-in roles, settings and keywords,
//! dumped from a real cluster of the major Lakegate advertises by `scripts/pg-catalog-data`
//! into `pg_shape/pg15/*.jsonl`, and served as they are (pg::pg_shape adds Lakegate's own
//! objects beside them). A client that reads pg_type or joins pg_proc on `typreceive` gets what
//! PostgreSQL 15 answers, not another major's rows.
//!
//! Parsed on first use, once per process. Each column keeps its PostgreSQL type as field
//! metadata (`name`, `"char"`, `oid`, `regproc` ...), so RowDescription announces it as
//! PostgreSQL does.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::Value;

use super::types::PG_TYPE_KEY;

/// The dumped tables, by name.
const FILES: &[(&str, &str)] = &[
    (
        "pg_aggregate",
        include_str!("pg_shape/pg15/pg_aggregate.jsonl"),
    ),
    ("pg_am", include_str!("pg_shape/pg15/pg_am.jsonl")),
    ("pg_amop", include_str!("pg_shape/pg15/pg_amop.jsonl")),
    ("pg_amproc", include_str!("pg_shape/pg15/pg_amproc.jsonl")),
    (
        "pg_attribute",
        include_str!("pg_shape/pg15/pg_attribute.jsonl"),
    ),
    (
        "pg_auth_members",
        include_str!("pg_shape/pg15/pg_auth_members.jsonl"),
    ),
    ("pg_cast", include_str!("pg_shape/pg15/pg_cast.jsonl")),
    ("pg_class", include_str!("pg_shape/pg15/pg_class.jsonl")),
    (
        "pg_collation",
        include_str!("pg_shape/pg15/pg_collation.jsonl"),
    ),
    (
        "pg_conversion",
        include_str!("pg_shape/pg15/pg_conversion.jsonl"),
    ),
    (
        "pg_database",
        include_str!("pg_shape/pg15/pg_database.jsonl"),
    ),
    (
        "pg_description",
        include_str!("pg_shape/pg15/pg_description.jsonl"),
    ),
    (
        "pg_extension",
        include_str!("pg_shape/pg15/pg_extension.jsonl"),
    ),
    (
        "pg_get_keywords",
        include_str!("pg_shape/pg15/pg_get_keywords.jsonl"),
    ),
    (
        "pg_language",
        include_str!("pg_shape/pg15/pg_language.jsonl"),
    ),
    (
        "pg_namespace",
        include_str!("pg_shape/pg15/pg_namespace.jsonl"),
    ),
    ("pg_opclass", include_str!("pg_shape/pg15/pg_opclass.jsonl")),
    (
        "pg_operator",
        include_str!("pg_shape/pg15/pg_operator.jsonl"),
    ),
    (
        "pg_opfamily",
        include_str!("pg_shape/pg15/pg_opfamily.jsonl"),
    ),
    ("pg_proc", include_str!("pg_shape/pg15/pg_proc.jsonl")),
    ("pg_range", include_str!("pg_shape/pg15/pg_range.jsonl")),
    ("pg_roles", include_str!("pg_shape/pg15/pg_roles.jsonl")),
    (
        "pg_settings",
        include_str!("pg_shape/pg15/pg_settings.jsonl"),
    ),
    (
        "pg_shdescription",
        include_str!("pg_shape/pg15/pg_shdescription.jsonl"),
    ),
    (
        "pg_tablespace",
        include_str!("pg_shape/pg15/pg_tablespace.jsonl"),
    ),
    (
        "pg_ts_config",
        include_str!("pg_shape/pg15/pg_ts_config.jsonl"),
    ),
    (
        "pg_ts_config_map",
        include_str!("pg_shape/pg15/pg_ts_config_map.jsonl"),
    ),
    ("pg_ts_dict", include_str!("pg_shape/pg15/pg_ts_dict.jsonl")),
    (
        "pg_ts_parser",
        include_str!("pg_shape/pg15/pg_ts_parser.jsonl"),
    ),
    (
        "pg_ts_template",
        include_str!("pg_shape/pg15/pg_ts_template.jsonl"),
    ),
    ("pg_type", include_str!("pg_shape/pg15/pg_type.jsonl")),
    ("pg_views", include_str!("pg_shape/pg15/pg_views.jsonl")),
];

/// Tables whose rows are the built-in ones beside Lakegate's own objects (which pg::pg_shape
/// adds); every other dumped table is served as dumped.
pub const MIXED: &[&str] = &[
    "pg_type",
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_roles",
    "pg_database",
    "pg_settings",
    "pg_views",
    "pg_description",
];

/// One dumped table: its fields with their PostgreSQL types (metadata), and its rows (whose
/// schema carries no metadata: see pg_shape::column_pg_type).
#[derive(Debug)]
pub struct StaticTable {
    pub schema: SchemaRef,
    pub batch: RecordBatch,
}

/// The dumped rows of `name` (`pg_type`, `pg_get_keywords` ...), if it is one.
pub fn table(name: &str) -> Option<&'static StaticTable> {
    static TABLES: OnceLock<HashMap<&'static str, StaticTable>> = OnceLock::new();
    TABLES
        .get_or_init(|| {
            FILES
                .iter()
                .filter_map(|(name, text)| match parse(text) {
                    Ok(t) => Some((*name, t)),
                    Err(e) => {
                        // A dump that does not parse is a build defect; the table is left empty
                        // of rows rather than failing every catalog query.
                        tracing::error!(table = name, error = %e, "built-in catalog rows");
                        None
                    }
                })
                .collect()
        })
        .get(name)
}

/// The Arrow type a column of PostgreSQL type `pg` (a pg_type name, `_x` for arrays) is held
/// in, and the PostgreSQL type announced for it when that is not the Arrow type's own.
pub fn arrow_type(pg: &str) -> (DataType, Option<&'static str>) {
    if let Some(elem) = pg.strip_prefix('_') {
        let (inner, _) = arrow_type(elem);
        let announced = match elem {
            "aclitem" => Some("aclitem[]"),
            "oid" => Some("oid[]"),
            "char" => Some("char[]"),
            "name" => Some("name[]"),
            _ => None,
        };
        return (
            DataType::List(Arc::new(Field::new("item", inner, true))),
            announced,
        );
    }
    match pg {
        "bool" => (DataType::Boolean, None),
        "int2" => (DataType::Int16, None),
        "int4" => (DataType::Int32, None),
        "int8" => (DataType::Int64, None),
        "float4" => (DataType::Float32, None),
        "float8" | "numeric" => (DataType::Float64, None),
        "xid" => (DataType::Int64, Some("xid")),
        "oid" => (DataType::Int32, Some("oid")),
        "regproc" => (DataType::Int32, Some("regproc")),
        "regtype" | "regclass" | "regnamespace" | "regrole" | "regprocedure" | "regoper" => {
            (DataType::Int32, Some("oid"))
        }
        "int2vector" => (
            DataType::List(Arc::new(Field::new("item", DataType::Int16, true))),
            Some("int2vector"),
        ),
        "oidvector" => (
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            Some("oidvector"),
        ),
        "name" => (DataType::Utf8, Some("name")),
        "char" => (DataType::Utf8, Some("char")),
        "pg_node_tree" => (DataType::Utf8, Some("pg_node_tree")),
        "varchar" => (DataType::Utf8, Some("varchar")),
        _ => (DataType::Utf8, None),
    }
}

/// A field of PostgreSQL type `pg`, carrying it when the Arrow type does not say it.
pub fn field(name: &str, pg: &str) -> Field {
    let (dt, announced) = arrow_type(pg);
    let f = Field::new(name, dt, true);
    match announced {
        Some(t) => f.with_metadata(HashMap::from([(PG_TYPE_KEY.to_string(), t.to_string())])),
        None => f,
    }
}

fn parse(text: &str) -> Result<StaticTable, String> {
    let mut lines = text.lines();
    let header: Vec<(String, String)> =
        serde_json::from_str(lines.next().ok_or("empty dump")?).map_err(|e| e.to_string())?;
    let fields: Vec<Field> = header.iter().map(|(n, t)| field(n, t)).collect();
    let mut builders: Vec<Box<dyn ArrayBuilder>> =
        fields.iter().map(|f| builder(f.data_type())).collect();
    for line in lines {
        let row: Vec<Value> = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if row.len() != fields.len() {
            return Err(format!(
                "a row of {} values for {} columns",
                row.len(),
                fields.len()
            ));
        }
        for ((b, f), v) in builders.iter_mut().zip(&fields).zip(&row) {
            append(b.as_mut(), f.data_type(), v)?;
        }
    }
    let plain: Vec<Field> = fields
        .iter()
        .map(|f| f.clone().with_metadata(HashMap::new()))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let columns: Vec<ArrayRef> = builders.iter_mut().map(|b| b.finish()).collect();
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(plain)), columns).map_err(|e| e.to_string())?;
    Ok(StaticTable { schema, batch })
}

fn builder(dt: &DataType) -> Box<dyn ArrayBuilder> {
    match dt {
        DataType::Boolean => Box::new(BooleanBuilder::new()),
        DataType::Int16 => Box::new(Int16Builder::new()),
        DataType::Int32 => Box::new(Int32Builder::new()),
        DataType::Int64 => Box::new(Int64Builder::new()),
        DataType::Float32 => Box::new(Float32Builder::new()),
        DataType::Float64 => Box::new(Float64Builder::new()),
        DataType::List(f) => match f.data_type() {
            DataType::Int16 => Box::new(ListBuilder::new(Int16Builder::new())),
            DataType::Int32 => Box::new(ListBuilder::new(Int32Builder::new())),
            DataType::Int64 => Box::new(ListBuilder::new(Int64Builder::new())),
            DataType::Boolean => Box::new(ListBuilder::new(BooleanBuilder::new())),
            DataType::Float32 => Box::new(ListBuilder::new(Float32Builder::new())),
            DataType::Float64 => Box::new(ListBuilder::new(Float64Builder::new())),
            _ => Box::new(ListBuilder::new(StringBuilder::new())),
        },
        _ => Box::new(StringBuilder::new()),
    }
}

/// An integer given as a JSON number or (oids, xids) a numeric string.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn downcast<T: 'static>(b: &mut dyn ArrayBuilder) -> Result<&mut T, String> {
    b.as_any_mut()
        .downcast_mut::<T>()
        .ok_or_else(|| "builder of another type".to_string())
}

fn append(b: &mut dyn ArrayBuilder, dt: &DataType, v: &Value) -> Result<(), String> {
    let int_of = |v: &Value| int(v).filter(|_| !v.is_null());
    match dt {
        DataType::Boolean => downcast::<BooleanBuilder>(b)?.append_option(v.as_bool()),
        DataType::Int16 => downcast::<Int16Builder>(b)?
            .append_option(int_of(v).and_then(|i| i16::try_from(i).ok())),
        // Oids above 2^31 do not occur among built-in objects.
        DataType::Int32 => downcast::<Int32Builder>(b)?
            .append_option(int_of(v).and_then(|i| i32::try_from(i).ok())),
        DataType::Int64 => downcast::<Int64Builder>(b)?.append_option(int_of(v)),
        DataType::Float32 => {
            downcast::<Float32Builder>(b)?.append_option(float(v).map(|f| f as f32))
        }
        DataType::Float64 => downcast::<Float64Builder>(b)?.append_option(float(v)),
        DataType::List(f) => {
            let items = match v {
                Value::Array(items) => Some(items),
                _ => None,
            };
            macro_rules! list {
                ($inner:ty, $conv:expr) => {{
                    let lb = downcast::<ListBuilder<$inner>>(b)?;
                    match items {
                        Some(items) => {
                            for item in items {
                                lb.values().append_option($conv(item));
                            }
                            lb.append(true);
                        }
                        None => lb.append(false),
                    }
                }};
            }
            match f.data_type() {
                DataType::Int16 => {
                    list!(Int16Builder, |i: &Value| int(i)
                        .and_then(|x| i16::try_from(x).ok()))
                }
                DataType::Int32 => {
                    list!(Int32Builder, |i: &Value| int(i)
                        .and_then(|x| i32::try_from(x).ok()))
                }
                DataType::Int64 => list!(Int64Builder, int),
                DataType::Boolean => list!(BooleanBuilder, |i: &Value| i.as_bool()),
                DataType::Float32 => list!(Float32Builder, |i: &Value| float(i).map(|x| x as f32)),
                DataType::Float64 => list!(Float64Builder, float),
                _ => list!(StringBuilder, text),
            }
        }
        _ => downcast::<StringBuilder>(b)?.append_option(text(v)),
    }
    Ok(())
}

/// The oid of a built-in relation `schema.name` (pg_catalog and information_schema ones).
pub fn relation_oid(schema: &str, name: &str) -> Option<i32> {
    static OIDS: OnceLock<HashMap<(String, String), i32>> = OnceLock::new();
    OIDS.get_or_init(|| {
        let mut out = HashMap::new();
        let (Some(classes), Some(namespaces)) = (table("pg_class"), table("pg_namespace")) else {
            return out;
        };
        let spaces: HashMap<i32, String> = ints(namespaces, "oid")
            .into_iter()
            .zip(strings(namespaces, "nspname"))
            .filter_map(|(o, n)| Some((o?, n?)))
            .collect();
        for ((oid, name), ns) in ints(classes, "oid")
            .into_iter()
            .zip(strings(classes, "relname"))
            .zip(ints(classes, "relnamespace"))
        {
            if let (Some(oid), Some(name), Some(ns)) = (oid, name, ns)
                && let Some(schema) = spaces.get(&ns)
            {
                out.insert((schema.clone(), name), oid);
            }
        }
        out
    })
    .get(&(schema.to_string(), name.to_string()))
    .copied()
}

/// The oid of a built-in namespace (pg_catalog, pg_toast, information_schema).
pub fn namespace_oid(name: &str) -> Option<i32> {
    let t = table("pg_namespace")?;
    ints(t, "oid")
        .into_iter()
        .zip(strings(t, "nspname"))
        .find_map(|(o, n)| (n.as_deref() == Some(name)).then_some(o).flatten())
}

/// The values of an integer column of a dumped table.
pub fn ints(t: &StaticTable, column: &str) -> Vec<Option<i32>> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int32Type;
    let Some(c) = t.batch.column_by_name(column) else {
        return vec![];
    };
    let Some(c) = c.as_primitive_opt::<Int32Type>() else {
        return vec![];
    };
    (0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i)))
        .collect()
}

/// The values of a text column of a dumped table.
pub fn strings(t: &StaticTable, column: &str) -> Vec<Option<String>> {
    use datafusion::arrow::array::{Array, AsArray};
    let Some(c) = t.batch.column_by_name(column) else {
        return vec![];
    };
    let Some(c) = c.as_string_opt::<i32>() else {
        return vec![];
    };
    (0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i).to_string()))
        .collect()
}

/// The built-in roles' names by oid (pg_database_owner, pg_read_all_data ...).
pub fn role_names() -> &'static HashMap<i32, String> {
    static NAMES: OnceLock<HashMap<i32, String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        table("pg_roles")
            .map(|t| {
                ints(t, "oid")
                    .into_iter()
                    .zip(strings(t, "rolname"))
                    .filter_map(|(o, n)| Some((o?, n?)))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// pg_proc's name of a function oid (how `regproc` values are shown; 0 is `-`).
pub fn proc_name(oid: i32) -> Option<&'static str> {
    static NAMES: OnceLock<HashMap<i32, String>> = OnceLock::new();
    if oid == 0 {
        return Some("-");
    }
    NAMES
        .get_or_init(|| {
            table("pg_proc")
                .map(|t| {
                    ints(t, "oid")
                        .into_iter()
                        .zip(strings(t, "proname"))
                        .filter_map(|(o, n)| Some((o?, n?)))
                        .collect()
                })
                .unwrap_or_default()
        })
        .get(&oid)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dump_parses_with_its_header() {
        for (name, text) in FILES {
            let t = parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                t.batch.num_rows() > 0 || *name == "pg_auth_members",
                "{name} is empty"
            );
        }
        assert_eq!(relation_oid("pg_catalog", "pg_class"), Some(1259));
        assert_eq!(namespace_oid("pg_catalog"), Some(11));
        assert_eq!(proc_name(1242), Some("boolin"));
    }
}
