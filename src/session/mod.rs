//! Per-connection state and statement dispatch: who is asking, their settings, transaction
//! state, and what each statement does. Uses `planner` and `catalog`; the wire layer talks to a
//! [`Session`] only, never to DataFusion directly.

pub mod admission;
pub mod copy;
pub mod cursor;
mod ddl;
mod dml;
mod explain;
mod guard;
mod maintenance;
pub mod matview;
mod merge;
pub mod settings;
mod transaction;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::array::{Array, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Statement as SqlStatement};

use crate::error::{Error, Result};
use crate::pg::functions::SessionValues;
use crate::planner::Planner;
use crate::policy::{Action, PolicySet};
use settings::Settings;

/// State shared by all sessions of one server.
#[derive(Debug)]
pub struct Engine {
    pub planner: Arc<Planner>,
    pub max_connections: usize,
    running: Arc<AtomicUsize>,
    admins: Vec<String>,
    policies: Arc<std::sync::RwLock<Arc<PolicySet>>>,
    watch: crate::policy::PolicyWatch,
    pub audit: Arc<crate::policy::audit::AuditLog>,
    /// The connections of this server by backend pid: who they are, and how to cancel their
    /// running statement (`pg_cancel_backend`).
    backends: Arc<std::sync::Mutex<HashMap<i32, Backend>>>,
    /// Query results by governed plan and table versions (mv::cache).
    pub cache: Arc<crate::mv::cache::ResultCache>,
    /// Turns to compute queries (`engine.max_running_queries`, per-user limits).
    pub admission: admission::Admission,
    /// The lineage of each materialized view's definition, by view and its text, with the
    /// catalog generation it was planned at (see `guard::view_rules`).
    view_lineage:
        std::sync::Mutex<HashMap<String, (u64, Arc<crate::policy::matview::ViewLineage>)>>,
}

/// One connection, as `pg_cancel_backend` finds it.
struct Backend {
    user: String,
    cancel: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("user", &self.user).finish()
    }
}

/// Removes a connection from the engine's backends when it ends.
pub struct BackendRegistration {
    pid: i32,
    backends: Arc<std::sync::Mutex<HashMap<i32, Backend>>>,
}

impl Drop for BackendRegistration {
    fn drop(&mut self) {
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.pid);
    }
}

/// What governs an engine: the policies loaded, their folder's watch, the audit log.
pub struct Governance {
    pub policies: PolicySet,
    pub watch: crate::policy::PolicyWatch,
    pub audit: Arc<crate::policy::audit::AuditLog>,
}

impl Engine {
    pub fn new(
        planner: Arc<Planner>,
        max_connections: usize,
        admins: Vec<String>,
        governance: Governance,
        cache: Arc<crate::mv::cache::ResultCache>,
        admission: admission::Admission,
    ) -> Arc<Engine> {
        let Governance {
            policies,
            watch,
            audit,
        } = governance;
        Arc::new(Engine {
            admission,
            watch,
            planner,
            max_connections,
            running: Arc::new(AtomicUsize::new(0)),
            admins,
            policies: Arc::new(std::sync::RwLock::new(Arc::new(policies))),
            audit,
            backends: Arc::default(),
            cache,
            view_lineage: Default::default(),
        })
    }

    /// Make a connection known to `pg_cancel_backend` until the registration drops.
    pub fn register_backend(
        &self,
        pid: i32,
        user: &str,
        cancel: Arc<dyn Fn() + Send + Sync>,
    ) -> BackendRegistration {
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                pid,
                Backend {
                    user: user.to_string(),
                    cancel,
                },
            );
        BackendRegistration {
            pid,
            backends: self.backends.clone(),
        }
    }

    /// `pg_cancel_backend(pid)` asked by `user`: the connection's running statement is
    /// cancelled (57014 there) when it is the caller's own or the caller administers the server;
    /// another user's is refused with PostgreSQL's 42501; an unknown pid answers false.
    pub fn cancel_backend(&self, user: &str, pid: i32) -> Result<bool> {
        cancel_backend(&self.backends, user, self.is_admin(user), pid)
    }

    /// Load the policy files again if they changed (before every statement: a change takes
    /// effect on the very next one, prepared statements included).
    pub async fn refresh_policies(&self) {
        let current = self.policies();
        if let Some(p) = self.watch.changed(&current).await {
            *self.policies.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(p);
        }
    }

    /// The policies in force now.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Statements currently executing (for graceful shutdown).
    pub fn running_statements(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Marks a statement as running until the guard drops.
    pub fn statement_guard(&self) -> RunningGuard {
        self.running.fetch_add(1, Ordering::SeqCst);
        RunningGuard {
            counter: self.running.clone(),
        }
    }

    pub fn is_admin(&self, user: &str) -> bool {
        self.admins.iter().any(|a| a == user)
    }

    /// A table its policies cannot govern as written (see `PolicyWatch::problem`).
    pub(crate) fn policy_problem(&self, object: &str, what: String) {
        self.watch.problem(object, what);
    }
}

fn cancel_backend(
    backends: &std::sync::Mutex<HashMap<i32, Backend>>,
    user: &str,
    admin: bool,
    pid: i32,
) -> Result<bool> {
    let backends = backends.lock().unwrap_or_else(|p| p.into_inner());
    let Some(b) = backends.get(&pid) else {
        return Ok(false);
    };
    if b.user != user && !admin {
        return Err(Error::PermissionDenied(
            "permission denied to cancel query: only the role whose query is being canceled \
             or an administrator may cancel it"
                .into(),
        ));
    }
    (b.cancel)();
    Ok(true)
}

/// Decrements the running-statement count when dropped.
#[derive(Debug)]
pub struct RunningGuard {
    counter: Arc<AtomicUsize>,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The authenticated principal. Comes from authentication only, never from SET or startup options.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub admin: bool,
    /// The role taken with SET ROLE (one the policies grant), deciding instead of the user.
    pub role: Option<String>,
    /// Roles and attributes from the token it logged in with (JWT), if it did.
    pub claimed: Option<Arc<crate::policy::Claimed>>,
}

impl Principal {
    /// Who decides for this session: the role it took, else the user.
    pub fn subject(&self) -> crate::policy::Subject {
        crate::policy::Subject {
            name: self.role.clone().unwrap_or_else(|| self.name.clone()),
            user: self.name.clone(),
            claimed: self.claimed.clone(),
        }
    }
}

/// A command tag as PostgreSQL writes it (`INSERT 0 5`, `CREATE TABLE`, `SELECT 3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTag {
    pub command: String,
    pub rows: Option<usize>,
    /// INSERT tags carry an OID (always 0).
    pub with_oid: bool,
}

impl CommandTag {
    pub fn new(command: &str) -> Self {
        CommandTag {
            command: command.to_string(),
            rows: None,
            with_oid: false,
        }
    }
    pub fn rows(command: &str, rows: usize) -> Self {
        CommandTag {
            command: command.to_string(),
            rows: Some(rows),
            with_oid: command == "INSERT",
        }
    }
}

/// What a statement produced.
pub enum Outcome {
    /// Rows to stream; `names` overrides the column names PostgreSQL would show.
    Rows {
        schema: SchemaRef,
        names: Vec<String>,
        stream: SendableRecordBatchStream,
        command: &'static str,
    },
    Command(CommandTag),
    Begin,
    Commit(CommandTag),
    /// ROLLBACK TO SAVEPOINT: the block goes on (and is no longer failed).
    RolledBack,
    /// COPY FROM STDIN started: the client sends `columns` columns of rows.
    CopyIn {
        columns: usize,
    },
    Empty,
    /// COPY ... TO STDOUT: `rows` (an `Outcome::Rows`) written in `format`.
    CopyOut {
        rows: Box<Outcome>,
        format: copy::CopyFormat,
    },
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Rows { schema, .. } => write!(f, "Rows({} columns)", schema.fields().len()),
            Outcome::Command(t) => write!(f, "Command({})", t.command),
            Outcome::Begin => write!(f, "Begin"),
            Outcome::Commit(t) => write!(f, "Commit({})", t.command),
            Outcome::Empty => write!(f, "Empty"),
            Outcome::RolledBack => write!(f, "RolledBack"),
            Outcome::CopyIn { columns } => write!(f, "CopyIn({columns})"),
            Outcome::CopyOut { format, .. } => write!(f, "CopyOut({:?})", format.kind),
        }
    }
}

/// A parsed (and for queries, planned) statement of the extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub sql: String,
    pub statement: Option<PreparedKind>,
    /// The Arrow type of each `$n` parameter (Null when nothing could be inferred).
    /// (A field, so that a uuid/json parameter can say so in its metadata.)
    pub param_types: Vec<Field>,
    /// Result columns, when the statement returns rows.
    pub schema: Option<SchemaRef>,
    pub names: Vec<String>,
}

/// A parsed statement, with what running it again and again needs computed once: its text
/// (for the audit record) and its hash (for the memo). A prepared statement executed many
/// times (pgbench, a dashboard's tile) otherwise printed and hashed its syntax tree every time.
#[derive(Debug)]
pub struct Parsed {
    pub stmt: DfStatement,
    text: std::sync::OnceLock<String>,
    hash: std::sync::OnceLock<u64>,
}

impl Parsed {
    pub fn new(stmt: DfStatement) -> Arc<Parsed> {
        Arc::new(Parsed {
            stmt,
            text: Default::default(),
            hash: Default::default(),
        })
    }

    /// The statement as the audit shows it (printed from the tree, before redaction).
    fn text(&self) -> &str {
        self.text.get_or_init(|| self.stmt.to_string())
    }

    /// The hash of the statement's tree, for a plain SQL statement (the only ones the memo
    /// keeps).
    fn hash(&self) -> Option<u64> {
        let DfStatement::Statement(st) = &self.stmt else {
            return None;
        };
        Some(*self.hash.get_or_init(|| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            st.hash(&mut h);
            h.finish()
        }))
    }
}

/// What a prepared statement runs.
#[derive(Debug, Clone)]
pub enum PreparedKind {
    Sql(Arc<Parsed>),
    Maintenance(maintenance::Maintenance),
    Copy(copy::CopyOut),
    CopyIn(copy::CopyIn),
    /// MOVE: cursor and direction.
    Move(String, ast::FetchDirection),
    /// CREATE / REFRESH / DROP / ALTER MATERIALIZED VIEW.
    MatView(crate::mv::ddl::MvStatement),
}

/// The statements DataFusion's parser does not take, recognised first: COPY ... STDIN/STDOUT,
/// MOVE, the table maintenance commands and the materialized-view statements.
fn unparsed(sql: &str) -> Result<Option<PreparedKind>> {
    if let Some(m) = crate::mv::ddl::parse(sql) {
        return Ok(Some(PreparedKind::MatView(m?)));
    }
    if let Some(m) = cursor::parse_move(sql) {
        let (name, direction) = m?;
        return Ok(Some(PreparedKind::Move(name, direction)));
    }
    if let Some(c) = copy::parse(sql)? {
        return Ok(Some(match c {
            copy::Copy::Out(c) => PreparedKind::Copy(c),
            copy::Copy::In(c) => PreparedKind::CopyIn(c),
        }));
    }
    Ok(maintenance::parse(sql)?.map(PreparedKind::Maintenance))
}

