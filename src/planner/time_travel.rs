//! Time travel: `t VERSION AS OF 3`, `t TIMESTAMP AS OF '2026-01-01 10:00:00'` (also spelled
//! `FOR VERSION AS OF` / `FOR TIMESTAMP AS OF` / `FOR SYSTEM_TIME AS OF`), and a table's
//! history through `FROM table_history('schema.table')`.
//!
//! The parser gives table factors a version; this module rewrites each into a reference to a
//! hidden schema whose tables are named `schema.table@v3`, `schema.table@t<micros>` or
//! `schema.table@history`, which the catalog resolves (asynchronously) to a provider over that
//! version. Everything downstream (policies later) sees an ordinary table scan.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, Ident, ObjectName, ObjectNamePart, TableFactor,
    TableVersion, Value, VisitMut, VisitorMut,
};

use crate::catalog::versions::{At, SCHEMA};
use crate::error::{Error, Result};

fn hidden(schema: &str, table: &str, at: &At) -> ObjectName {
    let suffix = match at {
        At::Version(v) => format!("v{v}"),
        At::Timestamp(t) => format!("t{t}"),
        At::History => "history".into(),
    };
    ObjectName(vec![
        ObjectNamePart::Identifier(Ident::with_quote('"', SCHEMA)),
        ObjectNamePart::Identifier(Ident::with_quote('"', format!("{schema}.{table}@{suffix}"))),
    ])
}

struct Rewriter<'a> {
    current_schema: &'a str,
    database: &'a str,
    error: Option<Error>,
}

impl Rewriter<'_> {
    fn qualify(&self, name: &ObjectName) -> Result<(String, String)> {
        crate::pg::names::qualified(name, self.current_schema, self.database)
    }

    fn rewrite(&self, t: &mut TableFactor) -> Result<()> {
        let TableFactor::Table {
            name,
            version,
            args,
            ..
        } = t
        else {
            return Ok(());
        };
        if let Some(v) = version.take() {
            let (schema, table) = self.qualify(name)?;
            let at = match v {
                TableVersion::VersionAsOf(e) => At::Version(version_number(&e)?),
                TableVersion::TimestampAsOf(e) | TableVersion::ForSystemTimeAsOf(e) => {
                    At::Timestamp(timestamp_micros(&e)?)
                }
                TableVersion::Function(_) => {
                    return Err(Error::unsupported(
                        "AT/BEFORE table versions are not supported; use VERSION AS OF or TIMESTAMP AS OF",
                    ));
                }
            };
            *name = hidden(&schema, &table, &at);
            return Ok(());
        }
        let is_history = name.0.len() == 1
            && matches!(&name.0[0], ObjectNamePart::Identifier(i) if i.value.eq_ignore_ascii_case("table_history"));
        if is_history && let Some(a) = args.take() {
            let target = match a.args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))] => match &v.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            if target.is_empty() {
                return Err(Error::Syntax(
                    "table_history takes one argument: the table name as a string".into(),
                ));
            }
            let parsed = crate::pg::names::parse_object_name(&target)?;
            let (schema, table) = self.qualify(&parsed)?;
            *name = hidden(&schema, &table, &At::History);
        }
        Ok(())
    }
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        match self.rewrite(t) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

/// Rewrite the versioned table references of a statement (see the module doc).
pub fn rewrite(stmt: &mut ast::Statement, current_schema: &str, database: &str) -> Result<()> {
    let mut r = Rewriter {
        current_schema,
        database,
        error: None,
    };
    let _ = stmt.visit(&mut r);
    match r.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn version_number(e: &Expr) -> Result<i64> {
    let bad = || Error::InvalidParameter(format!("VERSION AS OF needs a version number, not {e}"));
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(bad),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

fn timestamp_micros(e: &Expr) -> Result<i64> {
    let text = match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.clone(),
            _ => String::new(),
        },
        Expr::TypedString(ts) => match &ts.value.value {
            Value::SingleQuotedString(s) => s.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    parse_timestamp(&text).ok_or_else(|| {
        Error::InvalidParameter(format!(
            "TIMESTAMP AS OF needs a timestamp literal such as '2026-01-01 10:00:00', not {e}"
        ))
    })
}

/// A timestamp literal (UTC unless it names an offset) as microseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%#z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, f) {
            return Some(t.timestamp_micros());
        }
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Some(1_000_000));
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_timestamp("1970-01-01 01:00:00+01"), Some(0));
        assert_eq!(parse_timestamp("soon"), None);
    }
}
