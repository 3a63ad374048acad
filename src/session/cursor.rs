//! SQL cursors: `DECLARE name [BINARY] [NO SCROLL] CURSOR [WITH HOLD] FOR query`, `FETCH`,
//! `MOVE`, `CLOSE`. The query is planned (and governed, and audited) at DECLARE; its row stream
//! is kept in the session and FETCH takes the next rows from it, so a large result is read a
//! batch at a time. Forward only: SCROLL and backward directions answer 0A000. Cursors without
//! HOLD close when their transaction block ends.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::sqlparser::ast::{FetchDirection, Value};
use futures::StreamExt;

use super::Outcome;
use crate::error::{Error, Result};

/// One open cursor.
pub struct Cursor {
    schema: SchemaRef,
    names: Vec<String>,
    /// In a mutex only so the session stays `Sync`; reached through `get_mut`, never locked.
    stream: std::sync::Mutex<SendableRecordBatchStream>,
    /// Rows taken from the stream but not fetched yet.
    leftover: Option<RecordBatch>,
    pub hold: bool,
}

/// The session's cursors by name.
#[derive(Default)]
pub struct Cursors {
    open: HashMap<String, Cursor>,
}

impl Cursors {
    pub fn declare(&mut self, name: &str, rows: Outcome, hold: bool) -> Result<()> {
        if self.open.contains_key(name) {
            return Err(Error::Data {
                sqlstate: "42P03",
                message: format!("cursor \"{name}\" already exists"),
            });
        }
        let Outcome::Rows {
            schema,
            names,
            stream,
            ..
        } = rows
        else {
            return Err(Error::Syntax("DECLARE CURSOR needs a query".into()));
        };
        self.open.insert(
            name.to_string(),
            Cursor {
                schema,
                names,
                stream: std::sync::Mutex::new(stream),
                leftover: None,
                hold,
            },
        );
        Ok(())
    }

    pub fn close(&mut self, name: Option<&str>) -> Result<()> {
        match name {
            None => self.open.clear(),
            Some(n) => {
                self.open.remove(n).ok_or_else(|| missing(n))?;
            }
        }
        Ok(())
    }

    /// The rows' schema of an open cursor (what a prepared FETCH describes).
    pub fn schema_of(&self, name: &str) -> Option<SchemaRef> {
        self.open.get(name).map(|c| c.schema.clone())
    }

    /// At the end of a transaction block: cursors without HOLD close.
    pub fn end_of_block(&mut self) {
        self.open.retain(|_, c| c.hold);
    }

    /// FETCH (rows back) or MOVE (`skip`: only the count).
    pub async fn fetch(
        &mut self,
        name: &str,
        direction: &FetchDirection,
        skip: bool,
    ) -> Result<Outcome> {
        let c = self.open.get_mut(name).ok_or_else(|| missing(name))?;
        let count = match direction {
            FetchDirection::Next => Some(1),
            FetchDirection::All | FetchDirection::ForwardAll => None,
            FetchDirection::Forward { limit: None } => Some(1),
            FetchDirection::Count { limit } | FetchDirection::Forward { limit: Some(limit) } => {
                Some(number(limit)?)
            }
            FetchDirection::Relative { limit } => {
                // RELATIVE n: skip n-1, fetch one (RELATIVE 0: the current row, not kept).
                let n = number(limit)?;
                if n == 0 {
                    return Err(Error::unsupported("FETCH RELATIVE 0 is not supported"));
                }
                take(c, n - 1).await?;
                Some(1)
            }
            other => {
                return Err(Error::unsupported(format!(
                    "FETCH {other} is not supported: cursors here move forward only (NEXT, n, FORWARD, ALL)"
                )));
            }
        };
        let rows = take(c, count.unwrap_or(usize::MAX)).await?;
        if skip {
            let n: usize = rows.iter().map(|b| b.num_rows()).sum();
            return Ok(Outcome::Command(super::CommandTag::rows("MOVE", n)));
        }
        let stream = MemoryStream::try_new(rows, c.schema.clone(), None)?;
        Ok(Outcome::Rows {
            schema: c.schema.clone(),
            names: c.names.clone(),
            stream: Box::pin(stream),
            command: "FETCH",
        })
    }
}

fn missing(name: &str) -> Error {
    Error::Data {
        sqlstate: "34000",
        message: format!("cursor \"{name}\" does not exist"),
    }
}

fn number(v: &Value) -> Result<usize> {
    match v {
        Value::Number(n, _) => n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| n as usize)
            .ok_or_else(|| {
                Error::unsupported("backward FETCH is not supported: cursors move forward only")
            }),
        other => Err(Error::Syntax(format!(
            "FETCH needs a row count, not {other}"
        ))),
    }
}

/// The next `n` rows of the cursor (fewer at its end).
async fn take(c: &mut Cursor, n: usize) -> Result<Vec<RecordBatch>> {
    let mut out = vec![];
    let mut want = n;
    while want > 0 {
        let batch = match c.leftover.take() {
            Some(b) => b,
            None => match c
                .stream
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .next()
                .await
            {
                Some(b) => b?,
                None => break,
            },
        };
        if batch.num_rows() <= want {
            want -= batch.num_rows();
            out.push(batch);
        } else {
            out.push(batch.slice(0, want));
            c.leftover = Some(batch.slice(want, batch.num_rows() - want));
            want = 0;
        }
    }
    Ok(out)
}

/// `MOVE ...` (which the SQL parser does not know) as the FETCH it mirrors: (cursor, direction).
pub fn parse_move(sql: &str) -> Option<Result<(String, FetchDirection)>> {
    let t = sql.trim_start();
    let head = t.get(..4)?;
    if !head.eq_ignore_ascii_case("move") || !t[4..].starts_with(char::is_whitespace) {
        return None;
    }
    let fetch = format!("FETCH {}", &t[4..]);
    let parsed = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        &fetch,
    );
    Some(match parsed {
        Ok(mut v) if v.len() == 1 => match v.pop() {
            Some(datafusion::sql::sqlparser::ast::Statement::Fetch {
                name, direction, ..
            }) => Ok((name.value, direction)),
            _ => Err(Error::Syntax("MOVE [direction] [FROM | IN] cursor".into())),
        },
        Ok(_) => Err(Error::Syntax("MOVE takes one cursor".into())),
        Err(e) => Err(Error::Syntax(e.to_string())),
    })
}
