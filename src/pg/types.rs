//! PostgreSQL type names to Arrow types, for CREATE TABLE columns and for casts in queries.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::sql::sqlparser::ast::{self, ArrayElemTypeDef, ExactNumberInfo, TimezoneInfo};

use crate::error::{Error, Result, SqlState};

/// The zone name Lakegate stores `timestamptz` values in (Delta's `timestamp` is UTC).
pub const UTC: &str = "UTC";

/// Types where PostgreSQL and DataFusion differ; `None` lets DataFusion decide.
pub fn extra_sql_type(t: &ast::DataType) -> Option<DataType> {
    use ast::DataType as S;
    match t {
        // PostgreSQL keeps microseconds; so do we (and Delta Lake).
        S::Timestamp(_, tz) => Some(timestamp(tz)),
        S::Time(_, _) => Some(DataType::Time64(TimeUnit::Microsecond)),
        // No native Arrow/Delta type: kept as text.
        S::Uuid | S::JSON | S::JSONB => Some(DataType::Utf8),
        S::Regclass => Some(DataType::Int32),
        S::Custom(name, _) => match name.to_string().to_ascii_lowercase().as_str() {
            "name" | "citext" | "bpchar" | "pg_catalog.text" => Some(DataType::Utf8),
            "timestamptz" => Some(DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))),
            // Object identifiers and their reg* aliases are plain oids here (drivers cast
            // pg_catalog columns to them and back).
            "oid"
            | "regclass"
            | "regtype"
            | "regproc"
            | "regprocedure"
            | "regnamespace"
            | "regrole"
            | "regoper"
            | "regoperator"
            | "regconfig"
            | "pg_catalog.oid"
            | "pg_catalog.regclass"
            | "pg_catalog.regtype"
            | "pg_catalog.regproc"
            | "pg_catalog.regnamespace"
            | "pg_catalog.regrole" => Some(DataType::Int32),
            _ => None,
        },
        _ => None,
    }
}

fn timestamp(tz: &TimezoneInfo) -> DataType {
    match tz {
        TimezoneInfo::WithTimeZone | TimezoneInfo::Tz => {
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
        }
        TimezoneInfo::None | TimezoneInfo::WithoutTimeZone => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
    }
}

/// The Arrow type a table column of this PostgreSQL type is stored as.
pub fn column_type(t: &ast::DataType) -> Result<DataType> {
    use ast::DataType as S;
    let dt = match t {
        S::SmallInt(_) | S::Int2(_) => DataType::Int16,
        S::Int(_) | S::Integer(_) | S::Int4(_) => DataType::Int32,
        S::BigInt(_) | S::Int8(_) => DataType::Int64,
        S::Real | S::Float4 => DataType::Float32,
        S::Double(_) | S::DoublePrecision | S::Float8 => DataType::Float64,
        S::Float(info) => match info {
            ExactNumberInfo::Precision(p) if *p <= 24 => DataType::Float32,
            _ => DataType::Float64,
        },
        S::Numeric(info) | S::Decimal(info) | S::Dec(info) => numeric(info)?,
        S::Bool | S::Boolean => DataType::Boolean,
        S::Text
        | S::Varchar(_)
        | S::CharVarying(_)
        | S::CharacterVarying(_)
        | S::Char(_)
        | S::Character(_)
        | S::String(_)
        | S::Uuid
        | S::JSON
        | S::JSONB => DataType::Utf8,
        S::Bytea => DataType::Binary,
        S::Date => DataType::Date32,
        S::Timestamp(_, tz) => timestamp(tz),
        S::Array(ArrayElemTypeDef::SquareBracket(inner, _))
        | S::Array(ArrayElemTypeDef::AngleBracket(inner))
        | S::Array(ArrayElemTypeDef::Parenthesis(inner)) => {
            DataType::List(Arc::new(Field::new("element", column_type(inner)?, true)))
        }
        S::Custom(name, _)
            if [
                "serial",
                "bigserial",
                "smallserial",
                "serial4",
                "serial8",
                "serial2",
            ]
            .contains(&name.to_string().to_ascii_lowercase().as_str()) =>
        {
            return Err(Error::unsupported(format!(
                "{name} columns need sequences, which Lakegate does not have yet; declare the column BIGINT and supply the values"
            )));
        }
        S::Custom(..) => match extra_sql_type(t) {
            Some(dt) => dt,
            None => {
                return Err(Error::UndefinedObject(format!(
                    "type \"{t}\" does not exist"
                )));
            }
        },
        // Iceberg stores TIME; Delta refuses it when the table is created.
        S::Time(_, ast::TimezoneInfo::None | ast::TimezoneInfo::WithoutTimeZone) => {
            DataType::Time64(datafusion::arrow::datatypes::TimeUnit::Microsecond)
        }
        S::Time(..) | S::Interval { .. } => {
            return Err(Error::unsupported(format!(
                "columns of type {t} cannot be stored in a lakehouse table; store it as TEXT or BIGINT"
            )));
        }
        other => {
            return Err(Error::unsupported(format!(
                "column type {other} is not supported"
            )));
        }
    };
    Ok(dt)
}

