//! One subscription at work: target tables made, the initial copy of each table that has no
//! position yet, then the stream, applied in micro-batches of whole transactions.
//!
//! Positions: each target table's Delta log holds the end LSN of the last source transaction
//! it contains (`txn` action, app id `lakegate-cdc:<slot>`). On start every table skips what
//! it already has; a table with no position is copied first, in the snapshot of a temporary
//! slot, and its position is that snapshot's LSN. The slot is told a flush LSN only once every
//! table has committed the batch that ends there, so the source keeps the WAL still needed.
//!
//! The replication connection (pg_walstream) does blocking I/O: it runs on a thread of its own
//! and sends what it decodes over a bounded channel (so a slow apply slows the reading).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use pg_walstream::{CancellationToken, ChangeEvent, EventType, SharedLsnFeedback};
use tokio::sync::mpsc;

use super::Status;
use super::apply::{self, Change, Op, Row, Target};
use super::source::{self, SourceTable};
use super::statement::{Definition, Mode};
use crate::config::TableFormat;
use crate::error::{Error, Result};
use crate::pg::names::quote;
use crate::session::{Engine, Session};

/// Rows per statement of an initial copy.
const COPY_CHUNK: usize = 100_000;
/// The initial copy's reader error when its parser has stopped.
const PARSER_STOPPED: &str = "the copy's parser stopped";

/// What the reading thread sends.
enum Msg {
    Connected,
    Event(Box<ChangeEvent>),
    Lost(String),
}

/// A source transaction received whole.
struct Txn {
    xid: u32,
    end_lsn: u64,
    commit_time: chrono::DateTime<chrono::Utc>,
    changes: Vec<(String, Change)>,
}

pub struct Worker {
    pub def: Definition,
    pub engine: Arc<Engine>,
    pub status: Arc<Mutex<Status>>,
    pub stop: CancellationToken,
}

fn set<F: FnOnce(&mut Status)>(status: &Mutex<Status>, f: F) {
    f(&mut status.lock().unwrap_or_else(|p| p.into_inner()));
}

