//! Applying a micro-batch of whole source transactions to one target table, as one statement
//! (so one table commit) through an internal session of the subscription's owner: the same
//! planning, casts, checks and audit as a client's statement, with the batch's position
//! committed inside the same commit (`storage::commit_tag`).
//!
//! - mirror, with a key: the batch is collapsed per key in source order (the last change of a
//!   key wins; an UPDATE that changed the key deletes the old one), then one MERGE: matched
//!   rows deleted or updated, others inserted. Columns the source did not send (unchanged
//!   TOAST values) keep the target's value.
//! - mirror, without a key (REPLICA IDENTITY FULL): whole rows, counted: what the batch
//!   inserts and deletes cancels out first, then deletes by whole-row match and inserts.
//! - TRUNCATE in mirror mode: the target's current rows become deletes at that point.
//! - changelog: every change appended as a row with `_op`, `_lsn`, `_commit_time`, `_xid` and
//!   the old values (`_old`, JSON) where the source sent them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use futures::StreamExt;

use super::statement::Mode;
use crate::error::{Error, Result};
use crate::pg::names::quote;
use crate::policy::access::COPY_SOURCE_CATALOG;
use crate::session::{Outcome, Session};

/// A row as decoded: the relation's columns at the time, and the values sent (a column of
/// the relation missing here is an unchanged TOAST value).
#[derive(Debug, Clone)]
pub struct Row {
    pub columns: Arc<Vec<String>>,
    pub values: HashMap<String, Option<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    fn code(self) -> &'static str {
        match self {
            Op::Insert => "I",
            Op::Update => "U",
            Op::Delete => "D",
            Op::Truncate => "T",
        }
    }
}

/// One change of a table, with its transaction's position.
#[derive(Debug, Clone)]
pub struct Change {
    pub op: Op,
    pub new: Option<Row>,
    pub old: Option<Row>,
    pub commit_lsn: u64,
    pub commit_time: chrono::DateTime<chrono::Utc>,
    pub xid: u32,
}

/// The target table as the apply sees it: its columns and their declared types, the key.
#[derive(Debug, Clone)]
pub struct Target {
    pub schema: String,
    pub name: String,
    /// (column, PostgreSQL type for CAST) in the target's order.
    pub columns: Vec<(String, String)>,
    pub key: Vec<String>,
}

impl Target {
    fn types(&self) -> HashMap<&str, &str> {
        self.columns
            .iter()
            .map(|(c, ty)| (c.as_str(), ty.as_str()))
            .collect()
    }

    /// The column list and the cast source values of an INSERT of all its columns.
    fn insert_lists(&self) -> (String, String) {
        let cols = self
            .columns
            .iter()
            .map(|(c, _)| quote(c))
            .collect::<Vec<_>>();
        let vals = self
            .columns
            .iter()
            .map(|(c, ty)| cast(c, ty))
            .collect::<Vec<_>>();
        (cols.join(", "), vals.join(", "))
    }

    pub fn qualified(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }
}

/// The columns a changelog table has beyond the source's.
pub const CHANGELOG_COLUMNS: &[(&str, &str)] = &[
    ("_op", "text"),
    ("_lsn", "text"),
    ("_commit_time", "timestamp with time zone"),
    ("_xid", "bigint"),
    ("_old", "jsonb"),
];

/// A value of column `c` in `row`: Some(v) sent, None: unchanged (kept), and NULL for a
/// column the relation no longer has (dropped at the source).
fn value(row: &Row, c: &str) -> Option<Option<String>> {
    if !row.columns.iter().any(|x| x == c) {
        return Some(None);
    }
    row.values.get(c).cloned()
}

fn key_of(row: &Row, key: &[String]) -> Vec<Option<String>> {
    key.iter()
        .map(|k| row.values.get(k).cloned().flatten())
        .collect()
}

/// A collapsed mirror entry.
enum Entry {
    Upsert(HashMap<String, Option<String>>, HashSet<String>),
    Delete(Vec<Option<String>>),
}

