//! A table's sort order: the columns every write sorts its rows by (in runs that fit in memory,
//! [`Runs`]) before they reach the Parquet writer (`CREATE TABLE ... WITH (sort_order =
//! 'l_shipdate')`, `ALTER TABLE ... SET (sort_order = '...')`). Rows written together then sit together in files and row groups,
//! so the min/max statistics of a filtered scan skip most of them: TPC-H q6 (one year of
//! `l_shipdate`) reads a seventh of `lineitem`. It orders each run of each write, not the
//! table: runs and later writes form files of their own, and the table is never read as sorted.
//!
//! Kept in the Delta table's own configuration under [`KEY`], as text in ORDER BY syntax
//! (`"l_shipdate" ASC NULLS LAST`), so it travels with the table; other engines ignore a key
//! outside `delta.*`.

use datafusion::arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
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

/// The stored text of a sort order (what [`parse`] reads back). Names are quoted here rather
/// than by `pg::names`, which storage does not depend on.
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

/// The largest run, counting each row twice (the batches, then their sorted copy).
const MAX_RUN_BYTES: usize = 1 << 30;

/// A write's rows in runs, each sorted by the sort order and written to files of its own. A
/// run is as many rows as the memory pool grants (up to [`MAX_RUN_BYTES`]), so a write never
/// fails for want of memory to sort, as a whole-write sort's merge of its spill files did
/// (`ExternalSorterMerge` out of a 4 GiB pool at SF10 `lineitem`). Runs of half a gigabyte
/// are hundreds of row groups each spread over the whole range: a filter on the first column
/// skips their other row groups (and other runs' files) about as well as one sorted table.
pub struct Runs {
    /// (column index, order) of the sort order's columns the table has.
    columns: Vec<(usize, SortOptions)>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    reservation: MemoryReservation,
}

impl Runs {
    /// Runs for a write of `schema`'s rows; `None` when the sort order names none of its
    /// columns (a column dropped since is left out).
    pub fn new(keys: &[SortKey], schema: &SchemaRef, context: &TaskContext) -> Option<Self> {
        let columns: Vec<_> = keys
            .iter()
            .filter_map(|k| {
                let index = schema.index_of(&k.column).ok()?;
                Some((
                    index,
                    SortOptions {
                        descending: k.descending,
                        nulls_first: k.nulls_first,
                    },
                ))
            })
            .collect();
        if columns.is_empty() {
            return None;
        }
        Some(Self {
            columns,
            schema: schema.clone(),
            batches: Vec::new(),
            reservation: MemoryConsumer::new("SortedWrite")
                .with_can_spill(true)
                .register(context.memory_pool()),
        })
    }

    /// Add a batch; answers the run before it, sorted, when the batch does not fit in it.
    pub fn push(&mut self, batch: RecordBatch) -> datafusion::error::Result<Option<RecordBatch>> {
        let need = 2 * batch.get_array_memory_size();
        let fits = self.reservation.size() + need <= MAX_RUN_BYTES
            && self.reservation.try_grow(need).is_ok();
        let mut full = None;
        if !fits {
            full = self.finish()?;
            // (when even one batch is refused, it is held all the same: it is in memory)
            let _ = self.reservation.try_grow(need);
        }
        self.batches.push(batch);
        Ok(full)
    }

    /// The rows gathered so far, sorted; `None` when there are none.
    pub fn finish(&mut self) -> datafusion::error::Result<Option<RecordBatch>> {
        if self.batches.is_empty() {
            return Ok(None);
        }
        let all = concat_batches(&self.schema, &std::mem::take(&mut self.batches))?;
        let columns: Vec<SortColumn> = self
            .columns
            .iter()
            .map(|(i, options)| SortColumn {
                values: all.column(*i).clone(),
                options: Some(*options),
            })
            .collect();
        let order = lexsort_to_indices(&columns, None)?;
        let sorted = take_record_batch(&all, &order)?;
        self.reservation.free();
        Ok(Some(sorted))
    }
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