/// Parse SQL text into statements (PostgreSQL dialect plus time travel).
pub fn parse(sql: &str) -> Result<Vec<DfStatement>> {
    crate::planner::parse_sql(sql)
}

/// How many optimized plans a session keeps (see [`Session::optimized`]).
const OPTIMIZED_PLANS: usize = 32;

/// What an optimized plan was made of: the governed plan's identity (`plan_identity`) and the
/// catalog's generation (after a DDL statement a name may stand for another table, of the same
/// version number).
type OptimizedKey = (crate::mv::cache::Key, u64);

/// One client connection's state.
pub struct Session {
    /// What `set_config()` calls of the last statement asked for, applied after it.
    pending_settings: crate::pg::functions::PendingSettings,
    engine: Arc<Engine>,
    principal: Principal,
    ctx: SessionContext,
    pub settings: Settings,
    backend_pid: i32,
    in_transaction: bool,
    /// Write statements run since BEGIN that committed on their own (all but INSERT).
    writes_in_transaction: usize,
    /// Writes sent since BEGIN, carried out at COMMIT in order.
    pending: Vec<transaction::Pending>,
    /// SAVEPOINTs of the open block: name, and how much of `pending` was there.
    savepoints: Vec<(String, transaction::Mark)>,
    cursors: cursor::Cursors,
    /// A COPY FROM STDIN under way.
    copy_in: Option<copy::CopyInRun>,
    /// A ROLLBACK TO SAVEPOINT recovered the failed block. (pgwire keeps reporting the failed
    /// state until the block ends: its status can not go from failed back to in-block.)
    recovered: bool,
    notices: Vec<Notice>,
    /// Where progress NOTICEs go while a statement runs (the wire layer sends them at once).
    progress: Option<tokio::sync::mpsc::UnboundedSender<Notice>>,
    /// The client's address, for the audit record.
    client: String,
    /// What the running statement read, wrote and which policies applied (for its record).
    seen: std::sync::Mutex<Seen>,
    /// Cached results of this session's queries, found without planning (see [`Memo`]).
    memo: std::sync::Mutex<HashMap<u64, Memo>>,
    /// This session's queries through DataFusion's optimizer (see [`Session::optimized`]).
    optimized: std::sync::Mutex<std::collections::VecDeque<(OptimizedKey, LogicalPlan)>>,
    /// The last statement text audited, and its redaction.
    redacted: std::sync::Mutex<Option<(String, String)>>,
    /// The statement being executed (whose hash the memo takes from it).
    running: Option<Arc<Parsed>>,
}

/// Where a query's result is in the result cache, found before planning: by the statement,
/// its parameter values and everything else its governed plan depends on (the session's
/// settings and role, the catalog's and the policies' versions: `Session::memo_key`); valid
/// while every table it read is at the version it read. A repeated small query (a dashboard's
/// tile, pgbench's `SELECT count(*)`) is answered with no parsing, planning, policy rewrite or
/// file listing: one version check per table and the cached rows.
#[derive(Debug, Clone)]
struct Memo {
    key: crate::mv::cache::Key,
    versions: Vec<(String, i64)>,
    schema: SchemaRef,
    names: Vec<String>,
    /// What planning it saw (its audit record's reads and policies).
    seen: Seen,
}

/// The most statements a session remembers results of (then it forgets them all).
const MEMO_ENTRIES: usize = 256;

/// Tables and policies a statement met, for its audit record.
#[derive(Debug, Default, Clone)]
struct Seen {
    reads: std::collections::BTreeSet<String>,
    writes: std::collections::BTreeSet<String>,
    policies: std::collections::BTreeSet<String>,
}

/// Stops a [`Session::heartbeat`] when dropped.
#[derive(Debug)]
pub(crate) struct Heartbeat(Option<tokio::task::JoinHandle<()>>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// A NOTICE or WARNING for the client, sent before the statement's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.principal.name)
            .field("pid", &self.backend_pid)
            .finish()
    }
}

impl Session {
    /// `claimed`: what the user's token said, when it logged in with one.
    pub fn new(
        engine: Arc<Engine>,
        user: &str,
        claimed: Option<Arc<crate::policy::Claimed>>,
        backend_pid: i32,
    ) -> Session {
        let principal = Principal {
            name: user.to_string(),
            // Administrators are named in the config; a token never makes one.
            admin: claimed.is_none() && engine.is_admin(user),
            role: None,
            claimed,
        };
        let settings = Settings::new(user, principal.admin, engine.max_connections);
        let pending_settings = crate::pg::functions::PendingSettings::default();
        let ctx = Self::build_context(
            &engine,
            &principal,
            &settings,
            backend_pid,
            &pending_settings,
        );
        let mut session = Session {
            pending_settings,
            engine,
            principal,
            ctx,
            settings,
            backend_pid,
            in_transaction: false,
            writes_in_transaction: 0,
            pending: vec![],
            savepoints: vec![],
            cursors: cursor::Cursors::default(),
            copy_in: None,
            recovered: false,
            notices: vec![],
            progress: None,
            client: String::new(),
            seen: std::sync::Mutex::new(Seen::default()),
            memo: Default::default(),
            optimized: Default::default(),
            redacted: Default::default(),
            running: None,
        };
        if let Some(ceiling) = session.limits().statement_timeout {
            session.settings.limit_statement_timeout(ceiling);
        }
        session
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn build_context(
        engine: &Engine,
        p: &Principal,
        settings: &Settings,
        pid: i32,
        pending_settings: &crate::pg::functions::PendingSettings,
    ) -> SessionContext {
        let catalog = engine.planner.catalog();
        let schema = settings
            .search_path()
            .into_iter()
            .find(|s| catalog.schema_exists(s))
            .unwrap_or_else(|| crate::catalog::DEFAULT_SCHEMA.to_string());
        // Listings show the tables this principal may read (administrators: all).
        let visible: Option<crate::catalog::provider_visible::Visible> = if p.admin {
            None
        } else {
            let in_force = engine.policies.clone();
            let subject = p.subject();
            Some(Arc::new(move |schema: &str, table: &str| {
                let object = format!("{schema}.{table}");
                let policies = in_force.read().unwrap_or_else(|e| e.into_inner()).clone();
                policies.allows(&subject, &object, Action::Read)
                    || policies.allows(&subject, &object, Action::Admin)
            }))
        };
        let hidden: Option<crate::catalog::provider_visible::Hidden> = if p.admin {
            None
        } else {
            let in_force = engine.policies.clone();
            let subject = p.subject();
            let catalog = catalog.clone();
            Some(Arc::new(move |schema: &str, table: &str| {
                let object = format!("{schema}.{table}");
                let stored = match catalog.relation(schema, table) {
                    Some(crate::catalog::Relation::Table(t)) => t.tags,
                    _ => Default::default(),
                };
                let policies = in_force.read().unwrap_or_else(|e| e.into_inner()).clone();
                policies.denied_columns(&subject, &object, &stored)
            }))
        };
        let privilege: Option<crate::pg::functions::Privilege> = if p.admin {
            None
        } else {
            let in_force = engine.policies.clone();
            let subject = p.subject();
            Some(Arc::new(
                move |schema: &str, table: &str, privilege: &str| {
                    let object = format!("{schema}.{table}");
                    let policies = in_force.read().unwrap_or_else(|e| e.into_inner()).clone();
                    let any = |actions: &[Action]| {
                        actions
                            .iter()
                            .any(|a| policies.allows(&subject, &object, *a))
                    };
                    match privilege {
                        "SELECT" | "REFERENCES" => any(&[Action::Read, Action::Admin]),
                        "INSERT" | "DELETE" | "TRUNCATE" => any(&[Action::Write, Action::Admin]),
                        "UPDATE" => any(&[Action::Update, Action::Write, Action::Admin]),
                        _ => false,
                    }
                },
            ))
        };
        let values = SessionValues {
            user: &p.name,
            database: engine.planner.database(),
            schema: &schema,
            backend_pid: pid,
            settings: settings.all(),
            pending_settings: pending_settings.clone(),
            check_setting: {
                // set_config is refused at once for what SET would refuse (unknown, read-only,
                // malformed), checked against this session's settings.
                let snapshot = settings.clone();
                Some(Arc::new(move |name: &str, value: &str| {
                    if name.eq_ignore_ascii_case("role")
                        || name.eq_ignore_ascii_case("session_authorization")
                    {
                        return Ok(());
                    }
                    snapshot.clone().set(name, value)
                }))
            },
            visible,
            hidden,
            privilege,
            cancel_backend: {
                let backends = engine.backends.clone();
                let user = p.name.clone();
                let admin = engine.is_admin(&user);
                Some(Arc::new(move |pid: i32| {
                    cancel_backend(&backends, &user, admin, pid)
                }))
            },
        };
        let ctx = engine.planner.new_context(&values);
        ctx.register_udf(crate::policy::status_udf(
            engine.watch.status.clone(),
            p.admin,
        ));
        ctx
    }

    fn rebuild_context(&mut self) {
        // Optimized under the old context's settings.
        if let Ok(mut plans) = self.optimized.lock() {
            plans.clear();
        }
        self.ctx = Self::build_context(
            &self.engine,
            &self.principal,
            &self.settings,
            self.backend_pid,
            &self.pending_settings,
        );
    }

    /// Whether a ROLLBACK TO SAVEPOINT recovered the failed block (the wire layer then reports
    /// the block as in progress again, not failed).
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// The `[[limits]]` that apply to this session's user (by name and every role it holds).
    pub fn limits(&self) -> crate::config::Limit {
        let roles = self.engine.policies().roles_held(&self.subject());
        self.engine.admission.limits(&self.principal.name, &roles)
    }

    /// How long this session's statements may run: its `statement_timeout`, which its user's
    /// limit bounds (`[[limits]] statement_timeout`, also the default; `Settings`).
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        self.settings.statement_timeout()
    }

    /// The schema unqualified names resolve to.
    pub fn current_schema(&self) -> String {
        crate::planner::default_schema_and_catalog(&self.ctx).0
    }

    /// Apply the client's startup parameters (application_name, DateStyle, TimeZone ...).
    pub fn apply_startup(&mut self, params: &std::collections::HashMap<String, String>) {
        self.settings.apply_startup(params);
        self.rebuild_context();
    }

