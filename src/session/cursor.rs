//! SQL cursors: `DECLARE name [BINARY] [[NO] SCROLL] CURSOR [WITH HOLD] FOR query`, `FETCH`,
//! `MOVE`, `CLOSE`. The query is planned (and governed, and audited) at DECLARE; its row stream
//! is kept in the session and FETCH takes rows from it, so a large result is read a batch at a
//! time. A SCROLL cursor keeps the rows it has read, so it also moves backward and to absolute
//! positions (PRIOR, FIRST, LAST, ABSOLUTE n, RELATIVE n, BACKWARD n); a cursor without SCROLL
//! keeps nothing and moves forward only (backward: 55000, as PostgreSQL answers for a plan that
//! cannot scan backward). A BINARY cursor's rows are sent in binary format over the simple
//! protocol. Cursors without HOLD close when their transaction block ends.

use std::collections::HashMap;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::sqlparser::ast::{FetchDirection, Value};
use futures::StreamExt;

use super::Session;
use super::{CommandTag, Outcome};
use crate::error::{Error, Result, SqlState};
use datafusion::common::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;

/// Schema metadata of a FETCH result whose rows go out in binary format (a BINARY cursor's).
pub const BINARY_ROWS: &str = "lakegate.binary_rows";

/// One open cursor. Its position follows PostgreSQL: 0 before the first row, k on row k,
/// `rows + 1` after the last.
pub struct Cursor {
    schema: SchemaRef,
    names: Vec<String>,
    /// In a mutex only so the session stays `Sync`; reached through `get_mut`, never locked.
    stream: std::sync::Mutex<SendableRecordBatchStream>,
    /// SCROLL: every row read so far; otherwise the rows read but not fetched yet.
    buffered: Vec<RecordBatch>,
    /// Rows read from the stream so far.
    read: usize,
    exhausted: bool,
    pos: usize,
    scroll: bool,
    binary: bool,
    pub hold: bool,
}

/// How a DECLARE asks for its cursor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub scroll: bool,
    pub binary: bool,
    pub hold: bool,
}

/// The session's cursors by name.
#[derive(Default)]
pub struct Cursors {
    open: HashMap<String, Cursor>,
}

/// Where a FETCH or MOVE goes, decoded from its direction.
enum Step {
    /// Up to n rows forward (n = usize::MAX: all).
    Forward(usize),
    /// Up to n rows backward.
    Backward(usize),
    /// To row n (negative: from the end; 0: before the first row).
    Absolute(i64),
    /// n rows from the current position (0: the current row again).
    Relative(i64),
}