/// Run `sql` in the internal session; the rows of a query, as text batches.
pub async fn run(s: &mut Session, sql: &str) -> Result<Vec<RecordBatch>> {
    let mut out = vec![];
    for r in s.execute_simple(sql, false).await {
        if let Outcome::Rows { mut stream, .. } = r? {
            while let Some(b) = stream.next().await {
                out.push(b.map_err(Error::from)?);
            }
        }
    }
    Ok(out)
}

/// How a source value's text becomes an Arrow value before the statement's CAST: arrays and
/// bytea are parsed here (PostgreSQL's array literal and hex form, which a text CAST does not
/// read), everything else stays text.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Array,
    Bytea,
}

fn kind(ty: &str) -> Kind {
    if ty.ends_with("[]") {
        Kind::Array
    } else if ty == "bytea" {
        Kind::Bytea
    } else {
        Kind::Text
    }
}

/// A one-dimensional array literal (`{a,"b c",NULL}`) as its elements.
pub fn array_elements(s: &str) -> Option<Vec<Option<String>>> {
    let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = vec![];
    if inner.trim().is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut v = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => v.push(chars.next()?),
                    '"' => break,
                    c => v.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' {
                    return None;
                }
                chars.next();
                if c == '\\' {
                    v.push(chars.next()?);
                } else {
                    v.push(c);
                }
            }
            v = v.trim_end().to_string();
        }
        out.push(if !quoted && v.eq_ignore_ascii_case("null") {
            None
        } else {
            Some(v)
        });
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(_) => return None,
        }
    }
    Some(out)
}