    /// The client's address (for the audit record).
    pub fn set_client(&mut self, addr: String) {
        self.client = addr;
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write the statement's audit record now, or, for rows, when its stream ends.
    fn audit(
        &self,
        statement: &str,
        started: std::time::Instant,
        r: Result<Outcome>,
    ) -> Result<Outcome> {
        let seen = std::mem::take(&mut *self.seen());
        let policies = self.engine.policies();
        let attributes =
            crate::policy::audit::attributes_text(&policies.attributes(&self.subject()));
        // Literals may be values of masked columns or secrets: never logged. (The last text's
        // redaction is kept: a session repeats its statements.)
        let statement = {
            let mut last = self.redacted.lock().unwrap_or_else(|p| p.into_inner());
            match &*last {
                Some((text, redacted)) if text == statement => redacted.clone(),
                _ => {
                    let redacted = crate::policy::audit::redact_literals(statement);
                    *last = Some((statement.to_string(), redacted.clone()));
                    redacted
                }
            }
        };
        let mut record = crate::policy::audit::AuditRecord {
            time: chrono::Utc::now().to_rfc3339(),
            principal: self.principal.name.clone(),
            role: self.principal.role.clone(),
            attributes,
            client: self.client.clone(),
            statement,
            reads: seen.reads.into_iter().collect(),
            writes: seen.writes.into_iter().collect(),
            policies: seen.policies.into_iter().collect(),
            policy_version: format!("{}@{}", policies.source, policies.version),
            decision: "allowed".into(),
            ..Default::default()
        };
        let log = self.engine.audit.clone();
        match r {
            Ok(Outcome::Rows {
                schema,
                names,
                stream,
                command,
            }) => Ok(Outcome::Rows {
                schema,
                names,
                stream: Box::pin(AuditedStream {
                    inner: stream,
                    record: Some(record),
                    log,
                    started,
                    rows: 0,
                    syncing: None,
                }),
                command,
            }),
            Ok(o) => {
                record.rows = match &o {
                    Outcome::Command(t) | Outcome::Commit(t) => t.rows.map(|r| r as u64),
                    _ => None,
                };
                record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
                log.write(&record);
                Ok(o)
            }
            Err(e) => {
                let code = e.sqlstate();
                record.decision = if code == "42501" { "denied" } else { "failed" }.into();
                record.sqlstate = Some(code.to_string());
                record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
                log.write(&record);
                Err(e)
            }
        }
    }

    /// Parse and describe a statement for the extended protocol.
    pub async fn prepare(&self, sql: &str, client_types: &[Option<DataType>]) -> Result<Prepared> {
        crate::planner::limits::check(sql)?;
        if let Some(kind) = unparsed(sql)? {
            return Ok(Prepared {
                sql: sql.into(),
                statement: Some(kind),
                param_types: vec![],
                schema: None,
                names: vec![],
            });
        }
        let mut stmts = parse(sql)?;
        if stmts.len() > 1 {
            return Err(Error::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        let Some(stmt) = stmts.pop() else {
            return Ok(Prepared {
                sql: sql.into(),
                statement: None,
                param_types: vec![],
                schema: None,
                names: vec![],
            });
        };
        let (schema, names, param_types) = if returns_rows_from_plan(&stmt) || is_dml(&stmt) {
            // Planned under the policies in force now, as a statement would be.
            let started = self.begin_statement().await;
            // A statement refused when it is prepared never runs: its record is written now.
            let plan = match self.plan_to_describe(&stmt).await {
                Ok(p) => p,
                Err(e) => {
                    return match self.audit(sql, started, Err(e)) {
                        Err(e) => Err(e),
                        Ok(_) => Err(Error::internal("a failed statement was audited as done")),
                    };
                }
            };
            let mut params = param_types_of(&plan, client_types)?;
            crate::pg::types::mark_oid_params(&stmt, &mut params);
            if is_dml(&stmt) {
                (None, vec![], params)
            } else {
                let schema = crate::pg::describe::result_schema(&plan, &self.current_schema());
                let names = output_names(&stmt, &schema);
                (Some(schema), names, params)
            }
        } else if let Some(schema) = self.utility_schema(&stmt) {
            let names = schema.fields().iter().map(|f| f.name().clone()).collect();
            (Some(schema), names, vec![])
        } else {
            (
                None,
                vec![],
                client_types
                    .iter()
                    .map(|t| param_field(t.clone().unwrap_or(DataType::Null)))
                    .collect(),
            )
        };
        Ok(Prepared {
            sql: sql.into(),
            statement: Some(PreparedKind::Sql(Parsed::new(stmt))),
            param_types,
            schema,
            names,
        })
    }

    /// The plan a prepared statement's parameters and result are described from: a row-level
    /// write's is its change list query (`dml.rs`), anything else's its own.
    async fn plan_to_describe(&self, stmt: &DfStatement) -> Result<LogicalPlan> {
        use SqlStatement as S;
        let change = match stmt {
            DfStatement::Statement(s) => match s.as_ref() {
                S::Update(u) => Some(dml::plan_update(self, u, vec![]).await?),
                S::Delete(d) => Some(dml::plan_delete(self, d, vec![]).await?),
                S::Merge(m) => Some(merge::plan(self, m).await?),
                _ => None,
            },
            _ => None,
        };
        match change {
            Some(c) => c.unbound_plan(self).await,
            None => self.plan(stmt).await,
        }
    }

    /// Plan a statement that DataFusion runs (queries, EXPLAIN, INSERT/UPDATE/DELETE).
    async fn plan(&self, stmt: &DfStatement) -> Result<LogicalPlan> {
        self.plan_in(&self.ctx, stmt).await
    }

    /// [`Self::plan`] in another context of this session (one that also knows the tables of a
    /// statement's own, such as a row-level write's target with row identity).
    pub(crate) async fn plan_in(
        &self,
        ctx: &SessionContext,
        stmt: &DfStatement,
    ) -> Result<LogicalPlan> {
        let plan = match Planner::plan_statement(ctx, stmt).await {
            Ok(p) => p,
            Err(e) => return Err(self.hidden_column_named(e, stmt)),
        };
        // Only queries and DML get here; DDL is ours.
        datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_statements(false)
            .verify_plan(&plan)?;
        self.authorize_plan(&plan)?;
        self.check_view_reads(&plan)?;
        self.secure_plan(plan).await
    }

    /// A column this session may not see, when named, is refused (42501) rather than reported
    /// missing, as PostgreSQL refuses a column without privilege.
    fn hidden_column_named(&self, e: Error, stmt: &DfStatement) -> Error {
        use datafusion::common::SchemaError;
        use datafusion::error::DataFusionError;
        let missing = match &e {
            Error::DataFusion(d) => match d.as_ref().find_root() {
                DataFusionError::SchemaError(f, _) => match f.as_ref() {
                    SchemaError::FieldNotFound { field, .. } => Some(field.name.clone()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        };
        let Some(column) = missing else {
            return e;
        };
        if self.principal.admin {
            return e;
        }
        let policies = self.engine.policies();
        let subject = self.subject();
        let named = self.with_names(|names| {
            let mut tables = vec![];
            if let DfStatement::Statement(s) = stmt {
                let _ = datafusion::sql::sqlparser::ast::visit_relations(s.as_ref(), |r| {
                    tables.push(r.clone());
                    std::ops::ControlFlow::<()>::Continue(())
                });
            }
            tables.into_iter().any(|r| {
                let parts: Vec<String> =
                    r.0.iter()
                        .map(|p| p.to_string().trim_matches('"').to_string())
                        .collect();
                let reference = match parts.as_slice() {
                    [t] => datafusion::common::TableReference::bare(t.as_str()),
                    [s, t] => datafusion::common::TableReference::partial(s.as_str(), t.as_str()),
                    [c, s, t] => {
                        datafusion::common::TableReference::full(c.as_str(), s.as_str(), t.as_str())
                    }
                    _ => return false,
                };
                names.object(&reference).is_some_and(|o| {
                    policies
                        .denied_columns(&subject, &o, &self.stored_tags(&o))
                        .contains(&column)
                })
            })
        });
        if named {
            Error::PermissionDenied(format!("permission denied for column {column}"))
        } else {
            e
        }
    }

    /// Put every scan of a table with row filters or masks for this principal behind a secure
    /// scan (crate::policy::secure).
    ///
    /// Two more checks keep a table's policies meaning what their authors meant (fail closed):
    /// a table lacking a column its policies name exactly is not readable (42501, and
    /// `policy_status()` tells administrators); and an older version read through time travel
    /// shows a bound principal none of the columns the table no longer has under that name (a
    /// column renamed since, whose policies name it by its new name, is NULL there).
    async fn secure_plan(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        if self.principal.admin {
            return Ok(plan);
        }
        let policies = self.engine.policies();
        let subject = self.subject();
        self.refuse_governed_history(&plan, &policies, &subject)?;
        let current = self.current_columns_of_versions(&plan).await?;
        let views = self.view_rules(&plan).await?;
        let ctx = &self.ctx;
        let rules_for = |object: &str,
                         table: &datafusion::common::DFSchemaRef,
                         reading: crate::policy::secure::Reading| {
            let parse = |sql: &str| -> Result<datafusion::logical_expr::Expr> {
                Ok(ctx.parse_sql_expr(sql, table)?)
            };
            let stored = self.stored_tags(object);
            if reading == crate::policy::secure::Reading::Current {
                self.check_named_columns(&policies, object, table, &stored)?;
            }
            let mut rules = policies.rules_for(&subject, object, table, &stored, &parse)?;
            if let Some(view) = views.get(object) {
                let owed = self.rules_of_view(&policies, object, table, view)?;
                rules = guard::both(rules, owed, table);
            }
            if reading == crate::policy::secure::Reading::Version
                && policies.binds(&subject, object, &stored)
                && let Some(now) = current.get(object)
            {
                let r = rules.get_or_insert_with(Default::default);
                for f in table.fields() {
                    if !now.contains(f.name()) && !r.masks.iter().any(|(c, _)| c == f.name()) {
                        r.masks.push((
                            f.name().clone(),
                            datafusion::logical_expr::cast(
                                datafusion::logical_expr::lit(ScalarValue::Null),
                                f.data_type().clone(),
                            ),
                        ));
                        r.applied
                            .push(format!("{} not in the current table", f.name()));
                    }
                }
            }
            if let Some(r) = &rules {
                self.seen().policies.extend(r.applied.iter().cloned());
            }
            Ok(rules)
        };
        self.with_names(|names| {
            let plan = crate::policy::secure::check_insert(plan, &rules_for, names)?;
            crate::policy::secure::apply(plan, names, &rules_for)
        })
    }

    /// A table's history (`table_history`: operations, their parameters, row and file counts)
    /// is refused to a principal its row filters or masks bind.
    fn refuse_governed_history(
        &self,
        plan: &LogicalPlan,
        policies: &crate::policy::PolicySet,
        subject: &crate::policy::Subject,
    ) -> Result<()> {
        use datafusion::common::tree_node::TreeNodeRecursion;
        let mut refused = None;
        self.with_names(|names| {
            plan.apply_with_subqueries(|p| {
                if let LogicalPlan::TableScan(scan) = p
                    && scan.table_name.table().ends_with("@history")
                    && let Some(object) = names.scan(scan)
                    && self
                        .governing_objects(&object)
                        .iter()
                        .any(|o| policies.binds(subject, o, &self.stored_tags(o)))
                {
                    refused = Some(object);
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        match refused {
            Some(object) => Err(Error::PermissionDenied(format!(
                "permission denied for the history of table {}: its policies filter or mask what you see",
                object.rsplit('.').next().unwrap_or(&object)
            ))),
            None => Ok(()),
        }
    }

    /// The tables whose policies govern what `object` shows: itself, and for a materialized
    /// view its sources (whose policies its readers' secure scans carry).
    fn governing_objects(&self, object: &str) -> Vec<String> {
        let mut out = vec![object.to_string()];
        if let Some((schema, table)) = object.split_once('.')
            && let Some(crate::catalog::Relation::Table(t)) =
                self.engine.planner.catalog().relation(schema, table)
            && let Some(mv) = t.matview
        {
            out.extend(mv.sources.into_iter().map(|s| s.object));
        }
        out
    }

    /// Who decides for this session: the role it took, else the user.
    fn subject(&self) -> crate::policy::Subject {
        self.principal.subject()
    }

    /// The classification tags the columns of `plan`'s result carry (policy::lineage), by the
    /// names `columns` they get in a new table.
    pub(crate) fn inherited_tags(
        &self,
        plan: &LogicalPlan,
        columns: &[String],
    ) -> Result<crate::policy::StoredTags> {
        let policies = self.engine.policies();
        let tags_of = |object: &str, column: &str| {
            policies.tags_of(object, column, &self.stored_tags(object))
        };
        let per_column =
            self.with_names(|names| crate::policy::lineage::tags(plan, names, &tags_of))?;
        Ok(columns
            .iter()
            .zip(per_column)
            .filter(|(_, t)| !t.is_empty())
            .map(|(c, t)| (c.clone(), t.into_iter().collect()))
            .collect())
    }

    /// The classification tags the catalog keeps for `object` (`schema.table`).
    pub(crate) fn stored_tags(&self, object: &str) -> crate::policy::StoredTags {
        match object
            .split_once('.')
            .and_then(|(schema, table)| self.engine.planner.catalog().relation(schema, table))
        {
            Some(crate::catalog::Relation::Table(t)) => t.tags,
            _ => Default::default(),
        }
    }

    /// Run `f` with the policy names of this session (database, current schema, views' schemas).
    fn with_names<T>(&self, f: impl FnOnce(crate::policy::access::Names<'_>) -> T) -> T {
        let catalog = self.engine.planner.catalog().clone();
        let view_schema = move |schema: &str, name: &str| match catalog.relation(schema, name) {
            Some(crate::catalog::Relation::View(v)) if !v.schema.is_empty() => Some(v.schema),
            _ => None,
        };
        let schema = self.current_schema();
        f(crate::policy::access::Names {
            database: self.engine.planner.database(),
            schema: &schema,
            view_schema: &view_schema,
        })
    }

    /// The row filter and masks binding this session's UPDATE/DELETE/MERGE on a table, as
    /// expressions over its bare column names (None: not bound).
    pub(crate) async fn write_rules(
        &self,
        entry: &crate::catalog::TableEntry,
        object: &str,
    ) -> Result<Option<crate::policy::secure::TableRules>> {
        if self.principal.admin {
            return Ok(None);
        }
        let provider = self.engine.planner.catalog().table_provider(entry).await?;
        let table = Arc::new(datafusion::common::DFSchema::try_from(
            provider.schema().as_ref().clone(),
        )?);
        let subject = self.subject();
        let parse = |sql: &str| -> Result<datafusion::logical_expr::Expr> {
            Ok(self.ctx.parse_sql_expr(sql, &table)?)
        };
        self.engine.policies().rules_for(
            &subject,
            object,
            &table,
            &self.stored_tags(object),
            &parse,
        )
    }

    /// The columns of `object` this session does not see at all (masks of kind `deny`).
    pub(crate) fn hidden_columns(&self, object: &str) -> Vec<String> {
        if self.principal.admin {
            return vec![];
        }
        self.engine
            .policies()
            .denied_columns(&self.subject(), object, &self.stored_tags(object))
    }

    /// This session's context, also knowing `catalog.schema.table` as `provider` (a catalog
    /// of a statement's own; the session's context is left as it is).
    pub(crate) fn context_with_table(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
        provider: Arc<dyn datafusion::catalog::TableProvider>,
    ) -> Result<SessionContext> {
        use datafusion::catalog::{
            CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
            MemorySchemaProvider, SchemaProvider,
        };
        let state = self.ctx.state();
        let list = MemoryCatalogProviderList::new();
        for name in state.catalog_list().catalog_names() {
            if let Some(c) = state.catalog_list().catalog(&name) {
                list.register_catalog(name, c);
            }
        }
        let tables = MemorySchemaProvider::new();
        tables.register_table(table.to_string(), provider)?;
        let own = MemoryCatalogProvider::new();
        own.register_schema(schema, Arc::new(tables))?;
        list.register_catalog(catalog.to_string(), Arc::new(own));
        let state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_catalog_list(Arc::new(list))
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// An UPDATE of `object` assigning `columns`: with only `update` grants (no `write`), each
    /// column must be one they name (42501 naming the first that is not).
    pub(crate) fn authorize_columns(&self, object: &str, columns: &[String]) -> Result<()> {
        if self.principal.admin || self.authorize(object, Action::Write).is_ok() {
            return Ok(());
        }
        let allowed = self
            .engine
            .policies()
            .updatable_columns(&self.subject(), object);
        match columns.iter().find(|c| !allowed.contains(c)) {
            Some(c) => Err(Error::PermissionDenied(format!(
                "permission denied for column {c} of table {}",
                object.rsplit('.').next().unwrap_or(object)
            ))),
            None => Ok(()),
        }
    }

    /// Every table the plan reads needs `read`, every table it writes `write` (42501 if not).
    fn authorize_plan(&self, plan: &LogicalPlan) -> Result<()> {
        if self.principal.admin {
            return Ok(());
        }
        let access = self.with_names(|names| crate::policy::access::of_plan(plan, names))?;
        {
            let mut seen = self.seen();
            seen.reads.extend(access.reads.iter().cloned());
            seen.writes.extend(access.writes.iter().cloned());
        }
        for t in &access.reads {
            self.authorize(t, Action::Read)?;
        }
        for t in &access.writes {
            let only_updated = access.updates.contains(t);
            self.authorize(
                t,
                if only_updated {
                    Action::Update
                } else {
                    Action::Write
                },
            )?;
        }
        Ok(())
    }

    /// May this session do `action` on `object` (`schema.table`, or `schema.*` for the schema)?
    pub(crate) fn authorize(&self, object: &str, action: Action) -> Result<()> {
        if self.principal.admin {
            return Ok(());
        }
        let subject = &self.subject();
        let policies = self.engine.policies();
        // Administering a table includes reading and writing it; writing includes updating.
        if policies.allows(subject, object, action)
            || (action == Action::Update && policies.allows(subject, object, Action::Write))
            || (action != Action::Admin && policies.allows(subject, object, Action::Admin))
        {
            return Ok(());
        }
        let (kind, name) = match object.rsplit_once('.') {
            Some((schema, "*")) => ("schema", schema),
            Some((_, table)) => ("table", table),
            None => ("table", object),
        };
        Err(Error::PermissionDenied(format!(
            "permission denied for {kind} {name}"
        )))
    }

    /// Run the statements of one simple-query message, stopping at the first error.
    /// `aborted`: the transaction already failed, so only COMMIT/ROLLBACK are accepted.
    pub async fn execute_simple(&mut self, sql: &str, aborted: bool) -> Vec<Result<Outcome>> {
        let mut batch = self.begin_simple(sql, aborted);
        let several = batch.len() > 1;
        let mut out = vec![];
        while let Some(results) = self.next_simple(&mut batch).await {
            for r in results {
                // With several statements kept together, each is complete before the next.
                out.push(match r {
                    Ok(o) if several => materialize(o).await,
                    other => other,
                });
            }
        }
        out
    }

    /// The statements of one simple-query message, to run one at a time with
    /// [`Session::next_simple`]: the wire layer sends each statement's answer (rows streamed)
    /// before the next one runs, so a message of thousands of statements is held in memory one
    /// answer at a time.
    pub fn begin_simple(&self, sql: &str, aborted: bool) -> SimpleBatch {
        let items = self.simple_items(sql);
        SimpleBatch {
            items: items.into(),
            aborted,
            failed: false,
        }
    }

    fn simple_items(&self, sql: &str) -> Vec<SimpleItem> {
        if let Err(e) = crate::planner::limits::check(sql) {
            return vec![SimpleItem::Refused(
                e,
                "<statement not shown: beyond the server's limits>".into(),
            )];
        }
        // Several statements in one message: each on its own, so the ones DataFusion's parser
        // does not take (COPY, MOVE, materialized views, maintenance) work there too.
        let pieces = split_statements(sql);
        if pieces.len() > 1
            && pieces
                .iter()
                .any(|p| matches!(unparsed(p), Ok(Some(_)) | Err(_)))
        {
            return pieces
                .iter()
                .map(|p| SimpleItem::Piece(p.to_string()))
                .collect();
        }
        match unparsed(sql) {
            Ok(Some(kind)) => return vec![SimpleItem::Unparsed(Box::new(kind), sql.into())],
            Ok(None) => {}
            Err(e) => return vec![SimpleItem::Refused(e, sql.into())],
        }
        match parse(sql) {
            Ok(stmts) => stmts
                .into_iter()
                .map(|s| SimpleItem::Statement(Parsed::new(s)))
                .collect(),
            Err(e) => vec![SimpleItem::Failed(e)],
        }
    }

    /// The answers of the batch's next statement (None: all done, or one failed). Rows are a
    /// stream, computed as they are read: read them all before the next call.
    pub async fn next_simple(&mut self, batch: &mut SimpleBatch) -> Option<Vec<Result<Outcome>>> {
        if batch.failed {
            return None;
        }
        let item = batch.items.pop_front()?;
        let aborted = batch.aborted;
        let out = match item {
            SimpleItem::Refused(e, shown) => {
                let started = self.begin_statement().await;
                vec![self.audit(&shown, started, Err(e))]
            }
            SimpleItem::Failed(e) => vec![Err(e)],
            SimpleItem::Unparsed(kind, sql) => vec![self.run_unparsed(&kind, &sql, aborted).await],
            SimpleItem::Piece(piece) => {
                let r = Box::pin(self.execute_simple(&piece, aborted)).await;
                batch.aborted = false;
                r
            }
            SimpleItem::Statement(stmt) => {
                let r = self.execute_one(&stmt, vec![], aborted).await;
                if ends_transaction(&stmt.stmt) {
                    batch.aborted = false;
                }
                vec![r]
            }
        };
        if out.iter().any(|r| r.is_err()) {
            batch.failed = true;
        }
        Some(out)
    }

    /// The end of a COPY FROM STDIN (`failed`: the client's CopyFail message): the tag, with
    /// the statement's audit record written.
    pub async fn copy_in_done(&mut self, failed: Option<String>) -> Result<CommandTag> {
        let (r, statement, started) = self.copy_in_finish(failed).await;
        let r = r.map(|n| Outcome::Command(CommandTag::rows("COPY", n)));
        match self.audit(&statement, started, r)? {
            Outcome::Command(t) => Ok(t),
            _ => Err(Error::internal("COPY did not end with a tag")),
        }
    }

    /// COPY ... TO STDOUT: its rows are those of the SELECT it stands for, planned, governed
    /// and audited like one.
    async fn copy_out(&mut self, c: copy::CopyOut, sql: &str, aborted: bool) -> Result<Outcome> {
        let mut stmts = parse(&c.query)?;
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

    /// Execute a prepared statement with bound parameter values.
    /// `sql`: the statement's text (the audit record of those without a parsed statement).
    pub async fn execute_prepared(
        &mut self,
        kind: &PreparedKind,
        sql: &str,
        params: Vec<ScalarValue>,
        aborted: bool,
    ) -> Result<Outcome> {
        match kind {
            PreparedKind::Sql(stmt) => self.execute_one(stmt, params, aborted).await,
            other => self.run_unparsed(other, sql, aborted).await,
        }
    }

    /// A statement of `unparsed` (COPY, MOVE, maintenance), `sql` its text for the audit.
    async fn run_unparsed(
        &mut self,
        kind: &PreparedKind,
        sql: &str,
        aborted: bool,
    ) -> Result<Outcome> {
        let aborted = aborted && !self.recovered;
        match kind {
            // Planned, governed and audited as the SELECT it stands for (shown as the COPY).
            PreparedKind::Copy(c) => return self.copy_out(c.clone(), sql, aborted).await,
            PreparedKind::Sql(stmt) => return self.execute_one(stmt, vec![], aborted).await,
            _ if aborted => return Err(aborted_error()),
            _ => {}
        }
        let started = self.begin_statement().await;
        let r = match kind {
            // Audited when its rows are in (copy_in_done), or now if it cannot start.
            PreparedKind::CopyIn(c) => match self.copy_in_start(c.clone(), sql).await {
                Ok(o) => return Ok(o),
                Err(e) => Err(e),
            },
            PreparedKind::Move(name, direction) => self.cursors.fetch(name, direction, true).await,
            PreparedKind::Maintenance(m) => maintenance::run(self, m).await,
            PreparedKind::MatView(m) => matview::run(self, m.clone()).await,
            PreparedKind::Copy(_) | PreparedKind::Sql(_) => {
                Err(Error::internal("a parsed statement reached run_unparsed"))
            }
        };
        self.audit(sql, started, r)
    }

    /// A statement starts: nothing seen yet, the policies in force re-read; its start time.
    async fn begin_statement(&self) -> std::time::Instant {
        *self.seen() = Seen::default();
        self.engine.refresh_policies().await;
        std::time::Instant::now()
    }

    /// Execute one statement, refusing all but the end of the transaction once it failed;
    /// its audit record is written whatever happens.
    pub async fn execute_one(
        &mut self,
        stmt: &Arc<Parsed>,
        params: Vec<ScalarValue>,
        aborted: bool,
    ) -> Result<Outcome> {
        self.execute_one_as(stmt, params, aborted, None).await
    }

    /// `execute_one`, its audit record showing `shown` (the COPY a SELECT stands for) when given.
    async fn execute_one_as(
        &mut self,
        stmt: &Arc<Parsed>,
        params: Vec<ScalarValue>,
        aborted: bool,
        shown: Option<&str>,
    ) -> Result<Outcome> {
        let started = self.begin_statement().await;
        let aborted = aborted && !self.recovered;
        self.running = Some(stmt.clone());
        let r = self
            .execute_one_unaudited(&stmt.stmt, params, aborted)
            .await;
        self.running = None;
        match &r {
            Ok(Outcome::RolledBack) => self.recovered = true,
            Ok(Outcome::Begin | Outcome::Commit(_)) => self.recovered = false,
            Err(_) if self.in_transaction => self.recovered = false,
            _ => {}
        }
        self.audit(shown.unwrap_or_else(|| stmt.text()), started, r)
    }

    async fn execute_one_unaudited(
        &mut self,
        stmt: &DfStatement,
        params: Vec<ScalarValue>,
        aborted: bool,
    ) -> Result<Outcome> {
        if aborted {
            if ends_transaction(stmt) {
                self.pending.clear();
                self.close_block();
                return Ok(Outcome::Commit(CommandTag::new("ROLLBACK")));
            }
            // ROLLBACK TO SAVEPOINT recovers a failed block (psqlODBC wraps statements so).
            let to_savepoint = matches!(stmt, DfStatement::Statement(s)
                if matches!(s.as_ref(), SqlStatement::Rollback { savepoint: Some(_), .. }));
            if !to_savepoint {
                return Err(aborted_error());
            }
        }
        self.execute(stmt, params).await
    }

    fn warn(&mut self, code: &'static str, message: String) {
        self.notices.push(Notice {
            severity: "WARNING",
            code,
            message,
        });
    }

    /// While a statement runs, send progress NOTICEs to `sink` as they happen (None: stop).
    pub fn set_progress_sink(&mut self, sink: Option<tokio::sync::mpsc::UnboundedSender<Notice>>) {
        self.progress = sink;
    }

    /// Tell the client (now, while the statement still runs) and the log how a long operation
    /// is getting on.
    pub(crate) fn progress(&mut self, message: String) {
        tracing::info!("{message}");
        let n = Notice {
            severity: "NOTICE",
            code: "00000",
            message,
        };
        match &self.progress {
            Some(tx) => {
                if let Err(e) = tx.send(n) {
                    self.notices.push(e.0);
                }
            }
            None => self.notices.push(n),
        }
    }

    /// Until the returned guard drops, a NOTICE every `every` saying `what` is still running.
    pub(crate) fn heartbeat(&self, what: String, every: std::time::Duration) -> Heartbeat {
        let Some(tx) = self.progress.clone() else {
            return Heartbeat(None);
        };
        let started = std::time::Instant::now();
        Heartbeat(Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let message = format!(
                    "{what}: still running after {} s",
                    started.elapsed().as_secs()
                );
                tracing::info!("{message}");
                let n = Notice {
                    severity: "NOTICE",
                    code: "00000",
                    message,
                };
                if tx.send(n).is_err() {
                    break;
                }
            }
        })))
    }

    /// Report progress or a result to the client as a NOTICE.
    pub(crate) fn notice(&mut self, message: String) {
        self.notices.push(Notice {
            severity: "NOTICE",
            code: "00000",
            message,
        });
    }

    /// Notices raised since the last call, to send to the client.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Execute one statement with bound parameter values.
    pub async fn execute(
        &mut self,
        stmt: &DfStatement,
        params: Vec<ScalarValue>,
    ) -> Result<Outcome> {
        // set_config calls of a row-returning statement run while its rows stream, after the
        // statement returned: they are applied before the next one.
        self.apply_pending_settings()?;
        let out = self.dispatch(stmt, params).await;
        if out.is_ok() && self.in_transaction && is_write(stmt) && !is_deferred(stmt) {
            self.writes_in_transaction += 1;
        }
        // A statement that fails before its rows stream leaves its set_config calls undone, as
        // in PostgreSQL.
        match out {
            Ok(o) => self.apply_pending_settings().map(|()| o),
            Err(e) => {
                self.pending_settings.take();
                Err(e)
            }
        }
    }

    /// `SELECT set_config(name, value, is_local)`: the statement answered the value; the
    /// setting changes as `SET` would change it (a role through the same checks as SET ROLE).
    fn apply_pending_settings(&mut self) -> Result<()> {
        let pending = self.pending_settings.take();
        if pending.is_empty() {
            return Ok(());
        }
        for (name, value) in pending {
            if name.eq_ignore_ascii_case("role")
                || name.eq_ignore_ascii_case("session_authorization")
            {
                self.set_role(&value)?;
            } else {
                self.settings.set(&name, &value)?;
            }
        }
        self.rebuild_context();
        Ok(())
    }

    async fn dispatch(&mut self, stmt: &DfStatement, params: Vec<ScalarValue>) -> Result<Outcome> {
        match stmt {
            DfStatement::Statement(s) => self.execute_sql(stmt, s, params).await,
            DfStatement::Explain(_) => self.query(stmt, params, "EXPLAIN").await,
            DfStatement::Reset(r) => {
                use datafusion::sql::parser::ResetStatement;
                match r {
                    ResetStatement::Variable(name) => {
                        let n = name.to_string();
                        if n.eq_ignore_ascii_case("all") {
                            self.settings.reset_all();
                            self.principal.role = None;
                        } else if n.eq_ignore_ascii_case("role")
                            || n.eq_ignore_ascii_case("session_authorization")
                        {
                            self.principal.role = None;
                        } else {
                            self.settings.reset(&n)?;
                        }
                    }
                }
                self.rebuild_context();
                Ok(Outcome::Command(CommandTag::new("RESET")))
            }
            DfStatement::CreateExternalTable(ct) => ddl::create_external(self, ct).await,
            DfStatement::CopyTo(_) => Err(Error::unsupported("COPY is not supported yet")),
        }
    }

    async fn execute_sql(
        &mut self,
        whole: &DfStatement,
        s: &SqlStatement,
        params: Vec<ScalarValue>,
    ) -> Result<Outcome> {
        use SqlStatement as S;
        match s {
            S::Query(_) => self.query(whole, params, "SELECT").await,
            S::Explain { .. } | S::ExplainTable { .. } => {
                self.query(whole, params, "EXPLAIN").await
            }
            S::Insert(_) if self.in_transaction => {
                transaction::buffer_insert(self, whole, params).await
            }
            S::Insert(_) => self.dml(whole, params, "INSERT").await,
            S::Merge(m) => {
                let change = merge::plan(self, m).await?;
                self.run_or_defer(change).await
            }
            S::Update(u) => {
                let change = dml::plan_update(self, u, params).await?;
                self.run_or_defer(change).await
            }
            S::Delete(d) => {
                let change = dml::plan_delete(self, d, params).await?;
                self.run_or_defer(change).await
            }
            S::CreateTable(ct) => ddl::create_table(self, ct).await,
            S::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => ddl::create_schema(self, schema_name, *if_not_exists).await,
            S::CreateView(v) => ddl::create_view(self, v).await,
            S::AlterTable(at) => ddl::alter_table(self, at).await,
            S::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => ddl::drop(self, *object_type, *if_exists, names, *cascade).await,
            S::StartTransaction { modes, .. } => {
                for m in modes {
                    if let ast::TransactionMode::IsolationLevel(level) = m {
                        self.settings
                            .set("transaction_isolation", isolation_name(level))?;
                    }
                }
                if self.in_transaction {
                    self.warn("25001", "there is already a transaction in progress".into());
                } else {
                    self.writes_in_transaction = 0;
                    self.pending.clear();
                }
                self.in_transaction = true;
                self.savepoints.clear();
                Ok(Outcome::Begin)
            }
            S::Declare { stmts } => {
                let [d] = stmts.as_slice() else {
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
                        sqlstate: "25P01",
                        message: "DECLARE CURSOR can only be used in transaction blocks".into(),
                    });
                }
                let q = DfStatement::Statement(Box::new(SqlStatement::Query(query.clone())));
                let rows = self.query(&q, params, "SELECT").await?;
                let options = cursor::Options {
                    scroll: d.scroll == Some(true),
                    binary: d.binary == Some(true),
                    hold,
                };
                self.cursors.declare(&name.value, rows, options)?;
                Ok(Outcome::Command(CommandTag::new("DECLARE CURSOR")))
            }
            S::Fetch {
                name,
                direction,
                into: None,
                ..
            } => self.cursors.fetch(&name.value, direction, false).await,
            S::Close { cursor } => {
                match cursor {
                    ast::CloseCursor::All => self.cursors.close(None)?,
                    ast::CloseCursor::Specific { name } => self.cursors.close(Some(&name.value))?,
                }
                Ok(Outcome::Command(CommandTag::new("CLOSE CURSOR")))
            }
            S::Savepoint { name } => {
                if !self.in_transaction {
                    return Err(Error::Data {
                        sqlstate: "25P01",
                        message: "SAVEPOINT can only be used in transaction blocks".into(),
                    });
                }
                let mark = transaction::mark(&self.pending);
                self.savepoints.push((name.value.clone(), mark));
                Ok(Outcome::Command(CommandTag::new("SAVEPOINT")))
            }
            S::ReleaseSavepoint { name } => {
                let i = self.savepoint(&name.value, "RELEASE SAVEPOINT")?;
                self.savepoints.truncate(i);
                Ok(Outcome::Command(CommandTag::new("RELEASE")))
            }
            S::Rollback {
                savepoint: Some(name),
                ..
            } => {
                let i = self.savepoint(&name.value, "ROLLBACK TO SAVEPOINT")?;
                let mark = self.savepoints[i].1;
                transaction::rollback_to(&mut self.pending, mark);
                self.savepoints.truncate(i + 1);
                Ok(Outcome::RolledBack)
            }
            S::Commit { .. } => {
                if !self.in_transaction {
                    self.warn("25P01", "there is no transaction in progress".into());
                }
                self.close_block();
                transaction::commit(self).await?;
                Ok(Outcome::Commit(CommandTag::new("COMMIT")))
            }
            S::Rollback {
                savepoint: None, ..
            } => {
                if !self.in_transaction {
                    self.warn("25P01", "there is no transaction in progress".into());
                } else if self.writes_in_transaction > 0 {
                    let n = self.writes_in_transaction;
                    self.warn(
                        "01000",
                        format!(
                            "ROLLBACK discarded this transaction's INSERT, UPDATE and DELETE statements but \
                             cannot undo its {n} other write statement(s): those committed when they ran"
                        ),
                    );
                }
                self.pending.clear();
                self.close_block();
                Ok(Outcome::Commit(CommandTag::new("ROLLBACK")))
            }
            S::Set(set) => self.set(set),
            S::ShowVariable { variable } => self.show(variable),
            S::Discard { object_type } => {
                if *object_type == ast::DiscardObject::ALL {
                    let _ = self.cursors.close(None);
                    self.settings.reset_all();
                    self.principal.role = None;
                    self.rebuild_context();
                }
                Ok(Outcome::Command(CommandTag::new(&format!(
                    "DISCARD {object_type}"
                ))))
            }
            // SQL-level prepared statements are not kept (PREPARE is refused), so there is
            // nothing to free; drivers send DEALLOCATE ALL when they reset (psycopg).
            S::Deallocate { name, .. } => Ok(Outcome::Command(CommandTag::new(
                if name.value.eq_ignore_ascii_case("all") {
                    "DEALLOCATE ALL"
                } else {
                    "DEALLOCATE"
                },
            ))),
            other => Err(Error::unsupported(format!(
                "statement not supported: {}",
                statement_keyword(&other.to_string())
            ))),
        }
    }

    /// The newest savepoint called `name` (3B001 if none; 25P01 outside a block).
    /// The end of a transaction block (COMMIT, ROLLBACK): its savepoints and cursors without
    /// HOLD go, and the next transaction's isolation level is the session's default again.
    fn close_block(&mut self) {
        self.in_transaction = false;
        self.savepoints.clear();
        self.cursors.end_of_block();
        if let Ok(level) = self.settings.get("default_transaction_isolation") {
            let _ = self.settings.set("transaction_isolation", &level);
        }
    }

    fn savepoint(&self, name: &str, what: &str) -> Result<usize> {
        if !self.in_transaction {
            return Err(Error::Data {
                sqlstate: "25P01",
                message: format!("{what} can only be used in transaction blocks"),
            });
        }
        self.savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| Error::Data {
                sqlstate: "3B001",
                message: format!("savepoint \"{name}\" does not exist"),
            })
    }

    /// An UPDATE/DELETE now, or at COMMIT inside a transaction block.
    async fn run_or_defer(&mut self, change: dml::RowChange) -> Result<Outcome> {
        if self.in_transaction {
            transaction::defer_change(self, change).await
        } else {
            dml::run(self, change).await
        }
    }

    /// Run a row-returning statement through DataFusion.
    async fn query(
        &self,
        stmt: &DfStatement,
        params: Vec<ScalarValue>,
        command: &'static str,
    ) -> Result<Outcome> {
        let memo_key = if command == "SELECT" {
            self.memo_key(stmt, &params)
        } else {
            None
        };
        if let Some(m) = memo_key
            && let Some(rows) = self.remembered_rows(m, command).await?
        {
            return Ok(rows);
        }
        // A materialized view answers it when one can (mv::rewrite), else the plan as written.
        let (plan, from_view) = match self.answer_from_view(stmt).await? {
            Some(p) => (p, true),
            None => (self.plan(stmt).await?, false),
        };
        let plan = bind(plan, params)?;
        let schema = crate::pg::describe::result_schema(&plan, &self.current_schema());
        let names = output_names(stmt, &schema);
        // The result cache: by governed plan, policy version, table locations and versions
        // (mv::cache); the session's optimized plans by the same identity.
        let identity = if command == "SELECT" {
            self.plan_identity(&plan)
        } else {
            None
        };
        let key = identity
            .clone()
            .filter(|_| self.engine.cache.enabled() && self.setting_on("lakegate.result_cache"));
        // Remembered for the next time, unless a view answered (whether one may depends on its
        // sources' versions too, which the view's rows do not show).
        if let (Some(m), Some((k, versions)), false) = (memo_key, &key, from_view) {
            self.remember(
                m,
                Memo {
                    key: k.clone(),
                    versions: versions.clone(),
                    schema: schema.clone(),
                    names: names.clone(),
                    seen: self.seen().clone(),
                },
            );
        }
        let key = key.map(|(k, _)| k);
        if let Some(k) = &key
            && let Some((cached, batches)) = self.engine.cache.get(k)
        {
            let stream =
                datafusion::physical_plan::memory::MemoryStream::try_new(batches, cached, None)?;
            return Ok(Outcome::Rows {
                schema,
                names,
                stream: Box::pin(stream),
                command,
            });
        }
        // (Only a plain query: DDL, writes, statements and EXPLAIN go through DataFusion's
        // own handling of them.)
        let plain = !matches!(
            plan,
            LogicalPlan::Ddl(_)
                | LogicalPlan::Dml(_)
                | LogicalPlan::Statement(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Explain(_)
                | LogicalPlan::Analyze(_)
                | LogicalPlan::DescribeTable(_)
        );
        let plan = match identity {
            Some((k, _)) if plain && self.setting_on("lakegate.plan_cache") => {
                crate::planner::Logical::Optimized(self.optimized(k, plan)?)
            }
            _ => crate::planner::Logical::AsWritten(plan),
        };
        // A turn for what computes over tables; `SELECT 1`, `SHOW`, settings answer at once
        // however busy the server is.
        let reads = match &plan {
            crate::planner::Logical::AsWritten(p) | crate::planner::Logical::Optimized(p) => {
                crate::planner::reads_tables(p)
            }
        };
        let turn = match reads {
            true => Some(
                self.engine
                    .admission
                    .admit(&self.principal.name, self.limits().max_running_queries)
                    .await?,
            ),
            false => None,
        };
        let stream = match plan {
            // What a user's EXPLAIN shows stops at every secure scan, whatever its format.
            crate::planner::Logical::AsWritten(plan)
                if command == "EXPLAIN" && !self.principal.admin =>
            {
                self.explain_for_user(plan).await?
            }
            plan => self.engine.planner.execute(&self.ctx, plan).await?,
        };
        let stream = crate::planner::hold(stream, turn);
        let stream = match key {
            Some(k) => crate::mv::cache::Filling::wrap(stream, self.engine.cache.clone(), k),
            None => stream,
        };
        Ok(Outcome::Rows {
            schema,
            names,
            stream,
            command,
        })
    }

    /// `plan` through DataFusion's analyzer and optimizer, or the plan they made of the same
    /// governed plan earlier in this session (`identity`: the plan, the policy version, every
    /// table's location and version; and no DDL since). Their work is about a quarter of
    /// planning a TPC-H query (1 to 5 ms on two cores), and a dashboard or a benchmark sends
    /// the same queries again. Kept per session (the last [`OPTIMIZED_PLANS`]) and forgotten
    /// when its settings change, so a plan is only reused under the settings and role it was
    /// made with. A logical plan holds no state of a run (the physical plan, made for each
    /// run, does), and `identity` is only given for plans free of `now()`, `random()` and
    /// session functions, whose values the optimizer would have folded in.
    fn optimized(&self, identity: crate::mv::cache::Key, plan: LogicalPlan) -> Result<LogicalPlan> {
        let mut plans = self
            .optimized
            .lock()
            .map_err(|_| Error::Internal("the session's optimized plans are poisoned".into()))?;
        let identity = (identity, self.engine.planner.catalog().generation());
        if let Some(at) = plans.iter().position(|(k, _)| *k == identity)
            && let Some(hit) = plans.remove(at)
        {
            let plan = hit.1.clone();
            plans.push_back(hit);
            return Ok(plan);
        }
        let optimized = self.ctx.state().optimize(&plan)?;
        if plans.len() >= OPTIMIZED_PLANS {
            plans.pop_front();
        }
        plans.push_back((identity, optimized.clone()));
        Ok(optimized)
    }

    /// The key of a query in the memo: None when its result may not be remembered (inside a
    /// transaction block, which may hold writes of its own; with the result cache off; a
    /// statement that is not a plain SQL one).
    fn memo_key(&self, stmt: &DfStatement, params: &[ScalarValue]) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let DfStatement::Statement(st) = stmt else {
            return None;
        };
        if self.in_transaction
            || !self.engine.cache.enabled()
            || !self.setting_on("lakegate.result_cache")
        {
            return None;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        match self
            .running
            .as_ref()
            .filter(|p| std::ptr::eq(&p.stmt, stmt))
            .and_then(|p| p.hash())
        {
            Some(known) => known.hash(&mut h),
            None => st.hash(&mut h),
        }
        params.hash(&mut h);
        self.principal.role.hash(&mut h);
        self.settings.generation().hash(&mut h);
        self.engine.planner.catalog().generation().hash(&mut h);
        self.engine.policies().version.hash(&mut h);
        Some(h.finish())
    }

    fn remember(&self, key: u64, memo: Memo) {
        let mut m = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MEMO_ENTRIES {
            m.clear();
        }
        m.insert(key, memo);
    }

    /// The rows of a remembered query, when every table it read is still at the version it
    /// read and its result is still cached; its audit record gets what its planning saw.
    async fn remembered_rows(&self, key: u64, command: &'static str) -> Result<Option<Outcome>> {
        let Some(memo) = self
            .memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()
        else {
            return Ok(None);
        };
        let catalog = self.engine.planner.catalog();
        for (object, version) in &memo.versions {
            let entry = match object
                .split_once('.')
                .and_then(|(s, t)| catalog.relation(s, t))
            {
                Some(crate::catalog::Relation::Table(e)) => e,
                _ => return Ok(None),
            };
            if catalog.current_version(&entry).await? != Some(*version) {
                return Ok(None);
            }
        }
        let Some((cached, batches)) = self.engine.cache.get(&memo.key) else {
            return Ok(None);
        };
        *self.seen() = memo.seen;
        let stream =
            datafusion::physical_plan::memory::MemoryStream::try_new(batches, cached, None)?;
        Ok(Some(Outcome::Rows {
            schema: memo.schema,
            names: memo.names,
            stream: Box::pin(stream),
            command,
        }))
    }

    /// INSERT / UPDATE / DELETE through DataFusion; the tag carries the affected row count.
    async fn dml(
        &self,
        stmt: &DfStatement,
        params: Vec<ScalarValue>,
        command: &str,
    ) -> Result<Outcome> {
        let plan = self.plan(stmt).await?;
        let plan = bind(plan, params)?;
        let batches = match self.ctx.execute_logical_plan(plan).await {
            Ok(df) => df.collect().await,
            Err(e) => Err(e),
        };
        let batches = match batches {
            Ok(b) => b,
            Err(e) => {
                return Err(crate::planner::not_null::explain_values_error(
                    &self.ctx,
                    stmt,
                    e.into(),
                )
                .await);
            }
        };
        let mut rows = 0usize;
        for b in &batches {
            if let Some(c) = b
                .columns()
                .first()
                .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            {
                rows += c.iter().flatten().sum::<u64>() as usize;
            }
        }
        Ok(Outcome::Command(CommandTag::rows(command, rows)))
    }

    pub(crate) async fn run_sql_command(&self, sql: &str, command: &str) -> Result<usize> {
        let mut stmts = parse(sql)?;
        let stmt = stmts
            .pop()
            .ok_or_else(|| Error::internal("empty generated statement"))?;
        match self.dml(&stmt, vec![], command).await? {
            Outcome::Command(t) => Ok(t.rows.unwrap_or(0)),
            _ => Ok(0),
        }
    }

    /// The Delta table (ours or registered) that a write or maintenance statement names:
    /// (schema, table, entry). Views and external file tables are refused.
    pub(crate) fn delta_target(
        &self,
        name: &ast::ObjectName,
        what: &str,
    ) -> Result<(String, String, crate::catalog::TableEntry)> {
        let (schema, table) = crate::pg::names::qualified(
            name,
            &self.current_schema(),
            self.engine.planner.database(),
        )?;
        self.delta_target_named(&schema, &table, what)
            .map(|e| (schema, table, e))
    }

    pub(crate) fn delta_target_named(
        &self,
        schema: &str,
        table: &str,
        what: &str,
    ) -> Result<crate::catalog::TableEntry> {
        let t = self.writable_target_named(schema, table, what)?;
        if t.format == "iceberg" {
            return Err(Error::unsupported(format!(
                "{what} is not supported on Iceberg table \"{table}\": iceberg-rust 0.10 writes \
                 appends only (INSERT, CREATE TABLE AS), not the row-level delete files {what} needs"
            )));
        }
        Ok(t)
    }

    /// A table that this warehouse may change: a Delta or Iceberg table (ours or a registered
    /// Delta location); views and external files or Iceberg metadata files are refused.
    pub(crate) fn writable_target_named(
        &self,
        schema: &str,
        table: &str,
        what: &str,
    ) -> Result<crate::catalog::TableEntry> {
        use crate::catalog::Relation;
        let action = match what {
            "OPTIMIZE" | "VACUUM" | "ALTER TABLE" => Action::Admin,
            // Which columns it may assign is checked with the assignments (dml::governed).
            "UPDATE" => Action::Update,
            _ => Action::Write,
        };
        self.seen().writes.insert(format!("{schema}.{table}"));
        self.authorize(&format!("{schema}.{table}"), action)?;
        match self.engine.planner.catalog().relation(schema, table) {
            Some(Relation::Table(t))
                if t.format == "delta" || (t.format == "iceberg" && !t.external) =>
            {
                Ok(t)
            }
            Some(Relation::Table(t)) => Err(Error::unsupported(format!(
                "{what} needs a Delta or Iceberg table of this warehouse; \"{table}\" is an external {} table (read-only)",
                t.format
            ))),
            Some(Relation::View(_)) => Err(Error::Data {
                sqlstate: "55000",
                message: format!("{what}: \"{table}\" is a view, views are read-only"),
            }),
            None => Err(Error::UndefinedTable(format!(
                "relation \"{table}\" does not exist"
            ))),
        }
    }

    pub(crate) fn context(&self) -> &SessionContext {
        &self.ctx
    }

    fn set(&mut self, set: &ast::Set) -> Result<Outcome> {
        use ast::Set as S;
        match set {
            S::SingleAssignment {
                variable, values, ..
            } => {
                let name = variable.to_string();
                let value = values.iter().map(set_value).collect::<Vec<_>>().join(", ");
                if name.eq_ignore_ascii_case("role")
                    || name.eq_ignore_ascii_case("session_authorization")
                {
                    return self.set_role(&value);
                }
                if value.eq_ignore_ascii_case("default") {
                    self.settings.reset(&name)?;
                } else {
                    self.settings.set(&name, &value)?;
                }
            }
            S::SetTimeZone { value, .. } => {
                self.settings.set("timezone", &set_value(value))?;
            }
            S::SetNames { charset_name, .. } => {
                self.settings.set("client_encoding", &charset_name.value)?;
            }
            S::SetRole { role_name, .. } => {
                return self.set_role(
                    &role_name
                        .as_ref()
                        .map(|r| r.value.clone())
                        .unwrap_or_default(),
                );
            }
            S::SetSessionAuthorization(p) => {
                return self.set_role(&p.to_string());
            }
            // The isolation level asked for is recorded (SHOW TRANSACTION ISOLATION LEVEL says
            // it); every statement reads one committed snapshot of each table whatever it is.
            S::SetTransaction { modes, session, .. } => {
                for m in modes {
                    if let ast::TransactionMode::IsolationLevel(level) = m {
                        let level = isolation_name(level);
                        if *session {
                            self.settings.set("default_transaction_isolation", level)?;
                        }
                        if *session && !self.in_transaction || !*session && self.in_transaction {
                            self.settings.set("transaction_isolation", level)?;
                        }
                    }
                }
            }
            S::SetSessionParam(_) => {}
            other => return Err(Error::unsupported(format!("{other} is not supported"))),
        }
        self.rebuild_context();
        Ok(Outcome::Command(CommandTag::new("SET")))
    }

    /// SET ROLE / SESSION AUTHORIZATION: to oneself, back to none, or to a role the policies
    /// grant this user; then that role's grants decide.
    fn set_role(&mut self, role: &str) -> Result<Outcome> {
        let r = role.trim().trim_matches('\'').trim_matches('"');
        let r_lower = r.to_ascii_lowercase();
        if r.is_empty() || r_lower == "none" || r_lower == "default" || r == self.principal.name {
            self.principal.role = None;
            self.rebuild_context();
            Ok(Outcome::Command(CommandTag::new("SET")))
        } else if self
            .engine
            .policies()
            .roles_held(&crate::policy::Subject {
                name: self.principal.name.clone(),
                ..self.principal.subject()
            })
            .iter()
            .any(|g| g == r)
        {
            self.principal.role = Some(r.to_string());
            self.rebuild_context();
            Ok(Outcome::Command(CommandTag::new("SET")))
        } else {
            Err(Error::PermissionDenied(format!(
                "permission denied to set role \"{r}\""
            )))
        }
    }

    /// The rows' schema of the open SQL cursor `name`.
    pub fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        self.cursors.schema_of(name)
    }

    fn utility_schema(&self, stmt: &DfStatement) -> Option<SchemaRef> {
        if let DfStatement::Statement(s) = stmt
            && let SqlStatement::Fetch { name, .. } = s.as_ref()
        {
            return self.cursors.schema_of(&name.value);
        }
        if let DfStatement::Statement(s) = stmt
            && let SqlStatement::ShowVariable { variable } = s.as_ref()
        {
            let name = show_name(variable);
            if name == "all" {
                return Some(Arc::new(Schema::new(vec![
                    Field::new("name", DataType::Utf8, false),
                    Field::new("setting", DataType::Utf8, false),
                ])));
            }
            return Some(Arc::new(Schema::new(vec![Field::new(
                settings::display_name(&name),
                DataType::Utf8,
                false,
            )])));
        }
        None
    }

    fn show(&self, variable: &[ast::Ident]) -> Result<Outcome> {
        let name = show_name(variable);
        let (schema, columns): (SchemaRef, Vec<Arc<dyn Array>>) = if name == "all" {
            let all = self.settings.all();
            let schema = self
                .utility_schema(&show_stmt(variable))
                .ok_or_else(|| Error::internal("show schema"))?;
            let names = StringArray::from_iter_values(all.iter().map(|(k, _)| k.as_str()));
            let values = StringArray::from_iter_values(all.iter().map(|(_, v)| v.as_str()));
            (schema, vec![Arc::new(names), Arc::new(values)])
        } else {
            let value = self.settings.get(&name)?;
            let schema = self
                .utility_schema(&show_stmt(variable))
                .ok_or_else(|| Error::internal("show schema"))?;
            (schema, vec![Arc::new(StringArray::from(vec![value]))])
        };
        let names = schema.fields().iter().map(|f| f.name().clone()).collect();
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let stream = MemoryStream::try_new(vec![batch], schema.clone(), None)?;
        Ok(Outcome::Rows {
            schema,
            names,
            stream: Box::pin(stream),
            command: "SHOW",
        })
    }
}

fn show_stmt(variable: &[ast::Ident]) -> DfStatement {
    DfStatement::Statement(Box::new(SqlStatement::ShowVariable {
        variable: variable.to_vec(),
    }))
}

fn show_name(variable: &[ast::Ident]) -> String {
    let joined = variable
        .iter()
        .map(|i| i.value.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    match joined.as_str() {
        "time zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        "session authorization" => "session_authorization".into(),
        // `SHOW lakegate.plan_cache`: the parser gives a dotted name's parts (PostgreSQL's
        // custom parameters have two); no other two-word name is a parameter.
        other if variable.len() == 2 => other.replace(' ', "."),
        other => other.replace(' ', "_"),
    }
}

fn set_value(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        ast::Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// First keywords of a statement, for "not supported" messages (never the literals).
/// The statements of a simple-query message, as texts (split at semicolons outside quotes and
/// comments); empty ones left out.
fn split_statements(sql: &str) -> Vec<String> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let dialect = crate::pg::dialect::LakegateDialect::default();
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return vec![sql.to_string()];
    };
    let mut out = vec![];
    let mut cur = String::new();
    for t in tokens {
        if t == Token::SemiColon {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push_str(&t.to_string());
        }
    }
    out.push(cur);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

/// An isolation level as `transaction_isolation` spells it.
fn isolation_name(level: &ast::TransactionIsolationLevel) -> &'static str {
    match level {
        ast::TransactionIsolationLevel::ReadUncommitted => "read uncommitted",
        ast::TransactionIsolationLevel::ReadCommitted => "read committed",
        ast::TransactionIsolationLevel::RepeatableRead => "repeatable read",
        _ => "serializable",
    }
}

fn statement_keyword(sql: &str) -> String {
    sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// Statements that change data or the catalog.
fn is_write(stmt: &DfStatement) -> bool {
    use SqlStatement as S;
    matches!(stmt, DfStatement::CreateExternalTable(_))
        || matches!(stmt, DfStatement::Statement(s) if matches!(s.as_ref(),
        S::Insert(_) | S::Update(_) | S::Delete(_) | S::Merge(_) | S::CreateTable(_) | S::CreateView(_) | S::AlterTable(_)
        | S::CreateSchema { .. } | S::Drop { .. }))
}

/// Writes a transaction block holds until COMMIT.
fn is_deferred(stmt: &DfStatement) -> bool {
    matches!(stmt, DfStatement::Statement(s) if matches!(s.as_ref(), SqlStatement::Insert(_) | SqlStatement::Update(_) | SqlStatement::Delete(_) | SqlStatement::Merge(_)))
}

fn aborted_error() -> Error {
    Error::Data {
        sqlstate: "25P02",
        message: "current transaction is aborted, commands ignored until end of transaction block"
            .into(),
    }
}

fn ends_transaction(stmt: &DfStatement) -> bool {
    matches!(stmt, DfStatement::Statement(s) if matches!(s.as_ref(), SqlStatement::Commit { .. } | SqlStatement::Rollback { savepoint: None, .. }))
}

fn returns_rows_from_plan(stmt: &DfStatement) -> bool {
    match stmt {
        DfStatement::Statement(s) => matches!(
            s.as_ref(),
            SqlStatement::Query(_) | SqlStatement::Explain { .. }
        ),
        DfStatement::Explain(_) => true,
        _ => false,
    }
}

fn is_dml(stmt: &DfStatement) -> bool {
    matches!(stmt, DfStatement::Statement(s) if matches!(s.as_ref(), SqlStatement::Insert(_) | SqlStatement::Update(_) | SqlStatement::Delete(_) | SqlStatement::Merge(_)))
}

/// Parameter types: the client's where given, else what DataFusion inferred, else unknown (Null).
fn param_field(dt: DataType) -> Field {
    Field::new("", dt, true)
}

/// Types of `$n` that only appear under a cast (`$1::int`): PostgreSQL takes the cast's type.
fn cast_placeholder_types(plan: &LogicalPlan) -> std::collections::HashMap<String, DataType> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::expr::Placeholder;
    let mut out = std::collections::HashMap::new();
    let _ = plan.apply_with_subqueries(|p| {
        p.apply_expressions(|e| {
            e.apply(|e| {
                if let datafusion::prelude::Expr::Cast(c) = e
                    && let datafusion::prelude::Expr::Placeholder(Placeholder { id, .. }) =
                        c.expr.as_ref()
                {
                    out.entry(id.clone()).or_insert_with(|| c.data_type.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    out
}

fn param_types_of(plan: &LogicalPlan, client: &[Option<DataType>]) -> Result<Vec<Field>> {
    let inferred = plan.get_parameter_fields()?;
    let cast = cast_placeholder_types(plan);
    let mut max = client.len();
    for k in inferred.keys().chain(cast.keys()) {
        if let Some(n) = k.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            max = max.max(n);
        }
    }
    Ok((1..=max)
        .map(|i| match client.get(i - 1).cloned().flatten() {
            Some(dt) => param_field(dt),
            None => match inferred.get(&format!("${i}")).cloned().flatten() {
                Some(f) => f.as_ref().clone(),
                None => param_field(
                    cast.get(&format!("${i}"))
                        .cloned()
                        .unwrap_or(DataType::Null),
                ),
            },
        })
        .collect())
}

/// Substitute `$n` placeholders, casting each value to the type the plan expects.
fn bind(plan: LogicalPlan, params: Vec<ScalarValue>) -> Result<LogicalPlan> {
    let inferred = plan.get_parameter_types()?;
    if params.is_empty() && inferred.is_empty() {
        return Ok(plan);
    }
    let mut values = Vec::with_capacity(params.len());
    for (i, v) in params.into_iter().enumerate() {
        let want = inferred.get(&format!("${}", i + 1)).cloned().flatten();
        let v = match want {
            Some(t) if t != v.data_type() && !t.is_null() => v.cast_to(&t).map_err(|e| {
                Error::data(
                    "22P02",
                    format!(
                        "invalid value for parameter ${}: {}",
                        i + 1,
                        Error::from(e).client_message()
                    ),
                )
            })?,
            _ => v,
        };
        values.push(v);
    }
    if values.len() < inferred.len() {
        return Err(Error::data(
            "08P01",
            format!(
                "bind message supplies {} parameters, but the statement requires {}",
                values.len(),
                inferred.len()
            ),
        ));
    }
    Ok(plan.with_param_values(values)?)
}

/// Column names as PostgreSQL would show them for a top-level SELECT list
/// (`count` for `count(*)`, `?column?` for an unnamed expression); DataFusion's names otherwise.
fn output_names(stmt: &DfStatement, schema: &Schema) -> Vec<String> {
    // Names the catalog rewrites made distinct for DataFusion (pg::pg_catalog) are
    // PostgreSQL's again: `n.oid, n.*` has two `oid` columns, `NULL, NULL` two `?column?`.
    select_names(stmt, schema)
        .into_iter()
        .map(|n| {
            if let Some(original) = n.strip_prefix("__alias_") {
                original.to_string()
            } else if n.starts_with("?column") && n.ends_with('?') {
                "?column?".to_string()
            } else {
                n
            }
        })
        .collect()
}

fn select_names(stmt: &DfStatement, schema: &Schema) -> Vec<String> {
    let df_names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let DfStatement::Statement(s) = stmt else {
        return df_names;
    };
    let SqlStatement::Query(q) = s.as_ref() else {
        return df_names;
    };
    let ast::SetExpr::Select(sel) = q.body.as_ref() else {
        return df_names;
    };
    let mut names = Vec::with_capacity(df_names.len());
    let mut i = 0;
    for item in &sel.projection {
        match item {
            ast::SelectItem::UnnamedExpr(e) => {
                if let Some(d) = df_names.get(i) {
                    names.push(crate::pg::names::pg_column_name(e).unwrap_or_else(|| d.clone()));
                }
                i += 1;
            }
            ast::SelectItem::ExprWithAlias { .. } => {
                if let Some(d) = df_names.get(i) {
                    names.push(d.clone());
                }
                i += 1;
            }
            // A wildcard expands to a number of columns we do not know here: keep DataFusion's names.
            _ => return df_names,
        }
    }
    if names.len() == df_names.len() {
        names
    } else {
        df_names
    }
}

/// A result stream that writes its statement's audit record, with the rows it returned, when
/// it ends (or is dropped: a cancelled or abandoned query is recorded too).
struct AuditedStream {
    inner: SendableRecordBatchStream,
    record: Option<crate::policy::audit::AuditRecord>,
    log: Arc<crate::policy::audit::AuditLog>,
    started: std::time::Instant,
    rows: u64,
    /// After the last batch: the record's line on its way to disk (the end is reported once it
    /// is there, without holding a runtime thread while it syncs).
    syncing: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl AuditedStream {
    fn record(
        &mut self,
        sqlstate: Option<&'static str>,
    ) -> Option<crate::policy::audit::AuditRecord> {
        let mut r = self.record.take()?;
        r.rows = Some(self.rows);
        r.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        if let Some(code) = sqlstate {
            r.decision = if code == "42501" { "denied" } else { "failed" }.into();
            r.sqlstate = Some(code.to_string());
        }
        Some(r)
    }

    fn finish(&mut self, sqlstate: Option<&'static str>) {
        if let Some(r) = self.record(sqlstate) {
            self.log.write(&r);
        }
    }
}

impl futures::Stream for AuditedStream {
    type Item = datafusion::error::Result<RecordBatch>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if let Some(syncing) = self.syncing.as_mut() {
            return match syncing.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.syncing = None;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            };
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.rows += b.num_rows() as u64;
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e = Error::from(e);
                self.finish(Some(e.sqlstate()));
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => match self.record(None) {
                Some(r) => {
                    self.syncing = Some(Box::pin(self.log.write_async(&r)));
                    self.as_mut().poll_next(cx)
                }
                None => Poll::Ready(None),
            },
            Poll::Pending => Poll::Pending,
        }
    }
}

impl datafusion::physical_plan::RecordBatchStream for AuditedStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl Drop for AuditedStream {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// Collect a row stream into memory (for multi-statement messages).
/// The statements of one simple-query message still to run ([`Session::begin_simple`]).
pub struct SimpleBatch {
    items: std::collections::VecDeque<SimpleItem>,
    /// Whether the transaction block is failed (statements other than its end are refused).
    aborted: bool,
    /// A statement failed: the rest of the message does not run.
    failed: bool,
}

impl SimpleBatch {
    /// Statements left.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

enum SimpleItem {
    /// Refused before it was parsed (audited with the text shown).
    Refused(Error, String),
    /// Did not parse.
    Failed(Error),
    /// A statement DataFusion's parser does not take.
    Unparsed(Box<PreparedKind>, String),
    /// One statement's text, of a message mixing both kinds.
    Piece(String),
    Statement(Arc<Parsed>),
}

async fn materialize(o: Outcome) -> Result<Outcome> {
    match o {
        Outcome::Rows {
            schema,
            names,
            stream,
            command,
        } => {
            use futures::TryStreamExt;
            let batches: Vec<RecordBatch> = stream.try_collect().await?;
            let stream = MemoryStream::try_new(batches, schema.clone(), None)?;
            Ok(Outcome::Rows {
                schema,
                names,
                stream: Box::pin(stream),
                command,
            })
        }
        other => Ok(other),
    }
}
