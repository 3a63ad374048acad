//! Per-connection state and the statement dispatch: [`Session`], [`Engine`] (what sessions
//! share), [`Outcome`], and a dispatch whose arms are one line each. The work is in one file per
//! job: `query` (planning, caches), `guard` (authorize, govern), `audit` (begin and end of a
//! statement), `notices`, `simple` (several statements in one message), `transaction`, `cursor`,
//! `settings`, `copy`, `ddl`, `dml`, `merge`, `matview`, `maintenance`. The wire layer talks to a
//! [`Session`] only, never to DataFusion directly.

pub mod admission;
mod alter;
mod audit;
mod context;
pub mod copy;
pub mod cursor;
mod ddl;
mod dml;
mod explain;
mod guard;
mod maintenance;
pub mod matview;
mod merge;
mod notices;
pub mod pipeline;
mod query;
pub mod settings;
mod simple;
mod temp;
mod transaction;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::datatypes::{Field, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, Statement as SqlStatement};

use crate::error::{Error, Result, SqlState};
use crate::planner::Planner;
use crate::policy::PolicySet;
pub use notices::Notice;
use query::{Memo, OptimizedKey};
use settings::Settings;
pub use simple::SimpleBatch;
use simple::statement_keyword;

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
    /// What runs CREATE/ALTER/DROP SUBSCRIPTION (src/ingest, installed by the server).
    pipelines: pipeline::Slot,
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
            pipelines: Default::default(),
        })
    }

    /// Install what runs the pipeline statements (once, at startup).
    pub fn set_pipelines(&self, p: Arc<dyn pipeline::Pipelines>) {
        self.pipelines.set(p);
    }

    /// What runs the pipeline statements, when the server installed it.
    pub fn pipelines(&self) -> Option<Arc<dyn pipeline::Pipelines>> {
        self.pipelines.get()
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

/// The kind of statement whose rows an [`Outcome::Rows`] holds: its command tag, and what
/// planning and caching do for it (only a SELECT's results are remembered; EXPLAIN shows a
/// non-administrator the structure only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsKind {
    Select,
    Explain,
    Show,
    Fetch,
}