fn numeric(info: &ExactNumberInfo) -> Result<DataType> {
    let (p, s) = match info {
        ExactNumberInfo::None => (38, 10),
        ExactNumberInfo::Precision(p) => (*p, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
    };
    if p == 0 || p > 38 {
        return Err(Error::unsupported(format!(
            "NUMERIC precision {p} is outside 1..38"
        )));
    }
    if s < 0 || s as u64 > p {
        return Err(Error::data(
            SqlState::InvalidParameterValue,
            format!("NUMERIC scale {s} must be between 0 and precision {p}"),
        ));
    }
    Ok(DataType::Decimal128(p as u8, s as i8))
}

pub use crate::storage::PG_TYPE_KEY;

/// The [`PG_TYPE_KEY`] of a column declared `numeric` without precision and scale.
const UNCONSTRAINED_NUMERIC: &str = "numeric";

/// Whether a field is a column declared `numeric` without precision and scale.
pub fn unconstrained_numeric(f: &Field) -> bool {
    f.metadata().get(PG_TYPE_KEY).map(String::as_str) == Some(UNCONSTRAINED_NUMERIC)
}

/// The PostgreSQL types Lakegate stores as text but reports as themselves.
pub fn text_pg_type(t: &ast::DataType) -> Option<&'static str> {
    use ast::DataType as S;
    match t {
        S::Uuid => Some("uuid"),
        S::JSON => Some("json"),
        S::JSONB => Some("jsonb"),
        S::Varchar(_) | S::CharVarying(_) | S::CharacterVarying(_) => Some("varchar"),
        S::Char(_) | S::Character(_) => Some("bpchar"),
        _ => None,
    }
}

/// The PostgreSQL type a column definition keeps in its metadata: the text type's name, with
/// the declared length for `varchar(n)` / `char(n)` (so that it is enforced on INSERT).
pub fn declared_pg_type(t: &ast::DataType) -> Option<String> {
    use ast::DataType as S;
    // An unconstrained numeric (stored with 38 digits, 10 after the point) reports as such.
    if let S::Numeric(ExactNumberInfo::None)
    | S::Decimal(ExactNumberInfo::None)
    | S::Dec(ExactNumberInfo::None) = t
    {
        return Some(UNCONSTRAINED_NUMERIC.to_string());
    }
    let base = text_pg_type(t)?;
    let length = match t {
        S::Varchar(l) | S::CharVarying(l) | S::CharacterVarying(l) => l.as_ref(),
        S::Char(l) | S::Character(l) => l.as_ref(),
        _ => None,
    };
    Some(match length {
        Some(ast::CharacterLength::IntegerLength { length, .. }) => format!("{base}({length})"),
        _ if base == "bpchar" => format!("{base}(1)"),
        _ => base.to_string(),
    })
}

/// A field's PostgreSQL type override, if it carries one on a text type (without a length).
pub fn field_pg_type(f: &Field) -> Option<&str> {
    match f.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => f
            .metadata()
            .get(PG_TYPE_KEY)
            .map(|s| s.split('(').next().unwrap_or(s)),
        _ => None,
    }
}

