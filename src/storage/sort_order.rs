//! A table's sort order: the columns every write sorts its rows by before they reach the
//! Parquet writer (`CREATE TABLE ... WITH (sort_order = 'l_shipdate')`, `ALTER TABLE ... SET
//! (sort_order = '...')`). Rows written together then sit together in files and row groups,
//! so the min/max statistics of a filtered scan skip most of them: TPC-H q6 (one year of
//! `l_shipdate`) reads a seventh of `lineitem`. It orders each write, not the table: rows
//! appended later form files of their own, and the table is never read as sorted.
//!
//! Kept in the Delta table's own configuration under [`KEY`], as text in ORDER BY syntax
//! (`"l_shipdate" ASC NULLS LAST`), so it travels with the table; other engines ignore a key
//! outside `delta.*`.

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::Schema;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexRequirement, PhysicalSortRequirement};
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{Error, Result};

/// The Delta configuration key (and, after `lakegate.`, the CREATE/ALTER TABLE option name).
pub const KEY: &str = "lakegate.sort_order";
/// The option name of `WITH (...)` / `SET (...)`.
pub const OPTION: &str = "sort_order";

/// One column of a sort order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub column: String,
    pub descending: bool,
    pub nulls_first: bool,
}

/// Parse a sort order written as an ORDER BY list of column names (`'a, b DESC NULLS LAST'`;
/// PostgreSQL's defaults: ascending, nulls last when ascending and first when descending). An
/// empty text is no sort order.
pub fn parse(text: &str) -> Result<Vec<SortKey>> {
    if text.trim().is_empty() {
        return Ok(vec![]);
    }
    let invalid = |why: String| {
        Error::InvalidParameter(format!(
            "invalid value for parameter \"{OPTION}\": \"{text}\": {why}"
        ))
    };
    let mut parser = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .map_err(|e| invalid(e.to_string()))?;
    let items = parser
        .parse_comma_separated(Parser::parse_order_by_expr)
        .map_err(|e| invalid(e.to_string()))?;
    if parser.peek_token().token != Token::EOF {
        return Err(invalid("expected a list of column names".into()));
    }
    let mut keys: Vec<SortKey> = Vec::with_capacity(items.len());
    for item in items {
        let ast::Expr::Identifier(id) = &item.expr else {
            return Err(invalid(format!("{} is not a column name", item.expr)));
        };
        if item.with_fill.is_some() {
            return Err(invalid("WITH FILL is not a sort order".into()));
        }
        // (PostgreSQL's folding: unquoted names are lower case)
        let column = match id.quote_style {
            Some(_) => id.value.clone(),
            None => id.value.to_lowercase(),
        };
        if keys.iter().any(|k| k.column == column) {
            return Err(invalid(format!("column \"{column}\" is named twice")));
        }
        let descending = item.options.asc == Some(false);
        keys.push(SortKey {
            column,
            descending,
            nulls_first: item.options.nulls_first.unwrap_or(descending),
        });
    }
    Ok(keys)
}

/// The stored text of a sort order (what [`parse`] reads back).
pub fn text(keys: &[SortKey]) -> String {
    keys.iter()
        .map(|k| {
            format!(
                "\"{}\" {} NULLS {}",
                k.column.replace('"', "\"\""),
                if k.descending { "DESC" } else { "ASC" },
                if k.nulls_first { "FIRST" } else { "LAST" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The stored sort order of a table's configuration; a text that no longer parses (written by
/// hand) is none: a sort order never makes a write fail.
pub fn of_configuration(config: &std::collections::HashMap<String, String>) -> Vec<SortKey> {
    config
        .get(KEY)
        .and_then(|t| parse(t).ok())
        .unwrap_or_default()
}

/// The ordering a write's input must have, over the columns of `schema` that the sort order
/// names (a column dropped since is left out); `None` when that is none.
pub fn requirement(keys: &[SortKey], schema: &Schema) -> Option<LexRequirement> {
    LexRequirement::new(keys.iter().filter_map(|k| {
        let index = schema.index_of(&k.column).ok()?;
        Some(PhysicalSortRequirement::new(
            std::sync::Arc::new(Column::new(&k.column, index)),
            Some(SortOptions {
                descending: k.descending,
                nulls_first: k.nulls_first,
            }),
        ))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sort_order_reads_back_from_its_text() {
        let keys = parse(r#"l_shipdate, "Order Key" desc, c asc nulls first"#).unwrap();
        assert_eq!(
            keys,
            vec![
                SortKey {
                    column: "l_shipdate".into(),
                    descending: false,
                    nulls_first: false
                },
                SortKey {
                    column: "Order Key".into(),
                    descending: true,
                    nulls_first: true
                },
                SortKey {
                    column: "c".into(),
                    descending: false,
                    nulls_first: true
                },
            ]
        );
        assert_eq!(parse(&text(&keys)).unwrap(), keys);
        assert!(parse("  ").unwrap().is_empty());
    }

    #[test]
    fn a_sort_order_is_column_names_only() {
        for bad in ["a + 1", "a,", "a b", "a, a", "lower(a)", "1"] {
            assert!(
                matches!(parse(bad), Err(Error::InvalidParameter(_))),
                "{bad}"
            );
        }
    }
}