impl Cursors {
    pub fn declare(&mut self, name: &str, rows: Outcome, options: Options) -> Result<()> {
        if self.open.contains_key(name) {
            return Err(Error::Data {
                sqlstate: SqlState::DuplicateCursor,
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
                buffered: vec![],
                read: 0,
                exhausted: false,
                pos: 0,
                scroll: options.scroll,
                binary: options.binary,
                hold: options.hold,
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
        let step = step(direction)?;
        let rows = if c.scroll {
            c.scroll_to(step).await?
        } else {
            c.forward(step).await?
        };
        if skip {
            let n: usize = rows.iter().map(|b| b.num_rows()).sum();
            return Ok(Outcome::Command(super::CommandTag::rows("MOVE", n)));
        }
        let schema = if c.binary {
            let mut meta = c.schema.metadata().clone();
            meta.insert(BINARY_ROWS.into(), "true".into());
            std::sync::Arc::new(c.schema.as_ref().clone().with_metadata(meta))
        } else {
            c.schema.clone()
        };
        let stream = MemoryStream::try_new(rows, c.schema.clone(), None)?;
        Ok(Outcome::Rows {
            schema,
            names: c.names.clone(),
            stream: Box::pin(stream),
            command: super::RowsKind::Fetch,
        })
    }
}

fn step(direction: &FetchDirection) -> Result<Step> {
    let signed = |n: i64| {
        if n >= 0 {
            Step::Forward(n as usize)
        } else {
            Step::Backward(n.unsigned_abs() as usize)
        }
    };
    Ok(match direction {
        FetchDirection::Next | FetchDirection::Forward { limit: None } => Step::Forward(1),
        FetchDirection::All | FetchDirection::ForwardAll => Step::Forward(usize::MAX),
        FetchDirection::Count { limit } | FetchDirection::Forward { limit: Some(limit) } => {
            signed(number(limit)?)
        }
        FetchDirection::Prior | FetchDirection::Backward { limit: None } => Step::Backward(1),
        FetchDirection::Backward { limit: Some(limit) } => match signed(number(limit)?) {
            Step::Forward(n) => Step::Backward(n),
            Step::Backward(n) => Step::Forward(n),
            other => other,
        },
        FetchDirection::BackwardAll => Step::Backward(usize::MAX),
        FetchDirection::First => Step::Absolute(1),
        FetchDirection::Last => Step::Absolute(-1),
        FetchDirection::Absolute { limit } => Step::Absolute(number(limit)?),
        FetchDirection::Relative { limit } => Step::Relative(number(limit)?),
    })
}

fn missing(name: &str) -> Error {
    Error::Data {
        sqlstate: SqlState::InvalidCursorName,
        message: format!("cursor \"{name}\" does not exist"),
    }
}

fn number(v: &Value) -> Result<i64> {
    match v {
        Value::Placeholder(p) if p.starts_with(crate::pg::dialect::NEGATIVE_COUNT) => p
            [crate::pg::dialect::NEGATIVE_COUNT.len()..]
            .parse::<i64>()
            .map(|n| -n)
            .map_err(|_| Error::Syntax(format!("invalid FETCH count {p}"))),
        Value::Number(n, _) => n
            .parse::<i64>()
            .map_err(|_| Error::Syntax(format!("invalid FETCH count {n}"))),
        other => Err(Error::Syntax(format!(
            "FETCH needs a row count, not {other}"
        ))),
    }
}

fn forward_only() -> Error {
    Error::Data {
        sqlstate: SqlState::ObjectNotInPrerequisiteState,
        message: "cursor can only scan forward: declare it with SCROLL to move backward".into(),
    }
}

impl Cursor {
    /// The next batch of the stream, counted; None at its end.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.exhausted {
            return Ok(None);
        }
        let next = self
            .stream
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .next()
            .await;
        match next {
            Some(b) => {
                let b = b?;
                self.read += b.num_rows();
                Ok(Some(b))
            }
            None => {
                self.exhausted = true;
                Ok(None)
            }
        }
    }

    /// Without SCROLL: only forward, from rows read but not fetched, then the stream.
    async fn forward(&mut self, step: Step) -> Result<Vec<RecordBatch>> {
        let (skip, want) = match step {
            Step::Forward(n) => (0, n),
            Step::Relative(n) if n > 0 => (n as usize - 1, 1),
            Step::Absolute(n) if n > 0 && n as usize > self.pos => (n as usize - self.pos - 1, 1),
            _ => return Err(forward_only()),
        };
        self.take(skip).await?;
        self.take(want).await
    }

    /// The next `n` rows (fewer at the end); the position moves past them.
    async fn take(&mut self, n: usize) -> Result<Vec<RecordBatch>> {
        let mut out = vec![];
        let mut want = n;
        while want > 0 {
            let batch = if self.buffered.is_empty() {
                match self.next_batch().await? {
                    Some(b) => b,
                    None => break,
                }
            } else {
                self.buffered.remove(0)
            };
            if batch.num_rows() <= want {
                want -= batch.num_rows();
                out.push(batch);
            } else {
                out.push(batch.slice(0, want));
                self.buffered
                    .insert(0, batch.slice(want, batch.num_rows() - want));
                want = 0;
            }
        }
        let got = n - want;
        self.pos = if want > 0 {
            // Ran off the end: after the last row.
            self.read - self.buffered_rows() + 1
        } else {
            self.pos + got
        };
        Ok(out)
    }

    fn buffered_rows(&self) -> usize {
        self.buffered.iter().map(|b| b.num_rows()).sum()
    }

    /// SCROLL: read until `upto` rows are buffered (or the stream ends).
    async fn fill(&mut self, upto: usize) -> Result<()> {
        while self.read < upto {
            match self.next_batch().await? {
                Some(b) => self.buffered.push(b),
                None => break,
            }
        }
        Ok(())
    }

    /// SCROLL: buffered rows `from..=to` (1-based), in that order or reversed.
    fn rows(&self, from: usize, to: usize, reversed: bool) -> Result<Vec<RecordBatch>> {
        let mut out = vec![];
        let mut at = 1;
        for b in &self.buffered {
            let (start, end) = (at, at + b.num_rows());
            let lo = from.max(start);
            let hi = (to + 1).min(end);
            if lo < hi {
                out.push(b.slice(lo - start, hi - lo));
            }
            at = end;
        }
        if !reversed {
            return Ok(out);
        }
        let mut back = vec![];
        for b in out.into_iter().rev() {
            let idx = UInt32Array::from_iter_values((0..b.num_rows() as u32).rev());
            let columns = b
                .columns()
                .iter()
                .map(|c| datafusion::arrow::compute::take(c, &idx, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            back.push(RecordBatch::try_new(b.schema(), columns)?);
        }
        Ok(back)
    }

    /// SCROLL: one step anywhere.
    async fn scroll_to(&mut self, step: Step) -> Result<Vec<RecordBatch>> {
        match step {
            Step::Forward(n) => {
                let from = self.pos + 1;
                self.fill(from.saturating_add(n).saturating_sub(1)).await?;
                let to = from.saturating_add(n).saturating_sub(1).min(self.read);
                if n == 0 {
                    return Ok(vec![]);
                }
                if from > to {
                    self.pos = self.read + 1;
                    return Ok(vec![]);
                }
                self.pos = if to - from + 1 < n { self.read + 1 } else { to };
                self.rows(from, to, false)
            }
            Step::Backward(n) => {
                if n == 0 || self.pos <= 1 {
                    self.pos = 0;
                    return Ok(vec![]);
                }
                let from = self.pos - 1;
                let to = from.saturating_sub(n - 1).max(1);
                self.pos = if from - to + 1 < n { 0 } else { to };
                self.rows(to, from, true)
            }
            Step::Absolute(n) => {
                let target = if n >= 0 {
                    self.fill(n as usize).await?;
                    n as usize
                } else {
                    self.fill(usize::MAX).await?;
                    let back = n.unsigned_abs() as usize;
                    if back > self.read {
                        self.pos = 0;
                        return Ok(vec![]);
                    }
                    self.read + 1 - back
                };
                self.land(target)
            }
            Step::Relative(n) => {
                let target = self.pos as i64 + n;
                if target <= 0 {
                    self.pos = 0;
                    return Ok(vec![]);
                }
                self.fill(target as usize).await?;
                self.land(target as usize)
            }
        }
    }

    /// SCROLL: onto row `target` if it exists (its row back), else before or after all rows.
    fn land(&mut self, target: usize) -> Result<Vec<RecordBatch>> {
        if target == 0 {
            self.pos = 0;
            return Ok(vec![]);
        }
        if target > self.read {
            self.pos = self.read + 1;
            return Ok(vec![]);
        }
        self.pos = target;
        self.rows(target, target, false)
    }
}

/// `MOVE ...` (which the SQL parser does not know) as the FETCH it mirrors: (cursor, direction).
pub fn parse_move(sql: &str) -> Option<Result<(String, FetchDirection)>> {
    let t = sql.trim_start();
    let head = t.get(..4)?;
    if !head.eq_ignore_ascii_case("move") || !t[4..].starts_with(char::is_whitespace) {
        return None;
    }
    let fetch = match crate::pg::dialect::normalize(&format!("FETCH {}", &t[4..])) {
        Ok(f) => f,
        Err(e) => return Some(Err(Error::Syntax(e.to_string()))),
    };
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

impl Session {
    /// The rows' schema of the open SQL cursor `name`.
    pub fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        self.cursors.schema_of(name)
    }

    /// DECLARE name [BINARY] [SCROLL] CURSOR [WITH HOLD] FOR query: the query runs (planned,
    /// governed and audited as this statement) and its rows wait in the cursor.
    pub(super) async fn declare(
        &mut self,
        stmts: &[ast::Declare],
        params: Vec<ScalarValue>,
    ) -> Result<Outcome> {
        let [d] = stmts else {
            return Err(Error::unsupported("DECLARE one cursor at a time"));
        };
        let (Some(query), Some(name)) = (&d.for_query, d.names.first()) else {
            return Err(Error::unsupported(
                "DECLARE is supported for cursors: DECLARE name CURSOR FOR query",
            ));
        };
        let hold = d.hold == Some(true);
        if !hold && !self.in_transaction {
            return Err(Error::Data {
                sqlstate: SqlState::NoActiveSqlTransaction,
                message: "DECLARE CURSOR can only be used in transaction blocks".into(),
            });
        }
        let q = DfStatement::Statement(Box::new(ast::Statement::Query(query.clone())));
        let rows = self.query(&q, params, super::RowsKind::Select).await?;
        let options = Options {
            scroll: d.scroll == Some(true),
            binary: d.binary == Some(true),
            hold,
        };
        self.cursors.declare(&name.value, rows, options)?;
        Ok(Outcome::Command(CommandTag::new("DECLARE CURSOR")))
    }

    /// CLOSE name | CLOSE ALL.
    pub(super) fn close_cursor(&mut self, cursor: &ast::CloseCursor) -> Result<Outcome> {
        match cursor {
            ast::CloseCursor::All => self.cursors.close(None)?,
            ast::CloseCursor::Specific { name } => self.cursors.close(Some(&name.value))?,
        }
        Ok(Outcome::Command(CommandTag::new("CLOSE CURSOR")))
    }
}
