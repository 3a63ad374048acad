//! `COPY table [(columns)] TO STDOUT` and `COPY (query) TO STDOUT`, in text, CSV and binary:
//! the rows come from the same governed, audited plan a `SELECT` of them gets (so COPY carries
//! only what the user may see), and are written in PostgreSQL's COPY formats by the wire layer
//! (`wire::copy_out`). `COPY table [(columns)] FROM STDIN` in text and CSV streams the rows into
//! one `INSERT ... SELECT` (write grant, the writer's row filter as WITH CHECK, NOT NULL and
//! types as any INSERT) that commits once at the end, in bounded memory (`CopyInRun`).
//! DataFusion's parser only knows `COPY ... TO 'file'`, so the statement is recognised here
//! with sqlparser's PostgreSQL dialect first. `COPY ... TO/FROM` a server file or program is
//! refused (42501): no user reads or writes the server's files.

use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::{CommandTag, Outcome, Parsed, Session};
use crate::error::{Error, Result, SqlState};

/// The COPY formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Csv,
    Binary,
}

/// How COPY TO writes rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    pub kind: Kind,
    pub delimiter: char,
    pub null: String,
    pub header: bool,
    pub quote: char,
    pub escape: char,
}

impl CopyFormat {
    /// PostgreSQL's default text format (tab-separated, `\N` for NULL, no header).
    pub fn text() -> CopyFormat {
        CopyFormat {
            kind: Kind::Text,
            delimiter: '\t',
            null: "\\N".into(),
            header: false,
            quote: '"',
            escape: '"',
        }
    }
}

/// A COPY TO STDOUT: the SELECT giving its rows, and the format.
#[derive(Debug, Clone)]
pub struct CopyOut {
    pub query: String,
    pub format: CopyFormat,
}

/// A COPY table [(columns)] FROM STDIN.
#[derive(Debug, Clone)]
pub struct CopyIn {
    /// The table as written.
    pub table: String,
    pub columns: Vec<String>,
    pub format: CopyFormat,
}

/// What a COPY statement asks for.
#[derive(Debug, Clone)]
pub enum Copy {
    Out(CopyOut),
    In(CopyIn),
}

/// Recognise a COPY statement (None: not one; the caller parses it as usual).
pub fn parse(sql: &str) -> Result<Option<Copy>> {
    let head = sql.trim_start().get(..4).unwrap_or_default();
    if !head.eq_ignore_ascii_case("copy") {
        return Ok(None);
    }
    // sqlparser reads inline rows after `FROM STDIN;` up to `\.`: give it an empty set.
    let from_stdin = sql.to_ascii_lowercase().contains("stdin");
    let text = if from_stdin {
        format!("{};\n\\.\n", sql.trim_end().trim_end_matches(';'))
    } else {
        sql.to_string()
    };
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, &text)
        .map_err(|e| Error::Syntax(e.to_string()))?;
    if stmts.len() != 1 {
        return Ok(None);
    }
    let Some(Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    }) = stmts.pop()
    else {
        return Ok(None);
    };
    match (&target, to, &source) {
        (CopyTarget::Stdout, true, _) => {}
        (
            CopyTarget::Stdin,
            false,
            CopySource::Table {
                table_name,
                columns,
            },
        ) => {
            let format = format(&options, &legacy_options)?;
            if format.kind == Kind::Binary {
                return Err(Error::unsupported(
                    "COPY FROM STDIN in binary format is not supported: use text or CSV",
                ));
            }
            return Ok(Some(Copy::In(CopyIn {
                table: table_name.to_string(),
                columns: columns.iter().map(|c| c.value.clone()).collect(),
                format,
            })));
        }
        _ => {
            return Err(Error::PermissionDenied(
                "permission denied to COPY to or from a file or program on the server: use \
                 COPY ... TO STDOUT / FROM STDIN (psql \\copy)"
                    .into(),
            ));
        }
    }
    let query = match source {
        CopySource::Table {
            table_name,
            columns,
        } => {
            let cols = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("SELECT {cols} FROM {table_name}")
        }
        CopySource::Query(q) => q.to_string(),
    };
    Ok(Some(Copy::Out(CopyOut {
        query,
        format: format(&options, &legacy_options)?,
    })))
}