impl Worker {
    /// Run until stopped: every failure shows in the status and is retried with backoff.
    pub async fn run(self) {
        let mut delay = Duration::from_millis(500);
        loop {
            let started = Instant::now();
            let r = self.run_once().await;
            if self.stop.is_cancelled() {
                set(&self.status, |s| s.state = "stopped".into());
                return;
            }
            if let Err(e) = r {
                let msg = crate::policy::audit::redact_message(&e.to_string());
                tracing::warn!(subscription = %self.def.name, error = %msg, "subscription failed; retrying");
                set(&self.status, |s| {
                    s.state = "error".into();
                    s.last_error = Some(e.to_string());
                });
            }
            if started.elapsed() > Duration::from_secs(30) {
                delay = Duration::from_millis(500);
            }
            tokio::select! {
                _ = self.stop.cancelled() => {
                    set(&self.status, |s| s.state = "stopped".into());
                    return;
                }
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    fn session(&self) -> Session {
        let mut s = Session::new(self.engine.clone(), &self.def.owner, None, 0);
        s.set_client(format!("subscription {}", self.def.name));
        s
    }

    fn target_schema(&self, t: &SourceTable) -> String {
        self.def
            .target_schema
            .clone()
            .unwrap_or_else(|| t.schema.clone())
    }

    /// Make the target table (and schema) when missing; add the source's new columns and
    /// widen changed ones (a change that is not a widening pauses the table). The target as
    /// the apply sees it.
    async fn reconcile(&self, s: &mut Session, t: &SourceTable) -> Result<Target> {
        let schema = self.target_schema(t);
        let qualified = format!("{}.{}", quote(&schema), quote(&t.name));
        let catalog = self.engine.planner.catalog().clone();
        if !catalog.schema_exists(&schema) {
            apply::run(
                s,
                &format!("CREATE SCHEMA IF NOT EXISTS {}", quote(&schema)),
            )
            .await?;
        }
        let mut wanted: Vec<(String, String)> = t
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.pg_type.clone()))
            .collect();
        if self.def.mode == Mode::Changelog {
            wanted.extend(
                apply::CHANGELOG_COLUMNS
                    .iter()
                    .map(|(c, ty)| (c.to_string(), ty.to_string())),
            );
        }
        let existing = match catalog.relation(&schema, &t.name) {
            Some(crate::catalog::Relation::Table(e)) => {
                Some(catalog.table_provider(&e).await?.schema())
            }
            Some(_) => {
                return Err(Error::DuplicateTable(format!(
                    "\"{schema}.{}\" exists and is not a table",
                    t.name
                )));
            }
            None => None,
        };
        let Some(existing) = existing else {
            let mut cols: Vec<String> = wanted
                .iter()
                .map(|(c, ty)| format!("{} {ty}", quote(c)))
                .collect();
            if self.def.mode == Mode::Mirror && !t.key.is_empty() {
                cols.push(format!(
                    "PRIMARY KEY ({})",
                    t.key
                        .iter()
                        .map(|k| quote(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let using = self.def.using();
            apply::run(
                s,
                &format!("CREATE TABLE {qualified} ({}){using}", cols.join(", ")),
            )
            .await?;
            return Ok(Target {
                schema,
                name: t.name.clone(),
                columns: wanted,
                key: self.key(t),
            });
        };
        let mut columns = vec![];
        for f in existing.fields() {
            let declared = crate::pg::types::field_pg_type(f).map(str::to_string);
            let source = wanted.iter().find(|(c, _)| c == f.name());
            let ty = match (source, declared) {
                (Some((_, want)), Some(have)) if !same_type(want, &have) => {
                    let sql = format!(
                        "ALTER TABLE {qualified} ALTER COLUMN {} TYPE {want}",
                        quote(f.name())
                    );
                    apply::run(s, &sql).await.map_err(|e| {
                        Error::Unsupported(format!(
                            "column \"{}\" changed type at the source from {have} to {want}, which the target cannot follow: {e}",
                            f.name()
                        ))
                    })?;
                    want.clone()
                }
                (Some((_, want)), _) => want.clone(),
                (None, Some(have)) => {
                    if self.def.mode == Mode::Mirror {
                        set(&self.status, |st| {
                            let n = format!(
                                "column \"{}\" of {} is no longer at the source: it receives NULL",
                                f.name(),
                                t.qualified()
                            );
                            if !st.notices.contains(&n) {
                                st.notices.push(n);
                            }
                        });
                    }
                    have
                }
                (None, None) => "text".into(),
            };
            columns.push((f.name().clone(), ty));
        }
        for (c, ty) in &wanted {
            if existing.field_with_name(c).is_err() {
                apply::run(
                    s,
                    &format!("ALTER TABLE {qualified} ADD COLUMN {} {ty}", quote(c)),
                )
                .await?;
                columns.push((c.clone(), ty.clone()));
            }
        }
        Ok(Target {
            schema,
            name: t.name.clone(),
            columns,
            key: self.key(t),
        })
    }

    fn key(&self, t: &SourceTable) -> Vec<String> {
        if self.def.mode == Mode::Changelog {
            vec![]
        } else {
            t.key.clone()
        }
    }

    /// Commit the position alone (a table with nothing to write).
    async fn mark(&self, target: &Target, lsn: u64) -> Result<()> {
        let catalog = self.engine.planner.catalog().clone();
        let Some(crate::catalog::Relation::Table(e)) =
            catalog.relation(&target.schema, &target.name)
        else {
            return Err(Error::UndefinedTable(format!(
                "relation \"{}.{}\" does not exist",
                target.schema, target.name
            )));
        };
        let app = self.def.app_id();
        if e.format == TableFormat::Iceberg {
            let (ns, name) = catalog.iceberg_ident(&e)?;
            return catalog
                .iceberg()
                .await?
                .mark(ns, name, &app, lsn as i64)
                .await;
        }
        let table = catalog.delta_table(&e).await?;
        crate::storage::commit_tag::mark(&table, &app, lsn as i64).await
    }

    /// The position committed in the target table (None: none).
    async fn position(&self, target: &Target) -> Result<Option<u64>> {
        let catalog = self.engine.planner.catalog().clone();
        let Some(crate::catalog::Relation::Table(e)) =
            catalog.relation(&target.schema, &target.name)
        else {
            return Ok(None);
        };
        let app = self.def.app_id();
        let v = if e.format == TableFormat::Iceberg {
            let (ns, name) = catalog.iceberg_ident(&e)?;
            catalog.iceberg().await?.position(ns, name, &app).await?
        } else {
            let table = catalog.delta_table(&e).await?;
            crate::storage::commit_tag::version(&table, &app).await?
        };
        Ok(v.map(|v| u64::try_from(v).unwrap_or(0)))
    }

    /// Empty the target before its initial copy (one cut short left rows without a
    /// position): TRUNCATE, or for an Iceberg target (appends only) drop and create it again.
    async fn empty(&self, s: &mut Session, t: &SourceTable, target: &Target) -> Result<()> {
        let q = target.qualified();
        if self.def.format != TableFormat::Iceberg {
            apply::run(s, &format!("TRUNCATE {q}")).await?;
            return Ok(());
        }
        let any = apply::run(s, &format!("SELECT 1 FROM {q} LIMIT 1")).await?;
        if any.iter().any(|b| b.num_rows() > 0) {
            apply::run(s, &format!("DROP TABLE {q}")).await?;
            self.reconcile(s, t).await?;
        }
        Ok(())
    }

    async fn run_once(&self) -> Result<()> {
        set(&self.status, |s| {
            s.state = "connecting".into();
        });
        let client = source::connect(&self.def).await?;
        source::ensure_slot(&client, &self.def.slot_name, true).await?;
        let tables = source::tables(&client, &self.def.publications).await?;
        let mut s = self.session();
        let mut targets: HashMap<String, Target> = HashMap::new();
        let mut positions: HashMap<String, u64> = HashMap::new();
        let mut paused: HashMap<String, String> = HashMap::new();
        for t in &tables {
            let q = t.qualified();
            match self.reconcile(&mut s, t).await {
                Ok(target) => {
                    let pos = self.position(&target).await?;
                    set(&self.status, |st| {
                        let e = st.tables.entry(q.clone()).or_default();
                        e.target = format!("{}.{}", target.schema, target.name);
                        e.lsn = pos.unwrap_or(0);
                        e.state = if pos.is_some() || !self.def.copy_data {
                            "streaming".into()
                        } else {
                            "copying".into()
                        };
                        e.last_error = None;
                    });
                    if let Some(p) = pos {
                        positions.insert(q.clone(), p);
                    } else if self.def.copy_data {
                        let p = self.copy(&client, &mut s, t, &target).await?;
                        positions.insert(q.clone(), p);
                    } else {
                        positions.insert(q.clone(), 0);
                    }
                    targets.insert(q, target);
                }
                Err(e) => {
                    set(&self.status, |st| {
                        let e2 = st.tables.entry(q.clone()).or_default();
                        e2.state = "paused".into();
                        e2.last_error = Some(e.to_string());
                    });
                    paused.insert(q, e.to_string());
                }
            }
        }
        set(&self.status, |st| {
            st.tables
                .retain(|k, _| tables.iter().any(|t| t.qualified() == *k));
            for (k, e) in st.tables.iter_mut() {
                if !paused.contains_key(k) {
                    e.state = "streaming".into();
                }
            }
        });
        drop(client);
        self.stream(
            s,
            Tables {
                targets,
                positions,
                paused,
            },
        )
        .await
    }

    /// Copy one table in the snapshot of a temporary slot; its position.
    async fn copy(
        &self,
        client: &tokio_postgres::Client,
        s: &mut Session,
        t: &SourceTable,
        target: &Target,
    ) -> Result<u64> {
        let snapshot = source::export_snapshot(&self.def, client).await?;
        let q = t.qualified();
        self.empty(s, t, target).await?;
        let columns: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        let lsn = snapshot.lsn;
        // Three stages that overlap: the source is read on a task of its own, its text parsed
        // into batches on a blocking thread, and the batches written here as they come, in
        // statements of COPY_CHUNK rows, the last one carrying the snapshot's position (a copy
        // cut short leaves the table without a position, so it is copied again).
        let (tx, rx) = mpsc::channel::<bytes::Bytes>(16);
        let (def, table) = (self.def.clone(), t.clone());
        let reader = tokio::spawn(async move {
            let r = source::copy_table(&def, &snapshot, &table, |chunk| {
                let tx = tx.clone();
                async move {
                    tx.send(chunk)
                        .await
                        .map_err(|_| Error::internal(PARSER_STOPPED))
                }
            })
            .await;
            drop(snapshot);
            r
        });
        let (btx, mut brx) = mpsc::channel::<RecordBatch>(1);
        let types: HashMap<String, String> = target.columns.iter().cloned().collect();
        let parser = tokio::task::spawn_blocking(move || parse_copy(rx, btx, &columns, &types));
        let mut pending: Option<RecordBatch> = None;
        let mut copied = 0u64;
        let r: Result<()> = async {
            while let Some(b) = brx.recv().await {
                if let Some(prev) = pending.replace(b) {
                    copied += prev.num_rows() as u64;
                    apply::insert_batch(s, target, prev).await?;
                    set(&self.status, |st| {
                        st.tables.entry(q.clone()).or_default().rows_copied = copied
                    });
                }
            }
            let joined = |what: &str, done: std::result::Result<Result<()>, _>| match done {
                Ok(r) => r,
                Err(e) => Err(Error::internal(format!("the copy's {what} failed: {e}"))),
            };
            let (read, parsed) = (
                joined("reader", reader.await),
                joined("parser", parser.await),
            );
            // The parser stops the reader when it fails (and a reader cut short can leave the
            // parser a partial row): the reader's error first unless it is the parser's stop.
            match (read, parsed) {
                (Err(e), _) if !e.to_string().contains(PARSER_STOPPED) => return Err(e),
                (_, Err(e)) | (Err(e), _) => return Err(e),
                _ => {}
            }
            match pending.take() {
                None => self.mark(target, lsn).await?,
                Some(last) => {
                    copied += last.num_rows() as u64;
                    crate::storage::commit_tag::scope(
                        self.def.app_id(),
                        lsn as i64,
                        apply::insert_batch(s, target, last),
                    )
                    .await?
                }
            }
            set(&self.status, |st| {
                st.tables.entry(q.clone()).or_default().rows_copied = copied
            });
            Ok(())
        }
        .await;
        r?;
        set(&self.status, |st| {
            let e = st.tables.entry(q).or_default();
            e.lsn = lsn;
            e.state = "streaming".into();
        });
        Ok(lsn)
    }
}

/// The copy's parser (on a blocking thread): COPY text from `rx` into batches of COPY_CHUNK
/// rows (the last one shorter) sent to `tx`.
fn parse_copy(
    mut rx: mpsc::Receiver<bytes::Bytes>,
    tx: mpsc::Sender<RecordBatch>,
    columns: &[String],
    types: &HashMap<String, String>,
) -> Result<()> {
    let types: HashMap<&str, &str> = types
        .iter()
        .map(|(c, t)| (c.as_str(), t.as_str()))
        .collect();
    let mut text = super::copy_text::TextColumns::new(columns.len());
    let send = |text: &mut super::copy_text::TextColumns| -> Result<()> {
        let b = apply::batch_of(columns, &types, text.take())?;
        tx.blocking_send(b)
            .map_err(|_| Error::internal("the copy's writer stopped"))
    };
    while let Some(chunk) = rx.blocking_recv() {
        text.feed(&chunk)?;
        if text.rows() >= COPY_CHUNK {
            send(&mut text)?;
        }
    }
    text.finish()?;
    if text.rows() > 0 {
        send(&mut text)?;
    }
    Ok(())
}

/// Whether two spellings name the same base type (`varchar` and `character varying(10)`,
/// `int4` and `integer`); type modifiers are not compared (the target keeps its own).
fn same_type(a: &str, b: &str) -> bool {
    fn base(s: &str) -> String {
        let s = s.to_ascii_lowercase();
        let array = s.ends_with("[]");
        let head = s.split(['(', '[']).next().unwrap_or("").trim().to_string();
        let name = match head.as_str() {
            "int4" | "int" => "integer",
            "int8" => "bigint",
            "int2" => "smallint",
            "bool" => "boolean",
            "float8" => "double precision",
            "float4" => "real",
            "varchar" => "character varying",
            "char" | "bpchar" => "character",
            "timestamptz" => "timestamp with time zone",
            "timestamp" => "timestamp without time zone",
            "decimal" => "numeric",
            other => other,
        };
        format!("{name}{}", if array { "[]" } else { "" })
    }
    base(a) == base(b)
}

/// What the stream has received and not yet applied, and what it knows of the relations.
#[derive(Default)]
struct Pending {
    /// The transaction being received.
    open: Option<Txn>,
    /// Whole transactions not yet applied, and their changes.
    batch: Vec<Txn>,
    rows: usize,
    first_at: Option<Instant>,
    /// Each relation's columns (by oid) and layout (by name) as last described.
    relations: HashMap<u32, Arc<Vec<String>>>,
    layouts: HashMap<String, Vec<(String, u32, i32)>>,
    /// Tables whose layout changed since the last batch was applied.
    changed: Vec<String>,
}

/// The tables of the stream: targets, positions, and the paused ones with their reason.
struct Tables {
    targets: HashMap<String, Target>,
    positions: HashMap<String, u64>,
    paused: HashMap<String, String>,
}

impl Pending {
    /// Take a decoded event; true when the batch is complete (a commit reached `max_rows`).
    fn take(&mut self, ev: ChangeEvent, status: &Mutex<Status>, max_rows: usize) -> bool {
        match ev.event_type {
            EventType::Relation {
                namespace,
                relation_name,
                columns,
                relation_id,
                ..
            } => {
                let q = format!("{namespace}.{relation_name}");
                let layout: Vec<(String, u32, i32)> = columns
                    .iter()
                    .map(|c| (c.name.to_string(), c.type_id, c.type_modifier))
                    .collect();
                self.relations.insert(
                    relation_id,
                    Arc::new(columns.iter().map(|c| c.name.to_string()).collect()),
                );
                if self.layouts.get(&q).is_some_and(|l| *l != layout) && !self.changed.contains(&q)
                {
                    self.changed.push(q.clone());
                }
                self.layouts.insert(q, layout);
            }
            EventType::Begin {
                transaction_id,
                commit_timestamp,
                ..
            } => {
                self.open = Some(Txn {
                    xid: transaction_id,
                    end_lsn: 0,
                    commit_time: commit_timestamp,
                    changes: vec![],
                });
            }
            EventType::Insert {
                schema,
                table,
                relation_oid,
                data,
            } => self.push(&schema, &table, relation_oid, Op::Insert, Some(data), None),
            EventType::Update {
                schema,
                table,
                relation_oid,
                old_data,
                new_data,
                ..
            } => self.push(
                &schema,
                &table,
                relation_oid,
                Op::Update,
                Some(new_data),
                old_data,
            ),
            EventType::Delete {
                schema,
                table,
                relation_oid,
                old_data,
                ..
            } => self.push(
                &schema,
                &table,
                relation_oid,
                Op::Delete,
                None,
                Some(old_data),
            ),
            EventType::Truncate { tables, .. } => {
                if let Some(o) = self.open.as_mut() {
                    for t in tables {
                        let c = change(Op::Truncate, None, None, o);
                        o.changes.push((t.to_string(), c));
                    }
                }
            }
            EventType::Commit {
                commit_timestamp,
                end_lsn,
                commit_lsn,
            } => {
                let Some(mut t) = self.open.take() else {
                    return false;
                };
                t.end_lsn = end_lsn.value();
                t.commit_time = commit_timestamp;
                for (_, c) in t.changes.iter_mut() {
                    c.commit_lsn = commit_lsn.value();
                    c.commit_time = commit_timestamp;
                }
                self.rows += t.changes.len();
                set(status, |st| {
                    st.latest_end_lsn = t.end_lsn;
                    st.latest_end_time = Some(commit_timestamp);
                });
                self.batch.push(t);
                self.first_at.get_or_insert_with(Instant::now);
                return self.rows >= max_rows;
            }
            _ => {}
        }
        false
    }

    fn push(
        &mut self,
        schema: &str,
        table: &str,
        oid: u32,
        op: Op,
        new: Option<pg_walstream::RowData>,
        old: Option<pg_walstream::RowData>,
    ) {
        let Some(o) = self.open.as_mut() else { return };
        let columns = self.relations.get(&oid).cloned().unwrap_or_else(|| {
            Arc::new(
                new.as_ref()
                    .or(old.as_ref())
                    .map(|d| d.iter().map(|(k, _)| k.to_string()).collect())
                    .unwrap_or_default(),
            )
        });
        let new = new.map(|d| row(&d, columns.clone()));
        let old = old.map(|d| row(&d, columns.clone()));
        let c = change(op, new, old, o);
        o.changes.push((format!("{schema}.{table}"), c));
    }

    /// What was received and not applied is dropped: it comes again after a reconnection.
    fn forget(&mut self) {
        self.open = None;
        self.batch.clear();
        self.rows = 0;
        self.first_at = None;
    }
}

impl Worker {
    /// Stream from the slot and apply, until stopped or the connection fails.
    async fn stream(&self, mut s: Session, mut tables: Tables) -> Result<()> {
        let feedback = SharedLsnFeedback::new_shared();
        let (tx, mut rx) = mpsc::channel::<Msg>(1024);
        let reading = CancellationToken::new();
        let _reader = ReaderGuard(reading.clone());
        spawn_reader(&self.def, feedback.clone(), tx, reading.clone())?;
        let mut pending = Pending::default();
        let latency = Duration::from_millis(self.def.max_latency_ms);
        loop {
            let deadline = pending.first_at.map(|f| f + latency);
            let msg = tokio::select! {
                biased;
                _ = self.stop.cancelled() => None,
                m = rx.recv() => Some(m),
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                } => Some(None),
            };
            let full = match msg {
                // Stopping: the batch of whole transactions received is applied first.
                None => {
                    self.flush(&mut s, &mut tables, &mut pending, &feedback)
                        .await;
                    return Ok(());
                }
                Some(None) => true,
                Some(Some(Msg::Connected)) => {
                    set(&self.status, |st| {
                        st.state = "streaming".into();
                        st.last_error = None;
                    });
                    false
                }
                Some(Some(Msg::Lost(e))) => {
                    pending.forget();
                    set(&self.status, |st| {
                        st.state = "reconnecting".into();
                        st.last_error = Some(e);
                    });
                    false
                }
                Some(Some(Msg::Event(ev))) => {
                    let lsn = ev.lsn.value();
                    set(&self.status, |st| {
                        st.received_lsn = st.received_lsn.max(lsn);
                        st.last_msg_time = Some(chrono::Utc::now());
                    });
                    pending.take(*ev, &self.status, self.def.max_rows)
                }
            };
            if full {
                self.flush(&mut s, &mut tables, &mut pending, &feedback)
                    .await;
            }
        }
    }

    /// Apply the batch: per table one statement carrying the batch's end position; then tell
    /// the slot, when every table has it.
    async fn flush(
        &self,
        s: &mut Session,
        tables: &mut Tables,
        pending: &mut Pending,
        feedback: &SharedLsnFeedback,
    ) {
        let batch = std::mem::take(&mut pending.batch);
        pending.rows = 0;
        pending.first_at = None;
        let Some(end) = batch.last().map(|t| t.end_lsn) else {
            return;
        };
        let last_time = batch.last().map(|t| t.commit_time);
        // Schema changes seen in this batch: the targets follow before rows are written.
        for q in std::mem::take(&mut pending.changed) {
            let Some((sch, name)) = q.split_once('.') else {
                continue;
            };
            let r = async {
                let client = source::connect(&self.def).await?;
                let t = source::table(&client, sch, name).await?;
                self.reconcile(s, &t).await
            }
            .await;
            match r {
                Ok(t) => {
                    tables.targets.insert(q, t);
                }
                Err(e) => {
                    tables.paused.insert(q, e.to_string());
                }
            }
        }
        let mut per_table: BTreeMap<String, Vec<Change>> = BTreeMap::new();
        for t in &batch {
            for (q, c) in &t.changes {
                if tables.positions.get(q).is_none_or(|p| t.end_lsn > *p) {
                    per_table.entry(q.clone()).or_default().push(c.clone());
                }
            }
        }
        for (q, changes) in per_table {
            let r = match (tables.paused.get(&q), tables.targets.get(&q)) {
                (Some(why), _) => Err(why.clone()),
                (None, None) => continue,
                (None, Some(target)) => crate::storage::commit_tag::scope(
                    self.def.app_id(),
                    end as i64,
                    apply::apply(s, target, self.def.mode, &changes),
                )
                .await
                .map_err(|e| e.to_string()),
            };
            match r {
                Ok(n) => {
                    tables.positions.insert(q.clone(), end);
                    set(&self.status, |st| {
                        let e = st.tables.entry(q.clone()).or_default();
                        e.lsn = end;
                        e.commit_time = last_time;
                        e.rows_applied += n as u64;
                        e.state = "streaming".into();
                        e.last_error = None;
                    });
                }
                Err(msg) => {
                    if !tables.paused.contains_key(&q) {
                        tracing::warn!(subscription = %self.def.name, table = %q, error = %crate::policy::audit::redact_message(&msg), "applying changes failed; the table is paused");
                    }
                    tables.paused.insert(q.clone(), msg.clone());
                    set(&self.status, |st| {
                        let e = st.tables.entry(q.clone()).or_default();
                        e.state = "paused".into();
                        e.last_error = Some(msg);
                    });
                }
            }
        }
        // Every table not paused has the batch: the slot may let the WAL before it go.
        if tables.paused.is_empty() {
            feedback.update_applied_lsn(end);
            feedback.update_flushed_lsn(end);
            set(&self.status, |st| st.flushed_lsn = end);
        }
    }
}

fn change(op: Op, new: Option<Row>, old: Option<Row>, t: &Txn) -> Change {
    Change {
        op,
        new,
        old,
        commit_lsn: 0,
        commit_time: t.commit_time,
        xid: t.xid,
    }
}

fn row(data: &pg_walstream::RowData, columns: Arc<Vec<String>>) -> Row {
    Row {
        columns,
        values: data
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    pg_walstream::ColumnValue::Null => None,
                    pg_walstream::ColumnValue::Text(b) | pg_walstream::ColumnValue::Binary(b) => {
                        Some(String::from_utf8_lossy(b).into_owned())
                    }
                };
                (k.to_string(), v)
            })
            .collect(),
    }
}

/// Stops the reading thread when the stream ends.
struct ReaderGuard(CancellationToken);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The reading thread: connect, START_REPLICATION from the slot's confirmed position, send
/// what is decoded; on a failure say so and connect again (with backoff) until cancelled.
fn spawn_reader(
    def: &Definition,
    feedback: Arc<SharedLsnFeedback>,
    tx: mpsc::Sender<Msg>,
    cancel: CancellationToken,
) -> Result<()> {
    let conn = format!("{} replication=database", def.connection_string()?);
    let slot = def.slot_name.clone();
    let publications = def.publications.join("\",\"");
    std::thread::Builder::new()
        .name(format!("lakegate-cdc-{}", def.name))
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                let _ =
                    tx.blocking_send(Msg::Lost("could not start the replication runtime".into()));
                return;
            };
            rt.block_on(async move {
                let mut delay = Duration::from_millis(200);
                while !cancel.is_cancelled() {
                    let r = read(&conn, &slot, &publications, &feedback, &tx, &cancel).await;
                    if cancel.is_cancelled() || tx.is_closed() {
                        return;
                    }
                    let msg = match r {
                        Ok(()) => "the replication stream ended".to_string(),
                        Err(e) => format!("replication connection lost: {e}"),
                    };
                    if tx.send(Msg::Lost(msg)).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            });
        })
        .map_err(|e| Error::internal(format!("could not start a thread: {e}")))?;
    Ok(())
}

