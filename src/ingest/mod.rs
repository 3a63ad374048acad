//! Pipelines that write into tables on their own: CDC subscriptions from PostgreSQL
//! (`CREATE SUBSCRIPTION ... CONNECTION ... PUBLICATION ...`), each a worker streaming the
//! source's `pgoutput` changes into lakehouse tables with the position in every table commit.
//!
//! Uses `session` (an internal session of the subscription's owner writes the tables, so they
//! are ordinary governed tables written through the one write path), `catalog` and `storage`
//! (positions in table commits); `wire` never sees this module, it reaches it through
//! `session::pipeline::Pipelines`, which the server installs.
//!
//! Definitions are kept in the warehouse's metadata folder (`subscriptions.json`); status is
//! in memory and shown by `lakegate.subscriptions`, `pg_subscription` and
//! `pg_stat_subscription` (never with the connection's password).

pub mod apply;
mod copy_text;
mod fdw;
pub mod foreign;
pub mod source;
pub mod statement;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use pg_walstream::CancellationToken;

use crate::error::{Error, Result, SqlState};
use crate::session::pipeline::Pipelines;
use crate::session::{CommandTag, Engine, Session};
use statement::{AlterAction, Definition, Mode, Statement};

const DEFINITIONS: &str = "subscriptions.json";

/// A subscription's state as its worker last reported it.
#[derive(Debug, Default, Clone)]
pub struct Status {
    pub state: String,
    pub last_error: Option<String>,
    pub received_lsn: u64,
    pub last_msg_time: Option<chrono::DateTime<chrono::Utc>>,
    pub latest_end_lsn: u64,
    pub latest_end_time: Option<chrono::DateTime<chrono::Utc>>,
    pub flushed_lsn: u64,
    pub tables: BTreeMap<String, TableStatus>,
    pub notices: Vec<String>,
}

/// One table of a subscription.
#[derive(Debug, Default, Clone)]
pub struct TableStatus {
    pub target: String,
    pub state: String,
    pub lsn: u64,
    pub commit_time: Option<chrono::DateTime<chrono::Utc>>,
    pub rows_applied: u64,
    pub rows_copied: u64,
    pub last_error: Option<String>,
}

struct Running {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

/// The server's subscriptions.
pub struct Ingest {
    engine: Weak<Engine>,
    /// Statements one at a time (definitions and workers change together).
    change: tokio::sync::Mutex<()>,
    defs: Mutex<Vec<Definition>>,
    running: Mutex<HashMap<String, Running>>,
    statuses: Mutex<HashMap<String, Arc<Mutex<Status>>>>,
    /// The foreign servers (postgres_fdw).
    servers: Arc<foreign::Servers>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ingest {
    /// Load the definitions, install the statements and status tables, start the enabled.
    pub fn start(engine: &Arc<Engine>) -> Result<Arc<Ingest>> {
        let catalog = engine.planner.catalog().clone();
        let defs: Vec<Definition> = match catalog.warehouse().read_meta(DEFINITIONS)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Config(format!("{DEFINITIONS} does not parse: {e}")))?,
            None => vec![],
        };
        let servers = foreign::Servers::load(&catalog)?;
        catalog.set_foreign(servers.clone());
        let ingest = Arc::new(Ingest {
            servers,
            engine: Arc::downgrade(engine),
            change: Default::default(),
            defs: Mutex::new(defs.clone()),
            running: Default::default(),
            statuses: Default::default(),
        });
        for (name, f) in [
            (
                "subscriptions",
                Ingest::tables_batch as fn(&Ingest) -> Result<RecordBatch>,
            ),
            ("pg$subscription", Ingest::pg_subscription),
            ("pg$stat_subscription", Ingest::pg_stat_subscription),
        ] {
            let weak = Arc::downgrade(&ingest);
            catalog.add_status_table(
                name,
                Arc::new(move || {
                    let i = weak
                        .upgrade()
                        .ok_or_else(|| Error::internal("the server is stopping"))?;
                    f(&i)
                }),
            );
        }
        engine.set_pipelines(ingest.clone());
        for d in defs.into_iter().filter(|d| d.enabled) {
            ingest.spawn(engine, d);
        }
        Ok(ingest)
    }