fn format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat> {
    let mut kind = Kind::Text;
    let mut delimiter = None;
    let mut null = None;
    let mut header = false;
    let mut quote = '"';
    let mut escape = None;
    let bad = |m: String| Error::Data {
        sqlstate: SqlState::InvalidParameterValue,
        message: m,
    };
    for o in options {
        match o {
            CopyOption::Format(f) => {
                kind = match f.value.to_ascii_lowercase().as_str() {
                    "text" => Kind::Text,
                    "csv" => Kind::Csv,
                    "binary" => Kind::Binary,
                    other => return Err(bad(format!("COPY format \"{other}\" not recognized"))),
                }
            }
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(s) => null = Some(s.clone()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Quote(c) => quote = *c,
            CopyOption::Escape(c) => escape = Some(*c),
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => {
                return Err(Error::unsupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Binary => kind = Kind::Binary,
            CopyLegacyOption::Csv(csv) => {
                kind = Kind::Csv;
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(c) => quote = *c,
                        CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                        other => {
                            return Err(Error::unsupported(format!(
                                "COPY option {other} is not supported"
                            )));
                        }
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(s) => null = Some(s.clone()),
            CopyLegacyOption::Header => header = true,
            other => {
                return Err(Error::unsupported(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    if kind == Kind::Binary && (delimiter.is_some() || null.is_some() || header) {
        return Err(bad(
            "cannot specify DELIMITER, NULL or HEADER in BINARY mode".into(),
        ));
    }
    Ok(CopyFormat {
        kind,
        delimiter: delimiter.unwrap_or(if kind == Kind::Csv { ',' } else { '\t' }),
        null: null.unwrap_or_else(|| {
            if kind == Kind::Csv {
                String::new()
            } else {
                "\\N".into()
            }
        }),
        header,
        quote,
        escape: escape.unwrap_or(quote),
    })
}

/// One row of COPY text format from its fields' text (None: NULL), newline included.
pub fn text_line(fields: &[Option<&[u8]>], f: &CopyFormat) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for (i, v) in fields.iter().enumerate() {
        if i > 0 {
            push_char(&mut out, f.delimiter);
        }
        match v {
            None => out.extend_from_slice(f.null.as_bytes()),
            Some(bytes) => {
                for &b in bytes.iter() {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b if b == f.delimiter as u8 && f.delimiter.is_ascii() => {
                            out.push(b'\\');
                            out.push(b);
                        }
                        b => out.push(b),
                    }
                }
            }
        }
    }
    out.push(b'\n');
    out
}

/// One row of COPY CSV format (quoted where PostgreSQL quotes: the delimiter, quote, CR/LF, a
/// value equal to the NULL string, and the empty string when NULL is empty).
pub fn csv_line(fields: &[Option<&[u8]>], f: &CopyFormat) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut d = [0u8; 4];
    let delim = f.delimiter.encode_utf8(&mut d).as_bytes().to_vec();
    for (i, v) in fields.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(&delim);
        }
        match v {
            None => out.extend_from_slice(f.null.as_bytes()),
            Some(bytes) => {
                let needs = bytes.is_empty() && f.null.is_empty()
                    || *bytes == f.null.as_bytes()
                    || bytes
                        .windows(delim.len().max(1))
                        .any(|w| w == delim.as_slice())
                    || bytes.iter().any(|&b| {
                        b == f.quote as u8 || b == b'\n' || b == b'\r' || b == f.escape as u8
                    });
                if needs {
                    out.push(f.quote as u8);
                    for &b in bytes.iter() {
                        if b == f.quote as u8 || b == f.escape as u8 {
                            out.push(f.escape as u8);
                        }
                        out.push(b);
                    }
                    out.push(f.quote as u8);
                } else {
                    out.extend_from_slice(bytes);
                }
            }
        }
    }
    out.push(b'\n');
    out
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut b = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
}

/// PGCOPY's binary header (signature, flags, no extension).
pub const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Splits COPY FROM input, fed in pieces as it arrives, into rows of field texts (None: NULL).
#[derive(Debug)]
pub struct RowParser {
    format: CopyFormat,
    columns: usize,
    buf: Vec<u8>,
    header_pending: bool,
    done: bool,
}

impl RowParser {
    pub fn new(format: CopyFormat, columns: usize) -> RowParser {
        RowParser {
            header_pending: format.header,
            format,
            columns,
            buf: vec![],
            done: false,
        }
    }

    /// Take `data`; the complete rows in what has come so far.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Vec<Option<String>>>> {
        self.buf.extend_from_slice(data);
        let mut rows = vec![];
        let mut start = 0;
        let mut in_quotes = false;
        let csv = self.format.kind == Kind::Csv;
        let quote = self.format.quote as u8;
        let mut i = 0;
        while i < self.buf.len() {
            let b = self.buf[i];
            if csv && b == quote {
                in_quotes = !in_quotes;
            } else if b == b'\n' && !in_quotes {
                let mut end = i;
                if end > start && self.buf[end - 1] == b'\r' {
                    end -= 1;
                }
                if !self.done {
                    let line = self.buf[start..end].to_vec();
                    if let Some(r) = self.line(&line)? {
                        rows.push(r);
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
        self.buf.drain(..start);
        Ok(rows)
    }

    /// The end of input: a last line without its newline.
    pub fn finish(&mut self) -> Result<Vec<Vec<Option<String>>>> {
        let rest = std::mem::take(&mut self.buf);
        if rest.is_empty() || self.done {
            return Ok(vec![]);
        }
        Ok(self.line(&rest)?.into_iter().collect())
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<Vec<Option<String>>>> {
        if line == b"\\." {
            self.done = true;
            return Ok(None);
        }
        if self.header_pending {
            self.header_pending = false;
            return Ok(None);
        }
        let fields = match self.format.kind {
            Kind::Csv => csv_fields(line, &self.format),
            _ => text_fields(line, &self.format)?,
        };
        if fields.len() != self.columns {
            return Err(Error::Data {
                sqlstate: SqlState::BadCopyFileFormat,
                message: if fields.len() > self.columns {
                    "extra data after last expected column".into()
                } else {
                    format!("missing data for column {}", fields.len() + 1)
                },
            });
        }
        Ok(Some(fields))
    }
}

fn utf8(b: Vec<u8>) -> Result<String> {
    String::from_utf8(b).map_err(|_| Error::Data {
        sqlstate: SqlState::CharacterNotInRepertoire,
        message: "invalid byte sequence for encoding \"UTF8\"".into(),
    })
}

/// One line of COPY text format: delimiter-separated, `\N` (or the NULL string) for NULL,
/// backslash escapes.
fn text_fields(line: &[u8], f: &CopyFormat) -> Result<Vec<Option<String>>> {
    let delim = f.delimiter as u8;
    let mut out = vec![];
    let mut raw: Vec<u8> = vec![];
    let mut field: Vec<u8> = vec![];
    let mut i = 0;
    let push =
        |raw: &mut Vec<u8>, field: &mut Vec<u8>, out: &mut Vec<Option<String>>| -> Result<()> {
            if raw.as_slice() == f.null.as_bytes() {
                out.push(None);
            } else {
                out.push(Some(utf8(std::mem::take(field))?));
            }
            raw.clear();
            field.clear();
            Ok(())
        };
    while i < line.len() {
        let b = line[i];
        if b == delim {
            push(&mut raw, &mut field, &mut out)?;
            i += 1;
            continue;
        }
        raw.push(b);
        if b == b'\\' && i + 1 < line.len() {
            let n = line[i + 1];
            raw.push(n);
            i += 2;
            match n {
                b'n' => field.push(b'\n'),
                b'r' => field.push(b'\r'),
                b't' => field.push(b'\t'),
                b'b' => field.push(8),
                b'f' => field.push(12),
                b'v' => field.push(11),
                b'0'..=b'7' => {
                    let mut v = u32::from(n - b'0');
                    let mut k = 0;
                    while k < 2 && i < line.len() && (b'0'..=b'7').contains(&line[i]) {
                        v = v * 8 + u32::from(line[i] - b'0');
                        raw.push(line[i]);
                        i += 1;
                        k += 1;
                    }
                    field.push((v & 0xff) as u8);
                }
                b'x' if i < line.len() && line[i].is_ascii_hexdigit() => {
                    let mut v = 0u32;
                    let mut k = 0;
                    while k < 2 && i < line.len() && line[i].is_ascii_hexdigit() {
                        v = v * 16 + (line[i] as char).to_digit(16).unwrap_or(0);
                        raw.push(line[i]);
                        i += 1;
                        k += 1;
                    }
                    field.push((v & 0xff) as u8);
                }
                other => field.push(other),
            }
            continue;
        }
        field.push(b);
        i += 1;
    }
    push(&mut raw, &mut field, &mut out)?;
    Ok(out)
}

/// One record of CSV: quoted fields may hold the delimiter, quotes (doubled, or after the
/// escape character) and newlines; an unquoted field equal to the NULL string is NULL.
fn csv_fields(line: &[u8], f: &CopyFormat) -> Vec<Option<String>> {
    let (delim, quote, escape) = (f.delimiter as u8, f.quote as u8, f.escape as u8);
    let mut out = vec![];
    let mut field: Vec<u8> = vec![];
    let mut quoted = false;
    let mut in_quotes = false;
    let mut i = 0;
    let finish = |field: &mut Vec<u8>, quoted: bool, out: &mut Vec<Option<String>>| {
        let text = String::from_utf8_lossy(field).to_string();
        if !quoted && text == f.null {
            out.push(None);
        } else {
            out.push(Some(text));
        }
        field.clear();
    };
    while i < line.len() {
        let b = line[i];
        if in_quotes {
            if b == escape && i + 1 < line.len() && line[i + 1] == quote {
                field.push(quote);
                i += 2;
                continue;
            }
            if b == quote {
                in_quotes = false;
            } else {
                field.push(b);
            }
        } else if b == quote {
            in_quotes = true;
            quoted = true;
        } else if b == delim {
            finish(&mut field, quoted, &mut out);
            quoted = false;
        } else {
            field.push(b);
        }
        i += 1;
    }
    finish(&mut field, quoted, &mut out);
    out
}

/// Rows per batch sent to the INSERT while COPY FROM streams.
const BATCH_ROWS: usize = 8192;

/// A COPY FROM STDIN under way: its rows go, a batch at a time through a bounded channel, into
/// one INSERT ... SELECT (planned, governed and checked like any INSERT, run as its own task),
/// which commits once when the input ends; an error or CopyFail leaves nothing written.
pub struct CopyInRun {
    tx: Option<
        tokio::sync::mpsc::Sender<datafusion::error::Result<datafusion::arrow::array::RecordBatch>>,
    >,
    task: tokio::task::JoinHandle<
        datafusion::error::Result<Vec<datafusion::arrow::array::RecordBatch>>,
    >,
    parser: RowParser,
    schema: datafusion::arrow::datatypes::SchemaRef,
    rows: Vec<Vec<Option<String>>>,
    /// The first bad input; reported at CopyDone.
    failed: Option<Error>,
    pub statement: String,
    pub started: std::time::Instant,
    /// In a transaction block: where the rows go at COMMIT.
    deferred: Option<Deferred>,
}

/// A COPY FROM inside a transaction block: its rows wait for COMMIT.
pub struct Deferred {
    entry: crate::catalog::TableEntry,
    schema: String,
    table: String,
    target: datafusion::arrow::datatypes::SchemaRef,
}

impl std::fmt::Debug for CopyInRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CopyInRun")
    }
}

/// The channel's receiving end as the INSERT's source (read once).
#[derive(Debug)]
struct Incoming {
    schema: datafusion::arrow::datatypes::SchemaRef,
    rx: std::sync::Mutex<
        Option<
            tokio::sync::mpsc::Receiver<
                datafusion::error::Result<datafusion::arrow::array::RecordBatch>,
            >,
        >,
    >,
}

impl datafusion::physical_plan::streaming::PartitionStream for Incoming {
    fn schema(&self) -> &datafusion::arrow::datatypes::SchemaRef {
        &self.schema
    }
    fn execute(
        &self,
        _ctx: std::sync::Arc<datafusion::execution::TaskContext>,
    ) -> datafusion::execution::SendableRecordBatchStream {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let stream = futures::stream::unfold(rx, |rx| async move {
            let mut rx = rx?;
            let item = rx.recv().await?;
            Some((item, Some(rx)))
        });
        Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                self.schema.clone(),
                stream,
            ),
        )
    }
}

/// The catalog the COPY source is registered in (policy::access does not count it as a table).
use crate::policy::access::COPY_SOURCE_CATALOG as SOURCE_CATALOG;

impl super::Session {
    /// Start COPY FROM STDIN: plan the INSERT over the incoming rows and start it.
    pub(crate) async fn copy_in_start(&mut self, c: CopyIn, sql: &str) -> Result<super::Outcome> {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let provider = self.context().table_provider(c.table.as_str()).await?;
        let target = provider.schema();
        let columns: Vec<String> = if c.columns.is_empty() {
            target.fields().iter().map(|f| f.name().clone()).collect()
        } else {
            c.columns.clone()
        };
        for col in &columns {
            if target.field_with_name(col).is_err() {
                return Err(Error::UndefinedColumn(format!(
                    "column \"{col}\" of relation \"{}\" does not exist",
                    c.table
                )));
            }
        }
        let schema = std::sync::Arc::new(Schema::new(
            columns
                .iter()
                .map(|n| Field::new(n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let source = datafusion::catalog::streaming::StreamingTable::try_new(
            schema.clone(),
            vec![std::sync::Arc::new(Incoming {
                schema: schema.clone(),
                rx: std::sync::Mutex::new(Some(rx)),
            })],
        )?;
        let catalog = datafusion::catalog::MemoryCatalogProvider::new();
        let s = std::sync::Arc::new(datafusion::catalog::MemorySchemaProvider::new());
        datafusion::catalog::SchemaProvider::register_table(
            s.as_ref(),
            "rows".into(),
            std::sync::Arc::new(source),
        )?;
        datafusion::catalog::CatalogProvider::register_schema(&catalog, "s", s)?;
        self.context()
            .register_catalog(SOURCE_CATALOG, std::sync::Arc::new(catalog));
        let cols = columns
            .iter()
            .map(|c| crate::pg::names::quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        let insert = format!(
            "INSERT INTO {} ({cols}) SELECT {cols} FROM {SOURCE_CATALOG}.s.rows",
            c.table
        );
        let mut stmts = super::parse(&insert)?;
        let stmt = stmts
            .pop()
            .ok_or_else(|| Error::internal("COPY's INSERT did not parse"))?;
        let plan = self.plan(&stmt).await?;
        let ctx = self.context().clone();
        // In a transaction block the rows are computed (cast, checked) as they come and kept
        // for COMMIT, like an INSERT's there; otherwise the INSERT runs and commits once.
        let (plan, deferred) = if self.in_transaction {
            let (dml, schema, table, entry) = super::transaction::insert_target(self, &plan)?;
            let target = dml.target.schema();
            (
                dml.input.as_ref().clone(),
                Some(Deferred {
                    entry,
                    schema,
                    table,
                    target,
                }),
            )
        } else {
            (plan, None)
        };
        let task = tokio::spawn(async move {
            let df = ctx.execute_logical_plan(plan).await?;
            df.collect().await
        });
        self.copy_in = Some(CopyInRun {
            tx: Some(tx),
            task,
            parser: RowParser::new(c.format, columns.len()),
            schema,
            rows: vec![],
            failed: None,
            statement: sql.to_string(),
            started: std::time::Instant::now(),
            deferred,
        });
        Ok(super::Outcome::CopyIn {
            columns: columns.len(),
        })
    }

    /// A CopyData message.
    pub async fn copy_in_data(&mut self, data: &[u8]) {
        let Some(run) = self.copy_in.as_mut() else {
            return;
        };
        if run.failed.is_some() {
            return;
        }
        match run.parser.feed(data) {
            Ok(rows) => run.rows.extend(rows),
            Err(e) => {
                run.failed = Some(e);
                return;
            }
        }
        if run.rows.len() >= BATCH_ROWS
            && let Err(e) = send_rows(run).await
        {
            run.failed = Some(e);
        }
    }

    /// CopyDone (or CopyFail, `failed`): the rows written, or the error.
    pub async fn copy_in_finish(
        &mut self,
        failed: Option<String>,
    ) -> (Result<usize>, String, std::time::Instant) {
        let Some(mut run) = self.copy_in.take() else {
            return (
                Err(Error::internal("no COPY in progress")),
                String::new(),
                std::time::Instant::now(),
            );
        };
        let statement = run.statement.clone();
        let started = run.started;
        let mut error = run.failed.take().or_else(|| {
            failed.map(|m| Error::Data {
                sqlstate: SqlState::QueryCanceled,
                message: format!("COPY from stdin failed: {m}"),
            })
        });
        if error.is_none() {
            match run.parser.finish() {
                Ok(rows) => run.rows.extend(rows),
                Err(e) => error = Some(e),
            }
        }
        if error.is_none()
            && let Err(e) = send_rows(&mut run).await
        {
            error = Some(e);
        }
        if let Some(tx) = run.tx.take()
            && let Some(e) = &error
        {
            // The INSERT fails, and nothing commits.
            let _ = tx
                .send(Err(datafusion::error::DataFusionError::Execution(
                    e.client_message(),
                )))
                .await;
        }
        let deferred = run.deferred.take();
        let result = match (run.task.await, deferred) {
            (Ok(Ok(batches)), Some(d)) if error.is_none() => super::transaction::keep_rows(
                self, d.entry, &d.schema, &d.table, &d.target, batches,
            ),
            (Ok(Ok(_)), Some(_)) => Ok(0),
            (Ok(Ok(batches)), None) => Ok(batches
                .iter()
                .filter_map(|b| {
                    b.columns()
                        .first()
                        .and_then(|c| {
                            c.as_any()
                                .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                        })
                        .map(|a| a.iter().flatten().sum::<u64>() as usize)
                })
                .sum()),
            (Ok(Err(e)), _) => Err(Error::from(e)),
            (Err(e), _) => Err(Error::internal(format!("COPY's insert stopped: {e}"))),
        };
        (
            match error {
                Some(e) => Err(e),
                None => result,
            },
            statement,
            started,
        )
    }
}

/// Send the parsed rows as one batch of text columns (the INSERT casts them).
async fn send_rows(run: &mut CopyInRun) -> Result<()> {
    if run.rows.is_empty() {
        return Ok(());
    }
    let rows = std::mem::take(&mut run.rows);
    let ncols = run.schema.fields().len();
    let columns: Vec<datafusion::arrow::array::ArrayRef> = (0..ncols)
        .map(|i| {
            std::sync::Arc::new(datafusion::arrow::array::StringArray::from_iter(
                rows.iter().map(|r| r.get(i).cloned().flatten()),
            )) as datafusion::arrow::array::ArrayRef
        })
        .collect();
    let batch = datafusion::arrow::array::RecordBatch::try_new(run.schema.clone(), columns)?;
    match &run.tx {
        Some(tx) => tx
            .send(Ok(batch))
            .await
            .map_err(|_| Error::internal("COPY's insert stopped reading")),
        None => Ok(()),
    }
}

impl Session {
    /// The end of a COPY FROM STDIN (`failed`: the client's CopyFail message): the tag, with
    /// the statement's audit record written.
    pub async fn copy_in_done(&mut self, failed: Option<String>) -> Result<CommandTag> {
        // Rows that could not be audited are not committed.
        let unaudited = self.engine.audit.ready().err();
        let failed = failed.or_else(|| unaudited.as_ref().map(|e| e.to_string()));
        let (r, statement, started) = self.copy_in_finish(failed).await;
        self.sync_overlays();
        if let Some(e) = unaudited {
            return Err(e);
        }
        let r = r.map(|n| Outcome::Command(CommandTag::rows("COPY", n)));
        match self.audit(&statement, started, r)? {
            Outcome::Command(t) => Ok(t),
            _ => Err(Error::internal("COPY did not end with a tag")),
        }
    }

    /// COPY ... TO STDOUT: its rows are those of the SELECT it stands for, planned, governed
    /// and audited like one.
    pub(super) async fn copy_out(
        &mut self,
        c: CopyOut,
        sql: &str,
        aborted: bool,
    ) -> Result<Outcome> {
        let mut stmts = super::parse(&c.query)?;
        let (Some(stmt), true) = (stmts.pop(), stmts.is_empty()) else {
            return Err(Error::Syntax("COPY takes one query".into()));
        };
        match self
            .execute_one_as(&Parsed::new(stmt), vec![], aborted, Some(sql))
            .await?
        {
            rows @ Outcome::Rows { .. } => Ok(Outcome::CopyOut {
                rows: Box::new(rows),
                format: c.format,
            }),
            _ => Err(Error::Syntax(
                "COPY (query) needs a query that returns rows".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn statements_and_formats() -> Result<()> {
        let out = |sql: &str| -> Result<CopyOut> {
            match parse(sql)? {
                Some(Copy::Out(c)) => Ok(c),
                _ => Err(Error::internal("not a COPY TO")),
            }
        };
        let c = out("COPY hr.emp (id, name) TO STDOUT WITH (FORMAT csv, HEADER)")?;
        assert_eq!(c.query, "SELECT id, name FROM hr.emp");
        assert_eq!(c.format.kind, Kind::Csv);
        assert!(c.format.header);
        let c = out("copy (select 1) to stdout binary")?;
        assert_eq!(c.format.kind, Kind::Binary);
        assert!(parse("SELECT 1")?.is_none());
        assert!(parse("COPY t TO '/etc/passwd'").is_err());
        assert!(parse("COPY t FROM PROGRAM 'id'").is_err());
        Ok(())
    }

    #[test]
    fn text_and_csv_escape_like_postgres() -> Result<()> {
        let format = |sql: &str| match parse(sql) {
            Ok(Some(Copy::Out(c))) => c.format,
            _ => panic!("{sql}"),
        };
        let text = format("COPY t TO STDOUT");
        let row: Vec<Option<&[u8]>> = vec![Some(b"a\tb\\c\nd"), None, Some(b"")];
        assert_eq!(text_line(&row, &text), b"a\\tb\\\\c\\nd\t\\N\t\n");
        let csv = format("COPY t TO STDOUT (FORMAT csv)");
        let row: Vec<Option<&[u8]>> = vec![Some(b"x,y"), None, Some(b""), Some(b"say \"hi\"")];
        assert_eq!(csv_line(&row, &csv), b"\"x,y\",,\"\",\"say \"\"hi\"\"\"\n");
        Ok(())
    }

    #[test]
    fn rows_split_across_pieces() -> Result<()> {
        let f = match parse("COPY t FROM STDIN (FORMAT csv)")? {
            Some(Copy::In(c)) => c.format,
            _ => return Err(Error::internal("not a COPY FROM")),
        };
        let mut p = RowParser::new(f, 2);
        let mut rows = p.feed(b"1,\"a\nb")?;
        assert!(rows.is_empty(), "the quoted newline does not end the row");
        rows.extend(p.feed(b"\"\r\n2,\n3,\"\"")?);
        rows.extend(p.finish()?);
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), Some("a\nb".into())],
                vec![Some("2".into()), None],
                vec![Some("3".into()), Some(String::new())],
            ]
        );
        let t = match parse("COPY t FROM STDIN")? {
            Some(Copy::In(c)) => c.format,
            _ => return Err(Error::internal("not a COPY FROM")),
        };
        let mut p = RowParser::new(t, 2);
        let rows = p.feed(b"a\\tb\t\\N\n\\.\nignored\n")?;
        assert_eq!(rows, vec![vec![Some("a\tb".into()), None]]);
        assert!(RowParser::new(p.format.clone(), 3).feed(b"1\t2\n").is_err());
        Ok(())
    }
}