impl RowsKind {
    /// The command tag PostgreSQL sends for it.
    pub fn tag(self) -> &'static str {
        match self {
            RowsKind::Select => "SELECT",
            RowsKind::Explain => "EXPLAIN",
            RowsKind::Show => "SHOW",
            RowsKind::Fetch => "FETCH",
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
        command: RowsKind,
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
    /// CREATE / ALTER / DROP SUBSCRIPTION (its text).
    Pipeline(String),
}

/// The statements DataFusion's parser does not take, recognised first: COPY ... STDIN/STDOUT,
/// MOVE, the table maintenance commands and the materialized-view statements.
fn unparsed(sql: &str) -> Result<Option<PreparedKind>> {
    // Recognised by their first words, after the comments tools put first (dbt's
    // `/* {"app": "dbt", ...} */`).
    let sql = past_leading_comments(sql);
    if let Some(m) = crate::mv::ddl::parse(sql) {
        return Ok(Some(PreparedKind::MatView(m?)));
    }
    if let Some(p) = pipeline::parse(sql) {
        return Ok(Some(PreparedKind::Pipeline(p)));
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

/// `sql` from its first word: white space, `-- line` and (nested) `/* block */` comments
/// skipped. An unterminated comment leaves the text as it is (the parser reports it).
/// Written by hand rather than with the dialect's tokenizer: it runs on every statement and
/// looks only at the prefix, where tokenizing would read the whole text.
fn past_leading_comments(sql: &str) -> &str {
    let mut rest = sql.trim_start();
    loop {
        if let Some(line) = rest.strip_prefix("--") {
            rest = line
                .split_once('\n')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if rest.starts_with("/*") {
            let mut depth = 0usize;
            let mut end = None;
            let bytes = rest.as_bytes();
            let mut i = 0;
            while i + 1 < bytes.len() {
                match (bytes[i], bytes[i + 1]) {
                    (b'/', b'*') => (depth, i) = (depth + 1, i + 2),
                    (b'*', b'/') => {
                        depth = depth.saturating_sub(1);
                        i += 2;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => i += 1,
                }
            }
            match end.and_then(|e| rest.get(e..)) {
                Some(after) => rest = after.trim_start(),
                None => return sql,
            }
        } else {
            return rest;
        }
    }
}

/// Parse SQL text into statements (PostgreSQL dialect plus time travel).
pub fn parse(sql: &str) -> Result<Vec<DfStatement>> {
    crate::planner::parse_sql(sql)
}

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
    /// Statements run since BEGIN that committed on their own (`commits_at_once`).
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
    /// The session's temporary tables.
    temp: temp::TempTables,
    /// What the open block's own reads see of its pending writes (shared with the context's
    /// catalog provider).
    overlays: crate::catalog::overlay::Overlays,
    /// The open block's catalog changes (transactional DDL; catalog::draft).
    draft: transaction::BlockDraft,
}

/// Tables and policies a statement met, for its audit record.
#[derive(Debug, Default, Clone)]
struct Seen {
    reads: std::collections::BTreeSet<String>,
    writes: std::collections::BTreeSet<String>,
    policies: std::collections::BTreeSet<String>,
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
        let overlays = crate::catalog::overlay::Overlays::default();
        let ctx = Self::build_context(
            &engine,
            &principal,
            &settings,
            backend_pid,
            &pending_settings,
            &overlays,
        );
        let engine_catalog = engine.planner.catalog().clone();
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
            draft: transaction::BlockDraft::new(engine_catalog.clone(), overlays.clone()),
            temp: temp::TempTables::new(engine_catalog, backend_pid),
            overlays,
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

    /// Whether a ROLLBACK TO SAVEPOINT recovered the failed block (the wire layer then reports
    /// the block as in progress again, not failed).
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// The open block's catalog draft, which the wire layer puts in scope around each of the
    /// session's statements (catalog::draft).
    pub fn catalog_draft(&self) -> crate::catalog::Draft {
        self.draft.draft.clone()
    }

    /// Whether a transaction block is open (BEGIN without its COMMIT or ROLLBACK yet).
    pub fn in_block(&self) -> bool {
        self.in_transaction
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
        let started = self.begin_statement().await?;
        let r = match kind {
            // Audited when its rows are in (copy_in_done), or now if it cannot start.
            PreparedKind::CopyIn(c) => match self.copy_in_start(c.clone(), sql).await {
                Ok(o) => return Ok(o),
                Err(e) => Err(e),
            },
            PreparedKind::Move(name, direction) => self.cursors.fetch(name, direction, true).await,
            PreparedKind::Maintenance(m) => maintenance::run(self, m).await,
            PreparedKind::MatView(m) => matview::run(self, m.clone()).await,
            PreparedKind::Pipeline(p) => pipeline::run(self, p).await,
            PreparedKind::Copy(_) | PreparedKind::Sql(_) => {
                Err(Error::internal("a parsed statement reached run_unparsed"))
            }
        };
        self.audit(sql, started, r)
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
        let resolved = self.with_temp_names(stmt)?;
        let stmt = resolved.as_ref().unwrap_or(stmt);
        let out = self.dispatch(stmt, params).await;
        if out.is_ok() && self.in_transaction && commits_at_once(stmt) {
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

    async fn dispatch(&mut self, stmt: &DfStatement, params: Vec<ScalarValue>) -> Result<Outcome> {
        match stmt {
            DfStatement::Statement(s) => self.execute_sql(stmt, s, params).await,
            DfStatement::Explain(_) => self.query(stmt, params, RowsKind::Explain).await,
            DfStatement::Reset(r) => self.reset(r),
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
            S::Query(_) => self.query(whole, params, RowsKind::Select).await,
            S::Explain { .. } | S::ExplainTable { .. } => {
                self.query(whole, params, RowsKind::Explain).await
            }
            S::Insert(_) if self.in_transaction => {
                transaction::buffer_insert(self, whole, params).await
            }
            S::Insert(_) => self.dml(whole, params, "INSERT").await,
            S::Merge(m) => self.merge(m).await,
            S::Update(u) => self.update(u, params).await,
            S::Delete(d) => self.delete(d, params).await,
            S::Truncate(t) => self.truncate(t).await,
            S::CreateTable(ct) if ct.temporary => self.create_temp_table(ct).await,
            S::CreateTable(ct) => ddl::create_table(self, ct).await,
            S::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => ddl::create_schema(self, schema_name, *if_not_exists).await,
            S::CreateView(v) => ddl::create_view(self, v).await,
            S::CreateIndex(ci) => ddl::create_index(self, ci),
            S::Analyze(a) => ddl::analyze(self, a).await,
            S::Comment {
                object_type,
                object_name,
                comment,
                if_exists,
            } => ddl::comment(self, object_type, object_name, comment.clone(), *if_exists).await,
            S::AlterTable(at) => alter::alter_table(self, at).await,
            S::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => ddl::drop(self, *object_type, *if_exists, names, *cascade).await,
            S::StartTransaction { modes, .. } => self.begin(modes),
            S::Declare { stmts } => self.declare(stmts, params).await,
            S::Fetch {
                name,
                direction,
                into: None,
                ..
            } => self.cursors.fetch(&name.value, direction, false).await,
            S::Close { cursor } => self.close_cursor(cursor),
            S::Savepoint { name } => self.savepoint(&name.value),
            S::ReleaseSavepoint { name } => self.release_savepoint(&name.value),
            S::Rollback {
                savepoint: Some(name),
                ..
            } => self.rollback_to_savepoint(&name.value),
            S::Commit { .. } => self.commit().await,
            S::Rollback {
                savepoint: None, ..
            } => self.rollback().await,
            S::Set(set) => self.set(set),
            S::ShowVariable { variable } => self.show(variable),
            S::Discard { object_type } => self.discard(*object_type),
            S::Deallocate { name, .. } => Ok(settings::deallocate(&name.value)),
            other => Err(Error::unsupported(format!(
                "statement not supported: {}",
                statement_keyword(&other.to_string())
            ))),
        }
    }
}

/// Writes inside a block that commit when they run, not at COMMIT: ALTER TABLE's column
/// changes (a table format's schema commit). Data writes wait for COMMIT (`transaction`), and
/// catalog changes (CREATE, DROP, RENAME) are the block's draft until then (catalog::draft).
fn commits_at_once(stmt: &DfStatement) -> bool {
    matches!(stmt, DfStatement::Statement(s) if matches!(s.as_ref(),
        SqlStatement::AlterTable(at) if !matches!(at.operations.as_slice(),
            [datafusion::sql::sqlparser::ast::AlterTableOperation::RenameTable { .. }])))
}

fn aborted_error() -> Error {
    Error::Data {
        sqlstate: SqlState::InFailedSqlTransaction,
        message: "current transaction is aborted, commands ignored until end of transaction block"
            .into(),
    }
}

fn ends_transaction(stmt: &DfStatement) -> bool {
    matches!(stmt, DfStatement::Statement(s) if matches!(s.as_ref(), SqlStatement::Commit { .. } | SqlStatement::Rollback { savepoint: None, .. }))
}

fn is_dml(stmt: &DfStatement) -> bool {
    matches!(stmt, DfStatement::Statement(s) if matches!(s.as_ref(), SqlStatement::Insert(_) | SqlStatement::Update(_) | SqlStatement::Delete(_) | SqlStatement::Merge(_)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn leading_comments_are_skipped() {
        for (sql, rest) in [
            (
                "/* {\"app\": \"dbt\"} */\n  refresh materialized view v",
                "refresh materialized view v",
            ),
            ("-- a\n-- b\nMOVE 1 c", "MOVE 1 c"),
            (
                "/* a /* nested */ b */ COPY t TO STDOUT",
                "COPY t TO STDOUT",
            ),
            ("/* unterminated", "/* unterminated"),
            ("SELECT 1", "SELECT 1"),
        ] {
            assert_eq!(super::past_leading_comments(sql), rest, "{sql}");
        }
    }
}