    /// Stop every worker, letting each finish the batch it is applying.
    pub async fn shutdown(&self) {
        let running: Vec<Running> = lock(&self.running).drain().map(|(_, r)| r).collect();
        for r in &running {
            r.stop.cancel();
        }
        for r in running {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), r.handle).await;
        }
    }

    fn status(&self, name: &str) -> Arc<Mutex<Status>> {
        lock(&self.statuses)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    fn spawn(&self, engine: &Arc<Engine>, def: Definition) {
        let stop = CancellationToken::new();
        let w = worker::Worker {
            def: def.clone(),
            engine: engine.clone(),
            status: self.status(&def.name),
            stop: stop.clone(),
        };
        let handle = tokio::spawn(w.run());
        lock(&self.running).insert(def.name, Running { stop, handle });
    }

    async fn stop(&self, name: &str) {
        let r = lock(&self.running).remove(name);
        if let Some(r) = r {
            r.stop.cancel();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), r.handle).await;
        }
        if let Some(s) = lock(&self.statuses).get(name) {
            lock(s).state = "disabled".into();
        }
    }

    fn save(&self, defs: &[Definition]) -> Result<()> {
        let engine = self.engine()?;
        let bytes = serde_json::to_vec_pretty(defs)
            .map_err(|e| Error::internal(format!("serialize subscriptions: {e}")))?;
        engine
            .planner
            .catalog()
            .warehouse()
            .write_meta(DEFINITIONS, &bytes)?;
        *lock(&self.defs) = defs.to_vec();
        Ok(())
    }

    fn engine(&self) -> Result<Arc<Engine>> {
        self.engine
            .upgrade()
            .ok_or_else(|| Error::internal("the server is stopping"))
    }

    fn find(&self, name: &str) -> Option<Definition> {
        lock(&self.defs).iter().find(|d| d.name == name).cloned()
    }

    async fn create(
        &self,
        owner: &str,
        name: String,
        connection: String,
        publications: Vec<String>,
        options: Vec<(String, String)>,
    ) -> Result<Vec<String>> {
        if self.find(&name).is_some() {
            return Err(Error::Data {
                sqlstate: SqlState::DuplicateObject,
                message: format!("subscription \"{name}\" already exists"),
            });
        }
        let mut def = Definition {
            oid: 16384
                + name
                    .bytes()
                    .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
                    % 1_000_000,
            slot_name: name.clone(),
            name,
            owner: owner.to_string(),
            connection: statement::parse_conninfo(&connection)?,
            publications,
            enabled: true,
            copy_data: true,
            target_schema: None,
            mode: Mode::Mirror,
            format: crate::config::TableFormat::Delta,
            max_latency_ms: 1000,
            max_rows: 100_000,
            server: None,
        };
        let mut create_slot = true;
        for (k, v) in &options {
            match k.as_str() {
                "create_slot" => create_slot = statement::boolean(k, v)?,
                "connect" => {
                    if !statement::boolean(k, v)? {
                        create_slot = false;
                        def.enabled = false;
                        def.copy_data = false;
                    }
                }
                _ => set_option(&mut def, k, v, true)?,
            }
        }
        if def.format == crate::config::TableFormat::Iceberg && def.mode != Mode::Changelog {
            return Err(Error::unsupported(
                "Iceberg targets take appends only: use mode = 'changelog', or format = 'delta' for a mirror",
            ));
        }
        let mut warnings = vec![];
        if create_slot || def.enabled {
            let client = source::connect(&def).await?;
            source::tables(&client, &def.publications).await?;
            if create_slot {
                source::ensure_slot(&client, &def.slot_name, true).await?;
                warnings.push(format!(
                    "created replication slot \"{}\" on publisher",
                    def.slot_name
                ));
            }
        }
        let mut defs = lock(&self.defs).clone();
        defs.push(def.clone());
        self.save(&defs)?;
        if def.enabled {
            self.spawn(&self.engine()?, def);
        }
        Ok(warnings)
    }

    async fn alter(&self, name: &str, action: AlterAction) -> Result<()> {
        let mut def = self.find(name).ok_or_else(|| {
            Error::UndefinedObject(format!("subscription \"{name}\" does not exist"))
        })?;
        match action {
            AlterAction::Enable => def.enabled = true,
            AlterAction::Disable => def.enabled = false,
            AlterAction::RefreshPublication(opts) | AlterAction::Set(opts) => {
                for (k, v) in opts {
                    set_option(&mut def, &k, &v, false)?;
                }
            }
            AlterAction::SetPublication(pubs, opts) => {
                def.publications = pubs;
                for (k, v) in opts {
                    if k != "refresh" {
                        set_option(&mut def, &k, &v, false)?;
                    }
                }
            }
            AlterAction::Connection(c) => def.connection = statement::parse_conninfo(&c)?,
        }
        if def.enabled {
            // The publications must exist before the worker is restarted on them.
            let client = source::connect(&def).await?;
            source::tables(&client, &def.publications).await?;
        }
        self.stop(name).await;
        let defs: Vec<Definition> = lock(&self.defs)
            .iter()
            .map(|d| {
                if d.name == name {
                    def.clone()
                } else {
                    d.clone()
                }
            })
            .collect();
        self.save(&defs)?;
        if def.enabled {
            self.spawn(&self.engine()?, def);
        }
        Ok(())
    }

    async fn drop_subscription(&self, name: &str, if_exists: bool) -> Result<Vec<String>> {
        let Some(def) = self.find(name) else {
            if if_exists {
                return Ok(vec![format!(
                    "subscription \"{name}\" does not exist, skipping"
                )]);
            }
            return Err(Error::UndefinedObject(format!(
                "subscription \"{name}\" does not exist"
            )));
        };
        self.stop(name).await;
        let mut warnings = vec![];
        let dropped = async {
            let client = source::connect(&def).await?;
            source::drop_slot(&client, &def.slot_name).await
        }
        .await;
        match dropped {
            Ok(true) => warnings.push(format!(
                "dropped replication slot \"{}\" on publisher",
                def.slot_name
            )),
            Ok(false) => {}
            Err(e) => warnings.push(format!(
                "could not drop replication slot \"{}\" on the publisher ({e}); drop it there with SELECT pg_drop_replication_slot('{}')",
                def.slot_name, def.slot_name
            )),
        }
        let defs: Vec<Definition> = lock(&self.defs)
            .iter()
            .filter(|d| d.name != name)
            .cloned()
            .collect();
        self.save(&defs)?;
        lock(&self.statuses).remove(name);
        Ok(warnings)
    }

    /// `lakegate.subscriptions`: one row per subscription and table.
    fn tables_batch(&self) -> Result<RecordBatch> {
        let defs = lock(&self.defs).clone();
        let mut cols: Vec<Vec<Option<String>>> = vec![vec![]; 8];
        let (mut lsns, mut lag_bytes, mut applied, mut copied) = (vec![], vec![], vec![], vec![]);
        let (mut commit_times, mut lag_secs) = (vec![], vec![]);
        let now = chrono::Utc::now();
        for d in &defs {
            let st = lock(&self.status(&d.name)).clone();
            let sub_state = if !d.enabled {
                "disabled".to_string()
            } else if st.state.is_empty() {
                "starting".into()
            } else {
                st.state.clone()
            };
            let mut rows: Vec<(String, TableStatus)> = st.tables.into_iter().collect();
            if rows.is_empty() {
                rows.push((String::new(), TableStatus::default()));
            }
            for (source, t) in rows {
                let state = if !d.enabled {
                    "disabled".to_string()
                } else if t.state.is_empty()
                    || matches!(sub_state.as_str(), "error" | "reconnecting" | "connecting")
                        && t.state == "streaming"
                {
                    sub_state.clone()
                } else {
                    t.state.clone()
                };
                let error = t.last_error.clone().or_else(|| st.last_error.clone());
                let row = [
                    Some(d.name.clone()),
                    (!source.is_empty()).then_some(source),
                    (!t.target.is_empty()).then_some(t.target.clone()),
                    Some(state),
                    Some(format!("{:?}", d.mode).to_lowercase()),
                    (t.lsn > 0).then(|| source::lsn_text(t.lsn)),
                    error.map(|e| crate::policy::audit::redact_message(&e)),
                    (!st.notices.is_empty()).then(|| st.notices.join("; ")),
                ];
                for (c, v) in cols.iter_mut().zip(row) {
                    c.push(v);
                }
                lsns.push((t.lsn > 0).then_some(t.lsn as i64));
                let behind = st.latest_end_lsn.max(st.received_lsn).saturating_sub(t.lsn);
                lag_bytes.push(Some(if t.lsn == 0 { 0 } else { behind as i64 }));
                lag_secs.push(Some(match (t.commit_time, behind > 0 && t.lsn > 0) {
                    (Some(ct), true) => (now - ct).num_milliseconds() as f64 / 1000.0,
                    _ => 0.0,
                }));
                commit_times.push(t.commit_time.map(|c| c.timestamp_micros()));
                applied.push(Some(t.rows_applied as i64));
                copied.push(Some(t.rows_copied as i64));
            }
        }
        let names = [
            "subscription",
            "source_table",
            "target_table",
            "state",
            "mode",
            "last_lsn",
            "last_error",
            "notices",
        ];
        let mut fields: Vec<Field> = names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect();
        let mut arrays: Vec<ArrayRef> = cols
            .into_iter()
            .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
            .collect();
        fields.push(Field::new(
            "last_commit_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ));
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from(commit_times).with_timezone("UTC"),
        ));
        for (n, v) in [
            ("lag_bytes", lag_bytes),
            ("rows_applied", applied),
            ("rows_copied", copied),
            ("last_lsn_int", lsns),
        ] {
            fields.push(Field::new(n, DataType::Int64, true));
            arrays.push(Arc::new(Int64Array::from(v)));
        }
        fields.push(Field::new("lag_seconds", DataType::Float64, true));
        arrays.push(Arc::new(datafusion::arrow::array::Float64Array::from(
            lag_secs,
        )));
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
    }

    /// `pg_subscription`'s rows (connection string without its password).
    fn pg_subscription(&self) -> Result<RecordBatch> {
        let defs = lock(&self.defs).clone();
        let s = |f: &dyn Fn(&Definition) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(defs.iter().map(f).collect::<Vec<_>>()))
        };
        let schema = Schema::new(vec![
            Field::new("oid", DataType::Int32, false),
            Field::new("subname", DataType::Utf8, false),
            Field::new("subowner_name", DataType::Utf8, false),
            Field::new("subenabled", DataType::Boolean, false),
            Field::new("subconninfo", DataType::Utf8, false),
            Field::new("subslotname", DataType::Utf8, true),
            Field::new("subpublications", DataType::Utf8, false),
        ]);
        Ok(RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(
                    defs.iter().map(|d| d.oid as i32).collect::<Vec<_>>(),
                )),
                s(&|d| Some(d.name.clone())),
                s(&|d| Some(d.owner.clone())),
                Arc::new(BooleanArray::from(
                    defs.iter().map(|d| d.enabled).collect::<Vec<_>>(),
                )),
                s(&|d| Some(d.shown_connection())),
                s(&|d| Some(d.slot_name.clone())),
                s(&|d| Some(format!("{{{}}}", d.publications.join(",")))),
            ],
        )?)
    }

    /// `pg_stat_subscription`'s rows: one per subscription (its apply worker).
    fn pg_stat_subscription(&self) -> Result<RecordBatch> {
        let defs = lock(&self.defs).clone();
        let mut oid = vec![];
        let mut name = vec![];
        let mut received = vec![];
        let mut latest = vec![];
        let mut msg_time = vec![];
        let mut end_time = vec![];
        let mut pid = vec![];
        for d in &defs {
            let st = lock(&self.status(&d.name)).clone();
            // The worker runs in this process (PostgreSQL: the apply worker's pid; NULL when
            // it is not running).
            let running = d.enabled && !matches!(st.state.as_str(), "" | "stopped" | "error");
            pid.push(running.then(|| std::process::id() as i32));
            oid.push(d.oid as i32);
            name.push(d.name.clone());
            received.push((st.received_lsn > 0).then(|| source::lsn_text(st.received_lsn)));
            latest.push((st.flushed_lsn > 0).then(|| source::lsn_text(st.flushed_lsn)));
            msg_time.push(st.last_msg_time.map(|t| t.timestamp_micros()));
            end_time.push(st.latest_end_time.map(|t| t.timestamp_micros()));
        }
        let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Schema::new(vec![
            Field::new("subid", DataType::Int32, false),
            Field::new("subname", DataType::Utf8, false),
            Field::new("received_lsn", DataType::Utf8, true),
            Field::new("last_msg_receipt_time", ts(), true),
            Field::new("latest_end_lsn", DataType::Utf8, true),
            Field::new("latest_end_time", ts(), true),
            Field::new("pid", DataType::Int32, true),
        ]);
        Ok(RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(oid)),
                Arc::new(StringArray::from(name)),
                Arc::new(StringArray::from(received)),
                Arc::new(TimestampMicrosecondArray::from(msg_time).with_timezone("UTC")),
                Arc::new(StringArray::from(latest)),
                Arc::new(TimestampMicrosecondArray::from(end_time).with_timezone("UTC")),
                Arc::new(Int32Array::from(pid)),
            ],
        )?)
    }
}