/// Parameters written `$n::oid` / `$n::oid[]` (and the reg* aliases): their fields say so, so the
/// wire describes them as oid, not integer (asyncpg's introspection must not need itself).
pub fn mark_oid_params(stmt: &datafusion::sql::parser::Statement, params: &mut [Field]) {
    use datafusion::sql::parser::Statement as S;
    let S::Statement(s) = stmt else { return };
    // (`$n::regclass` is a relation's name given as text: pg_catalog::RegclassOfText.)
    fn oid_name(t: &ast::DataType) -> bool {
        match t {
            ast::DataType::Custom(n, _) => matches!(
                n.to_string()
                    .to_ascii_lowercase()
                    .trim_start_matches("pg_catalog."),
                "oid" | "regtype" | "regproc" | "regnamespace" | "regrole"
            ),
            _ => false,
        }
    }
    let _ = ast::visit_expressions(s.as_ref(), |e: &ast::Expr| {
        if let ast::Expr::Cast {
            expr, data_type, ..
        } = e
            && let ast::Expr::Value(v) = expr.as_ref()
            && let ast::Value::Placeholder(p) = &v.value
            && let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
            && let Some(field) = n.checked_sub(1).and_then(|i| params.get_mut(i))
        {
            let mark = match data_type {
                ast::DataType::Array(ast::ArrayElemTypeDef::SquareBracket(t, _))
                | ast::DataType::Array(ast::ArrayElemTypeDef::AngleBracket(t))
                    if oid_name(t) =>
                {
                    Some("oid[]")
                }
                t if oid_name(t) => Some("oid"),
                _ => None,
            };
            if let Some(mark) = mark {
                let mut md = field.metadata().clone();
                md.insert(PG_TYPE_KEY.to_string(), mark.to_string());
                *field = field.clone().with_metadata(md);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// The declared length of a `varchar(n)` / `char(n)` field, and its PostgreSQL type name.
pub fn field_max_length(f: &Field) -> Option<(usize, &'static str)> {
    let t = f.metadata().get(PG_TYPE_KEY)?;
    let (base, rest) = t.split_once('(')?;
    let n = rest.trim_end_matches(')').parse().ok()?;
    let name = match base {
        "varchar" => "character varying",
        "bpchar" => "character",
        _ => return None,
    };
    Some((n, name))
}

/// The PostgreSQL type of a (canonical) Arrow type (the wire's RowDescription and pg_attribute
/// agree through this).
pub fn pg_type(dt: &DataType) -> pgwire::api::Type {
    use DataType as D;
    use pgwire::api::Type;
    match super::pg_text::canonical(dt) {
        D::Boolean => Type::BOOL,
        D::Int16 => Type::INT2,
        D::Int32 => Type::INT4,
        D::Int64 => Type::INT8,
        D::Decimal128(..) => Type::NUMERIC,
        D::Float32 => Type::FLOAT4,
        D::Float64 => Type::FLOAT8,
        D::Utf8 | D::Null => Type::TEXT,
        D::Binary => Type::BYTEA,
        D::Date32 => Type::DATE,
        D::Time64(_) => Type::TIME,
        D::Timestamp(_, None) => Type::TIMESTAMP,
        D::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        D::Interval(_) | D::Duration(_) => Type::INTERVAL,
        D::List(f) => match pg_type(f.data_type()) {
            Type::BOOL => Type::BOOL_ARRAY,
            Type::INT2 => Type::INT2_ARRAY,
            Type::INT4 => Type::INT4_ARRAY,
            Type::INT8 => Type::INT8_ARRAY,
            Type::NUMERIC => Type::NUMERIC_ARRAY,
            Type::FLOAT4 => Type::FLOAT4_ARRAY,
            Type::FLOAT8 => Type::FLOAT8_ARRAY,
            Type::BYTEA => Type::BYTEA_ARRAY,
            Type::DATE => Type::DATE_ARRAY,
            Type::TIME => Type::TIME_ARRAY,
            Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
            Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
            Type::INTERVAL => Type::INTERVAL_ARRAY,
            _ => Type::TEXT_ARRAY,
        },
        _ => Type::TEXT,
    }
}

/// The PostgreSQL type of a result field: its type override (uuid, json ...) or its Arrow type's.
pub fn pg_type_of(field: &Field) -> pgwire::api::Type {
    use pgwire::api::Type;
    // Object identifiers are stored as integers; a parameter cast to oid says so.
    // Catalog columns (pg::pg_static) and parameters cast to oid say what they are.
    match (
        field.metadata().get(PG_TYPE_KEY).map(String::as_str),
        field.data_type(),
    ) {
        (Some("oid"), DataType::Int32 | DataType::Int64) => return Type::OID,
        (Some("regproc"), DataType::Int32 | DataType::Int64) => return Type::REGPROC,
        (Some("xid"), DataType::Int32 | DataType::Int64) => return Type::XID,
        (Some("oid[]"), DataType::List(_)) => return Type::OID_ARRAY,
        (Some("int2vector"), DataType::List(_)) => return Type::INT2_VECTOR,
        (Some("oidvector"), DataType::List(_)) => return Type::OID_VECTOR,
        (Some("aclitem[]"), DataType::List(_)) => return Type::ACLITEM_ARRAY,
        (Some("char[]"), DataType::List(_)) => return Type::CHAR_ARRAY,
        (Some("name[]"), DataType::List(_)) => return Type::NAME_ARRAY,
        _ => {}
    }
    match crate::pg::types::field_pg_type(field) {
        Some("uuid") => Type::UUID,
        Some("json") => Type::JSON,
        Some("jsonb") => Type::JSONB,
        Some("varchar") => Type::VARCHAR,
        Some("bpchar") => Type::BPCHAR,
        Some("name") => Type::NAME,
        Some("char") => Type::CHAR,
        Some("pg_node_tree") => Type::PG_NODE_TREE,
        _ => pg_type(field.data_type()),
    }
}

/// Field metadata keys.
pub const TABLE_OID: &str = "lakegate.table_oid";
/// Set on the fields of a table's own schema (pg_attribute's rows), where every numeric has
/// its declared precision.
const STORED: &str = "lakegate.stored";

/// PostgreSQL's type modifier of a column: `(precision << 16 | scale) + 4` for numeric,
/// `length + 4` for varchar/char, else -1.
pub fn type_modifier(f: &Field) -> i32 {
    match f.data_type() {
        // A computed numeric (`sum(price)`) is unconstrained in PostgreSQL; a column's is not.
        DataType::Decimal128(..) | DataType::Decimal256(..)
            if (!f.metadata().contains_key(TABLE_OID) && !f.metadata().contains_key(STORED))
                || unconstrained_numeric(f) =>
        {
            -1
        }
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            ((i32::from(*p) << 16) | i32::from(*s as u8)) + 4
        }
        _ => field_max_length(f)
            .and_then(|(n, _)| i32::try_from(n).ok())
            .map_or(-1, |n| n + 4),
    }
}

/// The type modifier of a table's own column (pg_attribute.atttypmod).
pub fn column_type_modifier(f: &Field) -> i32 {
    let mut meta = f.metadata().clone();
    meta.insert(STORED.into(), String::new());
    type_modifier(&f.clone().with_metadata(meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn ty(s: &str) -> Result<DataType> {
        let sql = format!("CREATE TABLE t (c {s})");
        let stmts = Parser::parse_sql(&PostgreSqlDialect {}, &sql).map_err(Error::from)?;
        match &stmts[0] {
            ast::Statement::CreateTable(ct) => column_type(&ct.columns[0].data_type),
            _ => Err(Error::internal("not a create table")),
        }
    }

    #[test]
    fn postgres_types_map_to_arrow() -> Result<()> {
        assert_eq!(ty("BIGINT")?, DataType::Int64);
        assert_eq!(ty("INTEGER")?, DataType::Int32);
        assert_eq!(ty("SMALLINT")?, DataType::Int16);
        assert_eq!(ty("DOUBLE PRECISION")?, DataType::Float64);
        assert_eq!(ty("REAL")?, DataType::Float32);
        assert_eq!(ty("NUMERIC(10,2)")?, DataType::Decimal128(10, 2));
        assert_eq!(ty("VARCHAR(20)")?, DataType::Utf8);
        assert_eq!(
            ty("TIMESTAMP")?,
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(
            ty("TIMESTAMPTZ")?,
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
        );
        assert_eq!(
            ty("TIMESTAMP WITH TIME ZONE")?,
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
        );
        assert_eq!(ty("BYTEA")?, DataType::Binary);
        assert_eq!(ty("UUID")?, DataType::Utf8);
        assert!(matches!(ty("INTEGER[]")?, DataType::List(_)));
        assert_eq!(
            ty("INTERVAL").map_err(|e| e.state()).err(),
            Some(SqlState::FeatureNotSupported)
        );
        Ok(())
    }
}