async fn read(
    conn: &str,
    slot: &str,
    publications: &str,
    feedback: &Arc<SharedLsnFeedback>,
    tx: &mpsc::Sender<Msg>,
    cancel: &CancellationToken,
) -> std::result::Result<(), String> {
    let config =
        pg_walstream::ReplicationStreamConfig::builder(slot.to_string(), publications.to_string())
            .with_protocol_version(1)
            .with_streaming_mode(pg_walstream::StreamingMode::Off)
            .with_feedback_interval(Duration::from_secs(1))
            .with_connection_timeout(Duration::from_secs(10))
            .with_retry_config(pg_walstream::RetryConfig {
                max_attempts: 1,
                ..Default::default()
            });
    let mut stream = pg_walstream::LogicalReplicationStream::new(conn, config)
        .await
        .map_err(|e| e.to_string())?;
    // The position already applied everywhere (confirmed to the slot as it moves).
    let applied = feedback.get_flushed_lsn();
    stream.shared_lsn_feedback = feedback.clone();
    stream
        .start((applied > 0).then_some(applied))
        .await
        .map_err(|e| e.to_string())?;
    tx.send(Msg::Connected).await.map_err(|e| e.to_string())?;
    loop {
        let ev = stream.next_event(cancel).await;
        match ev {
            Ok(ev) => {
                if tx.send(Msg::Event(Box::new(ev))).await.is_err() {
                    return Ok(());
                }
            }
            Err(pg_walstream::ReplicationError::Cancelled(_)) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}
