//! Names as PostgreSQL spells them: identifiers (unquoted fold to lower case), qualified names,
//! and the column names it gives unnamed SELECT expressions.

use datafusion::sql::sqlparser::ast::{self, Expr, ObjectName, ObjectNamePart};

use crate::error::{Error, Result};

/// An identifier's value: unquoted ones fold to lower case.
pub fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// Split `[db.]schema.name` (or `name`) into (schema, name); `db` must be ours.
pub fn qualified(
    name: &ObjectName,
    current_schema: &str,
    database: &str,
) -> Result<(String, String)> {
    let parts = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(ident(i)),
            other => Err(Error::Syntax(format!("unexpected name part {other}"))),
        })
        .collect::<Result<Vec<_>>>()?;
    match parts.as_slice() {
        [t] => Ok((current_schema.to_string(), t.clone())),
        [s, t] => Ok((s.clone(), t.clone())),
        [d, s, t] if d == database => Ok((s.clone(), t.clone())),
        [d, _, _] => Err(Error::unsupported(format!(
            "cross-database references are not implemented: \"{d}\""
        ))),
        _ => Err(Error::Syntax(format!(
            "improper qualified name (too many dotted names): {name}"
        ))),
    }
}

/// The parts of a name as identifiers (unquoted ones lower-cased).
pub fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(ident(i)),
            _ => None,
        })
        .collect()
}

/// The last part of a name (`t.col` → `col`), as an identifier.
pub fn last_ident(name: &ObjectName) -> Result<String> {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => Ok(ident(i)),
        _ => Err(Error::Syntax(format!("invalid name {name}"))),
    }
}

/// Parse a (possibly qualified, possibly quoted) name given as a string, e.g. `'demo.orders'`.
pub fn parse_object_name(s: &str) -> Result<ObjectName> {
    let dialect = super::dialect::LakegateDialect::default();
    Ok(datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(s)?
        .parse_object_name(false)?)
}

/// The column name PostgreSQL gives an unnamed select-list expression, when it differs from
/// DataFusion's. `None` keeps DataFusion's name (plain column references).
pub fn pg_column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => None,
        Expr::Function(f) => f.name.0.last().map(|p| match p {
            ObjectNamePart::Identifier(i) => ident(i),
            other => other.to_string(),
        }),
        Expr::Cast {
            expr, data_type, ..
        } => match expr.as_ref() {
            Expr::Identifier(i) => Some(ident(i)),
            Expr::CompoundIdentifier(parts) => parts.last().map(ident),
            Expr::Function(_) | Expr::Cast { .. } | Expr::Nested(_) => pg_column_name(expr),
            _ => Some(type_column_name(data_type)),
        },
        Expr::Nested(inner) => pg_column_name(inner),
        // `(record).field` is named by the field, `a[1]` by the array.
        Expr::CompoundFieldAccess { root, access_chain } => match access_chain.last() {
            Some(ast::AccessExpr::Dot(Expr::Identifier(i))) => Some(ident(i)),
            Some(ast::AccessExpr::Dot(Expr::Value(v))) => match &v.value {
                ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
                    Some(s.clone())
                }
                _ => Some("?column?".into()),
            },
            _ => match root.as_ref() {
                Expr::Identifier(i) => Some(ident(i)),
                Expr::CompoundIdentifier(parts) => parts.last().map(ident),
                other => pg_column_name(other),
            },
        },
        Expr::Case { .. } => Some("case".into()),
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Array(_) => Some("array".into()),
        Expr::Extract { .. } => Some("extract".into()),
        Expr::Substring { .. } => Some("substring".into()),
        Expr::Trim { .. } => Some("btrim".into()),
        Expr::Position { .. } => Some("position".into()),
        Expr::Ceil { .. } => Some("ceil".into()),
        Expr::Floor { .. } => Some("floor".into()),
        Expr::TypedString(ts) => Some(type_column_name(&ts.data_type)),
        _ => Some("?column?".into()),
    }
}