/// bytea's text (`\x0a1b`, or the escape form) as bytes.
fn bytea(s: &str) -> Option<Vec<u8>> {
    if let Some(hex) = s.strip_prefix("\\x") {
        let b = hex.as_bytes();
        if b.len() % 2 != 0 {
            return None;
        }
        return b
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect();
    }
    let mut out = vec![];
    let mut it = s.bytes().peekable();
    while let Some(c) = it.next() {
        if c == b'\\' {
            if it.peek() == Some(&b'\\') {
                it.next();
                out.push(b'\\');
            } else {
                let oct: Vec<u8> = (0..3).filter_map(|_| it.next()).collect();
                out.push(u8::from_str_radix(std::str::from_utf8(&oct).ok()?, 8).ok()?);
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// A source column's text as the Arrow array ahead of the cast to PostgreSQL type `ty`.
pub fn column_of(text: StringArray, ty: &str, name: &str) -> Result<(Field, ArrayRef)> {
    match kind(ty) {
        Kind::Text => Ok((Field::new(name, DataType::Utf8, true), Arc::new(text))),
        k => column(text.iter(), k, name),
    }
}

/// Text values as the Arrow array of their [`Kind`].
fn column<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    k: Kind,
    name: &str,
) -> Result<(Field, ArrayRef)> {
    use datafusion::arrow::array::{Array, BinaryArray, ListBuilder, StringBuilder};
    let bad = |v: &str| Error::Data {
        sqlstate: crate::error::SqlState::InvalidTextRepresentation,
        message: format!("malformed value for column \"{name}\": \"{v}\""),
    };
    Ok(match k {
        Kind::Text => (
            Field::new(name, DataType::Utf8, true),
            Arc::new(StringArray::from_iter(values)) as ArrayRef,
        ),
        Kind::Bytea => {
            let vals = values
                .map(|v| v.map(|v| bytea(v).ok_or_else(|| bad(v))).transpose())
                .collect::<Result<Vec<_>>>()?;
            (
                Field::new(name, DataType::Binary, true),
                Arc::new(BinaryArray::from_iter(vals)) as ArrayRef,
            )
        }
        Kind::Array => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for v in values {
                match v {
                    None => b.append(false),
                    Some(v) => {
                        for e in array_elements(v).ok_or_else(|| bad(v))? {
                            b.values().append_option(e);
                        }
                        b.append(true);
                    }
                }
            }
            let a = b.finish();
            (
                Field::new(name, a.data_type().clone(), true),
                Arc::new(a) as ArrayRef,
            )
        }
    })
}

/// The rows of a query in the internal session, each value as its text (None: NULL).
async fn text_rows(s: &mut Session, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    use datafusion::arrow::array::Array;
    let mut out = vec![];
    for b in run(s, sql).await? {
        let cols: Vec<_> = (0..b.num_columns())
            .map(|i| crate::pg::pg_text::text_array(b.column(i), &Default::default()))
            .collect::<Result<_>>()?;
        for r in 0..b.num_rows() {
            out.push(
                cols.iter()
                    .map(|c| (!c.is_null(r)).then(|| c.value(r).to_string()))
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// The source rows of a statement in the private catalog COPY uses; `types` the columns'
/// PostgreSQL types (None: text).
fn register(
    s: &Session,
    names: &[String],
    types: &HashMap<&str, &str>,
    rows: Vec<Vec<Option<String>>>,
) -> Result<()> {
    register_batch(s, batch(names, types, &rows)?)
}

/// Source rows as one batch: text columns, arrays and bytea parsed ([`Kind`]); `types` the
/// columns' PostgreSQL types (None: text).
pub fn batch(
    names: &[String],
    types: &HashMap<&str, &str>,
    rows: &[Vec<Option<String>>],
) -> Result<RecordBatch> {
    let text = (0..names.len())
        .map(|i| StringArray::from_iter(rows.iter().map(|r| r[i].as_deref())))
        .collect();
    batch_of(names, types, text)
}

/// [`batch`] of columns read as text ([`super::copy_text`]).
pub fn batch_of(
    names: &[String],
    types: &HashMap<&str, &str>,
    text: Vec<StringArray>,
) -> Result<RecordBatch> {
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = names
        .iter()
        .zip(text)
        .map(|(n, t)| column_of(t, types.get(n.as_str()).copied().unwrap_or("text"), n))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Make `batch` the source of the next statement (`s.rows` of a private catalog).
fn register_batch(s: &Session, batch: RecordBatch) -> Result<()> {
    let schema = batch.schema();
    let table = datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?;
    let catalog = datafusion::catalog::MemoryCatalogProvider::new();
    let sp = Arc::new(datafusion::catalog::MemorySchemaProvider::new());
    datafusion::catalog::SchemaProvider::register_table(
        sp.as_ref(),
        "rows".into(),
        Arc::new(table),
    )?;
    datafusion::catalog::CatalogProvider::register_schema(&catalog, "s", sp)?;
    s.context()
        .register_catalog(COPY_SOURCE_CATALOG, Arc::new(catalog));
    Ok(())
}

fn src() -> String {
    format!("{}.s.rows", quote(COPY_SOURCE_CATALOG))
}

fn cast(col: &str, ty: &str) -> String {
    format!("CAST(s.{} AS {ty})", quote(col))
}

/// Apply `changes` (in source order) to `target`; the number of rows written.
pub async fn apply(
    s: &mut Session,
    target: &Target,
    mode: Mode,
    changes: &[Change],
) -> Result<usize> {
    match mode {
        Mode::Changelog => changelog(s, target, changes).await,
        Mode::Mirror if target.key.is_empty() => whole_rows(s, target, changes).await,
        Mode::Mirror => keyed(s, target, changes).await,
    }
}

/// The batch collapsed per key in source order (the last change of a key wins), and whether
/// it truncated the table.
fn collapse(t: &Target, changes: &[Change]) -> (HashMap<Vec<Option<String>>, Entry>, bool) {
    let mut entries: HashMap<Vec<Option<String>>, Entry> = HashMap::new();
    let mut truncated = false;
    for c in changes {
        match c.op {
            Op::Truncate => {
                entries.clear();
                truncated = true;
            }
            Op::Delete => {
                if let Some(old) = &c.old {
                    let k = key_of(old, &t.key);
                    entries.insert(k.clone(), Entry::Delete(k));
                }
            }
            Op::Insert | Op::Update => {
                let Some(new) = &c.new else { continue };
                let k = key_of(new, &t.key);
                if let Some(old) = &c.old {
                    let ok = key_of(old, &t.key);
                    if ok != k {
                        entries.insert(ok.clone(), Entry::Delete(ok));
                    }
                }
                let mut values = HashMap::new();
                let mut keep = HashSet::new();
                for (col, _) in &t.columns {
                    match value(new, col) {
                        Some(v) => {
                            values.insert(col.clone(), v);
                        }
                        None => match entries.get(&k) {
                            Some(Entry::Upsert(prev, prev_keep)) if !prev_keep.contains(col) => {
                                values.insert(col.clone(), prev.get(col).cloned().flatten());
                            }
                            _ => {
                                keep.insert(col.clone());
                            }
                        },
                    }
                }
                entries.insert(k, Entry::Upsert(values, keep));
            }
        }
    }
    (entries, truncated)
}

async fn keyed(s: &mut Session, t: &Target, changes: &[Change]) -> Result<usize> {
    let (mut entries, truncated) = collapse(t, changes);
    if truncated {
        // The rows the target has now, less those the batch writes again, are deleted.
        let keys = t
            .key
            .iter()
            .map(|k| format!("CAST({} AS TEXT)", quote(k)))
            .collect::<Vec<_>>()
            .join(", ");
        for k in text_rows(s, &format!("SELECT {keys} FROM {}", t.qualified())).await? {
            entries.entry(k.clone()).or_insert(Entry::Delete(k));
        }
    }
    if entries.is_empty() {
        return Ok(0);
    }
    let mut names = vec!["__op".to_string(), "__keep".to_string()];
    names.extend(t.columns.iter().map(|(c, _)| c.clone()));
    let mut any_keep: HashSet<String> = HashSet::new();
    let mut rows = Vec::with_capacity(entries.len());
    for (k, e) in entries {
        let mut row: Vec<Option<String>> = Vec::with_capacity(names.len());
        match e {
            Entry::Delete(key) => {
                row.push(Some("D".into()));
                row.push(None);
                for (c, _) in &t.columns {
                    row.push(
                        t.key
                            .iter()
                            .position(|x| x == c)
                            .and_then(|i| key.get(i).cloned().flatten()),
                    );
                }
            }
            Entry::Upsert(values, keep) => {
                let _ = k;
                row.push(Some("U".into()));
                row.push((!keep.is_empty()).then(|| {
                    let mut v: Vec<&str> = keep.iter().map(String::as_str).collect();
                    v.sort();
                    format!(",{},", v.join(","))
                }));
                any_keep.extend(keep.iter().cloned());
                for (c, _) in &t.columns {
                    row.push(values.get(c).cloned().flatten());
                }
            }
        }
        rows.push(row);
    }
    let n = rows.len();
    let types = t.types();
    register(s, &names, &types, rows)?;
    let on = t
        .key
        .iter()
        .map(|k| {
            let ty = t
                .columns
                .iter()
                .find(|(c, _)| c == k)
                .map(|(_, ty)| ty.as_str())
                .unwrap_or("text");
            format!("t.{} = {}", quote(k), cast(k, ty))
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let set = t
        .columns
        .iter()
        .filter(|(c, _)| !t.key.contains(c))
        .map(|(c, ty)| {
            if any_keep.contains(c) {
                format!(
                    "{q} = CASE WHEN s.\"__keep\" LIKE '%,{lit},%' THEN t.{q} ELSE {v} END",
                    q = quote(c),
                    lit = c.replace('\'', "''"),
                    v = cast(c, ty)
                )
            } else {
                format!("{} = {}", quote(c), cast(c, ty))
            }
        })
        .collect::<Vec<_>>();
    let (cols, vals) = t.insert_lists();
    let update = if set.is_empty() {
        String::new()
    } else {
        format!(" WHEN MATCHED THEN UPDATE SET {}", set.join(", "))
    };
    let sql = format!(
        "MERGE INTO {} AS t USING {} AS s ON {on} \
         WHEN MATCHED AND s.\"__op\" = 'D' THEN DELETE{update} \
         WHEN NOT MATCHED AND s.\"__op\" = 'U' THEN INSERT ({cols}) VALUES ({vals})",
        t.qualified(),
        src()
    );
    run(s, &sql).await?;
    Ok(n)
}

/// Per distinct row (whole-row identity): rows are counted, in first-seen order.
type Counted = (
    HashMap<Vec<Option<String>>, (i64, bool)>,
    Vec<Vec<Option<String>>>,
    bool,
);

fn count(t: &Target, changes: &[Change]) -> Counted {
    let full = |r: &Row| -> Vec<Option<String>> {
        t.columns
            .iter()
            .map(|(c, _)| value(r, c).flatten())
            .collect()
    };
    // Per distinct row: how many the batch adds (inserts less deletes), and whether it
    // deleted any (then the target's copies are deleted and the right number written again).
    let mut net: HashMap<Vec<Option<String>>, (i64, bool)> = HashMap::new();
    let mut order: Vec<Vec<Option<String>>> = vec![];
    let mut truncated = false;
    for c in changes {
        let mut bump = |r: Vec<Option<String>>, d: i64| {
            let e = net.entry(r.clone()).or_insert_with(|| {
                order.push(r);
                (0, false)
            });
            e.0 += d;
            e.1 |= d < 0;
        };
        match c.op {
            Op::Truncate => {
                net.clear();
                order.clear();
                truncated = true;
            }
            Op::Insert | Op::Update | Op::Delete => {
                if let Some(o) = &c.old {
                    bump(full(o), -1);
                }
                if let Some(n) = c.new.as_ref().filter(|_| c.op != Op::Delete) {
                    bump(full(n), 1);
                }
            }
        }
    }
    (net, order, truncated)
}

async fn whole_rows(s: &mut Session, t: &Target, changes: &[Change]) -> Result<usize> {
    let (net, order, truncated) = count(t, changes);
    let all = t
        .columns
        .iter()
        .map(|(c, _)| format!("CAST({} AS TEXT)", quote(c)))
        .collect::<Vec<_>>()
        .join(", ");
    // The target's copies of each row (all of them, when the batch truncated the table).
    let mut have: HashMap<Vec<Option<String>>, i64> = HashMap::new();
    if truncated || net.values().any(|(_, deleted)| *deleted) {
        let sql = format!(
            "SELECT {all}, count(*) FROM {} GROUP BY {all}",
            t.qualified()
        );
        for mut row in text_rows(s, &sql).await? {
            let count = row
                .pop()
                .flatten()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            have.insert(row, count);
        }
    }
    let mut rows = vec![];
    let mut with_op = |op: &str, r: &[Option<String>]| {
        let mut row = vec![Some(op.to_string())];
        row.extend(r.iter().cloned());
        rows.push(row);
    };
    if truncated {
        for r in have.keys() {
            if !net.contains_key(r) {
                with_op("D", r);
            }
        }
    }
    for r in order {
        let (n, deleted) = net.get(&r).copied().unwrap_or((0, false));
        let copies = if deleted || truncated {
            if have.contains_key(&r) {
                with_op("D", &r);
            }
            let base = if truncated {
                0
            } else {
                have.get(&r).copied().unwrap_or(0)
            };
            base + n
        } else {
            n
        };
        for _ in 0..copies.max(0) {
            with_op("U", &r);
        }
    }
    if rows.is_empty() {
        return Ok(0);
    }
    let n = rows.len();
    let mut names = vec!["__op".to_string()];
    names.extend(t.columns.iter().map(|(c, _)| c.clone()));
    let types = t.types();
    register(s, &names, &types, rows)?;
    let on = t
        .columns
        .iter()
        .map(|(c, ty)| format!("(t.{} IS NOT DISTINCT FROM {})", quote(c), cast(c, ty)))
        .chain(std::iter::once("s.\"__op\" = 'D'".to_string()))
        .collect::<Vec<_>>()
        .join(" AND ");
    let (cols, vals) = t.insert_lists();
    let sql = format!(
        "MERGE INTO {} AS t USING {} AS s ON {on} WHEN MATCHED THEN DELETE \
         WHEN NOT MATCHED AND s.\"__op\" = 'U' THEN INSERT ({cols}) VALUES ({vals})",
        t.qualified(),
        src()
    );
    run(s, &sql).await?;
    Ok(n)
}

/// Insert rows (the initial copy): `columns` the source's, in its order.
pub async fn insert(
    s: &mut Session,
    t: &Target,
    columns: &[String],
    rows: Vec<Vec<Option<String>>>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    insert_batch(s, t, batch(columns, &t.types(), &rows)?).await
}

/// INSERT the rows of `batch` (made by [`batch`] for `t`'s types) into `t`.
pub async fn insert_batch(s: &mut Session, t: &Target, batch: RecordBatch) -> Result<()> {
    let columns: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let types = t.types();
    register_batch(s, batch)?;
    let cols = columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let vals = columns
        .iter()
        .map(|c| cast(c, types.get(c.as_str()).copied().unwrap_or("text")))
        .collect::<Vec<_>>()
        .join(", ");
    run(
        s,
        &format!(
            "INSERT INTO {} ({cols}) SELECT {vals} FROM {} AS s",
            t.qualified(),
            src()
        ),
    )
    .await?;
    Ok(())
}

async fn changelog(s: &mut Session, t: &Target, changes: &[Change]) -> Result<usize> {
    let data: Vec<&(String, String)> = t
        .columns
        .iter()
        .filter(|(c, _)| !CHANGELOG_COLUMNS.iter().any(|(x, _)| x == c))
        .collect();
    let mut names: Vec<String> = data.iter().map(|(c, _)| c.clone()).collect();
    names.extend(CHANGELOG_COLUMNS.iter().map(|(c, _)| c.to_string()));
    let mut rows = Vec::with_capacity(changes.len());
    for c in changes {
        let row_of = c.new.as_ref().or(c.old.as_ref());
        let mut row: Vec<Option<String>> = data
            .iter()
            .map(|(col, _)| row_of.and_then(|r| value(r, col).flatten()))
            .collect();
        let old = c.old.as_ref().map(|o| {
            let m: serde_json::Map<String, serde_json::Value> = o
                .values
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.clone()
                            .map(serde_json::Value::String)
                            .unwrap_or(serde_json::Value::Null),
                    )
                })
                .collect();
            serde_json::Value::Object(m).to_string()
        });
        row.push(Some(c.op.code().into()));
        row.push(Some(super::source::lsn_text(c.commit_lsn)));
        row.push(Some(c.commit_time.to_rfc3339()));
        row.push(Some(c.xid.to_string()));
        row.push(old);
        rows.push(row);
    }
    if rows.is_empty() {
        return Ok(0);
    }
    let n = rows.len();
    let types: HashMap<&str, &str> = t
        .columns
        .iter()
        .map(|(c, ty)| (c.as_str(), ty.as_str()))
        .chain(CHANGELOG_COLUMNS.iter().copied())
        .collect();
    register(s, &names, &types, rows)?;
    let cols = names
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let vals = names
        .iter()
        .map(|c| cast(c, types.get(c.as_str()).copied().unwrap_or("text")))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {} ({cols}) SELECT {vals} FROM {} AS s",
        t.qualified(),
        src()
    );
    run(s, &sql).await?;
    Ok(n)
}