/// Set an option of CREATE (`creating`) or ALTER SUBSCRIPTION ... SET / REFRESH.
fn set_option(def: &mut Definition, k: &str, v: &str, creating: bool) -> Result<()> {
    let fixed = |k: &str| {
        Err(Error::InvalidParameter(format!(
            "option \"{k}\" can only be given to CREATE SUBSCRIPTION"
        )))
    };
    match k {
        "copy_data" => def.copy_data = statement::boolean(k, v)?,
        "enabled" if creating => def.enabled = statement::boolean(k, v)?,
        "slot_name" if creating => {
            if v.eq_ignore_ascii_case("none") {
                return Err(Error::unsupported("slot_name = NONE is not supported"));
            }
            def.slot_name = v.to_string();
        }
        "target_schema" if creating => def.target_schema = Some(v.to_string()),
        "mode" if creating => {
            def.mode = match v.to_ascii_lowercase().as_str() {
                "mirror" => Mode::Mirror,
                "changelog" => Mode::Changelog,
                _ => {
                    return Err(Error::InvalidParameter(format!(
                        "invalid mode \"{v}\": use 'mirror' or 'changelog'"
                    )));
                }
            }
        }
        "format" if creating => {
            def.format = match crate::config::TableFormat::parse(v) {
                Some(
                    f @ (crate::config::TableFormat::Delta | crate::config::TableFormat::Iceberg),
                ) => f,
                _ => {
                    return Err(Error::unsupported(format!(
                        "format \"{v}\" is not supported for subscriptions: use 'delta' or 'iceberg'"
                    )));
                }
            }
        }
        "max_latency" => def.max_latency_ms = statement::duration_ms(k, v)?,
        "max_rows" => {
            def.max_rows = v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::InvalidParameter(format!("invalid value for max_rows: \"{v}\""))
            })?
        }
        "password_file" => {
            def.connection.remove("password");
            def.connection.insert("password_file".into(), v.to_string());
        }
        "binary" | "streaming" | "synchronous_commit" | "disable_on_error" | "two_phase"
        | "origin" | "refresh" => {}
        "enabled" | "slot_name" | "target_schema" | "mode" | "format" => return fixed(k),
        _ => {
            return Err(Error::Data {
                sqlstate: SqlState::SyntaxError,
                message: format!("unrecognized subscription parameter: \"{k}\""),
            });
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Pipelines for Ingest {
    async fn run(&self, session: &mut Session, sql: &str) -> Result<(CommandTag, Vec<String>)> {
        let _one = self.change.lock().await;
        let owner = session.principal().name.clone();
        let subscription = sql
            .split_whitespace()
            .nth(1)
            .is_some_and(|w| w.trim_end_matches(';').eq_ignore_ascii_case("subscription"));
        if !subscription {
            let (tag, notices) =
                fdw::run(&self.servers, &self.engine()?, &owner, fdw::parse(sql)?).await?;
            return Ok((CommandTag::new(tag), notices));
        }
        Ok(match statement::parse(sql)? {
            Statement::Create {
                name,
                connection,
                publications,
                options,
            } => (
                CommandTag::new("CREATE SUBSCRIPTION"),
                self.create(&owner, name, connection, publications, options)
                    .await?,
            ),
            Statement::Alter { name, action } => {
                self.alter(&name, action).await?;
                (CommandTag::new("ALTER SUBSCRIPTION"), vec![])
            }
            Statement::Drop { name, if_exists } => (
                CommandTag::new("DROP SUBSCRIPTION"),
                self.drop_subscription(&name, if_exists).await?,
            ),
        })
    }
}