fn type_column_name(t: &ast::DataType) -> String {
    use ast::DataType as S;
    match t {
        S::Int(_) | S::Integer(_) | S::Int4(_) => "int4".into(),
        S::BigInt(_) | S::Int8(_) => "int8".into(),
        S::SmallInt(_) | S::Int2(_) => "int2".into(),
        S::Text => "text".into(),
        S::Varchar(_) | S::CharacterVarying(_) | S::CharVarying(_) => "varchar".into(),
        S::Char(_) | S::Character(_) => "bpchar".into(),
        S::Bool | S::Boolean => "bool".into(),
        S::Real | S::Float4 => "float4".into(),
        S::Double(_) | S::DoublePrecision | S::Float8 => "float8".into(),
        S::Numeric(_) | S::Decimal(_) => "numeric".into(),
        S::Date => "date".into(),
        S::Timestamp(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => {
            "timestamptz".into()
        }
        S::Timestamp(..) => "timestamp".into(),
        S::Time(..) => "time".into(),
        S::Interval { .. } => "interval".into(),
        S::Uuid => "uuid".into(),
        S::JSON => "json".into(),
        S::JSONB => "jsonb".into(),
        S::Bytea => "bytea".into(),
        other => other.to_string().to_lowercase(),
    }
}

/// An identifier quoted for SQL text.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn name_of(sql: &str) -> Option<String> {
        let e = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .ok()?
            .parse_expr()
            .ok()?;
        pg_column_name(&e)
    }

    #[test]
    fn names_follow_postgres() {
        assert_eq!(name_of("count(*)").as_deref(), Some("count"));
        assert_eq!(name_of("1 + 1").as_deref(), Some("?column?"));
        assert_eq!(name_of("'1'::int").as_deref(), Some("int4"));
        assert_eq!(name_of("x::text").as_deref(), Some("x"));
        assert_eq!(name_of("x"), None);
        assert_eq!(name_of("(f(a)).n").as_deref(), Some("n"));
        assert_eq!(name_of("a[1]").as_deref(), Some("a"));
    }
}

/// Qualify the bare table names of `query` that name a relation of `schema` (`exists`) with
/// that schema, leaving the names of its CTEs and table functions alone: a view's definition is
/// bound to what its names meant when it was created (as PostgreSQL stores it), never to the
/// search_path of whoever reads it later.
pub fn qualify_relations(query: &mut ast::Query, schema: &str, exists: &dyn Fn(&str) -> bool) {
    use datafusion::sql::sqlparser::ast::{Visit, VisitMut, Visitor, VisitorMut};
    use std::ops::ControlFlow;

    struct Ctes(std::collections::HashSet<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<()> {
            if let Some(with) = &q.with {
                for cte in &with.cte_tables {
                    self.0.insert(ident(&cte.alias.name));
                }
            }
            ControlFlow::Continue(())
        }
    }
    struct Qualify<'a> {
        ctes: std::collections::HashSet<String>,
        schema: &'a str,
        exists: &'a dyn Fn(&str) -> bool,
    }
    impl VisitorMut for Qualify<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, t: &mut ast::TableFactor) -> ControlFlow<()> {
            if let ast::TableFactor::Table {
                name, args: None, ..
            } = t
                && let [ObjectNamePart::Identifier(i)] = name.0.as_slice()
            {
                let bare = ident(i);
                if !self.ctes.contains(&bare) && (self.exists)(&bare) {
                    name.0.insert(
                        0,
                        ObjectNamePart::Identifier(ast::Ident::with_quote('"', self.schema)),
                    );
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(Default::default());
    let _ = Visit::visit(&*query, &mut ctes);
    let _ = VisitMut::visit(
        query,
        &mut Qualify {
            ctes: ctes.0,
            schema,
            exists,
        },
    );
}

#[cfg(test)]
mod qualify_tests {
    use super::*;

    fn query(sql: &str) -> ast::Query {
        let dialect = super::super::dialect::LakegateDialect::default();
        let mut p = datafusion::sql::sqlparser::parser::Parser::new(&dialect)
            .try_with_sql(sql)
            .expect("sql");
        *p.parse_query().expect("query")
    }

    #[test]
    fn bare_names_of_the_schema_are_qualified_ctes_and_functions_not() {
        let mut q = query(
            "WITH c AS (SELECT * FROM emp) SELECT * FROM c JOIN dept ON true \
             JOIN other.x ON true, generate_series(1, 3) WHERE id IN (SELECT id FROM emp)",
        );
        qualify_relations(&mut q, "hr", &|t| matches!(t, "emp" | "dept" | "c"));
        let text = q.to_string();
        assert!(text.contains("FROM \"hr\".emp"), "{text}");
        assert!(text.contains("JOIN \"hr\".dept"), "{text}");
        assert!(text.contains("FROM c JOIN"), "{text}");
        assert!(text.contains("other.x"), "{text}");
        assert!(text.contains("generate_series(1, 3)"), "{text}");
        assert!(!text.contains("\"hr\".c"), "{text}");
    }
}
